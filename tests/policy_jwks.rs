//! `jwks url`: keys fetched from an identity provider (here an HTTP server in
//! the test process on 127.0.0.1:0) — rotation picked up by an early refetch
//! when a token names an unknown `kid` (at most once a minute), periodic
//! refresh, and the last good key set serving while the provider fails.

use crate::live::{eventually, Upstream};
use crate::policy::{assert_unauthorized, bearer, claims, gateway, read, rs256, sign, AUD, ISS};
use gw_runtime::body::full;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An identity provider whose JWKS (or failure) the test sets.
struct Provider {
    server: Upstream,
    /// `Some(body)` answers 200 with it; `None` answers 500.
    jwks: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Provider {
    async fn start(initial: &str) -> Provider {
        let jwks = Arc::new(Mutex::new(Some(read(initial))));
        let shared = jwks.clone();
        let server = Upstream::start(move |_req| {
            let body = shared.lock().unwrap().clone();
            async move {
                match body {
                    Some(b) => hyper::Response::new(full(b)),
                    None => {
                        let mut r = hyper::Response::new(full("down"));
                        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                        r
                    }
                }
            }
        })
        .await;
        Provider { server, jwks }
    }

    fn serve(&self, body: Option<Vec<u8>>) {
        *self.jwks.lock().unwrap() = body;
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.server.addr)
    }
}

fn both_keys() -> Vec<u8> {
    let k1: serde_json::Value = serde_json::from_slice(&read("jwks-k1.json")).unwrap();
    let k2: serde_json::Value = serde_json::from_slice(&read("jwks-k2.json")).unwrap();
    json!({ "keys": [k1["keys"][0], k2["keys"][0]] })
        .to_string()
        .into_bytes()
}

async fn gateway_for(idp: &Provider, refresh: &str) -> (crate::live::Live, Upstream) {
    gateway(&format!(
        "listen 127.0.0.1:0
         upstream app {{ server {{up}} }}
         auth users jwt {{ issuer \"{ISS}\" audience \"{AUD}\" algorithms RS256 jwks url \"{}\" refresh {refresh} }}
         route /{{*rest}} -> app {{ auth users }}",
        idp.url()
    ))
    .await
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_early_refetch_a_minute() {
    let idp = Provider::start("jwks-k1.json").await;
    let (live, _up) = gateway_for(&idp, "10m").await;
    assert_eq!(idp.server.count(), 1, "fetched once at start");
    let c = claims(json!({}));
    assert_eq!(bearer(&live, "/x", &rs256(&c)).await.status, 200);
    assert_eq!(idp.server.count(), 1, "a known kid fetches nothing");

    // The provider rotates in k2; the first token with kid k2 makes the
    // gateway refetch, and is accepted by the same request.
    idp.serve(Some(both_keys()));
    let k2 = sign(Algorithm::RS256, "rsa2-private.pem", Some("k2"), &c);
    assert_eq!(bearer(&live, "/x", &k2).await.status, 200);
    assert_eq!(idp.server.count(), 2, "one early refetch");

    // Another unknown kid within the minute: refused without a fetch, however many.
    let k3 = sign(Algorithm::RS256, "rsa2-private.pem", Some("k3"), &c);
    for _ in 0..5 {
        assert_unauthorized(&bearer(&live, "/x", &k3).await, "kid k3");
    }
    assert_eq!(idp.server.count(), 2, "at most one early refetch a minute");
    assert_eq!(bearer(&live, "/x", &k2).await.status, 200);
    assert_eq!(bearer(&live, "/x", &rs256(&c)).await.status, 200);
}

#[tokio::test]
async fn the_last_good_key_set_serves_while_the_provider_fails_then_refresh_rotates() {
    let idp = Provider::start("jwks-k1.json").await;
    let (live, _up) = gateway_for(&idp, "1s").await;
    let c = claims(json!({}));
    let k1 = rs256(&c);
    let k2 = sign(Algorithm::RS256, "rsa2-private.pem", Some("k2"), &c);
    assert_eq!(bearer(&live, "/x", &k1).await.status, 200);

    // The provider fails; refreshes fail; k1 keeps verifying.
    idp.serve(None);
    let before = idp.server.count();
    assert!(
        eventually(Duration::from_secs(30), || idp.server.count() >= before + 2).await,
        "the gateway keeps trying"
    );
    let fresh_k1 = rs256(&claims(json!({ "jti": "not-cached" })));
    assert_eq!(bearer(&live, "/x", &fresh_k1).await.status, 200, "last good set");

    // The provider comes back with only k2: the periodic refresh swaps the
    // set, and k1 tokens — cached ones included — stop verifying.
    idp.serve(Some(read("jwks-k2.json")));
    // Bounded at 30 s: the refresh retries with a doubling backoff after
    // the failures above, and a loaded machine stretches it.
    let mut rotated = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if bearer(&live, "/x", &k1).await.status == 401 {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the refresh replaced the key set");
    assert_eq!(bearer(&live, "/x", &k2).await.status, 200);
    assert_unauthorized(&bearer(&live, "/x", &fresh_k1).await, "k1 after rotation");
}

#[tokio::test]
async fn a_provider_down_at_start_fails_closed_until_it_answers() {
    let idp = Provider::start("jwks-k1.json").await;
    idp.serve(None);
    let (live, up) = gateway_for(&idp, "10m").await;
    let k1 = rs256(&claims(json!({})));
    assert_unauthorized(&bearer(&live, "/x", &k1).await, "no key set yet");
    idp.serve(Some(read("jwks-k1.json")));
    // Retries after a failed start come quickly (1 s, doubling), not after `refresh`.
    let mut ok = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if bearer(&live, "/x", &k1).await.status == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the key set arrived");
    assert_eq!(up.count(), 1);
}
