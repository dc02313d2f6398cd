//! Every code snippet of the language contract (LANGUAGE.md), held here
//! verbatim: each must parse, and lowering must find no syntax or literal
//! error in it (names may be unresolved: the snippets are fragments).

use gw_compiler::host::MemoryHost;

const SNIPPETS: &[&str] = &[
    r####"import "common/upstreams.gw"     # another file; names are shared, cycles are an error

listen :8080                     # plain HTTP/1.1 and h2c
listen :8443 tls {               # HTTPS (rustls), HTTP/1.1 and h2 by ALPN
  cert "certs/api.crt" key "certs/api.key"              # default certificate
  cert "certs/admin.crt" key "certs/admin.key" sni "admin.example.com"
}
listen :5432 tcp -> pg           # layer-4: raw TCP spread over upstream `pg`

admin 127.0.0.1:9901             # /healthz, /metrics (Prometheus), /plan

limits {                         # server-wide safety bounds; these are defaults
  header_timeout 10s             # slow clients are cut off
  idle_timeout   60s
  max_header_size 16KiB          # 431 beyond
  max_body_size   10MiB          # 413 beyond
  max_connections 10000
}
"####,
    r####"upstream login {
  balance round_robin            # round_robin (smooth weighted) | least_conn |
                                 # random | p2c (power of two choices, least outstanding) |
                                 # ip_hash | hash(header.x-user-id) | hash(claim.sub) |
                                 # hash(query.cart)   (consistent hashing, ring or Maglev)
  server 127.0.0.1:9001
  server 127.0.0.1:9002 weight 3
  server 127.0.0.1:9003 backup   # only used when no primary is healthy
  server orders.internal:80 resolve 30s   # DNS: every address it resolves to is a server

  health {                       # active checks; a server starts healthy
    path     /healthz
    interval 2s
    timeout  500ms
    expect   200..299
    unhealthy 3                  # consecutive failures to mark down
    healthy   2                  # consecutive passes to mark up
  }
  eject {                        # passive checks (outlier detection)
    errors 5                     # consecutive 5xx / connect errors
    for    30s                   # ejected this long, doubling on repeat
  }
  connect_timeout 1s
  timeout  30s                   # whole request; a route may override
  retry 2 on connect_error, 502, 503, 504 budget 20%   # only idempotent methods unless the route says so;
                                 # the budget caps retries at 20% of the requests in flight (default 20%)
  pool { max_idle 64 idle_timeout 90s }
  http2                          # speak h2 to these servers (default HTTP/1.1)
}
"####,
    r####"auth users jwt {
  issuer   "https://auth.example.com"
  audience "food-api"
  algorithms RS256, ES256        # one family per auth block; mixing HS* with RS*/ES* is an error
  jwks file("keys/jwks.json")    # or: public_key file("keys/rs256.pem") | secret env("JWT_SECRET") for HS*
                                 # or: jwks url "https://auth.example.com/.well-known/jwks.json" refresh 10m
                                 #     (refetched early, at most once a minute, when a token names an unknown kid;
                                 #      the last good key set keeps serving if a fetch fails)
  leeway 30s
  from header authorization bearer   # default; also: from query access_token | from cookie session
}

auth partners api_key {
  from header x-api-key
  keys file("keys/partners.txt") # one key per line, optionally `key name`; compared in constant time
                                 # or inline: keys "k-123", "k-456"
}
"####,
    r####"limit per_user { rate 100/min burst 20 key claim.sub }
limit per_ip   { rate 10/s   burst 10 key client_ip }
limit global   { rate 5000/s key none }

# One budget shared by every gateway instance, kept in Redis (atomic, GCRA):
store shared redis "redis://127.0.0.1:6379" { timeout 50ms on_error allow }   # allow | deny when Redis is down
limit per_key { rate 1000/min burst 50 key header.x-api-key store shared }
"####,
    r####"route POST /login -> login {
  limit per_ip
}

route /payments/{*rest} -> payment {
  auth users
  require claim.scope has "payments:write"   # authorisation; 403 when it fails
  limit per_user
  strip_prefix /payments
  timeout 3s
}

route GET,HEAD /orders/{id} -> orders {
  auth users
  require claim.role in ["customer", "staff"]
  set request header x-user-id "{claim.sub}"
  remove request header cookie
  set response header cache-control "no-store"
  remove response header server
}

route GET /orders/{id} host "admin.example.com" -> orders { auth partners }

route GET /me/summary {          # response aggregation: fan out, merge JSON
  auth users
  aggregate {
    profile login  GET "/users/{claim.sub}"
    orders  orders GET "/orders?user={claim.sub}" optional   # null on failure instead of 502
    timeout 2s
  }
}

route /internal/{*rest} { respond 404 }                  # hide internal services
route GET /old/{*rest} { redirect 301 "/v2/{param.rest}" }

route GET /{*rest} -> web { cors { origins "https://app.example.com" methods GET, POST credentials } }

route /payments/{*rest} -> payment { retry 1 on connect_error }   # route-level retry / timeout override the
                                                                  # upstream's and opt every method in (GW0502 warns)
"####,
    r####"test "the food court routes" {
  GET  /orders/42                                -> orders
  GET  /orders/42 host "admin.example.com"       -> orders
  POST /login                                    -> login
  GET  /internal/metrics                         -> 404
  DELETE /login                                  -> 405
  GET  /payments/x header x-request-id "t-1"     -> payment
}
"####,
];

#[test]
fn there_are_six_snippets() {
    assert_eq!(SNIPPETS.len(), 6);
}

#[test]
fn every_contract_snippet_parses() {
    for (i, s) in SNIPPETS.iter().enumerate() {
        if let Err(e) = gw_grammar::parse_file(s) {
            panic!("snippet {i} does not parse:\n{e}\n{s}");
        }
    }
}

#[test]
fn every_contract_snippet_lowers_without_syntax_or_literal_errors() {
    let syntax = ["GW0001", "GW0002", "GW0003", "GW0103", "GW0105", "GW0106"];
    for (i, s) in SNIPPETS.iter().enumerate() {
        let host = MemoryHost::new().file("common/upstreams.gw", "upstream shared { server 127.0.0.1:1 }");
        let c = gw_compiler::compile_text(&host, "snippet.gw", s);
        let bad: Vec<_> = c
            .diagnostics
            .iter()
            .filter(|d| syntax.contains(&d.code.as_str()))
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect();
        assert!(bad.is_empty(), "snippet {i}: {bad:#?}");
    }
}
