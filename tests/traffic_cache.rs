//! `cache` through a live gateway, the upstream counting what reaches it: a
//! hit, expiry, `Vary`, `no-store`, `private`, `no-cache`, `Set-Cookie`,
//! a body over the entry bound, `Authorization` (refused unless `public`),
//! `Age`, `HEAD` from a `GET`
//! entry, concurrent misses coalesced into one upstream request,
//! `stale-while-revalidate`, and a reload that keeps the entries of an
//! unchanged route.

use crate::live::{eventually, send, Live, Upstream};
use crate::proxy_support::within;
use bytes::Bytes;
use gw_runtime::body::full;
use http_body_util::Full;
use hyper::{Request, Response};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Holds the upstream's answers until opened: `/held` always, `/swr` while
/// `hold` is set.
#[derive(Clone)]
struct Gate {
    hold: Arc<AtomicBool>,
    open: Arc<tokio::sync::Semaphore>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            hold: Arc::default(),
            open: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Gate {
    fn open(&self) {
        self.open.add_permits(1 << 20);
    }
}

/// Answers `/PATH` with `PATH LANG #n` (n counts the upstream's answers),
/// and headers by path.
async fn upstream(gate: Gate) -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |req| {
        let n = n.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = gate.clone();
        async move {
            let path = req.uri().path().trim_start_matches('/').to_string();
            let lang = req
                .headers()
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let mut headers: Vec<(&str, String)> = Vec::new();
            match path.as_str() {
                "nostore" => headers.push(("cache-control", "no-store".into())),
                "private" => headers.push(("cache-control", "private, max-age=60".into())),
                "nocache" => headers.push(("cache-control", "no-cache".into())),
                "public" => headers.push(("cache-control", "public, max-age=60".into())),
                "cookie" => headers.push(("set-cookie", "a=b".into())),
                "aged" => {
                    headers.push(("cache-control", "max-age=600".into()));
                    headers.push(("age", "100".into()));
                }
                "expired" => headers.push(("expires", "Thu, 01 Jan 1970 00:00:00 GMT".into())),
                "vary" => headers.push(("vary", "Accept-Language".into())),
                "varystar" => headers.push(("vary", "*".into())),
                "swr" => headers.push(("cache-control", "max-age=1, stale-while-revalidate=30".into())),
                _ => {}
            }
            if path == "held" || (path == "swr" && gate.hold.load(Ordering::SeqCst)) {
                if let Ok(p) = gate.open.acquire().await {
                    p.forget();
                }
            }
            let mut body = format!("{path} {lang} #{n}");
            if path == "big" {
                // Over an eighth of the tests' 1 MiB: streamed, not stored.
                body.push_str(&"x".repeat(200 * 1024));
            }
            let mut r = Response::new(full(body));
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().expect("value"));
            }
            r
        }
    })
    .await
}

fn config(up: &Upstream, ttl: &str) -> String {
    format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         route GET /{{*rest}} -> app {{
           cache {{ ttl {ttl}  max_size 1MiB }}
         }}",
        up.addr
    )
}

async fn fetch(live: &Live, method: &str, path: &str, headers: &[(&str, &str)]) -> crate::live::Got {
    let mut req = Request::builder().method(method).uri(live.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::new())).expect("request")).await
}

async fn get(live: &Live, path: &str) -> crate::live::Got {
    fetch(live, "GET", path, &[]).await
}

#[tokio::test]
async fn a_second_request_is_a_hit_with_age_and_head_is_served_from_it() {
    let up = upstream(Gate::default()).await;
    let live = Live::start(&config(&up, "60s")).await;
    let first = get(&live, "/menu").await;
    assert_eq!((first.status, first.header("x-cache")), (200, Some("miss")));
    let second = get(&live, "/menu").await;
    assert_eq!(second.header("x-cache"), Some("hit"));
    assert_eq!(second.body, first.body);
    assert!(second.header("age").is_some_and(|a| a.parse::<u64>().is_ok()));
    let head = fetch(&live, "HEAD", "/menu", &[]).await;
    assert_eq!((head.header("x-cache"), head.body.as_str()), (Some("hit"), ""));
    let length = first.body.len().to_string();
    assert_eq!(head.header("content-length"), Some(length.as_str()));
    // Another query is another key.
    let other = get(&live, "/menu?page=2").await;
    assert_eq!(other.header("x-cache"), Some("miss"));
    assert_eq!(up.count(), 2);
    // The upstream's own `Age` counts in: 100 s old when stored.
    get(&live, "/aged").await;
    let aged = get(&live, "/aged").await;
    assert_eq!(aged.header("x-cache"), Some("hit"));
    assert!(aged
        .header("age")
        .and_then(|a| a.parse::<u64>().ok())
        .is_some_and(|a| a >= 100));
}

#[tokio::test]
async fn an_entry_expires_after_its_ttl() {
    let up = upstream(Gate::default()).await;
    let live = Live::start(&config(&up, "1s")).await;
    let first = get(&live, "/menu").await;
    assert_eq!(get(&live, "/menu").await.header("x-cache"), Some("hit"));
    // Once stale, the next request goes upstream (bounded wait).
    let mut fresh = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let got = get(&live, "/menu").await;
        if got.header("x-cache") == Some("miss") {
            fresh = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = fresh.expect("the entry expired within 5 s");
    assert_ne!(fresh.body, first.body);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn what_the_upstream_forbids_is_not_stored() {
    let up = upstream(Gate::default()).await;
    let live = Live::start(&config(&up, "60s")).await;
    for path in [
        "/nostore",
        "/private",
        "/nocache",
        "/cookie",
        "/expired",
        "/varystar",
        "/big",
    ] {
        let a = get(&live, path).await;
        let b = get(&live, path).await;
        assert_eq!(
            (a.header("x-cache"), b.header("x-cache")),
            (Some("miss"), Some("miss")),
            "{path}"
        );
        assert_ne!(a.body, b.body, "{path}");
        assert!(a.status == 200 && a.body.starts_with(&path[1..]), "{path}");
        if path == "/big" {
            assert!(a.body.len() > 200 * 1024 && a.body.ends_with('x'), "the whole body");
        }
    }
    assert_eq!(up.count(), 14);
    // A request's own `no-store` bypasses the cache; `no-cache` refreshes it.
    get(&live, "/menu").await;
    let bypass = fetch(&live, "GET", "/menu", &[("cache-control", "no-store")]).await;
    assert_eq!(bypass.header("x-cache"), Some("miss"));
    let refreshed = fetch(&live, "GET", "/menu", &[("cache-control", "no-cache")]).await;
    assert_eq!(refreshed.header("x-cache"), Some("miss"));
    let hit = get(&live, "/menu").await;
    assert_eq!(
        (hit.header("x-cache"), hit.body.as_str()),
        (Some("hit"), refreshed.body.as_str())
    );
    // Only GET and HEAD are cached.
    let post = fetch(&live, "POST", "/menu", &[]).await;
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn vary_keeps_one_entry_per_value() {
    let up = upstream(Gate::default()).await;
    let live = Live::start(&config(&up, "60s")).await;
    let fr = [("accept-language", "fr")];
    let de = [("accept-language", "de")];
    let a = fetch(&live, "GET", "/vary", &fr).await;
    assert_eq!(a.header("x-cache"), Some("miss"));
    assert!(a.body.starts_with("vary fr "));
    let b = fetch(&live, "GET", "/vary", &de).await;
    assert_eq!(b.header("x-cache"), Some("miss"));
    assert!(b.body.starts_with("vary de "));
    let c = fetch(&live, "GET", "/vary", &fr).await;
    assert_eq!((c.header("x-cache"), c.body.as_str()), (Some("hit"), a.body.as_str()));
    let d = fetch(&live, "GET", "/vary", &de).await;
    assert_eq!((d.header("x-cache"), d.body.as_str()), (Some("hit"), b.body.as_str()));
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn authorization_is_served_only_what_the_upstream_made_public() {
    let up = upstream(Gate::default()).await;
    let live = Live::start(&config(&up, "60s")).await;
    let auth = [("authorization", "Bearer alice")];
    // Not stored for a request with credentials...
    let a = fetch(&live, "GET", "/menu", &auth).await;
    let b = fetch(&live, "GET", "/menu", &auth).await;
    assert_eq!((a.header("x-cache"), b.header("x-cache")), (Some("miss"), Some("miss")));
    assert_ne!(a.body, b.body);
    // ...nor served one stored for another request.
    let anon = get(&live, "/menu").await;
    assert_eq!(get(&live, "/menu").await.header("x-cache"), Some("hit"));
    let c = fetch(&live, "GET", "/menu", &auth).await;
    assert_eq!(c.header("x-cache"), Some("miss"));
    assert_ne!(c.body, anon.body);
    // `public` allows both.
    let p = fetch(&live, "GET", "/public", &auth).await;
    assert_eq!(p.header("x-cache"), Some("miss"));
    let q = fetch(&live, "GET", "/public", &[("authorization", "Bearer bob")]).await;
    assert_eq!((q.header("x-cache"), q.body.as_str()), (Some("hit"), p.body.as_str()));
    assert_eq!(up.count(), 5);
}

/// Writes a GET of `path` on a connection of its own; the answer is read
/// once `written` is counted.
async fn raw_get(addr: std::net::SocketAddr, path: &str, written: Arc<AtomicUsize>) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: cache.test\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    written.fetch_add(1, Ordering::SeqCst);
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_request() {
    const N: usize = 8;
    let gate = Gate::default();
    let up = upstream(gate.clone()).await;
    let live = Live::start(&config(&up, "60s")).await;
    let written = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..N)
        .map(|_| tokio::spawn(raw_get(live.addrs[0], "/held", written.clone())))
        .collect();
    // The upstream holds the first request until all N were sent to the
    // gateway; without coalescing, the others reach it too.
    assert!(
        eventually(Duration::from_secs(5), || written.load(Ordering::SeqCst) == N
            && up.arrived.load(Ordering::SeqCst) >= 1)
        .await
    );
    let more = eventually(Duration::from_millis(300), || up.arrived.load(Ordering::SeqCst) > 1).await;
    gate.open();
    let mut bodies = Vec::new();
    for t in tasks {
        let text = within(Duration::from_secs(10), "an answer", t).await.expect("task");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        bodies.push(text.rsplit("\r\n\r\n").next().unwrap_or_default().to_string());
    }
    assert!(!more, "more than one request reached the upstream");
    assert_eq!(up.count(), 1);
    assert!(bodies.iter().all(|b| b == "held - #1"), "{bodies:?}");
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_while_one_refreshes() {
    let gate = Gate::default();
    let up = upstream(gate.clone()).await;
    let live = Arc::new(Live::start(&config(&up, "60s")).await);
    let first = get(&live, "/swr").await;
    assert_eq!(first.header("x-cache"), Some("miss"));
    // `max-age=1`: stale once a second has passed (the freshness itself).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    gate.hold.store(true, Ordering::SeqCst);
    let refresher = {
        let live = live.clone();
        tokio::spawn(async move { get(&live, "/swr").await })
    };
    assert!(eventually(Duration::from_secs(5), || up.arrived.load(Ordering::SeqCst) == 2).await);
    let stale = get(&live, "/swr").await;
    assert_eq!(
        (stale.header("x-cache"), stale.body.as_str()),
        (Some("stale"), first.body.as_str())
    );
    gate.open();
    let refreshed = within(Duration::from_secs(10), "the refresh", refresher)
        .await
        .expect("task");
    assert_eq!(refreshed.header("x-cache"), Some("miss"));
    assert_ne!(refreshed.body, first.body);
    let after = get(&live, "/swr").await;
    assert_eq!(
        (after.header("x-cache"), after.body.as_str()),
        (Some("hit"), refreshed.body.as_str())
    );
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn a_reload_keeps_the_entries_of_an_unchanged_route() {
    let up = upstream(Gate::default()).await;
    let live = Live::start(&config(&up, "60s")).await;
    let first = get(&live, "/menu").await;
    // Another route added: this one is unchanged, its entries stay.
    let more = format!("{}\n route GET /other -> app", config(&up, "60s"));
    live.gateway
        .reload(crate::live::plan_of(&more, &[]))
        .await
        .expect("reload");
    let kept = get(&live, "/menu").await;
    assert_eq!(
        (kept.header("x-cache"), kept.body.as_str()),
        (Some("hit"), first.body.as_str())
    );
    // Its cache settings changed: a new cache.
    live.gateway
        .reload(crate::live::plan_of(&config(&up, "30s"), &[]))
        .await
        .expect("reload");
    assert_eq!(get(&live, "/menu").await.header("x-cache"), Some("miss"));
    assert_eq!(up.count(), 2);
}

#[test]
fn a_route_that_tells_callers_apart_cannot_cache() {
    let text = "upstream app { server 127.0.0.1:9001 }
        auth users api_key { keys file(\"keys.txt\") }
        route GET /me -> app {
          auth users
          cache { ttl 30s }
        }
        route GET /orders -> app {
          set request header x-user \"{client_cert.subject}\"
          cache { ttl 30s }
        }
        route GET /menu -> app { cache { ttl 30s } }
        listen 127.0.0.1:8080";
    let host = gw_compiler::host::MemoryHost::new().file("keys.txt", b"k1\n".to_vec());
    let c = gw_compiler::compile_text(&host, "test.gw", text);
    let codes: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.to_string())
        .collect();
    assert_eq!(codes, ["GW0210", "GW0210"], "{:#?}", c.diagnostics);
}
