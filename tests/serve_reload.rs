//! Hot reload in process ([`Gateway::reload`]): listeners the new plan adds
//! answer and those it drops stop, unchanged servers keep their health,
//! requests in flight finish on the plan they started with, and a plan that
//! cannot bind changes nothing.

use crate::live::{get, plan_of, Live, Upstream};
use crate::serve_harness::{dead_addr, exchange};
use gw_runtime::body::full;
use hyper::Response;
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
    assert!(
        TcpStream::connect(old).await.is_err(),
        "the removed listener refuses connections"
    );
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
    let rt = live.gateway.shared().current.load_full();
    rt.upstreams[0].set.load().backends[0].state.set_healthy(false);
    live.gateway.reload(plan_of(&text("/two"), &[])).await.expect("reload");
    let rt = live.gateway.shared().current.load_full();
    assert!(!rt.upstreams[0].set.load().backends[0].state.is_healthy());
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
