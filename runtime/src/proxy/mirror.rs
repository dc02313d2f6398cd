//! A route's `mirror UPSTREAM PERCENT`: a copy of that share of the route's
//! requests — those that passed its policies, as forwarded (transforms,
//! `X-Forwarded-*`, the upstream path) — goes to another upstream on a task
//! of its own. The copy's answer is read and discarded; whatever happens to
//! it (no server, a refused connect, a timeout) never reaches the client,
//! whose request goes on as if there were no mirror.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] copies of one route in flight (more
//! are dropped and counted); a body is copied only when it is whole within
//! [`BODY_LIMIT`] bytes (buffered first, as a retry's replay is), else the
//! request goes alone and the copy is counted as skipped — a copy with a
//! cut body would be another request. Upgrades are never copied. The share
//! is taken by counting (10%: every tenth request), not by chance.

use super::forward::{answered, classify, request_for, Answer, Failure, Forward};
use super::ClientStream;
use crate::body::{boxed, buffer, empty, full, Body, Buffered, ClientBody, ClientBodyError};
use crate::error::ErrorKind;
use crate::loaded::{LoadedPlan, MirrorState};
use crate::metrics::Metrics;
use crate::upstream::health::Outcome;
use crate::upstream::Upstream;
use http_body_util::BodyExt;
use hyper::http::uri::{Authority, PathAndQuery};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// A request's forwarding: the plain [`Forward::run`] or, on a route
    /// with `mirror`, the boxed [`run`]. One future, so that the request's
    /// future has one await point for both (a second one would keep the
    /// locals live across both apart from the other states, 80 bytes more).
    #[project = ForwardingProj]
    pub(super) enum Forwarding<P, M> {
        Plain { #[pin] f: P },
        Mirrored { #[pin] f: M },
    }
}

impl<T, P: Future<Output = T>, M: Future<Output = T>> Future for Forwarding<P, M> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            ForwardingProj::Plain { f } => f.poll(cx),
            ForwardingProj::Mirrored { f } => f.poll(cx),
        }
    }
}

/// Copies of one route in flight at most; more are dropped (counted in
/// `gw_mirror_copies_total{outcome="dropped"}`).
pub(super) const MAX_IN_FLIGHT: usize = 64;

/// Bodies up to this size are copied (the retries' replay bound).
pub(super) const BODY_LIMIT: usize = super::forward::REPLAY_LIMIT;

/// A copy to make: where it goes and what it counts against.
pub(super) struct Mirrored {
    up: Arc<Upstream>,
    slot: Slot,
    metrics: Arc<Metrics>,
}

/// A copy's place among its route's copies in flight.
struct Slot(Arc<MirrorState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the request `n` (counted from 0) is one of `percent` per cent:
/// the share is spread evenly, one in ten for 10%.
fn chosen(n: u64, percent: u32) -> bool {
    let p = u64::from(percent.min(100));
    n.wrapping_add(1).wrapping_mul(p) / 100 != n.wrapping_mul(p) / 100
}

/// The copy to make of this request of route `index`, if its share and the
/// in-flight bound allow one (and the request is not an upgrade).
fn choose(loaded: &LoadedPlan, index: usize, metrics: &Arc<Metrics>, upgrade: bool) -> Option<Mirrored> {
    let m = loaded.plan.routes.get(index)?.mirror.as_ref()?;
    let state = loaded.mirrors.get(index)?.as_ref()?;
    let up = loaded.upstreams.get(m.upstream)?;
    if upgrade || !chosen(state.seen.fetch_add(1, Ordering::Relaxed), m.percent) {
        return None;
    }
    if state.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
        state.in_flight.fetch_sub(1, Ordering::Relaxed);
        count(&metrics.mirror.dropped);
        return None;
    }
    Some(Mirrored {
        up: up.clone(),
        slot: Slot(state.clone()),
        metrics: metrics.clone(),
    })
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Forwards a request of route `index` as [`Forward::run`] does and, when
/// [`choose`] picks it, sends a copy of it on its own task (the body
/// buffered first, when it may be copied).
pub(super) async fn run<B: ClientStream>(
    forward: &Forward<'_>,
    (loaded, index, upgrade, metrics): (&LoadedPlan, usize, bool, &Arc<Metrics>),
    head: hyper::http::request::Parts,
    body: B,
    declared: Option<u64>,
) -> Result<Answer, Failure> {
    let Some(copy) = choose(loaded, index, metrics, upgrade) else {
        return forward.run(Some(head), body, declared).await;
    };
    if body.is_end_stream() {
        spawn(copy, &head, forward.path.clone(), empty());
        return forward.run(Some(head), body, declared).await;
    }
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        count(&copy.metrics.mirror.skipped);
        return forward.run(Some(head), body, declared).await;
    }
    let client_body = ClientBody::new(body, forward.max_body);
    let buffered = tokio::time::timeout(forward.timeout(), buffer(client_body, BODY_LIMIT)).await;
    match buffered {
        Ok(Ok(Buffered::Whole(bytes))) => {
            spawn(copy, &head, forward.path.clone(), full(bytes.clone()));
            let declared = Some(bytes.len() as u64);
            forward.run(Some(head), full(bytes), declared).await
        }
        Ok(Ok(Buffered::Partial(rest))) => {
            count(&copy.metrics.mirror.skipped);
            forward.run(Some(head), boxed(rest), declared).await
        }
        Ok(Err(ClientBodyError::TooLarge)) => Err((ErrorKind::BodyTooLarge, None)),
        Ok(Err(ClientBodyError::Failed(_))) => Err((ErrorKind::ClientBody, None)),
        Err(_) => Err((ErrorKind::ClientTimeout, None)),
    }
}

/// Sends the copy on a task of its own.
fn spawn(copy: Mirrored, head: &hyper::http::request::Parts, path: PathAndQuery, body: Body) {
    let mut parts = head.clone();
    parts.extensions.clear();
    tokio::spawn(send(copy, parts, path, body));
}

/// One copy: a server of the mirror upstream picked by its balancer, the
/// exchange under the upstream's `timeout`, the answer read to its end
/// (so that the connection can be pooled) and discarded. The outcome counts
/// for the server's passive health as any exchange does.
async fn send(copy: Mirrored, parts: hyper::http::request::Parts, path: PathAndQuery, body: Body) {
    let Mirrored { up, slot, metrics } = copy;
    let set = up.set.load_full();
    let timeout = up.config.timeout.as_duration();
    let Some((i, server)) = set
        .balancer
        .pick_hashed(&set.states, None, &[])
        .and_then(|i| Some((i, set.servers.get(i)?)))
    else {
        count(&metrics.mirror.failed);
        return;
    };
    let authority = match up.config.http2 {
        true => parts
            .headers
            .get(hyper::header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok()),
        false => None,
    };
    let Some(req) = request_for(&up, &path, server, parts, body, authority.as_ref()) else {
        count(&metrics.mirror.failed);
        return;
    };
    let in_flight = server.state.start();
    let result = if up.config.http2 {
        tokio::time::timeout(timeout, server.send_h2(req)).await
    } else {
        tokio::time::timeout(timeout, server.send_h1(req)).await
    };
    match result {
        Ok(Ok(resp)) => {
            set.record(i, answered(resp.status().as_u16()), &up);
            count(&metrics.mirror.answered);
            let mut body = resp.into_body();
            let drain = async { while let Some(Ok(_)) = body.frame().await {} };
            let _ = tokio::time::timeout(timeout, drain).await;
        }
        Ok(Err(e)) => {
            set.record(i, classify(&e).1, &up);
            count(&metrics.mirror.failed);
        }
        Err(_) => {
            set.record(i, Outcome::Failed, &up);
            count(&metrics.mirror.failed);
        }
    }
    drop(in_flight);
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::chosen;

    #[test]
    fn the_share_is_spread_evenly() {
        for percent in [1, 3, 10, 33, 50, 99, 100] {
            let n = (0..1000).filter(|&n| chosen(n, percent)).count();
            assert_eq!(n, percent as usize * 10, "{percent}%");
        }
        // 10%: one in every ten, never two in a row.
        let picks: Vec<u64> = (0..30).filter(|&n| chosen(n, 10)).collect();
        assert_eq!(picks, [9, 19, 29]);
    }
}
