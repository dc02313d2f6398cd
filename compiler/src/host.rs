//! The compiler's only window on the outside world. The compiler reads files
//! (imports, keys, certificates) and environment variables through [`Host`],
//! so it does no IO of its own: `gwc` passes a host over the real file system,
//! tests pass a [`MemoryHost`].
//!
//! A host reads regular files only, of at most [`MAX_FILE_SIZE`] bytes: a
//! device (`/dev/zero`), a FIFO, a socket or a directory, or a larger file,
//! is refused with a [`Refusal`] inside the `io::Error`, which the compiler
//! reports as GW0005 instead of reading without end.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

/// The largest file a host reads: a `.gw` file, a key, a certificate, a
/// key list. Ample for any configuration (100,000 routes take about 5 MiB),
/// and a bound on what reading a wrong path can cost.
pub const MAX_FILE_SIZE: u64 = 64 << 20;

pub trait Host {
    /// The bytes of a regular file (symlinks followed) of at most
    /// [`MAX_FILE_SIZE`] bytes; anything else is an error carrying a
    /// [`Refusal`].
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
}

/// Why a host would not read a file, carried inside the `io::Error` that
/// [`Host::read`] returns ([`Refusal::of`] finds it).
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

/// `rel` resolved against the folder of the file `base`, with `.` and `..`
/// folded away lexically (no IO), so that the same file always has the same
/// name and import cycles through sub-folders are recognised.
pub fn relative_to(base: &str, rel: &str) -> String {
    let rel_path = Path::new(rel);
    let joined = if rel_path.is_absolute() {
        rel_path.to_path_buf()
    } else {
        match Path::new(base).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(rel_path),
            _ => rel_path.to_path_buf(),
        }
    };
    normalize(&joined)
}

/// Folds `.` and `..` components (a leading `..` of a relative path stays).
pub fn normalize(path: &Path) -> String {
    use std::path::Component;
    let mut parts: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => parts.push(c),
            },
            other => parts.push(other),
        }
    }
    let out: std::path::PathBuf = parts.iter().collect();
    let s = out.to_string_lossy().into_owned();
    if s.is_empty() {
        ".".to_string()
    } else {
        s
    }
}

/// A host made of in-memory files and variables, for tests. It refuses
/// what a real host refuses: a path marked [`special`](MemoryHost::special)
/// (a FIFO, a device, ...) and a file larger than its limit
/// ([`MAX_FILE_SIZE`] unless [`limit`](MemoryHost::limit) says otherwise).
#[derive(Clone, Debug)]
pub struct MemoryHost {
    pub files: HashMap<String, Vec<u8>>,
    pub vars: HashMap<String, String>,
    /// Paths that exist but are not regular files, with what they are.
    pub specials: HashMap<String, &'static str>,
    pub limit: u64,
}

impl Default for MemoryHost {
    fn default() -> MemoryHost {
        MemoryHost {
            files: HashMap::new(),
            vars: HashMap::new(),
            specials: HashMap::new(),
            limit: MAX_FILE_SIZE,
        }
    }
}

impl MemoryHost {
    pub fn new() -> MemoryHost {
        MemoryHost::default()
    }

    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> MemoryHost {
        self.files.insert(path.to_string(), contents.into());
        self
    }

    pub fn var(mut self, name: &str, value: &str) -> MemoryHost {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// A path that is not a regular file: `kind` is what it is ("a FIFO").
    pub fn special(mut self, path: &str, kind: &'static str) -> MemoryHost {
        self.specials.insert(path.to_string(), kind);
        self
    }

    /// The largest file this host reads.
    pub fn limit(mut self, bytes: u64) -> MemoryHost {
        self.limit = bytes;
        self
    }
}

impl Host for MemoryHost {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        if let Some(kind) = self.specials.get(path) {
            return Err(Refusal::NotAFile(kind).into());
        }
        let bytes = self
            .files
            .get(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found")))?;
        if bytes.len() as u64 > self.limit {
            return Err(Refusal::TooLarge {
                size: Some(bytes.len() as u64),
                limit: self.limit,
            }
            .into());
        }
        Ok(bytes.clone())
    }

    fn env(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}
