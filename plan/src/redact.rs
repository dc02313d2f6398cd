//! Cleaning a string the plan holds before it is shown in a plan, a log or
//! a message: [`redact_url`] hides a URL's password, [`escape_controls`]
//! escapes control and invisible characters. The compiler's masker of
//! source text (`gw_compiler::redact`) is built on the same rules.

use std::borrow::Cow;
use std::ops::Range;

/// In `s`, the secret part of each URL: everything between `://` and the
/// last `@` of the URL, except a plain user name before the first `:`
/// (`redis://user:` stays; a user part without `:` is a token, hidden
/// whole). A password may hold `/ ? #`, a space or a quote that a careless
/// writer did not encode, so the URL is taken to run to the end of its
/// line, or to the next URL on it, not to the end of its host; a path
/// holding an `@` (`https://example.com/@user`) is hidden too, which is the
/// safe mistake.
pub fn url_secrets(s: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    s.match_indices("://").filter_map(move |(i, _)| {
        let after = i + 3;
        let rest = &s[after..];
        let mut end = rest.find('\n').unwrap_or(rest.len());
        if let Some(next) = rest[..end].find("://") {
            end = scheme_start(rest, next);
        }
        let at = rest[..end].rfind('@')?;
        let userinfo = &rest[..at];
        let keep = match userinfo.find(':') {
            Some(c) if userinfo[..c].bytes().all(is_plain_user) => c + 1,
            _ => 0,
        };
        (keep < at).then(|| after + keep..after + at)
    })
}

/// Where the scheme of the `://` at `colon` in `s` starts.
fn scheme_start(s: &str, colon: usize) -> usize {
    let b = s.as_bytes();
    let mut i = colon;
    while i > 0 && (b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'+' | b'-' | b'.')) {
        i -= 1;
    }
    i
}

/// A byte of a user name shown as it is (RFC 3986's unreserved characters
/// and escapes).
fn is_plain_user(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
}

/// `s` with the secret part of each URL in it ([`url_secrets`]) replaced
/// by `<redacted>` (`redis://user:<redacted>@host`), for plans, logs and
/// messages. Borrowed when there is none.
pub fn redact_url(s: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut from = 0;
    for r in url_secrets(s) {
        if r.start < from {
            continue; // inside the last one hidden
        }
        let o = out.get_or_insert_with(String::new);
        o.push_str(&s[from..r.start]);
        o.push_str("<redacted>");
        from = r.end;
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
/// controls (U+0080..U+009F; U+009B is a CSI on some terminals), and the
/// invisible ones ([`is_invisible`]).
pub fn is_control(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c) || is_invisible(c)
}

/// The invisible format characters that change what a reader sees without
/// showing themselves: the bidirectional overrides, embeddings and
/// isolates (U+202A..U+202E, U+2066..U+2069: "Trojan Source", text that
/// reads in another order than it parses), the marks U+200E/U+200F/U+061C,
/// zero-width spaces and joiners (U+200B..U+200D, U+2060..U+2064, U+FEFF),
/// the line and paragraph separators (U+2028, U+2029), the deprecated
/// format characters U+206A..U+206F, U+180E, the soft hyphen U+00AD and
/// the interlinear annotations U+FFF9..U+FFFB.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// How a control character is written: as Rust escapes it (`\u{1b}`,
/// `\r`, `\0`), an invisible one always as `\u{202e}`.
pub fn escape(c: char) -> impl Iterator<Item = char> {
    let (unicode, debug) = if is_invisible(c) {
        (Some(c.escape_unicode()), None)
    } else {
        (None, Some(c.escape_debug()))
    };
    unicode.into_iter().flatten().chain(debug.into_iter().flatten())
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
            out.extend(escape(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}
