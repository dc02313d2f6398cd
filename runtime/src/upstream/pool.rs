//! One server's idle HTTP/1.1 connections: each is just its socket and a
//! timestamp (no task, no buffers), on a stack (most recently used first, at
//! most `pool { max_idle }`, none older than `idle_timeout`), taken and given
//! back with one short lock and no hashing. With several worker threads
//! ([`set_workers`]) each thread has its own stack, holding its share of
//! `max_idle` (rounded up), so a connection is reused by the thread whose
//! request finished with it and no request wakes another thread.
//!
//! The pool knows nothing of HTTP: the client (`h1client`) takes a
//! connection, drives its exchange, and parks it again when the answer has
//! been read to its end, and it says whether an idle socket is still usable
//! (a connection the server closed while idle is noticed as it is taken).

use super::stream::{DialError, Dialer, Stream};
use super::SendError;
use crate::clock::now_millis;
use gw_plan as plan;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// An idle HTTP/1.1 connection and when it became idle ([`now_millis`]).
struct Idle {
    stream: Stream,
    since: u64,
}

static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// How many worker threads serve requests (each gets its own idle stacks
/// in pools built from now on). The default is 1.
pub fn set_workers(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

/// Marks the calling thread as worker `i` (0, the default, is the thread
/// the gateway was started on).
pub fn set_worker_index(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// One server's HTTP/1.1 connections (see the module docs).
pub struct H1Pool {
    /// The server's address, `connect_timeout` and TLS.
    dialer: Arc<Dialer>,
    max_idle: usize,
    idle_timeout: u64,
    /// One stack per worker thread.
    idle: Vec<Mutex<Vec<Idle>>>,
    /// A task closes connections idle past `idle_timeout` (started with the
    /// first idle connection, ends with the pool).
    reaping: AtomicBool,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("addr", &self.dialer.addr)
            .finish_non_exhaustive()
    }
}

impl H1Pool {
    pub(crate) fn new(config: &plan::Upstream, dialer: Arc<Dialer>) -> H1Pool {
        H1Pool {
            dialer,
            // `max_idle` counts per server: each thread keeps its share.
            max_idle: (config.pool.max_idle as usize).div_ceil(WORKERS.load(Ordering::Relaxed).max(1)),
            idle_timeout: config.pool.idle_timeout.0.max(1),
            idle: (0..WORKERS.load(Ordering::Relaxed))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            reaping: AtomicBool::new(false),
        }
    }

    /// The calling thread's stack.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let i = WORKER.with(Cell::get) % self.idle.len().max(1);
        lock_stack(&self.idle[i])
    }

    /// The most recently used idle connection that is still fresh and that
    /// `usable` accepts (the client's check that it is still open).
    pub(crate) fn take(&self, usable: impl Fn(&mut Stream) -> bool) -> Option<Stream> {
        let now = now_millis();
        let mut idle = self.lock();
        while let Some(mut c) = idle.pop() {
            if now.saturating_sub(c.since) < self.idle_timeout && usable(&mut c.stream) {
                return Some(c.stream);
            }
        }
        None
    }

    /// Parks a connection whose exchange ended cleanly (its body read to the
    /// end, both sides willing to keep it), unless the stack is full. The
    /// first one starts the reaper, which closes what `usable` refuses.
    pub(crate) fn park(self: Arc<Self>, stream: Stream, usable: fn(&mut Stream) -> bool) {
        if self.max_idle == 0 {
            return;
        }
        {
            let mut idle = self.lock();
            if idle.len() >= self.max_idle {
                return; // dropped: the connection closes
            }
            idle.push(Idle {
                stream,
                since: now_millis(),
            });
        }
        if !self.reaping.swap(true, Ordering::Relaxed) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(&self), self.idle_timeout, usable));
            }
        }
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.dialer.addr
    }

    /// How the server's connections are made.
    pub(crate) fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Dials the server (and shakes hands, with `tls`).
    pub(crate) async fn connect(&self) -> Result<Stream, SendError> {
        match self.dialer.dial().await {
            Ok(s) => Ok(s),
            Err(DialError::TimedOut) => Err(SendError::Connect { timed_out: true }),
            Err(DialError::Io(_) | DialError::Tls) => Err(SendError::Connect { timed_out: false }),
        }
    }
}

/// Closes the connections of `pool` idle for longer than `timeout` ms, or
/// that `usable` refuses.
async fn reap(pool: Weak<H1Pool>, timeout: u64, usable: fn(&mut Stream) -> bool) {
    let every = Duration::from_millis((timeout / 2).clamp(50, 30_000));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = now_millis();
        for stack in &pool.idle {
            let stale: Vec<Idle> = {
                let mut idle = lock_stack(stack);
                let (keep, stale) = std::mem::take(&mut *idle)
                    .into_iter()
                    .map(|mut c| {
                        let fresh = now.saturating_sub(c.since) < timeout && usable(&mut c.stream);
                        (c, fresh)
                    })
                    .partition::<Vec<_>, _>(|(_, fresh)| *fresh);
                *idle = keep.into_iter().map(|(c, _)| c).collect();
                stale.into_iter().map(|(c, _)| c).collect()
            };
            drop(stale);
        }
    }
}

fn lock_stack(stack: &Mutex<Vec<Idle>>) -> std::sync::MutexGuard<'_, Vec<Idle>> {
    stack.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
