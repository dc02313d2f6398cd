//! Reading what a `file("...")`, `env("...")` or inline value holds — keys,
//! certificates, secrets, key lists — through the [`Host`](crate::host::Host).
//! An unset variable is GW0404; a file the host refuses (not a regular file,
//! or too large) is GW0005; a file that cannot be read, or a variable set to
//! nothing, is reported with the caller's code (GW0402 for key material,
//! GW0403 for certificates). Contents are never printed.

use super::Ctx;
use crate::ast::Source;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::host::Refusal;
use crate::source::Span;
use std::io::ErrorKind;

/// The bytes of a source and how to name where they came from.
pub(crate) struct Material {
    pub bytes: Vec<u8>,
    /// "`keys/rs256.pem`", "environment variable `JWT_KEY`", "the inline value".
    pub origin: String,
}

/// Reads `source` (written at `span`); `what` names it in messages ("public
/// key", "certificate"). `None` after reporting when it cannot be had.
pub(crate) fn read(
    ctx: &Ctx<'_>,
    source: &Source,
    span: Span,
    what: &str,
    code: Code,
    diags: &mut Diagnostics,
) -> Option<Material> {
    match source {
        Source::Inline(s) => Some(Material {
            bytes: s.as_bytes().to_vec(),
            origin: "the inline value".into(),
        }),
        Source::Env(name) => match ctx.host.env(name) {
            None => {
                diags.push(
                    Diagnostic::new(Code::GW0404, format!("environment variable `{name}` is not set"))
                        .primary(span, format!("the {what} is read from `{name}`"))
                        .help(format!("set `{name}` in the environment gw runs in")),
                );
                None
            }
            Some(v) if v.is_empty() => {
                diags.push(
                    Diagnostic::new(code, format!("environment variable `{name}` is empty"))
                        .primary(span, format!("no {what} in `{name}`"))
                        .help(format!("set `{name}` to the {what}")),
                );
                None
            }
            Some(v) => Some(Material {
                bytes: v.into_bytes(),
                origin: format!("environment variable `{name}`"),
            }),
        },
        Source::File(path) => match ctx.host.read(path) {
            Ok(bytes) => Some(Material {
                bytes,
                origin: format!("`{path}`"),
            }),
            Err(e) if Refusal::of(&e).is_some() => {
                diags.push(
                    Diagnostic::new(Code::GW0005, format!("cannot read {what} `{path}`: {e}"))
                        .primary(span, "not read")
                        .help(format!("name the file that holds the {what}")),
                );
                None
            }
            Err(e) => {
                let (reason, help) = match e.kind() {
                    ErrorKind::NotFound => ("no such file", "a path is relative to the `.gw` file that names it"),
                    ErrorKind::PermissionDenied => ("permission denied", "let the user gw runs as read the file"),
                    _ => ("it cannot be read", "check that the path names a readable file"),
                };
                diags.push(
                    Diagnostic::new(code, format!("cannot read {what} `{path}`: {reason}"))
                        .primary(span, reason)
                        .help(help),
                );
                None
            }
        },
    }
}
