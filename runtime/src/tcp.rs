//! Layer 4: `listen ADDR tcp -> UPSTREAM` spreads raw TCP connections over
//! the upstream's servers with its strategy (the client IP is the hash key)
//! and health; a server that refuses the connection is marked by passive
//! ejection and the next one is tried.

use crate::server::{connect, ConnTracker};
use crate::state::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    upstream: usize,
    tracker: Arc<ConnTracker>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
            _ = shutdown.changed() => return,
        };
        let Ok((mut client, peer)) = accepted else { continue };
        let _ = client.set_nodelay(true);
        let rt = shared.current.load_full();
        let Some(up) = rt.upstreams.get(upstream).cloned() else {
            continue;
        };
        let guard = tracker.enter_tcp();
        let metrics = shared.metrics.clone();
        tokio::spawn(async move {
            let _guard = guard;
            metrics.connections_total.fetch_add(1, Ordering::Relaxed);
            let set = up.set.load_full();
            let key = peer.ip().to_string().into_bytes();
            let mut tried = Vec::new();
            let timeout = up.config.connect_timeout.as_duration();
            loop {
                let Some(i) = set.balancer.pick(&set.states, Some(&key), &tried) else {
                    tracing::warn!(upstream = %up.name, "tcp: no usable server");
                    return;
                };
                tried.push(i);
                let backend = &set.backends[i];
                match connect(backend.addr, timeout).await {
                    Ok(mut server) => {
                        backend.state.record_result(true, up.eject);
                        let _ = server.set_nodelay(true);
                        let _in_flight = backend.state.start();
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                    Err(e) => {
                        backend.state.record_result(false, up.eject);
                        tracing::debug!(upstream = %up.name, server = %backend.addr, error = %e, "tcp: connect failed");
                    }
                }
            }
        });
    }
}
