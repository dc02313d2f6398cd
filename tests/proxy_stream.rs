//! Bodies and connections through a live gateway: large bodies stream both
//! ways and start moving before they have all arrived; `max_body_size` is
//! enforced on declared and on chunked bodies; upstream connections are
//! pooled (`pool { max_idle idle_timeout }`) and `http2` upstreams get h2.

use crate::live::{get, Live, Upstream};
use crate::proxy_support::{
    body_or_empty, chan_body, chan_response, exchange, h2_client, pattern, raw, read_all, stream_client, within, Fnv,
};
use bytes::Bytes;
use gw_runtime::body::full;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Request, Response};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;
const BIG: usize = 20 * 1024 * 1024;

fn gateway(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "listen 127.0.0.1:0
         limits {{ max_body_size 64MiB }}
         upstream up {{ server {upstream} {extra} }}
         route /{{*rest}} -> up"
    )
}

#[tokio::test]
async fn a_large_request_body_reaches_the_upstream_while_the_client_is_still_sending() {
    // The upstream answers as soon as the first chunk is in, then reads the
    // rest within its response and ends it with the length and hash it saw.
    let up = Upstream::start(|req| async move {
        let mut body = req.into_body();
        let mut seen = 0usize;
        let mut hash = Fnv::default();
        if let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                seen += d.len();
                hash.feed(d);
            }
        }
        let (tx, resp) = chan_response(4);
        tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    seen += d.len();
                    hash.feed(d);
                }
            }
            let _ = tx.send(Bytes::from(format!("{seen} {:x}", hash.0))).await;
        });
        resp
    })
    .await;
    let live = Live::start(&gateway(up.addr, "")).await;
    let (tx, body) = chan_body(4);
    let req = Request::post(live.url("/upload")).body(body).unwrap();
    let client = stream_client();
    let pending = tokio::spawn(async move { client.request(req).await });
    tx.send(pattern(0, CHUNK)).await.unwrap();
    // Only one chunk of 320 has left the client: the answer's head comes
    // back now, so the gateway forwarded before it had the whole body.
    let resp = within(Duration::from_secs(5), "the head after the first chunk", pending)
        .await
        .unwrap()
        .expect("response");
    assert_eq!(resp.status(), 200);
    let sender = tokio::spawn(async move {
        let mut offset = CHUNK;
        while offset < BIG {
            tx.send(pattern(offset, CHUNK)).await.unwrap();
            offset += CHUNK;
        }
    });
    let got = String::from_utf8(read_all(resp.into_body()).await).unwrap();
    sender.await.unwrap();
    let mut expected = Fnv::default();
    expected.feed(&pattern(0, BIG));
    assert_eq!(
        got,
        format!("{BIG} {:x}", expected.0),
        "the upstream saw every byte in order"
    );
}

#[tokio::test]
async fn a_large_response_streams_to_the_client_while_the_upstream_holds_the_rest() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let up = Upstream::start(move |_req| {
        let mut release = release_rx.clone();
        async move {
            let (tx, resp) = chan_response(4);
            tokio::spawn(async move {
                tx.send(Bytes::from_static(b"first")).await.unwrap();
                // Hold the rest until the client has the first chunk.
                let _ = tokio::time::timeout(Duration::from_secs(10), release.wait_for(|r| *r)).await;
                let mut offset = 0;
                while offset < BIG {
                    if tx.send(pattern(offset, CHUNK)).await.is_err() {
                        return;
                    }
                    offset += CHUNK;
                }
            });
            resp
        }
    })
    .await;
    let live = Live::start(&gateway(up.addr, "")).await;
    let resp = within(
        Duration::from_secs(5),
        "the head",
        stream_client().request(
            Request::get(live.url("/download"))
                .body(gw_runtime::body::empty())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = within(Duration::from_secs(5), "the first chunk", body.frame())
        .await
        .expect("a frame")
        .expect("data");
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"first"[..]));
    release_tx.send(true).unwrap();
    let rest = read_all(body).await;
    assert_eq!(rest.len(), BIG);
    assert!(rest == pattern(0, BIG), "the body arrived whole and in order");
}

#[tokio::test]
async fn a_small_body_streams_when_no_retry_could_replay_it() {
    // Without retries, even a small body is not held back: the upstream
    // answers after the first chunk while the client still has the rest.
    let up = Upstream::start(|req| async move {
        let mut body = req.into_body();
        let first = body.frame().await.and_then(|f| f.ok()).and_then(|f| f.into_data().ok());
        Response::new(full(first.unwrap_or_default()))
    })
    .await;
    let live = Live::start(&gateway(up.addr, "")).await;
    let (tx, body) = chan_body(4);
    let client = stream_client();
    let req = Request::put(live.url("/small")).body(body).unwrap();
    let pending = tokio::spawn(async move { client.request(req).await });
    tx.send(Bytes::from_static(b"one")).await.unwrap();
    let resp = within(Duration::from_secs(5), "the head", pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(tx);
    assert_eq!(read_all(resp.into_body()).await, b"one");
}

#[tokio::test]
async fn a_declared_body_over_max_body_size_gets_413_before_the_upstream_is_contacted() {
    let up = Upstream::named("up").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         limits {{ max_body_size 1KiB }}
         upstream up {{ server {} }}
         route /{{*rest}} -> up",
        up.addr
    ))
    .await;
    // Only the head is sent: the refusal cannot wait for the body.
    let (head, _) = raw(
        live.addrs[0],
        b"POST /x HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 20000000\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        0,
        "the upstream was not contacted"
    );
    // At the limit it passes.
    let req = Request::post(live.url("/x")).body(full(vec![b'a'; 1024])).unwrap();
    assert_eq!(exchange(&stream_client(), req).await.status, 200);
}

#[tokio::test]
async fn a_chunked_body_growing_past_max_body_size_gets_413_not_502() {
    // The upstream reads the whole body before it answers.
    let up = Upstream::start(|req| async move {
        let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
        Response::new(full(n.to_string()))
    })
    .await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         limits {{ max_body_size 100KiB }}
         upstream up {{ server {} }}
         route /{{*rest}} -> up",
        up.addr
    ))
    .await;
    let (tx, body) = chan_body(4);
    let client = stream_client();
    let req = Request::post(live.url("/x")).body(body).unwrap();
    let pending = tokio::spawn(async move { client.request(req).await });
    for i in 0..3 {
        // 3 × 40 KiB: the third chunk crosses 100 KiB. The sender stays
        // open, so the only way to an answer is the gateway's refusal.
        tx.send(pattern(i * 40 * 1024, 40 * 1024)).await.unwrap();
    }
    let resp = within(Duration::from_secs(5), "the refusal", pending)
        .await
        .unwrap()
        .expect("an answer");
    assert_eq!(resp.status(), 413);
    drop(tx);

    // A chunked body under the limit goes through whole.
    let (tx, body) = chan_body(4);
    let req = Request::post(live.url("/x")).body(body).unwrap();
    let client = stream_client();
    let pending = tokio::spawn(async move { exchange(&client, req).await });
    tx.send(pattern(0, 50 * 1024)).await.unwrap();
    tx.send(pattern(0, 50 * 1024)).await.unwrap();
    drop(tx);
    let got = pending.await.unwrap();
    assert_eq!((got.status, got.body.as_str()), (200, "102400"));
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let up = Upstream::named("up").await;
    let live = Live::start(&gateway(up.addr, "")).await;
    for _ in 0..20 {
        assert_eq!(get(&live.url("/")).await.status, 200);
    }
    assert_eq!(up.count(), 20);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "keep-alive: one connection for all"
    );
}

/// Four requests at once.
async fn burst(live: &Live) {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = live.url("/slow");
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

/// An upstream that holds each request until four are in (a barrier): the
/// four requests of a burst are in flight together, on four connections.
async fn barrier_upstream() -> Upstream {
    let all_in = Arc::new(tokio::sync::Barrier::new(4));
    Upstream::start(move |_req| {
        let all_in = all_in.clone();
        async move {
            all_in.wait().await;
            Response::new(full("ok"))
        }
    })
    .await
}

#[tokio::test]
async fn the_pool_keeps_at_most_max_idle_connections_per_server() {
    let keeps_all = barrier_upstream().await;
    let keeps_one = barrier_upstream().await;
    let all = Live::start(&gateway(keeps_all.addr, "")).await;
    let one = Live::start(&gateway(keeps_one.addr, "pool { max_idle 1 }")).await;
    for live in [&all, &one] {
        burst(live).await;
        burst(live).await;
    }
    // The second burst finds four idle connections (default max_idle 64)…
    assert_eq!(keeps_all.connections.load(Ordering::SeqCst), 4);
    // …or one, and opens three more.
    assert_eq!(keeps_one.connections.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn idle_upstream_connections_close_after_idle_timeout() {
    let up = Upstream::named("up").await;
    let live = Live::start(&gateway(up.addr, "pool { idle_timeout 200ms }")).await;
    let sent = Instant::now();
    assert_eq!(get(&live.url("/")).await.status, 200);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    // The gateway closes the idle connection: not before idle_timeout from
    // when it became idle (after `sent`; a timer never fires early, and the
    // pool's clock counts whole milliseconds), and within a bounded wait.
    let closed = &up.closed;
    assert!(
        crate::live::eventually(Duration::from_secs(10), || closed.load(Ordering::SeqCst) == 1).await,
        "the idle connection was never closed"
    );
    assert!(sent.elapsed() >= Duration::from_millis(190), "{:?}", sent.elapsed());
    assert_eq!(get(&live.url("/")).await.status, 200);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        2,
        "the idle connection was not reused"
    );
}

/// An upstream that records the HTTP version and authority of each request.
async fn recording_upstream() -> (Upstream, Arc<Mutex<Vec<(hyper::Version, String, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let up = Upstream::start(move |req| {
        let s = s.clone();
        async move {
            let authority = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            s.lock().unwrap().push((req.version(), authority, host));
            tokio::time::sleep(Duration::from_millis(50)).await;
            Response::new(full("ok"))
        }
    })
    .await;
    (up, seen)
}

#[tokio::test]
async fn http2_upstreams_get_h2_multiplexed_on_one_connection() {
    let (up, seen) = recording_upstream().await;
    let live = Live::start(&gateway(up.addr, "http2")).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let url = live.url("/h2");
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 10);
    assert!(seen.iter().all(|(v, _, _)| *v == hyper::Version::HTTP_2), "{seen:?}");
    // The client's host travels as :authority.
    let host = live.addrs[0].to_string();
    assert!(seen.iter().all(|(_, a, _)| *a == host), "{seen:?}");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "ten concurrent requests share one h2 connection"
    );
}

#[tokio::test]
async fn http1_upstreams_get_http1_even_from_h2_clients_with_host_from_authority() {
    let (up, seen) = recording_upstream().await;
    let live = Live::start(&gateway(up.addr, "")).await;
    let got = exchange(
        &h2_client(),
        Request::get(live.url("/from-h2"))
            .body(gw_runtime::body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, hyper::Version::HTTP_11);
    assert_eq!(seen[0].2, live.addrs[0].to_string(), "Host made from the h2 :authority");
}

#[tokio::test]
async fn a_request_body_from_an_h2_client_without_length_is_forwarded() {
    let up = Upstream::start(|req| async move {
        let body = body_or_empty(req).await;
        Response::new(full(body))
    })
    .await;
    let live = Live::start(&gateway(up.addr, "")).await;
    let (tx, body) = chan_body(4);
    let req = Request::post(live.url("/echo")).body(body).unwrap();
    let client = h2_client();
    let pending = tokio::spawn(async move { exchange(&client, req).await });
    tx.send(Bytes::from_static(b"hello ")).await.unwrap();
    tx.send(Bytes::from_static(b"h2")).await.unwrap();
    drop(tx);
    let got = pending.await.unwrap();
    assert_eq!((got.status, got.body.as_str()), (200, "hello h2"));
}

/// A body of one data frame and then trailers.
struct WithTrailers(Option<Frame<Bytes>>, Option<Frame<Bytes>>);

impl hyper::body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.0.take().or_else(|| self.1.take());
        std::task::Poll::Ready(next.map(Ok))
    }
}

#[tokio::test]
async fn trailers_pass_from_an_h2_upstream_to_an_h2_client() {
    // gRPC's shape: h2 both ways, `te: trailers`, the status in trailers.
    let up = Upstream::start(|req| async move {
        let te = req.headers().get("te").cloned();
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        if let Some(te) = te {
            trailers.insert("x-seen-te", te);
        }
        let body = WithTrailers(
            Some(Frame::data(Bytes::from_static(b"message"))),
            Some(Frame::trailers(trailers)),
        );
        Response::new(gw_runtime::body::boxed(body))
    })
    .await;
    let live = Live::start(&gateway(up.addr, "http2")).await;
    let req = Request::post(live.url("/pkg.Service/Method"))
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(full("request"))
        .unwrap();
    let resp = within(Duration::from_secs(5), "the head", h2_client().request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let collected = within(Duration::from_secs(5), "the body", resp.into_body().collect())
        .await
        .unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrived");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"message"));
    assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    assert_eq!(trailers.get("x-seen-te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
}
