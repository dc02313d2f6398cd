//! A buffered stderr for the access log: one `write(2)` per batch of lines
//! instead of one per request.
//!
//! Lines are appended to one in-memory buffer (a lock held only for the copy
//! of the line, never across IO); the buffer goes out when it passes
//! [`FLUSH_AT`] bytes (written by the thread that filled it), on
//! [`flush`], and at least every [`FLUSH_EVERY`] from a background thread, so
//! a line reaches stderr within that time even when traffic stops. Anything
//! that is not an access line should be written with [`write_through`],
//! which first flushes what is buffered, so the order of lines is kept and
//! warnings and errors appear at once.
//!
//! [`access`] formats an access line itself, byte for byte as tracing's
//! text or JSON formatter would (see [`set_access_format`]), without
//! tracing's machinery: a timestamp whose date and time of day are made
//! once a second, and no formatting traits for the plain fields.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The buffer is written out once it holds this many bytes.
pub(crate) const FLUSH_AT: usize = 32 * 1024;
/// The longest a buffered line waits.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(50);

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();

fn lock() -> std::sync::MutexGuard<'static, Vec<u8>> {
    BUFFER.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `bytes` to stderr, ignoring errors (a log must not fail requests).
fn emit(bytes: &[u8]) {
    if !bytes.is_empty() {
        let _ = std::io::stderr().lock().write_all(bytes);
    }
}

/// Appends one or more whole lines to the buffer.
pub(crate) fn append(line: &[u8]) {
    FLUSHER.call_once(|| {
        let _ = std::thread::Builder::new().name("gw-log-flush".into()).spawn(|| loop {
            std::thread::sleep(FLUSH_EVERY);
            flush();
        });
    });
    let full = {
        let mut buf = lock();
        if buf.capacity() == 0 {
            buf.reserve(FLUSH_AT + 4096);
        }
        buf.extend_from_slice(line);
        (buf.len() >= FLUSH_AT).then(|| std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT + 4096)))
    };
    if let Some(out) = full {
        emit(&out);
    }
}

/// Writes out what is buffered.
pub fn flush() {
    let out = {
        let mut buf = lock();
        if buf.is_empty() {
            return;
        }
        std::mem::take(&mut *buf)
    };
    emit(&out);
}

/// Writes `line` at once, after what is buffered.
pub(crate) fn write_through(line: &[u8]) {
    // Held while writing, so that no appended line can overtake this one.
    let mut buf = lock();
    let pending = std::mem::take(&mut *buf);
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&pending);
    let _ = err.write_all(line);
}

/// An `io::Write` over the buffer: `Buffered` appends, `Direct` writes
/// through. tracing's formatter writes each event as one `write_all`.
#[derive(Clone, Copy, Debug)]
pub enum Writer {
    Buffered,
    Direct,
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Writer::Buffered => append(buf),
            Writer::Direct => write_through(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        flush();
        Ok(())
    }
}

/// How [`access`] writes access lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFormat {
    /// Not at all: the caller logs through `tracing` (the default).
    Tracing = 0,
    /// `2026-01-02T03:04:05.123456Z  INFO gw::access: client=... status=200 micros=243`
    Text = 1,
    /// `{"timestamp":...,"level":"INFO","client":...,"target":"gw::access"}`
    Json = 2,
}

static ACCESS_FORMAT: AtomicU8 = AtomicU8::new(AccessFormat::Tracing as u8);

/// Makes [`access`] write lines itself (into the buffer) in `format`.
pub fn set_access_format(format: AccessFormat) {
    ACCESS_FORMAT.store(format as u8, Ordering::Relaxed);
}

/// One request, as the access log records it. Strings from the request
/// (host, path, user agent, subject) are written escaped: quoted with
/// control characters as `\u{1b}` in text, as JSON strings in JSON.
pub(crate) struct AccessLine<'a> {
    pub client: IpAddr,
    pub method: &'a str,
    /// The request's host as sent (raw bytes, bounded).
    pub host: &'a [u8],
    pub path: &'a str,
    pub protocol: &'static str,
    pub route: &'a str,
    pub upstream: &'a str,
    pub status: u16,
    pub micros: u64,
    /// From the first attempt upstream to the answer's head.
    pub upstream_micros: Option<u64>,
    pub retries: u32,
    /// The request body's declared length.
    pub bytes_in: Option<u64>,
    /// The response body's length, when known before it is sent.
    pub bytes_out: Option<u64>,
    /// The request's `User-Agent` (raw bytes, bounded).
    pub user_agent: &'a [u8],
    /// Who authenticated: a JWT's `sub`, an API key's name; `-` otherwise.
    pub subject: &'a str,
    /// Why the gateway refused or failed the request; `-` otherwise.
    pub refused: &'a str,
    pub request_id: &'a str,
    pub trace_id: &'a str,
}

impl AccessLine<'_> {
    /// The line as a tracing event (when no format is set: tests, embedders).
    pub(crate) fn trace(&self) {
        tracing::info!(
            target: "gw::access",
            client = %self.client,
            method = self.method,
            host = %String::from_utf8_lossy(self.host),
            path = self.path,
            protocol = self.protocol,
            route = self.route,
            upstream = self.upstream,
            status = self.status,
            micros = self.micros,
            upstream_micros = self.upstream_micros,
            retries = self.retries,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            user_agent = %String::from_utf8_lossy(self.user_agent),
            subject = self.subject,
            refused = self.refused,
            request_id = self.request_id,
            trace_id = self.trace_id,
        );
    }
}

/// Writes the access line when a format is set; false when the caller
/// should log it through `tracing` instead.
pub(crate) fn access(line: &AccessLine<'_>) -> bool {
    let json = match ACCESS_FORMAT.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => return false,
    };
    thread_local! {
        static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    }
    LINE.with(|buf| {
        let Ok(mut out) = buf.try_borrow_mut() else {
            return false;
        };
        out.clear();
        format_access(&mut out, line, json, SystemTime::now());
        append(&out);
        true
    })
}

fn format_access(out: &mut Vec<u8>, l: &AccessLine<'_>, json: bool, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let host = String::from_utf8_lossy(l.host);
    let agent = String::from_utf8_lossy(l.user_agent);
    if json {
        out.extend_from_slice(br#"{"timestamp":""#);
        timestamp(out, since);
        out.extend_from_slice(br#"","level":"INFO","client":""#);
        client_ip(out, l.client);
        out.extend_from_slice(br#"","method":"#);
        json_str(out, l.method);
        out.extend_from_slice(br#","host":"#);
        json_str(out, &host);
        out.extend_from_slice(br#","path":"#);
        json_str(out, l.path);
        out.extend_from_slice(br#","protocol":"#);
        json_str(out, l.protocol);
        out.extend_from_slice(br#","route":"#);
        json_str(out, l.route);
        out.extend_from_slice(br#","upstream":"#);
        json_str(out, l.upstream);
        out.extend_from_slice(br#","status":"#);
        number(out, u64::from(l.status));
        out.extend_from_slice(br#","micros":"#);
        number(out, l.micros);
        out.extend_from_slice(br#","upstream_micros":"#);
        json_number(out, l.upstream_micros);
        out.extend_from_slice(br#","retries":"#);
        number(out, u64::from(l.retries));
        out.extend_from_slice(br#","bytes_in":"#);
        json_number(out, l.bytes_in);
        out.extend_from_slice(br#","bytes_out":"#);
        json_number(out, l.bytes_out);
        out.extend_from_slice(br#","user_agent":"#);
        json_str(out, &agent);
        out.extend_from_slice(br#","subject":"#);
        json_str(out, l.subject);
        out.extend_from_slice(br#","refused":"#);
        json_str(out, l.refused);
        out.extend_from_slice(br#","request_id":"#);
        json_str(out, l.request_id);
        out.extend_from_slice(br#","trace_id":"#);
        json_str(out, l.trace_id);
        out.extend_from_slice(b",\"target\":\"gw::access\"}\n");
    } else {
        timestamp(out, since);
        out.extend_from_slice(b"  INFO gw::access: client=");
        client_ip(out, l.client);
        out.extend_from_slice(b" method=");
        out.extend_from_slice(l.method.as_bytes());
        out.extend_from_slice(b" host=");
        debug_str(out, &host);
        out.extend_from_slice(b" path=");
        debug_str(out, l.path);
        out.extend_from_slice(b" protocol=");
        out.extend_from_slice(l.protocol.as_bytes());
        out.extend_from_slice(b" route=");
        debug_str(out, l.route);
        out.extend_from_slice(b" upstream=");
        debug_str(out, l.upstream);
        out.extend_from_slice(b" status=");
        number(out, u64::from(l.status));
        out.extend_from_slice(b" micros=");
        number(out, l.micros);
        out.extend_from_slice(b" upstream_micros=");
        text_number(out, l.upstream_micros);
        out.extend_from_slice(b" retries=");
        number(out, u64::from(l.retries));
        out.extend_from_slice(b" bytes_in=");
        text_number(out, l.bytes_in);
        out.extend_from_slice(b" bytes_out=");
        text_number(out, l.bytes_out);
        out.extend_from_slice(b" user_agent=");
        debug_str(out, &agent);
        out.extend_from_slice(b" subject=");
        debug_str(out, l.subject);
        out.extend_from_slice(b" refused=");
        out.extend_from_slice(l.refused.as_bytes());
        out.extend_from_slice(b" request_id=");
        out.extend_from_slice(l.request_id.as_bytes());
        out.extend_from_slice(b" trace_id=");
        out.extend_from_slice(l.trace_id.as_bytes());
        out.push(b'\n');
    }
}

/// A number that may be absent: `-` in text.
fn text_number(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => number(out, v),
        None => out.push(b'-'),
    }
}

/// A number that may be absent: `null` in JSON.
fn json_number(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => number(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// The client's address as `Display` writes it; IPv4 without the
/// formatting machinery (it is on every line).
fn client_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// `2026-01-02T03:04:05.123456Z` (UTC, microseconds); the part up to the
/// seconds is made once a second per thread.
fn timestamp(out: &mut Vec<u8>, since: Duration) {
    thread_local! {
        static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
    }
    let secs = since.as_secs();
    SECOND.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let mut text = Vec::with_capacity(19);
            let (y, m, d) = crate::text::civil_from_days((secs / 86_400) as i64);
            let t = secs % 86_400;
            let _ = write!(
                text,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                t / 3600,
                t / 60 % 60,
                t % 60
            );
            if let Ok(bytes) = <[u8; 19]>::try_from(text.as_slice()) {
                *c = (secs, bytes);
            }
        }
        out.extend_from_slice(&c.1);
    });
    let mut digits = [b'0'; 6];
    let mut v = since.subsec_micros();
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.push(b'.');
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

fn number(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(crate::text::decimal(v, &mut [0; 20]));
}

/// Printable ASCII other than `"` and `\` needs no escape, in Rust's
/// `Debug` of a string or in JSON.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `s` as Rust's `{:?}` writes it (tracing's text format of a string field).
fn debug_str(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if !plain(s) {
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: bool, path: &str) -> String {
        line_with(json, path, b"shop.example", b"curl/8.5")
    }

    fn line_with(json: bool, path: &str, host: &[u8], user_agent: &[u8]) -> String {
        let l = AccessLine {
            client: IpAddr::from([127, 0, 0, 1]),
            method: "GET",
            host,
            path,
            protocol: "HTTP/1.1",
            route: "GET /a/{id}",
            upstream: "127.0.0.1:9001",
            status: 200,
            micros: 243,
            upstream_micros: Some(200),
            retries: 1,
            bytes_in: None,
            bytes_out: Some(12),
            user_agent,
            subject: "alice",
            refused: "-",
            request_id: "0af7651916cd43dd8448eb211c80319c",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        };
        let mut out = Vec::new();
        format_access(
            &mut out,
            &l,
            json,
            UNIX_EPOCH + Duration::new(1_795_941_233, 210_973_000),
        );
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn access_lines_read_as_tracings_text_and_json_formatters_write_them() {
        assert_eq!(
            line(false, r#"/a"b\c"#),
            r#"2026-11-29T08:33:53.210973Z  INFO gw::access: client=127.0.0.1 method=GET host="shop.example" path="/a\"b\\c" protocol=HTTP/1.1 route="GET /a/{id}" upstream="127.0.0.1:9001" status=200 micros=243 upstream_micros=200 retries=1 bytes_in=- bytes_out=12 user_agent="curl/8.5" subject="alice" refused=- request_id=0af7651916cd43dd8448eb211c80319c trace_id=4bf92f3577b34da6a3ce929d0e0e4736"#.to_string() + "\n"
        );
        assert_eq!(
            line(true, r#"/a"b\c"#),
            r#"{"timestamp":"2026-11-29T08:33:53.210973Z","level":"INFO","client":"127.0.0.1","method":"GET","host":"shop.example","path":"/a\"b\\c","protocol":"HTTP/1.1","route":"GET /a/{id}","upstream":"127.0.0.1:9001","status":200,"micros":243,"upstream_micros":200,"retries":1,"bytes_in":null,"bytes_out":12,"user_agent":"curl/8.5","subject":"alice","refused":"-","request_id":"0af7651916cd43dd8448eb211c80319c","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","target":"gw::access"}"#.to_string() + "\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line(true, "/\u{1}x")).unwrap_or_default();
        assert_eq!(parsed["path"], "/\u{1}x");
    }

    #[test]
    fn control_characters_from_the_request_are_escaped() {
        // A user agent or host that tries to forge a second log line, or to
        // drive the terminal.
        let text = line_with(
            false,
            "/",
            b"h\x1b[31m",
            b"x\n2026-01-01T00:00:00Z  INFO gw::access: fake\xff",
        );
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(r#"host="h\u{1b}[31m""#), "{text}");
        assert!(text.contains(r#"user_agent="x\n2026"#), "{text}");
        let json = line_with(true, "/", b"h\x1b[31m", b"x\ny\xff");
        assert_eq!(json.matches('\n').count(), 1, "one line: {json}");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(parsed["host"], "h\u{1b}[31m");
        assert_eq!(parsed["user_agent"], "x\ny\u{fffd}");
    }

    #[test]
    fn client_addresses_read_as_display_writes_them() {
        let addrs: Vec<IpAddr> = vec![
            IpAddr::from([0, 0, 0, 0]),
            IpAddr::from([9, 10, 99, 100]),
            IpAddr::from([255, 200, 109, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            IpAddr::from([0x2001u16, 0xdb8, 0, 0, 0, 0xff00, 0x42, 0x8329]),
        ];
        for ip in addrs {
            let mut out = Vec::new();
            client_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap_or_default(), ip.to_string());
        }
    }
}
