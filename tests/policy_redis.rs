//! `store NAME redis` through live gateways and a real `redis-server` started
//! per test on a free loopback port (killed when the test ends): gateways
//! sharing one Redis share one budget, the budget refills at the rate, keys
//! expire when idle, `on_error allow|deny` answer at once when Redis is down
//! or silent, a restarted Redis is used again, AUTH and SELECT come from
//! the URL, and `rediss://` is TLS verified by the trust roots or the
//! store's `tls { ca }` (a wrong CA applies `on_error`), with a client
//! certificate when Redis asks; the URL from `env()` / `file()` (read
//! again at a reload) is never shown. Without `redis-server` these tests
//! fail saying to install it, unless `GW_SKIP_REDIS_TESTS=1` outside CI:
//! under CI (`CI` set, as `.ci/run` sets it) or when `tests/run` says Redis
//! is required (`GW_REDIS_REQUIRED=1`), a skip is a failure.

use crate::live::{get as get_url, Live, Upstream};
use crate::policy::get;
use gw_runtime::policy::redis::{parse_url, Target};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------ the test's own RESP

// The test reads what Redis stores on connections of its own, apart from
// the gateway's client (the `redis` crate): a small RESP codec.

/// The longest reply the test reads.
const MAX_REPLY: usize = 64 * 1024;

/// A RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the reply and how many bytes it took.
fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, &'static str> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], start: usize, depth: u32) -> Result<Option<(Reply, usize)>, &'static str> {
    if depth > 4 {
        return Err("nested too deep");
    }
    let Some(rel) = buf.get(start..).and_then(|b| b.windows(2).position(|w| w == b"\r\n")) else {
        return Ok(None);
    };
    if rel == 0 {
        return Err("empty reply");
    }
    let kind = buf[start];
    let line = &buf[start + 1..start + rel];
    let after = start + rel + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let int = || -> Result<i64, &'static str> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or("not an integer")
    };
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), after))),
        b'-' => Ok(Some((Reply::Error(text()), after))),
        b':' => Ok(Some((Reply::Int(int()?), after))),
        b'$' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| "bad length")?;
            if n > MAX_REPLY {
                return Err("reply too large");
            }
            let end = after + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err("bulk string not terminated");
            }
            Ok(Some((Reply::Bulk(Some(buf[after..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| "bad length")?;
            if n > 1024 {
                return Err("reply too large");
            }
            let mut items = Vec::with_capacity(n);
            let mut at = after;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1)? {
                    Some((item, next)) => {
                        items.push(item);
                        at = next;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err("unknown reply type"),
    }
}

/// A `redis-server` of this test, killed when dropped.
struct RedisServer {
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

impl RedisServer {
    /// A fresh server, or `None` when the tests are skipped.
    async fn start(extra: &[&str]) -> Option<RedisServer> {
        if !installed() {
            let required = std::env::var("GW_REDIS_REQUIRED").as_deref() == Ok("1");
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !(ci || required),
                "redis-server is not installed, and under CI (CI={:?}, GW_REDIS_REQUIRED={:?}) a skipped Redis \
                 test is a failure: tests/run installs it (`apt-get install -y redis-server`)",
                std::env::var("CI").unwrap_or_default(),
                std::env::var("GW_REDIS_REQUIRED").unwrap_or_default(),
            );
            if std::env::var("GW_SKIP_REDIS_TESTS").as_deref() == Ok("1") {
                eprintln!("redis-server is not installed: skipped (GW_SKIP_REDIS_TESTS=1)");
                return None;
            }
            panic!(
                "redis-server is not installed: these tests need it (`apt-get install -y redis-server`), \
                 or set GW_SKIP_REDIS_TESTS=1 to skip them"
            );
        }
        let mut server = RedisServer {
            port: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn().await {
                return Some(server);
            }
        }
        panic!("redis-server did not start on a free port after 5 tries");
    }

    /// Starts redis-server on `self.port`; false if it exited (port taken)
    /// or did not answer PING within 5 s.
    async fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let dir = std::env::temp_dir();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            // A server with a password answers NOAUTH, which is an answer.
            if let Ok(reply) = self.raw(&["PING"]).await {
                if matches!(reply, Reply::Simple(_) | Reply::Error(_)) {
                    self.child = Some(child);
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty), retrying for a while.
    async fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            if self.spawn().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command on a new connection (within 2 s).
    async fn raw(&self, args: &[&str]) -> Result<Reply, String> {
        let port = self.port;
        let fut = async move {
            let mut s = TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            encode(&bytes, &mut out);
            s.write_all(&out).await.map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            loop {
                if let Some((reply, _)) = parse(&buf).map_err(|e| e.to_string())? {
                    return Ok(reply);
                }
                if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed".to_string());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .map_err(|_| "no answer".to_string())?
    }

    /// The keys under `gw:limit:` in database `db`.
    async fn limit_keys(&self, db: u32) -> Vec<String> {
        let port = self.port;
        let fut = async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            let mut out = Vec::new();
            let db = db.to_string();
            encode(&[b"SELECT", db.as_bytes()], &mut out);
            encode(&[b"KEYS", b"gw:limit:*"], &mut out);
            s.write_all(&out).await.expect("write");
            let mut buf = Vec::new();
            loop {
                if let Some((first, used)) = parse(&buf).expect("resp") {
                    assert_eq!(first, Reply::Simple("OK".into()));
                    if let Some((Reply::Array(Some(items)), _)) = parse(&buf[used..]).expect("resp") {
                        let mut keys: Vec<String> = items
                            .into_iter()
                            .map(|i| match i {
                                Reply::Bulk(Some(b)) => String::from_utf8(b).expect("utf-8"),
                                other => panic!("not a key: {other:?}"),
                            })
                            .collect();
                        keys.sort();
                        return keys;
                    }
                }
                assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed");
            }
        };
        tokio::time::timeout(Duration::from_secs(2), fut).await.expect("answer")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gateway with an echo upstream, `{redis}` replaced by `url`.
async fn gateway_with(text: &str, url: &str) -> (Live, Upstream) {
    crate::policy::gateway(&text.replace("{redis}", url)).await
}

/// A port where nothing listens.
fn closed_url() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

/// A server that accepts connections and never answers.
async fn silent_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    format!("redis://{addr}")
}

const PER_TENANT: &str = "listen 127.0.0.1:0
     upstream app { server {up} }
     store shared redis \"{redis}\" { timeout 500ms on_error allow }
     limit per_tenant { rate 1/min burst 5 key header.x-tenant store shared }
     route /{*rest} -> app { limit per_tenant }";

#[tokio::test]
async fn two_gateways_sharing_one_redis_share_one_budget() {
    let Some(redis) = RedisServer::start(&[]).await else {
        return;
    };
    let up = Upstream::named("app").await;
    let text = PER_TENANT
        .replace("{up}", &up.addr.to_string())
        .replace("{redis}", &redis.url());
    let (a, b) = (Live::start(&text).await, Live::start(&text).await);
    let mut passed = 0;
    let mut refused = None;
    for i in 0..20 {
        let live = if i % 2 == 0 { &a } else { &b };
        let got = get(live, "/", &[("x-tenant", "acme")]).await;
        match got.status {
            200 => passed += 1,
            429 => refused = Some(got),
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(passed, 5, "burst 5 across both gateways, not 5 each");
    assert_eq!(up.count(), 5);
    // The refusal reads like a local limit's: one cell per 60 s.
    let got = refused.expect("a refusal");
    assert_eq!(got.header("retry-after"), Some("60"));
    assert_eq!(got.header("ratelimit-policy"), Some("\"per_tenant\";q=1;w=60"));
    assert_eq!(got.header("ratelimit"), Some("\"per_tenant\";r=0;t=60"));
    assert_eq!(got.body, "{\"error\":\"too many requests\",\"status\":429}\n");
    // Another tenant, and no tenant at all, have budgets of their own.
    assert_eq!(get(&b, "/", &[("x-tenant", "other")]).await.status, 200);
    assert_eq!(get(&a, "/", &[]).await.status, 200);
    // The client's strings are not stored: the header value is hashed.
    let keys = redis.limit_keys(0).await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.contains(&"gw:limit:per_tenant:absent".to_string()), "{keys:?}");
    let mut ttls = Vec::new();
    for k in keys.iter().filter(|k| !k.ends_with(":absent")) {
        let hash = k
            .strip_prefix("gw:limit:per_tenant:h:")
            .unwrap_or_else(|| panic!("key {k}"));
        assert_eq!(hash.len(), 32, "{k}");
        assert!(!k.contains("acme"), "{k}");
        match redis.raw(&["PTTL", k]).await {
            Ok(Reply::Int(ms)) => ttls.push(ms),
            other => panic!("PTTL {k}: {other:?}"),
        }
    }
    // Each key lives until its budget is full again: 5 cells of 60 s for
    // acme, one for the other tenant.
    ttls.sort();
    assert!(ttls[0] > 50_000 && ttls[0] <= 60_001, "{ttls:?}");
    assert!(ttls[1] > 290_000 && ttls[1] <= 300_001, "{ttls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_through_two_gateways_never_overspend() {
    let Some(redis) = RedisServer::start(&[]).await else {
        return;
    };
    let up = Upstream::named("app").await;
    let text = "listen 127.0.0.1:0
         upstream app { server {up} }
         store shared redis \"{redis}\" { timeout 5s on_error deny }
         limit l { rate 1/min burst 20 key none store shared }
         route /{*rest} -> app { limit l }"
        .replace("{up}", &up.addr.to_string())
        .replace("{redis}", &redis.url());
    let (a, b) = (Live::start(&text).await, Live::start(&text).await);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let url = if i % 2 == 0 { a.url("/") } else { b.url("/") };
        tasks.push(tokio::spawn(async move { get_url(&url).await.status }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("request task"));
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 20, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 40, "{statuses:?}");
    assert_eq!(up.count(), 20);
}

#[tokio::test]
async fn a_reload_that_gives_a_limit_a_store_moves_its_budget_to_redis() {
    let Some(redis) = RedisServer::start(&[]).await else {
        return;
    };
    let local = "listen 127.0.0.1:0
         upstream app { server {up} }
         store shared redis \"{redis}\" { timeout 500ms on_error deny }
         limit l { rate 1/min burst 1 key none }
         route /{*rest} -> app { limit l }";
    let (live, up) = gateway_with(local, &redis.url()).await;
    assert_eq!(get(&live, "/", &[]).await.status, 200);
    assert_eq!(get(&live, "/", &[]).await.status, 429);
    assert!(redis.limit_keys(0).await.is_empty(), "a local limit stays out of Redis");
    let shared = local
        .replace("key none }", "key none store shared }")
        .replace("{up}", &up.addr.to_string())
        .replace("{redis}", &redis.url());
    live.gateway
        .reload(crate::live::plan_of(&shared, &[]))
        .await
        .expect("reload");
    assert_eq!(get(&live, "/", &[]).await.status, 200, "a fresh budget in Redis");
    assert_eq!(get(&live, "/", &[]).await.status, 429);
    assert_eq!(redis.limit_keys(0).await, vec!["gw:limit:l:all".to_string()]);
}

#[tokio::test]
async fn the_shared_budget_refills_at_the_rate_and_idle_keys_expire() {
    let Some(redis) = RedisServer::start(&[]).await else {
        return;
    };
    let (live, _up) = gateway_with(
        "listen 127.0.0.1:0
         upstream app { server {up} }
         store shared redis \"{redis}\" { timeout 500ms on_error deny }
         limit everyone { rate 10/s burst 2 key none store shared }
         route /{*rest} -> app { limit everyone }",
        &redis.url(),
    )
    .await;
    let statuses = |n| {
        let live = &live;
        async move {
            let mut s = Vec::new();
            for _ in 0..n {
                s.push(get(live, "/", &[]).await.status);
            }
            s
        }
    };
    let start = Instant::now();
    let first = statuses(10).await;
    assert_eq!(&first[..2], &[200, 200], "{first:?}");
    assert!(first.contains(&429), "the burst is spent: {first:?}");
    let mut passed = first.iter().filter(|s| **s == 200).count();
    // The rate refills the budget: a request 100 ms (one cell at 10/s) after
    // a refusal passes. A lower bound: a sleep is never short.
    for _ in 0..3 {
        let mut refused = false;
        for _ in 0..50 {
            match get(&live, "/", &[]).await.status {
                429 => {
                    refused = true;
                    break;
                }
                _ => passed += 1,
            }
        }
        assert!(refused, "the budget is spent");
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert_eq!(get(&live, "/", &[]).await.status, 200, "refilled after 100 ms");
        passed += 1;
    }
    // Never more than the rate allows: driven as fast as it goes, the passes
    // since the start are at most the burst plus 10 a second of the time
    // measured (which only errs long).
    for _ in 0..30 {
        if get(&live, "/", &[]).await.status == 200 {
            passed += 1;
        }
    }
    let allowed = 2 + (start.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(passed <= allowed, "{passed} passed, {allowed} allowed at 10/s");
    // The key expires once its budget would be full again (≤ 200 ms here).
    let gone = {
        let start = Instant::now();
        loop {
            if redis.limit_keys(0).await.is_empty() {
                break true;
            }
            if start.elapsed() > Duration::from_secs(10) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(gone, "the idle key expired");
    // A full budget again: the burst passes at once.
    assert_eq!(&statuses(2).await, &[200, 200]);
}

/// Sends `n` requests and checks each answers `status` within the store's
/// timeout (with room for a loaded machine: five times over, where a store
/// that is not bounded by its timeout would hold the request until the
/// client gives up).
async fn each_answers_quickly(live: &Live, n: usize, status: u16, timeout: Duration) {
    for i in 0..n {
        let start = Instant::now();
        let got = get(live, "/", &[]).await;
        let took = start.elapsed();
        assert_eq!(got.status, status, "request {i}");
        assert!(took < timeout * 5, "request {i} took {took:?} (timeout {timeout:?})");
        if status == 429 {
            assert_eq!(got.header("retry-after"), Some("1"));
            assert_eq!(got.header("ratelimit"), Some("\"l\";r=0;t=1"));
        }
    }
}

const ON_ERROR: &str = "listen 127.0.0.1:0
     upstream app { server {up} }
     store shared redis \"{redis}\" { timeout 1s on_error ACTION }
     limit l { rate 1/min burst 1 key none store shared }
     route /{*rest} -> app { limit l }";

#[tokio::test]
async fn redis_down_with_on_error_allow_lets_requests_through_quickly() {
    let timeout = Duration::from_secs(1);
    let text = ON_ERROR.replace("ACTION", "allow");
    // Nothing listening: refused at once.
    let (live, up) = gateway_with(&text, &closed_url()).await;
    each_answers_quickly(&live, 10, 200, timeout).await;
    assert_eq!(up.count(), 10);
    // A server that never answers: bounded by the timeout, then backing off.
    let (live, _up) = gateway_with(&text, &silent_url().await).await;
    let start = Instant::now();
    each_answers_quickly(&live, 10, 200, timeout).await;
    assert!(
        start.elapsed() < timeout * 5,
        "backing off: not every request of 10 waits the timeout ({:?})",
        start.elapsed()
    );
}

#[tokio::test]
async fn redis_down_with_on_error_deny_refuses_quickly() {
    let timeout = Duration::from_secs(1);
    let text = ON_ERROR.replace("ACTION", "deny");
    let (live, up) = gateway_with(&text, &closed_url()).await;
    each_answers_quickly(&live, 10, 429, timeout).await;
    let (live2, up2) = gateway_with(&text, &silent_url().await).await;
    each_answers_quickly(&live2, 10, 429, timeout).await;
    assert_eq!(up.count() + up2.count(), 0);
}

#[tokio::test]
async fn a_restarted_redis_is_used_again() {
    let Some(mut redis) = RedisServer::start(&[]).await else {
        return;
    };
    let (live, _up) = gateway_with(
        "listen 127.0.0.1:0
         upstream app { server {up} }
         store shared redis \"{redis}\" { timeout 300ms on_error allow }
         limit l { rate 1/min burst 2 key client_ip store shared }
         route /{*rest} -> app { limit l }",
        &redis.url(),
    )
    .await;
    assert_eq!(get(&live, "/", &[]).await.status, 200);
    assert_eq!(get(&live, "/", &[]).await.status, 200);
    assert_eq!(get(&live, "/", &[]).await.status, 429);
    assert_eq!(
        redis.limit_keys(0).await,
        vec!["gw:limit:l:ip:127.0.0.1".to_string()],
        "a client_ip key is readable"
    );
    // Down: on_error allow lets requests through, each within the store's
    // timeout (with room for a loaded machine).
    redis.stop();
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(get(&live, "/", &[]).await.status, 200);
        assert!(
            start.elapsed() < Duration::from_millis(300) * 5,
            "{:?}",
            start.elapsed()
        );
    }
    // Back (empty, the script unknown to it): a 429 can only come from
    // Redis, so the limit works again once one is seen.
    redis.restart().await;
    let start = Instant::now();
    let mut statuses = Vec::new();
    while start.elapsed() < Duration::from_secs(10) {
        let s = get(&live, "/", &[]).await.status;
        statuses.push(s);
        if s == 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(statuses.last(), Some(&429), "the limit works again: {statuses:?}");
    assert_eq!(redis.limit_keys(0).await, vec!["gw:limit:l:ip:127.0.0.1".to_string()]);
}

#[tokio::test]
async fn a_password_and_a_database_come_from_the_url() {
    let Some(redis) = RedisServer::start(&["--requirepass", "s3cr%t"]).await else {
        return;
    };
    let text = "listen 127.0.0.1:0
         upstream app { server {up} }
         store shared redis \"{redis}\" { timeout 500ms on_error allow }
         limit l { rate 1/min burst 1 key none store shared }
         route /{*rest} -> app { limit l }";
    let url = format!("redis://:s3cr%25t@127.0.0.1:{}/3", redis.port);
    let (live, _up) = gateway_with(text, &url).await;
    assert_eq!(get(&live, "/", &[]).await.status, 200);
    assert_eq!(get(&live, "/", &[]).await.status, 429, "counted in Redis");
    // A wrong password is an error answer: on_error allow lets requests by.
    let wrong = format!("redis://:nope@127.0.0.1:{}/3", redis.port);
    let (live, _up) = gateway_with(text, &wrong).await;
    for _ in 0..3 {
        assert_eq!(get(&live, "/", &[]).await.status, 200);
    }
    // The budget is in database 3 (checked with AUTH on a raw connection).
    let port = redis.port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut out = Vec::new();
    encode(&[b"AUTH", b"s3cr%t"], &mut out);
    encode(&[b"SELECT", b"3"], &mut out);
    encode(&[b"EXISTS", b"gw:limit:l:all"], &mut out);
    s.write_all(&out).await.expect("write");
    let mut buf = Vec::new();
    let replies = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            s.read_buf(&mut buf).await.expect("read");
            let mut at = 0;
            let mut replies = Vec::new();
            while let Some((r, used)) = parse(&buf[at..]).expect("resp") {
                replies.push(r);
                at += used;
            }
            if replies.len() == 3 {
                return replies;
            }
        }
    })
    .await
    .expect("answers");
    assert_eq!(replies[2], Reply::Int(1), "{replies:?}");
}

/// A CA and a certificate it signed for `127.0.0.1`, made with the
/// `openssl` command (Debian's `ca-certificates` depends on it) in `dir`:
/// `ca.crt`, `redis.crt`, `redis.key`.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command (apt-get install -y openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=gw test redis CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ];
    ca.extend(ec);
    run(&ca);
    let mut csr = vec![
        "req",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
    ];
    csr.extend(ec);
    run(&csr);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "redis.crt",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_store_counts_over_tls_verified_by_the_trust_roots() {
    let certs = crate::support::TempDir::new();
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let tls_port = free_port().to_string();
    let Some(_redis) = RedisServer::start(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &file("redis.crt"),
        "--tls-key-file",
        &file("redis.key"),
        "--tls-auth-clients",
        "no",
    ])
    .await
    else {
        return;
    };
    let up = Upstream::named("app").await;
    let config = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         store shared redis \"rediss://127.0.0.1:{tls_port}\" {{ timeout 2s on_error allow }}
         limit l {{ rate 1/min burst 1 key none store shared }}
         route /{{*rest}} -> app {{ limit l }}\n",
        up.addr
    );
    // The system's trust roots, as rustls-native-certs reads them: here
    // the test CA alone (SSL_CERT_FILE).
    let trusting = crate::serve_harness::Served::start_with_env(
        &[("app.gw", &config)],
        &["app.gw"],
        &[("SSL_CERT_FILE", &file("ca.crt"))],
    );
    trusting
        .wait_lines(Duration::from_secs(20), 1, |l| l.contains("redis store connected"))
        .await;
    let addr = trusting.bound(1).await[0];
    let url = format!("http://{addr}/x");
    assert_eq!(get_url(&url).await.status, 200);
    // With on_error allow, only Redis answering over TLS refuses this one.
    assert_eq!(get_url(&url).await.status, 429, "{}", trusting.output());

    // With the machine's trust roots, which do not hold the test CA: the
    // handshake fails, the store is down, on_error allow lets requests by.
    let distrusting = crate::serve_harness::Served::start_with_env(&[("app.gw", &config)], &["app.gw"], &[]);
    distrusting
        .wait_lines(Duration::from_secs(20), 1, |l| {
            l.contains("redis store not reachable yet")
        })
        .await;
    let addr = distrusting.bound(1).await[0];
    for _ in 0..3 {
        assert_eq!(get_url(&format!("http://{addr}/x")).await.status, 200);
    }
}

/// A TLS redis-server with a password, its certificate signed by the CA
/// in `certs` (made by [`make_certificates`]); `None` when skipped.
async fn tls_redis(certs: &std::path::Path, tls_port: &str, extra: &[&str]) -> Option<RedisServer> {
    let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let mut args = vec![
        "--tls-port".to_string(),
        tls_port.to_string(),
        "--tls-cert-file".to_string(),
        file("redis.crt"),
        "--tls-key-file".to_string(),
        file("redis.key"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start(&args).await
}

/// `store shared redis env("REDIS_URL") { tls { ca "..." } }`: the URL,
/// with its password, from the environment, the server verified by the
/// store's own CA (the machine's trust roots do not hold it: no
/// `SSL_CERT_FILE`), and the password shown nowhere (log, admin `/plan`).
/// With another CA the handshake fails and `on_error` decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_store_trusts_its_own_ca_and_a_wrong_one_applies_on_error() {
    const PASSWORD: &str = "PLANTEDTLSREDISPASSWORD";
    let certs = crate::support::TempDir::new();
    make_certificates(certs.path());
    let other = crate::support::TempDir::new();
    make_certificates(other.path());
    let tls_port = free_port().to_string();
    let Some(_redis) = tls_redis(
        certs.path(),
        &tls_port,
        &["--tls-auth-clients", "no", "--requirepass", PASSWORD],
    )
    .await
    else {
        return;
    };
    let up = Upstream::named("app").await;
    let config = |ca: &std::path::Path, on_error: &str| {
        format!(
            "listen 127.0.0.1:0
             admin 127.0.0.2:0
             upstream app {{ server {} }}
             store shared redis env(\"REDIS_URL\") {{
               timeout 2s
               on_error {on_error}
               tls {{ ca \"{}\" }}
             }}
             limit l {{ rate 1/min burst 1 key none store shared }}
             route /{{*rest}} -> app {{ limit l }}\n",
            up.addr,
            ca.join("ca.crt").display()
        )
    };
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{tls_port}/2");
    let env = [("REDIS_URL", url.as_str())];
    let trusting =
        crate::serve_harness::Served::start_with_env(&[("app.gw", &config(certs.path(), "allow"))], &["app.gw"], &env);
    trusting
        .wait_lines(Duration::from_secs(20), 1, |l| l.contains("redis store connected"))
        .await;
    let addr = trusting.bound(1).await[0];
    let target = format!("http://{addr}/x");
    assert_eq!(get_url(&target).await.status, 200);
    // With on_error allow, only Redis answering over TLS refuses this one.
    assert_eq!(get_url(&target).await.status, 429, "{}", trusting.output());
    let admin = trusting.admin().await;
    let plan = get_url(&format!("http://{admin}/plan")).await;
    assert_eq!(plan.status, 200);
    let plan = plan.body;
    assert!(plan.contains("REDIS_URL") && plan.contains("ca.crt"), "{plan}");
    assert!(!plan.contains(PASSWORD), "/plan shows the password: {plan}");
    assert!(!trusting.output().contains(PASSWORD), "{}", trusting.output());

    // Another CA: the handshake fails, the store is down.
    for (on_error, status) in [("allow", 200), ("deny", 429)] {
        let distrusting = crate::serve_harness::Served::start_with_env(
            &[("app.gw", &config(other.path(), on_error))],
            &["app.gw"],
            &env,
        );
        distrusting
            .wait_lines(Duration::from_secs(20), 1, |l| {
                l.contains("redis store not reachable yet")
            })
            .await;
        let addr = distrusting.bound(1).await[0];
        for _ in 0..3 {
            let r = get_url(&format!("http://{addr}/x")).await;
            assert_eq!(r.status, status, "on_error {on_error}: {}", distrusting.output());
        }
        assert!(!distrusting.output().contains(PASSWORD), "{}", distrusting.output());
    }
}

/// A client certificate for gw, signed by the CA [`make_certificates`]
/// made in `dir`: `client.crt`, `client.key`.
fn make_client_certificate(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-subj",
        "/CN=gw",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ]);
    std::fs::write(
        dir.join("client-ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "client-ext",
        "-out",
        "client.crt",
    ]);
}

/// `tls { ca .. cert .. key .. }` against a Redis that asks for client
/// certificates (`tls-auth-clients yes`), the URL read from `file()`:
/// with the certificate the store counts; without it Redis refuses the
/// connection and `on_error allow` lets requests by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_store_presents_its_client_certificate() {
    let certs = crate::support::TempDir::new();
    make_certificates(certs.path());
    make_client_certificate(certs.path());
    let file = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let tls_port = free_port().to_string();
    let Some(_redis) = tls_redis(
        certs.path(),
        &tls_port,
        &["--tls-auth-clients", "yes", "--tls-ca-cert-file", &file("ca.crt")],
    )
    .await
    else {
        return;
    };
    let up = Upstream::named("app").await;
    let config = |tls: &str| {
        format!(
            "listen 127.0.0.1:0
             upstream app {{ server {} }}
             store shared redis file(\"redis.url\") {{ timeout 2s on_error allow tls {{ {tls} }} }}
             limit l {{ rate 1/min burst 1 key none store shared }}
             route /{{*rest}} -> app {{ limit l }}\n",
            up.addr
        )
    };
    let url = format!("rediss://127.0.0.1:{tls_port}/4\n");
    let with_cert = config(&format!(
        "ca \"{}\" cert \"{}\" key \"{}\"",
        file("ca.crt"),
        file("client.crt"),
        file("client.key")
    ));
    let presenting = crate::serve_harness::Served::start(&[("app.gw", &with_cert), ("redis.url", &url)], &["app.gw"]);
    presenting
        .wait_lines(Duration::from_secs(20), 1, |l| l.contains("redis store connected"))
        .await;
    let addr = presenting.bound(1).await[0];
    assert_eq!(get_url(&format!("http://{addr}/x")).await.status, 200);
    assert_eq!(
        get_url(&format!("http://{addr}/x")).await.status,
        429,
        "{}",
        presenting.output()
    );

    let without = config(&format!("ca \"{}\"", file("ca.crt")));
    let refused = crate::serve_harness::Served::start(&[("app.gw", &without), ("redis.url", &url)], &["app.gw"]);
    refused
        .wait_lines(Duration::from_secs(20), 1, |l| {
            l.contains("redis store not reachable yet")
        })
        .await;
    let addr = refused.bound(1).await[0];
    for _ in 0..3 {
        assert_eq!(
            get_url(&format!("http://{addr}/x")).await.status,
            200,
            "{}",
            refused.output()
        );
    }
}

/// The URL read from `file()` is read again at a reload: a rotated
/// password opens a new connection even though the `.gw` file, and so the
/// plan, did not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reads_a_store_url_file_again() {
    let Some(redis) = RedisServer::start(&["--requirepass", "rotated"]).await else {
        return;
    };
    let up = Upstream::named("app").await;
    let config = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         store shared redis file(\"redis.url\") {{ timeout 2s on_error allow }}
         limit l {{ rate 1/min burst 1 key none store shared }}
         route /{{*rest}} -> app {{ limit l }}\n",
        up.addr
    );
    let url = |password: &str| format!("redis://:{password}@127.0.0.1:{}/5\n", redis.port);
    let served = crate::serve_harness::Served::start(&[("app.gw", &config), ("redis.url", &url("old"))], &["app.gw"]);
    served
        .wait_lines(Duration::from_secs(20), 1, |l| {
            l.contains("redis store not reachable yet")
        })
        .await;
    let addr = served.bound(1).await[0];
    for _ in 0..3 {
        assert_eq!(get_url(&format!("http://{addr}/x")).await.status, 200);
    }
    served.write("redis.url", &url("rotated"));
    served.signal("HUP");
    served
        .wait_lines(Duration::from_secs(20), 1, |l| l.contains("redis store connected"))
        .await;
    assert_eq!(get_url(&format!("http://{addr}/x")).await.status, 200);
    assert_eq!(
        get_url(&format!("http://{addr}/x")).await.status,
        429,
        "{}",
        served.output()
    );
    assert!(!served.output().contains("rotated@"), "{}", served.output());
}

#[test]
fn redis_urls_parse_host_port_database_and_credentials() {
    let t = |host: &str, port, db, user: Option<&str>, pass: Option<&str>| Target {
        host: host.into(),
        port,
        db,
        username: user.map(Into::into),
        password: pass.map(Into::into),
    };
    assert_eq!(
        parse_url("redis://127.0.0.1:6379"),
        Ok(t("127.0.0.1", 6379, 0, None, None))
    );
    assert_eq!(parse_url("redis://cache"), Ok(t("cache", 6379, 0, None, None)));
    assert_eq!(parse_url("redis://cache:7000/2"), Ok(t("cache", 7000, 2, None, None)));
    assert_eq!(
        parse_url("redis://:pw@cache/"),
        Ok(t("cache", 6379, 0, None, Some("pw")))
    );
    assert_eq!(
        parse_url("redis://gw:p%40ss@[::1]:6380/1"),
        Ok(t("::1", 6380, 1, Some("gw"), Some("p@ss")))
    );
    assert_eq!(parse_url("rediss://cache:6380"), Ok(t("cache", 6380, 0, None, None)));
    assert!(parse_url("redis://cache:0").is_err());
    assert!(parse_url("redis://cache/x").is_err());
    assert!(parse_url("redis://user@cache").is_err());
    assert!(parse_url("redis://").is_err());
}
