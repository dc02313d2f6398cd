//! What the property tests share: how many cases they draw, and where a
//! failing case's seed is kept.
//!
//! `tests/run` fixes `PROPTEST_RNG_SEED`, so CI passes or fails on the code
//! alone; `fuzz/run` draws a fresh seed (printed) and more cases
//! (`PROPTEST_CASES` for the compiler's and the router's tests,
//! `GW_FUZZ_CASES` for the live HTTP/1.1 searches). A failing case's seed is
//! appended to `tests/regressions/<module>.txt`, and every later run of that
//! module — CI's included — replays the committed seeds first: a finding
//! becomes a regression test by committing that file.

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases`, or `var` when it is set to a number.
pub fn cases(var: &str, cases: u32) -> u32 {
    std::env::var(var).ok().and_then(|n| n.parse().ok()).unwrap_or(cases)
}

/// A configuration of `cases` cases (or `PROPTEST_CASES`) whose failures are
/// kept in `regressions` (a path from the crate's root: `cargo test` runs
/// there).
pub fn config(cases: u32, regressions: &'static str) -> Config {
    Config {
        cases: self::cases("PROPTEST_CASES", cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}
