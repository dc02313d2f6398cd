//! Each request's identity on the wire and in the log: its W3C Trace
//! Context (`traceparent`, `tracestate`) and its `x-request-id`
//! ([`begin`]), kept in one small buffer ([`Seen`]) with the request's host
//! and user agent for the access line.
//!
//! Trace Context (W3C Recommendation, 2021): a request whose one
//! `traceparent` is valid keeps its trace id and sampled flag, whoever sent
//! it, and its `tracestate` goes on (dropped when it has more than 32 list
//! members); a request without one, or with an invalid one, starts a new
//! trace and loses any `tracestate`. The upstream always gets a
//! `traceparent` of version `00` naming the gateway's own span as parent.
//!
//! Request ids: the client's `x-request-id` is kept only when the peer is
//! one of `trust_proxies` (`request::trusts_peer`) and the id is 1 to
//! [`MAX_REQUEST_ID`] bytes of letters, digits and `-_.:+/=@`; otherwise a
//! new one (32 hex digits) replaces it. The upstream and the client both
//! get it.
//!
//! Ids are drawn from a per-thread wyrand generator seeded from std's
//! random hasher keys: fast and not cryptographic, which is all trace, span
//! and request ids need (they must not collide, not be unguessable).

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST, USER_AGENT};
use hyper::Uri;
use std::cell::Cell;

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client `x-request-id` kept (longer ones are replaced).
pub const MAX_REQUEST_ID: usize = 128;
/// The most of the host and of the user agent the access line keeps.
const MAX_LOGGED: usize = 256;
/// `tracestate` with more list members than this is dropped (W3C 3.3.1.1).
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// `00-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;

/// The request as the access line names it, and its ids: one buffer laid
/// out as `traceparent | request id | host | user agent`, whose first two
/// parts are shared (not copied) by the headers sent upstream and back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    text: Bytes,
    id_end: u16,
    host_end: u16,
}

impl Seen {
    /// The trace id, 32 lower-case hex digits.
    pub(crate) fn trace_id(&self) -> &str {
        self.text
            .get(3..35)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The gateway's span id, 16 lower-case hex digits.
    #[cfg(test)]
    pub(crate) fn span_id(&self) -> &str {
        self.text
            .get(36..52)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The request id (ASCII, checked when it was kept).
    pub(crate) fn request_id(&self) -> &str {
        self.text
            .get(TRACEPARENT_LEN..usize::from(self.id_end))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The request id as a header value (shares the buffer).
    pub(crate) fn request_id_header(&self) -> Option<HeaderValue> {
        if usize::from(self.id_end) > self.text.len() {
            return None;
        }
        HeaderValue::from_maybe_shared(self.text.slice(TRACEPARENT_LEN..usize::from(self.id_end))).ok()
    }

    /// The request's host as sent (raw bytes, at most 256).
    pub(crate) fn host(&self) -> &[u8] {
        self.text
            .get(usize::from(self.id_end)..usize::from(self.host_end))
            .unwrap_or_default()
    }

    /// The request's `User-Agent` as sent (raw bytes, at most 256).
    pub(crate) fn user_agent(&self) -> &[u8] {
        self.text.get(usize::from(self.host_end)..).unwrap_or_default()
    }
}

/// A valid parent's trace id (hex, as sent) and sampled flag.
struct Parent<'a> {
    trace_id: &'a [u8],
    sampled: bool,
}

/// The one `traceparent` of `headers`, if valid (W3C 3.2): version `00`
/// exactly 55 characters; a later version at least that, its first four
/// fields read as version `00`'s and anything after a `-`; version `ff`
/// invalid; lower-case hex only; trace and parent ids not all zeros.
fn parent_of(headers: &HeaderMap) -> Option<Parent<'_>> {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let value = all.next()?.as_bytes();
    if all.next().is_some() {
        return None;
    }
    let value = value.trim_ascii();
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |b: &[u8]| b.iter().all(|c| *c == b'0');
    let (version, trace_id, parent_id, flags) = (
        value.get(0..2)?,
        value.get(3..35)?,
        value.get(36..52)?,
        value.get(53..55)?,
    );
    let dashes = [2, 35, 52].iter().all(|&i| value.get(i) == Some(&b'-'));
    let fits = match version {
        b"00" => value.len() == TRACEPARENT_LEN,
        b"ff" => false,
        _ => value.len() == TRACEPARENT_LEN || value.get(TRACEPARENT_LEN) == Some(&b'-'),
    };
    let valid = dashes
        && fits
        && hex(version)
        && hex(trace_id)
        && hex(parent_id)
        && hex(flags)
        && !zeros(trace_id)
        && !zeros(parent_id);
    let flags = u8::from_str_radix(std::str::from_utf8(flags).ok()?, 16).ok()?;
    valid.then_some(Parent {
        trace_id,
        sampled: flags & 1 == 1,
    })
}

/// Whether a `tracestate` may go on: at most 32 list members over all its
/// lines (empty members do not count).
fn tracestate_fits(headers: &HeaderMap) -> bool {
    let members: usize = headers
        .get_all(&TRACESTATE)
        .iter()
        .map(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .filter(|m| !m.trim_ascii().is_empty())
                .count()
        })
        .sum();
    members <= MAX_TRACESTATE_MEMBERS
}

/// A client's request id kept by a trusted peer: 1 to 128 bytes of
/// letters, digits and `-_.:+/=@`.
pub(crate) fn valid_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

/// Gives the request its ids: `traceparent` (the gateway's span as parent),
/// `tracestate` kept or dropped, `x-request-id` kept or new — set in
/// `headers` — and returns them with the host and user agent the access
/// line names.
/// `trusted`: the peer is one of `trust_proxies`, whose id is kept.
pub(crate) fn begin(headers: &mut HeaderMap, uri: &Uri, trusted: bool) -> Seen {
    let parent = parent_of(headers);
    let kept_id = match trusted {
        true => headers
            .get(&X_REQUEST_ID)
            .map(HeaderValue::as_bytes)
            .filter(|id| valid_request_id(id)),
        false => None,
    };
    let host = match uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => headers.get(HOST).map_or(&b""[..], HeaderValue::as_bytes),
    };
    let host = &host[..host.len().min(MAX_LOGGED)];
    let agent = headers.get(USER_AGENT).map_or(&b""[..], HeaderValue::as_bytes);
    let agent = &agent[..agent.len().min(MAX_LOGGED)];
    let id_len = kept_id.map_or(32, <[u8]>::len);
    // Exactly the length: `Bytes::from` a full `Vec` does not reallocate.
    let mut text = Vec::with_capacity(TRACEPARENT_LEN + id_len + host.len() + agent.len());
    text.extend_from_slice(b"00-");
    match &parent {
        Some(p) => text.extend_from_slice(p.trace_id),
        None => hex_into(&mut text, nonzero_random(), 32),
    }
    text.push(b'-');
    hex_into(&mut text, u128::from((random() as u64).max(1)), 16);
    text.extend_from_slice(if parent.as_ref().is_some_and(|p| p.sampled) {
        b"-01"
    } else {
        b"-00"
    });
    match kept_id {
        Some(id) => text.extend_from_slice(id),
        None => hex_into(&mut text, random(), 32),
    }
    let id_end = text.len();
    text.extend_from_slice(host);
    let host_end = text.len();
    text.extend_from_slice(agent);
    let keep_state = parent.is_some() && tracestate_fits(headers);
    let seen = Seen {
        text: Bytes::from(text),
        id_end: id_end as u16,
        host_end: host_end as u16,
    };
    if let Ok(v) = HeaderValue::from_maybe_shared(seen.text.slice(..TRACEPARENT_LEN)) {
        headers.insert(TRACEPARENT.clone(), v);
    }
    if !keep_state {
        headers.remove(&TRACESTATE);
    }
    match seen.request_id_header() {
        Some(v) => {
            headers.insert(X_REQUEST_ID.clone(), v);
        }
        None => {
            headers.remove(&X_REQUEST_ID);
        }
    }
    seen
}

/// `v`'s low `digits` hex digits, lower case, most significant first.
fn hex_into(out: &mut Vec<u8>, v: u128, digits: u32) {
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(v >> (i * 4)) as usize & 0xf]);
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A per-thread seed: std's random hasher keys (read from the OS once per
/// thread) mixed with the thread's address space position.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.finish()
}

/// 128 random bits (wyrand twice).
fn random() -> u128 {
    RNG.with(|state| {
        let next = || {
            let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(s);
            let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
            ((t >> 64) as u64) ^ (t as u64)
        };
        (u128::from(next()) << 64) | u128::from(next())
    })
}

/// 128 random bits, not all zero (an all-zero trace or span id is invalid).
fn nonzero_random() -> u128 {
    match random() {
        0 => 1,
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("a name"),
                HeaderValue::from_str(v).expect("a value"),
            );
        }
        h
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn begun(pairs: &[(&str, &str)]) -> (HeaderMap, Seen) {
        let mut h = headers(pairs);
        let seen = begin(&mut h, &Uri::from_static("/"), false);
        (h, seen)
    }

    fn sent(h: &HeaderMap, name: &HeaderName) -> String {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn a_valid_parent_keeps_its_trace_id_and_flag_and_gets_the_gateway_s_span() {
        let (h, seen) = begun(&[("traceparent", VALID), ("tracestate", "congo=t61rcWkgMzE")]);
        let tp = sent(&h, &TRACEPARENT);
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{tp}");
        assert!(tp.ends_with("-01"), "{tp}");
        assert_ne!(&tp[36..52], "00f067aa0ba902b7", "the gateway's span is the parent");
        assert_eq!(seen.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(seen.span_id(), &tp[36..52]);
        assert_eq!(sent(&h, &TRACESTATE), "congo=t61rcWkgMzE");
        assert!(parent_of(&h).is_some(), "what goes upstream is valid: {tp}");
        // An unsampled parent stays unsampled.
        let (h, _) = begun(&[("traceparent", &VALID.replace("-01", "-00"))]);
        assert!(sent(&h, &TRACEPARENT).ends_with("-00"));
        // A later version is read as 00 (and sent as 00).
        let later = format!("cc{}-what-comes-next", &VALID[2..]);
        let (h, seen) = begun(&[("traceparent", &later)]);
        assert_eq!(seen.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sent(&h, &TRACEPARENT).starts_with("00-"));
    }

    #[test]
    fn an_invalid_or_missing_parent_starts_a_new_trace_without_tracestate() {
        let bad = [
            VALID.replace("00-4bf", "ff-4bf"),
            VALID.replace("4bf92f", "4BF92F"),
            VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            VALID.replace("00f067aa0ba902b7", &"0".repeat(16)),
            VALID.replace("-01", "-0x"),
            format!("{VALID}-extra"),
            VALID[..54].to_string(),
            VALID.replace('-', "_"),
        ];
        for b in &bad {
            let (h, seen) = begun(&[("traceparent", b), ("tracestate", "congo=t61rcWkgMzE")]);
            assert_ne!(seen.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736", "{b}");
            assert!(parent_of(&h).is_some(), "a valid new one replaces {b}");
            assert!(h.get(&TRACESTATE).is_none(), "{b}");
            assert!(sent(&h, &TRACEPARENT).ends_with("-00"));
        }
        // Two traceparent lines: invalid.
        let (_, seen) = begun(&[("traceparent", VALID), ("traceparent", VALID)]);
        assert_ne!(seen.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // None at all: new ids, different each time.
        let (h1, s1) = begun(&[]);
        let (_, s2) = begun(&[]);
        assert!(parent_of(&h1).is_some());
        assert_ne!(s1.trace_id(), s2.trace_id());
        assert_ne!(s1.span_id(), s2.span_id());
    }

    #[test]
    fn tracestate_with_too_many_members_is_dropped() {
        let many = (0..33).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        let (h, _) = begun(&[("traceparent", VALID), ("tracestate", &many)]);
        assert!(h.get(&TRACESTATE).is_none());
        let enough = (0..32).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(" , ,");
        let (h, _) = begun(&[("traceparent", VALID), ("tracestate", &enough)]);
        assert!(h.get(&TRACESTATE).is_some());
    }

    #[test]
    fn a_client_s_request_id_is_replaced_when_the_peer_is_not_trusted() {
        let (h, seen) = begun(&[
            ("x-request-id", "client-chosen"),
            ("user-agent", "curl/8"),
            ("host", "shop"),
        ]);
        let id = sent(&h, &X_REQUEST_ID);
        assert_ne!(id, "client-chosen");
        assert_eq!(id, seen.request_id());
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(seen.user_agent(), b"curl/8");
        assert_eq!(seen.host(), b"shop");
        let (_, other) = begun(&[]);
        assert_ne!(other.request_id(), seen.request_id());
    }

    #[test]
    fn a_trusted_proxy_s_request_id_is_kept_and_a_bad_one_replaced() {
        let mut h = headers(&[("x-request-id", "lb-7f3a")]);
        let seen = begin(&mut h, &Uri::from_static("/"), true);
        assert_eq!(sent(&h, &X_REQUEST_ID), "lb-7f3a");
        assert_eq!(seen.request_id(), "lb-7f3a");
        let mut h = headers(&[("x-request-id", "has space")]);
        let seen = begin(&mut h, &Uri::from_static("/"), true);
        assert_ne!(seen.request_id(), "has space");
        assert_eq!(seen.request_id().len(), 32);
    }

    #[test]
    fn request_ids_kept_from_a_trusted_peer_are_bounded() {
        assert!(valid_request_id(b"f0e1-abc_DEF.1:2+3/4=5@x"));
        assert!(valid_request_id(&[b'a'; MAX_REQUEST_ID]));
        for bad in [
            &b""[..],
            &[b'a'; MAX_REQUEST_ID + 1],
            b"a b",
            b"a\x1bb",
            b"a\"b",
            b"a\\b",
            "é".as_bytes(),
        ] {
            assert!(!valid_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn logged_host_and_agent_are_bounded() {
        let long = "a".repeat(1000);
        let (_, seen) = begun(&[("user-agent", &long), ("host", &long)]);
        assert_eq!(seen.user_agent().len(), MAX_LOGGED);
        assert_eq!(seen.host().len(), MAX_LOGGED);
        assert_eq!(seen.request_id().len(), 32);
    }
}
