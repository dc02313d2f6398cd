//! `gwc explain CODE`: the long page of a diagnostic code (what it means, an
//! example, the fix); `gwc explain --list`: every code with its severity and
//! summary. An unknown code exits 2 with a "did you mean".

use super::EXIT_USAGE;
use gw_compiler::diagnostic::did_you_mean;
use gw_compiler::Code;
use std::io::{self, Write};
use std::process::ExitCode;

/// Explain a diagnostic code, with an example and the fix.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// A code such as `GW0101` (case-insensitive; `101` also works).
    #[arg(value_name = "CODE", required_unless_present = "list")]
    code: Option<String>,
    /// List every code with its severity and summary.
    #[arg(long, conflicts_with = "code")]
    list: bool,
}

pub fn run(args: ExplainArgs) -> ExitCode {
    let mut stdout = io::stdout().lock();
    if args.list {
        for code in Code::ALL {
            let _ = writeln!(stdout, "{code}  {:<7}  {}", code.severity().as_str(), code.summary());
        }
        return ExitCode::SUCCESS;
    }
    let given = args.code.unwrap_or_default();
    match parse(&given) {
        Some(code) => {
            let page = code.explanation();
            let _ = write!(stdout, "{page}");
            if !page.ends_with('\n') {
                let _ = writeln!(stdout);
            }
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("error: unknown diagnostic code `{given}`");
            let wanted = given.to_ascii_uppercase();
            if let Some(help) = did_you_mean(&wanted, Code::ALL.iter().map(|c| c.as_str())) {
                eprintln!("help: {help}");
            }
            eprintln!("help: run `gwc explain --list` to see every code");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `GW0101`, `gw0101`, or just the number (`101`, `0101`).
fn parse(given: &str) -> Option<Code> {
    let given = given.trim();
    if !given.is_empty() && given.len() <= 4 && given.bytes().all(|b| b.is_ascii_digit()) {
        return Code::parse(&format!("GW{given:0>4}"));
    }
    Code::parse(given)
}
