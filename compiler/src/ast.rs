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

/// HTTP methods a route or test names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
}

impl Method {
    pub const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Connect,
        Method::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Safe to retry without the route's say-so.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
        )
    }
}

/// Where a request value comes from: `claim.sub`, `header.x-user-id`, ...
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// `claim.a.b` — a (nested) JWT claim.
    Claim(Vec<String>),
    /// `header.x-user-id` (lower-cased).
    Header(String),
    /// `query.page`.
    Query(String),
    /// `param.id` — a path parameter of the route.
    Param(String),
    /// `cookie.session`.
    Cookie(String),
    /// `client_ip`.
    ClientIp,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Claim(path) => write!(f, "claim.{}", path.join(".")),
            Reference::Header(h) => write!(f, "header.{h}"),
            Reference::Query(q) => write!(f, "query.{q}"),
            Reference::Param(p) => write!(f, "param.{p}"),
            Reference::Cookie(c) => write!(f, "cookie.{c}"),
            Reference::ClientIp => f.write_str("client_ip"),
        }
    }
}

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
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum ListenKind {
    Http,
    /// `tls` with its certificates; `tls_span` covers the keyword.
    Tls {
        certs: Vec<Certificate>,
        tls_span: Span,
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
    pub span: Span,
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

/// The JWT `typ` headers an auth accepts (RFC 8725 §3.11 explicit typing).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenTypes {
    /// A token without `typ` is accepted (`none` in the list).
    pub untyped: bool,
    /// Media types, lower-cased, without an `application/` prefix when
    /// nothing else has a `/` ([`TokenTypes::normalize`]).
    pub names: Vec<String>,
}

impl TokenTypes {
    /// The types accepted when the auth does not say: no `typ`, `JWT`, and
    /// `at+jwt` (RFC 9068 access tokens).
    pub fn default_list() -> TokenTypes {
        TokenTypes {
            untyped: true,
            names: vec!["jwt".into(), "at+jwt".into()],
        }
    }

    /// A `typ` as compared (RFC 7515 §4.1.9): case-insensitive, and
    /// `application/` may be left out when no other `/` follows.
    pub fn normalize(typ: &str) -> String {
        let lower = typ.to_ascii_lowercase();
        match lower.strip_prefix("application/") {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => lower,
        }
    }

    /// Whether a token whose header has this `typ` (or none) is accepted.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        match typ {
            None => self.untyped,
            Some(t) => {
                let t = TokenTypes::normalize(t);
                self.names.contains(&t)
            }
        }
    }
}

impl Default for TokenTypes {
    fn default() -> TokenTypes {
        TokenTypes::default_list()
    }
}

impl std::fmt::Display for TokenTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
        if self.untyped {
            parts.push("none".into());
        }
        f.write_str(&parts.join(", "))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// HMAC with a shared secret (HS*), as opposed to a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// The kind of public key the algorithm needs.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyKind::Secret,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => KeyKind::Ec,
            Algorithm::EdDSA => KeyKind::Ed25519,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Secret,
    Rsa,
    Ec,
    Ed25519,
}

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
    pub url: Option<Spanned<String>>,
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
    pub respond: Option<Box<Respond>>,
    pub redirect: Option<Box<Redirect>>,
    /// The `route ... PATH ...` head, for labels.
    pub head_span: Span,
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
    Eq(String),
    Ne(String),
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
