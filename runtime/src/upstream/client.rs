//! hyper-util's pooled client, for what the gateway's own HTTP/1.1 client
//! does not carry: proxied requests to `http2` servers (one multiplexed
//! connection per server), aggregate parts and active health checks. Each
//! server has a client whose connector always dials that server through its
//! [`Dialer`] (with the upstream's TLS), whatever the request's URI says,
//! so that a request can carry the client's host as `:authority` and still
//! reach the server chosen.

use super::stream::{Dialer, Stream};
use super::{SendError, Server, UpstreamBody};
use crate::body::Body;
use gw_plan as plan;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Dials one server through its [`Dialer`] (TCP, then TLS when the
/// upstream has `tls`), within `connect_timeout`; the error is then
/// `io::ErrorKind::TimedOut`.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    to: Arc<Dialer>,
}

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<Stream>>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Connecting {
        let to = self.to.clone();
        Box::pin(async move { Ok(TokioIo::new(to.dial().await?)) })
    }
}

pub(crate) type HttpClient = Client<Connector, Body>;

/// A pooled client for `config`'s server that `to` dials.
pub(crate) fn http_client(config: &plan::Upstream, to: Arc<Dialer>) -> HttpClient {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(config.pool.max_idle as usize)
        .pool_idle_timeout(config.pool.idle_timeout.as_duration())
        .http2_only(config.http2);
    if config.http2 {
        builder.http2_keep_alive_interval(Some(Duration::from_secs(30)));
    }
    builder.build(Connector { to })
}

impl Server {
    /// Sends a proxied request to this `http2` server through its client
    /// (`:authority` from the URI); an HTTP/1.1 server's go through its pool
    /// (`h1client::send`, origin-form). The response body holds the
    /// connection until it is done.
    pub(crate) async fn send_h2(&self, req: Request<Body>) -> Result<Response<UpstreamBody>, SendError> {
        match self.client.request(req).await {
            Ok(r) => Ok(r.map(UpstreamBody::H2)),
            Err(e) if e.is_connect() => {
                let mut timed_out = false;
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(s) = source {
                    if let Some(io) = s.downcast_ref::<std::io::Error>() {
                        timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
                    }
                    source = s.source();
                }
                Err(SendError::Connect { timed_out })
            }
            // The multiplexed connection may be older than this request: a
            // broken one is no sign against the server by itself.
            Err(e) if broke_before_answer(&e) => Err(SendError::Reset { fresh: false }),
            Err(e) => Err(SendError::Exchange(Box::new(e))),
        }
    }
}

/// Did the `http2` exchange fail because its connection closed or reset
/// before a response head (rather than on an answer it could not read)?
fn broke_before_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            ) {
                return true;
            }
        }
        source = s.source();
    }
    false
}
