//! Helpers for the proxy tests on top of the live harness: request bodies
//! fed through a channel (so a test decides when each chunk leaves), a
//! client for them (HTTP/1.1 or h2c), raw HTTP/1.1 over TCP for byte-exact
//! requests, free and unanswered ports. Every wait is bounded.

#![allow(dead_code)]

use bytes::Bytes;
use gw_runtime::body::Body;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A body whose chunks arrive through a channel; it ends when the sender drops.
pub struct ChanBody(pub mpsc::Receiver<Bytes>);

impl HttpBody for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// A channel-fed body as the gateway's body type, and its sender.
pub fn chan_body(capacity: usize) -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, gw_runtime::body::boxed(ChanBody(rx)))
}

/// A client whose request bodies may stream.
pub fn stream_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// Bounds a future: panics with `what` after `limit`.
pub async fn within<F: std::future::Future>(limit: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// The body an upstream's handler was sent, or nothing if it failed (the
/// test sees that in what the handler answers).
pub async fn body_or_empty(req: Request<hyper::body::Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// Reads a whole body (within 30 s).
pub async fn read_all<B>(body: B) -> Vec<u8>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    within(Duration::from_secs(30), "the whole body", body.collect())
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

/// Sends `req` with `client` and reads the answer (status, headers, body).
pub async fn exchange(client: &Client<HttpConnector, Body>, req: Request<Body>) -> crate::live::Got {
    let resp = within(Duration::from_secs(10), "an answer", client.request(req))
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = read_all(resp.into_body()).await;
    crate::live::Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A raw HTTP/1.1 exchange: writes `request` as is and reads one response
/// (head, then a `Content-Length` body or until the connection closes).
/// Returns the head (lower-cased names) and the body.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    within(Duration::from_secs(10), "a raw answer", async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        read_response(&mut s).await
    })
    .await
}

/// Reads one HTTP/1.1 response head and its `Content-Length` body.
pub async fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return (String::from_utf8_lossy(&buf).to_ascii_lowercase(), Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut body = buf[head_end..].to_vec();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => {
            while body.len() < n {
                let r = s.read(&mut chunk).await.unwrap_or(0);
                if r == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..r]);
            }
            body.truncate(n);
        }
        None if head.starts_with("http/1.1 101") => {}
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut body)).await;
        }
    }
    (head, body)
}

/// The value of header `name` (lower-case) in a raw response head.
pub fn head_value<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// A loopback port on which nothing listens (bound, then released).
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A loopback address whose connects never complete: a listener with a
/// backlog of one that never accepts, its accept queue filled first, so the
/// kernel drops further SYNs. Keep the returned value alive while in use.
pub struct Unanswered {
    pub addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<TcpStream>,
}

impl Unanswered {
    pub async fn start() -> Unanswered {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let listener = socket.listen(1).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut fillers = Vec::new();
        // Fill the accept queue; once it is full a connect hangs, which is
        // what this address is for. Stop at the first one that hangs.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => fillers.push(s),
                _ => break,
            }
        }
        Unanswered {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }

    /// Does a connect to it hang (for `limit`)?
    pub async fn hangs(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, TcpStream::connect(self.addr))
            .await
            .is_err()
    }
}

/// A streamed response body fed through a channel, as an upstream answer.
pub fn chan_response(capacity: usize) -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, body) = chan_body(capacity);
    (tx, Response::new(body))
}

/// A deterministic byte pattern and its FNV-1a hash, for checking that a
/// large body arrived whole and in order.
pub fn pattern(offset: usize, len: usize) -> Bytes {
    (offset..offset + len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
