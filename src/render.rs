//! Text rendering of compiler diagnostics, like rustc's: [`Report`] adapts a
//! [`gw_compiler::Diagnostic`] and its [`SourceMap`] to [`miette::Diagnostic`]
//! and miette's graphical handler draws it. Labels in another file than the
//! primary label's (a duplicate first defined in an imported file) are shown
//! as related reports with their own source, never dropped. What is drawn
//! is the diagnostic [redacted](Diagnostic::redacted), over [`Snippets`]:
//! only the lines around its labels, secrets masked and control characters
//! escaped ([`gw_compiler::redact::shown`]), so that no secret and no
//! terminal escape reaches the output, and a diagnostic in a large file
//! costs the lines it shows. A line longer than [`LONG_LINE`] bytes is shown
//! as bounded slices around the labels on it, the rest elided with `…`, so
//! that a minified or generated 100,000-column line costs what a short one
//! does (and miette, which cannot indent past column 65,535, never sees it).

use gw_compiler::redact;
use gw_compiler::{Diagnostic, FileId, Severity, SourceMap, Span};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceSpan, SpanContents,
};
use std::fmt;
use std::io::IsTerminal;
use std::ops::Range;
use std::sync::Arc;

/// Width used when stdout is not a terminal, so that output is stable.
pub const FIXED_WIDTH: usize = 100;

/// How diagnostics are drawn.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub color: bool,
    pub width: usize,
}

impl Style {
    /// Colour only on a terminal and when `NO_COLOR` is not set; a fixed
    /// width unless on a terminal (where `COLUMNS`, if set, is honoured).
    pub fn detect() -> Style {
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let width = if tty {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse().ok())
                .filter(|w| *w >= 40)
                .unwrap_or(FIXED_WIDTH)
        } else {
            FIXED_WIDTH
        };
        Style {
            color: tty && !no_color,
            width,
        }
    }

    fn handler(self) -> GraphicalReportHandler {
        let theme = if self.color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        GraphicalReportHandler::new_themed(theme)
            .with_width(self.width)
            .with_links(false)
            .with_show_related_as_nested(true)
    }
}

/// Draws one diagnostic (ending with a newline).
pub fn render(diagnostic: &Diagnostic, sources: &SourceMap, style: Style) -> String {
    let report = Report::new(&diagnostic.redacted(sources), sources);
    let mut out = String::new();
    if style.handler().render_report(&mut out, &report).is_err() {
        // Rendering into a String only fails if a span is out of range;
        // fall back to the message alone rather than lose the diagnostic.
        out = format!("{}: {}\n", report.code.as_deref().unwrap_or("error"), report.message);
    }
    out
}

/// The summary line after the diagnostics: `2 errors, 1 warning`, `1 error`,
/// `no problems found`.
pub fn summary(errors: usize, warnings: usize) -> String {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => "no problems found".to_string(),
        (e, 0) => count(e, "error"),
        (0, w) => count(w, "warning"),
        (e, w) => format!("{}, {}", count(e, "error"), count(w, "warning")),
    }
}

/// A diagnostic as miette sees it: the labels of one file, with labels in
/// other files as related reports.
#[derive(Debug)]
struct Report {
    /// `error[GW0101]`; `None` for a related report.
    code: Option<String>,
    severity: miette::Severity,
    message: String,
    help: Option<String>,
    source: Option<Snippets>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl Report {
    fn new(d: &Diagnostic, sources: &SourceMap) -> Report {
        let severity = match d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        };
        let home = d.span().map(|s| s.file);
        // Other files in the order their labels appear.
        let mut others: Vec<FileId> = Vec::new();
        for l in &d.labels {
            if Some(l.span.file) != home && !others.contains(&l.span.file) {
                others.push(l.span.file);
            }
        }
        let related = others
            .into_iter()
            .map(|file| {
                let labels: Vec<_> = d.labels.iter().filter(|l| l.span.file == file).collect();
                let name = redact::escape_controls(&sources.get(file).name);
                let snippets = Snippets::new(sources, file, labels.iter().map(|l| l.span));
                // One label: its note becomes the heading, the underline stays bare.
                let (message, keep_label_text) = match labels.as_slice() {
                    [one] if !one.message.is_empty() => (format!("{}, in `{name}`", one.message), false),
                    _ => (format!("in `{name}`"), true),
                };
                Report {
                    code: None,
                    severity: miette::Severity::Advice,
                    message,
                    help: None,
                    labels: labels
                        .iter()
                        .map(|l| snippets.label(l.span, if keep_label_text { &l.message } else { "" }, false))
                        .collect(),
                    source: Some(snippets),
                    related: Vec::new(),
                }
            })
            .collect();
        let home_labels: Vec<_> = d.labels.iter().filter(|l| Some(l.span.file) == home).collect();
        let snippets = home.map(|file| Snippets::new(sources, file, home_labels.iter().map(|l| l.span)));
        Report {
            code: Some(format!("{}[{}]", d.severity.as_str(), d.code)),
            severity,
            message: d.message.clone(),
            help: d.help.clone(),
            labels: match &snippets {
                Some(sn) => home_labels
                    .iter()
                    .map(|l| sn.label(l.span, &l.message, l.primary))
                    .collect(),
                None => Vec::new(),
            },
            source: snippets,
            related,
        }
    }
}

/// Lines of context a window keeps around its labels (miette draws one).
const CONTEXT: usize = 2;

/// The longest line (in bytes) a window shows whole.
const LONG_LINE: usize = 240;
/// On a longer line, the bytes shown before and after each label's start
/// and end (a line without a label shows its first `AFTER` bytes).
const BEFORE: usize = 40;
const AFTER: usize = 80;
/// At most this many slices of one line are shown (the labels past them
/// point at an elision).
const SLICES: usize = 8;
/// What stands for the elided part of a long line.
const ELISION: &str = "…";

/// The parts of one file a report draws, as miette's source: a window of
/// lines around each group of nearby labels, shown masked and escaped.
/// Miette's offsets are the file's, shifted by what escapes added in the
/// windows before, so that labels keep their order.
#[derive(Debug)]
struct Snippets {
    name: String,
    text: Arc<str>,
    /// The file's secrets.
    secrets: Vec<Range<usize>>,
    windows: Vec<Window>,
}

#[derive(Debug)]
struct Window {
    /// The bytes of the file it shows.
    file: Range<usize>,
    /// Where it starts in miette's offsets.
    at: usize,
    /// Its first line (0-based).
    first_line: usize,
    /// What it shows.
    shown: String,
    /// Its parts, in order: the file's bytes they stand for, where they
    /// start in miette's offsets, and whether they are shown (else elided:
    /// [`ELISION`] stands for them).
    parts: Vec<Part>,
}

#[derive(Debug)]
struct Part {
    file: Range<usize>,
    at: usize,
    shown: bool,
}

/// The byte ranges of the line `line` (its newline included) to show: the
/// whole line if it is short, else slices around `points` (offsets in the
/// file) or its start, merged, at most [`SLICES`].
fn slices(text: &str, line: Range<usize>, points: &[usize]) -> Vec<Range<usize>> {
    if line.len() <= LONG_LINE {
        return vec![line];
    }
    let floor = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut on_line: Vec<usize> = points.iter().copied().filter(|p| line.contains(p)).collect();
    if on_line.is_empty() {
        on_line.push(line.start);
    }
    on_line.sort_unstable();
    for p in on_line {
        let r = floor(p.saturating_sub(BEFORE).max(line.start))..floor((p + AFTER).min(line.end));
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => {
                if out.len() == SLICES {
                    break;
                }
                out.push(r);
            }
        }
    }
    // The line's newline is shown (after an elision of the rest), so that
    // lines stay lines.
    if text[line.clone()].ends_with('\n') {
        match out.last_mut() {
            Some(last) if last.end + 1 >= line.end => last.end = line.end,
            _ => out.push(line.end - 1..line.end),
        }
    }
    out
}

impl Snippets {
    fn new(sources: &SourceMap, file: FileId, spans: impl Iterator<Item = Span>) -> Snippets {
        let f = sources.get(file);
        let spans: Vec<Span> = spans.collect();
        let points: Vec<usize> = spans
            .iter()
            .flat_map(|s| [s.start as usize, s.end.max(s.start) as usize])
            .map(|p| p.min(f.text.len()))
            .collect();
        let line = |offset: u32| f.line_col(offset).0 - 1;
        let mut groups: Vec<(usize, usize)> = spans
            .iter()
            .map(|s| (line(s.start), line(s.end.max(s.start))))
            .collect();
        groups.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (first, last) in groups {
            match merged.last_mut() {
                // Windows that would touch become one.
                Some((_, l)) if first <= *l + 2 * CONTEXT + 2 => *l = (*l).max(last),
                _ => merged.push((first, last)),
            }
        }
        let mut added = 0;
        let windows: Vec<Window> = merged
            .into_iter()
            .map(|(first, last)| {
                let first = first.saturating_sub(CONTEXT);
                let range = f.lines(first, last + CONTEXT);
                let at = range.start + added;
                let mut shown = String::new();
                let mut parts = Vec::new();
                let mut next = range.start;
                for line in f.text[range.clone()].split_inclusive('\n') {
                    let line_range = next..next + line.len();
                    next = line_range.end;
                    for slice in slices(&f.text, line_range, &points) {
                        if slice.start > parts.last().map_or(range.start, |p: &Part| p.file.end) {
                            let from = parts.last().map_or(range.start, |p: &Part| p.file.end);
                            parts.push(Part {
                                file: from..slice.start,
                                at: at + shown.len(),
                                shown: false,
                            });
                            shown.push_str(ELISION);
                        }
                        parts.push(Part {
                            file: slice.clone(),
                            at: at + shown.len(),
                            shown: true,
                        });
                        shown.push_str(&redact::shown(&f.text, slice, f.secrets()));
                    }
                }
                // Miette's offsets of what follows go on from the file's.
                added = (at + shown.len()).saturating_sub(range.end);
                Window {
                    file: range,
                    at,
                    first_line: first,
                    shown,
                    parts,
                }
            })
            .collect();
        // The secrets the windows show, which their offsets map through.
        let all = f.secrets();
        let secrets = windows
            .iter()
            .flat_map(|w: &Window| {
                let first = all.partition_point(|r| r.end <= w.file.start);
                all[first..].iter().take_while(|r| r.start < w.file.end).cloned()
            })
            .collect();
        Snippets {
            name: redact::escape_controls(&f.name).into_owned(),
            text: f.text.clone(),
            secrets,
            windows,
        }
    }

    /// Miette's offset of the file's `offset` (one that a window shows;
    /// in an elided part, where its [`ELISION`] starts).
    fn offset(&self, offset: usize) -> usize {
        let Some(w) = self
            .windows
            .iter()
            .find(|w| w.file.start <= offset && offset <= w.file.end)
        else {
            return offset;
        };
        let part = w
            .parts
            .iter()
            .find(|p| p.shown && p.file.start <= offset && offset <= p.file.end)
            .or_else(|| w.parts.iter().find(|p| p.file.start <= offset && offset <= p.file.end));
        match part {
            Some(p) if p.shown => p.at + redact::shown_width(&self.text, p.file.start..offset, &self.secrets),
            Some(p) => p.at,
            None => w.at,
        }
    }

    /// The bytes of the file that elisions hide on the line of miette's
    /// `at` before it, less the [`ELISION`] each is drawn as: what turns a
    /// column of the window into one of the file (miette's columns are
    /// bytes).
    fn hidden_before(&self, w: &Window, at: usize) -> usize {
        let local = at - w.at;
        let line_start = w.at + w.shown[..local].rfind('\n').map_or(0, |i| i + 1);
        w.parts
            .iter()
            .filter(|p| !p.shown && p.at >= line_start && p.at < at)
            .map(|p| p.file.len().saturating_sub(ELISION.len()))
            .sum()
    }

    /// A label at `span`, clamped to the file. A label at the very end of a
    /// file that ends with a newline ("the file ends here") moves onto that
    /// newline, so that it is drawn under the last line instead of on a line
    /// that does not exist.
    fn label(&self, span: Span, message: &str, primary: bool) -> LabeledSpan {
        let len = self.text.len();
        let mut start = (span.start as usize).min(len);
        let mut end = (span.end as usize).clamp(start, len);
        if start == len && start > 0 && self.text.ends_with('\n') {
            start = len - 1;
            end = len - 1;
        }
        let (start, end) = (self.offset(start), self.offset(end));
        let span = SourceSpan::new(start.into(), end.saturating_sub(start));
        let label = (!message.is_empty()).then(|| message.to_string());
        if primary {
            LabeledSpan::new_primary_with_span(label, span)
        } else {
            LabeledSpan::new_with_span(label, span)
        }
    }
}

impl miette::SourceCode for Snippets {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let at = span.offset();
        let w = self
            .windows
            .iter()
            .find(|w| w.at <= at && at + span.len() <= w.at + w.shown.len())
            .ok_or(MietteError::OutOfBounds)?;
        let local = SourceSpan::new((at - w.at).into(), span.len());
        let inner = w.shown.as_str().read_span(&local, before, after)?;
        // The column is the file's, past what elisions hid.
        let column = inner.column() + self.hidden_before(w, at);
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            SourceSpan::new((inner.span().offset() + w.at).into(), inner.span().len()),
            inner.line() + w.first_line,
            column,
            inner.line_count(),
        )))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.as_ref().map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().cloned()))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
    }
}
