//! The gateway's own upstream pool: a pooled connection the server closed
//! while it was idle is never used for a request; the request goes on a new
//! connection and succeeds. (Reuse and `max_idle` are in `proxy_stream`.)

use crate::live::{get, Live};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An upstream that answers one request per connection with a keep-alive
/// response, then closes the connection `linger` later; counts connections
/// accepted and closed.
async fn one_shot_upstream(linger: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (count, ended) = (connections.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                tokio::time::sleep(linger).await;
                drop(s);
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, connections, closed)
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_not_used_again() {
    let (addr, connections, closed) = one_shot_upstream(Duration::from_millis(20)).await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream up {{ server {addr} }}
         route /{{*rest}} -> up"
    ))
    .await;
    for i in 0..3 {
        let got = get(&live.url(&format!("/{i}"))).await;
        assert_eq!((got.status, got.body.as_str()), (200, "ok"), "request {i}");
        // Until the server has closed the connection it answered on.
        let closed = &closed;
        assert!(crate::live::eventually(Duration::from_secs(10), || closed.load(Ordering::SeqCst) == i + 1).await);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3, "one new connection per request");
}
