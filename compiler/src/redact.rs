//! What no output may show: secrets written in the configuration and
//! control characters from it. [`secret_ranges`] finds, in a file's text,
//! the values of `secret` and `keys` written inline and the passwords of
//! URLs (`redis://user:PASSWORD@host`); [`shown`] is text as snippets
//! draw it, those ranges masked with `*` and control characters escaped;
//! [`redact_url`] and [`escape_controls`] clean a string for a message or a
//! log. The scan is lexical, not a parse, so it holds for text that does not
//! parse too.

use std::borrow::Cow;
use std::ops::Range;

/// The words whose values are secrets when written inline.
const SECRET_WORDS: [&str; 2] = ["secret", "keys"];

/// Byte ranges of `text` that hold secrets, sorted and disjoint: the content
/// of each string (or the bare word) after `secret` or `keys` on the same
/// line (`keys "a", "b"` continues after each comma), except `env(...)` and
/// `file(...)`; and, in any string, a URL's password (`user:PASSWORD@`, or
/// the whole user part when it has no `:`). Comments are skipped.
pub fn secret_ranges(text: &str) -> Vec<Range<usize>> {
    // Most files hold none: a fast search says so without the scan.
    if !SECRET_WORDS.iter().any(|w| text.contains(w)) && !text.contains("://") {
        return Vec::new();
    }
    let b = text.as_bytes();
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => i = line_end(b, i),
            b'"' => {
                let end = string_end(b, i);
                url_password(text, content(b, i, end), &mut out);
                i = end;
            }
            c if is_word_start(c) && (i == 0 || !is_word(b[i - 1])) => {
                let mut j = i;
                while j < b.len() && is_word(b[j]) {
                    j += 1;
                }
                if SECRET_WORDS.contains(&&text[i..j]) {
                    j = secret_values(text, j, &mut out);
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out.sort_by_key(|r| r.start);
    out.dedup_by(|b, a| b.start < a.end);
    out
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/')
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| from + p)
}

/// Just past the string opened at `open`: after its closing quote, or at
/// the end of its line when it has none.
fn string_end(b: &[u8], open: usize) -> usize {
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            // An escape: the backslash and the whole character after it.
            b'\\' if j + 1 < b.len() && b[j + 1] != b'\n' => j += 1 + utf8_len(b[j + 1]),
            b'"' => return j + 1,
            b'\n' => return j,
            _ => j += 1,
        }
    }
    b.len()
}

/// The bytes a UTF-8 character takes, from its first byte.
fn utf8_len(first: u8) -> usize {
    match first {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

/// The content of the string opened at `open` that ends at `end` (from
/// [`string_end`]): without its quotes.
fn content(b: &[u8], open: usize, end: usize) -> Range<usize> {
    let end = end.min(b.len());
    let stop = if end > open + 1 && b[end - 1] == b'"' {
        end - 1
    } else {
        end
    };
    open + 1..stop.max(open + 1)
}

/// The values after a secret word at `from` (same line; after a comma, the
/// next may be on the next line). Returns where scanning goes on.
fn secret_values(text: &str, mut i: usize, out: &mut Vec<Range<usize>>) -> usize {
    let b = text.as_bytes();
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        let Some(&c) = b.get(i) else { return i };
        if c == b'"' {
            let end = string_end(b, i);
            let inside = content(b, i, end);
            if !inside.is_empty() {
                out.push(inside);
            }
            i = end;
        } else if is_word_start(c) || c.is_ascii_digit() || !b" \t\r\n;,{}()[]#\"".contains(&c) {
            let start = i;
            while i < b.len() && !b" \t\r\n;,{}()[]#\"".contains(&b[i]) {
                i += 1;
            }
            if b.get(i) == Some(&b'(') {
                return start; // env("..."), file("..."): a reference, not a secret
            }
            out.push(start..i);
        } else {
            return i;
        }
        // Another value after a comma.
        let mut j = i;
        while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\r') {
            j += 1;
        }
        if b.get(j) != Some(&b',') {
            return i;
        }
        i = j + 1;
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
    }
}

/// The password (or bare user part) of a URL in `text[range]`.
fn url_password(text: &str, range: Range<usize>, out: &mut Vec<Range<usize>>) {
    let start = range.start;
    if let Some(r) = text.get(range).and_then(userinfo_secret) {
        out.push(start + r.start..start + r.end);
    }
}

/// In `s`, the range of a URL's password: after `user:` and before `@` in
/// the authority, or the whole user part when it has no `:`.
fn userinfo_secret(s: &str) -> Option<Range<usize>> {
    let scheme_end = s.find("://")? + 3;
    let rest = &s[scheme_end..];
    let authority_end = rest.find(['/', '?', '#', ' ', '`', '"']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let userinfo = &rest[..at];
    let secret_start = userinfo.find(':').map_or(0, |c| c + 1);
    (secret_start < at).then(|| scheme_end + secret_start..scheme_end + at)
}

/// `s` with the password of each URL in it replaced by `<redacted>`
/// (`redis://user:<redacted>@host`; a user part without `:` is replaced
/// whole), for plans, logs and messages. Borrowed when there is none.
pub fn redact_url(s: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut from = 0;
    while let Some(r) = userinfo_secret(&s[from..]) {
        let o = out.get_or_insert_with(String::new);
        o.push_str(&s[from..from + r.start]);
        o.push_str("<redacted>");
        from += r.end;
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut o) => {
            o.push_str(&s[from..]);
            Cow::Owned(o)
        }
    }
}

/// Whether a character must not reach a terminal as it is: C0 controls
/// other than tab and newline (ESC, BEL, NUL, backspace, ...), DEL and C1
/// controls (U+0080..U+009F; U+009B is a CSI on some terminals).
fn is_control(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// `s` with control characters escaped as Rust writes them (`\u{1b}`,
/// `\r`, `\0`); a newline is kept. Borrowed when there is none.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether the character at `i` of `text` is shown escaped (a CR before a
/// newline is a line ending, kept).
fn escaped_at(text: &str, i: usize, c: char) -> bool {
    is_control(c) && !(c == '\r' && text.as_bytes().get(i + 1) == Some(&b'\n'))
}

/// `text[range]` as a snippet shows it: the bytes of `secrets` (sorted
/// ranges of `text`) masked with `*` byte for byte, control characters
/// escaped (`\u{1b}`). Escapes are longer than what they stand for:
/// [`shown_width`] maps offsets.
pub fn shown(text: &str, range: Range<usize>, secrets: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(range.len());
    let first = secrets.partition_point(|r| r.end <= range.start);
    let mut next = secrets[first..].iter().peekable();
    let Some(part) = text.get(range.clone()) else {
        return out;
    };
    for (k, c) in part.char_indices() {
        let i = range.start + k;
        while next.peek().is_some_and(|r| r.end <= i) {
            next.next();
        }
        if next.peek().is_some_and(|r| r.start <= i) {
            out.extend(std::iter::repeat_n('*', c.len_utf8()));
        } else if escaped_at(text, i, c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The length [`shown`] gives `text[range]` (so `range.start + ` ...
/// what an offset of the file becomes in a snippet starting at
/// `range.start`).
pub fn shown_width(text: &str, range: Range<usize>, secrets: &[Range<usize>]) -> usize {
    let Some(part) = text.get(range.clone()) else {
        return range.len();
    };
    let first = secrets.partition_point(|r| r.end <= range.start);
    let mut next = secrets[first..].iter().peekable();
    let mut width = part.len();
    for (k, c) in part.char_indices().filter(|(_, c)| is_control(*c)) {
        let i = range.start + k;
        while next.peek().is_some_and(|r| r.end <= i) {
            next.next();
        }
        if next.peek().is_none_or(|r| r.start > i) && escaped_at(text, i, c) {
            width += c.escape_debug().len() - c.len_utf8();
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(text: &str) -> Vec<&str> {
        secret_ranges(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn inline_secrets_and_keys_are_found() {
        assert_eq!(secrets(r#"  secret "s3cr3t-value""#), ["s3cr3t-value"]);
        assert_eq!(secrets("secret s3cr3t"), ["s3cr3t"]);
        assert_eq!(secrets(r#"keys "k-1 a", "k-2","#), ["k-1 a", "k-2"]);
        assert_eq!(secrets("keys \"k-1\",\n     \"k-2\"\n"), ["k-1", "k-2"]);
        assert_eq!(secrets(r#"secret "unterminated"#), ["unterminated"]);
        assert_eq!(secrets(r#"secret "a\"b" issuer "x""#), [r#"a\"b"#]);
    }

    #[test]
    fn references_names_and_comments_are_not_secrets() {
        assert!(secrets(r#"secret env("JWT_SECRET") keys file("k.txt")"#).is_empty());
        assert!(secrets("upstream keys { server 1.2.3.4:80 }\nroute /x -> keys\nroute /y -> app").is_empty());
        assert!(secrets("# secret \"in a comment\"\nsecrets \"x\" mysecret \"y\"").is_empty());
    }

    #[test]
    fn url_passwords_are_found_in_any_string() {
        assert_eq!(secrets(r#"store s redis "redis://u:pa55@h:6379/0""#), ["pa55"]);
        assert_eq!(secrets(r#"jwks url "https://token@auth.example.com/jwks""#), ["token"]);
        assert!(secrets(r#"store s redis "redis://h:6379""#).is_empty());
        assert!(secrets(r#"redirect "https://example.com/@user""#).is_empty());
    }

    #[test]
    fn any_text_is_scanned_without_panicking() {
        let pieces = [
            "secret", "keys", " ", "\"", "\\", "é", "\u{1b}", "\n", ",", "redis://", "u:", "@", "#", "env(", "x", "\r",
        ];
        // Every string of up to four pieces, every part of each.
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for t in &texts {
                for p in pieces {
                    next.push(format!("{t}{p}"));
                }
            }
            texts.extend(next);
        }
        for t in &texts {
            let ranges = secret_ranges(t);
            for r in &ranges {
                assert!(t.get(r.clone()).is_some(), "{t:?}: {r:?}");
            }
            for (i, _) in t.char_indices() {
                let shown_part = shown(t, i..t.len(), &ranges);
                assert_eq!(shown_part.len(), shown_width(t, i..t.len(), &ranges), "{t:?}");
            }
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://u:pw@h:1/2"), "redis://u:<redacted>@h:1/2");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:<redacted>@h");
        assert_eq!(redact_url("https://tok@h/x"), "https://<redacted>@h/x");
        assert_eq!(
            redact_url("a `redis://u:p@h` and `redis://v:q@i`"),
            "a `redis://u:<redacted>@h` and `redis://v:<redacted>@i`"
        );
        assert!(matches!(redact_url("redis://h:6379"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape_controls("a\u{1b}[2Jb\u{7}\0\r\n"), "a\\u{1b}[2Jb\\u{7}\\0\\r\n");
        assert_eq!(escape_controls("x\u{9b}y"), "x\\u{9b}y");
        assert!(matches!(escape_controls("plain\ttext\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn shown_text_masks_escapes_and_maps_offsets() {
        let text = "a \"\u{1b}\" secret \"pw\" \r\n z\r";
        let ranges = secret_ranges(text);
        let all = 0..text.len();
        let shown_all = shown(text, all.clone(), &ranges);
        assert_eq!(shown_all, "a \"\\u{1b}\" secret \"**\" \r\n z\\r");
        assert_eq!(shown_width(text, all, &ranges), shown_all.len());
        let z = text.find('z').unwrap();
        let at = shown_width(text, 0..z, &ranges);
        assert_eq!(&shown_all[at..at + 1], "z");
        let pw = text.find("pw").unwrap();
        let at = shown_width(text, 0..pw, &ranges);
        assert_eq!(&shown_all[at..at + 2], "**");
        // Part of the text: masks and escapes hold from where it starts.
        let from = text.find("secret").unwrap();
        assert_eq!(shown(text, from..text.len(), &ranges), "secret \"**\" \r\n z\\r");
    }
}
