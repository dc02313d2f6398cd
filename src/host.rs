//! [`RealHost`]: the compiler's [`Host`] over the real file system and
//! process environment. The compiler itself does no IO; `gwc` hands it this.
//! Files are read as the runtime reads them
//! ([`gw_runtime::secrets::read_file`]): regular files only, symlinks
//! followed, at most [`MAX_FILE_SIZE`] bytes. Each read (and each `stat`
//! for a file's identity) runs on a thread of its own and is given up after
//! [`READ_WITHIN`] ([`within`]): a stuck network mount cannot hang `gwc
//! check`, `gwc fmt` or the language server for good.

use gw_compiler::host::{Host, MAX_FILE_SIZE};
use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one read or `stat` of a file may take. A 64 MiB file reads in
/// well under a second from any disk; only a stuck mount takes this long.
pub const READ_WITHIN: Duration = Duration::from_secs(20);

/// At most this many reads that did not finish are left behind (a blocked
/// read cannot be cancelled); past it, files are refused without trying.
pub const MAX_STUCK_READS: usize = 4;

/// Reads given up on and still running.
static STUCK: AtomicUsize = AtomicUsize::new(0);

/// Reads files relative to the current directory and variables from the
/// process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHost;

impl Host for RealHost {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let path = path.to_string();
        within(READ_WITHIN, move || {
            gw_runtime::secrets::read_file(&path, MAX_FILE_SIZE)
        })
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn identity(&self, path: &str) -> Option<(u64, u64)> {
        let path = path.to_string();
        within(READ_WITHIN, move || Ok(gw_compiler::host::file_identity(&path)))
            .ok()
            .flatten()
    }
}

/// Runs `io` (a read of the file system) on a thread of its own and waits
/// for it at most `limit`: past that, an error of kind `TimedOut`, and the
/// thread is left behind ([`MAX_STUCK_READS`] at most, then every call is
/// refused at once until one of them ends).
pub fn within<T: Send + 'static>(
    limit: Duration,
    io: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    const RUNNING: u8 = 0;
    const DONE: u8 = 1;
    const ABANDONED: u8 = 2;
    if STUCK.load(Ordering::SeqCst) >= MAX_STUCK_READS {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "earlier reads of files never finished (a stuck network mount?): not reading more",
        ));
    }
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let s = state.clone();
    let spawned = std::thread::Builder::new().name("gwc-read".into()).spawn(move || {
        let result = io();
        if s.compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            STUCK.fetch_sub(1, Ordering::SeqCst);
        }
        let _ = tx.send(result);
    });
    if spawned.is_err() {
        return Err(io::Error::other("cannot start a thread to read the file"));
    }
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => {
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                STUCK.fetch_add(1, Ordering::SeqCst);
            } else if let Ok(result) = rx.try_recv() {
                return result; // it finished just now
            }
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "reading it did not finish within {} s (a stuck network mount?)",
                    limit.as_secs_f64()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A read that never finishes (as on a stuck mount) is given up on in
    /// time, and counted as stuck until it ends.
    #[test]
    fn a_read_that_never_finishes_is_given_up() {
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let start = Instant::now();
        let e = within(Duration::from_millis(200), move || {
            let _ = blocked.recv();
            Ok(Vec::<u8>::new())
        })
        .expect_err("given up");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("did not finish within 0.2 s"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(STUCK.load(Ordering::SeqCst) >= 1);
        // A quick read still goes through meanwhile.
        assert_eq!(within(Duration::from_secs(5), || Ok(7)).expect("read"), 7);
        drop(release);
        let start = Instant::now();
        while STUCK.load(Ordering::SeqCst) > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the stuck read was not uncounted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
