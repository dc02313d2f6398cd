//! `auth NAME jwt`: read the token (header with or without `Bearer`, query or
//! cookie), refuse it unverified when it is over 8 KiB, names an algorithm
//! the auth does not list (`none` included), has a `typ` header the auth
//! does not accept (`types`: a logout token or a security event token is
//! no access token, RFC 8725 §3.11) or has two `Authorization`
//! headers; verify its signature with the key its `kid` and algorithm
//! select; enforce `iss`, `aud`, a required `exp`, `nbf`, with `leeway`.
//! Every refusal is the same 401 (`WWW-Authenticate: Bearer
//! error="invalid_token"`), with no detail; the reason goes to the debug log.
//!
//! Verified tokens are cached by their exact text (bounded by bytes; an
//! entry is used only while the token's `exp`/`nbf` still hold and the key
//! set it was verified with is still the current one), so a client that
//! sends the same token again costs a hash lookup, not a signature check.

use super::jwks::{KeySet, Remote};
use super::{credential, Rejected};
use crate::metrics::Rejection;
use gw_plan::words;
use gw_plan::{Jwt, JwtKey, TokenFrom};
use hyper::HeaderMap;
use jsonwebtoken::{Algorithm, Validation};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Tokens longer than this are refused before any parsing.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The verified-token cache holds at most about this many bytes.
const CACHE_BUDGET: usize = 32 * 1024 * 1024;

pub struct JwtAuth {
    name: String,
    from: TokenFrom,
    leeway: u64,
    /// The `typ` headers accepted.
    types: words::TokenTypes,
    /// One validation per listed algorithm (issuer, audience, required
    /// claims, leeway), made once.
    validations: Vec<(Algorithm, Validation)>,
    keys: Keys,
    cache: TokenCache,
}

enum Keys {
    Fixed(Arc<KeySet>),
    Remote(Arc<Remote>),
}

/// The jsonwebtoken algorithm of a plan algorithm.
pub(crate) fn algorithm(a: words::Algorithm) -> Algorithm {
    match a {
        words::Algorithm::HS256 => Algorithm::HS256,
        words::Algorithm::HS384 => Algorithm::HS384,
        words::Algorithm::HS512 => Algorithm::HS512,
        words::Algorithm::RS256 => Algorithm::RS256,
        words::Algorithm::RS384 => Algorithm::RS384,
        words::Algorithm::RS512 => Algorithm::RS512,
        words::Algorithm::PS256 => Algorithm::PS256,
        words::Algorithm::PS384 => Algorithm::PS384,
        words::Algorithm::PS512 => Algorithm::PS512,
        words::Algorithm::ES256 => Algorithm::ES256,
        words::Algorithm::ES384 => Algorithm::ES384,
        words::Algorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn unauthorized(auth: &str, why: &str) -> Rejected {
    tracing::debug!(auth, reason = why, "token refused");
    Rejected::new(Rejection::Unauthorized)
}

impl JwtAuth {
    /// Loads the key material (`reuse`: an earlier plan's fetcher of the
    /// same JWKS URL, whose keys and refresh carry on).
    pub async fn build(name: &str, j: &Jwt, reuse: Option<Arc<Remote>>) -> Result<JwtAuth, String> {
        let keys = match &j.key {
            JwtKey::Secret(s) => {
                let bytes = crate::secrets::resolve(s)?;
                // A secret read from a file usually ends with a newline that is not part of it.
                let trimmed = match s {
                    gw_plan::Secret::Inline(_) => &bytes[..],
                    _ => bytes.trim_ascii_end(),
                };
                Keys::Fixed(Arc::new(KeySet::secret(trimmed)?))
            }
            JwtKey::PublicKey(s) => Keys::Fixed(Arc::new(
                KeySet::pem(&crate::secrets::resolve(s)?).map_err(|e| format!("{s}: {e}"))?,
            )),
            JwtKey::JwksFile(s) => Keys::Fixed(Arc::new(
                KeySet::jwks(&crate::secrets::resolve(s)?).map_err(|e| format!("{s}: {e}"))?,
            )),
            JwtKey::JwksUrl { url, refresh } => match reuse {
                Some(r) => Keys::Remote(r),
                None => {
                    Keys::Remote(Remote::start(url, refresh.as_duration().max(std::time::Duration::from_secs(1))).await)
                }
            },
        };
        let leeway = j.leeway.0.div_ceil(1000);
        let validations = j
            .algorithms
            .iter()
            .map(|&a| {
                let alg = algorithm(a);
                let mut v = Validation::new(alg);
                v.set_issuer(&[&j.issuer]);
                v.set_audience(&[&j.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.validate_exp = true;
                v.validate_nbf = true;
                v.validate_aud = true;
                v.leeway = leeway;
                (alg, v)
            })
            .collect();
        Ok(JwtAuth {
            name: name.to_string(),
            from: j.from.clone(),
            leeway,
            types: j.types.clone(),
            validations,
            keys,
            cache: TokenCache::default(),
        })
    }

    /// This auth's JWKS fetcher, when it fetches the URL `j` names.
    pub(crate) fn remote_for(&self, j: &Jwt) -> Option<Arc<Remote>> {
        match (&self.keys, &j.key) {
            (Keys::Remote(r), JwtKey::JwksUrl { url, refresh })
                if *url == r.url && refresh.as_duration().max(std::time::Duration::from_secs(1)) == r.refresh =>
            {
                Some(r.clone())
            }
            _ => None,
        }
    }

    /// The JWKS fetcher, if the keys come from a URL (tests look at it).
    pub fn remote(&self) -> Option<&Arc<Remote>> {
        match &self.keys {
            Keys::Remote(r) => Some(r),
            Keys::Fixed(_) => None,
        }
    }

    fn key_set(&self) -> (Arc<KeySet>, u64) {
        match &self.keys {
            Keys::Fixed(k) => (k.clone(), 0),
            Keys::Remote(r) => (r.keys(), r.generation()),
        }
    }

    /// The verified claims of the request's token, or a 401.
    pub async fn verify(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Arc<serde_json::Value>, Rejected> {
        let Some(token) = credential(&self.from, headers, query, MAX_TOKEN_LEN) else {
            return Err(unauthorized(&self.name, "no token, two tokens, or a token over 8 KiB"));
        };
        let (set, generation) = self.key_set();
        if let Some(claims) = self.cache.get(&token, generation, now(), self.leeway) {
            return Ok(claims);
        }
        match self.verify_with(&token, &set) {
            Verdict::Valid(claims, exp, nbf) => {
                Ok(self.cache.put(&token, claims, exp, nbf, generation, now(), self.leeway))
            }
            Verdict::UnknownKid(kid) => {
                let Keys::Remote(remote) = &self.keys else {
                    return Err(unauthorized(&self.name, "unknown kid"));
                };
                // Boxed: a fetch of the key set is rare, and its state (4 KiB)
                // would otherwise be in every verification's future, and so in
                // the box of every request's policy check.
                if !Box::pin(remote.refetch_for(&kid)).await {
                    return Err(unauthorized(&self.name, "unknown kid"));
                }
                let (set, generation) = self.key_set();
                match self.verify_with(&token, &set) {
                    Verdict::Valid(claims, exp, nbf) => {
                        Ok(self.cache.put(&token, claims, exp, nbf, generation, now(), self.leeway))
                    }
                    Verdict::UnknownKid(_) => Err(unauthorized(&self.name, "unknown kid")),
                    Verdict::Invalid(why) => Err(unauthorized(&self.name, why)),
                }
            }
            Verdict::Invalid(why) => Err(unauthorized(&self.name, why)),
        }
    }

    fn verify_with(&self, token: &str, set: &KeySet) -> Verdict {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) => return Verdict::Invalid("malformed token or header (or alg none)"),
        };
        if !self.types.accepts(header.typ.as_deref()) {
            return Verdict::Invalid("token type (`typ`) not accepted by the auth");
        }
        let Some((alg, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Verdict::Invalid("algorithm not listed by the auth");
        };
        let kid = header.kid.as_deref();
        let mut tried = false;
        for key in set.candidates(*alg, kid) {
            tried = true;
            match jsonwebtoken::decode::<serde_json::Value>(token, &key.key, validation) {
                Ok(data) => {
                    let claims = data.claims;
                    if !claims.is_object() {
                        return Verdict::Invalid("claims are not an object");
                    }
                    let exp = claims.get("exp").and_then(number).unwrap_or(0);
                    let nbf = claims.get("nbf").and_then(number);
                    return Verdict::Valid(claims, exp, nbf);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    match e.kind() {
                        K::InvalidSignature | K::InvalidKeyFormat | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => {}
                        // A claim failed: no other key makes it pass.
                        _ => return Verdict::Invalid("claims or format rejected"),
                    }
                }
            }
        }
        match (tried, kid) {
            (false, Some(k)) => Verdict::UnknownKid(k.to_string()),
            (false, None) => Verdict::Invalid("no key for the algorithm"),
            (true, _) => Verdict::Invalid("bad signature"),
        }
    }
}

/// A NumericDate as jsonwebtoken reads it (integer, or a float rounded).
fn number(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.round() as u64)
    })
}

enum Verdict {
    /// Claims, `exp`, `nbf`.
    Valid(serde_json::Value, u64, Option<u64>),
    UnknownKid(String),
    Invalid(&'static str),
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Bytes of the token's end its cache key is made of.
const KEY_TAIL: usize = 32;

/// Verified tokens by their text: bounded by an estimate of their bytes; an
/// entry holds only while the token is within `exp`/`nbf` (with leeway) and
/// the key set is the one it was verified with.
#[derive(Default)]
pub(crate) struct TokenCache {
    inner: RwLock<CacheInner>,
    hasher: std::hash::RandomState,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<u64, Entry>,
    bytes: usize,
}

struct Entry {
    token: Box<str>,
    /// Shared with every request that presents the token: a hit clones no
    /// JSON.
    claims: Arc<serde_json::Value>,
    exp: u64,
    nbf: Option<u64>,
    generation: u64,
    size: usize,
}

impl Entry {
    fn fresh(&self, generation: u64, now: u64, leeway: u64) -> bool {
        self.generation == generation
            && self.exp.saturating_add(leeway) >= now
            && self.nbf.is_none_or(|n| n <= now.saturating_add(leeway))
    }
}

impl TokenCache {
    /// The map's key: a keyed hash of the token's last bytes. They are the
    /// signature's, distinct for every token the cache can hold (only verified
    /// ones go in), so hashing the whole token (hundreds of bytes) would add
    /// nothing; a hit still compares the whole token.
    fn key(&self, token: &str) -> u64 {
        let tail = token
            .as_bytes()
            .get(token.len().saturating_sub(KEY_TAIL)..)
            .unwrap_or_default();
        self.hasher.hash_one((token.len(), tail))
    }

    fn get(&self, token: &str, generation: u64, now: u64, leeway: u64) -> Option<Arc<serde_json::Value>> {
        let h = self.key(token);
        let inner = self.inner.read().ok()?;
        let e = inner.entries.get(&h)?;
        (*e.token == *token && e.fresh(generation, now, leeway)).then(|| e.claims.clone())
    }

    /// Keeps a verified token's claims, and returns them as every later hit
    /// will share them.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        token: &str,
        claims: serde_json::Value,
        exp: u64,
        nbf: Option<u64>,
        generation: u64,
        now: u64,
        leeway: u64,
    ) -> Arc<serde_json::Value> {
        let claims = Arc::new(claims);
        // The parsed claims take a few times the token's length.
        let size = token.len() * 4 + 256;
        let h = self.key(token);
        let Ok(mut inner) = self.inner.write() else {
            return claims;
        };
        if inner.bytes + size > CACHE_BUDGET {
            inner.entries.retain(|_, e| e.fresh(generation, now, leeway));
            inner.bytes = inner.entries.values().map(|e| e.size).sum();
            if inner.bytes + size > CACHE_BUDGET {
                inner.entries.clear();
                inner.entries.shrink_to_fit();
                inner.bytes = 0;
            }
        }
        let entry = Entry {
            token: token.into(),
            claims: claims.clone(),
            exp,
            nbf,
            generation,
            size,
        };
        if let Some(old) = inner.entries.insert(h, entry) {
            inner.bytes -= old.size;
        }
        inner.bytes += size;
        claims
    }
}
