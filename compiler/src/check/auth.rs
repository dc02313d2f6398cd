//! Auths: a `jwt` auth uses one family of algorithms (GW0401, algorithm
//! confusion); its key material exists, parses and fits its algorithms
//! (GW0402: a `secret` for HS*, a PEM public key or JWKS of the right key
//! type for the rest); an `api_key` auth's key list exists and holds keys
//! (GW0402); a secret written inline is a warning (GW0505). Files and
//! variables are read through [`material`](super::material) (GW0404).

use super::material::{self, Material};
use super::pem::{self, KeyType};
use super::Ctx;
use crate::ast::{Algorithm, ApiKey, ApiKeys, Auth, AuthKind, Jwt, KeyKind, KeySource, Source};
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{Span, Spanned};

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    for auth in &ctx.config.auths {
        match &auth.kind {
            AuthKind::Jwt(j) => jwt(ctx, auth, j, diags),
            AuthKind::ApiKey(k) => api_key(ctx, auth, k, diags),
        }
    }
}

fn list(algs: &[Algorithm]) -> String {
    algs.iter()
        .map(|a| format!("`{}`", a.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn jwt(ctx: &Ctx<'_>, auth: &Auth, j: &Jwt, diags: &mut Diagnostics) {
    let name = &auth.name.node;
    let written: &[Spanned<Algorithm>] = j.algorithms.as_ref().map(|a| a.node.as_slice()).unwrap_or(&[]);
    let hmac: Vec<&Spanned<Algorithm>> = written.iter().filter(|a| a.node.is_hmac()).collect();
    let public: Vec<&Spanned<Algorithm>> = written.iter().filter(|a| !a.node.is_hmac()).collect();
    let public_algs: Vec<Algorithm> = public.iter().map(|a| a.node).collect();
    let mixed = !hmac.is_empty() && !public.is_empty();

    if let (Some(all), Some(h), Some(p)) = (&j.algorithms, hmac.first(), public.first()) {
        diags.push(
            Diagnostic::new(
                Code::GW0401,
                format!(
                    "jwt auth `{name}` mixes HMAC (`{}`) with public-key (`{}`) algorithms",
                    h.node.as_str(),
                    p.node.as_str()
                ),
            )
            .primary(
                all.span,
                format!("`{}` needs a shared secret, `{}` a public key", h.node.as_str(), p.node.as_str()),
            )
            .help("a token could pick the algorithm its forger can sign (algorithm confusion): keep `HS*` with a `secret`, or `RS*`/`PS*`/`ES*`/`EdDSA` with `public_key` or `jwks`, and split them into two auths if both are needed"),
        );
    }

    let Some(key) = &j.key else { return };
    // Which key the algorithms need, when they agree on one kind.
    let wants_secret = !mixed && !hmac.is_empty();
    let wants_public = !mixed && !public.is_empty();
    match &key.node {
        KeySource::Secret(src) => {
            if wants_public {
                diags.push(
                    Diagnostic::new(
                        Code::GW0402,
                        format!("jwt auth `{name}` verifies {} with a shared `secret`", list(&public_algs)),
                    )
                    .primary(key.span, "a secret is for HS* algorithms")
                    .help("verify public-key algorithms with `public_key file(\"key.pem\")` or `jwks file(\"jwks.json\")`"),
                );
            }
            secret(ctx, auth, src, key.span, diags);
        }
        KeySource::PublicKey(src) => {
            if wants_secret {
                public_for_hmac(auth, "a public key", key.span, diags);
            }
            if let Some(m) = material::read(ctx, src, key.span, "public key", Code::GW0402, diags) {
                public_key(&m, key.span, &public_algs, diags);
            }
        }
        KeySource::JwksFile(src) => {
            if wants_secret {
                public_for_hmac(auth, "a JWKS", key.span, diags);
            }
            if let Some(m) = material::read(ctx, src, key.span, "JWKS", Code::GW0402, diags) {
                jwks(&m, key.span, &public_algs, diags);
            }
        }
        KeySource::JwksUrl { .. } => {
            if wants_secret {
                public_for_hmac(auth, "a JWKS", key.span, diags);
            }
        }
    }
}

fn public_for_hmac(auth: &Auth, what: &str, span: Span, diags: &mut Diagnostics) {
    diags.push(
        Diagnostic::new(
            Code::GW0402,
            format!("jwt auth `{}` verifies HS* algorithms with {what}", auth.name.node),
        )
        .primary(span, "HS* algorithms verify with a shared secret")
        .help("use `secret env(\"JWT_SECRET\")` for HS*, or list the public-key algorithms this key verifies"),
    );
}

fn secret(ctx: &Ctx<'_>, auth: &Auth, src: &Source, span: Span, diags: &mut Diagnostics) {
    if let Source::Inline(s) = src {
        diags.push(
            Diagnostic::new(
                Code::GW0505,
                format!("jwt auth `{}` has its secret written inline", auth.name.node),
            )
            .primary(span, "a secret in the configuration")
            .help("prefer `secret env(\"JWT_SECRET\")` or `secret file(\"jwt.secret\")`: the configuration ends up in version control and backups"),
        );
        if s.is_empty() {
            diags.push(
                Diagnostic::new(
                    Code::GW0402,
                    format!("jwt auth `{}` has an empty secret", auth.name.node),
                )
                .primary(span, "empty")
                .help("use a long random secret, read with `env(\"JWT_SECRET\")`"),
            );
        }
        return;
    }
    let Some(m) = material::read(ctx, src, span, "secret", Code::GW0402, diags) else {
        return;
    };
    if m.bytes.iter().all(u8::is_ascii_whitespace) {
        diags.push(
            Diagnostic::new(Code::GW0402, format!("the secret in {} is empty", m.origin))
                .primary(span, "no secret here")
                .help("put a long random secret in it"),
        );
    }
}

/// Whether a public key of type `kt` verifies `alg`.
fn fits(kt: KeyType, alg: Algorithm) -> bool {
    match alg.key_kind() {
        KeyKind::Rsa => kt == KeyType::Rsa,
        KeyKind::Ec => match alg {
            Algorithm::ES256 => kt == KeyType::EcP256,
            Algorithm::ES384 => kt == KeyType::EcP384,
            _ => false,
        },
        KeyKind::Ed25519 => kt == KeyType::Ed25519,
        KeyKind::Secret => false,
    }
}

fn public_key(m: &Material, span: Span, algs: &[Algorithm], diags: &mut Diagnostics) {
    let origin = &m.origin;
    let bad = |message: String, label: &str, help: &str| {
        Diagnostic::new(Code::GW0402, message).primary(span, label).help(help)
    };
    let blocks = match pem::parse(&m.bytes) {
        Ok(b) => b,
        Err(e) => {
            diags.push(bad(
                format!("{origin} is not a PEM public key: {e}"),
                "not a PEM public key",
                "give a PEM file with a `-----BEGIN PUBLIC KEY-----` block",
            ));
            return;
        }
    };
    let found = blocks
        .iter()
        .find(|b| b.label == "PUBLIC KEY" || b.label == "RSA PUBLIC KEY");
    let key_type = match found {
        Some(b) if b.label == "PUBLIC KEY" => pem::spki_key_type(&b.der),
        Some(b) => pem::is_pkcs1_rsa_public(&b.der).then_some(KeyType::Rsa),
        None => {
            let first = blocks.first().map(|b| b.label.as_str()).unwrap_or("");
            let d = if blocks.iter().any(|b| b.label.contains("PRIVATE KEY")) {
                bad(
                    format!("{origin} holds a private key, not a public key"),
                    "a private key",
                    "give only the public half (`openssl pkey -in key.pem -pubout`) and keep the private key off the gateway",
                )
            } else if first == "CERTIFICATE" {
                bad(
                    format!("{origin} holds a certificate, not a public key"),
                    "a certificate",
                    "extract its key with `openssl x509 -pubkey -noout -in cert.pem`",
                )
            } else {
                bad(
                    format!("{origin} holds no `PUBLIC KEY` block (found `{first}`)"),
                    "no public key",
                    "give a PEM file with a `-----BEGIN PUBLIC KEY-----` block",
                )
            };
            diags.push(d);
            return;
        }
    };
    let Some(kt) = key_type else {
        diags.push(bad(
            format!("the public key in {origin} is malformed"),
            "not a valid public key",
            "regenerate the PEM file, e.g. `openssl pkey -in key.pem -pubout`",
        ));
        return;
    };
    let misfits: Vec<Algorithm> = algs.iter().copied().filter(|&a| !fits(kt, a)).collect();
    if misfits.is_empty() {
        return;
    }
    let fitting: Vec<Algorithm> = Algorithm::ALL.into_iter().filter(|&a| fits(kt, a)).collect();
    let help = if fitting.is_empty() {
        "gw verifies RSA, EC P-256, EC P-384 and Ed25519 keys; give one of those".to_string()
    } else {
        format!(
            "this key verifies {}: list only those, or give a key for {}",
            list(&fitting),
            list(&misfits)
        )
    };
    diags.push(
        Diagnostic::new(
            Code::GW0402,
            format!(
                "{origin} holds {}, which cannot verify {}",
                kt.describe(),
                list(&misfits)
            ),
        )
        .primary(span, format!("{} here", kt.describe()))
        .help(help),
    );
}

/// Whether one JWK can verify `alg`.
fn jwk_fits(key: &serde_json::Value, alg: Algorithm) -> bool {
    let field = |f: &str| key.get(f).and_then(serde_json::Value::as_str);
    let has = |f: &str| field(f).is_some_and(|s| !s.is_empty());
    if field("use").is_some_and(|u| u != "sig") || field("alg").is_some_and(|a| a != alg.as_str()) {
        return false;
    }
    match (alg.key_kind(), field("kty")) {
        (KeyKind::Rsa, Some("RSA")) => has("n") && has("e"),
        (KeyKind::Ec, Some("EC")) => {
            let crv = if alg == Algorithm::ES384 { "P-384" } else { "P-256" };
            field("crv") == Some(crv) && has("x") && has("y")
        }
        (KeyKind::Ed25519, Some("OKP")) => field("crv") == Some("Ed25519") && has("x"),
        _ => false,
    }
}

/// What a JWK is, for "found ..." help lines.
fn jwk_kind(key: &serde_json::Value) -> String {
    let field = |f: &str| key.get(f).and_then(serde_json::Value::as_str);
    match (field("kty"), field("crv")) {
        (Some(kty), Some(crv)) => format!("`{kty}` {crv}"),
        (Some(kty), None) => format!("`{kty}`"),
        _ => "a key without `kty`".into(),
    }
}

fn jwks(m: &Material, span: Span, algs: &[Algorithm], diags: &mut Diagnostics) {
    let origin = &m.origin;
    let bad = |message: String, label: &str, help: String| {
        Diagnostic::new(Code::GW0402, message).primary(span, label).help(help)
    };
    let value: serde_json::Value = match serde_json::from_slice(&m.bytes) {
        Ok(v) => v,
        Err(e) => {
            diags.push(bad(
                format!("{origin} is not JSON: {e}"),
                "not a JWKS",
                "a JWKS is a JSON object: `{\"keys\": [{\"kty\": \"RSA\", \"n\": \"...\", \"e\": \"AQAB\"}]}`".into(),
            ));
            return;
        }
    };
    let Some(keys) = value.get("keys").and_then(serde_json::Value::as_array) else {
        diags.push(bad(
            format!("{origin} has no `keys` array"),
            "not a JWKS",
            "a JWKS is a JSON object: `{\"keys\": [...]}`".into(),
        ));
        return;
    };
    if keys.is_empty() {
        diags.push(bad(
            format!("{origin} holds no keys"),
            "an empty key set",
            "add the issuer's public keys to `keys`".into(),
        ));
        return;
    }
    if algs.is_empty() || algs.iter().any(|&a| keys.iter().any(|k| jwk_fits(k, a))) {
        return;
    }
    let mut kinds: Vec<String> = Vec::new();
    for k in keys {
        let kind = jwk_kind(k);
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    diags.push(bad(
        format!("{origin} has no key for {}", list(algs)),
        "no usable key",
        format!(
            "it holds {}; list the algorithms its keys verify, or add a signing key (`\"use\": \"sig\"`) for {}",
            kinds.join(", "),
            list(algs)
        ),
    ));
}

fn api_key(ctx: &Ctx<'_>, auth: &Auth, k: &ApiKey, diags: &mut Diagnostics) {
    let Some(keys) = &k.keys else { return };
    let name = &auth.name.node;
    match &keys.node {
        ApiKeys::Inline(list) => {
            if !list.is_empty() {
                diags.push(
                    Diagnostic::new(Code::GW0505, format!("api_key auth `{name}` has its keys written inline"))
                        .primary(keys.span, "secrets in the configuration")
                        .help("prefer `keys file(\"keys.txt\")` or `keys env(\"API_KEYS\")`: the configuration ends up in version control and backups"),
                );
            }
        }
        ApiKeys::File(src) => {
            let Some(m) = material::read(ctx, src, keys.span, "key list", Code::GW0402, diags) else {
                return;
            };
            let Ok(text) = std::str::from_utf8(&m.bytes) else {
                diags.push(
                    Diagnostic::new(Code::GW0402, format!("the key list {} is not text", m.origin))
                        .primary(keys.span, "not a key list")
                        .help("write one key per line, optionally followed by a name: `k-123 partner-a`"),
                );
                return;
            };
            let any = text
                .lines()
                .map(str::trim)
                .any(|l| !l.is_empty() && !l.starts_with('#'));
            if !any {
                diags.push(
                    Diagnostic::new(Code::GW0402, format!("the key list {} holds no keys", m.origin))
                        .primary(keys.span, "no keys")
                        .help("write one key per line, optionally followed by a name: `k-123 partner-a`"),
                );
            }
        }
    }
}
