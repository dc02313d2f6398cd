//! What a request offers to references (`header.x`, `query.q`, `param.id`,
//! `cookie.c`, `claim.sub`, `client_ip`) and template rendering over it; the
//! request's host (RFC 9112 3.2: one valid `Host`, the target's authority
//! first) and its transfer codings (RFC 9112 6.1); and the header hygiene of
//! a proxy: hop-by-hop headers out, `X-Forwarded-*` in, trailer fields that
//! may not travel as trailers out (RFC 9110 6.5.1), and out of `Trailer`;
//! the client's address behind `trust_proxies` ([`walk_forwarded`]).

use gw_plan::router::Params;
use gw_plan::words::{CertField, Reference};
use gw_plan::{Piece, Template};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{StatusCode, Uri, Version};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

/// What `client_cert.*` reads of a connection's verified client
/// certificate: made once per connection, after its handshake, and only on
/// a listener with `client_ca` (the only one that receives certificates).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// `client_cert.subject`: the subject's distinguished name (RFC 4514
    /// order as x509-parser writes it: `CN=orders, O=shop`).
    pub subject: String,
    /// `client_cert.san`: every DNS, URI and IP subject alternative name,
    /// in the certificate's order.
    pub san: Vec<String>,
    /// The names joined with `, `: what a template renders.
    pub san_text: String,
    /// `client_cert.fingerprint`: SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
}

impl ClientCert {
    /// Reads a certificate rustls has already verified. The subject and
    /// names are x509-parser's (rustls-webpki checks them but exposes
    /// neither); a certificate it cannot read keeps its fingerprint only.
    pub fn from_der(der: &[u8]) -> ClientCert {
        use sha2::Digest as _;
        use std::fmt::Write as _;
        use x509_parser::extensions::GeneralName;
        let mut fingerprint = String::with_capacity(64);
        for b in sha2::Sha256::digest(der) {
            let _ = write!(fingerprint, "{b:02x}");
        }
        let mut cert = ClientCert {
            fingerprint,
            ..ClientCert::default()
        };
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(der) else {
            return cert;
        };
        cert.subject = parsed.subject().to_string();
        if let Ok(Some(ext)) = parsed.subject_alternative_name() {
            for name in &ext.value.general_names {
                let text = match name {
                    GeneralName::DNSName(d) => d.to_string(),
                    GeneralName::URI(u) => u.to_string(),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                        _ => continue,
                    },
                    _ => continue,
                };
                cert.san.push(text);
            }
        }
        cert.san_text = cert.san.join(", ");
        cert
    }
}

/// The request data references read.
pub(crate) struct RequestCtx<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub params: Option<&'a Params<'a>>,
    /// The verified token's claims (set by a `jwt` auth).
    pub claims: Option<&'a serde_json::Value>,
    /// The name of the API key that authenticated the request.
    pub api_key: Option<&'a str>,
    /// The connection's verified client certificate (mTLS).
    pub client_cert: Option<&'a ClientCert>,
}

/// What route conditions read: the request's headers, query, cookies and
/// address (claims and parameters are not read while routing).
impl gw_plan::condition::Facts for RequestCtx<'_> {
    fn value(&self, r: &Reference) -> Option<Cow<'_, str>> {
        match r {
            Reference::Header(_) | Reference::Query(_) | Reference::Cookie(_) => RequestCtx::value(self, r),
            _ => None,
        }
    }

    fn client_ip(&self) -> Option<IpAddr> {
        Some(self.client_ip)
    }
}

impl<'a> RequestCtx<'a> {
    /// The value a reference reads, if the request has it.
    pub fn value(&self, r: &Reference) -> Option<Cow<'a, str>> {
        match r {
            Reference::ClientIp => Some(Cow::Owned(self.client_ip.to_string())),
            Reference::ClientCert(field) => {
                let cert = self.client_cert?;
                Some(Cow::Borrowed(match field {
                    CertField::Subject => cert.subject.as_str(),
                    CertField::San => cert.san_text.as_str(),
                    CertField::Fingerprint => cert.fingerprint.as_str(),
                }))
            }
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
    pub(crate) fn render_path(&self, t: &Template) -> String {
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

/// The first value of `name` in a query string, percent-decoded (as route
/// conditions read it).
pub(crate) use gw_plan::condition::query_value as query_param;

/// The value of cookie `name` from the `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
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
/// and gRPC servers require it. With `keep_trailer`, `Trailer` stays: it is
/// not hop-by-hop (RFC 9110 6.6.2), but it announces trailer fields, so it
/// goes only where they go (a response whose trailers reach the client).
///
/// Returns whether the message keeps `TE: trailers` (its sender takes
/// trailer fields, RFC 9110 6.5.1).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool, keep_trailer: bool) -> bool {
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
        return false;
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
    let mut te_trailers = false;
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) == 0 {
            continue;
        }
        if keep_upgrade && (*h == header::CONNECTION || *h == header::UPGRADE) {
            continue;
        }
        if keep_trailer && *h == header::TRAILER {
            continue;
        }
        if *h == header::TE && te_is_trailers(headers) {
            te_trailers = true;
            continue;
        }
        headers.remove(h);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    te_trailers
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
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

/// Does a `Connection` line list `token` (any case)?
pub(crate) fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| lists_token(v, token.as_bytes()))
}

/// Does a comma-separated value list `token` (any case)?
pub(crate) fn lists_token(value: &HeaderValue, token: &[u8]) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Why a request's host is refused with `400` (RFC 9112 3.2, RFC 9113
/// 8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHost {
    /// An HTTP/1.1 request without `Host`, or an HTTP/2 request with
    /// neither `:authority` nor `Host`.
    Missing,
    /// More than one `Host` line.
    Repeated,
    /// A `Host` or a target authority that is not `uri-host[:port]` (with
    /// userinfo, say), or a target whose scheme is not `http` or `https`.
    Invalid,
    /// HTTP/2: `Host` and `:authority` differ.
    Conflict,
}

/// The request's host: what routing matches, what the upstream receives as
/// `Host` (`:authority` to an `http2` upstream) and as `X-Forwarded-Host`.
///
/// The target's authority (an absolute-form target, HTTP/2 `:authority`)
/// replaces `Host` (RFC 9112 3.2.2); otherwise the one `Host` line. `None`
/// only for an HTTP/1.0 request without either. Whatever the target says,
/// a `Host` line must be valid and alone, and an HTTP/1.1 request must have
/// one (RFC 9112 3.2). Validation reads the bytes in place: the usual
/// request (origin form, one `Host`) gets a shared copy of its `Host`.
pub fn request_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<Option<HeaderValue>, BadHost> {
    let mut lines = headers.get_all(header::HOST).iter();
    let host = lines.next();
    if lines.next().is_some() {
        return Err(BadHost::Repeated);
    }
    if host.is_some_and(|h| !valid_host(h.as_bytes())) {
        return Err(BadHost::Invalid);
    }
    let Some(authority) = uri.authority() else {
        return match host {
            Some(h) => Ok(Some(h.clone())),
            None if version == Version::HTTP_11 || version == Version::HTTP_2 => Err(BadHost::Missing),
            None => Ok(None),
        };
    };
    let authority = authority.as_str();
    let scheme_ok = uri
        .scheme_str()
        .is_none_or(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !scheme_ok || !valid_host(authority.as_bytes()) {
        return Err(BadHost::Invalid);
    }
    match host {
        // Absolute form or `:authority` naming the same host as `Host`: a
        // shared copy of the line, as for the origin form.
        Some(h) if h.as_bytes() == authority.as_bytes() => Ok(Some(h.clone())),
        Some(h) if version == Version::HTTP_2 && !h.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) => {
            Err(BadHost::Conflict)
        }
        None if version == Version::HTTP_11 => Err(BadHost::Missing),
        _ => HeaderValue::from_str(authority).map(Some).map_err(|_| BadHost::Invalid),
    }
}

/// Is `b` a valid `Host` value: `uri-host [ ":" port ]` (RFC 9112 3.2, RFC
/// 3986 3.2.2)? The host is an IP literal (`[::1]`, `[v1.x]`) or a
/// non-empty reg-name (IPv4 addresses are reg-names too): unreserved
/// characters and sub-delims — so no userinfo (`@`), no space, no byte
/// outside ASCII. The port is digits up to 65535, and may be empty
/// (`host:`), as the grammar allows.
///
/// RFC 3986 lets a reg-name carry `%XX`, but a percent-encoded name is
/// another host once decoded (`%61dmin.test` is `admin.test` to a WHATWG
/// URL parser, not to routing), so `%` is refused (docs/language.md,
/// decision 43): internationalised names travel as punycode.
pub(crate) fn valid_host(b: &[u8]) -> bool {
    let (host_ok, rest) = match b.strip_prefix(b"[") {
        Some(inner) => match inner.iter().position(|&c| c == b']') {
            Some(end) => (ip_literal(&inner[..end]), &inner[end + 1..]),
            None => return false,
        },
        None => {
            let end = b.iter().position(|&c| c == b':').unwrap_or(b.len());
            (end > 0 && reg_name(&b[..end]), &b[end..])
        }
    };
    host_ok
        && match rest {
            [] => true,
            [b':', port @ ..] => {
                port.len() <= 5
                    && port.iter().all(u8::is_ascii_digit)
                    && port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535
            }
            _ => false,
        }
}

/// RFC 3986 `unreserved / sub-delims`, by byte: one load per byte of a
/// `Host`.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            );
        b += 1;
    }
    table
};

fn reg_name_byte(b: u8) -> bool {
    REG_NAME[usize::from(b)]
}

/// `reg-name = *( unreserved / sub-delims )`: RFC 3986's without
/// `pct-encoded` (see [`valid_host`]).
fn reg_name(b: &[u8]) -> bool {
    b.iter().all(|&c| reg_name_byte(c))
}

/// What stands between `[` and `]`: an IPv6 address, or `v` HEXDIG+ `.`
/// followed by unreserved, sub-delims or `:` (IPvFuture).
fn ip_literal(b: &[u8]) -> bool {
    if let Some(rest) = b.strip_prefix(b"v").or_else(|| b.strip_prefix(b"V")) {
        let hex = rest.iter().take_while(|c| c.is_ascii_hexdigit()).count();
        return match rest.get(hex..) {
            Some([b'.', tail @ ..]) => {
                hex > 0 && !tail.is_empty() && tail.iter().all(|&c| reg_name_byte(c) || c == b':')
            }
            _ => false,
        };
    }
    std::str::from_utf8(b).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

/// What a request's `Transfer-Encoding` makes of it (RFC 9112 6.1, 6.3):
/// `None` without one or with only `chunked`; `400` when `chunked` is not
/// the last coding, comes twice or the list is empty (the body's length
/// cannot be known); `501` when `chunked` ends a list that has another
/// coding (`gzip, chunked`): the gateway implements no other, and passing
/// the body on without it would corrupt it.
pub(crate) fn transfer_coding_refusal(headers: &HeaderMap) -> Option<StatusCode> {
    let mut codings = 0usize;
    let mut chunked = 0usize;
    let mut last_chunked = false;
    let mut present = false;
    for line in headers.get_all(header::TRANSFER_ENCODING) {
        present = true;
        for item in line.as_bytes().split(|b| *b == b',') {
            // A coding may carry parameters (`name;p=v`); empty items are
            // allowed and ignored (RFC 9110 5.6.1).
            let name = item.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
            if item.trim_ascii().is_empty() {
                continue;
            }
            codings += 1;
            last_chunked = name.eq_ignore_ascii_case(b"chunked");
            chunked += usize::from(last_chunked);
        }
    }
    if !present {
        return None;
    }
    if codings == 0 || !last_chunked || chunked != 1 {
        return Some(StatusCode::BAD_REQUEST);
    }
    (codings > 1).then_some(StatusCode::NOT_IMPLEMENTED)
}

/// May a field travel as a trailer? Not those that must be known before
/// the content, or that the gateway sets itself (RFC 9110 6.5.1): framing
/// and connection fields, routing and forwarding, authentication and
/// cookies, request modifiers and conditionals, response controls, content
/// format, and CORS (the gateway's). A field that could change how the
/// message was read or trusted is dropped, whatever the upstream says.
pub(crate) fn trailer_allowed(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(n.starts_with("access-control-")
        || n.starts_with("content-")
        || n.starts_with("if-")
        || n.starts_with("x-forwarded-")
        || matches!(
            n,
            "age"
                | "authentication-info"
                | "authorization"
                | "cache-control"
                | "connection"
                | "cookie"
                | "date"
                | "expect"
                | "expires"
                | "forwarded"
                | "host"
                | "keep-alive"
                | "location"
                | "max-forwards"
                | "pragma"
                | "proxy-authenticate"
                | "proxy-authentication-info"
                | "proxy-authorization"
                | "proxy-connection"
                | "range"
                | "retry-after"
                | "set-cookie"
                | "strict-transport-security"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "vary"
                | "www-authenticate"
        ))
}

/// Keeps in a response's `Trailer` header only the fields that will pass
/// (those [`trailer_allowed`] lets through and the route's response
/// transforms, `transformed`, do not name), so that it announces no field
/// the client will not get; removes it when none is left. Costs one lookup
/// when there is no `Trailer`.
pub(crate) fn filter_trailer(headers: &mut HeaderMap, transformed: Option<&[HeaderName]>) {
    if !headers.contains_key(header::TRAILER) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for line in headers.get_all(header::TRAILER) {
        for name in line.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            let Ok(name) = HeaderName::from_bytes(name) else {
                continue;
            };
            if trailer_allowed(&name) && !transformed.is_some_and(|t| t.contains(&name)) {
                if !kept.is_empty() {
                    kept.extend_from_slice(b", ");
                }
                kept.extend_from_slice(name.as_str().as_bytes());
            }
        }
    }
    headers.remove(header::TRAILER);
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(kept)) {
        if !v.is_empty() {
            headers.insert(header::TRAILER, v);
        }
    }
}

/// Does a `Trailer` value list `name` (any case)?
pub(crate) fn announces(trailer: &HeaderValue, name: &HeaderName) -> bool {
    lists_token(trailer, name.as_str().as_bytes())
}

/// Whether `peer` is one of the plan's `trust_proxies`: a proxy whose
/// forwarding headers are believed. The one test of trust, for every part
/// of the gateway that keeps a client-supplied header only from a proxy
/// (`X-Forwarded-For` here; a request ID elsewhere).
pub fn trusts_peer(plan: &gw_plan::Plan, peer: IpAddr) -> bool {
    plan.trusts_peer(peer)
}

/// The client's address, as nginx's `real_ip_recursive on` finds it: the
/// peer, unless it is one of `trust_proxies`; then `X-Forwarded-For` (all of
/// its lines, in order) walked from the right past trusted addresses, to the
/// first one that is not trusted — or to the leftmost when all are. An
/// entry that is not an address (`unknown`, garbage) stops the walk: the
/// client is then the last address verified. Entries may carry a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
///
/// With `trust_proxies`, `X-Forwarded-For` is also rewritten to the chain
/// that was verified — from the client found to the proxy before the peer
/// (the caller appends the peer) — so the upstream never gets addresses a
/// client made up; from an untrusted peer it is removed. Without
/// `trust_proxies` nothing is read or changed, and the client is the peer.
pub(crate) fn walk_forwarded(plan: &gw_plan::Plan, peer: IpAddr, headers: &mut HeaderMap) -> IpAddr {
    if plan.trust_proxies.is_empty() {
        return peer;
    }
    if !plan.trusts_peer(peer) {
        headers.remove(&X_FORWARDED_FOR);
        return peer;
    }
    let mut client = peer;
    let mut chain: Vec<IpAddr> = Vec::new();
    {
        let lines: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        for entry in lines.iter().rev().flat_map(|l| l.rsplit(',')) {
            let Some(ip) = forwarded_address(entry.trim()) else {
                break;
            };
            client = ip;
            chain.push(ip);
            if !plan.trusts_peer(ip) {
                break;
            }
        }
    }
    headers.remove(&X_FORWARDED_FOR);
    if !chain.is_empty() {
        let text: Vec<String> = chain.iter().rev().map(IpAddr::to_string).collect();
        if let Ok(v) = HeaderValue::try_from(text.join(", ")) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    client
}

/// One `X-Forwarded-For` entry as an address: `1.2.3.4`, `2001:db8::1`,
/// `1.2.3.4:80`, `[2001:db8::1]` or `[2001:db8::1]:80`; IPv4 written as
/// IPv6 (`::ffff:1.2.3.4`) is taken as IPv4.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok())?;
    Some(ip.to_canonical())
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Appends the client to `X-Forwarded-For` (all of its lines joined into
/// one); sets `X-Forwarded-Proto` and `X-Forwarded-Host`.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, tls: bool, host: Option<&HeaderValue>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_uri_host_and_an_optional_port() {
        for good in [
            "a",
            "example.com",
            "Example.COM.",
            "x-y_z~1.test:8080",
            "host:",
            "host:0",
            "host:65535",
            "127.0.0.1",
            "999.1.1.1",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]:443",
            "[::ffff:192.0.2.1]",
            "[v1.fe80::a+en1]",
            "a!$&'()*+,;=b",
        ] {
            assert!(valid_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "",
            ":80",
            "user@host",
            "user:pw@host:80",
            "host:http",
            "host:65536",
            "host:123456",
            "host:-1",
            "host:8080:9090",
            "ho st",
            "host/path",
            "host?q",
            "host#f",
            "%zz.test",
            "%4",
            // Percent-encoded names: a URL parser decodes them into another
            // host than the one routing would match.
            "p%41ss.test",
            "%61dmin.test",
            "admin%2etest",
            "[v1.a%41]",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "[]",
            "[::g]",
            "[v.x]",
            "[v1.]",
            "::1",
            "caf\u{e9}.test",
            "a\tb",
            "a\"b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    fn host_of(version: Version, target: &str, hosts: &[&str]) -> Result<Option<String>, BadHost> {
        let uri: Uri = target.parse().expect("a target");
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, HeaderValue::from_str(h).expect("a value"));
        }
        request_host(version, &uri, &headers).map(|h| h.map(|v| v.to_str().unwrap_or("").to_string()))
    }

    #[test]
    fn the_request_host_is_the_targets_authority_else_its_one_host() {
        use Version as V;
        let some = |h: &str| Ok(Some(h.to_string()));
        assert_eq!(host_of(V::HTTP_11, "/x", &["a.test"]), some("a.test"));
        assert_eq!(host_of(V::HTTP_11, "http://b.test/x", &["a.test"]), some("b.test"));
        assert_eq!(
            host_of(V::HTTP_11, "http://b.test:81/x", &["b.test:81"]),
            some("b.test:81")
        );
        assert_eq!(host_of(V::HTTP_11, "/x", &[]), Err(BadHost::Missing));
        assert_eq!(host_of(V::HTTP_11, "http://b.test/x", &[]), Err(BadHost::Missing));
        assert_eq!(host_of(V::HTTP_11, "/x", &["a", "a"]), Err(BadHost::Repeated));
        assert_eq!(host_of(V::HTTP_11, "/x", &["a@b"]), Err(BadHost::Invalid));
        assert_eq!(host_of(V::HTTP_11, "http://b.test/x", &["a b"]), Err(BadHost::Invalid));
        assert_eq!(
            host_of(V::HTTP_11, "http://u@b.test/x", &["b.test"]),
            Err(BadHost::Invalid)
        );
        assert_eq!(
            host_of(V::HTTP_11, "ftp://b.test/x", &["b.test"]),
            Err(BadHost::Invalid)
        );
        assert_eq!(host_of(V::HTTP_10, "/x", &[]), Ok(None));
        assert_eq!(host_of(V::HTTP_10, "http://b.test/x", &[]), some("b.test"));
        assert_eq!(host_of(V::HTTP_2, "http://b.test/x", &[]), some("b.test"));
        assert_eq!(host_of(V::HTTP_2, "http://b.test/x", &["B.Test"]), some("b.test"));
        assert_eq!(
            host_of(V::HTTP_2, "http://b.test/x", &["a.test"]),
            Err(BadHost::Conflict)
        );
        assert_eq!(host_of(V::HTTP_2, "/x", &[]), Err(BadHost::Missing));
        assert_eq!(host_of(V::HTTP_2, "/x", &["a.test"]), some("a.test"));
    }

    #[test]
    fn transfer_codings_other_than_one_final_chunked_are_refused() {
        let refusal = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for l in lines {
                headers.append(header::TRANSFER_ENCODING, HeaderValue::from_str(l).expect("a value"));
            }
            transfer_coding_refusal(&headers).map(|s| s.as_u16())
        };
        assert_eq!(refusal(&[]), None);
        assert_eq!(refusal(&["chunked"]), None);
        assert_eq!(refusal(&["Chunked"]), None);
        assert_eq!(refusal(&[" , chunked ,"]), None);
        assert_eq!(refusal(&["gzip, chunked"]), Some(501));
        assert_eq!(refusal(&["gzip", "chunked"]), Some(501));
        assert_eq!(refusal(&["x;q=1, chunked"]), Some(501));
        assert_eq!(refusal(&["chunked, gzip"]), Some(400));
        assert_eq!(refusal(&["gzip"]), Some(400));
        assert_eq!(refusal(&["chunked", "chunked"]), Some(400));
        assert_eq!(refusal(&[""]), Some(400));
    }

    #[test]
    fn fields_that_must_precede_the_content_never_travel_as_trailers() {
        for name in ["x-checksum", "grpc-status", "grpc-message", "server-timing", "digest"] {
            assert!(trailer_allowed(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "content-length",
            "transfer-encoding",
            "trailer",
            "te",
            "connection",
            "host",
            "authorization",
            "set-cookie",
            "cookie",
            "www-authenticate",
            "cache-control",
            "content-type",
            "content-encoding",
            "location",
            "x-forwarded-for",
            "access-control-allow-origin",
            "if-none-match",
        ] {
            assert!(!trailer_allowed(&HeaderName::from_static(name)), "{name}");
        }
    }
}
