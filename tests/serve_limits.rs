//! The safety bounds of `limits` on live connections: slow heads are cut at
//! `header_timeout`, idle keep-alive connections closed at `idle_timeout`,
//! oversized heads answered 431, and connections past `max_connections`
//! closed at once.

use crate::live::{Live, Upstream};
use crate::serve_harness::{closed_within, exchange};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn gateway(limits: &str) -> (Live, Upstream) {
    let up = Upstream::named("a").await;
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

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn a_client_trickling_its_head_is_cut_off_near_header_timeout() {
    let (live, up) = gateway("header_timeout 1s idle_timeout 30s").await;
    // Before the connect, so before the accept that starts the clock.
    let start = std::time::Instant::now();
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    let (mut reader, mut writer) = s.split();
    let trickle = async {
        // One byte every 250 ms: never a whole head.
        for b in b"GET / HTTP/1.1\r\nhost: gw.test\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if writer.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 256];
        loop {
            match tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    };
    // Cut at header_timeout from the accept: never before it (the clock
    // counts whole milliseconds), and well before the trickle ends (about
    // 12 s), which is when a clock restarted by each byte would cut.
    let took = tokio::select! {
        t = closed => t,
        _ = async { trickle.await; std::future::pending::<()>().await } => unreachable!(),
        _ = tokio::time::sleep(Duration::from_secs(20)) => panic!("the trickling client was never cut off"),
    };
    assert!(
        took >= Duration::from_millis(990) && took < Duration::from_secs(6),
        "cut off after {took:?}, header_timeout is 1s"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_header_timeout() {
    let (live, _up) = gateway("header_timeout 500ms idle_timeout 60s").await;
    let start = std::time::Instant::now();
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    // Not before header_timeout from the accept (after `start`), and not at
    // idle_timeout (a minute).
    closed_within(&mut s, Duration::from_secs(30))
        .await
        .expect("closed within 30 s");
    assert!(start.elapsed() >= Duration::from_millis(490), "{:?}", start.elapsed());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_idle_timeout() {
    // 3 s: requests 300 ms apart stay far inside it on a loaded machine.
    let (live, up) = gateway("idle_timeout 3s header_timeout 60s").await;
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    // Kept alive between requests shorter apart than the timeout.
    let mut sent = std::time::Instant::now();
    for i in 0..3 {
        sent = std::time::Instant::now();
        let (status, _) = exchange(&mut s, &get_request(&format!("/{i}")))
            .await
            .expect("an answer on the kept-alive connection");
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Closed at idle_timeout from the last answer (after `sent`; the
    // gateway's clock counts whole milliseconds): never before, and not at
    // header_timeout (a minute).
    closed_within(&mut s, Duration::from_secs(30))
        .await
        .expect("the idle connection is closed");
    assert!(sent.elapsed() >= Duration::from_millis(2990), "{:?}", sent.elapsed());
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn a_head_over_max_header_size_gets_431() {
    let (live, up) = gateway("max_header_size 16KiB").await;
    let small = format!(
        "GET /ok HTTP/1.1\r\nhost: gw.test\r\nx-pad: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    assert_eq!(exchange(&mut s, small.as_bytes()).await.map(|r| r.0), Some(200));
    let big = format!(
        "GET /big HTTP/1.1\r\nhost: gw.test\r\nx-pad: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    assert_eq!(exchange(&mut s, big.as_bytes()).await.map(|r| r.0), Some(431));
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_max_header_size_below_hypers_buffer_is_enforced_too() {
    let (live, up) = gateway("max_header_size 1KiB").await;
    let ok = format!(
        "GET /ok HTTP/1.1\r\nhost: gw.test\r\nx-pad: {}\r\n\r\n",
        "a".repeat(500)
    );
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    assert_eq!(exchange(&mut s, ok.as_bytes()).await.map(|r| r.0), Some(200));
    let big = format!(
        "GET /big HTTP/1.1\r\nhost: gw.test\r\nx-pad: {}\r\n\r\n",
        "a".repeat(2000)
    );
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    assert_eq!(exchange(&mut s, big.as_bytes()).await.map(|r| r.0), Some(431));
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn connections_past_max_connections_are_closed_while_the_others_are_open() {
    let (live, _up) = gateway("max_connections 2").await;
    let addr = live.addrs[0];
    let mut open = Vec::new();
    for i in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let got = exchange(&mut s, &get_request(&format!("/{i}"))).await;
        assert_eq!(got.map(|r| r.0), Some(200), "connection {i} is served");
        open.push(s);
    }
    let mut third = TcpStream::connect(addr)
        .await
        .expect("the kernel accepts the TCP handshake");
    let got = exchange(&mut third, &get_request("/third")).await;
    assert_eq!(got, None, "the third connection is closed without an answer");
    // The two open ones still work.
    for s in &mut open {
        assert_eq!(exchange(s, &get_request("/again")).await.map(|r| r.0), Some(200));
    }
    // Closing one makes room.
    drop(open.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        if exchange(&mut s, &get_request("/later")).await.map(|r| r.0) == Some(200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a new connection is served once one closed");
    let metrics = gw_runtime::metrics::Rejection::TooManyConnections as usize;
    assert!(live.gateway.metrics().rejections[metrics].load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_at_idle_timeout() {
    let (live, up) = gateway("idle_timeout 500ms header_timeout 60s").await;
    let s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(s))
            .await
            .expect("h2 handshake");
    let ended = tokio::spawn(async move {
        let start = std::time::Instant::now();
        let _ = conn.await;
        start.elapsed()
    });
    let req = hyper::Request::get(format!("http://{}/h2", live.addrs[0]))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("an answer");
    assert_eq!(resp.status(), 200);
    drop(resp);
    // At idle_timeout, not at header_timeout (a minute).
    let took = tokio::time::timeout(Duration::from_secs(30), ended)
        .await
        .expect("the gateway ends the idle h2 connection")
        .expect("join");
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert_eq!(up.count(), 1);
}
