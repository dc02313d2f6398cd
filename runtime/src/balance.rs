//! Load balancing: choosing a server of an upstream for one request.
//!
//! Balancers know nothing about HTTP. They pick among [`ServerState`]s using
//! the health state that health checkers and passive ejection update
//! atomically; picking takes no lock. Backup servers are considered only when
//! no primary is usable; servers that are only ejected are used when no
//! server at all is usable, tried ones included (passive ejection never
//! empties an upstream, nor takes the place of an answer a retry holds).
//! Each strategy is deterministic given its inputs except `random` and
//! `p2c`, which draw from a per-thread generator.

use crate::health::ServerState;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How a balancer is told which servers it may not pick (already tried by
/// this request's earlier attempts).
pub type Tried<'a> = &'a [usize];

/// A balancing strategy with its precomputed state for one server set.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin (nginx's sequence), precomputed so that
    /// a pick is one atomic increment.
    RoundRobin(Wrr),
    /// Fewest in-flight requests relative to weight.
    LeastConn(Wrr),
    /// Weighted random.
    Random(Weights),
    /// Power of two choices: two weighted-random servers, the less loaded wins.
    P2c(Weights),
    /// Consistent hashing of a key (client IP, header, claim, query), with
    /// round robin when the request has no key.
    Hash(Ring, Wrr),
}

/// Which strategy to build; the key's source lives with the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    RoundRobin,
    LeastConn,
    Random,
    P2c,
    Hash,
}

impl Balancer {
    /// Builds the strategy's state for `servers` (primaries and backups alike).
    pub fn new(strategy: Strategy, servers: &[Arc<ServerState>]) -> Balancer {
        let weights: Vec<u32> = servers.iter().map(|s| s.weight.max(1)).collect();
        match strategy {
            Strategy::RoundRobin => Balancer::RoundRobin(Wrr::new(&weights)),
            Strategy::LeastConn => Balancer::LeastConn(Wrr::new(&weights)),
            Strategy::Random => Balancer::Random(Weights::new(&weights)),
            Strategy::P2c => Balancer::P2c(Weights::new(&weights)),
            Strategy::Hash => Balancer::Hash(Ring::new(servers), Wrr::new(&weights)),
        }
    }

    /// Picks a usable server index: among primaries first, then backups.
    /// `key` is the hash key for `Hash` (None falls back to round robin).
    pub fn pick(&self, servers: &[Arc<ServerState>], key: Option<&[u8]>, tried: Tried<'_>) -> Option<usize> {
        self.pick_hashed(servers, key.map(hash64), tried)
    }

    /// [`Balancer::pick`] with the key already hashed by [`hash64`] (or
    /// [`hash_display`]).
    pub fn pick_hashed(&self, servers: &[Arc<ServerState>], hash: Option<u64>, tried: Tried<'_>) -> Option<usize> {
        // The clock is read only if some server was ever ejected.
        let now = std::cell::OnceCell::new();
        let now = || *now.get_or_init(crate::health::now_millis);
        let usable = |i: usize, backup: bool| {
            servers.get(i).is_some_and(|s| s.backup == backup && s.usable(now)) && !tried.contains(&i)
        };
        self.pick_where(servers, hash, &|i| usable(i, false))
            .or_else(|| self.pick_where(servers, hash, &|i| usable(i, true)))
            .or_else(|| {
                // No server at all is usable, tried ones included: every
                // server its checks hold healthy is ejected (two were
                // ejected at once, or the last one left was marked down by
                // its checks). Ejection never empties an upstream, so those
                // servers are used as if none were ejected. While a tried
                // server is still usable, an ejected one is no fallback:
                // the request keeps the answer it has (a `503` held for a
                // retry) rather than try a server known to be failing.
                if servers.iter().any(|s| s.usable(now)) {
                    return None;
                }
                let healthy = |i: usize, backup: bool| {
                    servers.get(i).is_some_and(|s| s.backup == backup && s.is_healthy()) && !tried.contains(&i)
                };
                self.pick_where(servers, hash, &|i| healthy(i, false))
                    .or_else(|| self.pick_where(servers, hash, &|i| healthy(i, true)))
            })
    }

    fn pick_where(&self, servers: &[Arc<ServerState>], hash: Option<u64>, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::RoundRobin(wrr) => wrr.next(ok),
            Balancer::LeastConn(wrr) => least_conn(servers, wrr, ok),
            Balancer::Random(w) => w.random(ok),
            Balancer::P2c(w) => {
                let a = w.random(ok)?;
                let b = w.random(&|i| i != a && ok(i)).unwrap_or(a);
                let load = |i: usize| servers[i].in_flight() as u64 * 1000 / servers[i].weight.max(1) as u64;
                Some(if load(b) < load(a) { b } else { a })
            }
            Balancer::Hash(ring, wrr) => match hash {
                Some(h) => ring.lookup(h, ok),
                None => wrr.next(ok),
            },
        }
    }
}

/// Smooth weighted round robin as a precomputed sequence: the order nginx's
/// algorithm produces over one period (the sum of the weights). A pick is an
/// atomic increment; unusable servers are skipped forward in the sequence.
#[derive(Debug)]
pub struct Wrr {
    sequence: Vec<u32>,
    next: AtomicUsize,
}

impl Wrr {
    /// Sequences longer than this are cut (the proportions stay exact for
    /// every full period up to it; weights are at most 1000 each).
    const MAX_PERIOD: usize = 1 << 16;

    pub fn new(weights: &[u32]) -> Wrr {
        let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
        let period = (total as usize).min(Self::MAX_PERIOD);
        let mut current = vec![0i64; weights.len()];
        let mut sequence = Vec::with_capacity(period);
        for _ in 0..period {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += i64::from(*w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            sequence.push(best as u32);
        }
        Wrr {
            sequence,
            next: AtomicUsize::new(0),
        }
    }

    /// The next usable server in the sequence.
    pub fn next(&self, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 {
            return None;
        }
        // Each try takes a fresh position, so the share of an unusable server
        // spreads over all the others instead of falling on its successor.
        (0..len)
            .map(|_| self.sequence[self.next.fetch_add(1, Ordering::Relaxed) % len] as usize)
            .find(|&i| ok(i))
    }
}

fn least_conn(servers: &[Arc<ServerState>], wrr: &Wrr, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    // Start the scan at the round-robin position so ties rotate.
    let n = servers.len();
    let start = wrr.next(&|_| true).unwrap_or(0);
    let mut best: Option<(u64, usize)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !ok(i) {
            continue;
        }
        let s = &servers[i];
        // Compare in-flight/weight without division: scale by 1000.
        let load = (s.in_flight() as u64 + 1) * 1_000_000 / u64::from(s.weight.max(1));
        if best.is_none_or(|(b, _)| load < b) {
            best = Some((load, i));
        }
    }
    best.map(|(_, i)| i)
}

/// Cumulative weights for weighted random choice.
#[derive(Debug)]
pub struct Weights {
    weights: Vec<u32>,
}

impl Weights {
    pub fn new(weights: &[u32]) -> Weights {
        Weights {
            weights: weights.to_vec(),
        }
    }

    pub fn random(&self, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = self
            .weights
            .iter()
            .enumerate()
            .filter(|(i, _)| ok(*i))
            .map(|(_, w)| u64::from(*w))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = random_u64() % total;
        for (i, w) in self.weights.iter().enumerate() {
            if !ok(i) {
                continue;
            }
            if r < u64::from(*w) {
                return Some(i);
            }
            r -= u64::from(*w);
        }
        None
    }
}

/// A consistent-hash ring with virtual nodes (160 per unit of weight, as
/// ketama does): removing one of N servers moves about 1/N of the keys.
#[derive(Debug)]
pub struct Ring {
    /// (point on the ring, server index), sorted by point.
    points: Vec<(u64, u32)>,
    servers: usize,
}

impl Ring {
    const VNODES: u32 = 160;

    pub fn new(servers: &[Arc<ServerState>]) -> Ring {
        let mut points = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            // Points derive from the server's address, not its index, so a
            // server keeps its keys when others are added or removed.
            let id = s.id.as_bytes();
            for v in 0..Self::VNODES * s.weight.clamp(1, 100) {
                let mut buf = Vec::with_capacity(id.len() + 5);
                buf.extend_from_slice(id);
                buf.push(b'#');
                buf.extend_from_slice(&v.to_le_bytes());
                points.push((hash64(&buf), i as u32));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            servers: servers.len(),
        }
    }

    /// The first usable server clockwise from `hash`.
    pub fn lookup(&self, hash: u64, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(p, _)| *p < hash);
        let len = self.points.len();
        let first = self.points[start % len].1 as usize;
        if ok(first) {
            return Some(first);
        }
        // Slow path (the key's server is down): walk on to the next distinct server.
        let mut rejected = 0usize;
        let mut seen = vec![false; self.servers];
        for k in 0..len {
            let (_, i) = self.points[(start + k) % len];
            let i = i as usize;
            if seen[i] {
                continue;
            }
            if ok(i) {
                return Some(i);
            }
            seen[i] = true;
            rejected += 1;
            if rejected == self.servers {
                break;
            }
        }
        None
    }
}

/// A fast, stable 64-bit hash (FNV-1a with a murmur3 finaliser), so that the
/// same key maps to the same server across restarts and versions.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.feed(bytes);
    h.finish()
}

/// [`hash64`] of a value's text without making the text (`ip_hash` hashes
/// the client address this way on every request).
pub fn hash_display(value: &dyn std::fmt::Display) -> u64 {
    use std::fmt::Write as _;
    let mut h = Fnv::default();
    let _ = write!(h, "{value}");
    h.finish()
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        fmix(self.0)
    }
}

impl std::fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.feed(s.as_bytes());
        Ok(())
    }
}

fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let addr = &t as *const u64 as u64;
        hash64(&(t ^ addr.rotate_left(17)).to_le_bytes()) | 1
    });
}

/// xorshift64* from a per-thread state: no lock, no syscall.
pub fn random_u64() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{now_millis, EjectPolicy, Outcome};

    #[test]
    fn an_ejected_server_is_no_last_resort_while_a_tried_one_is_usable() {
        for strategy in [
            Strategy::RoundRobin,
            Strategy::LeastConn,
            Strategy::Random,
            Strategy::P2c,
            Strategy::Hash,
        ] {
            let s: Vec<_> = ["a", "b"].map(|id| Arc::new(ServerState::new(id, 1, false))).into();
            let b = Balancer::new(strategy, &s);
            assert!(s[1]
                .record(Outcome::Unreachable, &EjectPolicy::of(None), now_millis, |_| true)
                .is_some());
            for _ in 0..10 {
                assert_eq!(b.pick_hashed(&s, Some(7), &[]), Some(0), "{strategy:?}");
                // The usable server was tried (its answer is held): the
                // ejected one is no fallback, and the held answer is given.
                assert_eq!(b.pick_hashed(&s, Some(7), &[0]), None, "{strategy:?}");
            }
            // Nothing usable at all: the ejected server is used as if it
            // were not ejected.
            s[0].set_healthy(false);
            assert_eq!(b.pick_hashed(&s, Some(7), &[]), Some(1), "{strategy:?}");
        }
    }
}
