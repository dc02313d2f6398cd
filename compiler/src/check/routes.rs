//! Routes: no two claim the same requests with equal precedence (GW0201),
//! each has exactly one target (GW0202), every `param.X` names a parameter of
//! its path (GW0203), and every `claim.X` it reads — in a `require`, a
//! template, or the key of one of its limits — is under a `jwt` auth
//! (GW0204).

use super::{describe_route, until, Ctx, RouteAuth};
use crate::ast::{LimitKey, Method, Reference, Route, Segment};
use crate::codes::Code;
use crate::diagnostic::{suggest, Diagnostic, Diagnostics};
use crate::source::{Span, Spanned};
use std::collections::HashMap;

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    collisions(&ctx.config.routes, diags);
    for route in &ctx.config.routes {
        targets(ctx, route, diags);
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

// ------------------------------------------------------------------ GW0202

fn targets(ctx: &Ctx<'_>, route: &Route, diags: &mut Diagnostics) {
    let mut found: Vec<(Span, &str)> = Vec::new();
    if let Some(up) = &route.upstream {
        found.push((up.span, "`->` target"));
    }
    if let Some(a) = &route.aggregate {
        found.push((a.span, "`aggregate` target"));
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
                    .help("add `-> UPSTREAM` to the route, or `respond STATUS`, `redirect ...` or `aggregate { ... }` to its block"),
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
            diags.push(d.help("keep one of `-> UPSTREAM`, `aggregate`, `respond` and `redirect`; split the rest into their own routes"));
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
