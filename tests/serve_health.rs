//! Active health checks end to end: a server whose health endpoint fails is
//! taken out of rotation after exactly `unhealthy` failed checks and comes
//! back after exactly `healthy` passed ones; with no usable server the
//! answer is 503 at once.
//!
//! No test depends on how fast checks run: a stepped upstream holds each
//! check until the test lets it through, and a check's `timeout` is far
//! longer than any test, so that only what a check answers can fail it.

use crate::live::{eventually, get, Live, Upstream};
use gw_runtime::body::full;
use hyper::Response;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// An upstream whose `/healthz` answers 200 or 503 as `up` says, counting
/// the checks that arrived, failed and passed; other paths answer its name.
/// While `stepped`, each check waits for a permit of `gate` before it
/// answers (as `up` says when it gets it); `held` counts those that waited.
struct Checked {
    server: Upstream,
    up: Arc<AtomicBool>,
    stepped: Arc<AtomicBool>,
    gate: Arc<Semaphore>,
    held: Arc<AtomicUsize>,
    arrived: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    passed: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl Checked {
    async fn start(name: &'static str) -> Checked {
        let up = Arc::new(AtomicBool::new(true));
        let stepped = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Semaphore::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let passed = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let counters = (
            up.clone(),
            stepped.clone(),
            gate.clone(),
            held.clone(),
            arrived.clone(),
            failed.clone(),
            passed.clone(),
            served.clone(),
        );
        let server = Upstream::start(move |req| {
            let (u, st, g, h, a, f, p, s) = counters.clone();
            async move {
                if req.uri().path() == "/healthz" {
                    a.fetch_add(1, Ordering::SeqCst);
                    if st.load(Ordering::SeqCst) {
                        h.fetch_add(1, Ordering::SeqCst);
                        if let Ok(permit) = g.acquire().await {
                            permit.forget();
                        }
                    }
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
            stepped,
            gate,
            held,
            arrived,
            failed,
            passed,
            served,
        }
    }

    /// Waits (at most 10 s) until `n` checks have arrived in all.
    async fn arrivals(&self, n: usize) {
        let arrived = &self.arrived;
        assert!(
            eventually(Duration::from_secs(10), || arrived.load(Ordering::SeqCst) >= n).await,
            "check {n} never came ({} did)",
            arrived.load(Ordering::SeqCst)
        );
    }

    /// Lets the held check answer and waits until the next one arrives: the
    /// checker has then recorded the one let through (a server's checks run
    /// one after another, each recorded before the next round starts).
    async fn step(&self) {
        let next = self.arrived.load(Ordering::SeqCst) + 1;
        self.gate.add_permits(1);
        self.arrivals(next).await;
    }
}

fn healthy(live: &Live, server: usize) -> bool {
    live.gateway.servers("pool")[server].1.is_healthy()
}

/// Polls (at most 10 s) until server `i`'s health is `want`.
async fn wait_health(live: &Live, i: usize, want: bool) -> bool {
    eventually(Duration::from_secs(10), || healthy(live, i) == want).await
}

#[tokio::test]
async fn a_server_failing_its_checks_leaves_after_unhealthy_failures_and_returns_after_healthy_passes() {
    let a = Checked::start("a").await;
    let b = Checked::start("b").await;
    // `timeout 60s` (a warning: longer than the interval): a held check
    // never times out, so only its answer counts.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server {} server {}
           health {{ path /healthz interval 20ms timeout 60s unhealthy 3 healthy 2 }}
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

    // From the next check on, a's checks wait for the test; then a fails.
    a.stepped.store(true, Ordering::SeqCst);
    let held = &a.held;
    assert!(
        eventually(Duration::from_secs(10), || held.load(Ordering::SeqCst) == 1).await,
        "a check is held"
    );
    a.up.store(false, Ordering::SeqCst);
    for failure in 1..=3 {
        assert!(healthy(&live, 0), "still in rotation before failed check {failure}");
        a.step().await;
    }
    assert!(!healthy(&live, 0), "out of rotation after exactly 3 failed checks");
    assert_eq!(a.failed.load(Ordering::SeqCst), 3);
    for _ in 0..6 {
        let got = get(&live.url("/")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "b"));
    }
    assert_eq!(a.served.load(Ordering::SeqCst), 2, "a gets no traffic while down");

    // a passes again: back after exactly 2 passed checks.
    a.up.store(true, Ordering::SeqCst);
    let passed_before = a.passed.load(Ordering::SeqCst);
    for pass in 1..=2 {
        assert!(!healthy(&live, 0), "still out before passed check {pass}");
        a.step().await;
    }
    assert!(healthy(&live, 0), "back in rotation after exactly 2 passed checks");
    assert_eq!(a.passed.load(Ordering::SeqCst) - passed_before, 2);
    a.stepped.store(false, Ordering::SeqCst);
    a.gate.add_permits(1);
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
           health {{ path /healthz interval 50ms timeout 60s unhealthy 1 healthy 1 }}
           connect_timeout 60s timeout 60s
         }}
         route /{{*rest}} -> pool",
        a.server.addr, b.server.addr
    ))
    .await;
    assert!(wait_health(&live, 0, false).await && wait_health(&live, 1, false).await);
    let start = Instant::now();
    let got = get(&live.url("/x")).await;
    assert_eq!(got.status, 503);
    // Not after any of the upstream's timeouts: nothing was tried.
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
    assert_eq!(a.served.load(Ordering::SeqCst) + b.served.load(Ordering::SeqCst), 0);
    assert!(!got.body.contains("127.0.0.1"), "{}", got.body);
}

#[tokio::test]
async fn a_health_check_that_times_out_fails() {
    // Never answers /healthz: every check runs into its 50 ms timeout.
    let slow = Upstream::start(|req| async move {
        if req.uri().path() == "/healthz" {
            std::future::pending::<()>().await;
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
    let answered = Arc::new(AtomicUsize::new(0));
    let counted = answered.clone();
    let picky = Upstream::start(move |req| {
        let counted = counted.clone();
        async move {
            let mut r = Response::new(full(""));
            if req.uri().path() == "/healthz" {
                counted.fetch_add(1, Ordering::SeqCst);
                *r.status_mut() = hyper::StatusCode::NO_CONTENT;
            }
            r
        }
    })
    .await;
    // A check cannot time out within the test: only its status fails it.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server {}
           health {{ path /healthz interval 50ms timeout 60s expect 200 unhealthy 2 }}
         }}
         route /{{*rest}} -> pool",
        picky.addr
    ))
    .await;
    assert!(wait_health(&live, 0, false).await, "204 is not `expect 200`");
    assert!(answered.load(Ordering::SeqCst) >= 2, "two answered checks failed it");
}
