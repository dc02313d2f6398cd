//! An upstream's `tls` block (GW0405): its `ca` file holds at least one
//! certificate, and its client certificate and key (`cert .. key ..`) exist,
//! are PEM of the right kind and belong together — the same checks as a TLS
//! listener's certificates (GW0403), under the upstream's own code. Contents
//! are never printed.

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
