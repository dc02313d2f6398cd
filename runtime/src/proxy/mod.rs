//! One request's life ([`handle`]): its host and route (`400`, `404`, `405` +
//! `Allow`), a body declared over `max_body_size` refused (`413`), the
//! route's policies (auth → require → limit, [`crate::policy`]), the target
//! rendered (templates, header transforms, the upstream's path and hash
//! key), then the answer: made here (`respond`, `redirect`, [`aggregate`]),
//! or the request forwarded to an upstream (`forward`: a server picked, a
//! pooled connection, retries) and the upstream's answer passed on (hop-by-
//! hop headers, trailers, response transforms, a WebSocket tunnel); then
//! the route's counters and the access line.
//!
//! The path is built for throughput: the plan is read through an `ArcSwap`
//! (no lock), URIs and header values are shared rather than copied, and
//! bodies stream frame by frame in both directions. The layers of a
//! request's future ([`handle`], `route_request`, `Forward::run`)
//! are functions returning async blocks, because an `async fn` stores each
//! argument twice in its future; the rare states (the policy check, an
//! aggregate, a body buffered for a replay) are boxed.

mod aggregate;
mod compress;
mod forward;
mod mirror;

use crate::body::{boxed, empty, full, Body, Stall, TrailerRule, Trailers};
use crate::cache::{self, RouteCache};
use crate::conn::Conn;
use crate::error::{closing_response, error_response, status_response, ErrorKind};
use crate::loaded::{LoadedPlan, Shared};
use crate::metrics::Rejection;
use crate::policy;
use crate::request::{add_forwarded, filter_trailer, is_upgrade, request_host, strip_hop_by_hop, RequestCtx};
use crate::upstream::Upstream;
use bytes::Bytes;
use forward::{Answer, Forward};
use gw_plan::router::{lookup_with, Lookup, Params};
use gw_plan::words::Method;
use gw_plan::{HeaderOp, Plan, Route, Target};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri};
use std::future::Future;
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
pub fn handle<B>(shared: Arc<Shared>, conn: Conn, mut req: Request<B>) -> impl Future<Output = Response<Body>> + use<B>
where
    B: ClientStream,
{
    // An async block, as [`route_request`]: the request is kept once.
    async move {
        let started = Instant::now();
        let loaded = shared.current.load_full();
        // The client's address: the peer, or behind `trust_proxies` the one
        // `X-Forwarded-For` gives (rewritten to the chain verified). What
        // policies, templates, hash keys and the access line read.
        let client_ip = crate::request::walk_forwarded(&loaded.plan, conn.client.ip(), req.headers_mut());
        let method = req.method().clone();
        let uri = req.uri().clone();
        let version = req.version();
        // Trace context and request id, set on the request before anything
        // reads it (templates see them, the upstream gets them).
        let trusted = crate::request::trusts_peer(&loaded.plan, conn.client.ip());
        let seen = crate::trace::begin(req.headers_mut(), &uri, trusted);
        // CORS is answered at the gateway: a preflight before routing (once
        // its host is found valid, as any request's: a bad one is refused by
        // `route_request`), the headers of a cross-origin request on the
        // route's answer. The host is not kept here: it would take room in
        // every request's future.
        let preflight = match req.method() == hyper::Method::OPTIONS {
            true => match request_host(req.version(), &uri, req.headers()) {
                Ok(host) => policy::cors::preflight(&loaded.plan, &req, host.as_ref()),
                Err(_) => None,
            },
            false => None,
        };
        let mut routed = match preflight {
            Some((resp, route)) => {
                if !resp.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                    shared.metrics.reject(Rejection::Cors);
                }
                Routed::answer(resp, Some(route))
            }
            None => {
                // Not kept while the request is routed (it has no room in
                // every request's future).
                drop(preflight);
                let origin = policy::cors::origin(&req);
                // Lines logged about the request carry its id when debug
                // lines are on; the span (and its box) costs nothing otherwise.
                let mut routed = if tracing::enabled!(target: "gw::request", tracing::Level::DEBUG) {
                    Box::pin(in_span(
                        &seen,
                        route_request(&shared, &loaded, &conn, client_ip, &uri, req),
                    ))
                    .await
                } else {
                    route_request(&shared, &loaded, &conn, client_ip, &uri, req).await
                };
                routed.resp = policy::cors::decorate(&loaded.plan, routed.route, origin, routed.resp);
                routed
            }
        };
        if let Some(id) = seen.request_id_header() {
            routed.resp.headers_mut().insert(crate::trace::X_REQUEST_ID.clone(), id);
        }
        account(
            &shared, &loaded, client_ip, &method, &uri, version, &seen, &routed, started,
        );
        routed.resp
    }
}

/// `fut` in the span of one request's log lines (`request{id=...}`).
fn in_span<F: Future>(seen: &crate::trace::Seen, fut: F) -> tracing::instrument::Instrumented<F> {
    let span = tracing::debug_span!(target: "gw::request", "request", id = seen.request_id());
    tracing::Instrument::instrument(fut, span)
}

/// The request's counters (its route's, or the unmatched ones) and its
/// access line.
#[allow(clippy::too_many_arguments)]
fn account(
    shared: &Shared,
    loaded: &LoadedPlan,
    client_ip: std::net::IpAddr,
    method: &hyper::Method,
    uri: &Uri,
    version: hyper::Version,
    seen: &crate::trace::Seen,
    routed: &Routed,
    started: Instant,
) {
    let resp = &routed.resp;
    let status = resp.status().as_u16();
    let now = Instant::now();
    let micros = now.duration_since(started).as_micros() as u64;
    let method_index = crate::metrics::method_index(method);
    match routed.route {
        Some(i) => {
            if let Some(m) = loaded.route_metrics.get(i) {
                m.record(method_index, status, micros);
            }
        }
        None => shared.metrics.unmatched.record(method_index, status, micros),
    }
    let route = routed
        .route
        .and_then(|i| loaded.route_labels.get(i))
        .map_or("-", String::as_str);
    let upstream = routed.server.as_deref().unwrap_or("-");
    let subject = routed.identity.as_ref().and_then(|id| match (&id.api_key, &id.claims) {
        (Some(key), _) => Some(key.as_str()),
        (None, Some(claims)) => claims.get("sub").and_then(serde_json::Value::as_str),
        (None, None) => None,
    });
    let line = crate::log::AccessLine {
        client: client_ip,
        method: method.as_str(),
        host: seen.host(),
        path: uri.path(),
        protocol: protocol(version),
        route,
        upstream,
        status,
        micros,
        upstream_micros: routed.sent_at.map(|t| now.duration_since(t).as_micros() as u64),
        retries: routed.retries,
        bytes_in: routed.bytes_in,
        bytes_out: hyper::body::Body::size_hint(resp.body()).exact(),
        user_agent: seen.user_agent(),
        subject: subject.unwrap_or("-"),
        refused: routed.refused.unwrap_or("-"),
        request_id: seen.request_id(),
        trace_id: seen.trace_id(),
    };
    // `gwc serve` has the line written directly (the same text, cheaper);
    // anywhere else it is a tracing event.
    if !crate::log::access(&line) {
        line.trace();
    }
}

/// The protocol as the access line names it.
fn protocol(v: hyper::Version) -> &'static str {
    match v {
        hyper::Version::HTTP_09 => "HTTP/0.9",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_11 => "HTTP/1.1",
        hyper::Version::HTTP_2 => "HTTP/2",
        hyper::Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
}

/// A routed request's answer and what the access line says of it.
struct Routed {
    resp: Response<Body>,
    /// The route's index.
    route: Option<usize>,
    /// The server that answered.
    server: Option<Arc<str>>,
    /// Why the gateway refused the request or answered for the upstream.
    refused: Option<&'static str>,
    /// Who the policies found the request to be.
    identity: Option<policy::Identity>,
    /// Retries made (attempts after the first).
    retries: u32,
    /// When the first attempt went upstream.
    sent_at: Option<Instant>,
    /// The request body's declared length.
    bytes_in: Option<u64>,
}

impl Routed {
    fn answer(resp: Response<Body>, route: Option<usize>) -> Routed {
        Routed {
            resp,
            route,
            server: None,
            refused: None,
            identity: None,
            retries: 0,
            sent_at: None,
            bytes_in: None,
        }
    }

    fn refused(resp: Response<Body>, route: Option<usize>, why: &'static str) -> Routed {
        Routed {
            refused: Some(why),
            ..Routed::answer(resp, route)
        }
    }
}

/// The word the access line gives a policy's refusal.
fn refusal(reason: Rejection) -> &'static str {
    match reason {
        Rejection::Unauthorized => "unauthorized",
        Rejection::Forbidden => "forbidden",
        Rejection::RateLimited => "rate_limited",
        _ => "refused",
    }
}

/// What a route's request is sent on with, rendered while the request could
/// still be read by reference: its upstream, its request header
/// transforms, the upstream's path and the balancing hash.
struct Rendered<'a> {
    up: &'a Upstream,
    request_ops: Vec<RenderedOp>,
    path: PathAndQuery,
    hash: Option<u64>,
}

/// Where a route's request goes.
enum Next<'a> {
    /// The gateway answers (`respond`, `redirect`, `aggregate`, or `502`
    /// for an upstream the plan does not have).
    Answer(Response<Body>),
    /// To an upstream.
    Forward(Rendered<'a>),
}

/// The request taken apart for forwarding: its head (hop-by-hop headers
/// gone, `X-Forwarded-*` and the route's request transforms applied) and
/// body, the client's side of an upgrade, and what the client takes of an
/// answer's trailers.
struct Outgoing<B> {
    head: hyper::http::request::Parts,
    body: B,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    takes: Takes,
}

/// Routes `req` and answers it; `uri` is the request's URI (a shared copy
/// kept for the access log).
///
/// A function returning an async block rather than an `async fn`: an `async
/// fn` keeps each argument twice in its future (as passed, and as bound in
/// its body), 256 bytes more for the request in every request's future.
#[allow(clippy::manual_async_fn)] // see above: an `async fn` stores its arguments twice
fn route_request<'a, B: ClientStream>(
    shared: &'a Shared,
    loaded: &'a Arc<LoadedPlan>,
    conn: &'a Conn,
    client_ip: std::net::IpAddr,
    uri: &'a Uri,
    mut req: Request<B>,
) -> impl Future<Output = Routed> + use<'a, B> {
    async move {
        let plan = &loaded.plan;
        let (route_index, params, host) = match find_route(shared, plan, conn, client_ip, uri, &mut req) {
            Ok(found) => found,
            Err(refused) => return refused,
        };
        let Some(route) = plan.routes.get(route_index) else {
            return Routed::refused(status_response(StatusCode::NOT_FOUND), None, "not_found");
        };
        // A body over max_body_size is refused as soon as its length is known,
        // before anything else reads it or any upstream is contacted.
        let declared = req.body().size_hint().exact();
        if declared.is_some_and(|n| n > plan.limits.max_body_size) {
            shared.metrics.reject(Rejection::BodyTooLarge);
            let mut routed = Routed::refused(
                error_response(ErrorKind::BodyTooLarge),
                Some(route_index),
                "body_too_large",
            );
            routed.bytes_in = declared;
            return routed;
        }
        // The policies: auth → require → limit. A route without them skips
        // this; one with them runs it boxed, so that its state is not part of
        // every request's future.
        let checked = if route.auth.is_none() && route.requires.is_empty() && route.limits.is_empty() {
            Ok(policy::Identity::default())
        } else {
            Box::pin(policy::check(
                &loaded.policies,
                route,
                &req,
                client_ip,
                conn.cert.as_deref(),
            ))
            .await
        };
        let identity = match checked {
            Ok(identity) => identity,
            Err(rejection) => {
                shared.metrics.reject(rejection.reason);
                return Routed::refused(rejection.response(), Some(route_index), refusal(rejection.reason));
            }
        };
        // Everything that reads the request through references is rendered
        // here, before the request is taken apart for forwarding.
        let (response_ops, next) = {
            let ctx = RequestCtx {
                client_ip,
                headers: req.headers(),
                query: uri.query(),
                params: Some(&params),
                claims: identity.claims.as_deref(),
                api_key: identity.api_key.as_deref(),
                client_cert: conn.cert.as_deref(),
            };
            let response_ops = render_ops(&route.response_headers, &ctx);
            let next = match &route.target {
                Target::Aggregate(agg) => Next::Answer(Box::pin(aggregate::run(&loaded.upstreams, agg, &ctx)).await),
                target => next(route, target, &ctx, uri, &loaded.upstreams),
            };
            (response_ops, next)
        };
        drop(params);
        let rendered = match next {
            Next::Forward(rendered) => rendered,
            Next::Answer(mut resp) => {
                apply_ops(resp.headers_mut(), response_ops);
                let mut routed = Routed::answer(resp, Some(route_index));
                routed.identity = Some(identity);
                routed.bytes_in = declared;
                return routed;
            }
        };
        // What the client accepts, read before the request is taken apart
        // (one byte; `Untouched` on a route without `compress`).
        let accept = match route.compress.and_then(|i| plan.compressions.get(i)) {
            None => compress::Accept::Untouched,
            Some(cfg) => compress::negotiate(cfg, req.method(), req.headers()),
        };
        // A route with `cache` takes a boxed path (its state is not part of
        // every request's future).
        if let Some(cache) = route.cache.and_then(|_| loaded.caches.get(route_index)?.clone()) {
            let go = Upstreaming {
                shared,
                loaded,
                conn,
                host: host.as_ref(),
                route,
                route_index,
                declared,
            };
            let (mut resp, server) = Box::pin(cached(&cache, go, uri, req, rendered)).await;
            apply_ops(resp.headers_mut(), response_ops);
            let resp = match route.compress.and_then(|i| plan.compressions.get(i)) {
                None => resp,
                Some(cfg) => compress::apply(resp, accept, cfg),
            };
            let mut routed = Routed::answer(resp, Some(route_index));
            routed.server = server;
            routed.identity = Some(identity);
            routed.bytes_in = declared;
            return routed;
        }
        let Outgoing {
            head,
            body,
            client_upgrade,
            takes,
        } = outgoing(req, conn, host.as_ref(), rendered.request_ops);
        let forward = Forward {
            route,
            up: rendered.up,
            path: rendered.path,
            hash: rendered.hash,
            max_body: plan.limits.max_body_size,
            sent_at: Default::default(),
            retried: Default::default(),
        };
        // A route with `mirror` takes a boxed path (its state is not part of
        // every request's future); the others the plain one.
        let forwarding = match route.mirror {
            None => mirror::Forwarding::Plain {
                f: forward.run(Some(head), body, declared),
            },
            Some(_) => {
                let copy = (&**loaded, route_index, client_upgrade.is_some(), &shared.metrics);
                mirror::Forwarding::Mirrored {
                    f: Box::pin(mirror::run(&forward, copy, head, body, declared)),
                }
            }
        };
        let mut routed = match forwarding.await {
            Ok(answer) => {
                let server = answer.server.clone();
                let transformed = || loaded.transformed_response_headers.get(route_index).cloned().flatten();
                let resp = pass_on(answer, takes, client_upgrade, transformed, response_ops, &forward);
                let resp = match route.compress.and_then(|i| plan.compressions.get(i)) {
                    None => resp,
                    Some(cfg) => compress::apply(resp, accept, cfg),
                };
                let mut routed = Routed::answer(resp, Some(route_index));
                routed.server = Some(server);
                routed
            }
            Err((kind, server)) => {
                let mut routed = Routed::refused(failed(shared, kind), Some(route_index), kind.as_str());
                routed.server = server;
                routed
            }
        };
        routed.retries = forward.retried.load(std::sync::atomic::Ordering::Relaxed);
        routed.sent_at = forward.sent_at.get().copied();
        routed.identity = Some(identity);
        routed.bytes_in = declared;
        routed
    }
}

/// What a cached route's request goes upstream with.
struct Upstreaming<'a> {
    shared: &'a Shared,
    loaded: &'a Arc<LoadedPlan>,
    conn: &'a Conn,
    host: Option<&'a HeaderValue>,
    route: &'a Route,
    route_index: usize,
    declared: Option<u64>,
}

impl<'a> Upstreaming<'a> {
    /// Forwards `req` and passes the answer on, without the route's
    /// response transforms (applied after the cache, to every answer).
    async fn answer<B: ClientStream>(
        &self,
        req: Request<B>,
        rendered: Rendered<'a>,
    ) -> (Response<Body>, Option<Arc<str>>) {
        let Outgoing {
            head,
            body,
            client_upgrade,
            takes,
        } = outgoing(req, self.conn, self.host, rendered.request_ops);
        let forward = Forward {
            route: self.route,
            up: rendered.up,
            path: rendered.path,
            hash: rendered.hash,
            max_body: self.loaded.plan.limits.max_body_size,
            sent_at: Default::default(),
            retried: Default::default(),
        };
        let result = match self.route.mirror {
            None => forward.run(Some(head), body, self.declared).await,
            Some(_) => {
                let copy = (
                    &**self.loaded,
                    self.route_index,
                    client_upgrade.is_some(),
                    &self.shared.metrics,
                );
                mirror::run(&forward, copy, head, body, self.declared).await
            }
        };
        match result {
            Ok(answer) => {
                let server = answer.server.clone();
                let index = self.route_index;
                let transformed = || self.loaded.transformed_response_headers.get(index).cloned().flatten();
                let resp = pass_on(answer, takes, client_upgrade, transformed, Vec::new(), &forward);
                (resp, Some(server))
            }
            Err((kind, server)) => (failed(self.shared, kind), server),
        }
    }

    fn timeout(&self, rendered: &Rendered<'_>) -> std::time::Duration {
        self.route.timeout.unwrap_or(rendered.up.config.timeout).as_duration()
    }
}

/// A cached route's request: served from the cache, or forwarded (one
/// request per missed key, see [`cache`]) and stored when it may be.
async fn cached<'a, B: ClientStream>(
    cache: &RouteCache,
    go: Upstreaming<'a>,
    uri: &Uri,
    req: Request<B>,
    rendered: Rendered<'a>,
) -> (Response<Body>, Option<Arc<str>>) {
    use cache::{Admitted, Coalesced, Found};
    let Some(probe) = cache::Probe::of(req.method(), req.headers(), go.host, uri) else {
        let (mut resp, server) = go.answer(req, rendered).await;
        cache::mark(&mut resp, "miss");
        return (resp, server);
    };
    let headers = req.headers().clone();
    let timeout = go.timeout(&rendered);
    let key = match cache.find(&probe, &headers).await {
        Found::Serve(resp) => return (resp, None),
        Found::Pass => {
            let (mut resp, server) = go.answer(req, rendered).await;
            cache::mark(&mut resp, "miss");
            return (resp, server);
        }
        Found::Refresh => None,
        Found::Miss(key) => Some(key),
    };
    let mut slot = Some((req, rendered));
    if let Some(key) = key {
        // The leader takes the request from `slot` and leaves its own
        // answer in `mine` when it is not stored.
        let mut mine: Option<(Response<Body>, Option<Arc<str>>)> = None;
        let outcome = {
            let (slot, mine) = (&mut slot, &mut mine);
            let go = &go;
            let probe = &probe;
            let headers = &headers;
            let init = async move {
                let Some((req, rendered)) = slot.take() else {
                    return Err(cache::NotStored);
                };
                let (resp, server) = go.answer(req, rendered).await;
                match cache.admit(probe, headers, resp).await {
                    Admitted::Yes(e) => {
                        cache.remember_vary(probe, &e).await;
                        *mine = Some((e.served(probe, "miss"), server));
                        Ok(e)
                    }
                    Admitted::No(resp) => {
                        *mine = Some((resp, server));
                        Err(cache::NotStored)
                    }
                    Admitted::Failed => {
                        *mine = Some((error_response(ErrorKind::Upstream), server));
                        Err(cache::NotStored)
                    }
                }
            };
            // Waiting on another's request is bounded by the route's timeout
            // (and a little, for its body).
            cache
                .coalesce(key, timeout + std::time::Duration::from_secs(1), init)
                .await
        };
        if let Some((mut resp, server)) = mine {
            cache::mark(&mut resp, "miss");
            return (resp, server);
        }
        match outcome {
            Coalesced::Entry(e) if e.answers(probe.base(), &headers, probe.authorized()) => {
                return (e.served(&probe, "hit"), None);
            }
            Coalesced::TimedOut if slot.is_none() => {
                return (error_response(ErrorKind::Timeout), None);
            }
            _ => {}
        }
    }
    // Alone: a refresh, a `no-cache` request, or a follower whose leader's
    // answer was not stored (or not for it).
    let Some((req, rendered)) = slot.take() else {
        return (error_response(ErrorKind::Upstream), None);
    };
    let (resp, server) = go.answer(req, rendered).await;
    let (mut resp, server) = match cache.admit(&probe, &headers, resp).await {
        Admitted::Yes(e) => {
            cache.keep(probe.base(), &e).await;
            (e.served(&probe, "miss"), server)
        }
        Admitted::No(resp) => (resp, server),
        Admitted::Failed => (error_response(ErrorKind::Upstream), server),
    };
    cache::mark(&mut resp, "miss");
    (resp, server)
}

/// The request's host and its route: `Err` is the answer when there is none
/// (`400` for a bad host, closing the connection; `404`; `405` with
/// `Allow`; `400` for a path refused before routing).
///
/// The host comes first: routing and the forwarded `Host` both take it, so
/// they cannot disagree. From here on the routed host is the request's
/// `Host`: what `header.host` reads (templates, `hash()`, limit keys,
/// `require`) and what the upstream gets, on every protocol. A target's
/// authority (absolute form, HTTP/2 `:authority`) replaces the line; in
/// origin form the line is the host already.
///
/// Not boxed: the refusal is made on the stack for a moment, and a box would
/// cost an allocation per refused request.
#[allow(clippy::type_complexity, clippy::result_large_err)]
fn find_route<'p, B>(
    shared: &Shared,
    plan: &'p Plan,
    conn: &Conn,
    client_ip: std::net::IpAddr,
    uri: &'p Uri,
    req: &mut Request<B>,
) -> Result<(usize, Params<'p>, Option<HeaderValue>), Routed> {
    let host = match request_host(req.version(), uri, req.headers()) {
        Ok(host) => host,
        Err(bad) => {
            shared.metrics.reject(Rejection::BadRequest);
            tracing::debug!(client = %conn.client, reason = ?bad, "request host refused");
            return Err(Routed::refused(
                closing_response(StatusCode::BAD_REQUEST, req.version()),
                None,
                "bad_host",
            ));
        }
    };
    if let (Some(h), Some(_)) = (&host, uri.authority()) {
        req.headers_mut().insert(header::HOST, h.clone());
    }
    let host_str = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
    // What route conditions read (only routes with a `when` read it): the
    // client's address is the one `trust_proxies` found.
    let facts = RequestCtx {
        client_ip,
        headers: req.headers(),
        query: uri.query(),
        params: None,
        claims: None,
        api_key: None,
        client_cert: None,
    };
    match lookup_with(plan, method_of(req.method()), host_str, uri.path(), &facts) {
        Lookup::Matched { route, params } => Ok((route, params, host)),
        Lookup::NotFound => {
            shared.metrics.reject(Rejection::NotFound);
            Err(Routed::refused(
                status_response(StatusCode::NOT_FOUND),
                None,
                "not_found",
            ))
        }
        Lookup::MethodNotAllowed { allow } => {
            shared.metrics.reject(Rejection::MethodNotAllowed);
            let mut resp = status_response(StatusCode::METHOD_NOT_ALLOWED);
            if let Ok(v) = HeaderValue::from_str(&allow.to_allow()) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            Err(Routed::refused(resp, None, "method_not_allowed"))
        }
        Lookup::BadRequest(_) => {
            shared.metrics.reject(Rejection::BadRequest);
            Err(Routed::refused(
                status_response(StatusCode::BAD_REQUEST),
                None,
                "bad_request",
            ))
        }
    }
}

/// Where `target` (any but `aggregate`) sends the request of `ctx`.
fn next<'a>(
    route: &Route,
    target: &Target,
    ctx: &RequestCtx<'_>,
    uri: &Uri,
    upstreams: &'a [Arc<Upstream>],
) -> Next<'a> {
    match target {
        Target::Respond { status, body } => Next::Answer(respond(*status, body.as_deref())),
        Target::Redirect { status, location } => {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::FOUND);
            if let Ok(v) = HeaderValue::from_str(&ctx.render_path(location)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Next::Answer(r)
        }
        Target::Upstream { .. } | Target::Split(_) => match upstreams.get(upstream_of(target, ctx)) {
            Some(up) => Next::Forward(Rendered {
                up,
                request_ops: render_ops(&route.request_headers, ctx),
                path: upstream_path(route, ctx, uri),
                hash: up.hash_of(ctx),
            }),
            None => Next::Answer(status_response(StatusCode::BAD_GATEWAY)),
        },
        Target::Aggregate(_) => Next::Answer(status_response(StatusCode::BAD_GATEWAY)),
    }
}

/// The upstream a request of `ctx` goes to: the route's, or the side of
/// its split — by the sticky key's value when the request has it, else at
/// random (a per-thread generator: no lock).
fn upstream_of(target: &Target, ctx: &RequestCtx<'_>) -> usize {
    match target {
        Target::Upstream { upstream } => *upstream,
        Target::Split(split) => {
            let side = match split.sticky.as_ref().and_then(|k| ctx.value(k)) {
                Some(key) => split.side_for_key(&key),
                None => split.side_for_random(crate::upstream::balance::random_u64()),
            };
            split.sides.get(side).map_or(usize::MAX, |s| s.upstream)
        }
        _ => usize::MAX,
    }
}

/// Takes `req` apart for forwarding (see [`Outgoing`]). `host` is the host
/// the request was routed by, already its `Host`.
fn outgoing<B>(
    mut req: Request<B>,
    conn: &Conn,
    host: Option<&HeaderValue>,
    request_ops: Vec<RenderedOp>,
) -> Outgoing<B> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut head, body) = req.into_parts();
    head.extensions.clear();
    let version = head.version;
    let headers = &mut head.headers;
    // Request trailers are not forwarded (docs/language.md, decision
    // 47), so neither is their announcement.
    let te_trailers = strip_hop_by_hop(headers, upgrade, false);
    // The gateway answered `Expect: 100-continue` itself when it began
    // reading the body; the upstream is not asked again.
    headers.remove(header::EXPECT);
    add_forwarded(headers, conn.client.ip(), conn.tls, host);
    apply_ops(headers, request_ops);
    // What the client takes of an answer's trailer section.
    let takes = match version {
        hyper::Version::HTTP_2 => Takes::All,
        hyper::Version::HTTP_11 if te_trailers => Takes::Announced,
        _ => Takes::Nothing,
    };
    Outgoing {
        head,
        body,
        client_upgrade,
        takes,
    }
}

/// The upstream's answer as the client gets it: a `101` tunnelled once the
/// client's side has switched too, any other body streamed under the
/// route's timeout (a stall cuts it) with the trailer fields this client
/// takes; hop-by-hop headers gone, the route's response transforms
/// applied. `transformed` gives the names those transforms set or remove,
/// which trailer fields may not undo.
fn pass_on(
    answer: Answer,
    takes: Takes,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    transformed: impl FnOnce() -> Option<Arc<[header::HeaderName]>>,
    response_ops: Vec<RenderedOp>,
    forward: &Forward<'_>,
) -> Response<Body> {
    let switching = answer.response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let (mut parts, body) = answer.response.into_parts();
    let trailers = trailer_rule(takes, &parts.headers);
    // `Trailer` announces fields: it goes where they go.
    let keep_trailer = !matches!(trailers, TrailerRule::Drop);
    let transformed = if keep_trailer { transformed() } else { None };
    let body = match (client_upgrade, switching) {
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
            boxed(Stall::new(body, forward.timeout(), answer.in_flight, trailers))
        }
    };
    strip_hop_by_hop(&mut parts.headers, switching, keep_trailer);
    if keep_trailer {
        // It names only the fields that will pass.
        filter_trailer(&mut parts.headers, transformed.as_deref());
    }
    apply_ops(&mut parts.headers, response_ops);
    Response::from_parts(parts, body)
}

/// The answer to a request no upstream answered, counted by why.
fn failed(shared: &Shared, kind: ErrorKind) -> Response<Body> {
    shared.metrics.reject(match kind {
        ErrorKind::NoServer => Rejection::NoServer,
        ErrorKind::Connect => Rejection::ConnectError,
        ErrorKind::ConnectTimeout | ErrorKind::Timeout | ErrorKind::ClientTimeout => Rejection::Timeout,
        ErrorKind::BodyTooLarge => Rejection::BodyTooLarge,
        ErrorKind::ClientBody => Rejection::BadRequest,
        ErrorKind::Reset | ErrorKind::Upstream => Rejection::UpstreamError,
    });
    error_response(kind)
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

/// Copies bytes both ways between an upgraded client and the upstream's
/// socket (`early`: what the upstream sent right after its `101` head).
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: (crate::upstream::stream::Stream, Bytes)) {
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
