//! Checks over the whole configuration, one module per concern. Each adds
//! diagnostics and never stops at the first problem; they run even when
//! lowering found errors, so one run reports everything.
//!
//! - [`names`]: every name resolves (GW0101), is defined once (GW0102) and is
//!   used (GW0501).
//! - [`routes`]: route collisions (GW0201), targets (GW0202), `param.*`
//!   (GW0203) and `claim.*` (GW0204).
//! - [`upstreams`]: usable servers (GW0301) and `hash(claim.*)` reachability
//!   (GW0302).
//! - [`auth`]: algorithms (GW0401), key material (GW0402), inline secrets
//!   (GW0505), read through [`material`] (GW0404).
//! - [`listen`]: listen addresses (GW0205), TLS certificates (GW0403) and
//!   credentials over plain HTTP (GW0503).
//! - [`upstream_tls`]: an upstream's `tls` files (GW0405).
//! - [`resilience`]: retries on non-idempotent routes (GW0502) and timeouts
//!   that contradict each other (GW0504).
//! - [`traffic`]: `mirror` only on forwarding routes (GW0211), and not of
//!   writes onto the servers that take the original (GW0508).
//!
//! Architecture invariant: checks read files and variables only through the
//! [`Host`], and are total — no input makes them panic. Every pass is linear
//! in the size of the configuration (names are looked up in hash maps).

mod auth;
mod listen;
mod material;
mod names;
mod pem;
mod resilience;
mod routes;
mod traffic;
mod upstream_tls;
mod upstreams;

use crate::ast::{Auth, AuthKind, Config, Limit, Method, Retry, Route, Upstream};
use crate::diagnostic::Diagnostics;
use crate::host::Host;
use crate::source::{SourceMap, Span};
use std::time::Duration;

/// Runs every check.
pub fn check(host: &dyn Host, sources: &SourceMap, config: &Config, diags: &mut Diagnostics) {
    let mut prior_errors: Vec<Span> = diags.iter().filter(|d| d.is_error()).filter_map(|d| d.span()).collect();
    prior_errors.sort_unstable();
    let names = names::Names::build(config, diags);
    let ctx = Ctx {
        host,
        sources,
        config,
        names,
        prior_errors,
    };
    names::check(&ctx, diags);
    routes::check(&ctx, diags);
    upstreams::check(&ctx, diags);
    upstream_tls::check(&ctx, diags);
    auth::check(&ctx, diags);
    listen::check(&ctx, diags);
    resilience::check(&ctx, diags);
    traffic::check(&ctx, diags);
}

/// What every check shares: the configuration, its names, and the host.
pub(crate) struct Ctx<'a> {
    pub host: &'a dyn Host,
    pub sources: &'a SourceMap,
    pub config: &'a Config,
    pub names: names::Names<'a>,
    /// Spans of the errors found before checking began (lowering), sorted. A
    /// check whose subject already has an error inside it stays quiet when
    /// its finding could be a consequence of that error (a `server` dropped
    /// for a bad address is not "an upstream with no servers").
    prior_errors: Vec<Span>,
}

/// The auth a route names, as far as claims are concerned.
#[derive(Clone, Copy)]
pub(crate) enum RouteAuth<'a> {
    /// No `auth` line.
    None,
    Jwt,
    ApiKey(&'a Auth),
    /// Names an auth that does not exist (already GW0101).
    Unknown,
}

impl<'a> Ctx<'a> {
    pub fn upstream(&self, name: &str) -> Option<&'a Upstream> {
        self.names
            .upstreams
            .get(name)
            .and_then(|&i| self.config.upstreams.get(i))
    }

    pub fn auth(&self, name: &str) -> Option<&'a Auth> {
        self.names.auths.get(name).and_then(|&i| self.config.auths.get(i))
    }

    pub fn limit(&self, name: &str) -> Option<&'a Limit> {
        self.names
            .limits
            .get(name)
            .and_then(|&i| self.config.rate_limits.get(i))
    }

    pub fn route_auth(&self, route: &Route) -> RouteAuth<'a> {
        let Some(name) = &route.auth else {
            return RouteAuth::None;
        };
        match self.auth(&name.node) {
            Some(Auth {
                kind: AuthKind::Jwt(_), ..
            }) => RouteAuth::Jwt,
            Some(a) => RouteAuth::ApiKey(a),
            None => RouteAuth::Unknown,
        }
    }

    /// Whether lowering reported any error (and so may have dropped part of
    /// the configuration).
    pub fn had_prior_errors(&self) -> bool {
        !self.prior_errors.is_empty()
    }

    /// Whether an error was reported inside `span` before checking began.
    pub fn has_prior_error_in(&self, span: Span) -> bool {
        let from = Span {
            file: span.file,
            start: span.start,
            end: 0,
        };
        let i = self.prior_errors.partition_point(|e| *e < from);
        self.prior_errors
            .get(i)
            .is_some_and(|e| e.file == span.file && e.start < span.end.max(span.start.saturating_add(1)))
    }

    /// The first `jwt` auth, for "add `auth users`" help lines.
    pub fn first_jwt_auth(&self) -> Option<&'a str> {
        self.config
            .auths
            .iter()
            .find(|a| matches!(a.kind, AuthKind::Jwt(_)))
            .map(|a| a.name.node.as_str())
    }
}

/// A route as its head reads, for messages: `GET,HEAD /orders/{id}`,
/// `/x host "api.example.com"`.
pub(crate) fn describe_route(route: &Route) -> String {
    let mut s = String::new();
    if let Some(methods) = &route.methods {
        let list: Vec<&str> = methods.node.iter().map(|m| m.as_str()).collect();
        s.push_str(&list.join(","));
        s.push(' ');
    }
    s.push_str(&route.path.node.raw);
    if let Some(host) = &route.host {
        s.push_str(&format!(" host \"{}\"", host.node));
    }
    s
}

/// `span` cut to end where `last` ends. A statement's span can run over
/// the blanks after its last value (`retry 2 on 503` followed by a newline);
/// labels end at the last value instead.
pub(crate) fn until(span: Span, last: Span) -> Span {
    if last.file == span.file && last.end >= span.start && last.end <= span.end {
        Span { end: last.end, ..span }
    } else {
        span
    }
}

/// The span of a `retry` statement, up to its last value.
pub(crate) fn retry_span(retry: &Retry) -> Span {
    let last = retry
        .budget
        .as_ref()
        .map(|b| b.span)
        .or_else(|| retry.on.last().map(|o| o.span))
        .unwrap_or(retry.attempts.span);
    until(retry.span, last)
}

/// Methods of a route; `None` is every method.
pub(crate) fn route_methods(route: &Route) -> Option<&[Method]> {
    route.methods.as_ref().map(|m| m.node.as_slice())
}

/// A duration as the language writes it: `500ms`, `3s`, `1m30s`, `1h`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    let h = total_ms / 3_600_000;
    let m = total_ms / 60_000 % 60;
    let s = total_ms / 1000 % 60;
    let ms = total_ms % 1000;
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fmt_duration;
    use std::time::Duration;

    #[test]
    fn durations_print_as_the_language_writes_them() {
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(fmt_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2s500ms");
    }
}
