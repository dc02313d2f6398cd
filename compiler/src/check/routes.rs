//! Routes: no two claim the same requests with equal precedence (GW0201),
//! each has exactly one target (GW0202), every `param.X` names a parameter of
//! its path (GW0203), and every `claim.X` it reads — in a `require`, a
//! template, or the key of one of its limits — is under a `jwt` auth
//! (GW0204). Conditioned routes (`when ...`) do not collide with the route
//! without conditions; two of them that one request could both satisfy
//! collide unless provably disjoint (GW0206). A split's weights add up to
//! 100% (GW0207), and a condition reads only what the request carries
//! (GW0208).

use super::{describe_route, until, Ctx, RouteAuth};
use crate::ast::{CondOp, Condition, LimitKey, Method, Reference, Route, Segment};
use crate::codes::Code;
use crate::diagnostic::{suggest, Diagnostic, Diagnostics};
use crate::source::{Span, Spanned};
use std::collections::HashMap;

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    collisions(&ctx.config.routes, diags);
    for route in &ctx.config.routes {
        targets(ctx, route, diags);
        split_weights(route, diags);
        condition_subjects(route, diags);
        params(route, diags);
        claims(ctx, route, diags);
    }
}

/// Every request value a route reads, with where it is written: `require`
/// subjects, header templates, `rewrite`, `redirect` and aggregate paths.
fn for_each_reference<'r>(route: &'r Route, mut f: impl FnMut(&'r Spanned<Reference>)) {
    for r in &route.requires {
        f(&r.subject);
    }
    for t in &route.transforms {
        if let Some(v) = &t.value {
            v.node.references().for_each(&mut f);
        }
    }
    if let Some(r) = &route.rewrite {
        r.node.references().for_each(&mut f);
    }
    if let Some(r) = &route.redirect {
        r.location.node.references().for_each(&mut f);
    }
    if let Some(agg) = &route.aggregate {
        for part in &agg.parts {
            part.path.node.references().for_each(&mut f);
        }
    }
    if let Some(key) = route.split.as_ref().and_then(|s| s.sticky.as_ref()) {
        f(key);
    }
}

// ------------------------------------------------------------------ GW0201

/// One path segment with parameter names erased: `/x/{a}` and `/x/{b}`
/// have the same shape.
#[derive(Hash, PartialEq, Eq)]
enum Shape<'a> {
    Literal(&'a str),
    Param,
    CatchAll,
}

/// Slots a route can claim at one (host, shape): one per method, and one for
/// "every method" (`route /x` and `route GET /x` never collide: explicit
/// methods win).
const EVERY: usize = Method::ALL.len();

/// Routes are grouped by (host, shape) in one hash map, so the check is
/// linear in the number of routes. Only methods a route *names* can collide:
/// the `HEAD` that `GET` implies yields to a route naming `HEAD`, so
/// `route GET /x` and `route HEAD /x` do not collide.
fn collisions(routes: &[Route], diags: &mut Diagnostics) {
    type Key<'a> = (Option<&'a str>, Vec<Shape<'a>>);
    let mut claimed: HashMap<Key<'_>, [Option<u32>; EVERY + 1]> = HashMap::with_capacity(routes.len());
    // Conditioned routes by (host, shape): checked against each other only.
    let mut conditioned: HashMap<Key<'_>, Vec<u32>> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let shape = route
            .path
            .node
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Shape::Literal(l.as_str()),
                Segment::Param(_) => Shape::Param,
                Segment::CatchAll(_) => Shape::CatchAll,
            })
            .collect();
        let key = (route.host.as_ref().map(|h| h.node.as_str()), shape);
        if !route.when.is_empty() {
            let earlier = conditioned.entry(key).or_default();
            for &j in earlier.iter() {
                let Some(other) = routes.get(j as usize) else { continue };
                if same_tier(route, other) && !disjoint(&route.when, &other.when) {
                    diags.push(overlap(route, other));
                }
            }
            earlier.push(i as u32);
            continue;
        }
        let slots = claimed.entry(key).or_insert([None; EVERY + 1]);
        let mine: Vec<(usize, Option<Method>)> = match &route.methods {
            None => vec![(EVERY, None)],
            Some(m) => m.node.iter().map(|&m| (m as usize, Some(m))).collect(),
        };
        // Earlier routes this one collides with, each with the methods in common.
        let mut clashes: Vec<(u32, Vec<Option<Method>>)> = Vec::new();
        for &(slot, method) in &mine {
            let Some(cell) = slots.get_mut(slot) else { continue };
            match *cell {
                Some(j) => match clashes.iter_mut().find(|(k, _)| *k == j) {
                    Some((_, ms)) => ms.push(method),
                    None => clashes.push((j, vec![method])),
                },
                None => *cell = Some(i as u32),
            }
        }
        for (j, methods) in clashes {
            let Some(earlier) = routes.get(j as usize) else {
                continue;
            };
            diags.push(collision(route, earlier, &methods));
        }
    }
}

fn collision(route: &Route, earlier: &Route, methods: &[Option<Method>]) -> Diagnostic {
    let claim = if methods.iter().any(Option::is_none) {
        "every method".to_string()
    } else {
        let list: Vec<String> = methods.iter().flatten().map(|m| format!("`{}`", m.as_str())).collect();
        format!("{} requests", list.join(", "))
    };
    let path = &route.path.node.raw;
    let first = &earlier.path.node.raw;
    let help = if path != first {
        format!(
            "parameter names do not matter: `{first}` and `{path}` have the same shape; remove one route, or make them differ by method, host or path"
        )
    } else {
        "remove one of the routes, or make them differ by method, host or path".to_string()
    };
    Diagnostic::new(
        Code::GW0201,
        format!(
            "route `{}` claims the same requests as route `{}`",
            describe_route(route),
            describe_route(earlier)
        ),
    )
    .primary(route.head_span, format!("claims {claim} on this path again"))
    .secondary(earlier.head_span, "first claimed here")
    .help(help)
}

// ------------------------------------------------------------------ GW0206

/// Whether one request could reach both routes' conditions at the same
/// precedence: both name a method in common, or both take every method
/// (a route naming the method is tried first otherwise).
fn same_tier(a: &Route, b: &Route) -> bool {
    match (&a.methods, &b.methods) {
        (None, None) => true,
        // A `GET` route takes `HEAD` only where no route names `HEAD`: a
        // named method in common is the only way to share one.
        (Some(x), Some(y)) => x.node.iter().any(|m| y.node.contains(m)),
        _ => false,
    }
}

/// What a reference's value may be under some conditions: absent or not,
/// and among the strings either only some or all but some.
#[derive(Clone, Debug)]
struct Allowed {
    absent: bool,
    only: Option<Vec<String>>,
    but: Vec<String>,
}

impl Allowed {
    fn of(op: &CondOp) -> Allowed {
        match op {
            CondOp::Eq(v) => Allowed {
                absent: false,
                only: Some(vec![v.clone()]),
                but: Vec::new(),
            },
            CondOp::In(vs) => Allowed {
                absent: false,
                only: Some(vs.clone()),
                but: Vec::new(),
            },
            CondOp::Ne(v) => Allowed {
                absent: true,
                only: None,
                but: vec![v.clone()],
            },
            CondOp::Present => Allowed {
                absent: false,
                only: None,
                but: Vec::new(),
            },
        }
    }

    fn and(&self, other: &Allowed) -> Allowed {
        let absent = self.absent && other.absent;
        let but: Vec<String> = self.but.iter().chain(&other.but).cloned().collect();
        let only = match (&self.only, &other.only) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (Some(a), Some(b)) => Some(a.iter().filter(|v| b.contains(v)).cloned().collect()),
        };
        let only = only.map(|o: Vec<String>| o.into_iter().filter(|v| !but.contains(v)).collect());
        Allowed { absent, only, but }
    }

    fn is_empty(&self) -> bool {
        !self.absent && self.only.as_ref().is_some_and(Vec::is_empty)
    }
}

/// Whether no request can satisfy both lists of conditions: some
/// reference is compared in both, and no value (or its absence) passes
/// both. Conservative: "not proven disjoint" is an overlap.
fn disjoint(a: &[Condition], b: &[Condition]) -> bool {
    let subjects = a
        .iter()
        .map(|c| &c.subject.node)
        .filter(|s| b.iter().any(|c| &c.subject.node == *s));
    for subject in subjects {
        if *subject == Reference::ClientIp {
            if nets_disjoint(a, b) {
                return true;
            }
            continue;
        }
        let all = a.iter().chain(b).filter(|c| &c.subject.node == subject);
        let allowed = all.map(|c| Allowed::of(&c.op)).reduce(|x, y| x.and(&y));
        if allowed.is_some_and(|x| x.is_empty()) {
            return true;
        }
    }
    false
}

/// `client_ip` conditions: disjoint when an `==`/`in` of one side has no
/// block overlapping the other's `==`/`in` blocks, or lies wholly inside
/// the other's `!=` block.
fn nets_disjoint(a: &[Condition], b: &[Condition]) -> bool {
    let nets = |c: &Condition| -> Vec<ipnet::IpNet> {
        c.op.values()
            .iter()
            .filter_map(|v| gw_plan::condition::parse_net(v))
            .collect()
    };
    let overlap = |x: &ipnet::IpNet, y: &ipnet::IpNet| x.contains(&y.network()) || y.contains(&x.network());
    let ips = |l: &[Condition]| -> Vec<Condition> {
        l.iter()
            .filter(|c| c.subject.node == Reference::ClientIp)
            .cloned()
            .collect()
    };
    let (a, b) = (ips(a), ips(b));
    for x in &a {
        for y in &b {
            let inside = |p: &Condition, q: &Condition| match (&p.op, &q.op) {
                (CondOp::Eq(_) | CondOp::In(_), CondOp::Eq(_) | CondOp::In(_)) => {
                    !nets(p).iter().any(|n| nets(q).iter().any(|m| overlap(n, m)))
                }
                (CondOp::Eq(_) | CondOp::In(_), CondOp::Ne(_)) => {
                    nets(p).iter().all(|n| nets(q).iter().any(|m| m.contains(n)))
                }
                _ => false,
            };
            if inside(x, y) || inside(y, x) {
                return true;
            }
        }
    }
    false
}

fn overlap(route: &Route, earlier: &Route) -> Diagnostic {
    let span = |r: &Route| match (r.when.first(), r.when.last()) {
        (Some(f), Some(l)) => Span {
            start: f.span.start,
            end: l.span.end,
            ..f.span
        },
        _ => r.head_span,
    };
    Diagnostic::new(
        Code::GW0206,
        format!(
            "routes `{}` and `{}` may both take one request",
            describe_conditioned(earlier),
            describe_conditioned(route)
        ),
    )
    .primary(span(route), "a request could satisfy these conditions ...")
    .secondary(span(earlier), "... and these at once")
    .help("conditioned routes of one path and method must be disjoint: compare one reference with different values (`header.x-beta == \"1\"` and `header.x-beta == \"2\"`, or `in` lists with no value in common), or merge the routes")
}

/// `GET /search when header.x-beta == "1"`.
fn describe_conditioned(route: &Route) -> String {
    let conds: Vec<String> = route
        .when
        .iter()
        .filter_map(|c| gw_plan::Condition::new(c.subject.node.clone(), c.op.clone()).ok())
        .map(|c| c.to_string())
        .collect();
    format!("{} when {}", describe_route(route), conds.join(" and "))
}

// ------------------------------------------------------------------ GW0207

fn split_weights(route: &Route, diags: &mut Diagnostics) {
    let Some(split) = &route.split else { return };
    if split.sides.is_empty() {
        return;
    }
    let total: u32 = split.sides.iter().map(|s| s.weight.node).sum();
    if total == 100 {
        return;
    }
    let mut d = Diagnostic::new(
        Code::GW0207,
        format!("the weights of the split add up to {total}%, not 100%"),
    )
    .primary(split.span, format!("{total}% in all"));
    for s in &split.sides {
        d = d.secondary(s.weight.span, format!("`{}` takes {}%", s.upstream.node, s.weight.node));
    }
    let help = if total < 100 {
        format!(
            "give the missing {}% to a side, so that every request has one",
            100 - total
        )
    } else {
        format!(
            "take {}% off the sides: the shares of all requests add up to 100%",
            total - 100
        )
    };
    diags.push(d.help(help));
}

// ------------------------------------------------------------------ GW0208

fn condition_subjects(route: &Route, diags: &mut Diagnostics) {
    for c in &route.when {
        let why = match &c.subject.node {
            Reference::Claim(_) => "a route is chosen before its `auth` runs: no claims are verified yet",
            Reference::Param(_) => "a route's parameters exist only once the route is chosen",
            _ => continue,
        };
        diags.push(
            Diagnostic::new(
                Code::GW0208,
                format!("`{}` cannot be read in a route's condition", c.subject.node),
            )
            .primary(c.subject.span, why)
            .help("a condition reads what the request carries: `header.X`, `query.X`, `cookie.X` or `client_ip`; check claims with `require` in the route's block"),
        );
    }
}

// ------------------------------------------------------------------ GW0202

fn targets(ctx: &Ctx<'_>, route: &Route, diags: &mut Diagnostics) {
    let mut found: Vec<(Span, &str)> = Vec::new();
    if let Some(up) = &route.upstream {
        found.push((up.span, "`->` target"));
    }
    if let Some(a) = &route.aggregate {
        found.push((a.span, "`aggregate` target"));
    }
    if let Some(s) = &route.split {
        found.push((s.span, "`split` target"));
    }
    // Spans end at the last value: a statement's span may carry trailing blanks.
    if let Some(r) = &route.respond {
        let end = r.body.as_ref().map_or(r.status.span, |b| b.span);
        found.push((until(r.span, end), "`respond` target"));
    }
    if let Some(r) = &route.redirect {
        found.push((until(r.span, r.location.span), "`redirect` target"));
    }
    match found.as_slice() {
        [_] => {}
        [] => {
            // A `respond` or `redirect` whose value was wrong was dropped
            // (and reported): that route is not missing a target.
            if ctx.has_prior_error_in(route.span) {
                return;
            }
            diags.push(
                Diagnostic::new(Code::GW0202, format!("route `{}` has no target", describe_route(route)))
                    .primary(route.head_span, "where do these requests go?")
                    .help("add `-> UPSTREAM` to the route, or `respond STATUS`, `redirect ...`, `split { ... }` or `aggregate { ... }` to its block"),
            );
        }
        [first, rest @ ..] => {
            let mut d = Diagnostic::new(
                Code::GW0202,
                format!("route `{}` has {} targets", describe_route(route), found.len()),
            )
            .primary(route.head_span, "a route has exactly one target");
            for (span, what) in std::iter::once(first).chain(rest) {
                d = d.secondary(*span, format!("{what} here"));
            }
            diags.push(d.help("keep one of `-> UPSTREAM`, `split`, `aggregate`, `respond` and `redirect`; move the rest to routes of their own"));
        }
    }
}

// ------------------------------------------------------------------ GW0203

fn params(route: &Route, diags: &mut Diagnostics) {
    let path = &route.path.node;
    for_each_reference(route, |r| {
        let Reference::Param(name) = &r.node else { return };
        if path.params().any(|p| p == name) {
            return;
        }
        let names: Vec<&str> = path.params().collect();
        let typo = suggest(name, names.iter().copied());
        let help = match typo {
            Some(s) => format!("did you mean `param.{s}`?"),
            None if names.is_empty() => format!(
                "the path `{}` has no parameters; name a segment with `{{{name}}}` to capture it",
                path.raw
            ),
            None => {
                let list: Vec<String> = names.iter().map(|n| format!("`param.{n}`")).collect();
                format!("the path `{}` has {}", path.raw, list.join(", "))
            }
        };
        let d = Diagnostic::new(
            Code::GW0203,
            format!("`param.{name}` is not a parameter of the route's path `{}`", path.raw),
        )
        .primary(r.span, "not in the path")
        .secondary(route.path.span, "the route's path")
        .help(help);
        // The reference as written (`param.idd`) is the span.
        diags.push(match typo {
            Some(s) => d.suggest(r.span, format!("param.{s}")),
            None => d,
        });
    });
}

/// The first `client_cert.*` the route reads — in a `require`, a template,
/// or the key of one of its limits — for GW0507.
pub(crate) fn client_cert_reference(ctx: &Ctx<'_>, route: &Route) -> Option<crate::source::Span> {
    let mut first: Option<crate::source::Span> = None;
    for_each_reference(route, |r| {
        if matches!(r.node, Reference::ClientCert(_)) && first.is_none() {
            first = Some(r.span);
        }
    });
    if first.is_some() {
        return first;
    }
    route.limits.iter().find_map(|name| {
        let key = ctx.limit(&name.node)?.key.as_ref()?;
        matches!(&key.node, LimitKey::Ref(Reference::ClientCert(_))).then_some(name.span)
    })
}

// ------------------------------------------------------------------ GW0204

fn claims(ctx: &Ctx<'_>, route: &Route, diags: &mut Diagnostics) {
    let auth = ctx.route_auth(route);
    if matches!(auth, RouteAuth::Jwt | RouteAuth::Unknown) {
        return;
    }
    for_each_reference(route, |r| {
        if let Reference::Claim(_) = &r.node {
            let d = Diagnostic::new(
                Code::GW0204,
                format!("`{}` is read on a route without a `jwt` auth", r.node),
            )
            .primary(r.span, "no verified token to read claims from");
            diags.push(with_auth_context(ctx, auth, route, d));
        }
    });
    for name in &route.limits {
        let Some(limit) = ctx.limit(&name.node) else { continue };
        let Some(key) = &limit.key else { continue };
        let LimitKey::Ref(r @ Reference::Claim(_)) = &key.node else {
            continue;
        };
        let d = Diagnostic::new(
            Code::GW0204,
            format!(
                "limit `{}` is keyed on `{r}`, but this route has no `jwt` auth",
                name.node
            ),
        )
        .primary(name.span, "reads a claim through this limit")
        .secondary(key.span, format!("keyed on `{r}` here"));
        diags.push(with_auth_context(ctx, auth, route, d));
    }
}

fn with_auth_context(ctx: &Ctx<'_>, auth: RouteAuth<'_>, route: &Route, d: Diagnostic) -> Diagnostic {
    match auth {
        RouteAuth::ApiKey(a) => {
            let used = route.auth.as_ref().map(|n| n.span).unwrap_or(a.name.span);
            d.secondary(
                used,
                format!("`{}` is an `api_key` auth: it carries no claims", a.name.node),
            )
            .help("use a `jwt` auth on this route, or read a header (`header.X`) instead of a claim")
        }
        _ => match ctx.first_jwt_auth() {
            Some(jwt) => d.help(format!("add `auth {jwt}` (a `jwt` auth) to the route")),
            None => d.help(
                "claims come from a verified JWT: define `auth NAME jwt { ... }` and add `auth NAME` to the route",
            ),
        },
    }
}
