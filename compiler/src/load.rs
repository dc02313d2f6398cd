//! Loading a configuration: the root file and, depth first, every file it
//! imports. Each file is read once through the [`Host`]; a missing import or
//! a cycle is GW0004 at the `import` that names it, and an import the host
//! refuses (not a regular file, or too large: [`Refusal`]) is GW0005.

use crate::ast::Config;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::host::{Host, Refusal};
use crate::source::{FileId, SourceFile, SourceMap, Span, Spanned};
use crate::syntax;
use std::io;
use std::sync::Arc;

pub struct Loaded {
    pub sources: SourceMap,
    pub config: Config,
    pub diagnostics: Diagnostics,
}

/// Reads `root` and its imports. `Err` only when `root` itself cannot be read.
pub fn load(host: &dyn Host, root: &str) -> io::Result<Loaded> {
    let bytes = host.read(root)?;
    let mut loader = Loader {
        host,
        loaded: Loaded {
            sources: SourceMap::new(),
            config: Config::default(),
            diagnostics: Diagnostics::default(),
        },
        stack: Vec::new(),
        done: Vec::new(),
    };
    loader.file(root, bytes);
    Ok(loader.loaded)
}

/// Loads a configuration given as text (for tests and the language server).
pub fn load_text(host: &dyn Host, name: &str, text: &str) -> Loaded {
    let mut loader = Loader {
        host,
        loaded: Loaded {
            sources: SourceMap::new(),
            config: Config::default(),
            diagnostics: Diagnostics::default(),
        },
        stack: Vec::new(),
        done: Vec::new(),
    };
    loader.file(name, text.as_bytes().to_vec());
    loader.loaded
}

struct Loader<'h> {
    host: &'h dyn Host,
    loaded: Loaded,
    /// Files being loaded (for cycles), with the import span that led to each.
    stack: Vec<(String, Option<Span>)>,
    /// Files already loaded (a file imported twice is read once).
    done: Vec<String>,
}

impl Loader<'_> {
    fn file(&mut self, name: &str, bytes: Vec<u8>) -> FileId {
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
        let out = syntax::lower_file(id, name, &text, &mut self.loaded.config, &mut self.loaded.diagnostics);
        self.done.push(name.to_string());
        for import in out.imports {
            self.import(name, import);
        }
        id
    }

    fn import(&mut self, from: &str, import: Spanned<String>) {
        let path = import.node.clone();
        if path == from || self.stack.iter().any(|(p, _)| *p == path) {
            let mut chain: Vec<&str> = self
                .stack
                .iter()
                .map(|(p, _)| p.as_str())
                .skip_while(|p| *p != path)
                .collect();
            chain.push(from);
            chain.push(&path);
            let chain = chain.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" → ");
            let message = if path == from {
                format!("import cycle: `{path}` imports itself")
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
        if self.done.contains(&path) {
            return;
        }
        match self.host.read(&path) {
            Ok(bytes) => {
                self.stack.push((from.to_string(), Some(import.span)));
                self.file(&path, bytes);
                self.stack.pop();
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
