//! The gateway's TLS client settings, one function for every outgoing TLS
//! connection (an upstream's `tls`, `jwks url "https://..."`, and any other
//! client that needs one): [`client_config`] turns a plan's
//! [`UpstreamTls`] into a rustls `ClientConfig` — the trust roots (the `ca`
//! file, or the system's), the client certificate, ALPN — on the ring
//! provider. [`server_name`] is the name a connection sends (SNI) and
//! verifies: a DNS name, or an IP address checked against the
//! certificate's IP SANs.
//!
//! The system's roots are read once per process with `rustls-native-certs`
//! (the operating system's store, which operators already manage, and which
//! honours `SSL_CERT_FILE` / `SSL_CERT_DIR`), rather than a list compiled
//! into the binary. Each `ClientConfig` keeps its own in-memory session
//! cache (rustls' default, 256 servers), so a connection made with the same
//! config resumes the session of an earlier one (TLS 1.3 tickets, TLS 1.2
//! session ids): keep one config per upstream, not one per connection.

use crate::secrets;
use gw_plan::UpstreamTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::sync::{Arc, OnceLock};

/// ALPN for HTTP/1.1.
pub const HTTP_11: &[u8] = b"http/1.1";
/// ALPN for h2.
pub const H2: &[u8] = b"h2";

/// A rustls client for `tls`, offering `alpn` (in order of preference).
/// Errors name the file or setting, never a secret's content.
pub fn client_config(tls: &UpstreamTls, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let roots = match &tls.ca {
        Some(ca) => {
            let pem = secrets::resolve(ca)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{ca}: not a PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{ca}: not a usable CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{ca}: no CA certificate in the file"));
            }
            Arc::new(roots)
        }
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &tls.client_cert {
        Some(c) => {
            let cert_pem = secrets::resolve(&c.cert)?;
            let key_pem = secrets::resolve(&c.key)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: not a PEM certificate: {e}", c.cert))?;
            if chain.is_empty() {
                return Err(format!("{}: no certificate in the file", c.cert));
            }
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("{}: not a PEM private key: {e}", c.key))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{} / {}: unusable client certificate: {e}", c.cert, c.key))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The system's trust roots, read once.
pub fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates on this system".into());
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// The name a connection to `host` sends and verifies: `server_name` when
/// given, else the host itself (an IP address is verified against the
/// certificate's IP SANs).
pub fn server_name(server_name: Option<&str>, host: &str) -> Result<ServerName<'static>, String> {
    let name = server_name.unwrap_or(host);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|e| format!("`{name}` is not a server name: {e}"))
}

/// Why a handshake failed, for the log: rustls' own words (an unknown
/// issuer, a name mismatch, an expired certificate...), never key material.
pub fn why(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}
