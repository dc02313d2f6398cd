//! Weighted splits across upstreams (`split { v1 90%  v2 10%  sticky
//! cookie.session }`): the sides and how a request's side is chosen, shared
//! by the runtime, embedded tests and `gwc route`.
//!
//! A request falls on a point of `[0, 100)` and takes the side whose share
//! holds it, the shares laid end to end in declared order (`v1` on
//! `[0, 90)`, `v2` on `[90, 100)`). With `sticky`, the point is a stable
//! hash of the key's value, so a key keeps its side across requests,
//! restarts and gateways, and a weight change moves only the keys between
//! the old and the new boundaries (raising `v2` from 10% to 20% moves the
//! keys on `[80, 90)` from `v1` to `v2`, 10% of them, and no others).
//! Without `sticky` (or a request without the key) the point is random.

use crate::words::Reference;
use serde::{Deserialize, Serialize};

/// Points per percent: a point is one of `100 * RESOLUTION`.
const RESOLUTION: u64 = 100;
const POINTS: u64 = 100 * RESOLUTION;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// In declared order; weights add up to 100.
    pub sides: Vec<SplitSide>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_as::opt_reference"
    )]
    pub sticky: Option<Reference>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSide {
    pub upstream: usize,
    /// Percent, 0..=100.
    pub weight: u32,
}

impl Split {
    /// The side (an index into `sides`) at `point` of `[0, 10000)`. Never
    /// fails: a point past the last share (weights under 100, which the
    /// checker refuses) takes the last side with weight.
    pub fn side_at(&self, point: u64) -> usize {
        let mut end = 0u64;
        for (i, s) in self.sides.iter().enumerate() {
            end += u64::from(s.weight) * RESOLUTION;
            if point < end {
                return i;
            }
        }
        self.sides.iter().rposition(|s| s.weight > 0).unwrap_or(0)
    }

    /// The side of a sticky key's value.
    pub fn side_for_key(&self, key: &str) -> usize {
        self.side_at(key_point(key))
    }

    /// The side of a random draw (`random` uniform over `u64`).
    pub fn side_for_random(&self, random: u64) -> usize {
        self.side_at(scale(random))
    }
}

/// A key's point on `[0, 10000)`: FNV-1a then a 64-bit finaliser, so that
/// the point is stable everywhere (no per-process seed) and well spread.
pub fn key_point(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    scale(h ^ (h >> 33))
}

/// `u64` onto `[0, 10000)` without modulo bias worth the name.
fn scale(x: u64) -> u64 {
    ((u128::from(x) * u128::from(POINTS)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[u32]) -> Split {
        Split {
            sides: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| SplitSide { upstream: i, weight: w })
                .collect(),
            sticky: Some(Reference::Cookie("session".into())),
        }
    }

    #[test]
    fn shares_follow_the_weights_within_three_percent() {
        let s = split(&[90, 10]);
        let mut counts = [0u32; 2];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            // splitmix64: the runtime draws from its own per-thread generator.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            counts[s.side_for_random(z ^ (z >> 31))] += 1;
        }
        assert!((8_700..=9_300).contains(&counts[0]), "{counts:?}");
        let keyed: usize = (0..10_000)
            .filter(|i| s.side_for_key(&format!("user-{i}")) == 1)
            .count();
        assert!((700..=1_300).contains(&keyed), "{keyed} of 10000 keys on the 10% side");
    }

    #[test]
    fn a_weight_change_moves_only_the_moved_share_of_keys() {
        let before = split(&[90, 10]);
        let after = split(&[80, 20]);
        let (mut moved, mut back) = (0, 0);
        for i in 0..10_000 {
            let key = format!("session-{i}");
            match (before.side_for_key(&key), after.side_for_key(&key)) {
                (0, 1) => moved += 1,
                (1, 0) => back += 1,
                _ => {}
            }
        }
        assert_eq!(back, 0, "no key leaves v2 when v2 grows");
        assert!((700..=1_300).contains(&moved), "{moved} keys moved, 10% expected");
        // Three sides: moving 5% between the last two leaves the first alone.
        let a = split(&[50, 25, 25]);
        let b = split(&[50, 20, 30]);
        for i in 0..10_000 {
            let key = format!("k{i}");
            let (x, y) = (a.side_for_key(&key), b.side_for_key(&key));
            assert!(x == y || (x == 1 && y == 2), "{key}: {x} -> {y}");
        }
    }

    #[test]
    fn points_land_on_declared_order() {
        let s = split(&[90, 10]);
        assert_eq!(s.side_at(0), 0);
        assert_eq!(s.side_at(8_999), 0);
        assert_eq!(s.side_at(9_000), 1);
        assert_eq!(s.side_at(9_999), 1);
        assert_eq!(split(&[0, 100]).side_at(0), 1);
        assert_eq!(split(&[100, 0]).side_at(9_999), 0);
    }
}
