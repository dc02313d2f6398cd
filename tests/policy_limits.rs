//! `limit`: the GCRA arithmetic on a controllable clock (burst, refill,
//! `Retry-After`), memory that shrinks back after a million distinct keys,
//! and 429s through a live gateway keyed by client IP, header, API key and
//! nothing.

use crate::policy::{gateway, get};
use governor::clock::FakeRelativeClock;
use gw_runtime::policy::limit::{retry_after_secs, KeyedLimiter};
use std::time::Duration;

#[test]
fn burst_b_passes_at_once_then_the_refill_matches_the_rate() {
    let clock = FakeRelativeClock::default();
    // 10/s with burst 5: five at once, then one every 100 ms.
    let limiter = KeyedLimiter::new(10, Duration::from_secs(1), 5, 1000, clock.clone());
    let key = Some("k");
    for i in 0..5 {
        assert!(limiter.check(key).is_ok(), "request {i} of the burst");
    }
    let wait = limiter.check(key).expect_err("the sixth waits");
    assert_eq!(wait, Duration::from_millis(100));
    clock.advance(Duration::from_millis(99));
    assert!(limiter.check(key).is_err(), "not before 100 ms");
    clock.advance(Duration::from_millis(1));
    assert!(limiter.check(key).is_ok(), "one cell after 100 ms");
    assert!(limiter.check(key).is_err());
    // 350 ms refill three cells; the fourth must wait the remaining 50 ms.
    clock.advance(Duration::from_millis(350));
    for _ in 0..3 {
        assert!(limiter.check(key).is_ok());
    }
    assert_eq!(limiter.check(key), Err(Duration::from_millis(50)));
    // A long idle time refills the burst, never more.
    clock.advance(Duration::from_secs(60));
    let passed = (0..20).filter(|_| limiter.check(key).is_ok()).count();
    assert_eq!(passed, 5);
    // Other keys have budgets of their own; an absent key is one shared budget.
    assert!(limiter.check(Some("other")).is_ok());
    for _ in 0..5 {
        assert!(limiter.check(None).is_ok());
    }
    assert!(limiter.check(None).is_err());
}

#[test]
fn a_slow_rate_counts_in_whole_periods() {
    let clock = FakeRelativeClock::default();
    // 100/min, burst 100 (the default): 100 at once, then one every 600 ms.
    let limiter = KeyedLimiter::new(100, Duration::from_secs(60), 100, 1000, clock.clone());
    assert_eq!((0..150).filter(|_| limiter.check(Some("u")).is_ok()).count(), 100);
    clock.advance(Duration::from_secs(6));
    assert_eq!((0..50).filter(|_| limiter.check(Some("u")).is_ok()).count(), 10);
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    assert_eq!(retry_after_secs(Duration::from_millis(59_999)), 60);
    assert_eq!(retry_after_secs(Duration::ZERO), 1);
}

#[test]
fn a_million_rotating_keys_are_pruned_back_to_nothing() {
    const KEYS: usize = 1_000_000;
    let clock = FakeRelativeClock::default();
    let (limiter, bytes) = crate::plan::alloc_count::bytes_during(|| {
        let limiter = KeyedLimiter::new(10, Duration::from_secs(1), 10, KEYS + 1, clock.clone());
        for i in 0..KEYS as u32 {
            let _ = limiter.check(Some(&i.to_string()));
        }
        limiter
    });
    assert_eq!(limiter.len(), KEYS);
    assert_eq!(limiter.overflowed(), 0);
    // What a key costs, measured: the figure `max_keys` is documented with
    // (docs/language.md: about 36 bytes a key at this many).
    let per_key = bytes as f64 / KEYS as f64;
    eprintln!("a limit's keys: {per_key:.1} bytes each at {KEYS} keys");
    assert!((16.0..=48.0).contains(&per_key), "{per_key:.1} bytes a key");
    // A key used recently enough to differ from a fresh one is kept.
    clock.advance(Duration::from_secs(2));
    for _ in 0..10 {
        let _ = limiter.check(Some("busy"));
    }
    limiter.prune();
    assert_eq!(limiter.len(), 1, "only the busy key remains");
    clock.advance(Duration::from_secs(2));
    limiter.prune();
    assert!(limiter.is_empty());
}

#[test]
fn at_max_keys_new_keys_share_one_overflow_budget_and_tracked_keys_keep_theirs() {
    let clock = FakeRelativeClock::default();
    // 1/s with burst 2, at most 3 keys of their own.
    let limiter = KeyedLimiter::new(1, Duration::from_secs(1), 2, 3, clock.clone());
    for key in ["a", "b", "c"] {
        assert!(limiter.check(Some(key)).is_ok());
    }
    assert!(limiter.check(Some("a")).is_ok());
    assert!(limiter.check(Some("a")).is_err(), "a's budget is spent");
    assert_eq!((limiter.len(), limiter.overflowed()), (3, 0));
    // A client inventing keys: every new key shares one budget (burst 2).
    let invented = (0..1000)
        .filter(|i| limiter.check(Some(&format!("x{i}"))).is_ok())
        .count();
    assert_eq!(invented, 2, "a thousand new keys got one key's burst");
    assert_eq!((limiter.len(), limiter.overflowed()), (3, 1000));
    // ... and pushed nobody out: `a` is still refused, `b` and `c` still
    // have the one cell each left.
    assert!(limiter.check(Some("a")).is_err(), "a's spent budget was not reset");
    for key in ["b", "c"] {
        assert!(limiter.check(Some(key)).is_ok());
        assert!(limiter.check(Some(key)).is_err());
    }
    // Once keys are full again they are pruned, and new keys get room.
    clock.advance(Duration::from_secs(10));
    limiter.prune();
    assert!(limiter.is_empty());
    assert!(limiter.check(Some("new")).is_ok());
    assert_eq!((limiter.len(), limiter.overflowed()), (1, 1000));
}

#[tokio::test]
async fn a_limit_at_max_keys_counts_overflows_in_metrics() {
    let up = crate::live::Upstream::named("app").await;
    let options = gw_runtime::Options {
        admin_override: Some("127.0.0.1:0".into()),
        ..gw_runtime::Options::default()
    };
    let text = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         limit by_tenant {{ rate 1/min burst 1 key header.x-tenant max_keys 2 }}
         route /{{*rest}} -> app {{ limit by_tenant }}",
        up.addr
    );
    let gateway = gw_runtime::Gateway::start(crate::live::plan_of(&text, &[]), options)
        .await
        .expect("gateway starts");
    let listen = gateway.local_addrs().await[0];
    let admin = gateway.admin_addr().expect("an admin listener");
    let tenant = |t: &'static str| {
        let url = format!("http://{listen}/");
        async move {
            let req = hyper::Request::get(url)
                .header("x-tenant", t)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            crate::live::send(req).await.status
        }
    };
    assert_eq!(tenant("a").await, 200);
    assert_eq!(tenant("b").await, 200);
    assert_eq!(tenant("c").await, 200, "the overflow budget's one cell");
    assert_eq!(tenant("d").await, 429, "shared with every key past the cap");
    assert_eq!(tenant("a").await, 429, "a kept its own (spent) budget");
    let m = crate::live::get(&format!("http://{admin}/metrics")).await.body;
    let sample = |series: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert_eq!(sample("gw_limit_keys{limit=\"by_tenant\"}"), Some(2.0), "{m}");
    assert_eq!(sample("gw_limit_overflow_total{limit=\"by_tenant\"}"), Some(2.0), "{m}");
    assert!(m.contains("# TYPE gw_limit_overflow_total counter"), "{m}");
}

#[tokio::test]
async fn a_refusal_is_429_with_retry_after_and_ratelimit_headers() {
    let (live, up) = gateway(
        "listen 127.0.0.1:0
         upstream app { server {up} }
         limit per_ip { rate 2/min burst 2 key client_ip }
         route /{*rest} -> app { limit per_ip }",
    )
    .await;
    assert_eq!(get(&live, "/a", &[]).await.status, 200);
    assert_eq!(get(&live, "/b", &[]).await.status, 200);
    let got = get(&live, "/c", &[]).await;
    assert_eq!(got.status, 429);
    // One cell per 30 s: the wait is just under 30 s, rounded up.
    assert_eq!(got.header("retry-after"), Some("30"));
    assert_eq!(got.header("ratelimit-policy"), Some("\"per_ip\";q=2;w=60"));
    assert_eq!(got.header("ratelimit"), Some("\"per_ip\";r=0;t=30"));
    assert_eq!(got.body, "{\"error\":\"too many requests\",\"status\":429}\n");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn limits_key_by_header_api_key_and_nothing() {
    let (live, up) = gateway(
        "listen 127.0.0.1:0
         upstream app { server {up} }
         auth partners api_key { keys \"k-alpha alpha\", \"k-beta beta\" }
         limit by_tenant { rate 1/min burst 1 key header.x-tenant }
         limit by_key { rate 1/min burst 1 key api_key }
         limit everyone { rate 3/min key none }
         route /tenant -> app { limit by_tenant }
         route /partner -> app { auth partners limit by_key }
         route /global -> app { limit everyone }",
    )
    .await;
    // header.x-tenant: one budget per tenant; no header is one more budget.
    assert_eq!(get(&live, "/tenant", &[("x-tenant", "a")]).await.status, 200);
    assert_eq!(get(&live, "/tenant", &[("x-tenant", "a")]).await.status, 429);
    assert_eq!(get(&live, "/tenant", &[("x-tenant", "b")]).await.status, 200);
    assert_eq!(get(&live, "/tenant", &[]).await.status, 200);
    assert_eq!(
        get(&live, "/tenant", &[]).await.status,
        429,
        "leaving the header out shares one budget"
    );
    // api_key: each key's name is its own budget.
    assert_eq!(get(&live, "/partner", &[("x-api-key", "k-alpha")]).await.status, 200);
    assert_eq!(get(&live, "/partner", &[("x-api-key", "k-alpha")]).await.status, 429);
    assert_eq!(get(&live, "/partner", &[("x-api-key", "k-beta")]).await.status, 200);
    // none: one budget for everyone.
    for tenant in ["x", "y", "z"] {
        assert_eq!(get(&live, "/global", &[("x-tenant", tenant)]).await.status, 200);
    }
    assert_eq!(get(&live, "/global", &[("x-tenant", "w")]).await.status, 429);
    assert_eq!(up.count(), 3 + 2 + 3);
}

#[tokio::test]
async fn limit_budgets_survive_a_reload_of_an_unchanged_limit() {
    let (live, up) = gateway(
        "listen 127.0.0.1:0
         upstream app { server {up} }
         limit per_ip { rate 1/min burst 1 key client_ip }
         route /{*rest} -> app { limit per_ip }",
    )
    .await;
    assert_eq!(get(&live, "/", &[]).await.status, 200);
    let text = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         limit per_ip {{ rate 1/min burst 1 key client_ip }}
         route /{{*rest}} -> app {{ limit per_ip set response header x-v \"2\" }}",
        up.addr
    );
    let plan = crate::live::plan_of(&text, &[]);
    live.gateway.reload(plan).await.expect("reload");
    let got = get(&live, "/", &[]).await;
    assert_eq!(got.status, 429, "the budget spent before the reload still counts");
}
