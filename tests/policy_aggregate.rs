//! `aggregate`: parts fetched concurrently through their upstreams, merged
//! by part name; optional parts become `null`, a required failure is a bare
//! 502, and a slow part cannot hold the answer past the timeout.

use crate::live::{get, Live, Upstream};
use crate::policy::{bearer, claims, gateway, path, rs256, AUD, ISS};
use gw_runtime::body::full;
use serde_json::json;
use std::time::{Duration, Instant};

async fn json_server(body: serde_json::Value) -> Upstream {
    Upstream::start(move |req| {
        let mut b = body.clone();
        b["path"] = json!(req.uri().path_and_query().map_or("/", |p| p.as_str()));
        async move { hyper::Response::new(full(b.to_string())) }
    })
    .await
}

async fn failing() -> Upstream {
    Upstream::start(|_req| async {
        let mut r = hyper::Response::new(full("{\"secret\":\"internal detail\"}"));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
    .await
}

async fn slow(delay: Duration) -> Upstream {
    Upstream::start(move |_req| async move {
        tokio::time::sleep(delay).await;
        hyper::Response::new(full("{\"late\":true}"))
    })
    .await
}

#[tokio::test]
async fn parts_are_merged_by_name_with_claims_in_their_paths() {
    let profile = json_server(json!({ "name": "Alice" })).await;
    let orders = json_server(json!({ "count": 2 })).await;
    let (live, _up) = gateway(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {{up}} }}
         upstream login {{ server {} }}
         upstream orders {{ server {} }}
         auth users jwt {{ issuer \"{ISS}\" audience \"{AUD}\" algorithms RS256 public_key file(\"{}\") }}
         route GET /me/summary {{
           auth users
           aggregate {{
             profile login GET \"/users/{{claim.sub}}\"
             orders orders GET \"/orders?user={{claim.sub}}\" optional
             timeout 2s
           }}
         }}
         route /{{*rest}} -> app",
        profile.addr,
        orders.addr,
        path("rsa-public.pem")
    ))
    .await;
    let got = bearer(&live, "/me/summary", &rs256(&claims(json!({ "sub": "alice" })))).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.json(),
        json!({
            "profile": { "name": "Alice", "path": "/users/alice" },
            "orders": { "count": 2, "path": "/orders?user=alice" },
        })
    );
    assert_eq!(get(&live.url("/me/summary")).await.status, 401, "the auth runs first");
}

async fn summary(profile: &Upstream, orders: &Upstream, timeout: &str) -> Live {
    Live::start(&format!(
        "listen 127.0.0.1:0
         upstream login {{ server {} }}
         upstream orders {{ server {} }}
         route GET /summary {{
           aggregate {{
             profile login GET \"/profile\"
             orders orders GET \"/orders\" optional
             timeout {timeout}
           }}
         }}",
        profile.addr, orders.addr
    ))
    .await
}

#[tokio::test]
async fn an_optional_part_that_fails_becomes_null() {
    let profile = json_server(json!({ "name": "Alice" })).await;
    let orders = failing().await;
    let live = summary(&profile, &orders, "2s").await;
    let got = get(&live.url("/summary")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["orders"], serde_json::Value::Null);
    assert_eq!(got.json()["profile"]["name"], "Alice");
    // An optional part whose server is gone: null too.
    orders.stop();
    let dead = Upstream::named("x").await;
    dead.stop();
    let live = summary(&profile, &dead, "2s").await;
    let got = get(&live.url("/summary")).await;
    assert_eq!(got.status, 200);
    assert!(got.json()["orders"].is_null());
}

#[tokio::test]
async fn a_required_part_that_fails_is_a_bare_502() {
    let profile = failing().await;
    let orders = json_server(json!({ "count": 1 })).await;
    let live = summary(&profile, &orders, "2s").await;
    let got = get(&live.url("/summary")).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.body, "{\"error\":\"bad gateway\",\"status\":502}\n");
    assert!(!got.body.contains("internal") && !got.body.contains("127.0.0.1"));
    // A required part that answers something other than JSON fails it too.
    let html = Upstream::start(|_req| async { hyper::Response::new(full("<html>")) }).await;
    let live = summary(&html, &orders, "2s").await;
    assert_eq!(get(&live.url("/summary")).await.status, 502);
}

#[tokio::test]
async fn a_slow_optional_part_cannot_hold_the_answer_past_the_timeout() {
    let profile = json_server(json!({ "name": "Alice" })).await;
    // Answers after a minute: an answer at all (the client waits 10 s) is
    // the timeout's.
    let orders = slow(Duration::from_secs(60)).await;
    let live = summary(&profile, &orders, "300ms").await;
    let started = Instant::now();
    let got = get(&live.url("/summary")).await;
    let took = started.elapsed();
    assert_eq!(got.status, 200);
    assert!(got.json()["orders"].is_null());
    assert!(took >= Duration::from_millis(250), "the part had its time: {took:?}");
}

/// Both parts' servers hold their request until the other's has arrived
/// too: fetched one after the other, the first would never be answered and
/// the required part would fail at the timeout.
#[tokio::test]
async fn parts_are_fetched_concurrently() {
    let both_in = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let meeting = || {
        let both_in = both_in.clone();
        Upstream::start(move |_req| {
            let both_in = both_in.clone();
            async move {
                both_in.wait().await;
                hyper::Response::new(full("{\"met\":true}"))
            }
        })
    };
    let (profile, orders) = (meeting().await, meeting().await);
    let live = summary(&profile, &orders, "5s").await;
    let got = get(&live.url("/summary")).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json(),
        json!({ "profile": { "met": true }, "orders": { "met": true } })
    );
}

#[tokio::test]
async fn parts_follow_their_upstreams_balancing() {
    let a = json_server(json!({ "server": "a" })).await;
    let b = json_server(json!({ "server": "b" })).await;
    let orders = json_server(json!({})).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream login {{ server {} server {} }}
         upstream orders {{ server {} }}
         route GET /summary {{
           aggregate {{
             profile login GET \"/profile\"
             orders orders GET \"/orders\" optional
           }}
         }}",
        a.addr, b.addr, orders.addr
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&live.url("/summary")).await.status, 200);
    }
    assert_eq!(
        (a.count(), b.count(), orders.count()),
        (2, 2, 4),
        "round robin over login's servers"
    );
}

#[tokio::test]
async fn part_paths_percent_encode_request_values() {
    let profile = json_server(json!({ "name": "Alice" })).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream login {{ server {} }}
         route GET /lookup {{
           aggregate {{ profile login GET \"/users?name={{header.x-name}}\" }}
         }}",
        profile.addr
    ))
    .await;
    let req = hyper::Request::get(live.url("/lookup"))
        .header("x-name", "a&admin=1 b")
        .body(Default::default())
        .unwrap();
    let got = crate::live::send(req).await;
    assert_eq!(got.status, 200, "{}", got.body);
    // The value stays one query parameter: `&`, `=` and the space are encoded.
    assert_eq!(got.json()["profile"]["path"], "/users?name=a%26admin%3D1%20b");
}
