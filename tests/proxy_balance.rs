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
    let (slow, slow_arrived) = counted("slow", Duration::from_millis(800)).await;
    let (fast, fast_arrived) = counted("fast", Duration::ZERO).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{ balance least_conn server {} server {} }}
         route /{{*rest}} -> pool",
        slow.addr, fast.addr
    ))
    .await;
    // 20 requests, one every 20 ms, all within the slow server's 800 ms.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = live.url("/");
        tasks.push(tokio::spawn(async move { get(&url).await.status }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (s, f) = (slow_arrived.load(Ordering::SeqCst), fast_arrived.load(Ordering::SeqCst));
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
           eject {{ errors 1 for 1s }}
         }}
         route /{{*rest}} -> pool",
        p1.addr, p2.addr, backup.addr
    ))
    .await;
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
    assert_eq!(&statuses[..2], &[500, 500], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(backup.count(), 10);

    // The primaries recover; once their ejection ends the backup is idle again.
    p1_failing.store(false, Ordering::SeqCst);
    p2_failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
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

#[tokio::test]
async fn a_dns_name_with_resolve_is_served() {
    let up = Upstream::named("by-name").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream named {{ server localhost:{} resolve 1s }}
         route /{{*rest}} -> named",
        up.addr.port()
    ))
    .await;
    for _ in 0..5 {
        let got = get(&live.url("/")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["upstream"], "by-name");
    }
    // Still served after a re-resolution.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(&live.url("/")).await.status, 200);
    assert_eq!(up.count(), 6);
}
