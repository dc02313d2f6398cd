//! The request's wire as RFC 9112 and RFC 9113 say, on every path a
//! request can take: the gateway's own HTTP/1.1 loop (plain and TLS), the
//! hyper fallback it hands a connection to (a chunked body, first on a
//! connection or later on one already handed over, plain and TLS), and
//! HTTP/2 (h2c and h2 over TLS).
//!
//! - `Host` (RFC 9112 3.2, RFC 9113 8.3.1): an HTTP/1.1 request without one,
//!   with two, or with one that is not `uri-host[:port]` gets `400` and a
//!   close; an absolute-form target's authority replaces `Host`, and the
//!   upstream gets the host the request was routed by; on HTTP/2 a `Host`
//!   that differs from `:authority` is `400`.
//! - Transfer codings (RFC 9112 6.1): a request coding besides `chunked` is
//!   `501`, never forwarded as plain `chunked`; an upstream's is `502`.
//! - Trailers (RFC 9110 6.5): an upstream's chunked trailer section reaches
//!   an HTTP/1.1 client that sent `TE: trailers` (the fields the upstream
//!   announced in `Trailer`) and an HTTP/2 client, without the fields that
//!   may not be trailers or that the route's response transforms name;
//!   a client's request trailers reach no upstream (HTTP/1.1 or `http2`).
//!
//! Every wait is bounded.

use crate::live::{Live, Upstream};
use crate::proxy_support::within;
use crate::serve_harness::{tls_connector, tls_fixture};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------ clients

/// The ways an HTTP/1.x request reaches the proxy.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    /// The gateway's own loop.
    Fast,
    /// hyper, taking over at this request (it has a chunked body).
    Fallback,
    /// hyper, on a connection it took over at an earlier request.
    FallbackLater,
    /// The gateway's own loop over TLS.
    Tls,
    /// hyper over TLS.
    TlsFallback,
}

const PATHS: [Path; 5] = [
    Path::Fast,
    Path::Fallback,
    Path::FallbackLater,
    Path::Tls,
    Path::TlsFallback,
];

/// One response off the wire.
#[derive(Debug, Default)]
struct Resp {
    status: u16,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The trailer section's lines, names lower-cased.
    trailers: Vec<(String, String)>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `Host` the upstream saw (its echo).
    fn upstream_host(&self) -> String {
        self.json()["headers"]["host"].as_str().unwrap_or_default().to_string()
    }
}

fn lines(text: &str) -> Vec<(String, String)> {
    text.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The last response in `bytes` (earlier ones answered warm-up requests):
/// its head, and its body by `Content-Length`, chunked (with its trailer
/// section) or up to the end.
fn parse_last(bytes: &[u8], head_only: bool) -> Resp {
    let mut at = 0;
    let mut last = Resp::default();
    while let Some(end) = find(&bytes[at..], b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[at..at + end]).into_owned();
        let mut resp = Resp {
            status: head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("a status line: {head:?}")),
            headers: lines(head.split_once("\r\n").map_or("", |(_, rest)| rest)),
            ..Resp::default()
        };
        at += end + 4;
        if head_only || resp.status == 100 {
        } else if let Some(n) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            resp.body = bytes[at..at + n].to_vec();
            at += n;
        } else if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let line = find(&bytes[at..], b"\r\n").expect("a chunk size line");
                let size = usize::from_str_radix(std::str::from_utf8(&bytes[at..at + line]).expect("hex"), 16)
                    .expect("a chunk size");
                at += line + 2;
                if size == 0 {
                    let end = find(&bytes[at..], b"\r\n\r\n").map_or(0, |e| e + 2);
                    let section = String::from_utf8_lossy(&bytes[at..at + end]).into_owned();
                    resp.trailers = lines(&section);
                    at += end + 2;
                    break;
                }
                resp.body.extend_from_slice(&bytes[at..at + size]);
                assert_eq!(&bytes[at + size..at + size + 2], b"\r\n", "a chunk ends in CRLF");
                at += size + 2;
            }
        } else {
            resp.body = bytes[at..].to_vec();
            at = bytes.len();
        }
        if resp.status != 100 {
            last = resp;
        }
        if at >= bytes.len() {
            break;
        }
    }
    last
}

/// Writes `request` and reads until the gateway closes (every request here
/// asks for the close, or is refused with one).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &[u8]) -> Vec<u8> {
    within(Duration::from_secs(10), "an answer and the close", async {
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    })
    .await
}

async fn tls(addr: SocketAddr, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("a.gw.test").expect("name");
    within(
        Duration::from_secs(5),
        "the TLS handshake",
        tls_connector(&[alpn]).connect(name, tcp),
    )
    .await
    .expect("handshake")
}

/// A request on `path`: `line` is the request line without its version,
/// `head` its header lines (each ending in CRLF). The fallback paths send
/// a chunked body (`abc`); a later request on a taken-over connection
/// follows a warm-up one that hands it over.
fn request_bytes(path: Path, line: &str, version: &str, head: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if path == Path::FallbackLater {
        out.extend_from_slice(
            b"POST /warm-up HTTP/1.1\r\nhost: public.test\r\ntransfer-encoding: chunked\r\n\r\n1\r\nw\r\n0\r\n\r\n",
        );
    }
    match path {
        Path::Fast | Path::Tls => {
            out.extend_from_slice(format!("{line} {version}\r\n{head}connection: close\r\n\r\n").as_bytes())
        }
        _ => out.extend_from_slice(
            format!(
                "{line} {version}\r\n{head}connection: close\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            )
            .as_bytes(),
        ),
    }
    out
}

/// Sends a request on `path` (to the plain listener, `addrs[0]`, or the TLS
/// one, `addrs[1]`) and reads its answer.
async fn h1(live: &Live, path: Path, line: &str, version: &str, head: &str) -> Resp {
    let bytes = request_bytes(path, line, version, head);
    let out = match path {
        Path::Tls | Path::TlsFallback => exchange(tls(live.addrs[1], b"http/1.1").await, &bytes).await,
        _ => exchange(TcpStream::connect(live.addrs[0]).await.expect("connect"), &bytes).await,
    };
    parse_last(&out, line.starts_with("HEAD"))
}

/// An HTTP/2 exchange (h2c with prior knowledge, or h2 over TLS by ALPN):
/// `uri` gives `:scheme`, `:authority` and `:path`; `host` adds a `Host`.
async fn h2(live: &Live, tls_path: bool, uri: &str, host: Option<&str>) -> Resp {
    let req = {
        let mut b = Request::get(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Full::new(Bytes::new())).expect("request")
    };
    within(Duration::from_secs(10), "an h2 answer", async {
        let resp = if tls_path {
            let io = TokioIo::new(tls(live.addrs[1], b"h2").await);
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            send.send_request(req).await
        } else {
            let io = TokioIo::new(TcpStream::connect(live.addrs[0]).await.expect("connect"));
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2c handshake");
            tokio::spawn(conn);
            send.send_request(req).await
        };
        let resp = resp.expect("an h2 response");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let collected = resp.into_body().collect().await.expect("the body");
        let trailers = collected
            .trailers()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Resp {
            status,
            headers,
            body: collected.to_bytes().to_vec(),
            trailers,
        }
    })
    .await
}

/// A gateway with a plain and a TLS listener (on another loopback address:
/// two listeners may not share `127.0.0.1:0`) in front of `up`, with
/// `routes`.
async fn gateway(up: SocketAddr, routes: &str) -> Live {
    let text = format!(
        "listen 127.0.0.1:0
         listen 127.0.0.2:0 tls {{ cert \"{}\" key \"{}\" }}
         upstream up {{ server {up} }}
         auth admins api_key {{ keys \"k-admin\" }}
         {routes}",
        tls_fixture("a.crt"),
        tls_fixture("a.key"),
    );
    let files: Vec<(String, Vec<u8>)> = ["a.crt", "a.key"]
        .iter()
        .map(|n| (tls_fixture(n), std::fs::read(tls_fixture(n)).expect("a TLS fixture")))
        .collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    Live::start_with(&text, &refs).await
}

/// A host-specific route with `auth` beside a public catch-all, both to one
/// virtual-hosted upstream: the setting in which routing by one host and
/// forwarding another skips the `auth`.
const VHOSTS: &str = "route /{*rest} host \"admin.test\" -> up { auth admins }
                      route /{*rest} -> up";

// ------------------------------------------------------------------ Host

#[tokio::test]
async fn every_http_1_1_path_refuses_a_missing_repeated_or_invalid_host_with_400_and_a_close() {
    let up = Upstream::named("up").await;
    let live = gateway(up.addr, VHOSTS).await;
    let bad: &[&str] = &[
        "",
        "host: public.test\r\nhost: public.test\r\n",
        "host: public.test\r\nHost: admin.test\r\n",
        "host: \r\n",
        "host: user@public.test\r\n",
        "host: user:pw@admin.test\r\n",
        "host: public.test:http\r\n",
        "host: public.test:99999\r\n",
        "host: public.test:123456\r\n",
        "host: public.test:-1\r\n",
        "host: public .test\r\n",
        "host: public.test/path\r\n",
        "host: public.test?q\r\n",
        "host: pub%zzlic.test\r\n",
        "host: %61dmin.test\r\n",
        "host: p%41blic.test\r\n",
        "host: [::1\r\n",
        "host: [::1]x\r\n",
        "host: [not-an-address]\r\n",
        "host: ::1\r\n",
        "host: caf\u{e9}.test\r\n",
        "host: public.test, admin.test\r\n",
    ];
    for path in PATHS {
        for head in bad {
            let before = up.count();
            let got = h1(&live, path, "GET /x", "HTTP/1.1", head).await;
            let extra = usize::from(path == Path::FallbackLater);
            assert_eq!(got.status, 400, "{path:?} {head:?}");
            assert_eq!(got.header("connection"), Some("close"), "{path:?} {head:?}");
            assert_eq!(got.json()["status"], 400, "the gateway's own 400: {path:?} {head:?}");
            assert_eq!(up.count(), before + extra, "not forwarded: {path:?} {head:?}");
        }
    }
}

#[tokio::test]
async fn valid_hosts_route_by_name_whatever_their_case_port_or_trailing_dot() {
    let up = Upstream::named("up").await;
    let live = gateway(up.addr, VHOSTS).await;
    // (Host line, the status: 401 where the admin route's auth applies)
    let cases: &[(&str, u16)] = &[
        ("public.test", 200),
        ("PUBLIC.Test.", 200),
        ("public.test:", 200),
        ("[::1]:8080", 200),
        ("[::1]", 200),
        ("[v1.fe80::a+en1]", 200),
        ("127.0.0.1:65535", 200),
        ("admin.test", 401),
        ("ADMIN.test", 401),
        ("admin.test.", 401),
        ("Admin.Test.:8080", 401),
        ("admin.test:", 401),
    ];
    for path in PATHS {
        for (host, status) in cases {
            let got = h1(&live, path, "GET /x", "HTTP/1.1", &format!("host: {host}\r\n")).await;
            assert_eq!(
                got.status,
                *status,
                "{path:?} {host:?}: {:?}",
                String::from_utf8_lossy(&got.body)
            );
            if *status == 200 {
                assert_eq!(
                    got.upstream_host(),
                    *host,
                    "the upstream gets the host as sent: {path:?}"
                );
            }
        }
        let key = h1(
            &live,
            path,
            "GET /x",
            "HTTP/1.1",
            "host: admin.test\r\nx-api-key: k-admin\r\n",
        )
        .await;
        assert_eq!(
            (key.status, key.upstream_host().as_str()),
            (200, "admin.test"),
            "{path:?}"
        );
    }
}

#[tokio::test]
async fn an_absolute_form_target_replaces_host_for_routing_and_forwarding_alike() {
    let up = Upstream::named("up").await;
    let live = gateway(up.addr, VHOSTS).await;
    for path in PATHS {
        // Routed as public.test: the upstream must be told public.test, not
        // the admin host whose route has the auth.
        let got = h1(
            &live,
            path,
            "GET http://public.test/secret?q=1",
            "HTTP/1.1",
            "host: admin.test\r\n",
        )
        .await;
        assert_eq!(got.status, 200, "{path:?}");
        let seen = got.json();
        assert_eq!(seen["headers"]["host"], "public.test", "{path:?}");
        assert_eq!(seen["headers"]["x-forwarded-host"], "public.test", "{path:?}");
        assert_eq!(seen["path"], "/secret?q=1", "origin form upstream: {path:?}");
        // The other way round, the admin route's auth applies.
        let got = h1(
            &live,
            path,
            "GET http://admin.test/secret",
            "HTTP/1.1",
            "host: public.test\r\n",
        )
        .await;
        assert_eq!(got.status, 401, "{path:?}");
        let got = h1(
            &live,
            path,
            "GET https://Admin.Test:443/secret",
            "HTTP/1.1",
            "host: public.test\r\n",
        )
        .await;
        assert_eq!(got.status, 401, "{path:?}");
        // Host is still required and checked (RFC 9112 3.2), and the
        // target's authority must be a host too.
        for (line, head) in [
            ("GET http://public.test/secret", ""),
            ("GET http://public.test/secret", "host: a@b\r\n"),
            ("GET http://user@public.test/secret", "host: public.test\r\n"),
            ("GET ftp://public.test/secret", "host: public.test\r\n"),
            // A percent-encoded name is another host to a URL parser
            // (`admin.test`): never routed as something else.
            ("GET http://%61dmin.test/secret", "host: public.test\r\n"),
            ("GET http://%61dmin.test/secret", "host: %61dmin.test\r\n"),
        ] {
            let got = h1(&live, path, line, "HTTP/1.1", head).await;
            assert_eq!(got.status, 400, "{path:?} {line} {head:?}");
        }
    }
}

#[tokio::test]
async fn http_1_0_without_host_is_served_by_hostless_routes_only() {
    let up = Upstream::named("up").await;
    let live = gateway(up.addr, VHOSTS).await;
    for path in [Path::Fast, Path::Tls] {
        let got = h1(&live, path, "GET /x", "HTTP/1.0", "").await;
        assert_eq!(got.status, 200, "{path:?}");
        assert_eq!(
            got.upstream_host(),
            up.addr.to_string(),
            "the server's address: {path:?}"
        );
        // Its absolute-form target still names a host, and that host routes.
        let got = h1(&live, path, "GET http://admin.test/x", "HTTP/1.0", "").await;
        assert_eq!(got.status, 401, "{path:?}");
        // A Host it does send is checked like any other.
        let got = h1(&live, path, "GET /x", "HTTP/1.0", "host: a b\r\n").await;
        assert_eq!(got.status, 400, "{path:?}");
    }
}

#[tokio::test]
async fn http_2_takes_authority_and_refuses_a_host_that_differs_from_it() {
    let up = Upstream::named("up").await;
    let live = gateway(up.addr, VHOSTS).await;
    for tls_path in [false, true] {
        let got = h2(&live, tls_path, "http://public.test/x", None).await;
        assert_eq!(
            (got.status, got.upstream_host().as_str()),
            (200, "public.test"),
            "tls {tls_path}"
        );
        let got = h2(&live, tls_path, "http://public.test/x", Some("public.test")).await;
        assert_eq!(got.status, 200, "the same host twice, tls {tls_path}");
        let got = h2(&live, tls_path, "http://public.test/x", Some("admin.test")).await;
        assert_eq!(got.status, 400, "Host differs from :authority, tls {tls_path}");
        assert_eq!(got.header("connection"), None, "no Connection on HTTP/2");
        let got = h2(&live, tls_path, "http://admin.test/x", Some("public.test")).await;
        assert_eq!(got.status, 400, "tls {tls_path}");
        let got = h2(&live, tls_path, "http://admin.test/x", None).await;
        assert_eq!(got.status, 401, "tls {tls_path}");
        let got = h2(&live, tls_path, "http://user@public.test/x", None).await;
        assert_eq!(got.status, 400, "userinfo in :authority, tls {tls_path}");
        let got = h2(&live, tls_path, "http://public.test/x", Some("a@b")).await;
        assert_eq!(got.status, 400, "tls {tls_path}");
    }
}

#[test]
fn finding_the_host_of_an_ordinary_request_allocates_nothing() {
    use gw_runtime::request::request_host;
    use hyper::header::{HeaderMap, HeaderValue, HOST};
    use hyper::{Uri, Version};
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("Api.Example.com.:8080"));
    let origin: Uri = "/users/7?x=1".parse().expect("a target");
    let absolute: Uri = "http://Api.Example.com.:8080/users/7".parse().expect("a target");
    let allocations = crate::plan::alloc_count::during(|| {
        for version in [Version::HTTP_11, Version::HTTP_10] {
            // The origin form, and an absolute form naming the same host.
            for uri in [&origin, &absolute] {
                let host = request_host(version, uri, &headers);
                assert!(matches!(&host, Ok(Some(h)) if h == "Api.Example.com.:8080"));
                std::hint::black_box(host).ok();
            }
        }
    });
    assert_eq!(allocations, 0);
}

// ------------------------------------------------------------------ transfer codings

#[tokio::test]
async fn a_transfer_coding_besides_chunked_is_501_and_never_forwarded() {
    let up = Upstream::start(|req| async move {
        let body = crate::proxy_support::body_or_empty(req).await;
        hyper::Response::new(gw_runtime::body::full(body))
    })
    .await;
    let live = gateway(up.addr, "route /{*rest} -> up").await;
    let send = |path: Path, codings: &'static str| {
        let live = &live;
        async move {
            let mut bytes = Vec::new();
            if path == Path::FallbackLater {
                bytes.extend_from_slice(
                    b"POST /warm-up HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n1\r\nw\r\n0\r\n\r\n",
                );
            }
            bytes.extend_from_slice(
                format!("POST /x HTTP/1.1\r\nhost: h\r\n{codings}connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                    .as_bytes(),
            );
            let out = match path {
                Path::TlsFallback => exchange(tls(live.addrs[1], b"http/1.1").await, &bytes).await,
                _ => exchange(TcpStream::connect(live.addrs[0]).await.expect("connect"), &bytes).await,
            };
            parse_last(&out, false)
        }
    };
    for path in [Path::Fallback, Path::FallbackLater, Path::TlsFallback] {
        let extra = usize::from(path == Path::FallbackLater);
        for codings in [
            "transfer-encoding: gzip, chunked\r\n",
            "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: identity, chunked\r\n",
            "transfer-encoding: x-custom;p=1, chunked\r\n",
        ] {
            let before = up.count();
            let got = send(path, codings).await;
            assert_eq!(got.status, 501, "{path:?} {codings:?}");
            assert_eq!(got.header("connection"), Some("close"), "{path:?} {codings:?}");
            assert_eq!(up.count(), before + extra, "not forwarded: {path:?} {codings:?}");
        }
        for codings in [
            "transfer-encoding: chunked, chunked\r\n",
            "transfer-encoding: chunked, gzip\r\n",
        ] {
            let before = up.count();
            assert_eq!(send(path, codings).await.status, 400, "{path:?} {codings:?}");
            assert_eq!(up.count(), before + extra, "not forwarded: {path:?} {codings:?}");
        }
        for codings in ["transfer-encoding: chunked\r\n", "transfer-encoding: , Chunked\r\n"] {
            let got = send(path, codings).await;
            assert_eq!(
                (got.status, got.body.as_slice()),
                (200, &b"hello"[..]),
                "{path:?} {codings:?}"
            );
        }
    }
    let rejected = |r: gw_runtime::metrics::Rejection| {
        live.gateway.shared().metrics.rejections[r as usize].load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(rejected(gw_runtime::metrics::Rejection::NotImplemented), 12);
}

// ------------------------------------------------------------------ a raw upstream

/// An upstream that reads each request (head, then a chunked or
/// `Content-Length` body) and answers with the bytes `answer` gives for its
/// path, then closes.
async fn raw_upstream(answer: fn(&str) -> &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let read = async {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        let n = s.read(&mut chunk).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = lines(&head)
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse::<usize>().ok());
                    let chunked = head.contains("transfer-encoding: chunked");
                    while (chunked && !buf.ends_with(b"0\r\n\r\n")) || length.is_some_and(|n| buf.len() < end + n) {
                        let n = s.read(&mut chunk).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    head.split(' ').nth(1).map(str::to_string)
                };
                if let Ok(Some(path)) = tokio::time::timeout(Duration::from_secs(5), read).await {
                    let _ = s.write_all(answer(&path)).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

// ------------------------------------------------------------------ trailers

fn trailered(path: &str) -> &'static [u8] {
    match path {
        // Data, then trailer fields: one announced and permitted, one
        // announced but never a trailer, one the route removes, one not
        // announced.
        "/t" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum, set-cookie, x-hidden\r\n\
              connection: close\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\nset-cookie: s=1\r\nx-hidden: 1\r\n\
              x-unannounced: 2\r\n\r\n"
        }
        // Only a trailer section: no data at all.
        "/only" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\nconnection: close\r\n\r\n\
              0\r\nx-checksum: none\r\n\r\n"
        }
        // Announces only fields that never pass.
        "/drop" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: set-cookie, x-hidden\r\n\
              connection: close\r\n\r\n5\r\nhello\r\n0\r\nset-cookie: s=1\r\nx-hidden: 1\r\n\r\n"
        }
        "/gzip" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        }
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    }
}

const TRAILER_ROUTES: &str = "route /{*rest} -> up { remove response header x-hidden }";

#[tokio::test]
async fn upstream_trailers_reach_an_http_1_1_client_that_takes_them_on_every_path() {
    let live = gateway(raw_upstream(trailered).await, TRAILER_ROUTES).await;
    for path in PATHS {
        let got = h1(&live, path, "GET /t", "HTTP/1.1", "host: h\r\nte: trailers\r\n").await;
        assert_eq!((got.status, got.body.as_slice()), (200, &b"hello"[..]), "{path:?}");
        assert_eq!(got.header("transfer-encoding"), Some("chunked"), "{path:?}");
        assert_eq!(
            got.header("trailer"),
            Some("x-checksum"),
            "announces only what may pass: {path:?}"
        );
        assert_eq!(
            got.trailers,
            vec![("x-checksum".to_string(), "abc".to_string())],
            "announced and permitted only: {path:?}"
        );
        let got = h1(&live, path, "GET /only", "HTTP/1.1", "host: h\r\nte: trailers\r\n").await;
        assert_eq!((got.status, got.body.len()), (200, 0), "{path:?}");
        assert_eq!(
            got.trailers,
            vec![("x-checksum".to_string(), "none".to_string())],
            "{path:?}"
        );
        let got = h1(&live, path, "GET /drop", "HTTP/1.1", "host: h\r\nte: trailers\r\n").await;
        assert_eq!((got.status, got.body.as_slice()), (200, &b"hello"[..]), "{path:?}");
        assert_eq!(
            (got.header("trailer"), got.trailers.len()),
            (None, 0),
            "nothing announced, nothing sent: {path:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_did_not_ask_for_trailers_gets_the_body_without_them() {
    let live = gateway(raw_upstream(trailered).await, TRAILER_ROUTES).await;
    for path in PATHS {
        let got = h1(&live, path, "GET /t", "HTTP/1.1", "host: h\r\n").await;
        assert_eq!((got.status, got.body.as_slice()), (200, &b"hello"[..]), "{path:?}");
        assert_eq!(got.trailers, Vec::new(), "{path:?}");
        assert_eq!(
            got.header("trailer"),
            None,
            "nothing announced that does not come: {path:?}"
        );
    }
    // HTTP/1.0 has no chunked framing to carry them.
    let got = h1(&live, Path::Fast, "GET /t", "HTTP/1.0", "host: h\r\nte: trailers\r\n").await;
    assert_eq!((got.status, got.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!((got.header("transfer-encoding"), got.header("trailer")), (None, None));
}

#[tokio::test]
async fn upstream_trailers_reach_an_http_2_client() {
    let live = gateway(raw_upstream(trailered).await, TRAILER_ROUTES).await;
    for tls_path in [false, true] {
        let got = h2(&live, tls_path, "http://h/t", None).await;
        assert_eq!(
            (got.status, got.body.as_slice()),
            (200, &b"hello"[..]),
            "tls {tls_path}"
        );
        let mut trailers = got.trailers.clone();
        trailers.sort();
        assert_eq!(
            trailers,
            vec![
                ("x-checksum".to_string(), "abc".to_string()),
                ("x-unannounced".to_string(), "2".to_string())
            ],
            "every permitted field, none the route removes: tls {tls_path}"
        );
        assert_eq!(
            got.header("trailer"),
            Some("x-checksum"),
            "announces only what may pass: tls {tls_path}"
        );
        let got = h2(&live, tls_path, "http://h/only", None).await;
        assert_eq!(
            got.trailers,
            vec![("x-checksum".to_string(), "none".to_string())],
            "tls {tls_path}"
        );
        let got = h2(&live, tls_path, "http://h/drop", None).await;
        assert_eq!((got.header("trailer"), got.trailers.len()), (None, 0), "tls {tls_path}");
    }
}

#[tokio::test]
async fn an_upstream_body_in_a_coding_besides_chunked_is_a_502() {
    let live = gateway(raw_upstream(trailered).await, TRAILER_ROUTES).await;
    for path in PATHS {
        let got = h1(&live, path, "GET /gzip", "HTTP/1.1", "host: h\r\n").await;
        assert_eq!(got.status, 502, "{path:?}: {:?}", String::from_utf8_lossy(&got.body));
    }
}

/// A request body with a trailer section.
struct WithTrailers(Option<Bytes>, Option<hyper::HeaderMap>);

impl hyper::body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.0.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
        }
        std::task::Poll::Ready(self.1.take().map(|t| Ok(hyper::body::Frame::trailers(t))))
    }
}

#[tokio::test]
async fn a_clients_request_trailers_reach_no_upstream_of_either_protocol() {
    // The upstream answers with the version, the body and the trailer
    // fields it was sent.
    let up = Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let version = format!("{:?}", req.version());
        let (body, trailers) = match req.into_body().collect().await {
            Ok(c) => {
                let trailers: Vec<String> = c
                    .trailers()
                    .map(|t| t.keys().map(|k| k.to_string()).collect())
                    .unwrap_or_default();
                (String::from_utf8_lossy(&c.to_bytes()).into_owned(), trailers)
            }
            Err(e) => (format!("failed: {e}"), Vec::new()),
        };
        let answer = serde_json::json!({ "version": version, "body": body, "trailers": trailers });
        hyper::Response::new(gw_runtime::body::full(answer.to_string()))
    })
    .await;
    // Each protocol, the body streamed (no retry) and buffered for a retry.
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream one {{ server {up} }}
         upstream two {{ server {up} http2 }}
         route /one/{{*rest}} -> one {{ set request header x-user \"fixed\" }}
         route /two/{{*rest}} -> two {{ set request header x-user \"fixed\" }}
         route /one-retry/{{*rest}} -> one {{ retry 1 on 503 set request header x-user \"fixed\" }}
         route /two-retry/{{*rest}} -> two {{ retry 1 on 503 set request header x-user \"fixed\" }}",
        up = up.addr
    ))
    .await;
    let h2c = crate::proxy_support::h2_client();
    for (route, version) in [
        ("one", "HTTP/1.1"),
        ("two", "HTTP/2.0"),
        ("one-retry", "HTTP/1.1"),
        ("two-retry", "HTTP/2.0"),
    ] {
        // HTTP/1.1, chunked with a trailer section.
        let request = format!(
            "POST /{route}/x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
             3\r\nabc\r\n0\r\nx-user: evil\r\nauthorization: Bearer forged\r\nx-checksum: 1\r\n\r\n"
        );
        let (head, body) = crate::proxy_support::raw(live.addrs[0], request.as_bytes()).await;
        assert!(head.starts_with("http/1.1 200"), "{route}: {head}");
        let seen: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(seen["version"], version, "{route}");
        assert_eq!(seen["body"], "abc", "{route}: the body is whole");
        assert_eq!(seen["trailers"], serde_json::json!([]), "HTTP/1.1 client, {route}");
        // HTTP/2 with trailers.
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("x-user", hyper::header::HeaderValue::from_static("evil"));
        trailers.insert("x-forwarded-for", hyper::header::HeaderValue::from_static("6.6.6.6"));
        trailers.insert("x-checksum", hyper::header::HeaderValue::from_static("1"));
        let req = Request::post(live.url(&format!("/{route}/y")))
            .body(gw_runtime::body::boxed(WithTrailers(
                Some(Bytes::from_static(b"abc")),
                Some(trailers),
            )))
            .expect("request");
        let got = crate::proxy_support::exchange(&h2c, req).await;
        assert_eq!(got.status, 200, "{route}: {}", got.body);
        let seen = got.json();
        assert_eq!(seen["version"], version, "{route}");
        assert_eq!(seen["body"], "abc", "{route}: the body is whole");
        assert_eq!(seen["trailers"], serde_json::json!([]), "HTTP/2 client, {route}");
    }
}

// ------------------------------------------------------------------ the routed host

#[tokio::test]
async fn an_http2_upstream_gets_the_host_the_routes_transforms_leave_as_authority() {
    // The upstream answers with the authority and `Host` it was sent.
    let up = Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let answer = serde_json::json!({
            "version": format!("{:?}", req.version()),
            "authority": req.uri().authority().map(|a| a.to_string()),
            "host": req.headers().get("host").and_then(|h| h.to_str().ok()),
        });
        hyper::Response::new(gw_runtime::body::full(answer.to_string()))
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream one {{ server {up} }}
         upstream two {{ server {up} http2 }}
         route /one/set/{{*rest}} -> one {{ set request header host \"internal.svc\" }}
         route /two/set/{{*rest}} -> two {{ set request header host \"internal.svc\" }}
         route /two/gone/{{*rest}} -> two {{ remove request header host }}
         route /two/{{*rest}} -> two",
        up = up.addr
    ))
    .await;
    let ask = |path: &'static str| {
        let live = &live;
        async move {
            let request = format!("GET {path} HTTP/1.1\r\nhost: public.test\r\nconnection: close\r\n\r\n");
            let (head, body) = crate::proxy_support::raw(live.addrs[0], request.as_bytes()).await;
            assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
            serde_json::from_slice::<serde_json::Value>(&body).expect("JSON")
        }
    };
    let seen = ask("/one/set/x").await;
    assert_eq!(seen["host"], "internal.svc", "HTTP/1.1 upstream: {seen}");
    let seen = ask("/two/set/x").await;
    assert_eq!(
        (seen["version"].as_str(), seen["authority"].as_str()),
        (Some("HTTP/2.0"), Some("internal.svc")),
        "{seen}"
    );
    let seen = ask("/two/x").await;
    assert_eq!(seen["authority"], "public.test", "the routed host: {seen}");
    // Without a host, as for an HTTP/1.1 upstream, the server's address.
    let seen = ask("/two/gone/x").await;
    assert_eq!(seen["authority"], up.addr.to_string(), "{seen}");
}

#[tokio::test]
async fn header_host_reads_the_routed_host_on_every_protocol() {
    let up = Upstream::named("up").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream up {{ server {} }}
         limit per_host {{ rate 1/min burst 1 key header.host }}
         route /t/{{*rest}} -> up {{ set request header x-tenant \"{{header.host}}\" }}
         route /l/{{*rest}} -> up {{ limit per_host }}
         route GET /r/{{*rest}} {{ redirect \"https://{{header.host}}/moved\" }}",
        up.addr
    ))
    .await;
    // HTTP/1.1, absolute form: the target's authority, not the Host line.
    let request = b"GET http://public.test/t/x HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n";
    let (head, body) = crate::proxy_support::raw(live.addrs[0], request).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(seen["headers"]["x-tenant"], "public.test", "{seen}");
    let request = b"GET http://public.test/r/x HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n";
    let (head, _) = crate::proxy_support::raw(live.addrs[0], request).await;
    assert_eq!(
        crate::proxy_support::head_value(&head, "location"),
        Some("https://public.test/moved"),
        "{head}"
    );
    // HTTP/2: `:authority` only, no Host line.
    let got = h2(&live, false, "http://public.test/t/y", None).await;
    assert_eq!(got.json()["headers"]["x-tenant"], "public.test");
    let got = h2(&live, false, "http://public.test/r/y", None).await;
    assert_eq!(
        (got.status, got.header("location")),
        (302, Some("https://public.test/moved"))
    );
    // A limit keyed by the host: one budget per host, not one for all.
    for (host, status) in [("a.test", 200), ("a.test", 429), ("b.test", 200)] {
        let got = h2(&live, false, &format!("http://{host}/l/x"), None).await;
        assert_eq!(got.status, status, "{host}");
    }
}
