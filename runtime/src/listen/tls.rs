//! TLS on a listener: the certificate chosen by SNI (exact name, then a
//! `*.` wildcard, else the default), ALPN offering `h2` and `http/1.1`,
//! client certificates verified against `client_ca` (mTLS: required or
//! optional), and the handshake, bounded by `header_timeout`, after which
//! the connection is served with the protocol ALPN chose and the client
//! certificate's identity ([`ClientCert`], read once per connection).

use super::{serve_connection, Accepted, Proto};
use crate::conn::{Conn, ConnGuard};
use crate::loaded::Shared;
use crate::metrics::Rejection;
use crate::request::ClientCert;
use crate::secrets;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Chooses the certificate by SNI (exact name, then `*.` wildcard); the
/// first without `sni` is the default (else the first of all).
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    default: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        self.by_name
            .get(&name)
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.by_name.get(&format!("*.{parent}"))
            })
            .cloned()
            .or_else(|| self.default.clone())
    }
}

pub(crate) fn tls_config(
    certs: &[gw_plan::Certificate],
    client_auth: Option<&gw_plan::ClientAuth>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut resolver = SniResolver {
        by_name: HashMap::new(),
        default: None,
    };
    let mut first = None;
    for c in certs {
        let key = secrets::certified_key(&c.cert, &c.key)?;
        first.get_or_insert_with(|| key.clone());
        match &c.sni {
            Some(name) => {
                resolver.by_name.entry(name.to_ascii_lowercase()).or_insert(key);
            }
            None if resolver.default.is_none() => resolver.default = Some(key),
            None => {}
        }
    }
    if resolver.default.is_none() {
        resolver.default = first;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth, provider)?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The verifier of client certificates: chains to one of the `client_ca`
/// certificates (rustls-webpki: signatures, validity, the client-auth
/// usage); a client without one is refused at the handshake unless
/// `client_auth optional`.
fn client_verifier(
    auth: &gw_plan::ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let pem = secrets::resolve(&auth.ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: not a PEM certificate: {e}", auth.ca))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", auth.ca))?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if auth.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| format!("{}: {e}", auth.ca))
}

/// Completes the TLS handshake (within `header_timeout`) and serves the
/// connection with the protocol ALPN chose.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_tls(
    stream: TcpStream,
    client: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    accepted_at: u64,
    guard: ConnGuard,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    let header_timeout = shared.current.load().plan.limits.header_timeout.as_duration();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => {
            let proto = match s.get_ref().1.alpn_protocol() {
                Some(b"h2") => Proto::H2,
                _ => Proto::H1,
            };
            // Only a listener with `client_ca` asks for (and verifies) a
            // certificate: elsewhere this is `None` and costs nothing.
            let cert = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::new(ClientCert::from_der(leaf.as_ref())));
            let accepted = Accepted {
                conn: Conn {
                    client,
                    tls: true,
                    cert,
                },
                proto,
                at: accepted_at,
                guard,
            };
            serve_connection(s, accepted, shared, closing).await;
        }
        Ok(Err(e)) => {
            shared.metrics.reject(Rejection::TlsHandshake);
            tracing::debug!(%client, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.reject(Rejection::TlsHandshake);
            tracing::debug!(%client, "TLS handshake timed out");
        }
    }
}
