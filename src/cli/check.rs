//! `gwc check FILE...`: compile each file (with its imports), print every
//! diagnostic — as rustc-like text or as JSON — and a summary line.
//! Exit 0 without errors (warnings allowed unless `--deny-warnings`), 1 with
//! errors, 2 when a file on the command line cannot be read. A file that
//! another file on the command line imports is checked as an import: it is
//! not warned about for having no `listen` (GW0506).

use super::{EXIT_PROBLEMS, EXIT_USAGE};
use crate::host::RealHost;
use crate::render::{self, Style};
use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check configurations: parse, type-check and report every problem found.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The `.gw` files to check; each is compiled with the files it imports.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// How to print diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Labelled source snippets, like rustc.
    Text,
    /// `{"diagnostics":[{"code","severity","message","file","line","column","labels","help"}]}`.
    Json,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let style = Style::detect();
    let mut stdout = io::stdout().lock();
    let mut json = Vec::new();
    let (mut errors, mut warnings, mut checked) = (0, 0, 0);
    let mut unreadable = false;
    let compiled: Vec<_> = args
        .files
        .iter()
        .map(|file| (file, gw_compiler::compile(&RealHost, file)))
        .collect();
    let imported = imported_files(compiled.iter().filter_map(|(_, c)| c.as_ref().ok()));
    for (file, compilation) in compiled {
        let mut compilation = match compilation {
            Ok(c) => c,
            Err(e) => {
                let _ = stdout.flush();
                eprintln!("error: cannot read `{file}`: {}", describe(&e));
                unreadable = true;
                continue;
            }
        };
        // A file another file on the command line imports is checked as an
        // import: it needs no listener of its own (GW0506 is about roots).
        if canonical(file).is_some_and(|f| imported.contains(&f)) {
            compilation.diagnostics.retain(|d| d.code != gw_compiler::Code::GW0506);
        }
        checked += 1;
        errors += compilation.errors();
        warnings += compilation.warnings();
        for d in &compilation.diagnostics {
            match args.format {
                Format::Text => {
                    let _ = writeln!(stdout, "{}", render::render(d, &compilation.sources, style));
                }
                Format::Json => json.push(d.to_json(&compilation.sources)),
            }
        }
    }
    match args.format {
        Format::Text if checked > 0 => {
            let what = match args.files.as_slice() {
                [one] => one.clone(),
                _ => format!("{checked} files"),
            };
            let denied = if args.deny_warnings && warnings > 0 {
                " (warnings denied)"
            } else {
                ""
            };
            let _ = writeln!(stdout, "{what}: {}{denied}", render::summary(errors, warnings));
        }
        Format::Text => {}
        Format::Json => {
            let doc = serde_json::json!({ "diagnostics": json });
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            let _ = writeln!(stdout, "{text}");
        }
    }
    let _ = stdout.flush();
    if unreadable {
        ExitCode::from(EXIT_USAGE)
    } else if errors > 0 || (args.deny_warnings && warnings > 0) {
        ExitCode::from(EXIT_PROBLEMS)
    } else {
        ExitCode::SUCCESS
    }
}

/// Every file some compilation read as an import (not as its root), by
/// canonical path.
fn imported_files<'a>(compilations: impl Iterator<Item = &'a gw_compiler::Compilation>) -> HashSet<PathBuf> {
    compilations
        .flat_map(|c| c.sources.files().skip(1).filter_map(|(_, f)| canonical(&f.name)))
        .collect()
}

fn canonical(file: &str) -> Option<PathBuf> {
    std::fs::canonicalize(file).ok()
}

/// An I/O error in a few lower-case words.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "it is a directory".to_string(),
        _ => e.to_string(),
    }
}
