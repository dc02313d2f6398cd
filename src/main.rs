//! `gwc`: check, explain and (later) run `.gw` configurations. The commands
//! live in [`cli`], one file each.

mod cli;
mod host;
mod render;

fn main() -> std::process::ExitCode {
    cli::run()
}
