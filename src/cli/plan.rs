//! `gwc plan FILE`: compile a configuration and print its routing plan as a
//! tree a person reads at a glance (host → path tree → methods → route →
//! policies in order → target and strategy), or with `--format json` as the
//! plan's JSON (what `/plan` serves: inline secrets and URL passwords
//! redacted, unlike the plan file `gwc build` writes). Secrets appear as
//! `env("NAME")` or `file("path")`, never as values. Also holds the compile
//! step shared by `gwc plan`, `gwc build`, `gwc route`, `gwc diff` and
//! `gwc serve`.

use super::{EXIT_PROBLEMS, EXIT_USAGE};
use crate::host::RealHost;
use crate::render::{self, Style};
use gw_compiler::host::Host;
use gw_compiler::plan::Plan;
use gw_compiler::Compilation;
use std::io::{self, Write};
use std::process::ExitCode;

/// Print the compiled routing plan as a tree.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The `.gw` file (compiled with the files it imports).
    #[arg(value_name = "FILE")]
    file: String,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The plan as a tree: host, paths, methods, route, policies, target.
    Text,
    /// The plan's JSON (`gwc build`'s format) with inline secrets and URL
    /// passwords redacted, as the admin endpoint `/plan` serves it.
    Json,
}

pub fn run(args: PlanArgs) -> ExitCode {
    match compile_plan(&args.file) {
        Ok((plan, _)) => {
            let text = match args.format {
                Format::Text => plan.render(),
                Format::Json => format!(
                    "{}\n",
                    serde_json::to_string_pretty(&plan.redacted_json()).unwrap_or_default()
                ),
            };
            let mut stdout = io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Compiles `file` into a plan. Diagnostics (warnings too) go to stderr;
/// `Err` carries the exit status: 2 when the file cannot be read, 1 when the
/// configuration has errors.
pub fn compile_plan(file: &str) -> Result<(Plan, Compilation), ExitCode> {
    compile(&RealHost, file, false)
}

/// [`compile_plan`] reading files through `host` (`gwc serve` stamps each
/// file before reading it).
pub fn compile_plan_with(host: &dyn Host, file: &str) -> Result<(Plan, Compilation), ExitCode> {
    compile(host, file, false)
}

/// Like [`compile_plan`], but when the only errors are failing embedded
/// tests (GW0601), the plan they ran against (for `gwc route`).
pub fn compile_plan_despite_failing_tests(file: &str) -> Result<(Plan, Compilation), ExitCode> {
    compile(&RealHost, file, true)
}

fn compile(host: &dyn Host, file: &str, failing_tests_ok: bool) -> Result<(Plan, Compilation), ExitCode> {
    let mut compilation = match gw_compiler::compile(host, file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot read `{file}`: {}", describe(&e));
            return Err(ExitCode::from(EXIT_USAGE));
        }
    };
    let style = Style::detect();
    let mut stderr = io::stderr().lock();
    for d in &compilation.diagnostics {
        let _ = write!(stderr, "{}", render::render(d, &compilation.sources, style));
    }
    let tested = compilation.tests.as_mut().and_then(|t| t.plan.take());
    match (compilation.plan.take(), tested) {
        (Some(plan), _) if compilation.errors() == 0 => Ok((plan, compilation)),
        (None, Some(plan)) if failing_tests_ok => {
            let _ = writeln!(
                stderr,
                "{file}: embedded tests fail; explaining with the plan they ran against"
            );
            Ok((plan, compilation))
        }
        _ => {
            let _ = writeln!(
                stderr,
                "{file}: {}; no plan",
                render::summary(compilation.errors(), compilation.warnings())
            );
            Err(ExitCode::from(EXIT_PROBLEMS))
        }
    }
}

/// An I/O error in a few lower-case words.
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "it is a directory".to_string(),
        _ => e.to_string(),
    }
}
