//! The gateway's own HTTP/1.1 client for proxied requests: one exchange on
//! one upstream connection (TCP, or TLS over TCP for a `tls` upstream:
//! `stream::Stream`), driven by the request's own task — no
//! connection task, no channel between the request and its connection, so a
//! response costs no extra task wake-up.
//!
//! [`exchange`] writes the request head (and the body's first frame, when it
//! is ready at once, in the same `writev`), then reads the response head
//! while it goes on sending a streamed body: an upstream may answer early
//! (a `413` before it read the body) or stream its answer while the body is
//! still coming (full duplex). The response head is parsed with `httparse`
//! (at most [`MAX_HEADERS`] headers within [`MAX_HEAD`] bytes), `1xx`
//! answers other than `101` are skipped, and header values are slices of the
//! one frozen head buffer rather than one allocation each. A connection that
//! closes or fails before a whole response head is typed apart from an
//! answer that cannot be read: [`Failed::Replay`] when it was reused and the
//! whole request can safely go again on a new one (the keep-alive race),
//! [`Failed::Reset`] otherwise (the request was sent and may have been acted
//! on: the proxy retries it for idempotent methods only).
//!
//! The response body ([`ResponseBody`]) is framed as RFC 9112 6.3 says:
//! none (`HEAD`, `1xx`, `204`, `304`), chunked, `Content-Length` (an exact
//! `size_hint`), or until the connection closes. It streams frame by frame
//! (at most [`MAX_FRAME`] bytes each); bytes read along with the head come
//! first; a chunked body's trailer fields (at most [`MAX_TRAILERS`] bytes)
//! end it as a trailers frame, for the proxy to filter and pass on. When it has been read to its end, and both sides allow it, the
//! connection goes back to its [`H1Pool`] with no read buffer (an idle
//! connection is its socket and a timestamp); a body dropped early closes the
//! connection. A `101 Switching Protocols` hands the raw socket (and any
//! bytes read past the head) to the caller for tunnelling.
//!
//! [`send`] is the client's entry: it takes an idle connection from the
//! server's pool (or dials), exchanges, and sends a request whose reused
//! connection had closed once more on a new one when that is safe.
//!
//! Longer than the runtime's other files, on purpose: the writer, the head
//! parser, the chunked decoder and the response body share the exchange's
//! private types (`Wire`, `Writer`, `ReqMeta`, `Framing`) and stay private
//! to one module (about 170 of its lines are tests).

use super::pool::H1Pool;
use super::stream::Stream;
use super::{SendError, UpstreamBody};
use crate::body::{Body, BoxError};
use crate::bufpool::UPSTREAM;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use std::borrow::BorrowMut;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// A response head (status line and headers) may be at most this long.
pub const MAX_HEAD: usize = 64 * 1024;
/// A response head may have at most this many headers.
pub const MAX_HEADERS: usize = 100;
/// A response body frame is at most this long.
pub const MAX_FRAME: usize = 64 * 1024;
/// How much a read asks for at a time (the read buffer's size, from
/// [`crate::bufpool::UPSTREAM`]).
const READ_SIZE: usize = crate::bufpool::UPSTREAM_SIZE;
/// A chunk-size line (with extensions) may be at most this long.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// A chunked body's trailer section may be at most this long.
const MAX_TRAILERS: usize = 64 * 1024;

/// Why an exchange failed: the upstream broke the protocol or the
/// connection. (A failing request body is passed on as its own error.)
#[derive(Debug)]
pub enum H1Error {
    /// The response head was longer than [`MAX_HEAD`] or had too many headers.
    HeadTooLarge,
    /// The response could not be parsed (head, length or chunk framing).
    Invalid(&'static str),
    /// The connection closed before the response (or its body) was complete.
    Closed,
    /// The connection failed.
    Io(io::Error),
}

impl fmt::Display for H1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H1Error::HeadTooLarge => f.write_str("upstream response head too large"),
            H1Error::Invalid(what) => write!(f, "invalid upstream response: {what}"),
            H1Error::Closed => f.write_str("upstream closed the connection before the response was complete"),
            H1Error::Io(e) => write!(f, "upstream connection failed: {e}"),
        }
    }
}

impl std::error::Error for H1Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            H1Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A request body that did not match the length it announced.
#[derive(Debug)]
pub struct LengthMismatch;

impl fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body length differs from its declared length")
    }
}

impl std::error::Error for LengthMismatch {}

/// How an exchange ended without a response.
pub enum Failed {
    /// A reused connection failed before any byte of an answer, and the
    /// whole request is still in hand: it may go once more on a fresh one.
    Replay(Replay),
    /// The connection closed or failed after the request (or a part of it)
    /// was written and before a whole response head came: the server may
    /// have acted on the request, and has not answered it.
    Reset,
    /// Anything else: an answer the gateway cannot read, or the request
    /// body's own error (passed on as is, so that `proxy::classify` finds
    /// it).
    Error(BoxError),
}

/// A request that can be written again as it was.
pub struct Replay {
    bytes: [Bytes; 4],
    meta: ReqMeta,
}

/// What the exchange needs to know about its request.
#[derive(Clone, Copy)]
struct ReqMeta {
    head: bool,
    upgrade: bool,
    close: bool,
    idempotent: bool,
}

/// Writes the request: head, then body frames (chunk-encoded when the
/// length is not known). Everything pending goes out in one `writev`.
struct Writer {
    /// Head, chunk-size line, data, chunk end (or the last chunk).
    out: [Bytes; 4],
    body: Option<Body>,
    chunked: bool,
    /// The bytes still due under the `Content-Length` sent, if one was.
    declared: Option<u64>,
    /// Has the body been polled yet? (Its first frame goes out with the head.)
    primed: bool,
    /// Bytes of `out` already written (`out` is kept whole, so that a
    /// request that fitted in it can be written again).
    sent: usize,
    /// The whole request is in `out` (its body ended with its first frame).
    whole: bool,
}

/// Why the writer stopped.
enum WriteError {
    /// The request body failed (the client's fault, or too large).
    Body(BoxError),
    /// The connection failed.
    Io(io::Error),
}

impl Writer {
    fn pending(&self) -> bool {
        self.sent < self.out.iter().map(Bytes::len).sum::<usize>()
    }

    /// The whole request, when it went in one write (for a replay).
    fn take_whole(&mut self) -> Option<[Bytes; 4]> {
        self.whole.then(|| std::mem::take(&mut self.out))
    }

    /// Sends what it can; `Ready(Ok)` once the whole request is written.
    fn poll_write(&mut self, cx: &mut Context<'_>, stream: &mut Stream) -> Poll<Result<(), WriteError>> {
        loop {
            if !self.primed {
                self.primed = true;
                // A body that is complete (or whose first frame is ready)
                // goes out with the head in one write.
                if let Poll::Ready(Err(e)) = self.poll_body(cx) {
                    return Poll::Ready(Err(e));
                }
                self.whole = self.body.is_none();
                continue;
            }
            if self.pending() {
                let mut slices = [IoSlice::new(&[]); 4];
                let (mut count, mut skip) = (0, self.sent);
                for b in &self.out {
                    if skip >= b.len() {
                        skip -= b.len();
                        continue;
                    }
                    slices[count] = IoSlice::new(&b[skip..]);
                    skip = 0;
                    count += 1;
                }
                match Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count]) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(WriteError::Io(e))),
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into()))),
                    Poll::Ready(Ok(n)) => self.sent += n,
                }
                continue;
            }
            // What TLS holds back goes out before the request is done or
            // waits on its body (a plain socket holds nothing back).
            if let Stream::Tls(_) = stream {
                if let Err(e) = ready!(Pin::new(&mut *stream).poll_flush(cx)) {
                    return Poll::Ready(Err(WriteError::Io(e)));
                }
            }
            if self.body.is_none() {
                return Poll::Ready(Ok(()));
            }
            // Everything so far is out: the next frame starts afresh.
            self.out = Default::default();
            self.sent = 0;
            ready!(self.poll_body(cx))?;
        }
    }

    /// Takes the body's next frame into `out` (or ends the body).
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let data = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                self.body = None;
                return Poll::Ready(Err(WriteError::Body(e)));
            }
            Poll::Ready(None) => {
                self.body = None;
                Bytes::new()
            }
            // A request's trailers are not forwarded (docs/language.md,
            // decision 47): such a frame carries no data.
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        };
        let ended = self.body.as_ref().is_none_or(HttpBody::is_end_stream);
        if let Some(left) = self.declared.as_mut() {
            // A body must match the length announced for it, or the
            // upstream would misread the connection.
            let n = data.len() as u64;
            if n > *left || ended && n != *left {
                self.body = None;
                return Poll::Ready(Err(WriteError::Body(Box::new(LengthMismatch))));
            }
            *left -= n;
        }
        if self.chunked {
            if !data.is_empty() {
                let mut line = BytesMut::with_capacity(18);
                line.extend_from_slice(crate::text::hex(data.len(), &mut [0; 16]));
                line.extend_from_slice(b"\r\n");
                self.out[1] = line.freeze();
                self.out[2] = data;
                self.out[3] = Bytes::from_static(if ended { b"\r\n0\r\n\r\n" } else { b"\r\n" });
            } else if ended {
                self.out[3] = Bytes::from_static(b"0\r\n\r\n");
            }
        } else {
            self.out[2] = data;
        }
        if ended {
            self.body = None;
        }
        Poll::Ready(Ok(()))
    }
}

/// The connection and what has been read from it but not used yet.
struct Wire {
    stream: Stream,
    rbuf: BytesMut,
    /// The request was not sent whole (a write failed, or the answer came
    /// first and the body was abandoned): the connection cannot be reused.
    broken: bool,
    /// A write failed before any byte of the request went out: the
    /// upstream cannot have seen any of it. (A write that fails after
    /// some bytes went leaves a request the upstream may have begun to
    /// act on.)
    unsent: bool,
    /// Some byte of an answer came.
    answered: bool,
}

impl Wire {
    /// Reads more into `rbuf`; `Ok(0)` when the upstream closed.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() == 0 {
            self.rbuf = UPSTREAM.take();
        } else if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(READ_SIZE);
        }
        // `read_buf` fills spare capacity through `poll_read`, which (short
        // read) also clears the socket's readiness: a later check of an
        // idle connection then costs no syscall.
        let read = self.stream.read_buf(&mut self.rbuf);
        tokio::pin!(read);
        read.poll(cx)
    }

    /// Drives the request (`writer`, emptied once it is all sent or failed),
    /// and then keeps the whole request in `replay` if it went in one write. A
    /// failing body is an error; a failing write only stops sending (the
    /// answer may be there already).
    fn poll_send<W: BorrowMut<Writer>>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut Option<W>,
        replay: Option<&mut Option<[Bytes; 4]>>,
    ) -> Result<(), BoxError> {
        let Some(w) = writer.as_mut() else {
            return Ok(());
        };
        let w = w.borrow_mut();
        let result = w.poll_write(cx, &mut self.stream);
        if let (Some(slot), true) = (replay, result.is_ready()) {
            *slot = w.take_whole();
        }
        match result {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(())) => {
                *writer = None;
                Ok(())
            }
            Poll::Ready(Err(WriteError::Io(e))) => {
                tracing::debug!(error = %e, "writing to the upstream failed");
                // The whole request is in `out` when it may be replayed, so
                // `sent` counts every byte of it that went.
                self.unsent = w.whole && w.sent == 0;
                *writer = None;
                self.broken = true;
                Ok(())
            }
            Poll::Ready(Err(WriteError::Body(e))) => {
                *writer = None;
                self.broken = true;
                Err(e)
            }
        }
    }
}

/// A request taken apart for the wire: its head encoded (with the body when
/// it is ready) and what reading the answer depends on.
pub(crate) struct Encoded {
    writer: Writer,
    meta: ReqMeta,
}

/// Encodes `req` for the wire ([`exchange`] sends it). Not async, so the
/// request is taken apart where it is, not moved into another future first.
pub(crate) fn encode(req: Request<Body>) -> Encoded {
    let (parts, body) = req.into_parts();
    let meta = ReqMeta {
        head: parts.method == Method::HEAD,
        upgrade: crate::request::is_upgrade(&parts.headers),
        close: crate::request::connection_lists(&parts.headers, "close"),
        idempotent: matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
        ),
    };
    let writer = request_writer(&parts, body);
    // The head is encoded: its map can serve another message.
    crate::bufpool::give_header_map(parts.headers);
    Encoded { writer, meta }
}

/// Sends `req` (origin-form URI, `Host` set, hop-by-hop headers gone) to
/// `pool`'s server on an idle connection or a new one, and returns once the
/// response head is in. A reused connection that fails before any byte of an
/// answer, with the whole request still in hand (and either an idempotent
/// method or a request of which not one byte went), gets the request once
/// more on a fresh connection.
///
/// The request is encoded when this is called, before the future exists:
/// the future then holds the encoded head, not the request as well.
pub(crate) fn send(
    pool: &Arc<H1Pool>,
    req: Request<Body>,
) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + use<'_> {
    let encoded = encode(req);
    async move {
        let (stream, reused) = match pool.take(usable) {
            Some(s) => (s, true),
            // Boxed: connecting is rare, and its state would otherwise
            // be part of every request's future.
            None => (Box::pin(pool.connect()).await?, false),
        };
        let replay = match exchange(pool, stream, reused, encoded).await {
            Ok(resp) => return Ok(resp),
            Err(Failed::Error(e)) => return Err(SendError::Exchange(e)),
            Err(Failed::Reset) => return Err(SendError::Reset { fresh: !reused }),
            Err(Failed::Replay(replay)) => replay,
        };
        tracing::debug!(server = %pool.addr(), "a pooled connection had closed; sending again on a new one");
        // A refused connect now says the server is gone (not the
        // keep-alive race): it is a connect error like any other.
        let stream = Box::pin(pool.connect()).await?;
        Box::pin(self::replay(pool, stream, replay)).await.map_err(|e| match e {
            Failed::Error(e) => SendError::Exchange(e),
            Failed::Reset | Failed::Replay(_) => SendError::Reset { fresh: true },
        })
    }
}

/// Writes a replayed request on a fresh connection and reads the answer's head.
pub(crate) async fn replay(
    pool: &Arc<H1Pool>,
    stream: Stream,
    replay: Replay,
) -> Result<Response<UpstreamBody>, Failed> {
    let writer = Writer {
        out: replay.bytes,
        body: None,
        chunked: false,
        declared: None,
        primed: true,
        sent: 0,
        whole: true,
    };
    let encoded = Encoded {
        writer,
        meta: replay.meta,
    };
    exchange(pool, stream, false, encoded).await
}

/// Sends an encoded request on `stream` and reads the answer's head.
/// `reused`: the connection came from the pool (a failure before any answer
/// may then be replayed on a fresh one).
pub(crate) async fn exchange(
    pool: &Arc<H1Pool>,
    stream: Stream,
    reused: bool,
    encoded: Encoded,
) -> Result<Response<UpstreamBody>, Failed> {
    let Encoded { writer, meta } = encoded;
    let mut wire = Wire {
        stream,
        rbuf: BytesMut::new(),
        broken: false,
        unsent: false,
        answered: false,
    };
    let mut writer = Some(writer);
    let mut replay = None;
    let head = poll_fn(|cx| poll_head(cx, &mut wire, &mut writer, &mut replay, meta)).await;
    match head {
        Ok(head) => Ok(build_response(pool, wire, writer, head, meta)),
        Err(HeadError::Body(e)) => Err(Failed::Error(e)),
        Err(HeadError::Upstream(e, answered)) => {
            // Sent again only when the upstream cannot have acted on it:
            // an idempotent method, or not one byte of it went.
            let safe = meta.idempotent || wire.unsent;
            match replay {
                Some(bytes) if reused && !answered && safe => Err(Failed::Replay(Replay { bytes, meta })),
                _ if matches!(e, H1Error::Closed | H1Error::Io(_)) => {
                    tracing::debug!(error = %e, "the upstream connection broke before a response head");
                    Err(Failed::Reset)
                }
                _ => Err(Failed::Error(Box::new(e))),
            }
        }
    }
}

/// A parsed response head.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

enum HeadError {
    Body(BoxError),
    /// The upstream's failure, and whether any byte of an answer came.
    Upstream(H1Error, bool),
}

fn poll_head(
    cx: &mut Context<'_>,
    wire: &mut Wire,
    writer: &mut Option<Writer>,
    replay: &mut Option<[Bytes; 4]>,
    meta: ReqMeta,
) -> Poll<Result<Head, HeadError>> {
    loop {
        wire.poll_send(cx, writer, Some(replay)).map_err(HeadError::Body)?;
        if !wire.rbuf.is_empty() {
            match parse_head(&mut wire.rbuf, meta) {
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(HeadError::Upstream(e, true))),
            }
            if wire.rbuf.len() >= MAX_HEAD {
                return Poll::Ready(Err(HeadError::Upstream(H1Error::HeadTooLarge, true)));
            }
        }
        match ready!(wire.poll_read(cx)) {
            Ok(0) => return Poll::Ready(Err(HeadError::Upstream(H1Error::Closed, wire.answered))),
            Ok(_) => wire.answered = true,
            Err(e) => return Poll::Ready(Err(HeadError::Upstream(H1Error::Io(e), wire.answered))),
        }
    }
}

/// Parses a final response head from the front of `rbuf` (skipping `1xx`
/// answers other than `101`); `None` when more bytes are needed.
fn parse_head(rbuf: &mut BytesMut, meta: ReqMeta) -> Result<Option<Head>, H1Error> {
    loop {
        if rbuf.is_empty() {
            return Ok(None);
        }
        // Offsets of each header's name and value in the head.
        // `u32`: half the stack to clear per head (heads are far smaller).
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let (len, code, minor, count) = {
            let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let parsed =
                httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, rbuf, &mut headers);
            let len = match parsed {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
                Err(_) => return Err(H1Error::Invalid("malformed head")),
            };
            if len > MAX_HEAD {
                return Err(H1Error::HeadTooLarge);
            }
            let base = rbuf.as_ptr() as usize;
            let count = resp.headers.len();
            // Every offset and length is below `len` (at most MAX_HEAD).
            let at = |p: *const u8| (p as usize - base) as u32;
            for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
                let name = h.name.as_bytes();
                *span = (
                    at(name.as_ptr()),
                    name.len() as u32,
                    at(h.value.as_ptr()),
                    h.value.len() as u32,
                );
            }
            (len, resp.code.unwrap_or(0), resp.version.unwrap_or(1), count)
        };
        if len > MAX_HEAD {
            return Err(H1Error::HeadTooLarge);
        }
        let head = rbuf.split_to(len).freeze();
        // RFC 9110 15: a status code is 100 to 599; anything else is not an
        // answer to pass on (`http` would take up to 999).
        if !(100..=599).contains(&code) {
            return Err(H1Error::Invalid("status"));
        }
        let status = StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("status"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            continue; // 100 Continue, 103 Early Hints: the final answer follows
        }
        let mut headers = crate::bufpool::header_map(count);
        let mut keep_alive = minor == 1;
        // `Transfer-Encoding`: seen at all, its codings, `chunked` among them
        // and last.
        let (mut coded, mut codings, mut chunked_count, mut last_chunked) = (false, 0usize, 0usize, false);
        let mut length: Option<u64> = None;
        // A Content-Length that is not a number, or two that differ.
        let mut bad_length = None;
        for &(ns, nl, vs, vl) in &spans[..count] {
            let (ns, nl, vs, vl) = (ns as usize, nl as usize, vs as usize, vl as usize);
            // The offsets come from parsing these very bytes; `get` keeps
            // even a mistake from panicking.
            let name = head
                .get(ns..ns + nl)
                .and_then(|n| HeaderName::from_bytes(n).ok())
                .ok_or(H1Error::Invalid("header name"))?;
            let value = head
                .get(vs..vs + vl)
                .map(|v| head.slice_ref(v))
                .and_then(|v| HeaderValue::from_maybe_shared(v).ok())
                .ok_or(H1Error::Invalid("header value"))?;
            if name == header::CONNECTION {
                for token in value.as_bytes().split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                        keep_alive = true;
                    }
                }
            } else if name == header::TRANSFER_ENCODING {
                coded = true;
                for item in value.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if item.is_empty() {
                        continue;
                    }
                    codings += 1;
                    last_chunked = item.eq_ignore_ascii_case(b"chunked");
                    chunked_count += usize::from(last_chunked);
                }
            } else if name == header::CONTENT_LENGTH && bad_length.is_none() {
                for part in value.as_bytes().split(|b| *b == b',') {
                    match parse_length(part.trim_ascii()) {
                        None => bad_length = Some("content-length"),
                        Some(n) if length.is_some_and(|l| l != n) => bad_length = Some("conflicting content-length"),
                        Some(n) => length = Some(n),
                    }
                }
            }
            headers.append(name, value);
        }
        // RFC 9112 6.3: an answer to HEAD, a 204 and a 304 end at their head
        // whatever their fields say (rule 1 comes before rule 5), so a bad
        // length frames nothing there: it is dropped rather than passed on
        // (a client would have to refuse it), and the connection, whose
        // upstream may frame otherwise, is not reused. Anywhere else it is
        // an unrecoverable framing error (502).
        let bodiless = meta.head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        if let Some(why) = bad_length {
            if !bodiless || status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(H1Error::Invalid(why));
            }
            headers.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
            if !meta.upgrade {
                return Err(H1Error::Invalid("101 without an upgrade request"));
            }
            Framing::Upgrade
        } else if bodiless {
            Framing::Length(0)
        } else if coded {
            // The gateway implements `chunked` and no other coding, and passes
            // no `Transfer-Encoding` on: a body in any other coding (`gzip,
            // chunked`, or `gzip` until the close) would reach the client
            // without it, corrupt. It is refused (502), as nginx does.
            if codings != 1 || chunked_count != 1 || !last_chunked {
                return Err(H1Error::Invalid("a transfer coding other than chunked"));
            }
            // Transfer-Encoding wins over Content-Length; a message with
            // both is suspect, so its connection is not reused, and the
            // length is not passed on (RFC 9112 6.3: an intermediary removes
            // it), or the client would frame the body by it.
            if length.is_some() {
                keep_alive = false;
                headers.remove(header::CONTENT_LENGTH);
            }
            Framing::Chunked(Chunk::Size, 0)
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::Close
        };
        if matches!(framing, Framing::Close) {
            keep_alive = false;
        }
        let version = if minor == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
        return Ok(Some(Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// A `Content-Length` value: decimal digits only, no overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The request head with its framing, and the body to follow.
fn request_writer(parts: &hyper::http::request::Parts, body: Body) -> Writer {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = parts.method.as_str();
    let end = body.is_end_stream();
    let exact = body.size_hint().exact();
    // The framing is the gateway's to decide; an empty body keeps the
    // client's own `Content-Length: 0` (and only that one).
    let framing_header = |name: &HeaderName, value: &HeaderValue| {
        *name == header::TRANSFER_ENCODING || (*name == header::CONTENT_LENGTH && !(end && value == "0"))
    };
    let mut digits = [0u8; 20];
    let framing: &[&[u8]] = match exact {
        _ if end => &[],
        Some(n) => &[b"content-length: ", crate::text::decimal(n, &mut digits), b"\r\n"],
        None => &[b"transfer-encoding: chunked\r\n"],
    };
    // The exact size, so that the head becomes `Bytes` without another
    // allocation (a vector with spare room needs a shared header).
    let mut size = method.len() + 1 + path.len() + b" HTTP/1.1\r\n".len();
    for (name, value) in &parts.headers {
        if !framing_header(name, value) {
            size += name.as_str().len() + 2 + value.len() + 2;
        }
    }
    size += framing.iter().map(|p| p.len()).sum::<usize>() + 2;
    let mut head = Vec::with_capacity(size);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if framing_header(name, value) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for piece in framing {
        head.extend_from_slice(piece);
    }
    head.extend_from_slice(b"\r\n");
    debug_assert_eq!(head.len(), size);
    let chunked = !end && exact.is_none();
    Writer {
        out: [Bytes::from(head), Bytes::new(), Bytes::new(), Bytes::new()],
        body: (!end).then_some(body),
        chunked,
        declared: exact.filter(|_| !end),
        primed: false,
        sent: 0,
        whole: false,
    }
}

/// The response with its body reading from `wire`.
/// `writer` is the request when its body is still being sent (an early or
/// full-duplex answer): the body goes on sending it (boxed: that is rare,
/// and the body stays small).
fn build_response(
    pool: &Arc<H1Pool>,
    wire: Wire,
    writer: Option<Writer>,
    head: Head,
    meta: ReqMeta,
) -> Response<UpstreamBody> {
    let mut body = ResponseBody {
        wire: None,
        sending: writer.map(Box::new),
        framing: head.framing,
        reuse: head.keep_alive && !meta.close,
        pool: Some(pool.clone()),
    };
    if matches!(body.framing, Framing::Upgrade) {
        body.reuse = false;
        body.sending = None;
        body.wire = Some(wire);
    } else if matches!(body.framing, Framing::Length(0)) {
        // Nothing to read: the connection is free now (or closes).
        body.wire = Some(wire);
        body.finish();
    } else {
        body.wire = Some(wire);
    }
    // Built as the proxy takes it, so it is not remapped on the way up.
    let mut resp = Response::new(UpstreamBody::H1(body));
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    resp
}

/// How the response body is delimited.
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked: where the decoder is, and the bytes of the trailer section
    /// read so far (whole lines, kept in the read buffer until it ends).
    Chunked(Chunk, usize),
    /// Until the connection closes.
    Close,
    /// `101`: the connection belongs to the tunnel.
    Upgrade,
    /// Read to its end.
    Done,
}

/// The chunked decoder's place.
#[derive(Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// What the chunked decoder found.
enum Step {
    Data(Bytes),
    More,
    /// The end, with no trailer fields.
    End,
    /// The end, with these trailer fields.
    Trailers(HeaderMap),
}

/// Decodes what `rbuf` holds of a chunked body.
fn decode(chunk: &mut Chunk, trailers: &mut usize, rbuf: &mut BytesMut) -> Result<Step, H1Error> {
    loop {
        match *chunk {
            Chunk::Size => {
                let Some(i) = rbuf.iter().position(|b| *b == b'\n') else {
                    if rbuf.len() > MAX_CHUNK_LINE {
                        return Err(H1Error::Invalid("chunk size line too long"));
                    }
                    return Ok(Step::More);
                };
                let size = chunk_size(&rbuf[..i])?;
                rbuf.advance(i + 1);
                *chunk = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
            }
            Chunk::Data(left) => {
                if rbuf.is_empty() {
                    return Ok(Step::More);
                }
                let n = (rbuf.len() as u64).min(left).min(MAX_FRAME as u64) as usize;
                let data = rbuf.split_to(n).freeze();
                let left = left - n as u64;
                *chunk = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
                return Ok(Step::Data(data));
            }
            Chunk::DataEnd => {
                if rbuf.len() < 2 {
                    return Ok(Step::More);
                }
                if &rbuf[..2] != b"\r\n" {
                    return Err(H1Error::Invalid("chunk not followed by CRLF"));
                }
                rbuf.advance(2);
                *chunk = Chunk::Size;
            }
            Chunk::Trailers => {
                // The section stays in `rbuf` until its empty line: `trailers`
                // is where the next line starts, so no byte is scanned twice.
                let from = (*trailers).min(rbuf.len());
                let Some(i) = rbuf[from..].iter().position(|b| *b == b'\n') else {
                    if rbuf.len() > MAX_TRAILERS {
                        return Err(H1Error::Invalid("trailers too large"));
                    }
                    return Ok(Step::More);
                };
                let end = from + i + 1;
                if end > MAX_TRAILERS {
                    return Err(H1Error::Invalid("trailers too large"));
                }
                let line = &rbuf[from..from + i];
                if line.is_empty() || line == b"\r" {
                    let section = rbuf.split_to(end).freeze();
                    *trailers = 0;
                    return Ok(match from {
                        0 => Step::End,
                        _ => Step::Trailers(trailer_fields(&section)),
                    });
                }
                *trailers = end;
            }
        }
    }
}

/// The fields of a trailer section (its lines and the empty line that ends
/// it), as slices of it. A section that is not valid field lines gives none:
/// the body it ends was read whole, and is passed on without them.
#[cold]
fn trailer_fields(section: &Bytes) -> HeaderMap {
    let mut fields = HeaderMap::new();
    let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(section, &mut parsed) {
        Ok(httparse::Status::Complete((_, lines))) => {
            for h in lines {
                let name = HeaderName::from_bytes(h.name.as_bytes());
                let value = HeaderValue::from_maybe_shared(section.slice_ref(h.value));
                if let (Ok(name), Ok(value)) = (name, value) {
                    fields.append(name, value);
                }
            }
        }
        _ => tracing::debug!("an upstream's trailer section is not valid field lines; dropped"),
    }
    fields
}

/// A chunk-size line (without its `\n`): hex digits, then optional
/// whitespace and `;` extensions (ignored), ending in `\r`.
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let line = line
        .strip_suffix(b"\r")
        .ok_or(H1Error::Invalid("chunk size line without CRLF"))?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(H1Error::Invalid("chunk size"));
    }
    let rest = &line[digits..];
    let rest_ok = match rest.iter().position(|b| *b == b';') {
        Some(i) => rest[..i].iter().all(|b| *b == b' ' || *b == b'\t'),
        None => rest.iter().all(|b| *b == b' ' || *b == b'\t'),
    };
    if !rest_ok {
        return Err(H1Error::Invalid("chunk size"));
    }
    line[..digits].iter().try_fold(0u64, |n, d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(H1Error::Invalid("chunk size")),
        };
        n.checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(v)))
            .ok_or(H1Error::Invalid("chunk size"))
    })
}

/// An upstream response body read from its connection (see the module docs).
pub struct ResponseBody {
    /// `None` once the body is done (the connection parked or closed).
    wire: Option<Wire>,
    /// The rest of a request whose answer came before it was all sent.
    sending: Option<Box<Writer>>,
    framing: Framing,
    /// May the connection be reused once the body is done?
    reuse: bool,
    pool: Option<Arc<H1Pool>>,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// The socket of a `101 Switching Protocols` answer and the bytes read
    /// past its head, for the tunnel; `None` for any other answer.
    pub(crate) fn into_upgraded(mut self) -> Option<(Stream, Bytes)> {
        if !matches!(self.framing, Framing::Upgrade) {
            return None;
        }
        self.framing = Framing::Done;
        let wire = self.wire.take()?;
        Some((wire.stream, wire.rbuf.freeze()))
    }

    /// The body is done: the connection goes back to the pool if it may.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        let Some(wire) = self.wire.take() else { return };
        let whole = self.sending.take().is_none() && !wire.broken && wire.rbuf.is_empty();
        if let (true, true, Some(pool)) = (self.reuse, whole, self.pool.take()) {
            pool.park(wire.stream, usable);
        }
        // The last frame split off the buffer is on its way to the client,
        // and usually gone by the time the thread takes a buffer again.
        UPSTREAM.give(wire.rbuf);
    }

    /// The body failed: the connection closes.
    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.framing = Framing::Done;
        if let Some(wire) = self.wire.take() {
            UPSTREAM.give(wire.rbuf);
        }
        self.sending = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(wire) = this.wire.as_mut() else {
            return Poll::Ready(None);
        };
        // A streamed request body goes on while the answer comes.
        if let Err(e) = wire.poll_send(cx, &mut this.sending, None) {
            return this.fail(e);
        }
        loop {
            let Some(wire) = this.wire.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.framing {
                Framing::Done | Framing::Upgrade => return Poll::Ready(None),
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if !wire.rbuf.is_empty() {
                        let n = (wire.rbuf.len() as u64).min(*left).min(MAX_FRAME as u64) as usize;
                        let data = wire.rbuf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Chunked(chunk, trailers) => match decode(chunk, trailers, &mut wire.rbuf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::Trailers(fields)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(fields))));
                    }
                    Ok(Step::More) => {}
                    Err(e) => return this.fail(Box::new(e)),
                },
                Framing::Close => {
                    if !wire.rbuf.is_empty() {
                        let n = wire.rbuf.len().min(MAX_FRAME);
                        return Poll::Ready(Some(Ok(Frame::data(wire.rbuf.split_to(n).freeze()))));
                    }
                }
            }
            match ready!(wire.poll_read(cx)) {
                Ok(0) if matches!(this.framing, Framing::Close) => {
                    this.framing = Framing::Done;
                    this.wire = None;
                    this.sending = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Box::new(H1Error::Closed)),
                Ok(_) => {}
                Err(e) => return this.fail(Box::new(H1Error::Io(e))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done | Framing::Upgrade => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Is an idle connection still usable? Checked without a syscall when the
/// socket has shown no readiness since its last read; otherwise one
/// non-blocking read: nothing to read → usable; end of stream, an error or
/// unexpected bytes → not.
///
/// A TLS connection reads what came through TLS instead: a server may send
/// records while the connection is idle that are not data (TLS 1.3 session
/// tickets, which rustls takes in), and only data, an alert or the end of
/// the stream make it unusable.
pub(crate) fn usable(stream: &mut Stream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.tcp().poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            match stream {
                Stream::Plain(s) => {
                    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
                Stream::Tls(s) => {
                    let mut buf = ReadBuf::new(&mut probe);
                    Pin::new(&mut **s).poll_read(&mut cx, &mut buf).is_pending()
                }
            }
        }
    }
}

/// Fuzzing entry, not an API (`fuzz/`, and the corpus replay in
/// `tests/fuzz_corpus.rs`): reads `data` as the bytes an upstream answers on
/// one connection, the way an exchange does — the head by `parse_head` as
/// bytes arrive (within [`MAX_HEAD`]), then the body as its framing says
/// (the chunked decoder itself; a length or the connection's end cut as
/// `ResponseBody` cuts them) — once with every byte there at the start and
/// once arriving in pieces, and panics if the two readings differ or a body
/// frame is empty or over [`MAX_FRAME`]. `data[0]` says what was asked
/// (bit 0 `HEAD`, bit 1 an upgrade, bit 2 `connection: close`), `data[1]`
/// the pieces' sizes; the rest is the stream.
#[doc(hidden)]
pub fn fuzz_response_reader(data: &[u8]) {
    let [asked, split, stream @ ..] = data else { return };
    let meta = ReqMeta {
        head: asked & 1 != 0,
        upgrade: asked & 2 != 0,
        close: asked & 4 != 0,
        idempotent: true,
    };
    let read = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut rbuf = BytesMut::new();
        let (mut seen, mut body) = (Vec::new(), Vec::new());
        let mut framing = None;
        let frame = |data: Bytes, body: &mut Vec<u8>| {
            assert!(
                !data.is_empty() && data.len() <= MAX_FRAME,
                "a frame of {} bytes",
                data.len()
            );
            body.extend_from_slice(&data);
        };
        'stream: for piece in pieces {
            rbuf.extend_from_slice(piece);
            let framing = match &mut framing {
                Some(framing) => framing,
                None => match parse_head(&mut rbuf, meta) {
                    Ok(Some(head)) => {
                        seen.push(format!(
                            "{} {:?} {:?} keep-alive {}",
                            head.status, head.version, head.headers, head.keep_alive
                        ));
                        framing.insert(head.framing)
                    }
                    Ok(None) if rbuf.len() >= MAX_HEAD => {
                        seen.push(H1Error::HeadTooLarge.to_string());
                        break;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        seen.push(e.to_string());
                        break;
                    }
                },
            };
            loop {
                match framing {
                    Framing::Length(0) | Framing::Done => {
                        seen.push("end".to_string());
                        break 'stream;
                    }
                    Framing::Upgrade => {
                        seen.push("upgrade".to_string());
                        break 'stream;
                    }
                    Framing::Length(left) => {
                        if rbuf.is_empty() {
                            break;
                        }
                        let n = (rbuf.len() as u64).min(*left).min(MAX_FRAME as u64) as usize;
                        frame(rbuf.split_to(n).freeze(), &mut body);
                        *left -= n as u64;
                    }
                    Framing::Chunked(chunk, trailers) => match decode(chunk, trailers, &mut rbuf) {
                        Ok(Step::Data(data)) => frame(data, &mut body),
                        Ok(Step::More) => break,
                        Ok(Step::End) => *framing = Framing::Done,
                        Ok(Step::Trailers(fields)) => {
                            seen.push(format!("trailers {fields:?}"));
                            *framing = Framing::Done;
                        }
                        Err(e) => {
                            seen.push(e.to_string());
                            break 'stream;
                        }
                    },
                    Framing::Close => {
                        if rbuf.is_empty() {
                            break;
                        }
                        let n = rbuf.len().min(MAX_FRAME);
                        frame(rbuf.split_to(n).freeze(), &mut body);
                    }
                }
            }
        }
        seen.push(format!("body {body:?}"));
        seen
    };
    crate::fuzzing::same_in_pieces(stream, *split, read);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: ReqMeta = ReqMeta {
        head: false,
        upgrade: false,
        close: false,
        idempotent: true,
    };

    fn head_of(text: &[u8]) -> Result<Option<Head>, H1Error> {
        parse_head(&mut BytesMut::from(text), GET)
    }

    #[test]
    fn chunk_sizes_are_strict_hex_without_overflow() {
        assert_eq!(chunk_size(b"1a\r").ok(), Some(26));
        assert_eq!(chunk_size(b"A ; name=value\r").ok(), Some(10));
        assert_eq!(chunk_size(b"ffffffffffffffff\r").ok(), Some(u64::MAX));
        for bad in [
            &b"fffffffffffffffff\r"[..],
            b"\r",
            b"-1\r",
            b"0x10\r",
            b"10",
            b"1 2\r",
            b"g\r",
        ] {
            assert!(chunk_size(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_chunked_decoder_takes_bytes_in_any_split() {
        let wire = b"5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\ntrailer: t\r\n\r\n";
        for split in 1..wire.len() {
            let (mut chunk, mut trailers, mut buf, mut out) = (Chunk::Size, 0, BytesMut::new(), Vec::new());
            let mut ended = None;
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                loop {
                    match decode(&mut chunk, &mut trailers, &mut buf) {
                        Ok(Step::Data(d)) => out.extend_from_slice(&d),
                        Ok(Step::More) => break,
                        Ok(Step::End) => panic!("split {split}: the trailer field is lost"),
                        Ok(Step::Trailers(fields)) => {
                            ended = Some(fields);
                            break;
                        }
                        Err(e) => panic!("split {split}: {e}"),
                    }
                }
            }
            let fields = ended.unwrap_or_else(|| panic!("split {split}: no end"));
            assert_eq!(
                fields.get("trailer").map(|v| v.as_bytes()),
                Some(&b"t"[..]),
                "split {split}"
            );
            assert!(out == b"hello, world" && buf.is_empty(), "split {split}");
        }
        let mut buf = BytesMut::from(&b"5\r\nhelloXX"[..]);
        let (mut chunk, mut trailers) = (Chunk::Size, 0);
        assert!(matches!(decode(&mut chunk, &mut trailers, &mut buf), Ok(Step::Data(_))));
        assert!(
            decode(&mut chunk, &mut trailers, &mut buf).is_err(),
            "a chunk must end in CRLF"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head_of(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n")
            .ok()
            .flatten();
        assert!(h.is_some_and(|h| matches!(h.framing, Framing::Length(5)) && h.keep_alive));
        assert!(head_of(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n").is_err());
        assert!(head_of(b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n").is_err());
        // An answer without a body ends at its head (rule 1 before rule 5):
        // a bad length there is dropped, and the connection not reused.
        let head = ReqMeta { head: true, ..GET };
        for (bodiless, meta) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 10\r\n\r\n"[..],
                head,
            ),
            (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", head),
            (
                b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\n",
                GET,
            ),
            (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5, 6\r\n\r\n", GET),
        ] {
            let h = parse_head(&mut BytesMut::from(bodiless), meta).ok().flatten();
            assert!(
                h.is_some_and(|h| matches!(h.framing, Framing::Length(0))
                    && !h.keep_alive
                    && !h.headers.contains_key(header::CONTENT_LENGTH)),
                "{}",
                String::from_utf8_lossy(bodiless)
            );
        }
        let h = parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..]),
            head,
        );
        assert!(h
            .ok()
            .flatten()
            .is_some_and(|h| h.keep_alive && h.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v == "5")));
        let h = head_of(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n")
            .ok()
            .flatten();
        assert!(h.is_some_and(|h| matches!(h.framing, Framing::Chunked(..)) && !h.keep_alive));
        // A coding the gateway does not implement cannot be passed on.
        for coded in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: \r\n\r\n",
        ] {
            assert!(head_of(coded).is_err(), "{}", String::from_utf8_lossy(coded));
        }
        let h = head_of(b"HTTP/1.1 200 OK\r\ntransfer-encoding: , Chunked\r\n\r\n")
            .ok()
            .flatten();
        assert!(h.is_some_and(|h| matches!(h.framing, Framing::Chunked(..))));
        let h = head_of(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n").ok().flatten();
        assert!(
            h.is_some_and(|h| !h.keep_alive),
            "HTTP/1.0 closes unless asked to keep alive"
        );
        let h = head_of(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n")
            .ok()
            .flatten();
        assert!(h.is_some_and(|h| h.keep_alive));
        let h = head_of(b"HTTP/1.1 200 OK\r\n\r\n").ok().flatten();
        assert!(h.is_some_and(|h| matches!(h.framing, Framing::Close) && !h.keep_alive));
        let h = head_of(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n")
            .ok()
            .flatten();
        assert!(h.is_some_and(|h| matches!(h.framing, Framing::Length(0))));
        assert!(matches!(head_of(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"), Ok(None)));
        assert!(
            head_of(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err(),
            "101 to a plain request"
        );
    }

    /// A `POST` on a reused connection whose whole request is in hand: what
    /// the exchange makes of a connection that resets as it is written.
    #[tokio::test]
    async fn a_request_partly_written_before_its_connection_broke_is_never_replayed() {
        use tokio::io::AsyncReadExt;
        let up = crate::upstream::tests::upstream().await;
        let pool = up.set.load().servers[0].h1.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let post = |len: usize| {
            let body = crate::body::full(vec![b'x'; len]);
            let req = Request::post("/orders").header(header::HOST, "h").body(body);
            encode(req.expect("a request"))
        };
        #[allow(deprecated)] // SO_LINGER 0: the close resets at once, never blocks
        let reset = |s: tokio::net::TcpStream| {
            let _ = s.set_linger(Some(std::time::Duration::ZERO));
            drop(s);
        };
        // Reset before any byte went: the upstream never had the request,
        // which may go again on a fresh connection.
        let client = Stream::Plain(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        reset(listener.accept().await.expect("accept").0);
        let _ = client.tcp().readable().await; // the reset has come
        let out = exchange(&pool, client, true, post(16)).await;
        assert!(matches!(out, Err(Failed::Replay(_))), "nothing sent: a replay");
        // Reset once part of the request went: the upstream may have acted
        // on it, so it is not sent again.
        let client = Stream::Plain(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        let (mut server, _) = listener.accept().await.expect("accept");
        let sending = {
            let pool = pool.clone();
            tokio::spawn(async move { exchange(&pool, client, true, post(32 << 20)).await })
        };
        let mut first = [0u8; 1024];
        server.read_exact(&mut first).await.expect("the request's first bytes");
        reset(server);
        let out = tokio::time::timeout(std::time::Duration::from_secs(10), sending)
            .await
            .expect("the exchange ends")
            .expect("the task");
        assert!(matches!(out, Err(Failed::Reset)), "partly sent: no replay");
    }
}
