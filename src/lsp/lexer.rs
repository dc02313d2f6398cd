//! A tolerant lexer of `.gw` text: words, strings, comments and
//! punctuation, for any text — half-typed, unbalanced, not parsing at all.
//! Completion, hover and folding read the text being edited with it (the
//! parse tree is only there when the file parses); it is linear and never
//! fails.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lex {
    /// A name, keyword, reference, method or other bare word.
    Word,
    /// Starts with a digit: a number, duration, size, rate, address...
    Number,
    /// Starts with `/`: a path (with its `{param}`s).
    Path,
    /// `"..."`, possibly left open at the end of its line.
    Str,
    Comment,
    Open,
    Close,
    /// `(` `)` `[` `]` `,` `;`
    Punct,
    /// `->`, `==`, `!=`
    Operator,
}

#[derive(Clone, Copy, Debug)]
pub struct Token {
    pub kind: Lex,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.start..self.end).unwrap_or("")
    }
}

fn delimiter(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'}' | b'(' | b')' | b'[' | b']' | b',' | b';' | b'"' | b'#'
    )
}

/// Every token of `text`, in order.
pub fn lex(text: &str) -> Vec<Token> {
    lex_from(text, 0)
}

/// The tokens of `text` from byte `from` on (offsets in `text`).
pub fn lex_from(text: &str, from: usize) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = from.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
                Lex::Comment
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' && bytes.get(i + 1).is_some_and(|b| *b != b'\n') {
                        2
                    } else {
                        1
                    };
                }
                if bytes.get(i) == Some(&b'"') {
                    i += 1;
                }
                Lex::Str
            }
            b'{' => {
                i += 1;
                Lex::Open
            }
            b'}' => {
                i += 1;
                Lex::Close
            }
            b'-' if bytes.get(i + 1) == Some(&b'>') => {
                i += 2;
                Lex::Operator
            }
            b'=' | b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Lex::Operator
            }
            b'[' if ipv6(&text[i..]) > 0 => {
                i += ipv6(&text[i..]);
                Lex::Number
            }
            b'(' | b')' | b'[' | b']' | b',' | b';' => {
                i += 1;
                Lex::Punct
            }
            b'/' => {
                // A path keeps its `{param}` and `{*rest}` groups.
                while i < bytes.len() {
                    match bytes[i] {
                        // (A parameter's name is short: look no further than 256 bytes.)
                        b'{' => match bytes[i..]
                            .iter()
                            .take(256)
                            .position(|b| *b == b'}' || b.is_ascii_whitespace())
                        {
                            Some(n) if bytes[i + n] == b'}' => i += n + 1,
                            _ => break,
                        },
                        b if delimiter(b) => break,
                        _ => i += 1,
                    }
                }
                Lex::Path
            }
            _ => {
                while i < bytes.len() && !delimiter(bytes[i]) && !bytes[i..].starts_with(b"->") {
                    i += 1;
                }
                // A word is at least one byte (a lone `-` or `=`).
                if i == start {
                    i += 1;
                }
                if c.is_ascii_digit() || c == b':' {
                    Lex::Number
                } else {
                    Lex::Word
                }
            }
        };
        // Never split a character.
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
        out.push(Token { kind, start, end: i });
    }
    out
}

/// The start of the top-level declaration around `offset`: the last line,
/// up to the cursor's, that starts (at its first column) with a declaration
/// keyword. Strings and comments never span lines, so what comes before
/// such a line does not change how the rest is read — except a block left
/// open above it, which a file laid out by `gwc fmt` does not have (its
/// nested lines are indented). Reading from there keeps completion and hover
/// fast in files of any size.
pub fn declaration_start(text: &str, offset: usize) -> usize {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    loop {
        let line_start = text[..end].rfind('\n').map_or(0, |n| n + 1);
        let word: &str = text[line_start..]
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        let after = text.as_bytes().get(line_start + word.len()).copied();
        let keyword = gw_compiler::schema::lookup(gw_compiler::schema::Context::Top, word).is_some();
        if keyword && after.is_none_or(|b| b.is_ascii_whitespace() || b == b'{') {
            return line_start;
        }
        if line_start == 0 {
            return 0;
        }
        end = line_start - 1;
    }
}

/// The length of `[v6]:port` at the start of `s`, or 0.
fn ipv6(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_hexdigit() || b[i] == b':' || b[i] == b'.') {
        i += 1;
    }
    if i == 1 || b.get(i) != Some(&b']') || b.get(i + 1) != Some(&b':') {
        return 0;
    }
    i += 2;
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        0
    } else {
        i + digits
    }
}

/// The index of the token containing or ending at `offset`, preferring one
/// that contains it.
pub fn at(tokens: &[Token], offset: usize) -> Option<usize> {
    let i = tokens.partition_point(|t| t.end < offset);
    let t = tokens.get(i)?;
    (t.start <= offset && offset <= t.end).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Lex, &str)> {
        lex(text).iter().map(|t| (t.kind, t.text(text))).collect()
    }

    #[test]
    fn tokens_of_a_route() {
        assert_eq!(
            kinds("route GET /u/{id} -> app { set request header x \"{claim.sub}\" } # c"),
            vec![
                (Lex::Word, "route"),
                (Lex::Word, "GET"),
                (Lex::Path, "/u/{id}"),
                (Lex::Operator, "->"),
                (Lex::Word, "app"),
                (Lex::Open, "{"),
                (Lex::Word, "set"),
                (Lex::Word, "request"),
                (Lex::Word, "header"),
                (Lex::Word, "x"),
                (Lex::Str, "\"{claim.sub}\""),
                (Lex::Close, "}"),
                (Lex::Comment, "# c"),
            ]
        );
        assert_eq!(kinds("server [::1]:80 env(\"X\")")[1], (Lex::Number, "[::1]:80"));
        assert_eq!(kinds("\"open\nx")[0], (Lex::Str, "\"open"));
        let text = "upstream a {\n  server 1.2.3.4:80\n}\nroute /x {\n  auth b\n}\n";
        assert_eq!(
            declaration_start(text, text.find("auth").unwrap()),
            text.find("route").unwrap()
        );
        assert_eq!(declaration_start(text, text.find("server").unwrap()), 0);
        let from = declaration_start(text, text.len());
        assert_eq!(lex_from(text, from)[0].text(text), "route");
    }

    #[test]
    fn any_text_lexes() {
        let long = format!("/{}", "{".repeat(100_000));
        for text in ["", "-", "é", "{{}}", "\"\\", "/{", "[::", "a->b", "\u{feff}x", &long] {
            let tokens = lex(text);
            for t in &tokens {
                assert!(
                    t.start < t.end && text.is_char_boundary(t.start) && text.is_char_boundary(t.end),
                    "{text:?}"
                );
            }
        }
    }
}
