//! The admin listener: `/healthz` (the process answers), `/ready` (`503`
//! while starting or draining), `/metrics` (Prometheus text or OpenMetrics,
//! see [`crate::metrics`]), `/upstreams` (each server's health, ejection and
//! load, as JSON) and `/plan` (the running plan as JSON, secrets redacted),
//! for `GET` and `HEAD`, on hyper's HTTP/1.1 server. It is bound where the
//! plan says; an address reachable from other machines is logged as a
//! warning at start.

use crate::body::{full, Body};
use crate::clock::now_millis;
use crate::error::status_response;
use crate::loaded::{LoadedPlan, Phase, Shared};
use crate::metrics::{self, Format, LimitSample, RouteSample, Scrape, ServerSample};
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

/// The admin endpoints (see the module's header).
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
        "/ready" => match shared.phase() {
            Phase::Serving => text(StatusCode::OK, "text/plain; charset=utf-8", "ready\n".into()),
            Phase::Starting => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "starting\n".into(),
            ),
            Phase::Draining => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "draining\n".into(),
            ),
        },
        "/metrics" => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let mut r = text(
                StatusCode::OK,
                format.content_type(),
                metrics::render(scrape(shared, &loaded), format),
            );
            r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
            r
        }
        "/upstreams" => text(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&upstreams(&loaded)).unwrap_or_default() + "\n",
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

/// `/upstreams`: every upstream of the running plan with its servers, each
/// with its health (active checks), ejection (passive) and requests in
/// flight.
fn upstreams(loaded: &LoadedPlan) -> serde_json::Value {
    let now = now_millis();
    let list: Vec<serde_json::Value> = loaded
        .upstreams
        .iter()
        .map(|up| {
            let servers: Vec<serde_json::Value> = up
                .set
                .load()
                .servers
                .iter()
                .map(|s| {
                    let st = &s.state;
                    let ejected_for = st
                        .ejected_until()
                        .map(|until| until.saturating_sub(now) as f64 / 1000.0);
                    serde_json::json!({
                        "server": st.label(),
                        "address": s.addr.to_string(),
                        "weight": st.weight,
                        "backup": st.backup,
                        "healthy": st.is_healthy(),
                        "ejected": ejected_for.is_some(),
                        "ejected_for_seconds": ejected_for,
                        "usable": st.is_healthy() && ejected_for.is_none(),
                        "in_flight": st.in_flight(),
                    })
                })
                .collect();
            serde_json::json!({
                "name": up.name,
                "balance": up.config.balance.to_string(),
                "in_flight": up.set.load().servers.iter().map(|s| u64::from(s.state.in_flight())).sum::<u64>(),
                "servers": servers,
            })
        })
        .collect();
    serde_json::json!({ "upstreams": list })
}

/// What `/metrics` shows now.
fn scrape(shared: &Shared, loaded: &LoadedPlan) -> Scrape {
    let routes = loaded
        .route_labels
        .iter()
        .zip(&loaded.route_metrics)
        .map(|(l, m)| RouteSample {
            route: l.clone(),
            metrics: m.clone(),
        })
        .collect();
    let mut servers = Vec::new();
    for up in &loaded.upstreams {
        for b in &up.set.load().servers {
            servers.push(ServerSample {
                upstream: up.name.clone(),
                server: b.state.label(),
                healthy: b.state.is_healthy(),
                ejected: b.state.is_ejected(),
                in_flight: b.state.in_flight(),
                counts: b.state.metrics.clone(),
            });
        }
    }
    let upstreams = loaded
        .upstreams
        .iter()
        .map(|u| (u.name.clone(), u.metrics.clone()))
        .collect();
    let limits = loaded
        .policies
        .limits
        .iter()
        .filter(|l| l.shared.is_none())
        .map(|l| LimitSample {
            limit: l.name.clone(),
            keys: l.limiter.len(),
            overflowed: l.limiter.overflowed(),
        })
        .collect();
    Scrape {
        metrics: shared.metrics.clone(),
        routes,
        servers,
        upstreams,
        limits,
        config: loaded.config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_is_503_while_starting_and_draining_and_200_while_serving() {
        let plan = crate::testdata::plan(crate::testdata::POLICIES);
        let shared = Shared::new(LoadedPlan::load(Arc::new(plan), None).await);
        let ready = |shared: &Shared| {
            let req = Request::get("/ready").body(()).expect("a request");
            admin(shared, &req).status()
        };
        assert_eq!(ready(&shared), StatusCode::SERVICE_UNAVAILABLE, "starting");
        shared.set_phase(Phase::Serving);
        assert_eq!(ready(&shared), StatusCode::OK);
        shared.set_phase(Phase::Draining);
        assert_eq!(ready(&shared), StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
}
