//! `store NAME redis "redis://..."`: the budgets of the limits that name the
//! store, kept in Redis and so shared by every gateway that points at it.
//!
//! One request costs one round trip: a Lua script (GCRA over Redis's own
//! clock, so gateways' clocks need not agree) run with `EVALSHA`, loaded
//! again when Redis answers `NOSCRIPT` (after a restart or a `SCRIPT
//! FLUSH`). A budget lives at `gw:limit:<limit>:<key>` with a TTL that ends
//! when the budget is full again, so idle keys expire by themselves.
//!
//! The client is the `redis` crate's connection manager: one multiplexed
//! connection per store (calls pipelined on it, whichever worker thread
//! makes them), opened at the first call and reopened after a failure;
//! `AUTH` and `SELECT` from the URL (`redis[s]://[[user]:password@]host
//! [:port][/db]`, parsed by the checker's parser; written in the plan, or
//! read at load from `env("X")` / `file("p")`). `rediss://` is TLS (rustls
//! on ring) verified against the system's trust roots, or the store's
//! `tls { ca .. }`, with its client certificate (`cert .. key ..`). Each call is
//! bounded by the store's `timeout`; a failed or late call is an [`Error`]
//! and the caller applies `on_error`. After a failure the store backs off
//! (25 ms doubling up to 1 s) and answers [`Error::Down`] at once until the
//! next attempt, so an unreachable Redis costs requests nothing and is not
//! hammered.

use gw_plan::Store;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first wait after a failure; it doubles with each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(25);
/// The longest wait between attempts while Redis is down.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long the connection made at load may take (requests never wait for it).
const WARM_TIMEOUT: Duration = Duration::from_secs(2);

/// GCRA in Redis. `KEYS[1]`: the budget; `ARGV[1]`: the emission interval
/// (µs); `ARGV[2]`: the burst. The theoretical arrival time (µs since the
/// epoch, Redis's clock) is stored; a request conforms when it is at most
/// `burst` intervals ahead. Answers `{1, 0}` (taken) or `{0, wait µs}`.
pub(crate) const SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = interval * tonumber(ARGV[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local v = tonumber(stored)
  if v and v > now then tat = v end
end
local new_tat = tat + interval
local allow_at = new_tat - tau
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, 0}
"#;

/// Why a call to Redis gave no answer.
#[derive(Debug)]
pub enum Error {
    /// The URL cannot be used (the reason is logged at load).
    Unusable,
    /// Backing off after a failure: no attempt was made.
    Down,
    /// No answer within the store's `timeout`.
    Timeout,
    /// The connection failed, or Redis answered with an error (a refused
    /// `AUTH`, a script error); the client's words, which quote no URL.
    Redis(redis::RedisError),
    /// The script answered something else than `{taken, wait}`.
    Protocol(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unusable => f.write_str("the store's URL cannot be used"),
            Error::Down => f.write_str("backing off after a failure"),
            Error::Timeout => f.write_str("no answer within the timeout"),
            Error::Redis(e) => write!(f, "{e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// Where a `redis://` URL points: the compiler's parser, which the checker
/// ran on this URL already (GW0003).
pub use gw_plan::redis_url::RedisUrl as Target;

/// Parses `redis[s]://[[user]:password@]host[:port][/db]` (a query string is
/// ignored). The error quotes no part of the URL (a password is in it).
pub fn parse_url(url: &str) -> Result<Target, String> {
    gw_plan::redis_url::parse(url).map_err(|e| e.to_string())
}

/// The store's URL: written in the plan, or read from `env("X")` /
/// `file("p")` (a trailing newline dropped). Errors name the reference,
/// never the URL (a password is in it).
fn url(s: &Store) -> Result<String, String> {
    let Some(from) = &s.url_from else {
        return Ok(s.url.clone());
    };
    let bytes = crate::secrets::resolve(from)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{from} is not UTF-8"))?;
    Ok(text.trim_end().to_string())
}

/// What the client connects to: `target`, over TLS when `tls` (a
/// `rediss://` URL). The store's `tls { ca .. cert .. key .. }` settings
/// are checked by the gateway's own TLS client builder
/// ([`crate::tls_client::client_config`], so a bad file reads the same
/// as an upstream's) and handed to the crate as PEM
/// (`Client::build_with_tls`), which builds its rustls config on the same
/// ring provider: the crate takes no `ClientConfig` of ours. Without a
/// `ca` the system's trust roots verify the server, by the URL's host.
fn client(target: &Target, tls: bool, settings: Option<&gw_plan::UpstreamTls>) -> Result<redis::Client, String> {
    let addr = if tls {
        ConnectionAddr::TcpTls {
            host: target.host.clone(),
            port: target.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(target.host.clone(), target.port)
    };
    let mut redis = RedisConnectionInfo::default().set_db(i64::from(target.db));
    if let Some(user) = &target.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &target.password {
        redis = redis.set_password(password);
    }
    let info = addr
        .into_connection_info()
        .map_err(|e| e.to_string())?
        .set_redis_settings(redis);
    let Some(settings) = settings else {
        return redis::Client::open(info).map_err(|e| e.to_string());
    };
    if !tls {
        return Err("`tls` needs a `rediss://` URL".into());
    }
    if settings.server_name.is_some() {
        return Err("`server_name` is not supported for a store: the URL's host is verified".into());
    }
    crate::tls_client::client_config(settings, &[])?;
    let root_cert = settings.ca.as_ref().map(crate::secrets::resolve).transpose()?;
    let client_tls = match &settings.client_cert {
        Some(c) => Some(ClientTlsConfig {
            client_cert: crate::secrets::resolve(&c.cert)?,
            client_key: crate::secrets::resolve(&c.key)?,
        }),
        None => None,
    };
    redis::Client::build_with_tls(info, TlsCertificates { client_tls, root_cert }).map_err(|e| e.to_string())
}

/// What a connection is made from, as one number: the URL and the TLS
/// files as read now. A reload keeps the connection only when it is
/// unchanged (a rotated password or CA file opens a new one).
fn fingerprint(s: &Store) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url(s).ok().hash(&mut h);
    if let Some(t) = &s.tls {
        let files = [
            t.ca.as_ref(),
            t.client_cert.as_ref().map(|c| &c.cert),
            t.client_cert.as_ref().map(|c| &c.key),
        ];
        for f in files.into_iter().flatten() {
            crate::secrets::resolve(f).ok().hash(&mut h);
        }
    }
    h.finish()
}

/// Whether Redis is answering, and when to try again if not.
#[derive(Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
}

/// One `store` of the plan: its connection and its health.
pub(crate) struct RedisStore {
    definition: Store,
    /// [`fingerprint`] of the definition when the connection was made.
    fingerprint: u64,
    connection: Result<ConnectionManager, String>,
    script: redis::Script,
    timeout: Duration,
    health: Mutex<Health>,
}

impl RedisStore {
    /// The store of `s`; an unusable URL is logged here, once. Connects at
    /// the first call ([`RedisStore::warm`] makes one ahead of requests).
    pub fn new(s: &Store) -> RedisStore {
        let timeout = s.timeout.as_duration().max(Duration::from_millis(1));
        let connection = url(s)
            .and_then(|url| {
                let target = parse_url(&url)?;
                client(&target, gw_plan::redis_url::is_tls(&url), s.tls.as_ref())
            })
            .and_then(|client| {
                // One attempt per call: the store's backoff spaces them.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(0);
                ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
            });
        if let Err(why) = &connection {
            tracing::error!(store = %s.name, error = %why, "redis store cannot be used; its limits apply on_error to every request");
        }
        RedisStore {
            definition: s.clone(),
            fingerprint: fingerprint(s),
            connection,
            script: redis::Script::new(SCRIPT),
            timeout,
            health: Mutex::new(Health::default()),
        }
    }

    /// Whether `s` is this store unchanged (its connection carries over a reload).
    pub(crate) fn same_as(&self, s: &Store) -> bool {
        self.definition == *s && self.fingerprint == fingerprint(s)
    }

    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// `on_error allow`: a request passes when Redis does not answer.
    pub(crate) fn on_error_allow(&self) -> bool {
        self.definition.on_error_allow
    }

    /// Connects and loads the script ahead of the first request (within
    /// [`WARM_TIMEOUT`]) and says in the log whether Redis answered.
    pub async fn warm(&self) {
        let Ok(connection) = &self.connection else { return };
        let mut connection = connection.clone();
        let load = self.script.prepare_invoke();
        let loading = load.load_async(&mut connection);
        match tokio::time::timeout(WARM_TIMEOUT, loading).await {
            Ok(Ok(_)) => tracing::info!(store = %self.name(), "redis store connected"),
            Ok(Err(e)) => tracing::warn!(store = %self.name(), error = %e, "redis store not reachable yet"),
            Err(_) => tracing::warn!(store = %self.name(), "redis store not reachable yet: no answer within 2s"),
        }
    }

    /// Takes one cell of the budget at `key`: `Ok(None)` when taken,
    /// `Ok(Some(wait))` when the request must wait, `Err` when Redis gave
    /// no answer within the timeout (the caller applies `on_error`).
    pub async fn take(&self, key: &str, interval_us: u64, burst: u32) -> Result<Option<Duration>, Error> {
        let Ok(connection) = &self.connection else {
            return Err(Error::Unusable);
        };
        if self.backing_off() {
            return Err(Error::Down);
        }
        let mut connection = connection.clone();
        let mut invocation = self.script.key(key);
        invocation.arg(interval_us.max(1)).arg(burst.max(1));
        let call = invocation.invoke_async::<(i64, i64)>(&mut connection);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((1, _))) => Ok(None),
            Ok(Ok((0, wait))) => Ok(Some(Duration::from_micros(u64::try_from(wait).unwrap_or(0)))),
            Ok(Ok(_)) => Err(Error::Protocol("unexpected script answer")),
            Ok(Err(e)) => Err(Error::Redis(e)),
            Err(_) => Err(Error::Timeout),
        };
        match &result {
            Ok(_) => self.succeeded(),
            // An error answer (a refused AUTH, say) backs off too: retrying
            // at once would fail the same way.
            Err(e) => self.failed(e),
        }
        result
    }

    fn backing_off(&self) -> bool {
        self.health
            .lock()
            .ok()
            .and_then(|h| h.retry_at)
            .is_some_and(|at| Instant::now() < at)
    }

    fn succeeded(&self) {
        let Ok(mut h) = self.health.lock() else { return };
        if h.failures > 0 {
            tracing::info!(store = %self.name(), "redis store answering again");
            *h = Health::default();
        }
    }

    fn failed(&self, e: &Error) {
        let Ok(mut h) = self.health.lock() else { return };
        if h.failures == 0 {
            let action = if self.on_error_allow() {
                "let through"
            } else {
                "refused"
            };
            tracing::warn!(store = %self.name(), error = %e, "redis store not answering; requests of its limits are {action} until it is back");
        }
        h.failures = h.failures.saturating_add(1);
        let shift = (h.failures - 1).min(10);
        let wait = BACKOFF_FIRST.saturating_mul(1 << shift).min(BACKOFF_MAX);
        h.retry_at = Some(Instant::now() + wait);
    }
}
