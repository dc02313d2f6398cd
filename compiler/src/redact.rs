//! What no output may show: secrets written in the configuration and
//! control characters from it. [`secret_ranges`] finds, in a file's text,
//! the values of `secret` and `keys` written inline and the passwords of
//! URLs (`redis://user:PASSWORD@host`); [`shown`] is text as snippets
//! draw it, those ranges masked with `*` and control characters escaped;
//! [`redact_url`] and [`escape_controls`] clean a string for a message or a
//! log. The scan is lexical, not a parse, so it holds for text that does not
//! parse too; lowering adds what the parse tree shows
//! ([`crate::source::SourceFile::set_secrets`]).

use gw_plan::redact::{escape, url_secrets};
pub use gw_plan::redact::{escape_controls, is_control, is_invisible, redact_url};
use std::ops::Range;

/// The words whose values are secrets when written inline.
const SECRET_WORDS: [&str; 2] = ["secret", "keys"];

/// Whether the values after `word` are taken for secrets: `secret` and
/// `keys`; and, inside an `auth` declaration, where no other attribute
/// comes close, any spelling of them a writer may have meant (`Secret`,
/// `key`, `secrets`, `secrte`, `kyes`: case ignored, within two edits of
/// `secret`, one edit or a swap of two letters of `keys` or `key`), whose
/// values the checker reports as an unknown attribute (GW0103) with the
/// line in its snippet.
fn is_secret_word(word: &str, in_auth: bool) -> bool {
    if SECRET_WORDS.contains(&word) {
        return true;
    }
    if !in_auth || !(2..=8).contains(&word.len()) {
        return false;
    }
    let lower = word.to_ascii_lowercase();
    crate::diagnostic::edit_distance(&lower, "secret") <= 2 || ["keys", "key"].iter().any(|w| near(&lower, w))
}

/// Whether `word` (lower case) is within one edit of `to`, or `to` with two
/// neighbouring letters swapped.
fn near(word: &str, to: &str) -> bool {
    if crate::diagnostic::edit_distance(word, to) <= 1 {
        return true;
    }
    let (a, b) = (word.as_bytes(), to.as_bytes());
    a.len() == b.len() && {
        let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        differ.len() == 2 && differ[1] == differ[0] + 1 && a[differ[0]] == b[differ[1]] && a[differ[1]] == b[differ[0]]
    }
}

/// Whether a word starting a line opens an `auth` declaration as a writer
/// may have spelled it (`auth`, `Auth`, `auht`, `oauth`): a misspelled
/// declaration is shown whole in its GW0001 snippet.
fn opens_auth(word: &str) -> bool {
    word.len() <= 6 && near(&word.to_ascii_lowercase(), "auth")
}

/// Whether some line of `text` starts with a word [`opens_auth`] takes.
fn has_auth_line(text: &str) -> bool {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .any(|start| {
            let rest = &text.as_bytes()[start..];
            let len = rest.iter().take(7).take_while(|c| c.is_ascii_alphabetic()).count();
            len >= 3 && opens_auth(&text[start..start + len])
        })
}

/// Byte ranges of `text` that hold secrets, sorted and disjoint: the values
/// after `secret` or `keys` (and their misspellings in an `auth`
/// declaration: [`is_secret_word`]) in any layout — the content of each
/// string, a bare value whole, the items of a list — except `env(...)`
/// and `file(...)`; and anywhere (strings, bare values, comments) a URL's
/// password. A word right after `auth`, `upstream`, `limit`, `store` or
/// `->` is a name, not a secret word.
pub fn secret_ranges(text: &str) -> Vec<Range<usize>> {
    // Most files hold none: a fast search says so without the scan.
    let has_auth = text.contains("auth") || has_auth_line(text);
    if !has_auth && !SECRET_WORDS.iter().any(|w| text.contains(w)) && !text.contains("://") {
        return Vec::new();
    }
    let b = text.as_bytes();
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    // Inside an `auth` declaration (from `auth` in column 1 to the next
    // declaration keyword there); the word before, when it names.
    let mut in_auth = false;
    let mut names_next = false;
    while i < b.len() {
        match b[i] {
            b'#' => {
                // A comment: a URL's password there is still one.
                let end = line_end(b, i);
                url_password(text, i..end, &mut out);
                i = end;
            }
            b':' if b[i..].starts_with(b"://") => {
                // A URL outside a string (`redis://user:PW@host`, which
                // does not parse as a value but is shown in snippets).
                url_password(text, i..line_end(b, i), &mut out);
                i += 3;
            }
            b'"' => {
                let end = string_end(b, i);
                url_password(text, content(b, i, end), &mut out);
                names_next = false;
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'>') => {
                names_next = true;
                i += 2;
            }
            c if is_word_start(c) && (i == 0 || !is_word(b[i - 1])) => {
                let mut j = i;
                while j < b.len() && is_word(b[j]) {
                    j += 1;
                }
                let word = &text[i..j];
                if i == 0 || b[i - 1] == b'\n' {
                    if let Some(kw) = crate::syntax::DECLARATION_KEYWORDS.iter().find(|k| **k == word) {
                        in_auth = *kw == "auth";
                    } else if opens_auth(word) {
                        in_auth = true;
                    }
                }
                let named = std::mem::replace(&mut names_next, matches!(word, "auth" | "upstream" | "limit" | "store"));
                if !named && is_secret_word(word, in_auth) {
                    j = secret_values(text, j, &mut out);
                    names_next = false;
                }
                i = j;
            }
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            _ => {
                names_next = false;
                i += 1;
            }
        }
    }
    merge(out)
}

/// `ranges` sorted, overlapping ones made one.
pub fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `text[range]` with the bytes of `secrets` (sorted ranges of `text`)
/// replaced by `*`, byte for byte; a character a secret cuts is masked
/// whole.
pub fn masked(text: &str, range: Range<usize>, secrets: &[Range<usize>]) -> String {
    let Some(part) = text.get(range.clone()) else {
        return String::new();
    };
    let first = secrets.partition_point(|r| r.end <= range.start);
    let mut next = secrets[first..].iter().peekable();
    let mut out = String::with_capacity(part.len());
    for (k, c) in part.char_indices() {
        let i = range.start + k;
        while next.peek().is_some_and(|r| r.end <= i) {
            next.next();
        }
        if next.peek().is_some_and(|r| r.start < i + c.len_utf8()) {
            out.extend(std::iter::repeat_n('*', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
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

/// Lists and calls nested deeper than this are not descended into (the
/// parser refuses more than 64).
const MAX_DEPTH: usize = 64;

/// The characters that end a bare value (as the grammar's `bad` token).
const BARE_END: &[u8] = b" \t\r\n;,{}()[]#\"";

/// Skips blanks (newlines included) and comments from `i`, as the grammar
/// does between a keyword and its value, noting URL passwords in the
/// comments it skips.
fn skip_blanks(text: &str, mut i: usize, out: &mut Vec<Range<usize>>) -> usize {
    let b = text.as_bytes();
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                let end = line_end(b, i);
                url_password(text, i..end, out);
                i = end;
            }
            _ if text[i..].starts_with('\u{FEFF}') => i += 3,
            _ => break,
        }
    }
    i
}

/// The values after a secret word, from `i`: every value of the statement,
/// laid out as the grammar accepts it — on the next line, after a comment,
/// one per line after commas (as `gwc fmt` writes them), in a list
/// (`["a", "b"]`) — except references (`env("...")`, `file("...")`) and
/// keywords (`secret` on a line of its own followed by `issuer`, or a name
/// `keys` followed by the next declaration). Returns where scanning goes on.
fn secret_values(text: &str, i: usize, out: &mut Vec<Range<usize>>) -> usize {
    let b = text.as_bytes();
    let mut i = i;
    // `secret = "..."`, `secret: "..."`: not the grammar, but what a writer
    // used to other formats types; the value after the sign is the secret.
    let sign = skip_blanks(text, i, out);
    if matches!(b.get(sign), Some(b'=' | b':')) {
        i = sign + 1;
    }
    loop {
        let at = skip_blanks(text, i, out);
        let Some(next) = secret_value(text, at, 0, out) else {
            return i.max(at.min(b.len()));
        };
        i = next;
        let comma = skip_blanks(text, i, out);
        if b.get(comma) != Some(&b',') {
            return i;
        }
        i = comma + 1;
    }
}

/// The one value at `i` (a string, a list, a call or a bare value), its
/// secrets noted; where it ends, or `None` when there is no value at `i`.
fn secret_value(text: &str, i: usize, depth: usize, out: &mut Vec<Range<usize>>) -> Option<usize> {
    let b = text.as_bytes();
    match *b.get(i)? {
        b'"' => {
            let end = string_end(b, i);
            let inside = content(b, i, end);
            if !inside.is_empty() {
                out.push(inside);
            }
            Some(end)
        }
        b'[' => Some(secret_items(text, i + 1, b']', true, depth + 1, out)),
        c if !BARE_END.contains(&c) => {
            let start = i;
            let mut j = i;
            while j < b.len() && !BARE_END.contains(&b[j]) {
                j += 1;
            }
            let word = &text[start..j];
            if b.get(j) == Some(&b'(') {
                // env("..."), file("..."): a reference, not a secret; the
                // arguments of any other call are taken as values.
                let keep = matches!(word, "env" | "file");
                return Some(secret_items(text, j + 1, b')', !keep, depth + 1, out));
            }
            if crate::schema::all_named(word).next().is_some() {
                return None; // the next statement, not a value
            }
            out.push(start..j);
            Some(j)
        }
        _ => None,
    }
}

/// The items of a list or the arguments of a call from `i` up to the
/// `close` that ends them (nested brackets and strings skipped whole);
/// noted as secrets when `secret`. Returns just past `close` (or where the
/// text stops being a list: a line that starts a declaration, the end).
fn secret_items(text: &str, mut i: usize, close: u8, secret: bool, depth: usize, out: &mut Vec<Range<usize>>) -> usize {
    let b = text.as_bytes();
    let mut scratch = Vec::new();
    let sink = if secret { out } else { &mut scratch };
    if depth > MAX_DEPTH {
        // Deeper than any file that parses (the parser refuses it): the
        // rest of the line is taken as a secret, without recursing.
        let end = line_end(b, i);
        sink.push(i..end);
        return end;
    }
    loop {
        i = skip_blanks(text, i, sink);
        match b.get(i) {
            None => return i,
            Some(&c) if c == close => return i + 1,
            Some(b',') => i += 1,
            Some(b'}' | b'{' | b';') => return i,
            Some(_) => match secret_value(text, i, depth, sink) {
                Some(next) => i = next,
                None => return i,
            },
        }
    }
}

/// The passwords of the URLs in `text[range]` (a string's content).
fn url_password(text: &str, range: Range<usize>, out: &mut Vec<Range<usize>>) {
    let Some(part) = text.get(range.clone()) else { return };
    for r in url_secrets(part) {
        out.push(range.start + r.start..range.start + r.end);
    }
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
            out.extend(escape(c));
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
            width += escape(c).count() - c.len_utf8();
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

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

    /// Every layout the grammar accepts, `gwc fmt`'s included.
    #[test]
    fn secrets_are_found_in_any_layout() {
        assert_eq!(secrets("keys\n  \"K1\"\n"), ["K1"]);
        assert_eq!(secrets("secret\n\n  S1\n}"), ["S1"]);
        assert_eq!(secrets("keys \"K1\"\n  , \"K2\""), ["K1", "K2"]);
        assert_eq!(
            secrets("keys \"K1\", \"K2\",  # partner b\n    \"K3\"\n"),
            ["K1", "K2", "K3"]
        );
        assert_eq!(secrets("keys # first\n  \"K1\" # after\n  , \"K2\""), ["K1", "K2"]);
        assert_eq!(secrets(r#"keys env("X"), "K1", file("f"), K2"#), ["K1", "K2"]);
        assert_eq!(secrets(r#"keys ["K1","K2", [K3]], "K4""#), ["K1", "K2", "K3", "K4"]);
        assert_eq!(secrets(r#"secret base64("S1")"#), ["S1"]);
        // A keyword ends the values: a name `keys`, a `secret` with none.
        assert!(secrets("route /x -> keys\n  # c\nroute /y -> app").is_empty());
        assert!(secrets("auth a jwt {\n  secret\n  issuer \"i\"\n}").is_empty());
        assert!(secrets("route /x -> app { auth keys limit l }").is_empty());
        assert!(secrets("upstream keys { server 1.2.3.4:80 }\nauth secret jwt { issuer \"i\" }").is_empty());
    }

    /// What a writer may have meant for `secret` or `keys`, in an `auth`
    /// declaration only.
    #[test]
    fn misspelled_secret_words_in_auth_are_found() {
        let auth = "auth a api_key {\n  key \"K1\"\n  Secret \"S1\"\n  KEYS \"K2\"\n  secrets S2\n  sercet \"S3\"\n  issuer \"i\"\n}\n";
        assert_eq!(secrets(auth), ["K1", "S1", "K2", "S2", "S3"]);
        // With a sign other formats take.
        let signs = "auth a jwt {\n  secret = abc1\n  Secret: \"abc2\"\n  secret =abc3\n}\n";
        assert_eq!(secrets(signs), ["abc1", "abc2", "abc3"]);
        // Swapped letters, two edits of `secret`, a misspelled `auth`.
        let swapped = "auht a jwt { secrte \"S3\" }\nAuth b api_key { kyes \"K3\" }\n";
        assert_eq!(secrets(swapped), ["S3", "K3"]);
        // Elsewhere `key` is an attribute of its own.
        assert!(secrets("limit l { key api_key }\nroute /x -> app { limit l }").is_empty());
        assert!(secrets(&format!("{auth}limit l {{ key api_key }}")).len() == 5);
    }

    #[test]
    fn references_names_and_comments_are_not_secrets() {
        assert!(secrets(r#"secret env("JWT_SECRET") keys file("k.txt")"#).is_empty());
        assert!(secrets("upstream keys { server 1.2.3.4:80 }\nroute /x -> keys\nroute /y -> app").is_empty());
        assert!(secrets("# secret \"in a comment\"\nsecrets \"x\" mysecret \"y\" Secret \"z\"").is_empty());
    }

    #[test]
    fn url_passwords_are_found_in_any_string() {
        assert_eq!(secrets(r#"store s redis "redis://u:pa55@h:6379/0""#), ["pa55"]);
        assert_eq!(secrets(r#"jwks url "https://token@auth.example.com/jwks""#), ["token"]);
        assert!(secrets(r#"store s redis "redis://h:6379""#).is_empty());
        // Everything up to the last `@`: a password holding `/ ? #` unencoded.
        assert_eq!(
            secrets(r#"store s redis "redis://:q7Zk/9vR+PW/aXe2=@127.0.0.1:6379""#),
            [":q7Zk/9vR+PW/aXe2="[1..].to_string()]
        );
        assert_eq!(secrets(r#""redis://u:a?b#c d\"e`f@h/0""#), [r#"a?b#c d\"e`f"#]);
        assert_eq!(secrets(r#""https://a/b:c@h""#), ["a/b:c"]);
        // A path holding an `@` is hidden too: the safe mistake.
        assert_eq!(secrets(r#"redirect "https://example.com/@user""#), ["example.com/"]);
    }

    #[test]
    fn deep_lists_are_scanned_without_recursing_deeper() {
        let deep = format!("keys {}\"K1\"{}\nroute /x", "[".repeat(100_000), "]".repeat(100_000));
        let found = secrets(&deep);
        assert!(found.iter().any(|s| s.contains("K1")), "{:?}", found.len());
        assert!(
            !found.iter().any(|s| s.contains("route")),
            "{:?}",
            found
                .iter()
                .map(|s| &s[s.len().saturating_sub(30)..])
                .collect::<Vec<_>>()
        );
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
    fn urls_outside_strings_and_in_comments_are_found() {
        assert_eq!(
            secrets("store s redis redis://user:PW1@h:6379 { on_error allow }"),
            ["PW1"]
        );
        assert_eq!(secrets("jwks url https://tok:PW2@auth.example/jwks\n"), ["PW2"]);
        assert_eq!(secrets("# was redis://:PW3@old-host:6379\nroute /x"), ["PW3"]);
        assert_eq!(secrets("x https://h/a secret PW4"), ["PW4"]);
    }

    #[test]
    fn masked_text_hides_secret_bytes() {
        let text = "secret 9f86d081884c7d65 é";
        let ranges = secret_ranges(text);
        assert_eq!(masked(text, 0..text.len(), &ranges), "secret **************** é");
        assert_eq!(masked(text, 10..text.len(), &ranges), "************* é");
        assert_eq!(merge(vec![5..9, 0..2, 1..3, 9..10, 4..4]), vec![0..3, 5..10]);
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
        // A URL without a password does not end the search.
        assert_eq!(
            redact_url("`redis://h:6379` then `redis://u:p@h`"),
            "`redis://h:6379` then `redis://u:<redacted>@h`"
        );
        // To the last `@`: `/ ? #`, a space, a quote or a backtick unencoded.
        for pw in [
            "q7Zk/9vR+PASSWORD/aXe2=",
            "a?PASSWORD",
            "a#PASSWORD",
            "a PASSWORD",
            "a\"PASSWORD",
            "a`PASSWORD",
        ] {
            let line = format!("error=`redis://:{pw}@127.0.0.1:6379` and more");
            let clean = redact_url(&line);
            assert!(!clean.contains("PASSWORD"), "{clean}");
            assert!(clean.contains("127.0.0.1:6379"), "{clean}");
        }
        assert_eq!(
            redact_url("https://tok/en@h/x\nnext@line"),
            "https://<redacted>@h/x\nnext@line"
        );
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape_controls("a\u{1b}[2Jb\u{7}\0\r\n"), "a\\u{1b}[2Jb\\u{7}\\0\\r\n");
        assert_eq!(escape_controls("x\u{9b}y"), "x\\u{9b}y");
        assert!(matches!(escape_controls("plain\ttext\n"), Cow::Borrowed(_)));
        // Bidirectional overrides and isolates, zero-width characters.
        assert_eq!(
            escape_controls("/a\u{202e}b\u{2066}c\u{2069}\u{200b}\u{feff}\u{2028}"),
            "/a\\u{202e}b\\u{2066}c\\u{2069}\\u{200b}\\u{feff}\\u{2028}"
        );
        assert!(matches!(escape_controls("café naïve → ü"), Cow::Borrowed(_)));
        let text = "x \u{202e}\"y\" z";
        let all = 0..text.len();
        assert_eq!(shown(text, all.clone(), &[]), "x \\u{202e}\"y\" z");
        assert_eq!(shown_width(text, all, &[]), shown(text, 0..text.len(), &[]).len());
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
