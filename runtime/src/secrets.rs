//! Resolving the plan's secret references (`env("NAME")`, `file("path")`,
//! inline) into bytes when a plan is loaded, and loading TLS certificates.
//! Values never reach logs: errors name the reference, not its content.

use gw_compiler::plan::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The bytes a secret reference stands for.
pub fn resolve(secret: &Secret) -> Result<Vec<u8>, String> {
    match secret {
        Secret::Env(name) => std::env::var(name)
            .map(String::into_bytes)
            .map_err(|_| format!("env(\"{name}\") is not set")),
        Secret::File(path) => std::fs::read(path).map_err(|e| format!("cannot read file(\"{path}\"): {e}")),
        Secret::Inline(s) => Ok(s.clone().into_bytes()),
    }
}

/// A certificate chain and its private key, ready for rustls.
pub fn certified_key(cert: &Secret, key: &Secret) -> Result<Arc<CertifiedKey>, String> {
    let cert_pem = resolve(cert)?;
    let key_pem = resolve(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert}: not a PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert}: no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{key}: not a PEM private key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("{key}: unsupported private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}
