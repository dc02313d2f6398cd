//! The requests the server answers: hover, completion, definition,
//! references, rename, outline, folding, formatting, quick fixes and
//! semantic tokens. Keyword knowledge comes from `gw_compiler::schema`
//! only; names and outline from the compiled files' index; diagnostics from
//! the compile of the document's current version.

// lsp-types' `Uri` (the key of `WorkspaceEdit::changes`) hashes and
// compares by its text; clippy sees fluent-uri's lazily parsed parts inside.
#![allow(clippy::mutable_key_type)]

use super::analysis::{Analysis, FileView};
use super::context;
use super::index::{Class, Name};
use super::lexer::{self, Lex};
use super::text::doc_key;
use super::Server;
use gw_compiler::format::{format, Refused};
use gw_compiler::schema::{self, Context, NameKind};
use lsp_server::{ErrorCode, Request};
use lsp_types::request::{self as req, Request as _};
use lsp_types::*;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

pub type Reply = Result<serde_json::Value, (ErrorCode, String)>;

/// What the server can do, for `initialize`.
pub fn capabilities() -> InitializeResult {
    InitializeResult {
        capabilities: ServerCapabilities {
            text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                ..TextDocumentSyncOptions::default()
            })),
            hover_provider: Some(HoverProviderCapability::Simple(true)),
            completion_provider: Some(CompletionOptions {
                trigger_characters: Some(vec![" ".into(), ">".into(), ",".into()]),
                ..CompletionOptions::default()
            }),
            definition_provider: Some(OneOf::Left(true)),
            references_provider: Some(OneOf::Left(true)),
            document_symbol_provider: Some(OneOf::Left(true)),
            folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
            document_formatting_provider: Some(OneOf::Left(true)),
            rename_provider: Some(OneOf::Right(RenameOptions {
                prepare_provider: Some(true),
                work_done_progress_options: WorkDoneProgressOptions::default(),
            })),
            code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
                ..CodeActionOptions::default()
            })),
            semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
                SemanticTokensOptions {
                    legend: legend(),
                    full: Some(SemanticTokensFullOptions::Bool(true)),
                    range: None,
                    work_done_progress_options: WorkDoneProgressOptions::default(),
                },
            )),
            ..ServerCapabilities::default()
        },
        server_info: Some(ServerInfo {
            name: "gwc lsp".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    }
}

/// The semantic token types, in [`Class`] order.
pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: vec![
            SemanticTokenType::KEYWORD,
            SemanticTokenType::PROPERTY,
            SemanticTokenType::VARIABLE,
            SemanticTokenType::STRING,
            SemanticTokenType::NUMBER,
            SemanticTokenType::COMMENT,
            SemanticTokenType::OPERATOR,
            SemanticTokenType::FUNCTION,
            SemanticTokenType::ENUM_MEMBER,
            SemanticTokenType::PARAMETER,
        ],
        token_modifiers: vec![SemanticTokenModifier::DECLARATION],
    }
}

fn class_index(class: Class) -> (u32, u32) {
    match class {
        Class::Keyword => (0, 0),
        Class::Property => (1, 0),
        Class::Name { declaration } => (2, u32::from(declaration)),
        Class::Str | Class::Path => (3, 0),
        Class::Number => (4, 0),
        Class::Comment => (5, 0),
        Class::Operator => (6, 0),
        Class::Function => (7, 0),
        Class::Constant => (8, 0),
        Class::Reference => (9, 0),
    }
}

/// The document a request is about.
pub fn document_of(r: &Request) -> Option<String> {
    r.params.get("textDocument")?.get("uri")?.as_str().map(str::to_string)
}

/// Whether a request waits for the compile of the document's current text.
pub fn needs_analysis(method: &str) -> bool {
    matches!(
        method,
        req::HoverRequest::METHOD
            | req::GotoDefinition::METHOD
            | req::References::METHOD
            | req::Rename::METHOD
            | req::PrepareRenameRequest::METHOD
            | req::DocumentSymbolRequest::METHOD
            | req::SemanticTokensFullRequest::METHOD
            | req::CodeActionRequest::METHOD
    )
}

fn params<P: serde::de::DeserializeOwned>(r: Request) -> Result<P, (ErrorCode, String)> {
    serde_json::from_value(r.params).map_err(|e| (ErrorCode::InvalidParams, format!("invalid params: {e}")))
}

fn ok<T: serde::Serialize>(value: T) -> Reply {
    serde_json::to_value(value).map_err(|e| (ErrorCode::InternalError, e.to_string()))
}

fn failed(message: impl Into<String>) -> Reply {
    Err((ErrorCode::RequestFailed, message.into()))
}

pub fn handle(server: &mut Server, r: Request) -> Reply {
    match r.method.as_str() {
        req::HoverRequest::METHOD => hover(server, params(r)?),
        req::Completion::METHOD => completion(server, params(r)?),
        req::GotoDefinition::METHOD => definition(server, params(r)?),
        req::References::METHOD => references(server, params(r)?),
        req::PrepareRenameRequest::METHOD => prepare_rename(server, params(r)?),
        req::Rename::METHOD => rename(server, params(r)?),
        req::DocumentSymbolRequest::METHOD => symbols(server, params(r)?),
        req::FoldingRangeRequest::METHOD => folding(server, params(r)?),
        req::Formatting::METHOD => formatting(server, params(r)?),
        req::CodeActionRequest::METHOD => code_actions(server, params(r)?),
        req::SemanticTokensFullRequest::METHOD => semantic_tokens(server, params(r)?),
        _ => Err((ErrorCode::MethodNotFound, format!("unknown method `{}`", r.method))),
    }
}

/// The document, its analysis (if any) and the byte offset of a position.
struct At<'a> {
    /// The document's key.
    key: String,
    text: Arc<str>,
    offset: usize,
    analysis: Option<Arc<Analysis>>,
    server: &'a Server,
}

impl At<'_> {
    fn file(&self) -> Option<&FileView> {
        self.analysis.as_ref()?.files.first()
    }

    fn name(&self) -> Option<Name> {
        self.file()?.index.name_at(self.offset).map(|(n, _)| n.clone())
    }

    fn range(&self, start: usize, end: usize) -> Option<Range> {
        let doc = self.server.docs.get(&self.key)?;
        Some(doc.lines.range(&self.text, start, end))
    }
}

/// The key of a request's document.
fn key(doc: &TextDocumentIdentifier) -> String {
    doc_key(doc.uri.as_str())
}

fn at<'a>(server: &'a Server, doc: &TextDocumentIdentifier, position: Position) -> Option<At<'a>> {
    let key = key(doc);
    let d = server.docs.get(&key)?;
    let offset = d.lines.offset(&d.text, position);
    Some(At {
        text: d.text.clone(),
        offset,
        analysis: server.analyses.get(&key).cloned(),
        key,
        server,
    })
}

fn uri(s: &str) -> Option<Uri> {
    Uri::from_str(s).ok()
}

/// Every definition and (if `refs`) reference of a name, across the files
/// of an analysis, as (file, start, end).
fn occurrences<'a>(a: &'a Analysis, name: &Name, refs: bool) -> Vec<(&'a FileView, usize, usize)> {
    let mut out = Vec::new();
    for f in &a.files {
        let same = |n: &&Name| n.kind == name.kind && n.name == name.name;
        out.extend(f.index.defs.iter().filter(same).map(|n| (f, n.start, n.end)));
        if refs {
            out.extend(f.index.refs.iter().filter(same).map(|n| (f, n.start, n.end)));
        }
    }
    out
}

fn location(f: &FileView, start: usize, end: usize) -> Option<Location> {
    Some(Location {
        uri: uri(&f.uri)?,
        range: f.lines.range(&f.text, start, end),
    })
}

/// A definition or use of a name, in one file of the configuration.
struct Site {
    /// The URI to name the file by.
    uri: String,
    range: Range,
    definition: bool,
}

/// The files where `name` (found at the cursor of the document `here`)
/// may be defined or used: those read by the document's own compile and by
/// the compile of every open document that reads a file defining the name
/// (or the document itself, for an undefined name) — the open documents
/// that may use it and the files they import. An open document is read as
/// its own compile has it (its current text). `Err` names a document whose
/// compile is not current (to wait for); `Ok(Err)` says why the uses
/// cannot all be found (a file that does not parse).
fn scope<'a>(server: &'a Server, here: &str, name: &Name) -> Result<Result<Vec<&'a FileView>, String>, String> {
    let Some(a) = server.analyses.get(here) else {
        return Err(here.to_string());
    };
    // An open document whose compile of its current text has not come back
    // yet may use the name too (it may have just imported the defining
    // file): wait for it rather than leave it out.
    if let Some(k) = server.docs.keys().find(|k| k.as_str() != here && !server.fresh(k)) {
        return Err(k.clone());
    }
    let same = |n: &&Name| n.kind == name.kind && n.name == name.name;
    let mut defined_in: Vec<&str> = a
        .files
        .iter()
        .filter(|f| f.index.defs.iter().any(|d| same(&d)))
        .map(|f| f.key.as_str())
        .collect();
    if defined_in.is_empty() {
        defined_in.push(here);
    }
    // The compiles that read a defining file, and the files they read.
    let mut roots: Vec<&Arc<Analysis>> = vec![a];
    roots.extend(
        server
            .analyses
            .iter()
            .filter(|(k, b)| k.as_str() != here && b.files.iter().any(|f| defined_in.contains(&f.key.as_str())))
            .map(|(_, b)| b),
    );
    roots.sort_by(|x, y| x.key.cmp(&y.key));
    let mut files: Vec<&FileView> = Vec::new();
    for root in &roots {
        if !server.fresh(&root.key) {
            return Err(root.key.clone());
        }
        for f in &root.files {
            if files.iter().any(|g| g.key == f.key) {
                continue;
            }
            // An open document is read as its own compile has it, now.
            let view = match server.docs.contains_key(&f.key) {
                true if !server.fresh(&f.key) => return Err(f.key.clone()),
                true => match server.analyses.get(&f.key).and_then(|b| b.files.first()) {
                    Some(own) => own,
                    None => return Err(f.key.clone()),
                },
                false => f,
            };
            files.push(view);
        }
    }
    if let Some(f) = files.iter().find(|f| !f.index.parsed) {
        return Ok(Err(format!(
            "{} does not parse, so its uses of `{}` cannot all be found: fix its syntax error first",
            f.name, name.name
        )));
    }
    Ok(Ok(files))
}

/// Every definition and use of `name` in `files`.
fn sites(server: &Server, files: &[&FileView], name: &Name) -> Vec<Site> {
    let same = |n: &&Name| n.kind == name.kind && n.name == name.name;
    let mut out = Vec::new();
    for f in files {
        let uri = server.uri_of(&f.key);
        let mut add = |list: &[Name], definition: bool| {
            for n in list.iter().filter(same) {
                out.push(Site {
                    uri: uri.clone(),
                    range: f.lines.range(&f.text, n.start, n.end),
                    definition,
                });
            }
        };
        add(&f.index.defs, true);
        add(&f.index.refs, false);
    }
    out
}

/// For rename and references: the open document (other than `key`, whose
/// compile is current) whose compile the request must wait for, if any.
pub fn waits_for(server: &Server, r: &Request, key: &str) -> Option<String> {
    if r.method != req::Rename::METHOD && r.method != req::References::METHOD {
        return None;
    }
    let p: TextDocumentPositionParams = serde_json::from_value(r.params.clone()).ok()?;
    let here = at(server, &p.text_document, p.position)?;
    let name = here.name()?;
    scope(server, key, &name).err()
}

// ------------------------------------------------------------------ hover

fn hover(server: &mut Server, p: HoverParams) -> Reply {
    let pos = p.text_document_position_params;
    let Some(here) = at(server, &pos.text_document, pos.position) else {
        return ok(serde_json::Value::Null);
    };
    let tokens = lexer::lex_from(&here.text, lexer::declaration_start(&here.text, here.offset));
    let cursor = context::at(&here.text, &tokens, here.offset);
    let mut parts = Vec::new();
    let mut range = None;
    if let Some(word) = cursor.word.filter(|w| w.kind == Lex::Word) {
        let w = word.text(&here.text);
        range = here.range(word.start, word.end);
        if let (Some(name), Some(a)) = (here.name(), here.analysis.as_ref()) {
            parts.push(name_hover(a, &name));
        } else if let Some(k) = keyword_at(&here.text, &cursor, w) {
            parts.push(k.hover());
        } else if let Some(code) = gw_compiler::Code::parse(w.trim_matches(|c: char| !c.is_ascii_alphanumeric())) {
            parts.push(code_hover(code));
        }
    }
    if let Some(a) = &here.analysis {
        for (file, d) in &a.diagnostics {
            let span = d.span().unwrap_or_default();
            if *file == 0 && span.start as usize <= here.offset && here.offset <= span.end as usize {
                parts.push(code_hover(d.code));
            }
        }
    }
    if parts.is_empty() {
        return ok(serde_json::Value::Null);
    }
    ok(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: parts.join("\n\n---\n\n"),
        }),
        range,
    })
}

/// The keyword `word` is where the cursor is, if it is one there.
fn keyword_at(text: &str, cursor: &context::Cursor, word: &str) -> Option<&'static schema::Keyword> {
    // A word inside a statement: one of the statement's own words
    // (`weight` in a `server` line), else a keyword starting a statement.
    let part = cursor
        .keyword(text)
        .and_then(|k| k.opens)
        .filter(|c| !c.is_block())
        .and_then(|c| schema::lookup(c, word));
    part.or_else(|| schema::lookup(cursor.block?, word))
}

fn code_hover(code: gw_compiler::Code) -> String {
    format!(
        "**{code}** ({}): {}\n\n{}",
        code.severity().as_str(),
        code.summary(),
        code.explanation()
    )
}

/// A name's definition: its kind, the declaration's text, and where it is.
fn name_hover(a: &Analysis, name: &Name) -> String {
    let defs = occurrences(a, name, false);
    let Some((f, start, _)) = defs.first() else {
        return format!("{} `{}`: not defined (GW0101)", name.kind.as_str(), name.name);
    };
    // Masked like a diagnostic's snippet: an auth's secret, a store's URL.
    let decl = f
        .index
        .symbols
        .iter()
        .find(|s| s.name_start == *start)
        .map(|s| f.shown(s.start..s.end))
        .unwrap_or_default();
    let mut lines: Vec<&str> = decl.lines().take(12).collect();
    if decl.lines().count() > 12 {
        lines.push("  ...");
    }
    let line = f.lines.position(&f.text, *start).line + 1;
    format!(
        "{} `{}`\n```gw\n{}\n```\ndefined in {}:{line}",
        name.kind.as_str(),
        name.name,
        lines.join("\n"),
        gw_compiler::redact::escape_controls(&f.name)
    )
}

// ------------------------------------------------------------------ completion

fn completion(server: &mut Server, p: CompletionParams) -> Reply {
    let pos = p.text_document_position;
    let Some(here) = at(server, &pos.text_document, pos.position) else {
        return ok(serde_json::Value::Null);
    };
    let text = &here.text;
    let tokens = lexer::lex_from(text, lexer::declaration_start(text, here.offset));
    let mut items = Vec::new();
    // In a comment, nothing is code.
    if tokens
        .iter()
        .any(|t| t.kind == Lex::Comment && t.start < here.offset && here.offset <= t.end)
    {
        return ok(CompletionResponse::Array(items));
    }
    let cursor = context::at(text, &tokens, here.offset);
    let names = |kind: NameKind| defined_names(&here, kind);
    let prev = cursor.previous().map(|t| t.text(text)).unwrap_or("");
    let Some(block) = cursor.block else {
        return ok(CompletionResponse::Array(items));
    };
    let keyword = cursor.keyword(text);
    let part_of = keyword.and_then(|k| k.opens).filter(|c| !c.is_block());
    let prev_part = part_of.and_then(|c| schema::lookup(c, prev));
    let first = cursor.statement.first().map(|t| t.text(text)).unwrap_or("");
    if prev == "->" {
        items.extend(names(NameKind::Upstream));
    } else if cursor.statement.is_empty() {
        items.extend(keywords(block));
    } else if block == Context::Top && first == "auth" && cursor.statement.len() == 2 {
        items.extend(values(&["jwt", "api_key"], "auth kind"));
    } else if block == Context::Aggregate && first != "timeout" {
        // A part: `PART UPSTREAM METHOD "path" [optional]`.
        match cursor.statement.len() {
            1 => items.extend(names(NameKind::Upstream)),
            2 => {
                let methods = schema::lookup(Context::Cors, "methods").map_or(&[][..], |k| k.values);
                items.extend(values(methods, "method"));
            }
            3 => {} // the path: a string
            4 => items.extend(keywords(Context::Part).chain(keywords(block))),
            _ => items.extend(keywords(block)),
        }
    } else if block == Context::Route && first == "require" && (2..=3).contains(&cursor.statement.len()) {
        // `require REF OP VALUE`: after the reference its operator; after
        // the operator a value (a string or a list), no keyword.
        if cursor.statement.len() == 2 {
            items.extend(keywords(Context::Require));
            items.extend(["==", "!="].into_iter().map(|op| CompletionItem {
                label: op.to_string(),
                kind: Some(CompletionItemKind::OPERATOR),
                detail: Some(format!("require REF {op} \"value\"")),
                ..CompletionItem::default()
            }));
        }
    } else if let Some(k) = prev_part.filter(|k| !k.values.is_empty()) {
        items.extend(values(k.values, k.keyword));
    } else if let Some(k) = keyword.filter(|_| cursor.statement.len() == 1 || prev == ",") {
        // Right after the statement's keyword (or a comma of its list).
        if let Some(kind) = k.refers {
            items.extend(names(kind));
        } else if !k.values.is_empty() && k.defines.is_none() {
            items.extend(values(k.values, k.keyword));
        } else if k.defines.is_none() && k.value.is_empty() {
            items.extend(keywords(block));
        }
    } else {
        // A statement with its value: the words it may go on with, or a new statement.
        if let Some(part) = part_of {
            items.extend(keywords(part));
        }
        if block != Context::Top || cursor.statement.len() >= 2 {
            items.extend(keywords(block));
        }
    }
    ok(CompletionResponse::Array(items))
}

fn keywords(context: Context) -> impl Iterator<Item = CompletionItem> {
    schema::in_context(context).map(move |k| CompletionItem {
        label: k.keyword.to_string(),
        kind: Some(if context.is_block() && context != Context::Top {
            CompletionItemKind::PROPERTY
        } else {
            CompletionItemKind::KEYWORD
        }),
        detail: Some(k.syntax.to_string()),
        documentation: Some(Documentation::MarkupContent(MarkupContent {
            kind: MarkupKind::Markdown,
            value: k.hover(),
        })),
        ..CompletionItem::default()
    })
}

fn values(list: &'static [&'static str], of: &str) -> impl Iterator<Item = CompletionItem> {
    let detail = of.to_string();
    list.iter().map(move |v| CompletionItem {
        label: v.to_string(),
        kind: Some(CompletionItemKind::ENUM_MEMBER),
        detail: Some(detail.clone()),
        ..CompletionItem::default()
    })
}

/// The names of a kind defined in the document's configuration: those the
/// last compile found (imports included) and those in the text as it is now.
fn defined_names(here: &At<'_>, kind: NameKind) -> Vec<CompletionItem> {
    let mut names: Vec<(String, String)> = Vec::new();
    let analysis = match &here.analysis {
        Some(a) if a.files.first().is_some_and(|f| f.index.parsed) => Some(a),
        _ => here.server.parsed.get(&here.key).or(here.analysis.as_ref()),
    };
    if let Some(a) = analysis {
        for f in &a.files {
            for d in f.index.defs.iter().filter(|d| d.kind == kind) {
                let line = f.lines.position(&f.text, d.start).line + 1;
                names.push((d.name.clone(), format!("{} ({}:{line})", kind.as_str(), f.name)));
            }
        }
    }
    // Declarations in the text as typed: lines that start with `KIND NAME`.
    for line in here.text.lines() {
        let mut words = line.split(|c: char| c.is_whitespace() || c == '{');
        if words.next() == Some(kind.as_str()) {
            if let Some(name) = words.find(|w| !w.is_empty()) {
                names.push((name.to_string(), kind.as_str().to_string()));
            }
        }
    }
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    names
        .into_iter()
        .map(|(label, detail)| CompletionItem {
            label,
            kind: Some(CompletionItemKind::REFERENCE),
            detail: Some(detail),
            ..CompletionItem::default()
        })
        .collect()
}

// ------------------------------------------------------------------ navigation

fn definition(server: &mut Server, p: GotoDefinitionParams) -> Reply {
    let pos = p.text_document_position_params;
    let Some(here) = at(server, &pos.text_document, pos.position) else {
        return ok(serde_json::Value::Null);
    };
    let (Some(a), Some(file)) = (here.analysis.as_ref(), here.file()) else {
        return ok(serde_json::Value::Null);
    };
    // An import's string leads to the file it names.
    for (path, start, end) in &file.index.imports {
        if *start <= here.offset && here.offset <= *end {
            let target = gw_compiler::host::relative_to(&file.name, path);
            let Some(u) = uri(&server.uri_of(&target)) else {
                return ok(serde_json::Value::Null);
            };
            return ok(GotoDefinitionResponse::Scalar(Location {
                uri: u,
                range: Range::default(),
            }));
        }
    }
    let Some(name) = here.name() else {
        return ok(serde_json::Value::Null);
    };
    let locations: Vec<Location> = occurrences(a, &name, false)
        .into_iter()
        .filter_map(|(f, s, e)| location(f, s, e))
        .collect();
    ok(GotoDefinitionResponse::Array(locations))
}

fn references(server: &mut Server, p: ReferenceParams) -> Reply {
    let pos = p.text_document_position;
    let Some(here) = at(server, &pos.text_document, pos.position) else {
        return ok(serde_json::Value::Null);
    };
    let Some(name) = here.name() else {
        return ok(Vec::<Location>::new());
    };
    let found = match scope(here.server, &here.key, &name) {
        Ok(Ok(files)) => sites(here.server, &files, &name),
        Ok(Err(why)) => return failed(why),
        Err(key) => return failed(format!("{key} changed while its uses were searched: try again")),
    };
    let locations: Vec<Location> = found
        .into_iter()
        .filter(|s| p.context.include_declaration || !s.definition)
        .filter_map(|s| {
            Some(Location {
                uri: uri(&s.uri)?,
                range: s.range,
            })
        })
        .collect();
    ok(locations)
}

/// Why the word at the cursor cannot be renamed.
fn not_renamable(here: &At<'_>) -> String {
    let tokens = lexer::lex(&here.text);
    match lexer::at(&tokens, here.offset).map(|i| tokens[i]) {
        Some(t) if t.kind == Lex::Word && schema::all_named(t.text(&here.text)).next().is_some() => format!(
            "`{}` is a keyword: only the names of upstreams, auths, limits and stores can be renamed",
            t.text(&here.text)
        ),
        _ => "nothing to rename here: only the names of upstreams, auths, limits and stores can be renamed".into(),
    }
}

fn prepare_rename(server: &mut Server, p: TextDocumentPositionParams) -> Reply {
    let Some(here) = at(server, &p.text_document, p.position) else {
        return ok(serde_json::Value::Null);
    };
    match here.name() {
        Some(name) => ok(PrepareRenameResponse::RangeWithPlaceholder {
            range: here.range(name.start, name.end).unwrap_or_default(),
            placeholder: name.name,
        }),
        None => failed(not_renamable(&here)),
    }
}

fn rename(server: &mut Server, p: RenameParams) -> Reply {
    let pos = p.text_document_position;
    let Some(here) = at(server, &pos.text_document, pos.position) else {
        return ok(serde_json::Value::Null);
    };
    let Some(name) = here.name() else {
        return failed(not_renamable(&here));
    };
    let new = p.new_name.trim();
    let valid = new.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && new.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return failed(format!(
            "`{new}` is not a name: names are letters, digits, `_` and `-`, starting with a letter or `_`"
        ));
    }
    let files = match scope(here.server, &here.key, &name) {
        Ok(Ok(files)) => files,
        Ok(Err(why)) => return failed(format!("`{}` is not renamed: {why}", name.name)),
        Err(key) => return failed(format!("{key} changed while `{}` was renamed: try again", name.name)),
    };
    // The new name is taken if a file where the name may be used defines it.
    let taken = files
        .iter()
        .any(|f| f.index.defs.iter().any(|d| d.kind == name.kind && d.name == new));
    if taken && new != name.name {
        return failed(format!("there is already a {} named `{new}`", name.kind.as_str()));
    }
    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    for s in sites(here.server, &files, &name) {
        if let Some(u) = uri(&s.uri) {
            let edits = changes.entry(u).or_default();
            if !edits.iter().any(|e| e.range == s.range) {
                edits.push(TextEdit {
                    range: s.range,
                    new_text: new.to_string(),
                });
            }
        }
    }
    ok(WorkspaceEdit {
        changes: Some(changes),
        ..WorkspaceEdit::default()
    })
}

// ------------------------------------------------------------------ outline, folding

fn symbols(server: &mut Server, p: DocumentSymbolParams) -> Reply {
    let Some(file) = server
        .analyses
        .get(&key(&p.text_document))
        .and_then(|a| a.files.first().map(|_| a.clone()))
    else {
        return ok(Vec::<DocumentSymbol>::new());
    };
    let f = &file.files[0];
    fn convert(f: &FileView, s: &super::index::Symbol) -> DocumentSymbol {
        let kind = match s.keyword {
            "import" => SymbolKind::FILE,
            "listen" | "admin" => SymbolKind::INTERFACE,
            "limits" => SymbolKind::OBJECT,
            "upstream" => SymbolKind::CLASS,
            "auth" => SymbolKind::KEY,
            "limit" => SymbolKind::EVENT,
            "store" => SymbolKind::STRUCT,
            "route" => SymbolKind::FUNCTION,
            "test" => SymbolKind::METHOD,
            _ => SymbolKind::FIELD,
        };
        #[allow(deprecated)]
        DocumentSymbol {
            name: shown_name(f, s),
            detail: None,
            kind,
            tags: None,
            deprecated: None,
            range: f.lines.range(&f.text, s.start, s.end),
            selection_range: f.lines.range(&f.text, s.name_start, s.name_end),
            children: (!s.children.is_empty()).then(|| s.children.iter().map(|c| convert(f, c)).collect()),
        }
    }
    let list: Vec<DocumentSymbol> = f.index.symbols.iter().map(|s| convert(f, s)).collect();
    ok(DocumentSymbolResponse::Nested(list))
}

/// A symbol's name as it may be shown: the secrets of its declaration's
/// text masked (a URL's password in a head), control characters escaped.
fn shown_name(f: &FileView, s: &super::index::Symbol) -> String {
    let mut name = s.name.clone();
    for r in f.secrets.iter().filter(|r| r.start < s.end && s.start < r.end) {
        if let Some(secret) = f.text.get(r.clone()).filter(|t| !t.is_empty()) {
            name = name.replace(secret, &"*".repeat(secret.len()));
        }
    }
    gw_compiler::redact::escape_controls(&name).into_owned()
}

fn folding(server: &mut Server, p: FoldingRangeParams) -> Reply {
    let Some(doc) = server.docs.get(&key(&p.text_document)) else {
        return ok(Vec::<FoldingRange>::new());
    };
    let text = &doc.text;
    let line = |offset: usize| doc.lines.line(offset);
    let mut ranges = Vec::new();
    let mut open = Vec::new();
    let mut comments: Option<(u32, u32)> = None;
    let tokens = lexer::lex(text);
    let flush = |run: Option<(u32, u32)>, ranges: &mut Vec<FoldingRange>| {
        if let Some((a, b)) = run.filter(|(a, b)| b > a) {
            ranges.push(FoldingRange {
                start_line: a,
                end_line: b,
                kind: Some(FoldingRangeKind::Comment),
                ..FoldingRange::default()
            });
        }
    };
    for (n, t) in tokens.iter().enumerate() {
        let l = line(t.start);
        // A comment alone on its line continues a run of comment lines.
        let alone = t.kind == Lex::Comment && (n == 0 || line(tokens[n - 1].end) < l);
        if alone {
            comments = match comments {
                Some((a, b)) if b + 1 == l => Some((a, l)),
                other => {
                    flush(other, &mut ranges);
                    Some((l, l))
                }
            };
            continue;
        }
        match t.kind {
            Lex::Open => open.push(l),
            Lex::Close => {
                if let Some(start) = open.pop().filter(|s| *s < l) {
                    ranges.push(FoldingRange {
                        start_line: start,
                        end_line: l,
                        ..FoldingRange::default()
                    });
                }
            }
            _ => {}
        }
    }
    flush(comments, &mut ranges);
    ranges.sort_by_key(|r| (r.start_line, r.end_line));
    ok(ranges)
}

// ------------------------------------------------------------------ formatting, fixes

/// A formatting request, for the formatting worker ([`super::formatter`]):
/// the document's text at `version`, and where it ends.
pub struct FormatJob {
    pub id: lsp_server::RequestId,
    pub key: String,
    pub version: i32,
    pub name: String,
    pub text: Arc<str>,
    pub end: Position,
}

/// The job for a formatting request of an open document; `None` for any
/// other request (answered by [`handle`]).
pub fn format_job(server: &Server, r: &Request) -> Option<FormatJob> {
    if r.method != req::Formatting::METHOD {
        return None;
    }
    let p: DocumentFormattingParams = serde_json::from_value(r.params.clone()).ok()?;
    let key = key(&p.text_document);
    let doc = server.docs.get(&key)?;
    Some(FormatJob {
        id: r.id.clone(),
        version: doc.version,
        name: doc.name.clone(),
        end: doc.lines.position(&doc.text, doc.text.len()),
        text: doc.text.clone(),
        key,
    })
}

/// Formats a job's text: the reply to its request.
pub fn format_reply(job: &FormatJob) -> Reply {
    match format(&job.name, &job.text) {
        Ok(out) if out == *job.text => ok(Vec::<TextEdit>::new()),
        Ok(out) => ok(vec![TextEdit {
            range: Range::new(Position::new(0, 0), job.end),
            new_text: out,
        }]),
        Err(Refused::Syntax { sources, diagnostics }) => {
            let first = diagnostics.first().map(|d| {
                let (line, col) = d.span().map_or((0, 0), |s| sources.line_col(s));
                let message = d.redacted(&sources).message;
                format!(": {} {message} at line {line}, column {col}", d.code)
            });
            failed(format!(
                "not formatted: the file does not parse{}",
                first.unwrap_or_default()
            ))
        }
        Err(Refused::Unsafe(why)) => failed(format!("not formatted ({why})")),
    }
}

/// Formatting a document that is not open: nothing to format (an open
/// document's request is a [`format_job`] for the formatting worker).
fn formatting(_: &mut Server, _: DocumentFormattingParams) -> Reply {
    ok(serde_json::Value::Null)
}

fn code_actions(server: &mut Server, p: CodeActionParams) -> Reply {
    let key = key(&p.text_document);
    let (Some(a), Some(doc)) = (server.analyses.get(&key).cloned(), server.docs.get(&key)) else {
        return ok(Vec::<CodeAction>::new());
    };
    let (from, to) = doc.lines.offsets(&doc.text, p.range);
    let mut actions = Vec::new();
    for (file, d) in a.diagnostics.iter().filter(|(f, _)| *f == 0) {
        let span = d.span().unwrap_or_default();
        let (start, end) = (span.start as usize, span.end as usize);
        if end < from || start > to {
            continue;
        }
        // The compiler says which text its suggestion replaces (the call's
        // name of `fil("k")`, the root of `claims.sub`): nothing is guessed.
        let Some(s) = &d.suggestion else { continue };
        let f = &a.files[*file];
        let (s_start, s_end) = (s.span.start as usize, s.span.end as usize);
        let Some(old) = f.text.get(s_start..s_end) else {
            continue;
        };
        if s.span.file.0 as usize != *file || old.is_empty() || s.replacement.is_empty() {
            continue;
        }
        let new = s.replacement.as_str();
        // The title shows the text as `gwc check` would: masked, escaped.
        let old = f.shown(s_start..s_end);
        let converted = server.convert(d, *file, &a);
        let Some(u) = uri(&f.uri) else { continue };
        let edit = TextEdit {
            range: f.lines.range(&f.text, s_start, s_end),
            new_text: new.to_string(),
        };
        actions.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: format!("Replace `{old}` with `{new}`"),
            kind: Some(CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![converted]),
            edit: Some(WorkspaceEdit {
                changes: Some(HashMap::from([(u, vec![edit])])),
                ..WorkspaceEdit::default()
            }),
            is_preferred: Some(true),
            ..CodeAction::default()
        }));
    }
    ok(actions)
}

// ------------------------------------------------------------------ colours

fn semantic_tokens(server: &mut Server, p: SemanticTokensParams) -> Reply {
    let Some(a) = server.analyses.get(&key(&p.text_document)) else {
        return ok(SemanticTokens::default());
    };
    let Some(f) = a.files.first() else {
        return ok(SemanticTokens::default());
    };
    let mut data = Vec::with_capacity(f.index.classes.len());
    let (mut line, mut col) = (0u32, 0u32);
    let mut walker = f.lines.walker(&f.text);
    for &(start, end, class) in &f.index.classes {
        let a = walker.position(start);
        let b = walker.position(end);
        if b.line != a.line || b.character <= a.character {
            continue;
        }
        let (token_type, modifiers) = class_index(class);
        data.push(SemanticToken {
            delta_line: a.line - line,
            delta_start: if a.line == line { a.character - col } else { a.character },
            length: b.character - a.character,
            token_type,
            token_modifiers_bitset: modifiers,
        });
        (line, col) = (a.line, a.character);
    }
    ok(SemanticTokens { result_id: None, data })
}
