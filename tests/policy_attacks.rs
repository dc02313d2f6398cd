//! The attacks people actually try on a JWT-protected route, each through a
//! live gateway; every one is the same bare 401 and never reaches the
//! upstream.

use crate::policy::{assert_unauthorized, bearer, claims, gateway, get, now, path, read, rs256, sign, AUD, ISS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::json;

/// HS256 over any header and claims with any secret: the forger's tool.
fn hs256_with(secret: &[u8], header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let msg = format!("{}.{}", part(header), part(claims));
    let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{msg}.{sig}")
}

fn part(v: &serde_json::Value) -> String {
    B64.encode(v.to_string())
}

async fn protected() -> (crate::live::Live, crate::live::Upstream) {
    gateway(&format!(
        "listen 127.0.0.1:0
         limits {{ max_header_size 512KiB }}
         upstream app {{ server {{up}} }}
         auth users jwt {{ issuer \"{ISS}\" audience \"{AUD}\" algorithms RS256 jwks file(\"{}\") leeway 5s }}
         route /{{*rest}} -> app {{ auth users }}",
        path("jwks-k1.json")
    ))
    .await
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let (live, up) = protected().await;
    let good = claims(json!({}));
    let valid = rs256(&good);
    let [h, p, s]: [&str; 3] = valid.split('.').collect::<Vec<_>>().try_into().unwrap();

    let none_lower = format!("{}.{}.", part(&json!({"alg": "none", "typ": "JWT"})), part(&good));
    let none_upper = format!("{}.{}.", part(&json!({"alg": "None", "typ": "JWT"})), part(&good));
    let none_kid = format!("{}.{}.", part(&json!({"alg": "none", "kid": "k1"})), part(&good));
    let unsigned = format!("{h}.{p}");
    let stripped = format!("{h}.{p}.");
    let mut admin = good.clone();
    admin["sub"] = json!("admin");
    let tampered = format!("{h}.{}.{s}", part(&admin));
    // Algorithm confusion: HS256 "signed" with the RS256 public key as the secret.
    let confusion = hs256_with(
        &read("rsa-public.pem"),
        &json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
        &good,
    );
    let other_key = sign(Algorithm::RS256, "rsa2-private.pem", Some("k1"), &good);
    let unknown_kid = sign(Algorithm::RS256, "rsa2-private.pem", Some("k2"), &good);
    let traversal = sign(
        Algorithm::RS256,
        "rsa-private.pem",
        Some("../../../../etc/passwd"),
        &good,
    );
    let traversal_file = sign(
        Algorithm::RS256,
        "rsa-private.pem",
        Some("../policy/jwks-k1.json"),
        &good,
    );
    let garbage = "not.a.token".to_string();
    let two_dots_in_sig = format!("{valid}.{s}");

    let cases = [
        ("alg none", none_lower),
        ("alg None", none_upper),
        ("alg none with a kid", none_kid),
        ("unsigned (two parts)", unsigned),
        ("stripped signature", stripped),
        ("tampered payload", tampered),
        ("HS256 with the RSA public key as secret", confusion),
        ("signed by another key under the right kid", other_key),
        ("unknown kid", unknown_kid),
        ("kid with path traversal", traversal),
        ("kid naming the JWKS file", traversal_file),
        ("garbage", garbage),
        ("four parts", two_dots_in_sig),
    ];
    for (what, token) in &cases {
        assert_unauthorized(&bearer(&live, "/x", token).await, what);
    }
    assert_eq!(up.count(), 0, "no forged token reached the upstream");
    assert_eq!(
        bearer(&live, "/x", &valid).await.status,
        200,
        "the genuine token passes"
    );
}

#[tokio::test]
async fn claims_outside_their_bounds_are_refused() {
    let (live, up) = protected().await;
    let t = now();
    let cases = [
        ("expired beyond the leeway", json!({ "exp": t - 60 })),
        ("nbf in the future beyond the leeway", json!({ "nbf": t + 120 })),
        ("wrong iss", json!({ "iss": "https://evil.test" })),
        ("wrong aud", json!({ "aud": "someone-else" })),
        ("aud list without ours", json!({ "aud": ["a", "b"] })),
        ("missing exp", json!({ "exp": null })),
        ("missing iss", json!({ "iss": null })),
        ("missing aud", json!({ "aud": null })),
        ("exp not a number", json!({ "exp": "tomorrow" })),
    ];
    for (what, extra) in cases {
        assert_unauthorized(&bearer(&live, "/x", &rs256(&claims(extra))).await, what);
    }
    assert_eq!(up.count(), 0);
    // Within the 5 s leeway, and with our audience among several: accepted.
    for (what, extra) in [
        ("expired within the leeway", json!({ "exp": t - 2 })),
        ("nbf within the leeway", json!({ "nbf": t + 2 })),
        ("nbf in the past", json!({ "nbf": t - 100 })),
        ("aud list with ours", json!({ "aud": ["other", AUD] })),
    ] {
        assert_eq!(bearer(&live, "/x", &rs256(&claims(extra))).await.status, 200, "{what}");
    }
}

#[tokio::test]
async fn two_authorization_headers_and_oversized_tokens_are_refused() {
    let (live, up) = protected().await;
    let valid = rs256(&claims(json!({})));
    let auth = format!("Bearer {valid}");
    let req = hyper::Request::get(live.url("/x"))
        .header("authorization", &auth)
        .header("authorization", &auth)
        .body(Default::default())
        .unwrap();
    assert_unauthorized(&crate::live::send(req).await, "two Authorization headers");

    // A 100 KB token (the listener admits headers this large here, so the
    // auth itself must refuse it).
    let huge = format!("{}.{}.{}", "a".repeat(50_000), "b".repeat(50_000), "c".repeat(300));
    assert_unauthorized(&bearer(&live, "/x", &huge).await, "a 100 KB token");
    // A correctly signed token just over 8 KiB is refused unread too.
    let padded = rs256(&claims(json!({ "pad": "p".repeat(8 * 1024) })));
    assert!(padded.len() > 8 * 1024);
    assert_unauthorized(&bearer(&live, "/x", &padded).await, "a signed token over 8 KiB");
    let small = rs256(&claims(json!({ "pad": "p".repeat(4 * 1024) })));
    assert_eq!(bearer(&live, "/x", &small).await.status, 200, "a 6 KB token is fine");
    assert_eq!(up.count(), 1);
    assert_eq!(get(&live, "/x", &[("authorization", "Bearer ")]).await.status, 401);
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let (live, _up) = protected().await;
    // Valid now (exp within the 5 s leeway for about 3 more seconds), then
    // not: the verified-token cache must not keep it alive.
    let t = rs256(&claims(json!({ "exp": now() - 2 })));
    assert_eq!(bearer(&live, "/x", &t).await.status, 200);
    assert_eq!(bearer(&live, "/x", &t).await.status, 200, "from the cache");
    tokio::time::sleep(std::time::Duration::from_millis(4200)).await;
    assert_unauthorized(&bearer(&live, "/x", &t).await, "expired while cached");
}

#[tokio::test]
async fn a_token_ending_like_a_cached_one_gets_nothing_from_the_cache() {
    let (live, up) = protected().await;
    let good = claims(json!({}));
    let valid = rs256(&good);
    assert_eq!(bearer(&live, "/x", &valid).await.status, 200, "verified, now cached");
    // The cached token's signature (its last bytes, which the cache's key is
    // made of) and length, over other claims: the same key, another token.
    let [h, _, s]: [&str; 3] = valid.split('.').collect::<Vec<_>>().try_into().unwrap();
    let mut other = good.clone();
    other["sub"] = json!("mallo");
    assert_eq!(part(&other).len(), part(&good).len());
    let lookalike = format!("{h}.{}.{s}", part(&other));
    assert_eq!(lookalike.len(), valid.len());
    assert_unauthorized(&bearer(&live, "/x", &lookalike).await, "same key as a cached token");
    assert_eq!(
        bearer(&live, "/x", &valid).await.status,
        200,
        "the cached one still passes"
    );
    assert_eq!(up.count(), 2);
}
