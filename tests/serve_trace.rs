//! Trace context, request ids and the access line through a live gateway:
//! the upstream gets `traceparent` (the gateway's span as parent) and
//! `x-request-id`, the client gets the same id back, a client's own id is
//! replaced (no peer is trusted without `trust_proxies`), and `gwc serve`'s
//! access line carries host, protocol, bytes, user agent, upstream time,
//! retries, subject, refusal reason and the ids, in text and JSON;
//! `--log-level`/`GW_LOG` turn debug lines on (the refused-token line, with
//! the request's id), and `NO_COLOR` keeps escapes out.

use crate::live::{get, send, Live, Upstream};
use crate::serve_harness::Served;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn the_upstream_gets_the_trace_context_and_the_request_id() {
    let up = Upstream::named("a").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0\nupstream a {{ server {} }}\nroute GET /a -> a\n",
        up.addr
    ))
    .await;
    // A client's valid parent: its trace id and flag kept, the gateway's
    // span named as parent, its tracestate passed on; its request id
    // replaced (the peer is not a trusted proxy).
    let req = Request::get(live.url("/a"))
        .header("traceparent", PARENT)
        .header("tracestate", "congo=t61rcWkgMzE")
        .header("x-request-id", "forged-by-client")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let got = send(req).await;
    assert_eq!(got.status, 200);
    let seen = &got.json()["headers"];
    let tp = seen["traceparent"].as_str().unwrap_or_default();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    );
    assert!(is_hex(parts[2], 16) && parts[2] != "00f067aa0ba902b7", "{tp}");
    assert_eq!(seen["tracestate"], "congo=t61rcWkgMzE");
    let id = seen["x-request-id"].as_str().unwrap_or_default();
    assert!(is_hex(id, 32), "a new id: {id}");
    assert_eq!(got.header("x-request-id"), Some(id), "the client gets the same id");

    // No parent, or an invalid one: a new trace, no tracestate.
    for parent in [None, Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")] {
        let mut req = Request::get(live.url("/a")).header("tracestate", "congo=t61rcWkgMzE");
        if let Some(p) = parent {
            req = req.header("traceparent", p);
        }
        let got = send(req.body(Full::new(Bytes::new())).expect("request")).await;
        let seen = &got.json()["headers"];
        let tp = seen["traceparent"].as_str().unwrap_or_default();
        assert!(tp.starts_with("00-") && tp.ends_with("-00") && tp.len() == 55, "{tp}");
        assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{tp}");
        assert!(seen.get("tracestate").is_none(), "{seen}");
    }
    // Two requests, two ids; and a gateway's own answer carries one too.
    let a = get(&live.url("/a")).await;
    let b = get(&live.url("/a")).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    let missing = get(&live.url("/missing")).await;
    assert_eq!(missing.status, 404);
    assert!(is_hex(missing.header("x-request-id").unwrap_or_default(), 32));
}

const KEYS: &str = "s3cr3t-value ci-robot\n";

fn app(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"listen 127.0.0.1:0
upstream a {{ server {upstream} }}
auth keys api_key {{
  from header x-api-key
  keys file("keys.txt")
}}
route GET /a -> a
route POST /k -> a {{ auth keys }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_carry_the_request_s_details() {
    let up = Upstream::named("a").await;
    let served = Served::start(
        &[("app.gw", &app(up.addr)), ("keys.txt", KEYS)],
        &["app.gw", "--log-format", "json"],
    );
    let addr = served.bound(1).await[0];
    let req = Request::get(format!("http://{addr}/a"))
        .header("user-agent", "probe/1.0\u{1b}[31m".replace('\u{1b}', "\\x1b"))
        .header("traceparent", PARENT)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let got = send(req).await;
    assert_eq!(got.status, 200);
    let id = got.header("x-request-id").unwrap_or_default().to_string();
    let req = Request::post(format!("http://{addr}/k"))
        .header("x-api-key", "s3cr3t-value")
        .body(Full::new(Bytes::from_static(b"hello")))
        .expect("request");
    assert_eq!(send(req).await.status, 200);
    let req = Request::post(format!("http://{addr}/k"))
        .header("x-api-key", "wrong")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(req).await.status, 401);
    let lines = served.wait_lines(WAIT, 3, |l| l.contains("gw::access")).await;
    assert_eq!(lines.len(), 3, "{}", served.output());
    let e: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON ({err}): {l}")))
        .collect();
    assert_eq!(e[0]["host"], addr.to_string(), "{}", e[0]);
    assert_eq!(e[0]["protocol"], "HTTP/1.1");
    assert_eq!(e[0]["user_agent"], "probe/1.0\\x1b[31m");
    assert_eq!(e[0]["request_id"], id.as_str());
    assert_eq!(e[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e[0]["retries"], 0);
    assert_eq!(e[0]["refused"], "-");
    assert_eq!(e[0]["subject"], "-");
    assert!(e[0]["upstream_micros"]
        .as_u64()
        .is_some_and(|u| u <= e[0]["micros"].as_u64().unwrap_or(0)));
    assert!(e[0]["bytes_out"].as_u64().is_some_and(|n| n > 0), "{}", e[0]);
    // The key's name, never its value.
    assert_eq!(e[1]["subject"], "ci-robot", "{}", e[1]);
    assert_eq!(e[1]["bytes_in"], 5);
    assert_eq!(
        (e[2]["status"].as_u64(), e[2]["refused"].as_str()),
        (Some(401), Some("unauthorized"))
    );
    assert!(e[2]["upstream_micros"].is_null() && e[2]["upstream"] == "-", "{}", e[2]);
    assert!(!served.output().contains("s3cr3t"), "no secret in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_access_lines_escape_what_the_client_sent() {
    let up = Upstream::named("a").await;
    let served = Served::start_with_env(
        &[("app.gw", &app(up.addr)), ("keys.txt", KEYS)],
        &["app.gw"],
        &[("NO_COLOR", "1")],
    );
    let addr = served.bound(1).await[0];
    // Header values may carry a tab and obs-text: neither reaches the log raw.
    let ua = hyper::header::HeaderValue::from_bytes(b"evil\t\xff agent").expect("a value");
    let req = Request::get(format!("http://{addr}/a"))
        .header("user-agent", ua)
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(req).await.status, 200);
    let lines = served.wait_lines(WAIT, 1, |l| l.contains("gw::access")).await;
    let line = &lines[0];
    for part in [
        "protocol=HTTP/1.1",
        "retries=0",
        "refused=-",
        "subject=\"-\"",
        "bytes_in=0",
        r#"user_agent="evil\t� agent""#,
        &format!("host=\"{addr}\""),
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!served.output().contains('\t'), "{}", served.output());
    assert!(!served.output().contains('\u{1b}'), "no colour: {}", served.output());
}

fn jwt_app(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"listen 127.0.0.1:0
upstream a {{ server {upstream} }}
auth users jwt {{
  issuer "https://issuer.example"
  audience "gw"
  algorithms HS256
  secret "0123456789abcdef0123456789abcdef"
}}
route GET /a -> a {{ auth users }}
"#
    )
}

/// `gwc serve`'s extra arguments, its environment, and whether the debug
/// line shows.
type Run = (&'static [&'static str], &'static [(&'static str, &'static str)], bool);

/// The refused token's reason is at debug level: off by default, on with
/// `--log-level debug` or `GW_LOG=debug`, with the request's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_turns_on_the_refused_token_line() {
    let up = Upstream::named("a").await;
    let runs: [Run; 4] = [
        (&[], &[], false),
        (&["--log-level", "debug"], &[], true),
        (&[], &[("GW_LOG", "gw=debug")], true),
        (&["--log-level", "info"], &[("GW_LOG", "debug")], false),
    ];
    for (args, env, shown) in runs {
        let mut all = vec!["app.gw"];
        all.extend_from_slice(args);
        let served = Served::start_with_env(&[("app.gw", &jwt_app(up.addr))], &all, env);
        let addr = served.bound(1).await[0];
        let req = Request::get(format!("http://{addr}/a"))
            .header("authorization", "Bearer not.a.token")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let got = send(req).await;
        assert_eq!(got.status, 401);
        let id = got.header("x-request-id").unwrap_or_default().to_string();
        // The access line comes after the debug line: once it is there,
        // the debug line would be too.
        served.wait_lines(WAIT, 1, |l| l.contains("gw::access")).await;
        let refused: Vec<String> = served
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("token refused"))
            .collect();
        assert_eq!(!refused.is_empty(), shown, "{args:?} {env:?}\n{}", served.output());
        if shown {
            assert!(refused[0].contains(&id), "the request's id: {}", refused[0]);
        }
    }
}

#[test]
fn a_bad_log_filter_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gwc"))
        .args(["serve", "nothing.gw", "--log-level", "gw=[["])
        .output()
        .expect("gwc runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("log"), "{out:?}");
}
