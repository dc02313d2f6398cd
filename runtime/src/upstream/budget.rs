//! The retry budget of an upstream: retries over the last ten seconds may
//! add the budget's share (`budget P%`) to the requests sent to it in that
//! time, plus a floor of ten retries per second, so that a quiet upstream
//! can still retry. It is the budget of Finagle and Linkerd (a token bucket
//! whose deposits and withdrawals expire after a window), rather than
//! Envoy's share of the requests in flight at one instant: when one of N
//! servers dies, the requests in flight to it fail at once and are more
//! than 1/N of those in flight (the healthy ones finish and leave, the
//! failing ones stay), so a cap taken at that instant refused some of their
//! retries, while over a window a death is a small part of the traffic. A
//! storm (every server failing) still adds at most P% plus the floor.
//!
//! Hand-written, lock-free, rather than tower's `TpsBudget`, which takes a
//! mutex and reads the clock in each deposit: here a request's deposit is
//! one compare-and-swap on the current second's slot, and only a retry
//! (rare) sums the window. Each slot packs its second (high 32 bits) with
//! its amount (low 32 bits), so a slot of an older second is known stale
//! without a second word to keep in step. A retry takes its place with a
//! compare-and-swap on the slot it read the balance with, so retries that
//! start together never overdraw the budget.

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds a deposit or withdrawal counts for.
pub(crate) const WINDOW_SECS: u64 = 10;
/// Retries per second always allowed (Finagle's and Linkerd's default).
pub(crate) const FLOOR_PER_SEC: u64 = 10;
/// What one retry costs, in the units a request deposits (its budget
/// percent): a request at 20% deposits 20, a retry withdraws 100.
const RETRY_COST: u64 = 100;
/// The floor over the window, in the same units.
const RESERVE: u64 = FLOOR_PER_SEC * WINDOW_SECS * RETRY_COST;
const SLOTS: usize = WINDOW_SECS as usize;

/// Deposits and withdrawals of the last [`WINDOW_SECS`] seconds.
pub(crate) struct RetryBudget {
    deposits: [AtomicU64; SLOTS],
    withdrawals: [AtomicU64; SLOTS],
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            deposits: std::array::from_fn(|_| AtomicU64::new(0)),
            withdrawals: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn pack(second: u32, amount: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(amount)
}

fn second_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn amount_of(word: u64) -> u64 {
    word & u64::from(u32::MAX)
}

/// `word` with `amount` added, in `second`'s slot (replacing an older one).
fn added(word: u64, second: u32, amount: u64) -> u64 {
    let kept = if second_of(word) == second { amount_of(word) } else { 0 };
    pack(second, (kept + amount).min(u64::from(u32::MAX)) as u32)
}

/// The amount a slot holds for the window that ends at `second`.
fn live(word: u64, second: u32) -> u64 {
    let age = second.wrapping_sub(second_of(word));
    if u64::from(age) < WINDOW_SECS {
        amount_of(word)
    } else {
        0
    }
}

fn slot(second: u32) -> usize {
    second as usize % SLOTS
}

impl RetryBudget {
    /// A request sent to the upstream: `percent` of a retry is added.
    pub(crate) fn deposit(&self, percent: u32) {
        if percent > 0 {
            self.deposit_at(crate::clock::now_millis() / 1000, percent);
        }
    }

    /// A retry's place, if the budget has one.
    pub(crate) fn withdraw(&self) -> bool {
        self.withdraw_at(crate::clock::now_millis() / 1000)
    }

    fn deposit_at(&self, now_secs: u64, percent: u32) {
        let second = now_secs as u32;
        let cell = &self.deposits[slot(second)];
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            Some(added(w, second, u64::from(percent)))
        });
    }

    fn withdraw_at(&self, now_secs: u64) -> bool {
        let second = now_secs as u32;
        let cell = &self.withdrawals[slot(second)];
        let mut current = cell.load(Ordering::Acquire);
        loop {
            let deposited: u64 = self
                .deposits
                .iter()
                .map(|d| live(d.load(Ordering::Relaxed), second))
                .sum();
            let withdrawn: u64 = self
                .withdrawals
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let w = if i == slot(second) {
                        current
                    } else {
                        w.load(Ordering::Relaxed)
                    };
                    live(w, second)
                })
                .sum();
            if RESERVE + deposited < withdrawn + RETRY_COST {
                return false;
            }
            match cell.compare_exchange_weak(
                current,
                added(current, second, RETRY_COST),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Retries the budget would allow at `now_secs` (tests).
    #[cfg(test)]
    fn available_at(&self, now_secs: u64) -> u64 {
        let second = now_secs as u32;
        let sum =
            |cells: &[AtomicU64; SLOTS]| -> u64 { cells.iter().map(|c| live(c.load(Ordering::Relaxed), second)).sum() };
        (RESERVE + sum(&self.deposits)).saturating_sub(sum(&self.withdrawals)) / RETRY_COST
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Duration;

    const FLOOR: u64 = FLOOR_PER_SEC * WINDOW_SECS;

    fn take_all(b: &RetryBudget, at: u64) -> u64 {
        let mut n = 0;
        while b.withdraw_at(at) {
            n += 1;
            assert!(n <= 1_000_000, "the budget never ran out");
        }
        n
    }

    #[test]
    fn a_quiet_upstream_may_retry_the_floor_and_no_more() {
        let b = RetryBudget::default();
        assert_eq!(take_all(&b, 1_000), FLOOR);
        assert!(!b.withdraw_at(1_000));
        assert_eq!(b.available_at(1_000), 0);
    }

    #[test]
    fn requests_add_their_share_of_a_retry() {
        for percent in [1u32, 20, 50, 100] {
            let b = RetryBudget::default();
            for i in 0..1_000u64 {
                // Spread over the window, as traffic is.
                b.deposit_at(500 + i % WINDOW_SECS, percent);
            }
            let expected = FLOOR + 1_000 * u64::from(percent) / 100;
            assert_eq!(take_all(&b, 500 + WINDOW_SECS - 1), expected, "{percent}%");
        }
    }

    #[test]
    fn deposits_and_withdrawals_expire_after_the_window() {
        let b = RetryBudget::default();
        for _ in 0..500 {
            b.deposit_at(100, 20);
        }
        assert_eq!(b.available_at(100), FLOOR + 100);
        // Still counted in the window's last second...
        assert_eq!(b.available_at(100 + WINDOW_SECS - 1), FLOOR + 100);
        // ...and gone after it: only the floor is left.
        assert_eq!(b.available_at(100 + WINDOW_SECS), FLOOR);
        // Spent retries come back once their second has left the window.
        assert_eq!(take_all(&b, 200), FLOOR);
        assert_eq!(b.available_at(200 + WINDOW_SECS - 1), 0);
        assert_eq!(b.available_at(200 + WINDOW_SECS), FLOOR);
        // A slot reused a whole window later starts afresh.
        b.deposit_at(200 + WINDOW_SECS, 100);
        assert_eq!(b.available_at(200 + WINDOW_SECS), FLOOR + 1);
    }

    #[test]
    fn zero_percent_keeps_the_floor() {
        let b = RetryBudget::default();
        for _ in 0..1_000 {
            b.deposit_at(7, 0);
        }
        assert_eq!(take_all(&b, 7), FLOOR);
    }

    #[test]
    fn a_storm_adds_at_most_the_budget_and_the_floor() {
        // Every request fails and wants a retry, second after second: over
        // any window the retries are the floor plus 20% of the requests.
        let b = RetryBudget::default();
        let (mut requests, mut retries) = (Vec::new(), Vec::new());
        for second in 0..60u64 {
            let (mut sent, mut retried) = (0u64, 0u64);
            for _ in 0..1_000 {
                b.deposit_at(second, 20);
                sent += 1;
                if b.withdraw_at(second) {
                    retried += 1;
                }
            }
            requests.push(sent);
            retries.push(retried);
        }
        for end in WINDOW_SECS as usize..=60 {
            let r: u64 = retries[end - WINDOW_SECS as usize..end].iter().sum();
            let q: u64 = requests[end - WINDOW_SECS as usize..end].iter().sum();
            assert!(r <= FLOOR + q / 5, "window ending {end}: {r} retries for {q} requests");
        }
        // In steady state it is close to that bound, not far below it.
        let last: u64 = retries[50..60].iter().sum();
        assert!(last >= 2_000, "{last}");
    }

    #[test]
    fn retries_deciding_at_once_never_overdraw() {
        // One place left, and two threads that want it at the same instant,
        // round after round (for at most 1.5 s): exactly one gets it each
        // time. (Taken by a check and then an add, both would get it in some
        // rounds.)
        const THREADS: usize = 2;
        const ROUNDS: usize = 40_000;
        let started = std::time::Instant::now();
        // A budget with one place left: the floor, less all of it but one.
        let fresh = || {
            let b = RetryBudget::default();
            b.withdrawals[0].store(pack(0, ((FLOOR - 1) * RETRY_COST) as u32), Ordering::Relaxed);
            b
        };
        assert_eq!(fresh().available_at(0), 1);
        let current = AtomicU64::new(0);
        let (go, arrived, taken, stop) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicBool::new(false),
        );
        let (rounds, wrong) = (AtomicUsize::new(0), std::sync::Mutex::new(Vec::new()));
        // Budgets live for the whole test (the threads hold references).
        let budgets: Vec<RetryBudget> = (0..ROUNDS + 2).map(|_| fresh()).collect();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for round in 1.. {
                        if arrived.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * round {
                            let n = taken.swap(0, Ordering::SeqCst);
                            if round > 1 && n != 1 {
                                wrong.lock().unwrap().push((round - 1, n));
                            }
                            rounds.store(round - 1, Ordering::SeqCst);
                            if round > ROUNDS || started.elapsed() > Duration::from_millis(1500) {
                                stop.store(true, Ordering::SeqCst);
                            }
                            current.store(round as u64, Ordering::SeqCst);
                            go.store(round, Ordering::SeqCst);
                        }
                        let mut spins = 0u32;
                        while go.load(Ordering::SeqCst) < round {
                            spins += 1;
                            if spins.is_multiple_of(256) {
                                std::thread::yield_now();
                            }
                            std::hint::spin_loop();
                        }
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let b = &budgets[current.load(Ordering::SeqCst) as usize];
                        if b.withdraw_at(0) {
                            taken.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let wrong = wrong.into_inner().unwrap();
        assert!(
            wrong.is_empty(),
            "{} of {} rounds (round, places taken) did not give the last place once: {:?}",
            wrong.len(),
            rounds.load(Ordering::SeqCst),
            &wrong[..wrong.len().min(5)]
        );
    }
}
