//! Text rendering of compiler diagnostics, like rustc's: [`Report`] adapts a
//! [`gw_compiler::Diagnostic`] and its [`SourceMap`] to [`miette::Diagnostic`]
//! and miette's graphical handler draws it. Labels in another file than the
//! primary label's (a duplicate first defined in an imported file) are shown
//! as related reports with their own source, never dropped. What is drawn
//! is the diagnostic [redacted](Diagnostic::redacted), over [`Snippets`]:
//! only the lines around its labels, secrets masked and control characters
//! escaped ([`gw_compiler::redact::shown`]), so that no secret and no
//! terminal escape reaches the output, and a diagnostic in a large file
//! costs the lines it shows.

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
}

impl Snippets {
    fn new(sources: &SourceMap, file: FileId, spans: impl Iterator<Item = Span>) -> Snippets {
        let f = sources.get(file);
        let line = |offset: u32| f.line_col(offset).0 - 1;
        let mut groups: Vec<(usize, usize)> = spans.map(|s| (line(s.start), line(s.end.max(s.start)))).collect();
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
                let shown = redact::shown(&f.text, range.clone(), f.secrets());
                let at = range.start + added;
                added += shown.len() - range.len();
                Window {
                    file: range,
                    at,
                    first_line: first,
                    shown,
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

    /// Miette's offset of the file's `offset` (one that a window shows).
    fn offset(&self, offset: usize) -> usize {
        match self
            .windows
            .iter()
            .find(|w| w.file.start <= offset && offset <= w.file.end)
        {
            Some(w) => w.at + redact::shown_width(&self.text, w.file.start..offset, &self.secrets),
            None => offset,
        }
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
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            SourceSpan::new((inner.span().offset() + w.at).into(), inner.span().len()),
            inner.line() + w.first_line,
            inner.column(),
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
