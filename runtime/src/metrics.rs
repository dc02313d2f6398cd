//! What `/metrics` shows, and how it is counted and exposed.
//!
//! Counting is the gateway's own, all atomics: the request path never locks
//! and never allocates to count. Every series a request touches is made
//! before the request: a route's counters when its plan is loaded
//! ([`RouteMetrics`], indexed like the plan's routes and carried over a
//! reload for routes whose head is unchanged), a server's in its state
//! ([`ServerMetrics`], kept while the server is), an upstream's retries in
//! [`UpstreamMetrics`] (carried over a reload by name), a listener's
//! connections in [`ListenerConns`]. A request's exact status goes into a
//! small lock-free table of its route ([`StatusTable`]): no label set is
//! looked up or built per request.
//!
//! Exposition is the `prometheus-client` crate's (the Prometheus project's
//! own Rust client): at each scrape one [`Collector`] walks the running plan
//! and encodes every family through the crate's encoders, the Prometheus
//! text format (0.0.4) by default and OpenMetrics when the scraper's
//! `Accept` asks for `application/openmetrics-text`. The crate, not this
//! file, gets the formats right: one HELP/TYPE per family with all its
//! samples together, `_total` and histogram suffixes, label escaping, `#
//! EOF`. It was chosen over `metrics` + `metrics-exporter-prometheus`, whose
//! recorder is process-global (several gateways share a test process),
//! whose histograms are kept as samples drained by an upkeep task (memory
//! that grows between scrapes), and which writes no OpenMetrics. Its own
//! `Family` (a lock and a map lookup per update) and `Histogram` (a lock
//! per observation) are not used on the request path: the gateway's atomics
//! are read at scrape time instead.
//!
//! Labels stay bounded: a route is named by its head (methods, path
//! pattern, host: `GET /orders/{id}`), never by the request's path; a
//! method the language does not name is `other`; a server is named by its
//! address as written.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Latency histogram bucket bounds, in seconds.
pub(crate) const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram: one atomic per bucket, no lock.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, micros: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let secs = micros as f64 / 1e6;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Each bucket's own count (the encoder adds them up), then `+Inf`'s:
        // the count is read last, so it is never below the finite buckets.
        let mut buckets = [(f64::INFINITY, 0u64); BUCKETS.len() + 1];
        let mut finite = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            finite += n;
            buckets[i] = (*bound, n);
        }
        let count = self.count().max(finite);
        buckets[BUCKETS.len()] = (f64::INFINITY, count - finite);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// The methods the language names, then `other`: a request's method as a
/// label.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other",
];

/// The index in [`METHODS`] of a request's method.
pub fn method_index(m: &hyper::Method) -> usize {
    match *m {
        hyper::Method::GET => 0,
        hyper::Method::HEAD => 1,
        hyper::Method::POST => 2,
        hyper::Method::PUT => 3,
        hyper::Method::PATCH => 4,
        hyper::Method::DELETE => 5,
        hyper::Method::OPTIONS => 6,
        hyper::Method::CONNECT => 7,
        hyper::Method::TRACE => 8,
        _ => 9,
    }
}

/// Distinct (method, status) pairs a route counts by their own labels.
const STATUS_SLOTS: usize = 32;

/// A route's requests by method and exact status: a fixed open-addressed
/// table whose slots are claimed with one compare-and-swap (lock-free, no
/// allocation). A route that answers more distinct pairs than it has slots
/// counts the rest by method under `status="other"`.
#[derive(Debug)]
pub struct StatusTable {
    /// `(method + 1) << 16 | status`, 0 while free.
    keys: [AtomicU32; STATUS_SLOTS],
    counts: [AtomicU64; STATUS_SLOTS],
    overflow: [AtomicU64; METHODS.len()],
}

impl Default for StatusTable {
    fn default() -> StatusTable {
        StatusTable {
            keys: std::array::from_fn(|_| AtomicU32::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl StatusTable {
    pub fn record(&self, method: usize, status: u16) {
        let method = method.min(METHODS.len() - 1);
        let key = ((method as u32 + 1) << 16) | u32::from(status);
        let start = (usize::from(status) * 7 + method) % STATUS_SLOTS;
        for probe in 0..STATUS_SLOTS {
            let i = (start + probe) % STATUS_SLOTS;
            let mut k = self.keys[i].load(Ordering::Relaxed);
            if k == 0 {
                k = match self.keys[i].compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => key,
                    Err(other) => other,
                };
            }
            if k == key {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.overflow[method].fetch_add(1, Ordering::Relaxed);
    }

    /// Every pair counted: (method, status as text, count).
    fn samples(&self) -> Vec<(&'static str, String, u64)> {
        let mut out = Vec::new();
        for (k, c) in self.keys.iter().zip(&self.counts) {
            let k = k.load(Ordering::Acquire);
            if k == 0 {
                continue;
            }
            let method = METHODS[((k >> 16) as usize - 1).min(METHODS.len() - 1)];
            out.push((method, (k & 0xffff).to_string(), c.load(Ordering::Relaxed)));
        }
        for (m, c) in METHODS.iter().zip(&self.overflow) {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                out.push((m, "other".to_string(), n));
            }
        }
        out.sort();
        out
    }
}

/// One route's counters.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    pub statuses: StatusTable,
    pub duration: Histogram,
}

impl RouteMetrics {
    pub fn record(&self, method: usize, status: u16, micros: u64) {
        self.statuses.record(method, status);
        self.duration.observe(micros);
    }
}

/// Why an exchange with an upstream server failed, as `/metrics` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Refused or unreachable.
    Connect,
    /// No connection within `connect_timeout`, or no answer within the timeout.
    Timeout,
    /// The TLS handshake with the server failed.
    Tls,
    /// The connection closed or reset before a whole response head came.
    Reset,
    /// An answer that could not be read.
    Protocol,
}

impl UpstreamError {
    pub const ALL: [UpstreamError; 5] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::Tls,
        UpstreamError::Reset,
        UpstreamError::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Tls => "tls",
            UpstreamError::Reset => "reset",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// One upstream server's counters, part of its state (kept across a
/// reload and a re-resolution while the server is).
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// Exchanges attempted (each retry is one more).
    pub requests: AtomicU64,
    pub errors: [AtomicU64; UpstreamError::ALL.len()],
    /// From sending the request to the response head (or the failure).
    pub duration: Histogram,
    /// Times passive ejection took the server out.
    pub ejections: AtomicU64,
}

impl ServerMetrics {
    pub fn error(&self, kind: UpstreamError) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// One upstream's retry counters (carried over a reload by name).
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    /// Retries sent to another server.
    pub retries: AtomicU64,
    /// Retries the retry budget refused.
    pub budget_refusals: AtomicU64,
}

/// One listener's connections (kept by address for the process's life).
#[derive(Debug, Default)]
pub struct ListenerConns {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
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
    /// A CORS preflight from an origin the route's `cors` does not allow.
    Cors,
}

impl Rejection {
    pub const ALL: [Rejection; 17] = [
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
        Rejection::Cors,
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
            Rejection::Cors => "cors",
        }
    }
}

/// Process-wide counters (survive reloads).
#[derive(Debug)]
pub struct Metrics {
    /// Every listener's open connections together (`max_connections`).
    pub open_connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub rejections: [AtomicU64; Rejection::ALL.len()],
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Requests that matched no route (404/405/400).
    pub unmatched: RouteMetrics,
    /// Each listener's connections, by the address as written. Locked when
    /// a listener opens and at a scrape, never by a connection.
    pub listeners: Mutex<Vec<(String, Arc<ListenerConns>)>>,
    /// When the process started, in seconds since the epoch.
    pub started: f64,
    /// Copies made by routes' `mirror`.
    pub mirror: MirrorMetrics,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            open_connections: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            rejections: std::array::from_fn(|_| AtomicU64::new(0)),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            unmatched: RouteMetrics::default(),
            listeners: Mutex::new(Vec::new()),
            started: process_start_time().unwrap_or_else(unix_now),
            mirror: MirrorMetrics::default(),
        }
    }
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

    /// The connection counts of the listener at `address` (as written):
    /// the same ones when a listener there opens again.
    pub fn listener(&self, address: &str) -> Arc<ListenerConns> {
        let mut all = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = all.iter().find(|(a, _)| a == address) {
            return c.clone();
        }
        let c = Arc::new(ListenerConns::default());
        all.push((address.to_string(), c.clone()));
        c
    }
}

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The configuration loaded: a short digest of its plan and when it was
/// loaded (`gw_config_info`, `gw_config_loaded_timestamp_seconds`).
#[derive(Clone, Debug)]
pub struct ConfigInfo {
    pub hash: String,
    pub loaded_at: f64,
}

impl ConfigInfo {
    /// The first 16 hex digits of the SHA-256 of the plan's JSON: the same
    /// configuration gives the same hash on every replica.
    pub fn of(plan: &gw_plan::Plan) -> ConfigInfo {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(plan.to_json().as_bytes());
        let hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        ConfigInfo {
            hash,
            loaded_at: unix_now(),
        }
    }
}

/// One route as `/metrics` shows it.
pub(crate) struct RouteSample {
    pub route: String,
    pub metrics: Arc<RouteMetrics>,
}

/// One upstream server's state, for rendering.
pub(crate) struct ServerSample {
    pub upstream: String,
    pub server: String,
    pub healthy: bool,
    pub ejected: bool,
    pub in_flight: u32,
    pub counts: Arc<ServerMetrics>,
}

/// One `limit` kept in this gateway's memory, for rendering.
pub(crate) struct LimitSample {
    pub limit: String,
    /// Keys with a budget of their own now.
    pub keys: usize,
    /// Checks counted against the overflow budget (`max_keys` reached).
    pub overflowed: u64,
}

/// Everything one scrape shows, taken from the running gateway.
pub(crate) struct Scrape {
    pub metrics: Arc<Metrics>,
    pub routes: Vec<RouteSample>,
    pub servers: Vec<ServerSample>,
    pub upstreams: Vec<(String, Arc<UpstreamMetrics>)>,
    pub limits: Vec<LimitSample>,
    pub config: ConfigInfo,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// The formats `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when `accept` names `application/openmetrics-text` (as
    /// Prometheus does when it can read it), else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants = accept.is_some_and(|a| {
            a.split(',').any(|part| {
                let mut params = part.split(';');
                let media = params.next().unwrap_or("").trim();
                let q_zero = params.any(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
            })
        });
        if wants {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes `scrape` in `format`.
pub(crate) fn render(scrape: Scrape, format: Format) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    let done = match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    if done.is_err() {
        tracing::warn!("the metrics could not be encoded");
    }
    out
}

/// A counter value as the encoders take it.
fn counter(mut e: MetricEncoder<'_>, v: u64) -> Result<(), std::fmt::Error> {
    e.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

/// Starts a family.
fn family<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'e>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &*self.metrics;
        let routes = self.routes.iter().map(|r| (r.route.as_str(), &*r.metrics));
        let routes: Vec<(&str, &RouteMetrics)> = routes.chain([("", &m.unmatched)]).collect();

        let mut f = family(
            &mut e,
            "gw_requests",
            "Requests answered, by route (its head; \"\" when none matched), method and status.",
            MetricType::Counter,
        )?;
        for (route, rm) in &routes {
            for (method, status, n) in rm.statuses.samples() {
                let labels: Labels<3> = [("route", route), ("method", method), ("status", &status)];
                counter(f.encode_family(&labels)?, n)?;
            }
        }
        let mut f = family(
            &mut e,
            "gw_request_duration_seconds",
            "Time from request head to response head, by route.",
            MetricType::Histogram,
        )?;
        for (route, rm) in &routes {
            rm.duration.encode(f.encode_family(&[("route", *route)])?)?;
        }

        let servers = &self.servers;
        let server_labels = |s: &ServerSample| -> [(&'static str, String); 2] {
            [("upstream", s.upstream.clone()), ("server", s.server.clone())]
        };
        let mut f = family(
            &mut e,
            "gw_upstream_requests",
            "Requests sent to an upstream server (each retry is one more).",
            MetricType::Counter,
        )?;
        for s in servers {
            counter(
                f.encode_family(&server_labels(s))?,
                s.counts.requests.load(Ordering::Relaxed),
            )?;
        }
        let mut f = family(
            &mut e,
            "gw_upstream_errors",
            "Exchanges with an upstream server that failed, by kind: connect, timeout, tls, reset, protocol.",
            MetricType::Counter,
        )?;
        for s in servers {
            for kind in UpstreamError::ALL {
                let [u, v] = server_labels(s);
                let labels = [u, v, ("kind", kind.as_str().to_string())];
                counter(
                    f.encode_family(&labels)?,
                    s.counts.errors[kind as usize].load(Ordering::Relaxed),
                )?;
            }
        }
        let mut f = family(
            &mut e,
            "gw_upstream_request_duration_seconds",
            "Time from sending a request to an upstream server to its response head (or the failure).",
            MetricType::Histogram,
        )?;
        for s in servers {
            s.counts.duration.encode(f.encode_family(&server_labels(s))?)?;
        }
        let mut f = family(
            &mut e,
            "gw_upstream_server_healthy",
            "1 when the server is healthy and not ejected.",
            MetricType::Gauge,
        )?;
        for s in servers {
            f.encode_family(&server_labels(s))?
                .encode_gauge(&u64::from(s.healthy && !s.ejected))?;
        }
        let mut f = family(
            &mut e,
            "gw_upstream_server_ejected",
            "1 while passive ejection keeps the server out of rotation.",
            MetricType::Gauge,
        )?;
        for s in servers {
            f.encode_family(&server_labels(s))?
                .encode_gauge(&u64::from(s.ejected))?;
        }
        let mut f = family(
            &mut e,
            "gw_upstream_server_ejections",
            "Times passive ejection took the server out of rotation.",
            MetricType::Counter,
        )?;
        for s in servers {
            counter(
                f.encode_family(&server_labels(s))?,
                s.counts.ejections.load(Ordering::Relaxed),
            )?;
        }
        let mut f = family(
            &mut e,
            "gw_upstream_server_in_flight",
            "Requests in flight to the server.",
            MetricType::Gauge,
        )?;
        for s in servers {
            f.encode_family(&server_labels(s))?.encode_gauge(&s.in_flight)?;
        }
        let mut f = family(
            &mut e,
            "gw_retries",
            "Requests retried on another server, by upstream.",
            MetricType::Counter,
        )?;
        for (name, u) in &self.upstreams {
            counter(
                f.encode_family(&[("upstream", name.as_str())])?,
                u.retries.load(Ordering::Relaxed),
            )?;
        }
        let mut f = family(
            &mut e,
            "gw_retry_budget_refusals",
            "Retries not sent because the upstream's retry budget was spent.",
            MetricType::Counter,
        )?;
        for (name, u) in &self.upstreams {
            counter(
                f.encode_family(&[("upstream", name.as_str())])?,
                u.budget_refusals.load(Ordering::Relaxed),
            )?;
        }

        let mut f = family(
            &mut e,
            "gw_limit_keys",
            "Keys with a budget of their own, by limit (kept in memory).",
            MetricType::Gauge,
        )?;
        for l in &self.limits {
            f.encode_family(&[("limit", l.limit.as_str())])?
                .encode_gauge(&(l.keys as u64))?;
        }
        let mut f = family(
            &mut e,
            "gw_limit_overflow",
            "Requests counted against a limit's shared overflow budget (max_keys reached).",
            MetricType::Counter,
        )?;
        for l in &self.limits {
            counter(f.encode_family(&[("limit", l.limit.as_str())])?, l.overflowed)?;
        }

        let mut f = family(
            &mut e,
            "gw_rejections",
            "Requests or connections refused or failed by the gateway, by reason.",
            MetricType::Counter,
        )?;
        for r in Rejection::ALL {
            counter(
                f.encode_family(&[("reason", r.as_str())])?,
                m.rejections[r as usize].load(Ordering::Relaxed),
            )?;
        }
        let mut f = family(
            &mut e,
            "gw_mirror_copies",
            "Copies chosen by routes' mirror, by what became of them.",
            MetricType::Counter,
        )?;
        for (outcome, n) in [
            ("answered", &m.mirror.answered),
            ("failed", &m.mirror.failed),
            ("dropped", &m.mirror.dropped),
            ("skipped", &m.mirror.skipped),
        ] {
            counter(f.encode_family(&[("outcome", outcome)])?, n.load(Ordering::Relaxed))?;
        }

        let listeners: Vec<(String, Arc<ListenerConns>)> =
            m.listeners.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut f = family(
            &mut e,
            "gw_open_connections",
            "Client connections open now, by listener (its address as written).",
            MetricType::Gauge,
        )?;
        for (address, c) in &listeners {
            f.encode_family(&[("listener", address.as_str())])?
                .encode_gauge(&c.open.load(Ordering::Relaxed))?;
        }
        let mut f = family(
            &mut e,
            "gw_connections",
            "Client connections accepted, by listener.",
            MetricType::Counter,
        )?;
        for (address, c) in &listeners {
            counter(
                f.encode_family(&[("listener", address.as_str())])?,
                c.accepted.load(Ordering::Relaxed),
            )?;
        }

        counter(
            family(
                &mut e,
                "gw_reloads",
                "Plans swapped in by a reload.",
                MetricType::Counter,
            )?,
            m.reloads.load(Ordering::Relaxed),
        )?;
        counter(
            family(
                &mut e,
                "gw_reload_failures",
                "Reloads refused (the running plan kept serving).",
                MetricType::Counter,
            )?,
            m.reload_failures.load(Ordering::Relaxed),
        )?;
        family(
            &mut e,
            "gw_config",
            "The configuration being served: the first 16 hex digits of its plan's SHA-256.",
            MetricType::Info,
        )?
        .encode_info(&[("hash", self.config.hash.as_str())])?;
        family(
            &mut e,
            "gw_config_loaded_timestamp_seconds",
            "When the configuration being served was loaded (start or reload), in seconds since the epoch.",
            MetricType::Gauge,
        )?
        .encode_gauge(&self.config.loaded_at)?;
        family(&mut e, "gw_build", "The gateway's version.", MetricType::Info)?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;

        let process = Process::read();
        if let Some(cpu) = process.cpu_seconds {
            family(
                &mut e,
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds.",
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, f64, f64>(&cpu, None)?;
        }
        if let Some(rss) = process.resident_bytes {
            family(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size, in bytes.",
                MetricType::Gauge,
            )?
            .encode_gauge(&rss)?;
        }
        if let Some(fds) = process.open_fds {
            family(&mut e, "process_open_fds", "Open file descriptors.", MetricType::Gauge)?.encode_gauge(&fds)?;
        }
        if let Some(max) = process.max_fds {
            family(
                &mut e,
                "process_max_fds",
                "The limit on open file descriptors.",
                MetricType::Gauge,
            )?
            .encode_gauge(&max)?;
        }
        family(
            &mut e,
            "process_start_time_seconds",
            "When the process started, in seconds since the epoch.",
            MetricType::Gauge,
        )?
        .encode_gauge(&m.started)?;
        Ok(())
    }
}

/// The process as Linux's `/proc/self` shows it (nothing elsewhere).
#[derive(Debug, Default)]
struct Process {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Process {
    fn read() -> Process {
        let mut p = Process::default();
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sysconf only reads a system setting.
            let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
                // The fields after the command (which may hold spaces), from
                // field 3 (state): utime is field 14, stime 15.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
                let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
                if let (Some(u), Some(s)) = (tick(11), tick(12)) {
                    if ticks > 0.0 {
                        p.cpu_seconds = Some((u + s) as f64 / ticks);
                    }
                }
            }
            if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
                p.resident_bytes = status.lines().find_map(|l| {
                    let kb = l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim();
                    kb.parse::<u64>().ok().map(|kb| kb * 1024)
                });
            }
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                // The directory's own descriptor is among them.
                p.open_fds = Some((dir.count() as u64).saturating_sub(1));
            }
            if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
                p.max_fds = limits.lines().find_map(|l| {
                    let rest = l.strip_prefix("Max open files")?;
                    rest.split_whitespace().next()?.parse().ok()
                });
            }
        }
        p
    }
}

/// When the process started, in seconds since the epoch (Linux).
fn process_start_time() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf only reads a system setting.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        // Field 22, starttime: clock ticks after boot.
        let start: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
        let btime: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
        (ticks > 0.0).then(|| btime + start / ticks)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_counts_each_method_and_status_and_the_rest_as_other() {
        let t = StatusTable::default();
        for _ in 0..3 {
            t.record(0, 200);
        }
        t.record(2, 201);
        t.record(9, 200);
        // More distinct pairs than slots: the rest are `other`, by method.
        for status in 300..(300 + STATUS_SLOTS as u16 + 5) {
            t.record(0, status);
        }
        let s = t.samples();
        assert!(s.contains(&("GET", "200".into(), 3)), "{s:?}");
        assert!(s.contains(&("POST", "201".into(), 1)), "{s:?}");
        assert!(s.contains(&("other", "200".into(), 1)), "{s:?}");
        let total: u64 = s.iter().map(|x| x.2).sum();
        assert_eq!(total, 3 + 1 + 1 + STATUS_SLOTS as u64 + 5);
        assert_eq!(s.iter().filter(|x| x.1 != "other").count(), STATUS_SLOTS);
        assert!(s.iter().any(|x| x.0 == "GET" && x.1 == "other"), "{s:?}");
    }

    #[test]
    fn openmetrics_is_chosen_only_when_asked_for() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Prometheus
        );
    }
}
