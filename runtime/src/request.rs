//! What a request offers to references (`header.x`, `query.q`, `param.id`,
//! `cookie.c`, `claim.sub`, `client_ip`) and template rendering over it; and
//! the header hygiene of a proxy: hop-by-hop headers out, `X-Forwarded-*` in.

use gw_compiler::ast::Reference;
use gw_compiler::plan::router::Params;
use gw_compiler::plan::{Piece, Template};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;
use std::net::IpAddr;

/// The request data references read.
pub struct RequestCtx<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub params: Option<&'a Params<'a>>,
    /// The verified token's claims (set by a `jwt` auth).
    pub claims: Option<&'a serde_json::Value>,
    /// The name of the API key that authenticated the request.
    pub api_key: Option<&'a str>,
}

impl<'a> RequestCtx<'a> {
    /// The value a reference reads, if the request has it.
    pub fn value(&self, r: &Reference) -> Option<Cow<'a, str>> {
        match r {
            Reference::ClientIp => Some(Cow::Owned(self.client_ip.to_string())),
            Reference::Header(h) => self
                .headers
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed),
            Reference::Query(q) => self.query.and_then(|qs| query_param(qs, q)),
            Reference::Param(p) => self.params.and_then(|ps| ps.get(p)).map(|v| Cow::Owned(v.to_string())),
            Reference::Cookie(c) => cookie(self.headers, c).map(Cow::Borrowed),
            Reference::Claim(path) => {
                let mut v = self.claims?;
                for key in path {
                    v = v.get(key)?;
                }
                match v {
                    serde_json::Value::String(s) => Some(Cow::Owned(s.clone())),
                    serde_json::Value::Null => None,
                    other => Some(Cow::Owned(other.to_string())),
                }
            }
        }
    }

    /// Renders a template; missing references render as empty strings.
    pub fn render(&self, t: &Template) -> String {
        let mut out = String::new();
        for p in &t.pieces {
            match p {
                Piece::Literal(l) => out.push_str(l),
                Piece::Ref(r) => {
                    if let Some(v) = self.value(r) {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }

    /// Renders a path or URL template (`rewrite`, `redirect`): literals as
    /// written, and in each value every byte that may not stand in a path
    /// percent-encoded — `/` stays, so `{param.rest}` keeps its segments,
    /// while `?`, `#` and spaces cannot change the URL's shape (nor `&`,
    /// `=` and `+` a query's, after the template's `?`).
    pub fn render_path(&self, t: &Template) -> String {
        let mut out = String::new();
        let mut in_query = false;
        for p in &t.pieces {
            match p {
                Piece::Literal(l) => {
                    in_query |= l.contains('?');
                    out.push_str(l);
                }
                Piece::Ref(r) => {
                    if let Some(v) = self.value(r) {
                        encode_url_value(&v, in_query, &mut out);
                    }
                }
            }
        }
        out
    }
}

/// Appends `value` with every byte outside RFC 3986 `pchar` (and `/`)
/// percent-encoded; in a query also `&`, `=` and `+`. A `%` is kept when it
/// already starts an escape.
fn encode_url_value(value: &str, in_query: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b',' | b';' | b':' | b'@' | b'/'
            )
            || (!in_query && matches!(b, b'&' | b'=' | b'+'))
            || (b == b'%'
                && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
        if keep {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// `%XX` and `+` decoding (invalid escapes are kept as written).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(a), Some(b)) => {
                        out.push((a * 16 + b) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The value of cookie `name` from the `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|line| {
            line.split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"'))
            })
        })
}

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers and those named in `Connection`. With
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay (WebSocket).
/// `TE: trailers` stays too: it is the one `TE` an HTTP/2 request may carry,
/// and gRPC servers require it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which hop-by-hop headers are there
    // (standard names compare by length and a static string: no hashing);
    // the usual message has none, or only `Connection: keep-alive`.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present |= 1 << i;
        }
    }
    if !keep_upgrade && present == 0 {
        return;
    }
    // Other names listed in `Connection` that the message has (usually none:
    // the list names hop-by-hop headers, removed below, or `close`). Listed
    // hop-by-hop names need no lookup: the pass above found them.
    let mut listed: Vec<HeaderName> = Vec::new();
    if present & 1 != 0 {
        for line in headers.get_all(header::CONNECTION) {
            let Ok(line) = line.to_str() else { continue };
            for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if hop_index_str(name).is_some() {
                    continue;
                }
                if headers.contains_key(name) {
                    if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                        listed.push(n);
                    }
                }
            }
        }
    }
    for name in listed {
        headers.remove(name);
    }
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) == 0 {
            continue;
        }
        if keep_upgrade && (*h == header::CONNECTION || *h == header::UPGRADE) {
            continue;
        }
        if *h == header::TE && te_is_trailers(headers) {
            continue;
        }
        headers.remove(h);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The index in [`HOP_BY_HOP`] of a hop-by-hop name, decided by length
/// first (a standard name's text is a static string: no hashing, no
/// comparison of most names).
fn hop_index(name: &HeaderName) -> Option<usize> {
    hop_index_str(name.as_str())
}

/// [`hop_index`] of a lower-case name; a name listed in `Connection` may
/// come in any case.
fn hop_index_str(s: &str) -> Option<usize> {
    let is = |n: &str| s.eq_ignore_ascii_case(n);
    match s.len() {
        2 if is("te") => Some(3),
        7 if is("trailer") => Some(4),
        7 if is("upgrade") => Some(6),
        10 if is("connection") => Some(0),
        10 if is("keep-alive") => Some(1),
        16 if is("proxy-connection") => Some(2),
        17 if is("transfer-encoding") => Some(5),
        _ => None,
    }
}

/// `TE` is present and says only `trailers`.
fn te_is_trailers(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::TE).iter();
    matches!((values.next(), values.next()), (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"trailers"))
}

/// Is this an HTTP/1.1 upgrade request (WebSocket)?
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

/// Does a `Connection` line list `token` (any case)?
pub fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Appends the client to `X-Forwarded-For` (all of its lines joined into
/// one); sets `X-Forwarded-Proto` and `X-Forwarded-Host`.
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, tls: bool, host: Option<&HeaderValue>) {
    use std::fmt::Write as _;
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut xff = String::new();
        for prev in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
            let prev = prev.trim();
            if !prev.is_empty() {
                xff.push_str(prev);
                xff.push_str(", ");
            }
        }
        let _ = write!(xff, "{client}");
        HeaderValue::try_from(xff).ok()
    } else {
        Some(client_value(client))
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST.clone(), h.clone());
    }
}

/// `client` as a header value. The last one made on this thread is kept: a
/// client's requests come in a row on its connection, and a shared copy is
/// cheaper than formatting the address again.
fn client_value(client: IpAddr) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((ip, v)) = last.as_ref() {
            if *ip == client {
                return v.clone();
            }
        }
        let v = HeaderValue::from_maybe_shared(bytes::Bytes::from(client.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        *last = Some((client, v.clone()));
        v
    })
}
