//! Upstream pools at run time: the resolved servers with their shared health
//! state, the balancer over them, and the pooled HTTP clients that talk to
//! them. The server set sits behind an `ArcSwap` so that DNS re-resolution
//! replaces it without a lock on the request path; servers that survive a
//! re-resolution or a reload keep their health.
//!
//! Each server has its own connections. HTTP/1.1 requests go through
//! [`H1Pool`] and the gateway's own client ([`crate::h1client`]): an idle
//! connection is just its socket and a timestamp (no task, no buffers), on
//! a stack (most recently used first, at most `pool { max_idle }`, none older
//! than `idle_timeout`), taken and given back with one short lock and no
//! hashing. A request drives its exchange itself; the connection comes back
//! when the response body has been read to its end. A connection the server
//! closed while idle is noticed when it is taken (from the socket's
//! readiness, with at most one non-blocking read); one that fails before
//! any byte of an answer gets a request that went whole in one write once
//! more on a fresh connection, when that is safe (see [`H1Pool::send`]). With several worker
//! threads ([`set_workers`]) each thread has its own stack, holding its share
//! of `max_idle` (rounded up), so a connection is reused by the thread whose
//! request finished with it and no request wakes another thread. `http2`
//! servers use a hyper-util client per server (one multiplexed connection):
//! its connector always dials that server, whatever the request's URI says,
//! so an `http2` request can carry the client's host as `:authority` and
//! still reach the server chosen.

use crate::balance::{Balancer, Strategy};
use crate::body::Body;
use crate::h1client::{self, Failed, ResponseBody};
use crate::health::now_millis;
use crate::health::{EjectPolicy, Outcome, ServerState};
use crate::request::RequestCtx;
use arc_swap::ArcSwap;
use gw_compiler::ast::Reference;
use gw_compiler::plan;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Dials upstream servers: a fixed server (a server's own client), or the
/// IP address and port of the request's URI (the upstream-wide client).
/// Connecting is bounded by `connect_timeout`; the error is then
/// `io::ErrorKind::TimedOut`.
#[derive(Clone, Debug)]
pub struct Connector {
    to: Option<SocketAddr>,
    timeout: Duration,
}

impl Connector {
    pub fn new(to: Option<SocketAddr>, timeout: Duration) -> Connector {
        Connector { to, timeout }
    }
}

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TcpStream>>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let (to, timeout) = (self.to, self.timeout);
        Box::pin(async move {
            let addr = match to {
                Some(a) => a,
                None => uri_addr(&uri).await?,
            };
            let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(r) => r?,
                Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
            };
            let _ = stream.set_nodelay(true);
            Ok(TokioIo::new(stream))
        })
    }
}

/// The socket address a URI names (port 80 by default).
async fn uri_addr(uri: &Uri) -> std::io::Result<SocketAddr> {
    let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

pub type HttpClient = Client<Connector, Body>;

/// A pooled client for `config`'s servers dialling `to` (or the URI's address).
fn http_client(config: &plan::Upstream, to: Option<SocketAddr>) -> HttpClient {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(config.pool.max_idle as usize)
        .pool_idle_timeout(config.pool.idle_timeout.as_duration())
        .http2_only(config.http2);
    if config.http2 {
        builder.http2_keep_alive_interval(Some(Duration::from_secs(30)));
    }
    builder.build(Connector::new(to, config.connect_timeout.as_duration()))
}

/// Why an exchange with a server failed.
#[derive(Debug)]
pub enum SendError {
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

/// An idle HTTP/1.1 connection and when it became idle ([`now_millis`]).
struct Idle {
    stream: TcpStream,
    since: u64,
}

static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// How many worker threads serve requests (each gets its own idle stacks
/// in pools built from now on). The default is 1.
pub fn set_workers(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

/// Marks the calling thread as worker `i` (0, the default, is the thread
/// the gateway was started on).
pub fn set_worker_index(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// One server's HTTP/1.1 connections (see the module docs).
pub struct H1Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: u64,
    /// One stack per worker thread.
    idle: Vec<Mutex<Vec<Idle>>>,
    /// A task closes connections idle past `idle_timeout` (started with the
    /// first idle connection, ends with the pool).
    reaping: AtomicBool,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl H1Pool {
    fn new(config: &plan::Upstream, addr: SocketAddr) -> H1Pool {
        H1Pool {
            addr,
            connect_timeout: config.connect_timeout.as_duration(),
            // `max_idle` counts per server: each thread keeps its share.
            max_idle: (config.pool.max_idle as usize).div_ceil(WORKERS.load(Ordering::Relaxed).max(1)),
            idle_timeout: config.pool.idle_timeout.0.max(1),
            idle: (0..WORKERS.load(Ordering::Relaxed))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            reaping: AtomicBool::new(false),
        }
    }

    /// The calling thread's stack.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let i = WORKER.with(Cell::get) % self.idle.len().max(1);
        lock_stack(&self.idle[i])
    }

    /// The most recently used idle connection that is still fresh and
    /// open (see [`h1client::usable`]).
    fn take(&self) -> Option<TcpStream> {
        let now = now_millis();
        let mut idle = self.lock();
        while let Some(c) = idle.pop() {
            if now.saturating_sub(c.since) < self.idle_timeout && h1client::usable(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    }

    /// Parks a connection whose exchange ended cleanly (its body read to the
    /// end, both sides willing to keep it), unless the stack is full.
    pub(crate) fn park(self: Arc<Self>, stream: TcpStream) {
        if self.max_idle == 0 {
            return;
        }
        {
            let mut idle = self.lock();
            if idle.len() >= self.max_idle {
                return; // dropped: the connection closes
            }
            idle.push(Idle {
                stream,
                since: now_millis(),
            });
        }
        if !self.reaping.swap(true, Ordering::Relaxed) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(&self), self.idle_timeout));
            }
        }
    }

    /// Dials the server.
    async fn connect(&self) -> Result<TcpStream, SendError> {
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(SendError::Connect { timed_out: false }),
            Err(_) => return Err(SendError::Connect { timed_out: true }),
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Sends `req` (origin-form URI, `Host` set, hop-by-hop headers gone)
    /// on an idle connection or a new one, and returns once the response
    /// head is in. A reused connection that fails before any byte of an
    /// answer, with the whole request still in hand (and either an
    /// idempotent method or a request of which not one byte went), gets
    /// the request once more on a fresh connection.
    ///
    /// The request is encoded when this is called, before the future exists:
    /// the future then holds the encoded head, not the request as well.
    pub fn send(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, SendError>> + use<'_> {
        let prepared = h1client::prepare(req);
        async move {
            let (stream, reused) = match self.take() {
                Some(s) => (s, true),
                // Boxed: connecting is rare, and its state would otherwise
                // be part of every request's future.
                None => (Box::pin(self.connect()).await?, false),
            };
            let replay = match h1client::exchange(self, stream, reused, prepared).await {
                Ok(resp) => return Ok(resp),
                Err(Failed::Error(e)) => return Err(SendError::Exchange(e)),
                Err(Failed::Reset) => return Err(SendError::Reset { fresh: !reused }),
                Err(Failed::Replay(replay)) => replay,
            };
            tracing::debug!(server = %self.addr, "a pooled connection had closed; sending again on a new one");
            // A refused connect now says the server is gone (not the
            // keep-alive race): it is a connect error like any other.
            let stream = Box::pin(self.connect()).await?;
            Box::pin(h1client::replay(self, stream, replay))
                .await
                .map_err(|e| match e {
                    Failed::Error(e) => SendError::Exchange(e),
                    Failed::Reset | Failed::Replay(_) => SendError::Reset { fresh: true },
                })
        }
    }
}

/// Closes the connections of `pool` idle for longer than `timeout` ms.
async fn reap(pool: Weak<H1Pool>, timeout: u64) {
    let every = Duration::from_millis((timeout / 2).clamp(50, 30_000));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = now_millis();
        for stack in &pool.idle {
            let stale: Vec<Idle> = {
                let mut idle = lock_stack(stack);
                let (keep, stale) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|c| now.saturating_sub(c.since) < timeout && h1client::usable(&c.stream));
                *idle = keep;
                stale
            };
            drop(stale);
        }
    }
}

fn lock_stack(stack: &Mutex<Vec<Idle>>) -> std::sync::MutexGuard<'_, Vec<Idle>> {
    stack.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One server address of an upstream (a DNS name may give several).
#[derive(Debug)]
pub struct Backend {
    pub state: Arc<ServerState>,
    pub addr: SocketAddr,
    /// `ADDR` as a URI authority, built once.
    pub authority: hyper::http::uri::Authority,
    /// `ADDR` as a `Host` value, for a request that came without one.
    pub host: hyper::header::HeaderValue,
    /// `ADDR` as text, for logs (shared, not copied per request).
    pub label: Arc<str>,
    /// This server's client (`http2` upstreams, aggregate parts).
    pub client: HttpClient,
    /// This server's HTTP/1.1 connections (proxied requests).
    pub h1: Arc<H1Pool>,
}

impl Backend {
    /// Sends a proxied request to this `http2` server through its client
    /// (`:authority` from the URI); an HTTP/1.1 server's go through its pool
    /// ([`H1Pool::send`], origin-form). The response body holds the
    /// connection until it is done.
    pub async fn send_h2(&self, req: Request<Body>) -> Result<Response<UpstreamBody>, SendError> {
        match self.client.request(req).await {
            Ok(r) => Ok(r.map(UpstreamBody::H2)),
            Err(e) if e.is_connect() => {
                let mut timed_out = false;
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(s) = source {
                    if let Some(io) = s.downcast_ref::<std::io::Error>() {
                        timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
                    }
                    source = s.source();
                }
                Err(SendError::Connect { timed_out })
            }
            // The multiplexed connection may be older than this request: a
            // broken one is no sign against the server by itself.
            Err(e) if broke_before_answer(&e) => Err(SendError::Reset { fresh: false }),
            Err(e) => Err(SendError::Exchange(Box::new(e))),
        }
    }
}

/// Did the `http2` exchange fail because its connection closed or reset
/// before a response head (rather than on an answer it could not read)?
fn broke_before_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            ) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// An upstream's response body: the gateway's own HTTP/1.1 client's, or
/// hyper's (`http2` upstreams). One type, not boxed, so that the proxy
/// wraps it once.
#[derive(Debug)]
pub enum UpstreamBody {
    H1(ResponseBody),
    H2(Incoming),
}

impl UpstreamBody {
    /// The upstream socket of a `101 Switching Protocols` answer (HTTP/1.1)
    /// and the bytes that came after its head.
    pub fn into_upgraded(self) -> Option<(TcpStream, bytes::Bytes)> {
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
pub struct ServerSet {
    pub backends: Vec<Backend>,
    pub states: Vec<Arc<ServerState>>,
    pub balancer: Balancer,
}

impl ServerSet {
    fn new(backends: Vec<Backend>, strategy: Strategy) -> ServerSet {
        let states: Vec<_> = backends.iter().map(|b| b.state.clone()).collect();
        let balancer = Balancer::new(strategy, &states);
        ServerSet {
            backends,
            states,
            balancer,
        }
    }

    /// Records what an exchange said about server `i` for passive ejection
    /// (see [`ServerState::record`]): it is never ejected while no other
    /// server of the set would be usable. The clock is read for failures
    /// only.
    pub fn record(&self, i: usize, outcome: Outcome, up: &UpstreamRt) {
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
/// flight ([`UpstreamRt::start_retry`]).
pub struct RetrySlot<'a>(&'a UpstreamRt);

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        self.0.retries_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream pool as the runtime uses it.
pub struct UpstreamRt {
    pub name: String,
    pub config: plan::Upstream,
    pub set: ArcSwap<ServerSet>,
    /// A client that dials the address in the request's URI (health checks,
    /// aggregate parts); proxied requests use their server's own client.
    pub client: HttpClient,
    /// The hash key's source for `hash(...)` (client IP for `ip_hash`).
    pub key: Option<Reference>,
    pub ip_hash: bool,
    /// Its `eject` block, or the default passive ejection.
    pub eject: EjectPolicy,
    /// Requests in flight and retries in flight, for the retry budget.
    pub active: AtomicU64,
    pub retries_active: AtomicU64,
}

impl std::fmt::Debug for UpstreamRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRt")
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
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let i = address.rfind(':')?;
    let port = address[i + 1..].parse().ok()?;
    let host = address[..i].trim_start_matches('[').trim_end_matches(']');
    Some((host, port))
}

/// Resolves a server address: IP literals directly, names through DNS.
pub async fn resolve(address: &str) -> Vec<SocketAddr> {
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

impl UpstreamRt {
    /// Builds the upstream, resolving its servers. `previous` holds the
    /// server states of the plan being replaced (by server id), so that
    /// unchanged servers keep their health.
    pub async fn build(config: &plan::Upstream, previous: &HashMap<String, Arc<ServerState>>) -> UpstreamRt {
        let mut backends = Vec::new();
        for s in &config.servers {
            for addr in resolve(&s.address).await {
                backends.push(backend(config, s, addr, previous));
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
        UpstreamRt {
            name: config.name.clone(),
            config: config.clone(),
            set: ArcSwap::from_pointee(ServerSet::new(backends, strategy)),
            client,
            key,
            ip_hash,
            eject,
            active: AtomicU64::new(0),
            retries_active: AtomicU64::new(0),
        }
    }

    /// Re-resolves the servers whose addresses are names; swaps the set in
    /// only if it changed. Returns true when it changed.
    pub async fn refresh(&self) -> bool {
        let current = self.set.load_full();
        let previous: HashMap<&str, &Backend> = current.backends.iter().map(|b| (b.state.id.as_str(), b)).collect();
        let mut backends = Vec::new();
        for s in &self.config.servers {
            let addrs = resolve(&s.address).await;
            if addrs.is_empty() {
                // Keep the last good addresses of a name that failed to resolve.
                backends.extend(
                    current
                        .backends
                        .iter()
                        .filter(|b| b.state.id.starts_with(&format!("{}@", s.address)))
                        .map(Backend::same),
                );
                continue;
            }
            for addr in addrs {
                // A server that is still there keeps its state and its pool.
                match previous.get(format!("{}@{}", s.address, addr).as_str()) {
                    Some(b) if b.state.weight == s.weight.max(1) && b.state.backup == s.backup => {
                        backends.push(b.same());
                    }
                    _ => backends.push(backend(&self.config, s, addr, &HashMap::new())),
                }
            }
        }
        let same = backends.len() == current.backends.len()
            && backends
                .iter()
                .zip(&current.backends)
                .all(|(a, b)| a.state.id == b.state.id);
        if !same {
            self.set
                .store(Arc::new(ServerSet::new(backends, strategy_of(&self.config.balance))));
        }
        !same
    }

    /// The balancing hash of a request: the client address for `ip_hash`,
    /// the key's value for `hash(...)`, `None` when the upstream does not
    /// hash or the request has no key (round robin then).
    pub fn hash_of(&self, ctx: &RequestCtx<'_>) -> Option<u64> {
        if self.ip_hash {
            return Some(crate::balance::hash_display(&ctx.client_ip));
        }
        let value = ctx.value(self.key.as_ref()?)?;
        Some(crate::balance::hash64(value.as_bytes()))
    }

    /// A place for one more retry, if the budget has one: retries in flight
    /// are capped at the budget's share of requests in flight (at least 3,
    /// as Envoy does, so that a quiet upstream can still retry). The place
    /// is taken with one atomic increment (undone when it was over the
    /// cap), so retries deciding at once never pass the cap together.
    pub fn start_retry(&self, budget_percent: u32) -> Option<RetrySlot<'_>> {
        let active = self.active.load(Ordering::Relaxed);
        let cap = (active * u64::from(budget_percent) / 100).max(3);
        if self.retries_active.fetch_add(1, Ordering::Relaxed) >= cap {
            self.retries_active.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(RetrySlot(self))
    }

    /// Every server state, for carrying health across a reload.
    pub fn states(&self) -> Vec<Arc<ServerState>> {
        self.set.load().states.clone()
    }
}

impl Backend {
    /// The same server in a new set: shared state and pool.
    fn same(&self) -> Backend {
        Backend {
            state: self.state.clone(),
            addr: self.addr,
            authority: self.authority.clone(),
            host: self.host.clone(),
            label: self.label.clone(),
            client: self.client.clone(),
            h1: self.h1.clone(),
        }
    }
}

fn backend(
    config: &plan::Upstream,
    s: &plan::Server,
    addr: SocketAddr,
    previous: &HashMap<String, Arc<ServerState>>,
) -> Backend {
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
    Backend {
        state,
        addr,
        authority,
        host,
        label,
        client: http_client(config, Some(addr)),
        h1: Arc::new(H1Pool::new(config, addr)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::PoisonError;

    /// An upstream of `text`'s plan (its servers are never dialled).
    pub(crate) async fn upstream(text: &str) -> UpstreamRt {
        let host = gw_compiler::host::MemoryHost::new();
        let plan = gw_compiler::compile_text(&host, "t.gw", text)
            .plan
            .take()
            .expect("a plan");
        UpstreamRt::build(&plan.upstreams[0], &HashMap::new()).await
    }

    #[tokio::test]
    async fn retries_deciding_at_once_never_pass_the_budget() {
        let up = upstream("listen 127.0.0.1:0\nupstream a { server 127.0.0.1:9 }\nroute /{*rest} -> a\n").await;
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
