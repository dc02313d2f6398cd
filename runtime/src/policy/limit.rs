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
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use gw_compiler::plan::{LimitKey, RateLimit, Store};
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often idle keys are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// A keyed GCRA limiter over any clock (tests drive a fake one).
pub struct KeyedLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<u64, DashMapStateStore<u64>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    hasher: std::hash::RandomState,
}

impl<C: Clock + Clone> KeyedLimiter<C> {
    /// `count` requests per `per`, at most `burst` at once.
    pub fn new(count: u64, per: Duration, burst: u32, clock: C) -> KeyedLimiter<C> {
        let count = count.max(1);
        let interval_ns = (per.as_nanos() / u128::from(count)).clamp(1, u128::from(u64::MAX));
        let interval = Duration::from_nanos(interval_ns as u64);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        KeyedLimiter {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            hasher: std::hash::RandomState::new(),
        }
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
pub struct Limit {
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
            limiter: KeyedLimiter::new(l.count, per, l.burst, DefaultClock::default()),
            policy,
            shared,
            interval_us: (per.as_micros() / u128::from(l.count.max(1))).clamp(1, u128::from(u64::MAX)) as u64,
        }
    }

    /// Whether `l`, kept in `store`, is this limit unchanged (its budgets
    /// carry over a reload).
    pub fn same_as(&self, l: &RateLimit, store: Option<&Store>) -> bool {
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
    pub fn shared_key(&self, ctx: &RequestCtx<'_>) -> String {
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
    pub async fn check_shared(&self, store: &RedisStore, key: &str) -> Result<(), Rejected> {
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
pub fn spawn_pruning(limit: &Arc<Limit>) {
    let weak: Weak<Limit> = Arc::downgrade(limit);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PRUNE_EVERY).await;
            let Some(l) = weak.upgrade() else { return };
            l.limiter.prune();
        }
    });
}
