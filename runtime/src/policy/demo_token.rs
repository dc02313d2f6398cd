//! A token for `gwc serve --demo`: signed RS256 with the demo private key
//! (`examples/keys/demo-private.pem`, public and never for real use) for the
//! plan's first RS256 `jwt` auth — its issuer and audience, and the `kid`
//! of the first key of its JWKS file when it has one — so that the demo's
//! authenticated routes can be tried with curl.

use gw_plan::words::Algorithm;
use gw_plan::{AuthKind, JwtKey, Plan};
use jsonwebtoken::{EncodingKey, Header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Mints a demo token valid for `ttl`: subject `demo-user`, role
/// `customer`, scope `orders:write payments:write`. `Err` says why not
/// (no RS256 jwt auth in the plan, or the key does not parse).
pub fn demo_token(plan: &Plan, private_key_pem: &[u8], ttl: Duration) -> Result<String, String> {
    let jwt = plan
        .auths
        .iter()
        .find_map(|a| match &a.kind {
            AuthKind::Jwt(j) if j.algorithms.contains(&Algorithm::RS256) => Some(j),
            _ => None,
        })
        .ok_or("the plan has no RS256 jwt auth")?;
    let kid = match &jwt.key {
        JwtKey::JwksFile(s) => crate::secrets::resolve(s)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["keys"][0]["kid"].as_str().map(str::to_string)),
        _ => None,
    };
    let key = EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| format!("not an RSA private key: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "iss": jwt.issuer,
        "aud": jwt.audience,
        "sub": "demo-user",
        "role": "customer",
        "scope": "orders:write payments:write",
        "iat": now,
        "exp": now + ttl.as_secs(),
    });
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}
