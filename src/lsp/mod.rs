//! `gwc lsp`: a language server for `.gw` files over stdio.
//!
//! One main thread owns the open documents and answers requests; one worker
//! thread ([`analysis`]) compiles with the same compiler as `gwc check`,
//! reading unsaved buffers before the disk. A change schedules a compile
//! after [`DEBOUNCE`]; requests that need the compiler's view of the
//! current text (definition, references, rename, hover, symbols, colours,
//! quick fixes) wait for it, while completion answers from the text at
//! once, so a long compile never holds it up; formatting runs on a worker
//! of its own ([`formatter`]), so formatting a large file holds up nothing
//! else either. Documents are known by their path ([`text::doc_key`]),
//! however the client spells their URI, and named to it by the URI it used. Diagnostics are published for
//! each open document and for the files it imports that are not open
//! themselves; a file several open documents import gets the union of what
//! their compiles found in it. Nothing a client sends can stop the server but
//! `exit` or the end of its input: malformed messages are answered with
//! JSON-RPC errors ([`transport`]), positions are clamped ([`text`]), and a
//! handler that panicked answers `InternalError`.

mod analysis;
mod context;
mod features;
mod index;
mod lexer;
mod text;
mod transport;

use analysis::{Analysis, Job, Overlay};
use crossbeam_channel::{select, Receiver, Sender};
use lsp_server::{ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{self as note, Notification as _};
use lsp_types::request::{self as req, Request as _};
use lsp_types::{
    DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, PublishDiagnosticsParams,
    TextDocumentContentChangeEvent,
};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use text::{doc_key, doc_name, path_key, path_to_uri, LineIndex};
use transport::Incoming;

/// How long after a change the document is compiled (a new change restarts
/// the wait).
pub const DEBOUNCE: Duration = Duration::from_millis(30);

/// An open document.
pub struct Doc {
    /// The URI its client calls it by (in what the server sends back).
    pub uri: String,
    /// The name the compiler reads it as: its path for a `file:` URI
    /// ([`text::doc_name`]); its key is that path with symlinks resolved.
    pub name: String,
    pub version: i32,
    pub text: Arc<str>,
    pub lines: LineIndex,
}

/// A request waiting for the compile of a document's current version.
struct Waiting {
    request: Request,
    /// The document (key) whose compile it waits for.
    key: String,
}

/// Maps below are keyed by document key ([`text::doc_key`]).
pub struct Server {
    out: io::Stdout,
    docs: HashMap<String, Doc>,
    analyses: HashMap<String, Arc<Analysis>>,
    /// The last analysis of each document whose text parsed: the names it
    /// and its imports define, for completion while the text does not parse.
    parsed: HashMap<String, Arc<Analysis>>,
    /// Documents to compile, and when.
    due: HashMap<String, Instant>,
    jobs: Sender<Job>,
    /// Formatting requests, for the formatting worker.
    formats: Sender<features::FormatJob>,
    waiting: Vec<Waiting>,
    /// The files (not open) each open document's compile found diagnostics
    /// for, even none.
    published: HashMap<String, HashSet<String>>,
    /// For each such file, what each open document's compile found in it:
    /// the file's diagnostics are their union.
    shared: HashMap<String, HashMap<String, Vec<lsp_types::Diagnostic>>>,
    /// The `file:` URI of each file (not open) a compile read, by key: of
    /// the name the compiler read it as (a symlink's, not its target's).
    file_uris: HashMap<String, String>,
    /// Where explanation pages are written for diagnostics to link to.
    explain_dir: Option<PathBuf>,
    explained: HashSet<&'static str>,
    shut_down: bool,
}

/// Runs the server on stdin/stdout until `exit` or the end of input.
/// Returns the process's exit status (0 after a `shutdown`, else 1).
pub fn run() -> u8 {
    let (in_tx, in_rx) = crossbeam_channel::bounded::<Incoming>(64);
    let reader = std::thread::Builder::new()
        .name("gw-lsp-reader".into())
        .spawn(move || transport::read_loop(io::stdin().lock(), in_tx));
    if reader.is_err() {
        eprintln!("gwc lsp: cannot start the reader thread");
        return 2;
    }
    let (res_tx, res_rx) = crossbeam_channel::unbounded::<Analysis>();
    let Ok(jobs) = analysis::spawn(res_tx) else {
        eprintln!("gwc lsp: cannot start the compile thread");
        return 2;
    };
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Formatted>();
    let Ok(formats) = formatter(done_tx) else {
        eprintln!("gwc lsp: cannot start the formatting thread");
        return 2;
    };
    let mut server = Server {
        out: io::stdout(),
        docs: HashMap::new(),
        analyses: HashMap::new(),
        parsed: HashMap::new(),
        due: HashMap::new(),
        jobs,
        formats,
        waiting: Vec::new(),
        published: HashMap::new(),
        shared: HashMap::new(),
        file_uris: HashMap::new(),
        explain_dir: explain_dir(),
        explained: HashSet::new(),
        shut_down: false,
    };
    server.main_loop(&in_rx, &res_rx, &done_rx)
}

/// A formatting request answered by the worker.
struct Formatted {
    id: RequestId,
    key: String,
    version: i32,
    reply: features::Reply,
}

/// Starts the formatting worker: formatting a large file takes as long as
/// compiling it, and on the main loop it would hold up every diagnostic,
/// change and request behind it. It stops when the jobs' sender is dropped.
fn formatter(done: Sender<Formatted>) -> io::Result<Sender<features::FormatJob>> {
    let (tx, rx) = crossbeam_channel::unbounded::<features::FormatJob>();
    std::thread::Builder::new()
        .name("gw-lsp-format".into())
        .stack_size(16 << 20)
        .spawn(move || {
            for job in rx {
                let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| features::format_reply(&job)))
                    .unwrap_or_else(|_| {
                        Err((
                            ErrorCode::InternalError,
                            "internal error (a bug: please report it)".into(),
                        ))
                    });
                let formatted = Formatted {
                    id: job.id,
                    key: job.key,
                    version: job.version,
                    reply,
                };
                if done.send(formatted).is_err() {
                    return;
                }
            }
        })?;
    Ok(tx)
}

/// `$XDG_CACHE_HOME/gw/explain/VERSION` (or `~/.cache/...`).
fn explain_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("gw").join("explain").join(env!("CARGO_PKG_VERSION")))
}

impl Server {
    fn main_loop(
        &mut self,
        incoming: &Receiver<Incoming>,
        results: &Receiver<Analysis>,
        formatted: &Receiver<Formatted>,
    ) -> u8 {
        let mut initialized = false;
        loop {
            let wait = self.due.values().min().map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            select! {
                recv(incoming) -> msg => match msg {
                    Ok(Incoming::Message(Message::Request(r))) => {
                        if !initialized {
                            if r.method == req::Initialize::METHOD {
                                self.respond(Response::new_ok(r.id, features::capabilities()));
                                initialized = true;
                            } else {
                                self.error(r.id, ErrorCode::ServerNotInitialized, "the server is not initialized");
                            }
                        } else if self.shut_down {
                            self.error(r.id, ErrorCode::InvalidRequest, "the server is shut down");
                        } else if r.method == req::Shutdown::METHOD {
                            self.shut_down = true;
                            self.respond(Response::new_ok(r.id, serde_json::Value::Null));
                        } else {
                            self.request(r);
                        }
                    }
                    Ok(Incoming::Message(Message::Notification(n))) => {
                        if n.method == note::Exit::METHOD {
                            return if self.shut_down { 0 } else { 1 };
                        }
                        if initialized && !self.shut_down {
                            self.notification(n);
                        }
                    }
                    Ok(Incoming::Message(Message::Response(_))) => {}
                    Ok(Incoming::Malformed(error)) => {
                        let _ = transport::write_raw(&mut self.out.lock(), &error);
                    }
                    Ok(Incoming::End) | Err(_) => return if self.shut_down { 0 } else { 1 },
                },
                recv(results) -> analysis => {
                    if let Ok(a) = analysis {
                        self.analysis(a);
                    }
                }
                recv(formatted) -> f => {
                    if let Ok(f) = f {
                        self.formatted(f);
                    }
                }
                default(wait) => {}
            }
            self.dispatch_due();
        }
    }

    fn send(&mut self, message: Message) {
        let mut out = self.out.lock();
        if message.write(&mut out).is_err() {
            // Nobody reads us any more: nothing left to do.
            std::process::exit(1);
        }
        let _ = out.flush();
    }

    fn respond(&mut self, response: Response) {
        self.send(Message::Response(response));
    }

    fn error(&mut self, id: RequestId, code: ErrorCode, message: &str) {
        self.respond(Response::new_err(id, code as i32, message.to_string()));
    }

    fn notify<N: lsp_types::notification::Notification>(&mut self, params: N::Params) {
        self.send(Message::Notification(Notification::new(N::METHOD.to_string(), params)));
    }

    // ------------------------------------------------------------ documents

    fn notification(&mut self, n: Notification) {
        match n.method.as_str() {
            note::DidOpenTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidOpenTextDocumentParams>(note::DidOpenTextDocument::METHOD) {
                    let uri = p.text_document.uri.as_str().to_string();
                    let name = doc_name(&uri);
                    let key = path_key(&name);
                    // Imported and not open until now, its diagnostics were
                    // published under the file's own URI: they are the
                    // document's own from now on, under the client's.
                    if self.shared.remove(&key).is_some() && !self.docs.contains_key(&key) {
                        let canonical = self.uri_of(&key);
                        if canonical != uri {
                            self.publish(&canonical, Vec::new(), None);
                        }
                    }
                    let text: Arc<str> = Arc::from(p.text_document.text);
                    self.docs.insert(
                        key.clone(),
                        Doc {
                            uri,
                            name,
                            version: p.text_document.version,
                            lines: LineIndex::new(&text),
                            text,
                        },
                    );
                    self.changed(&key, Duration::ZERO);
                }
            }
            note::DidChangeTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidChangeTextDocumentParams>(note::DidChangeTextDocument::METHOD)
                {
                    let key = doc_key(p.text_document.uri.as_str());
                    let Some(doc) = self.docs.get_mut(&key) else { return };
                    let mut text = doc.text.to_string();
                    for change in p.content_changes {
                        apply(&mut text, &mut doc.lines, change);
                    }
                    doc.text = Arc::from(text);
                    doc.version = p.text_document.version;
                    self.changed(&key, DEBOUNCE);
                }
            }
            note::DidCloseTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidCloseTextDocumentParams>(note::DidCloseTextDocument::METHOD) {
                    let key = doc_key(p.text_document.uri.as_str());
                    let Some(doc) = self.docs.remove(&key) else { return };
                    // Its importers read it from the disk again.
                    self.importers_changed(&key, Duration::ZERO);
                    self.analyses.remove(&key);
                    self.parsed.remove(&key);
                    self.due.remove(&key);
                    // Its own diagnostics go; what its compile found in the
                    // files it imports leaves their union.
                    self.publish(&doc.uri, Vec::new(), None);
                    self.set_published(&key, HashMap::new());
                    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                        .into_iter()
                        .partition(|w| w.key == key);
                    self.waiting = kept;
                    for w in gone {
                        self.error(w.request.id, ErrorCode::ContentModified, "the document was closed");
                    }
                }
            }
            note::DidSaveTextDocument::METHOD => {
                // A saved file may be imported by others that read it from disk.
                if let Ok(p) = n.extract::<lsp_types::DidSaveTextDocumentParams>(note::DidSaveTextDocument::METHOD) {
                    self.importers_changed(&doc_key(p.text_document.uri.as_str()), Duration::ZERO);
                }
            }
            note::Cancel::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::CancelParams>(note::Cancel::METHOD) {
                    let id: RequestId = match p.id {
                        NumberOrString::Number(n) => n.into(),
                        NumberOrString::String(s) => s.into(),
                    };
                    if let Some(at) = self.waiting.iter().position(|w| w.request.id == id) {
                        let w = self.waiting.remove(at);
                        self.error(w.request.id, ErrorCode::RequestCanceled, "canceled");
                    }
                }
            }
            _ => {}
        }
    }

    /// The document `key` changed: compile it after `delay`, and the open
    /// documents that import it.
    fn changed(&mut self, key: &str, delay: Duration) {
        self.schedule(key, delay);
        self.importers_changed(key, delay);
    }

    fn importers_changed(&mut self, key: &str, delay: Duration) {
        let importers: Vec<String> = self
            .analyses
            .iter()
            .filter(|(root, a)| root.as_str() != key && a.files.iter().skip(1).any(|f| f.key == key))
            .map(|(root, _)| root.clone())
            .collect();
        for root in importers {
            self.schedule(&root, delay);
        }
    }

    /// The URI to name a file by: the client's for an open document, else
    /// the file's own `file:` URI.
    pub fn uri_of(&self, key: &str) -> String {
        match (self.docs.get(key), self.file_uris.get(key)) {
            (Some(doc), _) => doc.uri.clone(),
            (None, Some(uri)) => uri.clone(),
            (None, None) if key.starts_with('/') => path_to_uri(key),
            (None, None) => key.to_string(),
        }
    }

    fn schedule(&mut self, key: &str, delay: Duration) {
        if self.docs.contains_key(key) {
            let at = Instant::now() + delay;
            let entry = self.due.entry(key.to_string()).or_insert(at);
            // A change restarts the wait; a request for fresh results cuts it short.
            *entry = if delay.is_zero() { (*entry).min(at) } else { at };
        }
    }

    fn dispatch_due(&mut self) {
        let now = Instant::now();
        let ready: Vec<String> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(u, _)| u.clone())
            .collect();
        if ready.is_empty() {
            return;
        }
        let overlay: Arc<Overlay> = Arc::new(self.docs.iter().map(|(k, d)| (k.clone(), d.text.clone())).collect());
        let uris: Arc<HashMap<String, String>> =
            Arc::new(self.docs.iter().map(|(k, d)| (k.clone(), d.uri.clone())).collect());
        for key in ready {
            self.due.remove(&key);
            if let Some(doc) = self.docs.get(&key) {
                let _ = self.jobs.send(Job {
                    key: key.clone(),
                    name: doc.name.clone(),
                    uri: doc.uri.clone(),
                    version: doc.version,
                    overlay: overlay.clone(),
                    uris: uris.clone(),
                });
            }
        }
    }

    // ------------------------------------------------------------ results

    fn analysis(&mut self, a: Analysis) {
        let Some(doc) = self.docs.get(&a.key) else { return };
        let current = doc.version == a.version;
        // The index worker's result may come after the next compile's.
        if self.analyses.get(&a.key).is_some_and(|old| old.version > a.version) {
            return;
        }
        let a = Arc::new(a);
        self.analyses.insert(a.key.clone(), a.clone());
        if a.indexed && a.files.first().is_some_and(|f| f.index.parsed) {
            self.parsed.insert(a.key.clone(), a.clone());
        }
        if !current {
            // A newer version is on its way; its diagnostics will follow.
            return;
        }
        if !a.indexed {
            // The compile's result comes first: publish it now; requests
            // that need the index wait for the second message.
            self.publish_analysis(&a);
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.key == a.key);
        self.waiting = waiting;
        for w in ready {
            // Through `request` again: it may wait for another document.
            self.request(w.request);
        }
    }

    fn publish_analysis(&mut self, a: &Analysis) {
        let mut by_file: Vec<Vec<lsp_types::Diagnostic>> = a.files.iter().map(|_| Vec::new()).collect();
        for (file, d) in &a.diagnostics {
            if let Some(list) = by_file.get_mut(*file) {
                let converted = self.convert(d, *file, a);
                list.push(converted);
            }
        }
        let mut found = HashMap::new();
        for (n, f) in a.files.iter().enumerate() {
            let list = std::mem::take(&mut by_file[n]);
            if n == 0 {
                let uri = self.uri_of(&a.key);
                self.publish(&uri, list, Some(a.version));
            } else if f.key != a.key && !self.docs.contains_key(&f.key) {
                self.file_uris.entry(f.key.clone()).or_insert_with(|| f.uri.clone());
                found.insert(f.key.clone(), list);
            }
        }
        self.set_published(&a.key, found);
    }

    /// What the compile of the open document `root` found in the files it
    /// imports that are not open (`found`, by file): each file affected is
    /// published again, with the union over its open importers.
    fn set_published(&mut self, root: &str, found: HashMap<String, Vec<lsp_types::Diagnostic>>) {
        let before = self.published.remove(root).unwrap_or_default();
        let now: HashSet<String> = found.keys().cloned().collect();
        for file in before.difference(&now) {
            if let Some(by_root) = self.shared.get_mut(file) {
                by_root.remove(root);
                if by_root.is_empty() {
                    self.shared.remove(file);
                }
            }
        }
        let mut touched: Vec<String> = before.union(&now).cloned().collect();
        touched.sort();
        for (file, list) in found {
            self.shared.entry(file).or_default().insert(root.to_string(), list);
        }
        if self.docs.contains_key(root) && !now.is_empty() {
            self.published.insert(root.to_string(), now);
        }
        for file in touched {
            if !self.docs.contains_key(&file) {
                self.publish_shared(&file);
            }
        }
    }

    /// Publishes a file that is not open: the union, without repeats, of
    /// what its open importers' compiles found in it.
    fn publish_shared(&mut self, file: &str) {
        let mut seen = HashSet::new();
        let mut union: Vec<lsp_types::Diagnostic> = Vec::new();
        if let Some(by_root) = self.shared.get(file) {
            let mut roots: Vec<&String> = by_root.keys().collect();
            roots.sort();
            for d in roots.into_iter().flat_map(|r| &by_root[r]) {
                if seen.insert(serde_json::to_string(d).unwrap_or_default()) {
                    union.push(d.clone());
                }
            }
        }
        union.sort_by_key(|d| (d.range.start.line, d.range.start.character));
        let uri = self.uri_of(file);
        self.publish(&uri, union, None);
    }

    fn publish(&mut self, uri: &str, diagnostics: Vec<lsp_types::Diagnostic>, version: Option<i32>) {
        let Ok(uri) = lsp_types::Uri::from_str(uri) else { return };
        self.notify::<note::PublishDiagnostics>(PublishDiagnosticsParams {
            uri,
            diagnostics,
            version,
        });
    }

    /// A compiler diagnostic in the protocol's terms.
    fn convert(&mut self, d: &gw_compiler::Diagnostic, file: usize, a: &Analysis) -> lsp_types::Diagnostic {
        let f = &a.files[file];
        let span = d.span().unwrap_or_default();
        let range = f.lines.range(&f.text, span.start as usize, span.end as usize);
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        let related: Vec<DiagnosticRelatedInformation> = d
            .labels
            .iter()
            .filter(|l| !l.primary)
            .filter_map(|l| {
                let g = a.files.get(l.span.file.0 as usize)?;
                Some(DiagnosticRelatedInformation {
                    location: Location {
                        uri: lsp_types::Uri::from_str(&g.uri).ok()?,
                        range: g.lines.range(&g.text, l.span.start as usize, l.span.end as usize),
                    },
                    message: l.message.clone(),
                })
            })
            .collect();
        lsp_types::Diagnostic {
            range,
            severity: Some(match d.severity {
                gw_compiler::Severity::Error => DiagnosticSeverity::ERROR,
                gw_compiler::Severity::Warning => DiagnosticSeverity::WARNING,
            }),
            code: Some(NumberOrString::String(d.code.as_str().to_string())),
            code_description: self
                .explain_link(d.code)
                .map(|href| lsp_types::CodeDescription { href }),
            source: Some("gw".to_string()),
            message,
            related_information: (!related.is_empty()).then_some(related),
            tags: None,
            data: None,
        }
    }

    /// A `file:` URI of the code's explanation (the text of `gwc explain`),
    /// written once into the cache folder.
    fn explain_link(&mut self, code: gw_compiler::Code) -> Option<lsp_types::Uri> {
        let dir = self.explain_dir.as_ref()?;
        let path = dir.join(format!("{}.md", code.as_str()));
        if !self.explained.contains(code.as_str()) {
            std::fs::create_dir_all(dir).ok()?;
            let tmp = dir.join(format!(".{}.{}.tmp", code.as_str(), std::process::id()));
            std::fs::write(&tmp, code.explanation()).ok()?;
            std::fs::rename(&tmp, &path).ok()?;
            self.explained.insert(code.as_str());
        }
        lsp_types::Uri::from_str(&path_to_uri(path.to_str()?)).ok()
    }

    // ------------------------------------------------------------ requests

    fn request(&mut self, r: Request) {
        let key = features::document_of(&r).map(|uri| doc_key(&uri));
        let needs_analysis = features::needs_analysis(&r.method);
        if let Some(key) = key {
            let fresh = match (self.docs.get(&key), self.analyses.get(&key)) {
                (Some(doc), Some(a)) => (a.version == doc.version && a.indexed) || !needs_analysis,
                (None, _) => true, // not open: answered (emptily) at once
                // Completion waits only for a document's first compile (for
                // the names of its imports); afterwards it never waits.
                (Some(_), None) => !needs_analysis && r.method != req::Completion::METHOD,
            };
            // Rename and references also read the other open documents
            // that use the name: each waits for its current compile.
            let other = if fresh {
                features::waits_for(self, &r, &key)
            } else {
                None
            };
            if let Some(wait) = (!fresh).then_some(key).or(other) {
                self.schedule(&wait, Duration::ZERO);
                self.waiting.push(Waiting { request: r, key: wait });
                return;
            }
        }
        self.answer(r);
    }

    /// Whether the compile of the open document `key` is of its current
    /// text, with its index.
    pub fn fresh(&self, key: &str) -> bool {
        match (self.docs.get(key), self.analyses.get(key)) {
            (Some(doc), Some(a)) => a.version == doc.version && a.indexed,
            _ => false,
        }
    }

    /// A formatting worker's reply: sent if the document is still at the
    /// version formatted, else refused (its edits would not apply).
    fn formatted(&mut self, f: Formatted) {
        let current = self.docs.get(&f.key).is_some_and(|d| d.version == f.version);
        let response = match f.reply {
            _ if !current => Response::new_err(
                f.id,
                ErrorCode::ContentModified as i32,
                "the document changed while it was formatted".into(),
            ),
            Ok(value) => Response::new_ok(f.id, value),
            Err((code, message)) => Response::new_err(f.id, code as i32, message),
        };
        self.respond(response);
    }

    fn answer(&mut self, r: Request) {
        // Formatting goes to its worker (or, were it gone, is done here).
        if let Some(job) = features::format_job(self, &r) {
            match self.formats.send(job) {
                Ok(()) => return,
                Err(crossbeam_channel::SendError(job)) => {
                    let reply = features::format_reply(&job);
                    self.formatted(Formatted {
                        id: job.id,
                        key: job.key,
                        version: job.version,
                        reply,
                    });
                    return;
                }
            }
        }
        let id = r.id.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| features::handle(self, r)));
        let response = match result {
            Ok(Ok(value)) => Response::new_ok(id, value),
            Ok(Err((code, message))) => Response::new_err(id, code as i32, message),
            Err(_) => Response::new_err(
                id,
                ErrorCode::InternalError as i32,
                "internal error (a bug: please report it)".into(),
            ),
        };
        self.respond(response);
    }
}

/// Applies one change to a text and its index, clamping its range: the
/// index is edited, not built again, however many changes a notification
/// carries.
fn apply(text: &mut String, lines: &mut LineIndex, change: TextDocumentContentChangeEvent) {
    match change.range {
        None => {
            *text = change.text;
            *lines = LineIndex::new(text);
        }
        Some(range) => {
            let (start, end) = lines.offsets(text, range);
            text.replace_range(start..end, &change.text);
            lines.edit(start, end, &change.text);
        }
    }
}
