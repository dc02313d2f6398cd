//! `gwc lsp`: a language server for `.gw` files over stdio.
//!
//! One main thread owns the open documents and answers requests; one worker
//! thread ([`analysis`]) compiles with the same compiler as `gwc check`,
//! reading unsaved buffers before the disk. A change schedules a compile
//! after [`DEBOUNCE`]; requests that need the compiler's view of the
//! current text (definition, references, rename, hover, symbols, colours,
//! quick fixes) wait for it, while completion and formatting answer from
//! the text at once, so a long compile never holds them up. Diagnostics are
//! published for each open document and for the files it imports that are
//! not open themselves. Nothing a client sends can stop the server but
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
use text::{path_to_uri, uri_to_path, LineIndex};
use transport::Incoming;

/// How long after a change the document is compiled (a new change restarts
/// the wait).
pub const DEBOUNCE: Duration = Duration::from_millis(30);

/// An open document.
pub struct Doc {
    /// The name the compiler reads it as: its path for a `file:` URI.
    pub name: String,
    pub version: i32,
    pub text: Arc<str>,
    pub lines: LineIndex,
}

/// A request waiting for the compile of its document's current version.
struct Waiting {
    request: Request,
    uri: String,
}

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
    waiting: Vec<Waiting>,
    /// The URIs each document's analysis published diagnostics to.
    published: HashMap<String, HashSet<String>>,
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
    let mut server = Server {
        out: io::stdout(),
        docs: HashMap::new(),
        analyses: HashMap::new(),
        parsed: HashMap::new(),
        due: HashMap::new(),
        jobs,
        waiting: Vec::new(),
        published: HashMap::new(),
        explain_dir: explain_dir(),
        explained: HashSet::new(),
        shut_down: false,
    };
    server.main_loop(&in_rx, &res_rx)
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
    fn main_loop(&mut self, incoming: &Receiver<Incoming>, results: &Receiver<Analysis>) -> u8 {
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
                    let name = uri_to_path(&uri).unwrap_or_else(|| uri.clone());
                    let text: Arc<str> = Arc::from(p.text_document.text);
                    self.docs.insert(
                        uri.clone(),
                        Doc {
                            name,
                            version: p.text_document.version,
                            lines: LineIndex::new(&text),
                            text,
                        },
                    );
                    self.changed(&uri, Duration::ZERO);
                }
            }
            note::DidChangeTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidChangeTextDocumentParams>(note::DidChangeTextDocument::METHOD)
                {
                    let uri = p.text_document.uri.as_str().to_string();
                    let Some(doc) = self.docs.get_mut(&uri) else { return };
                    let mut text = doc.text.to_string();
                    for change in p.content_changes {
                        apply(&mut text, change);
                    }
                    doc.lines = LineIndex::new(&text);
                    doc.text = Arc::from(text);
                    doc.version = p.text_document.version;
                    self.changed(&uri, DEBOUNCE);
                }
            }
            note::DidCloseTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidCloseTextDocumentParams>(note::DidCloseTextDocument::METHOD) {
                    let uri = p.text_document.uri.as_str().to_string();
                    if self.docs.remove(&uri).is_some() {
                        self.importers_changed(&uri, Duration::ZERO);
                    }
                    self.analyses.remove(&uri);
                    self.parsed.remove(&uri);
                    self.due.remove(&uri);
                    let mut clear: Vec<String> = self.published.remove(&uri).unwrap_or_default().into_iter().collect();
                    clear.push(uri.clone());
                    for u in clear {
                        if !self.docs.contains_key(&u) {
                            self.publish(&u, Vec::new(), None);
                        }
                    }
                    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                        .into_iter()
                        .partition(|w| w.uri == uri);
                    self.waiting = kept;
                    for w in gone {
                        self.error(w.request.id, ErrorCode::ContentModified, "the document was closed");
                    }
                }
            }
            note::DidSaveTextDocument::METHOD => {
                // A saved file may be imported by others that read it from disk.
                if let Ok(p) = n.extract::<lsp_types::DidSaveTextDocumentParams>(note::DidSaveTextDocument::METHOD) {
                    self.importers_changed(p.text_document.uri.as_str(), Duration::ZERO);
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

    /// `uri` changed: compile it after `delay`, and the open documents that import it.
    fn changed(&mut self, uri: &str, delay: Duration) {
        self.schedule(uri, delay);
        self.importers_changed(uri, delay);
    }

    fn importers_changed(&mut self, uri: &str, delay: Duration) {
        let importers: Vec<String> = self
            .analyses
            .iter()
            .filter(|(root, a)| root.as_str() != uri && a.files.iter().skip(1).any(|f| f.uri == uri))
            .map(|(root, _)| root.clone())
            .collect();
        for root in importers {
            self.schedule(&root, delay);
        }
    }

    fn schedule(&mut self, uri: &str, delay: Duration) {
        if self.docs.contains_key(uri) {
            let at = Instant::now() + delay;
            let entry = self.due.entry(uri.to_string()).or_insert(at);
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
        let overlay: Arc<Overlay> = Arc::new(self.docs.values().map(|d| (d.name.clone(), d.text.clone())).collect());
        for uri in ready {
            self.due.remove(&uri);
            if let Some(doc) = self.docs.get(&uri) {
                let _ = self.jobs.send(Job {
                    uri: uri.clone(),
                    name: doc.name.clone(),
                    version: doc.version,
                    overlay: overlay.clone(),
                });
            }
        }
    }

    // ------------------------------------------------------------ results

    fn analysis(&mut self, a: Analysis) {
        let Some(doc) = self.docs.get(&a.uri) else { return };
        let current = doc.version == a.version;
        // The index worker's result may come after the next compile's.
        if self.analyses.get(&a.uri).is_some_and(|old| old.version > a.version) {
            return;
        }
        let a = Arc::new(a);
        self.analyses.insert(a.uri.clone(), a.clone());
        if a.indexed && a.files.first().is_some_and(|f| f.index.parsed) {
            self.parsed.insert(a.uri.clone(), a.clone());
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
            .partition(|w| w.uri == a.uri);
        self.waiting = waiting;
        for w in ready {
            self.answer(w.request);
        }
    }

    fn publish_analysis(&mut self, a: &Analysis) {
        let mut targets = HashSet::new();
        let mut by_file: Vec<Vec<lsp_types::Diagnostic>> = a.files.iter().map(|_| Vec::new()).collect();
        for (file, d) in &a.diagnostics {
            if let Some(list) = by_file.get_mut(*file) {
                let converted = self.convert(d, *file, a);
                list.push(converted);
            }
        }
        for (n, f) in a.files.iter().enumerate() {
            if n == 0 || !self.docs.contains_key(&f.uri) {
                targets.insert(f.uri.clone());
                let version = (n == 0).then_some(a.version);
                let list = std::mem::take(&mut by_file[n]);
                self.publish(&f.uri, list, version);
            }
        }
        let before = self
            .published
            .insert(a.uri.clone(), targets.clone())
            .unwrap_or_default();
        for gone in before.difference(&targets) {
            if !self.docs.contains_key(gone) {
                self.publish(gone, Vec::new(), None);
            }
        }
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
        let uri = features::document_of(&r);
        let needs_analysis = features::needs_analysis(&r.method);
        if let Some(uri) = uri {
            let fresh = match (self.docs.get(&uri), self.analyses.get(&uri)) {
                (Some(doc), Some(a)) => (a.version == doc.version && a.indexed) || !needs_analysis,
                (None, _) => true, // not open: answered (emptily) at once
                // Completion waits only for a document's first compile (for
                // the names of its imports); afterwards it never waits.
                (Some(_), None) => !needs_analysis && r.method != req::Completion::METHOD,
            };
            if !fresh {
                self.schedule(&uri, Duration::ZERO);
                self.waiting.push(Waiting { request: r, uri });
                return;
            }
        }
        self.answer(r);
    }

    fn answer(&mut self, r: Request) {
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

/// Applies one change to a text, clamping its range.
fn apply(text: &mut String, change: TextDocumentContentChangeEvent) {
    match change.range {
        None => *text = change.text,
        Some(range) => {
            let lines = LineIndex::new(text);
            let (start, end) = lines.offsets(text, range);
            text.replace_range(start..end, &change.text);
        }
    }
}
