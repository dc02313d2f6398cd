/**
 * @file Tree-sitter grammar for gw's `.gw` configuration language.
 *
 * It follows grammar/src/gw.pest, the language's authoritative grammar: the
 * same declarations, blocks and attributes, each with the same shape. Where
 * gw.pest is deliberately loose so that the compiler can say what it expected
 * (every value slot accepts any value; unknown attributes are swallowed and
 * reported as GW0103), this grammar is as loose in value slots and leaves
 * unknown attributes to tree-sitter's error recovery, so an editor marks them.
 *
 * The keyword and attribute sets are checked against gw.pest, the TextMate
 * grammar and the highlight queries by tests/editor_grammars.rs.
 */

/// <reference types="tree-sitter-cli/dsl" />
// @ts-check

// Attribute names of each block: gw.pest's `*_kw` rules.
const LIMITS_SETTINGS = ['header_timeout', 'idle_timeout', 'max_header_size', 'max_body_size', 'max_connections'];
const UPSTREAM_SETTINGS = ['balance', 'connect_timeout', 'timeout', 'host_header'];
const UPSTREAM_TLS_SETTINGS = ['ca', 'server_name'];
const HEALTH_SETTINGS = ['path', 'interval', 'timeout', 'expect', 'unhealthy', 'healthy'];
const EJECT_SETTINGS = ['errors', 'for'];
const POOL_SETTINGS = ['max_idle', 'idle_timeout'];
const AUTH_SETTINGS = ['issuer', 'audience', 'algorithms', 'public_key', 'secret', 'leeway', 'keys', 'types'];
const LIMIT_SETTINGS = ['rate', 'burst', 'key', 'store', 'max_keys'];
const STORE_SETTINGS = ['timeout', 'on_error'];
const ROUTE_SETTINGS = ['strip_prefix', 'timeout', 'rewrite'];
const CORS_SETTINGS = ['origins', 'methods', 'headers', 'expose', 'max_age'];
const COMPRESS_CODINGS = ['gzip', 'br', 'zstd'];
const COMPRESS_SETTINGS = ['level', 'min_size', 'types'];
const CACHE_SETTINGS = ['ttl', 'max_size'];

// Characters of a path pattern outside `{param}` (gw.pest's `path_char`).
const PATH_CHARS = /[A-Za-z0-9\/\-._~!$&'()*+=:@%?]+/;
// Digits with `_` separators (gw.pest's `digits`).
const DIGITS = /[0-9][0-9_]*/.source;

/**
 * One or more `rule`s separated by commas.
 * @param {RuleOrLiteral} rule
 */
function commaSep1(rule) {
  return seq(rule, repeat(seq(',', rule)));
}

/**
 * A `{ ... }` block of `items`.
 * @param {RuleOrLiteral} items
 */
function block(items) {
  return seq('{', repeat(items), '}');
}

/**
 * `NAME VALUE` where NAME is one of `names`.
 * @param {string[]} names
 * @param {GrammarSymbols<string>} $
 */
function setting(names, $) {
  return seq(field('name', choice(...names)), field('value', $._value));
}

/**
 * `NAME VALUE, VALUE...` where NAME is one of `names`.
 * @param {string[]} names
 * @param {GrammarSymbols<string>} $
 */
function listSetting(names, $) {
  return seq(field('name', choice(...names)), commaSep1(field('value', $._value)));
}

module.exports = grammar({
  name: 'gw',

  // Blanks, comments and the optional `;` separate tokens and carry no other meaning.
  extras: $ => [/\s/, '\uFEFF', $.comment, ';'],

  // Keywords are not reserved: a keyword is one only where the grammar expects it.
  word: $ => $.identifier,

  rules: {
    source_file: $ => repeat($._declaration),

    _declaration: $ => choice(
      $.import,
      $.listen,
      $.admin,
      $.limits,
      $.trust_proxies,
      $.compress,
      $.upstream,
      $.auth,
      $.limit,
      $.store,
      $.route,
      $.test,
    ),

    comment: _ => token(seq('#', /[^\n]*/)),

    // ------------------------------------------------------------ declarations

    /** `import "other.gw"` */
    import: $ => seq('import', field('path', $._value)),

    /** `listen ADDR [proxy_protocol] [tls { ... }]`, `listen ADDR tcp -> UPSTREAM` */
    listen: $ => seq(
      'listen',
      field('address', $._value),
      optional(choice($.tcp, seq($.proxy_protocol, optional($.tls)), $.tls)),
    ),
    proxy_protocol: _ => 'proxy_protocol',
    tls: $ => seq('tls', optional(alias($.tls_block, $.block))),
    tls_block: $ => block(choice($.certificate, $.client_ca, $.client_auth)),
    /** `client_ca FILE` */
    client_ca: $ => seq('client_ca', field('ca', $._value)),
    /** `client_auth required|optional` */
    client_auth: $ => seq('client_auth', field('value', $._value)),
    /** `cert FILE key FILE [sni "NAME"]` */
    certificate: $ => seq(
      'cert', field('cert', $._value),
      'key', field('key', $._value),
      optional(seq('sni', field('sni', $._value))),
    ),
    tcp: $ => seq('tcp', '->', field('upstream', $._value)),

    /** `trust_proxies ["10.0.0.0/8", "127.0.0.1"]` */
    trust_proxies: $ => seq('trust_proxies', field('ranges', $._value)),

    /** `admin ADDR` */
    admin: $ => seq('admin', field('address', $._value)),

    /** `limits { header_timeout 10s ... }` */
    /** `compress { gzip br zstd level 5 min_size 1KiB types "text/*" }`, or `compress off` in a route */
    compress: $ => seq('compress', choice(alias($.compress_block, $.block), field('value', $._value))),
    compress_block: $ => block(choice($.coding, alias($.compress_setting, $.setting))),
    compress_setting: $ => listSetting(COMPRESS_SETTINGS, $),
    coding: _ => choice(...COMPRESS_CODINGS),
    /** `cache { ttl 30s max_size 64MiB }` in a route */
    cache: $ => seq('cache', choice(alias($.cache_block, $.block), field('value', $._value))),
    cache_block: $ => block(alias($.cache_setting, $.setting)),
    cache_setting: $ => setting(CACHE_SETTINGS, $),
    limits: $ => seq('limits', alias($.limits_block, $.block)),
    limits_block: $ => block(alias($.limits_setting, $.setting)),
    limits_setting: $ => setting(LIMITS_SETTINGS, $),

    /** `upstream NAME { ... }` */
    upstream: $ => seq('upstream', field('name', $.identifier), alias($.upstream_block, $.block)),
    upstream_block: $ => block(choice(
      $.server,
      $.health,
      $.eject,
      $.pool,
      $.retry,
      $.http2,
      alias($.upstream_tls, $.tls),
      alias($.upstream_setting, $.setting),
    )),
    upstream_setting: $ => setting(UPSTREAM_SETTINGS, $),
    /** `server ADDR [weight N] [backup] [resolve DURATION]` */
    server: $ => seq(
      'server',
      field('address', $._value),
      repeat(choice(
        seq('weight', field('weight', $._value)),
        field('backup', 'backup'),
        seq('resolve', field('resolve', $._value)),
      )),
    ),
    health: $ => seq('health', alias($.health_block, $.block)),
    health_block: $ => block(alias($.health_setting, $.setting)),
    health_setting: $ => setting(HEALTH_SETTINGS, $),
    eject: $ => seq('eject', alias($.eject_block, $.block)),
    eject_block: $ => block(alias($.eject_setting, $.setting)),
    eject_setting: $ => setting(EJECT_SETTINGS, $),
    pool: $ => seq('pool', alias($.pool_block, $.block)),
    pool_block: $ => block(alias($.pool_setting, $.setting)),
    pool_setting: $ => setting(POOL_SETTINGS, $),
    /** `retry N [on COND, COND...] [budget PERCENT]` (in an upstream or a route) */
    retry: $ => seq(
      'retry',
      field('count', $._value),
      optional(seq('on', commaSep1(field('condition', $._value)))),
      optional(seq('budget', field('budget', $._value))),
    ),
    http2: _ => 'http2',
    /** `tls [{ ca FILE server_name "NAME" cert FILE key FILE }]`: TLS to the servers */
    upstream_tls: $ => seq('tls', optional(alias($.upstream_tls_block, $.block))),
    upstream_tls_block: $ => block(choice(
      alias($.client_certificate, $.certificate),
      alias($.upstream_tls_setting, $.setting),
    )),
    upstream_tls_setting: $ => setting(UPSTREAM_TLS_SETTINGS, $),
    /** `cert FILE key FILE`: the client certificate gw presents */
    client_certificate: $ => seq('cert', field('cert', $._value), 'key', field('key', $._value)),

    /** `auth NAME jwt|api_key { ... }` */
    auth: $ => seq(
      'auth',
      field('name', $.identifier),
      field('kind', $._value),
      alias($.auth_block, $.block),
    ),
    auth_block: $ => block(choice($.from, $.jwks, alias($.auth_setting, $.setting))),
    auth_setting: $ => listSetting(AUTH_SETTINGS, $),
    /** `from header NAME [bearer]`, `from query NAME`, `from cookie NAME` */
    from: $ => seq(
      'from',
      field('source', $._value),
      field('name', $._value),
      optional(field('bearer', 'bearer')),
    ),
    /** `jwks file("...")` or `jwks url "https://..." [refresh 10m]` */
    jwks: $ => seq('jwks', choice(
      seq('url', field('url', $._value), optional(seq('refresh', field('refresh', $._value)))),
      field('file', $._value),
    )),

    /** `limit NAME { rate 100/min burst 20 key claim.sub [store NAME] [max_keys N] }` */
    limit: $ => seq('limit', field('name', $.identifier), alias($.limit_block, $.block)),
    limit_block: $ => block(alias($.limit_setting, $.setting)),
    limit_setting: $ => setting(LIMIT_SETTINGS, $),

    /** `store NAME redis "redis://..."|env("X")|file("p") [{ timeout 50ms on_error allow tls { ... } }]` */
    store: $ => seq(
      'store',
      field('name', $.identifier),
      field('kind', $._value),
      optional(field('url', choice($.string, $.call))),
      optional(alias($.store_block, $.block)),
    ),
    store_block: $ => block(choice(alias($.store_setting, $.setting), $.upstream_tls)),
    store_setting: $ => setting(STORE_SETTINGS, $),

    /** `route [METHODS] PATH [host "NAME"] [when COND [and COND]...] [-> UPSTREAM] [{ ... }]` */
    route: $ => seq(
      'route',
      optional(field('methods', $.methods)),
      field('path', $._value),
      optional(seq('host', field('host', $._value))),
      optional(seq('when', $.condition, repeat(seq('and', $.condition)))),
      optional(seq('->', field('upstream', $._value))),
      optional(alias($.route_block, $.block)),
    ),
    /** `REF == "v"`, `REF != "v"`, `REF in ["a", "b"]`, `REF present` */
    condition: $ => seq(
      field('subject', $._value),
      choice(
        seq(field('operator', choice('in', '==', '!=')), field('value', $._value)),
        field('operator', 'present'),
      ),
    ),
    methods: $ => commaSep1($.method),
    // An HTTP method, checked by the compiler (so that `get` gets a suggestion).
    method: _ => choice('*', token(prec(1, /[A-Za-z]+/))),
    route_block: $ => block(choice(
      $.route_auth,
      $.require,
      $.route_limit,
      $.set_header,
      $.remove_header,
      $.aggregate,
      $.split,
      $.respond,
      $.redirect,
      $.cors,
      $.retry,
      $.mirror,
      $.cache,
      $.compress,
      alias($.route_setting, $.setting),
    )),
    route_setting: $ => setting(ROUTE_SETTINGS, $),
    /** `auth NAME` */
    route_auth: $ => seq('auth', field('name', $._value)),
    /** `limit NAME[, NAME...]` */
    route_limit: $ => seq('limit', commaSep1(field('name', $._value))),
    /** `require REF has|in|==|!= VALUE` */
    require: $ => seq(
      'require',
      field('subject', $._value),
      field('operator', choice('has', 'in', '==', '!=')),
      field('value', $._value),
    ),
    /** `set request|response header NAME "template"` */
    set_header: $ => seq(
      'set',
      field('direction', $._value),
      'header',
      field('name', $._value),
      field('value', $._value),
    ),
    /** `remove request|response header NAME` */
    remove_header: $ => seq(
      'remove',
      field('direction', $._value),
      'header',
      field('name', $._value),
    ),
    /** `aggregate { PART UPSTREAM METHOD "path" [optional] ... timeout 2s }` */
    aggregate: $ => seq('aggregate', alias($.aggregate_block, $.block)),
    aggregate_block: $ => block(choice($.part, alias($.aggregate_setting, $.setting))),
    aggregate_setting: $ => seq(field('name', 'timeout'), field('value', $._value)),
    part: $ => seq(
      field('name', $.identifier),
      field('upstream', $.identifier),
      field('method', $.method),
      field('path', $._value),
      optional(field('optional', 'optional')),
    ),
    /** `split { checkout-v1 90%  checkout-v2 10%  sticky cookie.session }` */
    split: $ => seq('split', alias($.split_block, $.block)),
    split_block: $ => block(choice($.split_side, $.sticky)),
    split_side: $ => seq(field('upstream', $.identifier), field('weight', $._value)),
    sticky: $ => seq('sticky', field('key', $._value)),
    /** `mirror UPSTREAM PERCENT` */
    mirror: $ => seq('mirror', field('upstream', $._value), field('share', $._value)),
    /** `respond STATUS ["body"]` */
    respond: $ => seq('respond', field('status', $._value), optional(field('body', $.string))),
    /** `redirect [STATUS] "location"` */
    redirect: $ => seq('redirect', optional(field('status', $._bare_value)), field('location', $.string)),
    /** `cors { origins "https://a" methods GET, POST headers "x-y" credentials max_age 1h }` */
    cors: $ => seq('cors', alias($.cors_block, $.block)),
    cors_block: $ => block(choice($.credentials, alias($.cors_setting, $.setting))),
    cors_setting: $ => listSetting(CORS_SETTINGS, $),
    credentials: _ => 'credentials',

    /** `test "name" { METHOD PATH [host "h"] [header NAME "v"]... -> UPSTREAM|STATUS ... }` */
    test: $ => seq('test', field('name', $._value), alias($.test_block, $.block)),
    test_block: $ => block($.expectation),
    expectation: $ => seq(
      field('method', $.method),
      field('path', $._value),
      optional(seq('host', field('host', $._value))),
      repeat(choice($.expect_header, $.expect_cookie, $.expect_client)),
      '->',
      field('expected', $._value),
    ),
    expect_header: $ => seq('header', field('name', $._value), field('value', $._value)),
    expect_cookie: $ => seq('cookie', field('name', $._value), field('value', $._value)),
    expect_client: $ => seq('client_ip', field('address', $._value)),

    // ------------------------------------------------------------ values

    _value: $ => choice($.string, $._bare_value),
    _bare_value: $ => choice(
      $.integer,
      $.percent,
      $.duration,
      $.size,
      $.rate,
      $.status_range,
      $.address,
      $.path,
      $.reference,
      $.call,
      $.list,
      $.identifier,
      $.star,
    ),

    /** `"..."` with escapes; `{claim.sub}` inside is a template hole. */
    string: $ => seq(
      '"',
      repeat(choice($.string_content, $.escape_sequence, $.interpolation)),
      token.immediate('"'),
    ),
    // A lone `{` that does not open a hole is text (`{"a": 1}`).
    string_content: _ => token.immediate(choice(/[^"\\{\n]+/, '{')),
    escape_sequence: _ => token.immediate(/\\(u\{[0-9A-Fa-f]*\}|[^\n])/),
    /** `{claim.sub}`: a reference filled in per request. */
    interpolation: _ => token.immediate(/\{[a-z_][A-Za-z0-9_.\-]*\}/),

    /** `42`, `1_000`; a status is an integer too. */
    integer: _ => token(new RegExp(DIGITS)),
    /** `20%` */
    percent: _ => token(new RegExp(DIGITS + '%')),
    /** `250ms`, `5s`, `1m`, `1h30m` */
    duration: _ => token(new RegExp('(' + DIGITS + '(ms|s|m|h))+')),
    /** `16KiB`, `10MiB`, `1GB`, `512B` */
    size: _ => token(new RegExp(DIGITS + '(KiB|MiB|GiB|KB|MB|GB|B)')),
    /** `100/min`, `10/s`, `5000/second` */
    rate: _ => token(new RegExp(DIGITS + '/(second|sec|s|minute|min|m|hour|h)')),
    /** `200..299` */
    status_range: _ => token(new RegExp(DIGITS + '\\.\\.' + DIGITS)),
    /** `1.2.3.4:80`, `[::1]:8080`, `:8080`, `host.name:80` */
    address: _ => token(/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)?:[0-9]+/),

    /** `/users/{id}/orders`, `/static/{*file}`, `/orders?user=1` (in tests) */
    path: $ => seq(
      token(seq('/', optional(PATH_CHARS))),
      repeat(choice(token.immediate(PATH_CHARS), $.path_param, $.catch_all)),
    ),
    /** `{id}`: one segment, read as `param.id`. */
    path_param: $ => seq(
      token.immediate('{'),
      optional(field('name', alias(token.immediate(/[A-Za-z0-9_.\-]+/), $.identifier))),
      token.immediate('}'),
    ),
    /** `{*rest}`: the rest of the path. */
    catch_all: $ => seq(
      token.immediate('{'),
      token.immediate('*'),
      optional(field('name', alias(token.immediate(/[A-Za-z0-9_.\-]+/), $.identifier))),
      token.immediate('}'),
    ),

    /** `claim.sub`, `header.x-user-id`, `query.page`, `param.id`, `cookie.session`, `client_cert.san` */
    reference: _ => token(/(claim|header|query|param|cookie|client_cert)(\.[A-Za-z0-9_\-]+)+/),

    /** `env("NAME")`, `file("path")`, `hash(claim.sub)` */
    call: $ => seq(
      field('function', $.identifier),
      token.immediate('('),
      optional(commaSep1(field('argument', $._value))),
      ')',
    ),

    /** `["a", "b"]` */
    list: $ => seq('[', optional(seq(commaSep1($._value), optional(','))), ']'),

    /** Names: `[A-Za-z_][A-Za-z0-9_-]*`. */
    identifier: _ => /[A-Za-z_][A-Za-z0-9_\-]*/,

    star: _ => '*',
  },
});
