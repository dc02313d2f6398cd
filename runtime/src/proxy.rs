//! A request's life: route lookup (404 / 405 + `Allow` / 400), the route's
//! pipeline (auth → require → limit → request transforms), the target
//! (pick a server → pooled connection → stream both ways → retry another
//! server on a retryable failure | respond | redirect | aggregate), response
//! transforms, then the access log and metrics.
//!
//! The path is built for throughput: the plan is read through an `ArcSwap`
//! (no lock), URIs and header values are shared rather than copied, and
//! bodies stream frame by frame in both directions. A request body is held
//! only when a retry could replay it, and then at most [`REPLAY_LIMIT`]
//! bytes of it. Retries happen only before any byte of the response has been
//! passed on: once the upstream's response head is accepted, it is the answer.

use crate::body::{
    boxed, buffer, empty, full, Body, Buffered, ClientBody, ClientBodyError, Stall, TrailerRule, Trailers,
};
use crate::error::{closing_response, error_response, status_response, ErrorKind};
use crate::health::{self, InFlight};
use crate::metrics::Rejection;
use crate::policy;
use crate::request::{add_forwarded, filter_trailer, is_upgrade, request_host, strip_hop_by_hop, RequestCtx};
use crate::state::{Runtime, Shared};
use crate::upstream::{SendError, UpstreamBody, UpstreamRt};
use bytes::Bytes;
use gw_compiler::ast::Method;
use gw_compiler::plan::router::{lookup, Lookup};
use gw_compiler::plan::{self, HeaderOp, RetryOn, Route, Target};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, StatusCode, Uri};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A client's request body as the proxy takes it.
pub trait ClientStream:
    hyper::body::Body<Data = Bytes, Error: Into<crate::body::BoxError>> + Send + Unpin + 'static
{
}

impl<B> ClientStream for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<crate::body::BoxError>> + Send + Unpin + 'static
{
}

/// Bodies up to this size are buffered so that a retry can replay them.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// What the connection knows about itself.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub client: SocketAddr,
    pub tls: bool,
}

fn method_of(m: &hyper::Method) -> Option<Method> {
    Some(match *m {
        hyper::Method::GET => Method::Get,
        hyper::Method::HEAD => Method::Head,
        hyper::Method::POST => Method::Post,
        hyper::Method::PUT => Method::Put,
        hyper::Method::PATCH => Method::Patch,
        hyper::Method::DELETE => Method::Delete,
        hyper::Method::OPTIONS => Method::Options,
        hyper::Method::CONNECT => Method::Connect,
        hyper::Method::TRACE => Method::Trace,
        _ => return None,
    })
}

/// Serves one request. Never fails: every error becomes a response.
///
/// `B` is the client's body: hyper's `Incoming`, or the gateway's own
/// HTTP/1.1 server's.
#[allow(clippy::manual_async_fn)] // an `async fn` stores its arguments twice (see `route_request`)
pub fn handle<B>(shared: Arc<Shared>, conn: Conn, req: Request<B>) -> impl Future<Output = Response<Body>> + use<B>
where
    B: ClientStream,
{
    // An async block, as [`route_request`]: the request is kept once.
    async move {
        let started = Instant::now();
        let rt = shared.current.load_full();
        let method = req.method().clone();
        let uri = req.uri().clone();
        // CORS is answered at the gateway: a preflight before routing (once
        // its host is found valid, as any request's: a bad one is refused by
        // `route_request`), the headers of a cross-origin request on the
        // route's answer. The host is not kept here: it would take room in
        // every request's future.
        let preflight = match req.method() == hyper::Method::OPTIONS {
            true => match request_host(req.version(), &uri, req.headers()) {
                Ok(host) => policy::cors::preflight(&rt, &req, host.as_ref()),
                Err(_) => None,
            },
            false => None,
        };
        let (resp, route, upstream_server) = match preflight {
            Some((resp, route)) => (resp, Some(route), None),
            None => {
                let origin = policy::cors::origin(&req);
                let (resp, route, server) = route_request(&shared, &rt, conn, &uri, req).await;
                (policy::cors::decorate(&rt, route, origin, resp), route, server)
            }
        };
        let status = resp.status().as_u16();
        let micros = started.elapsed().as_micros() as u64;
        match route {
            Some(i) => {
                if let Some(m) = rt.route_metrics.get(i) {
                    m.record(status, micros);
                }
            }
            None => shared.metrics.unmatched.record(status, micros),
        }
        let route = route.and_then(|i| rt.route_labels.get(i)).map_or("-", String::as_str);
        let upstream = upstream_server.as_deref().unwrap_or("-");
        let line = crate::logbuf::AccessLine {
            client: conn.client.ip(),
            method: method.as_str(),
            path: uri.path(),
            route,
            upstream,
            status,
            micros,
        };
        // `gwc serve` has the line written directly (the same text, cheaper);
        // anywhere else it is a tracing event.
        if !crate::logbuf::access(&line) {
            tracing::info!(
                target: "gw::access",
                client = %conn.client.ip(),
                method = %method,
                path = uri.path(),
                route,
                upstream,
                status,
                micros,
            );
        }
        resp
    }
}

/// The response, the route's index and the server that answered.
type Outcome = (Response<Body>, Option<usize>, Option<Arc<str>>);

/// What an upstream target needs once the request has been taken apart.
struct Prepared<'a> {
    up: &'a UpstreamRt,
    request_ops: Vec<RenderedOp>,
    path: PathAndQuery,
    hash: Option<u64>,
}

/// `uri` is the request's URI (a shared copy kept for the access log).
///
/// A function returning an async block rather than an `async fn`: an `async
/// fn` keeps each argument twice in its future (as passed, and as bound in
/// its body), 256 bytes more for the request in every request's future.
#[allow(clippy::manual_async_fn)] // see above: an `async fn` stores its arguments twice
fn route_request<'a, B: ClientStream>(
    shared: &'a Shared,
    rt: &'a Arc<Runtime>,
    conn: Conn,
    uri: &'a Uri,
    mut req: Request<B>,
) -> impl Future<Output = Outcome> + use<'a, B> {
    async move {
        let plan = &rt.plan;
        // The request's host first: routing and the forwarded `Host` both take
        // it, so they cannot disagree.
        let host = match request_host(req.version(), uri, req.headers()) {
            Ok(host) => host,
            Err(bad) => {
                shared.metrics.reject(Rejection::BadRequest);
                tracing::debug!(client = %conn.client, reason = ?bad, "request host refused");
                return (closing_response(StatusCode::BAD_REQUEST, req.version()), None, None);
            }
        };
        // From here on the routed host is the request's `Host`: what
        // `header.host` reads (templates, `hash()`, limit keys, `require`)
        // and what the upstream gets, on every protocol. A target's
        // authority (absolute form, HTTP/2 `:authority`) replaces the line;
        // in origin form the line is the host already.
        if let (Some(h), Some(_)) = (&host, uri.authority()) {
            req.headers_mut().insert(header::HOST, h.clone());
        }
        let host_str = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let (route_index, params) = match lookup(plan, method_of(req.method()), host_str, uri.path()) {
            Lookup::Matched { route, params } => (route, params),
            Lookup::NotFound => {
                shared.metrics.reject(Rejection::NotFound);
                return (status_response(StatusCode::NOT_FOUND), None, None);
            }
            Lookup::MethodNotAllowed { allow } => {
                shared.metrics.reject(Rejection::MethodNotAllowed);
                let mut resp = status_response(StatusCode::METHOD_NOT_ALLOWED);
                if let Ok(v) = HeaderValue::from_str(&allow.to_allow()) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                return (resp, None, None);
            }
            Lookup::BadRequest(_) => {
                shared.metrics.reject(Rejection::BadRequest);
                return (status_response(StatusCode::BAD_REQUEST), None, None);
            }
        };
        let Some(route) = plan.routes.get(route_index) else {
            return (status_response(StatusCode::NOT_FOUND), None, None);
        };
        // Refuse a body over max_body_size as soon as its length is known,
        // before anything else reads it or any upstream is contacted.
        let declared = req.body().size_hint().exact();
        if declared.is_some_and(|n| n > plan.limits.max_body_size) {
            shared.metrics.reject(Rejection::BodyTooLarge);
            return (error_response(ErrorKind::BodyTooLarge), Some(route_index), None);
        }

        // The pipeline: auth → require → limit (see policy.rs).
        // A route without policies skips the pipeline; one with them runs it
        // boxed, so that its (large) state is not part of every request's future.
        let checked = if route.auth.is_none() && route.requires.is_empty() && route.limits.is_empty() {
            Ok(policy::Identity::default())
        } else {
            Box::pin(policy::check(rt, route, &req, conn)).await
        };
        let identity = match checked {
            Ok(identity) => identity,
            Err(rejection) => {
                shared.metrics.reject(rejection.reason);
                return (rejection.response(), Some(route_index), None);
            }
        };

        // Everything that reads the request through references is rendered here,
        // before the request is taken apart for forwarding.
        let (early, response_ops, prepared) = {
            let ctx = RequestCtx {
                client_ip: conn.client.ip(),
                headers: req.headers(),
                query: uri.query(),
                params: Some(&params),
                claims: identity.claims.as_deref(),
                api_key: identity.api_key.as_deref(),
            };
            let response_ops = render_ops(&route.response_headers, &ctx);
            let mut prepared = None;
            let early = match &route.target {
                Target::Respond { status, body } => Some(respond(*status, body.as_deref())),
                Target::Redirect { status, location } => {
                    let mut r = Response::new(empty());
                    *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::FOUND);
                    if let Ok(v) = HeaderValue::from_str(&ctx.render_path(location)) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    Some(r)
                }
                Target::Aggregate(agg) => Some(Box::pin(crate::aggregate::run(rt, agg, &ctx, conn)).await),
                Target::Upstream { upstream } => match rt.upstreams.get(*upstream) {
                    Some(up) => {
                        prepared = Some(Prepared {
                            up,
                            request_ops: render_ops(&route.request_headers, &ctx),
                            path: upstream_path(route, &ctx, uri),
                            hash: up.hash_of(&ctx),
                        });
                        None
                    }
                    None => Some(status_response(StatusCode::BAD_GATEWAY)),
                },
            };
            (early, response_ops, prepared)
        };
        drop(params);
        let Some(prepared) = prepared else {
            let mut resp = early.unwrap_or_else(|| status_response(StatusCode::BAD_GATEWAY));
            apply_ops(resp.headers_mut(), response_ops);
            return (resp, Some(route_index), None);
        };

        // In a block: what is only needed before the exchange takes no room
        // in the future while it runs.
        let (client_upgrade, head, incoming, takes) = {
            let upgrade = is_upgrade(req.headers());
            let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
            let (mut head, incoming) = req.into_parts();
            head.extensions.clear();
            let version = head.version;
            let headers = &mut head.headers;
            // Request trailers are not forwarded (docs/language.md, decision
            // 47), so neither is their announcement.
            let te_trailers = strip_hop_by_hop(headers, upgrade, false);
            // The gateway answered `Expect: 100-continue` itself when it began
            // reading the body; the upstream is not asked again.
            headers.remove(header::EXPECT);
            // `Host` is the host the request was routed by (set above).
            add_forwarded(headers, conn.client.ip(), conn.tls, host.as_ref());
            apply_ops(headers, prepared.request_ops);
            // What the client takes of an answer's trailer section.
            let takes = match version {
                hyper::Version::HTTP_2 => Takes::All,
                hyper::Version::HTTP_11 if te_trailers => Takes::Announced,
                _ => Takes::Nothing,
            };
            (client_upgrade, head, incoming, takes)
        };
        let target = Forward {
            shared,
            route,
            up: prepared.up,
            path: prepared.path,
            hash: prepared.hash,
            max_body: plan.limits.max_body_size,
        };
        match target.run(Some(head), incoming, declared).await {
            Ok(answer) => {
                let switching = answer.response.status() == StatusCode::SWITCHING_PROTOCOLS;
                let (mut parts, body) = answer.response.into_parts();
                let trailers = trailer_rule(takes, &parts.headers);
                // `Trailer` announces fields: it goes where they go.
                let keep_trailer = !matches!(trailers, TrailerRule::Drop);
                // Trailer fields may not undo the route's response header
                // transforms.
                let transformed = if keep_trailer {
                    rt.transformed_response_headers.get(route_index).cloned().flatten()
                } else {
                    None
                };
                let body = match (client_upgrade, switching) {
                    // The upstream switched: its socket is tunnelled to the
                    // client's once the client's side has switched too.
                    (Some(on_client), true) => {
                        if let Some(upstream) = body.into_upgraded() {
                            tokio::spawn(tunnel(on_client, upstream));
                        }
                        empty()
                    }
                    _ => {
                        let trailers = Trailers {
                            rule: trailers,
                            transformed: transformed.clone(),
                        };
                        boxed(Stall::new(body, target.timeout(), answer.in_flight, trailers))
                    }
                };
                strip_hop_by_hop(&mut parts.headers, switching, keep_trailer);
                if keep_trailer {
                    // It names only the fields that will pass.
                    filter_trailer(&mut parts.headers, transformed.as_deref());
                }
                apply_ops(&mut parts.headers, response_ops);
                (
                    Response::from_parts(parts, body),
                    Some(route_index),
                    Some(answer.server),
                )
            }
            Err((kind, server)) => {
                shared.metrics.reject(match kind {
                    ErrorKind::NoServer => Rejection::NoServer,
                    ErrorKind::Connect => Rejection::ConnectError,
                    ErrorKind::ConnectTimeout | ErrorKind::Timeout | ErrorKind::ClientTimeout => Rejection::Timeout,
                    ErrorKind::BodyTooLarge => Rejection::BodyTooLarge,
                    ErrorKind::ClientBody => Rejection::BadRequest,
                    ErrorKind::Reset | ErrorKind::Upstream => Rejection::UpstreamError,
                });
                (error_response(kind), Some(route_index), server)
            }
        }
    }
}

/// What a client takes of a response's trailer section.
#[derive(Clone, Copy)]
enum Takes {
    /// An HTTP/1.0 client, or an HTTP/1.1 one that did not send `TE:
    /// trailers` (RFC 9110 6.5.1: it may drop them on the way).
    Nothing,
    /// An HTTP/1.1 client that sent `TE: trailers`.
    Announced,
    /// An HTTP/2 client.
    All,
}

/// Which of an upstream response's trailer fields the client gets
/// (docs/language.md, decision 47): an HTTP/2 client every permitted one;
/// an HTTP/1.1 client that sent `TE: trailers` those the upstream announced
/// in `Trailer` (hyper's server, which serves the connections the
/// gateway's own loop hands it, sends no other, and both paths must give
/// the same answer); any other client none.
fn trailer_rule(takes: Takes, headers: &hyper::HeaderMap) -> TrailerRule {
    match takes {
        Takes::Nothing => TrailerRule::Drop,
        Takes::All => TrailerRule::All,
        Takes::Announced => {
            let mut lines = headers.get_all(header::TRAILER).iter();
            match (lines.next(), lines.next()) {
                (None, _) => TrailerRule::Drop,
                (Some(one), None) => TrailerRule::Announced(one.clone()),
                // Several lines (rare): one list of them all.
                (Some(_), Some(_)) => {
                    let all: Vec<&[u8]> = headers
                        .get_all(header::TRAILER)
                        .iter()
                        .map(HeaderValue::as_bytes)
                        .collect();
                    HeaderValue::from_bytes(&all.join(&b", "[..])).map_or(TrailerRule::Drop, TrailerRule::Announced)
                }
            }
        }
    }
}

/// `respond STATUS ["body"]`: the body as `text/plain`. `respond 404`
/// without a body is the gateway's own `404`, byte for byte what a path no
/// route matches gets, so that a hidden path cannot be told from an
/// unknown one.
fn respond(status: u16, body: Option<&str>) -> Response<Body> {
    if status == 404 && body.is_none() {
        return status_response(StatusCode::NOT_FOUND);
    }
    let mut r = match body {
        Some(b) => {
            let mut r = Response::new(full(Bytes::copy_from_slice(b.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        None => Response::new(empty()),
    };
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

/// A header operation with its value rendered: `None` removes.
type RenderedOp = (header::HeaderName, Option<HeaderValue>);

fn render_ops(ops: &[HeaderOp], ctx: &RequestCtx<'_>) -> Vec<RenderedOp> {
    ops.iter()
        .filter_map(|op| match op {
            HeaderOp::Remove { name } => header::HeaderName::from_bytes(name.as_bytes()).ok().map(|n| (n, None)),
            HeaderOp::Set { name, value } => {
                let n = header::HeaderName::from_bytes(name.as_bytes()).ok()?;
                // A value that cannot be a header (a control character from a
                // claim, say) removes the header rather than letting one the
                // client sent under that name through.
                Some((n, HeaderValue::from_str(&ctx.render(value)).ok()))
            }
        })
        .collect()
}

fn apply_ops(headers: &mut hyper::HeaderMap, ops: Vec<RenderedOp>) {
    for (name, value) in ops {
        match value {
            Some(v) => {
                headers.insert(name, v);
            }
            None => {
                headers.remove(name);
            }
        }
    }
}

/// The path (and query) sent upstream: `rewrite` if given, else the request
/// path with `strip_prefix` removed; the request's query string is kept
/// (after the rewrite's own, if it has one). The request's own path is
/// shared, not copied, when neither applies.
fn upstream_path(route: &Route, ctx: &RequestCtx<'_>, uri: &Uri) -> PathAndQuery {
    let path = uri.path();
    let mut out = match (&route.rewrite, &route.strip_prefix) {
        (Some(t), _) => ctx.render_path(t),
        (None, Some(prefix)) => match path.strip_prefix(prefix.trim_end_matches('/')) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
            _ => path.to_string(),
        },
        (None, None) => {
            return match uri.path_and_query() {
                Some(pq) => pq.clone(),
                None => PathAndQuery::from_static("/"),
            }
        }
    };
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(q);
    }
    PathAndQuery::from_maybe_shared(Bytes::from(out)).unwrap_or_else(|_| PathAndQuery::from_static("/"))
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

/// The upstream's answer, the server that gave it, and that server's
/// in-flight count, held until the response body is done (the body itself
/// holds its connection).
struct Answer {
    response: Response<UpstreamBody>,
    server: Arc<str>,
    in_flight: InFlight,
}

type Failure = (ErrorKind, Option<Arc<str>>);

/// One request on its way to an upstream.
struct Forward<'a> {
    shared: &'a Shared,
    route: &'a Route,
    up: &'a UpstreamRt,
    path: PathAndQuery,
    hash: Option<u64>,
    max_body: u64,
}

impl<'a> Forward<'a> {
    /// The route's timeout, else the upstream's.
    fn timeout(&self) -> std::time::Duration {
        self.route.timeout.unwrap_or(self.up.config.timeout).as_duration()
    }

    /// An async block, as [`route_request`]: the request's head (224 bytes)
    /// is kept once, not twice. `head` comes as `Some` and is the future's
    /// only copy: each attempt clones it, the last takes it.
    #[allow(clippy::manual_async_fn)] // see above: an `async fn` stores its arguments twice
    fn run<'s, B: ClientStream>(
        &'s self,
        mut head: Option<hyper::http::request::Parts>,
        incoming: B,
        declared: Option<u64>,
    ) -> impl Future<Output = Result<Answer, Failure>> + use<'s, 'a, B> {
        async move {
            let up = self.up;
            let route = self.route;
            // Which retries this request may make: a route's own retry opts
            // every method in; the upstream's covers idempotent methods only.
            let retry = route.retry.as_ref().or(up.config.retry.as_ref());
            let may_retry = retry.is_some()
                && (route.retry.is_some()
                    || head
                        .as_ref()
                        .and_then(|h| method_of(&h.method))
                        .is_some_and(Method::is_idempotent));
            let attempts = if may_retry {
                1 + retry.map_or(0, |r| r.attempts)
            } else {
                1
            };
            // A request whose connection broke after it was sent may have
            // taken effect: only an idempotent one is sent again, whatever
            // the route opts into.
            let idempotent = head
                .as_ref()
                .and_then(|h| method_of(&h.method))
                .is_some_and(Method::is_idempotent);
            // Set once a streamed body has all come from the client: an exchange
            // that times out before that waited on the client (408), and the
            // server is not blamed for it.
            let mut client_done: Option<Arc<AtomicBool>> = None;
            let mut body = if incoming.is_end_stream() {
                ReqBody::Empty
            } else {
                let client_body = ClientBody::new(incoming, self.max_body);
                if attempts > 1 && declared.is_none_or(|n| n <= REPLAY_LIMIT as u64) {
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
            // An `http2` upstream gets as `:authority` the `Host` an
            // HTTP/1.1 one would get: the routed host, after the route's
            // request transforms (`set request header host`).
            let h2_authority = match (&head, up.config.http2) {
                (Some(h), true) => h
                    .headers
                    .get(header::HOST)
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok()),
                _ => None,
            };
            let timeout = self.timeout();
            let set = up.set.load_full();
            let mut tried: Vec<usize> = Vec::new();
            let mut last: Option<Failure> = None;
            // A retryable answer (`retry ... on 503`) kept in case no retry can go.
            let mut held: Option<Answer> = None;
            up.active.fetch_add(1, Ordering::Relaxed);
            let _active = ActiveGuard(up);
            for attempt in 0..attempts {
                // A retry holds its place in the budget until it is done.
                let retry_slot = if attempt > 0 {
                    let budget = retry.map_or(plan::defaults::RETRY_BUDGET_PERCENT, |r| r.budget_percent);
                    match up.start_retry(budget) {
                        Some(slot) => Some(slot),
                        None => break,
                    }
                } else {
                    None
                };
                let Some(i) = set.balancer.pick_hashed(&set.states, self.hash, &tried) else {
                    if last.is_none() && held.is_none() {
                        last = Some((ErrorKind::NoServer, None));
                    }
                    break;
                };
                let Some(backend) = set.backends.get(i) else { break };
                let server = backend.label.clone();
                let last_attempt = attempt + 1 == attempts || !body.replayable();
                let parts = if last_attempt { head.take() } else { head.clone() };
                let (Some(mut parts), Some(this_body)) = (parts, body.take()) else {
                    break;
                };
                held = None;
                let mut uri = hyper::http::uri::Parts::default();
                uri.path_and_query = Some(self.path.clone());
                if up.config.http2 {
                    // The request's host as `:authority`, else the server's.
                    uri.scheme = Some(Scheme::HTTP);
                    uri.authority = Some(h2_authority.clone().unwrap_or_else(|| backend.authority.clone()));
                    parts.version = hyper::Version::HTTP_2;
                    parts.headers.remove(header::HOST);
                } else {
                    // Origin form; a request that came without a host names the server.
                    parts.version = hyper::Version::HTTP_11;
                    if !parts.headers.contains_key(header::HOST) {
                        parts.headers.insert(header::HOST, backend.host.clone());
                    }
                }
                let Ok(uri) = Uri::from_parts(uri) else {
                    return Err((ErrorKind::Upstream, Some(server)));
                };
                parts.uri = uri;
                let out = Request::from_parts(parts, this_body);
                let in_flight = backend.state.start();
                if retry_slot.is_some() {
                    self.shared.metrics.retries.fetch_add(1, Ordering::Relaxed);
                }
                // Each protocol's exchange is awaited here, with no layer between
                // (every layer moves the request and the answer once more).
                let result = if up.config.http2 {
                    tokio::time::timeout(timeout, backend.send_h2(out)).await
                } else {
                    tokio::time::timeout(timeout, backend.h1.send(out)).await
                };
                drop(retry_slot);
                let (kind, outcome) = match result {
                    Ok(Ok(response)) => {
                        let status = response.status().as_u16();
                        // 5xx answers count towards an `eject` block (501 is a
                        // statement about the request, not the server's health).
                        let outcome = if status < 500 || status == 501 {
                            health::Outcome::Ok
                        } else {
                            health::Outcome::Failed
                        };
                        set.record(i, outcome, up);
                        let answer = Answer {
                            response,
                            server,
                            in_flight,
                        };
                        let retry_status = retry.is_some_and(|r| r.on.contains(&RetryOn::Status(status)));
                        if retry_status && !last_attempt {
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
                if matches!(
                    kind,
                    ErrorKind::BodyTooLarge | ErrorKind::ClientBody | ErrorKind::ClientTimeout
                ) {
                    return Err((kind, Some(server)));
                }
                set.record(i, outcome, up);
                tracing::debug!(upstream = %up.name, server = %server, error = kind.as_str(), "upstream attempt failed");
                last = Some((kind, Some(server)));
                let retryable = retry.is_some_and(|r| match kind {
                    ErrorKind::Connect | ErrorKind::ConnectTimeout => r.on.contains(&RetryOn::ConnectError),
                    ErrorKind::Reset => idempotent && r.on.contains(&RetryOn::Reset),
                    ErrorKind::Timeout => r.on.contains(&RetryOn::Timeout),
                    _ => false,
                });
                if !retryable || last_attempt {
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
}

struct ActiveGuard<'a>(&'a UpstreamRt);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Maps a failed exchange to its kind and to what it says about the server:
/// connect failures (timeout or refusal: the server is not there); a fresh
/// connection that broke before any answer (the server failed, or this
/// request broke it: an `eject` block counts it, the default does not); a
/// pooled connection that broke (perhaps closed while idle: nothing
/// against the server); the client's own body (too large, or failed);
/// anything else from the upstream.
fn classify(e: &SendError) -> (ErrorKind, health::Outcome) {
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

/// Copies bytes both ways between an upgraded client and the upstream's
/// socket (`early`: what the upstream sent right after its `101` head).
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: (tokio::net::TcpStream, Bytes)) {
    use tokio::io::AsyncWriteExt;
    let Ok(c) = client.await else {
        return;
    };
    let (mut u, early) = upstream;
    let mut c = hyper_util::rt::TokioIo::new(c);
    if !early.is_empty() && c.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
}
