//! Text as the protocol sees it: positions are (line, UTF-16 code unit)
//! pairs, the compiler's spans are byte offsets. [`LineIndex`] converts
//! both ways and clamps whatever a client sends (a line past the end, a
//! character past the end of its line or inside a surrogate pair, a range
//! whose end is before its start) to a valid place, never panicking.
//! Also file paths ↔ `file://` URIs, and the key a document is known by
//! whichever way its client spells its URI, symlinks resolved ([`doc_key`]).

use lsp_types::{Position, Range};

/// Line starts of one text, for offset ↔ position: built once per text
/// (and kept up to date through a document's edits by [`LineIndex::edit`]),
/// never per request. In an ASCII text a column is a byte count, so
/// conversions cost a binary search, not a scan of the line.
#[derive(Clone, Debug)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
    /// Whether the text is ASCII (UTF-16 columns are byte columns).
    ascii: bool,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            starts,
            len: text.len(),
            ascii: text.is_ascii(),
        }
    }

    /// The index of the text after `start..end` (byte offsets of the text
    /// indexed, on character boundaries, `start <= end`) was replaced with
    /// `inserted`: the line starts of the replaced part go, those after it
    /// move, those of `inserted` come in — a scan of the edit, not of the
    /// whole text. (After an edit that removes the last non-ASCII
    /// character, columns are still counted, as they were.)
    pub fn edit(&mut self, start: usize, end: usize, inserted: &str) {
        let end = end.min(self.len);
        let start = start.min(end);
        let lo = self.starts.partition_point(|&s| s <= start);
        let hi = self.starts.partition_point(|&s| s <= end);
        for s in &mut self.starts[hi..] {
            *s = *s - end + start + inserted.len();
        }
        let new = inserted
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| start + i + 1);
        self.starts.splice(lo..hi, new);
        self.len = self.len - (end - start) + inserted.len();
        self.ascii &= inserted.is_ascii();
    }

    /// The position of byte `offset` (clamped to the text, moved back to a
    /// character boundary).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let mut offset = offset.min(self.len).min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.starts[line];
        let character: usize = if self.ascii {
            offset - start
        } else {
            text[start..offset].chars().map(char::len_utf16).sum()
        };
        Position::new(line as u32, character as u32)
    }

    /// The byte offset of a position, clamped: past the last line is the end
    /// of the text, past the end of a line is the end of that line (before
    /// its newline), inside a character is before it.
    pub fn offset(&self, text: &str, position: Position) -> usize {
        let line = position.line as usize;
        let Some(&start) = self.starts.get(line) else {
            return text.len();
        };
        let end = self.starts.get(line + 1).map_or(text.len(), |next| next - 1);
        if self.ascii {
            return (start + position.character as usize).min(end).min(text.len());
        }
        let line_text = text.get(start..end).unwrap_or("");
        let mut units = 0usize;
        for (i, c) in line_text.char_indices() {
            if units + c.len_utf16() > position.character as usize {
                return start + i;
            }
            units += c.len_utf16();
        }
        end.min(text.len())
    }

    /// The line of byte `offset` (no column: no scan of the line).
    pub fn line(&self, offset: usize) -> u32 {
        match self.starts.binary_search(&offset.min(self.len)) {
            Ok(i) => i as u32,
            Err(i) => (i - 1) as u32,
        }
    }

    /// Positions of increasing offsets, each found from the previous one
    /// (so a long line is scanned once, not once per token).
    pub fn walker<'a>(&'a self, text: &'a str) -> Walker<'a> {
        Walker {
            index: self,
            text,
            line: 0,
            byte: 0,
            units: 0,
        }
    }

    pub fn range(&self, text: &str, start: usize, end: usize) -> Range {
        Range::new(self.position(text, start), self.position(text, end))
    }

    /// A protocol range as byte offsets, start ≤ end.
    pub fn offsets(&self, text: &str, range: Range) -> (usize, usize) {
        let a = self.offset(text, range.start);
        let b = self.offset(text, range.end);
        (a.min(b), a.max(b))
    }
}

/// See [`LineIndex::walker`].
pub struct Walker<'a> {
    index: &'a LineIndex,
    text: &'a str,
    line: usize,
    /// A byte offset on `line` and its UTF-16 column.
    byte: usize,
    units: usize,
}

impl Walker<'_> {
    pub fn position(&mut self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.index.line(offset) as usize;
        if line != self.line || offset < self.byte {
            self.line = line;
            self.byte = self.index.starts[line];
            self.units = 0;
        }
        self.units += if self.index.ascii {
            offset - self.byte
        } else {
            self.text[self.byte..offset].chars().map(char::len_utf16).sum::<usize>()
        };
        self.byte = offset;
        Position::new(line as u32, self.units as u32)
    }
}

/// A `file://` URI's path (percent-decoded), or `None` for other schemes.
pub fn uri_to_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("file://")?;
    // `file://host/path` is not a local file; `file:///path` and
    // `file://localhost/path` are (RFC 8089).
    let rest = rest
        .strip_prefix("localhost")
        .filter(|r| r.starts_with('/'))
        .unwrap_or(rest);
    let path = if rest.starts_with('/') { rest } else { return None };
    // A query or fragment is not part of the path.
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The name a document is read as by the compiler: for a `file:` URI, its
/// path, percent-decoded, with `.` and `..` folded and a Windows drive
/// letter lower-cased (so `file:///a%2Bb/x.gw` and `file:///c/../a+b/x.gw`
/// are both `/a+b/x.gw`, the name the compiler gives the file when another
/// imports it). Any other URI is its own name.
pub fn doc_name(uri: &str) -> String {
    let Some(path) = uri_to_path(uri) else {
        return uri.to_string();
    };
    let mut name = gw_compiler::host::normalize(std::path::Path::new(&path));
    // `/C:/x` (VS Code writes `c%3A`, others `C:`): one drive letter case.
    let b = name.as_bytes();
    if b.len() >= 3 && b[0] == b'/' && b[1].is_ascii_alphabetic() && b[2] == b':' {
        name.replace_range(1..2, &name[1..2].to_ascii_lowercase());
    }
    name
}

/// The key of a document: its [`doc_name`] with symlinks resolved
/// ([`path_key`]), so that a file however its client spells its URI —
/// percent-encoded or not, through `..` or through a symlink — is one
/// document.
pub fn doc_key(uri: &str) -> String {
    path_key(&doc_name(uri))
}

/// The key of a file the compiler reads as `name`: its canonical path
/// (symlinks resolved) when it exists, else that of its folder joined with
/// its file name, else `name` itself (and any name that is not an absolute
/// path is its own key).
pub fn path_key(name: &str) -> String {
    let path = std::path::Path::new(name);
    if !path.is_absolute() {
        return name.to_string();
    }
    if let Some(real) = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
    {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(file)) => std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.join(file).to_str().map(str::to_string))
            .unwrap_or_else(|| name.to_string()),
        _ => name.to_string(),
    }
}

/// The `file://` URI of an absolute path.
pub fn path_to_uri(path: &str) -> String {
    let mut out = String::from("file://");
    if !path.starts_with('/') {
        out.push('/');
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index kept through edits is the index of the edited text, and
    /// converts positions as it does: for ASCII and non-ASCII texts, edits
    /// that add, remove and replace lines, at the start, middle and end,
    /// clamped ranges included.
    #[test]
    fn an_edited_index_is_the_index_of_the_edited_text() {
        let edits: &[(usize, usize, &str)] = &[
            (0, 0, "x\n"),
            (3, 9, ""),
            (5, 5, "\n\n\n"),
            (2, 14, "ab\ncd"),
            (0, 4, "é\n😀"),
            (7, 999, "tail\n"),
            (1, 1, ""),
            (0, 0, "\n"),
        ];
        for base in ["ab\ncd\nef\n\ngh ij\nkl", "ab\né😀x\nlast\n\n", ""] {
            let mut text = base.to_string();
            let mut index = LineIndex::new(&text);
            for &(a, b, new) in edits {
                let at = |i: usize| {
                    let mut i = i.min(text.len());
                    while !text.is_char_boundary(i) {
                        i -= 1;
                    }
                    i
                };
                let (a, b) = (at(a), at(b.max(a)));
                text.replace_range(a..b, new);
                index.edit(a, b, new);
                let fresh = LineIndex::new(&text);
                assert_eq!(index.starts, fresh.starts, "{text:?}");
                assert_eq!(index.len, fresh.len);
                for offset in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
                    let p = index.position(&text, offset);
                    assert_eq!(p, fresh.position(&text, offset), "{text:?} {offset}");
                    assert_eq!(index.offset(&text, p), offset, "{text:?} {p:?}");
                }
                for line in 0..4 {
                    for character in [0, 1, 2, 3, 99] {
                        let p = Position::new(line, character);
                        assert_eq!(index.offset(&text, p), fresh.offset(&text, p), "{text:?} {p:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn positions_count_utf16_and_clamp() {
        let text = "ab\né😀x\nlast";
        let index = LineIndex::new(text);
        assert_eq!(index.position(text, 4), Position::new(1, 0)); // inside é: back to its start... é starts at 3
        let x = text.find('x').unwrap();
        assert_eq!(index.position(text, x), Position::new(1, 3));
        assert_eq!(index.offset(text, Position::new(1, 3)), x);
        // Inside the surrogate pair: before the emoji.
        assert_eq!(index.offset(text, Position::new(1, 2)), text.find('😀').unwrap());
        // Past the end of a line, of the text.
        assert_eq!(index.offset(text, Position::new(0, 99)), 2);
        assert_eq!(index.offset(text, Position::new(99, 0)), text.len());
        assert_eq!(
            index.offsets(text, Range::new(Position::new(1, 0), Position::new(0, 1))),
            (1, 3)
        );
    }

    #[test]
    fn file_uris_round_trip() {
        for path in ["/a/b.gw", "/with space/é.gw", "/100%/x#y.gw"] {
            assert_eq!(uri_to_path(&path_to_uri(path)).as_deref(), Some(path));
        }
        assert_eq!(uri_to_path("untitled:Untitled-1"), None);
        assert_eq!(uri_to_path("file://server/share/a.gw"), None);
        assert_eq!(uri_to_path("file://localhost/a/b.gw").as_deref(), Some("/a/b.gw"));
    }

    #[test]
    fn one_document_whichever_way_its_uri_is_spelt() {
        let key = "/tmp/a+b/x@y (1).gw";
        for uri in [
            "file:///tmp/a+b/x@y%20(1).gw",
            "file:///tmp/a%2Bb/x%40y%20%281%29.gw",
            "file:///tmp/a%2bb/x@y%20(1).gw",
            "file:///tmp/./c/../a+b//x@y%20(1).gw",
            "file://localhost/tmp/a+b/x@y%20(1).gw",
        ] {
            assert_eq!(doc_name(uri), key, "{uri}");
        }
        assert_eq!(doc_name(&path_to_uri(key)), key);
        assert_eq!(doc_name("file:///c%3A/Users/x.gw"), "/c:/Users/x.gw");
        assert_eq!(doc_name("file:///C:/Users/x.gw"), "/c:/Users/x.gw");
        assert_eq!(doc_key("untitled:Untitled-1"), "untitled:Untitled-1");
        // Malformed escapes are kept as written, never a panic.
        assert_eq!(doc_name("file:///a%zz/%"), "/a%zz/%");
        assert_eq!(
            doc_key("file:///nonexistent-gw-dir/%zz/x.gw"),
            "/nonexistent-gw-dir/%zz/x.gw"
        );
    }
}
