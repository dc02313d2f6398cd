//! Counters for `/metrics`, all atomics: the request path never locks.
//! Per-route counters live in a vector indexed like the plan's routes and
//! are carried over a reload for routes whose head is unchanged.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Latency histogram bucket bounds, in seconds.
pub(crate) const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
pub struct RouteMetrics {
    /// Responses by status class: index 1..=5 for 1xx..5xx.
    pub by_class: [AtomicU64; 6],
    pub buckets: [AtomicU64; BUCKETS.len()],
    pub count: AtomicU64,
    pub sum_micros: AtomicU64,
}

impl RouteMetrics {
    pub fn record(&self, status: u16, micros: u64) {
        let class = usize::from(status / 100).min(5);
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let secs = micros as f64 / 1e6;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Why the gateway itself refused or failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    NotFound,
    MethodNotAllowed,
    BadRequest,
    Unauthorized,
    Forbidden,
    RateLimited,
    BodyTooLarge,
    NoServer,
    ConnectError,
    Timeout,
    UpstreamError,
    /// A connection refused at accept: `max_connections` were open.
    TooManyConnections,
    /// A client that did not send its request head within `header_timeout`.
    HeaderTimeout,
    /// A request head over `max_header_size` (431).
    HeaderTooLarge,
    /// A TLS handshake that failed or did not finish within `header_timeout`.
    TlsHandshake,
    /// A request body in a transfer coding the gateway does not implement (501).
    NotImplemented,
}

impl Rejection {
    pub const ALL: [Rejection; 16] = [
        Rejection::NotFound,
        Rejection::MethodNotAllowed,
        Rejection::BadRequest,
        Rejection::Unauthorized,
        Rejection::Forbidden,
        Rejection::RateLimited,
        Rejection::BodyTooLarge,
        Rejection::NoServer,
        Rejection::ConnectError,
        Rejection::Timeout,
        Rejection::UpstreamError,
        Rejection::TooManyConnections,
        Rejection::HeaderTimeout,
        Rejection::HeaderTooLarge,
        Rejection::TlsHandshake,
        Rejection::NotImplemented,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::BadRequest => "bad_request",
            Rejection::Unauthorized => "unauthorized",
            Rejection::Forbidden => "forbidden",
            Rejection::RateLimited => "rate_limited",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::NoServer => "no_server",
            Rejection::ConnectError => "connect_error",
            Rejection::Timeout => "timeout",
            Rejection::UpstreamError => "upstream_error",
            Rejection::TooManyConnections => "max_connections",
            Rejection::HeaderTimeout => "header_timeout",
            Rejection::HeaderTooLarge => "header_too_large",
            Rejection::TlsHandshake => "tls_handshake",
            Rejection::NotImplemented => "not_implemented",
        }
    }
}

/// Process-wide counters (survive reloads).
#[derive(Debug, Default)]
pub struct Metrics {
    pub open_connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub rejections: [AtomicU64; Rejection::ALL.len()],
    pub retries: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Requests that matched no route (404/405/400).
    pub unmatched: RouteMetrics,
    /// Copies made by routes' `mirror`.
    pub mirror: MirrorMetrics,
}

/// What became of the copies `mirror` chose to make.
#[derive(Debug, Default)]
pub struct MirrorMetrics {
    /// The mirror upstream answered (any status; the answer is discarded).
    pub answered: AtomicU64,
    /// No answer: no usable server, a refused connect, a timeout, a reset.
    pub failed: AtomicU64,
    /// Not sent: the route had as many copies in flight as it may.
    pub dropped: AtomicU64,
    /// Not sent: the request's body was over the mirror's bound (or did not
    /// all come within it).
    pub skipped: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, r: Rejection) {
        self.rejections[r as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// One route's label and counters, for rendering.
pub(crate) struct RouteSample<'a> {
    pub route: &'a str,
    pub metrics: &'a Arc<RouteMetrics>,
}

/// One upstream server's state, for rendering.
pub(crate) struct ServerSample<'a> {
    pub upstream: &'a str,
    pub server: &'a str,
    pub healthy: bool,
    pub ejected: bool,
    pub in_flight: u32,
    /// Failed TLS handshakes with the server (`tls` upstreams).
    pub tls_errors: u64,
}

/// One `limit` kept in this gateway's memory, for rendering.
pub(crate) struct LimitSample<'a> {
    pub limit: &'a str,
    /// Keys with a budget of their own now.
    pub keys: usize,
    /// Checks counted against the overflow budget (`max_keys` reached).
    pub overflowed: u64,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn route_lines(out: &mut String, label: &str, m: &RouteMetrics) {
    let l = escape(label);
    for (class, c) in m.by_class.iter().enumerate().skip(1) {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            let _ = writeln!(out, "gw_requests_total{{route=\"{l}\",status=\"{class}xx\"}} {n}");
        }
    }
    let mut cumulative = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        cumulative += m.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "gw_request_duration_seconds_bucket{{route=\"{l}\",le=\"{b}\"}} {cumulative}"
        );
    }
    let count = m.count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "gw_request_duration_seconds_bucket{{route=\"{l}\",le=\"+Inf\"}} {count}"
    );
    let sum = m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "gw_request_duration_seconds_sum{{route=\"{l}\"}} {sum}");
    let _ = writeln!(out, "gw_request_duration_seconds_count{{route=\"{l}\"}} {count}");
}

/// The Prometheus text exposition.
pub(crate) fn render(
    metrics: &Metrics,
    routes: &[RouteSample<'_>],
    servers: &[ServerSample<'_>],
    limits: &[LimitSample<'_>],
) -> String {
    let mut out = String::new();
    out.push_str("# HELP gw_requests_total Requests answered, by route and status class.\n");
    out.push_str("# TYPE gw_requests_total counter\n");
    out.push_str("# HELP gw_request_duration_seconds Time from request head to response head.\n");
    out.push_str("# TYPE gw_request_duration_seconds histogram\n");
    for r in routes {
        route_lines(&mut out, r.route, r.metrics);
    }
    route_lines(&mut out, "", &metrics.unmatched);
    out.push_str("# HELP gw_upstream_server_healthy 1 when the server is healthy and not ejected.\n");
    out.push_str("# TYPE gw_upstream_server_healthy gauge\n");
    for s in servers {
        let up = u8::from(s.healthy && !s.ejected);
        let _ = writeln!(
            out,
            "gw_upstream_server_healthy{{upstream=\"{}\",server=\"{}\"}} {up}",
            escape(s.upstream),
            escape(s.server)
        );
    }
    out.push_str("# HELP gw_upstream_server_in_flight Requests in flight to the server.\n");
    out.push_str("# TYPE gw_upstream_server_in_flight gauge\n");
    for s in servers {
        let _ = writeln!(
            out,
            "gw_upstream_server_in_flight{{upstream=\"{}\",server=\"{}\"}} {}",
            escape(s.upstream),
            escape(s.server),
            s.in_flight
        );
    }
    out.push_str(
        "# HELP gw_upstream_tls_errors_total TLS handshakes with the server that failed (certificate not verified, refused, ...).\n",
    );
    out.push_str("# TYPE gw_upstream_tls_errors_total counter\n");
    for s in servers {
        let _ = writeln!(
            out,
            "gw_upstream_tls_errors_total{{upstream=\"{}\",server=\"{}\"}} {}",
            escape(s.upstream),
            escape(s.server),
            s.tls_errors
        );
    }
    out.push_str("# HELP gw_limit_keys Keys with a budget of their own, by limit (kept in memory).\n");
    out.push_str("# TYPE gw_limit_keys gauge\n");
    for l in limits {
        let _ = writeln!(out, "gw_limit_keys{{limit=\"{}\"}} {}", escape(l.limit), l.keys);
    }
    out.push_str(
        "# HELP gw_limit_overflow_total Requests counted against a limit's shared overflow budget (max_keys reached).\n",
    );
    out.push_str("# TYPE gw_limit_overflow_total counter\n");
    for l in limits {
        let _ = writeln!(
            out,
            "gw_limit_overflow_total{{limit=\"{}\"}} {}",
            escape(l.limit),
            l.overflowed
        );
    }
    let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    gauge(
        &mut out,
        "gw_open_connections",
        "Client connections open now.",
        "gauge",
        metrics.open_connections.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "gw_connections_total",
        "Client connections accepted.",
        "counter",
        metrics.connections_total.load(Ordering::Relaxed),
    );
    out.push_str("# HELP gw_mirror_copies_total Copies chosen by routes' mirror, by what became of them.\n");
    out.push_str("# TYPE gw_mirror_copies_total counter\n");
    for (outcome, n) in [
        ("answered", &metrics.mirror.answered),
        ("failed", &metrics.mirror.failed),
        ("dropped", &metrics.mirror.dropped),
        ("skipped", &metrics.mirror.skipped),
    ] {
        let _ = writeln!(
            out,
            "gw_mirror_copies_total{{outcome=\"{outcome}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    gauge(
        &mut out,
        "gw_retries_total",
        "Requests retried on another server.",
        "counter",
        metrics.retries.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "gw_reloads_total",
        "Plans swapped in by hot reload.",
        "counter",
        metrics.reloads.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "gw_reload_failures_total",
        "Reloads refused (the old plan kept serving).",
        "counter",
        metrics.reload_failures.load(Ordering::Relaxed),
    );
    out.push_str("# HELP gw_rejections_total Requests refused or failed by the gateway, by reason.\n");
    out.push_str("# TYPE gw_rejections_total counter\n");
    for r in Rejection::ALL {
        let _ = writeln!(
            out,
            "gw_rejections_total{{reason=\"{}\"}} {}",
            r.as_str(),
            metrics.rejections[r as usize].load(Ordering::Relaxed)
        );
    }
    out
}
