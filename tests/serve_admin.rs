//! The admin listener end to end: `/healthz`, `/metrics` in Prometheus text
//! format (requests by route and status, latency histograms, server health
//! with readable labels, open connections, retries, rejections by reason)
//! and `/plan` with every secret redacted; a password planted in a store's
//! URL shows in none of `/plan`, `/metrics` or `gwc serve`'s log.

use crate::live::{get, plan_of, Upstream};
use gw_runtime::{Gateway, Options};
use std::net::SocketAddr;
use std::sync::Arc;

async fn start(text: &str) -> (Arc<Gateway>, SocketAddr, SocketAddr) {
    let options = Options {
        admin_override: Some("127.0.0.1:0".into()),
        ..Options::default()
    };
    let gateway = Gateway::start(plan_of(text, &[]), options)
        .await
        .expect("gateway starts");
    let listen = gateway.local_addrs().await[0];
    let admin = gateway.admin_addr().expect("an admin listener");
    (gateway, listen, admin)
}

/// The value of the sample line that starts with `series ` (exact labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_with_latency_and_server_health() {
    let a = Upstream::named("a").await;
    let (_gw, listen, admin) = start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         route GET /a -> a
         route /gone {{ respond 410 }}",
        a.addr
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(get(&format!("http://{listen}/a")).await.status, 200);
    }
    assert_eq!(get(&format!("http://{listen}/gone")).await.status, 410);
    assert_eq!(get(&format!("http://{listen}/nowhere")).await.status, 404);

    assert_eq!(get(&format!("http://{admin}/healthz")).await.status, 200);
    let got = get(&format!("http://{admin}/metrics")).await;
    assert_eq!(got.status, 200);
    assert!(got.header("content-type").unwrap_or("").starts_with("text/plain"));
    let m = got.body;
    assert_eq!(
        sample(&m, "gw_requests_total{route=\"GET /a\",method=\"GET\",status=\"200\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "gw_requests_total{route=\"/gone\",method=\"GET\",status=\"410\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "gw_request_duration_seconds_count{route=\"GET /a\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "gw_request_duration_seconds_bucket{route=\"GET /a\",le=\"+Inf\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "gw_rejections_total{reason=\"not_found\"}"),
        Some(1.0),
        "{m}"
    );
    // The server as written (no `ADDR@ADDR` identity).
    let server = format!("gw_upstream_server_healthy{{upstream=\"a\",server=\"{}\"}}", a.addr);
    assert_eq!(sample(&m, &server), Some(1.0), "{m}");
    assert!(!m.contains('@'), "{m}");
    // The admin connection itself is not counted; the client's pooled ones may be.
    assert!(
        sample(&m, "gw_open_connections{listener=\"127.0.0.1:0\"}").is_some(),
        "{m}"
    );
    assert_eq!(sample(&m, "gw_retries_total{upstream=\"a\"}"), Some(0.0), "{m}");
    for name in [
        "gw_requests_total",
        "gw_request_duration_seconds",
        "gw_upstream_server_healthy",
        "gw_rejections_total",
    ] {
        assert!(m.contains(&format!("# TYPE {name} ")), "{name} has a TYPE line\n{m}");
    }
}

#[tokio::test]
async fn plan_is_the_running_plan_as_json_with_secrets_redacted() {
    let a = Upstream::named("a").await;
    let (gw, _listen, admin) = start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         auth partners api_key {{ keys \"k-inline-123\", \"k-inline-456\" }}
         auth users jwt {{
           issuer \"https://auth.gw.test\" audience \"gw\" algorithms HS256
           secret \"hs-inline-secret-789\"
         }}
         route GET /p -> a {{ auth partners }}
         route GET /u -> a {{ auth users }}",
        a.addr
    ))
    .await;
    let got = get(&format!("http://{admin}/plan")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/json"));
    for secret in ["k-inline-123", "k-inline-456", "hs-inline-secret-789"] {
        assert!(!got.body.contains(secret), "/plan shows `{secret}`:\n{}", got.body);
    }
    let plan = got.json();
    assert_eq!(plan["routes"].as_array().map(Vec::len), Some(2));
    assert_eq!(plan["upstreams"][0]["servers"][0]["address"], a.addr.to_string());
    assert!(got.body.matches("<redacted>").count() >= 3, "{}", got.body);

    // A reload shows the new plan.
    gw.reload(plan_of(
        &format!(
            "listen 127.0.0.1:0
             upstream a {{ server {} }}
             route GET /only -> a",
            a.addr
        ),
        &[],
    ))
    .await
    .expect("reload");
    let plan = get(&format!("http://{admin}/plan")).await.json();
    assert_eq!(plan["routes"][0]["path"], "/only");
}

#[tokio::test]
async fn admin_answers_only_its_paths_and_read_methods() {
    let a = Upstream::named("a").await;
    let (_gw, _listen, admin) = start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         route /{{*rest}} -> a",
        a.addr
    ))
    .await;
    assert_eq!(get(&format!("http://{admin}/other")).await.status, 404);
    let req = hyper::Request::post(format!("http://{admin}/metrics"))
        .body(Default::default())
        .expect("request");
    let got = crate::live::send(req).await;
    assert_eq!(got.status, 405);
    assert_eq!(got.header("allow"), Some("GET, HEAD"));
    assert_eq!(a.count(), 0, "admin requests never reach the upstreams");
}

/// A password planted in a store's URL (a Redis that is not there, so that
/// the store fails and logs as it does): `/plan` shows the URL without it,
/// and neither `/metrics` nor the gateway's log (the in-process gateway's
/// through `gwc serve`, below) show it anywhere.
const PLANTED: &str = "pw-planted-4711";

fn with_store(upstream: SocketAddr, redis_port: u16) -> String {
    format!(
        "listen 127.0.0.1:0
         upstream a {{ server {upstream} }}
         store shared redis \"redis://gw:{PLANTED}@127.0.0.1:{redis_port}/2\" {{ timeout 50ms on_error allow }}
         limit per_client {{ rate 10/s burst 10 key client_ip store shared }}
         route GET /{{*rest}} -> a {{ limit per_client }}"
    )
}

#[tokio::test]
async fn a_password_in_a_store_url_is_never_shown_by_the_admin_listener() {
    let a = Upstream::named("a").await;
    let (_gw, listen, admin) = start(&with_store(a.addr, crate::proxy_support::dead_port())).await;
    // The store is used (and fails: on_error allow).
    assert_eq!(get(&format!("http://{listen}/x")).await.status, 200);
    let plan = get(&format!("http://{admin}/plan")).await;
    assert_eq!(plan.status, 200);
    assert!(!plan.body.contains(PLANTED), "/plan shows the password:\n{}", plan.body);
    let url = plan.json()["stores"][0]["url"].as_str().unwrap_or_default().to_string();
    assert!(
        url.starts_with("redis://gw:") && url.ends_with("/2"),
        "the rest of the URL stays: {url}"
    );
    let metrics = get(&format!("http://{admin}/metrics")).await;
    assert!(
        !metrics.body.contains(PLANTED),
        "/metrics shows the password:\n{}",
        metrics.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_store_url_is_never_logged_by_gwc_serve() {
    use crate::serve_harness::Served;
    let a = Upstream::named("a").await;
    let text = with_store(a.addr, crate::proxy_support::dead_port());
    let served = Served::start(&[("app.gw", &text)], &["app.gw"]);
    let listen = served.bound(1).await[0];
    for path in ["/x", "/y"] {
        assert_eq!(get(&format!("http://{listen}{path}")).await.status, 200);
    }
    // The store's failure is logged (so the log had its chance to leak),
    // and the access lines of both requests are in.
    let wait = std::time::Duration::from_secs(20);
    served.wait_lines(wait, 2, |l| l.contains("gw::access")).await;
    served.wait_lines(wait, 1, |l| l.contains("redis store")).await;
    let log = served.output();
    assert!(!log.contains(PLANTED), "the log shows the password:\n{log}");
}
