//! CORS answered at the gateway: preflights (allowed origin, `*`, methods,
//! headers, credentials, max age, `Vary`), headers on cross-origin
//! responses, nothing for a disallowed origin, and preflights that a
//! catch-all or a 405 would otherwise have answered.

use crate::live::send;
use crate::policy::gateway;
use bytes::Bytes;
use http_body_util::Full;

async fn cors_gateway() -> (crate::live::Live, crate::live::Upstream) {
    gateway(
        "listen 127.0.0.1:0
         upstream app { server {up} }
         route GET /menu -> app {
           cors { origins \"https://app.example.com\", \"https://admin.example.com\" methods GET, POST headers authorization, x-request-id expose x-total credentials max_age 1h }
           set response header x-total \"3\"
         }
         route GET,PUT /open -> app { cors { origins * } }
         route GET /plain -> app
         route /{*rest} { respond 404 }",
    )
    .await
}

async fn preflight(live: &crate::live::Live, path: &str, origin: &str, method: &str) -> crate::live::Got {
    let req = hyper::Request::builder()
        .method("OPTIONS")
        .uri(live.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(req).await
}

async fn get_from(live: &crate::live::Live, path: &str, origin: Option<&str>) -> crate::live::Got {
    let mut req = hyper::Request::get(live.url(path));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    send(req.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn a_preflight_is_answered_at_the_gateway() {
    let (live, up) = cors_gateway().await;
    // `OPTIONS /menu` alone would go to the catch-all (404): the preflight is
    // looked up with the method it asks about.
    let got = preflight(&live, "/menu", "https://app.example.com", "GET").await;
    assert_eq!(got.status, 204);
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(got.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        got.header("access-control-allow-headers"),
        Some("authorization, x-request-id")
    );
    assert_eq!(got.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(got.header("access-control-max-age"), Some("3600"));
    assert!(got.header("vary").unwrap().contains("Origin"));
    assert!(got.body.is_empty());

    let other = preflight(&live, "/menu", "https://admin.example.com", "GET").await;
    assert_eq!(
        other.header("access-control-allow-origin"),
        Some("https://admin.example.com")
    );

    // A disallowed origin: answered, but without a single CORS grant.
    let evil = preflight(&live, "/menu", "https://evil.example.com", "GET").await;
    assert_eq!(evil.status, 204);
    for h in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-credentials",
        "access-control-allow-headers",
    ] {
        assert!(evil.header(h).is_none(), "{h} for a disallowed origin");
    }
    assert_eq!(up.count(), 0, "preflights never reach the upstream");

    // `*`, and methods defaulting to the route's.
    let open = preflight(&live, "/open", "https://anyone.example", "PUT").await;
    assert_eq!(open.status, 204);
    assert_eq!(open.header("access-control-allow-origin"), Some("*"));
    assert!(open.header("access-control-allow-methods").unwrap().contains("PUT"));
    assert!(open.header("access-control-allow-credentials").is_none());
    assert!(open.header("access-control-max-age").is_none());

    // A route without cors: the preflight is routed as any OPTIONS request.
    assert_eq!(
        preflight(&live, "/plain", "https://app.example.com", "GET")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn cross_origin_responses_carry_the_grant_and_vary() {
    let (live, up) = cors_gateway().await;
    let got = get_from(&live, "/menu", Some("https://app.example.com")).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(got.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(got.header("access-control-expose-headers"), Some("x-total"));
    assert_eq!(got.header("vary"), Some("Origin"));

    let evil = get_from(&live, "/menu", Some("https://evil.example.com")).await;
    assert_eq!(
        evil.status, 200,
        "CORS is the browser's to enforce; the gateway only withholds the grant"
    );
    assert!(evil.header("access-control-allow-origin").is_none());
    assert!(evil.header("access-control-expose-headers").is_none());
    assert_eq!(evil.header("vary"), Some("Origin"));

    let same_origin = get_from(&live, "/menu", None).await;
    assert!(same_origin.header("access-control-allow-origin").is_none());
    assert_eq!(
        same_origin.header("vary"),
        Some("Origin"),
        "caches must keep the variants apart"
    );

    let open = get_from(&live, "/open", Some("https://anyone.example")).await;
    assert_eq!(open.header("access-control-allow-origin"), Some("*"));
    let plain = get_from(&live, "/plain", Some("https://app.example.com")).await;
    assert!(plain.header("access-control-allow-origin").is_none());
    assert!(plain.header("vary").is_none());
    assert_eq!(up.count(), 5);
}
