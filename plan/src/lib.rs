//! The routing plan: the immutable data the runtime executes, compiled by
//! `gw-compiler` from a checked configuration. Nothing in it is interpreted
//! from `.gw` text at request time: names are resolved to indices into the
//! shared tables (`upstreams`, `auths`, `rate_limits`, `stores`), templates are
//! split into literal and reference pieces, header names are lower-cased once,
//! defaults are filled in, and the routes are compiled into a
//! [`router::Router`] (host table → segment tree → method table).
//!
//! Secrets stay references (`env("NAME")`, `file("path")`), never values, so a
//! plan can be printed (`gwc plan`) and written as JSON (`gwc build`); the
//! runtime resolves them when it loads the plan.
//!
//! This crate is what the compiler and the runtime share, and no more: the
//! runtime depends on it, not on the parser (no pest in its tree). Modules:
//! [`words`] (the language's methods, references and algorithms, which the
//! syntax tree uses too), [`router`] (the one route matcher, used by the
//! runtime and by `gwc test`), [`explain`] (why a request takes the route
//! it takes, for `gwc route`), [`print`] (the readable tree printed by
//! `gwc plan`: [`Plan::render`]), [`redact`] (a URL's password and control
//! characters hidden from output), [`redis_url`] (a store's URL, parsed the
//! same way by the checker and the runtime) and [`files`] (the bounds on
//! reading a file the plan names). Lowering from the syntax tree, embedded
//! tests and `gwc diff` stay in the compiler (`gw_compiler::plan`).

pub mod condition;
pub mod explain;
pub mod files;
pub mod print;
pub mod redact;
pub mod redis_url;
pub mod router;
mod serde_as;
pub mod split;
pub mod words;

use crate::words::{Algorithm, Method, Reference};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

pub use condition::{CondOp, Condition};
pub use router::{lookup, Lookup, MethodSet, Params};
pub use split::{Split, SplitSide};

/// The version of the JSON written by `gwc build`. Bump it whenever the shape
/// of the plan changes; a plan of another version is refused when loaded.
pub const FORMAT_VERSION: u32 = 1;

/// The compiled configuration. Deserialising one (through [`Plan::from_json`]
/// or serde directly) checks its indices and rebuilds its router.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "PlanFile")]
pub struct Plan {
    pub format_version: u32,
    /// Every HTTP listener serves the same routes; a TCP listener forwards to
    /// its upstream.
    pub listeners: Vec<Listener>,
    pub admin: Vec<String>,
    pub limits: ServerLimits,
    pub upstreams: Vec<Upstream>,
    pub auths: Vec<Auth>,
    pub rate_limits: Vec<RateLimit>,
    pub stores: Vec<Store>,
    /// In file order; `routes[i]` is the configuration's `i`-th route.
    pub routes: Vec<Route>,
    /// `trust_proxies`: the peers whose `X-Forwarded-For` is believed
    /// (addresses as `/32` or `/128` ranges). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_proxies: Vec<ipnet::IpNet>,
    /// The `compress` settings routes point at (`Route::compress`): the
    /// top-level one first, then each route's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compressions: Vec<Compress>,
    /// Derived from `routes`; rebuilt when a plan is loaded from JSON.
    #[serde(skip)]
    pub router: router::Router,
}

/// A plan as written in JSON, before its indices are checked and its router
/// is built.
#[derive(Deserialize)]
struct PlanFile {
    format_version: u32,
    listeners: Vec<Listener>,
    admin: Vec<String>,
    limits: ServerLimits,
    upstreams: Vec<Upstream>,
    auths: Vec<Auth>,
    rate_limits: Vec<RateLimit>,
    stores: Vec<Store>,
    routes: Vec<Route>,
    #[serde(default)]
    trust_proxies: Vec<ipnet::IpNet>,
    #[serde(default)]
    compressions: Vec<Compress>,
}

impl TryFrom<PlanFile> for Plan {
    type Error = LoadError;

    fn try_from(f: PlanFile) -> Result<Plan, LoadError> {
        if f.format_version != FORMAT_VERSION {
            return Err(version_error(&f.format_version.to_string()));
        }
        let mut routes = f.routes;
        for r in &mut routes {
            for c in &mut r.when {
                c.prepare()
                    .map_err(|v| LoadError(format!("invalid plan: `{v}` is not an address or a CIDR block")))?;
            }
        }
        let mut plan = Plan {
            format_version: f.format_version,
            listeners: f.listeners,
            admin: f.admin,
            limits: f.limits,
            upstreams: f.upstreams,
            auths: f.auths,
            rate_limits: f.rate_limits,
            stores: f.stores,
            routes,
            trust_proxies: f.trust_proxies,
            compressions: f.compressions,
            router: router::Router::default(),
        };
        plan.validate()?;
        plan.router = router::Router::build(&plan.routes).map_err(|errors| {
            LoadError(match errors.first() {
                Some(e) => format!("invalid plan: {e}"),
                None => "invalid plan: the routes cannot be compiled".into(),
            })
        })?;
        Ok(plan)
    }
}

fn version_error(version: &str) -> LoadError {
    LoadError(format!(
        "plan format version {version} is not supported: this gwc reads version {FORMAT_VERSION}; \
         rebuild the plan with `gwc build` from the same release"
    ))
}

/// Why a plan read from JSON was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// Hides the secrets in a plan's JSON (see [`Plan::redacted_json`]);
/// returns how many it hid.
pub fn redact_json(v: &mut serde_json::Value) -> usize {
    use serde_json::Value;
    const HIDDEN: &str = "<redacted>";
    match v {
        Value::Object(map) => map
            .iter_mut()
            .map(|(k, val)| match (k.as_str(), val) {
                ("inline", Value::String(s)) => {
                    *s = HIDDEN.into();
                    1
                }
                ("inline", Value::Array(items)) => items
                    .iter_mut()
                    .map(|item| match item {
                        Value::String(s) => {
                            *s = HIDDEN.into();
                            1
                        }
                        other => redact_json(other),
                    })
                    .sum(),
                (_, other) => redact_json(other),
            })
            .sum(),
        Value::Array(items) => items.iter_mut().map(redact_json).sum(),
        Value::String(s) => match crate::redact::redact_url(s) {
            std::borrow::Cow::Owned(clean) => {
                *s = clean;
                1
            }
            std::borrow::Cow::Borrowed(_) => 0,
        },
        _ => 0,
    }
}

impl Plan {
    /// The plan as pretty-printed JSON (secrets as references, except what
    /// was written inline: see [`Plan::carried_secrets`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The plan's JSON with every secret it carries hidden: inline secrets
    /// and keys become `"<redacted>"`, URL passwords `user:<redacted>@`.
    /// References (`env("NAME")`, `file("path")`) stay: they are not secret.
    /// What the admin endpoint `/plan` serves.
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        redact_json(&mut value);
        value
    }

    /// How many secrets the plan carries as values (inline secrets and
    /// keys, URL passwords): a built plan needs them to serve, so the file
    /// `gwc build` writes holds them.
    pub fn carried_secrets(&self) -> usize {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        redact_json(&mut value)
    }

    /// Reads a plan written by `gwc build`. Refuses a plan of another format
    /// version, one whose indices point nowhere, and one whose routes collide.
    pub fn from_json(text: &str) -> Result<Plan, LoadError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| LoadError(format!("not a gw plan: invalid JSON: {e}")))?;
        let version = value
            .get("format_version")
            .ok_or_else(|| LoadError("not a gw plan: it has no `format_version`".into()))?;
        if version.as_u64() != Some(u64::from(FORMAT_VERSION)) {
            return Err(version_error(&version.to_string()));
        }
        serde_json::from_value(value).map_err(|e| LoadError(format!("not a gw plan of version {FORMAT_VERSION}: {e}")))
    }

    /// Every index points into its table.
    fn validate(&self) -> Result<(), LoadError> {
        let check = |what: &str, index: usize, len: usize| {
            if index < len {
                Ok(())
            } else {
                Err(LoadError(format!("invalid plan: {what} index {index} out of range")))
            }
        };
        for l in &self.listeners {
            if let ListenerKind::Tcp { upstream } = l.kind {
                check("upstream", upstream, self.upstreams.len())?;
            }
        }
        for l in &self.rate_limits {
            if let Some(s) = l.store {
                check("store", s, self.stores.len())?;
            }
        }
        for r in &self.routes {
            if let Some(a) = r.auth {
                check("auth", a, self.auths.len())?;
            }
            for &l in &r.limits {
                check("limit", l, self.rate_limits.len())?;
            }
            match &r.target {
                Target::Upstream { upstream } => check("upstream", *upstream, self.upstreams.len())?,
                Target::Split(sp) => {
                    for side in &sp.sides {
                        check("upstream", side.upstream, self.upstreams.len())?;
                    }
                }
                Target::Aggregate(a) => {
                    for p in &a.parts {
                        check("upstream", p.upstream, self.upstreams.len())?;
                    }
                }
                Target::Respond { .. } | Target::Redirect { .. } => {}
            }
            if let Some(m) = &r.mirror {
                check("upstream", m.upstream, self.upstreams.len())?;
            }
            if let Some(c) = r.compress {
                check("compress", c, self.compressions.len())?;
            }
        }
        Ok(())
    }

    /// Whether `peer` is one of the `trust_proxies`: a proxy whose
    /// `X-Forwarded-For` (and, for other parts of the gateway, whose
    /// `X-Request-Id`) is believed. An IPv4 address seen as IPv6
    /// (`::ffff:10.0.0.1`, on a dual-stack socket) is taken as IPv4.
    pub fn trusts_peer(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trust_proxies.iter().any(|net| net.contains(&peer))
    }

    /// The readable tree printed by `gwc plan`.
    pub fn render(&self) -> String {
        print::render(self)
    }

    /// A route's policies in the order they run, its target (with the
    /// upstream's strategy) and its response transforms, one line each.
    pub fn pipeline(&self, route: &Route) -> Vec<String> {
        print::pipeline(self, route)
    }

    /// `split { checkout-v1 90%  checkout-v2 10%  sticky cookie.session }`.
    pub fn split_name(&self, sp: &Split) -> String {
        let mut s = String::from("split {");
        for side in &sp.sides {
            let name = self.upstreams.get(side.upstream).map_or("?", |u| u.name.as_str());
            s.push_str(&format!(" {name} {}%", side.weight));
        }
        if let Some(k) = &sp.sticky {
            s.push_str(&format!(" sticky {k}"));
        }
        s.push_str(" }");
        s
    }

    /// A route's target in words: `orders`, `aggregate`, `respond 404`,
    /// `redirect 301`, `split { a 90% b 10% }`.
    pub fn target_name(&self, route: &Route) -> String {
        match &route.target {
            Target::Upstream { upstream } => self
                .upstreams
                .get(*upstream)
                .map_or_else(|| "?".to_string(), |u| u.name.clone()),
            Target::Split(sp) => self.split_name(sp),
            Target::Aggregate(_) => "aggregate".into(),
            Target::Respond { status, .. } => format!("respond {status}"),
            Target::Redirect { status, .. } => format!("redirect {status}"),
        }
    }
}

// ------------------------------------------------------------------ values

/// A duration in milliseconds (JSON: a number). Displays as the language
/// writes it: `250ms`, `3s`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ms(pub u64);

impl Ms {
    pub fn from_duration(d: Duration) -> Ms {
        Ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn secs(s: u64) -> Ms {
        Ms(s.saturating_mul(1000))
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut s = ms / 1000;
        let h = s / 3600;
        s %= 3600;
        let m = s / 60;
        s %= 60;
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// Where a secret (or a certificate) comes from. The plan holds the
/// reference, never the value of an `env()` or `file()`; `Debug` and `Display`
/// never show an inline value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Secret {
    /// `env("NAME")`.
    Env(String),
    /// `file("path")`, relative paths already resolved against the `.gw` file.
    File(String),
    /// Written in the configuration (GW0505 warns). Kept so that a built plan
    /// still works; never displayed.
    Inline(String),
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(n) => write!(f, "env({n:?})"),
            Secret::File(p) => write!(f, "file({p:?})"),
            Secret::Inline(_) => f.write_str("inline(<redacted>)"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string with `{reference}` holes, split once at compile time.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Piece {
    Literal(String),
    Ref(#[serde(with = "serde_as::reference")] Reference),
}

impl Template {
    pub fn literal(s: impl Into<String>) -> Template {
        Template {
            pieces: vec![Piece::Literal(s.into())],
        }
    }

    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Literal(_) => None,
        })
    }
}

impl fmt::Display for Template {
    /// As written, quoted: `"/users/{claim.sub}"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for p in &self.pieces {
            match p {
                Piece::Literal(l) => {
                    for c in l.chars() {
                        match c {
                            '"' => f.write_str("\\\"")?,
                            '\\' => f.write_str("\\\\")?,
                            '\n' => f.write_str("\\n")?,
                            '\t' => f.write_str("\\t")?,
                            // Never a raw control character: `\u{1b}` as gw writes it.
                            c if crate::redact::is_control(c) => {
                                write!(f, "{}", crate::redact::escape_controls(&c.to_string()))?
                            }
                            c => write!(f, "{c}")?,
                        }
                    }
                }
                Piece::Ref(r) => write!(f, "{{{r}}}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Where a route was written, for `gwc route` and `gwc plan`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

// ------------------------------------------------------------------ listeners and server limits

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Listener {
    /// As written: `:8080`, `127.0.0.1:8443`, `[::1]:80`.
    pub address: String,
    pub kind: ListenerKind,
    /// `proxy_protocol`: every connection starts with a PROXY v1 or v2
    /// header, whose source address is the connection's peer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_protocol: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    Http,
    Tls {
        certificates: Vec<Certificate>,
        /// `client_ca`: clients are asked for a certificate signed by it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_auth: Option<ClientAuth>,
    },
    Tcp {
        upstream: usize,
    },
}

/// A TLS listener's client certificates (mTLS): the CA that signs them and
/// whether a client may connect without one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAuth {
    pub ca: Secret,
    /// `client_auth required` (the default): no certificate, no handshake.
    pub required: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Certificate {
    pub cert: Secret,
    pub key: Secret,
    /// `None`: the default certificate.
    pub sni: Option<String>,
}

/// Server-wide bounds with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLimits {
    pub header_timeout: Ms,
    pub idle_timeout: Ms,
    pub max_header_size: u64,
    pub max_body_size: u64,
    pub max_connections: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Ms::secs(10),
            idle_timeout: Ms::secs(60),
            max_header_size: 16 * 1024,
            max_body_size: 10 * 1024 * 1024,
            max_connections: 10_000,
        }
    }
}

// ------------------------------------------------------------------ upstreams

/// An upstream pool with every default filled in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Upstream {
    pub name: String,
    pub balance: Balance,
    pub servers: Vec<Server>,
    pub health: Option<Health>,
    pub eject: Option<Eject>,
    pub connect_timeout: Ms,
    pub timeout: Ms,
    pub retry: Option<Retry>,
    pub pool: Pool,
    pub http2: bool,
    /// `tls`: TLS to the servers (absent: plain TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// The `Host` the servers receive.
    #[serde(default, skip_serializing_if = "HostHeader::is_client")]
    pub host_header: HostHeader,
}

/// An upstream's TLS settings: what the servers are verified against and
/// what gw presents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamTls {
    /// Trust only these CA certificates (PEM); `None`: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<Secret>,
    /// The name sent (SNI) and verified; `None`: each server's own host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The client certificate and key (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCertificate>,
}

/// `cert FILE key FILE` in an upstream's `tls` block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientCertificate {
    pub cert: Secret,
    pub key: Secret,
}

/// The `Host` an upstream's servers receive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// The client's own (decision 44).
    #[default]
    Client,
    /// The server's `host[:port]` as written in its `server` line.
    Server,
    /// A fixed name.
    Fixed(String),
}

impl HostHeader {
    pub fn is_client(&self) -> bool {
        *self == HostHeader::Client
    }
}

/// Defaults the plan fills in where the configuration is silent.
pub mod defaults {
    use super::Ms;
    /// `compress`: the level, the smallest body compressed, the media types.
    pub const COMPRESS_LEVEL: u32 = 5;
    /// `cache`: the freshness when neither the upstream nor `ttl` gives
    /// one, and the bytes kept.
    pub const CACHE_TTL: Ms = Ms(30_000);
    pub const CACHE_MAX_SIZE: u64 = 64 * 1024 * 1024;
    pub const COMPRESS_MIN_SIZE: u64 = 1024;
    pub const COMPRESS_TYPES: &[&str] = &[
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "image/svg+xml",
    ];
    pub const CONNECT_TIMEOUT: Ms = Ms(5_000);
    pub const UPSTREAM_TIMEOUT: Ms = Ms(30_000);
    pub const HEALTH_INTERVAL: Ms = Ms(2_000);
    pub const HEALTH_TIMEOUT: Ms = Ms(1_000);
    pub const HEALTH_EXPECT: (u16, u16) = (200, 299);
    pub const HEALTH_UNHEALTHY: u32 = 3;
    pub const HEALTH_HEALTHY: u32 = 2;
    pub const EJECT_ERRORS: u32 = 5;
    pub const EJECT_FOR: Ms = Ms(30_000);
    /// An upstream without an `eject` block: one failure to reach a server
    /// (a refused or timed-out connect) takes it out for 10 s, as nginx's
    /// `max_fails=1 fail_timeout=10s` does; never the last usable server.
    pub const IMPLICIT_EJECT_ERRORS: u32 = 1;
    pub const IMPLICIT_EJECT_FOR: Ms = Ms(10_000);
    pub const POOL_MAX_IDLE: u32 = 64;
    pub const POOL_IDLE_TIMEOUT: Ms = Ms(90_000);
    pub const RETRY_BUDGET_PERCENT: u32 = 20;
    pub const JWT_LEEWAY: Ms = Ms(0);
    pub const JWKS_REFRESH: Ms = Ms(600_000);
    pub const STORE_TIMEOUT: Ms = Ms(50);
    /// Keys a limit keeps in memory at most (`max_keys`); past it, new keys
    /// share one overflow budget.
    pub const LIMIT_MAX_KEYS: u32 = 100_000;
    pub const API_KEY_HEADER: &str = "x-api-key";

    /// For serde: plans written before `max_keys` existed.
    pub(crate) fn limit_max_keys() -> u32 {
        LIMIT_MAX_KEYS
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Random,
    P2c,
    IpHash,
    /// Consistent hashing on a request value; `header.*`/`query.*`/`cookie.*`
    /// fall back to round robin when the value is absent.
    Hash(#[serde(with = "serde_as::reference")] Reference),
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Balance::RoundRobin => f.write_str("round_robin"),
            Balance::LeastConn => f.write_str("least_conn"),
            Balance::Random => f.write_str("random"),
            Balance::P2c => f.write_str("p2c"),
            Balance::IpHash => f.write_str("ip_hash"),
            Balance::Hash(r) => write!(f, "hash({r})"),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Server {
    /// As written: `127.0.0.1:9001`, `[::1]:80`, `orders.internal:80`.
    pub address: String,
    pub weight: u32,
    pub backup: bool,
    /// Re-resolve the name this often (every address is a server).
    pub resolve: Option<Ms>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub path: String,
    pub interval: Ms,
    pub timeout: Ms,
    /// Inclusive range of healthy statuses.
    pub expect: (u16, u16),
    pub unhealthy: u32,
    pub healthy: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Eject {
    pub errors: u32,
    pub duration: Ms,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pool {
    pub max_idle: u32,
    pub idle_timeout: Ms,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub attempts: u32,
    pub on: Vec<RetryOn>,
    pub budget_percent: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    ConnectError,
    /// The connection closed or reset after the request was sent and before
    /// a response head came; retried for idempotent methods only.
    Reset,
    Timeout,
    Status(u16),
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry {}", self.attempts)?;
        for (i, on) in self.on.iter().enumerate() {
            f.write_str(if i == 0 { " on " } else { ", " })?;
            match on {
                RetryOn::ConnectError => f.write_str("connect_error")?,
                RetryOn::Reset => f.write_str("reset")?,
                RetryOn::Timeout => f.write_str("timeout")?,
                RetryOn::Status(s) => write!(f, "{s}")?,
            }
        }
        write!(f, " budget {}%", self.budget_percent)
    }
}

// ------------------------------------------------------------------ auth, limits, stores

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Auth {
    pub name: String,
    pub kind: AuthKind,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Jwt(Jwt),
    ApiKey(ApiKey),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Jwt {
    pub issuer: String,
    pub audience: String,
    #[serde(with = "serde_as::algorithms")]
    pub algorithms: Vec<Algorithm>,
    pub key: JwtKey,
    pub leeway: Ms,
    pub from: TokenFrom,
    /// The `typ` headers accepted (a plan built before `types` existed
    /// gets the default list).
    #[serde(default)]
    pub types: crate::words::TokenTypes,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtKey {
    /// HS*: a shared secret.
    Secret(Secret),
    /// A PEM public key.
    PublicKey(Secret),
    JwksFile(Secret),
    JwksUrl {
        url: String,
        refresh: Ms,
    },
}

impl fmt::Display for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKey::Secret(s) => write!(f, "secret {s}"),
            JwtKey::PublicKey(s) => write!(f, "public_key {s}"),
            JwtKey::JwksFile(s) => write!(f, "jwks {s}"),
            JwtKey::JwksUrl { url, refresh } => {
                write!(f, "jwks url {:?} refresh {refresh}", crate::redact::redact_url(url))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFrom {
    Header { name: String, bearer: bool },
    Query(String),
    Cookie(String),
}

impl fmt::Display for TokenFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFrom::Header { name, bearer: true } => write!(f, "header {name} bearer"),
            TokenFrom::Header { name, bearer: false } => write!(f, "header {name}"),
            TokenFrom::Query(q) => write!(f, "query {q}"),
            TokenFrom::Cookie(c) => write!(f, "cookie {c}"),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiKey {
    pub from: TokenFrom,
    pub keys: ApiKeys,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeys {
    /// One key per line, optionally `key name`.
    File(Secret),
    Inline(Vec<Secret>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateLimit {
    pub name: String,
    /// `count` requests per `per`.
    pub count: u64,
    pub per: Ms,
    /// Defaults to `count` (one period's worth).
    pub burst: u32,
    pub key: LimitKey,
    pub store: Option<usize>,
    /// The most keys kept in this gateway's memory; past it, new keys share
    /// one overflow budget (a limit with a `store` keeps its keys in Redis).
    #[serde(default = "defaults::limit_max_keys")]
    pub max_keys: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    None,
    ClientIp,
    ApiKey,
    Ref(#[serde(with = "serde_as::reference")] Reference),
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::None => f.write_str("none"),
            LimitKey::ClientIp => f.write_str("client_ip"),
            LimitKey::ApiKey => f.write_str("api_key"),
            LimitKey::Ref(r) => write!(f, "{r}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Store {
    pub name: String,
    /// The URL written in the file (its password is redacted wherever it
    /// is shown); empty when it comes from `url_from`.
    pub url: String,
    /// `env("X")` / `file("p")`: where the URL is read at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<Secret>,
    /// `tls { ca .. cert .. key .. }` (for a `rediss://` URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    pub timeout: Ms,
    pub on_error_allow: bool,
}

impl Store {
    /// The URL as shown (`gwc plan`, diffs): `"redis://u:<redacted>@h"`
    /// for a written one, `env("X")` / `file("p")` for a reference.
    pub fn url_shown(&self) -> String {
        match &self.url_from {
            Some(from) => from.to_string(),
            None => format!("{:?}", crate::redact::redact_url(&self.url)),
        }
    }
}

// ------------------------------------------------------------------ routes

/// One route: its match (host, methods, path), its pipeline in the order it
/// runs (auth → require → limits → request transforms → target → response
/// transforms), and its target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Route {
    /// The path pattern as written: `/orders/{id}`.
    pub path: String,
    /// Lower-cased; `None` matches every host.
    pub host: Option<String>,
    /// `None`: every method.
    pub methods: Option<MethodSet>,
    /// Parameter names in path order; a match's captured values line up.
    pub params: Vec<String>,
    /// `when ...`: all must hold for the route to take a request; empty
    /// for a route without conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
    pub auth: Option<usize>,
    pub requires: Vec<Require>,
    pub limits: Vec<usize>,
    pub request_headers: Vec<HeaderOp>,
    pub response_headers: Vec<HeaderOp>,
    pub strip_prefix: Option<String>,
    pub rewrite: Option<Template>,
    pub timeout: Option<Ms>,
    /// A route-level retry opts every method in.
    pub retry: Option<Retry>,
    pub cors: Option<Cors>,
    pub target: Target,
    /// `mirror UPSTREAM PERCENT` (absent from the JSON when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// The index in `Plan::compressions` of the `compress` that applies
    /// (the route's own, else the top-level one; `None` for `compress off`
    /// or when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<usize>,
    /// `cache { ... }` (absent from the JSON when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    pub origin: Origin,
}

/// `compress { ... }`: the codings offered, in the order of preference,
/// the level, the smallest body compressed, and the media types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compress {
    pub codings: Vec<Coding>,
    /// 1..=9, one scale for every coding.
    pub level: u32,
    /// Bodies of a known length under this many bytes are sent as they are.
    pub min_size: u64,
    /// Lower-case `type/subtype` or `type/*`.
    pub types: Vec<String>,
}

/// `cache { ttl D max_size SIZE }`: the route's answers kept and served
/// again as a shared cache does (RFC 9111).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cache {
    /// The freshness of an answer whose upstream gives none.
    pub ttl: Ms,
    /// The bytes kept at most (bodies; an entry weighs at least 1 KiB).
    pub max_size: u64,
}

impl fmt::Display for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache {{ ttl {} max_size {}B }}", self.ttl, self.max_size)
    }
}

/// A content coding `compress` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coding {
    Gzip,
    Br,
    Zstd,
}

impl Coding {
    /// The coding's token in `Accept-Encoding` and `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("compress {")?;
        for c in &self.codings {
            write!(f, " {}", c.as_str())?;
        }
        write!(f, " level {} min_size {} types", self.level, print::size(self.min_size))?;
        for (i, t) in self.types.iter().enumerate() {
            write!(f, "{} {t:?}", if i > 0 { "," } else { "" })?;
        }
        f.write_str(" }")
    }
}

/// `mirror UPSTREAM PERCENT`: a copy of `percent` of the route's requests
/// (those that passed its policies) goes to `upstream`; its answer is
/// discarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    pub upstream: usize,
    /// 1..=100.
    pub percent: u32,
}

impl Route {
    /// `GET,HEAD /orders/{id} host "admin.example.com"` — the route's head
    /// as it would be written, with its condition (`GET /search when
    /// header.x-beta == "1"`): what names a route in labels, logs and
    /// `gwc diff`, so two routes told apart only by their conditions have
    /// different names.
    pub fn head(&self) -> String {
        let mut s = String::new();
        if let Some(m) = self.methods {
            s.push_str(&m.to_string_compact());
            s.push(' ');
        }
        s.push_str(&self.path);
        if let Some(h) = &self.host {
            s.push_str(&format!(" host {h:?}"));
        }
        if !self.when.is_empty() {
            s.push_str(" when ");
            s.push_str(&condition::display_all(&self.when));
        }
        s
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Require {
    #[serde(with = "serde_as::reference")]
    pub subject: Reference,
    pub op: RequireOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequireOp {
    /// An array claim containing the value, or a string whose space-separated
    /// words include it.
    Has(String),
    In(Vec<String>),
    /// `client_ip in [...]`: the address lies in one of the ranges (an
    /// address is a `/32` or `/128` range).
    InRanges(Vec<ipnet::IpNet>),
    Eq(String),
    Ne(String),
}

/// A range as the language writes it: an address alone when it is one.
pub fn range_text(net: &ipnet::IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

impl fmt::Display for Require {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            RequireOp::Has(v) => write!(f, "require {} has {v:?}", self.subject),
            RequireOp::In(vs) => {
                write!(f, "require {} in [", self.subject)?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v:?}")?;
                }
                f.write_str("]")
            }
            RequireOp::InRanges(nets) => {
                write!(f, "require {} in [", self.subject)?;
                for (i, n) in nets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{:?}", range_text(n))?;
                }
                f.write_str("]")
            }
            RequireOp::Eq(v) => write!(f, "require {} == {v:?}", self.subject),
            RequireOp::Ne(v) => write!(f, "require {} != {v:?}", self.subject),
        }
    }
}

/// `set ... header NAME "template"` or `remove ... header NAME`; the name is
/// lower-case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderOp {
    Set { name: String, value: Template },
    Remove { name: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cors {
    pub origins: Vec<String>,
    pub methods: MethodSet,
    pub headers: Vec<String>,
    pub expose: Vec<String>,
    pub credentials: bool,
    pub max_age: Option<Ms>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Upstream {
        upstream: usize,
    },
    /// `split { ... }`: one of several upstreams by weight.
    Split(Split),
    Aggregate(Aggregate),
    Respond {
        status: u16,
        body: Option<String>,
    },
    Redirect {
        status: u16,
        location: Template,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Aggregate {
    pub parts: Vec<AggregatePart>,
    pub timeout: Option<Ms>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AggregatePart {
    pub name: String,
    pub upstream: usize,
    #[serde(with = "serde_as::method")]
    pub method: Method,
    pub path: Template,
    /// `null` on failure instead of failing the whole response.
    pub optional: bool,
}
