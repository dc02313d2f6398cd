//! `size_of` bounds of the futures that decide the gateway's memory and the
//! bytes it moves per request (bench/README.md, steps 24-27): a connection's
//! task, which every connection carries whether it waits or not; a
//! request's future, copied into its box and touched at every poll; and the
//! policy check, boxed by every request on a route with policies. An added
//! `async fn` layer or a local kept across an `await` grows one of them and
//! fails here instead of silently undoing "2.1 KiB per idle connection".
//!
//! The bounds sit a little above the sizes measured in the test profile when
//! they were set (the release build's are smaller, and in the commit that
//! set them).

use crate::conn::{Conn, ConnTracker};
use crate::listen::serve_accepted;
use crate::loaded::{LoadedPlan, Shared};
use crate::proxy;
use hyper::Request;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// A plan with one proxied route and one with every policy
/// (`runtime/testdata/policies.gw`, built).
async fn shared() -> Arc<Shared> {
    let plan = crate::testdata::plan(crate::testdata::POLICIES);
    Arc::new(Shared::new(LoadedPlan::load(Arc::new(plan), None).await))
}

/// Checks `size` against `bound`, naming the future (and printing the sizes
/// for whoever moves a bound).
fn within(what: &str, size: usize, bound: usize) {
    eprintln!("{what}: {size} bytes (bound {bound})");
    assert!(size <= bound, "{what} grew to {size} bytes (bound {bound})");
}

#[tokio::test]
async fn a_connection_s_task_stays_small() {
    let shared = shared().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let tracker = Arc::new(ConnTracker::new(shared.metrics.clone()));
    let guard = tracker.try_enter(10).expect("a place");
    let (_stop, closing) = tokio::sync::watch::channel(false);
    let task = serve_accepted(stream, addr, guard, None, shared, closing);
    within("a connection's task", std::mem::size_of_val(&task), 1_520);
}

#[tokio::test]
async fn a_request_s_future_stays_small() {
    let shared = shared().await;
    let conn = Conn::new("127.0.0.1:1".parse().expect("an address"), false);
    let req = Request::new(http_body_util::Full::new(bytes::Bytes::new()));
    let handle = proxy::handle(shared, conn, req);
    within("a request's future", std::mem::size_of_val(&handle), 3_368);
}

#[tokio::test]
async fn the_policy_check_stays_small() {
    let shared = shared().await;
    let loaded = shared.current.load_full();
    let route = loaded
        .plan
        .routes
        .iter()
        .find(|r| r.auth.is_some())
        .expect("a route with policies");
    let client_ip = "127.0.0.1".parse().expect("an address");
    let req = Request::new(());
    let check = crate::policy::check(&loaded.policies, route, &req, client_ip, None);
    within("the policy check", std::mem::size_of_val(&check), 336);
}
