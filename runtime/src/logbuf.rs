//! A buffered stderr for the access log: one `write(2)` per batch of lines
//! instead of one per request.
//!
//! Lines are appended to one in-memory buffer (a lock held only for the copy
//! of the line, never across IO); the buffer goes out when it passes
//! [`FLUSH_AT`] bytes (written by the thread that filled it), on
//! [`flush`], and at least every [`FLUSH_EVERY`] from a background thread, so
//! a line reaches stderr within that time even when traffic stops. Anything
//! that is not an access line should be written with [`write_through`],
//! which first flushes what is buffered, so the order of lines is kept and
//! warnings and errors appear at once.

use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;

/// The buffer is written out once it holds this many bytes.
pub const FLUSH_AT: usize = 32 * 1024;
/// The longest a buffered line waits.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();

fn lock() -> std::sync::MutexGuard<'static, Vec<u8>> {
    BUFFER.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `bytes` to stderr, ignoring errors (a log must not fail requests).
fn emit(bytes: &[u8]) {
    if !bytes.is_empty() {
        let _ = std::io::stderr().lock().write_all(bytes);
    }
}

/// Appends one or more whole lines to the buffer.
pub fn append(line: &[u8]) {
    FLUSHER.call_once(|| {
        let _ = std::thread::Builder::new().name("gw-log-flush".into()).spawn(|| loop {
            std::thread::sleep(FLUSH_EVERY);
            flush();
        });
    });
    let full = {
        let mut buf = lock();
        if buf.capacity() == 0 {
            buf.reserve(FLUSH_AT + 4096);
        }
        buf.extend_from_slice(line);
        (buf.len() >= FLUSH_AT).then(|| std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT + 4096)))
    };
    if let Some(out) = full {
        emit(&out);
    }
}

/// Writes out what is buffered.
pub fn flush() {
    let out = {
        let mut buf = lock();
        if buf.is_empty() {
            return;
        }
        std::mem::take(&mut *buf)
    };
    emit(&out);
}

/// Writes `line` at once, after what is buffered.
pub fn write_through(line: &[u8]) {
    // Held while writing, so that no appended line can overtake this one.
    let mut buf = lock();
    let pending = std::mem::take(&mut *buf);
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&pending);
    let _ = err.write_all(line);
}

/// An `io::Write` over the buffer: `Buffered` appends, `Direct` writes
/// through. tracing's formatter writes each event as one `write_all`.
#[derive(Clone, Copy, Debug)]
pub enum Writer {
    Buffered,
    Direct,
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Writer::Buffered => append(buf),
            Writer::Direct => write_through(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        flush();
        Ok(())
    }
}
