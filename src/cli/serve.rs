//! `gwc serve FILE`: compile the configuration into a plan and run the
//! gateway. The log goes to stderr (text, or one JSON object per line with
//! `--log-format json`): the addresses bound (`listening ... bound=ADDR`,
//! port 0 included), one `gw::access` line per request, reloads.
//!
//! A plan with no `listen` is refused at start (exit 1) and by a reload.
//! Hot reload ([`super::watch`]): when the file or one of its imports
//! changes (polled every `--watch-interval`), or on SIGHUP (certificate files
//! are re-read then too), recompile; a plan with errors is logged with its
//! diagnostics and the old one keeps serving, and so is one that would
//! remove every route or replace every listener, unless
//! `--allow-drastic-reload`. SIGTERM/SIGINT stop accepting and drain
//! in-flight requests for up to `--drain`, then exit 0; copies of that
//! signal within a second (a supervisor signalling the process and its
//! group) are the same stop, and a signal after that stops at once.
//!
//! Under a service manager (`NOTIFY_SOCKET`, systemd's `Type=notify`) it
//! says when it is ready, reloading and stopping, and pings the watchdog
//! ([`crate::notify`]).
//!
//! `--demo` starts demo backends on the plan's loopback server addresses
//! (moved to a free port when another program holds one, see
//! [`gw_runtime::demo`]), listens on a free port if the plan's is taken, and
//! prints curl commands to try (with a demo token for signed-in routes).

use super::plan::compile_plan_with;
use super::watch::{self, Watched, Watcher, WatchingHost};
use super::{EXIT_PROBLEMS, EXIT_USAGE};
use gw_compiler::plan::{AuthKind, JwtKey, ListenerKind, Plan, Secret};
use gw_runtime::demo::Demo;
use gw_runtime::{Gateway, Options};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Copies of one stop signal arriving within this long of the first are
/// one stop: GNU `timeout` and other supervisors signal the process and
/// then its process group, so gw gets the signal twice.
const SIGNAL_COPIES_WITHIN: Duration = Duration::from_secs(1);

/// Run the gateway from a `.gw` file or a plan built by `gwc build`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The `.gw` file (compiled with the files it imports), or a plan
    /// built by `gwc build` (a `*.json` file, served as it is).
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
    /// What is logged besides the access lines: a level (`error`, `warn`,
    /// `info`, `debug`, `trace`) for gw's own lines, or a filter in
    /// tracing-subscriber's EnvFilter syntax (`gw=debug,hyper=warn`).
    /// Default: `$GW_LOG`, else `info`.
    #[arg(long, value_name = "FILTER", value_parser = parse_log_filter)]
    log_level: Option<String>,
    /// How often to look for changes of the configuration files.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    watch_interval: Duration,
    /// Let a reload remove every route or replace every listener (refused
    /// otherwise, keeping the running plan; a restart is always allowed).
    #[arg(long)]
    allow_drastic_reload: bool,
    /// Bind the traffic listeners with SO_REUSEPORT, so that several
    /// gateways serve the same port (never the admin listener).
    #[arg(long)]
    reuse_port: bool,
    /// Upgrades without a lost connection: take the listening sockets of
    /// the gateway listening on this Unix socket (if one does), then listen
    /// here for the next one; SIGUSR2 starts that next one.
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<std::path::PathBuf>,
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
    let filter = match args.log_level.clone().or_else(|| std::env::var("GW_LOG").ok()) {
        Some(given) => match log_filter(&given) {
            Ok(filter) => filter,
            Err(e) => {
                eprintln!("error: GW_LOG: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => log_filter("info").unwrap_or_default(),
    };
    init_logging(args.log_format, filter);
    // Every file is stamped before it is read, so an edit saved during this
    // first read is seen by the watcher.
    let host = WatchingHost::default();
    let plan = if watch::is_built_plan(&args.file) {
        // A plan written by `gwc build`: its secrets are resolved now.
        match watch::read_built_plan(&host, &args.file) {
            Ok(plan) => plan,
            Err(message) => {
                eprintln!("error: {message}");
                // An unreadable file on the command line is a usage error (2);
                // a plan that is refused is a problem with the plan (1).
                let unreadable = std::fs::metadata(&args.file).is_err();
                return ExitCode::from(if unreadable { EXIT_USAGE } else { EXIT_PROBLEMS });
            }
        }
    } else {
        match compile_plan_with(&host, &args.file) {
            Ok((plan, _)) => plan,
            Err(code) => return code,
        }
    };
    let watched = host.into_watched();
    if plan.listeners.is_empty() {
        // An empty file, or one with `admin` alone: nothing would be served.
        eprintln!(
            "error: `{}` has no `listen`: a gateway without a listener serves nothing (add one, such as `listen :8080`)",
            args.file
        );
        return ExitCode::from(EXIT_PROBLEMS);
    }
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
    let code = runtime.block_on(serve(args, plan, watched, handles));
    // Connections still open after the drain are cut here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    for w in workers {
        drop(w.stop);
        let _ = w.thread.join();
    }
    gw_runtime::log::flush();
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

/// `--log-level`'s value: a filter [`log_filter`] accepts.
fn parse_log_filter(s: &str) -> Result<String, String> {
    log_filter(s).map(|_| s.to_string())
}

/// The filter of what is logged besides the access lines: a bare level is
/// gw's own lines at that level (other crates' at `warn` at most); anything
/// else is EnvFilter syntax, taken as it is. Access lines stay on either
/// way unless the filter names `gw::access` itself.
fn log_filter(given: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let given = given.trim();
    let level = given.parse::<tracing::level_filters::LevelFilter>().ok();
    let mut directives = match level {
        Some(level) if !given.is_empty() => {
            let others = level.min(tracing::level_filters::LevelFilter::WARN);
            format!("{others},gw={level}")
        }
        _ => given.to_string(),
    };
    if !directives.contains("gw::access") {
        directives.push_str(",gw::access=info");
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(directives.trim_start_matches(','))
        .map_err(|e| format!("not a log level or filter: `{given}` ({e})"))
}

/// Colour only on a terminal, and not when `NO_COLOR` is set (to anything
/// but the empty string, <https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn init_logging(format: LogFormat, filter: tracing_subscriber::EnvFilter) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(LogWriter);
    // Access lines are written by the runtime itself, as these formatters
    // would (a colour terminal keeps tracing's colours).
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let ansi = colour(terminal, std::env::var_os("NO_COLOR").as_deref());
    gw_runtime::log::set_access_format(match format {
        LogFormat::Text if ansi => gw_runtime::log::AccessFormat::Tracing,
        LogFormat::Text => gw_runtime::log::AccessFormat::Text,
        LogFormat::Json => gw_runtime::log::AccessFormat::Json,
    });
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
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
    /// `SIGUSR2`: start the gateway that replaces this one (with
    /// `--upgrade-socket`).
    #[cfg(unix)]
    usr2: Option<tokio::signal::unix::Signal>,
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
                usr2: signal(SignalKind::user_defined2()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// SIGTERM or SIGINT (Ctrl-C): which one came.
    async fn stop(&mut self) -> Stop {
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
                _ = recv(&mut self.term) => Stop::Term,
                _ = recv(&mut self.int) => Stop::Int,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Int
        }
    }
}

/// A stop signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Term,
    Int,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM",
            Stop::Int => "SIGINT",
        }
    }
}

async fn serve(args: ServeArgs, mut plan: Plan, watched: Watched, workers: Vec<tokio::runtime::Handle>) -> ExitCode {
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
    // The program file as it is now: SIGUSR2 starts it again (after a
    // package manager replaced it, the new binary).
    #[cfg(unix)]
    let program = std::env::current_exe().ok();
    #[cfg(unix)]
    let mut take_over = match &args.upgrade_socket {
        Some(path) => match super::upgrade::take_over(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => None,
    };
    #[cfg(unix)]
    let inherited = match &mut take_over {
        Some(t) => {
            tracing::info!(
                pid = t.old_pid,
                sockets = t.sockets.len(),
                "upgrade: taking over the running gateway's listening sockets"
            );
            gw_runtime::Inherited::new(std::mem::take(&mut t.sockets))
        }
        None => gw_runtime::Inherited::default(),
    };
    #[cfg(not(unix))]
    let inherited = gw_runtime::Inherited::default();
    let options = Options {
        admin_override: None,
        free_port_if_busy: args.demo,
        allow_drastic_reload: args.allow_drastic_reload,
        reuse_port: args.reuse_port,
        inherited,
    };
    let watchdog_workers = workers.clone();
    let gateway = match Gateway::start_with_workers(plan.clone(), options, workers).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Every listener is bound: a service manager may send traffic now.
    let bound = gateway.local_addrs().await;
    let status = format!("serving {} listener(s)", bound.len());
    #[cfg(unix)]
    let (handed_over, upgrade_path) = match start_upgrades(&args, take_over, &gateway, &status).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    #[cfg(not(unix))]
    crate::notify::ready(&status);
    crate::notify::spawn_watchdog(watchdog_workers);
    if args.demo {
        print_tour(&plan, &bound, gateway.admin_addr());
    }
    // SIGHUPs reach the watcher as messages, so that it notices them while
    // a read of the configuration is in progress.
    let (hup_tx, hup) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    let hups = signals.hup.take().map(|mut h| {
        tokio::spawn(async move {
            while h.recv().await.is_some() {
                // One pending message stands for any number of signals.
                let _ = hup_tx.try_send(());
            }
        })
    });
    #[cfg(not(unix))]
    drop(hup_tx);
    let watcher = Watcher {
        gateway: gateway.clone(),
        root: args.file.clone(),
        every: args.watch_interval,
        hup,
        demo,
        load: Arc::new(watch::load),
        stuck_after: watch::STUCK_AFTER,
        max_stuck: watch::MAX_STUCK,
    };
    let reload = tokio::spawn(watcher.run(watched));
    #[cfg(unix)]
    let first = {
        let program = program.as_deref();
        let stopped = wait_for_stop(&mut signals, handed_over, program, args.upgrade_socket.is_some()).await;
        // After a handover the upgrade socket is the new gateway's.
        if let (Some(_), Some(path)) = (stopped, &upgrade_path) {
            let _ = std::fs::remove_file(path);
        }
        stopped
    };
    #[cfg(not(unix))]
    let first = Some(signals.stop().await);
    let at = Instant::now();
    match first {
        Some(signal) => {
            tracing::info!(signal = signal.name(), drain = ?args.drain,
                "shutting down: no new connections; draining (another signal a second or more from now stops at once)");
            crate::notify::stopping(&format!("draining (up to {:?})", args.drain));
        }
        None => tracing::info!(drain = ?args.drain,
            "upgrade: the new gateway serves; no new connections here; draining (a signal now stops at once)"),
    }
    reload.abort();
    #[cfg(unix)]
    if let Some(h) = hups {
        h.abort();
    }
    let drained = gateway.shutdown(args.drain);
    tokio::pin!(drained);
    loop {
        tokio::select! {
            left = &mut drained => {
                if left > 0 {
                    tracing::warn!(connections = left, "drain time over; closing the connections still open");
                } else {
                    tracing::info!("drained; bye");
                }
                break;
            }
            again = signals.stop() => {
                if Some(again) == first && at.elapsed() < SIGNAL_COPIES_WITHIN {
                    // The same signal sent to the process and to its group.
                    tracing::info!(signal = again.name(), "the same signal again within a second: one stop, still draining");
                    continue;
                }
                tracing::warn!(signal = again.name(), "second signal: stopping without waiting");
                break;
            }
        }
    }
    ExitCode::SUCCESS
}

/// After the listeners are bound, with `--upgrade-socket`: finishes taking
/// over from the gateway this one replaces (which then drains), tells the
/// service manager this process serves, and listens for the next upgrade.
/// Returns what tells this gateway that its successor took over, and the
/// upgrade socket's path.
#[cfg(unix)]
async fn start_upgrades(
    args: &ServeArgs,
    take_over: Option<super::upgrade::TakeOver>,
    gateway: &Arc<Gateway>,
    status: &str,
) -> Result<(Option<tokio::sync::oneshot::Receiver<u32>>, Option<std::path::PathBuf>), String> {
    match take_over {
        Some(t) => {
            let old = t.old_pid;
            // The old gateway stops accepting once it reads this.
            if let Err(e) = t.finish() {
                tracing::warn!(error = %e, "upgrade: serving, but the old gateway did not confirm its drain");
            }
            tracing::info!(pid = old, "upgrade: serving; the old gateway drains");
            crate::notify::took_over(status);
        }
        None => crate::notify::ready(status),
    }
    let Some(path) = &args.upgrade_socket else {
        return Ok((None, None));
    };
    let listener = super::upgrade::listen(path)?;
    tracing::info!(socket = %path.display(), "listening for upgrades (SIGUSR2 starts the new gateway)");
    let (tx, rx) = tokio::sync::oneshot::channel();
    super::upgrade::serve(
        listener,
        path.clone(),
        gateway.clone(),
        tokio::runtime::Handle::current(),
        tx,
    );
    Ok((Some(rx), Some(path.clone())))
}

/// Waits for a stop signal (`Some`) or for a successor that took over the
/// listening sockets (`None`); `SIGUSR2` starts that successor.
#[cfg(unix)]
async fn wait_for_stop(
    signals: &mut Signals,
    handed_over: Option<tokio::sync::oneshot::Receiver<u32>>,
    program: Option<&std::path::Path>,
    upgrades: bool,
) -> Option<Stop> {
    let mut handed_over = handed_over;
    let mut usr2_signal = signals.usr2.take();
    loop {
        let usr2 = async {
            match &mut usr2_signal {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let over = async {
            match &mut handed_over {
                Some(rx) => rx.await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            stop = signals.stop() => return Some(stop),
            pid = over => match pid {
                Some(pid) => {
                    tracing::info!(pid, "upgrade: the new gateway took over the listening sockets");
                    return None;
                }
                // The upgrade socket's thread is gone: no more upgrades.
                None => handed_over = None,
            },
            _ = usr2 => match program {
                Some(program) if upgrades => super::upgrade::spawn_successor(program),
                _ => tracing::warn!("SIGUSR2: upgrades need `--upgrade-socket PATH`; ignored"),
            },
        }
    }
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

/// Access lines (`gw::access`) go through a buffer written out in batches
/// (at most 50 ms later, see [`gw_runtime::log`]); every other line is
/// written at once, after the buffered ones.
struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = gw_runtime::log::Writer;

    fn make_writer(&'a self) -> Self::Writer {
        gw_runtime::log::Writer::Direct
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if meta.target() == "gw::access" {
            gw_runtime::log::Writer::Buffered
        } else {
            gw_runtime::log::Writer::Direct
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(colour(true, None));
        assert!(colour(true, empty), "an empty NO_COLOR does not count");
        assert!(!colour(true, set));
        assert!(!colour(false, None));
    }

    #[test]
    fn a_bare_level_is_gw_s_lines_and_a_filter_is_taken_as_it_is() {
        // The directives, in a stable order (EnvFilter orders them by specificity).
        let shown = |f: &str| {
            let filter = log_filter(f).map(|f| f.to_string()).unwrap_or_default();
            let mut directives: Vec<&str> = filter.split(',').collect();
            directives.sort_unstable();
            directives.join(",")
        };
        assert_eq!(shown("debug"), "gw::access=info,gw=debug,warn");
        assert_eq!(shown("error"), "error,gw::access=info,gw=error");
        assert_eq!(shown("gw=trace,hyper=debug"), "gw::access=info,gw=trace,hyper=debug");
        assert_eq!(shown("gw::access=off"), "gw::access=off");
        assert!(log_filter("gw=[[").is_err());
    }
}
