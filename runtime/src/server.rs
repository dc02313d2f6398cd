//! Listeners and connections: plain HTTP/1.1 + h2c, TLS (rustls, SNI, ALPN),
//! raw TCP (layer 4), and the admin listener; the safety bounds of `limits`;
//! hot reload (compile elsewhere, then swap) and graceful drain.

use crate::body::{full, Body};
use crate::health_check;
use crate::metrics::{self, RouteSample, ServerSample};
use crate::proxy::{self, Conn};
use crate::secrets;
use crate::state::{Runtime, Shared};
use crate::tcp;
use gw_compiler::plan::{ListenerKind, Plan};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// How the gateway is started.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Bind the admin listener here instead of where the plan says (tests).
    pub admin_override: Option<String>,
}

/// One bound listener.
struct Bound {
    /// As written in the plan, the key for reload diffs.
    key: String,
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// A running gateway: its bound addresses, reload and shutdown.
pub struct Gateway {
    shared: Arc<Shared>,
    listeners: tokio::sync::Mutex<Vec<Bound>>,
    admin: Option<SocketAddr>,
    /// Stops the health checkers of the current runtime.
    health_stop: tokio::sync::Mutex<watch::Sender<bool>>,
    connections: Arc<ConnTracker>,
    shutdown: watch::Sender<bool>,
}

/// Counts live connections so that shutdown can wait for them.
#[derive(Default)]
pub struct ConnTracker {
    live: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl ConnTracker {
    pub(crate) fn enter_tcp(self: &Arc<Self>) -> ConnGuard {
        self.enter()
    }

    fn enter(self: &Arc<Self>) -> ConnGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }
}

pub(crate) struct ConnGuard(Arc<ConnTracker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
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

impl Gateway {
    /// Builds the runtime of `plan`, binds every listener and starts serving.
    pub async fn start(plan: Plan, options: Options) -> Result<Arc<Gateway>, String> {
        let plan = Arc::new(plan);
        let runtime = Runtime::build(plan.clone(), None).await;
        let shared = Arc::new(Shared::new(runtime));
        let (shutdown, _) = watch::channel(false);
        let connections = Arc::new(ConnTracker::default());
        let admin_addr = options.admin_override.clone().or_else(|| plan.admin.first().cloned());
        let admin = match admin_addr {
            Some(a) => {
                let listener = TcpListener::bind(bind_address(&a)?)
                    .await
                    .map_err(|e| format!("cannot listen on `{a}` (admin): {e}"))?;
                let local = listener.local_addr().map_err(|e| e.to_string())?;
                tokio::spawn(admin_loop(listener, shared.clone(), shutdown.subscribe()));
                Some(local)
            }
            None => None,
        };
        let (health_stop, health_rx) = watch::channel(false);
        health_check::spawn(&shared.current.load_full(), health_rx);
        let gw = Arc::new(Gateway {
            shared,
            listeners: tokio::sync::Mutex::new(Vec::new()),
            admin,
            health_stop: tokio::sync::Mutex::new(health_stop),
            connections,
            shutdown,
        });
        gw.sync_listeners(&plan).await?;
        Ok(gw)
    }

    /// The addresses the plan's listeners are bound to, in plan order.
    pub async fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.lock().await.iter().map(|b| b.local).collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Opens the plan's listeners that are not open yet and closes those
    /// the plan no longer has (reload).
    async fn sync_listeners(&self, plan: &Plan) -> Result<(), String> {
        let mut bound = self.listeners.lock().await;
        let wanted: Vec<String> = plan.listeners.iter().map(listener_key).collect();
        // Close listeners that are gone (their connections drain on their own).
        bound.retain(|b| {
            let keep = wanted.contains(&b.key);
            if !keep {
                let _ = b.stop.send(true);
            }
            keep
        });
        let mut next = Vec::new();
        for (l, key) in plan.listeners.iter().zip(wanted) {
            if let Some(i) = bound.iter().position(|b| b.key == key) {
                let b = bound.remove(i);
                // TLS certificates may have changed: the accept loop reads them
                // from the current runtime's plan at each handshake.
                next.push(b);
                continue;
            }
            let addr = bind_address(&l.address)?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on `{}`: {e}", l.address))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let (stop, stop_rx) = watch::channel(false);
            let shared = self.shared.clone();
            let tracker = self.connections.clone();
            let shutdown = self.shutdown.subscribe();
            match &l.kind {
                ListenerKind::Http => {
                    tokio::spawn(accept_loop(listener, shared, tracker, None, stop_rx, shutdown));
                }
                ListenerKind::Tls { certificates } => {
                    let config = tls_config(certificates)?;
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    tokio::spawn(accept_loop(
                        listener,
                        shared,
                        tracker,
                        Some(acceptor),
                        stop_rx,
                        shutdown,
                    ));
                }
                ListenerKind::Tcp { upstream } => {
                    tokio::spawn(tcp::accept_loop(
                        listener, shared, *upstream, tracker, stop_rx, shutdown,
                    ));
                }
            }
            next.push(Bound { key, local, stop });
        }
        for b in bound.drain(..) {
            let _ = b.stop.send(true);
        }
        *bound = next;
        Ok(())
    }

    /// Swaps in a new plan: builds its runtime (unchanged servers keep their
    /// health), swaps atomically, restarts health checks, and opens or closes
    /// listeners. Requests in flight finish on the old plan.
    pub async fn reload(&self, plan: Plan) -> Result<(), String> {
        let plan = Arc::new(plan);
        let old = self.shared.current.load_full();
        let runtime = Runtime::build(plan.clone(), Some(&old)).await;
        // Bind new listeners first: a listener that cannot bind fails the reload.
        self.shared.current.store(Arc::new(runtime));
        if let Err(e) = self.sync_listeners(&plan).await {
            self.shared.current.store(old);
            self.shared.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        let (stop, rx) = watch::channel(false);
        let previous = std::mem::replace(&mut *self.health_stop.lock().await, stop);
        let _ = previous.send(true);
        health_check::spawn(&self.shared.current.load_full(), rx);
        self.shared.metrics.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops accepting, asks every connection to finish, and waits up to
    /// `drain` for them.
    pub async fn shutdown(&self, drain: Duration) {
        let _ = self.shutdown.send(true);
        for b in self.listeners.lock().await.iter() {
            let _ = b.stop.send(true);
        }
        let _ = self.health_stop.lock().await.send(true);
        let wait = async {
            loop {
                let notified = self.connections.notify.notified();
                if self.connections.live.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(drain, wait).await;
    }
}

fn listener_key(l: &gw_compiler::plan::Listener) -> String {
    match &l.kind {
        ListenerKind::Http => format!("http {}", l.address),
        ListenerKind::Tls { .. } => format!("tls {}", l.address),
        ListenerKind::Tcp { upstream } => format!("tcp {} {upstream}", l.address),
    }
}

/// Chooses the certificate by SNI; the first without `sni` is the default.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    default: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()))
            .cloned()
            .or_else(|| self.default.clone())
    }
}

fn tls_config(certs: &[gw_compiler::plan::Certificate]) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut resolver = SniResolver {
        by_name: HashMap::new(),
        default: None,
    };
    for c in certs {
        let key = secrets::certified_key(&c.cert, &c.key)?;
        match &c.sni {
            Some(name) => {
                resolver.by_name.insert(name.to_ascii_lowercase(), key);
            }
            None if resolver.default.is_none() => resolver.default = Some(key),
            None => {}
        }
    }
    if resolver.default.is_none() {
        resolver.default = resolver.by_name.values().next().cloned();
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: Arc<ConnTracker>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) {
    let max = shared.current.load().plan.limits.max_connections as usize;
    let permits = Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // max_connections: past it, new connections are closed at once.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let guard = tracker.enter();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            shared.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
            shared.metrics.open_connections.fetch_add(1, Ordering::Relaxed);
            match tls {
                Some(acceptor) => {
                    let header_timeout = shared.current.load().plan.limits.header_timeout.as_duration();
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_connection(s, client, true, shared.clone(), shutdown).await,
                        _ => tracing::debug!(%client, "TLS handshake failed"),
                    }
                }
                None => serve_connection(stream, client, false, shared.clone(), shutdown).await,
            }
            shared.metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// An IO wrapper that notes the time of the last byte read or written, for
/// `idle_timeout`.
struct Activity<T> {
    inner: T,
    last: Arc<AtomicU64>,
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
            self.last.store(crate::health::now_millis(), Ordering::Relaxed);
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
            self.last.store(crate::health::now_millis(), Ordering::Relaxed);
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
            self.last.store(crate::health::now_millis(), Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn serve_connection<S>(
    stream: S,
    client: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.current.load().plan.limits.clone();
    let last = Arc::new(AtomicU64::new(crate::health::now_millis()));
    let in_flight = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Activity {
        inner: stream,
        last: last.clone(),
    });
    let conn = Conn { client, tls };
    let service_shared = shared.clone();
    let service_in_flight = in_flight.clone();
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let shared = service_shared.clone();
        let in_flight = service_in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        async move {
            let resp = proxy::handle(shared, conn, req).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.as_duration())
        .max_buf_size((limits.max_header_size as usize).max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_size.min(u64::from(u32::MAX)) as u32);
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let idle = limits.idle_timeout.as_duration();
    let mut draining = false;
    loop {
        let idle_check = tokio::time::sleep(Duration::from_millis(250).min(idle));
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_check => {
                let quiet = crate::health::now_millis().saturating_sub(last.load(Ordering::Relaxed));
                if !draining && in_flight.load(Ordering::Relaxed) == 0 && quiet >= idle.as_millis() as u64 {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

// ------------------------------------------------------------------ admin

async fn admin_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(admin(&shared, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
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
    let rt = shared.current.load_full();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" => {
            let routes: Vec<_> = rt
                .route_labels
                .iter()
                .zip(&rt.route_metrics)
                .map(|(l, m)| RouteSample { route: l, metrics: m })
                .collect();
            let sets: Vec<_> = rt
                .upstreams
                .iter()
                .map(|u| (u.name.as_str(), u.set.load_full()))
                .collect();
            let mut servers = Vec::new();
            for (name, set) in &sets {
                for b in &set.backends {
                    servers.push(ServerSample {
                        upstream: name,
                        server: &b.state.id,
                        healthy: b.state.is_healthy(),
                        ejected: b.state.is_ejected(),
                        in_flight: b.state.in_flight(),
                    });
                }
            }
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics::render(&shared.metrics, &routes, &servers),
            )
        }
        "/plan" => {
            let mut value = serde_json::to_value(&*rt.plan).unwrap_or(serde_json::Value::Null);
            redact(&mut value);
            text(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&value).unwrap_or_default(),
            )
        }
        _ => crate::error::status_response(StatusCode::NOT_FOUND),
    }
}

/// Replaces every inline secret's value in the plan's JSON.
fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "inline" {
                    *val = match val {
                        serde_json::Value::Array(items) => {
                            serde_json::Value::Array(items.iter().map(|_| "<redacted>".into()).collect())
                        }
                        _ => "<redacted>".into(),
                    };
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Dials `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    }
}
