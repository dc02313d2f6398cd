//! What a request and its answer look like on the other side of a live
//! gateway: hop-by-hop headers removed both ways, `X-Forwarded-*` added, the
//! client's Host kept; WebSocket upgrades tunnelled; and the gateway's own
//! answers and transforms (`respond`, `redirect`, `strip_prefix`, `rewrite`,
//! header set/remove with templates).

use crate::live::{get, send, Live, Upstream};
use crate::proxy_support::{head_value, raw, read_response, within};
use bytes::Bytes;
use gw_runtime::body::{empty, full};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn one_upstream(addr: std::net::SocketAddr) -> String {
    format!(
        "listen 127.0.0.1:0
         upstream up {{ server {addr} }}
         route /{{*rest}} -> up"
    )
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed_and_forwarding_headers_added() {
    let up = Upstream::named("up").await;
    let live = Live::start(&one_upstream(up.addr)).await;
    let (head, body) = raw(
        live.addrs[0],
        b"GET /h?q=1 HTTP/1.1\r\n\
          Host: shop.example.test\r\n\
          Connection: keep-alive, X-Drop-Me\r\n\
          X-Drop-Me: secret\r\n\
          Keep-Alive: timeout=5\r\n\
          TE: gzip\r\n\
          Trailer: x-checksum\r\n\
          Proxy-Connection: keep-alive\r\n\
          Upgrade: h2c\r\n\
          X-Forwarded-For: 10.0.0.1\r\n\
          X-Forwarded-For: 10.0.0.2\r\n\
          X-Kept: yes\r\n\
          \r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let j: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let h = &j["headers"];
    for gone in [
        "connection",
        "x-drop-me",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(h.get(gone).is_none(), "`{gone}` reached the upstream: {h}");
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["host"], "shop.example.test", "the client's Host is kept");
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.test");
    assert_eq!(j["path"], "/h?q=1");
}

#[tokio::test]
async fn te_trailers_alone_is_kept_for_grpc() {
    let up = Upstream::named("up").await;
    let live = Live::start(&one_upstream(up.addr)).await;
    let (_, body) = raw(live.addrs[0], b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n").await;
    let j: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(j["headers"]["te"], "trailers");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let up = Upstream::start(|_req| async move {
        let mut r = Response::new(full("body"));
        let h = r.headers_mut();
        h.insert("connection", "x-upstream-hop".parse().unwrap());
        h.insert("x-upstream-hop", "internal".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("trailer", "x-checksum".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        r
    })
    .await;
    let live = Live::start(&one_upstream(up.addr)).await;
    let got = get(&live.url("/")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "body");
    for gone in [
        "connection",
        "x-upstream-hop",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "upgrade",
    ] {
        assert!(
            got.header(gone).is_none(),
            "`{gone}` reached the client: {:?}",
            got.headers
        );
    }
    assert_eq!(got.header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled_both_ways() {
    let up = Upstream::start(|mut req| async move {
        let key = req.headers().get("sec-websocket-key").cloned();
        let upgrade = req.headers().get("upgrade").cloned();
        if upgrade.as_ref().map(|u| u.as_bytes()) != Some(b"websocket") {
            let mut r = Response::new(full("not an upgrade"));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            // Echo upper-cased, so that the answer is the upstream's.
            loop {
                let n = match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf[..n].make_ascii_uppercase();
                if io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut().insert("connection", "upgrade".parse().unwrap());
        if let Some(k) = key {
            r.headers_mut().insert("x-seen-key", k);
        }
        r
    })
    .await;
    let live = Live::start(&one_upstream(up.addr)).await;
    within(Duration::from_secs(10), "the websocket exchange", async {
        let mut s = tokio::net::TcpStream::connect(live.addrs[0]).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let (head, _) = read_response(&mut s).await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert_eq!(head_value(&head, "upgrade"), Some("websocket"));
        assert_eq!(head_value(&head, "x-seen-key"), Some("dghlihnhbxbszsbub25jzq=="));
        for msg in [&b"hello"[..], b"second message", b"3"] {
            s.write_all(msg).await.unwrap();
            let mut got = vec![0u8; msg.len()];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(got, msg.to_ascii_uppercase());
        }
    })
    .await;
}

#[tokio::test]
async fn respond_and_redirect_are_answered_by_the_gateway() {
    let up = Upstream::named("up").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream up {{ server {} }}
         route /internal/{{*rest}} {{ respond 404 }}
         route GET /teapot {{ respond 418 \"short and stout\" }}
         route GET /old/{{*rest}} {{ redirect 301 \"/v2/{{param.rest}}\" }}
         route GET /go/{{id}} {{ redirect \"https://example.test/items/{{param.id}}?from={{query.from}}\" }}
         route /{{*rest}} -> up",
        up.addr
    ))
    .await;
    let got = get(&live.url("/internal/metrics")).await;
    assert_eq!(got.status, 404);
    let got = get(&live.url("/teapot")).await;
    assert_eq!((got.status, got.body.as_str()), (418, "short and stout"));
    assert_eq!(got.header("content-type"), Some("text/plain; charset=utf-8"));
    let got = get(&live.url("/old/a/b/c")).await;
    assert_eq!(got.status, 301);
    assert_eq!(got.header("location"), Some("/v2/a/b/c"));
    let got = get(&live.url("/go/42?from=mail%20box%26x%3D1")).await;
    assert_eq!(got.status, 302, "a redirect without status is 302");
    assert_eq!(
        got.header("location"),
        Some("https://example.test/items/42?from=mail%20box%26x%3D1"),
        "a decoded value is encoded again, so it cannot add query parameters"
    );
    assert_eq!(up.count(), 0, "no upstream was contacted");
}

#[tokio::test]
async fn strip_prefix_and_rewrite_change_the_path_sent_upstream() {
    let up = Upstream::named("up").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream up {{ server {} }}
         route /api/{{*rest}} -> up {{ strip_prefix /api }}
         route GET /users/{{id}} -> up {{ rewrite \"/v1/people/{{param.id}}\" }}
         route GET /search/{{term}} -> up {{ rewrite \"/find?term={{param.term}}\" }}",
        up.addr
    ))
    .await;
    let path = |url: String| async move { get(&url).await.json()["path"].as_str().unwrap_or("").to_string() };
    assert_eq!(path(live.url("/api/orders/7?x=1")).await, "/orders/7?x=1");
    assert_eq!(path(live.url("/api")).await, "/");
    assert_eq!(path(live.url("/api/")).await, "/");
    assert_eq!(path(live.url("/users/42?full=1")).await, "/v1/people/42?full=1");
    assert_eq!(
        path(live.url("/search/a&b=c?page=2")).await,
        "/find?term=a%26b%3Dc&page=2"
    );
}

#[tokio::test]
async fn header_transforms_render_templates_both_ways() {
    let up = Upstream::start(|req| async move {
        let mut r = crate::live::json_echo("up", &req);
        r.headers_mut().insert("server", "internal-app/1.2".parse().unwrap());
        r.headers_mut().insert("x-internal", "yes".parse().unwrap());
        r
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream up {{ server {} }}
         route GET /t/{{id}} -> up {{
           set request header x-who \"{{header.x-name}}:{{param.id}}:{{query.page}}\"
           set request header x-client \"{{client_ip}}\"
           set request header x-forwarded-proto \"overridden\"
           remove request header cookie
           set response header cache-control \"no-store\"
           set response header x-item \"item-{{param.id}}\"
           remove response header server
           remove response header x-internal
         }}",
        up.addr
    ))
    .await;
    let req = Request::get(live.url("/t/7?page=3"))
        .header("x-name", "ann")
        .header("cookie", "session=abc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = send(req).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("cache-control"), Some("no-store"));
    assert_eq!(got.header("x-item"), Some("item-7"));
    assert!(
        got.header("server").is_none() && got.header("x-internal").is_none(),
        "{:?}",
        got.headers
    );
    let h = &got.json()["headers"];
    assert_eq!(h["x-who"], "ann:7:3");
    assert_eq!(h["x-client"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "overridden", "the route's headers apply last");
    assert!(h.get("cookie").is_none(), "{h}");
    // A missing reference renders empty.
    let got = get(&live.url("/t/8")).await;
    assert_eq!(got.json()["headers"]["x-who"], ":8:");
}

#[tokio::test]
async fn a_set_header_whose_value_cannot_be_a_header_removes_the_clients() {
    let up = Upstream::named("up").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream up {{ server {} }}
         route GET /t -> up {{ set request header x-who \"{{query.name}}\" }}",
        up.addr
    ))
    .await;
    // `%0A` decodes to a newline, which no header value may hold.
    let req = Request::get(live.url("/t?name=%0Aevil"))
        .header("x-who", "forged")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = send(req).await;
    assert_eq!(got.status, 200);
    assert!(got.json()["headers"].get("x-who").is_none(), "{}", got.body);
}
