//! `gwc`: check, explain, test, plan, build, route and serve `.gw`
//! configurations. The commands live in [`cli`], one file each.

mod cli;
mod host;
mod malloc;
mod render;

fn main() -> std::process::ExitCode {
    cli::run()
}
