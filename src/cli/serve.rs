//! `gwc serve FILE`: compile the configuration into a plan and run the
//! gateway. Hot reload: when the file or one of its imports changes, or on
//! SIGHUP, recompile; a plan with errors is logged and the old one keeps
//! serving. SIGTERM/SIGINT stop accepting and drain in-flight requests
//! (`--drain`). `--demo` starts demo backends on the plan's free loopback
//! server addresses first.

use super::plan::compile_plan;
use super::EXIT_USAGE;
use crate::host::RealHost;
use crate::render::{self, Style};
use gw_runtime::{Gateway, Options};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Run the gateway.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The `.gw` file (compiled with the files it imports).
    #[arg(value_name = "FILE")]
    file: String,
    /// Start demo backends on every loopback server address of the plan
    /// where nothing listens yet.
    #[arg(long)]
    demo: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// How long to let in-flight requests finish on shutdown, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain: Duration,
    /// Access-log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How often to look for changes of the configuration files.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    watch_interval: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as `30s`, found `{s}`"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("expected a duration such as `30s`, found `{s}`")),
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    let (plan, compilation) = match compile_plan(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let files: Vec<PathBuf> = compilation
        .sources
        .files()
        .map(|(_, f)| PathBuf::from(&f.name))
        .collect();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    runtime.block_on(serve(args, plan, files))
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn serve(args: ServeArgs, plan: gw_compiler::plan::Plan, files: Vec<PathBuf>) -> ExitCode {
    if args.demo {
        let backends = gw_runtime::demo::start(&plan).await;
        for b in &backends {
            tracing::info!(service = %b.service, address = %b.addr, "demo backend started");
        }
    }
    let gateway = match Gateway::start(plan.clone(), Options::default()).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let addrs = gateway.local_addrs().await;
    for (l, a) in plan.listeners.iter().zip(&addrs) {
        tracing::info!(listen = %l.address, bound = %a, "listening");
    }
    if let Some(a) = gateway.admin_addr() {
        tracing::info!(bound = %a, "admin listening (/healthz, /metrics, /plan)");
    }
    if args.demo {
        print_tour(&plan, &addrs, gateway.admin_addr());
    }
    let reload = tokio::spawn(watch(gateway.clone(), args.file.clone(), files, args.watch_interval));
    wait_for_shutdown().await;
    tracing::info!(drain = ?args.drain, "shutting down: no new connections; draining");
    reload.abort();
    gateway.shutdown(args.drain).await;
    ExitCode::SUCCESS
}

/// A few requests to try against the demo.
fn print_tour(plan: &gw_compiler::plan::Plan, addrs: &[std::net::SocketAddr], admin: Option<std::net::SocketAddr>) {
    let Some(http) = plan
        .listeners
        .iter()
        .zip(addrs)
        .find(|(l, _)| matches!(l.kind, gw_compiler::plan::ListenerKind::Http))
        .map(|(_, a)| *a)
    else {
        return;
    };
    let mut lines = vec![String::from("\nThe demo gateway is up. Try:")];
    let mut shown = 0;
    for r in &plan.routes {
        if shown == 5 {
            break;
        }
        let public = r.auth.is_none() && r.host.is_none();
        let gets = r.methods.is_none_or(|m| m.contains(gw_compiler::ast::Method::Get));
        if !public || !gets {
            continue;
        }
        let path: String = r
            .path
            .split('/')
            .map(|s| match s {
                s if s.starts_with("{*") => "demo",
                s if s.starts_with('{') => "42",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        lines.push(format!("  curl -i http://{http}{path}"));
        shown += 1;
    }
    if let Some(a) = admin {
        lines.push(format!("  curl http://{a}/metrics"));
    }
    lines.push("Edit the .gw file and save: the gateway reloads it. Ctrl-C stops it.\n".into());
    eprintln!("{}", lines.join("\n"));
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// Recompiles on SIGHUP or when a configuration file changes; swaps the
/// plan in on success, logs the diagnostics and keeps the old plan otherwise.
async fn watch(gateway: Arc<Gateway>, root: String, mut files: Vec<PathBuf>, every: Duration) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = mtimes(&files);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = signalled => true,
        };
        let now = mtimes(&files);
        if !by_signal && now == seen {
            continue;
        }
        seen = now;
        let compilation = match gw_compiler::compile(&RealHost, &root) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(file = %root, error = %e, "reload: cannot read the configuration; keeping the running plan");
                continue;
            }
        };
        // Watch the files of the new compilation (imports may have changed).
        files = compilation
            .sources
            .files()
            .map(|(_, f)| PathBuf::from(&f.name))
            .collect();
        seen = mtimes(&files);
        let errors = compilation.errors();
        match compilation.plan {
            Some(plan) if errors == 0 => match gateway.reload(plan).await {
                Ok(()) => tracing::info!(file = %root, "reloaded"),
                Err(e) => tracing::error!(file = %root, error = %e, "reload failed; keeping the running plan"),
            },
            _ => {
                gateway
                    .shared()
                    .metrics
                    .reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut text = String::new();
                for d in &compilation.diagnostics {
                    text.push_str(&render::render(
                        d,
                        &compilation.sources,
                        Style {
                            color: false,
                            width: render::FIXED_WIDTH,
                        },
                    ));
                }
                tracing::error!(
                    file = %root,
                    "reload refused ({}); keeping the running plan\n{text}",
                    render::summary(errors, compilation.warnings())
                );
            }
        }
    }
}
