//! An upstream's or a store's `tls` block (GW0405): its `ca` file holds at
//! least one certificate, and its client certificate and key (`cert ..
//! key ..`) exist, are PEM of the right kind and belong together — the same
//! checks as a TLS listener's certificates (GW0403), under the upstream's
//! own code. Contents are never printed. Also a store's URL read from
//! `env("X")` / `file("p")` (GW0404 when unset, GW0003 when not a Redis
//! URL, quoting none of it: a password is in it), and `tls` on a
//! `redis://` URL (GW0106: TLS needs `rediss://`).

use super::listen::{pair, pem_file, Kind};
use super::material;
use super::pem;
use super::Ctx;
use crate::ast::{Certificate, ClientCertificate, Source};
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::Spanned;

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    for up in &ctx.config.upstreams {
        let Some(tls) = &up.tls else { continue };
        if let Some(ca) = &tls.ca {
            ca_file(ctx, ca, diags);
        }
        if let Some(c) = &tls.client_cert {
            client_cert(ctx, c, diags);
        }
    }
    for store in &ctx.config.stores {
        let url = store.url.as_ref().and_then(|u| store_url(ctx, u, diags));
        let Some(tls) = &store.tls else { continue };
        if let Some(ca) = &tls.ca {
            ca_file(ctx, ca, diags);
        }
        if let Some(c) = &tls.client_cert {
            client_cert(ctx, c, diags);
        }
        if url.is_some_and(|u| !crate::redis_url::is_tls(&u)) {
            diags.push(
                Diagnostic::new(Code::GW0106, "`tls` on a `redis://` URL")
                    .primary(tls.span, "TLS needs a `rediss://` URL")
                    .help("write `rediss://` to connect over TLS, or remove the `tls` block"),
            );
        }
    }
}

/// A store's URL, read when it comes from `env()` / `file()` (a trailing
/// newline dropped) and parsed; `None` after reporting when unusable.
fn store_url(ctx: &Ctx<'_>, url: &Spanned<Source>, diags: &mut Diagnostics) -> Option<String> {
    let (text, origin) = match &url.node {
        Source::Inline(u) => return Some(u.clone()),
        source => {
            let m = material::read(ctx, source, url.span, "Redis URL", Code::GW0003, diags)?;
            let text = String::from_utf8(m.bytes).unwrap_or_default();
            (text.trim_end().to_string(), m.origin)
        }
    };
    match crate::redis_url::parse(&text) {
        Ok(_) => Some(text),
        Err(e) => {
            diags.push(
                Diagnostic::new(Code::GW0003, format!("{origin} is not a usable Redis URL: {e}"))
                    .primary(url.span, "not a `redis://` URL")
                    .help(e.help),
            );
            None
        }
    }
}

/// The `ca` file: PEM with at least one well-formed certificate.
fn ca_file(ctx: &Ctx<'_>, ca: &Spanned<Source>, diags: &mut Diagnostics) {
    let Some(m) = material::read(ctx, &ca.node, ca.span, "CA certificate", Code::GW0405, diags) else {
        return;
    };
    let origin = &m.origin;
    let blocks = match pem::parse(&m.bytes) {
        Ok(b) => b,
        Err(e) => {
            diags.push(
                Diagnostic::new(Code::GW0405, format!("{origin} is not a PEM CA certificate: {e}"))
                    .primary(ca.span, "not PEM")
                    .help("give a PEM file with one or more `-----BEGIN CERTIFICATE-----` blocks"),
            );
            return;
        }
    };
    let certs: Vec<_> = blocks.iter().filter(|b| b.label == "CERTIFICATE").collect();
    if certs.is_empty() {
        let found: Vec<String> = blocks.iter().map(|b| format!("`{}`", b.label)).collect();
        diags.push(
            Diagnostic::new(
                Code::GW0405,
                format!("{origin} holds no CA certificate (found {})", found.join(", ")),
            )
            .primary(ca.span, "no certificate here")
            .help("`ca` names the certificate of the CA that signed the servers' certificates (PEM), never a key"),
        );
        return;
    }
    if certs.iter().any(|b| pem::certificate_spki(&b.der).is_none()) {
        diags.push(
            Diagnostic::new(Code::GW0405, format!("a certificate in {origin} is malformed"))
                .primary(ca.span, "not an X.509 certificate")
                .help("regenerate or re-download the CA certificate file"),
        );
    }
}

/// `cert .. key ..`: the listener's checks (GW0403), reported as GW0405.
fn client_cert(ctx: &Ctx<'_>, c: &ClientCertificate, diags: &mut Diagnostics) {
    let mut found = Diagnostics::default();
    let cert = material::read(
        ctx,
        &c.cert.node,
        c.cert.span,
        "client certificate",
        Code::GW0405,
        &mut found,
    )
    .and_then(|m| pem_file(&m, c.cert.span, Kind::Certificate, &mut found).map(|b| (b, m.origin)));
    let key = material::read(ctx, &c.key.node, c.key.span, "client key", Code::GW0405, &mut found)
        .and_then(|m| pem_file(&m, c.key.span, Kind::Key, &mut found).map(|b| (b, m.origin)));
    if let (Some(cert), Some(key)) = (cert, key) {
        let as_listener = Certificate {
            cert: c.cert.clone(),
            key: c.key.clone(),
            sni: None,
            span: c.span,
        };
        pair(&as_listener, &cert, &key, &mut found);
    }
    for mut d in found.into_sorted() {
        if d.code == Code::GW0403 {
            d.code = Code::GW0405;
        }
        diags.push(d);
    }
}
