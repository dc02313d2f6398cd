//! Listeners: each address is bound once, the admin address included
//! (GW0205); a TLS listener has a certificate and key that exist and are PEM
//! of the right kind (GW0403); credentials do not cross the network in clear
//! text (GW0503, a warning); a configuration with routes has a listener to
//! serve them (GW0506, a warning); a `client_ca` holds a certificate
//! (GW0406), and a route reading `client_cert.*` is warned about when a
//! listener without `client_ca` serves it too (GW0507).

use super::material;
use super::pem;
use super::Ctx;
use crate::ast::{Address, AddressHost, Certificate, Listen, ListenKind};
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{Span, Spanned};
use std::collections::HashMap;
use std::net::IpAddr;

pub(crate) fn check(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    addresses(ctx, diags);
    for listen in &ctx.config.listens {
        if let ListenKind::Tls {
            certs,
            tls_span,
            client_ca,
            client_auth,
        } = &listen.kind
        {
            tls(ctx, listen, certs, *tls_span, diags);
            match (client_ca, client_auth) {
                (Some(ca), _) => client_ca_file(ctx, ca, diags),
                (None, Some(how)) => diags.push(
                    Diagnostic::new(Code::GW0104, "`client_auth` without `client_ca`")
                        .primary(how.span, "no CA to verify client certificates against")
                        .help("add `client_ca \"certs/clients-ca.pem\"` to the `tls` block"),
                ),
                (None, None) => {}
            }
        }
    }
    clear_text(ctx, diags);
    no_listener(ctx, diags);
    client_cert_without_ca(ctx, diags);
}

// ------------------------------------------------------------------ GW0406

/// A `client_ca` must hold at least one X.509 certificate in PEM: the trust
/// roots a client certificate is verified against.
fn client_ca_file(ctx: &Ctx<'_>, ca: &Spanned<crate::ast::Source>, diags: &mut Diagnostics) {
    let Some(m) = material::read(ctx, &ca.node, ca.span, "client CA", Code::GW0406, diags) else {
        return;
    };
    let origin = &m.origin;
    let certs = match pem::parse(&m.bytes) {
        Ok(blocks) => blocks
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE" && !b.encrypted)
            .filter(|b| pem::certificate_spki(&b.der).is_some())
            .count(),
        Err(e) => {
            diags.push(
                Diagnostic::new(Code::GW0406, format!("{origin} is not a PEM CA certificate: {e}"))
                    .primary(ca.span, "not PEM")
                    .help("give the PEM file of the CA that signs client certificates (`-----BEGIN CERTIFICATE-----`)"),
            );
            return;
        }
    };
    if certs == 0 {
        diags.push(
            Diagnostic::new(Code::GW0406, format!("{origin} holds no certificate"))
                .primary(ca.span, "no CA certificate to verify clients against")
                .help("give the PEM file of the CA that signs client certificates (`-----BEGIN CERTIFICATE-----`)"),
        );
    }
}

// ------------------------------------------------------------------ GW0507

/// Every listener serves every route: a route whose `require`, templates or
/// limit keys read `client_cert.*` is served also by a listener that asks
/// for no certificate, where those references are absent (its `require`
/// answers 403 there). Warned once per route, at the first such reference.
fn client_cert_without_ca(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    let bare = ctx.config.listens.iter().find(|l| match &l.kind {
        ListenKind::Http => true,
        ListenKind::Tls { client_ca, .. } => client_ca.is_none(),
        ListenKind::Tcp { .. } => false,
    });
    let Some(bare) = bare else { return };
    for route in &ctx.config.routes {
        let Some(at) = crate::check::routes::client_cert_reference(ctx, route) else {
            continue;
        };
        diags.push(
            Diagnostic::new(
                Code::GW0507,
                format!(
                    "this route reads `client_cert.*`, and listener `{}` asks for no client certificate",
                    bare.address.node
                ),
            )
            .primary(at, "absent on a listener without `client_ca`")
            .secondary(bare.address.span, "serves every route, without client certificates")
            .help("every listener serves every route: give this listener `client_ca` too, or accept that a `require` on `client_cert.*` answers 403 there"),
        );
    }
}

// ------------------------------------------------------------------ GW0506

/// Routes and no `listen`: `gwc serve` would refuse to start with this
/// configuration, and a reload would refuse to swap it in. The configuration
/// is the root file with its imports, so a file that is only imported (by a
/// root with a `listen`) is never warned about. Quiet after a lowering error:
/// the `listen` may be the declaration that failed.
fn no_listener(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    if !ctx.config.listens.is_empty() || ctx.had_prior_errors() {
        return;
    }
    // The first route by position: the root file's when it has any.
    let Some(first) = ctx.config.routes.iter().map(|r| r.head_span).min() else {
        return;
    };
    let root = ctx.sources.files().next().map_or("this file", |(_, f)| f.name.as_str());
    let n = ctx.config.routes.len();
    let routes = if n == 1 {
        "a route".to_string()
    } else {
        format!("{n} routes")
    };
    diags.push(
        Diagnostic::new(
            Code::GW0506,
            format!("`{root}` has {routes} and no `listen`: nothing would serve them"),
        )
        .primary(first, "no listener serves this route")
        .help(format!(
            "add a listener such as `listen :8080` (`gwc serve` refuses a configuration without one); \
             a file meant to be imported is checked with the file that imports it: \
             `gwc check app.gw {root}` does not warn about it"
        )),
    );
}

// ------------------------------------------------------------------ GW0205

/// The socket an address binds: `:8080`, `0.0.0.0:8080` and `[::]:8080` all
/// bind every interface (on Linux `[::]` also takes IPv4 by default).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Bind<'a> {
    Every,
    Ip(IpAddr),
    Name(&'a str),
}

fn bind(a: &Address) -> Bind<'_> {
    match &a.host {
        AddressHost::Any => Bind::Every,
        AddressHost::Ip(ip) if ip.is_unspecified() => Bind::Every,
        AddressHost::Ip(ip) => Bind::Ip(*ip),
        AddressHost::Name(n) => Bind::Name(n),
    }
}

fn addresses(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    // Every bound address in the order written (by position), listeners and
    // admin endpoints together.
    let mut all: Vec<(&Spanned<Address>, bool)> = ctx
        .config
        .listens
        .iter()
        .map(|l| (&l.address, false))
        .chain(ctx.config.admins.iter().map(|a| (a, true)))
        .collect();
    all.sort_by_key(|(a, _)| a.span);
    let mut exact: HashMap<(Bind<'_>, u16), (Span, bool)> = HashMap::new();
    // Per port: the first address binding every interface, and the first
    // binding one interface — the two cannot both be bound.
    let mut every: HashMap<u16, Span> = HashMap::new();
    let mut one: HashMap<u16, (Span, &Address)> = HashMap::new();
    for (addr, admin) in all {
        let a = &addr.node;
        let b = bind(a);
        let what = if admin { "admin address" } else { "listen address" };
        if let Some(&(first, first_admin)) = exact.get(&(b.clone(), a.port)) {
            let first_what = if first_admin {
                "the admin endpoint"
            } else {
                "a listener"
            };
            diags.push(
                Diagnostic::new(Code::GW0205, format!("{what} `{a}` is already used by {first_what}"))
                    .primary(addr.span, "bound again here")
                    .secondary(first, "first bound here")
                    .help("give each listener and the admin endpoint its own address"),
            );
            continue;
        }
        exact.insert((b.clone(), a.port), (addr.span, admin));
        match b {
            Bind::Every => {
                if let Some(&(first, other)) = one.get(&a.port) {
                    diags.push(
                        Diagnostic::new(
                            Code::GW0205,
                            format!(
                                "{what} `{a}` binds every interface, but `{other}` already takes port {}",
                                a.port
                            ),
                        )
                        .primary(addr.span, "binds every interface on this port")
                        .secondary(first, "binds one interface on the same port")
                        .help("use another port, or bind specific interfaces only"),
                    );
                }
                every.entry(a.port).or_insert(addr.span);
            }
            Bind::Ip(_) => {
                if let Some(&first) = every.get(&a.port) {
                    diags.push(
                        Diagnostic::new(
                            Code::GW0205,
                            format!("{what} `{a}` is already bound by a listener on every interface"),
                        )
                        .primary(addr.span, "port taken")
                        .secondary(first, "binds every interface on the same port")
                        .help("use another port"),
                    );
                }
                one.entry(a.port).or_insert((addr.span, a));
            }
            Bind::Name(_) => {}
        }
    }
}

// ------------------------------------------------------------------ GW0403

fn tls(ctx: &Ctx<'_>, listen: &Listen, certs: &[Certificate], tls_span: Span, diags: &mut Diagnostics) {
    if certs.is_empty() {
        // A `cert` line dropped for a bad value was reported already.
        if ctx.has_prior_error_in(listen.span) {
            return;
        }
        diags.push(
            Diagnostic::new(
                Code::GW0403,
                format!("TLS listener `{}` has no certificate", listen.address.node),
            )
            .primary(tls_span, "no certificate to present")
            .help("add `cert \"certs/api.crt\" key \"certs/api.key\"` to the `tls` block"),
        );
        return;
    }
    if certs.iter().all(|c| c.sni.is_some()) {
        diags.push(
            Diagnostic::new(
                Code::GW0403,
                format!("TLS listener `{}` has no default certificate", listen.address.node),
            )
            .primary(tls_span, "every certificate here is for a named host")
            .help("add a `cert ... key ...` line without `sni`: it answers clients that name no host, or another one"),
        );
    }
    for cert in certs {
        let c = material::read(ctx, &cert.cert.node, cert.cert.span, "certificate", Code::GW0403, diags)
            .and_then(|m| pem_file(&m, cert.cert.span, Kind::Certificate, diags).map(|b| (b, m.origin)));
        let k = material::read(ctx, &cert.key.node, cert.key.span, "private key", Code::GW0403, diags)
            .and_then(|m| pem_file(&m, cert.key.span, Kind::Key, diags).map(|b| (b, m.origin)));
        if let (Some(c), Some(k)) = (c, k) {
            pair(cert, &c, &k, diags);
        }
    }
}

/// The key must be the certificate's: their public halves are compared
/// where the files carry them (RSA moduli, EC points); anything else (an
/// Ed25519 key holds no public half) is left to the TLS library at start.
pub(super) fn pair(cert: &Certificate, c: &(pem::Block, String), k: &(pem::Block, String), diags: &mut Diagnostics) {
    let ((cert_block, cert_origin), (key_block, key_origin)) = (c, k);
    let Some(spki) = pem::certificate_spki(&cert_block.der) else {
        diags.push(
            Diagnostic::new(Code::GW0403, format!("the certificate in {cert_origin} is malformed"))
                .primary(cert.cert.span, "not an X.509 certificate")
                .help("regenerate the certificate file"),
        );
        return;
    };
    let (Some(public), Some(private)) = (pem::spki_public_part(spki), pem::private_key_public_part(key_block)) else {
        return;
    };
    if public == private {
        return;
    }
    diags.push(
        Diagnostic::new(
            Code::GW0403,
            format!("the private key in {key_origin} does not belong to the certificate in {cert_origin}"),
        )
        .primary(cert.key.span, "not this certificate's key")
        .secondary(cert.cert.span, "the certificate")
        .help("give the key the certificate was issued for: `openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in KEY` print the same key"),
    );
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Certificate,
    Key,
}

/// The certificate or key block of a PEM file, after reporting what is
/// wrong with it.
pub(super) fn pem_file(m: &material::Material, span: Span, kind: Kind, diags: &mut Diagnostics) -> Option<pem::Block> {
    let origin = &m.origin;
    let (what, labels, example): (&str, &[&str], &str) = match kind {
        Kind::Certificate => ("certificate", &["CERTIFICATE"], "-----BEGIN CERTIFICATE-----"),
        Kind::Key => (
            "private key",
            &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"],
            "-----BEGIN PRIVATE KEY-----",
        ),
    };
    let bad = |message: String, label: &str, help: String| {
        Diagnostic::new(Code::GW0403, message).primary(span, label).help(help)
    };
    let blocks = match pem::parse(&m.bytes) {
        Ok(b) => b,
        Err(e) => {
            diags.push(bad(
                format!("{origin} is not a PEM {what}: {e}"),
                "not PEM",
                format!("give a PEM file with a `{example}` block"),
            ));
            return None;
        }
    };
    match blocks.iter().find(|b| labels.contains(&b.label.as_str())) {
        Some(b) if !b.encrypted && pem::is_sequence(&b.der) => return Some(b.clone()),
        Some(b) if b.encrypted => diags.push(bad(
            format!("the {what} in {origin} is encrypted"),
            "encrypted",
            "gw needs the key unencrypted: `openssl pkey -in key.pem -out key.pem`, and restrict the file's permissions".into(),
        )),
        Some(b) => diags.push(bad(
            format!("the `{}` block in {origin} is malformed", b.label),
            "malformed",
            "regenerate the file".into(),
        )),
        None => {
            let found: Vec<String> = blocks.iter().map(|b| format!("`{}`", b.label)).collect();
            let swapped = match kind {
                Kind::Certificate => blocks.iter().any(|b| b.label.contains("PRIVATE KEY")),
                Kind::Key => blocks.iter().any(|b| b.label == "CERTIFICATE"),
            };
            let help = if swapped {
                "did you swap `cert` and `key`?".to_string()
            } else if blocks.iter().any(|b| b.label == "ENCRYPTED PRIVATE KEY") {
                "gw needs the key unencrypted: `openssl pkey -in key.pem -out key.pem`".to_string()
            } else {
                format!("give a PEM file with a `{example}` block")
            };
            diags.push(bad(
                format!("{origin} holds no {what} (found {})", found.join(", ")),
                &format!("no {what} here"),
                help,
            ));
        }
    }
    None
}

// ------------------------------------------------------------------ GW0503

/// A plain-HTTP listener while some route has an auth: tokens and API keys
/// would cross the network in clear text. A listener bound to a loopback
/// address (127.0.0.0/8 or ::1) is exempt: its traffic never leaves the
/// machine (typically a TLS-terminating proxy or a sidecar in front of gw),
/// so the credentials are not exposed on the wire.
fn clear_text(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    let Some(route) = ctx.config.routes.iter().find(|r| r.auth.is_some()) else {
        return;
    };
    let auth_span = route.auth.as_ref().map(|a| a.span).unwrap_or(route.head_span);
    for listen in &ctx.config.listens {
        if !matches!(listen.kind, ListenKind::Http) {
            continue;
        }
        if matches!(listen.address.node.host, AddressHost::Ip(ip) if ip.is_loopback()) {
            continue;
        }
        diags.push(
            Diagnostic::new(
                Code::GW0503,
                format!("plain-HTTP listener `{}` carries routes with auth", listen.address.node),
            )
            .primary(listen.span, "credentials cross the network in clear text here")
            .secondary(auth_span, "this route takes credentials")
            .help(format!(
                "serve it with TLS: `listen {} tls {{ cert \"...\" key \"...\" }}`, or bind it to 127.0.0.1 behind a TLS proxy",
                listen.address.node
            )),
        );
    }
}
