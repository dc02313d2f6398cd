//! Demo backends for `gwc serve --demo`: small HTTP services that answer
//! JSON naming their service and instance, with a `/healthz` endpoint, on
//! every loopback server address of the plan where nothing listens yet.

use crate::body::{full, Body};
use crate::upstream::split_host_port;
use gw_compiler::plan::Plan;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// One started demo backend.
#[derive(Clone, Debug)]
pub struct DemoBackend {
    pub service: String,
    pub addr: SocketAddr,
}

/// Starts a demo backend on each loopback server address of `plan` that is
/// free. Addresses already in use (a real service is there) are skipped.
pub async fn start(plan: &Plan) -> Vec<DemoBackend> {
    let mut started = Vec::new();
    for up in &plan.upstreams {
        for s in &up.servers {
            let Some((host, port)) = split_host_port(&s.address) else {
                continue;
            };
            let Ok(ip) = host.parse::<std::net::IpAddr>() else {
                continue;
            };
            if !ip.is_loopback() || port == 0 {
                continue;
            }
            let addr = SocketAddr::new(ip, port);
            if started.iter().any(|b: &DemoBackend| b.addr == addr) {
                continue;
            }
            let Ok(listener) = TcpListener::bind(addr).await else {
                continue;
            };
            tokio::spawn(serve(listener, up.name.clone(), addr));
            started.push(DemoBackend {
                service: up.name.clone(),
                addr,
            });
        }
    }
    started
}

async fn serve(listener: TcpListener, service: String, addr: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(answer(&service, addr, &req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer<B>(service: &str, addr: SocketAddr, req: &Request<B>) -> Response<Body> {
    let body = if req.uri().path() == "/healthz" {
        serde_json::json!({ "status": "ok", "service": service, "instance": addr.to_string() })
    } else {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        serde_json::json!({
            "service": service,
            "instance": addr.to_string(),
            "method": req.method().as_str(),
            "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
            "user": header("x-user-id"),
            "forwarded_for": header("x-forwarded-for"),
        })
    };
    let mut resp = Response::new(full(format!("{body}\n")));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
