//! The body type used on both sides of the proxy — a boxed stream of bytes,
//! so that client bodies, upstream bodies and gateway-made bodies mix — and
//! the wrappers the proxy streams through: [`ClientBody`] (the client's body
//! under `max_body_size`, optionally replaying a buffered prefix) and
//! [`Stall`] (an upstream body that must keep moving, whose trailer section
//! passes through [`Trailers`]). Nothing here holds a whole body except
//! [`buffer`], which holds at most its limit.

use crate::request::{announces, trailer_allowed};
use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Why the client's body could not be forwarded: it grew past
/// `max_body_size` (413) or the client's stream failed (400).
#[derive(Debug)]
pub(crate) enum ClientBodyError {
    TooLarge,
    Failed(BoxError),
}

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientBodyError::TooLarge => f.write_str("request body exceeds max_body_size"),
            ClientBodyError::Failed(e) => write!(f, "request body failed: {e}"),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::TooLarge => None,
            ClientBodyError::Failed(e) => Some(&**e),
        }
    }
}

/// The client's body on its way upstream: frames already buffered (by
/// [`buffer`]) first, then the rest as it arrives, failing with
/// [`ClientBodyError::TooLarge`] as soon as more than `remaining` bytes came.
/// Data only: a trailer section ends it, and is not passed on.
pub(crate) struct ClientBody<B> {
    prefix: VecDeque<Frame<Bytes>>,
    inner: B,
    remaining: u64,
    /// Set once the client's last byte has been read.
    finished: Arc<AtomicBool>,
}

impl<B> ClientBody<B> {
    /// `inner` with at most `limit` bytes.
    pub fn new(inner: B, limit: u64) -> ClientBody<B> {
        ClientBody {
            prefix: VecDeque::new(),
            inner,
            remaining: limit,
            finished: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that turns true once the whole body has come from the client
    /// (it outlives the body, which the exchange consumes): a timeout while
    /// it is false is the client's, not the server's.
    pub fn finished(&self) -> Arc<AtomicBool> {
        self.finished.clone()
    }
}

impl<B> HttpBody for ClientBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finished.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Failed(e.into())))),
            Poll::Ready(Some(Ok(frame))) => {
                let Some(data) = frame.data_ref() else {
                    // A trailer section ends the body, and goes no further
                    // (docs/language.md, decision 47): an `http2` upstream
                    // would get it past the route's request transforms.
                    this.finished.store(true, Ordering::Relaxed);
                    return Poll::Ready(None);
                };
                let n = data.len() as u64;
                if n > this.remaining {
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(ClientBodyError::TooLarge)));
                }
                this.remaining -= n;
                if this.inner.is_end_stream() {
                    this.finished.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && (self.inner.is_end_stream() || self.finished.load(Ordering::Relaxed))
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .prefix
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(buffered));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

/// What [`buffer`] found: the whole body (replayable), or a body that is
/// longer than the limit, to be streamed once with its prefix first.
pub(crate) enum Buffered<B> {
    Whole(Bytes),
    Partial(ClientBody<B>),
}

/// Reads `body` until it ends or more than `limit` bytes came. A body that
/// ends within the limit comes back whole (its trailer section, if any,
/// dropped as [`ClientBody`] drops it); any other comes back ready to
/// stream, nothing lost.
pub(crate) async fn buffer<B>(mut body: ClientBody<B>, limit: usize) -> Result<Buffered<B>, ClientBodyError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut frames: VecDeque<Frame<Bytes>> = VecDeque::new();
    let mut size = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                size += frame.data_ref().map_or(0, Bytes::len);
                frames.push_back(frame);
                if size > limit {
                    body.prefix = frames;
                    return Ok(Buffered::Partial(body));
                }
            }
        }
    }
    if frames.len() <= 1 {
        let whole = frames.pop_front().and_then(|f| f.into_data().ok()).unwrap_or_default();
        return Ok(Buffered::Whole(whole));
    }
    let mut whole = BytesMut::with_capacity(size);
    for f in frames {
        if let Ok(d) = f.into_data() {
            whole.extend_from_slice(&d);
        }
    }
    Ok(Buffered::Whole(whole.freeze()))
}

/// The upstream stopped sending its body for longer than the route's timeout.
#[derive(Debug)]
pub(crate) struct Stalled;

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream body stalled")
    }
}

impl std::error::Error for Stalled {}

/// Which trailer fields of an upstream's response reach the client (see
/// `proxy::trailer_rule`).
#[derive(Debug, Clone)]
pub(crate) enum TrailerRule {
    /// None.
    Drop,
    /// Every field [`trailer_allowed`] lets through.
    All,
    /// Those of them this `Trailer` value names.
    Announced(HeaderValue),
}

/// What passes of an upstream response's trailer section: the fields the
/// rule lets through, never one [`trailer_allowed`] refuses, and none the
/// route's response header transforms name (`transformed`).
pub(crate) struct Trailers {
    pub rule: TrailerRule,
    pub transformed: Option<Arc<[HeaderName]>>,
}

impl Trailers {
    /// The fields of `fields` that pass; `None` when none does.
    fn filter(&self, fields: HeaderMap) -> Option<HeaderMap> {
        if matches!(self.rule, TrailerRule::Drop) {
            return None;
        }
        let mut out = HeaderMap::new();
        let mut name: Option<HeaderName> = None;
        for (n, value) in fields {
            if let Some(n) = n {
                name = Some(n);
            }
            let Some(n) = name.as_ref() else { continue };
            let announced = match &self.rule {
                TrailerRule::Announced(list) => announces(list, n),
                _ => true,
            };
            let transformed = self.transformed.as_ref().is_some_and(|t| t.contains(n));
            if announced && !transformed && trailer_allowed(n) {
                out.append(n.clone(), value);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// An upstream body that fails when no frame arrives for `limit`: a server
/// that sends its headers and then stalls cannot hold the client forever.
/// The timer is made the first time the body has to wait, so a body that is
/// ready at once costs no timer. `keep` lives as long as the body (the
/// server's in-flight count, for `least_conn`). Its trailer section passes
/// through [`Trailers`].
pub(crate) struct Stall<B, K> {
    inner: B,
    limit: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    trailers: Trailers,
    _keep: K,
}

impl<B, K> Stall<B, K> {
    pub fn new(inner: B, limit: Duration, keep: K, trailers: Trailers) -> Stall<B, K> {
        Stall {
            inner,
            limit,
            sleep: None,
            trailers,
            _keep: keep,
        }
    }
}

impl<B, K: Unpin> HttpBody for Stall<B, K>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                if let (Some(sleep), true) = (this.sleep.as_mut(), r.is_some()) {
                    sleep.as_mut().reset(tokio::time::Instant::now() + this.limit);
                }
                match r {
                    Some(Ok(frame)) if !frame.is_data() => match frame.into_trailers() {
                        // The trailer section ends the body: what does not
                        // pass is dropped, and with it, if nothing does, the frame.
                        Ok(fields) => match this.trailers.filter(fields) {
                            Some(kept) => Poll::Ready(Some(Ok(Frame::trailers(kept)))),
                            None => Poll::Ready(None),
                        },
                        Err(other) => Poll::Ready(Some(Ok(other))),
                    },
                    r => Poll::Ready(r.map(|f| f.map_err(Into::into))),
                }
            }
            Poll::Pending => {
                let limit = this.limit;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
