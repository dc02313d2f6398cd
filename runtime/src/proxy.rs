//! A request's life: route lookup (404 / 405 + `Allow` / 400), the route's
//! pipeline (auth → require → limit → request transforms), the target
//! (pick a server → pooled connection → stream both ways → retry another
//! server on a retryable failure | respond | redirect | aggregate), response
//! transforms, then the access log and metrics.

use crate::body::{boxed, empty, full, Body};
use crate::error::{error_response, status_response, ErrorKind};
use crate::metrics::Rejection;
use crate::policy;
use crate::request::{add_forwarded, is_upgrade, strip_hop_by_hop, RequestCtx};
use crate::state::{Runtime, Shared};
use crate::upstream::UpstreamRt;
use bytes::Bytes;
use gw_compiler::ast::Method;
use gw_compiler::plan::router::{lookup, Lookup};
use gw_compiler::plan::{self, HeaderOp, RetryOn, Route, Target};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Bodies up to this size are buffered so that a retry can replay them.
const REPLAY_LIMIT: u64 = 64 * 1024;

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

/// The request's host: the URI authority (HTTP/2, absolute form) or `Host`.
fn host_of<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// Serves one request. Never fails: every error becomes a response.
pub async fn handle(shared: Arc<Shared>, conn: Conn, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let rt = shared.current.load_full();
    let method = req.method().clone();
    let path_for_log = req.uri().path().to_string();
    let (resp, route, upstream_server) = route_request(&shared, &rt, conn, req).await;
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
    tracing::info!(
        target: "gw::access",
        client = %conn.client.ip(),
        method = %method,
        path = %path_for_log,
        route = route.and_then(|i| rt.route_labels.get(i)).map_or("-", String::as_str),
        upstream = upstream_server.as_deref().unwrap_or("-"),
        status,
        micros,
    );
    resp
}

type Outcome = (Response<Body>, Option<usize>, Option<String>);

async fn route_request(shared: &Shared, rt: &Arc<Runtime>, conn: Conn, mut req: Request<Incoming>) -> Outcome {
    let plan = &rt.plan;
    let host = host_of(&req).unwrap_or("").to_string();
    let method = method_of(req.method());
    let path = req.uri().path().to_string();
    let found = lookup(plan, method, &host, &path);
    let (route_index, params) = match found {
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
    let limits = &plan.limits;
    // Refuse a body over max_body_size as early as its length is known.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_size) {
        shared.metrics.reject(Rejection::BodyTooLarge);
        return (error_response(ErrorKind::BodyTooLarge), Some(route_index), None);
    }

    // The pipeline: auth → require → limit (their places; see policy.rs).
    let identity = match policy::check(rt, route, &req, conn) {
        Ok(identity) => identity,
        Err(rejection) => {
            shared.metrics.reject(rejection.reason);
            return (rejection.response(), Some(route_index), None);
        }
    };

    req.extensions_mut().insert(conn);
    req.extensions_mut().insert(identity.clone());
    let query = req.uri().query().map(str::to_string);
    // Everything that reads the request through references is rendered here,
    // before the request is taken apart for forwarding.
    let (early, resp_ops, prepared) = {
        let ctx = RequestCtx {
            client_ip: conn.client.ip(),
            headers: req.headers(),
            query: query.as_deref(),
            params: Some(&params),
            claims: identity.claims.as_ref(),
            api_key: identity.api_key.as_deref(),
        };
        let resp_ops = render_ops(&route.response_headers, &ctx);
        let mut prepared = None;
        let early = match &route.target {
            Target::Respond { status, body } => {
                let mut r = match body {
                    Some(b) => Response::new(full(b.clone())),
                    None => Response::new(empty()),
                };
                *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                Some(r)
            }
            Target::Redirect { status, location } => {
                let loc = ctx.render(location);
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::FOUND);
                if let Ok(v) = HeaderValue::from_str(&loc) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                Some(r)
            }
            Target::Aggregate(agg) => Some(crate::aggregate::run(rt, agg, &ctx, conn).await),
            Target::Upstream { upstream } => {
                prepared = Some((
                    *upstream,
                    render_ops(&route.request_headers, &ctx),
                    upstream_path(route, &ctx, req.uri()),
                ));
                None
            }
        };
        (early, resp_ops, prepared)
    };
    if let Some(mut resp) = early {
        apply_ops(resp.headers_mut(), resp_ops);
        return (resp, Some(route_index), None);
    }
    let Some((upstream, req_ops, upstream_path)) = prepared else {
        return (status_response(StatusCode::BAD_GATEWAY), Some(route_index), None);
    };
    let Some(up) = rt.upstreams.get(upstream).cloned() else {
        return (status_response(StatusCode::BAD_GATEWAY), Some(route_index), None);
    };
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    {
        let headers = req.headers_mut();
        if !headers.contains_key(header::HOST) && !host.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&host) {
                headers.insert(header::HOST, v);
            }
        }
        strip_hop_by_hop(headers, upgrade);
        add_forwarded(
            headers,
            conn.client.ip(),
            conn.tls,
            (!host.is_empty()).then_some(host.as_str()),
        );
        apply_ops(headers, req_ops);
    }
    match forward(shared, rt, route, &up, req, upstream_path, declared).await {
        Ok((mut resp, server)) => {
            let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
            if let (Some(on_client), true) = (client_upgrade, switching) {
                let on_upstream = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel(on_client, on_upstream));
            }
            strip_hop_by_hop(resp.headers_mut(), switching);
            apply_ops(resp.headers_mut(), resp_ops);
            (resp, Some(route_index), Some(server))
        }
        Err((kind, server)) => {
            shared.metrics.reject(match kind {
                ErrorKind::NoServer => Rejection::NoServer,
                ErrorKind::Connect => Rejection::ConnectError,
                ErrorKind::ConnectTimeout | ErrorKind::Timeout => Rejection::Timeout,
                ErrorKind::BodyTooLarge => Rejection::BodyTooLarge,
                ErrorKind::ClientBody => Rejection::BadRequest,
                ErrorKind::Upstream => Rejection::UpstreamError,
            });
            (error_response(kind), Some(route_index), server)
        }
    }
}

/// A header operation with its value rendered: `None` removes.
type RenderedOp = (header::HeaderName, Option<HeaderValue>);

fn render_ops(ops: &[HeaderOp], ctx: &RequestCtx<'_>) -> Vec<RenderedOp> {
    ops.iter()
        .filter_map(|op| match op {
            HeaderOp::Remove { name } => header::HeaderName::from_bytes(name.as_bytes()).ok().map(|n| (n, None)),
            HeaderOp::Set { name, value } => {
                let n = header::HeaderName::from_bytes(name.as_bytes()).ok()?;
                let v = HeaderValue::from_str(&ctx.render(value)).ok()?;
                Some((n, Some(v)))
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
/// path with `strip_prefix` removed; the query string is kept.
fn upstream_path(route: &Route, ctx: &RequestCtx<'_>, uri: &Uri) -> String {
    let path = uri.path();
    let mut out = match (&route.rewrite, &route.strip_prefix) {
        (Some(t), _) => ctx.render(t),
        (None, Some(prefix)) => {
            let rest = path.strip_prefix(prefix.as_str()).unwrap_or(path);
            if rest.is_empty() {
                "/".to_string()
            } else if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            }
        }
        (None, None) => path.to_string(),
    };
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let Some(q) = uri.query() {
        if !out.contains('?') {
            out.push('?');
            out.push_str(q);
        }
    }
    out
}

/// The request body, either buffered (replayable for retries) or streamed once.
enum ReqBody {
    Replayable(Bytes),
    Stream(Option<Body>),
}

async fn forward(
    shared: &Shared,
    _rt: &Runtime,
    route: &Route,
    up: &Arc<UpstreamRt>,
    req: Request<Incoming>,
    path: String,
    declared: Option<u64>,
) -> Result<(Response<Body>, String), (ErrorKind, Option<String>)> {
    let max_body = _rt.plan.limits.max_body_size;
    let (parts, incoming) = req.into_parts();
    let method = method_of(&parts.method);
    // Which retries this request may make.
    let retry = route.retry.as_ref().or(up.config.retry.as_ref());
    let may_retry = match (retry, method) {
        (Some(_), _) if route.retry.is_some() => true,
        (Some(_), Some(m)) => m.is_idempotent(),
        _ => false,
    };
    let attempts = if may_retry {
        1 + retry.map_or(0, |r| r.attempts)
    } else {
        1
    };
    let no_body = declared == Some(0) || (declared.is_none() && !parts.headers.contains_key(header::TRANSFER_ENCODING));
    let mut body = if no_body {
        ReqBody::Replayable(Bytes::new())
    } else if attempts > 1 && declared.is_some_and(|n| n <= REPLAY_LIMIT) {
        match Limited::new(incoming, REPLAY_LIMIT as usize).collect().await {
            Ok(c) => ReqBody::Replayable(c.to_bytes()),
            Err(_) => return Err((ErrorKind::ClientBody, None)),
        }
    } else {
        ReqBody::Stream(Some(boxed(Limited::new(incoming, max_body as usize))))
    };
    let timeout = route.timeout.unwrap_or(up.config.timeout).as_duration();
    let set = up.set.load_full();
    let key = hash_key(up, &parts);
    // The last attempt takes the request head itself; earlier ones a copy.
    let mut head_slot = Some(parts);
    let mut tried: Vec<usize> = Vec::new();
    let mut last: Option<(ErrorKind, Option<String>)> = None;
    up.active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(up.clone());
    for attempt in 0..attempts {
        if attempt > 0 {
            let budget = retry.map_or(plan::defaults::RETRY_BUDGET_PERCENT, |r| r.budget_percent);
            if !up.retry_allowed(budget) {
                break;
            }
        }
        let Some(i) = set.balancer.pick(&set.states, key.as_deref(), &tried) else {
            if last.is_none() {
                last = Some((ErrorKind::NoServer, None));
            }
            break;
        };
        tried.push(i);
        let backend = &set.backends[i];
        let server = backend.addr.to_string();
        let this_body = match &mut body {
            ReqBody::Replayable(b) => full(b.clone()),
            ReqBody::Stream(s) => match s.take() {
                Some(b) => b,
                None => break,
            },
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(backend.authority.clone())
            .path_and_query(path.as_str())
            .build();
        let Ok(uri) = uri else {
            return Err((ErrorKind::Upstream, Some(server)));
        };
        let head = if attempt + 1 == attempts {
            head_slot.take()
        } else {
            head_slot.clone()
        };
        let Some(head) = head else { break };
        let mut out = Request::from_parts(head, this_body);
        *out.uri_mut() = uri;
        if up.config.http2 {
            *out.version_mut() = hyper::Version::HTTP_2;
            out.headers_mut().remove(header::HOST);
        } else {
            *out.version_mut() = hyper::Version::HTTP_11;
        }
        let _in_flight = backend.state.start();
        let retry_guard = (attempt > 0).then(|| {
            shared.metrics.retries.fetch_add(1, Ordering::Relaxed);
            up.retries_active.fetch_add(1, Ordering::Relaxed);
            RetryGuard(up.clone())
        });
        let result = tokio::time::timeout(timeout, up.client.request(out)).await;
        drop(retry_guard);
        let kind = match result {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let failed = status >= 500;
                backend.state.record_result(!(failed && status != 501), up.eject);
                let retry_status = retry.is_some_and(|r| r.on.contains(&RetryOn::Status(status)));
                let replayable = matches!(body, ReqBody::Replayable(_));
                if retry_status && replayable && attempt + 1 < attempts {
                    last = Some((ErrorKind::Upstream, Some(server)));
                    continue;
                }
                return Ok((resp.map(boxed), server));
            }
            Ok(Err(e)) => classify(&e),
            Err(_) => ErrorKind::Timeout,
        };
        if kind == ErrorKind::BodyTooLarge || kind == ErrorKind::ClientBody {
            return Err((kind, Some(server)));
        }
        backend.state.record_result(false, up.eject);
        tracing::debug!(upstream = %up.name, server = %server, error = kind.as_str(), "upstream attempt failed");
        last = Some((kind, Some(server)));
        let retryable = retry.is_some_and(|r| match kind {
            ErrorKind::Connect | ErrorKind::ConnectTimeout => r.on.contains(&RetryOn::ConnectError),
            ErrorKind::Timeout => r.on.contains(&RetryOn::Timeout),
            _ => false,
        });
        if !retryable || !matches!(body, ReqBody::Replayable(_)) {
            break;
        }
    }
    Err(last.unwrap_or((ErrorKind::NoServer, None)))
}

struct ActiveGuard(Arc<UpstreamRt>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

struct RetryGuard(Arc<UpstreamRt>);
impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.retries_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The consistent-hash key of a request, if the upstream hashes.
fn hash_key(up: &UpstreamRt, parts: &hyper::http::request::Parts) -> Option<Vec<u8>> {
    if up.ip_hash {
        return parts
            .extensions
            .get::<Conn>()
            .map(|c| c.client.ip().to_string().into_bytes());
    }
    let key = up.key.as_ref()?;
    let client = parts.extensions.get::<Conn>().map(|c| c.client.ip())?;
    let claims = parts
        .extensions
        .get::<policy::Identity>()
        .and_then(|i| i.claims.as_ref());
    let ctx = RequestCtx {
        client_ip: client,
        headers: &parts.headers,
        query: parts.uri.query(),
        params: None,
        claims,
        api_key: None,
    };
    ctx.value(key).map(|v| v.into_owned().into_bytes())
}

/// Maps a client error to its kind: connect failures (timeout or refusal),
/// the client's own body (too large), or anything else from the upstream.
fn classify(e: &hyper_util::client::legacy::Error) -> ErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut timed_out = false;
    let mut too_large = false;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        too_large |= s.downcast_ref::<http_body_util::LengthLimitError>().is_some();
        source = s.source();
    }
    if too_large {
        ErrorKind::BodyTooLarge
    } else if e.is_connect() {
        if timed_out {
            ErrorKind::ConnectTimeout
        } else {
            ErrorKind::Connect
        }
    } else {
        ErrorKind::Upstream
    }
}

/// Copies bytes both ways between an upgraded client and upstream.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
        return;
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut u = hyper_util::rt::TokioIo::new(u);
    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
}
