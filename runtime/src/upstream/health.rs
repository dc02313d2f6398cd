//! Per-server state shared by balancers, health checkers and the proxy:
//! active health (flipped after N consecutive results), passive ejection
//! (consecutive failures eject a server for a while), and in-flight counts.
//! All of it is atomics: reading it takes no lock.
//!
//! Passive ejection has two policies ([`EjectPolicy`]). An `eject { errors N
//! for D }` block counts every failure ([`Outcome::Failed`] and
//! [`Outcome::Unreachable`]) and doubles the time on repeat. Without one,
//! the default counts only a server that cannot be reached — a refused or
//! timed-out connect — and takes it out for 10 s after one such failure
//! (nginx's `max_fails=1 fail_timeout=10s`). A connection that accepted the
//! request and broke before any answer is no such sign: the request itself
//! may break every server it reaches (and a retry carries it to each). Either way the caller says whether another server
//! would still be usable: the last usable server is never ejected.

use crate::clock::now_millis;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Passive ejection settings of an upstream: its `eject { errors N for D }`
/// block, or the default without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EjectPolicy {
    /// Consecutive counted failures that eject.
    pub errors: u32,
    /// How long an ejection lasts (the first one, for an explicit block).
    pub base: Duration,
    /// Written in the configuration: every failure counts, and an ejection
    /// that follows an earlier one lasts twice as long (up to 64 times
    /// `base`). The default counts [`Outcome::Unreachable`] only, and always
    /// lasts `base`.
    pub explicit: bool,
}

impl EjectPolicy {
    /// The policy of an upstream whose plan has `eject` (or none).
    pub fn of(eject: Option<&gw_plan::Eject>) -> EjectPolicy {
        use gw_plan::defaults;
        match eject {
            Some(e) => EjectPolicy {
                errors: e.errors,
                base: e.duration.as_duration(),
                explicit: true,
            },
            None => EjectPolicy {
                errors: defaults::IMPLICIT_EJECT_ERRORS,
                base: defaults::IMPLICIT_EJECT_FOR.as_duration(),
                explicit: false,
            },
        }
    }
}

/// What one exchange with a server says about it, for passive ejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It answered (a `501` too: that speaks of the request, not the
    /// server). Ends a run of failures.
    Ok,
    /// It could not be reached: a refused or timed-out connect. Every policy
    /// counts it.
    Unreachable,
    /// It failed otherwise: a `5xx` answer, no response head within the
    /// timeout, an answer that could not be read, a connection opened for
    /// the request that broke before any answer. An `eject` block counts
    /// it; the default does not (it speaks of one request as often as of
    /// the server).
    Failed,
    /// Nothing either way: a pooled connection that closed as it was
    /// reused (the server may just have closed it while idle).
    Neutral,
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
    /// What `/metrics` shows of the server (requests, errors, latency,
    /// ejections).
    pub metrics: std::sync::Arc<crate::metrics::ServerMetrics>,
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
            metrics: std::sync::Arc::default(),
        }
    }

    /// Counts a failed TLS handshake with this server.
    pub fn count_tls_error(&self) {
        self.metrics.error(crate::metrics::UpstreamError::Tls);
    }

    /// Failed TLS handshakes with this server so far.
    pub fn tls_errors(&self) -> u64 {
        self.metrics.errors[crate::metrics::UpstreamError::Tls as usize].load(Ordering::Relaxed)
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
        self.is_ejected_at(now_millis())
    }

    /// Ejected at `now` (as [`now_millis`] counts).
    pub fn is_ejected_at(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
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

    /// When passive ejection lets the server back in ([`now_millis`]), if
    /// it is out now.
    pub(crate) fn ejected_until(&self) -> Option<u64> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until > now_millis()).then_some(until)
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &std::sync::Arc<Self>) -> ServerInFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        ServerInFlight(self.clone())
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

    /// Records what an exchange said about the server, for passive
    /// ejection. `now` is the clock ([`now_millis`], read only for a
    /// failure); `others_usable(now)` says whether another server of the
    /// upstream would still be usable without this one: when none would,
    /// the server is not ejected (its failures stay counted, so it goes as
    /// soon as another can take its traffic). A failure while the server
    /// is already ejected (requests that were in flight when it went) is
    /// not counted again, and of failures recorded at the same instant one
    /// ejects it (one compare-and-swap). Returns how long the server was
    /// ejected for, when this call ejected it.
    pub fn record(
        &self,
        outcome: Outcome,
        policy: &EjectPolicy,
        now: impl FnOnce() -> u64,
        others_usable: impl FnOnce(u64) -> bool,
    ) -> Option<Duration> {
        match outcome {
            Outcome::Ok => {
                // Loaded first: a server that answers keeps its cache line shared.
                if self.consecutive_errors.load(Ordering::Relaxed) != 0 {
                    self.consecutive_errors.store(0, Ordering::Relaxed);
                }
                return None;
            }
            Outcome::Neutral => return None,
            Outcome::Failed if !policy.explicit => return None,
            Outcome::Failed | Outcome::Unreachable => {}
        }
        let now = now();
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until > now {
            return None;
        }
        let n = self.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n < policy.errors.max(1) || !others_usable(now) {
            return None;
        }
        let repeats = if policy.explicit {
            self.ejections.load(Ordering::Relaxed).min(MAX_DOUBLINGS)
        } else {
            0
        };
        let millis = (policy.base.as_millis() as u64).saturating_mul(1 << repeats);
        // Failures at the same instant may all get here: the one whose
        // store replaces the `until` it read ejects the server, and only
        // it counts the ejection (or the next one would last four or eight
        // times as long instead of twice).
        if self
            .ejected_until
            .compare_exchange(until, now.saturating_add(millis), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        self.consecutive_errors.store(0, Ordering::Relaxed);
        if policy.explicit {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.ejections.fetch_add(1, Ordering::Relaxed);
        Some(Duration::from_millis(millis))
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

/// A request (or a layer-4 connection) in flight on a server, counted for
/// `least_conn` and the metrics until it drops.
#[derive(Debug)]
pub struct ServerInFlight(std::sync::Arc<ServerState>);

impl Drop for ServerInFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Barrier, Mutex};

    #[test]
    fn failures_at_the_same_instant_eject_a_server_once() {
        // Several requests fail together (a server dying under load): one
        // ejection, counted once, so that the next one lasts twice as long,
        // not four or eight times.
        const THREADS: usize = 3;
        const ROUNDS: usize = 500;
        let policy = EjectPolicy {
            errors: 1,
            base: Duration::from_millis(100),
            explicit: true,
        };
        let s = ServerState::new("a", 1, false);
        let (barrier, arrived, ejected) = (Barrier::new(THREADS), AtomicUsize::new(0), AtomicUsize::new(0));
        let wrong = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for round in 0..ROUNDS {
                        // Every thread starts its failure at the same moment
                        // (a spin, not a sleep: the barrier wakes threads one
                        // by one).
                        arrived.fetch_add(1, Ordering::SeqCst);
                        while arrived.load(Ordering::SeqCst) < THREADS * (round + 1) {
                            std::thread::yield_now();
                        }
                        // Asking whether other servers are usable takes a
                        // while (it reads each one's state): the others fail
                        // meanwhile.
                        let others_usable = |_| {
                            std::thread::yield_now();
                            true
                        };
                        if s.record(Outcome::Unreachable, &policy, || 1000, others_usable)
                            .is_some()
                        {
                            ejected.fetch_add(1, Ordering::SeqCst);
                        }
                        if barrier.wait().is_leader() {
                            let (n, counted) = (ejected.swap(0, Ordering::SeqCst), s.ejections.load(Ordering::SeqCst));
                            if (n, counted) != (1, 1) {
                                wrong
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .push((round, n, counted));
                            }
                            s.ejected_until.store(0, Ordering::SeqCst);
                            s.ejections.store(0, Ordering::SeqCst);
                            s.consecutive_errors.store(0, Ordering::SeqCst);
                        }
                        barrier.wait();
                    }
                });
            }
        });
        let wrong = wrong.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(
            wrong.is_empty(),
            "{} of {ROUNDS} rounds (round, ejections, counted) were not one ejection: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
}
