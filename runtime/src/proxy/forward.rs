//! One request on its way to an upstream ([`Forward::run`]): which retries
//! it may make, its body (buffered for a replay when a retry could send it
//! again, at most [`REPLAY_LIMIT`] bytes), then attempts — a server picked by
//! the balancer, the request made for it, the exchange awaited under the
//! route's timeout, what the exchange says recorded for passive ejection —
//! until an answer is accepted, or no retry is allowed, left in the budget,
//! or left to a server.
//!
//! Retries happen only before any byte of the response has been passed on:
//! once the upstream's response head is accepted, it is the answer. A
//! retryable status (`retry ... on 503`) is held in case no retry can go.

use super::{method_of, ClientStream};
use crate::body::{boxed, buffer, empty, full, Body, Buffered, ClientBody, ClientBodyError};
use crate::error::ErrorKind;
use crate::metrics::UpstreamError;
use crate::upstream::health::{self, ServerInFlight};
use crate::upstream::{SendError, Server, Upstream, UpstreamBody};
use bytes::Bytes;
use gw_plan::words::Method;
use gw_plan::{self as plan, RetryOn, Route};
use hyper::header;
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, Uri};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Bodies up to this size are buffered so that a retry can replay them.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// The upstream's answer, the server that gave it, and that server's
/// in-flight count, held until the response body is done (the body itself
/// holds its connection).
pub(super) struct Answer {
    pub(super) response: Response<UpstreamBody>,
    pub(super) server: Arc<str>,
    pub(super) in_flight: ServerInFlight,
}

/// Why no answer came, and from which server (if one was tried).
pub(super) type Failure = (ErrorKind, Option<Arc<str>>);

/// One request on its way to an upstream.
pub(super) struct Forward<'a> {
    pub(super) route: &'a Route,
    pub(super) up: &'a Upstream,
    pub(super) path: PathAndQuery,
    pub(super) hash: Option<u64>,
    pub(super) max_body: u64,
    /// When the first attempt went, and the retries made (for the access line).
    pub(super) sent_at: std::sync::OnceLock<std::time::Instant>,
    pub(super) retried: std::sync::atomic::AtomicU32,
}

/// Which retries a request may make.
struct Retries<'a> {
    /// The route's `retry`, else the upstream's.
    policy: Option<&'a plan::Retry>,
    /// How many attempts in all (the first included).
    attempts: u32,
    /// An idempotent method: a request whose connection broke after it was
    /// sent may have taken effect, so only such a one is sent again (`on
    /// reset`), whatever the route opts into.
    idempotent: bool,
}

impl<'a> Retries<'a> {
    /// A route's own `retry` opts every method in; the upstream's covers
    /// idempotent methods only.
    fn of(route: &'a Route, up: &'a Upstream, method: Option<&hyper::Method>) -> Retries<'a> {
        let policy = route.retry.as_ref().or(up.config.retry.as_ref());
        let idempotent = method.and_then(method_of).is_some_and(Method::is_idempotent);
        let may_retry = policy.is_some() && (route.retry.is_some() || idempotent);
        let attempts = if may_retry {
            1 + policy.map_or(0, |r| r.attempts)
        } else {
            1
        };
        Retries {
            policy,
            attempts,
            idempotent,
        }
    }

    /// A failure of `kind` may be retried on another server.
    fn retryable(&self, kind: ErrorKind) -> bool {
        self.policy.is_some_and(|r| match kind {
            ErrorKind::Connect | ErrorKind::ConnectTimeout => r.on.contains(&RetryOn::ConnectError),
            ErrorKind::Reset => self.idempotent && r.on.contains(&RetryOn::Reset),
            ErrorKind::Timeout => r.on.contains(&RetryOn::Timeout),
            _ => false,
        })
    }

    /// An answer with `status` is to be retried (`retry ... on 503`).
    fn retry_status(&self, status: u16) -> bool {
        self.policy.is_some_and(|r| r.on.contains(&RetryOn::Status(status)))
    }

    /// The retry budget's share: what each request adds to it.
    fn budget_percent(&self) -> u32 {
        self.policy
            .map_or(plan::defaults::RETRY_BUDGET_PERCENT, |r| r.budget_percent)
    }
}

/// The request body, either replayable (empty or buffered) or streamed once.
enum ReqBody {
    Empty,
    Replayable(Bytes),
    Stream(Option<Body>),
}

impl ReqBody {
    fn replayable(&self) -> bool {
        !matches!(self, ReqBody::Stream(_))
    }

    /// The body for the next attempt (`None`: a streamed body already went).
    fn take(&mut self) -> Option<Body> {
        match self {
            ReqBody::Empty => Some(empty()),
            ReqBody::Replayable(b) => Some(full(b.clone())),
            ReqBody::Stream(s) => s.take(),
        }
    }
}

impl<'a> Forward<'a> {
    /// The route's timeout, else the upstream's.
    pub(super) fn timeout(&self) -> std::time::Duration {
        self.route.timeout.unwrap_or(self.up.config.timeout).as_duration()
    }

    /// Sends the request (`head`, `incoming`) to the upstream, retrying as
    /// its `retry` allows, and returns the answer to pass on.
    ///
    /// A function returning an async block rather than an `async fn`: an
    /// `async fn` keeps each argument twice in its future (as passed, and as
    /// bound in its body), and the request's head is 224 bytes. `head` comes
    /// as `Some` and is the future's only copy: each attempt clones it, the
    /// last takes it.
    #[allow(clippy::manual_async_fn)] // see above: an `async fn` stores its arguments twice
    pub(super) fn run<'s, B: ClientStream>(
        &'s self,
        mut head: Option<hyper::http::request::Parts>,
        incoming: B,
        declared: Option<u64>,
    ) -> impl Future<Output = Result<Answer, Failure>> + use<'s, 'a, B> {
        async move {
            let up = self.up;
            let retries = Retries::of(self.route, up, head.as_ref().map(|h| &h.method));
            // Set once a streamed body has all come from the client: an
            // exchange that times out before that waited on the client (408),
            // and the server is not blamed for it.
            let mut client_done: Option<Arc<AtomicBool>> = None;
            let mut body = if incoming.is_end_stream() {
                ReqBody::Empty
            } else {
                let client_body = ClientBody::new(incoming, self.max_body);
                if retries.attempts > 1 && declared.is_none_or(|n| n <= REPLAY_LIMIT as u64) {
                    // Buffered for a replay: a client that stops sending is cut
                    // at the route's timeout, before any server is involved.
                    let buffering = tokio::time::timeout(self.timeout(), buffer(client_body, REPLAY_LIMIT));
                    match Box::pin(buffering).await {
                        Ok(Ok(Buffered::Whole(b))) => ReqBody::Replayable(b),
                        Ok(Ok(Buffered::Partial(b))) => {
                            client_done = Some(b.finished());
                            ReqBody::Stream(Some(boxed(b)))
                        }
                        Ok(Err(ClientBodyError::TooLarge)) => return Err((ErrorKind::BodyTooLarge, None)),
                        Ok(Err(ClientBodyError::Failed(_))) => return Err((ErrorKind::ClientBody, None)),
                        Err(_) => return Err((ErrorKind::ClientTimeout, None)),
                    }
                } else {
                    client_done = Some(client_body.finished());
                    ReqBody::Stream(Some(boxed(client_body)))
                }
            };
            let h2_authority = self.h2_authority(head.as_ref());
            let timeout = self.timeout();
            let set = up.set.load_full();
            let mut tried: Vec<usize> = Vec::new();
            let mut last: Option<Failure> = None;
            // A retryable answer (`retry ... on 503`) kept in case no retry can go.
            let mut held: Option<Answer> = None;
            up.budget.deposit(retries.budget_percent());
            for attempt in 0..retries.attempts {
                let Some(i) = set.balancer.pick_hashed(&set.states, self.hash, &tried) else {
                    if last.is_none() && held.is_none() {
                        last = Some((ErrorKind::NoServer, None));
                    }
                    break;
                };
                let Some(server) = set.servers.get(i) else { break };
                // A retry, once it has a server to go to, takes its place in
                // the budget, or none goes.
                let is_retry = attempt > 0;
                if is_retry && !up.budget.withdraw() {
                    up.metrics.budget_refusals.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                let label = server.label.clone();
                let last_attempt = attempt + 1 == retries.attempts || !body.replayable();
                let parts = if last_attempt { head.take() } else { head.clone() };
                let (Some(parts), Some(this_body)) = (parts, body.take()) else {
                    break;
                };
                held = None;
                let Some(out) = self.request_to(server, parts, this_body, h2_authority.as_ref()) else {
                    return Err((ErrorKind::Upstream, Some(label)));
                };
                let in_flight = server.state.start();
                if attempt == 0 {
                    let _ = self.sent_at.set(std::time::Instant::now());
                } else {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                }
                if is_retry {
                    up.metrics.retries.fetch_add(1, Ordering::Relaxed);
                }
                let sent = Instant::now();
                // Each protocol's exchange is awaited here, with no layer between
                // (every layer moves the request and the answer once more).
                let result = if up.config.http2 {
                    tokio::time::timeout(timeout, server.send_h2(out)).await
                } else {
                    tokio::time::timeout(timeout, server.send_h1(out)).await
                };
                let counted = &server.state.metrics;
                counted.requests.fetch_add(1, Ordering::Relaxed);
                counted.duration.observe(sent.elapsed().as_micros() as u64);
                let (kind, outcome) = match result {
                    Ok(Ok(response)) => {
                        let status = response.status().as_u16();
                        set.record(i, answered(status), up);
                        let answer = Answer {
                            response,
                            server: label,
                            in_flight,
                        };
                        if retries.retry_status(status) && !last_attempt {
                            tried.push(i);
                            held = Some(answer);
                            continue;
                        }
                        return Ok(answer);
                    }
                    Ok(Err(e)) => classify(&e),
                    Err(_) if client_done.as_ref().is_some_and(|d| !d.load(Ordering::Relaxed)) => {
                        (ErrorKind::ClientTimeout, health::Outcome::Neutral)
                    }
                    Err(_) => (ErrorKind::Timeout, health::Outcome::Failed),
                };
                if client_side(kind) {
                    return Err((kind, Some(label)));
                }
                counted.error(upstream_error(kind));
                set.record(i, outcome, up);
                tracing::debug!(upstream = %up.name, server = %label, error = kind.as_str(), "upstream attempt failed");
                last = Some((kind, Some(label)));
                if !retries.retryable(kind) || last_attempt {
                    break;
                }
                tried.push(i);
            }
            match held {
                Some(answer) => Ok(answer),
                None => Err(last.unwrap_or((ErrorKind::NoServer, None))),
            }
        }
    }

    /// What an `http2` upstream gets as `:authority`: the `Host` an HTTP/1.1
    /// one would get, that is the routed host after the route's request
    /// transforms (`set request header host`).
    fn h2_authority(&self, head: Option<&hyper::http::request::Parts>) -> Option<Authority> {
        match (head, self.up.config.http2) {
            (Some(h), true) => h
                .headers
                .get(header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok()),
            _ => None,
        }
    }

    /// The request of one attempt on `server`: origin form for HTTP/1.1
    /// (with the server as `Host` when the request came without one), the
    /// request's host (else the server) as `:authority` for `http2`. `None`
    /// when no URI can be made of it.
    fn request_to(
        &self,
        server: &Server,
        parts: hyper::http::request::Parts,
        body: Body,
        h2_authority: Option<&Authority>,
    ) -> Option<Request<Body>> {
        request_for(self.up, &self.path, server, parts, body, h2_authority)
    }
}

/// The request of one attempt on `server` of `up` (see
/// [`Forward::request_to`]); a mirrored copy is made the same way.
pub(super) fn request_for(
    up: &Upstream,
    path: &PathAndQuery,
    server: &Server,
    mut parts: hyper::http::request::Parts,
    body: Body,
    h2_authority: Option<&Authority>,
) -> Option<Request<Body>> {
    let mut uri = hyper::http::uri::Parts::default();
    uri.path_and_query = Some(path.clone());
    if up.config.http2 {
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(match &server.host_header {
            // `host_header server` or a name: the upstream's choice.
            Some((_, authority)) => authority.clone(),
            None => h2_authority.cloned().unwrap_or_else(|| server.authority.clone()),
        });
        parts.version = hyper::Version::HTTP_2;
        parts.headers.remove(header::HOST);
    } else {
        parts.version = hyper::Version::HTTP_11;
        if let Some((host, _)) = &server.host_header {
            parts.headers.insert(header::HOST, host.clone());
        } else if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, server.host.clone());
        }
    }
    parts.uri = Uri::from_parts(uri).ok()?;
    Some(Request::from_parts(parts, body))
}

/// What an answer with `status` says about its server: 5xx answers count
/// towards an `eject` block (501 is a statement about the request, not the
/// server's health).
pub(super) fn answered(status: u16) -> health::Outcome {
    if status < 500 || status == 501 {
        health::Outcome::Ok
    } else {
        health::Outcome::Failed
    }
}

/// A failure that is the client's (its body too large or failed, or not
/// all come in time): the server is not blamed, and no retry helps.
fn client_side(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::BodyTooLarge | ErrorKind::ClientBody | ErrorKind::ClientTimeout
    )
}

/// A failed exchange's kind as `/metrics` counts it.
fn upstream_error(kind: ErrorKind) -> UpstreamError {
    match kind {
        ErrorKind::Connect | ErrorKind::NoServer => UpstreamError::Connect,
        ErrorKind::ConnectTimeout | ErrorKind::Timeout | ErrorKind::ClientTimeout => UpstreamError::Timeout,
        ErrorKind::Reset => UpstreamError::Reset,
        ErrorKind::Upstream | ErrorKind::BodyTooLarge | ErrorKind::ClientBody => UpstreamError::Protocol,
    }
}

/// Maps a failed exchange to its kind and to what it says about the server:
/// connect failures (timeout or refusal: the server is not there); a fresh
/// connection that broke before any answer (the server failed, or this
/// request broke it: an `eject` block counts it, the default does not); a
/// pooled connection that broke (perhaps closed while idle: nothing
/// against the server); the client's own body (too large, or failed);
/// anything else from the upstream.
pub(super) fn classify(e: &SendError) -> (ErrorKind, health::Outcome) {
    let e = match e {
        SendError::Connect { timed_out: true } => return (ErrorKind::ConnectTimeout, health::Outcome::Unreachable),
        SendError::Connect { timed_out: false } => return (ErrorKind::Connect, health::Outcome::Unreachable),
        SendError::Reset { fresh: true } => return (ErrorKind::Reset, health::Outcome::Failed),
        SendError::Reset { fresh: false } => return (ErrorKind::Reset, health::Outcome::Neutral),
        SendError::Exchange(e) => e,
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&**e);
    while let Some(s) = source {
        match s.downcast_ref::<ClientBodyError>() {
            Some(ClientBodyError::TooLarge) => return (ErrorKind::BodyTooLarge, health::Outcome::Neutral),
            Some(ClientBodyError::Failed(_)) => return (ErrorKind::ClientBody, health::Outcome::Neutral),
            None => {}
        }
        source = s.source();
    }
    (ErrorKind::Upstream, health::Outcome::Failed)
}
