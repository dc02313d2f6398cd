//! Resolving the plan's secret references (`env("NAME")`, `file("path")`,
//! inline) into bytes when a plan is loaded, and loading TLS certificates.
//! Values never reach logs: errors name the reference, not its content.
//! Files are read with [`read_file`]: regular files only, bounded in size
//! (also what `gwc`'s host reads `.gw` files with).

use gw_plan::files::{Refusal, MAX_FILE_SIZE};
use gw_plan::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::io::{self, Read};
use std::sync::Arc;

/// The bytes a secret reference stands for.
pub fn resolve(secret: &Secret) -> Result<Vec<u8>, String> {
    match secret {
        Secret::Env(name) => std::env::var(name)
            .map(String::into_bytes)
            .map_err(|_| format!("env(\"{name}\") is not set")),
        Secret::File(path) => read_file(path, MAX_FILE_SIZE).map_err(|e| format!("cannot read {secret}: {e}")),
        Secret::Inline(s) => Ok(s.clone().into_bytes()),
    }
}

/// The bytes of the regular file at `path` (symlinks followed), of at most
/// `limit` bytes. A directory, a FIFO, a device or a socket is refused
/// without reading it ([`Refusal::NotAFile`]), and so is a larger file
/// ([`Refusal::TooLarge`]): `/dev/zero` would be read forever, and a FIFO
/// would wait for a writer that never comes.
pub fn read_file(path: &str, limit: u64) -> io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Opening a FIFO waits for a writer unless O_NONBLOCK; the type is
        // checked on the open file before any read (no race with a rename).
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if let Some(kind) = Refusal::kind_of(&meta.file_type()) {
        return Err(Refusal::NotAFile(kind).into());
    }
    if meta.len() > limit {
        return Err(Refusal::TooLarge {
            size: Some(meta.len()),
            limit,
        }
        .into());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read still stops at the limit.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Refusal::TooLarge { size: None, limit }.into());
    }
    Ok(bytes)
}

/// A certificate chain and its private key, ready for rustls.
pub(crate) fn certified_key(cert: &Secret, key: &Secret) -> Result<Arc<CertifiedKey>, String> {
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
