//! The workers: one thread runs the same compiler as `gwc check` on an
//! open document (with its imports), reading unsaved buffers before the
//! disk; a second indexes every file of the result (names, outline,
//! colours). The main loop sends [`Job`]s and keeps answering requests
//! meanwhile; jobs that pile up while a compile runs are coalesced, so only
//! the latest version of each document is compiled (and indexed).

use super::index::FileIndex;
use super::text::{path_key, path_to_uri, LineIndex};
use crossbeam_channel::{Receiver, Sender};
use gw_compiler::host::Host;
use gw_compiler::Diagnostic;
use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::Arc;

/// The texts of the open documents, by key ([`super::text::doc_key`]).
pub type Overlay = HashMap<String, Arc<str>>;

/// Compile the document known as `key`, read as `name`, which its client
/// calls `uri`, at `version`.
pub struct Job {
    pub key: String,
    pub name: String,
    pub uri: String,
    pub version: i32,
    pub overlay: Arc<Overlay>,
    /// The URIs the client uses for the open documents, by key.
    pub uris: Arc<HashMap<String, String>>,
}

/// One file of a compilation.
#[derive(Clone)]
pub struct FileView {
    /// The client's URI for an open document, else the file's `file:` URI.
    pub uri: String,
    /// The name the compiler read it as (for a file, its normalised path).
    pub name: String,
    /// Its key ([`super::text::path_key`]): the document's when it is open.
    pub key: String,
    pub text: Arc<str>,
    pub lines: LineIndex,
    pub index: FileIndex,
    /// Where `text` holds secrets (as the compiler found them): whatever
    /// the server shows of the text is masked there, as `gwc check` does.
    pub secrets: Arc<[Range<usize>]>,
}

impl FileView {
    /// `text[range]` as it may be shown: secrets masked, control
    /// characters escaped ([`gw_compiler::redact::shown`]).
    pub fn shown(&self, range: Range<usize>) -> String {
        gw_compiler::redact::shown(&self.text, range, &self.secrets)
    }
}

/// What the compiler said about one document and the files it imports.
pub struct Analysis {
    /// The key of the document compiled.
    pub key: String,
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
/// them, everything else from the disk as `gwc check` reads it
/// ([`RealHost`](crate::host::RealHost): regular files of at most 64 MiB),
/// variables from the environment.
pub struct EditorHost<'a> {
    pub overlay: &'a Overlay,
}

impl Host for EditorHost<'_> {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        // An open document may be imported by another of its names (through
        // a symlink): the overlay is by key.
        match self.overlay.get(path).or_else(|| self.overlay.get(&path_key(path))) {
            Some(text) => Ok(text.as_bytes().to_vec()),
            // Bounded as `gwc check` reads: a FIFO or `/dev/zero` is
            // GW0005 at once, never a compile worker stuck for good.
            None => crate::host::RealHost.read(path),
        }
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn identity(&self, path: &str) -> Option<(u64, u64)> {
        crate::host::RealHost.identity(path)
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
        for job in latest(&jobs, first, |j| &j.key) {
            let key = job.key.clone();
            let version = job.version;
            let analysis =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile(&job))).unwrap_or_else(|_| {
                    eprintln!("gwc lsp: the compiler failed on {key} (a bug: please report it)");
                    Analysis {
                        key,
                        version,
                        files: Vec::new(),
                        diagnostics: Vec::new(),
                        indexed: false,
                    }
                });
            let copy = Analysis {
                key: analysis.key.clone(),
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
        for mut analysis in latest(&compiled, first, |a| &a.key) {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for f in &mut analysis.files {
                    f.index = FileIndex::build(&f.text);
                }
            }));
            if done.is_err() {
                eprintln!("gwc lsp: indexing failed on {} (a bug: please report it)", analysis.key);
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
    let text = job.overlay.get(&job.key).cloned().unwrap_or_else(|| Arc::from(""));
    let compilation =
        gw_compiler::compile(&host, &job.name).unwrap_or_else(|_| gw_compiler::compile_text(&host, &job.name, &text));
    let files: Vec<FileView> = compilation
        .sources
        .files()
        .map(|(id, file)| {
            let key = if id.0 == 0 {
                job.key.clone()
            } else {
                path_key(&file.name)
            };
            FileView {
                uri: if id.0 == 0 {
                    job.uri.clone()
                } else {
                    job.uris.get(&key).cloned().unwrap_or_else(|| path_to_uri(&file.name))
                },
                name: file.name.clone(),
                key,
                lines: LineIndex::new(&file.text),
                index: FileIndex::default(),
                text: file.text.clone(),
                secrets: Arc::from(file.secrets()),
            }
        })
        .collect();
    let diagnostics: Vec<(usize, Diagnostic)> = compilation
        .diagnostics
        .into_iter()
        // Shown as `gwc check` shows them: secrets masked, URLs redacted.
        .map(|d| {
            (
                d.span().map_or(0, |s| s.file.0 as usize),
                d.redacted(&compilation.sources),
            )
        })
        .collect();
    Analysis {
        key: job.key.clone(),
        version: job.version,
        files,
        diagnostics,
        indexed: false,
    }
}
