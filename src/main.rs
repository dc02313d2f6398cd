//! `gwc`: check, explain, test, plan, build, route, format and serve `.gw`
//! configurations, and be their language server. The commands live in [`cli`], one file each.

mod cli;
mod host;
mod lsp;
mod malloc;
mod notify;
mod render;

fn main() -> std::process::ExitCode {
    cli::run()
}
