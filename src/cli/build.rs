//! `gwc build FILE [-o OUT]`: compile a configuration and write its plan as
//! JSON (with `format_version`; `env()` and `file()` secrets stay
//! references, resolved when the plan is loaded). `-o -` writes to stdout;
//! without `-o`, `app.gw` becomes `app.plan.json` beside it (the repository's
//! `.gitignore` ignores `*.plan.json`), and the command says where. The one output
//! of gw that holds secrets: what was written inline in the configuration
//! (`secret "..."`, `keys "..."`, a URL's password) is in the plan as
//! written, since `gwc serve app.plan.json` needs it, and the command says
//! so.

use super::plan::compile_plan;
use super::EXIT_USAGE;
use std::io::{self, Write};
use std::process::ExitCode;

/// Compile a configuration into a plan file (JSON) for `gwc serve`.
///
/// Secrets written inline in the configuration (`secret "..."`, `keys
/// "..."`, URL passwords) are in the plan as written, since serving it
/// needs them: keep the file as private as the configuration.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The `.gw` file (compiled with the files it imports).
    #[arg(value_name = "FILE")]
    file: String,
    /// Where to write the plan (`-` for stdout). Default: FILE with
    /// `.plan.json` instead of `.gw`.
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
}

pub fn run(args: BuildArgs) -> ExitCode {
    let (plan, _) = match compile_plan(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut json = plan.to_json();
    json.push('\n');
    let out = args.output.unwrap_or_else(|| {
        let stem = args.file.strip_suffix(".gw").unwrap_or(&args.file);
        format!("{stem}.plan.json")
    });
    let carried = plan.carried_secrets();
    let note = (carried > 0).then(|| {
        format!(
            "note: the plan carries {carried} secret{} written inline in the configuration (inline secrets or \
             keys, URL passwords), as `gwc serve` needs them: keep it as private as the configuration, \
             or use env(\"...\") and file(\"...\") instead",
            if carried == 1 { "" } else { "s" }
        )
    });
    if out == "-" {
        let mut stdout = io::stdout().lock();
        let _ = stdout.write_all(json.as_bytes());
        let _ = stdout.flush();
        if let Some(note) = note {
            eprintln!("{note}");
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::write(&out, json) {
        eprintln!("error: cannot write `{out}`: {}", super::plan::describe(&e));
        return ExitCode::from(EXIT_USAGE);
    }
    println!(
        "wrote {out}: plan format version {}, {}, {}; serve it with `gwc serve {out}`",
        plan.format_version,
        count(plan.routes.len(), "route"),
        count(plan.upstreams.len(), "upstream")
    );
    if let Some(note) = note {
        println!("{note}");
    }
    ExitCode::SUCCESS
}

/// `1 route`, `2 routes`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
