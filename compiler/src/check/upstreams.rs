//! Upstream pools: each has a server to send to when all is well (GW0301),
//! and one balanced by `hash(claim.*)` is reached only by requests that carry
//! a verified token (GW0302). `hash(header.*)`, `hash(query.*)` and
//! `hash(cookie.*)` fall back to round robin when the key is absent, so they
//! are never an error.

use super::{describe_route, Ctx, RouteAuth};
use crate::ast::{Balance, ListenKind, Reference, Upstream};
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::Spanned;

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    for up in &ctx.config.upstreams {
        servers(ctx, up, diags);
    }
    claim_hashes(ctx, diags);
}

// ------------------------------------------------------------------ GW0301

fn servers(ctx: &Ctx<'_>, up: &Upstream, diags: &mut Diagnostics) {
    let name = &up.name.node;
    if up.servers.is_empty() {
        // A `server` dropped for a bad address was reported already.
        if ctx.has_prior_error_in(up.span) {
            return;
        }
        diags.push(
            Diagnostic::new(Code::GW0301, format!("upstream `{name}` has no servers"))
                .primary(up.name.span, "nowhere to send requests")
                .help("add a server: `server 127.0.0.1:9000`"),
        );
    } else if up.servers.iter().all(|s| s.backup.is_some()) {
        let mut d = Diagnostic::new(Code::GW0301, format!("upstream `{name}` has only backup servers"))
            .primary(up.name.span, "no primary server");
        for s in &up.servers {
            if let Some(b) = s.backup {
                d = d.secondary(b, "backup");
            }
        }
        diags.push(
            d.help("a backup server is used only when no primary is healthy; remove `backup` from at least one server"),
        );
    }
}

// ------------------------------------------------------------------ GW0302

/// The `hash(claim.*)` key of an upstream, if it is balanced by one.
fn claim_key(up: &Upstream) -> Option<&Spanned<Reference>> {
    match &up.balance {
        Some(Spanned {
            node:
                Balance::Hash(
                    r @ Spanned {
                        node: Reference::Claim(_),
                        ..
                    },
                ),
            ..
        }) => Some(r),
        _ => None,
    }
}

fn claim_hashes(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    let any = ctx.config.upstreams.iter().any(|u| claim_key(u).is_some());
    if !any {
        return;
    }
    let hashed = |name: &str| ctx.upstream(name).and_then(|u| claim_key(u).map(|k| (u, k)));
    for route in &ctx.config.routes {
        let auth = ctx.route_auth(route);
        if matches!(auth, RouteAuth::Jwt | RouteAuth::Unknown) {
            continue;
        }
        let names = route
            .upstream
            .iter()
            .chain(route.aggregate.iter().flat_map(|a| a.parts.iter().map(|p| &p.upstream)))
            .chain(route.split.iter().flat_map(|s| s.sides.iter().map(|s| &s.upstream)));
        for name in names {
            let Some((up, key)) = hashed(&name.node) else { continue };
            let mut d = Diagnostic::new(
                Code::GW0302,
                format!(
                    "upstream `{}` is balanced by `hash({})`, but route `{}` has no `jwt` auth",
                    up.name.node,
                    key.node,
                    describe_route(route)
                ),
            )
            .primary(name.span, "requests without a verified token are sent here")
            .secondary(key.span, "hashed on a claim here");
            if let RouteAuth::ApiKey(a) = auth {
                let used = route.auth.as_ref().map(|n| n.span).unwrap_or(a.name.span);
                d = d.secondary(
                    used,
                    format!("`{}` is an `api_key` auth: it carries no claims", a.name.node),
                );
            }
            let help = match ctx.first_jwt_auth() {
                Some(jwt) => format!(
                    "add `auth {jwt}` (a `jwt` auth) to the route, or balance on a header: `hash(header.x-user-id)`"
                ),
                None => "protect the route with a `jwt` auth, or balance on a header: `hash(header.x-user-id)`".into(),
            };
            diags.push(d.help(help));
        }
    }
    for listen in &ctx.config.listens {
        let ListenKind::Tcp { upstream } = &listen.kind else {
            continue;
        };
        let Some((up, key)) = hashed(&upstream.node) else {
            continue;
        };
        diags.push(
            Diagnostic::new(
                Code::GW0302,
                format!(
                    "upstream `{}` is balanced by `hash({})`, but raw TCP from `listen {}` carries no claims",
                    up.name.node, key.node, listen.address.node
                ),
            )
            .primary(upstream.span, "TCP connections are sent here")
            .secondary(key.span, "hashed on a claim here")
            .help("balance a TCP upstream with `ip_hash`, `least_conn` or `round_robin`"),
        );
    }
}
