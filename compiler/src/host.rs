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

/// `rel` resolved against the folder of the file `base` (no IO).
pub fn relative_to(base: &str, rel: &str) -> String {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute() {
        return rel.to_string();
    }
    match Path::new(base).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(rel_path).to_string_lossy().into_owned(),
        _ => rel.to_string(),
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
