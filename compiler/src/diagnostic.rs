//! Renderer-neutral diagnostics. Every problem the compiler finds becomes one
//! [`Diagnostic`]: a stable [`Code`], a lower-case message naming the thing in
//! backticks, labelled spans (the first is primary) and an optional help line.
//! `gwc` renders them as text (miette) or JSON.

use crate::codes::Code;
use crate::source::{SourceMap, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A span with a short note. The primary label says what is wrong; secondary
/// labels point at related places ("first defined here").
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic of `code` with the code's own severity.
    pub fn new(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    /// Adds the primary label.
    pub fn primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.insert(
            0,
            Label {
                span,
                message: message.into(),
                primary: true,
            },
        );
        self
    }

    /// Adds a secondary label.
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the help line only if there is one.
    pub fn maybe_help(mut self, help: Option<String>) -> Diagnostic {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// The primary span (every diagnostic the compiler makes has one).
    pub fn span(&self) -> Option<Span> {
        self.labels
            .iter()
            .find(|l| l.primary)
            .or(self.labels.first())
            .map(|l| l.span)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// This diagnostic as it may be shown: in its message, labels and help,
    /// secrets written where it points are masked (a message such as "found
    /// `...`" quotes the text at its label), every URL's password is
    /// redacted, and control characters are escaped. Renderers show this,
    /// never the diagnostic as made.
    pub fn redacted(&self, sources: &SourceMap) -> Diagnostic {
        // (text as written, text masked) pairs to replace, longest first.
        let mut masks: Vec<(String, String)> = Vec::new();
        for l in &self.labels {
            let file = sources.get(l.span.file);
            // The label's own text, which messages quote.
            let (quoted, masked) = file.masked(l.span);
            if quoted != masked {
                let inner = |s: &str| s.trim_matches('"').to_string();
                masks.push((inner(&quoted), inner(&masked)));
                masks.push((quoted, masked));
            }
            // Secrets written on its lines, wherever a message repeats them
            // (only those long enough not to match words by chance).
            for secret in file.secrets_near(l.span).filter(|s| s.len() >= 4) {
                masks.push((secret.to_string(), "*".repeat(secret.len())));
            }
        }
        masks.retain(|(from, _)| !from.is_empty());
        masks.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        let clean = |s: &str| {
            let mut s = crate::redact::redact_url(s).into_owned();
            for (from, to) in &masks {
                if s.contains(from.as_str()) {
                    s = s.replace(from.as_str(), to);
                }
            }
            crate::redact::escape_controls(&s).into_owned()
        };
        Diagnostic {
            code: self.code,
            severity: self.severity,
            message: clean(&self.message),
            labels: self
                .labels
                .iter()
                .map(|l| Label {
                    message: clean(&l.message),
                    ..l.clone()
                })
                .collect(),
            help: self.help.as_deref().map(clean),
        }
    }

    /// The JSON object of `gwc check --format json` (1-based line and
    /// column), [redacted](Diagnostic::redacted).
    pub fn to_json(&self, sources: &SourceMap) -> serde_json::Value {
        let redacted = self.redacted(sources);
        let this = &redacted;
        let place = |span: Span| {
            let (line, column) = sources.line_col(span);
            (sources.get(span.file).name.clone(), line, column)
        };
        let labels: Vec<_> = self
            .labels
            .iter()
            .map(|l| {
                let (file, line, column) = place(l.span);
                let (end_line, end_column) = sources.get(l.span.file).line_col(l.span.end);
                serde_json::json!({
                    "message": l.message,
                    "primary": l.primary,
                    "file": file,
                    "line": line,
                    "column": column,
                    "end_line": end_line,
                    "end_column": end_column,
                })
            })
            .collect();
        let (file, line, column) = match this.span() {
            Some(span) => {
                let (f, l, c) = place(span);
                (serde_json::Value::String(f), l, c)
            }
            None => (serde_json::Value::Null, 0, 0),
        };
        serde_json::json!({
            "code": this.code.as_str(),
            "severity": this.severity.as_str(),
            "message": this.message,
            "file": file,
            "line": line,
            "column": column,
            "labels": labels,
            "help": this.help,
        })
    }
}

/// Where diagnostics are collected during a compilation.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.list.iter()
    }

    /// The most recent diagnostic whose primary span is `span`, to say more
    /// in it rather than add a knock-on one.
    pub fn last_at_mut(&mut self, span: Span) -> Option<&mut Diagnostic> {
        self.list.iter_mut().rev().find(|d| d.span() == Some(span))
    }

    /// Sorted by position (file, then offset), errors before warnings at the
    /// same place; exact duplicates removed.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by(|a, b| {
            let key = |d: &Diagnostic| (d.span().unwrap_or_default(), d.severity, d.code);
            key(a).cmp(&key(b))
        });
        self.list.dedup();
        self.list
    }
}

/// The closest of `candidates` to `name` by edit distance, if close enough to
/// be a plausible typo ("did you mean `login`?").
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let max = (name.chars().count().max(3) / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for [`Diagnostic::maybe_help`].
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    suggest(name, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
