//! A harness for tests of a live gateway (after linkerd2-proxy's): upstream
//! servers in the test process on `127.0.0.1:0` with scripted behaviour, the
//! gateway started in-process from `.gw` text (listening on port 0), and a
//! small HTTP client. Every wait is bounded.

#![allow(dead_code)]

use bytes::Bytes;
use gw_compiler::host::MemoryHost;
use gw_runtime::body::{full, Body};
use gw_runtime::{Gateway, Options};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// An upstream server in the test process.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Requests answered.
    pub requests: Arc<AtomicUsize>,
    /// Requests that arrived (counted before the handler runs).
    pub arrived: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// TCP connections that ended (closed by either side).
    pub closed: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Upstream {
    /// Starts a server whose answers `handler` makes.
    pub async fn start<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        Upstream::start_at(listen, handler).await.expect("bind 127.0.0.1:0")
    }

    /// Starts a server on `listen` (an error when it cannot be bound).
    pub async fn start_at<F, Fut>(listen: SocketAddr, handler: F) -> std::io::Result<Upstream>
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let (r, a, c, ended) = (requests.clone(), arrived.clone(), connections.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = stop_rx.changed() => return,
                };
                c.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let (r, a) = (r.clone(), a.clone());
                let ended = ended.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        let r = r.clone();
                        a.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let resp = handler(req).await;
                            r.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Upstream {
            addr,
            requests,
            arrived,
            connections,
            closed,
            stop,
        })
    }

    /// Answers `{"upstream": NAME, "path": ..., "method": ...}` plus the
    /// request headers under `headers`.
    pub async fn named(name: &'static str) -> Upstream {
        Upstream::start(move |req| async move { json_echo(name, &req) }).await
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The JSON answer of [`Upstream::named`].
pub fn json_echo(name: &str, req: &Request<Incoming>) -> Response<Body> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let body = serde_json::json!({
        "upstream": name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
    });
    Response::new(full(body.to_string()))
}

/// A gateway started in-process from `.gw` text.
pub struct Live {
    pub gateway: Arc<Gateway>,
    /// The bound address of each listener, in plan order.
    pub addrs: Vec<SocketAddr>,
}

/// Compiles `text` (with `files` readable beside it) into a plan; panics
/// with the diagnostics if it has errors.
pub fn plan_of(text: &str, files: &[(&str, &[u8])]) -> gw_compiler::plan::Plan {
    let mut host = MemoryHost::new();
    for (name, bytes) in files {
        host = host.file(name, bytes.to_vec());
    }
    let mut c = gw_compiler::compile_text(&host, "test.gw", text);
    let errors: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect();
    assert!(
        errors.is_empty(),
        "the test configuration has errors: {errors:#?}\n{text}"
    );
    c.plan.take().expect("a plan")
}

impl Live {
    pub async fn start(text: &str) -> Live {
        Live::start_with(text, &[]).await
    }

    pub async fn start_with(text: &str, files: &[(&str, &[u8])]) -> Live {
        let plan = plan_of(text, files);
        let gateway = Gateway::start(plan, Options::default()).await.expect("gateway starts");
        let addrs = gateway.local_addrs().await;
        Live { gateway, addrs }
    }

    /// `http://ADDR` of the first listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs[0])
    }
}

/// A plain HTTP/1.1 client.
pub fn client() -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// A response with its body read.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request (within 10 s) and reads the whole answer.
pub async fn send(req: Request<Full<Bytes>>) -> Got {
    let fut = async {
        let resp = client().request(req).await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Got {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("answer within 10 s")
}

pub async fn get(url: &str) -> Got {
    send(Request::get(url).body(Full::new(Bytes::new())).expect("request")).await
}

/// Waits (at most `limit`) until `cond` holds.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
