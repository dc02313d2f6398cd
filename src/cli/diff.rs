//! `gwc diff OLD NEW`: what a reload from OLD to NEW would change — listeners,
//! admin, the `limits` block, upstreams and their servers, auths, limits,
//! stores, and routes with their policies — as text or `--format json`.
//! OLD and NEW are `.gw` files or plans written by `gwc build` (`*.json`).
//! The summary is [`gw_compiler::plan::diff`], the one `gwc serve` logs at
//! each reload. Secrets are never shown.
//!
//! Exit status as `diff(1)`'s: 0 no changes, 1 changes, 2 trouble — a
//! file that cannot be read, a configuration with errors, a plan that is
//! refused, or a usage error. So `gwc diff deployed.plan.json app.gw` in CI
//! fails on any change (a refactoring of the file that must not change the
//! plan), and `gwc diff OLD NEW || [ $? = 1 ]` shows the change without
//! failing on it.

use super::plan::compile_plan;
use super::watch::{is_built_plan, read_built_plan};
use super::EXIT_PROBLEMS;
use crate::host::RealHost;
use gw_compiler::plan::Plan;
use std::io::{self, Write};
use std::process::ExitCode;

/// Show what a reload from OLD to NEW would change.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Routes are identified by their head (methods, host, path), upstreams, auths, limits and stores \
by name, listeners by address and kind; a route moved in the file is not a change. \
Secrets are never shown: a changed inline secret or URL password is reported without its values.

Exit status, as diff(1)'s: 0 no changes, 1 changes, 2 trouble (a file that cannot be read, \
a configuration with errors, a refused plan).")]
pub struct DiffArgs {
    /// The configuration running now: a `.gw` file or a plan built by `gwc build` (`*.json`).
    #[arg(value_name = "OLD")]
    old: String,
    /// The configuration to reload: a `.gw` file or a built plan (`*.json`).
    #[arg(value_name = "NEW")]
    new: String,
    /// How to print the changes.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One change a line (`+` added, `-` removed, `~` changed), what changed
    /// indented under it, then a summary line.
    Text,
    /// `{"changed","summary","counts","changes":[{"change","kind","name","origin","about","details"}]}`.
    Json,
}

/// `diff(1)`'s status for trouble (the same as gwc's usage errors).
const EXIT_TROUBLE: u8 = super::EXIT_USAGE;

pub fn run(args: DiffArgs) -> ExitCode {
    let (old, new) = match (load(&args.old), load(&args.new)) {
        (Ok(old), Ok(new)) => (old, new),
        _ => return ExitCode::from(EXIT_TROUBLE),
    };
    let diff = gw_compiler::plan::diff::diff(&old, &new);
    let text = match args.format {
        Format::Text => diff.render(),
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&diff.to_json()).unwrap_or_default()
        ),
    };
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    if diff.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEMS)
    }
}

/// The plan of a `.gw` file (its diagnostics on stderr) or a built plan.
fn load(file: &str) -> Result<Plan, ()> {
    if is_built_plan(file) {
        return read_built_plan(&RealHost, file).map_err(|message| eprintln!("error: {message}"));
    }
    match compile_plan(file) {
        Ok((plan, _)) => Ok(plan),
        // 1 (errors) and 2 (unreadable) are both trouble here.
        Err(_) => Err(()),
    }
}
