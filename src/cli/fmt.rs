//! `gwc fmt [--check] [FILE... | -]`: rewrite `.gw` files in the canonical
//! layout (`gw_compiler::format`), or with `--check` only say which are not.
//! `-` (or no file) formats standard input to standard output. A file with
//! syntax errors is left untouched and its diagnostics printed. Exit 0 when
//! everything is (now) formatted, 1 when `--check` found a file to reformat
//! or a file did not parse, 2 when a file cannot be read or written. Files
//! are read as `gwc check` reads them (regular files of at most 64 MiB:
//! [`RealHost`]), standard input up to the same 64 MiB.
//!
//! A file is rewritten atomically ([`replace`]): the result goes to a
//! temporary file in the same folder, with the file's permissions (and
//! owner, where the user may set it), synced, then renamed over it — so a
//! crash or a full disk leaves the old file or the new one, never half of
//! one, and a reader that opened it meanwhile reads the old file whole. A
//! symlink stays a symlink: its target is replaced.

use super::{EXIT_PROBLEMS, EXIT_USAGE};
use crate::host::RealHost;
use crate::render::{self, Style};
use gw_compiler::format::{format_source, Refused};
use gw_compiler::host::{Host, Refusal, MAX_FILE_SIZE};
use std::io::{self, Read, Write};
use std::path::Path;
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
        match read_stdin() {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("error: cannot read standard input: {e}");
                return Outcome::Failed;
            }
        }
    } else {
        // Bounded as `gwc check` reads: a regular file of at most 64 MiB.
        match RealHost.read(file) {
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
        if let Err(e) = replace(Path::new(file), formatted.as_bytes()) {
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

/// Standard input, of at most [`MAX_FILE_SIZE`] bytes (`gwc fmt <
/// /dev/zero` stops there, as a file that large is refused).
fn read_stdin() -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::stdin().lock().take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(Refusal::TooLarge {
            size: None,
            limit: MAX_FILE_SIZE,
        }
        .into());
    }
    Ok(bytes)
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

/// Replaces the file at `path` (a symlink's target) with `bytes`: a
/// temporary file beside it, with its permissions and (where this user may
/// set it) its owner, written and synced, then renamed over it, and the
/// folder synced so that the rename lasts. On an error before the rename,
/// the temporary file is removed and the file is untouched.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file in a folder"))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = std::fs::metadata(&target)?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".gwfmt")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mine = temp.as_file().metadata()?;
        if (mine.uid(), mine.gid()) != (metadata.uid(), metadata.gid()) {
            // Only root may give a file away, and only a member of the
            // group may give it that group: keep what can be kept.
            if std::os::unix::fs::fchown(temp.as_file(), Some(metadata.uid()), Some(metadata.gid())).is_err() {
                let _ = std::os::unix::fs::fchown(temp.as_file(), None, Some(metadata.gid()));
            }
        }
    }
    // After chown, which may clear the set-id bits.
    temp.as_file().set_permissions(metadata.permissions())?;
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|e| e.error)?;
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}
