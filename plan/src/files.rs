//! The bounds on reading a file a configuration names (an import, a key, a
//! certificate, a secret): regular files only, of at most
//! [`MAX_FILE_SIZE`] bytes. The compiler's hosts and the runtime's secret
//! reader both apply them and report a [`Refusal`].

use std::fmt;
use std::io;

/// The largest file a host reads: a `.gw` file, a key, a certificate, a
/// key list. Ample for any configuration (100,000 routes take about 5 MiB),
/// and a bound on what reading a wrong path can cost.
pub const MAX_FILE_SIZE: u64 = 64 << 20;

/// Why a host would not read a file, carried inside the `io::Error` that
/// a host's `read` returns ([`Refusal::of`] finds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a regular file once symlinks are followed: what it is instead
    /// ("a directory", "a FIFO", "a character device", ...).
    NotAFile(&'static str),
    /// Larger than the limit (its size, when known, and the limit).
    TooLarge { size: Option<u64>, limit: u64 },
}

impl Refusal {
    /// The refusal inside `e`, if `e` is one.
    pub fn of(e: &io::Error) -> Option<&Refusal> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Refusal>())
    }

    /// What a file of this metadata's type is, if not a regular file.
    pub fn kind_of(file_type: &std::fs::FileType) -> Option<&'static str> {
        if file_type.is_file() {
            return None;
        }
        if file_type.is_dir() {
            return Some("a directory");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if file_type.is_fifo() {
                return Some("a FIFO");
            }
            if file_type.is_char_device() {
                return Some("a character device");
            }
            if file_type.is_block_device() {
                return Some("a block device");
            }
            if file_type.is_socket() {
                return Some("a socket");
            }
        }
        Some("not a regular file")
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAFile(kind) => write!(f, "it is {kind}, not a regular file"),
            Refusal::TooLarge {
                size: Some(size),
                limit,
            } => {
                // In bytes when MiB would round it down to the limit.
                let size = if size >> 20 > limit >> 20 {
                    mib(*size)
                } else {
                    format!("{size} bytes")
                };
                write!(f, "it is {size}, more than the {} a file may have", mib(*limit))
            }
            Refusal::TooLarge { size: None, limit } => {
                write!(f, "it is larger than the {} a file may have", mib(*limit))
            }
        }
    }
}

/// `64 MiB`, `70.5 MiB` (tenths rounded down), `512 bytes`.
fn mib(bytes: u64) -> String {
    if bytes < 1 << 20 {
        return format!("{bytes} bytes");
    }
    let tenths = (bytes * 10) >> 20;
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for io::Error {
    fn from(r: Refusal) -> io::Error {
        let kind = match r {
            Refusal::NotAFile(_) => io::ErrorKind::InvalidInput,
            Refusal::TooLarge { .. } => io::ErrorKind::FileTooLarge,
        };
        io::Error::new(kind, r)
    }
}
