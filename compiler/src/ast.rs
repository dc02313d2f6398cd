//! The typed syntax tree of a `.gw` configuration (all files merged), as
//! lowered from the parse tree. Values already have their kinds checked
//! (GW0003/GW0106 are reported during lowering); names are not yet resolved.
//! Everything carries the span it was written at.

use crate::source::{Span, Spanned};
use std::net::IpAddr;
use std::time::Duration;

pub type Name = Spanned<String>;

/// A whole configuration: the root file and everything it imports.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub listens: Vec<Listen>,
    pub admins: Vec<Spanned<Address>>,
    pub limits: Vec<ServerLimits>,
    pub upstreams: Vec<Upstream>,
    pub auths: Vec<Auth>,
    pub rate_limits: Vec<Limit>,
    pub stores: Vec<Store>,
    pub routes: Vec<Route>,
    pub tests: Vec<Test>,
    /// `trust_proxies [...]` (every such declaration's ranges together).
    pub trust_proxies: Vec<Spanned<ipnet::IpNet>>,
    /// Top-level `compress` blocks (more than one is GW0105).
    pub compress: Vec<Compress>,
    /// Names that declarations with a syntax error would have defined, by
    /// keyword (`("upstream", "orders")`): a reference to one is not also
    /// "unknown" (GW0101), since the mistake is already reported.
    pub unparsed: Vec<(&'static str, String)>,
}

// ------------------------------------------------------------------ values

/// `1.2.3.4:80`, `[::1]:8080`, `:8080`, `host.name:80`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    pub host: AddressHost,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddressHost {
    /// `:8080` — all interfaces.
    Any,
    Ip(IpAddr),
    /// A DNS name, resolved at start (and re-resolved with `resolve`).
    Name(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            AddressHost::Any => write!(f, ":{}", self.port),
            AddressHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            AddressHost::Ip(ip) => write!(f, "{ip}:{}", self.port),
            AddressHost::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

/// `100/min`: `count` requests per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
}

pub use gw_plan::words::{Method, Reference};

/// A string with `{reference}` holes: `"/users/{claim.sub}"`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TemplatePart {
    Literal(String),
    /// The span covers the reference inside the string (without braces).
    Ref(Spanned<Reference>),
}

impl Template {
    pub fn references(&self) -> impl Iterator<Item = &Spanned<Reference>> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Ref(r) => Some(r),
            TemplatePart::Literal(_) => None,
        })
    }

    /// The template with no holes, if it has none.
    pub fn as_literal(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(l) => s.push_str(l),
                TemplatePart::Ref(_) => return None,
            }
        }
        Some(s)
    }
}

/// A path pattern: `/users/{id}/orders`, `/static/{*file}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathPattern {
    /// As written.
    pub raw: String,
    /// The segments after the leading `/`, split on `/` (`/` is one empty
    /// literal segment; a trailing slash adds an empty literal segment).
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    /// `{name}` — exactly one segment.
    Param(String),
    /// `{*name}` — zero or more remaining segments (last only).
    CatchAll(String),
}

impl PathPattern {
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) | Segment::CatchAll(p) => Some(p.as_str()),
            Segment::Literal(_) => None,
        })
    }
}

/// Where a secret or other text comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Written in the file (a warning for secrets, GW0505).
    Inline(String),
    /// `env("NAME")`, read at compile time.
    Env(String),
    /// `file("path")`, relative to the `.gw` file that names it (already
    /// resolved to a path the host understands).
    File(String),
}

// ------------------------------------------------------------------ declarations

/// `listen ADDR [tls {...} | tcp -> UPSTREAM]`
#[derive(Clone, Debug)]
pub struct Listen {
    pub address: Spanned<Address>,
    pub kind: ListenKind,
    /// `proxy_protocol`: connections start with a PROXY header.
    pub proxy_protocol: bool,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum ListenKind {
    Http,
    /// `tls` with its certificates; `tls_span` covers the keyword.
    Tls {
        certs: Vec<Certificate>,
        tls_span: Span,
        /// `client_ca FILE`: ask clients for certificates signed by it.
        client_ca: Option<Spanned<Source>>,
        /// `client_auth required|optional` (`true`: required).
        client_auth: Option<Spanned<bool>>,
    },
    /// `tcp -> upstream`.
    Tcp {
        upstream: Name,
    },
}

#[derive(Clone, Debug)]
pub struct Certificate {
    pub cert: Spanned<Source>,
    pub key: Spanned<Source>,
    pub sni: Option<Spanned<String>>,
    pub span: Span,
}

/// `limits { ... }` — server-wide safety bounds; `None` means the default.
#[derive(Clone, Debug, Default)]
pub struct ServerLimits {
    pub header_timeout: Option<Spanned<Duration>>,
    pub idle_timeout: Option<Spanned<Duration>>,
    pub max_header_size: Option<Spanned<u64>>,
    pub max_body_size: Option<Spanned<u64>>,
    pub max_connections: Option<Spanned<u64>>,
    pub span: Span,
}

/// `upstream NAME { ... }`
#[derive(Clone, Debug)]
pub struct Upstream {
    pub name: Name,
    pub balance: Option<Spanned<Balance>>,
    pub servers: Vec<Server>,
    pub health: Option<Health>,
    pub eject: Option<Eject>,
    pub connect_timeout: Option<Spanned<Duration>>,
    pub timeout: Option<Spanned<Duration>>,
    pub retry: Option<Retry>,
    pub pool: Option<Pool>,
    pub http2: Option<Span>,
    /// `tls` or `tls { ... }`: TLS to the servers.
    pub tls: Option<UpstreamTls>,
    /// `host_header client | server | "NAME"`.
    pub host_header: Option<Spanned<HostHeader>>,
    pub span: Span,
}

/// An upstream's `tls [{ ... }]`.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// `ca FILE`: trust only these CA certificates (default: the system's roots).
    pub ca: Option<Spanned<Source>>,
    /// `server_name "NAME"`: sent (SNI) and verified (default: the server's host).
    pub server_name: Option<Spanned<String>>,
    /// `cert FILE key FILE`: the client certificate (mutual TLS).
    pub client_cert: Option<ClientCertificate>,
    /// The `tls` keyword (and its block).
    pub span: Span,
}

/// `cert FILE key FILE` in an upstream's `tls` block.
#[derive(Clone, Debug)]
pub struct ClientCertificate {
    pub cert: Spanned<Source>,
    pub key: Spanned<Source>,
    pub span: Span,
}

/// The `Host` an upstream's servers receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's (decision 44).
    Client,
    /// The server's own `host[:port]`, as written in `server`.
    Server,
    /// A fixed name.
    Fixed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Random,
    P2c,
    IpHash,
    /// `hash(header.x)`, `hash(claim.sub)`, `hash(query.cart)`, `hash(cookie.x)`.
    Hash(Spanned<Reference>),
}

#[derive(Clone, Debug)]
pub struct Server {
    pub address: Spanned<Address>,
    pub weight: Option<Spanned<u32>>,
    pub backup: Option<Span>,
    pub resolve: Option<Spanned<Duration>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Health {
    pub path: Option<Spanned<String>>,
    pub interval: Option<Spanned<Duration>>,
    pub timeout: Option<Spanned<Duration>>,
    /// Inclusive range of statuses that count as healthy.
    pub expect: Option<Spanned<(u16, u16)>>,
    pub unhealthy: Option<Spanned<u32>>,
    pub healthy: Option<Spanned<u32>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Eject {
    pub errors: Option<Spanned<u32>>,
    pub duration: Option<Spanned<Duration>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub max_idle: Option<Spanned<u32>>,
    pub idle_timeout: Option<Spanned<Duration>>,
    pub span: Span,
}

/// `retry N on COND, ... [budget P%]`
#[derive(Clone, Debug)]
pub struct Retry {
    pub attempts: Spanned<u32>,
    pub on: Vec<Spanned<RetryOn>>,
    /// Percent of in-flight requests that may be retries (default 20).
    pub budget: Option<Spanned<u32>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOn {
    ConnectError,
    /// The connection closed or reset after the request was sent, before a
    /// response head came (idempotent methods only).
    Reset,
    Timeout,
    Status(u16),
}

/// `auth NAME jwt|api_key { ... }`
#[derive(Clone, Debug)]
pub struct Auth {
    pub name: Name,
    pub kind: AuthKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum AuthKind {
    Jwt(Jwt),
    ApiKey(ApiKey),
}

#[derive(Clone, Debug)]
pub struct Jwt {
    pub issuer: Option<Spanned<String>>,
    pub audience: Option<Spanned<String>>,
    pub algorithms: Option<Spanned<Vec<Spanned<Algorithm>>>>,
    pub key: Option<Spanned<KeySource>>,
    pub leeway: Option<Spanned<Duration>>,
    pub from: Option<Spanned<TokenFrom>>,
    /// `types "at+jwt", none`: the `typ` headers accepted (boxed: rare).
    pub types: Option<Box<Spanned<TokenTypes>>>,
}

pub use gw_plan::words::{Algorithm, KeyKind, TokenTypes};

/// Where a jwt auth's keys come from.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySource {
    /// `secret ...` for HS*.
    Secret(Source),
    /// `public_key file(...)` (PEM).
    PublicKey(Source),
    /// `jwks file(...)`.
    JwksFile(Source),
    /// `jwks url "..." [refresh D]`.
    JwksUrl { url: String, refresh: Option<Duration> },
}

/// Where a credential is read from in the request.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenFrom {
    /// `from header NAME [bearer]` (name lower-cased).
    Header {
        name: String,
        bearer: bool,
    },
    Query(String),
    Cookie(String),
}

#[derive(Clone, Debug)]
pub struct ApiKey {
    pub from: Option<Spanned<TokenFrom>>,
    pub keys: Option<Spanned<ApiKeys>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ApiKeys {
    /// `keys file("...")`: one key per line, optionally `key name`.
    File(Source),
    /// `keys "k-1", "k-2"`.
    Inline(Vec<String>),
}

/// `limit NAME { rate R burst B key K [store S] }`
#[derive(Clone, Debug)]
pub struct Limit {
    pub name: Name,
    pub rate: Option<Spanned<Rate>>,
    pub burst: Option<Spanned<u32>>,
    pub key: Option<Spanned<LimitKey>>,
    pub store: Option<Name>,
    /// The most keys kept in memory (`max_keys N`).
    pub max_keys: Option<Spanned<u32>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LimitKey {
    /// One bucket for everyone.
    None,
    ClientIp,
    /// The name of the API key that authenticated the request.
    ApiKey,
    Ref(Reference),
}

/// `store NAME redis "url" { timeout D on_error allow|deny }`
#[derive(Clone, Debug)]
pub struct Store {
    pub name: Name,
    /// The URL: written in the file (checked by the parser, GW0003), or
    /// `env("X")` / `file("p")` (read and checked by the checker).
    pub url: Option<Spanned<Source>>,
    /// `tls { ca .. cert .. key .. }`: the upstreams' TLS settings.
    pub tls: Option<UpstreamTls>,
    pub timeout: Option<Spanned<Duration>>,
    /// true = allow requests when the store is down.
    pub on_error_allow: Option<Spanned<bool>>,
    pub span: Span,
}

/// `route [METHODS] PATH [host "NAME"] [-> UPSTREAM] [{ ... }]`
#[derive(Clone, Debug)]
pub struct Route {
    /// `None`: every method (no list, or `*`).
    pub methods: Option<Spanned<Vec<Method>>>,
    pub path: Spanned<PathPattern>,
    pub host: Option<Spanned<String>>,
    /// `-> upstream`.
    pub upstream: Option<Name>,
    pub auth: Option<Name>,
    pub requires: Vec<Require>,
    pub limits: Vec<Name>,
    pub strip_prefix: Option<Spanned<String>>,
    pub rewrite: Option<Spanned<Template>>,
    pub timeout: Option<Spanned<Duration>>,
    pub retry: Option<Retry>,
    pub transforms: Vec<HeaderTransform>,
    // Boxed: rare, and a route is often one line of text (a generated file
    // of a million routes holds a million of these).
    pub cors: Option<Box<Cors>>,
    pub aggregate: Option<Box<Aggregate>>,
    /// `split { ... }`: a target.
    pub split: Option<Box<Split>>,
    /// `when ...`: all must hold (empty: no conditions).
    pub when: Vec<Condition>,
    pub respond: Option<Box<Respond>>,
    pub redirect: Option<Box<Redirect>>,
    pub mirror: Option<Box<Mirror>>,
    pub compress: Option<Box<RouteCompress>>,
    pub cache: Option<Box<Cache>>,
    /// The `route ... PATH ...` head, for labels.
    pub head_span: Span,
    pub span: Span,
}

/// `cache { ttl 30s max_size 64MiB }`: the route's answers kept and served
/// again, as a shared cache does (RFC 9111).
#[derive(Clone, Debug)]
pub struct Cache {
    /// The freshness of an answer whose upstream gives none.
    pub ttl: Option<Spanned<Duration>>,
    /// The bound on the bytes kept.
    pub max_size: Option<Spanned<u64>>,
    pub span: Span,
}

/// `compress { gzip br zstd level 5 min_size 1KiB types "text/*" }`.
#[derive(Clone, Debug)]
pub struct Compress {
    /// In the order written: the order of preference. Empty: every coding.
    pub codings: Vec<Spanned<Coding>>,
    pub level: Option<Spanned<u64>>,
    pub min_size: Option<Spanned<u64>>,
    /// Lower-cased `type/subtype` or `type/*`. Empty: the default list.
    pub types: Vec<Spanned<String>>,
    pub span: Span,
}

/// A route's `compress`: its own block, or `off`.
#[derive(Clone, Debug)]
pub enum RouteCompress {
    On(Compress),
    Off(Span),
}

impl RouteCompress {
    pub fn span(&self) -> Span {
        match self {
            RouteCompress::On(c) => c.span,
            RouteCompress::Off(s) => *s,
        }
    }
}

pub use gw_plan::Coding;

/// `mirror UPSTREAM PERCENT`: a copy of that share of the route's requests
/// goes to another upstream, its answer discarded.
#[derive(Clone, Debug)]
pub struct Mirror {
    pub upstream: Name,
    /// 1..=100.
    pub percent: Spanned<u32>,
    pub span: Span,
}

/// `require claim.x has "v"` / `in [...]` / `== "v"` / `!= "v"`.
#[derive(Clone, Debug)]
pub struct Require {
    pub subject: Spanned<Reference>,
    pub op: RequireOp,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RequireOp {
    Has(String),
    In(Vec<String>),
    /// `client_ip in [...]`: addresses and CIDR ranges.
    InRanges(Vec<ipnet::IpNet>),
    Eq(String),
    Ne(String),
}

/// One condition of a route's `when`: `header.x-beta == "1"`.
#[derive(Clone, Debug)]
pub struct Condition {
    pub subject: Spanned<Reference>,
    pub op: CondOp,
    /// The operand's span (the subject's for `present`).
    pub operand_span: Span,
    pub span: Span,
}

pub use gw_plan::condition::CondOp;

/// `split { a 90%  b 10%  sticky cookie.session }`.
#[derive(Clone, Debug)]
pub struct Split {
    pub sides: Vec<SplitSide>,
    pub sticky: Option<Spanned<Reference>>,
    pub span: Span,
}

/// `checkout-v2 10%`.
#[derive(Clone, Debug)]
pub struct SplitSide {
    pub upstream: Name,
    pub weight: Spanned<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// `set request header x "tmpl"` / `remove response header server`.
#[derive(Clone, Debug)]
pub struct HeaderTransform {
    pub direction: Direction,
    /// Lower-cased header name.
    pub name: Spanned<String>,
    /// `Some` for `set`, `None` for `remove`.
    pub value: Option<Spanned<Template>>,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct Cors {
    pub origins: Vec<Spanned<String>>,
    pub methods: Vec<Spanned<Method>>,
    pub headers: Vec<Spanned<String>>,
    pub expose: Vec<Spanned<String>>,
    pub credentials: Option<Span>,
    pub max_age: Option<Spanned<Duration>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Aggregate {
    pub parts: Vec<AggregatePart>,
    pub timeout: Option<Spanned<Duration>>,
    pub span: Span,
}

/// `NAME UPSTREAM METHOD "path-template" [optional]`
#[derive(Clone, Debug)]
pub struct AggregatePart {
    pub name: Name,
    pub upstream: Name,
    pub method: Spanned<Method>,
    pub path: Spanned<Template>,
    pub optional: bool,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Respond {
    pub status: Spanned<u16>,
    pub body: Option<Spanned<String>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Redirect {
    pub status: Spanned<u16>,
    pub location: Spanned<Template>,
    pub span: Span,
}

/// `test "name" { expectations }`
#[derive(Clone, Debug)]
pub struct Test {
    pub name: Spanned<String>,
    pub expectations: Vec<Expectation>,
    pub span: Span,
}

/// `METHOD PATH [host "h"] [header N "v"]... -> UPSTREAM|STATUS`
#[derive(Clone, Debug)]
pub struct Expectation {
    pub method: Spanned<Method>,
    /// The request target as written (may carry a query string).
    pub path: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub headers: Vec<(Spanned<String>, Spanned<String>)>,
    /// `cookie NAME "v"`.
    pub cookies: Vec<(Spanned<String>, Spanned<String>)>,
    /// `client_ip "10.1.2.3"`.
    pub client_ip: Option<Spanned<std::net::IpAddr>>,
    pub expect: Spanned<Expected>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// `-> NAME`: routed to this upstream (or `aggregate`).
    Upstream(String),
    /// `-> 404`: answered by the gateway with this status.
    Status(u16),
}
