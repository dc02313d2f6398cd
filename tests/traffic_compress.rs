//! `compress` through a live gateway: each coding's round trip, the
//! negotiation of `Accept-Encoding` (q-values, `identity`, `*`, `q=0`),
//! the answers left alone (small, already encoded, ranges, `no-transform`,
//! other media types, `HEAD`, `204`), `Vary` and `Content-Length`, `compress
//! off` and a route's own block, and a body encoded as it streams.

use crate::live::{Live, Upstream};
use crate::proxy_support::{within, ChanBody};
use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use bytes::Bytes;
use gw_runtime::body::{boxed, full};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Text that compresses well, `n` bytes of it.
fn text(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("line {i} of the menu: soup, bread, cheese\n"));
        i += 1;
    }
    s.truncate(n);
    s
}

async fn decode(coding: &str, bytes: &[u8]) -> String {
    let mut out = Vec::new();
    match coding {
        "gzip" => GzipDecoder::new(bytes).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(bytes).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(bytes).read_to_end(&mut out).await,
        other => panic!("coding {other}"),
    }
    .expect("decodes");
    String::from_utf8(out).expect("utf-8")
}

/// Answers by path: `/text` 4 KiB of text/html, `/small` 100 bytes,
/// `/encoded` an already-gzipped body, `/range` a 206, `/keep` with
/// `no-transform`, `/png` an image, `/empty` a 204, `/json` JSON with a
/// strong ETag.
async fn upstream() -> Upstream {
    Upstream::start(|req| async move {
        let path = req.uri().path().to_string();
        let (status, ty, body, extra): (u16, &str, String, Option<(&str, &str)>) = match path.as_str() {
            "/small" => (200, "text/plain", text(100), None),
            "/encoded" => (200, "text/plain", text(2000), Some(("content-encoding", "gzip"))),
            "/range" => (
                206,
                "text/plain",
                text(2000),
                Some(("content-range", "bytes 0-1999/9000")),
            ),
            "/keep" => (
                200,
                "text/plain",
                text(2000),
                Some(("cache-control", "public, no-transform")),
            ),
            "/png" => (200, "image/png", text(2000), None),
            "/empty" => (204, "text/plain", String::new(), None),
            "/json" => (
                200,
                "application/json; charset=utf-8",
                text(3000),
                Some(("etag", "\"v1\"")),
            ),
            _ => (200, "text/html; charset=utf-8", text(4096), None),
        };
        let mut r = Response::new(full(body));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        r.headers_mut().insert("content-type", ty.parse().expect("type"));
        if let Some((k, v)) = extra {
            r.headers_mut().insert(k, v.parse().expect("value"));
        }
        r
    })
    .await
}

async fn fetch(live: &Live, method: &str, path: &str, accept: Option<&str>) -> (crate::live::Got, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(live.url(path));
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    let resp = within(
        Duration::from_secs(10),
        "an answer",
        crate::live::client().request(req.body(Full::new(Bytes::new())).expect("request")),
    )
    .await
    .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes().to_vec();
    (
        crate::live::Got {
            status,
            headers,
            body: String::new(),
        },
        body,
    )
}

fn vary(got: &crate::live::Got) -> Vec<String> {
    got.headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().expect("vary").to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn each_coding_round_trips_and_the_headers_say_so() {
    let up = upstream().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         compress {{ gzip br zstd  level 5  min_size 1KiB  types \"text/*\", \"application/json\" }}
         route /{{*rest}} -> app",
        up.addr
    ))
    .await;
    for coding in ["gzip", "br", "zstd"] {
        let (got, body) = fetch(&live, "GET", "/text", Some(coding)).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-encoding"), Some(coding));
        assert_eq!(got.header("content-length"), None);
        assert_eq!(vary(&got), ["accept-encoding"]);
        assert!(body.len() < 4096 / 2, "{coding}: {} bytes", body.len());
        assert_eq!(decode(coding, &body).await, text(4096), "{coding}");
    }
    // A strong ETag becomes weak on an encoded answer; JSON is a type listed.
    let (got, body) = fetch(&live, "GET", "/json", Some("gzip")).await;
    assert_eq!(got.header("etag"), Some("W/\"v1\""));
    assert_eq!(decode("gzip", &body).await, text(3000));
}

#[tokio::test]
async fn accept_encoding_is_negotiated_with_its_q_values() {
    let up = upstream().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         route /{{*rest}} -> app {{ compress {{ gzip br zstd }} }}",
        up.addr
    ))
    .await;
    let cases: &[(&str, Option<&str>)] = &[
        ("gzip, br", Some("gzip")),
        ("gzip;q=0.5, br", Some("br")),
        ("br;q=0, zstd;q=0.2, gzip;q=0.1", Some("zstd")),
        ("*", Some("gzip")),
        ("*;q=0.5, gzip;q=0", Some("br")),
        ("identity", None),
        ("gzip;q=0, br;q=0, zstd;q=0", None),
        ("deflate, compress", None),
        ("", None),
    ];
    for (accept, want) in cases {
        let (got, body) = fetch(&live, "GET", "/text", Some(accept)).await;
        assert_eq!(got.header("content-encoding"), *want, "Accept-Encoding: {accept}");
        assert_eq!(vary(&got), ["accept-encoding"], "{accept}");
        match want {
            Some(c) => assert_eq!(decode(c, &body).await, text(4096)),
            None => {
                assert_eq!(body, text(4096).as_bytes());
                assert_eq!(got.header("content-length"), Some("4096"));
            }
        }
    }
    let (got, _) = fetch(&live, "GET", "/text", None).await;
    assert_eq!(got.header("content-encoding"), None, "no Accept-Encoding, no coding");
}

#[tokio::test]
async fn answers_that_must_not_change_pass_as_they_are() {
    let up = upstream().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         compress {{ gzip  min_size 1KiB }}
         route /{{*rest}} -> app
         route /plain/{{*rest}} -> app {{ compress off strip_prefix /plain }}",
        up.addr
    ))
    .await;
    for path in ["/small", "/encoded", "/range", "/keep", "/png", "/empty", "/plain/text"] {
        let (got, body) = fetch(&live, "GET", path, Some("gzip")).await;
        if path != "/encoded" {
            assert_eq!(got.header("content-encoding"), None, "{path}");
        } else {
            assert_eq!(
                got.header("content-encoding"),
                Some("gzip"),
                "{path}: the upstream's own"
            );
        }
        assert!(vary(&got).is_empty(), "{path}: {:?}", vary(&got));
        let want = match path {
            "/small" => text(100),
            "/empty" => String::new(),
            "/plain/text" => text(4096),
            _ => text(2000),
        };
        assert_eq!(body, want.as_bytes(), "{path}: the bytes the upstream sent");
        if path == "/range" {
            assert_eq!(got.status, 206);
            assert_eq!(got.header("content-range"), Some("bytes 0-1999/9000"));
        }
    }
    // HEAD: untouched.
    let (got, body) = fetch(&live, "HEAD", "/text", Some("gzip")).await;
    assert_eq!(got.header("content-encoding"), None);
    assert!(vary(&got).is_empty());
    assert!(body.is_empty());
    // The top-level block applies to the route without its own.
    let (got, _) = fetch(&live, "GET", "/text", Some("gzip")).await;
    assert_eq!(got.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn a_body_is_encoded_as_it_streams() {
    // 2 MiB of text, then the upstream holds the body open: encoded bytes
    // must reach the client before the body ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let up = Upstream::start(move |_req| {
        let rx = rx.clone();
        async move {
            let rx = rx.lock().await.take().expect("one request");
            let mut r = Response::new(boxed(ChanBody(rx)));
            r.headers_mut()
                .insert("content-type", "text/plain".parse().expect("type"));
            r
        }
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         route /stream -> app {{ compress {{ gzip level 1 }} }}",
        up.addr
    ))
    .await;
    let feeder = tokio::spawn(async move {
        let chunk = Bytes::from(text(64 * 1024));
        for _ in 0..32 {
            if tx.send(chunk.clone()).await.is_err() {
                return;
            }
        }
        // Held open until the test ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tx);
    });
    let req = Request::get(live.url("/stream"))
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within(Duration::from_secs(10), "the head", crate::live::client().request(req))
        .await
        .expect("request");
    assert_eq!(
        resp.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let mut body = resp.into_body();
    let frame = within(Duration::from_secs(10), "encoded bytes before the end", body.frame())
        .await
        .expect("a frame")
        .expect("no error");
    assert!(frame.data_ref().is_some_and(|d| !d.is_empty()));
    feeder.abort();
}

#[tokio::test]
async fn an_http2_client_gets_the_same_coding() {
    let up = upstream().await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         route /{{*rest}} -> app {{ compress {{ br gzip }} }}",
        up.addr
    ))
    .await;
    let req = Request::get(live.url("/text"))
        .header("accept-encoding", "gzip, br")
        .body(gw_runtime::body::empty())
        .expect("request");
    let resp = within(
        Duration::from_secs(10),
        "an h2 answer",
        crate::proxy_support::h2_client().request(req),
    )
    .await
    .expect("request");
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(
        resp.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"br"[..])
    );
    assert!(resp.headers().get("content-length").is_none());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(decode("br", &body).await, text(4096));
}
