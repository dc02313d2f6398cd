//! The workers: one thread runs the same compiler as `gwc check` on an
//! open document (with its imports), reading unsaved buffers before the
//! disk; a second indexes every file of the result (names, outline,
//! colours). The main loop sends [`Job`]s and keeps answering requests
//! meanwhile; jobs that pile up while a compile runs are coalesced, so only
//! the latest version of each document is compiled (and indexed).

use super::index::FileIndex;
use super::text::{path_to_uri, LineIndex};
use crossbeam_channel::{Receiver, Sender};
use gw_compiler::host::Host;
use gw_compiler::Diagnostic;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

/// The texts of the open documents, by the name the compiler reads them as.
pub type Overlay = HashMap<String, Arc<str>>;

/// Compile the document `uri` (read as `name`) at `version`.
pub struct Job {
    pub uri: String,
    pub name: String,
    pub version: i32,
    pub overlay: Arc<Overlay>,
}

/// One file of a compilation.
#[derive(Clone)]
pub struct FileView {
    pub uri: String,
    pub name: String,
    pub text: Arc<str>,
    pub lines: LineIndex,
    pub index: FileIndex,
}

/// What the compiler said about one document and the files it imports.
pub struct Analysis {
    pub uri: String,
    pub version: i32,
    /// The root first, then its imports, in the compiler's order.
    pub files: Vec<FileView>,
    /// Each diagnostic with the file of its primary span.
    pub diagnostics: Vec<(usize, Diagnostic)>,
    /// Whether the files' indexes are built (the worker first sends the
    /// compile's result alone, so diagnostics wait for nothing else).
    pub indexed: bool,
}

/// The compiler's [`Host`] for the server: open documents as the editor has
/// them, everything else from the disk, variables from the environment.
pub struct EditorHost<'a> {
    pub overlay: &'a Overlay,
}

impl Host for EditorHost<'_> {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        match self.overlay.get(path) {
            Some(text) => Ok(text.as_bytes().to_vec()),
            None => std::fs::read(path),
        }
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Starts the workers; they stop when `jobs`' sender is dropped or
/// `results` is closed. The compile worker sends each result at once, and
/// hands it to the index worker, which sends it again with its files
/// indexed: diagnostics never wait for indexing, and the next compile never
/// waits behind it.
pub fn spawn(results: Sender<Analysis>) -> io::Result<Sender<Job>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let (index_tx, index_rx) = crossbeam_channel::unbounded::<Analysis>();
    let indexed = results.clone();
    std::thread::Builder::new()
        .name("gw-lsp-index".into())
        .stack_size(16 << 20)
        .spawn(move || index_work(index_rx, indexed))?;
    std::thread::Builder::new()
        .name("gw-lsp-compile".into())
        .stack_size(16 << 20)
        .spawn(move || compile_work(rx, results, index_tx))?;
    Ok(tx)
}

/// Takes every waiting item, keeping the latest of each document.
fn latest<T>(rx: &Receiver<T>, first: T, uri: impl Fn(&T) -> &str) -> Vec<T> {
    let mut items = vec![first];
    while let Ok(item) = rx.try_recv() {
        items.retain(|i| uri(i) != uri(&item));
        items.push(item);
    }
    items
}

fn compile_work(jobs: Receiver<Job>, results: Sender<Analysis>, to_index: Sender<Analysis>) {
    while let Ok(first) = jobs.recv() {
        for job in latest(&jobs, first, |j| &j.uri) {
            let uri = job.uri.clone();
            let version = job.version;
            let analysis =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile(&job))).unwrap_or_else(|_| {
                    eprintln!("gwc lsp: the compiler failed on {uri} (a bug: please report it)");
                    Analysis {
                        uri,
                        version,
                        files: Vec::new(),
                        diagnostics: Vec::new(),
                        indexed: false,
                    }
                });
            let copy = Analysis {
                uri: analysis.uri.clone(),
                version: analysis.version,
                files: analysis.files.clone(),
                diagnostics: analysis.diagnostics.clone(),
                indexed: false,
            };
            if results.send(analysis).is_err() || to_index.send(copy).is_err() {
                return;
            }
        }
    }
}

fn index_work(compiled: Receiver<Analysis>, results: Sender<Analysis>) {
    while let Ok(first) = compiled.recv() {
        // Only the latest compile of each document is worth indexing.
        for mut analysis in latest(&compiled, first, |a| &a.uri) {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for f in &mut analysis.files {
                    f.index = FileIndex::build(&f.text);
                }
            }));
            if done.is_err() {
                eprintln!("gwc lsp: indexing failed on {} (a bug: please report it)", analysis.uri);
                for f in &mut analysis.files {
                    f.index = FileIndex::default();
                }
            }
            analysis.indexed = true;
            if results.send(analysis).is_err() {
                return;
            }
        }
    }
}

/// Compiles one document (its files not yet indexed).
pub fn compile(job: &Job) -> Analysis {
    let host = EditorHost { overlay: &job.overlay };
    let text = job.overlay.get(&job.name).cloned().unwrap_or_else(|| Arc::from(""));
    let compilation =
        gw_compiler::compile(&host, &job.name).unwrap_or_else(|_| gw_compiler::compile_text(&host, &job.name, &text));
    let files: Vec<FileView> = compilation
        .sources
        .files()
        .map(|(id, file)| FileView {
            uri: if id.0 == 0 {
                job.uri.clone()
            } else {
                path_to_uri(&file.name)
            },
            name: file.name.clone(),
            lines: LineIndex::new(&file.text),
            index: FileIndex::default(),
            text: file.text.clone(),
        })
        .collect();
    let diagnostics: Vec<(usize, Diagnostic)> = compilation
        .diagnostics
        .into_iter()
        .map(|d| (d.span().map_or(0, |s| s.file.0 as usize), d))
        .collect();
    Analysis {
        uri: job.uri.clone(),
        version: job.version,
        files,
        diagnostics,
        indexed: false,
    }
}
