//! The gateway's own HTTP/1.1 server loop for client connections: the fast
//! path for the common request (no `Transfer-Encoding`, no `Upgrade`, no
//! `Expect`, no `CONNECT`, a body of at most [`MAX_FAST_BODY`] bytes), with
//! hyper's HTTP/1.1 server taking over the rest of a connection whose
//! request needs more (see [`Served::Fallback`]).
//!
//! Why: hyper's dispatcher costs CPU per request, and hyper keeps an 8 KiB
//! read and an 8 KiB write buffer per connection for its whole life. Here a
//! connection waiting for its next request holds no buffer at all (a plain
//! TCP stream waits for readability before a read buffer is allocated), a
//! request head is parsed with `httparse` and turned into a
//! [`Request`] without copying (header values and the URI share the read
//! buffer), and a response head goes out together with a small first body
//! frame in one write. A chunked response ends with the trailer fields its
//! body carries (the proxy has already kept only those this client takes).
//!
//! Limits (see docs/language.md, `limits`): a head must complete within
//! `header_timeout` (from accept for the first request, from its first byte
//! for later ones) and within `max_header_size` (431 beyond); a connection
//! with no request in flight and no byte moving for `idle_timeout` is
//! closed, as is one whose request body or response stops moving for that
//! long. Stop and shutdown close an idle connection at once and let a
//! request in flight finish with `connection: close`.
//!
//! Longer than the runtime's other files, on purpose: the loop, the head
//! parser and the response writer share the connection's private types
//! (`Bounds`, `Cut`, `Framing`, `Rewind`) and its bounded waits; kept in one
//! module they stay private to it, and the whole HTTP/1.1 server side reads
//! in one place.

use crate::body::Body;
use crate::bufpool::CLIENT;
use crate::clock::{instant_at, now_millis};
use crate::conn::{Activity, Clocks, Conn};
use crate::error::status_response;
use crate::loaded::Shared;
use crate::metrics::Rejection;
use crate::proxy;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use std::future::Future;
use std::io::IoSlice;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// Request bodies up to this size (declared by `Content-Length`) are read
/// whole before dispatch; larger ones go to hyper, which streams them.
pub const MAX_FAST_BODY: u64 = 64 * 1024;

/// The most header lines a head may have (more: 431), as hyper's default.
const MAX_HEADERS: usize = 100;

/// How much a read asks for at least (the read buffer's size, from
/// [`crate::bufpool::CLIENT`], and what it grows by).
const READ_CHUNK: usize = crate::bufpool::CLIENT_SIZE;

/// A first body frame up to this size goes out in the response head's write.
const COALESCE: usize = 16 * 1024;

/// A stream the loop can serve. A plain TCP stream can wait for its next
/// request without holding a read buffer ([`Transport::tcp`]); any other
/// (TLS) allocates its buffer before it reads.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP stream to wait on for readability, when reads can wait
    /// without a buffer.
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }
}

impl Transport for TcpStream {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        Some(self)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

/// Reads what is there into `buf` with one poll of `read_buf`: `None` when
/// nothing was (the readiness was stale, and is now cleared).
async fn read_now(tcp: &mut TcpStream, buf: &mut BytesMut) -> Option<std::io::Result<usize>> {
    let mut read = std::pin::pin!(tcp.read_buf(buf));
    std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// How a connection left the fast path.
pub(crate) enum Served<T> {
    /// It is finished (closed, or to be dropped).
    Closed,
    /// A request needs what the fast path does not do: hyper serves the rest
    /// of the connection, starting with every byte already read.
    Fallback(Rewind<T>),
}

/// What the loop needs besides the stream.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub conn: Conn,
    pub clocks: &'a Arc<Clocks>,
    /// When the connection was accepted (`header_timeout` of the first head).
    pub started: u64,
    /// Set when the listener stops or the gateway shuts down.
    pub closing: &'a mut watch::Receiver<bool>,
}

/// The limits read once per connection, in the units the loop uses.
#[derive(Clone, Copy)]
struct Bounds {
    max_head: usize,
    header_timeout: u64,
    idle: u64,
}

/// Why a wait ended without its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The head's deadline (`header_timeout`) passed.
    HeaderTimeout,
    /// No byte moved for `idle_timeout`.
    Idle,
    /// The listener stopped or the gateway is shutting down.
    Stop,
}

/// A request head ready for dispatch, and what the loop must know of it.
struct Head {
    req: hyper::http::request::Parts,
    /// The declared body length (0 when absent).
    length: u64,
    /// The client wants the connection kept after this response.
    keep_alive: bool,
}

/// What parsing found. Not boxed: it lives on the stack for a moment, and a
/// box would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// More bytes are needed.
    Partial,
    Head(Head),
    /// The request needs hyper (see the module docs).
    Fallback,
    /// Answer this status and close.
    Refuse(StatusCode),
}

/// Serves `io` until it closes or a request needs hyper.
///
/// This and [`serve_with`] are functions returning async blocks: an `async
/// fn` stores its arguments twice in its future, and every connection, idle
/// or not, carries this one.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<'a, S: Transport>(
    io: Activity<S>,
    ctx: Ctx<'a>,
) -> impl Future<Output = Served<Activity<S>>> + use<'a, S> {
    async move {
        let mut buf = BytesMut::new();
        let served = serve_with(io, ctx, &mut buf).await;
        // The read buffer goes back to the thread's pool (a connection handed to
        // hyper took its bytes along).
        CLIENT.give(buf);
        served
    }
}

/// The loop itself, reading into `buf`: empty, and without memory, while it
/// waits for a request. Each turn: wait for the next request's first bytes
/// ([`next_bytes`]), read its head ([`read_head`]) and body ([`read_body`]),
/// dispatch it to the proxy, write the response ([`write_response`]).
#[allow(clippy::manual_async_fn)]
fn serve_with<'a, S: Transport>(
    mut io: Activity<S>,
    Ctx {
        shared,
        conn,
        clocks,
        started,
        closing,
    }: Ctx<'a>,
    buf: &'a mut BytesMut,
) -> impl Future<Output = Served<Activity<S>>> + use<'a, S> {
    let bounds = {
        let loaded = shared.current.load();
        let limits = &loaded.plan.limits;
        Bounds {
            max_head: usize::try_from(limits.max_header_size).unwrap_or(usize::MAX).max(1),
            header_timeout: limits.header_timeout.0,
            idle: limits.idle_timeout.0.max(1),
        }
    };
    async move {
        let mut first = true;
        // The connection's timer for its waits (see `bounded`); registered at
        // its first wait.
        let mut timer = pin!(tokio::time::sleep_until(Instant::from_std(instant_at(started))));
        let unread = loop {
            // The head's clock: from accept for the first request, else from
            // its first byte.
            let head_deadline = if buf.is_empty() {
                let deadline = first.then(|| started.saturating_add(bounds.header_timeout));
                let waited = next_bytes(&mut io, buf, clocks, &bounds, deadline, closing, timer.as_mut()).await;
                if ended(waited, shared, &conn) {
                    return Served::Closed;
                }
                // From the read that just came (it set `last`): no clock read.
                head_deadline(first, started, bounds.header_timeout, || {
                    clocks.last.load(Ordering::Relaxed)
                })
            } else {
                head_deadline(first, started, bounds.header_timeout, now_millis)
            };
            first = false;

            // The head and its body, then the request's dispatch. In a block:
            // what only reading needs (the request's parts, the body) has no
            // room in the connection's future while the response is made.
            let (dispatch, is_head, version, keep_alive) = {
                let Head {
                    req: parts,
                    length,
                    keep_alive,
                } = match read_head(&mut io, buf, clocks, &bounds, head_deadline, closing, timer.as_mut()).await {
                    Ok(head) => head,
                    // Handled out of the loop, where no head is in scope.
                    Err(unread) => break unread,
                };
                clocks.requests.fetch_add(1, Ordering::Relaxed);
                let Some(body) = read_body(&mut io, buf, length, clocks, bounds.idle).await else {
                    tracing::debug!(client = %conn.client, "request body incomplete; closing");
                    return Served::Closed;
                };
                let is_head = parts.method == Method::HEAD;
                let version = parts.version;
                let req = Request::from_parts(parts, Full::new(body));
                // Boxed: an idle connection does not carry the proxy's state (a few
                // KiB).
                let dispatch = crate::bufpool::recycled(proxy::handle(shared.clone(), conn.clone(), req));
                (dispatch, is_head, version, keep_alive)
            };
            let resp = dispatch.await;

            let close = !keep_alive || stopping(closing);
            let kept = write_response(&mut io, resp, is_head, version, close, clocks, bounds.idle).await;
            if !kept {
                let _ = idle_bounded(io.shutdown(), clocks, bounds.idle).await;
                return Served::Closed;
            }
        };
        match unread {
            Unread::Fallback => Served::Fallback(Rewind::new(std::mem::take(buf).freeze(), io)),
            Unread::Refuse(status) => {
                shared.metrics.reject(if status == StatusCode::BAD_REQUEST {
                    Rejection::BadRequest
                } else {
                    Rejection::HeaderTooLarge
                });
                // Boxed: rare, and its state would be in every connection's.
                Box::pin(refuse(io, status, clocks, bounds.idle)).await;
                Served::Closed
            }
            Unread::Ended(read) => {
                ended(read, shared, &conn);
                Served::Closed
            }
        }
    }
}

/// When the next head must be complete: `header_timeout` from accept for
/// the first request, else from `now` (its first byte).
fn head_deadline(first: bool, started: u64, header_timeout: u64, now: impl FnOnce() -> u64) -> u64 {
    if first { started } else { now() }.saturating_add(header_timeout)
}

/// Waits, holding no buffer, for the first bytes of the next request and
/// reads them into `buf` (`Ok(Ok(0))`: the client closed). `deadline` is the
/// first head's (`header_timeout` from accept); a later request's clock
/// starts with its first byte.
#[allow(clippy::manual_async_fn)]
fn next_bytes<'a, S: Transport>(
    io: &'a mut Activity<S>,
    buf: &'a mut BytesMut,
    clocks: &'a Clocks,
    bounds: &'a Bounds,
    deadline: Option<u64>,
    closing: &'a mut watch::Receiver<bool>,
    mut timer: Pin<&'a mut Sleep>,
) -> impl Future<Output = Result<std::io::Result<usize>, Cut>> + use<'a, S> {
    async move {
        // The last request's bytes are all dropped by now, so the buffer can
        // be reused.
        CLIENT.give(std::mem::take(buf));
        let Some(tcp) = io.inner.tcp() else {
            *buf = CLIENT.take();
            return bounded(io.read_buf(buf), clocks, bounds.idle, deadline, closing, timer).await;
        };
        loop {
            // The socket's own reader slot, not a waiter of `readable()`: the
            // wait keeps no node of its own (every idle connection carries
            // this future).
            let ready = bounded(
                std::future::poll_fn(|cx| tcp.poll_read_ready(cx)),
                clocks,
                bounds.idle,
                deadline,
                &mut *closing,
                timer.as_mut(),
            )
            .await;
            if !matches!(ready, Ok(Ok(()))) {
                return ready.map(|r| r.map(|()| 0));
            }
            // Readiness can be stale: a buffer only for bytes that came. One
            // poll of `read_buf` rather than `try_read`: a short read through
            // `poll_read` also clears the readiness, so the next wait costs no
            // read that finds nothing.
            *buf = CLIENT.take();
            match read_now(tcp, buf).await {
                None => CLIENT.give(std::mem::take(buf)),
                Some(Ok(n)) => {
                    clocks.last.store(now_millis(), Ordering::Relaxed);
                    return Ok(Ok(n));
                }
                Some(Err(e)) => return Ok(Err(e)),
            }
        }
    }
}

/// Why no head came to dispatch.
enum Unread {
    /// The request needs hyper (see the module docs).
    Fallback,
    /// Answer this status and close.
    Refuse(StatusCode),
    /// The read ended the connection (see [`ended`]).
    Ended(Result<std::io::Result<usize>, Cut>),
}

/// Reads into `buf` until a whole head is there, within `max_head` and the
/// head's `deadline`, and splits it off.
#[allow(clippy::manual_async_fn)]
fn read_head<'a, S: Transport>(
    io: &'a mut Activity<S>,
    buf: &'a mut BytesMut,
    clocks: &'a Clocks,
    bounds: &'a Bounds,
    deadline: u64,
    closing: &'a mut watch::Receiver<bool>,
    mut timer: Pin<&'a mut Sleep>,
) -> impl Future<Output = Result<Head, Unread>> + use<'a, S> {
    async move {
        loop {
            if !buf.is_empty() {
                match parse(buf, bounds.max_head) {
                    Parsed::Partial => {}
                    Parsed::Head(head) => return Ok(head),
                    Parsed::Fallback => return Err(Unread::Fallback),
                    Parsed::Refuse(status) => return Err(Unread::Refuse(status)),
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let read = bounded(
                io.read_buf(buf),
                clocks,
                bounds.idle,
                Some(deadline),
                &mut *closing,
                timer.as_mut(),
            )
            .await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return Err(Unread::Ended(read));
            }
        }
    }
}

/// Reads the body of `length` bytes (at most [`MAX_FAST_BODY`]) whole, while
/// bytes keep moving; `None` when the client stopped or closed first.
#[allow(clippy::manual_async_fn)]
fn read_body<'a, S: Transport>(
    io: &'a mut Activity<S>,
    buf: &'a mut BytesMut,
    length: u64,
    clocks: &'a Clocks,
    idle: u64,
) -> impl Future<Output = Option<Bytes>> + use<'a, S> {
    async move {
        let length = length as usize; // at most MAX_FAST_BODY
        if length == 0 {
            return Some(Bytes::new());
        }
        if buf.len() < length {
            buf.reserve(length - buf.len());
        }
        while buf.len() < length {
            match idle_bounded(io.read_buf(buf), clocks, idle).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
        Some(buf.split_to(length).freeze())
    }
}

/// Whether a read the loop waited for ends the connection: the client
/// closed or failed, or the wait was cut (counted and logged).
fn ended(read: Result<std::io::Result<usize>, Cut>, shared: &Shared, conn: &Conn) -> bool {
    match read {
        Ok(Ok(n)) => n == 0,
        Ok(Err(_)) => true,
        Err(cut) => {
            note_cut(shared, conn, cut);
            true
        }
    }
}

/// Counts and logs why a connection was closed while waiting.
fn note_cut(shared: &Shared, conn: &Conn, cut: Cut) {
    match cut {
        Cut::HeaderTimeout => {
            shared.metrics.reject(Rejection::HeaderTimeout);
            tracing::debug!(client = %conn.client, "no request head within header_timeout; closing");
        }
        Cut::Idle => tracing::debug!(client = %conn.client, "idle_timeout; closing"),
        Cut::Stop => tracing::debug!(client = %conn.client, "draining; closing"),
    }
}

/// The listener stopped or the gateway shuts down (a dropped sender counts).
fn stopping(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

/// Polls `fut` once (most waits end at once: no timer for them), then
/// waits for it while bytes keep moving (`idle_timeout`).
async fn idle_bounded<F: Future>(fut: F, clocks: &Clocks, idle: u64) -> Result<F::Output, Cut> {
    let mut fut = pin!(fut);
    if let Poll::Ready(v) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Ok(v);
    }
    loop {
        let now = now_millis();
        let idle_at = clocks.last.load(Ordering::Relaxed).saturating_add(idle);
        if now >= idle_at {
            return Err(Cut::Idle);
        }
        tokio::select! {
            biased;
            v = fut.as_mut() => return Ok(v),
            _ = tokio::time::sleep(Duration::from_millis(idle_at - now)) => {}
        }
    }
}

/// [`idle_bounded`], also ending at `deadline` (`header_timeout`) and on
/// stop or shutdown: the waits of a connection with no request in flight.
/// `timer` is the connection's own, moved to each wait's end: a later end is
/// a store into the registered timer, where a new timer per wait was an
/// insertion into the runtime's wheel and a removal, both under its lock.
async fn bounded<F: Future>(
    fut: F,
    clocks: &Clocks,
    idle: u64,
    deadline: Option<u64>,
    closing: &mut watch::Receiver<bool>,
    mut timer: Pin<&mut Sleep>,
) -> Result<F::Output, Cut> {
    let mut fut = pin!(fut);
    if let Poll::Ready(v) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Ok(v);
    }
    loop {
        if stopping(closing) {
            return Err(Cut::Stop);
        }
        let now = now_millis();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Cut::HeaderTimeout);
        }
        let idle_at = clocks.last.load(Ordering::Relaxed).saturating_add(idle);
        if now >= idle_at {
            return Err(Cut::Idle);
        }
        let wake = deadline.map_or(idle_at, |d| d.min(idle_at));
        timer.as_mut().reset(Instant::from_std(instant_at(wake)));
        tokio::select! {
            biased;
            v = fut.as_mut() => return Ok(v),
            _ = closing.changed() => return Err(Cut::Stop),
            _ = timer.as_mut() => {}
        }
    }
}

/// Parses the head at the start of `buf`; when complete, splits it off
/// `buf` and builds the request from it without copying.
fn parse(buf: &mut BytesMut, max_head: usize) -> Parsed {
    // Uninitialised: httparse fills what it finds (no 3 KiB to clear per head).
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_head {
                Parsed::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            } else {
                Parsed::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(_) => return Parsed::Refuse(StatusCode::BAD_REQUEST),
    };
    if len > max_head || u32::try_from(len).is_err() {
        return Parsed::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Refuse(StatusCode::BAD_REQUEST);
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Refuse(StatusCode::BAD_REQUEST);
    };
    if method == Method::CONNECT || path == "*" {
        return Parsed::Fallback;
    }
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    // Offsets into the buffer, so that the frozen head can be sliced.
    let base = buf.as_ptr() as usize;
    // Offsets and lengths are below `len`, which fits in a `u32`.
    let offset = |s: &[u8]| ((s.as_ptr() as usize).wrapping_sub(base) as u32, s.len() as u32);
    let path_at = offset(path.as_bytes());
    // `u32`: half the stack to clear per head (a head over 4 GiB is refused above).
    let mut lines = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let count = req.headers.len();
    let mut keep_alive = version == Version::HTTP_11;
    let mut close = false;
    let mut length: Option<u64> = None;
    for (line, h) in lines.iter_mut().zip(req.headers.iter()) {
        let name = offset(h.name.as_bytes());
        let value = offset(h.value);
        *line = (name.0, name.1, value.0, value.1);
        let n = h.name.as_bytes();
        if n.eq_ignore_ascii_case(b"transfer-encoding")
            || n.eq_ignore_ascii_case(b"upgrade")
            || n.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::Fallback;
        }
        if n.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Fallback;
                }
            }
        } else if n.eq_ignore_ascii_case(b"content-length") {
            for item in h.value.split(|b| *b == b',') {
                let Some(v) = parse_length(item.trim_ascii()) else {
                    return Parsed::Refuse(StatusCode::BAD_REQUEST);
                };
                if length.is_some_and(|l| l != v) {
                    return Parsed::Refuse(StatusCode::BAD_REQUEST);
                }
                length = Some(v);
            }
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_FAST_BODY {
        return Parsed::Fallback;
    }
    let head = buf.split_to(len).freeze();
    let Some(Ok(uri)) = within(&head, path_at.0, path_at.1).map(Uri::from_maybe_shared) else {
        return Parsed::Refuse(StatusCode::BAD_REQUEST);
    };
    // Room for what the proxy adds (`X-Forwarded-*`, `Host`) without growing.
    let mut map = crate::bufpool::header_map(count + 4);
    for &(n_at, n_len, v_at, v_len) in lines.iter().take(count) {
        let Some(name_bytes) = head.get(n_at as usize..(n_at as usize).saturating_add(n_len as usize)) else {
            return Parsed::Refuse(StatusCode::BAD_REQUEST);
        };
        let Ok(name) = HeaderName::from_bytes(name_bytes) else {
            return Parsed::Refuse(StatusCode::BAD_REQUEST);
        };
        let Some(Ok(value)) = within(&head, v_at, v_len).map(HeaderValue::from_maybe_shared) else {
            return Parsed::Refuse(StatusCode::BAD_REQUEST);
        };
        map.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = map;
    Parsed::Head(Head {
        req: parts,
        length,
        keep_alive: keep_alive && !close,
    })
}

/// `head[at..at + len]` sharing `head`, if in range (it always is: the
/// offsets come from parsing these bytes).
fn within(head: &Bytes, at: u32, len: u32) -> Option<Bytes> {
    let (at, len) = (at as usize, len as usize);
    let end = at.checked_add(len)?;
    (end <= head.len()).then(|| head.slice(at..end))
}

/// A `Content-Length` value: digits only.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Answers a refused head with `status` and closes, reading (and dropping)
/// what the client still sends for a moment so that the answer is not lost
/// to a reset.
async fn refuse<S: Transport>(mut io: Activity<S>, status: StatusCode, clocks: &Clocks, idle: u64) {
    let resp = status_response(status);
    // With `close`, the connection is never kept.
    write_response(&mut io, resp, false, Version::HTTP_11, true, clocks, idle).await;
    let _ = idle_bounded(io.shutdown(), clocks, idle).await;
    // Boxed: the connection's future does not carry the drain buffer.
    Box::pin(linger(io)).await;
}

/// Reads and drops up to 256 KiB for up to a second, or until the client closes.
async fn linger<S: Transport>(mut io: Activity<S>) {
    let mut scratch = [0u8; 2048];
    let drain = async {
        let mut left = 256 * 1024usize;
        while left > 0 {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// How a response body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, length unknown).
    Close,
}

/// Writes `resp`; `true` when the connection may serve another request.
async fn write_response<S: Transport>(
    io: &mut Activity<S>,
    resp: Response<Body>,
    is_head: bool,
    version: Version,
    mut close: bool,
    clocks: &Clocks,
    idle: u64,
) -> bool {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let framing = if is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else if let Some(n) = body.size_hint().exact().or_else(|| declared(&parts.headers)) {
        // A body whose size is not known in advance keeps the length its
        // headers declare (as hyper does); one that does not match it closes
        // the connection.
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::Close
    };
    if framing == Framing::Close || status.is_informational() {
        close = true;
    }
    // The first frame, if it is ready at once, goes out with the head.
    let mut first: Option<Bytes> = None;
    let mut ended = framing == Framing::None || body.is_end_stream();
    if !ended {
        match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(None) => ended = true,
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    // An empty frame is nothing to send.
                    first = Some(data).filter(|d| !d.is_empty());
                    ended = body.is_end_stream();
                }
                // A trailer section before any data (rare): back in front of
                // the rest, which streams (and ends with it).
                Err(frame) => body = crate::body::boxed(Prepend(Some(frame), body)),
            },
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body failed before its first byte");
                // The head is not out yet: the client gets nothing more.
                return false;
            }
            Poll::Pending => {}
        }
    }
    let head_extra = match framing {
        Framing::None if is_head && !parts.headers.contains_key(header::CONTENT_LENGTH) => {
            body.size_hint().exact().filter(|n| *n > 0)
        }
        _ => None,
    };
    let mut head = encode_head(&parts, version, framing, head_extra, &mut close);
    // The map (and the values of the upstream's head it holds) is done.
    crate::bufpool::give_header_map(parts.headers);
    let sent = first.as_ref().map_or(0, |d| d.len() as u64);
    if !fits(framing, sent) {
        return false;
    }
    // The first write: the head, with the first frame when it is small (and
    // the end of a chunked body when that came too).
    let small = first.as_ref().is_some_and(|d| d.len() <= COALESCE);
    let done = ended && (first.is_none() || small);
    let chunked = framing == Framing::Chunked;
    let (data, tail): (&[u8], &[u8]) = match &first {
        Some(d) if small && chunked => {
            put_chunk_size(&mut head, d.len());
            (d, if ended { b"\r\n0\r\n\r\n" } else { b"\r\n" })
        }
        Some(d) if small => (d, b""),
        None if ended && chunked => (b"", b"0\r\n\r\n"),
        _ => (b"", b""),
    };
    // Almost always taken whole at once: only a client that does not read
    // makes it wait, and only then is the wait (with its timer) boxed, so
    // that every connection's future does not carry it.
    let written = {
        let mut first_write = pin!(async {
            write_parts(io, &[&head, data, tail]).await?;
            if done {
                io.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        });
        match std::future::poll_fn(|cx| Poll::Ready(first_write.as_mut().poll(cx))).await {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => Box::pin(idle_bounded(first_write, clocks, idle)).await,
        }
    };
    if !matches!(written, Ok(Ok(()))) {
        return false;
    }
    drop(head);
    if done {
        return match framing {
            Framing::Length(n) if sent != n => {
                tracing::debug!(declared = n, sent, "response body shorter than its length; closing");
                false
            }
            _ => !close,
        };
    }
    // The rest streams as it comes. Boxed: the connection's future does not
    // carry a streaming body's state.
    let pending = if small { None } else { first };
    let rest = stream_rest(io, body, pending, framing, sent, ended);
    match Box::pin(idle_bounded(rest, clocks, idle)).await {
        Ok(true) => !close,
        Ok(false) => false,
        Err(_) => {
            tracing::debug!("response stalled past idle_timeout; closing");
            false
        }
    }
}

/// Writes `pending` (a first frame too large to go with the head) and the
/// rest of `body`, then the end of a chunked body with the body's trailer
/// fields, if it has any (a body of any other framing has no place for
/// them); `false` when the connection cannot be kept (a write or the body
/// failed, or the body did not match its declared length).
async fn stream_rest<S: Transport>(
    io: &mut Activity<S>,
    mut body: Body,
    pending: Option<Bytes>,
    framing: Framing,
    mut sent: u64,
    ended: bool,
) -> bool {
    if let Some(data) = pending {
        if write_data(io, framing, &data).await.is_err() {
            return false;
        }
    }
    let mut trailers = None;
    if !ended {
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => {
                            trailers = frame.into_trailers().ok();
                            continue;
                        }
                    };
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if !fits(framing, sent) || write_data(io, framing, &data).await.is_err() {
                        return false;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "response body failed; closing");
                    return false;
                }
            }
        }
    }
    if framing == Framing::Chunked {
        let written = match trailers.filter(|t: &HeaderMap| !t.is_empty()) {
            Some(fields) => write_parts(io, &[&last_chunk(&fields)]).await,
            None => write_parts(io, &[b"0\r\n\r\n"]).await,
        };
        if written.is_err() {
            return false;
        }
    }
    if let Framing::Length(n) = framing {
        if sent != n {
            tracing::debug!(declared = n, sent, "response body shorter than its length; closing");
            return false;
        }
    }
    io.flush().await.is_ok()
}

/// The last chunk of a chunked body with its trailer section (RFC 9112
/// 7.1.2).
fn last_chunk(fields: &HeaderMap) -> BytesMut {
    let size: usize = fields.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let mut out = BytesMut::with_capacity(size + 5);
    out.extend_from_slice(b"0\r\n");
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A body with one frame put back in front of it.
struct Prepend(Option<hyper::body::Frame<Bytes>>, Body);

impl HttpBody for Prepend {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut self.1).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none() && self.1.is_end_stream()
    }
}

/// The one `Content-Length` of `headers`, if valid.
fn declared(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_length(first.as_bytes())
}

/// The body so far is within its declared length.
fn fits(framing: Framing, sent: u64) -> bool {
    match framing {
        Framing::Length(n) => sent <= n,
        Framing::None => sent == 0,
        _ => true,
    }
}

/// Writes one body frame as `framing` says.
async fn write_data<S: Transport>(io: &mut Activity<S>, framing: Framing, data: &[u8]) -> std::io::Result<()> {
    match framing {
        Framing::Chunked => {
            let mut size = BytesMut::with_capacity(18);
            put_chunk_size(&mut size, data.len());
            write_parts(io, &[&size, data, b"\r\n"]).await
        }
        Framing::None => Ok(()),
        _ => write_parts(io, &[data]).await,
    }
}

/// Appends `{len:x}\r\n`.
fn put_chunk_size(out: &mut BytesMut, len: usize) {
    out.extend_from_slice(crate::text::hex(len, &mut [0; 16]));
    out.extend_from_slice(b"\r\n");
}

/// Writes `parts` in order: one vectored write when the stream supports it,
/// else one write of their copy when small, else one write each.
async fn write_parts<S: Transport>(io: &mut Activity<S>, parts: &[&[u8]]) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total == 0 {
        return Ok(());
    }
    if parts.len() == 1 {
        return io.write_all(parts[0]).await;
    }
    if io.is_write_vectored() && parts.len() <= 3 {
        let mut slices = [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])];
        for (s, p) in slices.iter_mut().zip(parts) {
            *s = IoSlice::new(p);
        }
        let mut rest: &mut [IoSlice<'_>] = &mut slices[..parts.len()];
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            let n = io.write_vectored(rest).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        return Ok(());
    }
    if total <= COALESCE + 1024 {
        let mut one = Vec::with_capacity(total);
        for p in parts {
            one.extend_from_slice(p);
        }
        return io.write_all(&one).await;
    }
    for p in parts {
        io.write_all(p).await?;
    }
    Ok(())
}

/// The response head: status line, headers (framing and `connection` set
/// here), `date` when absent. A response that says `connection: close` (the
/// gateway's refusals, `error::closing_response`) sets `close`.
fn encode_head(
    parts: &hyper::http::response::Parts,
    version: Version,
    framing: Framing,
    head_length: Option<u64>,
    close: &mut bool,
) -> BytesMut {
    let size: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + 160;
    let mut out = BytesMut::with_capacity(size);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.put_u8(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let no_length_header = parts.status.is_informational() || parts.status == StatusCode::NO_CONTENT;
    for (name, value) in &parts.headers {
        if *name == header::CONNECTION {
            *close |= crate::request::lists_token(value, b"close");
            continue;
        }
        if *name == header::TRANSFER_ENCODING {
            continue;
        }
        if *name == header::CONTENT_LENGTH && (framing != Framing::None || no_length_header) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&http_date());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => put_length(&mut out, n),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {
            if let Some(n) = head_length {
                put_length(&mut out, n);
            }
        }
        Framing::Close => {}
    }
    if *close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn put_length(out: &mut BytesMut, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(crate::text::decimal(n, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `date` value of the current second, made once per second per thread.
    static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
}

/// Now as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date() -> [u8; 29] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let (at, text) = cell.get();
        if at == secs {
            return text;
        }
        let text = format_date(secs);
        cell.set((secs, text));
        text
    })
}

/// `secs` since the Unix epoch as an IMF-fixdate.
fn format_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (year, month, day) = crate::text::civil_from_days(days as i64);
    let (year, month, day) = (year.rem_euclid(10_000) as u64, u64::from(month), u64::from(day));
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut [u8; 29], at: usize, v: u64| {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 5, day);
    out[8..11].copy_from_slice(MONTHS[(month as usize).saturating_sub(1) % 12]);
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, hour);
    two(&mut out, 20, minute);
    two(&mut out, 23, second);
    out
}

/// An IO that replays `prefix` (bytes the fast path already read) before
/// reading from `inner`; writes go straight to `inner`.
pub(crate) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    fn new(prefix: Bytes, inner: T) -> Rewind<T> {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Fuzzing entry, not an API (`fuzz/`, and the corpus replay in
/// `tests/fuzz_corpus.rs`): reads `data` as the bytes a client sends on one
/// connection, the way the loop does — each head parsed by `parse` as bytes
/// arrive, each request's declared body skipped, until a refusal, a
/// fallback to hyper or the end — once with every byte there at the start
/// and once arriving in pieces, and panics if the two readings differ (400
/// and 431 count as one: a head over the limit and malformed is refused for
/// whichever shows first), if a head was taken beyond
/// `max_header_size` or a fallback consumed bytes.
/// `data[0]` picks `max_header_size` (64 bytes to 16 KiB), `data[1]` the
/// pieces' sizes; the rest is the stream.
#[doc(hidden)]
pub fn fuzz_request_reader(data: &[u8]) {
    let [size, split, stream @ ..] = data else { return };
    let max_head = (usize::from(*size) + 1) * 64;
    let read = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut buf = BytesMut::new();
        let (mut seen, mut body_left) = (Vec::new(), 0usize);
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let skip = body_left.min(buf.len());
                buf.advance(skip);
                body_left -= skip;
                if body_left > 0 || buf.is_empty() {
                    break;
                }
                let before = buf.len();
                match parse(&mut buf, max_head) {
                    Parsed::Partial => {
                        assert!(
                            before <= max_head && buf.len() == before,
                            "a partial head beyond the limit"
                        );
                        break;
                    }
                    Parsed::Head(head) => {
                        let used = before - buf.len();
                        assert!(used > 0 && used <= max_head, "a head of {used} bytes taken");
                        assert!(head.length <= MAX_FAST_BODY);
                        let r = &head.req;
                        seen.push(format!(
                            "{} {} {:?} {:?} length {} keep-alive {}",
                            r.method, r.uri, r.version, r.headers, head.length, head.keep_alive
                        ));
                        body_left = head.length as usize;
                    }
                    Parsed::Fallback => {
                        assert_eq!(buf.len(), before, "a fallback consumed bytes");
                        seen.push("fallback".to_string());
                        return seen;
                    }
                    Parsed::Refuse(status) => {
                        assert!(status.is_client_error() || status.is_server_error());
                        // A head both over the limit and malformed is refused
                        // for whichever shows first, which depends on how much
                        // had come: either answer is right.
                        let bad = matches!(status.as_u16(), 400 | 431);
                        seen.push(if bad {
                            "refused 400/431".to_string()
                        } else {
                            format!("refused {status}")
                        });
                        return seen;
                    }
                }
            }
        }
        seen
    };
    crate::fuzzing::same_in_pieces(stream, *split, read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(&format_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&format_date(1_767_225_599), b"Wed, 31 Dec 2025 23:59:59 GMT");
    }

    #[test]
    fn a_head_becomes_a_request_without_copying_and_pipelined_bytes_stay() {
        let mut buf = BytesMut::from(&b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next"[..]);
        let Parsed::Head(head) = parse(&mut buf, 8192) else {
            panic!("a head")
        };
        assert_eq!(head.req.uri.path_and_query().map(|p| p.as_str()), Some("/a?b=1"));
        assert_eq!(head.req.headers.get_all("x-a").iter().count(), 2);
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn what_the_fast_path_does_not_do_falls_back() {
        for raw in [
            &b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 70000\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(raw);
            assert!(
                matches!(parse(&mut buf, 8192), Parsed::Fallback),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(&buf[..], raw, "nothing consumed");
        }
    }

    #[test]
    fn bad_heads_are_refused() {
        for (raw, status, max) in [
            (
                &b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"[..],
                400,
                8192,
            ),
            (b"GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", 400, 8192),
            (b"GET / HTTP/1.1\r\ncontent-length: 1,2\r\n\r\n", 400, 8192),
            (b"\x01\x02 garbage\r\n\r\n", 400, 8192),
            (
                b"GET / HTTP/1.1\r\nx: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
                431,
                40,
            ),
            (
                b"GET / HTTP/1.1\r\nx: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                431,
                40,
            ),
        ] {
            let mut buf = BytesMut::from(raw);
            match parse(&mut buf, max) {
                Parsed::Refuse(s) => assert_eq!(s.as_u16(), status),
                _ => panic!("refused: {}", String::from_utf8_lossy(raw)),
            }
        }
        let many: String = (0..101).map(|i| format!("h{i}: v\r\n")).collect();
        let mut buf = BytesMut::from(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
        assert!(matches!(
            parse(&mut buf, 1 << 20),
            Parsed::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
    }

    #[test]
    fn http_1_0_keeps_alive_only_when_asked() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\n\r\n"[..]);
        assert!(matches!(parse(&mut buf, 8192), Parsed::Head(h) if !h.keep_alive));
        let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"[..]);
        assert!(matches!(parse(&mut buf, 8192), Parsed::Head(h) if h.keep_alive));
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..]);
        assert!(matches!(parse(&mut buf, 8192), Parsed::Head(h) if !h.keep_alive));
    }

    #[test]
    fn chunk_sizes_are_hex() {
        let mut out = BytesMut::new();
        put_chunk_size(&mut out, 0x1a2f);
        put_chunk_size(&mut out, 0);
        assert_eq!(&out[..], b"1a2f\r\n0\r\n");
    }
}
