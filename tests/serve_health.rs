//! Active health checks end to end: a server whose health endpoint fails is
//! taken out of rotation after `unhealthy` failed checks and comes back
//! after `healthy` passed ones; with no usable server the answer is 503 at
//! once.

use crate::live::{get, Live, Upstream};
use gw_runtime::body::full;
use hyper::Response;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An upstream whose `/healthz` answers 200 or 503 as `up` says, counting
/// the checks it failed and passed; other paths answer its name.
struct Checked {
    server: Upstream,
    up: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    passed: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl Checked {
    async fn start(name: &'static str) -> Checked {
        let up = Arc::new(AtomicBool::new(true));
        let failed = Arc::new(AtomicUsize::new(0));
        let passed = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (u, f, p, s) = (up.clone(), failed.clone(), passed.clone(), served.clone());
        let server = Upstream::start(move |req| {
            let (u, f, p, s) = (u.clone(), f.clone(), p.clone(), s.clone());
            async move {
                if req.uri().path() == "/healthz" {
                    if u.load(Ordering::SeqCst) {
                        p.fetch_add(1, Ordering::SeqCst);
                        return Response::new(full("ok"));
                    }
                    f.fetch_add(1, Ordering::SeqCst);
                    let mut r = Response::new(full("down"));
                    *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                    return r;
                }
                s.fetch_add(1, Ordering::SeqCst);
                Response::new(full(name))
            }
        })
        .await;
        Checked {
            server,
            up,
            failed,
            passed,
            served,
        }
    }
}

fn healthy(live: &Live, server: usize) -> bool {
    live.gateway.servers("pool")[server].1.is_healthy()
}

/// Polls (every 2 ms, at most 10 s) until server `i`'s health is `want`.
async fn wait_health(live: &Live, i: usize, want: bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if healthy(live, i) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

#[tokio::test]
async fn a_server_failing_its_checks_leaves_after_unhealthy_failures_and_returns_after_healthy_passes() {
    let a = Checked::start("a").await;
    let b = Checked::start("b").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server {} server {}
           health {{ path /healthz interval 100ms timeout 50ms unhealthy 3 healthy 2 }}
         }}
         route /{{*rest}} -> pool",
        a.server.addr, b.server.addr
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&live.url("/")).await.status, 200);
    }
    assert_eq!(
        (a.served.load(Ordering::SeqCst), b.served.load(Ordering::SeqCst)),
        (2, 2)
    );

    a.up.store(false, Ordering::SeqCst);
    let failed_before = a.failed.load(Ordering::SeqCst);
    assert!(wait_health(&live, 0, false).await, "a is marked down");
    let failures = a.failed.load(Ordering::SeqCst) - failed_before;
    assert!(
        (3..=5).contains(&failures),
        "marked down after 3 failed checks, not {failures}"
    );
    let served_a = a.served.load(Ordering::SeqCst);
    for _ in 0..6 {
        let got = get(&live.url("/")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "b"));
    }
    assert_eq!(
        a.served.load(Ordering::SeqCst),
        served_a,
        "a gets no traffic while down"
    );

    a.up.store(true, Ordering::SeqCst);
    let passed_before = a.passed.load(Ordering::SeqCst);
    assert!(wait_health(&live, 0, true).await, "a is back");
    let passes = a.passed.load(Ordering::SeqCst) - passed_before;
    assert!((2..=4).contains(&passes), "back after 2 passed checks, not {passes}");
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(&live.url("/")).await.body);
    }
    assert!(bodies.iter().any(|b| b == "a"), "a takes traffic again: {bodies:?}");
}

#[tokio::test]
async fn with_every_server_down_the_answer_is_503_at_once() {
    let a = Checked::start("a").await;
    let b = Checked::start("b").await;
    a.up.store(false, Ordering::SeqCst);
    b.up.store(false, Ordering::SeqCst);
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server {} server {}
           health {{ path /healthz interval 50ms timeout 50ms unhealthy 1 healthy 1 }}
           timeout 5s
         }}
         route /{{*rest}} -> pool",
        a.server.addr, b.server.addr
    ))
    .await;
    assert!(wait_health(&live, 0, false).await && wait_health(&live, 1, false).await);
    let start = Instant::now();
    let got = get(&live.url("/x")).await;
    assert_eq!(got.status, 503);
    assert!(start.elapsed() < Duration::from_millis(500), "{:?}", start.elapsed());
    assert_eq!(a.served.load(Ordering::SeqCst) + b.served.load(Ordering::SeqCst), 0);
    assert!(!got.body.contains("127.0.0.1"), "{}", got.body);
}

#[tokio::test]
async fn a_health_check_that_times_out_fails() {
    // Answers /healthz after 300 ms: past the 50 ms timeout.
    let slow = Upstream::start(|req| async move {
        if req.uri().path() == "/healthz" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Response::new(full("slow"))
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server {}
           health {{ path /healthz interval 50ms timeout 50ms unhealthy 2 }}
         }}
         route /{{*rest}} -> pool",
        slow.addr
    ))
    .await;
    assert!(wait_health(&live, 0, false).await, "a check past its timeout fails");
}

#[tokio::test]
async fn expect_decides_which_statuses_pass() {
    // Answers /healthz with 204: outside `expect 200`.
    let picky = Upstream::start(|req| async move {
        let mut r = Response::new(full(""));
        if req.uri().path() == "/healthz" {
            *r.status_mut() = hyper::StatusCode::NO_CONTENT;
        }
        r
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server {}
           health {{ path /healthz interval 50ms timeout 200ms expect 200 unhealthy 2 }}
         }}
         route /{{*rest}} -> pool",
        picky.addr
    ))
    .await;
    assert!(wait_health(&live, 0, false).await, "204 is not `expect 200`");
}
