//! The gateway's own HTTP/1.1 server loop, byte for byte from raw TCP
//! clients: pipelining, keep-alive and close, bad and oversized heads, slow
//! heads and idle connections, request bodies (whole on the fast path,
//! chunked and `Expect: 100-continue` through hyper's fallback), response
//! framing (length, chunked, HEAD) and drain. Every wait is bounded.

use crate::live::{Live, Upstream};
use crate::proxy_support::body_or_empty;
use crate::serve_harness::{tls_connector, tls_fixture};
use bytes::Bytes;
use gw_runtime::body::{boxed, full};
use gw_runtime::metrics::Rejection;
use hyper::body::Frame;
use hyper::Response;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream that answers `METHOD PATH LEN:BODY` (the request body
/// collected), with a length; `/slow` waits 400 ms first, `/stream`
/// answers in three frames without a length, `/big` with 12,000 bytes.
async fn echo() -> Upstream {
    Upstream::start(|req| async move {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        if path == "/slow" {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        if path == "/big" {
            return Response::new(full(vec![b'b'; 12_000]));
        }
        if path == "/stream" {
            return Response::new(boxed(Frames(vec![
                Bytes::from_static(b"one,"),
                Bytes::from_static(b"two,"),
                Bytes::from(vec![b'x'; 20_000]),
            ])));
        }
        let body = body_or_empty(req).await;
        let text = format!("{method} {path} {}:{}", body.len(), String::from_utf8_lossy(&body));
        Response::new(full(text))
    })
    .await
}

/// A body of several frames with no size hint (sent chunked).
struct Frames(Vec<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| self.0.remove(0));
        std::task::Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }
}

async fn gateway(limits: &str) -> (Live, Upstream) {
    let up = echo().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         limits {{ {limits} }}
         upstream a {{ server {} }}
         route /{{*rest}} -> a",
        up.addr
    ))
    .await;
    (live, up)
}

/// A raw client (TCP or TLS) keeping the bytes read past the current
/// response.
struct Client<S = TcpStream> {
    s: S,
    buf: Vec<u8>,
}

/// One response as read off the wire.
#[derive(Debug)]
struct Got {
    status: u16,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Client {
    async fn connect(live: &Live) -> Client {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(live.addrs[0]))
            .await
            .expect("connect in time")
            .expect("connect");
        Client { s, buf: Vec::new() }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(Duration::from_secs(5), self.s.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Reads more; `false` at EOF (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut chunk))
            .await
            .expect("bytes or EOF within 5 s")
        {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response (`head` says it has no body, as for HEAD).
    async fn response(&mut self, head: bool) -> Option<Got> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut lines = text.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut got = Got {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 || status < 200 {
            return Some(got);
        }
        if let Some(len) = got.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                if !self.fill().await {
                    return None;
                }
            }
            got.body = self.buf.drain(..len).collect();
        } else if got.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if !self.fill().await {
                        return None;
                    }
                };
                let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).ok()?.trim(), 16).ok()?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    if !self.fill().await {
                        return None;
                    }
                }
                got.body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                assert_eq!(
                    &self.buf[line_end + 2 + size..line_end + 4 + size],
                    b"\r\n",
                    "chunk ends with CRLF"
                );
                self.buf.drain(..line_end + 4 + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            // Delimited by the close.
            while self.fill().await {}
            got.body = std::mem::take(&mut self.buf);
        }
        Some(got)
    }

    /// Waits for the gateway to close; how long it took.
    async fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut chunk = [0u8; 1024];
        let fut = async {
            loop {
                match self.s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return start.elapsed(),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(limit, fut).await.ok()
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n\r\n").into_bytes()
}

fn rejections(live: &Live, r: Rejection) -> u64 {
    live.gateway.metrics().rejections[r as usize].load(Ordering::Relaxed)
}

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order() {
    let (live, up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    let mut both = get("/first");
    both.extend_from_slice(&get("/second"));
    c.send(&both).await;
    let a = c.response(false).await.expect("the first answer");
    let b = c.response(false).await.expect("the second answer");
    assert_eq!((a.status, a.text()), (200, "GET /first 0:".to_string()));
    assert_eq!((b.status, b.text()), (200, "GET /second 0:".to_string()));
    assert!(
        a.header("date").is_some_and(|d| d.ends_with(" GMT") && d.len() == 29),
        "{a:?}"
    );
    assert_eq!(a.header("connection"), None, "kept alive");
    // Still open for a third.
    c.send(&get("/third")).await;
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("GET /third 0:")
    );
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn http_1_0_closes_unless_asked_to_keep_alive() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    c.send(b"GET /old HTTP/1.0\r\nhost: gw.test\r\n\r\n").await;
    let got = c.response(false).await.expect("an answer");
    assert_eq!((got.status, got.text()), (200, "GET /old 0:".to_string()));
    assert_eq!(got.header("connection"), Some("close"));
    assert!(
        c.closed_within(Duration::from_secs(2)).await.is_some(),
        "closed after the answer"
    );

    let mut c = Client::connect(&live).await;
    for i in 0..2 {
        c.send(format!("GET /kept{i} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").as_bytes())
            .await;
        let got = c.response(false).await.expect("an answer on the kept connection");
        assert_eq!(got.text(), format!("GET /kept{i} 0:"));
        assert_eq!(got.header("connection"), Some("keep-alive"));
    }
}

#[tokio::test]
async fn connection_close_closes_after_the_response() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    c.send(b"GET /bye HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n")
        .await;
    let got = c.response(false).await.expect("an answer");
    assert_eq!((got.status, got.header("connection")), (200, Some("close")));
    assert!(c.closed_within(Duration::from_secs(2)).await.is_some());
}

#[tokio::test]
async fn a_head_over_max_header_size_gets_431_and_a_close() {
    let (live, up) = gateway("max_header_size 2KiB").await;
    let mut c = Client::connect(&live).await;
    let fits = format!(
        "GET /ok HTTP/1.1\r\nhost: gw.test\r\nx-pad: {}\r\n\r\n",
        "a".repeat(1500)
    );
    c.send(fits.as_bytes()).await;
    assert_eq!(c.response(false).await.map(|r| r.status), Some(200));
    let big = format!(
        "GET /big HTTP/1.1\r\nhost: gw.test\r\nx-pad: {}\r\n\r\n",
        "a".repeat(3000)
    );
    c.send(big.as_bytes()).await;
    let got = c.response(false).await.expect("an answer");
    assert_eq!((got.status, got.header("connection")), (431, Some("close")));
    assert!(c.closed_within(Duration::from_secs(3)).await.is_some());
    // Too many header lines count the same.
    let mut c = Client::connect(&live).await;
    let many: String = (0..120).map(|i| format!("h{i}: v\r\n")).collect();
    c.send(format!("GET /many HTTP/1.1\r\n{many}\r\n").as_bytes()).await;
    assert_eq!(c.response(false).await.map(|r| r.status), Some(431));
    assert_eq!(up.count(), 1);
    assert_eq!(rejections(&live, Rejection::HeaderTooLarge), 2);
}

#[tokio::test]
async fn garbage_gets_400_and_a_close() {
    let (live, up) = gateway("").await;
    for bad in [
        &b"\x16\x03\x01 this is not http\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        b"GET / HTTP/1.1\r\ncontent-length: nope\r\n\r\n",
    ] {
        let mut c = Client::connect(&live).await;
        c.send(bad).await;
        let got = c.response(false).await.expect("an answer");
        assert_eq!(got.status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(!got.text().contains("httparse"), "no internal detail: {}", got.text());
        assert!(c.closed_within(Duration::from_secs(3)).await.is_some());
    }
    assert_eq!(up.count(), 0);
    assert_eq!(rejections(&live, Rejection::BadRequest), 4);
}

#[tokio::test]
async fn a_head_split_over_several_writes_is_served() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    let request = b"POST /split HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 5\r\n\r\nhello";
    for piece in request.chunks(7) {
        c.send(piece).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let got = c.response(false).await.expect("an answer");
    assert_eq!((got.status, got.text()), (200, "POST /split 5:hello".to_string()));
}

#[tokio::test]
async fn a_slow_later_head_is_cut_off_at_header_timeout_from_its_first_byte() {
    let (live, up) = gateway("header_timeout 600ms idle_timeout 30s").await;
    let mut c = Client::connect(&live).await;
    c.send(&get("/one")).await;
    assert_eq!(c.response(false).await.map(|r| r.status), Some(200));
    // Idle for longer than header_timeout: a kept-alive connection waits
    // for idle_timeout, not header_timeout.
    tokio::time::sleep(Duration::from_millis(900)).await;
    c.send(&get("/two")).await;
    assert_eq!(
        c.response(false).await.map(|r| r.status),
        Some(200),
        "still open after 900 ms idle"
    );
    // Then a head that never completes, a byte every 100 ms for 8 s: cut at
    // header_timeout from its first byte (never before; well before the
    // trickle ends, which is when a clock restarted by each byte would cut).
    let started = Instant::now();
    c.send(b"GET /three HTTP/1.1\r\nhost: gw").await;
    let trickle = async {
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if c.s.write_all(b"a").await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle).await.ok();
    let took = c.closed_within(Duration::from_secs(3)).await.map(|_| started.elapsed());
    let took = took.expect("the slow head is cut off");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(up.count(), 2);
    assert_eq!(rejections(&live, Rejection::HeaderTimeout), 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_closes_at_idle_timeout() {
    let (live, _up) = gateway("idle_timeout 500ms header_timeout 60s").await;
    let mut c = Client::connect(&live).await;
    let sent = Instant::now();
    c.send(&get("/once")).await;
    assert_eq!(c.response(false).await.map(|r| r.status), Some(200));
    // Not before idle_timeout from the answer (which came after `sent`; the
    // gateway's clock counts whole milliseconds), and not at header_timeout
    // (a minute).
    c.closed_within(Duration::from_secs(30))
        .await
        .expect("closed when idle");
    assert!(sent.elapsed() >= Duration::from_millis(490), "{:?}", sent.elapsed());
    assert_eq!(
        rejections(&live, Rejection::HeaderTimeout),
        0,
        "idle is not a header timeout"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_idle_timeout() {
    let (live, _up) = gateway("idle_timeout 400ms").await;
    let mut c = Client::connect(&live).await;
    // Far more answers than the sockets' buffers hold (2,000 of 12 KB, each
    // written whole with its head), and the client reads none of them.
    const ASKED: usize = 2000;
    c.send(&get("/big").repeat(ASKED)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The gateway's write waited, then gave up: what it wrote before is
    // there, then the end.
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match c.s.read_buf(&mut got).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the gateway closed the connection");
    let answered = got.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    assert!(answered > 0 && answered < ASKED, "{answered} answers");
    // Others were served all along.
    let mut other = Client::connect(&live).await;
    other.send(&get("/after")).await;
    assert_eq!(
        other.response(false).await.map(|r| r.text()),
        Some("GET /after 0:".into())
    );
}

#[tokio::test]
async fn a_content_length_body_arrives_intact() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    let body: String = (0..3000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    c.send(
        format!(
            "POST /post HTTP/1.1\r\nhost: gw.test\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let got = c.response(false).await.expect("an answer");
    assert_eq!(got.text(), format!("POST /post {}:{body}", body.len()));
    // Body and next head in one write: the body ends where its length says.
    c.send(b"PUT /put HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 3\r\n\r\nxyzGET /after HTTP/1.1\r\nhost: gw.test\r\n\r\n")
        .await;
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("PUT /put 3:xyz")
    );
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("GET /after 0:")
    );
}

#[tokio::test]
async fn a_chunked_body_goes_through_hyper_and_arrives_intact() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    c.send(&get("/before")).await;
    assert_eq!(c.response(false).await.map(|r| r.status), Some(200));
    c.send(b"POST /chunked HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.send(b"6\r\n world\r\n0\r\n\r\n").await;
    let got = c.response(false).await.expect("an answer");
    assert_eq!(
        (got.status, got.text()),
        (200, "POST /chunked 11:hello world".to_string())
    );
    // The rest of the connection is served (by hyper now).
    c.send(&get("/later")).await;
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("GET /later 0:")
    );
}

#[tokio::test]
async fn expect_100_continue_works() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    c.send(b"POST /expect HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        .await;
    let cont = c.response(false).await.expect("100 Continue");
    assert_eq!(cont.status, 100);
    c.send(b"data").await;
    let got = c.response(false).await.expect("the answer");
    assert_eq!((got.status, got.text()), (200, "POST /expect 4:data".to_string()));
}

#[tokio::test]
async fn a_head_response_has_no_body() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    c.send(b"HEAD /h HTTP/1.1\r\nhost: gw.test\r\n\r\n").await;
    let got = c.response(true).await.expect("an answer");
    assert_eq!(got.status, 200);
    // The next response follows at once: no body bytes in between.
    c.send(&get("/next")).await;
    let next = c.response(false).await.expect("the next answer");
    assert_eq!(next.text(), "GET /next 0:");
}

#[tokio::test]
async fn a_response_without_length_reaches_a_1_1_client_chunked_and_a_1_0_client_until_close() {
    let (live, _up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    c.send(&get("/stream")).await;
    let got = c.response(false).await.expect("an answer");
    assert_eq!(got.header("transfer-encoding"), Some("chunked"), "{:?}", got.headers);
    assert_eq!(got.body.len(), 8 + 20_000);
    assert!(got.body.starts_with(b"one,two,xxx"));
    c.send(&get("/after")).await;
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("GET /after 0:")
    );

    let mut c = Client::connect(&live).await;
    c.send(b"GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").await;
    let got = c.response(false).await.expect("an answer");
    assert_eq!(got.header("transfer-encoding"), None);
    assert_eq!(got.header("connection"), Some("close"));
    assert_eq!(got.body.len(), 8 + 20_000);
}

#[tokio::test]
async fn a_hundred_requests_on_one_connection() {
    let (live, up) = gateway("").await;
    let mut c = Client::connect(&live).await;
    for i in 0..100 {
        c.send(&get(&format!("/n{i}"))).await;
        let got = c.response(false).await.expect("an answer");
        assert_eq!(got.text(), format!("GET /n{i} 0:"));
    }
    assert_eq!(up.count(), 100);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one pooled upstream connection"
    );
}

#[tokio::test]
async fn drain_closes_idle_connections_at_once_and_finishes_the_one_in_flight() {
    let (live, up) = gateway("").await;
    let mut idle = Client::connect(&live).await;
    idle.send(&get("/warm")).await;
    assert_eq!(idle.response(false).await.map(|r| r.status), Some(200));
    let mut busy = Client::connect(&live).await;
    busy.send(&get("/slow")).await;
    // The slow request is in flight once the upstream has it.
    let arrived = &up.arrived;
    assert!(crate::live::eventually(Duration::from_secs(10), || arrived.load(Ordering::SeqCst) == 2).await);
    let gateway = live.gateway.clone();
    let drain = tokio::spawn(async move { gateway.shutdown(Duration::from_secs(30)).await });
    // Promptly, not at idle_timeout (60 s).
    idle.closed_within(Duration::from_secs(30))
        .await
        .expect("the idle connection closes");
    let got = busy.response(false).await.expect("the request in flight is answered");
    assert_eq!((got.status, got.header("connection")), (200, Some("close")));
    assert_eq!(got.text(), "GET /slow 0:");
    assert!(busy.closed_within(Duration::from_secs(2)).await.is_some());
    let left = tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("drain ends")
        .expect("join");
    assert_eq!(left, 0, "no connection left open");
}

#[tokio::test]
async fn tls_http_1_1_connections_get_the_same_loop() {
    let up = echo().await;
    let text = format!(
        "listen 127.0.0.1:0 tls {{ cert \"{}\" key \"{}\" }}
         limits {{ idle_timeout 3s header_timeout 60s }}
         upstream a {{ server {} }}
         route /{{*rest}} -> a",
        tls_fixture("a.crt"),
        tls_fixture("a.key"),
        up.addr
    );
    let files: Vec<(String, Vec<u8>)> = ["a.crt", "a.key"]
        .iter()
        .map(|n| {
            (
                tls_fixture(n),
                std::fs::read(tls_fixture(n)).expect("read a TLS fixture"),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let live = Live::start_with(&text, &refs).await;
    let tcp = TcpStream::connect(live.addrs[0]).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("a.gw.test").expect("name");
    let tls = tokio::time::timeout(Duration::from_secs(5), tls_connector(&[b"http/1.1"]).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let mut c = Client {
        s: tls,
        buf: Vec::new(),
    };
    let mut both = get("/one");
    both.extend_from_slice(b"POST /two HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 3\r\n\r\nabc");
    c.send(&both).await;
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("GET /one 0:")
    );
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("POST /two 3:abc")
    );
    c.send(&get("/stream")).await;
    let got = c.response(false).await.expect("a chunked answer");
    assert_eq!(
        (got.header("transfer-encoding"), got.body.len()),
        (Some("chunked"), 20_008)
    );
    // A chunked request hands the connection to hyper, still over TLS.
    let sent = Instant::now();
    c.send(b"POST /chunked HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n")
        .await;
    assert_eq!(
        c.response(false).await.map(|r| r.text()).as_deref(),
        Some("POST /chunked 3:xyz")
    );
    // At idle_timeout from the last answer (3 s: room for the exchanges
    // above on a loaded machine), not at header_timeout (a minute).
    c.closed_within(Duration::from_secs(30))
        .await
        .expect("closed when idle");
    assert!(sent.elapsed() >= Duration::from_millis(2990), "{:?}", sent.elapsed());
}
