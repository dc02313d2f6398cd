//! Loading a configuration: the root file and, depth first, every file it
//! imports. Each file is read once through the [`Host`]; a missing import or
//! a cycle is GW0004 at the `import` that names it, and an import the host
//! refuses (not a regular file, or too large: [`Refusal`]) is GW0005. A file
//! is known by its device and inode ([`Host::identity`]), so the same file
//! under two names (a symlink, a hard link) is read once and a cycle through
//! a symlink is found. An import of a name not ending in `.gw` is GW0007
//! (never read); imports nested deeper than [`MAX_IMPORT_DEPTH`] or more
//! than [`MAX_IMPORTED_FILES`] files are GW0006, once.

use crate::ast::Config;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::host::{Host, Refusal};
use crate::source::{FileId, SourceFile, SourceMap, Span, Spanned};
use crate::syntax;
use std::collections::HashSet;
use std::io;
use std::sync::Arc;

/// The deepest chain of imports (the root file imports at depth 1): far
/// more than a configuration needs, and a bound on the loader's recursion.
pub const MAX_IMPORT_DEPTH: usize = 16;
/// The most files one configuration imports (the root not counted).
pub const MAX_IMPORTED_FILES: usize = 1000;

/// What makes two names one file: its device and inode when the host can
/// tell them, else its normalized path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FileKey {
    Inode(u64, u64),
    Path(String),
}

fn key(host: &dyn Host, path: &str) -> FileKey {
    match host.identity(path) {
        Some((dev, ino)) => FileKey::Inode(dev, ino),
        None => FileKey::Path(path.to_string()),
    }
}

pub struct Loaded {
    pub sources: SourceMap,
    pub config: Config,
    pub diagnostics: Diagnostics,
}

/// Reads `root` and its imports. `Err` only when `root` itself cannot be read.
pub fn load(host: &dyn Host, root: &str) -> io::Result<Loaded> {
    let bytes = host.read(root)?;
    let mut loader = Loader::new(host);
    loader.file(root, key(host, root), bytes);
    Ok(loader.loaded)
}

/// Loads a configuration given as text (for tests and the language server).
pub fn load_text(host: &dyn Host, name: &str, text: &str) -> Loaded {
    let mut loader = Loader::new(host);
    loader.file(name, key(host, name), text.as_bytes().to_vec());
    loader.loaded
}

struct Loader<'h> {
    host: &'h dyn Host,
    loaded: Loaded,
    /// Files being loaded (for cycles), by name and key, the root first.
    stack: Vec<(String, FileKey)>,
    /// Files already loaded (a file imported twice is read once).
    done: HashSet<FileKey>,
    /// Whether GW0006 was reported (it is, once).
    capped: bool,
}

impl<'h> Loader<'h> {
    fn new(host: &'h dyn Host) -> Loader<'h> {
        Loader {
            host,
            loaded: Loaded {
                sources: SourceMap::new(),
                config: Config::default(),
                diagnostics: Diagnostics::default(),
            },
            stack: Vec::new(),
            done: HashSet::new(),
            capped: false,
        }
    }

    fn file(&mut self, name: &str, key: FileKey, bytes: Vec<u8>) -> FileId {
        let (text, bad_utf8): (Arc<str>, _) = match String::from_utf8(bytes) {
            Ok(t) => (t.into(), None),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                (String::from_utf8_lossy(e.as_bytes()).into(), Some(at))
            }
        };
        // One copy of the text, shared by the source map and lowering.
        let id = self.loaded.sources.add(SourceFile::new(name, text.clone()));
        if let Some(at) = bad_utf8 {
            self.loaded.diagnostics.push(
                Diagnostic::new(Code::GW0001, "this file is not valid UTF-8")
                    .primary(Span::new(id, at, at + 1), "invalid UTF-8 here")
                    .help("save the file as UTF-8"),
            );
        }
        let out = syntax::lower_file(
            id,
            name,
            &text,
            self.loaded.sources.get(id).secrets(),
            &mut self.loaded.config,
            &mut self.loaded.diagnostics,
        );
        self.loaded.sources.get_mut(id).set_secrets(out.secrets);
        self.done.insert(key.clone());
        self.stack.push((name.to_string(), key));
        for import in out.imports {
            self.import(name, import);
        }
        self.stack.pop();
        id
    }

    fn import(&mut self, from: &str, import: Spanned<String>) {
        let path = import.node.clone();
        if !path.ends_with(".gw") {
            // Never read: a key or a secret imported by mistake would be
            // parsed, and its lines shown in syntax errors' snippets.
            self.loaded.diagnostics.push(
                Diagnostic::new(Code::GW0007, format!("cannot import `{path}`: only `.gw` files are imported"))
                    .primary(import.span, "not a `.gw` file")
                    .help("an import reads declarations from a `.gw` file; name a key, a certificate or a secret with `file(\"...\")` where it is used"),
            );
            return;
        }
        let key = key(self.host, &path);
        if let Some(at) = self.stack.iter().position(|(_, k)| *k == key) {
            let mut chain: Vec<&str> = self.stack[at..].iter().map(|(p, _)| p.as_str()).collect();
            chain.push(&path);
            let chain = chain.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" → ");
            let message = if at + 1 == self.stack.len() {
                format!("import cycle: `{from}` imports itself")
            } else {
                format!("import cycle: `{from}` imports `{path}` back")
            };
            self.loaded.diagnostics.push(
                Diagnostic::new(Code::GW0004, message)
                    .primary(import.span, "this import closes a cycle")
                    .help(format!(
                        "the cycle is {chain}; move the shared declarations into a file that neither imports"
                    )),
            );
            return;
        }
        if self.done.contains(&key) {
            return;
        }
        // The stack holds the root and the files importing this one.
        let depth = self.stack.len();
        let files = self.done.len(); // the root and every import so far
        if depth > MAX_IMPORT_DEPTH || files > MAX_IMPORTED_FILES {
            if !std::mem::replace(&mut self.capped, true) {
                let message = if depth > MAX_IMPORT_DEPTH {
                    format!("cannot import `{path}`: imports nest deeper than {MAX_IMPORT_DEPTH} files")
                } else {
                    format!("cannot import `{path}`: the configuration imports more than {MAX_IMPORTED_FILES} files")
                };
                self.loaded.diagnostics.push(
                    Diagnostic::new(Code::GW0006, message)
                        .primary(import.span, "one import too many")
                        .help("import the shared files from the root file rather than from each other, or merge small files"),
                );
            }
            return;
        }
        match self.host.read(&path) {
            Ok(bytes) => {
                self.file(&path, key, bytes);
            }
            Err(e) if Refusal::of(&e).is_some() => {
                let help = match Refusal::of(&e) {
                    Some(Refusal::NotAFile(_)) => "import `.gw` files: a device, a FIFO or a directory is never read",
                    _ => "a `.gw` file is far smaller than this: check the path, or split the file",
                };
                self.loaded.diagnostics.push(
                    Diagnostic::new(Code::GW0005, format!("cannot import `{path}`: {e}"))
                        .primary(import.span, "imported here")
                        .help(help),
                );
            }
            Err(e) => {
                let why = match e.kind() {
                    io::ErrorKind::NotFound => "not found".to_string(),
                    _ => e.to_string(),
                };
                self.loaded.diagnostics.push(
                    Diagnostic::new(Code::GW0004, format!("cannot import `{path}`: {why}"))
                        .primary(import.span, "imported here")
                        .help("import paths are relative to the file that imports them"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryHost;

    fn codes(host: &MemoryHost, text: &str) -> Vec<(Code, String)> {
        load_text(host, "app.gw", text)
            .diagnostics
            .iter()
            .map(|d| (d.code, d.message.clone()))
            .collect()
    }

    /// A chain of imports far deeper than the cap: one GW0006 at the
    /// first import past it, no stack overflow, the rest never read.
    #[test]
    fn a_chain_of_imports_stops_at_the_depth_cap() {
        let mut host = MemoryHost::new();
        for i in 0..5000 {
            host.files
                .insert(format!("f{i}.gw"), format!("import \"f{}.gw\"\n", i + 1).into_bytes());
        }
        let found = codes(&host, "import \"f0.gw\"\n");
        let past = MAX_IMPORT_DEPTH; // f0 is at depth 1, f16 at 17
        assert_eq!(
            found,
            [(
                Code::GW0006,
                format!("cannot import `f{past}.gw`: imports nest deeper than {MAX_IMPORT_DEPTH} files")
            )]
        );
        // At the cap exactly, all is well.
        host.files.insert(
            format!("f{}.gw", past - 1),
            b"upstream u { server 127.0.0.1:1 }\n".to_vec(),
        );
        assert_eq!(codes(&host, "import \"f0.gw\"\n"), []);
    }

    /// More files than the cap, each imported once from the root: one
    /// GW0006, at the first import past it.
    #[test]
    fn a_root_importing_too_many_files_stops_at_the_cap() {
        let mut host = MemoryHost::new();
        let mut root = String::new();
        for i in 0..MAX_IMPORTED_FILES + 5 {
            host.files.insert(format!("f{i}.gw"), Vec::new());
            root.push_str(&format!("import \"f{i}.gw\"\n"));
        }
        let found = codes(&host, &root);
        assert_eq!(
            found,
            [(
                Code::GW0006,
                format!(
                    "cannot import `f{MAX_IMPORTED_FILES}.gw`: the configuration imports more than {MAX_IMPORTED_FILES} files"
                )
            )]
        );
    }

    #[test]
    fn only_gw_files_are_imported() {
        let host = MemoryHost::new().file("keys.txt", "upstream u { server 127.0.0.1:1 }\n");
        let found = codes(&host, "import \"keys.txt\"\nimport \"a.GW\"\n");
        assert_eq!(
            found,
            [
                (
                    Code::GW0007,
                    "cannot import `keys.txt`: only `.gw` files are imported".to_string()
                ),
                (
                    Code::GW0007,
                    "cannot import `a.GW`: only `.gw` files are imported".to_string()
                ),
            ]
        );
    }
}
