//! Splits and conditional routes through live gateways: a split's shares
//! over 2,000 requests (the chooser's 10,000-draw bound is a unit test of
//! gw-plan's `split`), a sticky key keeping its side and a weight change
//! moving exactly the keys between the old and new boundary (across a
//! reload), conditions tried before the unconditioned route, falling
//! through to less specific routes, `404` when only conditions failed; and
//! the checker's overlap and weight diagnostics.

use crate::live::{client, send, Live, Upstream};
use bytes::Bytes;
use gw_compiler::host::MemoryHost;
use gw_compiler::plan::{Split, Target};
use gw_compiler::{compile_text, Code};
use gw_runtime::body::full;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use std::time::Duration;

/// An upstream answering its name.
async fn answering(name: &'static str) -> Upstream {
    Upstream::start(move |_req| async move { Response::new(full(name)) }).await
}

/// `GET path` with `headers`, the answer's status and body.
async fn get_with(live: &Live, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = Request::get(live.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let got = send(req.body(Full::new(Bytes::new())).expect("request")).await;
    (got.status, got.body)
}

fn canary(v1: &Upstream, v2: &Upstream, weights: (u32, u32), sticky: bool) -> String {
    let sticky = if sticky { "sticky cookie.session" } else { "" };
    format!(
        "listen 127.0.0.1:0
         upstream checkout-v1 {{ server {} }}
         upstream checkout-v2 {{ server {} }}
         route /checkout/{{*rest}} {{
           split {{ checkout-v1 {}%  checkout-v2 {}%  {sticky} }}
         }}",
        v1.addr, v2.addr, weights.0, weights.1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_shares_follow_the_weights_within_three_percent() {
    let (v1, v2) = (answering("v1").await, answering("v2").await);
    let live = Live::start(&canary(&v1, &v2, (80, 20), false)).await;
    // 2,000 requests over 8 kept-alive connections' worth of concurrency.
    const N: usize = 2_000;
    let c = client();
    let url = live.url("/checkout/pay");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut v2 = 0usize;
            for _ in 0..N / 8 {
                let resp = c
                    .request(Request::get(&url).body(Full::new(Bytes::new())).expect("request"))
                    .await
                    .expect("answer");
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                v2 += usize::from(&body[..] == b"v2");
            }
            v2
        }));
    }
    let mut on_v2 = 0;
    for t in tasks {
        on_v2 += tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("within 60 s")
            .expect("task");
    }
    assert_eq!(v1.count() + v2.count(), N, "every request reached one side");
    assert_eq!(v2.count(), on_v2);
    let share = on_v2 as f64 / N as f64;
    assert!(
        (0.17..=0.23).contains(&share),
        "v2 took {share:.3} of requests, 0.20 ± 0.03 expected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_key_keeps_its_side_and_a_weight_change_moves_only_its_share() {
    let (v1, v2) = (answering("v1").await, answering("v2").await);
    let live = Live::start(&canary(&v1, &v2, (90, 10), true)).await;
    let keys: Vec<String> = (0..300).map(|i| format!("session-{i}")).collect();
    let side_of = |live: &Live, key: String| {
        let url = live.url("/checkout/pay");
        async move {
            let req = Request::get(url)
                .header("cookie", format!("theme=dark; session={key}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            send(req).await.body
        }
    };
    let mut before = Vec::new();
    for k in &keys {
        let first = side_of(&live, k.clone()).await;
        let again = side_of(&live, k.clone()).await;
        assert_eq!(first, again, "{k} changed side between two requests");
        before.push(first);
    }
    // The same sides as gw-plan's chooser says (what `gwc test` checks).
    let split_of = |plan: &gw_compiler::plan::Plan| -> Split {
        match &plan.routes[0].target {
            Target::Split(s) => s.clone(),
            other => panic!("not a split: {other:?}"),
        }
    };
    let old = split_of(&live.gateway.plan());
    for (k, side) in keys.iter().zip(&before) {
        let want = ["v1", "v2"][old.side_for_key(k)];
        assert_eq!(side, want, "{k}");
    }
    // Canary from 10% to 20%: only keys moving from v1 to v2, about 10%.
    let plan = crate::live::plan_of(&canary(&v1, &v2, (80, 20), true), &[]);
    live.gateway.reload(plan).await.expect("reload");
    let new = split_of(&live.gateway.plan());
    let mut moved = 0;
    for (k, was) in keys.iter().zip(&before) {
        let now = side_of(&live, k.clone()).await;
        assert_eq!(now, ["v1", "v2"][new.side_for_key(k)], "{k}");
        match (was.as_str(), now.as_str()) {
            ("v1", "v2") => moved += 1,
            ("v2", "v1") => panic!("{k} left the growing side"),
            _ => {}
        }
    }
    assert!(
        (12..=50).contains(&moved),
        "{moved} of 300 keys moved; about 30 expected"
    );
    // A request without the key is still served, by one side or the other.
    let (status, body) = get_with(&live, "/checkout/pay", &[]).await;
    assert_eq!(status, 200);
    assert!(body == "v1" || body == "v2");
}

#[tokio::test]
async fn conditions_are_tried_first_and_fall_through_to_less_specific_routes() {
    let names = ["search-v1", "search-v2", "engine", "beta", "web", "office"];
    let mut ups = Vec::new();
    for n in names {
        ups.push(answering(n).await);
    }
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream search-v1 {{ server {} }}
         upstream search-v2 {{ server {} }}
         upstream engine {{ server {} }}
         upstream beta {{ server {} }}
         upstream web {{ server {} }}
         upstream office {{ server {} }}
         route GET /search when header.x-beta == \"1\" -> search-v2
         route GET /search when query.engine in [\"v2\", \"next step\"] and header.x-beta != \"1\" -> engine
         route GET /search -> search-v1
         route GET /web/beta when cookie.beta present -> beta
         route /web/{{*rest}} -> web
         route GET /office when client_ip in [\"127.0.0.0/8\"] -> office
         route GET /lab when client_ip == \"10.0.0.0/8\" -> office",
        ups[0].addr, ups[1].addr, ups[2].addr, ups[3].addr, ups[4].addr, ups[5].addr
    ))
    .await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case<'_>] = &[
        ("/search", &[("x-beta", "1")], 200, "search-v2"),
        ("/search?engine=next+step", &[], 200, "engine"),
        ("/search?engine=v2", &[("x-beta", "1")], 200, "search-v2"),
        ("/search?engine=v3", &[("x-beta", "2")], 200, "search-v1"),
        ("/search", &[], 200, "search-v1"),
        ("/web/beta", &[("cookie", "a=1; beta=yes")], 200, "beta"),
        ("/web/beta", &[("cookie", "a=1")], 200, "web"),
        ("/office", &[], 200, "office"),
    ];
    for (path, headers, status, body) in cases {
        let got = get_with(&live, path, headers).await;
        assert_eq!((got.0, got.1.as_str()), (*status, *body), "GET {path} {headers:?}");
    }
    // Only a condition failed: 404 (not 405); another method: 405.
    let (status, _) = get_with(&live, "/lab", &[]).await;
    assert_eq!(status, 404, "GET /lab from 127.0.0.1 is outside 10.0.0.0/8");
    let got = send(
        Request::post(live.url("/lab"))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(got.status, 405);
    assert_eq!(got.header("allow"), Some("GET, HEAD"));
    // A route's name (its metrics label and access-log name) carries its
    // condition, so the routes of one path are told apart.
    let plan = live.gateway.plan();
    assert_eq!(plan.routes[0].head(), "GET /search when header.x-beta == \"1\"");
    assert_eq!(plan.routes[2].head(), "GET /search");
}

fn codes(text: &str) -> Vec<(Code, String)> {
    compile_text(&MemoryHost::new(), "app.gw", text)
        .diagnostics
        .iter()
        .map(|d| (d.code, d.message.clone()))
        .collect()
}

#[test]
fn overlapping_conditions_are_refused_unless_provably_disjoint() {
    let base = "listen 127.0.0.1:8080
                upstream a { server 127.0.0.1:9001 }
                upstream b { server 127.0.0.1:9002 }\n";
    let disjoint = [
        ("header.x == \"1\"", "header.x == \"2\""),
        ("header.x in [\"1\", \"2\"]", "header.x in [\"3\"]"),
        ("header.x == \"1\"", "header.x in [\"2\", \"3\"]"),
        ("header.x == \"1\"", "header.x != \"1\""),
        ("header.x present", "header.x != \"1\" and header.x == \"1\""),
        ("query.q == \"a\" and header.x == \"1\"", "header.x == \"2\""),
        ("client_ip in [\"10.0.0.0/8\"]", "client_ip == \"192.168.0.0/16\""),
        ("client_ip == \"10.1.0.0/16\"", "client_ip != \"10.0.0.0/8\""),
    ];
    for (x, y) in disjoint {
        let text = format!("{base}route GET /s when {x} -> a\nroute GET /s when {y} -> b\n");
        let found = codes(&text);
        assert!(!found.iter().any(|(c, _)| *c == Code::GW0206), "{x} / {y}: {found:?}");
    }
    let overlapping = [
        ("header.x == \"1\"", "query.q == \"1\""),
        ("header.x in [\"1\", \"2\"]", "header.x in [\"2\", \"3\"]"),
        ("header.x present", "header.x == \"1\""),
        ("header.x != \"1\"", "header.x != \"2\""),
        ("client_ip in [\"10.0.0.0/8\"]", "client_ip == \"10.20.0.0/16\""),
    ];
    for (x, y) in overlapping {
        let text = format!("{base}route GET /s when {x} -> a\nroute GET,POST /s when {y} -> b\n");
        let found = codes(&text);
        assert!(found.iter().any(|(c, _)| *c == Code::GW0206), "{x} / {y}: {found:?}");
        // Other methods, or every method against a named one: no overlap.
        let text = format!("{base}route GET /s when {x} -> a\nroute POST /s when {y} -> b\n");
        assert!(!codes(&text).iter().any(|(c, _)| *c == Code::GW0206), "{x} / {y}");
        let text = format!("{base}route GET /s when {x} -> a\nroute /s when {y} -> b\n");
        assert!(!codes(&text).iter().any(|(c, _)| *c == Code::GW0206), "{x} / {y}");
    }
    // A conditioned route and the unconditioned one never collide.
    let text = format!("{base}route GET /s when header.x == \"1\" -> a\nroute GET /s -> b\n");
    assert!(codes(&text)
        .iter()
        .all(|(c, _)| !matches!(c, Code::GW0201 | Code::GW0206)));
}

#[test]
fn split_weights_sides_and_sticky_keys_are_checked() {
    let base = "listen 127.0.0.1:8080
                upstream a { server 127.0.0.1:9001 }
                upstream b { server 127.0.0.1:9002 }\n";
    let with = |split: &str| codes(&format!("{base}route /c/{{*rest}} {{ split {{ {split} }} }}\n"));
    assert!(with("a 90% b 10%").iter().all(|(_, m)| !m.contains("100%")));
    assert!(with("a 100% b 0%").is_empty(), "{:?}", with("a 100% b 0%"));
    let over = with("a 90% b 20%");
    assert!(
        over.iter().any(|(c, m)| *c == Code::GW0207 && m.contains("110%")),
        "{over:?}"
    );
    assert!(with("a 45% b 45% sticky cookie.s")
        .iter()
        .any(|(c, _)| *c == Code::GW0207));
    assert!(with("a 90% c 10%").iter().any(|(c, _)| *c == Code::GW0101));
    assert!(with("a 90% b 10% sticky claim.sub")
        .iter()
        .any(|(c, _)| *c == Code::GW0204));
    assert!(with("a 90% b 10% sticky param.nope")
        .iter()
        .any(|(c, _)| *c == Code::GW0203));
    assert!(with("a 90% b 10% sticky param.rest").is_empty());
    // A split is a target: with `->` it is one too many.
    let two = codes(&format!(
        "{base}route /c/{{*rest}} -> a {{ split {{ a 50% b 50% }} }}\n"
    ));
    assert!(two.iter().any(|(c, _)| *c == Code::GW0202), "{two:?}");
    // Claims and parameters in conditions.
    let claim = codes(&format!("{base}route GET /s/{{id}} when param.id == \"1\" -> a\n"));
    assert!(claim.iter().any(|(c, _)| *c == Code::GW0208), "{claim:?}");
}

#[test]
fn embedded_tests_route_by_headers_query_cookies_and_address_and_name_split_sides() {
    let base = "listen 127.0.0.1:8080
                upstream v1 { server 127.0.0.1:9001 }
                upstream v2 { server 127.0.0.1:9002 }
                route GET /s when header.x-beta == \"1\" -> v2
                route GET /s when query.e in [\"n\"] and header.x-beta != \"1\" -> v2
                route GET /s when cookie.beta present and header.x-beta != \"1\" and query.e != \"n\" -> v2
                route GET /s -> v1
                route GET /o when client_ip == \"10.0.0.0/8\" -> v2
                route /c/{*rest} { split { v1 90% v2 10% sticky cookie.session } }
                route /r/{*rest} { split { v1 50% v2 50% } }\n";
    let plan = crate::live::plan_of(base, &[]);
    let Target::Split(split) = &plan.routes[5].target else {
        panic!("a split")
    };
    // A key of each side, as the runtime would choose.
    let key_on = |side: usize| {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| split.side_for_key(k) == side)
            .expect("a key")
    };
    let (k1, k2) = (key_on(0), key_on(1));
    let passing = format!(
        "test \"t\" {{
           GET /s header x-beta \"1\" -> v2
           GET /s?e=n -> v2
           GET /s cookie beta \"y\" -> v2
           GET /s header cookie \"a=1; beta=y\" -> v2
           GET /s?e=m -> v1
           GET /o client_ip \"10.1.2.3\" -> v2
           GET /o client_ip \"11.1.2.3\" -> 404
           GET /o -> 404
           GET /c/x cookie session \"{k1}\" -> v1
           GET /c/x cookie session \"{k2}\" -> v2
           GET /c/x cookie session \"{k2}\" -> split
           GET /c/x -> split
           GET /r/x -> split
         }}"
    );
    let found = codes(&format!("{base}{passing}"));
    assert!(found.is_empty(), "{found:?}");
    for failing in [
        "GET /s -> v2".to_string(),
        format!("GET /c/x cookie session \"{k1}\" -> v2"),
        "GET /c/x -> v1".to_string(),
        "GET /r/x cookie session \"a\" -> v1".to_string(),
        "GET /s -> split".to_string(),
    ] {
        let found = codes(&format!("{base}test \"t\" {{ {failing} }}"));
        assert!(found.iter().any(|(c, _)| *c == Code::GW0601), "{failing}: {found:?}");
    }
}

#[test]
fn gwc_route_explains_conditions_and_names_the_side_of_a_split() {
    let app = "listen 127.0.0.1:8080
upstream v1 { server 127.0.0.1:9001 }
upstream v2 { server 127.0.0.1:9002 }
route GET /s when header.x-beta == \"1\" -> v2
route GET /s when query.e in [\"n\"] and header.x-beta != \"1\" -> v2
route GET /s -> v1
route /c/{*rest} { split { v1 90% v2 10% sticky cookie.session } }
";
    let beta = crate::support::Gwc::new()
        .file("app.gw", app)
        .args(["route", "app.gw", "GET", "/s?e=m", "--header", "X-Beta: 1"])
        .status(0)
        .stdout_has("-> route `GET /s when header.x-beta == \"1\"`")
        .stdout_has("condition: `query.e in [\"n\"]` does not hold")
        .stdout_has("condition: the winner's conditions hold")
        .run();
    assert!(beta.stdout.contains("route `GET /s` (app.gw:6)"), "{}", beta.stdout);
    crate::support::Gwc::new()
        .file("app.gw", app)
        .args(["route", "app.gw", "GET", "/s"])
        .status(0)
        .stdout_has("-> route `GET /s` (app.gw:6)")
        .stdout_has("condition: `header.x-beta == \"1\"` does not hold")
        .run();
    let plan = crate::live::plan_of(app, &[]);
    let Target::Split(split) = &plan.routes[3].target else {
        panic!("a split")
    };
    let side = ["v1", "v2"][split.side_for_key("u-42")];
    crate::support::Gwc::new()
        .file("app.gw", app)
        .args(["route", "app.gw", "GET", "/c/pay", "--cookie", "session=u-42"])
        .status(0)
        .stdout_has(&format!("split: {side} (for cookie.session = \"u-42\")"))
        .run();
    crate::support::Gwc::new()
        .file("app.gw", app)
        .args(["route", "app.gw", "GET", "/c/pay"])
        .status(0)
        .stdout_has("split: at random (the request has no cookie.session): v1 90%, v2 10%")
        .run();
}
