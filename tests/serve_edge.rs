//! The gateway at the edge, through live gateways: client certificates on
//! TLS listeners (mTLS, `client_ca`, `client_cert.*`), the real client
//! address behind proxies (`trust_proxies` and `X-Forwarded-For`, the
//! PROXY protocol before plain HTTP and before TLS), and CIDR ranges in
//! `require client_ip in [...]`. Certificates are made at run time.

use crate::live::{Live, Upstream};
use crate::serve_harness::{closed_within, exchange, tls_fixture};
use crate::support::TempDir;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

// ------------------------------------------------------------------ certificates

/// A CA made for one test: its PEM and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("a self-signed CA");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A client certificate signed by `ca`, with a URI, a DNS and an IP name.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn client_cert(ca: &Ca, uri: &str) -> ClientCert {
    let key = KeyPair::generate().expect("a client key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name.push(DnType::CommonName, "orders");
    params.distinguished_name.push(DnType::OrganizationName, "shop");
    params.subject_alt_names = vec![
        SanType::URI(uri.try_into().expect("a URI")),
        SanType::DnsName("orders.shop.test".try_into().expect("a DNS name")),
        SanType::IpAddress("10.1.2.3".parse().expect("an address")),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &ca.issuer).expect("a client certificate");
    ClientCert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// A TLS client trusting the fixtures' CA (the gateway's certificate),
/// presenting `cert` if given.
fn connector(cert: Option<&ClientCert>) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(tls_fixture("ca.crt")).expect("read the CA");
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.expect("PEM")).expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut config = match cert {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .expect("a client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One request on `io` (closing after it): the status and body, or `None`
/// when no answer came (the handshake or the connection was refused).
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, path: &str, extra: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: edge.test\r\n{extra}Connection: close\r\n\r\n");
    let fut = async {
        io.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.ok().flatten()
}

/// A TLS request to `addr` presenting `cert`: `None` when refused.
async fn tls_ask(
    addr: std::net::SocketAddr,
    cert: Option<&ClientCert>,
    path: &str,
    extra: &str,
) -> Option<(u16, String)> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("default.gw.test").expect("a DNS name");
    // With TLS 1.3 the client finishes its handshake before the server has
    // checked its certificate: a refusal shows at the first read.
    let mut tls = connector(cert).connect(name, tcp).await.ok()?;
    ask(&mut tls, path, extra).await
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A gateway with `listen` lines in front of `up`, a `/ledger` route that
/// needs the orders certificate and forwards its identity, a `/billing`
/// route that needs another one, and an `/open` route.
async fn mtls_gateway(dir: &TempDir, good: &Ca, listen: &str, up: &Upstream) -> Live {
    let ca_path = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_path, &good.pem).expect("write the client CA");
    let text = format!(
        "{listen}
         upstream a {{ server {up} }}
         route /ledger/{{*rest}} -> a {{
           require client_cert.san has \"spiffe://shop/orders\"
           set request header x-client-san \"{{client_cert.san}}\"
           set request header x-client-subject \"{{client_cert.subject}}\"
           set request header x-client-fingerprint \"{{client_cert.fingerprint}}\"
         }}
         route /billing/{{*rest}} -> a {{ require client_cert.san has \"spiffe://shop/billing\" }}
         route /open/{{*rest}} -> a {{ set request header x-client-san \"{{client_cert.san}}\" }}",
        listen = listen.replace("CA", &ca_path.to_string_lossy()),
        up = up.addr,
    );
    let files = [
        (ca_path.to_string_lossy().into_owned(), good.pem.as_bytes().to_vec()),
        (
            tls_fixture("default.crt"),
            std::fs::read(tls_fixture("default.crt")).expect("read"),
        ),
        (
            tls_fixture("default.key"),
            std::fs::read(tls_fixture("default.key")).expect("read"),
        ),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    Live::start_with(&text, &refs).await
}

fn tls_listen(extra: &str) -> String {
    format!(
        "listen 127.0.0.1:0 tls {{
           cert \"{}\" key \"{}\"
           client_ca \"CA\"
           {extra}
         }}",
        tls_fixture("default.crt"),
        tls_fixture("default.key"),
    )
}

// ------------------------------------------------------------------ mTLS

#[tokio::test]
async fn a_required_client_certificate_is_verified_and_its_identity_forwarded() {
    let up = Upstream::named("a").await;
    let dir = TempDir::new();
    let (good, wrong) = (ca("clients"), ca("strangers"));
    let live = mtls_gateway(&dir, &good, &tls_listen(""), &up).await;
    let addr = live.addrs[0];

    // No certificate, or one from another CA: the handshake is refused,
    // and no request reaches the upstream.
    assert_eq!(tls_ask(addr, None, "/open/x", "").await, None, "no certificate");
    let stranger = client_cert(&wrong, "spiffe://shop/orders");
    assert_eq!(tls_ask(addr, Some(&stranger), "/open/x", "").await, None, "wrong CA");
    assert_eq!(up.count(), 0);

    // A good certificate: its names reach `require` and the upstream, and a
    // header the client sent under the same name is replaced.
    let orders = client_cert(&good, "spiffe://shop/orders");
    let (status, body) = tls_ask(
        addr,
        Some(&orders),
        "/ledger/x",
        "x-client-san: spiffe://shop/admin\r\n",
    )
    .await
    .expect("an answer");
    assert_eq!(status, 200, "{body}");
    let headers = &json(&body)["headers"];
    assert_eq!(
        headers["x-client-san"],
        "spiffe://shop/orders, orders.shop.test, 10.1.2.3"
    );
    let subject = headers["x-client-subject"].as_str().expect("a subject");
    assert!(subject.contains("CN=orders") && subject.contains("O=shop"), "{subject}");
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(orders.chain[0].as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(headers["x-client-fingerprint"], digest.as_str());
    // `has` tests one name: this certificate is not billing's.
    let (status, _) = tls_ask(addr, Some(&orders), "/billing/x", "").await.expect("an answer");
    assert_eq!(status, 403);
}

#[tokio::test]
async fn an_optional_client_certificate_is_needed_only_where_a_route_reads_it() {
    let up = Upstream::named("a").await;
    let dir = TempDir::new();
    let (good, wrong) = (ca("clients"), ca("strangers"));
    // A plain listener too: it serves every route, without certificates.
    let listen = format!("{}\nlisten 127.0.0.2:0", tls_listen("client_auth optional"));
    let live = mtls_gateway(&dir, &good, &listen, &up).await;
    let (tls, plain) = (live.addrs[0], live.addrs[1]);

    // No certificate: 403 where a `require` reads `client_cert.*`, served
    // elsewhere, and a client's own header of the identity's name replaced.
    let (status, _) = tls_ask(tls, None, "/ledger/x", "").await.expect("an answer");
    assert_eq!(status, 403);
    let (status, body) = tls_ask(tls, None, "/open/x", "x-client-san: spiffe://shop/orders\r\n")
        .await
        .expect("an answer");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["headers"]["x-client-san"], "");
    // A certificate that does not verify is refused even so.
    let stranger = client_cert(&wrong, "spiffe://shop/orders");
    assert_eq!(tls_ask(tls, Some(&stranger), "/open/x", "").await, None);
    // A good one opens the route.
    let orders = client_cert(&good, "spiffe://shop/orders");
    let (status, _) = tls_ask(tls, Some(&orders), "/ledger/x", "").await.expect("an answer");
    assert_eq!(status, 200);
    // The plain listener never has a certificate: 403 on the route, 200 elsewhere.
    let mut s = TcpStream::connect(plain).await.expect("connect");
    let (status, _) = ask(&mut s, "/ledger/x", "x-client-san: spiffe://shop/orders\r\n")
        .await
        .expect("an answer");
    assert_eq!(status, 403);
    let mut s = TcpStream::connect(plain).await.expect("connect");
    assert_eq!(ask(&mut s, "/open/x", "").await.map(|a| a.0), Some(200));
}

// ------------------------------------------------------------------ trust_proxies

/// A route that shows the client's address to the upstream, one that
/// admits two CIDR ranges, and one limited per client address.
fn addresses_config(trust: &str, up: &Upstream) -> String {
    format!(
        "listen 127.0.0.1:0
         {trust}
         upstream a {{ server {up} }}
         limit per_ip {{ rate 1/min burst 1 key client_ip }}
         route /who -> a {{ set request header x-client-ip \"{{client_ip}}\" }}
         route /inside -> a {{ require client_ip in [\"203.0.113.0/24\", \"2001:db8::/32\", \"192.0.2.1\"] }}
         route /limited -> a {{ limit per_ip }}",
        up = up.addr
    )
}

/// `GET path` with `X-Forwarded-For` lines: status and JSON body.
async fn via(live: &Live, path: &str, xff: &[&str]) -> (u16, serde_json::Value) {
    let extra: String = xff.iter().map(|v| format!("X-Forwarded-For: {v}\r\n")).collect();
    let mut s = TcpStream::connect(live.addrs[0]).await.expect("connect");
    let (status, body) = ask(&mut s, path, &extra).await.expect("an answer");
    let body = if status == 200 {
        json(&body)
    } else {
        serde_json::Value::Null
    };
    (status, body)
}

#[tokio::test]
async fn x_forwarded_for_is_walked_from_the_right_past_trusted_proxies() {
    let up = Upstream::named("a").await;
    let live = Live::start(&addresses_config("trust_proxies [\"127.0.0.1\", \"10.0.0.0/8\"]", &up)).await;
    for (xff, client, forwarded) in [
        // The first untrusted address from the right is the client's.
        (
            &["203.0.113.9, 10.1.1.1"][..],
            "203.0.113.9",
            "203.0.113.9, 10.1.1.1, 127.0.0.1",
        ),
        // What a client wrote left of it is neither believed nor passed on.
        (
            &["6.6.6.6, 203.0.113.9, 10.1.1.1"],
            "203.0.113.9",
            "203.0.113.9, 10.1.1.1, 127.0.0.1",
        ),
        // Several lines are one list, in order.
        (
            &["6.6.6.6, 203.0.113.9", "10.1.1.1"],
            "203.0.113.9",
            "203.0.113.9, 10.1.1.1, 127.0.0.1",
        ),
        // Every address trusted: the leftmost.
        (&["10.2.2.2, 10.1.1.1"], "10.2.2.2", "10.2.2.2, 10.1.1.1, 127.0.0.1"),
        // A malformed entry stops the walk at the last address verified.
        (&["203.0.113.9, garbage, 10.1.1.1"], "10.1.1.1", "10.1.1.1, 127.0.0.1"),
        (&["203.0.113.9, "], "127.0.0.1", "127.0.0.1"),
        // Ports and brackets are allowed; IPv6 too.
        (
            &["[2001:db8::7]:443, 10.1.1.1:8080"],
            "2001:db8::7",
            "2001:db8::7, 10.1.1.1, 127.0.0.1",
        ),
        // No header: the peer.
        (&[], "127.0.0.1", "127.0.0.1"),
    ] {
        let (status, body) = via(&live, "/who", xff).await;
        assert_eq!(status, 200, "{xff:?}");
        assert_eq!(body["headers"]["x-client-ip"], client, "client of {xff:?}");
        assert_eq!(body["headers"]["x-forwarded-for"], forwarded, "forwarded for {xff:?}");
    }
    // `require client_ip in [...]` takes CIDR ranges, v4 and v6.
    for (xff, want) in [
        ("203.0.113.77", 200),
        ("198.51.100.1", 403),
        ("2001:db8:1::5", 200),
        ("2001:db9::5", 403),
        ("192.0.2.1", 200),
        ("192.0.2.2", 403),
    ] {
        assert_eq!(via(&live, "/inside", &[xff]).await.0, want, "{xff}");
    }
    // Limits count the address found: one budget per client, not per proxy.
    assert_eq!(via(&live, "/limited", &["203.0.113.1"]).await.0, 200);
    assert_eq!(via(&live, "/limited", &["203.0.113.2"]).await.0, 200);
    assert_eq!(via(&live, "/limited", &["203.0.113.1"]).await.0, 429);
}

#[tokio::test]
async fn an_untrusted_peer_keeps_its_address_whatever_its_headers_say() {
    let up = Upstream::named("a").await;
    // The test's own address (127.0.0.1) is not among the proxies.
    let live = Live::start(&addresses_config("trust_proxies [\"10.0.0.0/8\"]", &up)).await;
    let (status, body) = via(&live, "/who", &["203.0.113.9"]).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["x-client-ip"], "127.0.0.1");
    assert_eq!(
        body["headers"]["x-forwarded-for"], "127.0.0.1",
        "the spoofed entry is dropped"
    );
    assert_eq!(via(&live, "/inside", &["203.0.113.9"]).await.0, 403);
    assert!(!live
        .gateway
        .plan()
        .trusts_peer("127.0.0.1".parse().expect("an address")));
    assert!(live.gateway.plan().trusts_peer("10.9.8.7".parse().expect("an address")));
    assert!(live
        .gateway
        .plan()
        .trusts_peer("::ffff:10.9.8.7".parse().expect("an address")));
}

// ------------------------------------------------------------------ PROXY protocol

fn proxy_v2(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[tokio::test]
async fn proxy_protocol_headers_name_the_peer_before_http_and_before_tls() {
    let up = Upstream::named("a").await;
    let text = format!(
        "listen 127.0.0.1:0 proxy_protocol
         listen 127.0.0.2:0 proxy_protocol tls {{ cert \"{}\" key \"{}\" }}
         limits {{ header_timeout 500ms }}
         trust_proxies [\"192.0.2.0/24\"]
         upstream a {{ server {} }}
         route /who -> a {{ set request header x-client-ip \"{{client_ip}}\" }}",
        tls_fixture("default.crt"),
        tls_fixture("default.key"),
        up.addr
    );
    let files = [
        (
            tls_fixture("default.crt"),
            std::fs::read(tls_fixture("default.crt")).expect("read"),
        ),
        (
            tls_fixture("default.key"),
            std::fs::read(tls_fixture("default.key")).expect("read"),
        ),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let live = Live::start_with(&text, &refs).await;
    let (plain, tls) = (live.addrs[0], live.addrs[1]);
    let who = |answer: Option<(u16, String)>| {
        let (status, body) = answer.expect("an answer");
        assert_eq!(status, 200, "{body}");
        let j = json(&body);
        (
            j["headers"]["x-client-ip"].as_str().unwrap_or("").to_string(),
            j["headers"]["x-forwarded-for"].as_str().unwrap_or("").to_string(),
        )
    };

    // v1, then the request in the same write.
    let mut s = TcpStream::connect(plain).await.expect("connect");
    s.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n")
        .await
        .expect("write");
    assert_eq!(
        who(ask(&mut s, "/who", "").await),
        ("198.51.100.7".into(), "198.51.100.7".into())
    );
    // v2 (binary).
    let mut s = TcpStream::connect(plain).await.expect("connect");
    s.write_all(&proxy_v2([203, 0, 113, 5], 4000)).await.expect("write");
    assert_eq!(who(ask(&mut s, "/who", "").await).0, "203.0.113.5");
    // The source a header names is a peer like any other: a trusted proxy's
    // X-Forwarded-For is believed, another's is not.
    let mut s = TcpStream::connect(plain).await.expect("connect");
    s.write_all(b"PROXY TCP4 192.0.2.10 127.0.0.1 5555 80\r\n")
        .await
        .expect("write");
    let found = who(ask(&mut s, "/who", "X-Forwarded-For: 198.51.100.99\r\n").await);
    assert_eq!(found, ("198.51.100.99".into(), "198.51.100.99, 192.0.2.10".into()));
    let mut s = TcpStream::connect(plain).await.expect("connect");
    s.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n")
        .await
        .expect("write");
    assert_eq!(
        who(ask(&mut s, "/who", "X-Forwarded-For: 1.1.1.1\r\n").await).0,
        "198.51.100.7"
    );
    // v2 before the TLS handshake.
    let mut tcp = TcpStream::connect(tls).await.expect("connect");
    tcp.write_all(&proxy_v2([203, 0, 113, 6], 4001)).await.expect("write");
    let name = ServerName::try_from("default.gw.test").expect("a DNS name");
    let mut s = connector(None)
        .connect(name, tcp)
        .await
        .expect("TLS after the PROXY header");
    assert_eq!(who(ask(&mut s, "/who", "").await).0, "203.0.113.6");
    let seen = up.count();

    // A connection without a valid header is closed, unanswered: no header,
    // a malformed one, a v1 line that never ends, a TLS ClientHello first.
    for first in [
        &b"GET /who HTTP/1.1\r\nHost: edge.test\r\n\r\n"[..],
        b"PROXY TCP4 300.1.1.1 127.0.0.1 5555 80\r\nGET /who HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80 and then some more bytes than any v1 header may hold \
          to go past its limit of one hundred and seven\r\n",
    ] {
        let mut s = TcpStream::connect(plain).await.expect("connect");
        assert_eq!(
            exchange(&mut s, first).await,
            None,
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
    let tcp = TcpStream::connect(tls).await.expect("connect");
    let name = ServerName::try_from("default.gw.test").expect("a DNS name");
    assert!(
        connector(None).connect(name, tcp).await.is_err(),
        "TLS without a PROXY header"
    );
    // A header that does not come whole within header_timeout: closed.
    let mut s = TcpStream::connect(plain).await.expect("connect");
    s.write_all(b"PROXY TCP4 198.51").await.expect("write");
    let closed = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(closed.is_some_and(|d| d >= Duration::from_millis(400)), "{closed:?}");
    assert_eq!(up.count(), seen, "no refused connection reached the upstream");
}
