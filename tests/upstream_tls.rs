//! TLS to upstreams (`tls`, `tls { ca server_name cert key }`) and
//! `host_header`, through live gateways: the upstreams are rustls servers in
//! the test process on 127.0.0.1:0, with CAs and certificates made at run
//! time (rcgen) — a private CA verified, an unknown CA, a wrong name and an
//! expired certificate refused (502, a retry to another server, the TLS
//! error counter), a client certificate required by the upstream, h2 by
//! ALPN, health checks over TLS, one handshake for many requests on a pooled
//! connection and a resumed session on a new one. `jwks url "https://..."`
//! goes through the same client code (a `gwc serve` process trusting the
//! private CA through `SSL_CERT_FILE`).

use crate::live::{eventually, get, json_echo, Live};
use crate::proxy_support::within;
use crate::serve_harness::Served;
use crate::support::TempDir;
use gw_runtime::body::full;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

// ------------------------------------------------------------------ certificates

/// A CA made at run time.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).expect("a self-signed CA").pem();
        Ca { params, key, pem }
    }

    /// A certificate for `names` (DNS names or IP addresses) for `purpose`,
    /// valid from 2000 to `until`.
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose, until: i32) -> Leaf {
        let key = KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, "gw test");
        params.extended_key_usages = vec![purpose];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("a signed certificate").pem();
        Leaf {
            cert,
            key: key.serialize_pem(),
        }
    }

    fn server(&self, names: &[&str]) -> Leaf {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, 2100)
    }
}

/// PEM files in a temporary folder, also handed to the compiler's host.
struct Files {
    dir: TempDir,
    list: Vec<(String, Vec<u8>)>,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: TempDir::new(),
            list: Vec::new(),
        }
    }

    /// Writes `text` as `name`; its absolute path.
    fn add(&mut self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        let path = path.to_string_lossy().into_owned();
        self.list.push((path.clone(), text.as_bytes().to_vec()));
        path
    }

    async fn start(&self, text: &str) -> Live {
        let refs: Vec<(&str, &[u8])> = self.list.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        Live::start_with(text, &refs).await
    }
}

// ------------------------------------------------------------------ a TLS upstream

/// What a TLS upstream saw.
#[derive(Default)]
struct Seen {
    /// TCP connections accepted.
    accepted: AtomicUsize,
    /// Handshakes completed, and how many of them resumed a session.
    handshakes: AtomicUsize,
    resumed: AtomicUsize,
    /// Handshakes that failed (the gateway refused the certificate, or sent none).
    failed: AtomicUsize,
    /// The ALPN protocol of each completed handshake.
    alpn: Mutex<Vec<Option<Vec<u8>>>>,
    /// Client certificates presented (mutual TLS).
    client_certs: AtomicUsize,
    /// Requests answered: HTTP version, path, and host (`Host`, or the h2
    /// `:authority`).
    requests: Mutex<Vec<(hyper::Version, String, String)>>,
}

/// A rustls server answering like [`crate::live::Upstream::named`].
struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl TlsUpstream {
    /// Serves `leaf`; with `client_ca`, requires a client certificate it signed.
    async fn start(leaf: &Leaf, client_ca: Option<&Ca>) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the chain");
        let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("the key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                    roots.add(c.expect("PEM")).expect("a root");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("a client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).expect("the server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(_) => {
                            s.failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    {
                        let (_, conn) = tls.get_ref();
                        s.handshakes.fetch_add(1, Ordering::SeqCst);
                        if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                            s.resumed.fetch_add(1, Ordering::SeqCst);
                        }
                        if conn.peer_certificates().is_some_and(|c| !c.is_empty()) {
                            s.client_certs.fetch_add(1, Ordering::SeqCst);
                        }
                        s.alpn.lock().unwrap().push(conn.alpn_protocol().map(<[u8]>::to_vec));
                    }
                    let seen = s.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path().to_string();
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .or(req.uri().authority().map(|a| a.as_str()))
                            .unwrap_or("")
                            .to_string();
                        seen.requests.lock().unwrap().push((req.version(), path, host));
                        async move { Ok::<_, Infallible>(json_echo("tls", &req)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsUpstream { addr, seen }
    }

    fn n(&self, counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// The gateway's `/metrics` sample of `series`.
async fn sample(admin: SocketAddr, series: &str) -> Option<f64> {
    let m = get(&format!("http://{admin}/metrics")).await.body;
    m.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
}

/// A gateway with an admin listener (for `/metrics`).
async fn with_admin(files: &Files, text: &str) -> (Arc<gw_runtime::Gateway>, SocketAddr, SocketAddr) {
    let refs: Vec<(&str, &[u8])> = files.list.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let options = gw_runtime::Options {
        admin_override: Some("127.0.0.1:0".into()),
        ..gw_runtime::Options::default()
    };
    let gateway = gw_runtime::Gateway::start(crate::live::plan_of(text, &refs), options)
        .await
        .expect("gateway starts");
    let listen = gateway.local_addrs().await[0];
    let admin = gateway.admin_addr().expect("an admin listener");
    (gateway, listen, admin)
}

// ------------------------------------------------------------------ verification

#[tokio::test]
async fn a_private_ca_verifies_an_ip_server_and_one_handshake_serves_many_requests() {
    let ca = Ca::new("private CA");
    let up = TlsUpstream::start(&ca.server(&["127.0.0.1"]), None).await;
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    let live = files
        .start(&format!(
            "listen 127.0.0.1:0
             upstream ledger {{ server {} tls {{ ca \"{ca_path}\" }} }}
             route /{{*rest}} -> ledger",
            up.addr
        ))
        .await;
    for i in 0..5 {
        let got = get(&live.url(&format!("/r{i}"))).await;
        assert_eq!(got.status, 200, "request {i} over TLS: {got:?}");
        assert_eq!(got.json()["upstream"], "tls");
    }
    // The certificate names 127.0.0.1 (an IP SAN) and no DNS name: verified
    // as the server's address, with no `server_name`.
    assert_eq!(up.n(&up.seen.accepted), 1, "one connection, reused");
    assert_eq!(up.n(&up.seen.handshakes), 1, "one handshake for five requests");
    assert_eq!(
        *up.seen.alpn.lock().unwrap(),
        vec![Some(b"http/1.1".to_vec())],
        "ALPN offers http/1.1 to an upstream without http2"
    );
}

/// A gateway to `up` trusting `ca`, with `extra` in the upstream block; the
/// status of one request and the TLS error count of the server.
async fn one_request(ca: &Ca, up: &TlsUpstream, extra: &str) -> (u16, Option<f64>) {
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    let text = format!(
        "listen 127.0.0.1:0
         upstream ledger {{ server {} tls {{ ca \"{ca_path}\" {extra} }} }}
         route /{{*rest}} -> ledger",
        up.addr
    );
    let (_gw, listen, admin) = with_admin(&files, &text).await;
    let status = get(&format!("http://{listen}/x")).await.status;
    let errors = sample(
        admin,
        &format!(
            "gw_upstream_errors_total{{upstream=\"ledger\",server=\"{}\",kind=\"tls\"}}",
            up.addr
        ),
    )
    .await;
    (status, errors)
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_a_502_and_counted() {
    let ca = Ca::new("trusted CA");
    let other = Ca::new("unknown CA");
    // An unknown CA; a certificate for another name; an expired one.
    let cases = [
        ("unknown CA", other.server(&["127.0.0.1", "ledger.test"]), ""),
        ("wrong name", ca.server(&["other.test"]), "server_name \"ledger.test\""),
        (
            "expired",
            ca.issue(&["ledger.test"], ExtendedKeyUsagePurpose::ServerAuth, 2001),
            "server_name \"ledger.test\"",
        ),
    ];
    for (what, leaf, extra) in cases {
        let up = TlsUpstream::start(&leaf, None).await;
        let (status, errors) = one_request(&ca, &up, extra).await;
        assert_eq!(status, 502, "{what}: a connect error");
        assert!(errors.is_some_and(|e| e >= 1.0), "{what}: counted ({errors:?})");
        assert_eq!(
            up.seen.requests.lock().unwrap().len(),
            0,
            "{what}: no request reached the server"
        );
    }
    // The same gateway settings with a certificate that verifies: 200, no error.
    let up = TlsUpstream::start(&ca.server(&["ledger.test"]), None).await;
    let (status, errors) = one_request(&ca, &up, "server_name \"ledger.test\"").await;
    assert_eq!((status, errors), (200, Some(0.0)), "server_name names the certificate");
}

#[tokio::test]
async fn a_server_that_fails_verification_is_retried_on_another() {
    let ca = Ca::new("trusted CA");
    let bad = TlsUpstream::start(&Ca::new("unknown CA").server(&["127.0.0.1"]), None).await;
    let good = TlsUpstream::start(&ca.server(&["127.0.0.1"]), None).await;
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    let live = files
        .start(&format!(
            "listen 127.0.0.1:0
             upstream ledger {{
               server {} server {}
               tls {{ ca \"{ca_path}\" }}
               retry 1 on connect_error
               eject {{ errors 100 for 1s }}
             }}
             route /{{*rest}} -> ledger",
            bad.addr, good.addr
        ))
        .await;
    for i in 0..4 {
        assert_eq!(get(&live.url(&format!("/{i}"))).await.status, 200, "request {i}");
    }
    assert!(bad.n(&bad.seen.accepted) >= 1, "the bad server was tried");
    assert_eq!(bad.seen.requests.lock().unwrap().len(), 0);
    assert_eq!(good.seen.requests.lock().unwrap().len(), 4);
}

// ------------------------------------------------------------------ mutual TLS

#[tokio::test]
async fn the_upstream_checks_the_client_certificate_gw_presents() {
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let up = TlsUpstream::start(&ca.server(&["127.0.0.1"]), Some(&clients)).await;
    let client = clients.issue(&["gw.test"], ExtendedKeyUsagePurpose::ClientAuth, 2100);
    let stranger = Ca::new("stranger CA").issue(&["gw.test"], ExtendedKeyUsagePurpose::ClientAuth, 2100);
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    let cert = files.add("client.crt", &client.cert);
    let key = files.add("client.key", &client.key);
    let other_cert = files.add("stranger.crt", &stranger.cert);
    let other_key = files.add("stranger.key", &stranger.key);
    let text = |tls: &str| {
        format!(
            "listen 127.0.0.1:0
             upstream ledger {{ server {} tls {{ ca \"{ca_path}\" {tls} }} }}
             route /{{*rest}} -> ledger",
            up.addr
        )
    };
    let live = files.start(&text(&format!("cert \"{cert}\" key \"{key}\""))).await;
    assert_eq!(get(&live.url("/mtls")).await.status, 200, "the client CA's certificate");
    assert_eq!(up.n(&up.seen.client_certs), 1);
    // No client certificate, or one from another CA: the upstream refuses
    // the handshake (with TLS 1.3 the client learns it on its first read).
    for tls in [String::new(), format!("cert \"{other_cert}\" key \"{other_key}\"")] {
        let live = files.start(&text(&tls)).await;
        let got = get(&live.url("/mtls")).await;
        assert_eq!(got.status, 502, "`{tls}`: refused by the upstream");
    }
    assert_eq!(
        up.seen.requests.lock().unwrap().len(),
        1,
        "only the good certificate's request"
    );
}

// ------------------------------------------------------------------ h2, health checks, sessions

#[tokio::test]
async fn an_http2_upstream_gets_h2_by_alpn_over_tls() {
    let ca = Ca::new("private CA");
    let up = TlsUpstream::start(&ca.server(&["127.0.0.1"]), None).await;
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    let live = files
        .start(&format!(
            "listen 127.0.0.1:0
             upstream ledger {{ server {} tls {{ ca \"{ca_path}\" }} http2 }}
             route /{{*rest}} -> ledger",
            up.addr
        ))
        .await;
    for _ in 0..3 {
        assert_eq!(get(&live.url("/h2")).await.status, 200);
    }
    assert_eq!(
        *up.seen.alpn.lock().unwrap(),
        vec![Some(b"h2".to_vec())],
        "one h2 connection"
    );
    let versions: Vec<_> = up.seen.requests.lock().unwrap().iter().map(|(v, _, _)| *v).collect();
    assert_eq!(versions, vec![hyper::Version::HTTP_2; 3]);
}

#[tokio::test]
async fn health_checks_use_the_upstream_s_tls() {
    let ca = Ca::new("private CA");
    let good = TlsUpstream::start(&ca.server(&["127.0.0.1"]), None).await;
    let bad = TlsUpstream::start(&Ca::new("unknown CA").server(&["127.0.0.1"]), None).await;
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    let text = format!(
        "listen 127.0.0.1:0
         upstream ledger {{
           server {} server {}
           tls {{ ca \"{ca_path}\" }}
           health {{ path /healthz interval 1s timeout 900ms unhealthy 1 healthy 1 }}
         }}
         route /{{*rest}} -> ledger",
        good.addr, bad.addr
    );
    let (_gw, listen, admin) = with_admin(&files, &text).await;
    // The good server is checked over TLS (it speaks nothing else); the bad
    // one fails the handshake and goes out of rotation.
    let checked = eventually(Duration::from_secs(5), || {
        good.seen
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|(_, p, _)| p == "/healthz")
    })
    .await;
    assert!(checked, "health checks reach the TLS server");
    let series = format!(
        "gw_upstream_server_healthy{{upstream=\"ledger\",server=\"{}\"}}",
        bad.addr
    );
    let mut down = false;
    for _ in 0..100 {
        if sample(admin, &series).await == Some(0.0) {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(down, "the server whose certificate does not verify is unhealthy");
    for i in 0..4 {
        assert_eq!(
            get(&format!("http://{listen}/{i}")).await.status,
            200,
            "only the good server serves"
        );
    }
}

#[tokio::test]
async fn a_new_connection_resumes_the_tls_session() {
    let ca = Ca::new("private CA");
    let up = TlsUpstream::start(&ca.server(&["127.0.0.1"]), None).await;
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    // No idle connections kept: every request connects anew.
    let live = files
        .start(&format!(
            "listen 127.0.0.1:0
             upstream ledger {{ server {} tls {{ ca \"{ca_path}\" }} pool {{ max_idle 0 }} }}
             route /{{*rest}} -> ledger",
            up.addr
        ))
        .await;
    for i in 0..3 {
        assert_eq!(get(&live.url(&format!("/{i}"))).await.status, 200);
    }
    within(Duration::from_secs(5), "three handshakes", async {
        while up.n(&up.seen.handshakes) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(up.n(&up.seen.accepted), 3, "a connection per request");
    assert!(
        up.n(&up.seen.resumed) >= 2,
        "the second and third connections resume the first's session ({} resumed)",
        up.n(&up.seen.resumed)
    );
}

// ------------------------------------------------------------------ host_header

#[tokio::test]
async fn host_header_sends_the_client_s_host_the_server_s_or_a_name() {
    let up = crate::live::Upstream::named("app").await;
    let port = up.addr.port();
    for (setting, want) in [
        ("", "public.test".to_string()),
        ("host_header client", "public.test".to_string()),
        ("host_header server", format!("127.0.0.1:{port}")),
        ("host_header \"api.example.com\"", "api.example.com".to_string()),
    ] {
        let live = Live::start(&format!(
            "listen 127.0.0.1:0
             upstream app {{ server {} {setting} }}
             route /{{*rest}} -> app",
            up.addr
        ))
        .await;
        let req = Request::get(live.url("/h"))
            .header("host", "public.test")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("a request");
        let got = crate::live::send(req).await;
        let j = got.json();
        assert_eq!(j["headers"]["host"], want.as_str(), "`{setting}`");
        assert_eq!(j["headers"]["x-forwarded-host"], "public.test", "`{setting}`");
    }
}

#[tokio::test]
async fn host_header_is_the_host_and_the_h2_authority_over_tls() {
    let ca = Ca::new("private CA");
    let up = TlsUpstream::start(&ca.server(&["127.0.0.1"]), None).await;
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    for http2 in ["", "http2"] {
        let live = files
            .start(&format!(
                "listen 127.0.0.1:0
                 upstream ledger {{
                   server {} tls {{ ca \"{ca_path}\" }} {http2}
                   host_header \"ledger.example.com\"
                   health {{ path /healthz interval 1s }}
                 }}
                 route /{{*rest}} -> ledger",
                up.addr
            ))
            .await;
        assert_eq!(get(&live.url("/h")).await.status, 200, "`{http2}`");
        let seen = up.seen.requests.lock().unwrap().clone();
        for (version, path, host) in seen {
            assert_eq!(host, "ledger.example.com", "{version:?} {path}");
        }
        up.seen.requests.lock().unwrap().clear();
    }
}

// ------------------------------------------------------------------ jwks over https

#[tokio::test]
async fn jwks_is_fetched_over_https_with_the_shared_client_tls() {
    let ca = Ca::new("identity CA");
    let leaf = ca.server(&["127.0.0.1"]);
    // The identity provider over TLS: the JWKS fixture.
    let jwks = crate::policy::read("jwks-k1.json");
    let provider = TlsJwks::start(&leaf, jwks).await;
    let app = crate::live::Upstream::named("app").await;
    let ca_file = "ca.pem";
    let config = format!(
        "listen 127.0.0.1:0
         upstream app {{ server {} }}
         auth users jwt {{ issuer \"{}\" audience \"{}\" algorithms RS256 jwks url \"https://{}/jwks.json\" }}
         route /{{*rest}} -> app {{ auth users }}",
        app.addr,
        crate::policy::ISS,
        crate::policy::AUD,
        provider.addr
    );
    // The process trusts the private CA as its system roots (SSL_CERT_FILE).
    let served = Served::start_with_env(
        &[("gw.gw", &config), (ca_file, &ca.pem)],
        &["gw.gw"],
        &[("SSL_CERT_FILE", ca_file)],
    );
    let addr = served.bound(1).await[0];
    let token = crate::policy::rs256(&crate::policy::claims(serde_json::json!({})));
    let req = Request::get(format!("http://{addr}/x"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("a request");
    let got = crate::live::send(req).await;
    assert_eq!(got.status, 200, "the key set came over HTTPS: {}", served.output());
    assert!(provider.fetched.load(Ordering::SeqCst) >= 1);
}

/// An HTTPS server answering every request with `body`.
struct TlsJwks {
    addr: SocketAddr,
    fetched: Arc<AtomicUsize>,
}

impl TlsJwks {
    async fn start(leaf: &Leaf, body: Vec<u8>) -> TlsJwks {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the chain");
        let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("the key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fetched = Arc::new(AtomicUsize::new(0));
        let counter = fetched.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, body, counter) = (acceptor.clone(), body.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = body.clone();
                        async move { Ok::<_, Infallible>(hyper::Response::new(full(body))) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsJwks { addr, fetched }
    }
}

#[tokio::test]
async fn a_failed_handshake_is_logged_with_its_reason() {
    let ca = Ca::new("trusted CA");
    let up = TlsUpstream::start(&Ca::new("unknown CA").server(&["127.0.0.1"]), None).await;
    let config = format!(
        "listen 127.0.0.1:0
         upstream ledger {{ server {} tls {{ ca \"ca.pem\" }} }}
         route /{{*rest}} -> ledger",
        up.addr
    );
    let served = Served::start(&[("gw.gw", &config), ("ca.pem", &ca.pem)], &["gw.gw"]);
    let addr = served.bound(1).await[0];
    assert_eq!(get(&format!("http://{addr}/x")).await.status, 502);
    let lines = served
        .wait_lines(Duration::from_secs(5), 1, |l| {
            l.contains("TLS handshake with the server failed")
        })
        .await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("UnknownIssuer") && l.contains("ledger")),
        "the log says why: {lines:?}"
    );
    assert!(!served.output().contains("PRIVATE KEY"), "no key material in the log");
}

// ------------------------------------------------------------------ layer 4

#[tokio::test]
async fn a_tcp_listener_originates_verified_tls_to_a_tls_upstream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("private CA");
    let good = TlsUpstream::start(&ca.server(&["127.0.0.1"]), None).await;
    let bad = TlsUpstream::start(&Ca::new("unknown CA").server(&["127.0.0.1"]), None).await;
    let mut files = Files::new();
    let ca_path = files.add("ca.pem", &ca.pem);
    for (up, answered) in [(&good, true), (&bad, false)] {
        let live = files
            .start(&format!(
                "listen 127.0.0.1:0 tcp -> ledger
                 upstream ledger {{ server {} tls {{ ca \"{ca_path}\" }} }}",
                up.addr
            ))
            .await;
        let mut s = tokio::net::TcpStream::connect(live.addrs[0]).await.expect("connect");
        s.write_all(b"GET /l4 HTTP/1.1\r\nhost: l4.test\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = within(
            Duration::from_secs(10),
            "the answer or the close",
            s.read_to_end(&mut answer),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(answer.starts_with("HTTP/1.1 200"), answered, "{answer}");
        assert_eq!(up.seen.requests.lock().unwrap().len(), usize::from(answered));
    }
}
