//! The keys a `jwt` auth verifies with: a shared secret, a PEM public key, a
//! JWKS file, or a JWKS URL that is fetched at start, refreshed every
//! `refresh`, and refetched early — at most once a minute — when a token
//! names a `kid` the set does not have. A failed fetch keeps the last good
//! set serving. A `kid` is only ever a lookup key, never a path.

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// An unknown `kid` triggers an early refetch at most this often.
pub const EARLY_REFETCH_EVERY: Duration = Duration::from_secs(60);
/// A JWKS document may be at most this large.
const JWKS_BODY_LIMIT: usize = 1024 * 1024;
/// One fetch (connect, TLS, request, body) may take at most this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many keys are tried for a token that names no `kid`.
const MAX_CANDIDATES: usize = 8;

/// One verification key.
pub struct Key {
    /// Matches a token's `kid`; a key without one matches any token.
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one: the only algorithm it verifies.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

/// An immutable set of keys.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// A shared secret (HS*).
    pub fn secret(bytes: &[u8]) -> Result<KeySet, String> {
        let key = DecodingKey::from_secret(bytes).map_err(|e| format!("unusable secret: {e}"))?;
        Ok(KeySet {
            keys: vec![Key {
                kid: None,
                alg: None,
                key,
            }],
        })
    }

    /// A PEM public key: RSA, EC (P-256 / P-384) or Ed25519.
    pub fn pem(bytes: &[u8]) -> Result<KeySet, String> {
        let key = DecodingKey::from_rsa_pem(bytes)
            .or_else(|_| DecodingKey::from_ec_pem(bytes))
            .or_else(|_| DecodingKey::from_ed_pem(bytes))
            .map_err(|_| "not a PEM public key of a supported type (RSA, EC, Ed25519)".to_string())?;
        Ok(KeySet {
            keys: vec![Key {
                kid: None,
                alg: None,
                key,
            }],
        })
    }

    /// A JWKS document. Keys that cannot verify signatures (`use` other than
    /// `sig`, unknown types, malformed) are skipped; a set with no usable key
    /// is an error.
    pub fn jwks(bytes: &[u8]) -> Result<KeySet, String> {
        let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or("no `keys` array")?;
        let mut keys = Vec::new();
        for k in list {
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
            {
                continue;
            }
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(a) => match signing_alg(a) {
                    Some(a) => Some(a),
                    None => continue,
                },
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            // A JWKS carries public keys; an HMAC secret in one is not trusted.
            if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
                continue;
            }
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err("no usable signing key".into());
        }
        Ok(KeySet { keys })
    }

    /// Whether some key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys that may have signed a token with `alg` and `kid`.
    pub fn candidates<'s>(&'s self, alg: Algorithm, kid: Option<&'s str>) -> impl Iterator<Item = &'s Key> + 's {
        self.keys
            .iter()
            .filter(move |k| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg))
            .filter(move |k| match (&k.kid, kid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            })
            .take(MAX_CANDIDATES)
    }
}

/// The signing algorithm a JWK's `alg` names, if it is one.
fn signing_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A JWKS fetched from a URL, refreshed in the background.
pub struct Remote {
    pub url: String,
    pub refresh: Duration,
    set: ArcSwap<KeySet>,
    /// Bumped whenever a fetch replaces the set (the token cache checks it).
    generation: AtomicU64,
    /// When the last early (unknown `kid`) refetch started.
    last_early: Mutex<Option<Instant>>,
    /// One fetch at a time; waiters then look at the fresh set.
    fetching: tokio::sync::Mutex<()>,
    /// Fetches attempted (for tests and metrics).
    pub fetches: AtomicU64,
}

impl Remote {
    /// Fetches `url` once (a failure is logged and leaves the set empty:
    /// tokens are refused until a fetch succeeds) and starts the refresh.
    pub async fn start(url: &str, refresh: Duration) -> Arc<Remote> {
        let remote = Arc::new(Remote {
            url: url.to_string(),
            refresh,
            set: ArcSwap::from_pointee(KeySet::default()),
            generation: AtomicU64::new(0),
            last_early: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        });
        let first_ok = {
            let _g = remote.fetching.lock().await;
            remote.fetch_and_swap().await
        };
        tokio::spawn(refresh_loop(Arc::downgrade(&remote), first_ok));
        remote
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.set.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A token named `kid`, which the set lacks: refetch now unless an early
    /// refetch happened less than a minute ago. True when the set has the
    /// `kid` afterwards.
    pub async fn refetch_for(&self, kid: &str) -> bool {
        let _g = self.fetching.lock().await;
        if self.set.load().has_kid(kid) {
            return true;
        }
        {
            let Ok(mut last) = self.last_early.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < EARLY_REFETCH_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        tracing::info!(url = %gw_plan::redact::redact_url(&self.url), "a token names an unknown kid: refetching the JWKS");
        self.fetch_and_swap().await;
        self.set.load().has_kid(kid)
    }

    /// One fetch; the set is replaced only by a good one. Call with `fetching` held.
    async fn fetch_and_swap(&self) -> bool {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(FETCH_TIMEOUT, fetch(&self.url)).await {
            Ok(Ok(body)) => KeySet::jwks(&body),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out".into()),
        };
        match result {
            Ok(set) => {
                self.set.store(Arc::new(set));
                self.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(e) => {
                tracing::warn!(url = %gw_plan::redact::redact_url(&self.url), error = %e, "JWKS fetch failed; the last good key set keeps serving");
                false
            }
        }
    }
}

/// Refreshes every `refresh`; after a failure, retries sooner (1 s, doubling
/// up to `refresh`). Ends when the remote is dropped.
async fn refresh_loop(remote: Weak<Remote>, mut last_ok: bool) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = {
            let Some(r) = remote.upgrade() else { return };
            if last_ok {
                backoff = Duration::from_secs(1);
                r.refresh
            } else {
                let w = backoff.min(r.refresh);
                backoff = (backoff * 2).min(r.refresh);
                w
            }
        };
        tokio::time::sleep(wait).await;
        let Some(r) = remote.upgrade() else { return };
        let _g = r.fetching.lock().await;
        last_ok = r.fetch_and_swap().await;
    }
}

/// GET `url` (http or https) and return a 200's body.
async fn fetch(url: &str) -> Result<Bytes, String> {
    let uri: Uri = url.parse().map_err(|_| "not a URL".to_string())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("not an http:// or https:// URL".into()),
    };
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = Request::get(path)
        .header(
            header::HOST,
            HeaderValue::from_str(&host_header).map_err(|e| e.to_string())?,
        )
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "gw")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if tls {
        let name = crate::tls_client::server_name(None, &bare_host)?;
        let stream = tokio_rustls::TlsConnector::from(tls_client()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {}", crate::tls_client::why(&e)))?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<T>(io: T, req: Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("status {}", resp.status().as_u16()));
    }
    Limited::new(resp.into_body(), JWKS_BODY_LIMIT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("body: {e}"))
}

/// A TLS client trusting the system's roots (the shared client TLS code,
/// `crate::tls_client`), made once: its session cache resumes the next
/// refresh's session.
fn tls_client() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            crate::tls_client::client_config(&gw_plan::UpstreamTls::default(), &[crate::tls_client::HTTP_11])
        })
        .clone()
}
