//! `gwc serve FILE`: compile the configuration into a plan and run the
//! gateway. The log goes to stderr (text, or one JSON object per line with
//! `--log-format json`): the addresses bound (`listening ... bound=ADDR`,
//! port 0 included), one `gw::access` line per request, reloads.
//!
//! Hot reload: when the file or one of its imports changes (polled every
//! `--watch-interval`), or on SIGHUP (certificate files are re-read then too),
//! recompile; a plan with errors is logged with its diagnostics and the old
//! one keeps serving. SIGTERM/SIGINT stop accepting and drain in-flight
//! requests for up to `--drain`, then exit 0; a second signal stops at once.
//!
//! `--demo` starts demo backends on the plan's loopback server addresses
//! (moved to a free port when another program holds one, see
//! [`gw_runtime::demo`]), listens on a free port if the plan's is taken, and
//! prints curl commands to try (with a demo token for signed-in routes).

use super::plan::compile_plan;
use super::EXIT_USAGE;
use crate::host::RealHost;
use crate::render::{self, Style};
use gw_compiler::plan::{AuthKind, JwtKey, ListenerKind, Plan, Secret};
use gw_runtime::demo::Demo;
use gw_runtime::{Gateway, Options};
use std::io::Write as _;
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
    /// Threads serving requests, one runtime each (default: one per core).
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
    let (plan, files) = if is_built_plan(&args.file) {
        // A plan written by `gwc build`: its secrets are resolved now.
        match read_built_plan(&args.file) {
            Ok(plan) => (plan, vec![PathBuf::from(&args.file)]),
            Err(message) => {
                eprintln!("error: {message}");
                // An unreadable file on the command line is a usage error (2);
                // a plan that is refused is a problem with the plan (1).
                let unreadable = std::fs::metadata(&args.file).is_err();
                return ExitCode::from(if unreadable { EXIT_USAGE } else { super::EXIT_PROBLEMS });
            }
        }
    } else {
        match compile_plan(&args.file) {
            Ok((plan, compilation)) => (plan, source_files(&compilation)),
            Err(code) => return code,
        }
    };
    // One thread per core, nothing shared between them but the plan and the
    // counters: this thread and `threads - 1` workers each run a
    // current-thread runtime (no work stealing, no wakeups across threads)
    // and serve the connections they accept.
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    gw_runtime::upstream::set_workers(threads);
    crate::malloc::tune();
    let started = current_thread_runtime().and_then(|main| Ok((main, start_workers(threads - 1)?)));
    let (runtime, workers) = match started {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let handles = workers.iter().map(|w| w.handle.clone()).collect();
    let code = runtime.block_on(serve(args, plan, files, handles));
    // Connections still open after the drain are cut here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    for w in workers {
        drop(w.stop);
        let _ = w.thread.join();
    }
    gw_runtime::logbuf::flush();
    code
}

fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// A worker thread: its runtime's handle, and what stops it.
struct Worker {
    handle: tokio::runtime::Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start_workers(n: usize) -> std::io::Result<Vec<Worker>> {
    let mut workers = Vec::with_capacity(n);
    for i in 1..=n {
        let runtime = current_thread_runtime()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("gw-worker-{i}"))
            .spawn(move || {
                gw_runtime::upstream::set_worker_index(i);
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        workers.push(Worker { handle, stop, thread });
    }
    Ok(workers)
}

/// `gwc serve app.plan.json` runs a plan written by `gwc build`.
fn is_built_plan(file: &str) -> bool {
    file.ends_with(".json")
}

/// Reads a built plan; refuses one of another format version.
fn read_built_plan(file: &str) -> Result<gw_compiler::plan::Plan, String> {
    // Bounded like every file gw reads (a regular file, at most 64 MiB).
    let bytes = gw_compiler::host::Host::read(&RealHost, file)
        .map_err(|e| format!("cannot read `{file}`: {}", super::plan::describe(&e)))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("`{file}`: not UTF-8"))?;
    gw_compiler::plan::Plan::from_json(&text).map_err(|e| format!("`{file}`: {e}"))
}

/// A plan to swap in and the files to watch for the next change.
type Reloadable = (gw_compiler::plan::Plan, Vec<PathBuf>);
/// Why the running plan stays (rendered diagnostics), and the files to
/// watch when they are known.
type Refused = (String, Option<Vec<PathBuf>>);

/// The plan to reload and the files to watch, or why the running plan stays.
fn load_for_reload(root: &str) -> Result<Reloadable, Refused> {
    if is_built_plan(root) {
        return read_built_plan(root)
            .map(|p| (p, vec![PathBuf::from(root)]))
            .map_err(|e| (e, None));
    }
    let compilation = gw_compiler::compile(&RealHost, root)
        .map_err(|e| (format!("cannot read `{root}`: {}", super::plan::describe(&e)), None))?;
    let files = source_files(&compilation);
    let errors = compilation.errors();
    match compilation.plan {
        Some(plan) if errors == 0 => Ok((plan, files)),
        _ => {
            let style = Style {
                color: false,
                width: render::FIXED_WIDTH,
            };
            let mut text = String::new();
            for d in &compilation.diagnostics {
                text.push_str(&render::render(d, &compilation.sources, style));
            }
            let summary = render::summary(errors, compilation.warnings());
            Err((format!("{summary}\n{text}"), Some(files)))
        }
    }
}

fn source_files(compilation: &gw_compiler::Compilation) -> Vec<PathBuf> {
    compilation
        .sources
        .files()
        .map(|(_, f)| PathBuf::from(&f.name))
        .collect()
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(LogWriter);
    // Access lines are written by the runtime itself, as these formatters
    // would (a terminal keeps tracing's colours).
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    gw_runtime::logbuf::set_access_format(match format {
        LogFormat::Text if terminal => gw_runtime::logbuf::AccessFormat::Tracing,
        LogFormat::Text => gw_runtime::logbuf::AccessFormat::Text,
        LogFormat::Json => gw_runtime::logbuf::AccessFormat::Json,
    });
    let _ = match format {
        LogFormat::Text => builder.with_ansi(terminal).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The signals `gwc serve` acts on, registered before anything listens so
/// that none arrives unhandled.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
                hup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// SIGTERM or SIGINT (Ctrl-C).
    async fn stop(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.term) => {}
                _ = recv(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn serve(args: ServeArgs, mut plan: Plan, files: Vec<PathBuf>, workers: Vec<tokio::runtime::Handle>) -> ExitCode {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut signals = Signals::register();
    let mut demo = None;
    if args.demo {
        let mut d = Demo::new();
        let started = d.start(&plan).await;
        for b in &started {
            tracing::info!(service = %b.service, address = %b.address, bound = %b.addr, "demo backend started");
        }
        d.apply(&mut plan);
        demo = Some(d);
    }
    let options = Options {
        admin_override: None,
        free_port_if_busy: args.demo,
    };
    let gateway = match Gateway::start_with_workers(plan.clone(), options, workers).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.demo {
        print_tour(&plan, &gateway.local_addrs().await, gateway.admin_addr());
    }
    #[cfg(unix)]
    let hup = signals.hup.take();
    #[cfg(not(unix))]
    let hup = ();
    let reload = tokio::spawn(watch(
        gateway.clone(),
        args.file.clone(),
        files,
        args.watch_interval,
        hup,
        demo,
    ));
    signals.stop().await;
    tracing::info!(drain = ?args.drain, "shutting down: no new connections; draining (a second signal stops at once)");
    reload.abort();
    tokio::select! {
        left = gateway.shutdown(args.drain) => {
            if left > 0 {
                tracing::warn!(connections = left, "drain time over; closing the connections still open");
            } else {
                tracing::info!("drained; bye");
            }
        }
        _ = signals.stop() => tracing::warn!("second signal: stopping without waiting"),
    }
    ExitCode::SUCCESS
}

/// A few requests to try against the demo, on standard output: public
/// routes first, then signed-in ones with a demo token when the plan's
/// RS256 key file has the demo private key (`demo-private.pem`) beside it.
fn print_tour(plan: &Plan, addrs: &[std::net::SocketAddr], admin: Option<std::net::SocketAddr>) {
    let Some(http) = plan
        .listeners
        .iter()
        .zip(addrs)
        .find(|(l, _)| matches!(l.kind, ListenerKind::Http))
        .map(|(_, a)| *a)
    else {
        return;
    };
    let gets = |r: &&gw_compiler::plan::Route| {
        r.host.is_none() && r.methods.is_none_or(|m| m.contains(gw_compiler::ast::Method::Get))
    };
    let mut lines = vec![String::from("\nThe demo gateway is up. Try:")];
    for r in plan.routes.iter().filter(gets).filter(|r| r.auth.is_none()).take(5) {
        lines.push(format!("  curl -i http://{http}{}", example_path(&r.path)));
    }
    if let Some(token) = demo_token(plan) {
        let signed_in: Vec<_> = plan
            .routes
            .iter()
            .filter(gets)
            .filter(|r| r.auth.is_some())
            .take(4)
            .collect();
        if !signed_in.is_empty() {
            lines.push("Signed in, with a demo token (valid 24h, signed by the public demo key):".into());
            lines.push(format!("  TOKEN={token}"));
            for r in signed_in {
                lines.push(format!(
                    "  curl -i -H \"authorization: Bearer $TOKEN\" http://{http}{}",
                    example_path(&r.path)
                ));
            }
        }
    }
    if let Some(a) = admin {
        lines.push(format!("  curl http://{a}/metrics"));
    }
    lines.push("Edit the .gw file and save: the gateway reloads it. Ctrl-C stops it.\n".into());
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", lines.join("\n"));
    let _ = stdout.flush();
}

/// A request path for a route pattern: `{id}` → `42`, `{*rest}` → `demo`.
fn example_path(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|s| match s {
            s if s.starts_with("{*") => "demo",
            s if s.starts_with('{') => "42",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A token for the plan's first RS256 `jwt` auth, signed with the
/// `demo-private.pem` that sits beside its key file (the examples' public
/// demo key); `None` when there is no such file.
fn demo_token(plan: &Plan) -> Option<String> {
    let key_file = plan.auths.iter().find_map(|a| match &a.kind {
        AuthKind::Jwt(j) if j.algorithms.contains(&gw_compiler::ast::Algorithm::RS256) => match &j.key {
            JwtKey::JwksFile(Secret::File(p)) | JwtKey::PublicKey(Secret::File(p)) => Some(p),
            _ => None,
        },
        _ => None,
    })?;
    let pem = std::fs::read(std::path::Path::new(key_file).with_file_name("demo-private.pem")).ok()?;
    gw_runtime::policy::demo_token::demo_token(plan, &pem, Duration::from_secs(24 * 3600)).ok()
}

/// What identifies a version of a file: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

/// Recompiles on SIGHUP or when a configuration file changes; swaps the
/// plan in on success, logs the diagnostics and keeps the old plan otherwise.
async fn watch(
    gateway: Arc<Gateway>,
    root: String,
    mut files: Vec<PathBuf>,
    every: Duration,
    #[cfg_attr(not(unix), allow(unused_variables, unused_mut))] mut hup: Hangup,
    mut demo: Option<Demo>,
) {
    let mut seen = stamps(&files);
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
        let now = stamps(&files);
        if !by_signal && now == seen {
            continue;
        }
        seen = now;
        if by_signal {
            tracing::info!(file = %root, "SIGHUP: reloading");
        }
        let reload_root = root.clone();
        let loaded = match tokio::task::spawn_blocking(move || load_for_reload(&reload_root)).await {
            Ok(l) => l,
            Err(_) => continue,
        };
        match loaded {
            Ok((mut plan, new_files)) => {
                // Watch the files of the new compilation (imports may have changed).
                files = new_files;
                seen = stamps(&files);
                if let Some(d) = demo.as_mut() {
                    for b in d.start(&plan).await {
                        tracing::info!(service = %b.service, address = %b.address, bound = %b.addr, "demo backend started");
                    }
                    d.apply(&mut plan);
                }
                match gateway.reload(plan).await {
                    Ok(()) => tracing::info!(file = %root, "reloaded"),
                    Err(e) => tracing::error!(file = %root, error = %e, "reload failed; keeping the running plan"),
                }
            }
            Err((why, new_files)) => {
                if let Some(f) = new_files {
                    files = f;
                    seen = stamps(&files);
                }
                gateway
                    .shared()
                    .metrics
                    .reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(file = %root, "reload refused, keeping the running plan: {why}");
            }
        }
    }
}

/// Access lines (`gw::access`) go through a buffer written out in batches
/// (at most 50 ms later, see [`gw_runtime::logbuf`]); every other line is
/// written at once, after the buffered ones.
struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = gw_runtime::logbuf::Writer;

    fn make_writer(&'a self) -> Self::Writer {
        gw_runtime::logbuf::Writer::Direct
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if meta.target() == "gw::access" {
            gw_runtime::logbuf::Writer::Buffered
        } else {
            gw_runtime::logbuf::Writer::Direct
        }
    }
}
