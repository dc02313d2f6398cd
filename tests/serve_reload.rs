//! Hot reload in process ([`Gateway::reload`]): listeners the new plan adds
//! answer and those it drops stop, unchanged servers keep their health,
//! requests in flight finish on the plan they started with, a plan that
//! cannot bind changes nothing, and neither does one with no listener, nor
//! (unless allowed) one that removes every route or replaces every listener.

use crate::live::{get, plan_of, Live, Upstream};
use crate::serve_harness::{dead_addr, exchange};
use gw_runtime::body::full;
use gw_runtime::{Gateway, Options};
use hyper::Response;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpStream;

fn config(listens: &[String], upstream: std::net::SocketAddr, route: &str) -> String {
    let mut text: String = listens.iter().map(|l| format!("listen {l}\n")).collect();
    text.push_str(&format!("upstream a {{ server {upstream} }}\nroute GET {route} -> a\n"));
    text
}

#[tokio::test]
async fn a_listener_added_by_a_reload_answers_and_a_removed_one_stops() {
    let up = Upstream::named("a").await;
    let first = "127.0.0.1:0".to_string();
    let live = Live::start(&config(std::slice::from_ref(&first), up.addr, "/x")).await;
    let old = live.addrs[0];
    // A kept-alive connection on the listener that will go away.
    let mut kept = TcpStream::connect(old).await.expect("connect");
    let req = b"GET /x HTTP/1.1\r\nhost: gw.test\r\n\r\n";
    assert_eq!(exchange(&mut kept, req).await.map(|r| r.0), Some(200));

    // Add a second listener (on a port that was just free).
    let second = dead_addr().to_string();
    live.gateway
        .reload(plan_of(&config(&[first.clone(), second.clone()], up.addr, "/x"), &[]))
        .await
        .expect("reload adds a listener");
    let addrs = live.gateway.local_addrs().await;
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0], old, "the unchanged listener keeps its socket");
    assert_eq!(addrs[1].to_string(), second);
    assert_eq!(get(&format!("http://{second}/x")).await.status, 200);
    assert_eq!(get(&format!("http://{old}/x")).await.status, 200);

    // Drop the first listener.
    live.gateway
        .reload(plan_of(&config(std::slice::from_ref(&second), up.addr, "/x"), &[]))
        .await
        .expect("reload removes a listener");
    assert_eq!(live.gateway.local_addrs().await.len(), 1);
    // The reload waits a bounded time (2 s) for every thread's accept loop
    // to let go of the socket; on a loaded machine one can come later.
    let refused = crate::live::eventually(Duration::from_secs(30), || {
        std::net::TcpStream::connect_timeout(&old, Duration::from_secs(1)).is_err()
    })
    .await;
    assert!(refused, "the removed listener refuses connections");
    assert_eq!(get(&format!("http://{second}/x")).await.status, 200);
    // Its kept-alive connection is closed gracefully (at once, being idle).
    let closed = crate::serve_harness::closed_within(&mut kept, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the removed listener's idle connection is closed");
}

#[tokio::test]
async fn a_reload_that_cannot_bind_changes_nothing() {
    let up = Upstream::named("a").await;
    let live = Live::start(&config(&["127.0.0.1:0".into()], up.addr, "/x")).await;
    // Something else holds this port.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").to_string();
    let err = live
        .gateway
        .reload(plan_of(&config(&["127.0.0.1:0".into(), taken], up.addr, "/y"), &[]))
        .await
        .expect_err("the reload fails");
    assert!(err.contains("cannot listen"), "{err}");
    assert_eq!(live.gateway.local_addrs().await, live.addrs);
    assert_eq!(get(&live.url("/x")).await.status, 200, "the old routes still serve");
    assert_eq!(get(&live.url("/y")).await.status, 404, "the new ones never did");
}

#[tokio::test]
async fn unchanged_servers_keep_their_health_across_a_reload() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let text = |route: &str| {
        format!(
            "listen 127.0.0.1:0
             upstream pool {{ server {} server {} }}
             route GET {route} -> pool",
            a.addr, b.addr
        )
    };
    let live = Live::start(&text("/one")).await;
    live.gateway.servers("pool")[0].1.set_healthy(false);
    live.gateway.reload(plan_of(&text("/two"), &[])).await.expect("reload");
    assert!(!live.gateway.servers("pool")[0].1.is_healthy());
    for _ in 0..4 {
        assert_eq!(get(&live.url("/two")).await.json()["upstream"], "b");
    }
    assert_eq!(a.count(), 0, "the server that was down stays down");
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_plan_it_started_with() {
    // Holds the request until the reload is done.
    let (reloaded, wait) = tokio::sync::watch::channel(false);
    let slow = Upstream::start(move |_req| {
        let mut wait = wait.clone();
        async move {
            let _ = wait.wait_for(|done| *done).await;
            Response::new(full("slow and old"))
        }
    })
    .await;
    let fast = Upstream::named("new").await;
    let live = Live::start(&config(&["127.0.0.1:0".into()], slow.addr, "/x")).await;
    let url = live.url("/x");
    let pending = tokio::spawn(async move { get(&url).await });
    let reached = crate::live::eventually(Duration::from_secs(10), || {
        slow.arrived.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    assert!(reached, "the slow upstream got the request");
    live.gateway
        .reload(plan_of(&config(&["127.0.0.1:0".into()], fast.addr, "/x"), &[]))
        .await
        .expect("reload");
    assert_eq!(
        get(&live.url("/x")).await.json()["upstream"],
        "new",
        "new requests take the new plan"
    );
    let _ = reloaded.send(true);
    let old = pending.await.expect("the slow request");
    assert_eq!((old.status, old.body.as_str()), (200, "slow and old"));
}

/// Reloads `live` with `text`; the error, after checking that nothing changed.
async fn refused(live: &Live, text: &str) -> String {
    let before = live.gateway.metrics().reload_failures.load(Ordering::Relaxed);
    let err = live
        .gateway
        .reload(plan_of(text, &[]))
        .await
        .expect_err("the reload is refused");
    assert_eq!(
        live.gateway.local_addrs().await,
        live.addrs,
        "the listeners are unchanged"
    );
    assert_eq!(get(&live.url("/x")).await.status, 200, "the running plan serves");
    assert_eq!(
        live.gateway.metrics().reload_failures.load(Ordering::Relaxed),
        before + 1,
        "counted in gw_reload_failures_total"
    );
    err
}

#[tokio::test]
async fn a_plan_without_a_listener_is_never_swapped_in_nor_started() {
    let up = Upstream::named("a").await;
    // The admin listener on a port of its own choosing (a port found free
    // and closed could be taken by another test before the gateway binds),
    // at another loopback address than the listener's.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0\nadmin 127.0.0.2:0\n{}",
        config(&[], up.addr, "/x")
    ))
    .await;
    let admin = live.gateway.admin_addr().expect("an admin listener");
    // An empty file, and routes with an admin listener alone.
    for text in ["".to_string(), format!("admin {admin}\n{}", config(&[], up.addr, "/x"))] {
        let err = refused(&live, &text).await;
        assert!(err.contains("no `listen`"), "{err}");
    }
    assert_eq!(live.gateway.admin_addr(), Some(admin), "the admin listener stays");
    assert!(tokio::net::TcpStream::connect(admin).await.is_ok());
    // Allowing drastic reloads does not allow this one, nor a start.
    let allowing = Options {
        allow_drastic_reload: true,
        ..Options::default()
    };
    let err = Gateway::start(plan_of(&config(&[], up.addr, "/x"), &[]), allowing)
        .await
        .err()
        .expect("no start without a listener");
    assert!(err.contains("no `listen`"), "{err}");
}

#[tokio::test]
async fn a_reload_that_removes_every_route_is_refused_unless_allowed() {
    let up = Upstream::named("a").await;
    let text = config(&["127.0.0.1:0".into()], up.addr, "/x");
    let live = Live::start(&text).await;
    let err = refused(&live, "listen 127.0.0.1:0\n").await;
    assert!(err.contains("removes every route"), "{err}");
    assert!(err.contains("--allow-drastic-reload"), "says how: {err}");
    // Removing some routes is an ordinary reload.
    live.gateway
        .reload(plan_of(&format!("{text}route GET /y {{ respond 204 }}\n"), &[]))
        .await
        .expect("adding a route");
    live.gateway
        .reload(plan_of(&text, &[]))
        .await
        .expect("removing one of two");

    let allowed = Gateway::start(
        plan_of(&text, &[]),
        Options {
            allow_drastic_reload: true,
            ..Options::default()
        },
    )
    .await
    .expect("gateway starts");
    let addr = allowed.local_addrs().await[0];
    allowed
        .reload(plan_of("listen 127.0.0.1:0\n", &[]))
        .await
        .expect("allowed: every route removed");
    assert_eq!(get(&format!("http://{addr}/x")).await.status, 404);
}

#[tokio::test]
async fn a_reload_that_replaces_every_listener_is_refused_unless_allowed() {
    let up = Upstream::named("a").await;
    let live = Live::start(&config(&["127.0.0.1:0".into()], up.addr, "/x")).await;
    let elsewhere = dead_addr().to_string();
    let err = refused(&live, &config(std::slice::from_ref(&elsewhere), up.addr, "/x")).await;
    assert!(err.contains("keeps none of the listeners"), "{err}");
    assert!(
        std::net::TcpStream::connect(&elsewhere).is_err(),
        "the new address was not bound"
    );
    // Keeping one and adding one is an ordinary reload.
    live.gateway
        .reload(plan_of(
            &config(&["127.0.0.1:0".into(), elsewhere.clone()], up.addr, "/x"),
            &[],
        ))
        .await
        .expect("adding a listener");
    assert_eq!(get(&format!("http://{elsewhere}/x")).await.status, 200);

    let allowed = Gateway::start(
        plan_of(&config(&["127.0.0.1:0".into()], up.addr, "/x"), &[]),
        Options {
            allow_drastic_reload: true,
            ..Options::default()
        },
    )
    .await
    .expect("gateway starts");
    let old = allowed.local_addrs().await[0];
    let moved = dead_addr().to_string();
    allowed
        .reload(plan_of(&config(std::slice::from_ref(&moved), up.addr, "/x"), &[]))
        .await
        .expect("allowed: every listener replaced");
    assert_eq!(get(&format!("http://{moved}/x")).await.status, 200);
    assert!(tokio::net::TcpStream::connect(old).await.is_err());
}
