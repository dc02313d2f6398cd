//! The canonical layout of a `.gw` file (`gwc fmt`, and the language
//! server's formatting). Only the blanks between tokens change: every token,
//! comment, string and template is written as it was, in the same order.
//!
//! How: the file is parsed with the grammar; its tokens are the leaves of the
//! parse tree plus what the grammar keeps silent between them (comments, `;`,
//! the brackets of calls and lists), which [`gaps`] reads. The parse tree says
//! where statements and blocks start and end; [`format`] lays the tokens out
//! from that (two-space indent, one statement per line inside a multi-line
//! block, a block written on one line kept on one line when it fits in
//! [`WIDTH`] columns, at most one blank line, trailing comments aligned, the
//! `->` of test expectations aligned).
//!
//! Why it never changes meaning: before returning, the output is parsed again
//! and must give the same parse tree (rules, nesting and leaf texts, spans
//! aside) and the same tokens and comments in the same order; the compiler
//! reads nothing but the parse tree. Anything else is [`Refused::Unsafe`] and
//! the text is left alone. A file with syntax errors (GW0001, GW0002) is
//! [`Refused::Syntax`] with its diagnostics. Like the rest of the compiler,
//! formatting is total: any input gives a result, never a panic.

use crate::ast::Config;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{FileId, SourceFile, SourceMap, Span};
use gw_grammar::{Pair, Pairs, Rule};

/// Lines are kept within this many columns where the layout has a choice
/// (a block written on one line stays on one line only if it fits).
pub const WIDTH: usize = 100;

/// Why a file was not formatted.
#[derive(Debug)]
pub enum Refused {
    /// The file does not parse: its syntax diagnostics, to render against
    /// `sources` (one file).
    Syntax {
        sources: SourceMap,
        diagnostics: Vec<Diagnostic>,
    },
    /// The layout would not have kept the file's meaning (a bug in the
    /// formatter; never seen in tests): the text is left as it was.
    Unsafe(String),
}

/// The file `name` in canonical layout, or why not. `bytes` need not be
/// UTF-8 (that is a syntax error, GW0001).
pub fn format_source(name: &str, bytes: &[u8]) -> Result<String, Refused> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let mut sources = SourceMap::new();
            let id = sources.add(SourceFile::new(name, String::from_utf8_lossy(bytes).into_owned()));
            let d = Diagnostic::new(Code::GW0001, "this file is not valid UTF-8")
                .primary(Span::new(id, at, at + 1), "invalid UTF-8 here")
                .help("save the file as UTF-8");
            return Err(Refused::Syntax {
                sources,
                diagnostics: vec![d],
            });
        }
    };
    format(name, text)
}

/// `text` (the file `name`) in canonical layout, or why not.
pub fn format(name: &str, text: &str) -> Result<String, Refused> {
    let refuse = |syntax: Vec<Diagnostic>| {
        let mut sources = SourceMap::new();
        sources.add(SourceFile::new(name, text));
        Refused::Syntax {
            sources,
            diagnostics: syntax,
        }
    };
    // The compiler's lowering says why a file does not parse; it is only
    // asked when the parse tree shows a syntax error (or might not be
    // parsed safely at all).
    let pairs = match parse(text) {
        Some(pairs) => pairs,
        None => {
            // Brackets in strings or comments may have made `parse` wary:
            // with no syntax error from the compiler, nesting is fine.
            let syntax = syntax_errors(name, text);
            match gw_grammar::parse_file(text) {
                Ok(pairs) if syntax.is_empty() => pairs,
                _ => return Err(refuse(syntax)),
            }
        }
    };
    let suspicious = pairs
        .clone()
        .flatten()
        .any(|p| matches!(p.as_rule(), Rule::top_unknown | Rule::unterminated_string));
    if suspicious {
        let syntax = syntax_errors(name, text);
        if !syntax.is_empty() {
            return Err(refuse(syntax));
        }
    }
    let tokens = tokens_from(text, pairs.clone()).map_err(Refused::Unsafe)?;
    let out = layout(text, &tokens);
    // The proof: same parse tree, same tokens, same comments.
    // (The output nests as the input does, which was safe to parse.)
    let Ok(again_pairs) = gw_grammar::parse_file(&out) else {
        return Err(Refused::Unsafe("the formatted text does not parse".into()));
    };
    let again = tokens_from(&out, again_pairs.clone()).map_err(Refused::Unsafe)?;
    let differs = |(a, b): (&Token, &Token)| {
        let (x, y) = (a.text(&out), b.text(text));
        let same = match a.kind {
            Kind::Comment => x == y.trim_end(),
            _ => x == y,
        };
        !a.kind.same_as(&b.kind) || !same
    };
    if again.len() != tokens.len() || again.iter().zip(&tokens).any(differs) {
        return Err(Refused::Unsafe("the formatted text has other tokens".into()));
    }
    if tree(pairs) != tree(again_pairs) {
        return Err(Refused::Unsafe("the formatted text parses differently".into()));
    }
    Ok(out)
}

/// Whether `text` may nest deeper than the compiler accepts: every `{ [ (`
/// counts, in strings and comments too, so this errs on the safe side (the
/// parser recurses once per level; the compiler refuses such files before
/// parsing, with a diagnostic).
pub fn may_be_too_deep(text: &str) -> bool {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > crate::syntax::MAX_NESTING {
                    return true;
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The parse tree of a text that may safely be parsed and parses.
pub fn parse(text: &str) -> Option<Pairs<'_, Rule>> {
    if may_be_too_deep(text) {
        return None;
    }
    gw_grammar::parse_file(text).ok()
}

/// The syntax errors (GW0001, GW0002) of one file on its own.
fn syntax_errors(name: &str, text: &str) -> Vec<Diagnostic> {
    let mut diags = Diagnostics::default();
    let mut config = Config::default();
    crate::syntax::lower_file(FileId(0), name, text, &mut config, &mut diags);
    diags
        .into_sorted()
        .into_iter()
        .filter(|d| matches!(d.code, Code::GW0001 | Code::GW0002))
        .collect()
}

/// The parse tree as (depth, rule, leaf text) in pre-order: what the
/// compiler reads, without positions.
fn tree(pairs: Pairs<'_, Rule>) -> Vec<(usize, Rule, Option<&str>)> {
    fn walk<'a>(pair: Pair<'a, Rule>, depth: usize, out: &mut Vec<(usize, Rule, Option<&'a str>)>) {
        let leaf = is_leaf(&pair);
        out.push((depth, pair.as_rule(), leaf.then(|| pair.as_str())));
        if !leaf {
            for child in pair.into_inner() {
                walk(child, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    for pair in pairs {
        walk(pair, 0, &mut out);
    }
    out
}

fn is_leaf(pair: &Pair<'_, Rule>) -> bool {
    pair.as_rule() == Rule::string || pair.clone().into_inner().next().is_none()
}

// ------------------------------------------------------------------ tokens

/// One token of a file that parses.
#[derive(Clone, Debug)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

impl Token {
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        source.get(self.start..self.end).unwrap_or("")
    }
}

/// What a token is, as far as layout goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A leaf of the parse tree (keyword, name, value, `->`, `,`, a brace of
    /// an unknown attribute's block), with its rule. `starts` is true for the
    /// first token of a statement (a declaration or an attribute in a block).
    Leaf { rule: Rule, starts: bool, tight: bool },
    /// `{` of a block of statements; `close` is the index of its `}`, `rule`
    /// the rule of the block's owner (`upstream`, `route_block`, `test`...).
    Open { close: usize, rule: Rule },
    /// `}` of a block of statements.
    Close,
    /// `;`, `(`, `)`, `[`, `]`, `==`, `!=` where the grammar keeps them silent.
    Punct,
    /// `# ...` up to (not including) the end of the line.
    Comment,
}

impl Kind {
    fn same_as(&self, other: &Kind) -> bool {
        match (self, other) {
            (Kind::Leaf { rule: a, .. }, Kind::Leaf { rule: b, .. }) => a == b,
            (Kind::Open { .. }, Kind::Open { .. }) => true,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// The tokens of `text`, comments included, in order; `Err` when it does
/// not parse.
pub fn tokens_of(text: &str) -> Result<Vec<Token>, String> {
    match parse(text) {
        Some(pairs) => tokens_from(text, pairs),
        None => Err("the text does not parse".into()),
    }
}

/// The tokens of `text` from its parse tree.
pub fn tokens_from(text: &str, pairs: Pairs<'_, Rule>) -> Result<Vec<Token>, String> {
    let mut t = Tokenizer {
        text,
        pos: 0,
        out: Vec::new(),
        opens: Vec::new(),
    };
    for file in pairs {
        for decl in file.into_inner() {
            if decl.as_rule() == Rule::EOI {
                continue;
            }
            t.walk(decl, true, false)?;
        }
    }
    t.gap(text.len())?;
    Ok(t.out)
}

struct Tokenizer<'a> {
    text: &'a str,
    pos: usize,
    out: Vec<Token>,
    opens: Vec<usize>,
}

impl Tokenizer<'_> {
    fn walk(&mut self, pair: Pair<'_, Rule>, starts: bool, tight: bool) -> Result<(), String> {
        if is_leaf(&pair) {
            let span = pair.as_span();
            self.gap(span.start())?;
            let kind = Kind::Leaf {
                rule: pair.as_rule(),
                starts,
                tight,
            };
            self.push(span.start(), span.end(), kind);
            return Ok(());
        }
        let rule = pair.as_rule();
        let children: Vec<_> = pair.into_inner().collect();
        let block = rule != Rule::any_block && children.iter().any(|c| c.as_rule() == Rule::lbrace);
        let mut inside = false;
        let mut first = starts;
        for child in children {
            let span = child.as_span();
            match child.as_rule() {
                Rule::lbrace if block => {
                    self.gap(span.start())?;
                    self.opens.push(self.out.len());
                    self.push(span.start(), span.end(), Kind::Open { close: 0, rule });
                    inside = true;
                }
                Rule::rbrace if block => {
                    self.gap(span.start())?;
                    let close = self.out.len();
                    if let Some(open) = self.opens.pop() {
                        self.out[open].kind = Kind::Open { close, rule };
                    }
                    self.push(span.start(), span.end(), Kind::Close);
                    inside = false;
                }
                _ => {
                    let tight = rule == Rule::methods && child.as_rule() == Rule::comma;
                    self.walk(child, first || inside, tight)?;
                }
            }
            first = false;
        }
        Ok(())
    }

    fn push(&mut self, start: usize, end: usize, kind: Kind) {
        self.out.push(Token { start, end, kind });
        self.pos = end;
    }

    /// The text between the previous token and `to`: blanks, comments and
    /// silent punctuation only.
    fn gap(&mut self, to: usize) -> Result<(), String> {
        let from = self.pos;
        for (start, end, comment) in gaps(self.text, from, to)? {
            let kind = if comment { Kind::Comment } else { Kind::Punct };
            self.out.push(Token { start, end, kind });
        }
        self.pos = to.max(from);
        Ok(())
    }
}

/// The comments and silent punctuation between two tokens, as `(start,
/// end, is_comment)`; `Err` on anything else (which the grammar would have
/// made a token).
pub fn gaps(text: &str, from: usize, to: usize) -> Result<Vec<(usize, usize, bool)>, String> {
    let mut out = Vec::new();
    let Some(gap) = text.get(from..to) else {
        return Err(format!("bad gap {from}..{to}"));
    };
    let bytes = gap.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                let end = gap[i..].find('\n').map_or(bytes.len(), |n| i + n);
                out.push((from + i, from + end, true));
                i = end;
            }
            b';' | b'(' | b')' | b'[' | b']' => {
                out.push((from + i, from + i + 1, false));
                i += 1;
            }
            b'=' | b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((from + i, from + i + 2, false));
                i += 2;
            }
            _ if gap[i..].starts_with('\u{FEFF}') => i += '\u{FEFF}'.len_utf8(),
            _ => return Err(format!("unexpected text at byte {}", from + i)),
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ layout

/// One line of output before alignment.
#[derive(Debug, Default)]
struct Line {
    indent: usize,
    code: String,
    /// Width of `code` in characters.
    width: usize,
    comment: Option<String>,
    /// An own-line comment that continues the comment of this earlier line
    /// (written under it in the source): it is aligned with it.
    continues: Option<usize>,
    blank_before: bool,
    /// The block whose statements this line belongs to (alignment groups).
    group: usize,
    /// A line that starts a test expectation or an aggregate part: their
    /// columns are aligned with the lines around.
    table: Option<Table>,
    /// Tokens written on the line so far.
    count: usize,
    /// Byte offsets in `code` where a column ends (padding goes there).
    stops: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    /// `METHOD PATH ... -> R`: the path and the `->` start columns.
    Expectation,
    /// `PART UPSTREAM METHOD "path"`: the upstream, method and path do.
    Part,
}

struct Frame {
    rule: Rule,
    inline: bool,
    /// Indent of the statements inside.
    indent: usize,
    group: usize,
    /// Whether anything was written inside yet (no blank line before the first).
    written: bool,
}

struct Layout<'a> {
    text: &'a str,
    toks: &'a [Token],
    line_starts: Vec<usize>,
    lines: Vec<Line>,
    cur: Option<Line>,
    frames: Vec<Frame>,
    groups: usize,
    /// The next code token goes on a new line (after a multi-line `{` or a comment).
    need_line: bool,
    /// The source column of the previous comment, when it ended a line that
    /// an own-line comment may continue.
    last_comment: Option<(usize, usize)>,
}

fn layout(text: &str, toks: &[Token]) -> String {
    let mut line_starts = vec![0];
    line_starts.extend(
        text.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1),
    );
    let mut l = Layout {
        text,
        toks,
        line_starts,
        lines: Vec::new(),
        cur: None,
        frames: vec![Frame {
            rule: Rule::file,
            inline: false,
            indent: 0,
            group: 0,
            written: false,
        }],
        groups: 1,
        need_line: false,
        last_comment: None,
    };
    for i in 0..toks.len() {
        l.token(i);
    }
    l.flush();
    render(l.lines)
}

impl Layout<'_> {
    fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    fn column_of(&self, offset: usize) -> usize {
        let start = self.line_starts[self.line_of(offset)];
        self.text.get(start..offset).map_or(0, |s| s.chars().count())
    }

    /// Whether the source has a blank line between token `i - 1` and `i`.
    fn blank_before(&self, i: usize) -> bool {
        let Some(prev) = i.checked_sub(1).map(|p| &self.toks[p]) else {
            return false;
        };
        let gap = self.text.get(prev.end..self.toks[i].start).unwrap_or("");
        gap.bytes().filter(|b| *b == b'\n').count() >= 2
    }

    fn frame(&mut self) -> &mut Frame {
        let n = self.frames.len() - 1;
        &mut self.frames[n]
    }

    fn flush(&mut self) {
        if let Some(line) = self.cur.take() {
            self.lines.push(line);
        }
    }

    fn new_line(&mut self, indent: usize, blank: bool) {
        self.flush();
        let group = self.frame().group;
        let written = std::mem::replace(&mut self.frame().written, true);
        self.cur = Some(Line {
            indent,
            blank_before: blank && written && !self.lines.is_empty(),
            group,
            ..Line::default()
        });
        self.need_line = false;
    }

    fn append(&mut self, i: usize, space: bool) {
        let text = self.toks[i].text(self.text);
        let arrow = matches!(self.toks[i].kind, Kind::Leaf { rule: Rule::arrow, .. });
        let Some(line) = self.cur.as_mut() else { return };
        if arrow && line.table == Some(Table::Expectation) {
            line.stops.push(line.code.len());
        }
        if space && !line.code.is_empty() {
            line.code.push(' ');
            line.width += 1;
        }
        line.code.push_str(text);
        line.width += text.chars().count();
        line.count += 1;
        match (line.table, line.count) {
            (Some(Table::Expectation), 1) | (Some(Table::Part), 1..=3) => line.stops.push(line.code.len()),
            _ => {}
        }
    }

    fn token(&mut self, i: usize) {
        let tok = &self.toks[i];
        match tok.kind {
            Kind::Comment => self.comment(i),
            Kind::Close => {
                let inline = self.frame().inline;
                if inline {
                    let space = !matches!(self.toks[i - 1].kind, Kind::Open { .. });
                    self.append(i, space);
                    self.frames.pop();
                } else {
                    self.frames.pop();
                    let indent = self.frame().indent;
                    self.new_line(indent, false);
                    self.append(i, false);
                }
                self.last_comment = None;
            }
            Kind::Leaf { starts: true, rule, .. } if !self.frame().inline => {
                let (indent, blank) = (self.frame().indent, self.blank_before(i));
                self.new_line(indent, blank);
                let table = match (self.frame().rule, rule) {
                    (Rule::test, Rule::method) => Some(Table::Expectation),
                    (Rule::aggregate, Rule::ident) => Some(Table::Part),
                    _ => None,
                };
                if let Some(line) = self.cur.as_mut() {
                    line.table = table;
                }
                self.append(i, false);
                self.last_comment = None;
            }
            _ => {
                if self.cur.is_none() || self.need_line {
                    let indent = self.frame().indent + 2;
                    self.new_line(indent, false);
                    self.append(i, false);
                } else {
                    let space = i > 0 && space_between(self.text, &self.toks[i - 1], tok);
                    self.append(i, space);
                }
                self.last_comment = None;
                if let Kind::Open { close, rule } = tok.kind {
                    self.open(i, close, rule);
                }
                // A string left open runs to the end of its line (inside an
                // unknown attribute it is no syntax error): nothing may follow
                // it there.
                if matches!(
                    tok.kind,
                    Kind::Leaf {
                        rule: Rule::unterminated_string,
                        ..
                    }
                ) {
                    self.flush();
                    self.need_line = true;
                }
            }
        }
    }

    fn open(&mut self, i: usize, close: usize, rule: Rule) {
        let parent_inline = self.frame().inline;
        let empty = close == i + 1;
        let one_line = self.line_of(self.toks[i].start) == self.line_of(self.toks[close].start);
        let inline = parent_inline
            || empty
            || (one_line && {
                let width = self.cur.as_ref().map_or(0, |l| l.indent + l.width);
                width + self.inline_width(i, close) <= WIDTH
            });
        let indent = self.frame().indent + 2;
        let group = self.groups;
        self.groups += 1;
        self.frames.push(Frame {
            rule,
            inline,
            indent,
            group,
            written: false,
        });
        if !inline {
            self.need_line = true;
        }
    }

    /// The width of tokens `open+1 ..= close` on one line, and the `;` after.
    fn inline_width(&self, open: usize, close: usize) -> usize {
        let mut width = 0;
        let mut i = open + 1;
        while i < self.toks.len()
            && (i <= close || matches!(self.toks[i].kind, Kind::Punct) && self.toks[i].text(self.text) == ";")
        {
            let tok = &self.toks[i];
            if space_between(self.text, &self.toks[i - 1], tok) {
                width += 1;
            }
            width += tok.text(self.text).chars().count();
            i += 1;
        }
        width
    }

    fn comment(&mut self, i: usize) {
        let tok = &self.toks[i];
        let text = tok.text(self.text).trim_end().to_string();
        let column = self.column_of(tok.start);
        let trailing = i > 0 && self.line_of(self.toks[i - 1].end) == self.line_of(tok.start);
        if trailing {
            if let Some(line) = self.cur.as_mut() {
                line.comment = Some(text);
                self.flush();
                self.need_line = true;
                self.last_comment = Some((column, self.lines.len() - 1));
                return;
            }
        }
        let blank = self.blank_before(i);
        // An own-line comment written under the previous line's comment
        // continues it.
        if let Some((col, line)) = self.last_comment {
            if col == column && !blank && matches!(self.toks[i - 1].kind, Kind::Comment) {
                self.flush();
                let group = self.frame().group;
                self.lines.push(Line {
                    comment: Some(text),
                    continues: Some(line),
                    group,
                    ..Line::default()
                });
                self.need_line = true;
                return;
            }
        }
        // At the block's level when a statement (or the block's end) follows;
        // indented as a continuation when it sits inside a statement.
        let next = self.toks[i + 1..].iter().find(|t| t.kind != Kind::Comment);
        let between = match next.map(|t| &t.kind) {
            None | Some(Kind::Close) | Some(Kind::Leaf { starts: true, .. }) => true,
            Some(_) => false,
        };
        let indent = self.frame().indent + if between { 0 } else { 2 };
        self.new_line(indent, blank);
        if let Some(line) = self.cur.as_mut() {
            line.comment = Some(text);
        }
        self.flush();
        self.need_line = true;
        self.last_comment = Some((column, self.lines.len() - 1));
    }
}

/// Whether a blank goes between two tokens on one line: none before `,`
/// `;` `)` `]` and a call's `(`, none after `(` `[` and the comma of a method
/// list (`GET,HEAD`), none inside an empty block.
fn space_between(text: &str, prev: &Token, cur: &Token) -> bool {
    if let Kind::Leaf { tight: true, .. } = prev.kind {
        return false;
    }
    if matches!(prev.kind, Kind::Open { .. }) && cur.kind == Kind::Close {
        return false;
    }
    let (p, c) = (punct(text, prev), punct(text, cur));
    !(matches!(c, Some(",") | Some(";") | Some(")") | Some("]") | Some("(")) || matches!(p, Some("(") | Some("[")))
}

fn punct<'a>(text: &'a str, tok: &Token) -> Option<&'a str> {
    match tok.kind {
        Kind::Punct | Kind::Leaf { rule: Rule::comma, .. } => Some(tok.text(text)),
        _ => None,
    }
}

fn render(mut lines: Vec<Line>) -> String {
    align_tables(&mut lines);
    let columns = comment_columns(&lines);
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        if line.blank_before {
            out.push('\n');
        }
        let mut width = 0;
        if !line.code.is_empty() || line.continues.is_none() {
            out.extend(std::iter::repeat_n(' ', line.indent));
            out.push_str(&line.code);
            width = line.indent + line.width;
        }
        if let Some(comment) = &line.comment {
            let col = columns[n].unwrap_or(width);
            if !line.code.is_empty() || line.continues.is_some() {
                let pad = col.saturating_sub(width).max(if line.code.is_empty() { 0 } else { 2 });
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(comment);
        }
        out.push('\n');
    }
    out
}

/// Aligns the columns of consecutive test expectations (and of aggregate
/// parts): a run is broken by a blank line or a line of other code.
fn align_tables(lines: &mut [Line]) {
    let mut n = 0;
    while n < lines.len() {
        let Some(table) = lines[n].table else {
            n += 1;
            continue;
        };
        let group = lines[n].group;
        let mut run = vec![n];
        let mut m = n + 1;
        while m < lines.len() && !lines[m].blank_before && lines[m].group == group {
            if lines[m].table == Some(table) {
                run.push(m);
            } else if !lines[m].code.is_empty() {
                break;
            }
            m += 1;
        }
        let stops = run.iter().map(|&k| lines[k].stops.len()).max().unwrap_or(0);
        for s in 0..stops {
            let before = |l: &Line| l.stops.get(s).map(|&at| l.code[..at].chars().count());
            let target = run.iter().filter_map(|&k| before(&lines[k])).max().unwrap_or(0);
            for &k in &run {
                let line = &mut lines[k];
                let Some(width) = before(line) else { continue };
                let pad = target - width;
                if pad > 0 {
                    let at = line.stops[s];
                    line.code.insert_str(at, &" ".repeat(pad));
                    line.width += pad;
                    for later in line.stops.iter_mut().skip(s + 1) {
                        *later += pad;
                    }
                }
            }
        }
        n = m;
    }
}

/// The column of each line's comment: trailing comments of one block are
/// aligned, between blank lines, two columns after the longest of their lines.
fn comment_columns(lines: &[Line]) -> Vec<Option<usize>> {
    let mut columns: Vec<Option<usize>> = vec![None; lines.len()];
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (n, line) in lines.iter().enumerate() {
        if line.comment.is_some() && !line.code.is_empty() {
            groups.entry(line.group).or_default().push(n);
        }
    }
    for members in groups.values() {
        let mut runs: Vec<Vec<usize>> = Vec::new();
        for &n in members {
            let split = match runs.last().and_then(|r| r.last()) {
                None => true,
                Some(&prev) => lines[prev + 1..=n]
                    .iter()
                    .any(|l| l.blank_before && l.group == lines[n].group),
            };
            if split {
                runs.push(vec![n]);
            } else if let Some(r) = runs.last_mut() {
                r.push(n);
            }
        }
        for run in runs {
            let col = run.iter().map(|&n| lines[n].indent + lines[n].width).max().unwrap_or(0) + 2;
            for n in run {
                columns[n] = Some(col);
            }
        }
    }
    for n in 0..lines.len() {
        if let Some(of) = lines[n].continues {
            columns[n] = columns.get(of).copied().flatten().or_else(|| {
                let l = &lines[of];
                Some(l.indent + l.width + if l.code.is_empty() { 0 } else { 2 })
            });
        }
    }
    columns
}
