//! `mirror UPSTREAM PERCENT` through a live gateway: the share of copies,
//! the copy as forwarded (method, path, headers, body), a dead or silent
//! mirror that changes nothing for the client, the bound on copies in
//! flight, bodies over the copy bound, and requests refused by the route's
//! policies never copied.

use crate::live::{get, send, Live, Upstream};
use crate::proxy_support::{body_or_empty, dead_port, within};
use bytes::Bytes;
use gw_runtime::body::full;
use http_body_util::Full;
use hyper::{Request, Response};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waits (at most 10 s) until `n()` reaches `want`; returns the last value.
async fn reaches(want: u64, n: impl Fn() -> u64) -> u64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && n() < want {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n()
}

/// A mirror upstream that records `METHOD PATH BODY x-forwarded-for` of
/// each copy.
async fn recording() -> (Upstream, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let up = Upstream::start(move |req| {
        let log = log.clone();
        async move {
            let line = format!(
                "{} {} {}",
                req.method(),
                req.uri(),
                req.headers()
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
            );
            let body = body_or_empty(req).await;
            log.lock()
                .expect("log")
                .push(format!("{line} {}", String::from_utf8_lossy(&body)));
            Response::new(full("shadow"))
        }
    })
    .await;
    (up, seen)
}

#[tokio::test]
async fn a_share_of_requests_is_copied_as_forwarded() {
    let app = Upstream::named("app").await;
    let (shadow, seen) = recording().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         upstream shadow {{ server {} }}
         route /search -> app {{ mirror shadow 10% }}
         route /all -> app {{ mirror shadow 100% rewrite \"/v2/all\" }}
         route /none -> app",
        app.addr, shadow.addr
    ))
    .await;
    for i in 0..200 {
        let got = get(&live.url(&format!("/search?q={i}"))).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["upstream"], "app", "the client gets the real answer");
    }
    let metrics = live.gateway.metrics();
    assert_eq!(
        reaches(20, || metrics.mirror.answered.load(Ordering::Relaxed)).await,
        20
    );
    // Counted, not drawn: exactly one in ten, spread evenly.
    assert_eq!(shadow.count(), 20);
    assert_eq!(app.count(), 200);
    let copies = seen.lock().expect("log").clone();
    assert!(copies.contains(&"GET /search?q=9 127.0.0.1 ".to_string()), "{copies:?}");
    assert!(
        copies.contains(&"GET /search?q=199 127.0.0.1 ".to_string()),
        "{copies:?}"
    );

    // 100%: every request, with its body, on the path the upstream gets.
    seen.lock().expect("log").clear();
    let req = Request::post(live.url("/all?x=1"))
        .body(Full::new(Bytes::from_static(b"order=42")))
        .expect("request");
    assert_eq!(send(req).await.status, 200);
    assert_eq!(
        reaches(21, || metrics.mirror.answered.load(Ordering::Relaxed)).await,
        21
    );
    assert_eq!(
        seen.lock().expect("log").clone(),
        ["POST /v2/all?x=1 127.0.0.1 order=42"]
    );

    // A route without `mirror` is never copied.
    assert_eq!(get(&live.url("/none")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shadow.count(), 21);
}

#[tokio::test]
async fn a_dead_or_silent_mirror_changes_nothing_for_the_client() {
    let app = Upstream::named("app").await;
    let silent = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Response::new(full("late"))
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         upstream dead {{ server 127.0.0.1:{} }}
         upstream silent {{ server {} timeout 300ms }}
         route /dead -> app {{ mirror dead 100% }}
         route /silent -> app {{ mirror silent 100% }}",
        app.addr,
        dead_port(),
        silent.addr
    ))
    .await;
    let start = Instant::now();
    for _ in 0..10 {
        for path in ["/dead", "/silent"] {
            let got = get(&live.url(path)).await;
            assert_eq!(got.status, 200, "{path}");
            assert_eq!(got.json()["upstream"], "app");
        }
    }
    // Twenty answers, none waiting for the silent mirror's 300 ms.
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    let metrics = live.gateway.metrics();
    // Both kinds of copies failed: refused, and timed out at 300 ms.
    assert_eq!(reaches(20, || metrics.mirror.failed.load(Ordering::Relaxed)).await, 20);
    assert_eq!(metrics.mirror.answered.load(Ordering::Relaxed), 0);
    assert_eq!(app.count(), 20);
}

#[tokio::test]
async fn copies_in_flight_are_bounded_and_the_excess_dropped() {
    let app = Upstream::named("app").await;
    let silent = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Response::new(full("late"))
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         upstream silent {{ server {} timeout 60s }}
         route /x -> app {{ mirror silent 100% }}",
        app.addr, silent.addr
    ))
    .await;
    // 64 copies wait on the silent mirror; the next 16 are dropped.
    within(Duration::from_secs(20), "80 answers", async {
        for _ in 0..80 {
            assert_eq!(get(&live.url("/x")).await.status, 200);
        }
    })
    .await;
    let metrics = live.gateway.metrics();
    assert_eq!(metrics.mirror.dropped.load(Ordering::Relaxed), 16);
    let arrived = || silent.arrived.load(Ordering::SeqCst) as u64;
    assert_eq!(reaches(64, arrived).await, 64);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(arrived(), 64, "no more than the bound in flight");
    assert_eq!(app.count(), 80);
}

#[tokio::test]
async fn a_body_over_the_bound_goes_alone_and_policies_come_first() {
    let app = Upstream::start(|req| async move {
        let body = body_or_empty(req).await;
        Response::new(full(body.len().to_string()))
    })
    .await;
    let (shadow, seen) = recording().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         upstream shadow {{ server {} }}
         auth keys api_key {{ from header x-api-key keys \"k1\" }}
         route /upload -> app {{ mirror shadow 100% }}
         route /private -> app {{ auth keys mirror shadow 100% }}",
        app.addr, shadow.addr
    ))
    .await;
    let big = vec![b'x'; 64 * 1024 + 1];
    let req = Request::post(live.url("/upload"))
        .body(Full::new(Bytes::from(big)))
        .expect("request");
    let got = send(req).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "65537"),
        "the real request is whole"
    );
    let metrics = live.gateway.metrics();
    assert_eq!(metrics.mirror.skipped.load(Ordering::Relaxed), 1);
    // A body at the bound is copied whole.
    let at_bound = vec![b'y'; 64 * 1024];
    let req = Request::post(live.url("/upload"))
        .body(Full::new(Bytes::from(at_bound)))
        .expect("request");
    assert_eq!(send(req).await.body, "65536");
    assert_eq!(reaches(1, || metrics.mirror.answered.load(Ordering::Relaxed)).await, 1);
    assert_eq!(
        seen.lock().expect("log")[0].len(),
        "POST /upload 127.0.0.1 ".len() + 64 * 1024
    );

    // A request the route's auth refuses is not copied.
    assert_eq!(get(&live.url("/private")).await.status, 401);
    let req = Request::get(live.url("/private"))
        .header("x-api-key", "k1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(req).await.status, 200);
    assert_eq!(reaches(2, || metrics.mirror.answered.load(Ordering::Relaxed)).await, 2);
    assert_eq!(shadow.count(), 2);
}

#[tokio::test]
async fn copies_reach_an_http2_mirror() {
    let app = Upstream::named("app").await;
    let shadow = Upstream::named("shadow").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         upstream shadow {{ server {} http2 }}
         route /h2 -> app {{ mirror shadow 100% }}",
        app.addr, shadow.addr
    ))
    .await;
    let req = Request::get(live.url("/h2?x=1"))
        .header("host", "menu.example")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(req).await.status, 200);
    let metrics = live.gateway.metrics();
    assert_eq!(reaches(1, || metrics.mirror.answered.load(Ordering::Relaxed)).await, 1);
    assert_eq!(shadow.count(), 1);
    assert_eq!(metrics.mirror.failed.load(Ordering::Relaxed), 0);
}
