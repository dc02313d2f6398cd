//! pest's errors in the language's words: "expected `}` or an attribute,
//! found `3`", never rule names. An unclosed `{` is GW0002 labelled at the
//! brace that is never closed, and at the end of the file or at the next
//! declaration, where parsing goes on.

use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use gw_grammar::Rule;
use pest::error::{Error, ErrorVariant, InputLocation};

/// What the user would call the thing a rule expects, if anything.
fn describe(rule: Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        lbrace => "`{`",
        rbrace => "`}`",
        arrow => "`->`",
        comma => "`,`",
        value | loose => "a value",
        string => "a string",
        ident => "a name",
        method | methods => "a method such as `GET`",
        path => "a path such as `/users`",
        decl_next | decl_start | k_import | k_listen | k_admin | k_limits | k_upstream | k_auth | k_limit | k_store
        | k_route | k_test | k_compress | top_unknown => "a declaration such as `route` or `upstream`",
        EOI => "the end of the file",
        k_key => "`key`",
        k_header => "`header`",
        k_on => "`on`",
        k_tls | k_tcp => "`tls` or `tcp`",
        require_op | k_has | k_in => "`has`, `in`, `==` or `!=`",
        expectation => "a test such as `GET /path -> upstream`",
        aggregate_part | aggregate_timeout => "an aggregate part such as `profile users GET \"/users/{claim.sub}\"`",
        server
        | health
        | eject
        | pool
        | retry
        | http2
        | upstream_setting
        | upstream_setting_kw
        | upstream_unknown
        | limits_setting
        | limits_kw
        | limits_unknown
        | health_setting
        | health_kw
        | health_unknown
        | eject_setting
        | eject_kw
        | eject_unknown
        | pool_setting
        | pool_kw
        | pool_unknown
        | auth_from
        | auth_jwks
        | auth_setting
        | auth_setting_kw
        | auth_unknown
        | limit_setting
        | limit_kw
        | limit_unknown
        | store_setting
        | store_kw
        | store_setting_kw
        | store_unknown
        | route_auth
        | require
        | route_limit
        | set_header
        | remove_header
        | aggregate
        | respond
        | redirect
        | cors
        | mirror
        | k_mirror
        | route_setting
        | route_setting_kw
        | route_unknown
        | cors_credentials
        | cors_setting
        | cors_setting_kw
        | cors_unknown
        | tls_cert
        | tls_unknown
        | k_cert
        | upstream_tls
        | upstream_tls_cert
        | upstream_tls_setting
        | upstream_tls_setting_kw
        | upstream_tls_unknown => "an attribute",
        k_weight | k_backup | k_resolve | server_opt => "a server option (`weight`, `backup`, `resolve`)",
        _ => return None,
    })
}

/// The token at `pos` as the user wrote it, for "found `...`".
fn found_at(text: &str, pos: usize) -> String {
    let rest = &text[pos.min(text.len())..];
    let Some(first) = rest.chars().next() else {
        return "the end of the file".into();
    };
    if first == '\n' || first == '\r' {
        return "the end of the line".into();
    }
    let word: String = if first.is_alphanumeric() || first == '_' {
        rest.chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '%'))
            .take(40)
            .collect()
    } else {
        first.to_string()
    };
    format!("`{}`", word.replace('`', "'"))
}

/// The first `{` that is never closed (skipping strings and comments).
fn unclosed_brace(text: &str) -> Option<usize> {
    scan(text).0
}

/// The offset of the first `{`, `[` or `(` nested deeper than `max`.
pub fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut in_comment = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_comment {
            in_comment = b != b'\n';
            continue;
        }
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' | b'\n' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'#' => in_comment = true,
            b'"' => in_string = true,
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The start of the first string that runs to the end of its line.
fn unterminated_string(text: &str) -> Option<usize> {
    scan(text).1
}

/// One pass over the text: the first unclosed `{` and the first unterminated string.
fn scan(text: &str) -> (Option<usize>, Option<usize>) {
    let mut unterminated = None;
    let mut stack = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => break,
                        _ => {}
                    }
                }
                if !closed && unterminated.is_none() {
                    unterminated = Some(i);
                }
            }
            '{' => stack.push(i),
            '}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    (stack.first().copied(), unterminated)
}

/// Converts a pest error into GW0001 (or GW0002 for an unclosed block or
/// string). The text parsed was `text[base..end]`: the declaration the
/// error is in, up to the next declaration (or the end of the file).
pub fn syntax_error(file: FileId, text: &str, base: usize, end: usize, err: &Error<Rule>) -> Diagnostic {
    let whole = text;
    let text = &whole[base..end];
    let at = |offset: usize| base + offset;
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<&str> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &err.variant {
        for r in positives {
            if let Some(d) = describe(*r) {
                if !expected.contains(&d) {
                    expected.push(d);
                }
            }
        }
    }
    // "a name" is implied by "a declaration" and "an attribute".
    if expected
        .iter()
        .any(|d| d.starts_with("a declaration") || *d == "an attribute")
    {
        expected.retain(|d| *d != "a name");
    }
    // "`}`" reads best last: "expected an attribute or `}`".
    expected.sort_by_key(|d| (*d == "`}`", *d == "the end of the file"));
    let at_end = text[pos.min(text.len())..].trim().is_empty();
    if at_end && expected.contains(&"`}`") {
        if let Some(start) = unterminated_string(text) {
            let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            return Diagnostic::new(Code::GW0002, "unterminated string")
                .primary(Span::new(file, at(start), at(line_end)), "this string is never closed")
                .help("close it with `\"` before the end of the line");
        }
        if let Some(open) = unclosed_brace(text) {
            let d = Diagnostic::new(Code::GW0002, "unterminated block: this `{` is never closed")
                .primary(Span::new(file, at(open), at(open + 1)), "this block is never closed");
            return if end == whole.len() {
                d.secondary(Span::new(file, end, end), "the file ends here")
                    .help("add the missing `}`")
            } else {
                // Parsing went on at the next declaration, whose keyword starts
                // the line `end` is at.
                let word = whole[end..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .map_or(whole.len(), |i| end + i);
                d.secondary(Span::new(file, end, word), "the next declaration starts here")
                    .help("add the missing `}` before the next declaration")
            };
        }
    }
    let expected = match expected.len() {
        0 => "something else".to_string(),
        1 => expected[0].to_string(),
        n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    let found = if at_end && end < whole.len() {
        // The declaration stops where the next one begins.
        "the next declaration".to_string()
    } else {
        found_at(text, pos)
    };
    let mut stop = pos + 1;
    while stop < text.len() && !text.is_char_boundary(stop) {
        stop += 1;
    }
    let len = if at_end {
        0
    } else {
        found.trim_matches('`').len().max(1)
    };
    let stop = (pos + len).min(text.len()).max(stop.min(text.len()));
    let d = Diagnostic::new(Code::GW0001, format!("expected {expected}, found {found}")).primary(
        Span::new(file, at(pos), at(if at_end { pos } else { stop })),
        format!("expected {expected}"),
    );
    let help =
        (found == "`}`" && unclosed_brace(text).is_none()).then(|| "this `}` closes nothing: remove it".to_string());
    d.maybe_help(help)
}
