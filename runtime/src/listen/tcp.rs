//! Layer 4: `listen ADDR tcp -> UPSTREAM` spreads raw TCP connections over
//! the upstream's servers with its strategy and health (`ip_hash` hashes the
//! client address; the other hash keys are HTTP data, so those upstreams go
//! round robin here). A server that refuses the connection or does not
//! accept it within `connect_timeout` counts for passive ejection and the
//! next one is tried. Bytes are copied both ways until either side closes,
//! or nothing moves for `idle_timeout`. Connections count towards
//! `max_connections`. A `tls` upstream's connections are TLS (gw
//! originates it, verified as for HTTP; the client's bytes go inside), made
//! by the server's own dialer.

use super::admit;
use crate::conn::{Activity, Clocks, ConnTracker};
use crate::loaded::Shared;
use crate::upstream::health::Outcome;
use crate::upstream::stream::DialError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    upstream: String,
    tracker: Arc<ConnTracker>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let admitted = tokio::select! {
            a = admit(&listener, &shared, &tracker) => a,
            _ = stop.changed() => return,
            _ = shutdown.changed() => return,
        };
        let Some((client, peer, guard)) = admitted else {
            continue;
        };
        let shared = shared.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let _guard = guard;
            proxy_connection(client, peer, &shared, &upstream).await;
        });
    }
}

async fn proxy_connection(client: TcpStream, peer: std::net::SocketAddr, shared: &Shared, upstream: &str) {
    let loaded = shared.current.load_full();
    // By name: the plan a reload swapped in may number its upstreams anew.
    let Some(up) = loaded.upstreams.iter().find(|u| u.name == upstream).cloned() else {
        return;
    };
    let idle = loaded
        .plan
        .limits
        .idle_timeout
        .as_duration()
        .max(Duration::from_millis(1));
    drop(loaded);
    let set = up.set.load_full();
    let key = up.ip_hash.then(|| peer.ip().to_string().into_bytes());
    let mut tried = Vec::new();
    let (mut stream, server) = loop {
        let Some(i) = set.balancer.pick(&set.states, key.as_deref(), &tried) else {
            shared.metrics.reject(crate::metrics::Rejection::NoServer);
            tracing::debug!(upstream = %up.name, client = %peer, "tcp: no usable server");
            return;
        };
        tried.push(i);
        let Some(server) = set.servers.get(i) else {
            return;
        };
        server.state.metrics.requests.fetch_add(1, Ordering::Relaxed);
        match server.h1.dialer().dial().await {
            Ok(stream) => {
                set.record(i, Outcome::Ok, &up);
                break (stream, server);
            }
            Err(e) => {
                set.record(i, Outcome::Unreachable, &up);
                match e {
                    DialError::TimedOut => server.state.metrics.error(crate::metrics::UpstreamError::Timeout),
                    DialError::Io(_) => server.state.metrics.error(crate::metrics::UpstreamError::Connect),
                    // Counted by the dialer, which logged why.
                    DialError::Tls => {}
                }
                if tried.len() > 1 {
                    up.metrics.retries.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(upstream = %up.name, server = %server.addr, error = ?e, "tcp: connect failed");
            }
        }
    };
    let _in_flight = server.state.start();
    let clocks = Clocks::new();
    let mut client = Activity {
        inner: client,
        clocks: clocks.clone(),
        _guard: None,
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut stream);
    tokio::pin!(copy);
    loop {
        let quiet_at = clocks
            .last
            .load(Ordering::Relaxed)
            .saturating_add(idle.as_millis() as u64);
        let nap = Duration::from_millis(quiet_at.saturating_sub(crate::clock::now_millis()).max(1));
        tokio::select! {
            _ = copy.as_mut() => return,
            _ = tokio::time::sleep(nap) => {
                let quiet = crate::clock::now_millis().saturating_sub(clocks.last.load(Ordering::Relaxed));
                if quiet >= idle.as_millis() as u64 {
                    tracing::debug!(upstream = %up.name, client = %peer, "tcp: idle_timeout; closing");
                    return;
                }
            }
        }
    }
}
