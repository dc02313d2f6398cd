//! Traffic settings of a route: `mirror` and a route's own `compress` only
//! where the route forwards to an upstream (GW0211), one top-level
//! `compress` (GW0105), and a mirror whose copies of writes would reach a
//! server that already took the original (GW0508, a warning).

use super::{describe_route, route_methods, Ctx};
use crate::ast::{Mirror, Route, RouteCompress};
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    for route in &ctx.config.routes {
        if let Some(m) = &route.mirror {
            mirror(ctx, route, m, diags);
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
