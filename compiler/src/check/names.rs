//! Names: upstreams, auths, limits and stores, each its own namespace. Every
//! name is defined once (GW0102), every reference resolves in the right
//! namespace with a "did you mean" (GW0101), and every definition is used
//! somewhere (GW0501, a warning).

use super::Ctx;
use crate::ast::{Config, Expected, ListenKind, Name};
use crate::codes::Code;
use crate::diagnostic::{suggest, Diagnostic, Diagnostics};
use crate::source::Span;
use std::collections::HashMap;

/// The first definition of each name, by namespace (index into the
/// configuration's lists).
pub(crate) struct Names<'a> {
    pub upstreams: HashMap<&'a str, usize>,
    pub auths: HashMap<&'a str, usize>,
    pub limits: HashMap<&'a str, usize>,
    pub stores: HashMap<&'a str, usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Space {
    Upstream,
    Auth,
    Limit,
    Store,
}

impl Space {
    fn word(self) -> &'static str {
        match self {
            Space::Upstream => "upstream",
            Space::Auth => "auth",
            Space::Limit => "limit",
            Space::Store => "store",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Space::Upstream => "upstreams",
            Space::Auth => "auths",
            Space::Limit => "limits",
            Space::Store => "stores",
        }
    }

    fn example(self, name: &str) -> String {
        match self {
            Space::Upstream => format!("upstream {name} {{ server 127.0.0.1:9000 }}"),
            Space::Auth => format!("auth {name} jwt {{ ... }}"),
            Space::Limit => format!("limit {name} {{ rate 100/min key client_ip }}"),
            Space::Store => format!("store {name} redis \"redis://127.0.0.1:6379\""),
        }
    }
}

impl<'a> Names<'a> {
    /// Indexes the definitions, reporting duplicates (GW0102).
    pub fn build(config: &'a Config, diags: &mut Diagnostics) -> Names<'a> {
        Names {
            upstreams: index(Space::Upstream, definitions(config, Space::Upstream), diags),
            auths: index(Space::Auth, definitions(config, Space::Auth), diags),
            limits: index(Space::Limit, definitions(config, Space::Limit), diags),
            stores: index(Space::Store, definitions(config, Space::Store), diags),
        }
    }

    fn of(&self, space: Space) -> &HashMap<&'a str, usize> {
        match space {
            Space::Upstream => &self.upstreams,
            Space::Auth => &self.auths,
            Space::Limit => &self.limits,
            Space::Store => &self.stores,
        }
    }
}

/// The names defined in a namespace, in definition order, with their spans.
fn definitions(config: &Config, space: Space) -> Vec<(&str, Span)> {
    fn pick(name: &Name) -> (&str, Span) {
        (name.node.as_str(), name.span)
    }
    match space {
        Space::Upstream => config.upstreams.iter().map(|u| pick(&u.name)).collect(),
        Space::Auth => config.auths.iter().map(|a| pick(&a.name)).collect(),
        Space::Limit => config.rate_limits.iter().map(|l| pick(&l.name)).collect(),
        Space::Store => config.stores.iter().map(|s| pick(&s.name)).collect(),
    }
}

fn index<'a>(space: Space, defs: Vec<(&'a str, Span)>, diags: &mut Diagnostics) -> HashMap<&'a str, usize> {
    let mut map: HashMap<&'a str, usize> = HashMap::new();
    let mut spans: Vec<Span> = Vec::new();
    for (i, (name, span)) in defs.into_iter().enumerate() {
        spans.push(span);
        match map.get(name) {
            Some(&first) => {
                let first_span = spans.get(first).copied().unwrap_or(span);
                diags.push(
                    Diagnostic::new(Code::GW0102, format!("{} `{name}` is defined twice", space.word()))
                        .primary(span, "defined again here")
                        .secondary(first_span, "first defined here")
                        .help(format!(
                            "rename or remove one of them: {} share one namespace across imported files",
                            space.plural()
                        )),
                );
            }
            None => {
                map.insert(name, i);
            }
        }
    }
    map
}

/// Resolves every reference (GW0101) and reports definitions never used
/// (GW0501).
pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    let config = ctx.config;
    let mut r = Resolver {
        ctx,
        used_upstreams: vec![false; config.upstreams.len()],
        used_auths: vec![false; config.auths.len()],
        used_limits: vec![false; config.rate_limits.len()],
        used_stores: vec![false; config.stores.len()],
        help_cache: HashMap::new(),
        searches: 0,
        suggested: Vec::new(),
    };

    for route in &config.routes {
        if let Some(up) = &route.upstream {
            r.resolve(Space::Upstream, &up.node, up.span, diags);
        }
        if let Some(auth) = &route.auth {
            r.resolve(Space::Auth, &auth.node, auth.span, diags);
        }
        for limit in &route.limits {
            r.resolve(Space::Limit, &limit.node, limit.span, diags);
        }
        if let Some(agg) = &route.aggregate {
            for part in &agg.parts {
                r.resolve(Space::Upstream, &part.upstream.node, part.upstream.span, diags);
            }
        }
        if let Some(split) = &route.split {
            for side in &split.sides {
                r.resolve(Space::Upstream, &side.upstream.node, side.upstream.span, diags);
            }
        }
        if let Some(m) = &route.mirror {
            r.resolve(Space::Upstream, &m.upstream.node, m.upstream.span, diags);
        }
    }
    for listen in &config.listens {
        if let ListenKind::Tcp { upstream } = &listen.kind {
            r.resolve(Space::Upstream, &upstream.node, upstream.span, diags);
        }
    }
    for limit in &config.rate_limits {
        if let Some(store) = &limit.store {
            r.resolve(Space::Store, &store.node, store.span, diags);
        }
    }
    for test in &config.tests {
        for e in &test.expectations {
            if let Expected::Upstream(name) = &e.expect.node {
                let unparsed = config.unparsed.iter().any(|(kw, n)| *kw == "upstream" && n == name);
                let word = name == "aggregate" || name == "split";
                if !word && !ctx.names.upstreams.contains_key(name.as_str()) && !unparsed {
                    r.unknown_expectation(name, e.expect.span, diags);
                }
            }
        }
    }

    // A declaration that failed lowering (a route with a bad path, say) is
    // not in the configuration, but the names it used are in the text: when
    // lowering reported errors, a name written more than once is not called
    // unused.
    let mentions = ctx.had_prior_errors().then(|| word_counts(ctx));
    let mentioned_elsewhere = |name: &str| mentions.as_ref().is_some_and(|m| m.get(name).copied().unwrap_or(0) > 1);
    let used = [
        (Space::Upstream, &r.used_upstreams),
        (Space::Auth, &r.used_auths),
        (Space::Limit, &r.used_limits),
        (Space::Store, &r.used_stores),
    ];
    for (space, used) in used {
        for (i, (name, span)) in definitions(config, space).into_iter().enumerate() {
            // Only the first definition counts; a duplicate is already GW0102.
            let first = ctx.names.of(space).get(name) == Some(&i);
            // A name offered as "did you mean" for a typo is the one meant:
            // calling it unused as well would only repeat the error.
            let suggested = r.suggested.iter().any(|(sp, n)| *sp == space && *n == name);
            if !first || used.get(i).copied().unwrap_or(true) || mentioned_elsewhere(name) || suggested {
                continue;
            }
            let help = match space {
                Space::Upstream => format!("route to it with `-> {name}`, or remove it"),
                Space::Auth => format!("protect a route with `auth {name}`, or remove it"),
                Space::Limit => format!("apply it in a route with `limit {name}`, or remove it"),
                Space::Store => format!("keep a limit's budget in it with `store {name}`, or remove it"),
            };
            diags.push(
                Diagnostic::new(Code::GW0501, format!("{} `{name}` is never used", space.word()))
                    .primary(span, "defined here, used nowhere")
                    .help(help),
            );
        }
    }
}

struct Resolver<'c, 'a> {
    ctx: &'c Ctx<'a>,
    used_upstreams: Vec<bool>,
    used_auths: Vec<bool>,
    used_limits: Vec<bool>,
    used_stores: Vec<bool>,
    /// Help lines already computed for an unknown name (a typo repeated in
    /// many routes costs one search).
    help_cache: HashMap<(Space, String), (String, Option<&'a str>)>,
    searches: usize,
    /// Names offered as "did you mean" for an unknown name.
    suggested: Vec<(Space, &'a str)>,
}

/// How many unknown names get a "did you mean" search.
const MAX_SEARCHES: usize = 200;

impl<'a> Resolver<'_, 'a> {
    fn resolve(&mut self, space: Space, name: &str, span: Span, diags: &mut Diagnostics) {
        let used = match space {
            Space::Upstream => &mut self.used_upstreams,
            Space::Auth => &mut self.used_auths,
            Space::Limit => &mut self.used_limits,
            Space::Store => &mut self.used_stores,
        };
        if let Some(&i) = self.ctx.names.of(space).get(name) {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
            return;
        }
        // Defined by a declaration with a syntax error, already reported.
        if self
            .ctx
            .config
            .unparsed
            .iter()
            .any(|(kw, n)| *kw == space.word() && n == name)
        {
            return;
        }
        let (help, typo) = self.help(space, name);
        let d = Diagnostic::new(Code::GW0101, format!("unknown {} `{name}`", space.word()))
            .primary(span, format!("no {} has this name", space.word()))
            .help(help);
        diags.push(match typo {
            Some(s) => d.suggest(span, s),
            None => d,
        });
    }

    /// The help line for an unknown name, and the name it suggests.
    fn help(&mut self, space: Space, name: &str) -> (String, Option<&'a str>) {
        let key = (space, name.to_string());
        if let Some(h) = self.help_cache.get(&key) {
            return h.clone();
        }
        let defined = self.ctx.names.of(space).len();
        let typo = self.search(name, space, None);
        let help = match typo {
            Some(s) => {
                self.suggested.push((space, s));
                format!("did you mean `{s}`?")
            }
            None if (1..=6).contains(&defined) => {
                let list: Vec<String> = self.candidates(space).iter().map(|c| format!("`{c}`")).collect();
                format!("the {} defined are {}", space.plural(), list.join(", "))
            }
            None => format!("define it: `{}`", space.example(name)),
        };
        self.help_cache.insert(key, (help.clone(), typo));
        (help, typo)
    }

    /// The name of `space` (or `extra`) closest to `name`. Each search costs
    /// an edit distance per candidate, so only the first [`MAX_SEARCHES`]
    /// unknown names get one: a generated configuration with thousands of
    /// typos stays linear.
    fn search(&mut self, name: &str, space: Space, extra: Option<&'a str>) -> Option<&'a str> {
        if self.searches >= MAX_SEARCHES {
            return None;
        }
        self.searches += 1;
        let mut candidates = self.candidates(space);
        candidates.extend(extra);
        suggest(name, candidates)
    }

    /// Names defined in a namespace, in definition order (so suggestions
    /// are deterministic).
    fn candidates(&self, space: Space) -> Vec<&'a str> {
        definitions(self.ctx.config, space)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    fn unknown_expectation(&mut self, name: &str, span: Span, diags: &mut Diagnostics) {
        let typo = self.search(name, Space::Upstream, Some("aggregate"));
        diags.push(
            Diagnostic::new(Code::GW0101, format!("unknown upstream `{name}` in a test expectation"))
                .primary(span, "no upstream has this name")
                .help("expect an upstream's name, `aggregate`, or a status such as `404`")
                .did_you_mean(span, typo),
        );
    }
}

/// How often each identifier-like word occurs in the loaded files.
fn word_counts<'a>(ctx: &Ctx<'a>) -> HashMap<&'a str, usize> {
    let mut counts: HashMap<&'a str, usize> = HashMap::new();
    for (_, file) in ctx.sources.files() {
        let text: &'a str = &file.text;
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        for word in text.split(|c: char| !is_word(c)).filter(|w| !w.is_empty()) {
            *counts.entry(word).or_insert(0) += 1;
        }
    }
    counts
}
