//! Balancing strategies and server health, without a network: exact
//! distributions for weighted round robin, least_conn avoiding busy servers,
//! consistent hashing moving only the removed server's keys, backups.

use gw_runtime::balance::{Balancer, Strategy};
use gw_runtime::health::{EjectPolicy, ServerState};
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

#[test]
fn passive_ejection_doubles_on_repeat() {
    let s = ServerState::new("a", 1, false);
    let policy = Some(EjectPolicy {
        errors: 3,
        base: Duration::from_millis(40),
    });
    assert!(!s.record_result(false, policy));
    assert!(!s.record_result(true, policy), "a success resets the count");
    assert!(!s.record_result(false, policy));
    assert!(!s.record_result(false, policy));
    assert!(s.record_result(false, policy));
    assert!(s.is_ejected());
    let start = std::time::Instant::now();
    while s.is_ejected() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = start.elapsed();
    for _ in 0..3 {
        s.record_result(false, policy);
    }
    let start = std::time::Instant::now();
    while s.is_ejected() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = start.elapsed();
    assert!(first < Duration::from_millis(70), "{first:?}");
    assert!(
        second >= Duration::from_millis(75),
        "second ejection lasts twice as long: {second:?}"
    );
}
