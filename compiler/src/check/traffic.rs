//! Traffic settings of a route: `mirror` and a route's own `compress` only
//! where the route forwards to an upstream (GW0211), one top-level
//! `compress` (GW0105), and a mirror whose copies of writes would reach a
//! server that already took the original (GW0508, a warning). A route's
//! `cache` only where the route forwards (GW0211) and where one caller's
//! answer cannot be another's: no `auth`, no transform that puts the
//! caller's identity in the request (GW0210).

use super::{describe_route, route_methods, Ctx};
use crate::ast::{Cache, Direction, Mirror, Route, RouteCompress};
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use gw_plan::words::Reference;

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    for route in &ctx.config.routes {
        if let Some(m) = &route.mirror {
            mirror(ctx, route, m, diags);
        }
        if let Some(c) = &route.cache {
            cache(route, c, diags);
        }
        if let Some(RouteCompress::On(c)) = route.compress.as_deref() {
            if let Some(t) = answered_here(route) {
                diags.push(
                    Diagnostic::new(
                        Code::GW0211,
                        format!(
                            "route `{}` compresses answers the gateway makes itself",
                            describe_route(route)
                        ),
                    )
                    .primary(c.span, "no upstream answer to compress")
                    .help(format!(
                        "the gateway answers this route itself (`{t}`); `compress` applies to answers passed on from an upstream"
                    )),
                );
            }
        }
    }
    if let [first, second, ..] = ctx.config.compress.as_slice() {
        diags.push(
            Diagnostic::new(Code::GW0105, "`compress` given twice at the top level")
                .primary(second.span, "given again")
                .secondary(first.span, "first given here")
                .help("keep one top-level `compress` block; a route can have its own"),
        );
    }
}

// ------------------------------------------------------------ GW0210, GW0211

/// A cache keeps one answer for every caller: not on a route whose answer
/// depends on who calls.
fn cache(route: &Route, c: &Cache, diags: &mut Diagnostics) {
    if let Some(t) = answered_here(route) {
        diags.push(
            Diagnostic::new(
                Code::GW0211,
                format!(
                    "route `{}` caches answers the gateway makes itself",
                    describe_route(route)
                ),
            )
            .primary(c.span, "no upstream answer to cache")
            .help(format!(
                "the gateway answers this route itself (`{t}`); `cache` keeps answers passed on from an upstream"
            )),
        );
        return;
    }
    if let Some(auth) = &route.auth {
        diags.push(
            Diagnostic::new(
                Code::GW0210,
                format!(
                    "route `{}` caches answers to authenticated callers",
                    describe_route(route)
                ),
            )
            .primary(c.span, "one caller's answer would be served to another")
            .secondary(auth.span, "callers are told apart here")
            .help("remove `cache`, or serve the public part of the API on a route without `auth`"),
        );
        return;
    }
    let identity = route
        .transforms
        .iter()
        .filter(|t| t.direction == Direction::Request)
        .filter_map(|t| t.value.as_ref())
        .flat_map(|v| v.node.references())
        .find(|r| {
            matches!(&r.node, Reference::Claim(_) | Reference::ClientCert(_))
                || matches!(&r.node, Reference::Header(h) if h == "authorization")
        });
    if let Some(r) = identity {
        diags.push(
            Diagnostic::new(
                Code::GW0210,
                format!(
                    "route `{}` caches answers to requests that carry the caller's identity",
                    describe_route(route)
                ),
            )
            .primary(c.span, "one caller's answer would be served to another")
            .secondary(r.span, format!("`{}` puts who calls in the request", r.node))
            .help("the cache's key does not hold this value: remove `cache`, or the transform"),
        );
    }
}

/// What makes the route's answer at the gateway, if something does.
fn answered_here(route: &Route) -> Option<&'static str> {
    if route.aggregate.is_some() {
        Some("aggregate")
    } else if route.respond.is_some() {
        Some("respond")
    } else if route.redirect.is_some() {
        Some("redirect")
    } else {
        None
    }
}

// ------------------------------------------------------------ GW0211, GW0508

fn mirror(ctx: &Ctx<'_>, route: &Route, m: &Mirror, diags: &mut Diagnostics) {
    let target = answered_here(route);
    let Some(own) = &route.upstream else {
        // No target at all is GW0202's; a gateway-made answer has nothing to copy.
        if let Some(t) = target {
            diags.push(
                Diagnostic::new(
                    Code::GW0211,
                    format!("route `{}` mirrors requests it does not forward", describe_route(route)),
                )
                .primary(m.span, "no request goes upstream to copy")
                .help(format!(
                    "the gateway answers this route itself (`{t}`); `mirror` copies requests sent to an upstream (`-> NAME`)"
                )),
            );
        }
        return;
    };
    let writes = match route_methods(route) {
        None => true,
        Some(methods) => methods.iter().any(|m| !m.is_idempotent()),
    };
    if !writes || target.is_some() {
        return;
    }
    let (Some(a), Some(b)) = (ctx.upstream(&own.node), ctx.upstream(&m.upstream.node)) else {
        return;
    };
    let shared = a
        .servers
        .iter()
        .find(|s| b.servers.iter().any(|t| t.address.node == s.address.node));
    let Some(server) = shared else { return };
    let message = if own.node == m.upstream.node {
        format!(
            "route `{}` mirrors its writes to its own upstream `{}`",
            describe_route(route),
            own.node
        )
    } else {
        format!(
            "route `{}` mirrors its writes to `{}`, which shares server `{}` with `{}`",
            describe_route(route),
            m.upstream.node,
            server.address.node,
            own.node
        )
    };
    diags.push(
        Diagnostic::new(Code::GW0508, message)
            .primary(m.span, "copies of non-idempotent requests")
            .secondary(server.address.span, "the original goes to this server too")
            .help("a copied `POST` takes effect twice on the same server; mirror to a separate shadow upstream, or name the idempotent methods (`route GET,HEAD ...`)"),
    );
}
