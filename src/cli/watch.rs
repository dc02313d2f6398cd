//! Hot reload for `gwc serve`: reading the configuration without losing a
//! change, and the watcher that decides when to read it again and swaps the
//! new plan in.
//!
//! - [`WatchingHost`] is the compiler's host for `gwc serve`: every file the
//!   configuration reads (the root, its imports, the key, certificate and
//!   key-list files it names) is stamped *before* it is read — device, inode,
//!   length, modification and change times, symlinks followed — so an edit
//!   saved while a large configuration compiles is seen at the next look, and
//!   a Kubernetes ConfigMap update (a `..data` symlink swapped to a new
//!   folder: a new inode behind the same name) is noticed. A file that is not
//!   a regular file once symlinks are followed (a FIFO, a device, a folder) is
//!   refused by [`RealHost`] (GW0005) without blocking: it opens with
//!   `O_NONBLOCK`, since opening a FIFO otherwise waits for a writer.
//! - A read that failed (a missing import, a permission, a FIFO) is tried
//!   again every interval: the file is looked at (`stat`, then opened without
//!   blocking, never read) and the configuration is read again as soon as
//!   it looks different (a new stamp, or it opens now).
//! - A configuration that does not compile while a file it read was written
//!   less than an interval ago (a save in progress: truncated, then written
//!   in pieces) is read again at the next interval, without a refusal
//!   logged or counted, up to [`MAX_SETTLING`] times in a row; the running
//!   plan keeps serving meanwhile.
//! - `SIGHUP` always reads the configuration again.
//! - Reading and compiling run on a blocking thread, one at a time; the
//!   watcher's loop only waits for them, so signals and changes are noticed
//!   while a read is in progress (a change or `SIGHUP` then reads again once
//!   it is done). A read still running after [`STUCK_AFTER`] is given up on
//!   when the next change or `SIGHUP` comes: its thread is left behind (a
//!   blocked read cannot be cancelled), at most [`MAX_STUCK`] of them.
//!
//! The log of a reload (target `gw::reload`), each line one event, so that
//! no field trails a multi-line message: `reloaded: SUMMARY file=...`, then
//! one line per change (the summary and lines of `gwc diff`, from
//! [`gw_compiler::plan::diff`], computed on a blocking thread); or `reload
//! refused, keeping the running plan: WHY file=...`, then each diagnostic
//! as rendered by `gwc check`. At most [`MAX_LOGGED`] of either.

use crate::host::RealHost;
use crate::render::{self, Style};
use gw_compiler::host::Host;
use gw_compiler::plan::diff::{diff, Diff};
use gw_compiler::plan::Plan;
use gw_runtime::demo::Demo;
use gw_runtime::Gateway;
use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a read of the configuration may run before a change or a
/// `SIGHUP` starts another one instead of waiting for it. (A 51 MB file of
/// 2.5 M routes compiles in about 19 s.)
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

/// At most this many given-up reads are left running; past it, no read is
/// started until one of them ends.
pub const MAX_STUCK: usize = 2;

/// At most this many changes, or diagnostics, are logged at a reload, one
/// event each; a line says how many more there are (`gwc diff` and `gwc
/// check` show them all).
pub const MAX_LOGGED: usize = 50;

/// The log target of reloads.
const RELOAD: &str = "gw::reload";

/// `gwc serve app.plan.json` runs a plan written by `gwc build`.
pub fn is_built_plan(file: &str) -> bool {
    file.ends_with(".json")
}

/// Reads a built plan; refuses one of another format version.
pub fn read_built_plan(host: &dyn Host, file: &str) -> Result<Plan, String> {
    let bytes = host
        .read(file)
        .map_err(|e| format!("cannot read `{file}`: {}", super::plan::describe(&e)))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("`{file}`: not UTF-8"))?;
    Plan::from_json(&text).map_err(|e| format!("`{file}`: {e}"))
}

// ------------------------------------------------------------------ stamps

/// What identifies a version of a file, from `stat` (symlinks followed; the
/// file is never opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Device, inode, modification and change times (seconds, nanoseconds).
    identity: [i64; 6],
    len: u64,
    regular: bool,
}

pub fn stamp(path: &str) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        identity: identity(&m),
        len: m.len(),
        regular: m.is_file(),
    })
}

#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> [i64; 6] {
    use std::os::unix::fs::MetadataExt;
    [
        m.dev() as i64,
        m.ino() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ]
}

#[cfg(not(unix))]
fn identity(m: &std::fs::Metadata) -> [i64; 6] {
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    [0, 0, t.as_secs() as i64, i64::from(t.subsec_nanos()), 0, 0]
}

/// Whether a file could be read now, found without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Missing,
    /// A FIFO, a device, a socket or a folder.
    NotRegular,
    Refused(io::ErrorKind),
    /// It opens.
    Opens,
}

pub fn access(path: &str) -> Access {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Access::Missing,
        Err(e) => Access::Refused(e.kind()),
        Ok(m) if !m.is_file() => Access::NotRegular,
        Ok(_) => match open_without_blocking(path) {
            Ok(_) => Access::Opens,
            Err(e) => Access::Refused(e.kind()),
        },
    }
}

/// Opens `path` for reading; a FIFO put there since it was looked at does
/// not block the open.
fn open_without_blocking(path: &str) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

// ------------------------------------------------------------------ the host

/// The compiler's host for `gwc serve`: [`RealHost`] (which refuses a file
/// that is not regular, without blocking on a FIFO, and one over the size
/// cap), with each file stamped before it is read.
#[derive(Default)]
pub struct WatchingHost {
    reads: RefCell<Watched>,
}

impl WatchingHost {
    /// The files read, each with its stamp from before the read, and the
    /// reads that failed.
    pub fn into_watched(self) -> Watched {
        self.reads.into_inner()
    }
}

impl Host for WatchingHost {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let before = stamp(path);
        // RealHost refuses what is not a regular file (opening without blocking, so a
        // FIFO never holds the read) and what is over the size cap, as GW0005.
        let read = RealHost.read(path);
        let mut watched = self.reads.borrow_mut();
        match &read {
            Ok(_) => watched.files.push((path.to_string(), before)),
            Err(_) => watched.failed.push((path.to_string(), stamp(path), access(path))),
        }
        read
    }

    fn env(&self, name: &str) -> Option<String> {
        RealHost.env(name)
    }

    fn identity(&self, path: &str) -> Option<(u64, u64)> {
        RealHost.identity(path)
    }
}

/// The files the configuration read last time, and how to tell that it
/// should be read again.
#[derive(Clone, Debug, Default)]
pub struct Watched {
    /// Read, with the stamp taken before reading.
    files: Vec<(String, Option<Stamp>)>,
    /// Could not be read, with its stamp and what [`access`] said just after.
    failed: Vec<(String, Option<Stamp>, Access)>,
}

impl Watched {
    /// Whether a file changed since it was read, or a file that could not be
    /// read looks different now: another stamp (a permission fixed changes
    /// the change time), or another answer from [`access`] (it appeared, it
    /// opens now, it is a regular file now). A file that opened but could not
    /// be read (too large, say) is read again once it changes, not every time.
    pub fn changed(&self) -> bool {
        self.files.iter().any(|(path, seen)| stamp(path) != *seen)
            || self
                .failed
                .iter()
                .any(|(path, seen, could)| stamp(path) != *seen || access(path) != *could)
    }

    /// Whether a file it read (or failed to read) was modified less than
    /// `window` ago, by its modification time: a save may be in progress
    /// (an editor or `cp` truncates, then writes in pieces). A time in the
    /// future is not "recent".
    pub fn written_within(&self, window: Duration) -> bool {
        let now = std::time::SystemTime::now();
        let paths = self
            .files
            .iter()
            .map(|(p, _)| p)
            .chain(self.failed.iter().map(|(p, ..)| p));
        paths
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .any(|modified| now.duration_since(modified).is_ok_and(|age| age < window))
    }
}

// ------------------------------------------------------------------ one read

/// A read of the configuration: the plan to swap in (or why the running plan
/// stays), and what to watch next.
pub struct Outcome {
    pub plan: Result<Plan, Refused>,
    pub watched: Watched,
}

/// Why a configuration that was read cannot be swapped in.
#[derive(Debug, Default)]
pub struct Refused {
    /// One line: `1 error`, `cannot read ...`.
    pub why: String,
    /// Each diagnostic as `gwc check` renders it (no colour, fixed width),
    /// and whether it is an error: the first [`MAX_LOGGED`].
    pub diagnostics: Vec<(bool, String)>,
    /// How many more there are.
    pub omitted: usize,
}

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused {
            why,
            ..Refused::default()
        }
    }
}

/// Reads and compiles `root` (or reads a built plan) on the calling thread.
pub fn load(root: &str) -> Outcome {
    let host = WatchingHost::default();
    let plan = if is_built_plan(root) {
        read_built_plan(&host, root).map_err(Refused::from)
    } else {
        compile(&host, root)
    };
    Outcome {
        plan,
        watched: host.into_watched(),
    }
}

fn compile(host: &WatchingHost, root: &str) -> Result<Plan, Refused> {
    let compilation =
        gw_compiler::compile(host, root).map_err(|e| format!("cannot read `{root}`: {}", super::plan::describe(&e)))?;
    let errors = compilation.errors();
    match compilation.plan {
        Some(plan) if errors == 0 => Ok(plan),
        _ => {
            let style = Style {
                color: false,
                width: render::FIXED_WIDTH,
            };
            Err(Refused {
                why: render::summary(errors, compilation.warnings()),
                diagnostics: compilation
                    .diagnostics
                    .iter()
                    .take(MAX_LOGGED)
                    .map(|d| (d.is_error(), render::render(d, &compilation.sources, style)))
                    .collect(),
                omitted: compilation.diagnostics.len().saturating_sub(MAX_LOGGED),
            })
        }
    }
}

/// Logs a refused configuration: one line, then each diagnostic.
fn log_refused(root: &str, refused: &Refused) {
    tracing::error!(target: RELOAD, file = %root, "reload refused, keeping the running plan: {}", refused.why);
    for (error, text) in &refused.diagnostics {
        let text = text.trim_end();
        if *error {
            tracing::error!(target: RELOAD, "{text}");
        } else {
            tracing::warn!(target: RELOAD, "{text}");
        }
    }
    if refused.omitted > 0 {
        tracing::error!(target: RELOAD,
            "... and {} more diagnostics (`gwc check {root}` shows them all)", refused.omitted);
    }
}

/// Logs a reload that was swapped in: the summary, then each change.
fn log_reloaded(root: &str, diff: &Diff) {
    tracing::info!(target: RELOAD, file = %root, "reloaded: {}", diff.summary());
    for e in diff.entries.iter().take(MAX_LOGGED) {
        tracing::info!(target: RELOAD, "{}", e.line());
    }
    if diff.entries.len() > MAX_LOGGED {
        tracing::info!(target: RELOAD,
            "... and {} more changes (`gwc diff` shows them all)", diff.entries.len() - MAX_LOGGED);
    }
}

// ------------------------------------------------------------------ the watcher

/// Reads the configuration: [`load`], or a stand-in in tests.
pub type Loader = Arc<dyn Fn(&str) -> Outcome + Send + Sync>;

/// Reloads the gateway when the configuration changes or on `SIGHUP`.
pub struct Watcher {
    pub gateway: Arc<Gateway>,
    pub root: String,
    /// How often the files are looked at.
    pub every: Duration,
    /// One message per `SIGHUP`.
    pub hup: mpsc::Receiver<()>,
    pub demo: Option<Demo>,
    pub load: Loader,
    pub stuck_after: Duration,
    pub max_stuck: usize,
}

/// How many reads in a row a failing configuration that is still being
/// written is read again before its refusal is logged anyway (a file
/// rewritten without end by a broken generator is still reported).
pub const MAX_SETTLING: u32 = 3;

/// The read in progress.
struct Reading {
    task: JoinHandle<Outcome>,
    since: Instant,
    /// Whether its slowness was logged.
    said: bool,
}

impl Watcher {
    /// Watches until the task is aborted. `watched` is what the running
    /// plan's read saw.
    pub async fn run(mut self, mut watched: Watched) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Reads running now, given-up ones included.
        let running = Arc::new(AtomicUsize::new(0));
        let mut reading: Option<Reading> = None;
        // A change or `SIGHUP` came while a read was running: read again after it.
        let mut again = false;
        let mut hup_open = true;
        // Reads in a row that failed on a file still being written: the
        // next interval reads again (`retry`), without a refusal logged.
        let mut settling = 0;
        let mut retry = false;
        loop {
            let want = tokio::select! {
                done = finished(&mut reading) => {
                    reading = None;
                    let reloads = self.reloads();
                    match done {
                        Ok(outcome) => {
                            retry = self.apply(outcome, &mut watched, &mut settling).await;
                        }
                        Err(e) => tracing::error!(target: RELOAD, file = %self.root, error = %e, "reading the configuration failed; keeping the running plan"),
                    }
                    // Swapped in or refused, the gateway serves again.
                    crate::notify::ready(if self.reloads() > reloads {
                        "reloaded"
                    } else if retry {
                        "the configuration is being written; reading it again at the next interval"
                    } else {
                        "reload refused, keeping the running plan (see the log)"
                    });
                    std::mem::take(&mut again)
                }
                _ = tick.tick() => match reading.as_mut() {
                    None => watched.changed() || std::mem::take(&mut retry),
                    Some(r) => {
                        if !r.said && r.since.elapsed() >= self.stuck_after {
                            r.said = true;
                            tracing::warn!(target: RELOAD, file = %self.root, took = ?r.since.elapsed(),
                                "reading the configuration is taking long; the next change or SIGHUP starts another read");
                        }
                        false
                    }
                },
                got = self.hup.recv(), if hup_open => match got {
                    Some(()) => {
                        tracing::info!(target: RELOAD, file = %self.root, "SIGHUP: reloading");
                        true
                    }
                    None => {
                        hup_open = false;
                        false
                    }
                },
            };
            if !want {
                continue;
            }
            match reading.as_ref() {
                None => reading = Some(self.start(&running)),
                Some(r) if r.since.elapsed() >= self.stuck_after => {
                    let stuck = running.load(Ordering::SeqCst);
                    if stuck > self.max_stuck {
                        tracing::error!(target: RELOAD, file = %self.root, stuck,
                            "reads of the configuration are stuck (a file that never finishes reading?); \
                             not starting another until one ends; the running plan keeps serving");
                        again = true;
                    } else {
                        tracing::warn!(target: RELOAD, file = %self.root, took = ?r.since.elapsed(),
                            "giving up on a read of the configuration that does not finish; reading again");
                        // Dropping the handle leaves the blocked thread behind; its result is never used.
                        reading = Some(self.start(&running));
                    }
                }
                Some(_) => again = true,
            }
        }
    }

    fn start(&self, running: &Arc<AtomicUsize>) -> Reading {
        crate::notify::reloading();
        let (load, root, running) = (self.load.clone(), self.root.clone(), running.clone());
        running.fetch_add(1, Ordering::SeqCst);
        let task = tokio::task::spawn_blocking(move || {
            let outcome = load(&root);
            running.fetch_sub(1, Ordering::SeqCst);
            outcome
        });
        Reading {
            task,
            since: Instant::now(),
            said: false,
        }
    }

    /// Plans swapped in so far.
    fn reloads(&self) -> u64 {
        self.gateway.metrics().reloads.load(Ordering::Relaxed)
    }

    /// Swaps the plan in, or logs why the running plan stays. A plan that
    /// does not compile while a file it read was written less than an
    /// interval ago (or since it was read) is a save in progress, most
    /// likely: nothing is logged or counted, and `true` asks for another
    /// read at the next interval (up to [`MAX_SETTLING`] in a row).
    async fn apply(&mut self, outcome: Outcome, watched: &mut Watched, settling: &mut u32) -> bool {
        let Outcome { plan, watched: seen } = outcome;
        *watched = seen;
        let mut plan = match plan {
            Ok(plan) => plan,
            Err(_) if *settling < MAX_SETTLING && (watched.changed() || watched.written_within(self.every)) => {
                *settling += 1;
                tracing::debug!(target: RELOAD, file = %self.root, "the configuration does not compile and is being written; reading it again at the next interval");
                return true;
            }
            Err(refused) => {
                *settling = 0;
                self.gateway.count_refused_reload();
                log_refused(&self.root, &refused);
                return false;
            }
        };
        *settling = 0;
        if let Some(d) = self.demo.as_mut() {
            for b in d.start(&plan).await {
                tracing::info!(service = %b.service, address = %b.address, bound = %b.addr, "demo backend started");
            }
            d.apply(&mut plan);
        }
        // What changes, from the running plan (a large plan's diff takes a
        // while: not on this thread, which serves requests too).
        let running = self.gateway.plan();
        let compared = tokio::task::spawn_blocking(move || {
            let changes = diff(&running, &plan);
            (plan, changes)
        })
        .await;
        let Ok((plan, changes)) = compared else {
            tracing::error!(target: RELOAD, file = %self.root, "comparing the plans failed; keeping the running plan");
            return false;
        };
        match self.gateway.reload(plan).await {
            Ok(()) => log_reloaded(&self.root, &changes),
            Err(e) => {
                tracing::error!(target: RELOAD, file = %self.root, "reload refused, keeping the running plan: {e}")
            }
        }
        false
    }
}

/// The result of the read in progress; never, when there is none.
async fn finished(reading: &mut Option<Reading>) -> Result<Outcome, tokio::task::JoinError> {
    match reading {
        Some(r) => (&mut r.task).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// A fresh folder under the system's temporary folder, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "gwc-watch-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create a folder");
            Dir(path)
        }

        fn join(&self, name: &str) -> String {
            self.0.join(name).to_string_lossy().into_owned()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mtime(path: &str) -> std::time::SystemTime {
        std::fs::metadata(path).and_then(|m| m.modified()).expect("mtime")
    }

    /// Overwrites `path` in place with `text`, keeping its modification time.
    fn rewrite_keeping_mtime(path: &str, text: &str) {
        let before = mtime(path);
        std::fs::write(path, text).expect("write");
        let f = std::fs::File::options().write(true).open(path).expect("open");
        f.set_modified(before).expect("set the modification time");
        assert_eq!(mtime(path), before);
    }

    #[test]
    fn a_file_saved_again_with_the_same_length_and_mtime_is_noticed() {
        let dir = Dir::new();
        let app = dir.join("app.gw");
        std::fs::write(&app, "listen 127.0.0.1:0\n").expect("write");
        let host = WatchingHost::default();
        assert!(host.read(&app).is_ok());
        let watched = host.into_watched();
        assert!(!watched.changed(), "nothing changed yet");
        // Saved again with the same length and modification time: the change
        // time still tells.
        rewrite_keeping_mtime(&app, "listen 127.0.0.2:0\n");
        assert!(watched.changed());
    }

    #[test]
    fn a_fifo_is_refused_without_being_opened_and_watched_until_it_is_a_file() {
        let dir = Dir::new();
        let fifo = dir.join("routes.gw");
        let c = std::ffi::CString::new(fifo.clone()).expect("a path");
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        let host = WatchingHost::default();
        // Opening a FIFO for reading would block here until a writer came.
        let err = host.read(&fifo).expect_err("a FIFO is refused");
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let watched = host.into_watched();
        assert!(!watched.changed(), "still a FIFO: nothing to read again");
        std::fs::remove_file(&fifo).expect("remove");
        std::fs::write(&fifo, "route /x { respond 200 }\n").expect("write");
        assert!(watched.changed(), "a regular file now");
    }

    #[test]
    fn a_missing_file_is_watched_until_it_appears() {
        let dir = Dir::new();
        let routes = dir.join("routes.gw");
        let host = WatchingHost::default();
        assert!(host.read(&routes).is_err());
        let watched = host.into_watched();
        assert!(!watched.changed());
        std::fs::write(&routes, "").expect("write");
        assert!(watched.changed());
    }

    /// A Kubernetes ConfigMap volume: `app.gw -> ..data/app.gw`, `..data ->
    /// ..2026_12_07_01`, and an update swaps `..data` to a new folder.
    #[test]
    fn a_configmap_update_is_noticed_through_its_symlinks() {
        let dir = Dir::new();
        let text = "listen 127.0.0.1:0\n";
        for version in ["..2026_12_07_01", "..2026_12_07_02"] {
            std::fs::create_dir(dir.join(version)).expect("mkdir");
            std::fs::write(dir.join(&format!("{version}/app.gw")), text.replace("0.1", "0.2")).expect("write");
        }
        // The second version: same length and modification time as the first.
        let first = dir.join("..2026_12_07_01/app.gw");
        let second = dir.join("..2026_12_07_02/app.gw");
        std::fs::write(&first, text).expect("write");
        let f = std::fs::File::options().write(true).open(&second).expect("open");
        f.set_modified(mtime(&first)).expect("set the modification time");
        std::os::unix::fs::symlink("..2026_12_07_01", dir.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/app.gw", dir.join("app.gw")).expect("symlink");

        let app = dir.join("app.gw");
        let host = WatchingHost::default();
        assert_eq!(
            host.read(&app).expect("a symlink to a regular file is read"),
            text.as_bytes()
        );
        let watched = host.into_watched();
        assert!(!watched.changed());
        // The atomic swap: a new link renamed over `..data`.
        std::os::unix::fs::symlink("..2026_12_07_02", dir.join("..data_tmp")).expect("symlink");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("rename");
        assert!(watched.changed(), "the link's target changed");
    }

    // ------------------------------------------------------------------ the loop

    fn plan(text: &str) -> Plan {
        let host = gw_compiler::host::MemoryHost::new();
        gw_compiler::compile_text(&host, "test.gw", text).plan.expect("a plan")
    }

    async fn gateway() -> Arc<Gateway> {
        Gateway::start(plan("listen 127.0.0.1:0\n"), gw_runtime::Options::default())
            .await
            .expect("gateway starts")
    }

    /// Lets loads through one at a time, or not at all.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        changed: std::sync::Condvar,
        loads: AtomicUsize,
    }

    impl Gate {
        fn pass(&self) {
            let mut open = self.open.lock().expect("lock");
            while !*open {
                open = self.changed.wait(open).expect("lock");
            }
        }

        fn open(&self) {
            *self.open.lock().expect("lock") = true;
            self.changed.notify_all();
        }
    }

    fn watcher(gateway: &Arc<Gateway>, root: &str, load: Loader) -> (Watcher, mpsc::Sender<()>) {
        let (tx, hup) = mpsc::channel(1);
        let w = Watcher {
            gateway: gateway.clone(),
            root: root.to_string(),
            every: Duration::from_millis(20),
            hup,
            demo: None,
            load,
            stuck_after: Duration::from_millis(200),
            max_stuck: 1,
        };
        (w, tx)
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(20), "waited 20 s for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn routes(gateway: &Gateway) -> Vec<String> {
        gateway.plan().routes.iter().map(|r| r.path.clone()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edit_saved_while_the_configuration_compiles_is_loaded_after() {
        let dir = Dir::new();
        let app = dir.join("app.gw");
        let text = |route: &str| format!("listen 127.0.0.1:0\nroute {route} {{ respond 200 }}\n");
        std::fs::write(&app, text("/one")).expect("write");
        let gateway = gateway().await;
        // The real read, then a wait before compiling is done (a large file).
        let gate = Arc::new(Gate::default());
        let g = gate.clone();
        let (w, hup) = watcher(
            &gateway,
            &app,
            Arc::new(move |root| {
                let outcome = load(root);
                g.loads.fetch_add(1, Ordering::SeqCst);
                g.pass();
                outcome
            }),
        );
        let watching = tokio::spawn(w.run(Watched::default()));
        hup.send(()).await.expect("send");
        until("the first read", || gate.loads.load(Ordering::SeqCst) == 1).await;
        // Saved while the first read is still compiling.
        rewrite_keeping_mtime(&app, &text("/two"));
        gate.open();
        until("the edit to be served", || routes(&gateway) == ["/two"]).await;
        assert_eq!(gate.loads.load(Ordering::SeqCst), 2, "read once more, for the edit");
        watching.abort();
    }

    /// A save caught half-way (the file truncated, then written): the read
    /// that fails on it is tried again at the next interval, not refused;
    /// the running plan serves meanwhile. A file that stays bad is refused
    /// once it is older than an interval, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_written_file_is_read_again_not_refused() {
        let dir = Dir::new();
        let app = dir.join("app.gw");
        let text = |route: &str| format!("listen 127.0.0.1:0\nroute {route} {{ respond 200 }}\n");
        let gateway = gateway().await;
        let loads = Arc::new(AtomicUsize::new(0));
        let l = loads.clone();
        let (mut w, hup) = watcher(
            &gateway,
            &app,
            Arc::new(move |root| {
                let outcome = load(root);
                l.fetch_add(1, Ordering::SeqCst);
                outcome
            }),
        );
        // Long enough that the first read comes well within one interval
        // of the write, even on a loaded machine.
        w.every = Duration::from_millis(700);
        let failures = || gateway.metrics().reload_failures.load(Ordering::Relaxed);
        let watching = tokio::spawn(w.run(Watched::default()));
        // Half of a save: the file cut in the middle of a route.
        let full = text("/two");
        std::fs::write(&app, &full[..full.len() - 12]).expect("write");
        hup.send(()).await.expect("send");
        until("the first read", || loads.load(Ordering::SeqCst) >= 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(failures(), 0, "a save in progress is not a refused reload");
        // The rest of the save.
        std::fs::write(&app, &full).expect("write");
        until("the saved file to be served", || routes(&gateway) == ["/two"]).await;
        assert_eq!(failures(), 0);
        // A file that stays bad: refused once it has settled, and only once.
        std::fs::write(&app, "listen 127.0.0.1:0\nroute /three {").expect("write");
        until("the refusal", || failures() == 1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(failures(), 1, "no storm of refusals");
        assert_eq!(routes(&gateway), ["/two"], "the running plan keeps serving");
        watching.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_never_ends_does_not_stop_sighup_and_is_bounded() {
        let gateway = gateway().await;
        let gate = Arc::new(Gate::default());
        let g = gate.clone();
        let (w, hup) = watcher(
            &gateway,
            "app.gw",
            Arc::new(move |_| {
                let n = g.loads.fetch_add(1, Ordering::SeqCst) + 1;
                g.pass();
                Outcome {
                    plan: Err(format!("read {n}").into()),
                    watched: Watched::default(),
                }
            }),
        );
        let failures = || gateway.metrics().reload_failures.load(Ordering::Relaxed);
        let watching = tokio::spawn(w.run(Watched::default()));
        hup.send(()).await.expect("send");
        until("the first read", || gate.loads.load(Ordering::SeqCst) == 1).await;
        // A SIGHUP while it is young waits for it; once it is stuck, a SIGHUP
        // starts another read.
        tokio::time::sleep(Duration::from_millis(250)).await;
        hup.send(()).await.expect("send");
        until("a second read", || gate.loads.load(Ordering::SeqCst) == 2).await;
        // Two stuck reads and `max_stuck` 1: the next SIGHUP waits.
        tokio::time::sleep(Duration::from_millis(250)).await;
        hup.send(()).await.expect("send");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(gate.loads.load(Ordering::SeqCst), 2, "no third thread");
        assert_eq!(failures(), 0);
        // Once they end: the given-up read's result is dropped, the second is
        // used, and the waiting SIGHUP reads again.
        gate.open();
        until("a third read", || gate.loads.load(Ordering::SeqCst) == 3).await;
        until("two refusals", || failures() == 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(failures(), 2, "the given-up read is not applied");
        watching.abort();
    }
}
