//! Resilience settings that may surprise: a route-level `retry` on a route
//! that accepts non-idempotent methods (GW0502), and settings that contradict
//! each other (GW0504): retries that cannot fit in the route's timeout, a
//! health check whose `timeout` is not shorter than its `interval`, and a
//! limit's `max_keys` (a bound on the keys in this gateway's memory) on a
//! limit whose budgets are kept in a `store`. All are warnings.

use super::{describe_route, fmt_duration, retry_span, route_methods, Ctx};
use crate::ast::{Limit, Retry, Route, Upstream};
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::Spanned;
use std::time::Duration;

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    for route in &ctx.config.routes {
        retry_methods(route, diags);
        route_timeouts(ctx, route, diags);
    }
    for up in &ctx.config.upstreams {
        health(up, diags);
    }
    for limit in &ctx.config.rate_limits {
        max_keys_in_store(limit, diags);
    }
}

// ------------------------------------------------------------------ GW0502

fn retry_methods(route: &Route, diags: &mut Diagnostics) {
    let Some(retry) = &route.retry else { return };
    if retry.attempts.node == 0 {
        return;
    }
    let (message, help) = match route_methods(route) {
        None => (
            format!("route `{}` accepts every method and retries them all", describe_route(route)),
            "a retried `POST` or `PATCH` may take effect twice upstream; name the idempotent methods (`route GET,PUT ...`), or remove `retry`".to_string(),
        ),
        Some(methods) => {
            let unsafe_: Vec<String> = methods
                .iter()
                .filter(|m| !m.is_idempotent())
                .map(|m| format!("`{}`", m.as_str()))
                .collect();
            if unsafe_.is_empty() {
                return;
            }
            (
                format!(
                    "route `{}` retries non-idempotent {} requests",
                    describe_route(route),
                    unsafe_.join(", ")
                ),
                "a retried request may take effect twice upstream; remove `retry`, or make the upstream deduplicate (an idempotency key); `reset` never retries them".to_string(),
            )
        }
    };
    diags.push(
        Diagnostic::new(Code::GW0502, message)
            .primary(retry_span(retry), "retries every method of the route")
            .help(help),
    );
}

// ------------------------------------------------------------------ GW0504

/// `(1 + retries) × upstream timeout` against the timeout the route sets,
/// with the route's `retry` if it has one, else the upstream's; for an
/// aggregate, each part against the aggregate's timeout (or the route's).
///
/// Only when retries are configured: a route timeout shorter than one
/// upstream attempt is how a route tightens an upstream's timeout (it
/// overrides it), not a contradiction. With retries, the later attempts
/// could never run.
fn route_timeouts(ctx: &Ctx<'_>, route: &Route, diags: &mut Diagnostics) {
    if let (Some(limit), Some(up)) = (&route.timeout, &route.upstream) {
        if let Some(up) = ctx.upstream(&up.node) {
            attempts_fit(route, up, limit, "the timeout", diags);
        }
    }
    if let Some(agg) = &route.aggregate {
        let Some(limit) = agg.timeout.as_ref().or(route.timeout.as_ref()) else {
            return;
        };
        for part in &agg.parts {
            if let Some(up) = ctx.upstream(&part.upstream.node) {
                attempts_fit(route, up, limit, "the aggregate timeout", diags);
            }
        }
    }
}

fn attempts_fit(route: &Route, up: &Upstream, limit: &Spanned<Duration>, whose: &str, diags: &mut Diagnostics) {
    let Some(per_try) = &up.timeout else { return };
    let retry: Option<&Retry> = route.retry.as_ref().or(up.retry.as_ref());
    let Some(retry) = retry else { return };
    let retries = retry.attempts.node;
    if retries == 0 {
        return;
    }
    let Some(total) = per_try.node.checked_mul(retries.saturating_add(1)) else {
        return;
    };
    if total <= limit.node {
        return;
    }
    let owner = format!("route `{}`", describe_route(route));
    diags.push(
        Diagnostic::new(
            Code::GW0504,
            format!(
                "(1 + {retries} retries) × upstream `{}` timeout {} = {} exceeds {whose} {} of {owner}",
                up.name.node,
                fmt_duration(per_try.node),
                fmt_duration(total),
                fmt_duration(limit.node)
            ),
        )
        .primary(limit.span, "cuts the retries short")
        .secondary(per_try.span, "each attempt may take this long")
        .secondary(retry_span(retry), "retried here")
        .help(format!(
            "lower upstream `{}`'s timeout to at most {}, retry less, or raise {whose}",
            up.name.node,
            fmt_duration(limit.node / (retries.saturating_add(1)))
        )),
    );
}

fn health(up: &Upstream, diags: &mut Diagnostics) {
    let Some(h) = &up.health else { return };
    let (Some(timeout), Some(interval)) = (&h.timeout, &h.interval) else {
        return;
    };
    if timeout.node < interval.node {
        return;
    }
    diags.push(
        Diagnostic::new(
            Code::GW0504,
            format!(
                "health check of upstream `{}` waits {} for a check run every {}",
                up.name.node,
                fmt_duration(timeout.node),
                fmt_duration(interval.node)
            ),
        )
        .primary(timeout.span, "not shorter than the interval")
        .secondary(interval.span, "checks start this often")
        .help("make the health `timeout` shorter than its `interval`"),
    );
}

/// `max_keys` bounds the keys a limit keeps in this gateway's memory; a
/// limit with a `store` keeps them in Redis, so the bound does nothing.
fn max_keys_in_store(limit: &Limit, diags: &mut Diagnostics) {
    let (Some(max_keys), Some(store)) = (&limit.max_keys, &limit.store) else {
        return;
    };
    diags.push(
        Diagnostic::new(
            Code::GW0504,
            format!(
                "`max_keys` has no effect on limit `{}`: its budgets are kept in store `{}`",
                limit.name.node, store.node
            ),
        )
        .primary(max_keys.span, "bounds the keys kept in this gateway's memory")
        .secondary(store.span, "the budgets are kept in Redis")
        .help("remove `max_keys`, or `store` to keep the budgets in this gateway's memory"),
    );
}
