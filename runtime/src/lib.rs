//! The gw runtime: executes a compiled routing plan. It never sees `.gw`
//! text, only a [`gw_plan::Plan`]: it depends on the plan's crate, not on
//! the parser (its tests load plans built from `runtime/testdata/`).
//!
//! The modules follow the proxy's shape. A request's life: `listen`
//! accepts (limits, TLS/SNI) and serves the connection — the gateway's own
//! HTTP/1.1 loop, or hyper (HTTP/2, and the HTTP/1.1 requests the loop
//! hands over) → [`proxy`] looks the route up (`plan::router`) →
//! [`policy`] (auth, require, limit) → target: [`upstream`] picks a server
//! (balance, health) and sends the request on a pooled connection (the own
//! HTTP/1.1 client, hyper for `http2`), retrying another server on a
//! retryable failure | aggregate | respond | redirect → response
//! transforms → access log ([`log`]) and [`metrics`]. [`gateway`] binds the
//! listeners, reloads and shuts down. ARCHITECTURE.md has the map and the
//! rules between the modules.

pub mod body;
mod bufpool;
mod cache;
pub mod clock;
mod conn;
pub mod demo;
mod error;
mod fuzzing;
mod gateway;
mod listen;
mod loaded;
pub mod log;
pub mod metrics;
pub mod policy;
mod proxy;
pub mod request;
pub mod secrets;
mod text;
pub mod tls_client;
mod trace;
pub mod upstream;

pub use gateway::{Gateway, Inherited, Options};

/// Fuzzing entries, not an API (see their docs).
#[doc(hidden)]
pub use listen::h1server::fuzz_request_reader;
pub use listen::proxy_protocol::fuzz_proxy_header;
#[doc(hidden)]
pub use upstream::h1client::fuzz_response_reader;

#[cfg(test)]
mod sizes;
#[cfg(test)]
mod testdata;
