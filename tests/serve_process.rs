//! `gwc serve` as a process: it logs the addresses it bound, writes one
//! access-log line per request (text, or JSON with `--log-format json`),
//! reloads on file changes and SIGHUP without failing a request, keeps the
//! old plan when an edit is broken, drains on SIGTERM and exits 0, and
//! `--demo` serves the food court with built-in backends.

use crate::live::{get, Upstream};
use crate::serve_harness::{bound_of, Served};
use crate::support::{root, TempDir};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

type HttpClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A `reloaded` log line (not a request whose path says so).
fn is_reload(line: &str) -> bool {
    line.contains("reloaded") && !line.contains("gw::access")
}

fn app(upstream: SocketAddr, extra: &str) -> String {
    format!(
        "listen 127.0.0.1:0
         upstream a {{ server {upstream} }}
         route GET /a/{{id}} -> a
         {extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_has_one_object_per_request() {
    let up = Upstream::named("a").await;
    let served = Served::start(&[("app.gw", &app(up.addr, ""))], &["app.gw", "--log-format", "json"]);
    let addr = served.bound(1).await[0];
    for i in 0..3 {
        assert_eq!(get(&format!("http://{addr}/a/{i}")).await.status, 200);
    }
    assert_eq!(get(&format!("http://{addr}/missing")).await.status, 404);
    let lines = served.wait_lines(WAIT, 4, |l| l.contains("gw::access")).await;
    assert_eq!(lines.len(), 4, "one line per request\n{}", served.output());
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for (i, e) in entries[..3].iter().enumerate() {
        assert_eq!(e["route"], "GET /a/{id}", "{e}");
        assert_eq!(e["path"], format!("/a/{i}"), "{e}");
        assert_eq!(e["upstream"], up.addr.to_string(), "{e}");
        assert_eq!(e["status"], 200, "{e}");
        assert_eq!(e["method"], "GET", "{e}");
        assert!(e["micros"].as_u64().is_some(), "a duration: {e}");
    }
    assert_eq!(
        (entries[3]["status"].as_u64(), entries[3]["route"].as_str()),
        (Some(404), Some("-"))
    );
    // Every line of the log is JSON, the startup lines too.
    for l in served.stderr_lines() {
        assert!(serde_json::from_str::<serde_json::Value>(&l).is_ok(), "not JSON: {l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_access_log_is_the_default() {
    let up = Upstream::named("a").await;
    let served = Served::start(&[("app.gw", &app(up.addr, ""))], &["app.gw"]);
    let addr = served.bound(1).await[0];
    assert_eq!(get(&format!("http://{addr}/a/7")).await.status, 200);
    let lines = served.wait_lines(WAIT, 1, |l| l.contains("gw::access")).await;
    let line = &lines[0];
    assert!(serde_json::from_str::<serde_json::Value>(line).is_err(), "{line}");
    for part in ["route=\"GET /a/{id}\"", "status=200", "path=\"/a/7\"", "micros="] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(line.contains(&up.addr.to_string()), "{line}");
}

/// One request that must succeed; a description of the failure otherwise.
async fn probe(client: &HttpClient, url: &str) -> Result<(), String> {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body.to_bytes())));
    }
    Ok(())
}

/// Waits until `GET url` answers `status`.
async fn until_status(url: &str, status: u16, served: &Served) {
    let client = crate::live::client();
    let start = Instant::now();
    loop {
        let req = hyper::Request::get(url).body(Full::new(Bytes::new())).expect("request");
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
            if r.status().as_u16() == status {
                return;
            }
        }
        if start.elapsed() > WAIT {
            panic!("{url} never answered {status}\n{}", served.output());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_reloads_under_steady_load_fail_no_request() {
    let up = Upstream::named("a").await;
    let root_text = |n: u32| {
        format!(
            "import \"routes.gw\"
             listen 127.0.0.1:0
             upstream a {{ server {} }}
             route GET /a/{{id}} -> a
             route GET /root{n} {{ respond 200 }}\n",
            up.addr
        )
    };
    let routes_text = |n: u32| format!("route GET /imported{n} {{ respond 200 }}\n");
    let served = Served::start(
        &[("app.gw", &root_text(0)), ("routes.gw", &routes_text(0))],
        &["app.gw", "--watch-interval", "50ms"],
    );
    let addr = served.bound(1).await[0];

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for worker in 0..3 {
        let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            // Worker 0 opens a new connection per request; the others keep theirs alive.
            let mut client = crate::live::client();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if worker == 0 {
                    client = crate::live::client();
                }
                match probe(&client, &format!("http://{addr}/a/{i}")).await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failures.lock().expect("lock").push(e),
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 1: the root file changes.
    served.write("app.gw", &root_text(1));
    until_status(&format!("http://{addr}/root1"), 200, &served).await;
    // 2: an imported file changes.
    served.write("routes.gw", &routes_text(2));
    until_status(&format!("http://{addr}/imported2"), 200, &served).await;
    // 3: SIGHUP.
    served.signal("HUP");
    served.wait_lines(WAIT, 3, is_reload).await;
    // 4: the root file again.
    served.write("app.gw", &root_text(4));
    until_status(&format!("http://{addr}/root4"), 200, &served).await;
    until_status(&format!("http://{addr}/root1"), 404, &served).await;
    // 5: SIGHUP again.
    served.signal("HUP");
    served.wait_lines(WAIT, 5, is_reload).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.expect("a load worker");
    }
    let failures = failures.lock().expect("lock").clone();
    assert!(failures.is_empty(), "{} failed requests: {failures:?}", failures.len());
    let n = done.load(Ordering::SeqCst);
    assert!(n >= 50, "steady load: only {n} requests");
    assert_eq!(served.bound(1).await.len(), 1, "the listener was never reopened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_is_refused_and_the_old_plan_keeps_serving() {
    let up = Upstream::named("a").await;
    let served = Served::start(
        &[("app.gw", &app(up.addr, ""))],
        &["app.gw", "--watch-interval", "50ms"],
    );
    let addr = served.bound(1).await[0];
    served.write("app.gw", &app(up.addr, "route GET /b -> nowhere"));
    let refused = served.wait_lines(WAIT, 1, |l| l.contains("reload refused")).await;
    let log = served.stderr_lines().join("\n");
    assert!(log.contains("GW0101"), "the diagnostics are logged: {}", refused[0]);
    assert!(log.contains("nowhere"), "{log}");
    assert_eq!(
        get(&format!("http://{addr}/a/1")).await.status,
        200,
        "the old plan serves"
    );
    assert_eq!(get(&format!("http://{addr}/b")).await.status, 404);
    // Fixing the file reloads.
    served.write("app.gw", &app(up.addr, "route GET /b { respond 204 }"));
    until_status(&format!("http://{addr}/b"), 204, &served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_refuses_new_connections_and_exits_0() {
    // Holds the request until the test has seen the gateway draining.
    let (finish, wait) = tokio::sync::watch::channel(false);
    let slow = Upstream::start(move |_req| {
        let mut wait = wait.clone();
        async move {
            let _ = wait.wait_for(|go| *go).await;
            hyper::Response::new(gw_runtime::body::full("finished"))
        }
    })
    .await;
    let served = Served::start(&[("app.gw", &app(slow.addr, ""))], &["app.gw"]);
    let addr = served.bound(1).await[0];
    let pending = tokio::spawn(async move { get(&format!("http://{addr}/a/1")).await });
    let reached = crate::live::eventually(WAIT, || slow.arrived.load(Ordering::SeqCst) == 1).await;
    assert!(reached, "the slow request reached the upstream");
    served.signal("TERM");
    // New connections are refused while the slow request drains.
    let refused = crate::live::eventually(WAIT, || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
    })
    .await;
    assert!(refused, "the listener closes at once\n{}", served.output());
    assert!(
        served.exited().is_none(),
        "it waits for the request\n{}",
        served.output()
    );
    let _ = finish.send(true);
    let got = pending.await.expect("the slow request");
    assert_eq!((got.status, got.body.as_str()), (200, "finished"));
    assert_eq!(
        served.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        served.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_drain() {
    let stuck = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        hyper::Response::new(gw_runtime::body::full("too late"))
    })
    .await;
    let served = Served::start(&[("app.gw", &app(stuck.addr, ""))], &["app.gw", "--drain", "300ms"]);
    let addr = served.bound(1).await[0];
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(20),
            crate::live::client().get(format!("http://{addr}/a/1").parse().expect("uri")),
        )
        .await;
    });
    let reached = crate::live::eventually(WAIT, || stuck.connections.load(Ordering::SeqCst) == 1).await;
    assert!(reached);
    let signalled = Instant::now();
    served.signal("INT");
    assert_eq!(
        served.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        served.output()
    );
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after the signal, drain is 300ms"
    );
    assert!(
        served.stderr_lines().iter().any(|l| l.contains("drain time over")),
        "{}",
        served.output()
    );
}

/// Copies `examples/` into a temporary folder, with the food court's public
/// listener on a free port and no admin listener.
fn food_court_copy() -> TempDir {
    let dir = TempDir::new();
    let examples = root().join("examples");
    let text = std::fs::read_to_string(examples.join("food-court.gw")).expect("read the food court");
    assert!(text.contains("listen 127.0.0.1:8080") && text.contains("admin 127.0.0.1:9901"));
    let text = text
        .replace("listen 127.0.0.1:8080", "listen 127.0.0.1:0")
        .replace("admin 127.0.0.1:9901", "");
    std::fs::write(dir.path().join("food-court.gw"), text).expect("write");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    for entry in std::fs::read_dir(examples.join("keys")).expect("read examples/keys") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join("keys").join(entry.file_name())).expect("copy");
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_food_court_with_built_in_backends_and_prints_curl_commands() {
    let served = Served::start_in(food_court_copy(), &["food-court.gw", "--demo"]);
    let addr = served.bound(1).await[0];
    let start = Instant::now();
    while !served.stdout_lines().iter().any(|l| l.contains("curl")) {
        assert!(start.elapsed() < WAIT, "no curl commands printed\n{}", served.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stdout = served.stdout_lines().join("\n");
    assert!(stdout.contains(&format!("curl -i http://{addr}/menu")), "{stdout}");

    let menu = get(&format!("http://{addr}/menu")).await;
    assert_eq!(menu.status, 200, "{}", menu.body);
    let j = menu.json();
    assert_eq!(j["service"], "orders", "{j}");
    assert!(
        ["127.0.0.1:9131", "127.0.0.1:9132", "127.0.0.1:9133"].contains(&j["instance"].as_str().unwrap_or("")),
        "{j}"
    );
    assert_eq!(j["path"], "/menu");
    assert_eq!(menu.header("cache-control"), Some("public, max-age=60"));
    // A hidden path answers as a path nobody ever served, as the example says.
    let hidden = get(&format!("http://{addr}/internal/x")).await;
    let unknown = get(&format!("http://{addr}/favicon.ico")).await;
    assert_eq!(hidden.status, 404);
    assert_eq!(
        (hidden.header("content-type"), hidden.body.as_str()),
        (unknown.header("content-type"), unknown.body.as_str())
    );
    assert_eq!(get(&format!("http://{addr}/v1/menu")).await.status, 308);
    // Signed-in routes want a token; the tour prints one.
    assert_eq!(get(&format!("http://{addr}/orders")).await.status, 401);
    let token = served
        .stdout_lines()
        .iter()
        .find_map(|l| l.trim().strip_prefix("TOKEN=").map(str::to_string))
        .unwrap_or_else(|| panic!("no demo token printed\n{stdout}"));
    assert!(
        stdout.contains(&format!("-H \"authorization: Bearer $TOKEN\" http://{addr}/orders")),
        "{stdout}"
    );
    let req = hyper::Request::get(format!("http://{addr}/orders"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let orders = crate::live::send(req).await;
    assert_eq!(orders.status, 200, "{}", orders.body);
    assert_eq!(orders.json()["service"], "orders");
    assert_eq!(
        orders.json()["user"],
        "demo-user",
        "the gateway set x-user-id from the token"
    );
    // The canary: testers reach it with a header; a customer's side of the
    // split is the one their subject hashes to, the same every time.
    let order = |canary: bool| {
        let mut req =
            hyper::Request::get(format!("http://{addr}/orders/42")).header("authorization", format!("Bearer {token}"));
        if canary {
            req = req.header("x-canary", "1");
        }
        crate::live::send(req.body(Full::new(Bytes::new())).expect("request"))
    };
    let tester = order(true).await;
    assert_eq!(
        (tester.status, tester.json()["service"].as_str()),
        (200, Some("orders-canary"))
    );
    let first = order(false).await.json()["service"].clone();
    assert!(first == "orders" || first == "orders-canary", "{first}");
    for _ in 0..3 {
        assert_eq!(order(false).await.json()["service"], first, "demo-user changed side");
    }
    // The first signed-in command of the tour: the caller's own profile.
    let req = hyper::Request::get(format!("http://{addr}/me"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let me = crate::live::send(req).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(
        (
            me.json()["service"].as_str(),
            me.json()["path"].as_str(),
            me.json()["user"].as_str()
        ),
        (Some("login"), Some("/users/demo-user"), Some("demo-user")),
        "{}",
        me.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_moves_a_backend_whose_port_another_program_holds() {
    // Holds a port and never speaks HTTP.
    let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let taken = holder.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = holder.accept().await {
                drop(s);
            }
        }
    });
    let text = format!(
        "listen 127.0.0.1:0
         upstream menu {{ server {taken} }}
         route GET /menu -> menu\n"
    );
    let served = Served::start(&[("app.gw", &text)], &["app.gw", "--demo"]);
    let addr = served.bound(1).await[0];
    let moved = served.wait_lines(WAIT, 1, |l| l.contains("demo backend started")).await;
    let bound = bound_of(&moved[0]).expect("the demo backend's address");
    assert_ne!(bound, taken, "{}", moved[0]);
    let got = get(&format!("http://{addr}/menu")).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["service"], "menu");
    assert_eq!(got.json()["instance"], taken.to_string(), "named as the plan writes it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_listens_on_a_free_port_when_the_plans_is_taken_and_without_demo_fails() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr");
    let up = Upstream::named("a").await;
    let text = format!(
        "listen {taken}
         upstream a {{ server {} }}
         route GET /a -> a\n",
        up.addr
    );
    let served = Served::start(&[("app.gw", &text)], &["app.gw", "--demo"]);
    let addr = served.bound(1).await[0];
    assert_ne!(addr, taken);
    assert_eq!(get(&format!("http://{addr}/a")).await.status, 200);
    assert!(
        served
            .stdout_lines()
            .iter()
            .any(|l| l.contains(&format!("http://{addr}/a"))),
        "the tour names the port really bound\n{}",
        served.output()
    );

    let strict = Served::start(&[("app.gw", &text)], &["app.gw"]);
    assert_eq!(strict.wait_exit(WAIT).await, Some(2), "{}", strict.output());
    assert!(
        strict.stderr_lines().join("\n").contains("cannot listen"),
        "{}",
        strict.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_built_by_gwc_build_is_served_and_reloaded() {
    let up = Upstream::named("a").await;
    let plan = |extra: &str| crate::live::plan_of(&app(up.addr, extra), &[]).to_json();
    let served = Served::start(
        &[("app.plan.json", &plan(""))],
        &["app.plan.json", "--watch-interval", "50ms"],
    );
    let addr = served.bound(1).await[0];
    let got = get(&format!("http://{addr}/a/1")).await;
    assert_eq!((got.status, got.json()["upstream"].as_str()), (200, Some("a")));
    served.write("app.plan.json", &plan("route GET /b { respond 204 }"));
    until_status(&format!("http://{addr}/b"), 204, &served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_of_another_format_version_is_refused() {
    let up = Upstream::named("a").await;
    let mut json: serde_json::Value =
        serde_json::from_str(&crate::live::plan_of(&app(up.addr, ""), &[]).to_json()).expect("plan JSON");
    json["format_version"] = 999.into();
    let served = Served::start(&[("old.plan.json", &json.to_string())], &["old.plan.json"]);
    assert_eq!(served.wait_exit(WAIT).await, Some(1), "{}", served.output());
    // The message may reach the pipe reader a moment after the exit.
    let said = crate::live::eventually(WAIT, || served.output().contains("format version 999")).await;
    let out = served.output();
    assert!(said && out.contains("gwc build"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_plan_file_is_a_usage_error() {
    let served = Served::start(&[], &["missing.plan.json"]);
    assert_eq!(served.wait_exit(WAIT).await, Some(2), "{}", served.output());
}

/// An upstream that answers after `delay`.
async fn slow_upstream(delay: Duration) -> Upstream {
    Upstream::start(move |_req| async move {
        tokio::time::sleep(delay).await;
        hyper::Response::new(gw_runtime::body::full("finished"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_to_the_process_and_then_its_group_drains_once() {
    let slow = slow_upstream(Duration::from_millis(1500)).await;
    let served = Served::start_grouped(&[("app.gw", &app(slow.addr, ""))], &["app.gw"]);
    let addr = served.bound(1).await[0];
    let pending = tokio::spawn(async move { get(&format!("http://{addr}/a/1")).await });
    let reached = crate::live::eventually(WAIT, || slow.connections.load(Ordering::SeqCst) == 1).await;
    assert!(reached, "the slow request reached the upstream");
    // What GNU `timeout` does: SIGTERM to the process, then to its group.
    // The copy is sent once the first is handled, so the two are never
    // merged into one delivery; it still comes well within a second.
    served.signal_now(libc::SIGTERM);
    served.wait_lines(WAIT, 1, |l| l.contains("shutting down")).await;
    served.signal_group(libc::SIGTERM);
    let got = pending.await.expect("the slow request");
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "finished"),
        "drained\n{}",
        served.output()
    );
    assert_eq!(served.wait_exit(WAIT).await, Some(0), "{}", served.output());
    let said = crate::live::eventually(WAIT, || served.output().contains("drained; bye")).await;
    let log = served.output();
    assert!(said && log.contains("one stop, still draining"), "{log}");
    assert!(!log.contains("second signal"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_after_a_second_stops_at_once() {
    let stuck = slow_upstream(Duration::from_secs(30)).await;
    let served = Served::start(&[("app.gw", &app(stuck.addr, ""))], &["app.gw"]);
    let addr = served.bound(1).await[0];
    tokio::spawn(async move {
        let url = format!("http://{addr}/a/1").parse().expect("uri");
        let _ = tokio::time::timeout(Duration::from_secs(40), crate::live::client().get(url)).await;
    });
    let reached = crate::live::eventually(WAIT, || stuck.connections.load(Ordering::SeqCst) == 1).await;
    assert!(reached);
    served.signal("TERM");
    served.wait_lines(WAIT, 1, |l| l.contains("shutting down")).await;
    // More than a second after the gateway logged the first one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(served.exited().is_none(), "still draining the 30 s request");
    let signalled = Instant::now();
    served.signal("TERM");
    assert_eq!(served.wait_exit(WAIT).await, Some(0), "{}", served.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "it stopped without waiting for the 30 s request"
    );
    let said = crate::live::eventually(WAIT, || served.output().contains("second signal")).await;
    assert!(said, "{}", served.output());
}
