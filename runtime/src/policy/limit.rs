//! `limit NAME { rate N/unit burst B key K }`: governor's keyed GCRA, one
//! budget per distinct key (`client_ip`, `header.x`, `query.x`,
//! `cookie.x`, `claim.x`, `api_key`, or `none` for one shared budget). A
//! request whose key is absent shares one budget with every other such
//! request, so leaving the header out is no way around the limit. Keys are
//! kept as 64-bit SipHash values under a per-limiter random seed, never as
//! the client's strings.
//!
//! A refusal is a 429 with `Retry-After` (whole seconds, rounded up) and the
//! IETF draft's `RateLimit-Policy: "NAME";q=N;w=SECONDS` and `RateLimit:
//! "NAME";r=0;t=SECONDS`. Idle keys — whose state equals a fresh one — are
//! pruned every [`PRUNE_EVERY`], and the map shrinks, so rotating keys
//! cannot grow memory without bound.
//!
//! A limit holds at most `max_keys` keys (its `Budgets`). A new key that
//! finds the map full is counted against one overflow budget that every
//! such key shares (with the limit's rate and burst), until pruning makes
//! room: a client inventing keys cannot push out the keys already tracked,
//! and so cannot reset their budgets (nginx instead evicts the least
//! recently used state). The checks that went to the overflow budget are
//! counted (`gw_limit_overflow_total`).
//!
//! A limit that names a `store` keeps its budgets in Redis instead
//! ([`super::redis`]), shared by every gateway: [`Limit::check_shared`].
//! Its keys there are `gw:limit:NAME:` and `all` (`key none`), `ip:ADDR`
//! (`client_ip`), `absent` (no key), or `h:` and 32 hex digits of the
//! key's SHA-256 (every other key: the client's strings are not stored).
//! When Redis does not answer within the store's `timeout`, `on_error allow`
//! lets the request through and `on_error deny` refuses it like an
//! exhausted budget (429, `Retry-After: 1`).

use super::redis::RedisStore;
use super::Rejected;
use crate::metrics::Rejection;
use crate::request::RequestCtx;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use gw_plan::{LimitKey, RateLimit, Store};
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often idle keys are pruned.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// A limit's budgets: governor's GCRA state per key in a concurrent map
/// (sharded locks), at most `max_keys` of them, and the overflow budget
/// that new keys share once the map is full.
struct Budgets {
    map: DashMapStateStore<u64>,
    /// Keys in `map` (the map's own `len` locks every shard).
    len: AtomicUsize,
    max_keys: AtomicUsize,
    /// The one budget of every key that found the map full.
    overflow: InMemoryState,
    /// Checks counted against `overflow`.
    overflowed: AtomicU64,
}

/// [`Budgets`] as governor's state store (shared, so that the limiter and
/// its owner both reach it).
#[derive(Clone)]
struct CappedStore(Arc<Budgets>);

impl StateStore for CappedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let b = &*self.0;
        if let Some(state) = b.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if b.len.load(Ordering::Relaxed) >= b.max_keys.load(Ordering::Relaxed) {
            b.overflowed.fetch_add(1, Ordering::Relaxed);
            return b.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let mut inserted = false;
        let state = b.map.entry(*key).or_insert_with(|| {
            inserted = true;
            InMemoryState::default()
        });
        // Counted while the entry's shard is still locked, so that pruning
        // (which takes that lock) never takes it away before it is counted.
        if inserted {
            b.len.fetch_add(1, Ordering::Relaxed);
        }
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut removed = 0;
        self.0.map.retain(|_, state| {
            // The state's theoretical arrival time, read without changing it.
            let tat = state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), Option<Nanos>>);
            let fresh = tat.err().flatten().is_none_or(|t| t <= drop_below);
            removed += usize::from(fresh);
            !fresh
        });
        self.0.len.fetch_sub(removed, Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len.load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A keyed GCRA limiter over any clock (tests drive a fake one).
pub struct KeyedLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<u64, CappedStore, C, NoOpMiddleware<C::Instant>>,
    budgets: Arc<Budgets>,
    clock: C,
    hasher: std::hash::RandomState,
}

impl<C: Clock + Clone> KeyedLimiter<C> {
    /// `count` requests per `per`, at most `burst` at once, and at most
    /// `max_keys` keys with a budget of their own.
    pub fn new(count: u64, per: Duration, burst: u32, max_keys: usize, clock: C) -> KeyedLimiter<C> {
        let count = count.max(1);
        let interval_ns = (per.as_nanos() / u128::from(count)).clamp(1, u128::from(u64::MAX));
        let interval = Duration::from_nanos(interval_ns as u64);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        let budgets = Arc::new(Budgets {
            map: DashMapStateStore::default(),
            len: AtomicUsize::new(0),
            max_keys: AtomicUsize::new(max_keys),
            overflow: InMemoryState::default(),
            overflowed: AtomicU64::new(0),
        });
        KeyedLimiter {
            limiter: RateLimiter::new(quota, CappedStore(budgets.clone()), clock.clone()),
            budgets,
            clock,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Changes the cap on keys (a reload that changed only `max_keys`):
    /// the keys already held stay, over the cap until pruning.
    pub(crate) fn set_max_keys(&self, max_keys: usize) {
        self.budgets.max_keys.store(max_keys, Ordering::Relaxed);
    }

    /// Checks counted against the overflow budget (the map was full).
    pub fn overflowed(&self) -> u64 {
        self.budgets.overflowed.load(Ordering::Relaxed)
    }

    /// Takes one cell for `key` (`None`: the key is absent); `Err` is how
    /// long until one would conform.
    pub fn check(&self, key: Option<&str>) -> Result<(), Duration> {
        self.check_hashed(self.hasher.hash_one(key))
    }

    fn check_hashed(&self, key: u64) -> Result<(), Duration> {
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops keys whose state equals a fresh one, then shrinks the map.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// `Retry-After` seconds: the wait rounded up to a whole second (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// One `limit` of the plan.
pub(crate) struct Limit {
    pub name: String,
    definition: RateLimit,
    pub limiter: KeyedLimiter,
    policy: HeaderValue,
    /// The store keeping this limit's budgets, when it names one.
    pub shared: Option<Arc<RedisStore>>,
    /// The emission interval in µs (what the Redis script counts in).
    interval_us: u64,
}

impl Limit {
    /// The limit `l`, its budgets in `shared` when it names a store.
    pub fn new(l: &RateLimit, shared: Option<Arc<RedisStore>>) -> Limit {
        let per = l.per.as_duration();
        let window = retry_after_secs(per);
        let policy = HeaderValue::from_str(&format!("\"{}\";q={};w={window}", l.name, l.count))
            .unwrap_or_else(|_| HeaderValue::from_static("\"limit\""));
        Limit {
            name: l.name.clone(),
            definition: l.clone(),
            limiter: KeyedLimiter::new(l.count, per, l.burst, l.max_keys as usize, DefaultClock::default()),
            policy,
            shared,
            interval_us: (per.as_micros() / u128::from(l.count.max(1))).clamp(1, u128::from(u64::MAX)) as u64,
        }
    }

    /// Whether `l`, kept in `store`, is this limit unchanged (its budgets
    /// carry over a reload).
    pub(crate) fn same_as(&self, l: &RateLimit, store: Option<&Store>) -> bool {
        let d = &self.definition;
        let same_store = match (&self.shared, store) {
            (None, None) => true,
            (Some(mine), Some(theirs)) => mine.same_as(theirs),
            _ => false,
        };
        same_store && d.name == l.name && d.count == l.count && d.per == l.per && d.burst == l.burst && d.key == l.key
    }

    /// Takes one cell for the request, or refuses it.
    pub fn check(&self, ctx: &RequestCtx<'_>) -> Result<(), Rejected> {
        let result = match &self.definition.key {
            LimitKey::None => self.limiter.check_hashed(0),
            LimitKey::ClientIp => self.limiter.check_hashed(self.limiter.hasher.hash_one(ctx.client_ip)),
            LimitKey::ApiKey => self.limiter.check(ctx.api_key),
            LimitKey::Ref(r) => self.limiter.check(ctx.value(r).as_deref()),
        };
        result.map_err(|wait| self.rejected(wait))
    }

    /// The 429 for a request that may be retried after `wait`.
    fn rejected(&self, wait: Duration) -> Rejected {
        let secs = retry_after_secs(wait);
        let state = HeaderValue::from_str(&format!("\"{}\";r=0;t={secs}", self.name))
            .unwrap_or_else(|_| HeaderValue::from_static("r=0"));
        Rejected {
            reason: Rejection::RateLimited,
            retry_after: Some(secs),
            rate_limit: Some((self.policy.clone(), state)),
        }
    }

    /// The Redis key of the request's budget (see the module's doc).
    pub(crate) fn shared_key(&self, ctx: &RequestCtx<'_>) -> String {
        let mut key = String::with_capacity(self.name.len() + 48);
        key.push_str("gw:limit:");
        key.push_str(&self.name);
        key.push(':');
        let hashed = |key: &mut String, value: Option<&str>| match value {
            None => key.push_str("absent"),
            Some(v) => {
                key.push_str("h:");
                for b in &Sha256::digest(v.as_bytes())[..16] {
                    let _ = write!(key, "{b:02x}");
                }
            }
        };
        match &self.definition.key {
            LimitKey::None => key.push_str("all"),
            LimitKey::ClientIp => {
                let _ = write!(key, "ip:{}", ctx.client_ip);
            }
            LimitKey::ApiKey => hashed(&mut key, ctx.api_key),
            LimitKey::Ref(r) => hashed(&mut key, ctx.value(r).as_deref()),
        }
        key
    }

    /// Takes one cell of the budget at `key` (from [`Limit::shared_key`]) in
    /// `store`, or refuses the request; `on_error` decides when Redis gives
    /// no answer in time.
    pub(crate) async fn check_shared(&self, store: &RedisStore, key: &str) -> Result<(), Rejected> {
        match store.take(key, self.interval_us, self.definition.burst).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(self.rejected(wait)),
            Err(_) if store.on_error_allow() => Ok(()),
            Err(_) => Err(self.rejected(Duration::from_secs(1))),
        }
    }
}

/// Prunes the limit's idle keys every [`PRUNE_EVERY`] until it is dropped
/// (a limit carried over a reload keeps its one pruning task).
pub(crate) fn spawn_pruning(limit: &Arc<Limit>) {
    let weak: Weak<Limit> = Arc::downgrade(limit);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PRUNE_EVERY).await;
            let Some(l) = weak.upgrade() else { return };
            l.limiter.prune();
        }
    });
}
