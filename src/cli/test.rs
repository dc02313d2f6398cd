//! `gwc test FILE`: run the configuration's embedded `test` blocks against
//! its compiled plan, with no network. Each failing expectation is a GW0601
//! diagnostic at the expectation saying what happens instead; `--coverage`
//! lists the routes no test reaches; `--format json` prints one object.
//! Exit 0 when every expectation holds, 1 on a failure or any other error,
//! 2 when the file cannot be read.

use super::plan::describe;
use super::{EXIT_PROBLEMS, EXIT_USAGE};
use crate::host::RealHost;
use crate::render::{self, Style};
use std::io::{self, Write};
use std::process::ExitCode;

/// Run the embedded `test` blocks against the routing plan.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The `.gw` file (compiled with the files it imports).
    #[arg(value_name = "FILE")]
    file: String,
    /// How to print the results.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also list the routes that no test reaches.
    #[arg(long)]
    coverage: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Labelled source snippets, like rustc, and a summary line.
    Text,
    /// `{"diagnostics":[...],"tests":{"expectations","passed","failed"},"unreached":[...]}`.
    Json,
}

pub fn run(args: TestArgs) -> ExitCode {
    let c = match gw_compiler::compile(&RealHost, &args.file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {}", args.file, describe(&e));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut stdout = io::stdout().lock();
    let report = c.tests.clone().unwrap_or_default();
    let unreached: Vec<(String, String, u32)> = report
        .unreached()
        .map(|(_, head, origin)| (head.to_string(), origin.file.clone(), origin.line))
        .collect();
    let ran = c.tests.is_some();
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({
                "diagnostics": c.diagnostics.iter().map(|d| d.to_json(&c.sources)).collect::<Vec<_>>(),
                "tests": if ran {
                    serde_json::json!({
                        "expectations": report.expectations,
                        "passed": report.passed(),
                        "failed": report.failures.len(),
                    })
                } else {
                    serde_json::Value::Null
                },
                "unreached": if args.coverage {
                    serde_json::Value::Array(unreached.iter().map(|(route, file, line)| {
                        serde_json::json!({ "route": route, "file": file, "line": line })
                    }).collect())
                } else {
                    serde_json::Value::Null
                },
            });
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Text => {
            let style = Style::detect();
            for d in &c.diagnostics {
                let _ = writeln!(stdout, "{}", render::render(d, &c.sources, style));
            }
            if args.coverage && ran {
                if unreached.is_empty() {
                    let _ = writeln!(stdout, "coverage: every route is reached by a test");
                } else {
                    let _ = writeln!(stdout, "coverage: {} routes no test reaches:", unreached.len());
                    for (route, file, line) in &unreached {
                        let _ = writeln!(stdout, "  {route}  ({file}:{line})");
                    }
                }
            }
            let other_errors = c.errors() - report.failures.len();
            let line = if !ran {
                format!("{}; tests not run", render::summary(c.errors(), c.warnings()))
            } else if report.expectations == 0 {
                "no test blocks".to_string()
            } else {
                let mut s = format!(
                    "{} expectation{}: {} passed, {} failed",
                    report.expectations,
                    if report.expectations == 1 { "" } else { "s" },
                    report.passed(),
                    report.failures.len()
                );
                if other_errors > 0 {
                    s.push_str(&format!(" ({})", render::summary(other_errors, 0)));
                }
                s
            };
            let _ = writeln!(stdout, "{}: {line}", args.file);
        }
    }
    let _ = stdout.flush();
    if c.errors() > 0 {
        ExitCode::from(EXIT_PROBLEMS)
    } else {
        ExitCode::SUCCESS
    }
}
