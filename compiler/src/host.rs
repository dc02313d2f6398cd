//! The compiler's only window on the outside world. The compiler reads files
//! (imports, keys, certificates) and environment variables through [`Host`],
//! so it does no IO of its own: `gwc` passes a host over the real file
//! system, tests pass a [`MemoryHost`].

use std::collections::HashMap;
use std::io;
use std::path::Path;

pub trait Host {
    /// The bytes of a file.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
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

/// A host made of in-memory files and variables, for tests.
#[derive(Clone, Debug, Default)]
pub struct MemoryHost {
    pub files: HashMap<String, Vec<u8>>,
    pub vars: HashMap<String, String>,
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
}

impl Host for MemoryHost {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found")))
    }

    fn env(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}
