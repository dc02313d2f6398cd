//! Source files, spans and line/column lookup. Every diagnostic points into
//! a [`SourceMap`] through a [`Span`]: a file and a byte range.

use crate::redact;
use std::ops::Range;
use std::sync::Arc;

/// Index of a file in its [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A byte range in one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// A value with the span it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

/// One loaded file: the name it is shown under and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as given (command line) or as resolved from an import.
    pub name: String,
    pub text: Arc<str>,
    /// Byte offset of the start of each line.
    line_starts: Vec<u32>,
    /// Where the text holds secrets ([`redact::secret_ranges`]), sorted.
    secrets: Vec<Range<usize>>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> SourceFile {
        let text: Arc<str> = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i as u32 + 1),
        );
        let secrets = redact::secret_ranges(&text);
        SourceFile {
            name: name.into(),
            text,
            line_starts,
            secrets,
        }
    }

    /// Where the text holds secrets, sorted: what a snippet masks
    /// ([`redact::shown`]).
    pub fn secrets(&self) -> &[Range<usize>] {
        &self.secrets
    }

    /// The byte range of the 0-based lines `first..=last` (clamped),
    /// line endings included.
    pub fn lines(&self, first: usize, last: usize) -> Range<usize> {
        let n = self.line_starts.len();
        let start = self.line_starts[first.min(n - 1)] as usize;
        let end = self
            .line_starts
            .get(last.saturating_add(1))
            .map_or(self.text.len(), |&s| s as usize);
        start..end.max(start)
    }

    /// The text at `span`, and the same with its secrets masked with `*`
    /// (byte for byte).
    pub fn masked(&self, span: Span) -> (String, String) {
        let (start, end) = (span.start as usize, span.end as usize);
        let Some(text) = self.text.get(start..end) else {
            return (String::new(), String::new());
        };
        let mut masked = text.as_bytes().to_vec();
        let first = self.secrets.partition_point(|r| r.end <= start);
        for r in self.secrets[first..].iter().take_while(|r| r.start < end) {
            for b in &mut masked[r.start.max(start) - start..r.end.min(end) - start] {
                *b = b'*';
            }
        }
        // A secret range ends on character boundaries, but a span may cut
        // one: anything not UTF-8 left is shown masked.
        let masked = String::from_utf8(masked).unwrap_or_else(|_| "*".repeat(text.len()));
        (text.to_string(), masked)
    }

    /// The secrets written on the lines `span` covers (what a message
    /// quoting the text at `span` could repeat).
    pub fn secrets_near(&self, span: Span) -> impl Iterator<Item = &str> {
        let first = self.line_col(span.start).0 - 1;
        let last = self.line_col(span.end).0;
        let from = self.line_starts[first] as usize;
        let to = self.line_starts.get(last).map_or(self.text.len(), |&s| s as usize);
        let i = self.secrets.partition_point(|r| r.end <= from);
        self.secrets[i..]
            .iter()
            .take_while(move |r| r.start < to)
            .filter_map(|r| self.text.get(r.clone()))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (usize, usize) {
        let offset = offset.min(self.text.len() as u32);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line] as usize;
        let mut end = offset as usize;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        (line + 1, self.text[start..end].chars().count() + 1)
    }
}

/// All files of one compilation (the root and its imports).
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(self.files.len() as u32 - 1)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, f)| (FileId(i as u32), f))
    }

    /// The text a span covers.
    pub fn text(&self, span: Span) -> &str {
        let file = self.get(span.file);
        file.text.get(span.start as usize..span.end as usize).unwrap_or("")
    }

    pub fn line_col(&self, span: Span) -> (usize, usize) {
        self.get(span.file).line_col(span.start)
    }
}
