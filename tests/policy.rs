//! End-to-end tests of `auth NAME jwt` through a live gateway: every
//! algorithm with its key form (secret, PEM, JWKS file), where the token is
//! read from, what the claims feed (templates, `hash(claim.x)`, limit keys),
//! and the helpers the other `policy_*` tests share (keys in
//! `tests/fixtures/policy/`, token minting, a gateway in front of an echo
//! upstream).

#![allow(dead_code)]

use crate::live::{send, Got, Live, Upstream};
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISS: &str = "https://issuer.test";
pub const AUD: &str = "gw-tests";
pub const DIR: &str = "tests/fixtures/policy";

/// `tests/fixtures/policy/NAME`, as the `.gw` text names it.
pub fn path(name: &str) -> String {
    format!("{DIR}/{name}")
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Every fixture, for the compiler's in-memory host (the runtime reads the
/// same files from disk).
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(DIR).expect("fixtures") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        out.push((path(&name), read(&name)));
    }
    out
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Valid claims for the tests' issuer and audience, with `extra` merged in
/// (a `null` removes a claim).
pub fn claims(extra: Value) -> Value {
    let mut c = json!({ "iss": ISS, "aud": AUD, "sub": "alice", "exp": now() + 300 });
    if let (Some(map), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

/// Signs `claims` with the private key `key` (a fixture name, or `hs` for
/// the shared secret).
pub fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let encoding = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => EncodingKey::from_secret(&read("hs.secret")).unwrap(),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&read(key)).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&read(key)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&read(key)).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// An RS256 token of `rsa-private.pem` with kid `k1`.
pub fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa-private.pem", Some("k1"), claims)
}

/// Starts a gateway from `text` (with `{up}` replaced by the echo
/// upstream's address) and every policy fixture readable.
pub async fn gateway(text: &str) -> (Live, Upstream) {
    let up = Upstream::named("app").await;
    let text = text.replace("{up}", &up.addr.to_string());
    let files = fixtures();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    (Live::start_with(&text, &refs).await, up)
}

/// GET `path` with `headers`.
pub async fn get(live: &Live, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = hyper::Request::get(live.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::new())).unwrap()).await
}

/// GET `path` with `Authorization: Bearer TOKEN`.
pub async fn bearer(live: &Live, path: &str, token: &str) -> Got {
    get(live, path, &[("authorization", &format!("Bearer {token}"))]).await
}

/// The gateway's 401: the challenge header and a body that names nothing.
pub fn assert_unauthorized(got: &Got, what: &str) {
    assert_eq!(got.status, 401, "{what}: {got:?}");
    assert_eq!(
        got.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{what}"
    );
    assert_eq!(got.body, "{\"error\":\"unauthorized\",\"status\":401}\n", "{what}");
}

fn auth(name: &str, algorithms: &str, key: &str) -> String {
    format!("auth {name} jwt {{ issuer \"{ISS}\" audience \"{AUD}\" algorithms {algorithms} {key} }}\n")
}

const FAMILIES: &str = "listen 127.0.0.1:0
upstream app { server {up} }
route /hs -> app { auth hs }
route /rsa -> app { auth rsa }
route /ec -> app { auth ec }
route /ed -> app { auth ed }
route /rs256 -> app { auth only_rs256 }
";

async fn families() -> (Live, Upstream) {
    let text = format!(
        "{FAMILIES}{}{}{}{}{}",
        auth(
            "hs",
            "HS256, HS384, HS512",
            &format!("secret file(\"{}\")", path("hs.secret"))
        ),
        auth(
            "rsa",
            "RS256, RS384, RS512, PS256, PS384, PS512",
            &format!("public_key file(\"{}\")", path("rsa-public.pem"))
        ),
        auth(
            "ec",
            "ES256, ES384",
            &format!("jwks file(\"{}\")", path("jwks-all.json"))
        ),
        auth(
            "ed",
            "EdDSA",
            &format!("public_key file(\"{}\")", path("ed25519-public.pem"))
        ),
        auth(
            "only_rs256",
            "RS256",
            &format!("public_key file(\"{}\")", path("rsa-public.pem"))
        ),
    );
    gateway(&text).await
}

#[tokio::test]
async fn every_algorithm_verifies_with_its_key_form() {
    let (live, up) = families().await;
    let c = claims(json!({}));
    let cases = [
        (Algorithm::HS256, "hs", None, "/hs"),
        (Algorithm::HS384, "hs", None, "/hs"),
        (Algorithm::HS512, "hs", None, "/hs"),
        (Algorithm::RS256, "rsa-private.pem", None, "/rsa"),
        (Algorithm::RS384, "rsa-private.pem", None, "/rsa"),
        (Algorithm::RS512, "rsa-private.pem", None, "/rsa"),
        (Algorithm::PS256, "rsa-private.pem", None, "/rsa"),
        (Algorithm::PS384, "rsa-private.pem", None, "/rsa"),
        (Algorithm::PS512, "rsa-private.pem", None, "/rsa"),
        (Algorithm::ES256, "ec256-private.pem", Some("e256"), "/ec"),
        (Algorithm::ES384, "ec384-private.pem", Some("e384"), "/ec"),
        (Algorithm::EdDSA, "ed25519-private.pem", None, "/ed"),
    ];
    for (alg, key, kid, route) in cases {
        let token = sign(alg, key, kid, &c);
        let got = bearer(&live, route, &token).await;
        assert_eq!(got.status, 200, "{alg:?} on {route}: {got:?}");
    }
    assert_eq!(up.count(), cases.len());
}

#[tokio::test]
async fn only_the_listed_algorithms_are_accepted() {
    let (live, up) = families().await;
    let c = claims(json!({}));
    // Same key, another algorithm of its family: not listed, refused.
    assert_unauthorized(
        &bearer(&live, "/rs256", &sign(Algorithm::RS384, "rsa-private.pem", None, &c)).await,
        "RS384 on an RS256-only auth",
    );
    assert_unauthorized(
        &bearer(&live, "/rs256", &sign(Algorithm::PS256, "rsa-private.pem", None, &c)).await,
        "PS256 on an RS256-only auth",
    );
    // Another family's token on an auth that does not list it.
    assert_unauthorized(
        &bearer(&live, "/ec", &sign(Algorithm::RS256, "rsa-private.pem", Some("k1"), &c)).await,
        "RS256 on an ES auth whose JWKS has an RSA key",
    );
    // An ES256 token signed with the P-384 key under the P-256 kid.
    assert_unauthorized(
        &bearer(
            &live,
            "/ec",
            &sign(Algorithm::ES384, "ec384-private.pem", Some("e256"), &c),
        )
        .await,
        "ES384 under a P-256 kid",
    );
    assert_eq!(
        bearer(&live, "/rs256", &sign(Algorithm::RS256, "rsa-private.pem", None, &c))
            .await
            .status,
        200
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn the_token_is_read_from_the_configured_place() {
    let text = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {{up}} }}
         route /header -> app {{ auth h }}
         route /plain -> app {{ auth p }}
         route /query -> app {{ auth q }}
         route /cookie -> app {{ auth c }}
         {}{}{}{}",
        auth(
            "h",
            "RS256",
            &format!("public_key file(\"{}\")", path("rsa-public.pem"))
        ),
        auth(
            "p",
            "RS256",
            &format!("public_key file(\"{}\") from header x-token", path("rsa-public.pem"))
        ),
        auth(
            "q",
            "RS256",
            &format!(
                "public_key file(\"{}\") from query access_token",
                path("rsa-public.pem")
            )
        ),
        auth(
            "c",
            "RS256",
            &format!("public_key file(\"{}\") from cookie session", path("rsa-public.pem"))
        ),
    );
    let (live, _up) = gateway(&text).await;
    let t = rs256(&claims(json!({})));
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let got = get(&live, "/header", &[("authorization", &format!("{scheme} {t}"))]).await;
        assert_eq!(got.status, 200, "scheme {scheme}");
    }
    assert_unauthorized(
        &get(&live, "/header", &[("authorization", &format!("Basic {t}"))]).await,
        "another scheme",
    );
    assert_unauthorized(&get(&live, "/header", &[("authorization", &t)]).await, "no scheme");
    assert_unauthorized(&get(&live, "/header", &[]).await, "no token");
    assert_eq!(get(&live, "/plain", &[("x-token", &t)]).await.status, 200);
    assert_eq!(
        get(&live, &format!("/query?a=1&access_token={t}"), &[]).await.status,
        200
    );
    assert_unauthorized(
        &get(&live, "/query", &[("authorization", &format!("Bearer {t}"))]).await,
        "the header when the auth reads the query",
    );
    assert_eq!(
        get(&live, "/cookie", &[("cookie", &format!("theme=dark; session={t}"))])
            .await
            .status,
        200
    );
    assert_unauthorized(&get(&live, "/cookie", &[("cookie", "session=")]).await, "empty cookie");
}

#[tokio::test]
async fn claims_feed_templates_require_hash_keys_and_limits() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let text = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {{up}} }}
         upstream inbox {{ balance hash(claim.sub) server {} server {} }}
         auth users jwt {{ issuer \"{ISS}\" audience \"{AUD}\" algorithms RS256 jwks file(\"{}\") }}
         limit per_user {{ rate 3/min burst 3 key claim.sub }}
         route /me -> app {{
           auth users
           require claim.address.city == \"Lyon\"
           set request header x-user-id \"{{claim.sub}}\"
           set request header x-city \"{{claim.address.city}}\"
           set response header x-served-for \"{{claim.sub}}\"
           remove request header cookie
         }}
         route /inbox -> inbox {{ auth users limit per_user }}",
        a.addr,
        b.addr,
        path("jwks-k1.json"),
    );
    let (live, _up) = gateway(&text).await;
    let alice = rs256(&claims(json!({ "sub": "alice", "address": { "city": "Lyon" } })));
    let got = get(
        &live,
        "/me",
        &[("authorization", &format!("Bearer {alice}")), ("cookie", "s=1")],
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    let j = got.json();
    assert_eq!(j["headers"]["x-user-id"], "alice");
    assert_eq!(j["headers"]["x-city"], "Lyon");
    assert!(j["headers"].get("cookie").is_none());
    assert_eq!(got.header("x-served-for"), Some("alice"));
    let paris = rs256(&claims(json!({ "sub": "bob", "address": { "city": "Paris" } })));
    assert_eq!(bearer(&live, "/me", &paris).await.status, 403);

    // hash(claim.sub): one user always lands on the same server.
    let mut servers = std::collections::HashSet::new();
    for _ in 0..3 {
        let got = bearer(&live, "/inbox", &alice).await;
        assert_eq!(got.status, 200);
        servers.insert(got.json()["upstream"].as_str().unwrap().to_string());
    }
    assert_eq!(servers.len(), 1, "alice always reaches one server");
    // The per-user budget is alice's own: exhausted for her, not for bob.
    let refused = bearer(&live, "/inbox", &alice).await;
    assert_eq!(refused.status, 429);
    assert_eq!(bearer(&live, "/inbox", &paris).await.status, 200);
}

#[tokio::test]
async fn the_demo_token_opens_the_food_court_routes() {
    let plan = crate::live::plan_of(
        &std::fs::read_to_string("examples/food-court.gw")
            .unwrap()
            .replace("file(\"keys/jwks.json\")", "file(\"examples/keys/jwks.json\")"),
        &[(
            "examples/keys/jwks.json",
            &std::fs::read("examples/keys/jwks.json").unwrap(),
        )],
    );
    let pem = std::fs::read("examples/keys/demo-private.pem").unwrap();
    let token = gw_runtime::policy::demo_token::demo_token(&plan, &pem, std::time::Duration::from_secs(3600)).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("food-court-demo-1"));
    // It verifies against the food court's own auth, and has the scopes its routes require.
    let auth = gw_runtime::policy::jwt::JwtAuth::build(
        "users",
        match &plan.auths[0].kind {
            gw_compiler::plan::AuthKind::Jwt(j) => j,
            _ => panic!("the food court's first auth is a jwt"),
        },
        None,
    )
    .await
    .unwrap();
    let mut headers = hyper::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let claims = auth.verify(&headers, None).await.expect("the demo token verifies");
    assert_eq!(claims["iss"], "https://login.food-court.example");
    assert!(claims["scope"].as_str().unwrap().contains("orders:write"));
}
