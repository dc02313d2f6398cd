//! `aggregate`: fan a request out to several upstreams concurrently (each
//! through its upstream's normal balancing — the same hash key as a proxied
//! request — health and per-server connection pool) and merge their JSON
//! bodies into one object keyed by part name. An `optional` part that fails
//! becomes `null`; a required part's failure makes the whole answer a 502
//! whose body names no internals, and the parts still running are
//! cancelled. Each part is bounded by the aggregate's `timeout` (else its
//! upstream's), so a slow optional part cannot hold the response past it.

use crate::body::{empty, full, Body};
use crate::error::status_response;
use crate::request::RequestCtx;
use crate::upstream::health::Outcome;
use crate::upstream::Upstream;
use gw_plan as plan;
use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A part's JSON body may be at most this large.
const PART_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Aborts the part's task when the answer no longer needs it.
struct Part(JoinHandle<Option<serde_json::Value>>);

impl Drop for Part {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Answers `agg` for the request of `ctx` from `upstreams` (the plan's, by
/// index).
pub async fn run(upstreams: &[Arc<Upstream>], agg: &plan::Aggregate, ctx: &RequestCtx<'_>) -> Response<Body> {
    let mut tasks = Vec::with_capacity(agg.parts.len());
    let client = ctx.client_ip.to_string();
    for part in &agg.parts {
        let Some(up) = upstreams.get(part.upstream).cloned() else {
            return status_response(StatusCode::BAD_GATEWAY);
        };
        // Values are percent-encoded: a claim cannot add query parameters.
        let path = ctx.render_path(&part.path);
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let hash = up.hash_of(ctx);
        let timeout = agg.timeout.unwrap_or(up.config.timeout).as_duration();
        let method = hyper::Method::from_bytes(part.method.as_str().as_bytes()).unwrap_or(hyper::Method::GET);
        let client = client.clone();
        tasks.push(Part(tokio::spawn(async move {
            fetch(up, method, path, hash, timeout, client).await
        })));
    }
    let mut merged = serde_json::Map::new();
    for (part, mut task) in agg.parts.iter().zip(tasks) {
        let value = (&mut task.0).await.ok().flatten();
        match value {
            Some(v) => {
                merged.insert(part.name.clone(), v);
            }
            None if part.optional => {
                merged.insert(part.name.clone(), serde_json::Value::Null);
            }
            None => {
                tracing::debug!(part = %part.name, "required aggregate part failed");
                return status_response(StatusCode::BAD_GATEWAY);
            }
        }
    }
    let body = serde_json::Value::Object(merged).to_string();
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// One part: a 2xx JSON answer within `timeout`, or `None`.
async fn fetch(
    up: Arc<Upstream>,
    method: hyper::Method,
    path: String,
    hash: Option<u64>,
    timeout: Duration,
    client: String,
) -> Option<serde_json::Value> {
    let set = up.set.load_full();
    let i = set.balancer.pick_hashed(&set.states, hash, &[])?;
    let server = set.servers.get(i)?;
    let uri = Uri::builder()
        .scheme("http")
        .authority(server.authority.clone())
        .path_and_query(path)
        .build()
        .ok()?;
    let mut req = Request::builder().method(method).uri(uri).body(empty()).ok()?;
    if up.config.http2 {
        *req.version_mut() = hyper::Version::HTTP_2;
    }
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&client) {
        req.headers_mut().insert("x-forwarded-for", v);
    }
    let _in_flight = server.state.start();
    let work = async {
        let resp = match server.client.request(req).await {
            Ok(resp) => resp,
            Err(e) => {
                let outcome = if e.is_connect() {
                    Outcome::Unreachable
                } else {
                    Outcome::Failed
                };
                set.record(i, outcome, &up);
                return None;
            }
        };
        let ok = resp.status().is_success();
        let status = resp.status().as_u16();
        let outcome = if status < 500 || status == 501 {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        set.record(i, outcome, &up);
        let bytes = Limited::new(resp.into_body(), PART_BODY_LIMIT)
            .collect()
            .await
            .ok()?
            .to_bytes();
        if !ok {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(v) => v,
        Err(_) => {
            set.record(i, Outcome::Failed, &up);
            None
        }
    }
}
