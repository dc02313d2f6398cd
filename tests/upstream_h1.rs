//! The gateway's own HTTP/1.1 upstream client, against raw TCP upstreams
//! that write exact bytes: connection reuse, every response framing
//! (chunked, `Content-Length`, until close, none for `HEAD`/`204`/`304`),
//! `1xx` answers skipped, `Connection: close`, bad or oversized heads (502),
//! bodies cut short, streamed chunked request bodies, early answers, a
//! pooled connection that died being replaced (and a request replayed only
//! when that is safe), and bytes after a `101` reaching the tunnel.

use crate::live::{get, send, Live};
use crate::proxy_support::{chan_body, pattern, stream_client, within, Fnv};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw upstream: `serve(stream, n)` runs for the n-th accepted connection
/// (from 0). Returns the address and the count of accepted connections.
async fn raw_upstream<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            // Every connection's script is bounded, so no task outlives the test by much.
            tokio::spawn(tokio::time::timeout(Duration::from_secs(20), serve(s, n)));
        }
    });
    (addr, accepted)
}

/// One request read from `s` (`buf` keeps bytes read past it): the head
/// (lower-cased) and the body (`Content-Length` or chunked, decoded).
/// `None` when the connection closed first.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(s, buf).await?;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?.trim(), 16).ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                fill(s, buf).await?;
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        while buf.len() < n {
            fill(s, buf).await?;
        }
        body.extend(buf.drain(..n));
    }
    Some((head, body))
}

/// Reads more of `s` into `buf`; `None` at the end of the stream.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// Answers every request on every connection with `answer`.
async fn answering(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(move |mut s, _| async move {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).await.is_some() {
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await
}

fn gateway(addr: SocketAddr) -> String {
    format!(
        "listen 127.0.0.1:0
         upstream up {{ server {addr} timeout 2s }}
         route /{{*rest}} -> up"
    )
}

#[tokio::test]
async fn a_hundred_sequential_requests_share_one_upstream_connection() {
    let (addr, accepted) = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let live = Live::start(&gateway(addr)).await;
    for i in 0..100 {
        let got = get(&live.url(&format!("/{i}"))).await;
        assert_eq!((got.status, got.body.as_str()), (200, "ok"), "request {i}");
        assert_eq!(got.header("content-length"), Some("2"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one upstream connection for all");
}

#[tokio::test]
async fn a_chunked_answer_arrives_identical_and_its_connection_is_reused() {
    let (addr, accepted) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).await.is_some() {
            // Split across writes and mid-line, with an extension and trailers.
            let parts: [&[u8]; 5] = [
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n7;ext=1\r\n, world\r\n",
                b"1",
                b"0\r\n0123456789abcdef\r\n0\r\nx-trailer: t\r\n",
                b"\r\n",
            ];
            for p in parts {
                if s.write_all(p).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
    .await;
    let live = Live::start(&gateway(addr)).await;
    for _ in 0..3 {
        let got = get(&live.url("/c")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "hello, world0123456789abcdef"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused after a chunked body"
    );
}

#[tokio::test]
async fn a_body_delimited_by_close_arrives_whole_and_the_connection_is_not_reused() {
    let (addr, accepted) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).await.is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            let _ = s.write_all(&pattern(0, 100_000)).await;
        }
    })
    .await;
    let live = Live::start(&gateway(addr)).await;
    for _ in 0..2 {
        let got = within(Duration::from_secs(10), "the answer", async {
            let resp = crate::live::client()
                .request(Request::get(live.url("/x")).body(Full::new(Bytes::new())).unwrap())
                .await
                .expect("answer");
            resp.into_body().collect().await.expect("whole body").to_bytes()
        })
        .await;
        assert!(got == pattern(0, 100_000), "the body arrived whole");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a close-delimited answer closes its connection"
    );
}

#[tokio::test]
async fn connection_close_from_the_upstream_sends_the_next_request_on_a_new_connection() {
    let (addr, accepted) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).await.is_some() {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye")
                .await;
            // Held open without reading: a request sent here would hang.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
    .await;
    let live = Live::start(&gateway(addr)).await;
    for i in 0..3 {
        let got = get(&live.url("/x")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "bye"), "request {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn informational_answers_are_skipped_for_the_final_one() {
    let (addr, accepted) = answering(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
          HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nfinal",
    )
    .await;
    let live = Live::start(&gateway(addr)).await;
    for _ in 0..2 {
        let got = get(&live.url("/x")).await;
        assert_eq!((got.status, got.body.as_str()), (201, "final"));
        assert_eq!(got.header("link"), None, "headers of a skipped 1xx do not leak");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn answers_without_a_body_despite_a_length_do_not_hang() {
    let (addr, accepted) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        while let Some((head, _)) = read_request(&mut s, &mut buf).await {
            let answer: &[u8] = if head.starts_with("head ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
            } else if head.starts_with("get /204") {
                b"HTTP/1.1 204 No Content\r\ncontent-length: 10\r\n\r\n"
            } else if head.starts_with("get /304") {
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let live = Live::start(&gateway(addr)).await;
    let head = send(Request::head(live.url("/h")).body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(
        head.header("content-length"),
        Some("10"),
        "HEAD keeps the length of the GET"
    );
    assert_eq!(get(&live.url("/204")).await.status, 204);
    assert_eq!(get(&live.url("/304")).await.status, 304);
    let got = get(&live.url("/after")).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "next"),
        "the connection is in step"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "each bodiless answer left the connection usable"
    );
}

#[tokio::test]
async fn a_garbage_or_oversized_head_from_the_upstream_is_502() {
    let (garbage, _) = answering(b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n").await;
    let live = Live::start(&gateway(garbage)).await;
    assert_eq!(get(&live.url("/x")).await.status, 502);

    let (not_http, _) = answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    let live = Live::start(&gateway(not_http)).await;
    assert_eq!(get(&live.url("/x")).await.status, 502);

    let (bad_length, _) = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd").await;
    let live = Live::start(&gateway(bad_length)).await;
    assert_eq!(get(&live.url("/x")).await.status, 502);

    // Status codes are 100 to 599 (RFC 9110 15); `http` would take 600.
    let (bad_status, _) = answering(b"HTTP/1.1 600 OK\r\ncontent-length: 5\r\n\r\nhello").await;
    let live = Live::start(&gateway(bad_status)).await;
    assert_eq!(get(&live.url("/x")).await.status, 502);

    // A head that never ends: 70 KiB of headers, still going.
    let (huge, _) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).await.is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = format!("x-filler: {}\r\n", "a".repeat(1000));
            for _ in 0..70 {
                if s.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
    .await;
    let live = Live::start(&gateway(huge)).await;
    assert_eq!(get(&live.url("/x")).await.status, 502);
}

/// Is the answer to `GET /x` cut short (the exchange or its body fails,
/// within 10 s) rather than complete?
async fn cut_short(live: &Live) -> bool {
    within(Duration::from_secs(10), "the answer or its end", async {
        let req = Request::get(live.url("/x")).body(Full::new(Bytes::new())).unwrap();
        match crate::live::client().request(req).await {
            // The gateway closed the connection before the head went out.
            Err(_) => true,
            Ok(resp) => resp.into_body().collect().await.is_err(),
        }
    })
    .await
}

#[tokio::test]
async fn a_bad_chunk_size_cuts_the_answer() {
    let (addr, _) = answering(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\nxx").await;
    let live = Live::start(&gateway(addr)).await;
    assert!(cut_short(&live).await, "an overflowing chunk size fails the answer");
}

#[tokio::test]
async fn an_upstream_closing_mid_body_cuts_the_answer() {
    let (addr, _) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).await.is_some() {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly a part")
                .await;
        }
    })
    .await;
    let live = Live::start(&gateway(addr)).await;
    assert!(
        cut_short(&live).await,
        "the client sees the answer cut, not a complete one"
    );
}

#[tokio::test]
async fn a_streamed_request_body_goes_upstream_chunked_and_intact() {
    let (addr, _) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        while let Some((head, body)) = read_request(&mut s, &mut buf).await {
            let mut hash = Fnv::default();
            hash.feed(&body);
            let chunked = head.contains("transfer-encoding: chunked");
            let text = format!("{} {:x} {chunked}", body.len(), hash.0);
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len());
            if s.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let live = Live::start(&gateway(addr)).await;
    let (tx, body) = chan_body(4);
    let client = stream_client();
    let req = Request::post(live.url("/upload")).body(body).unwrap();
    let pending = tokio::spawn(async move { crate::proxy_support::exchange(&client, req).await });
    let mut expected = Fnv::default();
    for i in 0..20 {
        let chunk = pattern(i * 10_000, 10_000);
        expected.feed(&chunk);
        tx.send(chunk).await.unwrap();
    }
    drop(tx);
    let got = within(Duration::from_secs(10), "the answer", pending).await.unwrap();
    assert_eq!(
        (got.status, got.body),
        (200, format!("200000 {:x} true", expected.0)),
        "the upstream saw every byte in order, chunked"
    );
}

#[tokio::test]
async fn an_early_413_reaches_the_client_while_the_body_is_still_going() {
    let (addr, _) = raw_upstream(|mut s, _| async move {
        // Read the head only, refuse, then drain what comes (a lingering close).
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if fill(&mut s, &mut buf).await.is_none() {
                return;
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 8\r\n\r\ntoo big!")
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while fill(&mut s, &mut buf).await.is_some() {
                buf.clear();
            }
        })
        .await;
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         limits {{ max_body_size 64MiB }}
         upstream up {{ server {addr} timeout 5s }}
         route /{{*rest}} -> up"
    ))
    .await;
    // A body that keeps coming (8 MiB, chunk by chunk) until the answer.
    let (tx, body) = chan_body(2);
    let client = stream_client();
    let req = Request::post(live.url("/upload")).body(body).unwrap();
    let pending = tokio::spawn(async move { client.request(req).await });
    let feeder = tokio::spawn(async move {
        for i in 0..128 {
            if tx.send(pattern(i * 65536, 65536)).await.is_err() {
                return;
            }
        }
    });
    let resp = within(Duration::from_secs(10), "the early answer", pending)
        .await
        .unwrap()
        .expect("an answer");
    assert_eq!(resp.status(), 413);
    let body = within(Duration::from_secs(5), "its body", resp.into_body().collect())
        .await
        .map(|b| b.to_bytes());
    assert_eq!(body.ok().as_deref(), Some(&b"too big!"[..]));
    feeder.abort();
}

/// Connection 0 answers its first request, then takes the second one and
/// closes without an answer (as a server closing an idle connection in the
/// same instant). Every other connection answers every request.
async fn first_dies_on_its_second_request(mut s: TcpStream, n: usize) {
    let mut buf = Vec::new();
    let mut served = 0;
    while read_request(&mut s, &mut buf).await.is_some() {
        if n == 0 && served == 1 {
            return;
        }
        served += 1;
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

#[tokio::test]
async fn a_pooled_connection_that_died_is_replaced_and_a_get_replayed() {
    let (addr, accepted) = raw_upstream(first_dies_on_its_second_request).await;
    let live = Live::start(&gateway(addr)).await;
    for i in 0..2 {
        let got = get(&live.url("/x")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "ok"), "GET {i}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the GET went again on a new connection"
    );
}

#[tokio::test]
async fn a_post_is_not_replayed_after_the_upstream_may_have_taken_it() {
    let (addr, accepted) = raw_upstream(first_dies_on_its_second_request).await;
    let live = Live::start(&gateway(addr)).await;
    let post = || {
        send(
            Request::post(live.url("/x"))
                .body(Full::new(Bytes::from_static(b"data")))
                .unwrap(),
        )
    };
    assert_eq!(post().await.status, 200);
    assert_eq!(
        post().await.status,
        502,
        "the upstream read the POST: it is not sent twice"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(post().await.status, 200, "the next one goes on a new connection");
}

#[tokio::test]
async fn bytes_right_after_a_101_reach_the_client_through_the_tunnel() {
    let (addr, _) = raw_upstream(|mut s, _| async move {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).await.is_some() {
            // The head and the first tunnelled bytes in one write.
            let _ = s
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\nhello")
                .await;
            let mut chunk = [0u8; 1024];
            while let Ok(n) = s.read(&mut chunk).await {
                if n == 0 || s.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let live = Live::start(&gateway(addr)).await;
    within(Duration::from_secs(10), "the tunnel", async {
        let mut c = TcpStream::connect(live.addrs[0]).await.expect("connect");
        c.write_all(b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.ends_with(b"hello") {
            let n = c.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
        c.write_all(b"ping").await.expect("write");
        let mut echo = [0u8; 4];
        c.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"ping");
    })
    .await;
}
