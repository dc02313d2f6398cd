//! The admin listener: `/healthz`, `/metrics` (Prometheus text: requests
//! per route, rejections, servers' health and load, limits' keys) and
//! `/plan` (the running plan as JSON, secrets redacted), for `GET` and
//! `HEAD`, on hyper's HTTP/1.1 server. It is bound where the plan says; an
//! address reachable from other machines is logged as a warning at start.

use crate::body::{full, Body};
use crate::error::status_response;
use crate::loaded::{LoadedPlan, Shared};
use crate::metrics::{self, LimitSample, RouteSample, ServerSample};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) async fn admin_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(admin(&shared, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `/healthz`, `/metrics` (Prometheus text), `/plan` (JSON, secrets redacted).
fn admin<B>(shared: &Shared, req: &Request<B>) -> Response<Body> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let loaded = shared.current.load_full();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(shared, &loaded),
        ),
        "/plan" => {
            let value = loaded.plan.redacted_json();
            text(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
            )
        }
        _ => status_response(StatusCode::NOT_FOUND),
    }
}

fn render_metrics(shared: &Shared, loaded: &LoadedPlan) -> String {
    let routes: Vec<_> = loaded
        .route_labels
        .iter()
        .zip(&loaded.route_metrics)
        .map(|(l, m)| RouteSample { route: l, metrics: m })
        .collect();
    let mut servers = Vec::new();
    for up in &loaded.upstreams {
        for b in &up.set.load().servers {
            servers.push((
                up.name.as_str(),
                b.state.label(),
                b.state.is_healthy(),
                b.state.is_ejected(),
                b.state.in_flight(),
                b.state.tls_errors(),
            ));
        }
    }
    let samples: Vec<_> = servers
        .iter()
        .map(
            |(upstream, server, healthy, ejected, in_flight, tls_errors)| ServerSample {
                upstream,
                server,
                healthy: *healthy,
                ejected: *ejected,
                in_flight: *in_flight,
                tls_errors: *tls_errors,
            },
        )
        .collect();
    let limits: Vec<_> = loaded
        .policies
        .limits
        .iter()
        .filter(|l| l.shared.is_none())
        .map(|l| LimitSample {
            limit: &l.name,
            keys: l.limiter.len(),
            overflowed: l.limiter.overflowed(),
        })
        .collect();
    metrics::render(&shared.metrics, &routes, &samples, &limits)
}
