//! `gwc fmt [--check] [FILE... | -]`: rewrite `.gw` files in the canonical
//! layout (`gw_compiler::format`), or with `--check` only say which are not.
//! `-` (or no file) formats standard input to standard output. A file with
//! syntax errors is left untouched and its diagnostics printed. Exit 0 when
//! everything is (now) formatted, 1 when `--check` found a file to reformat
//! or a file did not parse, 2 when a file cannot be read or written.

use super::{EXIT_PROBLEMS, EXIT_USAGE};
use crate::render::{self, Style};
use gw_compiler::format::{format_source, Refused};
use std::io::{self, Read, Write};
use std::process::ExitCode;

/// Format configurations in the canonical layout.
#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    /// The `.gw` files to rewrite in place; `-` (or none) reads standard
    /// input and writes the result to standard output. Imports are not
    /// followed: name each file.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
    /// Change nothing; list the files that are not formatted and exit 1 if any.
    #[arg(long)]
    check: bool,
}

/// What happened to one file.
enum Outcome {
    Unchanged,
    Changed,
    Refused,
    Failed,
}

pub fn run(args: FmtArgs) -> ExitCode {
    let files = if args.files.is_empty() {
        vec!["-".to_string()]
    } else {
        args.files.clone()
    };
    let (mut changed, mut refused, mut failed) = (0, 0, 0);
    for file in &files {
        match one(file, args.check) {
            Outcome::Unchanged => {}
            Outcome::Changed => changed += 1,
            Outcome::Refused => refused += 1,
            Outcome::Failed => failed += 1,
        }
    }
    if failed > 0 {
        ExitCode::from(EXIT_USAGE)
    } else if refused > 0 || (args.check && changed > 0) {
        ExitCode::from(EXIT_PROBLEMS)
    } else {
        ExitCode::SUCCESS
    }
}

fn one(file: &str, check: bool) -> Outcome {
    let stdin = file == "-";
    let bytes = if stdin {
        let mut bytes = Vec::new();
        match io::stdin().lock().read_to_end(&mut bytes) {
            Ok(_) => bytes,
            Err(e) => {
                eprintln!("error: cannot read standard input: {e}");
                return Outcome::Failed;
            }
        }
    } else {
        match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read `{file}`: {}", super::plan::describe(&e));
                return Outcome::Failed;
            }
        }
    };
    let name = if stdin { "<stdin>" } else { file };
    let formatted = match format_source(name, &bytes) {
        Ok(f) => f,
        Err(Refused::Syntax { sources, diagnostics }) => {
            let style = Style::detect();
            let mut stderr = io::stderr().lock();
            for d in &diagnostics {
                let _ = write!(stderr, "{}", render::render(d, &sources, style));
            }
            let _ = writeln!(stderr, "{name}: not formatted: it does not parse");
            return Outcome::Refused;
        }
        Err(Refused::Unsafe(why)) => {
            eprintln!("error: {name}: not formatted ({why}); this is a bug in `gwc fmt`, please report it");
            return Outcome::Refused;
        }
    };
    let same = formatted.as_bytes() == bytes.as_slice();
    if check {
        if !same {
            let line = first_difference(&bytes, &formatted);
            println!("{name}: not formatted (first difference at line {line})");
        }
    } else if stdin {
        let mut stdout = io::stdout().lock();
        if stdout
            .write_all(formatted.as_bytes())
            .and_then(|_| stdout.flush())
            .is_err()
        {
            return Outcome::Failed;
        }
    } else if !same {
        if let Err(e) = std::fs::write(file, formatted.as_bytes()) {
            eprintln!("error: cannot write `{file}`: {}", super::plan::describe(&e));
            return Outcome::Failed;
        }
        eprintln!("formatted {file}");
    }
    if same {
        Outcome::Unchanged
    } else {
        Outcome::Changed
    }
}

/// The 1-based line where `before` and `after` first differ.
fn first_difference(before: &[u8], after: &str) -> usize {
    let at = before
        .iter()
        .zip(after.as_bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(before.len().min(after.len()));
    before[..at].iter().filter(|b| **b == b'\n').count() + 1
}
