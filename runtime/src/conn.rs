//! A client connection's own state: who it is ([`Conn`]), its clocks (last
//! byte moved, requests started and in flight: what `header_timeout` and
//! `idle_timeout` are measured on), the IO wrapper that keeps them
//! ([`Activity`]), and its place in the one count of open connections
//! ([`ConnTracker`], `max_connections`). All atomics, none shared with
//! another connection: the accept path and the request path take no lock.

use crate::clock::now_millis;
use crate::metrics::{ListenerConns, Metrics, Rejection};
use crate::request::ClientCert;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// What the connection knows about itself.
#[derive(Clone, Debug)]
pub struct Conn {
    /// The peer: the TCP peer, or the source a PROXY header gave.
    pub client: SocketAddr,
    pub tls: bool,
    /// The verified client certificate (a TLS listener with `client_ca`),
    /// read once after the handshake.
    pub cert: Option<Arc<ClientCert>>,
}

impl Conn {
    /// A connection without a client certificate.
    pub fn new(client: SocketAddr, tls: bool) -> Conn {
        Conn {
            client,
            tls,
            cert: None,
        }
    }
}

/// Counts open client connections (one atomic for all listeners):
/// enforces `max_connections` and lets shutdown wait for the count to reach
/// zero.
///
/// One tracker per listener, sharing the count of all of them: each also
/// counts its own listener's connections (`gw_open_connections{listener}`).
pub(crate) struct ConnTracker {
    metrics: Arc<Metrics>,
    notify: Arc<tokio::sync::Notify>,
    listener: Option<Arc<ListenerConns>>,
}

impl ConnTracker {
    pub(crate) fn new(metrics: Arc<Metrics>) -> ConnTracker {
        ConnTracker {
            metrics,
            notify: Arc::new(tokio::sync::Notify::new()),
            listener: None,
        }
    }

    /// The tracker of the listener at `address` (as written): the same
    /// count of all connections, and that listener's own.
    pub(crate) fn for_listener(&self, address: &str) -> Arc<ConnTracker> {
        Arc::new(ConnTracker {
            metrics: self.metrics.clone(),
            notify: self.notify.clone(),
            listener: Some(self.metrics.listener(address)),
        })
    }

    /// Connections open now.
    pub(crate) fn live(&self) -> u64 {
        self.metrics.open_connections.load(Ordering::SeqCst)
    }

    /// Returns once no connection is open.
    pub(crate) async fn all_closed(&self) {
        loop {
            let notified = self.notify.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Counts a new connection unless `max` are open already.
    pub(crate) fn try_enter(self: &Arc<Self>, max: u64) -> Option<ConnGuard> {
        let before = self.metrics.open_connections.fetch_add(1, Ordering::SeqCst);
        if let Some(l) = &self.listener {
            l.open.fetch_add(1, Ordering::Relaxed);
        }
        let guard = ConnGuard(self.clone());
        if before >= max.max(1) {
            self.metrics.reject(Rejection::TooManyConnections);
            return None; // the guard's drop undoes the counts
        }
        self.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        if let Some(l) = &self.listener {
            l.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Some(guard)
    }
}

/// One open connection; dropping it uncounts it.
pub(crate) struct ConnGuard(Arc<ConnTracker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(l) = &self.0.listener {
            l.open.fetch_sub(1, Ordering::Relaxed);
        }
        if self.0.metrics.open_connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.notify.notify_waiters();
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
    pub(crate) in_flight: AtomicU32,
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

/// A request in flight on a connection (hyper's connections, whose watcher
/// must not close a connection that is busy): uncounted when it drops, also
/// when its future is dropped.
pub(crate) struct ConnInFlight(Arc<Clocks>);

impl ConnInFlight {
    /// Counts a request started on the connection of `clocks`.
    pub(crate) fn start(clocks: Arc<Clocks>) -> ConnInFlight {
        clocks.in_flight.fetch_add(1, Ordering::Relaxed);
        clocks.requests.fetch_add(1, Ordering::Relaxed);
        ConnInFlight(clocks)
    }
}

impl Drop for ConnInFlight {
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
