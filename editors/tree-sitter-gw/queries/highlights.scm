; Highlights of the .gw language.
;
; Capture names are tree-sitter's and Neovim's standard ones (Zed's are the
; same; queries/helix/highlights.scm is this file with Helix's names).
; Patterns never capture the same node twice, so the result is the same in
; editors where the first matching pattern wins and in those where the last
; does. Word lists in predicates (methods, strategies, ...) are compared with
; the TextMate grammar's by tests/editor_grammars.rs.

(comment) @comment @spell

; ------------------------------------------------------------------ declarations

(import "import" @keyword.import)
(listen "listen" @keyword)
(admin "admin" @keyword)
(limits "limits" @keyword)
(trust_proxies "trust_proxies" @keyword)
(source_file (compress "compress" @keyword))
(upstream "upstream" @keyword)
(auth "auth" @keyword)
(limit "limit" @keyword)
(store "store" @keyword)
(route "route" @keyword)
(test "test" @keyword)

; ------------------------------------------------------------------ attributes

(setting name: _ @property)
(server "server" @property)
(health "health" @property)
(eject "eject" @property)
(pool "pool" @property)
(retry "retry" @property)
(http2) @property
(from "from" @property)
(jwks "jwks" @property)
(certificate "cert" @property)
(client_ca "client_ca" @property)
(client_auth "client_auth" @property)
(proxy_protocol) @property
(route_auth "auth" @property)
(route_limit "limit" @property)
(require "require" @property)
(set_header "set" @property)
(remove_header "remove" @property)
(aggregate "aggregate" @property)
(split "split" @property)
(sticky "sticky" @property)
(respond "respond" @property)
(redirect "redirect" @property)
(cors "cors" @property)
(mirror "mirror" @property)
(cache "cache" @property)
(block (compress "compress" @property))
(coding ["gzip" "br" "zstd"] @property)
(credentials) @property

[
  "tls"
  "tcp"
  "sni"
  "weight"
  "backup"
  "resolve"
  "on"
  "budget"
  "bearer"
  "url"
  "refresh"
  "host"
  "header"
  "optional"
  "when"
  "and"
  "cookie"
  "client_ip"
] @keyword

(certificate "key" @keyword)

(require
  operator: ["has" "in"] @keyword.operator)

(condition
  operator: ["in" "present"] @keyword.operator)

(condition
  operator: ["==" "!="] @operator)

(require
  operator: ["==" "!="] @operator)

"->" @operator

; ------------------------------------------------------------------ names

(upstream name: (identifier) @type.definition)
(auth name: (identifier) @type.definition)
(limit name: (identifier) @type.definition)
(store name: (identifier) @type.definition)

(route upstream: (identifier) @type)
(tcp upstream: (identifier) @type)
(route_auth name: (identifier) @type)
(route_limit name: (identifier) @type)
(part upstream: (identifier) @type)
(expectation expected: (identifier) @type)
(setting
  name: "store"
  value: (identifier) @type)

(part name: (identifier) @variable.member)

; ------------------------------------------------------------------ value words

(auth
  kind: (identifier) @type.builtin
  (#any-of? @type.builtin "jwt" "api_key"))

(store
  kind: (identifier) @type.builtin
  (#eq? @type.builtin "redis"))

((method) @constant.builtin
  (#any-of? @constant.builtin "GET" "HEAD" "POST" "PUT" "PATCH" "DELETE" "OPTIONS" "CONNECT" "TRACE"))

(method "*" @character.special)

(setting
  name: "methods"
  value: (identifier) @constant.builtin
  (#any-of? @constant.builtin "GET" "HEAD" "POST" "PUT" "PATCH" "DELETE" "OPTIONS" "CONNECT" "TRACE"))

(setting
  name: "balance"
  value: (identifier) @constant.builtin
  (#any-of? @constant.builtin "round_robin" "least_conn" "random" "p2c" "ip_hash"))

(setting
  name: "host_header"
  value: (identifier) @constant.builtin
  (#any-of? @constant.builtin "client" "server"))

(retry
  condition: (identifier) @constant.builtin
  (#any-of? @constant.builtin "connect_error" "timeout"))

(setting
  name: "on_error"
  value: (identifier) @constant.builtin
  (#any-of? @constant.builtin "allow" "deny"))

(setting
  name: "key"
  value: (identifier) @constant.builtin
  (#any-of? @constant.builtin "none" "api_key"))

(setting
  name: "algorithms"
  value: (identifier) @constant.builtin
  (#any-of? @constant.builtin
    "HS256" "HS384" "HS512" "RS256" "RS384" "RS512" "PS256" "PS384" "PS512" "ES256" "ES384" "EdDSA"))

(set_header
  direction: (identifier) @constant.builtin
  (#any-of? @constant.builtin "request" "response"))

(remove_header
  direction: (identifier) @constant.builtin
  (#any-of? @constant.builtin "request" "response"))

(from
  source: (identifier) @constant.builtin
  (#any-of? @constant.builtin "header" "query" "cookie"))

; Header, query and cookie names.
(set_header name: (identifier) @variable.member)
(remove_header name: (identifier) @variable.member)
(expect_header name: (identifier) @variable.member)
(from name: (identifier) @variable.member)

; `client_ip` where a reference may stand.
(setting
  name: "key"
  value: (identifier) @variable.builtin
  (#eq? @variable.builtin "client_ip"))

(require
  subject: (identifier) @variable.builtin
  (#eq? @variable.builtin "client_ip"))

(call
  argument: (identifier) @variable.builtin
  (#eq? @variable.builtin "client_ip"))

(call
  function: (identifier) @function.builtin
  (#any-of? @function.builtin "env" "file" "hash"))

(call
  function: (identifier) @function.call
  (#not-any-of? @function.call "env" "file" "hash"))

; ------------------------------------------------------------------ literals

(string) @string
(escape_sequence) @string.escape
(interpolation) @string.special

[
  (integer)
  (percent)
  (duration)
  (size)
  (rate)
  (status_range)
] @number

(address) @string.special.url
(path) @string.special.path
(reference) @variable.builtin
(star) @character.special

(path_param ["{" "}"] @punctuation.special)
(catch_all ["{" "*" "}"] @punctuation.special)
(path_param name: (identifier) @variable.parameter)
(catch_all name: (identifier) @variable.parameter)

; ------------------------------------------------------------------ punctuation

(block ["{" "}"] @punctuation.bracket)
(list ["[" "]"] @punctuation.bracket)
(call ["(" ")"] @punctuation.bracket)
"," @punctuation.delimiter
