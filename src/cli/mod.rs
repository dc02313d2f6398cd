//! The `gwc` command line: one subcommand per file in this folder. Each
//! subcommand returns its [`ExitCode`]: 0 success, 1 problems found in the
//! configuration, 2 usage or I/O failure (clap exits 2 on usage errors itself);
//! `gwc diff` alone follows `diff(1)`: 1 changes, 2 trouble.
//! [`command`] is the whole definition, for `gwc completions` and `gwc man`.

mod build;
mod check;
mod completions;
mod diff;
mod explain;
mod fmt;
mod lsp;
mod man;
mod plan;
mod route;
mod serve;
mod test;
mod upgrade;
mod watch;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// Exit status when the configuration has errors.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status for a usage error or a file on the command line that cannot be read.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "gwc",
    version,
    about = "gw: a load balancer and API gateway configured by a checked language",
    long_about = "\
gw: a load balancer and API gateway configured by a checked language.

gwc checks a `.gw` configuration (every mistake at once, each with a code, its place and the fix), \
explains it (`plan`, `route`, `test`, `diff`), formats it, serves it as the gateway (`serve`), \
and is its language server (`lsp`).",
    after_long_help = "\
Exit status: 0 success; 1 the configuration has errors (or, with --deny-warnings, warnings); \
2 a usage error, a file on the command line that cannot be read, or a gateway that cannot start. \
`gwc diff` follows diff(1): 0 no changes, 1 changes, 2 trouble.

The language, the runtime and the editors are documented in docs/ (language.md, runtime.md, editors.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(check::CheckArgs),
    Explain(explain::ExplainArgs),
    Fmt(fmt::FmtArgs),
    Lsp(lsp::LspArgs),
    Test(test::TestArgs),
    Plan(plan::PlanArgs),
    Build(build::BuildArgs),
    Route(route::RouteArgs),
    Diff(diff::DiffArgs),
    Serve(serve::ServeArgs),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Lsp(args) => lsp::run(args),
        Command::Test(args) => test::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Build(args) => build::run(args),
        Command::Route(args) => route::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

/// The whole command line as clap defines it.
pub fn command() -> clap::Command {
    Cli::command()
}
