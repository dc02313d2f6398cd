//! Balancing strategies and server health, without a network: exact
//! distributions for weighted round robin, least_conn avoiding busy servers,
//! consistent hashing moving only the removed server's keys, backups.

use gw_runtime::upstream::balance::{Balancer, Strategy};
use gw_runtime::upstream::health::{EjectPolicy, Outcome, ServerState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn servers(weights: &[(u32, bool)]) -> Vec<Arc<ServerState>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, (w, backup))| Arc::new(ServerState::new(format!("127.0.0.1:{}", 9000 + i), *w, *backup)))
        .collect()
}

fn counts(b: &Balancer, s: &[Arc<ServerState>], n: usize) -> Vec<usize> {
    let mut c = vec![0; s.len()];
    for _ in 0..n {
        c[b.pick(s, None, &[]).expect("a server")] += 1;
    }
    c
}

#[test]
fn weighted_round_robin_is_exact_and_smooth() {
    let s = servers(&[(5, false), (1, false), (1, false)]);
    let b = Balancer::new(Strategy::RoundRobin, &s);
    let first: Vec<_> = (0..7).map(|_| b.pick(&s, None, &[]).unwrap()).collect();
    // nginx's smooth sequence for weights 5, 1, 1.
    assert_eq!(first, [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(counts(&b, &s, 7000), [5000, 1000, 1000]);
}

#[test]
fn round_robin_skips_unhealthy_servers() {
    let s = servers(&[(1, false), (1, false), (1, false)]);
    s[1].set_healthy(false);
    let b = Balancer::new(Strategy::RoundRobin, &s);
    assert_eq!(counts(&b, &s, 600), [300, 0, 300]);
}

#[test]
fn backup_used_only_when_primaries_down() {
    let s = servers(&[(1, false), (1, false), (1, true)]);
    let b = Balancer::new(Strategy::RoundRobin, &s);
    assert_eq!(counts(&b, &s, 100)[2], 0);
    s[0].set_healthy(false);
    s[1].set_healthy(false);
    assert_eq!(counts(&b, &s, 100), [0, 0, 100]);
    s[2].set_healthy(false);
    assert_eq!(b.pick(&s, None, &[]), None);
}

#[test]
fn tried_servers_are_not_picked_again() {
    let s = servers(&[(1, false), (1, false)]);
    for strategy in [
        Strategy::RoundRobin,
        Strategy::LeastConn,
        Strategy::Random,
        Strategy::P2c,
        Strategy::Hash,
    ] {
        let b = Balancer::new(strategy, &s);
        for _ in 0..50 {
            assert_eq!(b.pick(&s, Some(b"key"), &[0]), Some(1), "{strategy:?}");
        }
    }
}

#[test]
fn least_conn_avoids_the_busy_server() {
    let s = servers(&[(1, false), (1, false), (1, false)]);
    let b = Balancer::new(Strategy::LeastConn, &s);
    let _busy: Vec<_> = (0..5).map(|_| s[1].start()).collect();
    let c = counts(&b, &s, 300);
    assert_eq!(c[1], 0, "{c:?}");
    assert_eq!(c[0] + c[2], 300);
    assert!(c[0] >= 100 && c[2] >= 100, "ties rotate: {c:?}");
}

#[test]
fn least_conn_weighs_in_flight_by_weight() {
    let s = servers(&[(3, false), (1, false)]);
    let b = Balancer::new(Strategy::LeastConn, &s);
    // 2 in flight on a weight-3 server is less load than 1 on a weight-1 server.
    let _a: Vec<_> = (0..2).map(|_| s[0].start()).collect();
    let _b = s[1].start();
    assert_eq!(b.pick(&s, None, &[]), Some(0));
}

#[test]
fn weighted_random_follows_weights() {
    let s = servers(&[(3, false), (1, false)]);
    let b = Balancer::new(Strategy::Random, &s);
    let c = counts(&b, &s, 20_000);
    let share = c[0] as f64 / 20_000.0;
    assert!((0.72..0.78).contains(&share), "share of weight-3 server: {share}");
}

#[test]
fn p2c_prefers_the_less_loaded_of_two() {
    let s = servers(&[(1, false), (1, false)]);
    let b = Balancer::new(Strategy::P2c, &s);
    let _busy: Vec<_> = (0..10).map(|_| s[0].start()).collect();
    // With two servers, p2c draws both whenever it can: the idle one wins.
    let c = counts(&b, &s, 200);
    assert!(c[1] >= 190, "{c:?}");
}

#[test]
fn hashing_is_sticky_and_falls_back_to_round_robin_without_key() {
    let s = servers(&[(1, false), (1, false), (1, false)]);
    let b = Balancer::new(Strategy::Hash, &s);
    for user in ["alice", "bob", "carol", "dave"] {
        let first = b.pick(&s, Some(user.as_bytes()), &[]);
        assert!((0..20).all(|_| b.pick(&s, Some(user.as_bytes()), &[]) == first));
    }
    assert_eq!(counts(&b, &s, 300), [100, 100, 100]);
}

#[test]
fn removing_one_of_n_servers_moves_about_one_nth_of_keys() {
    let n = 10;
    let all = servers(&vec![(1, false); n]);
    let before = Balancer::new(Strategy::Hash, &all);
    let fewer: Vec<_> = all.iter().filter(|s| !s.id.ends_with(":9003")).cloned().collect();
    let after = Balancer::new(Strategy::Hash, &fewer);
    let keys = 20_000;
    let mut moved = 0;
    let mut per_server: HashMap<String, usize> = HashMap::new();
    for k in 0..keys {
        let key = format!("user-{k}");
        let a = &all[before.pick(&all, Some(key.as_bytes()), &[]).unwrap()].id;
        let b = &fewer[after.pick(&fewer, Some(key.as_bytes()), &[]).unwrap()].id;
        *per_server.entry(a.clone()).or_default() += 1;
        if a != b {
            moved += 1;
            assert!(a.ends_with(":9003"), "key {key} moved from {a}, which was not removed");
        }
    }
    let share = moved as f64 / keys as f64;
    assert!(
        (0.06..0.14).contains(&share),
        "moved {share} of keys, expected about 1/{n}"
    );
    assert!(
        per_server.values().all(|c| *c > keys / n / 2),
        "ring balance: {per_server:?}"
    );
}

#[test]
fn hashing_moves_keys_of_an_unhealthy_server_only() {
    let s = servers(&[(1, false), (1, false), (1, false), (1, false)]);
    let b = Balancer::new(Strategy::Hash, &s);
    let owners: Vec<_> = (0..1000)
        .map(|k| b.pick(&s, Some(format!("k{k}").as_bytes()), &[]).unwrap())
        .collect();
    s[2].set_healthy(false);
    for (k, owner) in owners.iter().enumerate() {
        let now = b.pick(&s, Some(format!("k{k}").as_bytes()), &[]).unwrap();
        assert_ne!(now, 2);
        if *owner != 2 {
            assert_eq!(now, *owner);
        }
    }
}

#[test]
fn active_checks_flip_after_thresholds() {
    let s = ServerState::new("a", 1, false);
    assert!(s.is_healthy(), "servers start healthy");
    assert!(!s.record_check(false, 2, 3));
    assert!(!s.record_check(false, 2, 3));
    assert!(s.record_check(false, 2, 3));
    assert!(!s.is_healthy());
    assert!(!s.record_check(true, 2, 3));
    assert!(!s.record_check(false, 2, 3), "a failure resets the passing streak");
    assert!(!s.record_check(true, 2, 3));
    assert!(s.record_check(true, 2, 3));
    assert!(s.is_healthy());
}

/// An explicit `eject` policy: `errors` consecutive failures of any kind.
fn explicit(errors: u32, millis: u64) -> EjectPolicy {
    EjectPolicy {
        errors,
        base: Duration::from_millis(millis),
        explicit: true,
    }
}

/// Records `outcome` at `now` (ms), with other servers usable or not.
fn record(s: &ServerState, outcome: Outcome, policy: &EjectPolicy, now: u64, others: bool) -> Option<Duration> {
    s.record(outcome, policy, || now, |_| others)
}

#[test]
fn passive_ejection_doubles_on_repeat() {
    let s = ServerState::new("a", 1, false);
    let policy = explicit(3, 40);
    assert_eq!(record(&s, Outcome::Failed, &policy, 0, true), None);
    assert_eq!(
        record(&s, Outcome::Ok, &policy, 0, true),
        None,
        "a success resets the count"
    );
    assert_eq!(record(&s, Outcome::Failed, &policy, 1, true), None);
    assert_eq!(record(&s, Outcome::Unreachable, &policy, 2, true), None);
    assert_eq!(
        record(&s, Outcome::Failed, &policy, 3, true),
        Some(Duration::from_millis(40))
    );
    assert!(s.is_ejected_at(42) && !s.usable(|| 42));
    assert!(!s.is_ejected_at(43) && s.usable(|| 43), "back after 40 ms");
    for now in [50, 51] {
        assert_eq!(record(&s, Outcome::Failed, &policy, now, true), None);
    }
    assert_eq!(
        record(&s, Outcome::Failed, &policy, 52, true),
        Some(Duration::from_millis(80)),
        "the second ejection lasts twice as long"
    );
    assert!(s.is_ejected_at(131) && !s.is_ejected_at(132));
    // Doubling stops at 64 times the base.
    let mut now = 200;
    for _ in 0..10 {
        for _ in 0..3 {
            record(&s, Outcome::Failed, &policy, now, true);
        }
        now += 40 * 64 + 1;
    }
    for _ in 0..2 {
        record(&s, Outcome::Failed, &policy, now, true);
    }
    assert_eq!(
        record(&s, Outcome::Failed, &policy, now, true),
        Some(Duration::from_millis(40 * 64))
    );
}

#[test]
fn failures_while_ejected_are_not_counted_again() {
    // Requests in flight when a server dies all fail at once: only the first
    // counts, or the next ejection would already be doubled many times over.
    let s = ServerState::new("a", 1, false);
    let policy = explicit(1, 100);
    assert_eq!(
        record(&s, Outcome::Unreachable, &policy, 0, true),
        Some(Duration::from_millis(100))
    );
    for now in 1..20 {
        assert_eq!(record(&s, Outcome::Unreachable, &policy, now, true), None);
    }
    assert!(!s.is_ejected_at(100));
    assert_eq!(
        record(&s, Outcome::Unreachable, &policy, 100, true),
        Some(Duration::from_millis(200)),
        "the second ejection doubles once, not twenty times"
    );
}

#[test]
fn the_default_ejection_takes_out_an_unreachable_server_for_10s() {
    let policy = EjectPolicy::of(None);
    assert_eq!((policy.errors, policy.base), (1, Duration::from_secs(10)));
    let s = ServerState::new("a", 1, false);
    // Answers, even 5xx ones and timeouts, say nothing about whether the
    // server is there; a pooled connection that closed as it was reused
    // neither.
    for outcome in [Outcome::Failed, Outcome::Neutral, Outcome::Failed] {
        assert_eq!(record(&s, outcome, &policy, 0, true), None, "{outcome:?}");
    }
    assert!(s.usable(|| 0));
    // One failure to reach it ejects it, for 10 s, every time (no doubling).
    for round in 0..3 {
        let at = round * 20_000;
        assert_eq!(
            record(&s, Outcome::Unreachable, &policy, at, true),
            Some(Duration::from_secs(10))
        );
        assert!(!s.usable(|| at + 9_999), "round {round}");
        assert!(s.usable(|| at + 10_000), "round {round}");
    }
}

#[test]
fn the_last_usable_server_is_never_ejected() {
    for policy in [EjectPolicy::of(None), explicit(2, 1000)] {
        let s = ServerState::new("a", 1, false);
        for now in 0..5 {
            assert_eq!(
                record(&s, Outcome::Unreachable, &policy, now, false),
                None,
                "no other server could take its traffic"
            );
        }
        assert!(s.usable(|| 5));
        // Its failures stayed counted: it goes as soon as another can take over.
        assert!(record(&s, Outcome::Unreachable, &policy, 5, true).is_some());
    }
}

#[test]
fn servers_that_are_only_ejected_are_used_when_nothing_else_is() {
    let policy = explicit(1, 10_000);
    let s = servers(&[(1, false), (1, false), (1, true)]);
    let b = Balancer::new(Strategy::RoundRobin, &s);
    // The first primary is ejected; the second is marked down by its checks.
    assert!(s[0]
        .record(Outcome::Failed, &policy, gw_runtime::clock::now_millis, |_| true)
        .is_some());
    s[1].set_healthy(false);
    assert_eq!(counts(&b, &s, 10), [0, 0, 10], "the backup before an ejected primary");
    // Both primaries and the backup ejected at once (each saw another
    // usable as it failed): ejection never empties the upstream, and the
    // primaries come first; a server down by its checks stays out.
    assert!(s[2]
        .record(Outcome::Failed, &policy, gw_runtime::clock::now_millis, |_| true)
        .is_some());
    assert_eq!(counts(&b, &s, 10), [10, 0, 0]);
    assert_eq!(b.pick(&s, None, &[0]), Some(2), "then the ejected backup");
    assert_eq!(b.pick(&s, None, &[0, 2]), None, "never one its checks hold down");
}
