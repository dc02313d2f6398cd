//! Listeners end to end: HTTP/1.1 and h2c on one port, TLS with ALPN and
//! SNI choosing the certificate, and `listen ... tcp -> UPSTREAM` spreading
//! raw connections over an upstream's servers.

use crate::live::{get, Live, Upstream};
use crate::serve_harness::{cert_der, dead_addr, read_line, tls_connector, tls_fixture, TcpEcho};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `GET path` over an h2 connection made on `io`; status, version, body.
async fn h2_get<I>(io: I, authority: &str, path: &str) -> (u16, hyper::Version, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{authority}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer within 10 s")
        .expect("h2 response");
    let (status, version) = (resp.status().as_u16(), resp.version());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

/// Sends `GET path` over an HTTP/1.1 connection made on `io`.
async fn h1_get<I>(io: I, host: &str, path: &str) -> (u16, hyper::Version, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer within 10 s")
        .expect("h1 response");
    let (status, version) = (resp.status().as_u16(), resp.version());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn plain_http1_and_h2c_prior_knowledge_share_one_port() {
    let up = Upstream::named("a").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         route /{{*rest}} -> a",
        up.addr
    ))
    .await;
    let addr = live.addrs[0];

    let s = TcpStream::connect(addr).await.expect("connect");
    let (status, version, body) = h1_get(s, &addr.to_string(), "/one").await;
    assert_eq!((status, version), (200, hyper::Version::HTTP_11));
    assert!(body.contains("\"path\":\"/one\""), "{body}");

    let s = TcpStream::connect(addr).await.expect("connect");
    let (status, version, body) = h2_get(s, &addr.to_string(), "/two").await;
    assert_eq!((status, version), (200, hyper::Version::HTTP_2));
    assert!(body.contains("\"path\":\"/two\""), "{body}");
    assert_eq!(up.count(), 2);
}

fn tls_config_text(upstream: SocketAddr) -> String {
    format!(
        "listen 127.0.0.1:0 tls {{
           cert \"{d}\" key \"{dk}\"
           cert \"{a}\" key \"{ak}\" sni \"a.gw.test\"
           cert \"{b}\" key \"{bk}\" sni \"b.gw.test\"
         }}
         upstream a {{ server {upstream} }}
         route /{{*rest}} -> a",
        d = tls_fixture("default.crt"),
        dk = tls_fixture("default.key"),
        a = tls_fixture("a.crt"),
        ak = tls_fixture("a.key"),
        b = tls_fixture("b.crt"),
        bk = tls_fixture("b.key"),
    )
}

fn tls_files() -> Vec<(String, Vec<u8>)> {
    ["default.crt", "default.key", "a.crt", "a.key", "b.crt", "b.key"]
        .iter()
        .map(|n| {
            let path = tls_fixture(n);
            let bytes = std::fs::read(&path).expect("read a TLS fixture");
            (path, bytes)
        })
        .collect()
}

async fn start_tls(upstream: SocketAddr) -> Live {
    let files = tls_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    Live::start_with(&tls_config_text(upstream), &refs).await
}

#[tokio::test]
async fn tls_picks_the_certificate_by_sni_and_negotiates_h2_or_http11_by_alpn() {
    let up = Upstream::named("a").await;
    let live = start_tls(up.addr).await;
    let addr = live.addrs[0];
    for (name, file) in [
        ("a.gw.test", "a.crt"),
        ("b.gw.test", "b.crt"),
        ("default.gw.test", "default.crt"),
    ] {
        for (alpn, want) in [
            (&b"h2"[..], hyper::Version::HTTP_2),
            (&b"http/1.1"[..], hyper::Version::HTTP_11),
        ] {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let server_name = ServerName::try_from(name.to_string()).expect("a DNS name");
            let tls = tls_connector(&[alpn])
                .connect(server_name, tcp)
                .await
                .unwrap_or_else(|e| panic!("TLS handshake for {name} (the CA verifies the chain and name): {e}"));
            let (_, session) = tls.get_ref();
            let served = session.peer_certificates().expect("a certificate")[0].to_vec();
            assert!(served == cert_der(&tls_fixture(file)), "SNI {name} did not get {file}");
            assert_eq!(session.alpn_protocol(), Some(alpn));
            let (status, version, body) = if want == hyper::Version::HTTP_2 {
                h2_get(tls, name, "/tls").await
            } else {
                h1_get(tls, name, "/tls").await
            };
            assert_eq!((status, version), (200, want), "{name} over {want:?}");
            let j: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(j["headers"]["x-forwarded-proto"], "https");
        }
    }
}

#[tokio::test]
async fn tls_reload_rereads_certificates_without_closing_the_listener() {
    let up = Upstream::named("a").await;
    let live = start_tls(up.addr).await;
    let addr = live.addrs[0];
    // The new plan serves `b.crt` by default (for every name).
    let text = format!(
        "listen 127.0.0.1:0 tls {{ cert \"{}\" key \"{}\" }}
         upstream a {{ server {} }}
         route /{{*rest}} -> a",
        tls_fixture("b.crt"),
        tls_fixture("b.key"),
        up.addr
    );
    let files = tls_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    live.gateway
        .reload(crate::live::plan_of(&text, &refs))
        .await
        .expect("reload");
    assert_eq!(live.gateway.local_addrs().await, vec![addr], "same listener, same port");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = tls_connector(&[b"http/1.1"])
        .connect(ServerName::try_from("b.gw.test").expect("name"), tcp)
        .await
        .expect("handshake");
    assert!(tls.get_ref().1.peer_certificates().expect("cert")[0].as_ref() == cert_der(&tls_fixture("b.crt")));
}

/// Connects to the layer-4 listener and returns the name the echo server
/// announced, after checking that bytes come back.
async fn tcp_hello(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let name = read_line(&mut s).await;
    s.write_all(b"ping\n").await.expect("write");
    assert_eq!(read_line(&mut s).await, "ping", "bytes are echoed through the gateway");
    name
}

#[tokio::test]
async fn tcp_listener_alternates_connections_over_the_upstream_and_skips_a_dead_server() {
    let a = TcpEcho::start("A").await;
    let b = TcpEcho::start("B").await;
    let dead = dead_addr();
    let live = Live::start(&format!(
        "listen 127.0.0.1:0 tcp -> echo
         upstream echo {{ server {} server {dead} server {} connect_timeout 500ms }}",
        a.addr, b.addr
    ))
    .await;
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(tcp_hello(live.addrs[0]).await);
    }
    assert_eq!(names, ["A", "B", "A", "B", "A", "B"]);
    assert_eq!((a.count(), b.count()), (3, 3));
}

#[tokio::test]
async fn tcp_listener_counts_as_connections_and_honours_max_connections() {
    let a = TcpEcho::start("A").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0 tcp -> echo
         limits {{ max_connections 1 }}
         upstream echo {{ server {} }}",
        a.addr
    ))
    .await;
    let mut first = TcpStream::connect(live.addrs[0]).await.expect("connect");
    assert_eq!(read_line(&mut first).await, "A");
    let mut second = TcpStream::connect(live.addrs[0]).await.expect("connect");
    assert_eq!(
        read_line(&mut second).await,
        "",
        "the second connection is closed at once"
    );
    drop(first);
    // Once the first is gone, a new one is served again.
    let mut ok = false;
    for _ in 0..50 {
        let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
        if read_line(&mut s).await == "A" {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a connection is served again once the count is under the limit");
}

#[tokio::test]
async fn the_gateway_reports_the_port_it_bound_for_port_zero() {
    let up = Upstream::named("a").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         route /{{*rest}} -> a",
        up.addr
    ))
    .await;
    assert_eq!(live.addrs.len(), 1);
    assert_ne!(live.addrs[0].port(), 0);
    assert_eq!(get(&live.url("/")).await.status, 200);
}

#[tokio::test]
async fn an_upgraded_connection_stays_counted_until_its_tunnel_closes() {
    // Answers 101 and echoes on the upgraded connection.
    let up = Upstream::start(|mut req| async move {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(io) = on.await {
                let mut io = TokioIo::new(io);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = hyper::Response::new(gw_runtime::body::empty());
        *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("connection", hyper::header::HeaderValue::from_static("upgrade"));
        resp.headers_mut()
            .insert("upgrade", hyper::header::HeaderValue::from_static("echo"));
        resp
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         route /{{*rest}} -> a",
        up.addr
    ))
    .await;
    let open = || {
        live.gateway
            .metrics()
            .open_connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: gw.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut s, &mut b))
            .await
            .expect("a head within 5 s")
            .expect("read");
        assert_eq!(n, 1, "closed before the head: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s.write_all(b"ping\n").await.expect("write");
    assert_eq!(read_line(&mut s).await, "ping", "bytes flow through the tunnel");
    assert_eq!(open(), 1, "the tunnel is an open connection");
    drop(s);
    let closed = crate::live::eventually(Duration::from_secs(5), || open() == 0).await;
    assert!(closed, "uncounted once the tunnel closes");
}
