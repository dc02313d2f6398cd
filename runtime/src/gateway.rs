//! The gateway ([`Gateway`]): it loads a plan and binds its listeners
//! (plain HTTP/1.1 + h2c, TLS, layer-4 TCP, admin), reloads a new plan (the
//! caller compiles; [`Gateway::reload`] binds what the new plan adds, then
//! swaps it in and closes what it drops), and shuts down with a drain
//! ([`Gateway::shutdown`]). What a listener does with a connection is
//! `listen`'s.
//!
//! The admin listener is bound where the plan says, as written: the docs and
//! the checker recommend loopback; an admin address reachable from other
//! machines is logged as a warning at start.
//!
//! Sockets across processes: with [`Options::reuse_port`] the traffic
//! listeners (never `admin`) are bound with `SO_REUSEPORT`, so that several
//! gateways serve one port; [`Options::inherited`] are listening sockets
//! another gateway handed over (a binary upgrade, `gwc serve
//! --upgrade-socket`), used instead of binding for the listeners of the same
//! kind and address, and [`Gateway::listening_sockets`] are this gateway's
//! to hand over in turn.

use crate::conn::ConnTracker;
use crate::listen;
use crate::loaded::{LoadedPlan, Phase, Shared};
use crate::metrics::Metrics;
use crate::upstream::checks;
use crate::upstream::health::ServerState;
use arc_swap::ArcSwap;
use gw_plan::{ListenerKind, Plan};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    /// Bind the traffic listeners with `SO_REUSEPORT` (and `SO_REUSEADDR`)
    /// so that other processes may listen on the same port (`gwc serve
    /// --reuse-port`); never the admin listener.
    pub reuse_port: bool,
    /// Listening sockets handed over by the gateway this one replaces, by
    /// listener key (see [`Gateway::listening_sockets`]): a listener of the
    /// same key takes its socket instead of binding. Taken at start; what
    /// is left unused is closed.
    pub inherited: Inherited,
}

/// Listening sockets handed over by another process, by listener key.
#[derive(Clone, Debug, Default)]
pub struct Inherited(Arc<std::sync::Mutex<Vec<(String, std::net::TcpListener)>>>);

impl Inherited {
    pub fn new(sockets: Vec<(String, std::net::TcpListener)>) -> Inherited {
        Inherited(Arc::new(std::sync::Mutex::new(sockets)))
    }

    /// The socket handed over for `key`, set non-blocking for tokio.
    fn take(&self, key: &str) -> Option<TcpListener> {
        let mut sockets = self.0.lock().ok()?;
        let i = sockets.iter().position(|(k, _)| k == key)?;
        let (_, socket) = sockets.swap_remove(i);
        socket.set_nonblocking(true).ok()?;
        match TcpListener::from_std(socket) {
            Ok(l) => {
                tracing::info!(listener = %key, "listening socket taken over");
                Some(l)
            }
            Err(e) => {
                tracing::warn!(listener = %key, error = %e, "a listening socket handed over cannot be used; binding anew");
                None
            }
        }
    }

    /// Closes what no listener took.
    fn clear(&self) {
        if let Ok(mut sockets) = self.0.lock() {
            for (key, _) in sockets.drain(..) {
                tracing::info!(listener = %key, "listening socket handed over but not in this plan; closed");
            }
        }
    }
}

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
    /// A copy of the listening socket, to hand over to a gateway that
    /// replaces this one ([`Gateway::listening_sockets`]).
    #[cfg(unix)]
    socket: Option<std::os::fd::OwnedFd>,
}

#[derive(Default)]
struct Listeners {
    /// In plan order.
    serving: Vec<Bound>,
    admin: Option<Bound>,
}

/// A plan's listeners, bound (or kept) before anything changes, so that a
/// reload that cannot bind leaves the running gateway untouched.
struct Bindings {
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
        /// `proxy_protocol`: each connection starts with a PROXY header.
        proxy_protocol: bool,
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
    /// Stops the health checkers of the current plan.
    health_stop: tokio::sync::Mutex<watch::Sender<bool>>,
    connections: Arc<ConnTracker>,
    shutdown: watch::Sender<bool>,
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

fn listener_key(l: &gw_plan::Listener, plan: &Plan) -> String {
    // A listener that starts or stops expecting PROXY headers is another
    // listener: its connections are read differently from their first byte.
    let proxy = if l.proxy_protocol { "proxy_protocol " } else { "" };
    match &l.kind {
        ListenerKind::Http => format!("{proxy}http {}", l.address),
        ListenerKind::Tls { .. } => format!("{proxy}tls {}", l.address),
        ListenerKind::Tcp { upstream } => {
            let name = plan.upstreams.get(*upstream).map_or("?", |u| u.name.as_str());
            format!("tcp {} -> {name}", l.address)
        }
    }
}

impl Gateway {
    /// Loads `plan`, binds every listener and starts serving.
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
        let loaded = LoadedPlan::load(plan.clone(), None).await;
        let shared = Arc::new(Shared::new(loaded));
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
        checks::spawn(&gw.shared.current.load().upstreams, health_rx);
        gw.shared.set_phase(Phase::Serving);
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

    /// The plan being served (the last one a reload swapped in).
    pub fn plan(&self) -> Arc<Plan> {
        self.shared.current.load().plan.clone()
    }

    /// The process-wide counters (what `/metrics` shows).
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Retries sent by the upstreams of the plan being served
    /// (`gw_retries_total`, summed).
    pub fn retries(&self) -> u64 {
        self.upstreams_sum(|m| &m.retries)
    }

    /// Retries the upstreams' retry budgets refused
    /// (`gw_retry_budget_refusals_total`, summed).
    pub fn retry_budget_refusals(&self) -> u64 {
        self.upstreams_sum(|m| &m.budget_refusals)
    }

    fn upstreams_sum(&self, counter: impl Fn(&crate::metrics::UpstreamMetrics) -> &AtomicU64) -> u64 {
        let loaded = self.shared.current.load();
        loaded
            .upstreams
            .iter()
            .map(|u| counter(&u.metrics).load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a reload refused before it reached the gateway (the new
    /// configuration did not compile); [`Gateway::reload`] counts its own.
    pub fn count_refused_reload(&self) {
        self.shared.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The servers of upstream `upstream` in the plan being served, with
    /// their health, ejection and load (empty when the plan has no such
    /// upstream); a server named by DNS gives one per address.
    pub fn servers(&self, upstream: &str) -> Vec<(SocketAddr, Arc<ServerState>)> {
        let loaded = self.shared.current.load();
        let Some(up) = loaded.upstreams.iter().find(|u| u.name == upstream) else {
            return Vec::new();
        };
        up.set
            .load()
            .servers
            .iter()
            .map(|s| (s.addr, s.state.clone()))
            .collect()
    }

    /// Empties the server set of upstream `upstream` until its resolve loop
    /// fills it again: how a test sees that loop at work. Not an API.
    #[doc(hidden)]
    pub fn forget_servers(&self, upstream: &str) {
        if let Some(up) = self.shared.current.load().upstreams.iter().find(|u| u.name == upstream) {
            up.forget_servers();
        }
    }

    /// Binds what `plan` adds and builds TLS configurations (re-reading
    /// certificate files); changes nothing that runs.
    async fn prepare(&self, plan: &Plan, current: &Listeners) -> Result<Bindings, String> {
        let wanted: Vec<String> = plan.listeners.iter().map(|l| listener_key(l, plan)).collect();
        let closing: Vec<&Bound> = current.serving.iter().filter(|b| !wanted.contains(&b.key)).collect();
        let mut slots = Vec::with_capacity(plan.listeners.len());
        for (l, key) in plan.listeners.iter().zip(wanted.iter().cloned()) {
            let tls = match &l.kind {
                ListenerKind::Tls {
                    certificates,
                    client_auth,
                } => Some(listen::tls::tls_config(certificates, client_auth.as_ref())?),
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
            let socket = match self.options.inherited.take(&key) {
                Some(s) => Some(s),
                None => self.bind_unless_closing(&l.address, &closing, true).await?,
            };
            slots.push(Slot::Open {
                key,
                address: l.address.clone(),
                socket,
                serves,
                proxy_protocol: l.proxy_protocol,
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
                    let socket = match self.options.inherited.take(&key) {
                        Some(s) => Some(s),
                        None => self.bind_unless_closing(&address, &closing, false).await?,
                    };
                    Some(Slot::Open {
                        key,
                        address,
                        socket,
                        serves: Serves::Admin,
                        proxy_protocol: false,
                    })
                }
            }
        };
        self.options.inherited.clear();
        Ok(Bindings { slots, admin })
    }

    /// Binds `address` now, or returns `None` when one of `closing` holds it
    /// (it is bound after that one closes). `traffic`: not the admin
    /// listener (the one `--reuse-port` does not apply to).
    async fn bind_unless_closing(
        &self,
        address: &str,
        closing: &[&Bound],
        traffic: bool,
    ) -> Result<Option<TcpListener>, String> {
        let addr = bind_address(address)?;
        let held = closing
            .iter()
            .any(|b| b.address == address || (addr.port() != 0 && b.local == addr));
        if held {
            return Ok(None);
        }
        self.bind(address, addr, traffic).await.map(Some)
    }

    async fn bind(&self, address: &str, addr: SocketAddr, traffic: bool) -> Result<TcpListener, String> {
        let bound = if traffic && self.options.reuse_port {
            bind_reuse_port(addr)
        } else {
            TcpListener::bind(addr).await
        };
        match bound {
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
    async fn commit(&self, current: &mut Listeners, prepared: Bindings) {
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
            proxy_protocol,
        } = slot
        else {
            return None;
        };
        let socket = match socket {
            Some(s) => s,
            None => match bind_address(&address) {
                Ok(addr) => match self.bind(&address, addr, !matches!(serves, Serves::Admin)).await {
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
        #[cfg(unix)]
        let copy = {
            use std::os::fd::AsFd;
            socket.as_fd().try_clone_to_owned().ok()
        };
        let (stop, stop_rx) = watch::channel(false);
        let shared = self.shared.clone();
        // The admin listener's connections are not counted.
        let tracker = match serves {
            Serves::Admin => self.connections.clone(),
            _ => self.connections.for_listener(&address),
        };
        let shutdown = self.shutdown.subscribe();
        let tasks = match &serves {
            Serves::Http | Serves::Tls(_) => {
                let tls = match &serves {
                    Serves::Tls(config) => Some(config.clone()),
                    _ => None,
                };
                self.spawn_accept_loops(socket, &address, tls, proxy_protocol, tracker, stop_rx, shutdown)
            }
            Serves::Tcp(upstream) => vec![tokio::spawn(listen::tcp::accept_loop(
                socket,
                shared,
                upstream.clone(),
                tracker,
                stop_rx,
                shutdown,
            ))],
            Serves::Admin => vec![tokio::spawn(listen::admin::admin_loop(socket, shared, stop_rx))],
        };
        match &serves {
            Serves::Admin => {
                tracing::info!(admin = %address, bound = %local, "admin listening (/healthz, /ready, /metrics, /upstreams, /plan)");
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
            #[cfg(unix)]
            socket: copy,
        })
    }

    /// Copies of the sockets every listener (admin included) listens on,
    /// with their keys: what a gateway replacing this one takes over
    /// ([`Options::inherited`]). Connections waiting in their queues are
    /// accepted by whichever process accepts first, and by the new one
    /// alone once this one stops accepting; none is lost.
    #[cfg(unix)]
    pub async fn listening_sockets(&self) -> Vec<(String, std::os::fd::OwnedFd)> {
        let listeners = self.listeners.lock().await;
        listeners
            .serving
            .iter()
            .chain(listeners.admin.iter())
            .filter_map(|b| Some((b.key.clone(), b.socket.as_ref()?.try_clone().ok()?)))
            .collect()
    }

    /// Starts an HTTP (or TLS) listener's accept loop on this runtime and
    /// on every worker runtime, each on its own copy of the socket.
    #[allow(clippy::too_many_arguments)] // each is one part of a listener, passed once at bind
    fn spawn_accept_loops(
        &self,
        socket: TcpListener,
        address: &str,
        tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
        proxy_protocol: bool,
        tracker: Arc<ConnTracker>,
        stop: watch::Receiver<bool>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let shared = self.shared.clone();
        if self.workers.is_empty() {
            return vec![tokio::spawn(listen::accept_loop(
                socket,
                shared,
                tracker,
                tls,
                proxy_protocol,
                stop,
                shutdown,
            ))];
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
                    Ok(l) => listen::accept_loop(l, shared, tracker, tls, proxy_protocol, stop, shutdown).await,
                    Err(e) => tracing::warn!(listen = %address, error = %e, "a worker thread does not accept on this listener"),
                }
            }));
        }
        match TcpListener::from_std(std_socket) {
            Ok(l) => tasks.push(tokio::spawn(listen::accept_loop(
                l,
                shared,
                tracker,
                tls,
                proxy_protocol,
                stop,
                shutdown,
            ))),
            Err(e) => tracing::warn!(listen = %address, error = %e, "the main thread does not accept on this listener"),
        }
        tasks
    }

    /// Swaps in a new plan: binds what it adds (a listener that cannot be
    /// bound refuses the reload and changes nothing), loads it
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
        let loaded = Arc::new(LoadedPlan::load(plan.clone(), Some(&old)).await);
        self.shared.current.store(loaded.clone());
        self.commit(&mut listeners, prepared).await;
        drop(listeners);
        let (stop, rx) = watch::channel(false);
        let previous = std::mem::replace(&mut *self.health_stop.lock().await, stop);
        let _ = previous.send(true);
        checks::spawn(&loaded.upstreams, rx);
        self.shared.metrics.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops accepting, asks every connection to finish (HTTP/1.1 closes
    /// after its current response, HTTP/2 gets a GOAWAY), and waits up to
    /// `drain` for them. Returns how many connections were still open.
    ///
    /// The admin listener stays open through the drain, answering `/ready`
    /// with `503` (and `/metrics` as ever), and closes last.
    pub async fn shutdown(&self, drain: Duration) -> u64 {
        self.shared.set_phase(Phase::Draining);
        let _ = self.shutdown.send(true);
        let admin = {
            let mut listeners = self.listeners.lock().await;
            for b in listeners.serving.drain(..) {
                close(b).await;
            }
            listeners.admin.take()
        };
        let _ = self.health_stop.lock().await.send(true);
        let _ = tokio::time::timeout(drain, self.connections.all_closed()).await;
        if let Some(b) = admin {
            close(b).await;
        }
        self.connections.live()
    }

    /// Where the gateway is in its life (what admin `/ready` answers).
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }
}

/// A listener bound with `SO_REUSEADDR` and `SO_REUSEPORT`: other sockets
/// with both may listen on the same address, and the kernel spreads new
/// connections over them.
fn bind_reuse_port(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // tokio's and std's `bind` listen with a backlog of 1024 and 128.
    socket.listen(1024)
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
