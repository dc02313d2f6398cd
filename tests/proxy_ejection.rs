//! A server that dies under load, through a live gateway: its requests in
//! flight (whose connections reset after they were sent) are retried for
//! idempotent methods (`reset`), the default passive ejection takes it out
//! of rotation after its first refused connect (and not for a request that
//! breaks every server it reaches), and no client sees an error; a `POST`
//! whose connection reset is never sent again, whatever the route opts
//! into; the retry budget still bounds the retries of resets;
//! ejection never takes out the last usable server, and an ejected server
//! never takes the place of an answer a retry holds. Every wait is on a
//! condition (bounded), not on a guessed margin.

use crate::live::{eventually, get, Live, Upstream};
use gw_runtime::body::full;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Resets `stream` when it is dropped (RST, not FIN), as the kernel does
/// for the connections of a process that dies with unread data.
fn reset_on_drop(stream: &TcpStream) {
    // `SO_LINGER` 0: the close sends RST at once and never blocks, which
    // is what tokio's deprecation warns about for other values.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// An upstream that can be killed: its listener closes and every open
/// connection resets, a request it is working on included. While
/// `holding`, it answers nothing (its requests wait until it is killed).
struct Mortal {
    addr: SocketAddr,
    answered: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    holding: Arc<AtomicBool>,
    kill: watch::Sender<bool>,
}

impl Mortal {
    async fn start(name: &'static str) -> Mortal {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (answered, held, holding) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (kill, killed) = watch::channel(false);
        let (a, h, hold) = (answered.clone(), held.clone(), holding.clone());
        tokio::spawn(async move {
            let mut on_kill = killed.clone();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                    _ = on_kill.wait_for(|k| *k) => return, // the listener closes
                };
                reset_on_drop(&stream);
                let (a, h, hold) = (a.clone(), h.clone(), hold.clone());
                let mut on_kill = killed.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let (a, h, hold) = (a.clone(), h.clone(), hold.clone());
                        async move {
                            if hold.load(Ordering::SeqCst) {
                                h.fetch_add(1, Ordering::SeqCst);
                                std::future::pending::<()>().await;
                            }
                            a.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(Response::new(full(name)))
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    // Killed: the connection is dropped mid-way, and resets.
                    tokio::select! {
                        _ = conn => {}
                        _ = on_kill.wait_for(|k| *k) => {}
                    }
                });
            }
        });
        Mortal {
            addr,
            answered,
            held,
            holding,
            kill,
        }
    }

    fn kill(&self) {
        let _ = self.kill.send(true);
    }
}

/// Counts arrivals and lets waiters wait for a number of them.
#[derive(Clone)]
struct Arrivals(Arc<watch::Sender<usize>>);

impl Arrivals {
    fn new() -> Arrivals {
        Arrivals(Arc::new(watch::channel(0).0))
    }

    fn arrive(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits (at most 10 s) until `n` have arrived.
    async fn reach(&self, n: usize) {
        let mut rx = self.0.subscribe();
        let reached = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|c| *c >= n)).await;
        assert!(reached.is_ok(), "{} of {n} arrived", self.count());
    }
}

/// An upstream that reads each request whole (head and `content-length`
/// body), counts it (the counter returned) and in `arrivals`, waits until
/// `gate` requests have arrived there, and resets the connection without
/// answering: the request was sent, and the server broke before any
/// response byte.
async fn resetter(arrivals: Arrivals, gate: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (arrivals, received) = (arrivals.clone(), received.clone());
            tokio::spawn(async move {
                reset_on_drop(&stream);
                let mut buf = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(10), async {
                    loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + length {
                                return true;
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                })
                .await;
                if read == Ok(true) {
                    received.fetch_add(1, Ordering::SeqCst);
                    arrivals.arrive();
                    arrivals.reach(gate).await;
                }
                drop(stream); // RST
            });
        }
    });
    (addr, counter)
}

/// The server state of upstream `upstream` at `addr` in the running plan.
fn state_of(live: &Live, upstream: &str, addr: SocketAddr) -> Arc<gw_runtime::upstream::health::ServerState> {
    let servers = live.gateway.servers(upstream);
    let (_, state) = servers.into_iter().find(|(a, _)| *a == addr).expect("the server");
    state
}

fn retries(live: &Live) -> u64 {
    live.gateway.retries()
}

#[tokio::test]
async fn a_server_killed_under_get_load_costs_no_client_errors() {
    let servers = [
        Mortal::start("a").await,
        Mortal::start("b").await,
        Mortal::start("c").await,
    ];
    // The configuration, with the default `on` (connect_error,
    // reset) and no `eject` block: the default passive ejection applies.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{ server {} server {} server {} retry 2 }}
         route /{{*rest}} -> pool",
        servers[0].addr, servers[1].addr, servers[2].addr
    ))
    .await;
    // Three clients, each on its keep-alive connection, GET after GET (the
    // budget has its own tests below).
    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (url, done, ok, failures) = (live.url("/"), done.clone(), ok.clone(), failures.clone());
            tokio::spawn(async move {
                let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
                while !done.load(Ordering::SeqCst) {
                    let req = Request::get(&url).body(Full::new(bytes::Bytes::new())).unwrap();
                    let answer = async {
                        let resp = client.request(req).await.map_err(|e| e.to_string())?;
                        let status = resp.status().as_u16();
                        resp.into_body().collect().await.map_err(|e| e.to_string())?;
                        Ok::<u16, String>(status)
                    };
                    match tokio::time::timeout(Duration::from_secs(10), answer).await {
                        Ok(Ok(200)) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Ok(status)) => failures.lock().unwrap().push(format!("status {status}")),
                        Ok(Err(e)) => failures.lock().unwrap().push(e),
                        Err(_) => failures.lock().unwrap().push("no answer within 10 s".into()),
                    }
                }
            })
        })
        .collect();
    let served = |n: usize| {
        let ok = ok.clone();
        move || ok.load(Ordering::SeqCst) >= n
    };
    assert!(eventually(Duration::from_secs(10), served(90)).await, "warm-up");
    let dead = &servers[2];
    // The dying server stops answering until every client waits on it, so
    // that three requests are on its connections, sent, when it dies.
    dead.holding.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(10), || dead.held.load(Ordering::SeqCst) == 3).await,
        "{} requests held",
        dead.held.load(Ordering::SeqCst)
    );
    let before = ok.load(Ordering::SeqCst);
    let retries_before = retries(&live);
    let killed_at = std::time::Instant::now();
    dead.kill();
    let dead_state = state_of(&live, "pool", dead.addr);
    assert!(
        eventually(Duration::from_secs(10), || dead_state.is_ejected()).await,
        "the dead server is ejected"
    );
    assert!(
        eventually(Duration::from_secs(10), served(before + 300)).await,
        "300 more requests after the kill ({} failed: {:?})",
        failures.lock().unwrap().len(),
        failures.lock().unwrap().first()
    );
    let elapsed = killed_at.elapsed();
    done.store(true, Ordering::SeqCst);
    assert!(dead.answered.load(Ordering::SeqCst) > 0, "it served before it died");
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} client errors: {failures:?}", failures.len());
    // The three reset requests were retried; the dead server was ejected
    // by its first refused connect (at most one per client before the
    // ejection landed: a reset does not count by default), and is probed
    // again every 10 s (on a slow machine the 300 requests may take that
    // long). Without ejection, a third of the 300 requests after the kill
    // would have been retried.
    let after_kill = retries(&live) - retries_before;
    let probes = 3 * (elapsed.as_secs() / 10);
    assert!(
        (3..=6 + probes).contains(&after_kill),
        "{after_kill} retries after the kill ({elapsed:?})"
    );
}

#[tokio::test]
async fn a_reset_is_retried_for_get_and_never_for_post() {
    let (broken, received) = resetter(Arrivals::new(), 0).await;
    let good = Upstream::named("good").await;
    // One upstream per route, so that each request's first pick is the
    // resetting server; the POST route opts every method into `reset`.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream gets {{ server {broken} server {good} retry 1 }}
         upstream posts {{ server {broken} server {good} }}
         route GET /read -> gets
         route POST /order -> posts {{ retry 2 on connect_error, reset, 502 }}",
        good = good.addr
    ))
    .await;
    let client = crate::proxy_support::stream_client();
    let got =
        crate::proxy_support::exchange(&client, Request::post(live.url("/order")).body(full("pay 10")).unwrap()).await;
    assert_eq!(got.status, 502, "{}", got.body);
    assert_eq!(got.body, "{\"error\":\"bad gateway\",\"status\":502}\n");
    assert_eq!(received.load(Ordering::SeqCst), 1, "the POST reached the server once");
    assert_eq!(good.count(), 0, "and was not sent again");
    assert_eq!(retries(&live), 0);

    let got = get(&live.url("/read")).await;
    assert_eq!((got.status, got.json()["upstream"].as_str()), (200, Some("good")));
    assert_eq!(received.load(Ordering::SeqCst), 2);
    assert_eq!(retries(&live), 1, "the GET was retried on the other server");
}

/// At a server's death, every GET in flight to it goes to another server:
/// here half of the requests in flight fail at once, far more than 20% of
/// them (a cap on the requests in flight at that instant, the budget's old
/// definition, retried 8 of 20 and failed the rest), while the budget
/// counts them against the requests of its window.
#[tokio::test]
async fn every_get_in_flight_to_a_dying_server_is_retried() {
    const N: usize = 40;
    let arrivals = Arrivals::new();
    // Server A resets its requests once all N are in (so that every one was
    // picked before any failed); server B holds its own until released.
    let (a, on_a) = resetter(arrivals.clone(), N).await;
    let (release, released) = watch::channel(false);
    let b_arrivals = arrivals.clone();
    let b = Upstream::start(move |_req| {
        let (arrivals, mut released) = (b_arrivals.clone(), released.clone());
        async move {
            arrivals.arrive();
            let _ = released.wait_for(|r| *r).await;
            Response::new(full("b"))
        }
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pair {{ server {a} server {} retry 2 }}
         route /{{*rest}} -> pair",
        b.addr
    ))
    .await;
    let requests: Vec<_> = (0..N)
        .map(|_| {
            let url = live.url("/");
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    // Every request is in flight (B holds its own) when A resets its share;
    // each of those is retried on B, which holds it too.
    arrivals.reach(N).await;
    let a_count = on_a.load(Ordering::SeqCst);
    assert_eq!(a_count, N / 2, "round robin sent half of the requests to A");
    arrivals.reach(N + a_count).await;
    assert_eq!(retries(&live), a_count as u64);
    let _ = release.send(true);
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(b.count(), N, "every request was answered by B");
}

/// The budget bounds the retries of resets as those of any other
/// condition: with both servers resetting every request, sent one after
/// another, as many retries go as the budget holds, and no more.
#[tokio::test]
async fn the_retry_budget_bounds_the_retries_of_resets() {
    const N: usize = 200;
    let (a, _) = resetter(Arrivals::new(), 0).await;
    let (b, _) = resetter(Arrivals::new(), 0).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pair {{ server {a} server {b} retry 1 }}
         route /{{*rest}} -> pair"
    ))
    .await;
    let started = std::time::Instant::now();
    for _ in 0..N {
        assert_eq!(get(&live.url("/")).await.status, 502);
    }
    let expected = crate::proxy_failures::budget_model(N, 20);
    assert!(expected < N, "the budget runs out within the test");
    let retried = retries(&live) as usize;
    // Exact while every request is inside the budget's 10-second window.
    if started.elapsed() < Duration::from_secs(9) {
        assert_eq!(retried, expected);
    } else {
        assert!(retried >= expected, "{retried}");
    }
}

#[tokio::test]
async fn the_only_server_of_an_upstream_is_never_ejected() {
    let (broken, received) = resetter(Arrivals::new(), 0).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream one {{ server {broken} eject {{ errors 1 for 30s }} }}
         upstream alone {{ server {broken} }}
         route /explicit -> one
         route /default -> alone"
    ))
    .await;
    // Each failure would eject it, but no other server could take over:
    // every request still reaches it (502), none is refused as 503.
    for path in ["/explicit", "/default"] {
        for _ in 0..3 {
            assert_eq!(get(&live.url(path)).await.status, 502, "{path}");
        }
    }
    assert_eq!(received.load(Ordering::SeqCst), 6);
    assert!(!state_of(&live, "one", broken).is_ejected());
    assert!(!state_of(&live, "alone", broken).is_ejected());
}

#[tokio::test]
async fn a_retry_gives_the_held_answer_rather_than_try_an_ejected_server() {
    let a = Upstream::start(|_req| async {
        let mut r = Response::new(full("from a"));
        *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        r
    })
    .await;
    let dead = crate::proxy_support::dead_port();
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream u {{ server {} server 127.0.0.1:{dead} retry 1 on 503, connect_error }}
         route /{{*rest}} -> u",
        a.addr
    ))
    .await;
    let dead_state = state_of(&live, "u", format!("127.0.0.1:{dead}").parse().expect("an address"));
    // Until the dead server's first refused connect ejects it, a request may
    // end on it (A's 503 held, then the retry refused: a 502).
    for _ in 0..4 {
        if dead_state.is_ejected() {
            break;
        }
        get(&live.url("/x")).await;
    }
    assert!(dead_state.is_ejected(), "the dead server is ejected");
    // Now the retry has nowhere to go but the ejected server while A, tried,
    // is usable: no retry goes, and the client gets A's own answer.
    let before = retries(&live);
    for _ in 0..4 {
        let got = get(&live.url("/x")).await;
        assert_eq!((got.status, got.body.as_str()), (503, "from a"));
    }
    assert_eq!(retries(&live), before, "no retry went to the ejected server");
}

/// An upstream that answers `200 name` to each request on a keep-alive
/// connection, and closes the connection without a word on a request
/// that carries `x-poison`.
async fn poisoned(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end + 4);
                    if head.contains("\r\nx-poison:") {
                        return; // closed before any answer
                    }
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}", name.len());
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_request_that_breaks_every_server_it_reaches_ejects_none_by_default() {
    let servers = [poisoned("a").await, poisoned("b").await, poisoned("c").await];
    let [a, b, c] = servers;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream default {{ server {a} server {b} server {c} retry 2 }}
         upstream counted {{ server {a} server {b} server {c} retry 2 eject {{ errors 1 for 30s }} }}
         route /default/{{*rest}} -> default
         route /counted/{{*rest}} -> counted"
    ))
    .await;
    let poison = |path: &str| {
        Request::get(live.url(path))
            .header("x-poison", "1")
            .body(Full::new(bytes::Bytes::new()))
            .expect("request")
    };
    // Each server closes the connection opened for the poisoned request
    // before answering; the request is retried on each of them in turn.
    let got = crate::live::send(poison("/default/x")).await;
    assert_eq!(got.status, 502);
    assert_eq!(retries(&live), 2, "it reached every server");
    // The default ejection counts only connects that fail: a server that
    // accepted the connection is there, and one request's poison does
    // not take out the upstream.
    for addr in servers {
        assert!(!state_of(&live, "default", addr).is_ejected(), "{addr} is not ejected");
    }
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let got = get(&live.url("/default/y")).await;
        assert_eq!(got.status, 200);
        answered.insert(got.body);
    }
    assert_eq!(answered.len(), 3, "every server still in rotation: {answered:?}");
    // An `eject` block counts every failure, these too: all but the last
    // usable server go.
    let got = crate::live::send(poison("/counted/x")).await;
    assert_eq!(got.status, 502);
    let ejected = servers
        .iter()
        .filter(|addr| state_of(&live, "counted", **addr).is_ejected())
        .count();
    assert_eq!(ejected, 2);
}
