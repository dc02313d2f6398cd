//! What the gateway policies cost: requests per second through a route with
//! `auth` (JWT, RS256) + `require` + `limit`, against the same route without
//! policies, in the same run and process (an in-process upstream, the
//! gateway, and keep-alive clients on 127.0.0.1). The two workloads are
//! interleaved in rounds so that drift hits both alike; the ratio is
//! printed. Also printed: one RS256 verification (what a token costs when
//! it is not in the verified-token cache).
//!
//! Run: `cargo bench -p gw-bench --bench policy` (optionally
//! `-- --seconds 3 --clients 32`).

use bytes::Bytes;
use gw_compiler::host::MemoryHost;
use gw_runtime::{Gateway, Options};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PUBLIC: &str = include_str!("../../tests/fixtures/policy/rsa-public.pem");
const PRIVATE: &str = include_str!("../../tests/fixtures/policy/rsa-private.pem");

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn token() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let claims = serde_json::json!({
        "iss": "https://issuer.bench", "aud": "bench", "sub": "user-1",
        "scope": "orders:read orders:write", "exp": now + 3600,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).expect("key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .expect("sign")
}

/// Sends requests from `clients` keep-alive clients for `secs`; requests/s.
async fn load(url: &str, auth: Option<&str>, clients: u64, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, auth, done, failed) = (url.to_string(), auth.map(str::to_string), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            while Instant::now() < deadline {
                let mut req = hyper::Request::get(url.as_str());
                if let Some(a) = &auth {
                    req = req.header("authorization", a.as_str());
                }
                let Ok(req) = req.body(Full::new(Bytes::new())) else {
                    return;
                };
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        let _ = resp.into_body().collect().await;
                        if ok {
                            done.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "every request must succeed (no 401/403/429)"
    );
    done.load(Ordering::Relaxed) as f64 / elapsed
}

fn main() {
    let secs = arg("--seconds", 3);
    let clients = arg("--clients", 32);
    let rounds = arg("--rounds", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let up = upstream().await;
        let text = format!(
            "listen 127.0.0.1:0
             upstream app {{ server {up} }}
             auth users jwt {{ issuer \"https://issuer.bench\" audience \"bench\" algorithms RS256 public_key file(\"rsa.pem\") }}
             limit per_user {{ rate 100000000/s burst 1000000 key claim.sub }}
             route GET /plain -> app
             route GET /guarded -> app {{ auth users require claim.scope has \"orders:read\" limit per_user }}"
        );
        // The runtime reads the key from disk: write it where the plan points.
        let dir = std::env::temp_dir().join(format!("gw-bench-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key_path = dir.join("rsa.pem");
        std::fs::write(&key_path, PUBLIC).expect("key file");
        let text = text.replace("file(\"rsa.pem\")", &format!("file({:?})", key_path.to_string_lossy()));
        let host = MemoryHost::new().file(&key_path.to_string_lossy(), PUBLIC.as_bytes().to_vec());
        let mut c = gw_compiler::compile_text(&host, "bench.gw", &text);
        let plan = c.plan.take().expect("the bench configuration compiles");
        let gw = Gateway::start(plan, Options::default()).await.expect("gateway");
        let addr = gw.local_addrs().await[0];
        let bearer = format!("Bearer {}", token());
        let plain = format!("http://{addr}/plain");
        let guarded = format!("http://{addr}/guarded");
        // Warm up both paths (pools, caches).
        load(&plain, None, clients, 1).await;
        load(&guarded, Some(&bearer), clients, 1).await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let x = load(&plain, None, clients, secs).await;
            let y = load(&guarded, Some(&bearer), clients, secs).await;
            println!("round {round}: no policies {x:>9.0} req/s   jwt+require+limit {y:>9.0} req/s   ratio {:.3}", y / x);
            a.push(x);
            b.push(y);
        }
        let (x, y) = (median(&mut a), median(&mut b));
        println!("median: no policies {x:.0} req/s, jwt (RS256) + require + limit {y:.0} req/s");
        println!("policy route / plain route = {:.3} ({:.1}% slower)", y / x, (1.0 - y / x) * 100.0);
        let _ = std::fs::remove_dir_all(&dir);
    });

    // One RS256 verification, as paid by a token not in the cache.
    let t = token();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).expect("key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&["https://issuer.bench"]);
    v.set_audience(&["bench"]);
    let n = 2000;
    let started = Instant::now();
    for _ in 0..n {
        let _ = std::hint::black_box(jsonwebtoken::decode::<serde_json::Value>(&t, &key, &v).expect("valid"));
    }
    println!(
        "one RS256 verification (uncached token): {:.1} µs",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
