//! Values as written (`Val`), and the checks that turn them into the kinds an
//! attribute expects, with GW0003 (malformed literal), GW0106 (wrong kind or
//! out of range) and GW0002 (unterminated string).

use crate::ast::*;
use crate::codes::Code;
use crate::diagnostic::{suggest, Diagnostic, Diagnostics};
use crate::source::{FileId, Span, Spanned};
use gw_grammar::{Pair, Rule};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// A value slot's content, before its kind is checked.
#[derive(Clone, Debug)]
pub enum Val {
    /// Raw text between the quotes (escapes not yet processed).
    Str(String),
    Unterminated,
    Int(u64),
    /// Digits that overflow `u64`.
    Huge,
    Percent(u64),
    Duration(Duration),
    Size(u64),
    Rate(Rate),
    StatusRange(u64, u64),
    /// Host part and port as written.
    Address(String, String),
    Path(String),
    Ref(Reference),
    Ident(String),
    Call(String, Vec<SVal>),
    List(Vec<SVal>),
    Star,
    Bad(String),
}

#[derive(Clone, Debug)]
pub struct SVal {
    pub val: Val,
    pub span: Span,
}

impl Val {
    /// "a string", "an integer", ... for "found ..." messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Val::Str(_) | Val::Unterminated => "a string",
            Val::Int(_) | Val::Huge => "an integer",
            Val::Percent(_) => "a percentage",
            Val::Duration(_) => "a duration",
            Val::Size(_) => "a size",
            Val::Rate(_) => "a rate",
            Val::StatusRange(..) => "a status range",
            Val::Address(..) => "an address",
            Val::Path(_) => "a path",
            Val::Ref(_) => "a reference",
            Val::Ident(_) => "a name",
            Val::Call(..) => "a function call",
            Val::List(_) => "a list",
            Val::Star => "`*`",
            Val::Bad(_) => "an invalid literal",
        }
    }
}

/// The span of `pair`, parsed from the text starting at offset `base` of `file`.
pub fn span_of(file: FileId, base: usize, pair: &Pair<'_, Rule>) -> Span {
    let s = pair.as_span();
    Span::new(file, base + s.start(), base + s.end())
}

fn parse_digits(s: &str) -> Option<u64> {
    let mut n: u64 = 0;
    let mut any = false;
    for c in s.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10)?;
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
        any = true;
    }
    any.then_some(n)
}

/// Splits `123abc` into the number and the unit.
fn split_number(s: &str) -> (&str, &str) {
    let i = s.find(|c: char| !(c.is_ascii_digit() || c == '_')).unwrap_or(s.len());
    (&s[..i], &s[i..])
}

fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (num, tail) = split_number(rest);
        let n = parse_digits(num)?;
        let (unit_ms, len) = if tail.starts_with("ms") {
            (1, 2)
        } else if tail.starts_with('s') {
            (1000, 1)
        } else if tail.starts_with('m') {
            (60_000, 1)
        } else if tail.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
        rest = &tail[len..];
    }
    Some(Duration::from_millis(total))
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, unit) = split_number(s);
    let n = parse_digits(num)?;
    let mult: u64 = match unit {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn parse_rate(s: &str) -> Option<Rate> {
    let (num, unit) = s.split_once('/')?;
    let count = parse_digits(num)?;
    let per = match unit {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return None,
    };
    Some(Rate { count, per })
}

/// Lowers a `value` pair (or one of its alternatives), parsed from the text
/// starting at offset `base` of `file`.
pub fn lower_value(file: FileId, base: usize, pair: Pair<'_, Rule>, diags: &mut Diagnostics) -> SVal {
    let pair = if pair.as_rule() == Rule::value {
        match pair.into_inner().next() {
            Some(p) => p,
            None => {
                return SVal {
                    val: Val::Bad(String::new()),
                    span: Span::new(file, base, base),
                }
            }
        }
    } else {
        pair
    };
    let span = span_of(file, base, &pair);
    let text = pair.as_str();
    let val = match pair.as_rule() {
        Rule::string => {
            let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
            Val::Str(inner.to_string())
        }
        Rule::unterminated_string => {
            diags.push(
                Diagnostic::new(Code::GW0002, "unterminated string")
                    .primary(span, "this string is never closed")
                    .help("close it with `\"` before the end of the line"),
            );
            Val::Unterminated
        }
        Rule::integer => match parse_digits(text) {
            Some(n) => Val::Int(n),
            None => Val::Huge,
        },
        Rule::percent => match parse_digits(&text[..text.len() - 1]) {
            Some(n) => Val::Percent(n),
            None => Val::Huge,
        },
        Rule::duration => match parse_duration(text) {
            Some(d) => Val::Duration(d),
            None => Val::Huge,
        },
        Rule::size => match parse_size(text) {
            Some(d) => Val::Size(d),
            None => Val::Huge,
        },
        Rule::rate => match parse_rate(text) {
            Some(r) => Val::Rate(r),
            None => Val::Huge,
        },
        Rule::status_range => {
            let (a, b) = text.split_once("..").unwrap_or((text, ""));
            match (parse_digits(a), parse_digits(b)) {
                (Some(a), Some(b)) => Val::StatusRange(a, b),
                _ => Val::Huge,
            }
        }
        Rule::address => {
            let i = text.rfind(':').unwrap_or(0);
            Val::Address(text[..i].to_string(), text[i + 1..].to_string())
        }
        Rule::path => Val::Path(text.to_string()),
        Rule::reference => match parse_reference(text) {
            Some(r) => Val::Ref(r),
            None => Val::Bad(text.to_string()),
        },
        Rule::ident => {
            if text == "client_ip" {
                Val::Ref(Reference::ClientIp)
            } else {
                Val::Ident(text.to_string())
            }
        }
        Rule::call => {
            let mut inner = pair.into_inner();
            let name = inner.next().map(|p| p.as_str().to_string()).unwrap_or_default();
            let args = inner
                .filter(|p| p.as_rule() == Rule::value)
                .map(|p| lower_value(file, base, p, diags))
                .collect();
            Val::Call(name, args)
        }
        Rule::list => {
            let items = pair
                .into_inner()
                .filter(|p| p.as_rule() == Rule::value)
                .map(|p| lower_value(file, base, p, diags))
                .collect();
            Val::List(items)
        }
        Rule::star => Val::Star,
        _ => Val::Bad(text.to_string()),
    };
    SVal { val, span }
}

/// `claim.a.b`, `header.X-Y` (lower-cased), `query.q`, `param.p`, `cookie.c`.
pub fn parse_reference(text: &str) -> Option<Reference> {
    Reference::parse(text)
}

/// Turns values into the kinds attributes expect, reporting mismatches.
pub struct Expect<'d> {
    pub diags: &'d mut Diagnostics,
    pub source: &'d str,
    /// Where the source holds secrets (sorted): "found `...`" masks them.
    pub secrets: &'d [std::ops::Range<usize>],
}

impl Expect<'_> {
    /// The value as a message quotes it: its text with secrets masked,
    /// shortened to 40 characters.
    fn found(&self, v: &SVal) -> String {
        let text = crate::redact::masked(self.source, v.span.start as usize..v.span.end as usize, self.secrets);
        let short: String = text.chars().take(40).collect();
        let short = if short.len() < text.len() {
            format!("{short}…")
        } else {
            short
        };
        short.replace('`', "'")
    }

    /// Reports that `v` is not `what` (e.g. "a duration such as `5s`").
    /// A malformed literal is GW0003, a well-formed value of another kind GW0106.
    pub fn mismatch(&mut self, v: &SVal, what: &str, help: Option<String>) {
        self.mismatch_typo(v, what, help, v.span, None);
    }

    /// [`mismatch`](Self::mismatch) whose help, when `typo` is one, is "did
    /// you mean `typo`?", with `typo` in place of the text at `span` (all of
    /// `v`, or the part of it that is misspelt) as its edit.
    pub fn mismatch_typo(&mut self, v: &SVal, what: &str, help: Option<String>, span: Span, typo: Option<&str>) {
        if matches!(v.val, Val::Unterminated) {
            return; // already reported as GW0002
        }
        let found = self.found(v);
        let (code, label) = match &v.val {
            Val::Bad(_) | Val::Huge => (Code::GW0003, format!("not {what}")),
            other => (Code::GW0106, format!("this is {}", other.kind_name())),
        };
        let d = Diagnostic::new(code, format!("expected {what}, found `{found}`")).primary(v.span, label);
        self.diags.push(d.maybe_help(help).did_you_mean(span, typo));
    }

    pub fn out_of_range(&mut self, span: Span, message: String, help: &str) {
        self.diags.push(
            Diagnostic::new(Code::GW0106, message)
                .primary(span, "out of range")
                .help(help),
        );
    }

    pub fn duration(&mut self, v: &SVal) -> Option<Spanned<Duration>> {
        match v.val {
            Val::Duration(d) => Some(Spanned::new(d, v.span)),
            Val::Int(n) => {
                self.mismatch(
                    v,
                    "a duration such as `5s`",
                    Some(format!("add a unit: `{n}s` or `{n}ms`")),
                );
                None
            }
            _ => {
                self.mismatch(
                    v,
                    "a duration such as `5s`",
                    Some("durations are a number and a unit: `250ms`, `5s`, `1m`, `1h30m`".into()),
                );
                None
            }
        }
    }

    /// A duration that must be more than zero.
    pub fn positive_duration(&mut self, v: &SVal, what: &str) -> Option<Spanned<Duration>> {
        let d = self.duration(v)?;
        if d.node.is_zero() {
            self.out_of_range(
                v.span,
                format!("`{what}` must be more than zero"),
                "use a duration such as `1s`",
            );
            return None;
        }
        Some(d)
    }

    pub fn size(&mut self, v: &SVal) -> Option<Spanned<u64>> {
        match v.val {
            Val::Size(n) => Some(Spanned::new(n, v.span)),
            Val::Int(n) => {
                self.mismatch(
                    v,
                    "a size such as `16KiB`",
                    Some(format!("add a unit: `{n}B`, `{n}KiB` or `{n}MiB`")),
                );
                None
            }
            _ => {
                self.mismatch(
                    v,
                    "a size such as `16KiB`",
                    Some("sizes are a number and a unit: `B`, `KiB`, `MiB`, `GiB` (or `KB`, `MB`, `GB`)".into()),
                );
                None
            }
        }
    }

    pub fn rate(&mut self, v: &SVal) -> Option<Spanned<Rate>> {
        match v.val {
            Val::Rate(r) if r.count == 0 => {
                self.out_of_range(
                    v.span,
                    "a rate of zero lets no request through".into(),
                    "use at least `1/s`, or remove the limit",
                );
                None
            }
            Val::Rate(r) => Some(Spanned::new(r, v.span)),
            _ => {
                self.mismatch(
                    v,
                    "a rate such as `100/min`",
                    Some("rates are a count per unit: `10/s`, `100/min`, `5000/hour`".into()),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&mut self, v: &SVal, what: &str, min: u64, max: u64) -> Option<Spanned<u64>> {
        match v.val {
            Val::Int(n) if n >= min && n <= max => Some(Spanned::new(n, v.span)),
            Val::Int(n) => {
                self.out_of_range(
                    v.span,
                    format!("`{what}` must be between {min} and {max}, found `{n}`"),
                    &format!("use a value from {min} to {max}"),
                );
                None
            }
            Val::Huge => {
                self.out_of_range(
                    v.span,
                    format!("`{what}` is too large"),
                    &format!("use a value from {min} to {max}"),
                );
                None
            }
            _ => {
                self.mismatch(v, &format!("a number for `{what}`"), None);
                None
            }
        }
    }

    pub fn percent(&mut self, v: &SVal, what: &str) -> Option<Spanned<u32>> {
        match v.val {
            Val::Percent(n) if n <= 100 => Some(Spanned::new(n as u32, v.span)),
            Val::Percent(n) => {
                self.out_of_range(
                    v.span,
                    format!("`{what}` must be at most 100%, found `{n}%`"),
                    "use a percentage from 0% to 100%",
                );
                None
            }
            _ => {
                self.mismatch(v, "a percentage such as `20%`", None);
                None
            }
        }
    }

    /// An HTTP status code `100..=599`.
    pub fn status(&mut self, v: &SVal) -> Option<Spanned<u16>> {
        match v.val {
            Val::Int(n) if (100..=599).contains(&n) => Some(Spanned::new(n as u16, v.span)),
            Val::Int(n) => {
                self.out_of_range(
                    v.span,
                    format!("status `{n}` is not between 100 and 599"),
                    "HTTP statuses are 100 to 599",
                );
                None
            }
            _ => {
                self.mismatch(v, "a status code such as `404`", None);
                None
            }
        }
    }

    /// `200` or `200..299`.
    pub fn status_range(&mut self, v: &SVal) -> Option<Spanned<(u16, u16)>> {
        match v.val {
            Val::Int(_) => self.status(v).map(|s| Spanned::new((s.node, s.node), s.span)),
            Val::StatusRange(a, b) if (100..=599).contains(&a) && (100..=599).contains(&b) && a <= b => {
                Some(Spanned::new((a as u16, b as u16), v.span))
            }
            Val::StatusRange(a, b) => {
                let found = self.found(v);
                let _ = (a, b);
                self.diags.push(
                    Diagnostic::new(Code::GW0003, format!("invalid status range `{found}`"))
                        .primary(v.span, "not a range of statuses from 100 to 599")
                        .help("write the lower bound first, such as `200..299`"),
                );
                None
            }
            _ => {
                self.mismatch(v, "a status or status range such as `200..299`", None);
                None
            }
        }
    }

    /// A string (escapes processed).
    pub fn string(&mut self, v: &SVal, what: &str) -> Option<Spanned<String>> {
        match &v.val {
            Val::Str(raw) => {
                let s = self.unescape(raw, v.span.start + 1, v.span.file)?;
                Some(Spanned::new(s, v.span))
            }
            _ => {
                self.mismatch(v, what, None);
                None
            }
        }
    }

    /// A string or a bare name (header names, cookie names).
    pub fn word(&mut self, v: &SVal, what: &str) -> Option<Spanned<String>> {
        match &v.val {
            Val::Ident(s) => Some(Spanned::new(s.clone(), v.span)),
            Val::Str(_) => self.string(v, what),
            _ => {
                self.mismatch(v, what, None);
                None
            }
        }
    }

    pub fn name(&mut self, v: &SVal, what: &str) -> Option<Spanned<String>> {
        match &v.val {
            Val::Ident(s) => Some(Spanned::new(s.clone(), v.span)),
            // Keywords are not reserved: an upstream may be called `client_ip`.
            Val::Ref(Reference::ClientIp) => Some(Spanned::new("client_ip".to_string(), v.span)),
            _ => {
                self.mismatch(v, what, None);
                None
            }
        }
    }

    /// Processes escapes; `offset` is the source offset of `raw`'s first byte.
    pub fn unescape(&mut self, raw: &str, offset: u32, file: FileId) -> Option<String> {
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices().peekable();
        let mut ok = true;
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            match e {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '{' => out.push('{'),
                '}' => out.push('}'),
                'u' => {
                    let rest = &raw[i + 2..];
                    let decoded = rest
                        .strip_prefix('{')
                        .and_then(|r| r.split_once('}'))
                        .and_then(|(hex, _)| (hex.len() <= 6).then_some(hex))
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok().map(|n| (n, hex.len())))
                        .and_then(|(n, len)| char::from_u32(n).map(|c| (c, len)));
                    match decoded {
                        Some((c, len)) => {
                            out.push(c);
                            for _ in 0..len + 2 {
                                chars.next();
                            }
                        }
                        None => {
                            let span = Span {
                                file,
                                start: offset + i as u32,
                                end: offset + i as u32 + 2,
                            };
                            self.diags.push(
                                Diagnostic::new(Code::GW0003, "invalid unicode escape in string")
                                    .primary(span, "expected `\\u{...}` with 1 to 6 hex digits")
                                    .help("write a code point such as `\\u{e9}`"),
                            );
                            ok = false;
                        }
                    }
                }
                other => {
                    let span = Span {
                        file,
                        start: offset + i as u32,
                        end: offset + (i + 1 + other.len_utf8()) as u32,
                    };
                    self.diags.push(
                        Diagnostic::new(Code::GW0003, format!("unknown escape `\\{other}` in string"))
                            .primary(span, "unknown escape")
                            .help("the escapes are `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r`, `\\{`, `\\}` and `\\u{...}`"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A string with `{reference}` holes.
    pub fn template(&mut self, v: &SVal, what: &str) -> Option<Spanned<Template>> {
        let Val::Str(raw) = &v.val else {
            self.mismatch(v, what, None);
            return None;
        };
        let base = v.span.start + 1;
        let file = v.span.file;
        let mut parts = Vec::new();
        let mut lit_start = 0;
        let mut i = 0;
        let bytes = raw.as_bytes();
        let mut ok = true;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                // `\u{..}` is an escape, not a template hole.
                i += if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2) == Some(&b'{') {
                    raw[i..].find('}').map_or(2, |c| c + 1)
                } else {
                    2
                };
                continue;
            }
            if bytes[i] == b'{' {
                if let Some(close) = raw[i + 1..].find('}') {
                    let inner = &raw[i + 1..i + 1 + close];
                    let looks_like_ref = !inner.is_empty()
                        && inner.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                        && inner
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                    if looks_like_ref {
                        let span = Span {
                            file,
                            start: base + i as u32 + 1,
                            end: base + (i + 1 + close) as u32,
                        };
                        if lit_start < i {
                            let lit = self.unescape(&raw[lit_start..i], base + lit_start as u32, file)?;
                            parts.push(TemplatePart::Literal(lit));
                        }
                        match parse_reference(inner) {
                            Some(r) => parts.push(TemplatePart::Ref(Spanned::new(r, span))),
                            None => {
                                let roots = ["claim", "header", "query", "param", "cookie", "client_ip"];
                                let root = inner.split('.').next().unwrap_or(inner);
                                // The edit replaces the root only: `claims.sub` → `claim.sub`.
                                let root_span = Span {
                                    end: span.start + root.len() as u32,
                                    ..span
                                };
                                self.diags.push(
                                    Diagnostic::new(Code::GW0003, format!("unknown reference `{inner}` in template"))
                                        .primary(span, "not a reference")
                                        .help("references are `claim.X`, `header.X`, `query.X`, `param.X`, `cookie.X` or `client_ip`; write `\\{` for a literal brace")
                                        .did_you_mean(root_span, suggest(root, roots)),
                                );
                                ok = false;
                            }
                        }
                        i += close + 2;
                        lit_start = i;
                        continue;
                    }
                }
            }
            i += 1;
        }
        if lit_start < raw.len() {
            let lit = self.unescape(&raw[lit_start..], base + lit_start as u32, file)?;
            parts.push(TemplatePart::Literal(lit));
        }
        ok.then(|| Spanned::new(Template { parts }, v.span))
    }

    /// A socket address; `allow_name` permits DNS names.
    pub fn address(&mut self, v: &SVal, allow_name: bool) -> Option<Spanned<Address>> {
        let Val::Address(host, port) = &v.val else {
            let help = match &v.val {
                Val::Int(n) => Some(format!("write `:{n}` to listen on every interface, or `127.0.0.1:{n}`")),
                _ => Some("addresses look like `127.0.0.1:8080`, `[::1]:8080`, `:8080` or `host.name:80`".into()),
            };
            self.mismatch(v, "an address such as `127.0.0.1:8080`", help);
            return None;
        };
        let port: u16 = match port.parse::<u64>() {
            Ok(p) if p <= 65535 => p as u16,
            _ => {
                self.out_of_range(v.span, format!("port `{port}` is out of range"), "ports are 0 to 65535");
                return None;
            }
        };
        let host = if host.is_empty() {
            AddressHost::Any
        } else if let Some(ip6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            match ip6.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => AddressHost::Ip(IpAddr::V6(ip)),
                Err(_) => {
                    let found = self.found(v);
                    self.diags.push(
                        Diagnostic::new(Code::GW0003, format!("invalid IPv6 address in `{found}`"))
                            .primary(v.span, "not an IPv6 address")
                            .help("write IPv6 addresses in brackets, such as `[::1]:8080`"),
                    );
                    return None;
                }
            }
        } else if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
            match host.parse::<Ipv4Addr>() {
                Ok(ip) => AddressHost::Ip(IpAddr::V4(ip)),
                Err(_) => {
                    self.diags.push(
                        Diagnostic::new(Code::GW0003, format!("invalid IPv4 address `{host}`"))
                            .primary(v.span, "a host of digits and dots must be an IPv4 address")
                            .help("each of the four numbers is 0 to 255, such as `10.0.0.1`"),
                    );
                    return None;
                }
            }
        } else if allow_name {
            if host.starts_with(['-', '.']) || host.ends_with('-') || host.contains("..") {
                self.diags.push(
                    Diagnostic::new(Code::GW0003, format!("invalid host name `{host}`"))
                        .primary(v.span, "not a host name")
                        .help("host names are labels of letters, digits and `-` separated by dots"),
                );
                return None;
            }
            AddressHost::Name(host.to_ascii_lowercase())
        } else {
            self.mismatch(
                v,
                "an IP address such as `127.0.0.1:8080`",
                Some("a listener binds an IP address, or `:PORT` for all interfaces".into()),
            );
            return None;
        };
        Some(Spanned::new(Address { host, port }, v.span))
    }

    /// A path pattern with `{param}` and `{*rest}` segments.
    pub fn path_pattern(&mut self, v: &SVal) -> Option<Spanned<PathPattern>> {
        let Val::Path(raw) = &v.val else {
            let help = match &v.val {
                Val::Ident(s) => Some(format!("paths start with `/`: `/{s}`")),
                Val::Str(s) if s.starts_with('/') => Some(format!("write the path without quotes: `{s}`")),
                _ => None,
            };
            self.mismatch(v, "a path such as `/users/{id}`", help);
            return None;
        };
        let file = v.span.file;
        let mut segments = Vec::new();
        let mut offset = v.span.start + 1;
        let mut seen: Vec<(&str, Span)> = Vec::new();
        let mut ok = true;
        let count = raw[1..].split('/').count();
        for (n, seg) in raw[1..].split('/').enumerate() {
            let span = Span {
                file,
                start: offset,
                end: offset + seg.len() as u32,
            };
            offset += seg.len() as u32 + 1;
            if seg.contains('?') {
                self.diags.push(
                    Diagnostic::new(Code::GW0003, format!("path pattern `{raw}` has a query string"))
                        .primary(span, "routes match paths, not query strings")
                        .help("remove the `?...` part; use `query.NAME` to read query parameters"),
                );
                ok = false;
                continue;
            }
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    self.diags.push(
                        Diagnostic::new(Code::GW0003, format!("invalid parameter `{seg}` in path pattern"))
                            .primary(span, "a parameter needs a name")
                            .help("write `{id}` for one segment or `{*rest}` for the rest of the path"),
                    );
                    ok = false;
                    continue;
                }
                if catch_all && n + 1 != count {
                    self.diags.push(
                        Diagnostic::new(Code::GW0203, format!("catch-all `{seg}` must be the last segment"))
                            .primary(span, "not last")
                            .help("`{*name}` takes the rest of the path, so nothing may follow it"),
                    );
                    ok = false;
                }
                if let Some((_, first)) = seen.iter().find(|(s, _)| *s == name) {
                    self.diags.push(
                        Diagnostic::new(Code::GW0203, format!("parameter `{name}` appears twice in `{raw}`"))
                            .primary(span, "second use")
                            .secondary(*first, "first use")
                            .help("give each parameter its own name"),
                    );
                    ok = false;
                }
                seen.push((name, span));
                segments.push(if catch_all {
                    Segment::CatchAll(name.to_string())
                } else {
                    Segment::Param(name.to_string())
                });
            } else if seg.contains(['{', '}']) {
                self.diags.push(
                    Diagnostic::new(Code::GW0003, format!("invalid segment `{seg}` in path pattern"))
                        .primary(span, "a parameter must be a whole segment")
                        .help("write `/{id}` rather than `/x{id}`"),
                );
                ok = false;
            } else {
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
        ok.then(|| {
            Spanned::new(
                PathPattern {
                    raw: raw.clone(),
                    segments,
                },
                v.span,
            )
        })
    }

    /// A request path for a test expectation (may carry `?query`).
    pub fn request_path(&mut self, v: &SVal) -> Option<Spanned<String>> {
        match &v.val {
            Val::Path(p) if !p.contains(['{', '}']) => Some(Spanned::new(p.clone(), v.span)),
            _ => {
                self.mismatch(v, "a request path such as `/orders/42`", None);
                None
            }
        }
    }

    /// A reference (`claim.sub`, `header.x`, `client_ip`, ...).
    pub fn reference(&mut self, v: &SVal, what: &str) -> Option<Spanned<Reference>> {
        match &v.val {
            Val::Ref(r) => Some(Spanned::new(r.clone(), v.span)),
            Val::Bad(b) if b.contains('.') => {
                let root = b.split('.').next().unwrap_or("");
                let help = "references are `claim.X`, `header.X`, `query.X`, `param.X`, `cookie.X`, `client_ip` or `client_cert.subject|san|fingerprint`";
                // The edit replaces the root only: `claims.sub` → `claim.sub`.
                let root_span = Span {
                    end: v.span.start + root.len() as u32,
                    ..v.span
                };
                let typo = suggest(root, ["claim", "header", "query", "param", "cookie", "client_cert"]);
                self.mismatch_typo(v, what, Some(help.into()), root_span, typo);
                None
            }
            _ => {
                self.mismatch(v, what, None);
                None
            }
        }
    }

    /// An address (`"127.0.0.1"`, `"::1"`) or a CIDR range
    /// (`"10.0.0.0/8"`, `"2001:db8::/32"`) written as a string; an address
    /// is the range of itself alone. A range with host bits set
    /// (`"10.0.0.1/8"`) is refused: it most likely means something else.
    pub fn ip_range(&mut self, v: &SVal) -> Option<Spanned<ipnet::IpNet>> {
        let s = self.string(v, "an address or CIDR range such as `\"10.0.0.0/8\"`")?;
        let text = s.node.trim();
        let net = if text.contains('/') {
            text.parse::<ipnet::IpNet>().ok().filter(|n| n.trunc() == *n)
        } else {
            text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
        };
        match net {
            Some(n) => Some(Spanned::new(n, s.span)),
            None => {
                let found = self.found(v);
                let help = match text.parse::<ipnet::IpNet>() {
                    Ok(n) => format!("host bits are set after the prefix; the range is `\"{}\"`", n.trunc()),
                    Err(_) => "write an IPv4 or IPv6 address, or one followed by `/` and a prefix length: `\"10.0.0.0/8\"`, `\"2001:db8::/32\"`".to_string(),
                };
                self.diags.push(
                    Diagnostic::new(Code::GW0003, format!("invalid address or CIDR range `{found}`"))
                        .primary(s.span, "not an address or CIDR range")
                        .help(help),
                );
                None
            }
        }
    }

    /// A method name (`GET`), with a suggestion for `get`.
    pub fn method(&mut self, text: &str, span: Span) -> Option<Spanned<Method>> {
        if let Some(m) = Method::parse(text) {
            return Some(Spanned::new(m, span));
        }
        let d = Diagnostic::new(Code::GW0003, format!("unknown method `{text}`")).primary(span, "not an HTTP method");
        self.diags.push(match Method::parse(&text.to_ascii_uppercase()) {
            Some(m) => d
                .help(format!("methods are upper-case: `{}`", m.as_str()))
                .suggest(span, m.as_str()),
            None => d
                .help("methods are GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT and TRACE")
                .did_you_mean(span, suggest(text, Method::ALL.iter().map(|m| m.as_str()))),
        });
        None
    }

    /// `env("X")`, `file("p")`, or (when `inline_ok`) a plain string.
    /// `file_base` is the `.gw` file that names it, for relative paths.
    pub fn source(&mut self, v: &SVal, what: &str, file_base: &str, string_is_path: bool) -> Option<Spanned<Source>> {
        match &v.val {
            Val::Call(name, args) if name == "env" || name == "file" => {
                let [arg] = args.as_slice() else {
                    self.diags.push(
                        Diagnostic::new(Code::GW0106, format!("`{name}()` takes one string"))
                            .primary(v.span, "wrong number of arguments")
                            .help(format!("write `{name}(\"...\")`")),
                    );
                    return None;
                };
                let s = self.string(arg, "a string")?;
                let src = if name == "env" {
                    Source::Env(s.node)
                } else {
                    Source::File(crate::host::relative_to(file_base, &s.node))
                };
                Some(Spanned::new(src, v.span))
            }
            Val::Str(_) => {
                let s = self.string(v, what)?;
                let src = if string_is_path {
                    Source::File(crate::host::relative_to(file_base, &s.node))
                } else {
                    Source::Inline(s.node)
                };
                Some(Spanned::new(src, v.span))
            }
            Val::Call(name, _) => {
                // The edit replaces the call's name only: `fil("k")` → `file("k")`.
                let name_span = Span {
                    end: v.span.start + name.len() as u32,
                    ..v.span
                };
                self.diags.push(
                    Diagnostic::new(Code::GW0106, format!("unknown function `{name}`"))
                        .primary(v.span, "not a function here")
                        .help("use `env(\"NAME\")` or `file(\"path\")`")
                        .did_you_mean(name_span, suggest(name, ["env", "file"])),
                );
                None
            }
            _ => {
                self.mismatch(
                    v,
                    what,
                    Some("use `env(\"NAME\")`, `file(\"path\")` or a string".into()),
                );
                None
            }
        }
    }
}
