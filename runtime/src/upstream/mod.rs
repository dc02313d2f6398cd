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
//! use hyper-util's client (`client`). Both dial through the server's
//! [`stream::Dialer`]: plain TCP, or TLS when the upstream has `tls` (one
//! rustls client per upstream, so its servers share a session cache). The
//! request's task drives its exchange itself: no connection task, no
//! channel.
//!
//! Nothing here knows the client side of the gateway: a request arrives as a
//! `Request` whose URI and headers the proxy has already made, and an
//! exchange's outcome reaches passive ejection through
//! [`ServerSet::record`], with the knowledge of the other servers.

pub mod balance;
mod budget;
pub(crate) mod checks;
pub(crate) mod client;
pub(crate) mod h1client;
pub mod health;
mod pool;
pub(crate) mod stream;

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
use std::sync::Arc;
use std::task::{Context, Poll};
use stream::{Dialer, Stream};

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
    /// The `Host` (and h2 `:authority`) its requests carry when the
    /// upstream's `host_header` is `server` or a name; `None`: the client's.
    pub host_header: Option<(hyper::header::HeaderValue, hyper::http::uri::Authority)>,
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
    pub(crate) fn into_upgraded(self) -> Option<(Stream, bytes::Bytes)> {
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

/// An upstream at run time: its servers, its balancer, its retry budget.
pub(crate) struct Upstream {
    pub name: String,
    pub config: plan::Upstream,
    pub set: ArcSwap<ServerSet>,
    /// The upstream's TLS client (`tls`), shared by its servers: one
    /// session cache. `Err`: its settings could not be loaded.
    tls: Option<Result<Arc<rustls::ClientConfig>, Arc<str>>>,
    /// The hash key's source for `hash(...)` (client IP for `ip_hash`).
    pub key: Option<Reference>,
    pub ip_hash: bool,
    /// Its `eject` block, or the default passive ejection.
    pub eject: EjectPolicy,
    /// Its retry budget: requests sent and retries taken, over a window.
    pub(crate) budget: budget::RetryBudget,
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

/// The `Host` of `config`'s requests to the server written `address`:
/// `None` for the client's own (`host_header client`); the server's
/// `host[:port]` as written, without the scheme's default port
/// (`host_header server`, as nginx sends); or the fixed name.
fn host_header(
    config: &plan::Upstream,
    address: &str,
) -> Option<(hyper::header::HeaderValue, hyper::http::uri::Authority)> {
    let text = match &config.host_header {
        plan::HostHeader::Client => return None,
        plan::HostHeader::Fixed(name) => name.clone(),
        plan::HostHeader::Server => {
            let default_port = if config.tls.is_some() { 443 } else { 80 };
            match split_host_port(address) {
                Some((_, port)) if port == default_port => address[..address.rfind(':')?].to_string(),
                _ => address.to_string(),
            }
        }
    };
    let value = hyper::header::HeaderValue::from_str(&text).ok()?;
    let authority = text.parse().ok()?;
    Some((value, authority))
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
        let tls = config.tls.as_ref().map(|t| {
            let alpn: &[&[u8]] = if config.http2 {
                &[crate::tls_client::H2]
            } else {
                &[crate::tls_client::HTTP_11]
            };
            crate::tls_client::client_config(t, alpn).map_err(|e| {
                tracing::error!(upstream = %config.name, error = %e, "upstream TLS settings unusable: every connection to it will fail");
                Arc::<str>::from(e)
            })
        });
        let mut servers = Vec::new();
        for s in &config.servers {
            for addr in resolve(&s.address).await {
                servers.push(Server::new(config, s, addr, previous, tls.as_ref()));
            }
        }
        let strategy = strategy_of(&config.balance);
        let (key, ip_hash) = match &config.balance {
            plan::Balance::Hash(r) => (Some(r.clone()), false),
            plan::Balance::IpHash => (None, true),
            _ => (None, false),
        };
        let eject = EjectPolicy::of(config.eject.as_ref());
        Upstream {
            name: config.name.clone(),
            config: config.clone(),
            set: ArcSwap::from_pointee(ServerSet::new(servers, strategy)),
            tls,
            key,
            ip_hash,
            eject,
            budget: budget::RetryBudget::default(),
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
                    _ => servers.push(Server::new(&self.config, s, addr, &HashMap::new(), self.tls.as_ref())),
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
            host_header: self.host_header.clone(),
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
        tls: Option<&Result<Arc<rustls::ClientConfig>, Arc<str>>>,
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
        let written = split_host_port(&s.address).map_or("", |(h, _)| h);
        let dialer = Arc::new(Dialer::new(config, written, addr, tls, state.clone()));
        Server {
            state,
            addr,
            authority,
            host,
            label,
            host_header: host_header(config, &s.address),
            client: http_client(config, dialer.clone()),
            h1: Arc::new(H1Pool::new(config, dialer)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The upstream of `runtime/testdata/one-upstream.gw` (its server is
    /// never dialled).
    pub(crate) async fn upstream() -> Upstream {
        let plan = crate::testdata::plan(crate::testdata::ONE_UPSTREAM);
        Upstream::build(&plan.upstreams[0], &HashMap::new()).await
    }

    #[test]
    fn host_header_server_is_the_written_host_without_the_scheme_s_default_port() {
        let plan = crate::testdata::plan(crate::testdata::ONE_UPSTREAM);
        let mut c = plan.upstreams[0].clone();
        let host = |c: &plan::Upstream, a: &str| {
            host_header(c, a).map(|(h, authority)| {
                assert_eq!(h.as_bytes(), authority.as_str().as_bytes(), "Host and :authority agree");
                String::from_utf8_lossy(h.as_bytes()).into_owned()
            })
        };
        assert_eq!(host(&c, "backend.test:80"), None, "client: the request's own");
        c.host_header = plan::HostHeader::Server;
        assert_eq!(host(&c, "backend.test:80").as_deref(), Some("backend.test"));
        assert_eq!(host(&c, "backend.test:443").as_deref(), Some("backend.test:443"));
        assert_eq!(host(&c, "[::1]:8080").as_deref(), Some("[::1]:8080"));
        c.tls = Some(plan::UpstreamTls::default());
        assert_eq!(
            host(&c, "billing.example.com:443").as_deref(),
            Some("billing.example.com")
        );
        assert_eq!(
            host(&c, "billing.example.com:80").as_deref(),
            Some("billing.example.com:80")
        );
        c.host_header = plan::HostHeader::Fixed("api.example.com".into());
        assert_eq!(host(&c, "10.0.0.1:443").as_deref(), Some("api.example.com"));
    }
}
