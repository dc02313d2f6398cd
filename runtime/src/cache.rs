//! A route's `cache { ttl D max_size SIZE }`: the upstream's answers kept
//! and served again, as a shared cache does (RFC 9111).
//!
//! What is stored: the answer to a `GET` (a `HEAD` is served from it) with
//! a status cacheable by default (200, 203, 204, 300, 301, 308, 404, 405,
//! 410, 414, 501), no `no-store`, `private`, `no-cache`, `Set-Cookie` or
//! `Vary: *`, a body within [`RouteCache::entry_limit`] (larger ones stream
//! through uncached) and a freshness above zero: `s-maxage`, else
//! `max-age`, else `Expires` − `Date`, else the route's `ttl`. A request
//! with `Authorization` has its answer stored, and is served a stored one,
//! only when that answer says `public` or gives `s-maxage` (3.5). A request
//! with `Cache-Control: no-store` bypasses the cache; one with `no-cache`
//! (or `Pragma: no-cache`) goes upstream and refreshes the entry.
//!
//! The key is the host, path and query, plus the values of the request
//! headers the stored answer's `Vary` names (the names are remembered per
//! host, path and query). Concurrent misses of one key make one upstream
//! request (moka's coalesced initialisation): the others wait for it,
//! bounded by the route's timeout, and go upstream themselves when its
//! answer is not stored or does not match their `Vary` headers. A stale
//! entry within the answer's `stale-while-revalidate` is served (`x-cache:
//! stale`) while the first request that found it stale refreshes it.
//!
//! Served answers carry `Age` and `x-cache: hit | miss | stale`; the
//! route's response transforms and compression apply after the cache, so
//! what is kept is the upstream's answer.

use crate::body::{full, Body};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

/// A cache key: host, path and query, then the `Vary` values, `\0`-separated.
pub(crate) type Key = Box<[u8]>;

/// A route's cache: its entries and, per host, path and query, the request
/// headers the last stored answer varied on.
pub struct RouteCache {
    entries: moka::future::Cache<Key, Arc<Entry>>,
    vary: moka::future::Cache<Key, Arc<[HeaderName]>>,
    ttl: Duration,
    entry_limit: usize,
}

/// A stored answer.
pub(crate) struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    /// The upstream's `Age` when it was stored.
    initial_age: Duration,
    fresh_for: Duration,
    /// `stale-while-revalidate`: how long past `fresh_for` it may be served.
    stale_for: Duration,
    /// `public` or `s-maxage`: may answer a request with `Authorization`.
    shared_ok: bool,
    /// The `Vary` names, and the key under which it belongs.
    vary: Arc<[HeaderName]>,
    key: Key,
    /// Set by the one request that refreshes it once stale.
    refreshing: AtomicBool,
}

/// Bounds on an entry's expiry in moka (the entry itself decides freshness).
struct Expire;

impl moka::Expiry<Key, Arc<Entry>> for Expire {
    fn expire_after_create(&self, _: &Key, e: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some((e.fresh_for + e.stale_for).saturating_sub(e.initial_age))
    }
}

/// The fixed weight of an entry beyond its body and headers.
const ENTRY_OVERHEAD: usize = 256;

impl RouteCache {
    pub fn new(cfg: &gw_plan::Cache) -> RouteCache {
        let max = cfg.max_size.max(1);
        RouteCache {
            entries: moka::future::Cache::builder()
                .max_capacity(max)
                .weigher(|k: &Key, e: &Arc<Entry>| weight(k, e))
                .expire_after(Expire)
                .build(),
            // Vary names per path: small, bounded by count.
            vary: moka::future::Cache::builder()
                .max_capacity((max / 1024).clamp(64, 65_536))
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            ttl: cfg.ttl.as_duration(),
            entry_limit: Self::entry_limit(cfg.max_size),
        }
    }

    /// The largest body stored: an eighth of `max_size`, so that one answer
    /// cannot evict most of the others.
    pub fn entry_limit(max_size: u64) -> usize {
        usize::try_from(max_size / 8).unwrap_or(usize::MAX)
    }
}

fn weight(k: &Key, e: &Entry) -> u32 {
    let headers: usize = e.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
    u32::try_from(e.body.len() + headers + k.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

/// What the request itself says about the cache.
pub(crate) struct Probe {
    /// Host, path and query.
    base: Key,
    head: bool,
    authorized: bool,
    /// `no-cache`: go upstream, then store.
    refresh: bool,
}

impl Probe {
    /// `None` when the request bypasses the cache (not `GET`/`HEAD`, an
    /// upgrade, or `Cache-Control: no-store`).
    pub(crate) fn of(
        method: &Method,
        headers: &HeaderMap,
        host: Option<&HeaderValue>,
        uri: &hyper::Uri,
    ) -> Option<Probe> {
        let head = match *method {
            Method::GET => false,
            Method::HEAD => true,
            _ => return None,
        };
        if headers.contains_key(header::UPGRADE) {
            return None;
        }
        let cc = Directives::of(headers);
        if cc.no_store {
            return None;
        }
        let pragma_no_cache = headers
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.to_ascii_lowercase().contains("no-cache")));
        let mut base = Vec::with_capacity(64);
        base.extend_from_slice(host.map_or(&b""[..], |h| h.as_bytes()));
        base.push(0);
        base.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
        Some(Probe {
            base: base.into_boxed_slice(),
            head,
            authorized: headers.contains_key(header::AUTHORIZATION),
            refresh: cc.no_cache || pragma_no_cache,
        })
    }
}

/// The key of a request under the `Vary` names `names`.
fn key_of(base: &[u8], names: &[HeaderName], headers: &HeaderMap) -> Key {
    let mut k = base.to_vec();
    for n in names {
        k.push(0);
        for (i, v) in headers.get_all(n).iter().enumerate() {
            if i > 0 {
                k.extend_from_slice(b", ");
            }
            k.extend_from_slice(v.as_bytes());
        }
    }
    k.into_boxed_slice()
}

/// What the cache found for a request.
pub(crate) enum Found {
    /// Served from the cache (`x-cache: hit`, or `stale`).
    Serve(Response<Body>),
    /// Go upstream alone, storing what is storable: a `no-cache` request,
    /// or the one that refreshes a stale entry.
    Refresh,
    /// Go upstream through the coalesced miss of this key.
    Miss(Key),
    /// A `HEAD` not found: go upstream, store nothing.
    Pass,
}

impl RouteCache {
    pub(crate) async fn find(&self, p: &Probe, headers: &HeaderMap) -> Found {
        let names = self.vary.get(&p.base).await.unwrap_or_else(|| Arc::from([]));
        let key = key_of(&p.base, &names, headers);
        if p.refresh {
            return Found::Refresh;
        }
        if let Some(e) = self.entries.get(&key).await {
            if p.authorized && !e.shared_ok {
                return Found::Refresh;
            }
            let age = e.age();
            if age < e.fresh_for {
                return Found::Serve(e.response(p.head, age, "hit"));
            }
            if age < e.fresh_for + e.stale_for {
                if e.refreshing.swap(true, Ordering::AcqRel) {
                    return Found::Serve(e.response(p.head, age, "stale"));
                }
                return Found::Refresh;
            }
            self.entries.invalidate(&key).await;
        }
        if p.head {
            return Found::Pass;
        }
        Found::Miss(key)
    }

    /// The entry a leader's coalesced miss of `key` made, or `Err` when its
    /// answer was not stored (then `mine` holds it).
    pub(crate) async fn coalesce<F>(&self, key: Key, timeout: Duration, init: F) -> Coalesced
    where
        F: std::future::Future<Output = Result<Arc<Entry>, NotStored>>,
    {
        match tokio::time::timeout(timeout, self.entries.try_get_with(key.clone(), init)).await {
            Ok(Ok(e)) => {
                if *e.key != *key {
                    // Stored under the key its `Vary` gives.
                    self.entries.invalidate(&key).await;
                    self.entries.insert(e.key.clone(), e.clone()).await;
                }
                Coalesced::Entry(e)
            }
            Ok(Err(_)) => Coalesced::NotStored,
            Err(_) => Coalesced::TimedOut,
        }
    }

    /// Keeps `e` (a refreshed answer) and remembers what it varies on.
    pub(crate) async fn keep(&self, base: &[u8], e: &Arc<Entry>) {
        self.vary.insert(base.into(), e.vary.clone()).await;
        self.entries.insert(e.key.clone(), e.clone()).await;
    }

    pub(crate) async fn remember_vary(&self, p: &Probe, e: &Entry) {
        self.vary.insert(p.base.clone(), e.vary.clone()).await;
    }

    /// The answer `resp` to the request of `p`/`headers`: stored (the entry,
    /// and a response made from it) or not (the response, its body intact).
    pub(crate) async fn admit(&self, p: &Probe, headers: &HeaderMap, resp: Response<Body>) -> Admitted {
        let Some(plan) = self.storable(p, &resp) else {
            return Admitted::No(resp);
        };
        let (mut parts, body) = resp.into_parts();
        let body = match collect(body, self.entry_limit, plan.declared).await {
            Collected::Whole(b) => b,
            Collected::Over(body) => return Admitted::No(Response::from_parts(parts, body)),
            Collected::Failed => return Admitted::Failed,
        };
        parts.headers.remove(header::AGE);
        parts.headers.remove(header::TRAILER);
        // The body is whole: its length is known (a `HEAD` served from the
        // entry says it too), whatever framing the upstream used.
        if parts.status != StatusCode::NO_CONTENT {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let vary: Arc<[HeaderName]> = plan.vary.into();
        let e = Arc::new(Entry {
            status: parts.status,
            key: key_of(&p.base, &vary, headers),
            headers: parts.headers,
            body,
            stored: Instant::now(),
            initial_age: plan.initial_age,
            fresh_for: plan.fresh_for,
            stale_for: plan.stale_for,
            shared_ok: plan.shared_ok,
            vary,
            refreshing: AtomicBool::new(false),
        });
        Admitted::Yes(e)
    }

    /// Whether `resp` may be stored, and how.
    fn storable(&self, p: &Probe, resp: &Response<Body>) -> Option<Storing> {
        if p.head || !cacheable_status(resp.status()) {
            return None;
        }
        let h = resp.headers();
        let cc = Directives::of(h);
        if cc.no_store || cc.private || cc.no_cache || h.contains_key(header::SET_COOKIE) {
            return None;
        }
        let shared_ok = cc.public || cc.s_maxage.is_some();
        if p.authorized && !shared_ok {
            return None;
        }
        let mut vary = Vec::new();
        for v in h.get_all(header::VARY) {
            let v = v.to_str().ok()?;
            for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*" {
                    return None;
                }
                vary.push(HeaderName::from_bytes(name.as_bytes()).ok()?);
            }
        }
        let fresh_for = match cc.s_maxage.or(cc.max_age) {
            Some(s) => Duration::from_secs(s),
            None => match h.get(header::EXPIRES) {
                // An invalid `Expires` (such as `0`) is in the past (5.3).
                Some(v) => {
                    let expires = v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
                    let date = h
                        .get(header::DATE)
                        .and_then(|d| d.to_str().ok())
                        .and_then(|s| httpdate::parse_http_date(s).ok())
                        .unwrap_or_else(SystemTime::now);
                    expires
                        .and_then(|e| e.duration_since(date).ok())
                        .unwrap_or(Duration::ZERO)
                }
                None => self.ttl,
            },
        };
        let initial_age = h
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        let stale_for = Duration::from_secs(cc.stale_while_revalidate.unwrap_or(0));
        if fresh_for + stale_for <= initial_age {
            return None;
        }
        let declared = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        Some(Storing {
            fresh_for,
            stale_for,
            initial_age,
            shared_ok,
            vary,
            declared,
        })
    }
}

/// How a storable answer is stored.
struct Storing {
    fresh_for: Duration,
    stale_for: Duration,
    initial_age: Duration,
    shared_ok: bool,
    vary: Vec<HeaderName>,
    declared: Option<u64>,
}

/// An answer's fate.
pub(crate) enum Admitted {
    Yes(Arc<Entry>),
    No(Response<Body>),
    /// Its body failed while it was read.
    Failed,
}

/// A coalesced miss's outcome for one of its requests.
pub(crate) enum Coalesced {
    Entry(Arc<Entry>),
    NotStored,
    TimedOut,
}

/// The leader's answer was not stored (its followers go upstream).
#[derive(Debug)]
pub(crate) struct NotStored;

/// RFC 9110 15.1: the statuses cacheable by default (206 is not: a part).
fn cacheable_status(s: StatusCode) -> bool {
    matches!(
        s.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

impl Entry {
    fn age(&self) -> Duration {
        self.initial_age + self.stored.elapsed()
    }

    /// Whether this entry answers a request with `headers` (its `Vary`
    /// values the same) of `authorized`.
    pub(crate) fn answers(&self, base: &[u8], headers: &HeaderMap, authorized: bool) -> bool {
        (!authorized || self.shared_ok) && *key_of(base, &self.vary, headers) == *self.key
    }

    /// The response made from this entry, with `Age` and `x-cache`.
    pub(crate) fn response(&self, head: bool, age: Duration, outcome: &'static str) -> Response<Body> {
        let mut r = Response::new(if head {
            crate::body::empty()
        } else {
            full(self.body.clone())
        });
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        r.headers_mut().insert(header::AGE, HeaderValue::from(age.as_secs()));
        mark(&mut r, outcome);
        r
    }

    pub(crate) fn served(&self, p: &Probe, outcome: &'static str) -> Response<Body> {
        self.response(p.head, self.age(), outcome)
    }
}

impl Probe {
    pub(crate) fn base(&self) -> &[u8] {
        &self.base
    }

    pub(crate) fn authorized(&self) -> bool {
        self.authorized
    }
}

/// Sets `x-cache`.
pub(crate) fn mark(r: &mut Response<Body>, outcome: &'static str) {
    r.headers_mut()
        .insert(HeaderName::from_static("x-cache"), HeaderValue::from_static(outcome));
}

/// The `Cache-Control` directives the cache reads.
#[derive(Default)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
    stale_while_revalidate: Option<u64>,
}

impl Directives {
    fn of(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for v in headers.get_all(header::CACHE_CONTROL) {
            let Ok(v) = v.to_str() else { continue };
            for item in v.split(',') {
                let (name, value) = match item.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (item.trim(), None),
                };
                let secs = || value.and_then(|v| v.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    // A duplicate or invalid value makes the answer stale (4.2.1):
                    // zero, which stores nothing.
                    "max-age" => d.max_age = Some(if d.max_age.is_some() { 0 } else { secs().unwrap_or(0) }),
                    "s-maxage" => d.s_maxage = Some(if d.s_maxage.is_some() { 0 } else { secs().unwrap_or(0) }),
                    "stale-while-revalidate" => d.stale_while_revalidate = secs(),
                    _ => {}
                }
            }
        }
        d
    }
}

/// A body read for storing.
enum Collected {
    Whole(Bytes),
    /// Over the bound: what was read, then the rest, streamed.
    Over(Body),
    Failed,
}

async fn collect(mut body: Body, limit: usize, declared: Option<u64>) -> Collected {
    if declared.is_some_and(|n| n > limit as u64) {
        return Collected::Over(body);
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Collected::Failed };
        // Trailers are not kept.
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                return Collected::Over(crate::body::boxed(Prefixed {
                    prefix: Some(buf.freeze()),
                    rest: body,
                }));
            }
        }
    }
    Collected::Whole(buf.freeze())
}

/// A body whose start was already read.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn directives_are_read_case_blind_and_duplicates_make_stale() {
        let d = Directives::of(&h(&[("cache-control", "Public, max-age=60, S-MAXAGE=\"5\"")]));
        assert!(d.public && d.max_age == Some(60) && d.s_maxage == Some(5));
        let d = Directives::of(&h(&[("cache-control", "max-age=60"), ("cache-control", "max-age=30")]));
        assert_eq!(d.max_age, Some(0));
        let d = Directives::of(&h(&[("cache-control", "max-age=abc, stale-while-revalidate=9")]));
        assert_eq!((d.max_age, d.stale_while_revalidate), (Some(0), Some(9)));
    }

    #[test]
    fn statuses() {
        for s in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert!(cacheable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [201, 206, 302, 304, 500, 502, 503] {
            assert!(!cacheable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_bound_is_passed_on_whole() {
        let Collected::Over(rest) = collect(full("0123456789"), 4, None).await else {
            panic!("a body of 10 bytes is over 4");
        };
        let got = rest.collect().await.expect("body").to_bytes();
        assert_eq!(&got[..], b"0123456789");
        assert!(matches!(collect(full("0123"), 4, None).await, Collected::Whole(b) if &b[..] == b"0123"));
        assert!(matches!(
            collect(full("0123456789"), 4, Some(10)).await,
            Collected::Over(_)
        ));
    }

    #[test]
    fn vary_values_are_part_of_the_key() {
        let names: Arc<[HeaderName]> = Arc::from([header::ACCEPT_LANGUAGE]);
        let a = key_of(b"h\0/p", &names, &h(&[("accept-language", "fr")]));
        let b = key_of(b"h\0/p", &names, &h(&[("accept-language", "de")]));
        let none = key_of(b"h\0/p", &names, &HeaderMap::new());
        assert!(a != b && a != none);
        assert_eq!(
            key_of(b"h\0/p", &[], &h(&[("accept-language", "fr")]))[..],
            b"h\0/p"[..]
        );
    }
}
