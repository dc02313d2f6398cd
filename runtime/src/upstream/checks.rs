//! Active health checks: per upstream with a `health` block, every server
//! is asked `GET path` each `interval`; an answer within `timeout` whose
//! status is in `expect` passes. A server flips after `unhealthy`
//! consecutive failures or `healthy` consecutive passes. Also re-resolves
//! servers named by DNS with `resolve`.

use super::Upstream;
use crate::body::empty;
use hyper::{Request, Uri};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Starts the checkers of `upstreams`; they stop when `stop` flips (reload,
/// shutdown).
pub fn spawn(upstreams: &[Arc<Upstream>], stop: watch::Receiver<bool>) {
    for up in upstreams {
        if up.config.health.is_some() {
            tokio::spawn(check_loop(up.clone(), stop.clone()));
        }
        let resolve = up.config.servers.iter().filter_map(|s| s.resolve).min();
        if let Some(every) = resolve {
            tokio::spawn(resolve_loop(up.clone(), every.as_duration(), stop.clone()));
        }
    }
}

async fn check_loop(up: Arc<Upstream>, mut stop: watch::Receiver<bool>) {
    let Some(health) = up.config.health.clone() else { return };
    // A round starts every `interval` (the first at once); a round that
    // overruns it (checks wait up to `timeout`) delays the next.
    let mut ticks = tokio::time::interval(health.interval.as_duration().max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let set = up.set.load_full();
        let mut checks = Vec::with_capacity(set.servers.len());
        for b in &set.servers {
            let up = up.clone();
            let state = b.state.clone();
            // The server's own client: it dials this server, with the
            // upstream's TLS when it has `tls`; `Host` as its requests get
            // it under `host_header` (else the server's address).
            let (authority, client) = match &b.host_header {
                Some((_, name)) => (name.clone(), b.client.clone()),
                None => (b.authority.clone(), b.client.clone()),
            };
            let h = health.clone();
            checks.push(tokio::spawn(async move {
                let uri = Uri::builder()
                    .scheme("http")
                    .authority(authority)
                    .path_and_query(h.path.as_str())
                    .build();
                let passed = match uri.ok().and_then(|u| Request::get(u).body(empty()).ok()) {
                    Some(req) => match tokio::time::timeout(h.timeout.as_duration(), client.request(req)).await {
                        Ok(Ok(resp)) => {
                            let s = resp.status().as_u16();
                            s >= h.expect.0 && s <= h.expect.1
                        }
                        _ => false,
                    },
                    None => false,
                };
                if state.record_check(passed, h.healthy, h.unhealthy) {
                    if passed {
                        tracing::info!(upstream = %up.name, server = %state.label(), "server healthy again");
                    } else {
                        tracing::warn!(upstream = %up.name, server = %state.label(), "server unhealthy: out of rotation");
                    }
                }
            }));
        }
        for c in checks {
            let _ = c.await;
        }
    }
}

async fn resolve_loop(up: Arc<Upstream>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if up.refresh().await {
            tracing::info!(upstream = %up.name, "servers re-resolved");
        }
    }
}
