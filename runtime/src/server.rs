//! Listeners and connections: plain HTTP/1.1 + h2c (prior knowledge) on one
//! port, TLS (rustls: SNI picks the certificate, ALPN `h2`/`http/1.1`), raw
//! TCP (layer 4, see [`crate::tcp`]) and the admin listener; the safety
//! bounds of `limits`; hot reload (the caller compiles, [`Gateway::reload`]
//! swaps) and graceful drain ([`Gateway::shutdown`]).
//!
//! The accept path takes no lock: the running plan is read through an
//! `ArcSwap`, the connection count is one atomic, and each connection's
//! clocks (last byte, requests in flight) are atomics it owns.
//!
//! Limits, as enforced:
//! - `header_timeout`: a connection must send its first request head within
//!   it (TLS handshake included); on HTTP/1.1 every later head must complete
//!   within it from its first byte.
//! - `idle_timeout`: a connection with no request in flight and no byte read
//!   or written for this long is closed (gracefully: HTTP/2 gets a GOAWAY).
//!   It applies to TCP (layer 4) connections too.
//! - `max_header_size`: an HTTP/1.1 head over it gets 431; HTTP/2 advertises
//!   it as `SETTINGS_MAX_HEADER_LIST_SIZE` (431 beyond).
//! - `max_connections`: one count across every listener (admin excluded);
//!   past it a new connection is closed at once.
//!
//! HTTP/1.1 connections (plain and TLS) are served by the gateway's own loop
//! (`h1server`); a request it does not handle (chunked or large
//! bodies, `Expect`, upgrades such as WebSocket, `CONNECT`) hands the rest
//! of the connection to hyper's HTTP/1.1 server, with the bytes already read.
//! On that fallback hyper enforces the limits as before (its header clock
//! starts when a kept-alive connection waits for its next head; heads up to
//! 8 KiB, its smallest buffer, are read before `max_header_size` is checked
//! here). HTTP/2 is hyper's.
//!
//! The admin listener is bound where the plan says, as written: the docs and
//! the checker recommend loopback; an admin address reachable from other
//! machines is logged as a warning at start.

use crate::body::{full, Body};
use crate::error::{closing_response, status_response};
use crate::h1server::{self, Served, Transport};
use crate::health::now_millis;
use crate::health_check;
use crate::metrics::{self, LimitSample, Metrics, Rejection, RouteSample, ServerSample};
use crate::proxy::{self, Conn};
use crate::secrets;
use crate::state::{Runtime, Shared};
use crate::tcp;
use arc_swap::ArcSwap;
use gw_compiler::plan::{ListenerKind, Plan};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the gateway is started.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Bind the admin listener here instead of where the plan says (tests).
    pub admin_override: Option<String>,
    /// When a listener's port is taken, listen on a free port of the same
    /// address instead of failing (`gwc serve --demo` on a busy machine).
    pub free_port_if_busy: bool,
    /// Let a reload remove every route, or replace every listener (`gwc
    /// serve --allow-drastic-reload`). Without it such a reload is refused
    /// (see [`Gateway::reload`]); a plan with no listener is refused always.
    pub allow_drastic_reload: bool,
}

/// hyper's smallest HTTP/1.1 read buffer: heads up to it are always read.
const HYPER_MIN_BUF: u64 = 8192;

/// How long a closed listener's accept loop gets to let go of its socket.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What a bound socket serves.
#[derive(Clone)]
enum Serves {
    Http,
    /// The TLS configuration is swapped on reload (certificates re-read).
    Tls(Arc<ArcSwap<rustls::ServerConfig>>),
    Tcp(String),
    Admin,
}

/// One bound listener.
struct Bound {
    /// Kind and address as written: what a reload compares.
    key: String,
    /// The address as written in the plan.
    address: String,
    local: SocketAddr,
    serves: Serves,
    stop: watch::Sender<bool>,
    /// The accept loops (one per worker runtime for HTTP and TLS).
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Listeners {
    /// In plan order.
    serving: Vec<Bound>,
    admin: Option<Bound>,
}

/// What a plan needs that is not open yet, prepared before anything changes
/// so that a reload that cannot bind leaves the running gateway untouched.
struct Prepared {
    /// Per plan listener, in order.
    slots: Vec<Slot>,
    admin: Option<Slot>,
}

enum Slot {
    /// Already bound under the same key; TLS gets its certificates re-read.
    Keep {
        key: String,
        tls: Option<Arc<rustls::ServerConfig>>,
    },
    /// To be opened. `socket` is `None` when a listener being closed holds
    /// the address: it is bound once that one is gone.
    Open {
        key: String,
        address: String,
        socket: Option<TcpListener>,
        serves: Serves,
    },
}

/// A running gateway: its bound addresses, reload and shutdown.
pub struct Gateway {
    shared: Arc<Shared>,
    options: Options,
    /// More runtimes (one thread each) that accept on the HTTP and TLS
    /// listeners beside the runtime the gateway started on, each serving
    /// the connections it accepted (see [`Gateway::start_with_workers`]).
    workers: Vec<tokio::runtime::Handle>,
    listeners: tokio::sync::Mutex<Listeners>,
    /// Bound addresses: listeners in plan order, and admin; read without
    /// waiting on a reload.
    addrs: ArcSwap<(Vec<SocketAddr>, Option<SocketAddr>)>,
    /// Stops the health checkers of the current runtime.
    health_stop: tokio::sync::Mutex<watch::Sender<bool>>,
    connections: Arc<ConnTracker>,
    shutdown: watch::Sender<bool>,
}

/// Counts open client connections (one atomic, shown as
/// `gw_open_connections`): enforces `max_connections` and lets shutdown wait
/// for the count to reach zero.
pub struct ConnTracker {
    metrics: Arc<Metrics>,
    notify: tokio::sync::Notify,
}

impl ConnTracker {
    fn new(metrics: Arc<Metrics>) -> ConnTracker {
        ConnTracker {
            metrics,
            notify: tokio::sync::Notify::new(),
        }
    }

    fn live(&self) -> u64 {
        self.metrics.open_connections.load(Ordering::SeqCst)
    }

    /// Counts a new connection unless `max` are open already.
    pub(crate) fn try_enter(self: &Arc<Self>, max: u64) -> Option<ConnGuard> {
        let before = self.metrics.open_connections.fetch_add(1, Ordering::SeqCst);
        let guard = ConnGuard(self.clone());
        if before >= max.max(1) {
            self.metrics.reject(Rejection::TooManyConnections);
            return None; // the guard's drop undoes the count
        }
        self.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        Some(guard)
    }
}

/// One open connection; dropping it uncounts it.
pub(crate) struct ConnGuard(Arc<ConnTracker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.metrics.open_connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.notify.notify_waiters();
        }
    }
}

/// `:8080` → `0.0.0.0:8080`; `[::1]:80` and `1.2.3.4:80` as they are.
pub fn bind_address(address: &str) -> Result<SocketAddr, String> {
    let full = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    };
    full.parse()
        .map_err(|_| format!("cannot listen on `{address}`: not an IP address and port"))
}

fn listener_key(l: &gw_compiler::plan::Listener, plan: &Plan) -> String {
    match &l.kind {
        ListenerKind::Http => format!("http {}", l.address),
        ListenerKind::Tls { .. } => format!("tls {}", l.address),
        ListenerKind::Tcp { upstream } => {
            let name = plan.upstreams.get(*upstream).map_or("?", |u| u.name.as_str());
            format!("tcp {} -> {name}", l.address)
        }
    }
}

impl Gateway {
    /// Builds the runtime of `plan`, binds every listener and starts serving.
    pub async fn start(plan: Plan, options: Options) -> Result<Arc<Gateway>, String> {
        Gateway::start_with_workers(plan, options, Vec::new()).await
    }

    /// [`Gateway::start`] with more runtimes serving HTTP and TLS: one
    /// thread per core without work stealing (`gwc serve`). Each worker
    /// accepts on its own copy of every HTTP and TLS socket and serves the
    /// connections it accepted; layer-4 and admin listeners, health checks
    /// and reloads stay on the runtime this is called on.
    pub async fn start_with_workers(
        plan: Plan,
        options: Options,
        workers: Vec<tokio::runtime::Handle>,
    ) -> Result<Arc<Gateway>, String> {
        if plan.listeners.is_empty() {
            return Err(NO_LISTENER.to_string());
        }
        let plan = Arc::new(plan);
        let runtime = Runtime::build(plan.clone(), None).await;
        let shared = Arc::new(Shared::new(runtime));
        let (shutdown, _) = watch::channel(false);
        let (health_stop, health_rx) = watch::channel(false);
        let gw = Arc::new(Gateway {
            connections: Arc::new(ConnTracker::new(shared.metrics.clone())),
            shared,
            options,
            workers,
            listeners: tokio::sync::Mutex::new(Listeners::default()),
            addrs: ArcSwap::from_pointee((Vec::new(), None)),
            health_stop: tokio::sync::Mutex::new(health_stop),
            shutdown,
        });
        {
            let mut listeners = gw.listeners.lock().await;
            let prepared = gw.prepare(&plan, &listeners).await?;
            gw.commit(&mut listeners, prepared).await;
        }
        health_check::spawn(&gw.shared.current.load_full(), health_rx);
        Ok(gw)
    }

    /// The addresses the plan's listeners are bound to, in plan order.
    pub async fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.load().0.clone()
    }

    /// Where the admin listener is bound, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.addrs.load().1
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Binds what `plan` adds and builds TLS configurations (re-reading
    /// certificate files); changes nothing that runs.
    async fn prepare(&self, plan: &Plan, current: &Listeners) -> Result<Prepared, String> {
        let wanted: Vec<String> = plan.listeners.iter().map(|l| listener_key(l, plan)).collect();
        let closing: Vec<&Bound> = current.serving.iter().filter(|b| !wanted.contains(&b.key)).collect();
        let mut slots = Vec::with_capacity(plan.listeners.len());
        for (l, key) in plan.listeners.iter().zip(wanted.iter().cloned()) {
            let tls = match &l.kind {
                ListenerKind::Tls { certificates } => Some(tls_config(certificates)?),
                _ => None,
            };
            if current.serving.iter().any(|b| b.key == key) {
                slots.push(Slot::Keep { key, tls });
                continue;
            }
            let serves = match (&l.kind, tls) {
                (ListenerKind::Tcp { upstream }, _) => Serves::Tcp(
                    plan.upstreams
                        .get(*upstream)
                        .map(|u| u.name.clone())
                        .ok_or_else(|| format!("listener `{}`: no such upstream", l.address))?,
                ),
                (_, Some(config)) => Serves::Tls(Arc::new(ArcSwap::new(config))),
                _ => Serves::Http,
            };
            let socket = self.bind_unless_closing(&l.address, &closing).await?;
            slots.push(Slot::Open {
                key,
                address: l.address.clone(),
                socket,
                serves,
            });
        }
        let admin_address = self
            .options
            .admin_override
            .clone()
            .or_else(|| plan.admin.first().cloned());
        let admin = match admin_address {
            None => None,
            Some(address) => {
                let key = format!("admin {address}");
                if current.admin.as_ref().is_some_and(|b| b.key == key) {
                    Some(Slot::Keep { key, tls: None })
                } else {
                    let closing: Vec<&Bound> = current.admin.iter().collect();
                    let socket = self.bind_unless_closing(&address, &closing).await?;
                    Some(Slot::Open {
                        key,
                        address,
                        socket,
                        serves: Serves::Admin,
                    })
                }
            }
        };
        Ok(Prepared { slots, admin })
    }

    /// Binds `address` now, or returns `None` when one of `closing` holds it
    /// (it is bound after that one closes).
    async fn bind_unless_closing(&self, address: &str, closing: &[&Bound]) -> Result<Option<TcpListener>, String> {
        let addr = bind_address(address)?;
        let held = closing
            .iter()
            .any(|b| b.address == address || (addr.port() != 0 && b.local == addr));
        if held {
            return Ok(None);
        }
        self.bind(address, addr).await.map(Some)
    }

    async fn bind(&self, address: &str, addr: SocketAddr) -> Result<TcpListener, String> {
        match TcpListener::bind(addr).await {
            Ok(l) => Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && self.options.free_port_if_busy => {
                let free = SocketAddr::new(addr.ip(), 0);
                let l = TcpListener::bind(free)
                    .await
                    .map_err(|e| format!("cannot listen on `{address}`: {e}"))?;
                tracing::warn!(listen = %address, "address in use; listening on a free port instead");
                Ok(l)
            }
            Err(e) => Err(format!("cannot listen on `{address}`: {e}")),
        }
    }

    /// Makes the prepared listeners the running ones: closes those the plan
    /// dropped (their connections drain gracefully), swaps TLS
    /// configurations, opens the new ones.
    async fn commit(&self, current: &mut Listeners, prepared: Prepared) {
        let mut old: Vec<Option<Bound>> = std::mem::take(&mut current.serving).into_iter().map(Some).collect();
        let mut next: Vec<Option<Bound>> = Vec::with_capacity(prepared.slots.len());
        let mut to_open = Vec::new();
        for (i, slot) in prepared.slots.into_iter().enumerate() {
            match slot {
                Slot::Keep { key, tls } => {
                    let kept = old
                        .iter_mut()
                        .find(|b| b.as_ref().is_some_and(|b| b.key == key))
                        .and_then(Option::take);
                    if let (Some(b), Some(config)) = (&kept, tls) {
                        if let Serves::Tls(swap) = &b.serves {
                            swap.store(config);
                        }
                    }
                    next.push(kept);
                }
                open @ Slot::Open { .. } => {
                    next.push(None);
                    to_open.push((i, open));
                }
            }
        }
        for b in old.into_iter().flatten() {
            close(b).await;
        }
        for (i, slot) in to_open {
            if let Some(b) = self.open(slot).await {
                next[i] = Some(b);
            }
        }
        current.serving = next.into_iter().flatten().collect();

        let admin = match prepared.admin {
            Some(Slot::Keep { .. }) => current.admin.take(),
            Some(open @ Slot::Open { .. }) => {
                if let Some(b) = current.admin.take() {
                    close(b).await;
                }
                self.open(open).await
            }
            None => {
                if let Some(b) = current.admin.take() {
                    close(b).await;
                }
                None
            }
        };
        current.admin = admin;
        let addrs = current.serving.iter().map(|b| b.local).collect();
        self.addrs
            .store(Arc::new((addrs, current.admin.as_ref().map(|b| b.local))));
    }

    /// Binds (if not bound yet) and starts the accept loop of one slot.
    async fn open(&self, slot: Slot) -> Option<Bound> {
        let Slot::Open {
            key,
            address,
            socket,
            serves,
        } = slot
        else {
            return None;
        };
        let socket = match socket {
            Some(s) => s,
            None => match bind_address(&address) {
                Ok(addr) => match self.bind(&address, addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "listener not opened");
                        return None;
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "listener not opened");
                    return None;
                }
            },
        };
        let local = match socket.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(listen = %address, error = %e, "listener not opened");
                return None;
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let shared = self.shared.clone();
        let tracker = self.connections.clone();
        let shutdown = self.shutdown.subscribe();
        let tasks = match &serves {
            Serves::Http | Serves::Tls(_) => {
                let tls = match &serves {
                    Serves::Tls(config) => Some(config.clone()),
                    _ => None,
                };
                self.spawn_accept_loops(socket, &address, tls, stop_rx, shutdown)
            }
            Serves::Tcp(upstream) => vec![tokio::spawn(tcp::accept_loop(
                socket,
                shared,
                upstream.clone(),
                tracker,
                stop_rx,
                shutdown,
            ))],
            Serves::Admin => vec![tokio::spawn(admin_loop(socket, shared, stop_rx))],
        };
        match &serves {
            Serves::Admin => {
                tracing::info!(admin = %address, bound = %local, "admin listening (/healthz, /metrics, /plan)");
                if !local.ip().is_loopback() {
                    tracing::warn!(
                        admin = %address,
                        "the admin listener is reachable from other machines: /metrics and /plan describe \
                         the whole configuration; bind it to a loopback address such as 127.0.0.1"
                    );
                }
            }
            Serves::Tcp(upstream) => {
                tracing::info!(listen = %address, bound = %local, upstream = %upstream, "listening (tcp)")
            }
            Serves::Tls(_) => tracing::info!(listen = %address, bound = %local, "listening (tls)"),
            Serves::Http => tracing::info!(listen = %address, bound = %local, "listening"),
        }
        Some(Bound {
            key,
            address,
            local,
            serves,
            stop,
            tasks,
        })
    }

    /// Starts an HTTP (or TLS) listener's accept loop on this runtime and
    /// on every worker runtime, each on its own copy of the socket.
    fn spawn_accept_loops(
        &self,
        socket: TcpListener,
        address: &str,
        tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
        stop: watch::Receiver<bool>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let (shared, tracker) = (self.shared.clone(), self.connections.clone());
        if self.workers.is_empty() {
            return vec![tokio::spawn(accept_loop(socket, shared, tracker, tls, stop, shutdown))];
        }
        let std_socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(listen = %address, error = %e, "listener not opened");
                return Vec::new();
            }
        };
        let mut tasks = Vec::with_capacity(self.workers.len() + 1);
        for worker in &self.workers {
            let copy = match std_socket.try_clone() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(listen = %address, error = %e, "a worker thread does not accept on this listener");
                    continue;
                }
            };
            let (shared, tracker, tls) = (shared.clone(), tracker.clone(), tls.clone());
            let (stop, shutdown, address) = (stop.clone(), shutdown.clone(), address.to_string());
            tasks.push(worker.spawn(async move {
                match TcpListener::from_std(copy) {
                    Ok(l) => accept_loop(l, shared, tracker, tls, stop, shutdown).await,
                    Err(e) => tracing::warn!(listen = %address, error = %e, "a worker thread does not accept on this listener"),
                }
            }));
        }
        match TcpListener::from_std(std_socket) {
            Ok(l) => tasks.push(tokio::spawn(accept_loop(l, shared, tracker, tls, stop, shutdown))),
            Err(e) => tracing::warn!(listen = %address, error = %e, "the main thread does not accept on this listener"),
        }
        tasks
    }

    /// Swaps in a new plan: binds what it adds (a listener that cannot be
    /// bound refuses the reload and changes nothing), builds its runtime
    /// (unchanged servers keep their health), swaps atomically,
    /// restarts health checks, and closes what it drops. Requests in flight
    /// finish on the plan they started with.
    ///
    /// Refused, changing nothing: a plan with no listener (an empty file
    /// saved by mistake would stop every listener, admin included), and
    /// unless [`Options::allow_drastic_reload`], a plan that removes every
    /// route or keeps none of the listeners serving now (a half-written
    /// file, a typo in the only `listen`).
    pub async fn reload(&self, plan: Plan) -> Result<(), String> {
        let plan = Arc::new(plan);
        let mut listeners = self.listeners.lock().await;
        let guarded = drastic(
            &self.shared.current.load().plan,
            &plan,
            &listeners,
            self.options.allow_drastic_reload,
        );
        if let Err(e) = guarded {
            self.shared.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        let prepared = match self.prepare(&plan, &listeners).await {
            Ok(p) => p,
            Err(e) => {
                self.shared.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let old = self.shared.current.load_full();
        let runtime = Arc::new(Runtime::build(plan.clone(), Some(&old)).await);
        self.shared.current.store(runtime.clone());
        self.commit(&mut listeners, prepared).await;
        drop(listeners);
        let (stop, rx) = watch::channel(false);
        let previous = std::mem::replace(&mut *self.health_stop.lock().await, stop);
        let _ = previous.send(true);
        health_check::spawn(&runtime, rx);
        self.shared.metrics.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops accepting, asks every connection to finish (HTTP/1.1 closes
    /// after its current response, HTTP/2 gets a GOAWAY), and waits up to
    /// `drain` for them. Returns how many connections were still open.
    pub async fn shutdown(&self, drain: Duration) -> u64 {
        let _ = self.shutdown.send(true);
        {
            let mut listeners = self.listeners.lock().await;
            for b in listeners.serving.drain(..) {
                close(b).await;
            }
            if let Some(b) = listeners.admin.take() {
                close(b).await;
            }
        }
        let _ = self.health_stop.lock().await.send(true);
        let wait = async {
            loop {
                let notified = self.connections.notify.notified();
                if self.connections.live() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(drain, wait).await;
        self.connections.live()
    }
}

/// Why a plan is never served: it has no `listen`.
const NO_LISTENER: &str = "the plan has no `listen`: a gateway without a listener serves nothing";

/// What refuses `new` as the successor of `old` (see [`Gateway::reload`]);
/// `current` are the listeners serving now.
fn drastic(old: &Plan, new: &Plan, current: &Listeners, allowed: bool) -> Result<(), String> {
    const HOW: &str = "restart the gateway to make this change, or run it with `--allow-drastic-reload`";
    if new.listeners.is_empty() {
        return Err(format!("{NO_LISTENER}; the running plan keeps serving"));
    }
    if allowed {
        return Ok(());
    }
    if new.routes.is_empty() && !old.routes.is_empty() {
        return Err(format!(
            "the new plan removes every route (the running plan has {}): every request would be answered 404; \
             the running plan keeps serving; {HOW}",
            old.routes.len()
        ));
    }
    let wanted: Vec<String> = new.listeners.iter().map(|l| listener_key(l, new)).collect();
    if !current.serving.is_empty() && !current.serving.iter().any(|b| wanted.contains(&b.key)) {
        let was: Vec<&str> = current.serving.iter().map(|b| b.key.as_str()).collect();
        return Err(format!(
            "the new plan keeps none of the listeners serving now ({}; the new plan has {}): their clients \
             would be refused; the running plan keeps serving; {HOW}",
            was.join(", "),
            wanted.join(", ")
        ));
    }
    Ok(())
}

/// Waits for every task.
async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Stops a listener's accept loop and waits (briefly) until its socket is
/// closed; its connections drain on their own.
async fn close(b: Bound) {
    let _ = b.stop.send(true);
    let _ = tokio::time::timeout(CLOSE_WAIT, futures_join(b.tasks)).await;
    tracing::info!(listen = %b.address, bound = %b.local, "stopped listening");
}

/// Chooses the certificate by SNI (exact name, then `*.` wildcard); the
/// first without `sni` is the default (else the first of all).
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    default: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        self.by_name
            .get(&name)
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.by_name.get(&format!("*.{parent}"))
            })
            .cloned()
            .or_else(|| self.default.clone())
    }
}

fn tls_config(certs: &[gw_compiler::plan::Certificate]) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut resolver = SniResolver {
        by_name: HashMap::new(),
        default: None,
    };
    let mut first = None;
    for c in certs {
        let key = secrets::certified_key(&c.cert, &c.key)?;
        first.get_or_insert_with(|| key.clone());
        match &c.sni {
            Some(name) => {
                resolver.by_name.entry(name.to_ascii_lowercase()).or_insert(key);
            }
            None if resolver.default.is_none() => resolver.default = Some(key),
            None => {}
        }
    }
    if resolver.default.is_none() {
        resolver.default = first;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Which protocol a connection speaks: by ALPN on TLS; on plain TCP,
/// HTTP/2 when the client opens with the HTTP/2 preface (h2c with prior
/// knowledge, see [`sniff`]), else HTTP/1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

/// The connection preface of HTTP/2 (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells HTTP/1.1 from h2c by peeking at the first bytes, without reading
/// them: the first byte that differs from the HTTP/2 preface decides
/// HTTP/1.1 (for every request but `PRI` that is the first byte). `None`
/// when the client closed, or sent nothing within `header_timeout` (as
/// the connection's watcher would count it).
async fn sniff(stream: &TcpStream, shared: &Shared, client: SocketAddr) -> Option<Proto> {
    let (header_timeout, idle_timeout) = {
        let rt = shared.current.load();
        (rt.plan.limits.header_timeout.0, rt.plan.limits.idle_timeout.0)
    };
    let wait = header_timeout.min(idle_timeout.max(1));
    let looking = async {
        let mut buf = [0u8; 24];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            let seen = buf.get(..n)?;
            if n == 0 {
                return None;
            }
            if !H2_PREFACE.starts_with(seen) {
                return Some(Proto::H1);
            }
            if n == H2_PREFACE.len() {
                return Some(Proto::H2);
            }
            // A part of the preface so far: wait for the rest.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    match tokio::time::timeout(Duration::from_millis(wait), looking).await {
        Ok(found) => found,
        Err(_) => {
            if header_timeout <= wait {
                shared.metrics.reject(Rejection::HeaderTimeout);
                tracing::debug!(%client, "no request head within header_timeout; closing");
            } else {
                tracing::debug!(%client, "idle_timeout; closing");
            }
            None
        }
    }
}

/// Accepts one connection and admits it under `max_connections` (with
/// TCP_NODELAY set), or `None` when accepting failed or the limit refused it
/// (the caller accepts the next). Shared by the HTTP/TLS and TCP listeners.
pub(crate) async fn admit(
    listener: &TcpListener,
    shared: &Shared,
    tracker: &Arc<ConnTracker>,
) -> Option<(TcpStream, SocketAddr, ConnGuard)> {
    let (stream, client) = match listener.accept().await {
        Ok(a) => a,
        Err(e) => {
            // Out of file descriptors and the like: back off a little.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            return None;
        }
    };
    let max = shared.current.load().plan.limits.max_connections;
    let guard = tracker.try_enter(max)?;
    let _ = stream.set_nodelay(true);
    Some((stream, client, guard))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: Arc<ConnTracker>,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) {
    // The connections' one signal to close (see `closing_signal`).
    let closing = closing_signal(stop.clone(), shutdown);
    loop {
        let admitted = tokio::select! {
            a = admit(&listener, &shared, &tracker) => a,
            _ = stop.changed() => return,
        };
        let Some((stream, client, guard)) = admitted else {
            continue;
        };
        let shared = shared.clone();
        let tls = tls.as_ref().map(|t| t.load_full());
        let closing = closing.clone();
        tokio::spawn(async move {
            let accepted_at = now_millis();
            let Some(config) = tls else {
                let Some(proto) = sniff(&stream, &shared, client).await else {
                    return;
                };
                let conn = Conn { client, tls: false };
                let accepted = Accepted {
                    conn,
                    proto,
                    at: accepted_at,
                    guard,
                };
                serve_connection(stream, accepted, shared, closing).await;
                return;
            };
            // Boxed: a plain connection's task does not carry TLS's state.
            Box::pin(serve_tls(stream, client, config, accepted_at, guard, shared, closing)).await;
        });
    }
}

/// One signal for a listener's connections to close: set when the listener
/// stops or the gateway shuts down, or when either's sender is gone. A
/// connection waiting for its next request then watches one channel, not
/// two (each watch is a registration per wait).
fn closing_signal(mut stop: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => {}
            _ = shutdown.wait_for(|v| *v) => {}
            // No connection or accept loop listens any more.
            () = tx.closed() => return,
        }
        let _ = tx.send(true);
    });
    rx
}

/// Completes the TLS handshake (within `header_timeout`) and serves the
/// connection with the protocol ALPN chose.
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    stream: TcpStream,
    client: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    accepted_at: u64,
    guard: ConnGuard,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    let header_timeout = shared.current.load().plan.limits.header_timeout.as_duration();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => {
            let proto = match s.get_ref().1.alpn_protocol() {
                Some(b"h2") => Proto::H2,
                _ => Proto::H1,
            };
            let accepted = Accepted {
                conn: Conn { client, tls: true },
                proto,
                at: accepted_at,
                guard,
            };
            serve_connection(s, accepted, shared, closing).await;
        }
        Ok(Err(e)) => {
            shared.metrics.reject(Rejection::TlsHandshake);
            tracing::debug!(%client, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.reject(Rejection::TlsHandshake);
            tracing::debug!(%client, "TLS handshake timed out");
        }
    }
}

/// A connection's clocks, shared by its IO wrapper, its requests and its
/// watcher: all atomics, none shared with another connection.
#[derive(Default)]
pub(crate) struct Clocks {
    /// [`now_millis`] of the last byte read or written.
    pub(crate) last: AtomicU64,
    /// Requests whose response head has not been returned yet.
    in_flight: AtomicU32,
    /// Requests started on this connection.
    pub(crate) requests: AtomicU64,
}

impl Clocks {
    pub(crate) fn new() -> Arc<Clocks> {
        let c = Clocks::default();
        c.last.store(now_millis(), Ordering::Relaxed);
        Arc::new(c)
    }
}

/// Uncounts a request in flight, also when its future is dropped.
struct InFlight(Arc<Clocks>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An IO wrapper that notes the time of the last byte read or written, for
/// `idle_timeout`. It holds the connection's place in the count, so that a
/// connection upgraded to a tunnel (WebSocket) still counts, and drains,
/// until the tunnel drops it.
pub(crate) struct Activity<T> {
    pub(crate) inner: T,
    pub(crate) clocks: Arc<Clocks>,
    pub(crate) _guard: Option<ConnGuard>,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.clocks.last.store(now_millis(), Ordering::Relaxed);
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Activity<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Activity<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The size of a request head as HTTP/1.1 writes it (request line and
/// header lines with their CRLFs).
fn head_size<B>(req: &Request<B>) -> u64 {
    let line = req.method().as_str().len() + req.uri().path_and_query().map_or(1, |p| p.as_str().len()) + 12;
    let headers: usize = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    (line + headers + 2) as u64
}

/// A connection as accepted: who, which protocol, when (the clock of
/// `header_timeout` starts here, TLS handshake included), and its place in
/// the connection count.
struct Accepted {
    conn: Conn,
    proto: Proto,
    at: u64,
    guard: ConnGuard,
}

/// A function returning an async block (an `async fn` stores its arguments
/// twice in its future, and every connection carries this one).
#[allow(clippy::manual_async_fn)]
fn serve_connection<S>(
    stream: S,
    Accepted {
        conn,
        proto,
        at: started,
        guard,
    }: Accepted,
    shared: Arc<Shared>,
    mut closing: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()>
where
    S: Transport,
{
    async move {
        let limits = shared.current.load().plan.limits.clone();
        let clocks = Clocks::new();
        let io = Activity {
            inner: stream,
            clocks: clocks.clone(),
            _guard: Some(guard),
        };
        // hyper's service, made only when hyper takes the connection over (so a
        // connection on the gateway's own loop does not carry it).
        macro_rules! service {
            () => {{
                // hyper reads heads of up to 8 KiB whatever it is told: check below that.
                let max_head = (limits.max_header_size < HYPER_MIN_BUF).then_some(limits.max_header_size);
                let service_shared = shared.clone();
                let service_clocks = clocks.clone();
                service_fn(move |req: Request<hyper::body::Incoming>| {
                    let shared = service_shared.clone();
                    let clocks = service_clocks.clone();
                    clocks.in_flight.fetch_add(1, Ordering::Relaxed);
                    clocks.requests.fetch_add(1, Ordering::Relaxed);
                    let guard = InFlight(clocks);
                    async move {
                        let _guard = guard;
                        if max_head.is_some_and(|max| head_size(&req) > max) {
                            shared.metrics.reject(Rejection::HeaderTooLarge);
                            return Ok::<_, Infallible>(status_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
                        }
                        // Only hyper reads a `Transfer-Encoding` (the gateway's loop
                        // hands such a request over): a coding besides `chunked`
                        // is refused here, before any of the body is read.
                        if let Some(status) = crate::request::transfer_coding_refusal(req.headers()) {
                            shared.metrics.reject(if status == StatusCode::NOT_IMPLEMENTED {
                                Rejection::NotImplemented
                            } else {
                                Rejection::BadRequest
                            });
                            return Ok::<_, Infallible>(closing_response(status, req.version()));
                        }
                        // Boxed: hyper keeps the service's future in a box of its own
                        // size for the connection's whole life; the proxy's state (a few
                        // KiB) then lives only while a request is in flight.
                        Ok::<_, Infallible>(Box::pin(proxy::handle(shared, conn, req)).await)
                    }
                })
            }};
        }
        let idle = limits.idle_timeout.0.max(1);
        let header_deadline = started.saturating_add(limits.header_timeout.0);
        // Serves `$connection` (an HTTP/1.1 or an HTTP/2 connection of hyper)
        // until it ends, closing it gracefully on stop, shutdown or
        // `idle_timeout`, and at once when the first head is late.
        macro_rules! watch {
        ($connection:expr) => {{
            let connection = $connection;
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                // Wake at the first moment a bound could be crossed; re-check then.
                let idle_at = clocks.last.load(Ordering::Relaxed).saturating_add(idle);
                let first_request = clocks.requests.load(Ordering::Relaxed) == 0;
                let wake_at = if first_request {
                    idle_at.min(header_deadline)
                } else {
                    idle_at
                };
                let nap = Duration::from_millis(wake_at.saturating_sub(now_millis()).max(1));
                tokio::select! {
                    biased;
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            note_connection_error(&shared, conn, &e);
                        }
                        return;
                    }
                    _ = closing.changed(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = tokio::time::sleep(nap), if !draining => {
                        let now = now_millis();
                        if clocks.requests.load(Ordering::Relaxed) == 0 && now >= header_deadline {
                            shared.metrics.reject(Rejection::HeaderTimeout);
                            tracing::debug!(client = %conn.client, "no request head within header_timeout; closing");
                            return;
                        }
                        let quiet = now.saturating_sub(clocks.last.load(Ordering::Relaxed));
                        if clocks.in_flight.load(Ordering::Relaxed) == 0 && quiet >= idle {
                            tracing::debug!(client = %conn.client, "idle_timeout; closing");
                            draining = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        }};
    }
        match proto {
            Proto::H1 => {
                let ctx = h1server::Ctx {
                    shared: &shared,
                    conn,
                    clocks: &clocks,
                    started,
                    closing: &mut closing,
                };
                let io = match h1server::serve(io, ctx).await {
                    Served::Closed => return,
                    Served::Fallback(io) => io,
                };
                // Boxed: a connection on the fast path does not carry hyper's state.
                Box::pin(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.header_timeout.as_duration())
                        .max_buf_size(limits.max_header_size.max(HYPER_MIN_BUF).min(usize::MAX as u64) as usize)
                        .keep_alive(true)
                        // A client that sent its whole request and shut its
                        // side still gets the answer, as on the fast path.
                        .half_close(true);
                    watch!(builder.serve_connection(TokioIo::new(io), service!()).with_upgrades())
                })
                .await
            }
            // Boxed: an HTTP/1.1 connection does not carry HTTP/2's state.
            Proto::H2 => {
                Box::pin(async move {
                    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    builder
                        .timer(TokioTimer::new())
                        .max_header_list_size(limits.max_header_size.min(u64::from(u32::MAX)) as u32);
                    watch!(builder.serve_connection(TokioIo::new(io), service!()))
                })
                .await
            }
        }
    }
}

/// Counts what a connection ended with: a head over `max_header_size` (hyper
/// answered 431) or a head not read within `header_timeout`.
fn note_connection_error(shared: &Shared, conn: Conn, e: &(dyn std::error::Error + Send + Sync + 'static)) {
    let Some(h) = e.downcast_ref::<hyper::Error>() else {
        tracing::debug!(client = %conn.client, error = %e, "connection ended with an error");
        return;
    };
    if h.is_parse_too_large() {
        shared.metrics.reject(Rejection::HeaderTooLarge);
    } else if h.is_timeout() {
        shared.metrics.reject(Rejection::HeaderTimeout);
    }
    tracing::debug!(client = %conn.client, error = %h, "connection ended with an error");
}

// ------------------------------------------------------------------ admin

async fn admin_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(admin(&shared, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `/healthz`, `/metrics` (Prometheus text), `/plan` (JSON, secrets redacted).
fn admin<B>(shared: &Shared, req: &Request<B>) -> Response<Body> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let rt = shared.current.load_full();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(shared, &rt),
        ),
        "/plan" => {
            let value = rt.plan.redacted_json();
            text(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
            )
        }
        _ => status_response(StatusCode::NOT_FOUND),
    }
}

fn render_metrics(shared: &Shared, rt: &Runtime) -> String {
    let routes: Vec<_> = rt
        .route_labels
        .iter()
        .zip(&rt.route_metrics)
        .map(|(l, m)| RouteSample { route: l, metrics: m })
        .collect();
    let mut servers = Vec::new();
    for up in &rt.upstreams {
        for b in &up.set.load().backends {
            servers.push((
                up.name.as_str(),
                b.state.label(),
                b.state.is_healthy(),
                b.state.is_ejected(),
                b.state.in_flight(),
            ));
        }
    }
    let samples: Vec<_> = servers
        .iter()
        .map(|(upstream, server, healthy, ejected, in_flight)| ServerSample {
            upstream,
            server,
            healthy: *healthy,
            ejected: *ejected,
            in_flight: *in_flight,
        })
        .collect();
    let limits: Vec<_> = rt
        .policies
        .limits
        .iter()
        .filter(|l| l.shared.is_none())
        .map(|l| LimitSample {
            limit: &l.name,
            keys: l.limiter.len(),
            overflowed: l.limiter.overflowed(),
        })
        .collect();
    metrics::render(&shared.metrics, &routes, &samples, &limits)
}

/// Dials `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    }
}

#[cfg(test)]
mod sizes {
    use super::*;

    /// The sizes of the futures every connection and every request carries
    /// (bench/README.md, steps 24-27; measured in the test profile, where
    /// they are 1,392 and 3,720 bytes): a change that grows them noticeably
    /// fails here. Every request's future is copied into its box, and every
    /// connection, idle or not, carries its own.
    #[tokio::test]
    async fn connection_and_request_futures_stay_small() {
        let host = gw_compiler::host::MemoryHost::new();
        let text = "listen 127.0.0.1:0\nupstream a { server 127.0.0.1:9 }\nroute /{*rest} -> a\n";
        let plan = gw_compiler::compile_text(&host, "t.gw", text)
            .plan
            .take()
            .expect("a plan");
        let shared = Arc::new(Shared::new(Runtime::build(Arc::new(plan), None).await));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stream = TcpStream::connect(addr).await.expect("connect");
        let conn = Conn {
            client: addr,
            tls: false,
        };
        let req = Request::new(http_body_util::Full::new(bytes::Bytes::new()));
        let handle = proxy::handle(shared.clone(), conn, req);
        let tracker = Arc::new(ConnTracker::new(shared.metrics.clone()));
        let guard = tracker.try_enter(10).expect("a place");
        let (_tx, closing) = watch::channel(false);
        let accepted = Accepted {
            conn,
            proto: Proto::H1,
            at: now_millis(),
            guard,
        };
        let connection = serve_connection(stream, accepted, shared.clone(), closing);
        let (request, connection) = (std::mem::size_of_val(&handle), std::mem::size_of_val(&connection));
        eprintln!("request future {request} bytes, connection future {connection} bytes");
        assert!(request <= 3_840, "the request's future grew to {request} bytes");
        assert!(
            connection <= 1_440,
            "the connection's future grew to {connection} bytes"
        );
    }
}
