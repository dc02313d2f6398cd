//! The client side: the listeners' accept loops, and each connection until
//! it ends. A plain-TCP connection is told HTTP/1.1 from h2c by peeking at
//! its first bytes; a TLS one by ALPN after its handshake ([`tls`]).
//! HTTP/1.1 connections (plain and TLS) are served by the gateway's own loop
//! ([`h1server`]); a request it does not do hands the rest of the connection
//! to hyper ([`fallback`]), which also serves HTTP/2. Layer-4 listeners copy
//! bytes to an upstream ([`tcp`]); the admin listener answers its endpoints
//! ([`admin`]).
//!
//! The accept path takes no lock: the running plan is read through an
//! `ArcSwap`, the connection counts are atomics (all listeners', and the
//! listener's own for `gw_open_connections`), and each connection's
//! clocks (last byte, requests in flight) are atomics it owns
//! ([`crate::conn`]).
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

pub(crate) mod admin;
mod fallback;
pub(crate) mod h1server;
pub mod proxy_protocol;
pub(crate) mod tcp;
pub(crate) mod tls;

use crate::clock::now_millis;
use crate::conn::{Activity, Clocks, Conn, ConnGuard, ConnTracker};
use crate::loaded::Shared;
use crate::metrics::Rejection;
use arc_swap::ArcSwap;
use fallback::Handover;
use h1server::{Served, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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
        let loaded = shared.current.load();
        (loaded.plan.limits.header_timeout.0, loaded.plan.limits.idle_timeout.0)
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

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: Arc<ConnTracker>,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    proxy_protocol: bool,
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
        let tls = tls.as_ref().map(|t| t.load_full());
        if proxy_protocol {
            // Boxed: a connection of a listener without PROXY headers does
            // not carry the reader's state.
            tokio::spawn(Box::pin(behind_proxy(
                stream,
                client,
                guard,
                tls,
                shared.clone(),
                closing.clone(),
            )));
            continue;
        }
        tokio::spawn(serve_accepted(
            stream,
            client,
            guard,
            tls,
            shared.clone(),
            closing.clone(),
        ));
    }
}

/// A connection's task, from its accept to its end: what every connection,
/// idle or not, carries. A function returning an async block (an `async fn`
/// stores its arguments twice in its future).
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve_accepted(
    stream: TcpStream,
    client: SocketAddr,
    guard: ConnGuard,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let accepted_at = now_millis();
        let Some(config) = tls else {
            let Some(proto) = sniff(&stream, &shared, client).await else {
                return;
            };
            let conn = Conn::new(client, false);
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
        Box::pin(tls::serve_tls(
            stream,
            client,
            config,
            accepted_at,
            guard,
            shared,
            closing,
        ))
        .await;
    }
}

/// A connection of a `proxy_protocol` listener: its PROXY header first
/// (within `header_timeout`; before the TLS handshake on a TLS listener),
/// whose source address becomes the connection's peer; then the connection
/// as any other. Without a valid header in time, it is closed.
async fn behind_proxy(
    mut stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    let wait = shared.current.load().plan.limits.header_timeout.as_duration();
    let Some(client) = proxy_protocol::read(&mut stream, peer, wait).await else {
        shared.metrics.reject(Rejection::BadRequest);
        tracing::debug!(%peer, "no valid PROXY header within header_timeout; closing");
        return;
    };
    serve_accepted(stream, client, guard, tls, shared, closing).await;
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

/// A connection as accepted: who, which protocol, when (the clock of
/// `header_timeout` starts here, TLS handshake included), and its place in
/// the connection count.
struct Accepted {
    conn: Conn,
    proto: Proto,
    at: u64,
    guard: ConnGuard,
}

/// Serves a connection until it ends: on the gateway's own HTTP/1.1 loop,
/// then, if a request needs it, on hyper; or on hyper's HTTP/2 server.
///
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
        match proto {
            Proto::H1 => {
                let ctx = h1server::Ctx {
                    shared: &shared,
                    conn: conn.clone(),
                    clocks: &clocks,
                    started,
                    closing: &mut closing,
                };
                let io = match h1server::serve(io, ctx).await {
                    Served::Closed => return,
                    Served::Fallback(io) => io,
                };
                let handover = Handover {
                    shared,
                    conn,
                    clocks,
                    limits,
                    started,
                    closing,
                };
                // Boxed: a connection on the fast path does not carry hyper's state.
                Box::pin(fallback::serve_h1(io, handover)).await
            }
            Proto::H2 => {
                let handover = Handover {
                    shared,
                    conn,
                    clocks,
                    limits,
                    started,
                    closing,
                };
                // Boxed: an HTTP/1.1 connection does not carry HTTP/2's state.
                Box::pin(fallback::serve_h2(io, handover)).await
            }
        }
    }
}
