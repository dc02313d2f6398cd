//! The one integration-test binary (as casey/just does): every test of the
//! `gwc` binary, the compiler and a live gateway builds into it once.
//! `support` runs the real binary in a temp dir; `live` starts a gateway
//! in-process with upstreams on 127.0.0.1:0; `serve_harness` runs `gwc serve`.

mod balance;
mod checks;
mod cli;
mod contract;
mod examples;
mod explain;
mod fuzz_corpus;
mod h1_robustness;
mod h1_server;
mod live;
mod plan;
mod policy;
mod policy_access;
mod policy_aggregate;
mod policy_attacks;
mod policy_cors;
mod policy_jwks;
mod policy_limits;
mod policy_redis;
mod property;
mod proxy;
mod proxy_balance;
mod proxy_ejection;
mod proxy_failures;
mod proxy_headers;
mod proxy_pool;
mod proxy_stream;
mod proxy_support;
mod robustness;
mod router_differential;
mod serve_admin;
mod serve_harness;
mod serve_health;
mod serve_limits;
mod serve_listeners;
mod serve_process;
mod serve_reload;
mod snapshots;
mod support;
mod upstream_h1;
