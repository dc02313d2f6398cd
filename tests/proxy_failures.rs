//! Failures through a live gateway: refused connects (502), upstream
//! `timeout` and `connect_timeout` (504), no usable server (503), each
//! quickly and without naming internal addresses; retries (another server,
//! idempotent methods unless the route opts in, never after the answer
//! started, within the budget, replaying only buffered bodies); passive
//! ejection with doubling; a stalled client body (408, the server not blamed).

use crate::live::{get, Got, Live, Upstream};
use crate::proxy_support::{body_or_empty, chan_body, dead_port, exchange, pattern, stream_client, within, Unanswered};
use bytes::Bytes;
use gw_runtime::body::{full, Body};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use hyper::{Request, Response, StatusCode};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The error body names no address, host or port of the gateway's insides.
fn assert_opaque(got: &Got, hidden: &[String]) {
    for h in hidden {
        assert!(
            !got.body.contains(h.as_str()),
            "the error body names `{h}`: {}",
            got.body
        );
    }
    assert!(!got.body.contains("127.0.0.1"), "{}", got.body);
}

async fn status_of(url: &str) -> u16 {
    get(url).await.status
}

/// An upstream that answers `status` with body `name`.
async fn answering(name: &'static str, status: u16) -> Upstream {
    Upstream::start(move |_req| async move {
        let mut r = Response::new(full(name));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r
    })
    .await
}

/// An upstream that never answers (within a minute).
async fn silent() -> Upstream {
    Upstream::start(|_req| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Response::new(full("late"))
    })
    .await
}

#[tokio::test]
async fn a_refused_connect_is_502_at_once() {
    let port = dead_port();
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream gone {{ server 127.0.0.1:{port} connect_timeout 60s timeout 60s }}
         route /{{*rest}} -> gone"
    ))
    .await;
    let start = Instant::now();
    let got = get(&live.url("/")).await;
    assert_eq!(got.status, 502);
    // At once: not after either of the upstream's timeouts.
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
    assert_opaque(&got, &[port.to_string()]);
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_504_after_the_timeout() {
    let up = silent().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream slow {{ server {} timeout 300ms }}
         upstream slower {{ server {} timeout 60s }}
         route GET /fast -> slower {{ timeout 100ms }}
         route /{{*rest}} -> slow",
        up.addr, up.addr
    ))
    .await;
    // The upstream never answers (within a minute): a 504 before that, and
    // not before the 300 ms timeout (a timer never fires early), is the
    // timeout's.
    let start = Instant::now();
    let got = get(&live.url("/")).await;
    let took = start.elapsed();
    assert_eq!(got.status, 504);
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert_opaque(&got, &[up.addr.port().to_string()]);
    // The route's timeout overrides the upstream's (a minute).
    let start = Instant::now();
    assert_eq!(status_of(&live.url("/fast")).await, 504);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_secs(30),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_unanswered_connect_is_504_after_connect_timeout() {
    let hole = Unanswered::start().await;
    assert!(
        hole.hangs(Duration::from_millis(300)).await,
        "this machine answers connects to a full accept queue; the test cannot simulate an unanswered connect"
    );
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream far {{ server {} connect_timeout 300ms timeout 60s }}
         route /{{*rest}} -> far",
        hole.addr
    ))
    .await;
    let start = Instant::now();
    let got = get(&live.url("/")).await;
    let took = start.elapsed();
    assert_eq!(got.status, 504);
    // The connect's timeout, not the request's (a minute).
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert_opaque(&got, &[hole.addr.port().to_string()]);
}

#[tokio::test]
async fn no_usable_server_is_503_at_once_without_contacting_it() {
    // The only server fails its health checks (the first round runs at
    // start); requests other than the checks are counted.
    let proxied = Arc::new(AtomicUsize::new(0));
    let p = proxied.clone();
    let up = Upstream::start(move |req| {
        if req.uri().path() != "/healthz" {
            p.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            let mut r = Response::new(full("broken"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream one {{
           server {} connect_timeout 60s timeout 60s
           health {{ path /healthz interval 10s unhealthy 1 }}
         }}
         route /{{*rest}} -> one",
        up.addr
    ))
    .await;
    let state = live.gateway.servers("one")[0].1.clone();
    assert!(
        crate::live::eventually(Duration::from_secs(10), || !state.is_healthy()).await,
        "the first health round marks the server down"
    );
    let start = Instant::now();
    let got = get(&live.url("/")).await;
    assert_eq!(got.status, 503);
    // At once: not after either of the upstream's timeouts.
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
    assert_eq!(proxied.load(Ordering::SeqCst), 0, "the server was not contacted");
    assert_opaque(&got, &[up.addr.port().to_string()]);
}

#[tokio::test]
async fn a_retry_goes_to_another_server_and_never_to_the_same_one() {
    let bad = answering("bad", 503).await;
    let good = answering("good", 200).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pair {{ server {} server {} retry 1 on 503 }}
         upstream alone {{ server {} retry 3 on 503 }}
         route /pair -> pair
         route /alone -> alone",
        bad.addr, good.addr, bad.addr
    ))
    .await;
    for _ in 0..6 {
        let got = get(&live.url("/pair")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "good"));
    }
    assert_eq!(good.count(), 6);
    let bad_before = bad.count();
    // With one server there is no other to retry on: its own answer stands.
    let got = get(&live.url("/alone")).await;
    assert_eq!((got.status, got.body.as_str()), (503, "bad"));
    assert_eq!(bad.count() - bad_before, 1, "retried on the server that failed");
}

#[tokio::test]
async fn only_idempotent_methods_retry_unless_the_route_has_its_own_retry() {
    let bad = answering("bad", 503).await;
    let good = answering("good", 200).await;
    // One upstream per route, so that each request's first pick is `bad`.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {bad} server {good} retry 1 on 503 }}
         upstream b {{ server {bad} server {good} retry 1 on 503 }}
         upstream c {{ server {bad} server {good} }}
         route /upstream-retry -> a
         route /idempotent -> b
         route /route-retry -> c {{ retry 1 on 503 }}",
        bad = bad.addr,
        good = good.addr
    ))
    .await;
    let client = stream_client();
    let got = exchange(
        &client,
        Request::post(live.url("/upstream-retry")).body(full("order")).unwrap(),
    )
    .await;
    assert_eq!((got.status, got.body.as_str()), (503, "bad"), "POST is not retried");
    assert_eq!((bad.count(), good.count()), (1, 0));
    let got = exchange(&client, Request::put(live.url("/idempotent")).body(full("x")).unwrap()).await;
    assert_eq!((got.status, got.body.as_str()), (200, "good"), "PUT is idempotent");
    assert_eq!((bad.count(), good.count()), (2, 1));
    let got = exchange(
        &client,
        Request::post(live.url("/route-retry")).body(full("order")).unwrap(),
    )
    .await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "good"),
        "the route's retry opts POST in"
    );
    assert_eq!((bad.count(), good.count()), (3, 2));
}

/// A body fed with results: it fails when an error comes through.
struct Results(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl HttpBody for Results {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|r| r.map(|r| r.map(Frame::data)))
    }
}

#[tokio::test]
async fn no_retry_once_the_answer_has_started() {
    // Sends its head and a first chunk, then breaks the connection once the
    // client has read that chunk.
    let (read_tx, read_rx) = tokio::sync::watch::channel(false);
    let breaks = Upstream::start(move |_req| {
        let mut read = read_rx.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Bytes::from_static(b"partial"))).await;
                let _ = read.wait_for(|r| *r).await;
                let _ = tx.send(Err(std::io::Error::other("upstream broke"))).await;
            });
            Response::new(gw_runtime::body::boxed(Results(rx)))
        }
    })
    .await;
    let good = answering("good", 200).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pair {{ server {} server {} retry 1 on connect_error, timeout, 502, 503 }}
         route /{{*rest}} -> pair",
        breaks.addr, good.addr
    ))
    .await;
    let resp = within(
        Duration::from_secs(5),
        "the head",
        stream_client().request(Request::get(live.url("/")).body(gw_runtime::body::empty()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = within(Duration::from_secs(5), "the first chunk", body.frame()).await;
    assert_eq!(
        first.and_then(|f| f.ok()).and_then(|f| f.into_data().ok()),
        Some(Bytes::from_static(b"partial"))
    );
    let _ = read_tx.send(true);
    let rest = within(Duration::from_secs(5), "the end", body.collect()).await;
    assert!(rest.is_err(), "the broken answer reaches the client as broken");
    assert_eq!(good.count(), 0, "no retry after the answer started");
}

/// The retry budget as docs/language.md states it, for requests sent one
/// after another within its window, each wanting one retry: a request adds
/// `percent`% of a retry, a retry takes a whole one, and 10 retries per
/// second over the 10-second window (100) are always there. Returns the
/// retries allowed.
pub(crate) fn budget_model(requests: usize, percent: usize) -> usize {
    let (mut balance, mut retries) = (100 * 100, 0);
    for _ in 0..requests {
        balance += percent;
        if balance >= 100 {
            balance -= 100;
            retries += 1;
        }
    }
    retries
}

/// Retries over the budget's window add at most its share of the requests
/// plus the floor: with both servers answering 503 to every request, each
/// request wants a retry, and exactly as many go as the budget holds.
#[tokio::test]
async fn retries_stay_within_the_budget() {
    const N: usize = 300;
    for budget in [20, 50] {
        let (a, b) = (answering("a", 503).await, answering("b", 503).await);
        let live = Live::start(&format!(
            "listen 127.0.0.1:0
             upstream pair {{ server {} server {} retry 1 on 503 budget {budget}% }}
             route /{{*rest}} -> pair",
            a.addr, b.addr
        ))
        .await;
        let started = Instant::now();
        for _ in 0..N {
            assert_eq!(status_of(&live.url("/")).await, 503);
        }
        let retries = live.gateway.retries() as usize;
        assert_eq!(
            a.count() + b.count(),
            N + retries,
            "each retry reached the other server"
        );
        assert_eq!(
            live.gateway.retry_budget_refusals() as usize,
            N - retries,
            "every request not retried was refused by the budget, and counted"
        );
        let expected = budget_model(N, budget);
        assert!(expected < N, "the budget runs out within the test ({expected} of {N})");
        // Exact while every request is inside the 10-second window; on a
        // machine so slow that the first ones have left it, their
        // withdrawals have too, and more may go.
        if started.elapsed() < Duration::from_secs(9) {
            assert_eq!(retries, expected, "retries with a {budget}% budget");
        } else {
            assert!(retries >= expected, "{retries} retries with a {budget}% budget");
        }
    }
}

#[tokio::test]
async fn only_buffered_bodies_are_replayed() {
    let dead = dead_port();
    let received = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let r = received.clone();
    let live_up = Upstream::start(move |req| {
        let r = r.clone();
        async move {
            let body = body_or_empty(req).await;
            r.lock().unwrap().push(body.len());
            Response::new(full(body))
        }
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         limits {{ max_body_size 8MiB }}
         upstream pair {{ server 127.0.0.1:{dead} server {} eject {{ errors 1000 }} }}
         route /{{*rest}} -> pair {{ retry 1 on connect_error }}",
        live_up.addr
    ))
    .await;
    let client = stream_client();
    // Each request starts at the dead server (round robin over two, and a
    // retry takes the other turn; `errors 1000` keeps the dead server in
    // rotation, which the default ejection would not).
    let small = "s".repeat(1024);
    let got = exchange(
        &client,
        Request::post(live.url("/a")).body(full(small.clone())).unwrap(),
    )
    .await;
    assert_eq!(got.status, 200, "a small body is replayed on the next server");
    assert_eq!(got.body, small);

    // A small chunked body (no length) is buffered and replayed too.
    let (tx, body): (_, Body) = chan_body(4);
    let req = Request::post(live.url("/b")).body(body).unwrap();
    let c = client.clone();
    let pending = tokio::spawn(async move { exchange(&c, req).await });
    tx.send(Bytes::from("a".repeat(3000))).await.unwrap();
    tx.send(Bytes::from("b".repeat(3000))).await.unwrap();
    drop(tx);
    let got = pending.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "a".repeat(3000) + &"b".repeat(3000));

    // 1 MiB is more than the gateway holds for a replay: no retry.
    let big = pattern(0, 1024 * 1024);
    let got = exchange(&client, Request::post(live.url("/c")).body(full(big)).unwrap()).await;
    assert_eq!(got.status, 502);
    assert_eq!(
        *received.lock().unwrap(),
        vec![1024, 6000],
        "the big body never reached the live server"
    );
}

#[tokio::test]
async fn a_timeout_is_retried_on_another_server_when_the_upstream_says_so() {
    let slow = silent().await;
    let good = answering("good", 200).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pair {{ server {} server {} timeout 200ms retry 1 on timeout }}
         route /{{*rest}} -> pair",
        slow.addr, good.addr
    ))
    .await;
    let got = get(&live.url("/")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "good"));
}

/// The state of the first server of the first upstream.
fn first_server(live: &Live) -> Arc<gw_runtime::upstream::health::ServerState> {
    let name = live.gateway.plan().upstreams[0].name.clone();
    live.gateway.servers(&name)[0].1.clone()
}

fn ejected(state: &gw_runtime::upstream::health::ServerState) -> bool {
    state.is_ejected_at(gw_runtime::clock::now_millis())
}

#[tokio::test]
async fn passive_ejection_keeps_a_failing_server_out() {
    let bad = answering("bad", 500).await;
    let good = answering("good", 200).await;
    // Ejected for a minute: the test never reaches its end.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pair {{ server {} server {} eject {{ errors 2 for 60s }} }}
         route /{{*rest}} -> pair",
        bad.addr, good.addr
    ))
    .await;
    for _ in 0..4 {
        get(&live.url("/")).await;
    }
    assert_eq!(bad.count(), 2, "two consecutive errors eject");
    assert!(ejected(&first_server(&live)));
    for _ in 0..10 {
        assert_eq!(get(&live.url("/")).await.body, "good");
    }
    assert_eq!(bad.count(), 2, "no traffic while ejected");
}

/// Each ejection is measured from before the request that caused it to the
/// moment the server is back, so it can only read long, never short: the
/// first lasts at least 300 ms, the second at least twice that.
#[tokio::test]
async fn passive_ejection_doubles_on_repeat() {
    let bad = answering("bad", 500).await;
    let good = answering("good", 200).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pair {{ server {} server {} eject {{ errors 2 for 300ms }} }}
         route /{{*rest}} -> pair",
        bad.addr, good.addr
    ))
    .await;
    let state = first_server(&live);
    for (round, at_least) in [(1, 300), (2, 600)] {
        // Requests until two consecutive errors eject the failing server.
        let start = Instant::now();
        for _ in 0..20 {
            if ejected(&state) {
                break;
            }
            get(&live.url("/")).await;
        }
        assert!(ejected(&state), "round {round}: ejected");
        assert_eq!(bad.count(), 2 * round, "round {round}: after exactly two errors");
        assert!(
            crate::live::eventually(Duration::from_secs(10), || !ejected(&state)).await,
            "round {round}: back in the end"
        );
        let lasted = start.elapsed();
        assert!(
            lasted >= Duration::from_millis(at_least),
            "round {round}: back after {lasted:?}, not {at_least} ms"
        );
    }
}

/// A client whose body stops coming is the slow side: when the route's
/// timeout runs out it gets `408`, and the server, which was waiting for
/// the body, is not blamed (with `errors 1`, a blamed timeout would eject
/// it and the next request would be `503`). With a retry, the body is
/// buffered for a replay, and a stalled one is cut the same way before any
/// server sees it.
#[tokio::test]
async fn a_stalled_client_body_is_408_and_the_server_is_not_blamed() {
    let up = Upstream::start(|req| async move {
        let body = body_or_empty(req).await;
        Response::new(full(format!("got {}", body.len())))
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         limits {{ idle_timeout 60s }}
         upstream one {{ server {} timeout 60s eject {{ errors 1 for 30s }} }}
         route /stream/{{*rest}} -> one {{ timeout 300ms }}
         route /buffered/{{*rest}} -> one {{ timeout 300ms retry 1 on timeout }}",
        up.addr
    ))
    .await;
    let client = stream_client();
    for path in ["/stream/a", "/buffered/a"] {
        let (tx, body): (_, Body) = chan_body(4);
        let req = Request::post(live.url(path)).body(body).unwrap();
        let c = client.clone();
        let pending = tokio::spawn(async move { exchange(&c, req).await });
        tx.send(Bytes::from_static(b"first part")).await.unwrap();
        // ... and nothing more, the sender kept open. The route's timeout
        // cuts it, not the upstream's or idle_timeout (a minute each).
        let got = within(Duration::from_secs(30), "the answer to a stalled body", pending)
            .await
            .unwrap();
        assert_eq!(got.status, 408, "{path}: {}", got.body);
        drop(tx);
        // The server was not ejected: the next request reaches it.
        let got = exchange(
            &client,
            Request::post(live.url("/stream/b")).body(full("whole")).unwrap(),
        )
        .await;
        assert_eq!((got.status, got.body.as_str()), (200, "got 5"), "after {path}");
    }
}
