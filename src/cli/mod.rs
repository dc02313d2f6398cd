//! The `gwc` command line: one subcommand per file in this folder. Each
//! subcommand returns its [`ExitCode`]: 0 success, 1 problems found in the
//! configuration, 2 usage or I/O failure (clap exits 2 on usage errors itself).

mod build;
mod check;
mod explain;
mod fmt;
mod lsp;
mod plan;
mod route;
mod serve;
mod test;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status when the configuration has errors.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status for a usage error or a file on the command line that cannot be read.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "gwc",
    version,
    about = "gw: a load balancer and API gateway configured by a checked language"
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
    Serve(serve::ServeArgs),
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
        Command::Serve(args) => serve::run(args),
    }
}
