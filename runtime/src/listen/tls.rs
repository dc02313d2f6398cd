//! TLS on a listener: the certificate chosen by SNI (exact name, then a
//! `*.` wildcard, else the default), ALPN offering `h2` and `http/1.1`, and
//! the handshake, bounded by `header_timeout`, after which the connection
//! is served with the protocol ALPN chose.

use super::{serve_connection, Accepted, Proto};
use crate::conn::{Conn, ConnGuard};
use crate::loaded::Shared;
use crate::metrics::Rejection;
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

pub(crate) fn tls_config(certs: &[gw_plan::Certificate]) -> Result<Arc<rustls::ServerConfig>, String> {
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
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
            let accepted = Accepted {
                conn: Conn { client, tls: true },
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
