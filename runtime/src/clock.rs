//! The runtime's monotonic clock in milliseconds: what connections, pools
//! and health state store in their atomics (a `u64` fits where an `Instant`
//! would not), and what a timer's deadline is made from.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the process started (monotonic).
pub fn now_millis() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The instant `millis` (as [`now_millis`] counts) stands for.
pub(crate) fn instant_at(millis: u64) -> Instant {
    *START.get_or_init(Instant::now) + Duration::from_millis(millis)
}
