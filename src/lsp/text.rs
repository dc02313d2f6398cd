//! Text as the protocol sees it: positions are (line, UTF-16 code unit)
//! pairs, the compiler's spans are byte offsets. [`LineIndex`] converts
//! both ways and clamps whatever a client sends (a line past the end, a
//! character past the end of its line or inside a surrogate pair, a range
//! whose end is before its start) to a valid place, never panicking.
//! Also file paths ↔ `file://` URIs.

use lsp_types::{Position, Range};

/// Line starts of one text, for offset ↔ position.
#[derive(Clone, Debug)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
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
        }
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
        let character: usize = text[start..offset].chars().map(char::len_utf16).sum();
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
        self.units += self.text[self.byte..offset].chars().map(char::len_utf16).sum::<usize>();
        self.byte = offset;
        Position::new(line as u32, self.units as u32)
    }
}

/// A `file://` URI's path (percent-decoded), or `None` for other schemes.
pub fn uri_to_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("file://")?;
    // `file://host/path` is not a local file; `file:///path` is.
    let path = if rest.starts_with('/') { rest } else { return None };
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
    }
}
