//! Checks over the whole configuration, one module per concern. Each adds
//! diagnostics and never stops at the first problem.

use crate::ast::Config;
use crate::diagnostic::Diagnostics;
use crate::host::Host;
use crate::source::SourceMap;

/// Runs every check.
pub fn check(host: &dyn Host, sources: &SourceMap, config: &Config, diags: &mut Diagnostics) {
    let _ = (host, sources, config, diags);
}
