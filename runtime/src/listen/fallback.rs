//! hyper's servers, for what the gateway's own HTTP/1.1 loop does not do:
//! the rest of an HTTP/1.1 connection whose request needs more (chunked or
//! large bodies, `Expect`, upgrades such as WebSocket, `CONNECT`; the loop
//! hands it over with the bytes already read), and HTTP/2. Each connection
//! is watched for the limits hyper does not keep itself: the first head
//! within `header_timeout`, `idle_timeout` with no request in flight, and a
//! graceful close on stop or shutdown (HTTP/1.1 after its current response,
//! HTTP/2 with a GOAWAY).
//!
//! On the HTTP/1.1 fallback hyper enforces the limits as before (its header
//! clock starts when a kept-alive connection waits for its next head; heads
//! up to 8 KiB, its smallest buffer, are read before `max_header_size` is
//! checked here).

use super::h1server::Rewind;
use crate::body::Body;
use crate::clock::now_millis;
use crate::conn::{Activity, Clocks, Conn, ConnInFlight};
use crate::error::{closing_response, status_response};
use crate::loaded::Shared;
use crate::metrics::Rejection;
use crate::proxy;
use gw_plan::ServerLimits;
use hyper::body::Incoming;
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, HttpService};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// hyper's smallest HTTP/1.1 read buffer: heads up to it are always read.
const HYPER_MIN_BUF: u64 = 8192;

/// What a connection on hyper needs from its accept: who, its clocks, its
/// limits, when it was accepted (the first head's clock) and the signal to
/// close.
pub(super) struct Handover {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Conn,
    pub(super) clocks: Arc<Clocks>,
    pub(super) limits: ServerLimits,
    pub(super) started: u64,
    pub(super) closing: watch::Receiver<bool>,
}

/// Serves the rest of an HTTP/1.1 connection on hyper (upgrades included).
///
/// This and [`serve_h2`] are functions returning async blocks (an `async
/// fn` stores its arguments twice in its future), and hyper's connection is
/// made by a plain function and pinned where it is: the future holds it
/// once, and not its builder.
#[allow(clippy::manual_async_fn)]
pub(super) fn serve_h1<S>(io: Rewind<Activity<S>>, mut handover: Handover) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let connection = std::pin::pin!(h1_connection(io, &handover));
        watch(connection, &mut handover).await
    }
}

/// Serves an HTTP/2 connection on hyper.
#[allow(clippy::manual_async_fn)]
pub(super) fn serve_h2<S>(io: Activity<S>, mut handover: Handover) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let connection = std::pin::pin!(h2_connection(io, &handover));
        watch(connection, &mut handover).await
    }
}

fn h1_connection<S>(io: Rewind<Activity<S>>, handover: &Handover) -> impl Graceful
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &handover.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.as_duration())
        .max_buf_size(limits.max_header_size.max(HYPER_MIN_BUF).min(usize::MAX as u64) as usize)
        .keep_alive(true)
        // A client that sent its whole request and shut its side still gets
        // the answer, as on the fast path.
        .half_close(true);
    builder
        .serve_connection(TokioIo::new(io), service(handover))
        .with_upgrades()
}

fn h2_connection<S>(io: Activity<S>, handover: &Handover) -> impl Graceful
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(handover.limits.max_header_size.min(u64::from(u32::MAX)) as u32);
    builder.serve_connection(TokioIo::new(io), service(handover))
}

/// hyper's service: each request counted in flight on its connection,
/// checked for what hyper does not check (`max_header_size` under 8 KiB, a
/// transfer coding besides `chunked`), then proxied.
fn service(
    handover: &Handover,
) -> impl HttpService<
    Incoming,
    ResBody = Body,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
> + 'static {
    // hyper reads heads of up to 8 KiB whatever it is told: check below that.
    let max_header_size = handover.limits.max_header_size;
    let max_head = (max_header_size < HYPER_MIN_BUF).then_some(max_header_size);
    let conn = handover.conn.clone();
    let service_shared = handover.shared.clone();
    let service_clocks = handover.clocks.clone();
    service_fn(move |req: Request<Incoming>| {
        let shared = service_shared.clone();
        let conn = conn.clone();
        let guard = ConnInFlight::start(service_clocks.clone());
        async move {
            let _guard = guard;
            if max_head.is_some_and(|max| head_size(&req) > max) {
                shared.metrics.reject(Rejection::HeaderTooLarge);
                return Ok::<_, Infallible>(status_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
            }
            // Only hyper reads a `Transfer-Encoding` (the gateway's loop
            // hands such a request over): a coding besides `chunked` is
            // refused here, before any of the body is read.
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
}

/// A connection of hyper's that can be asked to finish: HTTP/1.1 after its
/// current response, HTTP/2 with a GOAWAY.
trait Graceful: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, B, S> Graceful for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, B, S, E> Graceful for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Serves `connection` until it ends, closing it gracefully on stop,
/// shutdown or `idle_timeout`, and at once when the first head is late.
#[allow(clippy::manual_async_fn)]
fn watch<'a, C: Graceful>(mut connection: Pin<&'a mut C>, handover: &'a mut Handover) -> impl Future<Output = ()> + 'a {
    async move {
        let idle = handover.limits.idle_timeout.0.max(1);
        let header_deadline = handover.started.saturating_add(handover.limits.header_timeout.0);
        let (shared, conn, clocks) = (&handover.shared, &handover.conn, &handover.clocks);
        let closing = &mut handover.closing;
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
                        note_connection_error(shared, conn, &e);
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
    }
}

/// The size of a request head as HTTP/1.1 writes it (request line and
/// header lines with their CRLFs).
fn head_size<B>(req: &Request<B>) -> u64 {
    let line = req.method().as_str().len() + req.uri().path_and_query().map_or(1, |p| p.as_str().len()) + 12;
    let headers: usize = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    (line + headers + 2) as u64
}

/// Counts what a connection ended with: a head over `max_header_size` (hyper
/// answered 431) or a head not read within `header_timeout`.
fn note_connection_error(shared: &Shared, conn: &Conn, e: &(dyn std::error::Error + Send + Sync + 'static)) {
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
