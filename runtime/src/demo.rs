//! Demo backends for `gwc serve --demo`: small HTTP services that answer
//! JSON naming their service and instance, with a `/healthz` endpoint, one
//! on every loopback server address of the plan.
//!
//! Where the address is free, the backend listens there. Where something
//! already listens: if it answers `GET /healthz` with 2xx it is taken for the
//! real service and left alone; otherwise (another program holds the port)
//! the demo backend listens on a free port of the same address instead, and
//! [`Demo::apply`] points the plan's server there, on every reload too.

use crate::body::{full, Body};
use crate::upstream::split_host_port;
use gw_plan::Plan;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One started demo backend.
#[derive(Clone, Debug)]
pub struct DemoBackend {
    pub service: String,
    /// The server address as the plan writes it.
    pub address: String,
    /// Where the backend listens (differs from `address` when that was taken).
    pub addr: SocketAddr,
}

/// The demo backends of a gateway, kept across reloads.
#[derive(Debug, Default)]
pub struct Demo {
    pub backends: Vec<DemoBackend>,
    /// Server addresses (as written) whose backend listens elsewhere.
    moved: HashMap<String, SocketAddr>,
    /// Server addresses already handled (started, moved, or left to a real service).
    seen: HashSet<String>,
}

impl Demo {
    pub fn new() -> Demo {
        Demo::default()
    }

    /// Starts a demo backend for each loopback server address of `plan` not
    /// handled yet; returns the ones started now.
    pub async fn start(&mut self, plan: &Plan) -> Vec<DemoBackend> {
        let mut started = Vec::new();
        for up in &plan.upstreams {
            for s in &up.servers {
                if !self.seen.insert(s.address.clone()) {
                    continue;
                }
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
                let listener = match TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(_) if answers_health(addr).await => {
                        tracing::info!(service = %up.name, address = %s.address, "a service already answers here; the demo uses it");
                        continue;
                    }
                    Err(_) => match TcpListener::bind(SocketAddr::new(ip, 0)).await {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::warn!(service = %up.name, address = %s.address, error = %e, "no demo backend");
                            continue;
                        }
                    },
                };
                let Ok(bound) = listener.local_addr() else {
                    continue;
                };
                if bound != addr {
                    tracing::warn!(
                        service = %up.name,
                        address = %s.address,
                        bound = %bound,
                        "address taken by another program; the demo backend listens on a free port instead"
                    );
                    self.moved.insert(s.address.clone(), bound);
                }
                let info = Arc::new((up.name.clone(), s.address.clone()));
                tokio::spawn(serve(listener, info));
                let b = DemoBackend {
                    service: up.name.clone(),
                    address: s.address.clone(),
                    addr: bound,
                };
                self.backends.push(b.clone());
                started.push(b);
            }
        }
        started
    }

    /// Points the servers of `plan` whose demo backend had to move there.
    pub fn apply(&self, plan: &mut Plan) {
        for up in &mut plan.upstreams {
            for s in &mut up.servers {
                if let Some(addr) = self.moved.get(&s.address) {
                    s.address = addr.to_string();
                }
            }
        }
    }
}

/// Does something at `addr` answer `GET /healthz` with 2xx within 300 ms?
async fn answers_health(addr: SocketAddr) -> bool {
    let probe = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && head[9] == b'2')
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(300), probe).await,
        Ok(Some(true))
    )
}

async fn serve(listener: TcpListener, info: Arc<(String, String)>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let info = info.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let info = info.clone();
                async move { Ok::<_, Infallible>(answer(&info.0, &info.1, &req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer<B>(service: &str, instance: &str, req: &Request<B>) -> Response<Body> {
    let body = if req.uri().path() == "/healthz" {
        serde_json::json!({ "status": "ok", "service": service, "instance": instance })
    } else {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        serde_json::json!({
            "service": service,
            "instance": instance,
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
