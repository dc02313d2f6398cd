//! The compile worker: one thread that runs the same compiler as `gwc
//! check` on an open document (with its imports), reading unsaved buffers
//! before the disk, and indexes every file of the result. The main loop
//! sends it [`Job`]s and keeps answering requests meanwhile; jobs that pile
//! up while it compiles are coalesced, so only the latest version of each
//! document is compiled.

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

/// Starts the worker; it stops when `jobs`' sender is dropped or `results`
/// is closed.
pub fn spawn(results: Sender<Analysis>) -> io::Result<Sender<Job>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    std::thread::Builder::new()
        .name("gw-lsp-compile".into())
        .stack_size(16 << 20)
        .spawn(move || work(rx, results))?;
    Ok(tx)
}

fn work(jobs: Receiver<Job>, results: Sender<Analysis>) {
    while let Ok(first) = jobs.recv() {
        // The latest job of each document; older ones are stale already.
        let mut latest: Vec<Job> = vec![first];
        while let Ok(job) = jobs.try_recv() {
            latest.retain(|j| j.uri != job.uri);
            latest.push(job);
        }
        for job in latest {
            let uri = job.uri.clone();
            let version = job.version;
            let analysis =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| analyze(&job))).unwrap_or_else(|_| {
                    eprintln!("gwc lsp: the compiler failed on {uri} (a bug: please report it)");
                    Analysis {
                        uri,
                        version,
                        files: Vec::new(),
                        diagnostics: Vec::new(),
                    }
                });
            if results.send(analysis).is_err() {
                return;
            }
        }
    }
}

/// Compiles and indexes one document.
pub fn analyze(job: &Job) -> Analysis {
    let host = EditorHost { overlay: &job.overlay };
    let text = job.overlay.get(&job.name).cloned().unwrap_or_else(|| Arc::from(""));
    let compilation =
        gw_compiler::compile(&host, &job.name).unwrap_or_else(|_| gw_compiler::compile_text(&host, &job.name, &text));
    let files: Vec<FileView> = compilation
        .sources
        .files()
        .map(|(id, file)| {
            let uri = if id.0 == 0 {
                job.uri.clone()
            } else {
                path_to_uri(&file.name)
            };
            FileView {
                uri,
                name: file.name.clone(),
                lines: LineIndex::new(&file.text),
                index: FileIndex::build(&file.text),
                text: file.text.clone(),
            }
        })
        .collect();
    let diagnostics = compilation
        .diagnostics
        .into_iter()
        .map(|d| (d.span().map_or(0, |s| s.file.0 as usize), d))
        .collect();
    Analysis {
        uri: job.uri.clone(),
        version: job.version,
        files,
        diagnostics,
    }
}
