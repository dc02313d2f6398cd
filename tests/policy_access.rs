//! `auth NAME api_key` (keys from a file with names, or inline) and
//! `require` (`has`, `in`, `==`, `!=`, nested claims) through a live gateway.

use crate::policy::{assert_unauthorized, bearer, claims, gateway, get, path, rs256, AUD, ISS};
use serde_json::json;

#[tokio::test]
async fn api_keys_from_a_file_authenticate_and_name_the_caller() {
    let dir = std::env::temp_dir().join(format!("gw-api-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("partners.txt");
    std::fs::write(&file, "# partners\nk-123 acme corp\n\nk-456\n  k-789   globex  \n").unwrap();
    let file = file.to_string_lossy().into_owned();
    let text = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {{up}} }}
         auth partners api_key {{ keys file(\"{file}\") }}
         auth by_query api_key {{ keys file(\"{file}\") from query key }}
         limit per_partner {{ rate 1/min burst 1 key api_key }}
         route /p -> app {{ auth partners }}
         route /q -> app {{ auth by_query }}
         route /once -> app {{ auth partners limit per_partner }}"
    );
    let contents = std::fs::read(&file).unwrap();
    let up = crate::live::Upstream::named("app").await;
    let live = crate::live::Live::start_with(
        &text.replace("{up}", &up.addr.to_string()),
        &[(file.as_str(), contents.as_slice())],
    )
    .await;
    for key in ["k-123", "k-456", "k-789"] {
        assert_eq!(get(&live, "/p", &[("x-api-key", key)]).await.status, 200, "{key}");
    }
    for bad in ["k-12", "k-1234", "K-123", "acme", "k-123 acme corp", "# partners", ""] {
        assert_unauthorized(&get(&live, "/p", &[("x-api-key", bad)]).await, bad);
    }
    assert_unauthorized(&get(&live, "/p", &[]).await, "no key");
    let two = hyper::Request::get(live.url("/p"))
        .header("x-api-key", "k-123")
        .header("x-api-key", "nope")
        .body(Default::default())
        .unwrap();
    assert_eq!(crate::live::send(two).await.status, 401, "two key headers");
    assert_eq!(get(&live, "/q?key=k-456", &[]).await.status, 200);
    assert_eq!(get(&live, "/q", &[("x-api-key", "k-456")]).await.status, 401);
    // The name keys the limit: acme's budget is not globex's.
    assert_eq!(get(&live, "/once", &[("x-api-key", "k-123")]).await.status, 200);
    assert_eq!(get(&live, "/once", &[("x-api-key", "k-123")]).await.status, 429);
    assert_eq!(get(&live, "/once", &[("x-api-key", "k-789")]).await.status, 200);
    assert_eq!(get(&live, "/once", &[("x-api-key", "k-456")]).await.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unnamed_keys_get_a_stable_fingerprint_name() {
    let keys = gw_runtime::policy::api_key::parse_keys("k-1\nk-2 second\n# comment\n");
    assert_eq!(keys.len(), 2);
    assert!(keys[0].1.starts_with("key-") && keys[0].1.len() == 12, "{}", keys[0].1);
    assert!(!keys[0].1.contains("k-1"), "the name never shows the key");
    assert_eq!(keys[1].1, "second");
    let again = gw_runtime::policy::api_key::parse_keys("k-1");
    assert_eq!(again[0].1, keys[0].1);
}

#[tokio::test]
async fn require_checks_claims_and_answers_403() {
    let (live, up) = gateway(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {{up}} }}
         auth users jwt {{ issuer \"{ISS}\" audience \"{AUD}\" algorithms RS256 public_key file(\"{}\") }}
         route /scope -> app {{ auth users require claim.scope has \"orders:write\" }}
         route /roles -> app {{ auth users require claim.roles has \"admin\" }}
         route /staff -> app {{ auth users require claim.role in [\"staff\", \"manager\"] }}
         route /eu -> app {{ auth users require claim.org.region == \"eu\" require claim.org.tier != \"free\" }}",
        path("rsa-public.pem")
    ))
    .await;
    let cases = [
        ("/scope", json!({ "scope": "orders:read orders:write" }), 200),
        ("/scope", json!({ "scope": "orders:read orders:writer" }), 403),
        ("/scope", json!({ "scope": ["orders:write"] }), 200),
        ("/scope", json!({}), 403),
        ("/roles", json!({ "roles": ["user", "admin"] }), 200),
        ("/roles", json!({ "roles": ["user"] }), 403),
        ("/roles", json!({ "roles": "user admin" }), 200),
        ("/roles", json!({ "roles": { "admin": true } }), 403),
        ("/staff", json!({ "role": "manager" }), 200),
        ("/staff", json!({ "role": "customer" }), 403),
        ("/staff", json!({ "role": ["staff"] }), 403),
        ("/eu", json!({ "org": { "region": "eu", "tier": "pro" } }), 200),
        ("/eu", json!({ "org": { "region": "eu" } }), 200),
        ("/eu", json!({ "org": { "region": "eu", "tier": "free" } }), 403),
        ("/eu", json!({ "org": { "region": "us", "tier": "pro" } }), 403),
        ("/eu", json!({ "region": "eu" }), 403),
    ];
    let mut passed = 0;
    for (route, extra, status) in cases {
        let got = bearer(&live, route, &rs256(&claims(extra.clone()))).await;
        assert_eq!(got.status, status, "{route} with {extra}");
        if status == 403 {
            assert_eq!(got.body, "{\"error\":\"forbidden\",\"status\":403}\n");
        } else {
            passed += 1;
        }
    }
    assert_eq!(up.count(), passed);
    // Without a valid token it is 401, not 403.
    assert_unauthorized(&get(&live, "/scope", &[]).await, "no token");
}
