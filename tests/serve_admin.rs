//! The admin listener end to end: `/healthz`, `/metrics` in Prometheus text
//! format (requests by route and status, latency histograms, server health
//! with readable labels, open connections, retries, rejections by reason)
//! and `/plan` with every secret redacted.

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
        sample(&m, "gw_requests_total{route=\"GET /a\",status=\"2xx\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "gw_requests_total{route=\"/gone\",status=\"4xx\"}"),
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
    assert!(sample(&m, "gw_open_connections").is_some(), "{m}");
    assert_eq!(sample(&m, "gw_retries_total"), Some(0.0), "{m}");
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
