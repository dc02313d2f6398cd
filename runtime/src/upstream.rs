//! Upstream pools at run time: the resolved servers with their shared health
//! state, the balancer over them, and the pooled HTTP client that talks to
//! them. The server set sits behind an `ArcSwap` so that DNS re-resolution
//! replaces it without a lock on the request path; servers that survive a
//! re-resolution or a reload keep their health.

use crate::balance::{Balancer, Strategy};
use crate::body::Body;
use crate::health::{EjectPolicy, ServerState};
use arc_swap::ArcSwap;
use gw_compiler::ast::Reference;
use gw_compiler::plan;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One server address of an upstream (a DNS name may give several).
#[derive(Debug)]
pub struct Backend {
    pub state: Arc<ServerState>,
    pub addr: SocketAddr,
    /// `http://ADDR` as bytes of the URI authority, built once.
    pub authority: hyper::http::uri::Authority,
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
}

pub type HttpClient = Client<HttpConnector, Body>;

/// An upstream pool as the runtime uses it.
pub struct UpstreamRt {
    pub name: String,
    pub config: plan::Upstream,
    pub set: ArcSwap<ServerSet>,
    pub client: HttpClient,
    /// The hash key's source for `hash(...)` (client IP for `ip_hash`).
    pub key: Option<Reference>,
    pub ip_hash: bool,
    pub eject: Option<EjectPolicy>,
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
                backends.push(backend(&config.name, s, addr, previous));
            }
        }
        let strategy = strategy_of(&config.balance);
        let (key, ip_hash) = match &config.balance {
            plan::Balance::Hash(r) => (Some(r.clone()), false),
            plan::Balance::IpHash => (None, true),
            _ => (None, false),
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout.as_duration()));
        connector.enforce_http(false);
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
        let client = builder.build(connector);
        let eject = config.eject.as_ref().map(|e| EjectPolicy {
            errors: e.errors,
            base: e.duration.as_duration(),
        });
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
        let previous: HashMap<String, Arc<ServerState>> = current
            .backends
            .iter()
            .map(|b| (b.state.id.clone(), b.state.clone()))
            .collect();
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
                        .map(|b| Backend {
                            state: b.state.clone(),
                            addr: b.addr,
                            authority: b.authority.clone(),
                        }),
                );
                continue;
            }
            for addr in addrs {
                backends.push(backend(&self.name, s, addr, &previous));
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

    /// May one more retry start now? Caps retries in flight at the budget's
    /// share of requests in flight (at least 3, as Envoy does, so that a
    /// quiet upstream can still retry).
    pub fn retry_allowed(&self, budget_percent: u32) -> bool {
        let active = self.active.load(Ordering::Relaxed);
        let cap = (active * u64::from(budget_percent) / 100).max(3);
        self.retries_active.load(Ordering::Relaxed) < cap
    }

    /// Every server state, for carrying health across a reload.
    pub fn states(&self) -> Vec<Arc<ServerState>> {
        self.set.load().states.clone()
    }
}

fn backend(
    _upstream: &str,
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
    let authority = addr
        .to_string()
        .parse()
        .unwrap_or_else(|_| hyper::http::uri::Authority::from_static("invalid"));
    Backend { state, addr, authority }
}
