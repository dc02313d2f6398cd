//! The server side: an upstream at run time ([`Upstream`]) — its servers,
//! resolved, with their shared health state ([`health`]), the balancer over
//! them ([`balance`]), the retry budget, and each server's connections. The
//! server set sits behind an `ArcSwap`, so that DNS re-resolution
//! ([`checks`]) replaces it without a lock on the request path; servers that
//! survive a re-resolution or a reload keep their health, and their pools.
//!
//! Each server has its own connections: HTTP/1.1 requests go through the
//! gateway's own client (`h1client`) over the server's pool of idle
//! sockets ([`pool`]); `http2` servers, aggregate parts and health checks
//! use hyper-util's client (`client`). The request's task drives its
//! exchange itself: no connection task, no channel.
//!
//! Nothing here knows the client side of the gateway: a request arrives as a
//! `Request` whose URI and headers the proxy has already made, and an
//! exchange's outcome reaches passive ejection through
//! [`ServerSet::record`], with the knowledge of the other servers.

pub mod balance;
pub(crate) mod checks;
pub(crate) mod client;
pub(crate) mod h1client;
pub mod health;
mod pool;

use crate::body::Body;
use crate::clock::now_millis;
use crate::request::RequestCtx;
use arc_swap::ArcSwap;
use balance::{Balancer, Strategy};
use client::{http_client, HttpClient};
use gw_plan as plan;
use gw_plan::words::Reference;
use health::{EjectPolicy, Outcome, ServerState};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use pool::H1Pool;
pub use pool::{set_worker_index, set_workers};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Why an exchange with a server failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection: refused, unreachable, or not within `connect_timeout`
    /// (`timed_out`).
    Connect { timed_out: bool },
    /// The connection closed or reset after the request was sent and before
    /// a whole response head came. `fresh`: on a connection opened for this
    /// request, so the server failed (or the request made it fail: a
    /// poisoned request breaks every server it is retried on); otherwise on
    /// a pooled one that the server may have closed just as it was reused
    /// (the keep-alive race, no sign against the server), with a request
    /// that could not be sent again safely on a new one (not idempotent, or
    /// not whole).
    Reset { fresh: bool },
    /// Connected, but the exchange failed (the cause may be the client's own
    /// request body: see `proxy::classify`).
    Exchange(crate::body::BoxError),
}

/// One server address of an upstream (a DNS name may give several).
#[derive(Debug)]
pub(crate) struct Server {
    pub state: Arc<ServerState>,
    pub addr: SocketAddr,
    /// `ADDR` as a URI authority, built once.
    pub authority: hyper::http::uri::Authority,
    /// `ADDR` as a `Host` value, for a request that came without one.
    pub host: hyper::header::HeaderValue,
    /// `ADDR` as text, for logs (shared, not copied per request).
    pub label: Arc<str>,
    /// This server's client (`http2` upstreams, aggregate parts).
    pub(crate) client: HttpClient,
    /// This server's HTTP/1.1 connections (proxied requests).
    pub(crate) h1: Arc<H1Pool>,
}

impl Server {
    /// Sends a proxied request to this HTTP/1.1 server through its pool
    /// (origin-form; see [`h1client::send`]); an `http2` server's go through
    /// [`Server::send_h2`]. The response body holds the connection until it
    /// is done. Not a layer: the client's future is returned as it is.
    pub(crate) fn send_h1(
        &self,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, SendError>> + use<'_> {
        h1client::send(&self.h1, req)
    }
}

/// An upstream's response body: the gateway's own HTTP/1.1 client's, or
/// hyper's (`http2` upstreams). One type, not boxed, so that the proxy
/// wraps it once.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    H1(h1client::ResponseBody),
    H2(Incoming),
}

impl UpstreamBody {
    /// The upstream socket of a `101 Switching Protocols` answer (HTTP/1.1)
    /// and the bytes that came after its head.
    pub(crate) fn into_upgraded(self) -> Option<(TcpStream, bytes::Bytes)> {
        match self {
            UpstreamBody::H1(b) => b.into_upgraded(),
            UpstreamBody::H2(_) => None,
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, crate::body::BoxError>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::H2(b) => b.size_hint(),
        }
    }
}

/// The servers of an upstream at one moment, and the balancer over them.
#[derive(Debug)]
pub(crate) struct ServerSet {
    pub servers: Vec<Server>,
    pub states: Vec<Arc<ServerState>>,
    pub balancer: Balancer,
}

impl ServerSet {
    fn new(servers: Vec<Server>, strategy: Strategy) -> ServerSet {
        let states: Vec<_> = servers.iter().map(|b| b.state.clone()).collect();
        let balancer = Balancer::new(strategy, &states);
        ServerSet {
            servers,
            states,
            balancer,
        }
    }

    /// Records what an exchange said about server `i` for passive ejection
    /// (see [`ServerState::record`]): it is never ejected while no other
    /// server of the set would be usable. The clock is read for failures
    /// only.
    pub fn record(&self, i: usize, outcome: Outcome, up: &Upstream) {
        let Some(state) = self.states.get(i) else { return };
        let others_usable = |now: u64| self.states.iter().enumerate().any(|(j, s)| j != i && s.usable(|| now));
        if let Some(out) = state.record(outcome, &up.eject, now_millis, others_usable) {
            tracing::warn!(
                upstream = %up.name,
                server = %state.label(),
                seconds = out.as_secs_f64(),
                "server ejected: out of rotation after failing"
            );
        }
    }
}

/// A retry's place in its upstream's budget, held while the retry is in
/// flight ([`Upstream::start_retry`]).
pub(crate) struct RetrySlot<'a>(&'a Upstream);

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        self.0.retries_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream at run time: its servers, its balancer, its retry budget.
pub(crate) struct Upstream {
    pub name: String,
    pub config: plan::Upstream,
    pub set: ArcSwap<ServerSet>,
    /// A client that dials the address in the request's URI (health checks,
    /// aggregate parts); proxied requests use their server's own client.
    pub(crate) client: HttpClient,
    /// The hash key's source for `hash(...)` (client IP for `ip_hash`).
    pub key: Option<Reference>,
    pub ip_hash: bool,
    /// Its `eject` block, or the default passive ejection.
    pub eject: EjectPolicy,
    /// Requests in flight and retries in flight, for the retry budget.
    pub active: AtomicU64,
    pub retries_active: AtomicU64,
    /// Retries sent and refused by the budget (`/metrics`), carried over a
    /// reload by the upstream's name.
    pub metrics: Arc<crate::metrics::UpstreamMetrics>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn strategy_of(b: &plan::Balance) -> Strategy {
    match b {
        plan::Balance::RoundRobin => Strategy::RoundRobin,
        plan::Balance::LeastConn => Strategy::LeastConn,
        plan::Balance::Random => Strategy::Random,
        plan::Balance::P2c => Strategy::P2c,
        plan::Balance::IpHash | plan::Balance::Hash(_) => Strategy::Hash,
    }
}

/// Splits `host:port` / `[v6]:port` / `:port`.
pub(crate) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let i = address.rfind(':')?;
    let port = address[i + 1..].parse().ok()?;
    let host = address[..i].trim_start_matches('[').trim_end_matches(']');
    Some((host, port))
}

/// Dials `addr` within `timeout` (the layer-4 proxy's connections).
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Resolves a server address: IP literals directly, names through DNS.
pub(crate) async fn resolve(address: &str) -> Vec<SocketAddr> {
    let Some((host, port)) = split_host_port(address) else {
        return Vec::new();
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let mut v: Vec<_> = addrs.collect();
            v.sort();
            v.dedup();
            v
        }
        Err(e) => {
            tracing::warn!(server = address, error = %e, "cannot resolve server address");
            Vec::new()
        }
    }
}

impl Upstream {
    /// Builds the upstream, resolving its servers. `previous` holds the
    /// server states of the plan being replaced (by server id), so that
    /// unchanged servers keep their health.
    pub async fn build(config: &plan::Upstream, previous: &HashMap<String, Arc<ServerState>>) -> Upstream {
        let mut servers = Vec::new();
        for s in &config.servers {
            for addr in resolve(&s.address).await {
                servers.push(Server::new(config, s, addr, previous));
            }
        }
        let strategy = strategy_of(&config.balance);
        let (key, ip_hash) = match &config.balance {
            plan::Balance::Hash(r) => (Some(r.clone()), false),
            plan::Balance::IpHash => (None, true),
            _ => (None, false),
        };
        let client = http_client(config, None);
        let eject = EjectPolicy::of(config.eject.as_ref());
        Upstream {
            name: config.name.clone(),
            config: config.clone(),
            set: ArcSwap::from_pointee(ServerSet::new(servers, strategy)),
            client,
            key,
            ip_hash,
            eject,
            active: AtomicU64::new(0),
            retries_active: AtomicU64::new(0),
            metrics: Arc::default(),
        }
    }

    /// Empties the server set, as if every name had resolved to nothing,
    /// until the next [`Upstream::refresh`] fills it again.
    pub(crate) fn forget_servers(&self) {
        self.set
            .store(Arc::new(ServerSet::new(Vec::new(), strategy_of(&self.config.balance))));
    }

    /// Re-resolves the servers whose addresses are names; swaps the set in
    /// only if it changed. Returns true when it changed.
    pub async fn refresh(&self) -> bool {
        let current = self.set.load_full();
        let previous: HashMap<&str, &Server> = current.servers.iter().map(|b| (b.state.id.as_str(), b)).collect();
        let mut servers = Vec::new();
        for s in &self.config.servers {
            let addrs = resolve(&s.address).await;
            if addrs.is_empty() {
                // Keep the last good addresses of a name that failed to resolve.
                servers.extend(
                    current
                        .servers
                        .iter()
                        .filter(|b| b.state.id.starts_with(&format!("{}@", s.address)))
                        .map(Server::same),
                );
                continue;
            }
            for addr in addrs {
                // A server that is still there keeps its state and its pool.
                match previous.get(format!("{}@{}", s.address, addr).as_str()) {
                    Some(b) if b.state.weight == s.weight.max(1) && b.state.backup == s.backup => {
                        servers.push(b.same());
                    }
                    _ => servers.push(Server::new(&self.config, s, addr, &HashMap::new())),
                }
            }
        }
        let same = servers.len() == current.servers.len()
            && servers
                .iter()
                .zip(&current.servers)
                .all(|(a, b)| a.state.id == b.state.id);
        if !same {
            self.set
                .store(Arc::new(ServerSet::new(servers, strategy_of(&self.config.balance))));
        }
        !same
    }

    /// The balancing hash of a request: the client address for `ip_hash`,
    /// the key's value for `hash(...)`, `None` when the upstream does not
    /// hash or the request has no key (round robin then).
    pub(crate) fn hash_of(&self, ctx: &RequestCtx<'_>) -> Option<u64> {
        if self.ip_hash {
            return Some(balance::hash_display(&ctx.client_ip));
        }
        let value = ctx.value(self.key.as_ref()?)?;
        Some(balance::hash64(value.as_bytes()))
    }

    /// A place for one more retry, if the budget has one: retries in flight
    /// are capped at the budget's share of requests in flight (at least 3,
    /// as Envoy does, so that a quiet upstream can still retry). The place
    /// is taken with one atomic increment (undone when it was over the
    /// cap), so retries deciding at once never pass the cap together.
    pub(crate) fn start_retry(&self, budget_percent: u32) -> Option<RetrySlot<'_>> {
        let active = self.active.load(Ordering::Relaxed);
        let cap = (active * u64::from(budget_percent) / 100).max(3);
        if self.retries_active.fetch_add(1, Ordering::Relaxed) >= cap {
            self.retries_active.fetch_sub(1, Ordering::Relaxed);
            self.metrics.budget_refusals.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(RetrySlot(self))
    }

    /// Every server state, for carrying health across a reload.
    pub(crate) fn states(&self) -> Vec<Arc<ServerState>> {
        self.set.load().states.clone()
    }
}

impl Server {
    /// The same server in a new set: shared state and pool.
    fn same(&self) -> Server {
        Server {
            state: self.state.clone(),
            addr: self.addr,
            authority: self.authority.clone(),
            host: self.host.clone(),
            label: self.label.clone(),
            client: self.client.clone(),
            h1: self.h1.clone(),
        }
    }

    /// Server `addr` of `s`, keeping the state `previous` has for it (by
    /// id) when its weight and role are unchanged.
    fn new(
        config: &plan::Upstream,
        s: &plan::Server,
        addr: SocketAddr,
        previous: &HashMap<String, Arc<ServerState>>,
    ) -> Server {
        let id = format!("{}@{}", s.address, addr);
        let state = match previous.get(&id) {
            // The same server: keep its state (health, ejection, in-flight count).
            Some(old) if old.weight == s.weight.max(1) && old.backup == s.backup => old.clone(),
            Some(old) => {
                let state = Arc::new(ServerState::new(id.clone(), s.weight, s.backup));
                state.inherit(old);
                state
            }
            None => Arc::new(ServerState::new(id.clone(), s.weight, s.backup)),
        };
        let label: Arc<str> = addr.to_string().into();
        let authority = label
            .parse()
            .unwrap_or_else(|_| hyper::http::uri::Authority::from_static("invalid"));
        let host = hyper::header::HeaderValue::from_str(&label)
            .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("invalid"));
        Server {
            state,
            addr,
            authority,
            host,
            label,
            client: http_client(config, Some(addr)),
            h1: Arc::new(H1Pool::new(config, addr)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{Mutex, PoisonError};

    /// The upstream of `runtime/testdata/one-upstream.gw` (its server is
    /// never dialled).
    pub(crate) async fn upstream() -> Upstream {
        let plan = crate::testdata::plan(crate::testdata::ONE_UPSTREAM);
        Upstream::build(&plan.upstreams[0], &HashMap::new()).await
    }

    #[tokio::test]
    async fn a_retry_the_budget_refuses_is_counted() {
        let up = upstream().await;
        // Nothing in flight: the budget's floor of 3 retries.
        let held: Vec<_> = (0..3).filter_map(|_| up.start_retry(20)).collect();
        assert_eq!(held.len(), 3);
        assert!(up.start_retry(20).is_none());
        assert!(up.start_retry(20).is_none());
        assert_eq!(up.metrics.budget_refusals.load(Ordering::Relaxed), 2);
        drop(held);
        assert!(up.start_retry(20).is_some());
        assert_eq!(up.metrics.budget_refusals.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn retries_deciding_at_once_never_pass_the_budget() {
        let up = upstream().await;
        // 20% of 40 requests in flight: 8 places, 7 of them taken, and two
        // threads that want the last one at the same instant, round after
        // round (for at most 1.5 s): exactly one gets it each time. (Taken by
        // a check and then an increment, both would get it in some rounds.)
        const THREADS: usize = 2;
        const ROUNDS: usize = 40_000;
        up.active.store(40, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let (go, arrived, taken, stop) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicBool::new(false),
        );
        let (rounds, wrong, at) = (AtomicUsize::new(0), Mutex::new(Vec::new()), AtomicU64::new(0));
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for round in 1.. {
                        if arrived.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * round {
                            // The last to arrive: every attempt of the round
                            // before is done. Count it, set the places afresh,
                            // and start this one.
                            let n = taken.swap(0, Ordering::SeqCst);
                            if round > 1 && n != 1 {
                                wrong
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push((round - 1, n));
                            }
                            rounds.store(round - 1, Ordering::SeqCst);
                            if round > ROUNDS || started.elapsed() > Duration::from_millis(1500) {
                                stop.store(true, Ordering::SeqCst);
                            }
                            up.retries_active.store(7, Ordering::SeqCst);
                            let soon = started.elapsed() + Duration::from_micros(5);
                            at.store(soon.as_nanos() as u64, Ordering::SeqCst);
                            go.store(round, Ordering::SeqCst);
                        }
                        // The round starts at a time both threads know: each
                        // watches the clock, so neither is ahead by the time
                        // a signal takes to reach the other core (yielding
                        // now and then, in case they share one).
                        let mut spins = 0u32;
                        while go.load(Ordering::SeqCst) < round {
                            spins += 1;
                            if spins.is_multiple_of(256) {
                                std::thread::yield_now();
                            }
                            std::hint::spin_loop();
                        }
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let start = Duration::from_nanos(at.load(Ordering::SeqCst));
                        while started.elapsed() < start {
                            std::hint::spin_loop();
                        }
                        if let Some(place) = up.start_retry(20) {
                            taken.fetch_add(1, Ordering::SeqCst);
                            // Held until the round is counted.
                            std::mem::forget(place);
                        }
                    }
                });
            }
        });
        let wrong = wrong.into_inner().unwrap_or_else(PoisonError::into_inner);
        assert!(
            wrong.is_empty(),
            "{} of {} rounds (round, places taken) did not give the last place once: {:?}",
            wrong.len(),
            rounds.load(Ordering::SeqCst),
            &wrong[..wrong.len().min(5)]
        );
    }
}
