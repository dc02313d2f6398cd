//! `gwc`: check, explain, test, plan, build, route and serve `.gw`
//! configurations. The commands live in [`cli`], one file each.

mod cli;
mod host;
mod render;

/// mimalloc: fewer cycles per allocation than glibc's malloc on the proxy
/// path (measured in bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
