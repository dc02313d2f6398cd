//! Lowering: the pest parse tree of one file becomes declarations in the
//! [`Config`]. Each value's kind is checked here (GW0003, GW0106, GW0002),
//! unknown or repeated attributes are reported (GW0103, GW0105) and required
//! ones enforced (GW0104). Syntax errors from pest become GW0001/GW0002 with
//! messages in the language's words, never pest's rule names.

// `if self.first(..)` records the attribute as seen: it reads better as a
// statement in the arm than as a match guard with a side effect.
#![allow(clippy::collapsible_match)]

mod error;
pub mod value;

pub use error::syntax_error;

use crate::ast::*;
use crate::codes::Code;
use crate::diagnostic::{suggest, Diagnostic, Diagnostics, Suggestion};
use crate::source::{FileId, Span, Spanned};
use gw_grammar::{Pair, Rule};
use std::ops::Range;
use value::{lower_value, span_of, Expect, SVal, Val};

/// What lowering one file yields besides declarations: its imports
/// (resolved relative to the file) with the span of each, and where the
/// file holds secrets: the ranges given, with what the parse tree showed.
pub struct FileOutput {
    pub imports: Vec<Spanned<String>>,
    pub secrets: Vec<Range<usize>>,
}

/// Deeper nesting of `{ [ (` is refused before parsing, so that neither the
/// parser nor lowering can exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// Parses and lowers one file into `config`, in batches of declarations of
/// about [`BATCH`] bytes: the parse tree of one batch is lowered and dropped
/// before the next is parsed, so memory follows the AST, not pest's token
/// queue for the whole file.
///
/// After a syntax error, parsing recovers at the next line that starts, in
/// its first column, with a declaration keyword (`route`, `upstream`, ...):
/// from then on each declaration is parsed only up to such a line, so an
/// unclosed `{` ends at the next declaration instead of swallowing the rest
/// of the file, and every later mistake is still reported. Column 1 is what
/// tells a declaration from an attribute (`auth` and `limit` are both).
/// Each byte is parsed at most three times (as part of a batch, once more
/// on its own after a batch fails, and once more after the first error), so
/// the whole stays linear in the size of the file.
///
/// `secrets` are where the text holds secrets as the lexical scan found
/// them ([`crate::redact::secret_ranges`]): a message quoting a value
/// ("found `...`") masks them, and those the parse tree shows are added.
pub fn lower_file(
    file: FileId,
    name: &str,
    text: &str,
    secrets: &[Range<usize>],
    config: &mut Config,
    diags: &mut Diagnostics,
) -> FileOutput {
    let mut out = FileOutput {
        imports: Vec::new(),
        secrets: secrets.to_vec(),
    };
    let too_deep = |at: usize| {
        Diagnostic::new(
            Code::GW0001,
            format!("blocks and lists are nested more than {MAX_NESTING} deep"),
        )
        .primary(Span::new(file, at, at + 1), "too deep")
        .help("a `.gw` file never needs this much nesting: look for unbalanced brackets")
    };
    // Too deep: once per declaration (from a declaration keyword in column
    // 1 to the next), which is then blanked (its bytes made spaces, so
    // offsets stay) and the rest checked as usual. Should the rest still
    // nest too deep (unclosed brackets adding up across declarations), the
    // file is refused whole, once.
    let blanked = blank_too_deep(text);
    let text: &str = match &blanked {
        None => text,
        Some((blanked, deep)) => {
            if let Some(at) = error::too_deep(blanked, MAX_NESTING) {
                diags.push(too_deep(at));
                return out;
            }
            for &at in deep {
                diags.push(too_deep(at));
            }
            blanked
        }
    };
    let mut l = Lowerer {
        file,
        base: 0,
        name,
        text,
        secrets: std::mem::take(&mut out.secrets),
        diags,
        config,
    };
    // The first syntax error, kept until recovery reports one of its own
    // (parsing that declaration again up to the next declaration line).
    let mut first_error: Option<Diagnostic> = None;
    let mut reported = false;
    // While recovering: where the current declaration's text ends.
    let mut chunk_end = 0;
    // Declarations are parsed one at a time from here up to this offset
    // (a batch that did not parse).
    let mut one_at_a_time = 0;
    let mut pos = 0;
    loop {
        let start = skip_blanks(text, pos);
        if start >= text.len() {
            break;
        }
        if first_error.is_none() && start >= one_at_a_time {
            // Until the first error, declarations are parsed in batches
            // that end where a line starts with a declaration keyword:
            // one pest call per batch, not per declaration. A batch that
            // does not parse (a mistake in it, or a declaration that goes
            // on past its end) is parsed again a declaration at a time.
            let end = batch_end(text, start);
            if let Ok(pairs) = gw_grammar::parse_file(&text[start..end]) {
                l.base = start;
                for decl in pairs.flat_map(|p| p.into_inner()) {
                    l.decl(decl, &mut out);
                }
                pos = end;
                continue;
            }
            one_at_a_time = end;
        }
        let end = if first_error.is_some() {
            if chunk_end <= start {
                chunk_end = next_declaration_line(text, start);
            }
            chunk_end
        } else {
            text.len()
        };
        match gw_grammar::parse_declaration(&text[start..end]) {
            Ok(pairs) => {
                let mut next = start;
                l.base = start;
                for top in pairs {
                    next = start + top.as_span().end();
                    for decl in top.into_inner() {
                        l.decl(decl, &mut out);
                    }
                }
                if next <= start {
                    break; // a declaration is never empty; never loop
                }
                pos = next;
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(syntax_error(file, text, start, end, &e));
                    continue; // the same declaration again, up to the next declaration line
                }
                l.diags.push(syntax_error(file, text, start, end, &e));
                l.unparsed(start, end);
                reported = true;
                pos = end;
            }
        }
    }
    if let (Some(d), false) = (first_error, reported) {
        l.diags.push(d);
    }
    out.secrets = l.secrets;
    out
}

/// About how much text one batch of declarations holds.
const BATCH: usize = 64 * 1024;

/// Where a batch of declarations starting at `start` ends: the start of
/// the first line with a declaration keyword in column 1 after `start +
/// BATCH`, or the end of the text.
fn batch_end(text: &str, start: usize) -> usize {
    let mut from = start.saturating_add(BATCH);
    if from >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(from) {
        from += 1;
    }
    next_declaration_line(text, from)
}

/// The first offset at or after `pos` that is not a blank or a comment.
fn skip_blanks(text: &str, mut pos: usize) -> usize {
    let bytes = text.as_bytes();
    while pos < bytes.len() {
        match bytes[pos] {
            b' ' | b'\t' | b'\r' | b'\n' => pos += 1,
            b'#' => pos = text[pos..].find('\n').map_or(text.len(), |i| pos + i),
            _ if text[pos..].starts_with('\u{FEFF}') => pos += '\u{FEFF}'.len_utf8(),
            _ => break,
        }
    }
    pos
}

/// The language's unit for a unit word written apart from its number
/// (`3 seconds`, `10 MB`, `20 percent`), case aside.
fn unit_word(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        "b" | "byte" | "bytes" => "B",
        "kib" => "KiB",
        "mib" => "MiB",
        "gib" => "GiB",
        "kb" => "KB",
        "mb" => "MB",
        "gb" => "GB",
        "percent" => "%",
        _ => return None,
    })
}

/// `text` with each declaration that nests deeper than [`MAX_NESTING`]
/// blanked (every byte but newlines made a space), and where each went
/// too deep; `None` when none does.
fn blank_too_deep(text: &str) -> Option<(String, Vec<usize>)> {
    error::too_deep(text, MAX_NESTING)?;
    let mut bytes = text.as_bytes().to_vec();
    let mut deep = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = next_declaration_line(text, start);
        if let Some(at) = error::too_deep(&text[start..end], MAX_NESTING) {
            deep.push(start + at);
            for b in &mut bytes[start..end] {
                if *b != b'\n' {
                    *b = b' ';
                }
            }
        }
        start = end;
    }
    // Whole declarations were blanked, so the text is still UTF-8.
    String::from_utf8(bytes).ok().map(|blanked| (blanked, deep))
}

/// The declaration keywords, which recovery looks for in column 1.
pub(crate) const DECLARATION_KEYWORDS: [&str; 11] = [
    "import", "listen", "admin", "limits", "compress", "upstream", "auth", "limit", "store", "route", "test",
];

/// The start of the first line after `pos` that begins with a declaration
/// keyword (a whole word) in its first column; the end of the text if none.
fn next_declaration_line(text: &str, pos: usize) -> usize {
    let mut from = pos;
    while let Some(i) = text[from..].find('\n') {
        let line = from + i + 1;
        if declaration_keyword_at(text, line).is_some() {
            return line;
        }
        from = line;
    }
    text.len()
}

/// `type/subtype` or `type/*`: tokens (RFC 9110 5.6.2) around one `/`.
fn is_media_range(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match s.split_once('/') {
        Some((ty, "*")) => token(ty),
        Some((ty, sub)) => token(ty) && token(sub),
        None => false,
    }
}

/// The declaration keyword `text` has at `at`, as a whole word.
fn declaration_keyword_at(text: &str, at: usize) -> Option<&'static str> {
    let rest = text.get(at..)?;
    DECLARATION_KEYWORDS.into_iter().find(|kw| {
        rest.starts_with(kw)
            && !rest[kw.len()..]
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

struct Lowerer<'a> {
    file: FileId,
    /// Where the declaration being lowered starts in the file (its parse
    /// tree's offsets count from there).
    base: usize,
    name: &'a str,
    text: &'a str,
    /// Where the text holds secrets, sorted and disjoint.
    secrets: Vec<Range<usize>>,
    diags: &'a mut Diagnostics,
    config: &'a mut Config,
}

/// Attributes already given in one block, for GW0105.
#[derive(Default)]
struct Seen(Vec<(String, Span)>);

impl<'a> Lowerer<'a> {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        span_of(self.file, self.base, pair)
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> SVal {
        lower_value(self.file, self.base, pair, self.diags)
    }

    fn expect(&mut self) -> Expect<'_> {
        Expect {
            diags: self.diags,
            source: self.text,
            secrets: &self.secrets,
        }
    }

    /// Notes where `v`, a secret value (of `secret` or `keys`), is written:
    /// a string's content, each item of a list, the arguments of a call
    /// other than `env()` and `file()` (references, not secrets), any other
    /// value whole. What the lexical scan missed (a layout it does not
    /// follow) is masked all the same.
    fn note_secret(&mut self, v: &SVal) {
        let (start, end) = (v.span.start as usize, v.span.end as usize);
        match &v.val {
            Val::Str(_) => self.secret_range(start + 1..end.saturating_sub(1)),
            Val::Unterminated => self.secret_range(start + 1..end),
            Val::List(items) | Val::Call(_, items) => {
                if !matches!(&v.val, Val::Call(name, _) if name == "env" || name == "file") {
                    for item in items {
                        self.note_secret(item);
                    }
                }
            }
            _ => self.secret_range(start..end),
        }
    }

    /// Notes the values an unknown attribute of an `auth` block swallowed
    /// (the pair's children after its name) as secrets.
    fn note_loose_secrets(&mut self, pair: Pair<'_, Rule>) {
        for child in pair.into_inner().skip(1) {
            self.note_loose(child);
        }
    }

    /// A string's content, a bare value whole, lists and blocks item by
    /// item, the arguments of a call other than `env()` and `file()`.
    fn note_loose(&mut self, pair: Pair<'_, Rule>) {
        match pair.as_rule() {
            Rule::value | Rule::any_block | Rule::list => {
                for child in pair.into_inner() {
                    self.note_loose(child);
                }
            }
            Rule::call => {
                let mut inner = pair.into_inner();
                if inner.next().is_some_and(|n| !matches!(n.as_str(), "env" | "file")) {
                    for child in inner {
                        self.note_loose(child);
                    }
                }
            }
            Rule::string | Rule::unterminated_string => {
                let span = self.span(&pair);
                let end = span.end as usize - usize::from(pair.as_rule() == Rule::string);
                self.secret_range(span.start as usize + 1..end);
            }
            Rule::comma | Rule::arrow | Rule::lbrace | Rule::rbrace => {}
            _ => {
                let span = self.span(&pair);
                self.secret_range(span.start as usize..span.end as usize);
            }
        }
    }

    /// Adds `r` to the file's secrets, keeping them sorted and disjoint.
    fn secret_range(&mut self, r: Range<usize>) {
        if r.start >= r.end {
            return;
        }
        let i = self.secrets.partition_point(|x| x.end < r.start);
        if self
            .secrets
            .get(i)
            .is_some_and(|x| x.start <= r.start && r.end <= x.end)
        {
            return; // the lexical scan found it: the usual case
        }
        let mut j = i;
        let mut merged = r;
        while let Some(x) = self.secrets.get(j).filter(|x| x.start <= merged.end) {
            merged = merged.start.min(x.start)..merged.end.max(x.end);
            j += 1;
        }
        self.secrets.splice(i..j, [merged]);
    }

    /// Records attribute `kw` of `block`; false (and GW0105) if already given.
    fn first(&mut self, seen: &mut Seen, kw: &str, span: Span, block: &str) -> bool {
        if let Some((_, first)) = seen.0.iter().find(|(k, _)| k == kw) {
            self.diags.push(
                Diagnostic::new(Code::GW0105, format!("`{kw}` given twice in {block}"))
                    .primary(span, "given again here")
                    .secondary(*first, "first given here")
                    .help(format!("remove one of the `{kw}` lines")),
            );
            return false;
        }
        seen.0.push((kw.to_string(), span));
        true
    }

    fn unknown(&mut self, pair: Pair<'_, Rule>, block: &str, known: &[&str]) {
        let Some(name) = pair.into_inner().next() else { return };
        let span = self.span(&name);
        let word = name.as_str();
        if self.unit_apart(span, word) {
            return;
        }
        let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        self.diags.push(
            Diagnostic::new(Code::GW0103, format!("unknown attribute `{word}` in {block}"))
                .primary(span, "unknown attribute")
                .help(format!("{block} takes {list}"))
                .did_you_mean(span, suggest(word, known.iter().copied())),
        );
    }

    /// `timeout 3 seconds`: the value `3` was already reported (it is not a
    /// duration), and `seconds` is its unit written apart, not an unknown
    /// attribute. Says so in the value's diagnostic (`found `3 seconds``,
    /// help `3s`) instead of adding a second one; false when `word` is not
    /// a unit right after a number that was reported.
    fn unit_apart(&mut self, span: Span, word: &str) -> bool {
        let Some(unit) = unit_word(word) else { return false };
        let before = &self.text[..span.start as usize];
        let gap = before.len() - before.trim_end_matches([' ', '\t']).len();
        let digits = before[..before.len() - gap]
            .bytes()
            .rev()
            .take_while(|b| b.is_ascii_digit() || *b == b'_')
            .count();
        let number_end = before.len() - gap;
        let number_start = number_end - digits;
        let starts_token = self.text[..number_start]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace());
        if gap == 0 || digits == 0 || !starts_token {
            return false;
        }
        let number = Span::new(span.file, number_start, number_end);
        let Some(d) = self.diags.last_at_mut(number) else {
            return false;
        };
        let n = &self.text[number_start..number_end];
        let written = format!("{n}{}{word}", &before[number_end..]);
        d.message = d
            .message
            .replace(&format!("found `{n}`"), &format!("found `{written}`"));
        if let Some(label) = d.labels.iter_mut().find(|l| l.primary) {
            label.span = Span::new(span.file, number_start, span.end as usize);
            label.message = "a number and its unit, apart".into();
        }
        let wanted = |what: &str| d.message.starts_with(&format!("expected {what}"));
        let fits = match unit {
            "ms" | "s" | "m" | "h" => wanted("a duration"),
            "%" => wanted("a percentage"),
            _ => wanted("a size"),
        };
        if fits {
            d.help = Some(format!("write the number and its unit as one word: `{n}{unit}`"));
            d.suggestion = Some(Suggestion {
                span: Span::new(span.file, number_start, span.end as usize),
                replacement: format!("{n}{unit}"),
            });
        }
        true
    }

    fn missing(&mut self, span: Span, attr: &str, block: &str, example: &str) {
        self.diags.push(
            Diagnostic::new(Code::GW0104, format!("{block} is missing `{attr}`"))
                .primary(span, format!("needs `{attr}`"))
                .help(format!("add `{example}`")),
        );
    }

    /// Notes the name a declaration that did not parse (`text[start..end]`)
    /// would have defined (`upstream NAME`, `auth NAME`, `limit NAME`,
    /// `store NAME`), so that the routes naming it are not also told the name
    /// is unknown.
    fn unparsed(&mut self, start: usize, end: usize) {
        let Some(keyword) = declaration_keyword_at(self.text, start) else {
            return;
        };
        if !matches!(keyword, "upstream" | "auth" | "limit" | "store") {
            return;
        }
        let rest = &self.text[start + keyword.len()..end];
        let name_start = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let name: String = rest[name_start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !name.is_empty() {
            self.config.unparsed.push((keyword, name));
        }
    }

    fn decl(&mut self, pair: Pair<'_, Rule>, out: &mut FileOutput) {
        match pair.as_rule() {
            Rule::import => self.import(pair, out),
            Rule::listen => self.listen(pair),
            Rule::admin => {
                let span = self.span(&pair);
                if let Some(v) = pair.into_inner().find(|p| p.as_rule() == Rule::value) {
                    let v = self.value(v);
                    if let Some(a) = self.expect().address(&v, false) {
                        self.config.admins.push(a);
                    }
                } else {
                    let _ = span;
                }
            }
            Rule::limits => self.limits(pair),
            Rule::trust_proxies => self.trust_proxies(pair),
            Rule::compress => {
                let span = self.span(&pair);
                match self.compress(pair) {
                    Some(RouteCompress::On(c)) => self.config.compress.push(c),
                    Some(RouteCompress::Off(_)) => self.diags.push(
                        Diagnostic::new(Code::GW0106, "`compress off` at the top level")
                            .primary(span, "only a route opts out")
                            .help("remove it (without a top-level `compress` block nothing is compressed), or write `compress off` in a route"),
                    ),
                    None => {}
                }
            }
            Rule::upstream => self.upstream(pair),
            Rule::auth => self.auth(pair),
            Rule::limit => self.limit(pair),
            Rule::store => self.store(pair),
            Rule::route => self.route(pair),
            Rule::test => self.test(pair),
            Rule::top_unknown => {
                let Some(name) = pair.into_inner().next() else { return };
                let span = self.span(&name);
                let word = name.as_str();
                let known = [
                    "import",
                    "listen",
                    "admin",
                    "limits",
                    "trust_proxies",
                    "compress",
                    "upstream",
                    "auth",
                    "limit",
                    "store",
                    "route",
                    "test",
                ];
                self.diags.push(
                    Diagnostic::new(Code::GW0001, format!("expected a declaration, found `{word}`"))
                        .primary(span, "unknown declaration")
                        .help("a declaration starts with `import`, `listen`, `admin`, `limits`, `trust_proxies`, `compress`, `upstream`, `auth`, `limit`, `store`, `route` or `test`")
                        .did_you_mean(span, suggest(word, known)),
                );
            }
            _ => {}
        }
    }

    fn import(&mut self, pair: Pair<'_, Rule>, out: &mut FileOutput) {
        let Some(v) = pair.into_inner().find(|p| p.as_rule() == Rule::value) else {
            return;
        };
        let v = self.value(v);
        if let Some(s) = self.expect().string(&v, "a file name such as `\"common.gw\"`") {
            let path = crate::host::relative_to(self.name, &s.node);
            out.imports.push(Spanned::new(path, s.span));
        }
    }

    /// `trust_proxies ["10.0.0.0/8", "127.0.0.1"]`.
    fn trust_proxies(&mut self, pair: Pair<'_, Rule>) {
        let Some(v) = pair.into_inner().find(|p| p.as_rule() == Rule::value) else {
            return;
        };
        let v = self.value(v);
        let Val::List(items) = &v.val else {
            self.expect().mismatch(
                &v,
                "a list of addresses or CIDR ranges such as `[\"10.0.0.0/8\", \"127.0.0.1\"]`",
                None,
            );
            return;
        };
        for item in items {
            if let Some(net) = self.expect().ip_range(item) {
                self.config.trust_proxies.push(net);
            }
        }
    }

    fn listen(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::k_listen).peekable();
        let Some(addr) = inner.next() else { return };
        let addr = self.value(addr);
        let address = self.expect().address(&addr, false);
        let mut kind = ListenKind::Http;
        let proxy_protocol = inner.next_if(|p| p.as_rule() == Rule::listen_proxy).is_some();
        if let Some(p) = inner.next() {
            match p.as_rule() {
                Rule::listen_tls => {
                    let mut certs = Vec::new();
                    let mut tls_span = span;
                    let mut client_ca = None;
                    let mut client_auth = None;
                    let mut seen = Seen::default();
                    for a in p.into_inner() {
                        match a.as_rule() {
                            Rule::k_tls => tls_span = self.span(&a),
                            Rule::tls_cert => {
                                if let Some(c) = self.certificate(a) {
                                    certs.push(c);
                                }
                            }
                            Rule::tls_client_ca => {
                                let at = self.span(&a);
                                let Some(v) = a.into_inner().find(|p| p.as_rule() == Rule::value) else {
                                    continue;
                                };
                                let v = self.value(v);
                                let name = self.name;
                                let ca = self.expect().source(&v, "a CA certificate file", name, true);
                                if self.first(&mut seen, "client_ca", at, "a `tls` block") {
                                    client_ca = ca;
                                }
                            }
                            Rule::tls_client_auth => {
                                let at = self.span(&a);
                                let Some(v) = a.into_inner().find(|p| p.as_rule() == Rule::value) else {
                                    continue;
                                };
                                let v = self.value(v);
                                let how = match &v.val {
                                    Val::Ident(w) if w == "required" => Some(true),
                                    Val::Ident(w) if w == "optional" => Some(false),
                                    _ => {
                                        let typo = match &v.val {
                                            Val::Ident(w) => suggest(w, ["required", "optional"]),
                                            _ => None,
                                        };
                                        self.expect()
                                            .mismatch_typo(&v, "`required` or `optional`", None, v.span, typo);
                                        None
                                    }
                                };
                                if self.first(&mut seen, "client_auth", at, "a `tls` block") {
                                    client_auth = how.map(|how| Spanned::new(how, v.span));
                                }
                            }
                            Rule::tls_unknown => {
                                self.unknown(a, "a `tls` block", &["cert", "client_ca", "client_auth"])
                            }
                            _ => {}
                        }
                    }
                    kind = ListenKind::Tls {
                        certs,
                        tls_span,
                        client_ca,
                        client_auth,
                    };
                }
                Rule::listen_tcp => {
                    let Some(v) = p.into_inner().find(|p| p.as_rule() == Rule::value) else {
                        return;
                    };
                    let v = self.value(v);
                    let Some(upstream) = self.expect().name(&v, "an upstream name") else {
                        return;
                    };
                    kind = ListenKind::Tcp { upstream };
                }
                _ => {}
            }
        }
        if let Some(address) = address {
            self.config.listens.push(Listen {
                address,
                kind,
                proxy_protocol,
                span,
            });
        }
    }

    fn certificate(&mut self, pair: Pair<'_, Rule>) -> Option<Certificate> {
        let span = self.span(&pair);
        let values: Vec<_> = pair.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
        let mut values = values
            .into_iter()
            .map(|v| self.value(v))
            .collect::<Vec<_>>()
            .into_iter();
        let name = self.name;
        let cert = values
            .next()
            .and_then(|v| self.expect().source(&v, "a certificate file", name, true));
        let key = values
            .next()
            .and_then(|v| self.expect().source(&v, "a key file", name, true));
        let sni = values
            .next()
            .and_then(|v| self.expect().string(&v, "a server name such as `\"api.example.com\"`"))
            .and_then(|s| {
                // A DNS name, optionally a `*.` wildcard (TLS matches those).
                let name = s.node.strip_prefix("*.").unwrap_or(&s.node);
                if is_host_name(name) {
                    return Some(s);
                }
                self.diags.push(
                    Diagnostic::new(Code::GW0003, format!("invalid server name `{}`", s.node))
                        .primary(s.span, "not a DNS name")
                        .help("write the name without scheme, port or path, such as `\"api.example.com\"` or `\"*.example.com\"`"),
                );
                None
            });
        Some(Certificate {
            cert: cert?,
            key: key?,
            sni: sni.map(|s| Spanned::new(s.node.to_ascii_lowercase(), s.span)),
            span,
        })
    }

    /// `(keyword, its span, the value)` of a `kw value` setting.
    fn setting(&mut self, pair: Pair<'_, Rule>) -> Option<(String, Span, SVal)> {
        let mut inner = pair.into_inner();
        let kw = inner.next()?;
        let kw_span = self.span(&kw);
        let kw = kw.as_str().to_string();
        let v = inner.find(|p| p.as_rule() == Rule::value)?;
        let v = self.value(v);
        Some((kw, kw_span, v))
    }

    /// `(keyword, span, values)` of a `kw v, v, ...` setting.
    fn list_setting(&mut self, pair: Pair<'_, Rule>) -> Option<(String, Span, Vec<SVal>)> {
        let mut inner = pair.into_inner();
        let kw = inner.next()?;
        let kw_span = self.span(&kw);
        let kw = kw.as_str().to_string();
        let values = inner.filter(|p| p.as_rule() == Rule::value).collect::<Vec<_>>();
        let values = values.into_iter().map(|v| self.value(v)).collect();
        Some((kw, kw_span, values))
    }

    fn limits(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut limits = ServerLimits {
            span,
            ..ServerLimits::default()
        };
        let mut seen = Seen::default();
        const KNOWN: &[&str] = &[
            "header_timeout",
            "idle_timeout",
            "max_header_size",
            "max_body_size",
            "max_connections",
        ];
        for a in pair.into_inner() {
            match a.as_rule() {
                Rule::limits_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, "`limits`") {
                        continue;
                    }
                    match kw.as_str() {
                        "header_timeout" => limits.header_timeout = self.expect().positive_duration(&v, &kw),
                        "idle_timeout" => limits.idle_timeout = self.expect().positive_duration(&v, &kw),
                        "max_header_size" => limits.max_header_size = self.positive_size(&v, &kw),
                        "max_body_size" => limits.max_body_size = self.expect().size(&v),
                        _ => limits.max_connections = self.expect().int(&v, &kw, 1, u32::MAX as u64),
                    }
                }
                Rule::limits_unknown => self.unknown(a, "`limits`", KNOWN),
                _ => {}
            }
        }
        self.config.limits.push(limits);
    }

    fn positive_size(&mut self, v: &SVal, what: &str) -> Option<Spanned<u64>> {
        let s = self.expect().size(v)?;
        if s.node == 0 {
            self.expect().out_of_range(
                v.span,
                format!("`{what}` must be more than zero"),
                "use a size such as `16KiB`",
            );
            return None;
        }
        Some(s)
    }

    fn upstream(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::k_upstream);
        let Some(name) = inner.next() else { return };
        let name = Spanned::new(name.as_str().to_string(), self.span(&name));
        let block = format!("upstream `{}`", name.node);
        let mut up = Upstream {
            name,
            balance: None,
            servers: Vec::new(),
            health: None,
            eject: None,
            connect_timeout: None,
            timeout: None,
            retry: None,
            pool: None,
            http2: None,
            tls: None,
            host_header: None,
            span,
        };
        let mut seen = Seen::default();
        const KNOWN: &[&str] = &[
            "balance",
            "server",
            "health",
            "eject",
            "connect_timeout",
            "timeout",
            "retry",
            "pool",
            "http2",
            "tls",
            "host_header",
        ];
        for a in inner {
            let a_span = self.span(&a);
            match a.as_rule() {
                Rule::server => {
                    if let Some(s) = self.server(a) {
                        up.servers.push(s);
                    }
                }
                Rule::upstream_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, &block) {
                        continue;
                    }
                    match kw.as_str() {
                        "balance" => up.balance = self.balance(&v),
                        "connect_timeout" => up.connect_timeout = self.expect().positive_duration(&v, &kw),
                        "host_header" => up.host_header = self.host_header(&v),
                        _ => up.timeout = self.expect().positive_duration(&v, &kw),
                    }
                }
                Rule::health => {
                    if self.first(&mut seen, "health", a_span, &block) {
                        up.health = Some(self.health(a));
                    }
                }
                Rule::eject => {
                    if self.first(&mut seen, "eject", a_span, &block) {
                        up.eject = Some(self.eject(a));
                    }
                }
                Rule::pool => {
                    if self.first(&mut seen, "pool", a_span, &block) {
                        up.pool = Some(self.pool(a));
                    }
                }
                Rule::retry => {
                    if self.first(&mut seen, "retry", a_span, &block) {
                        up.retry = self.retry(a);
                    }
                }
                Rule::http2 => {
                    if self.first(&mut seen, "http2", a_span, &block) {
                        up.http2 = Some(a_span);
                    }
                }
                Rule::upstream_tls => {
                    if self.first(&mut seen, "tls", a_span, &block) {
                        up.tls = Some(self.upstream_tls(a));
                    }
                }
                Rule::upstream_unknown => self.unknown(a, &block, KNOWN),
                _ => {}
            }
        }
        self.config.upstreams.push(up);
    }

    /// `host_header client | server | "NAME"`.
    fn host_header(&mut self, v: &SVal) -> Option<Spanned<HostHeader>> {
        let h = match &v.val {
            Val::Ident(s) if s == "client" => HostHeader::Client,
            Val::Ident(s) if s == "server" => HostHeader::Server,
            Val::Str(_) => {
                let s = self.expect().string(v, "a host name")?;
                let (host, port) = match s.node.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') => (h, Some(p)),
                    _ => (s.node.as_str(), None),
                };
                if !is_host_name(host) || port.is_some_and(|p| p.parse::<u16>().is_err()) {
                    self.diags.push(
                        Diagnostic::new(Code::GW0003, format!("invalid host name `{}`", s.node))
                            .primary(s.span, "not a host name")
                            .help("write a name with an optional port, without scheme or path, such as `\"api.example.com\"`"),
                    );
                    return None;
                }
                HostHeader::Fixed(s.node.to_ascii_lowercase())
            }
            Val::Ident(other) => {
                self.diags.push(
                    Diagnostic::new(Code::GW0106, format!("unknown `host_header` value `{other}`"))
                        .primary(v.span, "not `client`, `server` or a string")
                        .help("write `host_header client` (the client's Host), `host_header server` (the server's host and port) or `host_header \"api.example.com\"`")
                        .did_you_mean(v.span, suggest(other, ["client", "server"])),
                );
                return None;
            }
            _ => {
                self.expect().mismatch(
                    v,
                    "`client`, `server` or a host name such as `\"api.example.com\"`",
                    None,
                );
                return None;
            }
        };
        Some(Spanned::new(h, v.span))
    }

    /// An upstream's `tls` or `tls { ca .. server_name .. cert .. key .. }`.
    fn upstream_tls(&mut self, pair: Pair<'_, Rule>) -> UpstreamTls {
        let span = self.span(&pair);
        let mut tls = UpstreamTls {
            ca: None,
            server_name: None,
            client_cert: None,
            span,
        };
        let block = "an upstream's `tls` block";
        let mut seen = Seen::default();
        let name = self.name;
        for a in pair.into_inner() {
            let a_span = self.span(&a);
            match a.as_rule() {
                Rule::k_tls => tls.span = a_span,
                Rule::upstream_tls_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, block) {
                        continue;
                    }
                    if kw == "ca" {
                        tls.ca = self.expect().source(&v, "a CA certificate file", name, true);
                        continue;
                    }
                    let Some(s) = self.expect().string(&v, "a server name such as `\"api.example.com\"`") else {
                        continue;
                    };
                    let ok = is_host_name(&s.node) || s.node.parse::<std::net::IpAddr>().is_ok();
                    if ok {
                        tls.server_name = Some(Spanned::new(s.node.to_ascii_lowercase(), s.span));
                    } else {
                        self.diags.push(
                            Diagnostic::new(Code::GW0003, format!("invalid server name `{}`", s.node))
                                .primary(s.span, "not a DNS name or IP address")
                                .help("write the name without scheme, port or path, such as `\"ledger.internal\"`"),
                        );
                    }
                }
                Rule::upstream_tls_cert => {
                    if !self.first(&mut seen, "cert", a_span, block) {
                        continue;
                    }
                    let values: Vec<_> = a.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
                    let values: Vec<SVal> = values.into_iter().map(|v| self.value(v)).collect();
                    let cert = values
                        .first()
                        .and_then(|v| self.expect().source(v, "a certificate file", name, true));
                    let key = values
                        .get(1)
                        .and_then(|v| self.expect().source(v, "a key file", name, true));
                    if let (Some(cert), Some(key)) = (cert, key) {
                        tls.client_cert = Some(ClientCertificate {
                            cert,
                            key,
                            span: a_span,
                        });
                    }
                }
                Rule::upstream_tls_unknown => self.unknown(a, block, &["ca", "server_name", "cert"]),
                _ => {}
            }
        }
        tls
    }

    fn balance(&mut self, v: &SVal) -> Option<Spanned<Balance>> {
        const KNOWN: &[&str] = &["round_robin", "least_conn", "random", "p2c", "ip_hash", "hash"];
        let b = match &v.val {
            Val::Ident(s) => match s.as_str() {
                "round_robin" => Balance::RoundRobin,
                "least_conn" => Balance::LeastConn,
                "random" => Balance::Random,
                "p2c" => Balance::P2c,
                "ip_hash" => Balance::IpHash,
                "hash" => {
                    self.diags.push(
                        Diagnostic::new(Code::GW0106, "`hash` needs a key")
                            .primary(v.span, "no key")
                            .help("write `hash(header.x-user-id)`, `hash(claim.sub)` or `hash(query.cart)`"),
                    );
                    return None;
                }
                other => {
                    self.diags.push(
                        Diagnostic::new(Code::GW0106, format!("unknown balancing strategy `{other}`"))
                            .primary(v.span, "unknown strategy")
                            .help("strategies are `round_robin`, `least_conn`, `random`, `p2c`, `ip_hash` and `hash(KEY)`")
                            .did_you_mean(v.span, suggest(other, KNOWN.iter().copied())),
                    );
                    return None;
                }
            },
            Val::Call(name, args) if name == "hash" => {
                let [arg] = args.as_slice() else {
                    self.diags.push(
                        Diagnostic::new(Code::GW0106, "`hash()` takes one key")
                            .primary(v.span, "wrong number of keys")
                            .help("write `hash(header.x-user-id)`"),
                    );
                    return None;
                };
                let r = self.expect().reference(arg, "a hash key such as `header.x-user-id`")?;
                match r.node {
                    Reference::Param(_) => {
                        self.diags.push(
                            Diagnostic::new(Code::GW0106, "an upstream cannot hash on `param.*`")
                                .primary(r.span, "path parameters differ per route")
                                .help("hash on `header.X`, `query.X`, `cookie.X` or `claim.X`"),
                        );
                        return None;
                    }
                    Reference::ClientIp => Balance::IpHash,
                    _ => Balance::Hash(r),
                }
            }
            _ => {
                self.expect()
                    .mismatch(v, "a balancing strategy such as `round_robin`", None);
                return None;
            }
        };
        Some(Spanned::new(b, v.span))
    }

    fn server(&mut self, pair: Pair<'_, Rule>) -> Option<Server> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::k_server);
        let addr = inner.next()?;
        let addr = self.value(addr);
        let address = self.expect().address(&addr, true);
        let mut server = Server {
            address: Spanned::new(
                Address {
                    host: AddressHost::Any,
                    port: 0,
                },
                addr.span,
            ),
            weight: None,
            backup: None,
            resolve: None,
            span,
        };
        let mut seen = Seen::default();
        for opt in inner {
            let mut o = opt.into_inner();
            let Some(kw) = o.next() else { continue };
            let kw_span = self.span(&kw);
            let kw_text = kw.as_str().to_string();
            if !self.first(&mut seen, &kw_text, kw_span, "a `server`") {
                continue;
            }
            let v = o.next().map(|v| self.value(v));
            match (kw.as_rule(), v) {
                (Rule::k_weight, Some(v)) => {
                    server.weight = self
                        .expect()
                        .int(&v, "weight", 1, 1000)
                        .map(|w| Spanned::new(w.node as u32, w.span));
                }
                (Rule::k_resolve, Some(v)) => server.resolve = self.expect().positive_duration(&v, "resolve"),
                (Rule::k_backup, _) => server.backup = Some(kw_span),
                _ => {}
            }
        }
        let address = address?;
        if address.node.port == 0 {
            self.expect().out_of_range(
                address.span,
                "a server's port cannot be 0".into(),
                "ports are 1 to 65535",
            );
            return None;
        }
        if matches!(address.node.host, AddressHost::Any) {
            self.diags.push(
                Diagnostic::new(Code::GW0003, format!("server address `{}` has no host", address.node))
                    .primary(address.span, "which host?")
                    .help(format!("write `127.0.0.1:{}` or a host name", address.node.port)),
            );
            return None;
        }
        server.address = address;
        Some(server)
    }

    fn health(&mut self, pair: Pair<'_, Rule>) -> Health {
        let span = self.span(&pair);
        let mut h = Health {
            path: None,
            interval: None,
            timeout: None,
            expect: None,
            unhealthy: None,
            healthy: None,
            span,
        };
        let mut seen = Seen::default();
        const KNOWN: &[&str] = &["path", "interval", "timeout", "expect", "unhealthy", "healthy"];
        let mut head = span;
        for a in pair.into_inner() {
            match a.as_rule() {
                Rule::k_health => head = self.span(&a),
                Rule::health_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, "a `health` block") {
                        continue;
                    }
                    match kw.as_str() {
                        "path" => h.path = self.expect().request_path(&v),
                        "interval" => h.interval = self.expect().positive_duration(&v, &kw),
                        "timeout" => h.timeout = self.expect().positive_duration(&v, &kw),
                        "expect" => h.expect = self.expect().status_range(&v),
                        "unhealthy" => h.unhealthy = self.small_count(&v, &kw),
                        _ => h.healthy = self.small_count(&v, &kw),
                    }
                }
                Rule::health_unknown => self.unknown(a, "a `health` block", KNOWN),
                _ => {}
            }
        }
        if !seen.0.iter().any(|(k, _)| k == "path") {
            self.missing(head, "path", "a `health` block", "path /healthz");
        }
        h
    }

    fn small_count(&mut self, v: &SVal, what: &str) -> Option<Spanned<u32>> {
        self.expect()
            .int(v, what, 1, 1000)
            .map(|n| Spanned::new(n.node as u32, n.span))
    }

    fn eject(&mut self, pair: Pair<'_, Rule>) -> Eject {
        let span = self.span(&pair);
        let mut e = Eject {
            errors: None,
            duration: None,
            span,
        };
        let mut seen = Seen::default();
        for a in pair.into_inner() {
            match a.as_rule() {
                Rule::eject_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, "an `eject` block") {
                        continue;
                    }
                    match kw.as_str() {
                        "errors" => e.errors = self.small_count(&v, &kw),
                        _ => e.duration = self.expect().positive_duration(&v, &kw),
                    }
                }
                Rule::eject_unknown => self.unknown(a, "an `eject` block", &["errors", "for"]),
                _ => {}
            }
        }
        e
    }

    fn pool(&mut self, pair: Pair<'_, Rule>) -> Pool {
        let span = self.span(&pair);
        let mut p = Pool {
            max_idle: None,
            idle_timeout: None,
            span,
        };
        let mut seen = Seen::default();
        for a in pair.into_inner() {
            match a.as_rule() {
                Rule::pool_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, "a `pool` block") {
                        continue;
                    }
                    match kw.as_str() {
                        "max_idle" => {
                            p.max_idle = self
                                .expect()
                                .int(&v, &kw, 0, 1_000_000)
                                .map(|n| Spanned::new(n.node as u32, n.span))
                        }
                        _ => p.idle_timeout = self.expect().positive_duration(&v, &kw),
                    }
                }
                Rule::pool_unknown => self.unknown(a, "a `pool` block", &["max_idle", "idle_timeout"]),
                _ => {}
            }
        }
        p
    }

    fn retry(&mut self, pair: Pair<'_, Rule>) -> Option<Retry> {
        let span = self.span(&pair);
        let mut attempts = None;
        let mut on = Vec::new();
        let mut budget = None;
        let mut state = 0; // 0: count, 1: conditions, 2: budget
        let mut saw_on = false;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::k_on => {
                    state = 1;
                    saw_on = true;
                }
                Rule::k_budget => state = 2,
                Rule::value => {
                    let v = self.value(p);
                    match state {
                        0 => {
                            attempts = self
                                .expect()
                                .int(&v, "retry", 0, 10)
                                .map(|n| Spanned::new(n.node as u32, n.span))
                        }
                        1 => {
                            if let Some(c) = self.retry_on(&v) {
                                on.push(c);
                            }
                        }
                        _ => budget = self.expect().percent(&v, "budget"),
                    }
                }
                _ => {}
            }
        }
        if !saw_on {
            on = vec![
                Spanned::new(RetryOn::ConnectError, span),
                Spanned::new(RetryOn::Reset, span),
            ];
        }
        Some(Retry {
            attempts: attempts?,
            on,
            budget,
            span,
        })
    }

    fn retry_on(&mut self, v: &SVal) -> Option<Spanned<RetryOn>> {
        let on = match &v.val {
            Val::Ident(s) if s == "connect_error" => RetryOn::ConnectError,
            Val::Ident(s) if s == "reset" => RetryOn::Reset,
            Val::Ident(s) if s == "timeout" => RetryOn::Timeout,
            Val::Int(n) if (500..=599).contains(n) => RetryOn::Status(*n as u16),
            Val::Int(n) => {
                self.expect().out_of_range(
                    v.span,
                    format!("retrying on status `{n}` is not allowed"),
                    "retries are for `connect_error`, `reset`, `timeout` and 5xx statuses",
                );
                return None;
            }
            Val::Ident(s) => {
                self.diags.push(
                    Diagnostic::new(Code::GW0106, format!("unknown retry condition `{s}`"))
                        .primary(v.span, "unknown condition")
                        .help("retry on `connect_error`, `reset`, `timeout` or a 5xx status")
                        .did_you_mean(v.span, suggest(s, ["connect_error", "reset", "timeout"])),
                );
                return None;
            }
            _ => {
                self.expect()
                    .mismatch(v, "a retry condition such as `connect_error` or `503`", None);
                return None;
            }
        };
        Some(Spanned::new(on, v.span))
    }

    fn auth(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::k_auth);
        let Some(name) = inner.next() else { return };
        let name = Spanned::new(name.as_str().to_string(), self.span(&name));
        let Some(kind) = inner.next() else { return };
        let kind = self.value(kind);
        let block = format!("auth `{}`", name.node);
        let kind_name = match &kind.val {
            Val::Ident(k) if k == "jwt" || k == "api_key" => k.clone(),
            Val::Ident(k) => {
                self.diags.push(
                    Diagnostic::new(Code::GW0106, format!("unknown auth kind `{k}`"))
                        .primary(kind.span, "not an auth kind")
                        .help("an auth is `jwt` or `api_key`")
                        .did_you_mean(kind.span, suggest(k, ["jwt", "api_key"])),
                );
                return;
            }
            _ => {
                self.expect().mismatch(&kind, "an auth kind (`jwt` or `api_key`)", None);
                return;
            }
        };
        let jwt = kind_name == "jwt";
        let known: &[&str] = if jwt {
            &[
                "issuer",
                "audience",
                "algorithms",
                "jwks",
                "public_key",
                "secret",
                "leeway",
                "from",
                "types",
            ]
        } else {
            &["from", "keys"]
        };
        let mut seen = Seen::default();
        let mut j = Jwt {
            issuer: None,
            audience: None,
            algorithms: None,
            key: None,
            leeway: None,
            from: None,
            types: None,
        };
        let mut k = ApiKey { from: None, keys: None };
        let file_name = self.name;
        for a in inner {
            let a_span = self.span(&a);
            match a.as_rule() {
                Rule::auth_from => {
                    let mut parts = a.into_inner();
                    let kw_span = parts.next().map(|p| self.span(&p)).unwrap_or(a_span);
                    if !self.first(&mut seen, "from", kw_span, &block) {
                        continue;
                    }
                    let values: Vec<_> = parts.collect();
                    let bearer = values.iter().any(|p| p.as_rule() == Rule::k_bearer);
                    let mut vals = values
                        .into_iter()
                        .filter(|p| p.as_rule() == Rule::value)
                        .collect::<Vec<_>>()
                        .into_iter();
                    let (Some(place), Some(name_v)) = (vals.next(), vals.next()) else {
                        continue;
                    };
                    let place = self.value(place);
                    let name_v = self.value(name_v);
                    let Some(field) = self.expect().word(&name_v, "a header, query or cookie name") else {
                        continue;
                    };
                    let from = match &place.val {
                        Val::Ident(p) if p == "header" => TokenFrom::Header {
                            name: field.node.to_ascii_lowercase(),
                            bearer,
                        },
                        Val::Ident(p) if p == "query" && !bearer => TokenFrom::Query(field.node),
                        Val::Ident(p) if p == "cookie" && !bearer => TokenFrom::Cookie(field.node),
                        Val::Ident(p) if p == "query" || p == "cookie" => {
                            self.diags.push(
                                Diagnostic::new(
                                    Code::GW0106,
                                    format!("`bearer` applies only to `from header`, not `from {p}`"),
                                )
                                .primary(a_span, "`bearer` here")
                                .help("remove `bearer`"),
                            );
                            continue;
                        }
                        _ => {
                            let typo = match &place.val {
                                Val::Ident(p) => suggest(p, ["header", "query", "cookie"]),
                                _ => None,
                            };
                            self.expect().mismatch_typo(
                                &place,
                                "`header`, `query` or `cookie`",
                                None,
                                place.span,
                                typo,
                            );
                            continue;
                        }
                    };
                    let from = Some(Spanned::new(from, a_span));
                    if jwt {
                        j.from = from;
                    } else {
                        k.from = from;
                    }
                }
                Rule::auth_jwks if jwt => {
                    if !self.first(&mut seen, "key material", a_span, &block) {
                        continue;
                    }
                    let parts: Vec<_> = a.into_inner().collect();
                    let is_url = parts.iter().any(|p| p.as_rule() == Rule::k_url);
                    let mut vals = parts
                        .into_iter()
                        .filter(|p| p.as_rule() == Rule::value)
                        .collect::<Vec<_>>()
                        .into_iter();
                    let Some(first) = vals.next() else { continue };
                    let first = self.value(first);
                    if is_url {
                        let url = self
                            .expect()
                            .string(&first, "a URL such as `\"https://auth.example.com/jwks.json\"`");
                        let refresh = match vals.next() {
                            Some(r) => {
                                let r = self.value(r);
                                self.expect().positive_duration(&r, "refresh")
                            }
                            None => None,
                        };
                        if let Some(url) = url {
                            if !(url.node.starts_with("https://") || url.node.starts_with("http://")) {
                                self.diags.push(
                                    Diagnostic::new(Code::GW0003, format!("invalid JWKS URL `{}`", url.node))
                                        .primary(url.span, "not an http(s) URL")
                                        .help("write the full URL, such as `\"https://auth.example.com/.well-known/jwks.json\"`"),
                                );
                                continue;
                            }
                            j.key = Some(Spanned::new(
                                KeySource::JwksUrl {
                                    url: url.node,
                                    refresh: refresh.map(|r| r.node),
                                },
                                a_span,
                            ));
                        }
                    } else if let Some(src) =
                        self.expect()
                            .source(&first, "`file(\"jwks.json\")` or `url \"...\"`", file_name, true)
                    {
                        j.key = Some(Spanned::new(KeySource::JwksFile(src.node), src.span));
                    }
                }
                Rule::auth_setting => {
                    let Some((kw, kw_span, values)) = self.list_setting(a) else {
                        continue;
                    };
                    if matches!(kw.as_str(), "secret" | "keys") {
                        for v in &values {
                            self.note_secret(v);
                        }
                    }
                    if !known.contains(&kw.as_str()) {
                        let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                        let kind_word = if jwt { "a `jwt` auth" } else { "an `api_key` auth" };
                        self.diags.push(
                            Diagnostic::new(Code::GW0103, format!("unknown attribute `{kw}` in {block}"))
                                .primary(kw_span, format!("not an attribute of {kind_word}"))
                                .help(format!("{kind_word} takes {list}")),
                        );
                        continue;
                    }
                    let slot = if matches!(kw.as_str(), "secret" | "public_key") {
                        "key material"
                    } else {
                        kw.as_str()
                    };
                    if !self.first(&mut seen, slot, kw_span, &block) {
                        continue;
                    }
                    if !matches!(kw.as_str(), "algorithms" | "keys" | "types") && values.len() > 1 {
                        self.diags.push(
                            Diagnostic::new(Code::GW0106, format!("`{kw}` takes one value"))
                                .primary(values[1].span.to(values[values.len() - 1].span), "extra values")
                                .help("remove the extra values"),
                        );
                        continue;
                    }
                    let Some(v) = values.first() else { continue };
                    match kw.as_str() {
                        "issuer" => {
                            j.issuer = self
                                .expect()
                                .string(v, "an issuer such as `\"https://auth.example.com\"`")
                        }
                        "audience" => j.audience = self.expect().string(v, "an audience such as `\"my-api\"`"),
                        "leeway" => j.leeway = self.expect().duration(v),
                        "secret" => {
                            j.key = self
                                .expect()
                                .source(v, "`env(\"NAME\")`, `file(\"path\")` or a string", file_name, false)
                                .map(|s| Spanned::new(KeySource::Secret(s.node), s.span));
                        }
                        "public_key" => {
                            j.key = self
                                .expect()
                                .source(v, "`file(\"key.pem\")`", file_name, true)
                                .map(|s| Spanned::new(KeySource::PublicKey(s.node), s.span));
                        }
                        "types" => {
                            let whole = values[0].span.to(values[values.len() - 1].span);
                            j.types = self
                                .token_types(&values, &block)
                                .map(|t| Box::new(Spanned::new(t, whole)));
                        }
                        "algorithms" => {
                            let mut algs = Vec::new();
                            for v in &values {
                                if let Some(a) = self.algorithm(v) {
                                    algs.push(a);
                                }
                            }
                            let whole = values[0].span.to(values[values.len() - 1].span);
                            j.algorithms = Some(Spanned::new(algs, whole));
                        }
                        _ => {
                            // keys
                            let whole = values[0].span.to(values[values.len() - 1].span);
                            if let [one @ SVal { val: Val::Call(..), .. }] = values.as_slice() {
                                if let Some(src) = self.expect().source(one, "`file(\"keys.txt\")`", file_name, true) {
                                    k.keys = Some(Spanned::new(ApiKeys::File(src.node), src.span));
                                }
                            } else {
                                let mut keys = Vec::new();
                                for v in &values {
                                    if let Some(s) = self.expect().string(v, "a key such as `\"k-123\"`") {
                                        keys.push(s.node);
                                    }
                                }
                                k.keys = Some(Spanned::new(ApiKeys::Inline(keys), whole));
                            }
                        }
                    }
                }
                Rule::auth_jwks => {
                    let kw_span = a.into_inner().next().map(|p| self.span(&p)).unwrap_or(a_span);
                    self.diags.push(
                        Diagnostic::new(Code::GW0103, format!("unknown attribute `jwks` in {block}"))
                            .primary(kw_span, "not an attribute of an `api_key` auth")
                            .help("an `api_key` auth takes `from` and `keys`"),
                    );
                }
                Rule::auth_unknown => {
                    // `key "..."`, `Secret "..."`: most likely a secret under
                    // a misspelled name, shown in GW0103's snippet.
                    self.note_loose_secrets(a.clone());
                    self.unknown(a, &block, known)
                }
                _ => {}
            }
        }
        let kind = if jwt {
            for (attr, example) in [
                ("issuer", "issuer \"https://auth.example.com\""),
                ("audience", "audience \"my-api\""),
                ("algorithms", "algorithms RS256"),
            ] {
                if !seen.0.iter().any(|(k, _)| k == attr) {
                    self.missing(name.span, attr, &format!("jwt auth `{}`", name.node), example);
                }
            }
            if !seen.0.iter().any(|(k, _)| k == "key material") {
                self.diags.push(
                    Diagnostic::new(Code::GW0402, format!("jwt auth `{}` has no key material", name.node))
                        .primary(name.span, "no keys to verify tokens with")
                        .help("add `jwks file(\"jwks.json\")`, `jwks url \"...\"`, `public_key file(\"key.pem\")` or `secret env(\"JWT_SECRET\")`"),
                );
            }
            AuthKind::Jwt(j)
        } else {
            if !seen.0.iter().any(|(k, _)| k == "keys") {
                self.missing(
                    name.span,
                    "keys",
                    &format!("api_key auth `{}`", name.node),
                    "keys file(\"keys.txt\")",
                );
            }
            AuthKind::ApiKey(k)
        };
        self.config.auths.push(Auth { name, kind, span });
    }

    /// `types "at+jwt", "JWT", none`: media types of the `typ` header
    /// (GW0003 when a string is not one), `none` for a token without `typ`
    /// (GW0106 for any other value), each once (GW0105).
    fn token_types(&mut self, values: &[SVal], block: &str) -> Option<TokenTypes> {
        let mut types = TokenTypes {
            untyped: false,
            names: Vec::new(),
        };
        let mut seen: Vec<(String, Span)> = Vec::new();
        let mut ok = true;
        for v in values {
            let (key, span) = match &v.val {
                Val::Ident(w) if w == "none" => {
                    types.untyped = true;
                    ("none".to_string(), v.span)
                }
                Val::Str(_) => {
                    let Some(s) = self.expect().string(v, "a token type such as `\"at+jwt\"`") else {
                        ok = false;
                        continue;
                    };
                    if !is_media_type(&s.node) {
                        self.diags.push(
                            Diagnostic::new(Code::GW0003, format!("`{}` is not a token type", s.node))
                                .primary(v.span, "not a media type")
                                .help("a token type is a media type such as `\"at+jwt\"` or `\"application/at+jwt\"`"),
                        );
                        ok = false;
                        continue;
                    }
                    let name = TokenTypes::normalize(&s.node);
                    types.names.push(name.clone());
                    (name, v.span)
                }
                _ => {
                    self.expect().mismatch(
                        v,
                        "a token type such as `\"at+jwt\"`, or `none`",
                        Some("write token types as strings: `types \"at+jwt\", \"JWT\"`".into()),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                self.diags.push(
                    Diagnostic::new(Code::GW0105, format!("token type `{key}` listed twice in {block}"))
                        .primary(span, "listed again here")
                        .secondary(*first, "first listed here")
                        .help("types are compared case-insensitively, with or without `application/`: remove one"),
                );
                ok = false;
                continue;
            }
            seen.push((key, span));
        }
        ok.then_some(types)
    }

    fn algorithm(&mut self, v: &SVal) -> Option<Spanned<Algorithm>> {
        let text = match &v.val {
            Val::Ident(s) => s.as_str(),
            _ => {
                self.expect().mismatch(v, "an algorithm such as `RS256`", None);
                return None;
            }
        };
        if let Some(a) = Algorithm::parse(text) {
            return Some(Spanned::new(a, v.span));
        }
        let upper = text.to_ascii_uppercase();
        let typo = Algorithm::ALL
            .iter()
            .find(|a| a.as_str().to_ascii_uppercase() == upper)
            .map(|a| a.as_str())
            .or_else(|| suggest(text, Algorithm::ALL.iter().map(|a| a.as_str())));
        let (message, label) = if upper == "NONE" {
            ("unsigned tokens (`none`) are never accepted".to_string(), "not allowed")
        } else {
            (format!("unknown algorithm `{text}`"), "unknown algorithm")
        };
        self.diags.push(
            Diagnostic::new(Code::GW0106, message)
                .primary(v.span, label)
                .help("algorithms are HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 and EdDSA")
                .did_you_mean(v.span, typo),
        );
        None
    }

    fn limit(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::k_limit);
        let Some(name) = inner.next() else { return };
        let name = Spanned::new(name.as_str().to_string(), self.span(&name));
        let block = format!("limit `{}`", name.node);
        let mut limit = Limit {
            name,
            rate: None,
            burst: None,
            key: None,
            store: None,
            max_keys: None,
            span,
        };
        let mut seen = Seen::default();
        for a in inner {
            match a.as_rule() {
                Rule::limit_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, &block) {
                        continue;
                    }
                    match kw.as_str() {
                        "rate" => limit.rate = self.expect().rate(&v),
                        "burst" => {
                            limit.burst = self
                                .expect()
                                .int(&v, "burst", 1, 1_000_000)
                                .map(|n| Spanned::new(n.node as u32, n.span))
                        }
                        "key" => limit.key = self.limit_key(&v),
                        "max_keys" => {
                            limit.max_keys = self
                                .expect()
                                .int(&v, "max_keys", 1, 10_000_000)
                                .map(|n| Spanned::new(n.node as u32, n.span))
                        }
                        _ => limit.store = self.expect().name(&v, "a store name"),
                    }
                }
                Rule::limit_unknown => self.unknown(a, &block, &["rate", "burst", "key", "store", "max_keys"]),
                _ => {}
            }
        }
        if !seen.0.iter().any(|(k, _)| k == "rate") {
            self.missing(limit.name.span, "rate", &block, "rate 100/min");
        }
        self.config.rate_limits.push(limit);
    }

    fn limit_key(&mut self, v: &SVal) -> Option<Spanned<LimitKey>> {
        let key = match &v.val {
            Val::Ident(s) if s == "none" => LimitKey::None,
            Val::Ident(s) if s == "api_key" => LimitKey::ApiKey,
            Val::Ref(Reference::ClientIp) => LimitKey::ClientIp,
            Val::Ref(Reference::Param(_)) => {
                self.diags.push(
                    Diagnostic::new(Code::GW0106, "a limit cannot be keyed on `param.*`")
                        .primary(v.span, "path parameters are not known to a limit")
                        .help("key on `client_ip`, `claim.X`, `header.X`, `query.X`, `api_key` or `none`"),
                );
                return None;
            }
            Val::Ref(r) => LimitKey::Ref(r.clone()),
            Val::Ident(s) => {
                self.diags.push(
                    Diagnostic::new(Code::GW0106, format!("unknown limit key `{s}`"))
                        .primary(v.span, "not a key")
                        .help("key on `client_ip`, `claim.X`, `header.X`, `query.X`, `api_key` or `none`")
                        .did_you_mean(v.span, suggest(s, ["none", "client_ip", "api_key"])),
                );
                return None;
            }
            _ => {
                self.expect()
                    .reference(v, "a limit key such as `client_ip` or `claim.sub`")?;
                return None;
            }
        };
        Some(Spanned::new(key, v.span))
    }

    fn store(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::k_store);
        let Some(name) = inner.next() else { return };
        let name = Spanned::new(name.as_str().to_string(), self.span(&name));
        let block = format!("store `{}`", name.node);
        let mut store = Store {
            name,
            url: None,
            tls: None,
            timeout: None,
            on_error_allow: None,
            span,
        };
        let mut seen = Seen::default();
        for a in inner {
            match a.as_rule() {
                Rule::value => {
                    let v = self.value(a);
                    match &v.val {
                        Val::Ident(k) if k == "redis" => {}
                        Val::Ident(k) => {
                            self.diags.push(
                                Diagnostic::new(Code::GW0106, format!("unknown store kind `{k}`"))
                                    .primary(v.span, "not a store kind")
                                    .help("the only store kind is `redis`")
                                    .did_you_mean(v.span, suggest(k, ["redis"])),
                            );
                        }
                        _ => self.expect().mismatch(&v, "a store kind (`redis`)", None),
                    }
                }
                Rule::store_url => {
                    let Some(inner) = a.into_inner().next() else { continue };
                    let v = self.value(inner);
                    let name = self.name;
                    let Some(url) = self.expect().source(&v, "a URL", name, false) else {
                        continue;
                    };
                    seen.0.push(("url".into(), v.span));
                    if let Source::Inline(u) = &url.node {
                        // The runtime's parser: what passes here connects. The
                        // message quotes none of the URL (a password is in it).
                        if let Err(e) = crate::redis_url::parse(u) {
                            self.diags.push(
                                Diagnostic::new(Code::GW0003, format!("invalid Redis URL: {e}"))
                                    .primary(url.span, "not a usable `redis://` URL")
                                    .help(e.help),
                            );
                            continue;
                        }
                    }
                    store.url = Some(url);
                }
                Rule::upstream_tls => {
                    let tls = self.upstream_tls(a);
                    if !self.first(&mut seen, "tls", tls.span, &block) {
                        continue;
                    }
                    if let Some(name) = &tls.server_name {
                        // The redis crate sends and verifies the URL's host.
                        self.diags.push(
                            Diagnostic::new(Code::GW0106, "`server_name` is not supported in a store's `tls` block")
                                .primary(name.span, "not used by the Redis client")
                                .help("the Redis client verifies the URL's host: write the name on Redis's certificate as the URL's host"),
                        );
                    }
                    store.tls = Some(tls);
                }
                Rule::store_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, &block) {
                        continue;
                    }
                    match kw.as_str() {
                        "timeout" => store.timeout = self.expect().positive_duration(&v, &kw),
                        _ => match &v.val {
                            Val::Ident(s) if s == "allow" || s == "deny" => {
                                store.on_error_allow = Some(Spanned::new(s == "allow", v.span))
                            }
                            _ => self.expect().mismatch(&v, "`allow` or `deny`", None),
                        },
                    }
                }
                Rule::store_unknown => self.unknown(a, &block, &["timeout", "on_error", "tls"]),
                _ => {}
            }
        }
        if !seen.0.iter().any(|(k, _)| k == "url") {
            self.missing(
                store.name.span,
                "a URL",
                &block,
                "store NAME redis \"redis://127.0.0.1:6379\"",
            );
        }
        self.config.stores.push(store);
    }

    fn route(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut methods = None;
        let mut path = None;
        let mut host = None;
        let mut upstream = None;
        let mut head_end = span.start;
        let mut block = None;
        let mut after = Rule::k_route;
        let mut when = Vec::new();
        for p in pair.into_inner() {
            let rule = p.as_rule();
            if rule != Rule::route_block {
                head_end = self.span(&p).end;
            }
            match rule {
                Rule::methods => methods = self.methods(p),
                Rule::condition => {
                    if let Some(c) = self.condition(p) {
                        when.push(c);
                    }
                }
                Rule::value => {
                    let v = self.value(p);
                    match after {
                        Rule::k_host => host = self.host_name(&v),
                        Rule::arrow => upstream = self.expect().name(&v, "an upstream name"),
                        _ => path = Some(self.expect().path_pattern(&v)),
                    }
                }
                Rule::k_host | Rule::arrow => after = rule,
                Rule::route_block => block = Some(p),
                _ => {}
            }
        }
        let head_span = Span {
            file: self.file,
            start: span.start,
            end: head_end,
        };
        // A path that failed its checks was reported; keep going to find more errors.
        let Some(path) = path.flatten() else {
            if let Some(b) = block {
                let dummy = Spanned::new(
                    PathPattern {
                        raw: String::new(),
                        segments: vec![],
                    },
                    head_span,
                );
                let mut r = self.new_route(None, dummy, None, None, head_span, span);
                self.route_block(b, &mut r);
            }
            return;
        };
        let mut route = self.new_route(methods, path, host, upstream, head_span, span);
        route.when = when;
        if let Some(b) = block {
            self.route_block(b, &mut route);
        }
        self.config.routes.push(route);
    }

    fn new_route(
        &self,
        methods: Option<Spanned<Vec<Method>>>,
        path: Spanned<PathPattern>,
        host: Option<Spanned<String>>,
        upstream: Option<Name>,
        head_span: Span,
        span: Span,
    ) -> Route {
        Route {
            methods,
            path,
            host,
            upstream,
            auth: None,
            requires: Vec::new(),
            limits: Vec::new(),
            strip_prefix: None,
            rewrite: None,
            timeout: None,
            retry: None,
            transforms: Vec::new(),
            cors: None,
            aggregate: None,
            split: None,
            when: Vec::new(),
            respond: None,
            redirect: None,
            mirror: None,
            compress: None,
            cache: None,
            head_span,
            span,
        }
    }

    fn host_name(&mut self, v: &SVal) -> Option<Spanned<String>> {
        let s = self.expect().string(v, "a host name such as `\"api.example.com\"`")?;
        let valid = is_host_name(&s.node);
        if !valid {
            self.diags.push(
                Diagnostic::new(Code::GW0003, format!("invalid host name `{}`", s.node))
                    .primary(s.span, "not a host name")
                    .help("write the name without scheme, port or path, such as `\"api.example.com\"`"),
            );
            return None;
        }
        Some(Spanned::new(s.node.to_ascii_lowercase(), s.span))
    }

    /// `GET,HEAD` or `*` → `Some(list)` / `None` (every method).
    fn methods(&mut self, pair: Pair<'_, Rule>) -> Option<Spanned<Vec<Method>>> {
        let span = self.span(&pair);
        let mut list = Vec::new();
        let mut star = false;
        for m in pair.into_inner().filter(|p| p.as_rule() == Rule::method) {
            let m_span = self.span(&m);
            if m.as_str() == "*" {
                star = true;
                continue;
            }
            if let Some(method) = self.expect().method(m.as_str(), m_span) {
                if list.contains(&method.node) {
                    self.diags.push(
                        Diagnostic::new(Code::GW0105, format!("method `{}` listed twice", m.as_str()))
                            .primary(m_span, "listed again")
                            .help("remove the repeated method"),
                    );
                } else {
                    list.push(method.node);
                }
            }
        }
        if star {
            return None;
        }
        (!list.is_empty()).then(|| Spanned::new(list, span))
    }

    fn route_block(&mut self, pair: Pair<'_, Rule>, route: &mut Route) {
        let mut seen = Seen::default();
        let block = "a route";
        const KNOWN: &[&str] = &[
            "auth",
            "require",
            "limit",
            "set",
            "remove",
            "aggregate",
            "split",
            "respond",
            "redirect",
            "cors",
            "retry",
            "mirror",
            "compress",
            "cache",
            "strip_prefix",
            "timeout",
            "rewrite",
        ];
        let file_name = self.name;
        let _ = file_name;
        for a in pair.into_inner() {
            let a_span = self.span(&a);
            let rule = a.as_rule();
            match rule {
                Rule::route_auth => {
                    let mut inner = a.into_inner();
                    let kw_span = inner.next().map(|p| self.span(&p)).unwrap_or(a_span);
                    let Some(v) = inner.next() else { continue };
                    let v = self.value(v);
                    if self.first(&mut seen, "auth", kw_span, block) {
                        route.auth = self.expect().name(&v, "an auth name");
                    }
                }
                Rule::route_limit => {
                    let values: Vec<_> = a.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
                    for v in values {
                        let v = self.value(v);
                        if let Some(n) = self.expect().name(&v, "a limit name") {
                            route.limits.push(n);
                        }
                    }
                }
                Rule::require => {
                    if let Some(r) = self.require(a) {
                        route.requires.push(r);
                    }
                }
                Rule::set_header | Rule::remove_header => {
                    if let Some(t) = self.header_transform(a, rule == Rule::set_header) {
                        route.transforms.push(t);
                    }
                }
                Rule::aggregate => {
                    if self.first(&mut seen, "aggregate", a_span, block) {
                        route.aggregate = Some(Box::new(self.aggregate(a)));
                    }
                }
                Rule::split => {
                    if self.first(&mut seen, "split", a_span, block) {
                        route.split = Some(Box::new(self.split(a, a_span)));
                    }
                }
                Rule::respond => {
                    if !self.first(&mut seen, "respond", a_span, block) {
                        continue;
                    }
                    let vals: Vec<_> = a
                        .into_inner()
                        .filter(|p| matches!(p.as_rule(), Rule::value | Rule::string))
                        .collect();
                    let mut vals = vals.into_iter().map(|v| self.value(v)).collect::<Vec<_>>().into_iter();
                    let status = vals.next().and_then(|v| self.expect().status(&v));
                    let body = vals
                        .next()
                        .and_then(|v| self.expect().string(&v, "a response body string"));
                    if let Some(status) = status {
                        route.respond = Some(Box::new(Respond {
                            status,
                            body,
                            span: a_span,
                        }));
                    }
                }
                Rule::redirect => {
                    if !self.first(&mut seen, "redirect", a_span, block) {
                        continue;
                    }
                    let vals: Vec<_> = a
                        .into_inner()
                        .filter(|p| matches!(p.as_rule(), Rule::value | Rule::string))
                        .collect();
                    let vals = vals.into_iter().map(|v| self.value(v)).collect::<Vec<_>>();
                    let (status, location) = match vals.as_slice() {
                        [loc @ SVal { val: Val::Str(_), .. }] => (
                            Some(Spanned::new(302, loc.span)),
                            self.expect().template(loc, "a location"),
                        ),
                        [st, loc] => {
                            let st_v = self.expect().status(st);
                            if let Some(s) = &st_v {
                                if !matches!(s.node, 301 | 302 | 303 | 307 | 308) {
                                    self.expect().out_of_range(
                                        s.span,
                                        format!("`{}` is not a redirect status", s.node),
                                        "use 301, 302, 303, 307 or 308",
                                    );
                                }
                            }
                            (
                                st_v,
                                self.expect().template(loc, "a location such as `\"/v2/{param.rest}\"`"),
                            )
                        }
                        [other, ..] => {
                            self.expect().mismatch(other, "a location such as `\"/new\"`", None);
                            (None, None)
                        }
                        [] => (None, None),
                    };
                    if let (Some(status), Some(location)) = (status, location) {
                        route.redirect = Some(Box::new(Redirect {
                            status,
                            location,
                            span: a_span,
                        }));
                    }
                }
                Rule::cors => {
                    if self.first(&mut seen, "cors", a_span, block) {
                        route.cors = Some(Box::new(self.cors(a)));
                    }
                }
                Rule::retry => {
                    if self.first(&mut seen, "retry", a_span, block) {
                        route.retry = self.retry(a);
                    }
                }
                Rule::compress => {
                    if self.first(&mut seen, "compress", a_span, block) {
                        route.compress = self.compress(a).map(Box::new);
                    }
                }
                Rule::cache => {
                    if self.first(&mut seen, "cache", a_span, block) {
                        route.cache = Some(Box::new(self.cache(a)));
                    }
                }
                Rule::mirror => {
                    if self.first(&mut seen, "mirror", a_span, block) {
                        route.mirror = self.mirror(a, a_span).map(Box::new);
                    }
                }
                Rule::route_setting => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, block) {
                        continue;
                    }
                    match kw.as_str() {
                        "timeout" => route.timeout = self.expect().positive_duration(&v, &kw),
                        "rewrite" => {
                            route.rewrite = self
                                .expect()
                                .template(&v, "a path template such as `\"/v2/{param.rest}\"`")
                        }
                        _ => {
                            route.strip_prefix = match &v.val {
                                Val::Path(p) if !p.contains(['{', '}', '?']) => Some(Spanned::new(p.clone(), v.span)),
                                _ => {
                                    self.expect().mismatch(&v, "a literal path prefix such as `/api`", None);
                                    None
                                }
                            }
                        }
                    }
                }
                Rule::route_unknown => self.unknown(a, block, KNOWN),
                _ => {}
            }
        }
    }

    /// The parts of `REF OP [OPERAND]` as written (`require`, `when`): the
    /// reference, the operator's text and the operand.
    fn comparison(&mut self, pair: Pair<'_, Rule>) -> (Option<SVal>, Option<String>, Option<SVal>) {
        let (mut subject, mut op, mut operand) = (None, None, None);
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::value if subject.is_none() => subject = Some(self.value(p)),
                Rule::value => operand = Some(self.value(p)),
                Rule::require_op | Rule::cond_op => op = Some(p.as_str().to_string()),
                Rule::k_present => op = Some("present".to_string()),
                _ => {}
            }
        }
        (subject, op, operand)
    }

    fn condition(&mut self, pair: Pair<'_, Rule>) -> Option<Condition> {
        let span = self.span(&pair);
        let (subject, op, operand) = self.comparison(pair);
        let subject = self
            .expect()
            .reference(&subject?, "a reference such as `header.x-beta`")?;
        let op_text = op?;
        if op_text == "present" {
            let operand_span = subject.span;
            return Some(Condition {
                subject,
                op: CondOp::Present,
                operand_span,
                span,
            });
        }
        let operand = operand?;
        let op = match op_text.as_str() {
            "in" => {
                let Val::List(items) = &operand.val else {
                    self.expect().mismatch(
                        &operand,
                        "a list such as `[\"v2\", \"next\"]`",
                        Some("`in` takes a list; use `==` for one value".into()),
                    );
                    return None;
                };
                let mut values = Vec::new();
                for item in items {
                    values.push(self.expect().string(item, "a string")?.node);
                }
                CondOp::In(values)
            }
            other => {
                let s = self.expect().string(&operand, "a string such as `\"1\"`")?.node;
                if other == "==" {
                    CondOp::Eq(s)
                } else {
                    CondOp::Ne(s)
                }
            }
        };
        if subject.node == Reference::ClientIp {
            if let Some(bad) = op.values().iter().find(|v| gw_plan::condition::parse_net(v).is_none()) {
                self.diags.push(
                    Diagnostic::new(Code::GW0003, format!("`{bad}` is not an address or a CIDR block"))
                        .primary(operand.span, "expected an address or a block such as `\"10.0.0.0/8\"`")
                        .help("`client_ip` compares with addresses (`\"192.0.2.7\"`) and CIDR blocks (`\"10.0.0.0/8\"`, `\"2001:db8::/32\"`)"),
                );
                return None;
            }
        }
        Some(Condition {
            subject,
            op,
            operand_span: operand.span,
            span,
        })
    }

    /// `split { NAME WEIGHT% ... sticky REF }`.
    fn split(&mut self, pair: Pair<'_, Rule>, span: Span) -> Split {
        let mut out = Split {
            sides: Vec::new(),
            sticky: None,
            span,
        };
        let mut seen_sticky = false;
        for a in pair.into_inner() {
            match a.as_rule() {
                Rule::split_side => {
                    let vals: Vec<_> = a.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
                    let vals = vals.into_iter().map(|v| self.value(v)).collect::<Vec<_>>();
                    if let [n, w] = vals.as_slice() {
                        let n = self.expect().name(n, "an upstream name");
                        let w = self.expect().percent(w, "a split weight");
                        if let (Some(upstream), Some(weight)) = (n, w) {
                            out.sides.push(SplitSide { upstream, weight });
                        }
                    }
                }
                Rule::split_sticky => {
                    let a_span = self.span(&a);
                    let Some(v) = a.into_inner().find(|p| p.as_rule() == Rule::value) else {
                        continue;
                    };
                    let v = self.value(v);
                    if seen_sticky {
                        self.diags.push(
                            Diagnostic::new(Code::GW0105, "`sticky` is set twice in a split")
                                .primary(a_span, "set again")
                                .help("a split has one sticky key; keep one `sticky`"),
                        );
                        continue;
                    }
                    seen_sticky = true;
                    out.sticky = self.expect().reference(&v, "a reference such as `cookie.session`");
                }
                _ => {}
            }
        }
        out
    }

    /// `cache { ttl D max_size SIZE }`.
    fn cache(&mut self, pair: Pair<'_, Rule>) -> Cache {
        let mut cache = Cache {
            ttl: None,
            max_size: None,
            span: self.span(&pair),
        };
        let mut seen = Seen::default();
        const KNOWN: &[&str] = &["ttl", "max_size"];
        let block = "a `cache` block";
        for b in pair.into_inner() {
            if b.as_rule() == Rule::value {
                let v = self.value(b);
                self.expect()
                    .mismatch(&v, "a block such as `{ ttl 30s  max_size 64MiB }`", None);
                continue;
            }
            if b.as_rule() != Rule::cache_block {
                continue;
            }
            for a in b.into_inner() {
                match a.as_rule() {
                    Rule::cache_setting => {
                        let Some((kw, kw_span, v)) = self.setting(a) else {
                            continue;
                        };
                        if !self.first(&mut seen, &kw, kw_span, block) {
                            continue;
                        }
                        match kw.as_str() {
                            "ttl" => cache.ttl = self.expect().duration(&v),
                            _ => {
                                cache.max_size = self.expect().size(&v);
                                if let Some(m) = &cache.max_size {
                                    if m.node == 0 {
                                        self.expect().out_of_range(
                                            m.span,
                                            "a cache of `0B` keeps nothing".to_string(),
                                            "give a size such as `64MiB`, or remove `cache`",
                                        );
                                        cache.max_size = None;
                                    }
                                }
                            }
                        }
                    }
                    Rule::cache_unknown => self.unknown(a, block, KNOWN),
                    _ => {}
                }
            }
        }
        cache
    }

    /// `compress { ... }` or `compress off`.
    fn compress(&mut self, pair: Pair<'_, Rule>) -> Option<RouteCompress> {
        let span = self.span(&pair);
        let mut compress = Compress {
            codings: Vec::new(),
            level: None,
            min_size: None,
            types: Vec::new(),
            span,
        };
        let mut seen = Seen::default();
        const KNOWN: &[&str] = &["gzip", "br", "zstd", "level", "min_size", "types"];
        let block = "a `compress` block";
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::value => {
                    let v = self.value(p);
                    return match &v.val {
                        Val::Ident(w) if w == "off" => Some(RouteCompress::Off(span)),
                        _ => {
                            self.expect()
                                .mismatch(&v, "`off` or a block such as `{ gzip br level 5 }`", None);
                            None
                        }
                    };
                }
                Rule::compress_block => {}
                _ => continue,
            }
            for a in p.into_inner() {
                let a_span = self.span(&a);
                match a.as_rule() {
                    Rule::compress_coding => {
                        let word = a.as_str().trim();
                        if !self.first(&mut seen, word, a_span, block) {
                            continue;
                        }
                        let coding = match word {
                            "gzip" => Coding::Gzip,
                            "br" => Coding::Br,
                            _ => Coding::Zstd,
                        };
                        compress.codings.push(Spanned::new(coding, a_span));
                    }
                    Rule::compress_setting => {
                        let Some((kw, kw_span, values)) = self.list_setting(a) else {
                            continue;
                        };
                        if !self.first(&mut seen, &kw, kw_span, block) {
                            continue;
                        }
                        match kw.as_str() {
                            "level" | "min_size" if values.len() > 1 => {
                                self.expect().mismatch(&values[1], "one value", None);
                            }
                            "level" => {
                                compress.level = values.first().and_then(|v| self.expect().int(v, "level", 1, 9))
                            }
                            "min_size" => compress.min_size = values.first().and_then(|v| self.expect().size(v)),
                            _ => {
                                for v in &values {
                                    let Some(t) = self.expect().string(v, "a media type such as `\"text/*\"`") else {
                                        continue;
                                    };
                                    let t = Spanned::new(t.node.to_ascii_lowercase(), t.span);
                                    if is_media_range(&t.node) {
                                        compress.types.push(t);
                                    } else {
                                        self.diags.push(
                                            Diagnostic::new(Code::GW0003, format!("invalid media type `{}`", t.node))
                                                .primary(t.span, "not `type/subtype` or `type/*`")
                                                .help("write a media type such as `\"application/json\"` or `\"text/*\"`, without parameters"),
                                        );
                                    }
                                }
                            }
                        }
                    }
                    Rule::compress_unknown => self.unknown(a, block, KNOWN),
                    _ => {}
                }
            }
        }
        Some(RouteCompress::On(compress))
    }

    /// `mirror UPSTREAM PERCENT`: a share of 1% to 100%.
    fn mirror(&mut self, pair: Pair<'_, Rule>, span: Span) -> Option<Mirror> {
        let vals: Vec<_> = pair.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
        let mut vals = vals.into_iter().map(|v| self.value(v)).collect::<Vec<_>>().into_iter();
        let upstream = vals.next().and_then(|v| self.expect().name(&v, "an upstream name"));
        let percent = vals.next().and_then(|v| self.expect().percent(&v, "mirror"));
        if let Some(p) = &percent {
            if p.node == 0 {
                self.expect().out_of_range(
                    p.span,
                    "a mirror of `0%` sends no copy".to_string(),
                    "give a share from `1%` to `100%`, or remove `mirror`",
                );
                return None;
            }
        }
        Some(Mirror {
            upstream: upstream?,
            percent: percent?,
            span,
        })
    }

    fn require(&mut self, pair: Pair<'_, Rule>) -> Option<Require> {
        let span = self.span(&pair);
        let (subject, op, operand) = self.comparison(pair);
        let subject = subject?;
        let subject = self
            .expect()
            .reference(&subject, "a claim or header such as `claim.scope`")?;
        let operand = operand?;
        let op = match op?.as_str() {
            "in" => {
                let Val::List(items) = &operand.val else {
                    self.expect().mismatch(
                        &operand,
                        "a list such as `[\"a\", \"b\"]`",
                        Some("`in` takes a list; use `==` for one value".into()),
                    );
                    return None;
                };
                if subject.node == Reference::ClientIp {
                    let mut ranges = Vec::new();
                    for item in items {
                        ranges.push(self.expect().ip_range(item)?.node);
                    }
                    RequireOp::InRanges(ranges)
                } else {
                    let mut values = Vec::new();
                    for item in items {
                        values.push(self.expect().string(item, "a string")?.node);
                    }
                    RequireOp::In(values)
                }
            }
            other => {
                let s = self.expect().string(&operand, "a string such as `\"admin\"`")?.node;
                match other {
                    "has" => RequireOp::Has(s),
                    "==" => RequireOp::Eq(s),
                    _ => RequireOp::Ne(s),
                }
            }
        };
        Some(Require { subject, op, span })
    }

    fn header_transform(&mut self, pair: Pair<'_, Rule>, set: bool) -> Option<HeaderTransform> {
        let span = self.span(&pair);
        let vals: Vec<_> = pair.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
        let mut vals = vals.into_iter().map(|v| self.value(v)).collect::<Vec<_>>().into_iter();
        let dir_v = vals.next()?;
        let direction = match &dir_v.val {
            Val::Ident(s) if s == "request" => Direction::Request,
            Val::Ident(s) if s == "response" => Direction::Response,
            _ => {
                let typo = match &dir_v.val {
                    Val::Ident(s) => suggest(s, ["request", "response"]),
                    _ => None,
                };
                self.expect()
                    .mismatch_typo(&dir_v, "`request` or `response`", None, dir_v.span, typo);
                return None;
            }
        };
        let name_v = vals.next()?;
        let name = self.expect().word(&name_v, "a header name such as `x-user-id`")?;
        let valid = !name.node.is_empty()
            && name
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            self.diags.push(
                Diagnostic::new(Code::GW0003, format!("invalid header name `{}`", name.node))
                    .primary(name.span, "not a header name")
                    .help("header names are letters, digits and `-`"),
            );
            return None;
        }
        let name = Spanned::new(name.node.to_ascii_lowercase(), name.span);
        let value = if set {
            let v = vals.next()?;
            Some(
                self.expect()
                    .template(&v, "a header value string such as `\"{claim.sub}\"`")?,
            )
        } else {
            None
        };
        Some(HeaderTransform {
            direction,
            name,
            value,
            span,
        })
    }

    fn aggregate(&mut self, pair: Pair<'_, Rule>) -> Aggregate {
        let span = self.span(&pair);
        let mut agg = Aggregate {
            parts: Vec::new(),
            timeout: None,
            span,
        };
        let mut seen = Seen::default();
        for a in pair.into_inner() {
            let a_span = self.span(&a);
            match a.as_rule() {
                Rule::aggregate_timeout => {
                    let Some((kw, kw_span, v)) = self.setting(a) else {
                        continue;
                    };
                    if self.first(&mut seen, &kw, kw_span, "an `aggregate` block") {
                        agg.timeout = self.expect().positive_duration(&v, &kw);
                    }
                }
                Rule::aggregate_part => {
                    let mut inner = a.into_inner();
                    let (Some(name), Some(up), Some(method), Some(path)) =
                        (inner.next(), inner.next(), inner.next(), inner.next())
                    else {
                        continue;
                    };
                    let optional = inner.next().is_some();
                    let name = Spanned::new(name.as_str().to_string(), self.span(&name));
                    if let Some(first) = agg.parts.iter().find(|p| p.name.node == name.node) {
                        self.diags.push(
                            Diagnostic::new(Code::GW0102, format!("aggregate part `{}` defined twice", name.node))
                                .primary(name.span, "defined again here")
                                .secondary(first.name.span, "first defined here")
                                .help("give each part its own name: it is the key in the merged JSON"),
                        );
                        continue;
                    }
                    let upstream = Spanned::new(up.as_str().to_string(), self.span(&up));
                    let m_span = self.span(&method);
                    let method = self.expect().method(method.as_str(), m_span);
                    let path = self.value(path);
                    let path = self
                        .expect()
                        .template(&path, "a path template such as `\"/users/{claim.sub}\"`");
                    if let (Some(method), Some(path)) = (method, path) {
                        agg.parts.push(AggregatePart {
                            name,
                            upstream,
                            method,
                            path,
                            optional,
                            span: a_span,
                        });
                    }
                }
                _ => {}
            }
        }
        agg
    }

    fn cors(&mut self, pair: Pair<'_, Rule>) -> Cors {
        let span = self.span(&pair);
        let mut cors = Cors {
            span,
            ..Cors::default()
        };
        let mut seen = Seen::default();
        const KNOWN: &[&str] = &["origins", "methods", "headers", "expose", "credentials", "max_age"];
        for a in pair.into_inner() {
            let a_span = self.span(&a);
            match a.as_rule() {
                Rule::cors_credentials => {
                    if self.first(&mut seen, "credentials", a_span, "a `cors` block") {
                        cors.credentials = Some(a_span);
                    }
                }
                Rule::cors_setting => {
                    let Some((kw, kw_span, values)) = self.list_setting(a) else {
                        continue;
                    };
                    if !self.first(&mut seen, &kw, kw_span, "a `cors` block") {
                        continue;
                    }
                    for v in &values {
                        match kw.as_str() {
                            "origins" => {
                                let origin = match &v.val {
                                    Val::Star => Some(Spanned::new("*".to_string(), v.span)),
                                    _ => self
                                        .expect()
                                        .string(v, "an origin such as `\"https://app.example.com\"`"),
                                };
                                if let Some(o) = origin {
                                    if o.node != "*"
                                        && !(o.node.starts_with("https://") || o.node.starts_with("http://"))
                                    {
                                        self.diags.push(
                                            Diagnostic::new(Code::GW0003, format!("invalid origin `{}`", o.node))
                                                .primary(o.span, "an origin is a scheme and a host")
                                                .help("write `\"https://app.example.com\"`, or `*` for any origin"),
                                        );
                                    } else {
                                        cors.origins.push(o);
                                    }
                                }
                            }
                            "methods" => match &v.val {
                                Val::Ident(m) => {
                                    if let Some(m) = self.expect().method(m, v.span) {
                                        cors.methods.push(m);
                                    }
                                }
                                _ => self.expect().mismatch(v, "a method such as `GET`", None),
                            },
                            "headers" | "expose" => {
                                if let Some(h) = self.expect().word(v, "a header name") {
                                    let h = Spanned::new(h.node.to_ascii_lowercase(), h.span);
                                    if kw == "headers" {
                                        cors.headers.push(h);
                                    } else {
                                        cors.expose.push(h);
                                    }
                                }
                            }
                            _ => cors.max_age = self.expect().duration(v),
                        }
                    }
                }
                Rule::cors_unknown => self.unknown(a, "a `cors` block", KNOWN),
                _ => {}
            }
        }
        cors
    }

    fn test(&mut self, pair: Pair<'_, Rule>) {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::k_test);
        let Some(name) = inner.next() else { return };
        let name = self.value(name);
        let name = self
            .expect()
            .string(&name, "a test name such as `\"routes\"`")
            .unwrap_or_else(|| Spanned::new(String::new(), name.span));
        let mut test = Test {
            name,
            expectations: Vec::new(),
            span,
        };
        for e in inner.filter(|p| p.as_rule() == Rule::expectation) {
            if let Some(e) = self.expectation(e) {
                test.expectations.push(e);
            }
        }
        self.config.tests.push(test);
    }

    fn expectation(&mut self, pair: Pair<'_, Rule>) -> Option<Expectation> {
        let span = self.span(&pair);
        let mut method = None;
        let mut path = None;
        let mut host = None;
        let mut headers = Vec::new();
        let mut cookies = Vec::new();
        let mut client_ip = None;
        let mut expect = None;
        let mut after = Rule::method;
        let mut ok = true;
        for p in pair.into_inner() {
            let rule = p.as_rule();
            match rule {
                Rule::method => {
                    let s = self.span(&p);
                    method = self.expect().method(p.as_str(), s);
                    ok &= method.is_some();
                }
                Rule::k_host | Rule::arrow => after = rule,
                Rule::expect_header => {
                    let vals: Vec<_> = p.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
                    let vals = vals.into_iter().map(|v| self.value(v)).collect::<Vec<_>>();
                    if let [n, v] = vals.as_slice() {
                        let n = self.expect().word(n, "a header name");
                        let v = self.expect().string(v, "a header value string");
                        match (n, v) {
                            (Some(n), Some(v)) => headers.push((Spanned::new(n.node.to_ascii_lowercase(), n.span), v)),
                            _ => ok = false,
                        }
                    }
                }
                Rule::expect_cookie => {
                    let vals: Vec<_> = p.into_inner().filter(|p| p.as_rule() == Rule::value).collect();
                    let vals = vals.into_iter().map(|v| self.value(v)).collect::<Vec<_>>();
                    if let [n, v] = vals.as_slice() {
                        let n = self.expect().word(n, "a cookie name");
                        let v = self.expect().string(v, "a cookie value string");
                        match (n, v) {
                            (Some(n), Some(v)) => cookies.push((n, v)),
                            _ => ok = false,
                        }
                    }
                }
                Rule::expect_client => {
                    let Some(v) = p.into_inner().find(|p| p.as_rule() == Rule::value) else {
                        continue;
                    };
                    let v = self.value(v);
                    let s = self.expect().string(&v, "an address such as `\"10.1.2.3\"`");
                    match s.as_ref().and_then(|s| s.node.parse::<std::net::IpAddr>().ok()) {
                        Some(ip) => client_ip = Some(Spanned::new(ip, v.span)),
                        None => {
                            if s.is_some() {
                                self.expect().mismatch(&v, "an address such as `\"10.1.2.3\"`", None);
                            }
                            ok = false;
                        }
                    }
                }
                Rule::value => {
                    let v = self.value(p);
                    match after {
                        Rule::k_host => {
                            host = self.host_name(&v);
                            ok &= host.is_some();
                        }
                        Rule::arrow => {
                            expect = match &v.val {
                                Val::Ident(n) => Some(Spanned::new(Expected::Upstream(n.clone()), v.span)),
                                Val::Int(_) => self
                                    .expect()
                                    .status(&v)
                                    .map(|s| Spanned::new(Expected::Status(s.node), s.span)),
                                _ => {
                                    self.expect()
                                        .mismatch(&v, "an upstream name or a status such as `404`", None);
                                    None
                                }
                            };
                        }
                        _ => {
                            path = self.expect().request_path(&v);
                            ok &= path.is_some();
                        }
                    }
                }
                _ => {}
            }
        }
        if !ok {
            return None;
        }
        Some(Expectation {
            method: method?,
            path: path?,
            host,
            headers,
            cookies,
            client_ip,
            expect: expect?,
            span,
        })
    }
}

/// Labels of letters, digits and `-` separated by dots (no wildcard).
/// A media type as RFC 6838 names them: `at+jwt`, `application/at+jwt`.
fn is_media_type(s: &str) -> bool {
    let name = |p: &str| {
        let mut b = p.bytes();
        b.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.len() <= 127
            && b.all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
    };
    match s.split_once('/') {
        Some((top, sub)) => name(top) && name(sub),
        None => name(s),
    }
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}
