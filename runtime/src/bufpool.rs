//! Read buffers recycled per thread.
//!
//! Every request needs a read buffer on each side: the HTTP/1.1 loop's for
//! the client's head ([`CLIENT`], 4 KiB) and the upstream client's for the
//! answer ([`UPSTREAM`], 8 KiB). Taken from malloc, each cost a large
//! allocation and free per request (glibc serves blocks of that size from
//! its bins, not from its per-thread cache) and the allocation of the shared
//! header `bytes` adds when a buffer is first split; a recycled buffer costs
//! neither, and is warm in the cache.
//!
//! A buffer is given back when its owner is done with it, and is reused only
//! once nothing else refers to its memory: the head and body frames split
//! off it share that memory, and [`BytesMut::try_reclaim`] says when the
//! last of them is gone. A buffer still shared when it is taken is let go
//! (its memory is freed with the last frame). A connection waiting for its
//! next request holds no buffer. Each thread keeps at most [`KEEP`] of each
//! kind: enough for every request in flight at 256 connections a thread,
//! whose answers come back in bursts of a hundred and more (with 64 kept,
//! most of a burst went back to malloc and came out of it again). What is
//! kept is what the busiest moment used, and never more than about 9 MiB a
//! thread (512 of each: 4 and 8 KiB buffers, 6 KiB futures, header maps).
//!
//! Header maps are recycled the same way ([`header_map`], [`give_header_map`]):
//! the request's map once its head is encoded for the upstream, the answer's
//! once its head is written to the client. A map is two allocations; a
//! recycled one keeps its memory (`HeaderMap::clear`).
//!
//! So is the memory of the request's future ([`recycled`]): the HTTP/1.1
//! loop boxes it so that a waiting connection does not carry it, and a box of
//! its size (about 6 KiB) is a costly allocation each request; a finished
//! future's box takes the next one in place (`Pin::set`).

use bytes::BytesMut;
use hyper::header::HeaderMap;
use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::LocalKey;

/// Buffers kept per thread and kind.
pub const KEEP: usize = 512;

/// The size of a client connection's read buffer ([`CLIENT`]): a request
/// head and a small body usually come whole in one read.
pub const CLIENT_SIZE: usize = 4 * 1024;

/// The size of an upstream connection's read buffer ([`UPSTREAM`]).
pub const UPSTREAM_SIZE: usize = 8 * 1024;

/// A kind of buffer: its size and its threads' free lists.
pub struct Pool {
    size: usize,
    free: &'static LocalKey<RefCell<Vec<BytesMut>>>,
}

thread_local! {
    static CLIENT_FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static UPSTREAM_FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    /// Boxes of finished futures (each a `Pin<Box<F>>` for its own `F`).
    static FUTURES: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// `fut` in a box, a recycled one when this thread has one of its type; the
/// box goes back when the future finishes.
pub fn recycled<F: Future + 'static>(fut: F) -> Recycled<F> {
    let kept = FUTURES.with(|futures| futures.try_borrow_mut().ok()?.pop());
    let boxed = match kept.map(|b| b.downcast::<Pin<Box<F>>>()) {
        Some(Ok(mut boxed)) => {
            boxed.set(fut);
            *boxed
        }
        // None kept, or one of another type (let go).
        _ => Box::pin(fut),
    };
    Recycled { fut: Some(boxed) }
}

/// A boxed future whose box is kept for the next one when it finishes (and
/// freed if it is dropped before).
pub struct Recycled<F: Future + 'static> {
    fut: Option<Pin<Box<F>>>,
}

impl<F: Future + 'static> Future for Recycled<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(fut) = self.fut.as_mut() else {
            // Polled after it finished: it never will again.
            return Poll::Pending;
        };
        let out = std::task::ready!(fut.as_mut().poll(cx));
        if let Some(done) = self.fut.take() {
            FUTURES.with(|futures| {
                if let Ok(mut futures) = futures.try_borrow_mut() {
                    if futures.len() < KEEP {
                        futures.push(Box::new(done));
                    }
                }
            });
        }
        Poll::Ready(out)
    }
}

/// Maps with more room than this (for headers) are not kept.
const MAP_CAPACITY: usize = 128;

/// An empty header map with room for `capacity` headers: a recycled one
/// when this thread has one free.
pub fn header_map(capacity: usize) -> HeaderMap {
    let recycled = MAPS.with(|maps| maps.try_borrow_mut().ok()?.pop());
    match recycled {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Gives a header map back: emptied now (what its values held is let go),
/// kept for reuse if the thread has room.
pub fn give_header_map(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > MAP_CAPACITY {
        return;
    }
    map.clear();
    MAPS.with(|maps| {
        if let Ok(mut maps) = maps.try_borrow_mut() {
            if maps.len() < KEEP {
                maps.push(map);
            }
        }
    });
}

/// Client request heads (and small bodies read with them).
pub static CLIENT: Pool = Pool {
    size: CLIENT_SIZE,
    free: &CLIENT_FREE,
};

/// Upstream answers: the head and the body's bytes as they come.
pub static UPSTREAM: Pool = Pool {
    size: UPSTREAM_SIZE,
    free: &UPSTREAM_FREE,
};

impl Pool {
    /// An empty buffer with room for at least the pool's size: a
    /// recycled one when this thread has one free.
    pub fn take(&self) -> BytesMut {
        let recycled = self.free.with(|free| {
            let mut free = free.try_borrow_mut().ok()?;
            let mut buf = free.pop()?;
            // Unique again (no frame split off it is alive): the whole
            // allocation is the buffer's once more.
            buf.try_reclaim(self.size).then_some(buf)
        });
        recycled.unwrap_or_else(|| BytesMut::with_capacity(self.size))
    }

    /// Gives `buf` back for reuse. What it holds is dropped; a buffer that
    /// never allocated, or one beyond what the thread keeps, is let go.
    pub fn give(&self, mut buf: BytesMut) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        self.free.with(|free| {
            if let Ok(mut free) = free.try_borrow_mut() {
                if free.len() < KEEP {
                    free.push(buf);
                }
            }
        });
    }

    /// Buffers this thread keeps free now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.with(|free| free.borrow().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts from an empty pool whatever ran on this thread before.
    fn drained(pool: &Pool) -> &Pool {
        while pool.kept() > 0 {
            drop(pool.take());
        }
        pool
    }

    #[test]
    fn a_buffer_given_back_is_taken_again_with_its_memory() {
        let mut buf = drained(&CLIENT).take();
        assert!(buf.capacity() >= CLIENT.size);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let at = buf.as_ptr();
        let head = buf.split_to(18).freeze();
        drop(head);
        CLIENT.give(buf);
        assert_eq!(CLIENT.kept(), 1);
        let again = CLIENT.take();
        assert_eq!(again.as_ptr(), at, "the same allocation, from its start");
        assert!(again.is_empty());
        assert!(again.capacity() >= CLIENT.size);
        assert_eq!(CLIENT.kept(), 0);
    }

    #[test]
    fn a_buffer_still_shared_is_not_reused() {
        let mut buf = drained(&UPSTREAM).take();
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\nbody");
        let frame = buf.split_to(23).freeze();
        UPSTREAM.give(buf);
        // The frame still refers to the memory: a fresh buffer comes instead.
        let other = UPSTREAM.take();
        assert!(other.capacity() >= UPSTREAM.size);
        assert!(!std::ptr::eq(other.as_ptr(), frame.as_ptr()));
        assert_eq!(&frame[..], b"HTTP/1.1 200 OK\r\n\r\nbody");
    }

    #[test]
    fn header_maps_come_back_empty_with_their_room() {
        while MAPS.with(|m| m.borrow().len()) > 0 {
            drop(header_map(0));
        }
        let mut map = header_map(8);
        assert!(map.capacity() >= 8);
        map.insert("x-a", "1".parse().unwrap());
        map.append("x-a", "2".parse().unwrap());
        let room = map.capacity();
        give_header_map(map);
        let again = header_map(4);
        assert!(again.is_empty(), "no header of the last message is left");
        assert_eq!(again.capacity(), room);
        // A map grown past what is kept is let go.
        let mut big = header_map(0);
        big.reserve(MAP_CAPACITY * 2);
        give_header_map(big);
        assert_eq!(MAPS.with(|m| m.borrow().len()), 0);
    }

    #[test]
    fn a_finished_future_s_box_takes_the_next_one() {
        async fn job(n: u64) -> u64 {
            let big = [n; 64];
            std::future::ready(()).await;
            big.iter().sum()
        }
        FUTURES.with(|f| f.borrow_mut().clear());
        let first = recycled(job(1));
        let at = first.fut.as_ref().map(|b| &**b as *const _ as usize);
        assert_eq!(run(first), 64);
        assert_eq!(FUTURES.with(|f| f.borrow().len()), 1);
        let second = recycled(job(2));
        assert_eq!(
            second.fut.as_ref().map(|b| &**b as *const _ as usize),
            at,
            "the same box"
        );
        assert_eq!(FUTURES.with(|f| f.borrow().len()), 0);
        assert_eq!(run(second), 128);
        // A box of another type is let go, not misused.
        let other = recycled(async { 7u8 });
        assert_eq!(FUTURES.with(|f| f.borrow().len()), 0);
        assert_eq!(run(other), 7);
        assert_eq!(FUTURES.with(|f| f.borrow().len()), 1);
        // A future dropped before it finished takes its box with it (and
        // the kept box of the other type was let go on the way).
        drop(recycled(job(3)));
        assert_eq!(FUTURES.with(|f| f.borrow().len()), 0);
    }

    /// Runs a future that never waits on anything outside itself.
    fn run<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..100 {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
        panic!("the future did not finish");
    }

    #[test]
    fn a_thread_keeps_a_bounded_number() {
        let bufs: Vec<BytesMut> = (0..KEEP + 10).map(|_| drained(&CLIENT).take()).collect();
        for b in bufs {
            CLIENT.give(b);
        }
        assert_eq!(CLIENT.kept(), KEEP);
        CLIENT.give(BytesMut::new());
        assert_eq!(CLIENT.kept(), KEEP, "an empty buffer is not kept");
        // The pools are per thread: another thread starts with none.
        std::thread::spawn(|| assert_eq!(CLIENT.kept(), 0)).join().unwrap();
    }
}
