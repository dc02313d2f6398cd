//! End-to-end tests of the proxy path: routing answers, header hygiene,
//! balancing across real upstream servers, and failures mapped to statuses.

use crate::live::{get, Live, Upstream};

#[tokio::test]
async fn routes_to_the_right_upstream_and_keeps_the_client_host() {
    let orders = Upstream::named("orders").await;
    let login = Upstream::named("login").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream orders {{ server {} }}
         upstream login {{ server {} }}
         route GET /orders/{{id}} -> orders
         route POST /login -> login
         route /{{*rest}} -> login",
        orders.addr, login.addr
    ))
    .await;
    let got = get(&live.url("/orders/42?x=1")).await;
    assert_eq!(got.status, 200);
    let j = got.json();
    assert_eq!(j["upstream"], "orders");
    assert_eq!(j["path"], "/orders/42?x=1");
    assert_eq!(
        j["headers"]["host"],
        live.addrs[0].to_string(),
        "the client's Host is kept"
    );
    assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");
    assert_eq!(get(&live.url("/anything/else")).await.json()["upstream"], "login");
}

#[tokio::test]
async fn unmatched_paths_get_404_and_methods_405_with_allow() {
    let up = Upstream::named("a").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         route GET,POST /x -> a",
        up.addr
    ))
    .await;
    assert_eq!(get(&live.url("/nope")).await.status, 404);
    let req = hyper::Request::delete(live.url("/x")).body(Default::default()).unwrap();
    let got = crate::live::send(req).await;
    assert_eq!(got.status, 405);
    assert_eq!(got.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn weighted_round_robin_over_live_servers_is_exact() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream pool {{ server {} weight 3 server {} }}
         route /{{*rest}} -> pool",
        a.addr, b.addr
    ))
    .await;
    for _ in 0..40 {
        assert_eq!(get(&live.url("/")).await.status, 200);
    }
    assert_eq!((a.count(), b.count()), (30, 10));
}

#[tokio::test]
async fn connection_refused_is_502_without_internal_detail() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream gone {{ server 127.0.0.1:{port} }}
         route /{{*rest}} -> gone"
    ))
    .await;
    let got = get(&live.url("/")).await;
    assert_eq!(got.status, 502);
    assert!(!got.body.contains("127.0.0.1"), "{}", got.body);
    assert!(!got.body.contains(&port.to_string()), "{}", got.body);
}

/// `respond 404` without a body hides a path: for every method its route
/// takes, the answer is byte for byte the one a path no route matches gets
/// (the `date` aside), on the gateway's own loop and on hyper's fallback.
#[tokio::test]
async fn a_hidden_path_answers_exactly_as_an_unknown_one_for_every_method_its_route_takes() {
    use crate::proxy_support::raw;
    let up = Upstream::named("a").await;
    let live = Live::start(&format!(
        "listen 127.0.0.1:0
         upstream a {{ server {} }}
         route /internal/{{*rest}} {{ respond 404 }}
         route GET /secret {{ respond 404 }}
         route /api/{{*rest}} -> a",
        up.addr
    ))
    .await;
    let answer = |method: &str, path: &str, chunked: bool| {
        let body = if chunked {
            "transfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
        } else {
            "\r\n"
        };
        let request = format!("{method} {path} HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n{body}");
        let addr = live.addrs[0];
        async move {
            let (head, body) = raw(addr, request.as_bytes()).await;
            let head: Vec<String> = head
                .lines()
                // Both differ from one answer to the next.
                .filter(|l| !l.starts_with("date:") && !l.starts_with("x-request-id:"))
                .map(str::to_string)
                .collect();
            (head, body)
        }
    };
    let mut compared = 0;
    for (path, methods) in [
        (
            "/internal/jobs/run",
            &[
                "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PURGE",
            ][..],
        ),
        ("/secret", &["GET", "HEAD"][..]),
    ] {
        for method in methods {
            for chunked in [false, true] {
                if chunked && (*method == "GET" || *method == "HEAD") {
                    continue;
                }
                let hidden = answer(method, path, chunked).await;
                let unknown = answer(method, "/never/served", chunked).await;
                assert!(hidden.0[0].starts_with("http/1.1 404"), "{method} {path}: {hidden:?}");
                assert_eq!(hidden, unknown, "{method} {path} (chunked body: {chunked})");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 18);
    // The unknown path's answer is the gateway's JSON 404.
    let (head, body) = answer("GET", "/internal/x", false).await;
    assert!(head.iter().any(|l| l == "content-type: application/json"), "{head:?}");
    assert_eq!(body, b"{\"error\":\"not found\",\"status\":404}\n");
    assert_eq!(up.count(), 0);
}
