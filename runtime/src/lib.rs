//! The gw runtime: executes a compiled routing plan. It never sees `.gw`
//! text, only a [`gw_compiler::plan::Plan`].
//!
//! A request's life: [`server`] accepts (limits, TLS/SNI) → the gateway's
//! own HTTP/1.1 loop (`h1server`) or hyper (HTTP/2, and the HTTP/1.1
//! requests the loop hands over) parses →
//! [`proxy`] looks the route up (`plan::router`) → [`policy`] (auth,
//! require, limit) → target: [`balance`] picks a server using [`health`]
//! state → [`upstream`] client (the own HTTP/1.1 `h1client`, hyper for `http2`; pooled) streams both ways, retrying another
//! server on a retryable failure | [`aggregate`] | respond | redirect →
//! response transforms → access log and [`metrics`].

pub mod aggregate;
pub mod balance;
pub mod body;
mod bufpool;
pub mod demo;
pub mod error;
pub mod h1client;
mod h1server;
pub mod health;
pub mod health_check;
pub mod logbuf;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod request;
pub mod secrets;
pub mod server;
pub mod state;
pub mod tcp;
mod text;
pub mod upstream;

pub use server::{Gateway, Options};

/// Fuzzing entry, not an API (see its docs).
#[doc(hidden)]
pub use h1server::fuzz_request_reader;
