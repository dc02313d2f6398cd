//! `/metrics` read as Prometheus reads it, and the admin endpoints an
//! operator's tools use: both exposition formats parsed by the Prometheus
//! project's own Python parsers (`prometheus_client`: the text format's,
//! and OpenMetrics', which refuses what is not valid) with every family,
//! its type and its labels checked; label values bounded (a route by its
//! head, an unknown method as `other`); `/ready` (`503` while draining,
//! with a request held in flight) and `/upstreams` (health, ejection,
//! in-flight requests); and the Grafana dashboard's queries, each metric
//! of which a live gateway exposes.

use crate::live::{get, plan_of, send, Upstream};
use crate::serve_harness::Served;
use bytes::Bytes;
use gw_runtime::{Gateway, Options};
use http_body_util::Full;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

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

async fn scrape(admin: SocketAddr, openmetrics: bool) -> crate::live::Got {
    let mut req = hyper::Request::get(format!("http://{admin}/metrics"));
    if openmetrics {
        req = req.header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        );
    }
    send(req.body(Full::new(Bytes::new())).expect("request")).await
}

/// A gateway with something in every family: two upstreams (one whose
/// first server is dead, so a retry goes to the second), a limit kept in
/// memory, a CORS route; requests answered, refused and not found.
async fn busy_gateway() -> (Arc<Gateway>, SocketAddr, SocketAddr, Upstream, String) {
    let a = Upstream::named("a").await;
    let dead = crate::proxy_support::dead_port();
    let (gw, listen, admin) = start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {a} }}
         upstream b {{
           server 127.0.0.1:{dead}
           server {a}
           balance round_robin
           retry 1 on connect_error
         }}
         limit per_client {{ rate 1000/s burst 1000 key client_ip }}
         route GET /a/{{id}} -> a {{ limit per_client }}
         route GET /b -> b
         route /any -> a
         route GET /cors -> a {{ cors {{ origins \"https://ok.test\" }} }}
         route GET /teapot {{ respond 418 \"short and stout\" }}
         route GET /quoted host \"q.test\" {{ respond 204 }}",
        a = a.addr
    ))
    .await;
    for path in ["/a/1", "/a/2", "/a/3", "/b", "/b", "/teapot", "/nowhere"] {
        get(&format!("http://{listen}{path}")).await;
    }
    // A method the language does not name.
    let purge = hyper::Request::builder()
        .method("PURGE")
        .uri(format!("http://{listen}/any"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(purge).await.status, 200);
    // A preflight from an origin the route does not allow.
    let preflight = hyper::Request::builder()
        .method("OPTIONS")
        .uri(format!("http://{listen}/cors"))
        .header("origin", "https://evil.test")
        .header("access-control-request-method", "GET")
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(preflight).await;
    (gw, listen, admin, a, format!("127.0.0.1:{dead}"))
}

/// One family as the Python parser saw it.
#[derive(Debug, serde::Deserialize)]
struct Family {
    #[serde(rename = "type")]
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The parser's script: reads the exposition on stdin, prints its
/// families as JSON (name → type and samples). OpenMetrics' parser raises
/// on anything invalid (a clashing name, a family split in two, a missing
/// `# EOF`).
const PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families as text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
parse = om if sys.argv[1] == "openmetrics" else text
out = {}
for f in parse(sys.stdin.read()):
    if f.name in out:
        raise SystemExit("family %s twice" % f.name)
    out[f.name] = {"type": f.type, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value if math.isfinite(s.value) else -1}
        for s in f.samples]}
print(json.dumps(out))
"#;

/// Parses `exposition` with the Python parser of `format`, or `None` when
/// the parser is not installed (tests/run installs it; CI must have it).
fn parse(exposition: &str, format: &str) -> Option<BTreeMap<String, Family>> {
    use std::io::Write;
    let Some(python) = std::env::var_os("GW_PROMETHEUS_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "GW_PROMETHEUS_PYTHON is not set: tests/run installs prometheus_client"
        );
        eprintln!("skipped: GW_PROMETHEUS_PYTHON is not set (tests/run installs prometheus_client)");
        return None;
    };
    let mut child = std::process::Command::new(python)
        .args(["-c", PARSE, format])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python ends");
    assert!(
        out.status.success(),
        "the {format} parser refused /metrics: {}\n{exposition}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the script's JSON"))
}

/// Every family the gateway promises (docs/runtime.md): its type and the
/// labels of its samples (`le` aside).
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("gw_requests", "counter", &["route", "method", "status"]),
    ("gw_request_duration_seconds", "histogram", &["route"]),
    ("gw_upstream_requests", "counter", &["upstream", "server"]),
    ("gw_upstream_errors", "counter", &["upstream", "server", "kind"]),
    (
        "gw_upstream_request_duration_seconds",
        "histogram",
        &["upstream", "server"],
    ),
    ("gw_upstream_server_healthy", "gauge", &["upstream", "server"]),
    ("gw_upstream_server_ejected", "gauge", &["upstream", "server"]),
    ("gw_upstream_server_ejections", "counter", &["upstream", "server"]),
    ("gw_upstream_server_in_flight", "gauge", &["upstream", "server"]),
    ("gw_retries", "counter", &["upstream"]),
    ("gw_retry_budget_refusals", "counter", &["upstream"]),
    ("gw_limit_keys", "gauge", &["limit"]),
    ("gw_limit_overflow", "counter", &["limit"]),
    ("gw_rejections", "counter", &["reason"]),
    ("gw_open_connections", "gauge", &["listener"]),
    ("gw_connections", "counter", &["listener"]),
    ("gw_reloads", "counter", &[]),
    ("gw_reload_failures", "counter", &[]),
    ("gw_config", "info", &["hash"]),
    ("gw_config_loaded_timestamp_seconds", "gauge", &[]),
    ("gw_build", "info", &["version"]),
    ("process_cpu_seconds", "counter", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_max_fds", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
];

/// The value of the one sample named `name` with `labels` (among others).
fn value(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .values()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[tokio::test]
async fn metrics_parse_strictly_in_both_formats_with_every_family_typed_and_labelled() {
    let (_gw, _listen, admin, _a, dead) = busy_gateway().await;
    let text = scrape(admin, false).await;
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let om = scrape(admin, true).await;
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(!text.body.contains("# EOF"), "{}", text.body);

    for (format, body) in [("text", &text.body), ("openmetrics", &om.body)] {
        let Some(families) = parse(body, format) else { return };
        for (name, kind, labels) in FAMILIES {
            // The text format knows no `info` (a gauge named `_info`); its
            // parser may keep a counter's `_total` in the family's name.
            let kind = match (format, *kind) {
                ("text", "info") => "gauge",
                (_, k) => k,
            };
            let family = [name.to_string(), format!("{name}_total"), format!("{name}_info")]
                .iter()
                .find_map(|n| families.get(n))
                .unwrap_or_else(|| panic!("{format}: no family {name}: {:?}", families.keys()));
            assert_eq!(family.kind, kind, "{format}: the type of {name}");
            assert!(!family.samples.is_empty(), "{format}: {name} has samples");
            let want: BTreeSet<&str> = labels.iter().copied().collect();
            for s in &family.samples {
                let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).filter(|k| *k != "le").collect();
                assert_eq!(got, want, "{format}: the labels of {s:?}");
            }
        }
        let ok = |n: &str, l: &[(&str, &str)]| value(&families, n, l);
        // A route by its head, not by the paths it took; the exact status.
        assert_eq!(
            ok(
                "gw_requests_total",
                &[("route", "GET /a/{id}"), ("method", "GET"), ("status", "200")]
            ),
            Some(3.0),
            "{format}"
        );
        assert_eq!(
            ok("gw_requests_total", &[("route", "GET /teapot"), ("status", "418")]),
            Some(1.0),
            "{format}"
        );
        assert_eq!(
            ok(
                "gw_requests_total",
                &[("route", "/any"), ("method", "other"), ("status", "200")]
            ),
            Some(1.0),
            "{format}: a method the language does not name"
        );
        assert_eq!(
            ok("gw_requests_total", &[("route", ""), ("status", "404")]),
            Some(1.0),
            "{format}"
        );
        let routes: BTreeSet<&str> = families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == "gw_requests_total")
            .filter_map(|s| s.labels.get("route").map(String::as_str))
            .collect();
        assert!(!routes.iter().any(|r| r.contains("/a/1")), "{format}: {routes:?}");
        // A head with quotes (its host), escaped and read back as written.
        assert_eq!(
            ok(
                "gw_request_duration_seconds_count",
                &[("route", "GET /quoted host \"q.test\"")]
            ),
            Some(0.0),
            "{format}"
        );
        assert_eq!(
            ok("gw_request_duration_seconds_count", &[("route", "GET /a/{id}")]),
            Some(3.0),
            "{format}"
        );
        // The retry: the dead server refused, the other answered; the
        // second request skipped the dead one, ejected by then.
        assert_eq!(ok("gw_retries_total", &[("upstream", "b")]), Some(1.0), "{format}");
        assert_eq!(
            ok("gw_upstream_errors_total", &[("upstream", "b"), ("kind", "connect")]),
            Some(1.0),
            "{format}"
        );
        assert_eq!(
            ok("gw_upstream_server_ejected", &[("upstream", "b"), ("server", &dead)]),
            Some(1.0),
            "{format}"
        );
        assert_eq!(
            ok("gw_upstream_server_ejections_total", &[("upstream", "b")]),
            Some(1.0),
            "{format}"
        );
        assert_eq!(ok("gw_rejections_total", &[("reason", "cors")]), Some(1.0), "{format}");
        assert_eq!(ok("gw_limit_keys", &[("limit", "per_client")]), Some(1.0), "{format}");
        assert!(
            ok("process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6),
            "{format}"
        );
        assert!(ok("process_open_fds", &[]).is_some_and(|v| v > 3.0), "{format}");
    }
}

#[tokio::test]
async fn a_reload_counts_and_changes_the_configuration_hash() {
    let a = Upstream::named("a").await;
    let text = |path: &str| {
        format!(
            "listen 127.0.0.1:0
             upstream a {{ server {} }}
             route GET {path} -> a",
            a.addr
        )
    };
    let (gw, listen, admin) = start(&text("/one")).await;
    let hash = |m: &str| {
        m.lines().find_map(|l| {
            l.strip_prefix("gw_config_info{hash=\"")?
                .split('"')
                .next()
                .map(String::from)
        })
    };
    let before = scrape(admin, false).await.body;
    let first = hash(&before).expect("a hash");
    assert_eq!(first.len(), 16, "{before}");
    gw.reload(plan_of(&text("/two"), &[])).await.expect("reload");
    assert_eq!(get(&format!("http://{listen}/two")).await.status, 200);
    let after = scrape(admin, false).await.body;
    assert_ne!(hash(&after).as_deref(), Some(first.as_str()), "{after}");
    assert!(after.contains("\ngw_reloads_total 1\n"), "{after}");
    let refused = gw.reload(plan_of("upstream a { server 127.0.0.1:1 }", &[])).await;
    assert!(refused.is_err(), "a plan with no listener is refused");
    let after = scrape(admin, false).await.body;
    assert!(after.contains("\ngw_reload_failures_total 1\n"), "{after}");
}

#[tokio::test]
async fn upstreams_shows_each_server_s_health_ejection_and_requests_in_flight() {
    let (release, wait) = tokio::sync::watch::channel(false);
    let slow = Upstream::start(move |_req| {
        let mut wait = wait.clone();
        async move {
            let _ = wait.wait_for(|go| *go).await;
            hyper::Response::new(gw_runtime::body::full("done"))
        }
    })
    .await;
    let dead = crate::proxy_support::dead_port();
    let (_gw, listen, admin) = start(&format!(
        "listen 127.0.0.1:0
         upstream app {{
           server 127.0.0.1:{dead}
           server {slow}
           balance round_robin
           retry 1 on connect_error
         }}
         route GET /{{*rest}} -> app",
        slow = slow.addr
    ))
    .await;
    let held = tokio::spawn(async move { get(&format!("http://{listen}/x")).await });
    let reached = crate::live::eventually(WAIT, || slow.arrived.load(Ordering::SeqCst) == 1).await;
    assert!(reached, "the request reached the slow server");
    let got = get(&format!("http://{admin}/upstreams")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/json"));
    let json = got.json();
    let app = &json["upstreams"][0];
    assert_eq!(app["name"], "app", "{json:#}");
    let server = |addr: String| {
        app["servers"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["server"] == addr.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("{addr} in {json:#}"))
    };
    let dead_one = server(format!("127.0.0.1:{dead}"));
    assert_eq!(dead_one["ejected"], true, "{json:#}");
    assert_eq!(dead_one["healthy"], true, "active checks have not failed it: {json:#}");
    assert_eq!(dead_one["usable"], false, "{json:#}");
    assert!(dead_one["ejected_for_seconds"]
        .as_f64()
        .is_some_and(|s| s > 0.0 && s <= 10.0));
    let live_one = server(slow.addr.to_string());
    assert_eq!(
        (live_one["ejected"].clone(), live_one["in_flight"].clone()),
        (serde_json::json!(false), serde_json::json!(1)),
        "{json:#}"
    );
    let _ = release.send(true);
    assert_eq!(held.await.expect("the held request").status, 200);
    let json = get(&format!("http://{admin}/upstreams")).await.json();
    assert_eq!(json["upstreams"][0]["in_flight"], 0, "{json:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_200_while_serving_and_503_while_draining_a_held_request() {
    let (finish, wait) = tokio::sync::watch::channel(false);
    let slow = Upstream::start(move |_req| {
        let mut wait = wait.clone();
        async move {
            let _ = wait.wait_for(|go| *go).await;
            hyper::Response::new(gw_runtime::body::full("finished"))
        }
    })
    .await;
    let text = format!(
        "listen 127.0.0.1:0
         admin {}
         upstream a {{ server {} }}
         route GET /{{*rest}} -> a",
        crate::serve_harness::dead_addr(),
        slow.addr
    );
    let served = Served::start(&[("app.gw", &text)], &["app.gw", "--drain", "30s"]);
    let addr = served.bound(1).await[0];
    let admin = served.admin().await;
    let ready = get(&format!("http://{admin}/ready")).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(get(&format!("http://{admin}/healthz")).await.status, 200);
    let pending = tokio::spawn(async move { get(&format!("http://{addr}/held")).await });
    let reached = crate::live::eventually(WAIT, || slow.arrived.load(Ordering::SeqCst) == 1).await;
    assert!(reached, "the held request reached the upstream");
    served.signal("TERM");
    // The admin listener stays up through the drain and says not ready.
    let mut seen = None;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let got = get(&format!("http://{admin}/ready")).await;
        if got.status == 503 {
            seen = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = seen.unwrap_or_else(|| panic!("/ready never said 503\n{}", served.output()));
    assert_eq!(got.body, "draining\n");
    assert!(served.exited().is_none(), "still draining\n{}", served.output());
    assert_eq!(get(&format!("http://{admin}/metrics")).await.status, 200);
    let _ = finish.send(true);
    let got = pending.await.expect("the held request");
    assert_eq!((got.status, got.body.as_str()), (200, "finished"));
    assert_eq!(
        served.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        served.output()
    );
}
