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
use std::io;
use std::path::Path;

pub use gw_plan::files::{Refusal, MAX_FILE_SIZE};

pub trait Host {
    /// The bytes of a regular file (symlinks followed) of at most
    /// [`MAX_FILE_SIZE`] bytes; anything else is an error carrying a
    /// [`Refusal`].
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
    /// What makes the file at `path` the same file under another name
    /// (a hard link, a symlink, `a/../b.gw`): its device and inode, symlinks
    /// followed. `None` (the default, and a file that cannot be looked
    /// at) makes its normalized path its identity.
    fn identity(&self, path: &str) -> Option<(u64, u64)> {
        let _ = path;
        None
    }
}

/// [`Host::identity`] over the real file system: the device and inode
/// `stat` gives once symlinks are followed.
pub fn file_identity(path: &str) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
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
