//! Plans for the runtime's own tests, built from the `.gw` sources in
//! `runtime/testdata/` (the runtime does not depend on the compiler; the
//! root crate's `tests/crates.rs` checks that each built plan is what the
//! compiler makes of its source, and rewrites them with
//! `GW_UPDATE_TESTDATA=1`).

use gw_plan::Plan;

/// `one-upstream.gw`: one upstream `a` with one server, one route.
pub const ONE_UPSTREAM: &str = include_str!("../testdata/one-upstream.json");
/// `policies.gw`: a plain route and one with auth, require and limit.
pub const POLICIES: &str = include_str!("../testdata/policies.json");

/// The plan of a built JSON.
pub fn plan(json: &str) -> Plan {
    match Plan::from_json(json) {
        Ok(plan) => plan,
        Err(e) => panic!(
            "runtime/testdata holds a stale plan ({e}): GW_UPDATE_TESTDATA=1 cargo test --test integration crates::"
        ),
    }
}
