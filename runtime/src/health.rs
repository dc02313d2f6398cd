//! Per-server state shared by balancers, health checkers and the proxy:
//! active health (flipped after N consecutive results), passive ejection
//! (consecutive errors eject a server for a time that doubles on repeat),
//! and in-flight counts. All of it is atomics: reading it takes no lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the process started (monotonic).
pub fn now_millis() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The instant `millis` (as [`now_millis`] counts) stands for.
pub fn instant_at(millis: u64) -> Instant {
    *START.get_or_init(Instant::now) + Duration::from_millis(millis)
}

/// Passive ejection settings of an upstream (`eject { errors N for D }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EjectPolicy {
    pub errors: u32,
    pub base: Duration,
}

/// Ejections stop doubling after this many repeats (base × 2^6 at most).
const MAX_DOUBLINGS: u32 = 6;

#[derive(Debug)]
pub struct ServerState {
    /// Stable identity (the address as written plus the resolved address):
    /// unchanged servers keep their state across reloads.
    pub id: String,
    pub weight: u32,
    pub backup: bool,
    healthy: AtomicBool,
    /// Consecutive active-check results in the current direction.
    streak: AtomicU32,
    ejected_until: AtomicU64,
    consecutive_errors: AtomicU32,
    ejections: AtomicU32,
    in_flight: AtomicU32,
}

impl ServerState {
    pub fn new(id: impl Into<String>, weight: u32, backup: bool) -> ServerState {
        ServerState {
            id: id.into(),
            weight: weight.max(1),
            backup,
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            consecutive_errors: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    /// Healthy by active checks and not ejected at `now` (see
    /// [`now_millis`]), which is read only for a server that was ever ejected.
    pub fn usable(&self, now: impl FnOnce() -> u64) -> bool {
        if !self.healthy.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= now()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_millis()
    }

    /// The server as an operator reads it (metrics, logs): the address as
    /// written, followed by the resolved address only when that differs —
    /// `127.0.0.1:9101`, `orders.internal:80 (10.0.0.7:80)`.
    pub fn label(&self) -> String {
        match self.id.rsplit_once('@') {
            Some((written, resolved)) if written == resolved => written.to_string(),
            Some((written, resolved)) => format!("{written} ({resolved})"),
            None => self.id.clone(),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Records an active health check result; flips state after `threshold`
    /// consecutive results that disagree with it. Returns true on a flip.
    pub fn record_check(&self, passed: bool, healthy_after: u32, unhealthy_after: u32) -> bool {
        let healthy = self.healthy.load(Ordering::Relaxed);
        if passed == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return false;
        }
        let n = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if passed { healthy_after } else { unhealthy_after };
        if n >= needed.max(1) {
            self.healthy.store(passed, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
            if passed {
                self.ejections.store(0, Ordering::Relaxed);
            }
            return true;
        }
        false
    }

    /// Records the outcome of a proxied request for passive ejection.
    /// Returns true when this call ejected the server.
    pub fn record_result(&self, ok: bool, policy: Option<EjectPolicy>) -> bool {
        if ok {
            self.consecutive_errors.store(0, Ordering::Relaxed);
            return false;
        }
        let Some(policy) = policy else { return false };
        let n = self.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n < policy.errors.max(1) {
            return false;
        }
        self.consecutive_errors.store(0, Ordering::Relaxed);
        let repeats = self.ejections.fetch_add(1, Ordering::Relaxed).min(MAX_DOUBLINGS);
        let millis = (policy.base.as_millis() as u64).saturating_mul(1 << repeats);
        self.ejected_until
            .store(now_millis().saturating_add(millis), Ordering::Relaxed);
        true
    }

    /// Copies health state from the previous incarnation (reload).
    pub fn inherit(&self, old: &ServerState) {
        self.healthy
            .store(old.healthy.load(Ordering::Relaxed), Ordering::Relaxed);
        self.streak.store(old.streak.load(Ordering::Relaxed), Ordering::Relaxed);
        self.ejected_until
            .store(old.ejected_until.load(Ordering::Relaxed), Ordering::Relaxed);
        self.consecutive_errors
            .store(old.consecutive_errors.load(Ordering::Relaxed), Ordering::Relaxed);
        self.ejections
            .store(old.ejections.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// For tests and the admin API.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}

/// Decrements the in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<ServerState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
