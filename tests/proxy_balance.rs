//! Balancing across live upstream servers: least_conn steers around a
//! server busy with slow requests; hash(header.*) keeps a user on one server
//! and falls back to round robin without the header; backup servers serve
//! only while no primary is usable; a DNS name with `resolve` is served.

use crate::live::{get, send, Live, Upstream};
use bytes::Bytes;
use gw_runtime::body::full;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An upstream answering `name`, after `delay`, counting requests as they
/// arrive (not as they finish).
async fn counted(name: &'static str, delay: Duration) -> (Upstream, Arc<AtomicUsize>) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let a = arrived.clone();
    let up = Upstream::start(move |_req| {
        a.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Response::new(full(name))
        }
    })
    .await;
    (up, arrived)
}

#[tokio::test]
async fn least_conn_avoids_the_server_busy_with_slow_requests() {
    // The slow server holds its requests until the test has sent them all.
    let (release, released) = tokio::sync::watch::channel(false);
    let slow_arrived = Arc::new(AtomicUsize::new(0));
    let a = slow_arrived.clone();
    let slow = Upstream::start(move |_req| {
        a.fetch_add(1, Ordering::SeqCst);
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            Response::new(full("slow"))
        }
    })
    .await;
    let (fast, fast_arrived) = counted("fast", Duration::ZERO).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{ balance least_conn server {} server {} }}
         route /{{*rest}} -> pool",
        slow.addr, fast.addr
    ))
    .await;
    // 20 requests, one at a time: each waits until the one before has
    // reached a server and, when that was the fast one, has been answered.
    // The slow server keeps what it got in flight, the fast one at most the
    // request just answered (its count may drop a moment after the client
    // has the answer), so the slow server gets the first tie and at most
    // one more.
    let mut tasks = Vec::new();
    let arrived = || slow_arrived.load(Ordering::SeqCst) + fast_arrived.load(Ordering::SeqCst);
    for n in 1..=20 {
        let url = live.url("/");
        let fast_before = fast_arrived.load(Ordering::SeqCst);
        let task = tokio::spawn(async move { get(&url).await.status });
        assert!(
            crate::live::eventually(Duration::from_secs(10), || arrived() == n).await,
            "request {n} never reached a server"
        );
        if fast_arrived.load(Ordering::SeqCst) > fast_before {
            assert_eq!(task.await.unwrap(), 200);
        } else {
            tasks.push(task);
        }
    }
    let (s, f) = (slow_arrived.load(Ordering::SeqCst), fast_arrived.load(Ordering::SeqCst));
    let _ = release.send(true);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(s + f, 20);
    // Round robin would send 10 to each; least_conn sends the slow server
    // one (a tie at the start) and nothing while it is busy.
    assert!(s <= 2, "the busy server got {s} of 20");
}

#[tokio::test]
async fn hashing_on_a_header_keeps_each_user_on_one_server() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let c = Upstream::named("c").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{ balance hash(header.x-user-id) server {} server {} server {} }}
         route /{{*rest}} -> pool",
        a.addr, b.addr, c.addr
    ))
    .await;
    let mut owner: HashMap<String, HashSet<String>> = HashMap::new();
    for round in 0..5 {
        for user in 0..12 {
            let user = format!("user-{user}");
            let req = Request::get(live.url(&format!("/cart?round={round}")))
                .header("x-user-id", &user)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let got = send(req).await;
            assert_eq!(got.status, 200);
            owner
                .entry(user)
                .or_default()
                .insert(got.json()["upstream"].as_str().unwrap().to_string());
        }
    }
    assert!(
        owner.values().all(|s| s.len() == 1),
        "a user moved between servers: {owner:?}"
    );
    let used: HashSet<_> = owner.values().flatten().collect();
    assert!(used.len() >= 2, "12 users all hashed to one server: {owner:?}");

    // Without the header: round robin, exactly even.
    let before = (a.count(), b.count(), c.count());
    for _ in 0..30 {
        assert_eq!(get(&live.url("/anonymous")).await.status, 200);
    }
    let after = (a.count() - before.0, b.count() - before.1, c.count() - before.2);
    assert_eq!(after, (10, 10, 10));
}

/// An upstream that answers 500 while `failing` is set.
async fn switchable(name: &'static str) -> (Upstream, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let up = Upstream::start(move |_req| {
        let fail = f.load(Ordering::SeqCst);
        async move {
            let mut r = Response::new(full(name));
            if fail {
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            r
        }
    })
    .await;
    (up, failing)
}

#[tokio::test]
async fn backups_serve_only_while_no_primary_is_usable() {
    let (p1, p1_failing) = switchable("p1").await;
    let (p2, p2_failing) = switchable("p2").await;
    let (backup, _) = switchable("backup").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server {} server {} server {} backup
           eject {{ errors 1 for 3s }}
         }}
         route /{{*rest}} -> pool",
        p1.addr, p2.addr, backup.addr
    ))
    .await;
    let states: Vec<_> = live.gateway.servers("pool").into_iter().map(|(_, s)| s).collect();
    let ejected = |i: usize| states[i].is_ejected_at(gw_runtime::clock::now_millis());
    for _ in 0..20 {
        assert_eq!(get(&live.url("/")).await.status, 200);
    }
    assert_eq!((p1.count(), p2.count(), backup.count()), (10, 10, 0));

    // Both primaries fail: each is ejected after its first 500.
    p1_failing.store(true, Ordering::SeqCst);
    p2_failing.store(true, Ordering::SeqCst);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..12 {
            v.push(get(&live.url("/")).await.status);
        }
        v
    };
    // Still ejected after the round, so ejected throughout it (3 s is far
    // longer than 12 requests take; were it not, this says so rather than
    // failing on a 500 below).
    assert!(ejected(0) && ejected(1), "the round outlasted the ejection");
    assert_eq!(&statuses[..2], &[500, 500], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(backup.count(), 10);

    // The primaries recover; once their ejection ends the backup is idle again.
    p1_failing.store(false, Ordering::SeqCst);
    p2_failing.store(false, Ordering::SeqCst);
    assert!(
        crate::live::eventually(Duration::from_secs(10), || !ejected(0) && !ejected(1)).await,
        "the ejections end"
    );
    for _ in 0..10 {
        assert_eq!(get(&live.url("/")).await.status, 200);
    }
    assert_eq!(backup.count(), 10, "the backup got traffic while primaries were usable");
}

#[tokio::test]
async fn backups_take_over_from_primaries_that_refuse_connections() {
    let dead1 = crate::proxy_support::dead_port();
    let dead2 = crate::proxy_support::dead_port();
    let backup = Upstream::named("backup").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{
           server 127.0.0.1:{dead1} server 127.0.0.1:{dead2} server {} backup
           retry 2 on connect_error
           eject {{ errors 1 for 30s }}
         }}
         route /{{*rest}} -> pool",
        backup.addr
    ))
    .await;
    for _ in 0..10 {
        let got = get(&live.url("/")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["upstream"], "backup");
    }
    assert_eq!(backup.count(), 10);
}

/// `localhost` may name 127.0.0.1, ::1 or both: the test serves every
/// address it resolves to (one port on each), and checks that the gateway
/// resolved the same. Then it empties the upstream's server set by hand and
/// waits for the `resolve` loop to fill it again: a refresh that happened,
/// not one assumed after a sleep.
#[tokio::test]
async fn a_dns_name_with_resolve_is_served_and_re_resolved() {
    let (servers, port) = 'bound: {
        for _ in 0..10 {
            let Some(first) = tokio::net::lookup_host(("localhost", 0))
                .await
                .ok()
                .and_then(|mut a| a.next())
            else {
                panic!("localhost does not resolve");
            };
            let Ok(one) = Upstream::start_at(first, |req| async move { crate::live::json_echo("by-name", &req) }).await
            else {
                continue;
            };
            let port = one.addr.port();
            let mut servers = vec![one];
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(("localhost", port))
                .await
                .expect("localhost")
                .collect();
            let mut all = true;
            let first = servers[0].addr;
            for addr in addrs.iter().filter(|a| **a != first) {
                match Upstream::start_at(*addr, |req| async move { crate::live::json_echo("by-name", &req) }).await {
                    Ok(s) => servers.push(s),
                    Err(_) => all = false, // the port is taken there: another port
                }
            }
            if all {
                break 'bound (servers, port);
            }
        }
        panic!("no port free on every address of localhost");
    };
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream named {{ server localhost:{port} resolve 1s }}
         route /{{*rest}} -> named"
    ))
    .await;
    let resolved =
        || -> HashSet<std::net::SocketAddr> { live.gateway.servers("named").iter().map(|(a, _)| *a).collect() };
    let ours: HashSet<std::net::SocketAddr> = servers.iter().map(|s| s.addr).collect();
    assert_eq!(resolved(), ours, "the gateway resolved localhost as the test did");
    for _ in 0..5 {
        let got = get(&live.url("/")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["upstream"], "by-name");
    }
    // No server, until the resolve loop (every second) fills the set again.
    live.gateway.forget_servers("named");
    assert!(resolved().is_empty());
    assert!(
        crate::live::eventually(Duration::from_secs(10), || resolved() == ours).await,
        "the resolve loop never refreshed the servers"
    );
    assert_eq!(get(&live.url("/")).await.status, 200);
    assert_eq!(servers.iter().map(Upstream::count).sum::<usize>(), 6);
}
