//! The language's keywords as data: every declaration keyword and every
//! attribute (and the words inside a statement, such as `weight` or
//! `bearer`), where it is valid, the value it takes, its default and range
//! as docs/language.md states them, and a line saying what it does.
//!
//! This table is the one source of the language server's completion and
//! hover, and of `gwc lsp --dump-schema` (JSON) for editor grammars. It is
//! held to the grammar and the reference by `tests/schema.rs`: each keyword
//! set of `grammar/src/gw.pest` equals the keywords of its context here, and
//! each attribute table of docs/language.md has a row per attribute here with
//! the same value and default cells and a range cell that starts with
//! [`Keyword::range`]. A keyword added to the grammar, or a table changed in
//! the reference, without this table following fails that test.

use serde::Serialize;

/// Where a keyword is valid: a block, or the rest of a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    /// The top level of a file: declarations.
    Top,
    /// After `listen ADDR`.
    Listen,
    /// Inside `listen ADDR tls { ... }`.
    Tls,
    /// After `cert FILE`.
    Cert,
    Limits,
    Upstream,
    /// After `server ADDR`.
    Server,
    Health,
    Eject,
    Pool,
    /// Inside an upstream's `tls { ... }` block.
    UpstreamTls,
    /// After `retry N` (in an upstream or a route).
    Retry,
    /// Inside `auth NAME jwt { ... }`.
    Jwt,
    /// Inside `auth NAME api_key { ... }`.
    ApiKey,
    /// After `from header NAME`.
    From,
    /// After `jwks`.
    Jwks,
    Limit,
    Store,
    /// After `route [METHODS] PATH`.
    RouteHead,
    /// Inside a route's `{ ... }`.
    Route,
    /// After `set request|response` or `remove request|response`.
    Header,
    /// After `require REF`.
    Require,
    /// After a route condition's `REF` (`when REF ...`).
    Condition,
    /// Inside a route's `split { ... }`.
    Split,
    Cors,
    /// Inside `compress { ... }` (top level or a route).
    Compress,
    /// Inside a route's `cache { ... }`.
    Cache,
    Aggregate,
    /// After an aggregate part's path.
    Part,
    /// Inside `test "NAME" { ... }`.
    Test,
    /// After an expectation's `METHOD PATH`.
    Expectation,
}

impl Context {
    /// How the reference and hovers name it.
    pub fn describe(self) -> &'static str {
        use Context::*;
        match self {
            Top => "the top level",
            Listen => "`listen ADDR ...`",
            Tls => "a `tls { ... }` block",
            Cert => "a `cert` line",
            Limits => "`limits { ... }`",
            Upstream => "`upstream NAME { ... }`",
            Server => "a `server` line",
            Health => "a `health { ... }` block",
            Eject => "an `eject { ... }` block",
            Pool => "a `pool { ... }` block",
            UpstreamTls => "an upstream's or a store's `tls { ... }` block",
            Retry => "`retry N ...`",
            Jwt => "`auth NAME jwt { ... }`",
            ApiKey => "`auth NAME api_key { ... }`",
            From => "`from header NAME ...`",
            Jwks => "`jwks ...`",
            Limit => "`limit NAME { ... }`",
            Store => "`store NAME redis \"URL\" { ... }`",
            RouteHead => "`route [METHODS] PATH ...`",
            Route => "a route block",
            Header => "`set`/`remove request|response header ...`",
            Require => "`require REF OP VALUE`",
            Condition => "a route condition `when REF OP VALUE`",
            Split => "a `split { ... }` block",
            Cors => "a `cors { ... }` block",
            Compress => "a `compress { ... }` block",
            Cache => "a `cache { ... }` block",
            Aggregate => "an `aggregate { ... }` block",
            Part => "an aggregate part",
            Test => "a `test { ... }` block",
            Expectation => "a test expectation",
        }
    }

    /// Whether keywords of this context start statements (a block or the
    /// top level), rather than continue one.
    pub fn is_block(self) -> bool {
        use Context::*;
        matches!(
            self,
            Top | Tls
                | Limits
                | Upstream
                | Health
                | Eject
                | Pool
                | UpstreamTls
                | Jwt
                | ApiKey
                | Limit
                | Store
                | Route
                | Cors
                | Compress
                | Cache
                | Aggregate
                | Split
                | Test
        )
    }
}

/// The kinds of names a configuration defines and refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    Upstream,
    Auth,
    Limit,
    Store,
}

impl NameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Upstream => "upstream",
            NameKind::Auth => "auth",
            NameKind::Limit => "limit",
            NameKind::Store => "store",
        }
    }
}

/// One keyword in one context.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Keyword {
    pub keyword: &'static str,
    /// Where it is valid.
    pub context: Context,
    /// How it is written, as the first column of its table in
    /// docs/language.md (without backticks).
    pub syntax: &'static str,
    /// The value it takes: the reference's "value" cell ("" if none).
    pub value: &'static str,
    /// The reference's "default" cell ("" if its table has none).
    pub default: &'static str,
    /// How the reference's "range" cell starts ("" if none).
    pub range: &'static str,
    /// One line: what it does.
    pub doc: &'static str,
    /// Whether it has a row in its context's table of the reference
    /// (the others appear inside another row's syntax or in prose).
    pub row: bool,
    /// The block it opens, or the context of the rest of its statement.
    pub opens: Option<Context>,
    /// The kind of name it defines (`upstream NAME`) ...
    pub defines: Option<NameKind>,
    /// ... or refers to (`auth NAME` in a route).
    pub refers: Option<NameKind>,
    /// Words that may follow it (for completion).
    pub values: &'static [&'static str],
}

const fn kw(keyword: &'static str, context: Context, syntax: &'static str, doc: &'static str) -> Keyword {
    Keyword {
        keyword,
        context,
        syntax,
        value: "",
        default: "",
        range: "",
        doc,
        row: true,
        opens: None,
        defines: None,
        refers: None,
        values: &[],
    }
}

impl Keyword {
    const fn value(mut self, value: &'static str) -> Keyword {
        self.value = value;
        self
    }
    const fn default(mut self, default: &'static str) -> Keyword {
        self.default = default;
        self
    }
    const fn range(mut self, range: &'static str) -> Keyword {
        self.range = range;
        self
    }
    const fn opens(mut self, context: Context) -> Keyword {
        self.opens = Some(context);
        self
    }
    const fn defines(mut self, kind: NameKind) -> Keyword {
        self.defines = Some(kind);
        self
    }
    const fn refers(mut self, kind: NameKind) -> Keyword {
        self.refers = Some(kind);
        self
    }
    const fn values(mut self, values: &'static [&'static str]) -> Keyword {
        self.values = values;
        self
    }
    /// Documented inside another row or in prose, not by a row of its own.
    const fn no_row(mut self) -> Keyword {
        self.row = false;
        self
    }

    /// Markdown for a hover: syntax, where, value, default, range, doc.
    pub fn hover(&self) -> String {
        let mut out = format!("```gw\n{}\n```\n{}", self.syntax, self.doc);
        out.push_str(&format!("\n\nIn {}.", self.context.describe()));
        if !self.value.is_empty() {
            out.push_str(&format!(" Value: {}.", self.value));
        }
        if !self.default.is_empty() {
            out.push_str(&format!(" Default: {}.", self.default));
        }
        if !self.range.is_empty() {
            out.push_str(&format!(" Range: {}.", self.range));
        }
        out
    }
}

const DURATION: &str = "duration";
const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512",
];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

use Context::*;

/// Every keyword of the language, by context.
pub const KEYWORDS: &[Keyword] = &[
    // ------------------------------------------------------------ declarations
    kw("import", Top, "import \"file.gw\"", "include another file").value("string"),
    kw(
        "listen",
        Top,
        "listen ADDR [proxy_protocol] [tls {...} | tcp -> UPSTREAM]",
        "a listener",
    )
    .opens(Listen),
    kw("admin", Top, "admin ADDR", "the admin listener"),
    kw("limits", Top, "limits { ... }", "server-wide safety bounds").opens(Limits),
    kw(
        "trust_proxies",
        Top,
        "trust_proxies [\"CIDR\", ...]",
        "the proxies whose X-Forwarded-For is believed",
    )
    .value("list of addresses or CIDR ranges"),
    kw(
        "compress",
        Top,
        "compress { ... }",
        "compresses the answers of every route passed on from upstreams",
    )
    .opens(Compress),
    kw("upstream", Top, "upstream NAME { ... }", "a pool of servers")
        .opens(Upstream)
        .defines(NameKind::Upstream),
    kw("auth", Top, "auth NAME jwt|api_key { ... }", "who may call")
        .defines(NameKind::Auth)
        .values(&["jwt", "api_key"]),
    kw("limit", Top, "limit NAME { ... }", "a rate limit")
        .opens(Limit)
        .defines(NameKind::Limit),
    kw(
        "store",
        Top,
        "store NAME redis \"URL\"|env(\"X\")|file(\"p\") [{ ... }]",
        "shared state for limits",
    )
    .opens(Store)
    .defines(NameKind::Store)
    .values(&["redis"]),
    kw(
        "route",
        Top,
        "route [METHODS] PATH [host \"NAME\"] [when CONDITION [and CONDITION]...] [-> UPSTREAM] [{ ... }]",
        "what happens to a request",
    )
    .opens(RouteHead)
    .values(METHODS),
    kw("test", Top, "test \"NAME\" { ... }", "routing expectations").opens(Test),
    // ------------------------------------------------------------ listeners
    kw(
        "tls",
        Listen,
        "listen ADDR tls { cert FILE key FILE [sni \"NAME\"] ... }",
        "serve HTTPS (rustls), HTTP/1.1 and h2 chosen by ALPN",
    )
    .no_row()
    .opens(Tls),
    kw(
        "proxy_protocol",
        Listen,
        "listen ADDR proxy_protocol [tls { ... }]",
        "every connection starts with a PROXY v1 or v2 header; its source address is the peer",
    )
    .no_row(),
    kw(
        "tcp",
        Listen,
        "listen ADDR tcp -> UPSTREAM",
        "layer 4: spread raw TCP connections over an upstream",
    )
    .no_row(),
    kw(
        "cert",
        Tls,
        "cert FILE key FILE [sni \"NAME\"]",
        "a certificate and its key; the first without `sni` is the default certificate",
    )
    .value("file paths (a string is a path relative to the `.gw` file, or `file(...)`)")
    .default("—")
    .opens(Cert),
    kw(
        "client_ca",
        Tls,
        "client_ca FILE",
        "ask clients for a certificate signed by this CA (mTLS)",
    )
    .value("a file path, or `file(...)`")
    .default("none"),
    kw(
        "client_auth",
        Tls,
        "client_auth required|optional",
        "whether a client without a certificate may connect",
    )
    .value("`required` or `optional`")
    .default("`required` (with `client_ca`)")
    .values(&["required", "optional"]),
    kw(
        "key",
        Cert,
        "cert FILE key FILE [sni \"NAME\"]",
        "the certificate's private key file",
    )
    .no_row(),
    kw(
        "sni",
        Cert,
        "cert FILE key FILE [sni \"NAME\"]",
        "the server name this certificate answers (`*.example.com` matches one label)",
    )
    .no_row(),
    kw(
        "header_timeout",
        Limits,
        "header_timeout",
        "a client that has not sent its whole header by then is cut off",
    )
    .value(DURATION)
    .default("`10s`")
    .range("> 0"),
    kw(
        "idle_timeout",
        Limits,
        "idle_timeout",
        "an idle keep-alive connection is closed",
    )
    .value(DURATION)
    .default("`60s`")
    .range("> 0"),
    kw("max_header_size", Limits, "max_header_size", "`431` beyond")
        .value("size")
        .default("`16KiB`")
        .range("> 0"),
    kw(
        "max_body_size",
        Limits,
        "max_body_size",
        "`413` beyond (chunked bodies too)",
    )
    .value("size")
    .default("`10MiB`")
    .range("≥ 0"),
    kw(
        "max_connections",
        Limits,
        "max_connections",
        "the most client connections open at once, across every listener",
    )
    .value("integer")
    .default("`10000`")
    .range("1..4294967295"),
    // ------------------------------------------------------------ upstreams
    kw(
        "balance",
        Upstream,
        "balance",
        "how requests are spread over the servers",
    )
    .value("strategy (below)")
    .default("`round_robin`")
    .values(&[
        "round_robin",
        "least_conn",
        "random",
        "p2c",
        "ip_hash",
        "hash(header.",
        "hash(query.",
        "hash(cookie.",
        "hash(claim.",
    ]),
    kw(
        "server",
        Upstream,
        "server ADDR [weight N] [backup] [resolve D]",
        "a server of the pool (repeatable)",
    )
    .value("address with a host")
    .default("—")
    .range("repeatable")
    .opens(Server),
    kw(
        "health",
        Upstream,
        "health { ... }",
        "active health checks of each server",
    )
    .value("block (below)")
    .default("no active checks")
    .opens(Health),
    kw(
        "eject",
        Upstream,
        "eject { ... }",
        "passive health: take a failing server out for a while",
    )
    .value("block (below)")
    .default("the default passive ejection *(decision)*: a server that cannot be reached is out for 10 s (below)")
    .opens(Eject),
    kw(
        "connect_timeout",
        Upstream,
        "connect_timeout",
        "how long connecting to a server may take",
    )
    .value(DURATION)
    .default("`5s` *(decision)*")
    .range("> 0"),
    kw(
        "timeout",
        Upstream,
        "timeout",
        "each attempt's wait for the response head, then every gap in the body",
    )
    .value(DURATION)
    .default("`30s` *(decision)*")
    .range("> 0"),
    kw(
        "retry",
        Upstream,
        "retry N [on COND, ...] [budget P%]",
        "retry idempotent requests on another server",
    )
    .value("see [Retries](#retries)")
    .default("no retries")
    .opens(Retry),
    kw(
        "pool",
        Upstream,
        "pool { ... }",
        "keep-alive connections to the servers",
    )
    .value("block (below)")
    .default("as below")
    .opens(Pool),
    kw("http2", Upstream, "http2", "speak h2 to these servers")
        .value("flag")
        .default("HTTP/1.1"),
    kw(
        "tls",
        Upstream,
        "tls [{ ... }]",
        "speak TLS to these servers, verifying their certificates",
    )
    .value("flag, or block (below)")
    .default("plain TCP")
    .opens(UpstreamTls),
    kw("host_header", Upstream, "host_header", "the `Host` the servers receive")
        .value("`client`, `server` or a string")
        .default("`client` *(decision 44)*")
        .values(&["client", "server"]),
    kw(
        "ca",
        UpstreamTls,
        "ca",
        "trust only the CA certificates of this PEM file",
    )
    .value("file path (a string relative to the `.gw` file, or `file(...)`)")
    .default("the system's trust roots"),
    kw(
        "server_name",
        UpstreamTls,
        "server_name",
        "the name sent (SNI) and verified in the server's certificate",
    )
    .value("string")
    .default("the server's host"),
    kw(
        "cert",
        UpstreamTls,
        "cert FILE key FILE",
        "a client certificate and its key, presented to the servers (mutual TLS)",
    )
    .value("file paths")
    .default("none"),
    kw("weight", Server, "weight", "the server's share of requests")
        .value("integer")
        .default("`1`")
        .range("1..1000"),
    kw(
        "backup",
        Server,
        "backup",
        "used only when no primary server is healthy",
    )
    .value("flag")
    .default("primary"),
    kw(
        "resolve",
        Server,
        "resolve",
        "re-resolve the server's host name this often",
    )
    .value(DURATION)
    .default("resolved once, at start *(decision)*")
    .range("> 0"),
    kw("path", Health, "path", "the request path each check asks for")
        .value("request path (may carry `?query`)")
        .default("**required** (GW0104)")
        .range("starts with `/`"),
    kw("interval", Health, "interval", "how often each server is checked")
        .value(DURATION)
        .default("`2s` *(decision)*")
        .range("> 0"),
    kw("timeout", Health, "timeout", "how long one check may take")
        .value(DURATION)
        .default("`1s` *(decision)*")
        .range("> 0"),
    kw("expect", Health, "expect", "the statuses that pass")
        .value("status or status range")
        .default("`200..299` *(decision)*")
        .range("100..599"),
    kw(
        "unhealthy",
        Health,
        "unhealthy",
        "consecutive failures that mark a server down",
    )
    .value("integer")
    .default("`3` *(decision)*")
    .range("1..1000"),
    kw(
        "healthy",
        Health,
        "healthy",
        "consecutive passes that mark a server up again",
    )
    .value("integer")
    .default("`2` *(decision)*")
    .range("1..1000"),
    kw(
        "errors",
        Eject,
        "errors",
        "consecutive 5xx answers or connect errors that eject a server",
    )
    .value("integer: consecutive 5xx responses or connect errors")
    .default("`5` *(decision)*")
    .range("1..1000"),
    kw(
        "for",
        Eject,
        "for",
        "how long an ejected server rests, doubling on repeat",
    )
    .value("duration: ejected this long, doubling on repeat")
    .default("`30s` *(decision)*")
    .range("> 0"),
    kw("max_idle", Pool, "max_idle", "idle connections kept per server")
        .value("integer: idle connections kept per server (each server has its own pool)")
        .default("`64` *(decision)*")
        .range("0..1000000"),
    kw(
        "idle_timeout",
        Pool,
        "idle_timeout",
        "an idle upstream connection is closed after this",
    )
    .value(DURATION)
    .default("`90s` *(decision)*")
    .range("> 0"),
    kw(
        "on",
        Retry,
        "on",
        "what is retried: `connect_error`, `reset` (idempotent methods only), `timeout`, 5xx statuses",
    )
    .value("`connect_error`, `reset`, `timeout`, or a 5xx status")
    .default("`connect_error, reset` *(decision)*")
    .range("statuses 500..599 only")
    .values(&["connect_error", "reset", "timeout", "502", "503", "504"]),
    kw(
        "budget",
        Retry,
        "budget",
        "over the last 10 s, retries add at most this share to the requests sent (plus 10 per second)",
    )
    .value("percent")
    .default("`20%`")
    .range("0%..100%"),
    // ------------------------------------------------------------ auth
    kw("issuer", Jwt, "issuer", "the `iss` claim must equal it")
        .value("string")
        .default("**required** (GW0104)"),
    kw("audience", Jwt, "audience", "the `aud` claim must contain it")
        .value("string")
        .default("**required** (GW0104)"),
    kw(
        "algorithms",
        Jwt,
        "algorithms",
        "the accepted signature algorithms, one family",
    )
    .value("list of `HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA`")
    .default("**required** (GW0104)")
    .values(ALGORITHMS),
    kw(
        "jwks",
        Jwt,
        "jwks file(\"keys/jwks.json\")",
        "the verification keys, as a JWKS file or URL",
    )
    .opens(Jwks)
    .values(&["file(", "url"]),
    kw(
        "public_key",
        Jwt,
        "public_key file(\"keys/rs256.pem\")",
        "the verification key, a PEM public key",
    )
    .values(&["file("]),
    kw(
        "secret",
        Jwt,
        "secret env(\"JWT_SECRET\")",
        "the HMAC secret for `HS*` algorithms",
    )
    .values(&["env(", "file("]),
    kw("leeway", Jwt, "leeway", "clock skew tolerated on `exp` and `nbf`")
        .value(DURATION)
        .default("`0s` *(decision)*"),
    kw(
        "types",
        Jwt,
        "types",
        "the accepted token types (the `typ` header); `none`: no `typ`",
    )
    .value("list of token types: strings (`\"at+jwt\"`, `\"JWT\"`) and `none`")
    .default("`none, \"JWT\", \"at+jwt\"` *(decision)*")
    .range("the token's `typ` header must be one of them")
    .values(&["none", "\"at+jwt\"", "\"JWT\""]),
    kw("from", Jwt, "from", "where the token is read")
        .value("`header NAME [bearer]`, `query NAME`, `cookie NAME`")
        .default("`header authorization bearer`")
        .opens(From)
        .values(&["header", "query", "cookie"]),
    kw("keys", ApiKey, "keys", "the accepted API keys")
        .value("`file(\"keys.txt\")`, or strings `\"k-123\", \"k-456\"`")
        .default("**required** (GW0104)")
        .values(&["file("]),
    kw("from", ApiKey, "from", "where the key is read")
        .value("`header NAME`, `query NAME`, `cookie NAME`")
        .default("`header x-api-key` *(decision)*")
        .values(&["header", "query", "cookie"]),
    kw(
        "bearer",
        From,
        "from header NAME bearer",
        "the header's value is `Bearer TOKEN`",
    )
    .no_row(),
    kw(
        "url",
        Jwks,
        "jwks url \"https://...\" [refresh D]",
        "fetch the key set from this URL",
    )
    .no_row(),
    kw(
        "refresh",
        Jwks,
        "jwks url \"https://...\" [refresh D]",
        "how often the key set is fetched again (default `10m`)",
    )
    .no_row(),
    // ------------------------------------------------------------ limits and stores
    kw("rate", Limit, "rate", "requests allowed per unit of time")
        .value("rate")
        .default("**required** (GW0104)")
        .range("more than zero"),
    kw("burst", Limit, "burst", "requests allowed at once")
        .value("integer")
        .default("the rate's count *(decision)*")
        .range("1..1000000"),
    kw("key", Limit, "key", "what the budget is counted per")
        .value("`client_ip`, `claim.X`, `header.X`, `query.X`, `cookie.X`, `api_key`, `none`")
        .default("`client_ip` *(decision)*")
        .range("one budget per distinct key")
        .values(&["client_ip", "api_key", "none", "claim.", "header.", "query.", "cookie."]),
    kw(
        "store",
        Limit,
        "store",
        "keep the budgets in this store (shared by every gateway)",
    )
    .value("store name")
    .default("this gateway's memory")
    .refers(NameKind::Store),
    kw(
        "max_keys",
        Limit,
        "max_keys",
        "at most this many keys with a budget of their own in memory; past it new keys share one overflow budget",
    )
    .value("integer: keys with a budget of their own, kept in this gateway's memory")
    .default("`100000` *(decision)*")
    .range("1..10000000"),
    kw(
        "timeout",
        Store,
        "timeout",
        "bounds each call to Redis, connecting included",
    )
    .value(DURATION)
    .default("`50ms` *(decision)*"),
    kw(
        "on_error",
        Store,
        "on_error",
        "what to do with a request when Redis is down",
    )
    .value("`allow` or `deny`")
    .default("`allow` *(decision)*")
    .values(&["allow", "deny"]),
    kw(
        "tls",
        Store,
        "tls [{ ... }]",
        "the TLS settings of a `rediss://` store: an upstream's `tls` block, `server_name` excepted",
    )
    .value("flag, or block (as an upstream's)")
    .default("the system's trust roots, no client certificate")
    .opens(UpstreamTls),
    // ------------------------------------------------------------ routes
    kw(
        "host",
        RouteHead,
        "route [METHODS] PATH host \"NAME\"",
        "only requests for this host name",
    )
    .no_row(),
    kw(
        "when",
        RouteHead,
        "route [METHODS] PATH when REF OP VALUE [and ...]",
        "conditions on what the request carries: the route takes only requests that satisfy them all",
    )
    .no_row()
    .opens(Condition)
    .values(&["header.", "query.", "cookie.", "client_ip"]),
    kw(
        "and",
        RouteHead,
        "when CONDITION and CONDITION",
        "another condition that must hold too",
    )
    .no_row()
    .opens(Condition)
    .values(&["header.", "query.", "cookie.", "client_ip"]),
    kw(
        "in",
        Condition,
        "when REF in [\"a\", \"b\"]",
        "the request has REF, with one of the strings (for `client_ip`: within one of the blocks)",
    )
    .no_row(),
    kw(
        "present",
        Condition,
        "when REF present",
        "the request has REF, whatever its value",
    )
    .no_row(),
    kw(
        "auth",
        Route,
        "auth NAME",
        "who may call: `401` without a valid credential",
    )
    .value("an auth name")
    .refers(NameKind::Auth),
    kw(
        "require",
        Route,
        "require REF OP VALUE",
        "authorisation: `403` when it fails",
    )
    .value("see below")
    .opens(Require)
    .values(&["claim.", "header.", "query.", "cookie.", "param."]),
    kw(
        "limit",
        Route,
        "limit NAME[, NAME...]",
        "rate limits applied in order: `429` with `Retry-After`",
    )
    .value("limit names")
    .refers(NameKind::Limit),
    kw(
        "set",
        Route,
        "set request|response header NAME \"template\"",
        "sets (replaces) a header",
    )
    .value("header name, template")
    .opens(Header)
    .values(&["request", "response"]),
    kw(
        "remove",
        Route,
        "remove request|response header NAME",
        "removes a header",
    )
    .value("header name")
    .opens(Header)
    .values(&["request", "response"]),
    kw(
        "strip_prefix",
        Route,
        "strip_prefix /prefix",
        "removes the prefix from the path sent upstream",
    )
    .value("literal path (no `{}`, no `?`)"),
    kw(
        "rewrite",
        Route,
        "rewrite \"template\"",
        "replaces the path sent upstream",
    )
    .value("path template"),
    kw("timeout", Route, "timeout", "overrides the upstream's `timeout`").value("duration > 0"),
    kw(
        "retry",
        Route,
        "retry N [on ...] [budget P%]",
        "overrides the upstream's retries; opts every method in",
    )
    .value("as in an upstream")
    .opens(Retry),
    kw(
        "mirror",
        Route,
        "mirror UPSTREAM PERCENT",
        "copies that share of requests to another upstream; its answers are discarded",
    )
    .value("upstream name, 1%..100%")
    .refers(NameKind::Upstream),
    kw(
        "compress",
        Route,
        "compress { ... } | compress off",
        "the route's own compression, or none",
    )
    .value("block (below), or `off`")
    .opens(Compress)
    .values(&["off"]),
    kw(
        "cache",
        Route,
        "cache { ... }",
        "keeps the upstream's answers and serves them again (RFC 9111, shared)",
    )
    .value("block (below)")
    .opens(Cache),
    kw("cors", Route, "cors { ... }", "answer CORS, preflights included")
        .value("block (below)")
        .opens(Cors),
    kw(
        "aggregate",
        Route,
        "aggregate { ... }",
        "a target: fan out to several upstreams and merge their JSON",
    )
    .value("block (below)")
    .opens(Aggregate),
    kw(
        "split",
        Route,
        "split { ... }",
        "a target: upstreams by weight, optionally sticky by a key",
    )
    .value("block (below)")
    .opens(Split),
    kw(
        "sticky",
        Split,
        "sticky REF",
        "the key whose value keeps a request on its side",
    )
    .no_row()
    .values(&["cookie.", "header.", "query.", "claim.", "client_ip"]),
    kw(
        "respond",
        Route,
        "respond STATUS [\"body\"]",
        "a target: the gateway answers itself",
    )
    .value("status 100..599, optional string"),
    kw(
        "redirect",
        Route,
        "redirect [STATUS] \"location\"",
        "a target: the gateway redirects",
    )
    .value("status, template")
    .values(&["301", "302", "303", "307", "308"]),
    kw(
        "header",
        Header,
        "set request|response header NAME \"template\"",
        "the header to set or remove",
    )
    .no_row(),
    kw(
        "has",
        Require,
        "require REF has \"value\"",
        "REF is an array containing the value, or a string whose words include it",
    )
    .no_row(),
    kw(
        "in",
        Require,
        "require REF in [\"a\", \"b\"]",
        "REF equals one of the strings",
    )
    .no_row(),
    kw("origins", Cors, "origins", "the origins allowed")
        .value("strings `\"https://app.example.com\"`, or `*`")
        .default("none"),
    kw("methods", Cors, "methods", "the methods allowed")
        .value("methods")
        .default("the route's methods *(decision)*")
        .values(METHODS),
    kw("headers", Cors, "headers", "request headers a browser may send")
        .value("header names")
        .default("none *(decision)*"),
    kw("expose", Cors, "expose", "response headers a page may read")
        .value("header names")
        .default("none *(decision)*"),
    kw("credentials", Cors, "credentials", "allow cookies and credentials")
        .value("flag")
        .default("off"),
    kw("max_age", Cors, "max_age", "how long a browser may cache a preflight")
        .value(DURATION)
        .default("not sent *(decision)*"),
    kw("gzip", Compress, "gzip", "offer gzip")
        .value("flag")
        .default("offered when no coding is named"),
    kw("br", Compress, "br", "offer brotli")
        .value("flag")
        .default("offered when no coding is named"),
    kw("zstd", Compress, "zstd", "offer zstd")
        .value("flag")
        .default("offered when no coding is named"),
    kw("level", Compress, "level", "how hard every coding works")
        .value("integer 1..9")
        .default("`5`"),
    kw(
        "min_size",
        Compress,
        "min_size",
        "bodies of a known length under this are sent as they are",
    )
    .value("size")
    .default("`1KiB`"),
    kw("types", Compress, "types", "the media types compressed")
        .value("strings `\"type/subtype\"` or `\"type/*\"`")
        .default("text, JSON, JavaScript, XML, SVG *(decision)*"),
    kw(
        "ttl",
        Cache,
        "ttl",
        "how long an answer is fresh when its upstream does not say",
    )
    .value(DURATION)
    .default("`30s`"),
    kw("max_size", Cache, "max_size", "the bytes of answers kept")
        .value("size")
        .default("`64MiB`"),
    kw("timeout", Aggregate, "timeout D", "bounds the whole aggregation").no_row(),
    kw(
        "optional",
        Part,
        "PART UPSTREAM METHOD \"path\" optional",
        "the part becomes `null` on failure instead of failing the request with `502`",
    )
    .no_row(),
    // ------------------------------------------------------------ tests
    kw(
        "host",
        Expectation,
        "METHOD PATH host \"NAME\" -> R",
        "the request's host",
    )
    .no_row(),
    kw(
        "header",
        Expectation,
        "METHOD PATH header NAME \"VALUE\" -> R",
        "a header of the request",
    )
    .no_row(),
    kw(
        "cookie",
        Expectation,
        "METHOD PATH cookie NAME \"VALUE\" -> R",
        "a cookie of the request",
    )
    .no_row(),
    kw(
        "client_ip",
        Expectation,
        "METHOD PATH client_ip \"ADDR\" -> R",
        "the address the request comes from",
    )
    .no_row(),
];

/// The keywords valid in `context`.
pub fn in_context(context: Context) -> impl Iterator<Item = &'static Keyword> {
    KEYWORDS.iter().filter(move |k| k.context == context)
}

/// `keyword` in `context`, if it is one there.
pub fn lookup(context: Context, keyword: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| k.context == context && k.keyword == keyword)
}

/// Every keyword written `word`, whatever its context.
pub fn all_named(word: &str) -> impl Iterator<Item = &'static Keyword> + '_ {
    KEYWORDS.iter().filter(move |k| k.keyword == word)
}

/// The whole table as JSON (`gwc lsp --dump-schema`).
pub fn to_json() -> serde_json::Value {
    serde_json::json!({ "keywords": KEYWORDS })
}
