//! `store NAME redis "redis://..."`: the budgets of the limits that name the
//! store, kept in Redis and so shared by every gateway that points at it.
//!
//! One request costs one round trip: a Lua script (GCRA over Redis's own
//! clock, so gateways' clocks need not agree) run with `EVALSHA`, falling
//! back to `EVAL` when Redis answers `NOSCRIPT` (after a restart or a
//! `SCRIPT FLUSH`). A budget lives at `gw:limit:<limit>:<key>` with a TTL
//! that ends when the budget is full again, so idle keys expire by themselves.
//!
//! The client is ours: RESP over a tokio `TcpStream`, a pool of at most
//! [`MAX_CONNECTIONS`] connections per store, `AUTH` and `SELECT` from the
//! URL (`redis://[[user]:password@]host[:port][/db]`). `rediss://` (TLS) is
//! refused at load with an error in the log; such a store behaves as one
//! that is down. Each call is bounded by the store's `timeout`; a failed or
//! late call is an [`Error`] and the caller applies `on_error`. After a
//! failure the store backs off (25 ms doubling up to 1 s) and answers
//! [`Error::Down`] at once until the next attempt, so an unreachable Redis
//! costs requests nothing and is not hammered.

use gw_plan::Store;
use std::fmt;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Connections a store opens at most (each carries one call at a time).
pub(crate) const MAX_CONNECTIONS: usize = 8;
/// The first wait after a failure; it doubles with each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(25);
/// The longest wait between attempts while Redis is down.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long the connection made at load may take (requests never wait for it).
const WARM_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply larger than this is a protocol error (ours are a few bytes).
const MAX_REPLY: usize = 64 * 1024;

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
    /// Every connection was busy until the `timeout`.
    Busy,
    Io(io::Error),
    /// The connection closed before the answer.
    Closed,
    /// Redis answered with an error.
    Server(String),
    /// Redis answered something that is not RESP, or not what was asked.
    Protocol(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unusable => f.write_str("the store's URL cannot be used"),
            Error::Down => f.write_str("backing off after a failure"),
            Error::Timeout => f.write_str("no answer within the timeout"),
            Error::Busy => f.write_str("every connection busy until the timeout"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("connection closed by redis"),
            Error::Server(e) => write!(f, "redis error: {e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// Where a `redis://` URL points: the compiler's parser, which the checker
/// ran on this URL already (GW0003).
pub use gw_plan::redis_url::RedisUrl as Target;

/// Parses `redis://[[user]:password@]host[:port][/db]` (a query string is
/// ignored). `rediss://` is refused: TLS is not implemented. The error
/// quotes no part of the URL (a password is in it).
pub fn parse_url(url: &str) -> Result<Target, String> {
    if gw_plan::redis_url::is_tls(url) {
        return Err("TLS (`rediss://`) is not supported; use `redis://` (e.g. through a local TLS tunnel)".into());
    }
    gw_plan::redis_url::parse(url).map_err(|e| e.to_string())
}

/// A RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Error> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], start: usize, depth: u32) -> Result<Option<(Reply, usize)>, Error> {
    if depth > 4 {
        return Err(Error::Protocol("nested too deep"));
    }
    let Some(rel) = buf.get(start..).and_then(|b| b.windows(2).position(|w| w == b"\r\n")) else {
        return Ok(None);
    };
    if rel == 0 {
        return Err(Error::Protocol("empty reply"));
    }
    let kind = buf[start];
    let line = &buf[start + 1..start + rel];
    let after = start + rel + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let int = || -> Result<i64, Error> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(Error::Protocol("not an integer"))
    };
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), after))),
        b'-' => Ok(Some((Reply::Error(text()), after))),
        b':' => Ok(Some((Reply::Int(int()?), after))),
        b'$' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| Error::Protocol("bad length"))?;
            if n > MAX_REPLY {
                return Err(Error::Protocol("reply too large"));
            }
            let end = after + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Error::Protocol("bulk string not terminated"));
            }
            Ok(Some((Reply::Bulk(Some(buf[after..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| Error::Protocol("bad length"))?;
            if n > 1024 {
                return Err(Error::Protocol("reply too large"));
            }
            let mut items = Vec::with_capacity(n);
            let mut at = after;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1)? {
                    Some((item, next)) => {
                        items.push(item);
                        at = next;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(Error::Protocol("unknown reply type")),
    }
}

/// One connection: a command, then its reply.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Connection {
    async fn open(target: &Target) -> Result<Connection, Error> {
        let stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            buf: Vec::with_capacity(512),
            out: Vec::with_capacity(256),
        };
        if let Some(password) = &target.password {
            let reply = match &target.username {
                Some(user) => conn.command(&[b"AUTH", user.as_bytes(), password.as_bytes()]).await?,
                None => conn.command(&[b"AUTH", password.as_bytes()]).await?,
            };
            ok(reply)?;
        }
        if target.db != 0 {
            ok(conn.command(&[b"SELECT", target.db.to_string().as_bytes()]).await?)?;
        }
        Ok(conn)
    }

    async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, Error> {
        self.out.clear();
        encode(args, &mut self.out);
        self.stream.write_all(&self.out).await?;
        loop {
            if let Some((reply, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            if self.buf.len() > MAX_REPLY + 64 {
                return Err(Error::Protocol("reply too large"));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(Error::Closed);
            }
        }
    }
}

fn ok(reply: Reply) -> Result<(), Error> {
    match reply {
        Reply::Error(e) => Err(Error::Server(e)),
        _ => Ok(()),
    }
}

/// Whether Redis is answering, and when to try again if not.
#[derive(Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
}

/// One `store` of the plan: its connections and its health. A call holds
/// one of [`MAX_CONNECTIONS`] permits while it runs, which bounds the
/// connections open at once.
pub(crate) struct RedisStore {
    definition: Store,
    target: Result<Target, String>,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    /// The script's SHA1 as Redis named it (from `SCRIPT LOAD`).
    sha: Mutex<Option<String>>,
    health: Mutex<Health>,
}

impl RedisStore {
    /// The store of `s`; an unusable URL is logged here, once.
    pub fn new(s: &Store) -> RedisStore {
        let target = parse_url(&s.url);
        if let Err(why) = &target {
            tracing::error!(store = %s.name, error = %why, "redis store cannot be used; its limits apply on_error to every request");
        }
        RedisStore {
            definition: s.clone(),
            target,
            timeout: s.timeout.as_duration().max(Duration::from_millis(1)),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_CONNECTIONS),
            sha: Mutex::new(None),
            health: Mutex::new(Health::default()),
        }
    }

    /// Whether `s` is this store unchanged (its connections carry over a reload).
    pub(crate) fn same_as(&self, s: &Store) -> bool {
        let d = &self.definition;
        d.name == s.name && d.url == s.url && d.timeout == s.timeout && d.on_error_allow == s.on_error_allow
    }

    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// `on_error allow`: a request passes when Redis does not answer.
    pub(crate) fn on_error_allow(&self) -> bool {
        self.definition.on_error_allow
    }

    /// Opens one connection ahead of the first request (within
    /// [`WARM_TIMEOUT`]) and says in the log whether Redis answered.
    pub async fn warm(&self) {
        let Ok(target) = &self.target else { return };
        match tokio::time::timeout(WARM_TIMEOUT, self.open(target)).await {
            Ok(Ok(conn)) => {
                tracing::info!(store = %self.name(), "redis store connected");
                self.put_back(conn);
            }
            Ok(Err(e)) => tracing::warn!(store = %self.name(), error = %e, "redis store not reachable yet"),
            Err(_) => tracing::warn!(store = %self.name(), "redis store not reachable yet: no answer within 2s"),
        }
    }

    /// Takes one cell of the budget at `key`: `Ok(None)` when taken,
    /// `Ok(Some(wait))` when the request must wait, `Err` when Redis gave
    /// no answer within the timeout (the caller applies `on_error`).
    pub async fn take(&self, key: &str, interval_us: u64, burst: u32) -> Result<Option<Duration>, Error> {
        if self.target.is_err() {
            return Err(Error::Unusable);
        }
        if self.backing_off() {
            return Err(Error::Down);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        // Waiting for a free connection is this gateway being busy, not
        // Redis failing: it runs out the clock without backing off.
        let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.permits.acquire()).await else {
            return Err(Error::Busy);
        };
        let result = match tokio::time::timeout_at(deadline, self.call(key, interval_us, burst)).await {
            Ok(r) => r,
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

    async fn call(&self, key: &str, interval_us: u64, burst: u32) -> Result<Option<Duration>, Error> {
        let Ok(target) = &self.target else {
            return Err(Error::Unusable);
        };
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let interval = interval_us.max(1).to_string();
        let burst = burst.max(1).to_string();
        let args = [key.as_bytes(), interval.as_bytes(), burst.as_bytes()];
        let (mut conn, reply) = match pooled {
            Some(mut conn) => match self.run(&mut conn, &args).await {
                Ok(reply) => (conn, reply),
                // A pooled connection may be stale (Redis restarted, or closed
                // it when idle): drop the others too and try once on a new one.
                Err(Error::Io(_)) | Err(Error::Closed) => {
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.clear();
                    }
                    let mut conn = self.open(target).await?;
                    let reply = self.run(&mut conn, &args).await?;
                    (conn, reply)
                }
                Err(e) => return Err(e),
            },
            None => {
                let mut conn = self.open(target).await?;
                let reply = self.run(&mut conn, &args).await?;
                (conn, reply)
            }
        };
        let answer = self.answer(reply);
        if answer.is_ok() {
            conn.buf.clear();
            self.put_back(conn);
        }
        answer
    }

    /// A new connection, with the script loaded if its SHA is not known yet.
    async fn open(&self, target: &Target) -> Result<Connection, Error> {
        let mut conn = Connection::open(target).await?;
        let known = self.sha.lock().map(|s| s.is_some()).unwrap_or(false);
        if !known {
            match conn.command(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]).await? {
                Reply::Bulk(Some(sha)) => {
                    if let (Ok(sha), Ok(mut slot)) = (String::from_utf8(sha), self.sha.lock()) {
                        *slot = Some(sha);
                    }
                }
                Reply::Error(e) => return Err(Error::Server(e)),
                _ => return Err(Error::Protocol("SCRIPT LOAD did not answer a SHA")),
            }
        }
        Ok(conn)
    }

    /// `EVALSHA`, or `EVAL` when the script is unknown to Redis.
    async fn run(&self, conn: &mut Connection, args: &[&[u8]; 3]) -> Result<Reply, Error> {
        let sha = self.sha.lock().ok().and_then(|s| s.clone());
        if let Some(sha) = sha {
            let reply = conn
                .command(&[b"EVALSHA", sha.as_bytes(), b"1", args[0], args[1], args[2]])
                .await?;
            match &reply {
                Reply::Error(e) if e.starts_with("NOSCRIPT") => {}
                _ => return Ok(reply),
            }
        }
        conn.command(&[b"EVAL", SCRIPT.as_bytes(), b"1", args[0], args[1], args[2]])
            .await
    }

    fn answer(&self, reply: Reply) -> Result<Option<Duration>, Error> {
        match reply {
            Reply::Array(Some(items)) => match items.as_slice() {
                [Reply::Int(1), _] => Ok(None),
                [Reply::Int(0), Reply::Int(wait)] => Ok(Some(Duration::from_micros(u64::try_from(*wait).unwrap_or(0)))),
                _ => Err(Error::Protocol("unexpected script answer")),
            },
            Reply::Error(e) => Err(Error::Server(e)),
            _ => Err(Error::Protocol("unexpected script answer")),
        }
    }

    fn put_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_CONNECTIONS {
                idle.push(conn);
            }
        }
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
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
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
