//! `gwc serve --upgrade-socket PATH`: a binary upgrade that loses no
//! connection. The running gateway listens on the Unix socket `PATH`; a new
//! `gwc serve` started with the same option connects to it first and takes
//! the running one's listening sockets (passed with `SCM_RIGHTS`, as
//! HAProxy's seamless reload and Envoy's hot restart do), starts serving on
//! them, and says so; the old gateway then stops accepting and drains. The
//! sockets stay open throughout, so a connection waiting in a queue is
//! accepted by one process or the other, never refused or reset.
//!
//! The conversation, one line each way unless said:
//! 1. new → old: `gw-upgrade 1`
//! 2. old → new: `gw-upgrade 1 pid=N`, then one listener key per line
//!    (`http :8080`, `admin 127.0.0.1:9901`, ...), the sockets attached in
//!    that order.
//! 3. new → old, once every listener accepts: `ready pid=M`.
//! 4. old → new: `done`, after it closed its end of `PATH` and removed the
//!    file; the new gateway then listens on `PATH` for the next upgrade.
//!
//! A new gateway that fails before step 3 (its configuration does not
//! compile, it cannot bind a listener the old one did not have) exits, the
//! old one sees the connection end and keeps serving. `SIGUSR2` makes the
//! running gateway start the new one itself: its own program file (as it was
//! when it started: a package manager replaces that file) with the same
//! arguments, which under systemd keeps the new process in the service and
//! lets it become the main one (`MAINPID=`).

#[cfg(unix)]
pub use imp::*;

#[cfg(unix)]
mod imp {
    use gw_runtime::Gateway;
    use sendfd::{RecvWithFd, SendWithFd};
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    /// The first line of each side: the protocol and its version.
    const HELLO: &str = "gw-upgrade 1";
    /// How long either side waits for the other's next line, but for the
    /// new gateway's start.
    const STEP_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long the old gateway waits for the new one to serve (it compiles
    /// its configuration, loads certificates, binds what is new).
    pub const START_TIMEOUT: Duration = Duration::from_secs(60);
    /// Sockets one handover carries at most (the kernel's SCM_RIGHTS limit
    /// is 253).
    const MAX_SOCKETS: usize = 200;

    /// The running gateway's sockets, taken by the new one, and the
    /// conversation to finish once it serves.
    pub struct TakeOver {
        stream: UnixStream,
        /// The process handing over.
        pub old_pid: u32,
        pub sockets: Vec<(String, std::net::TcpListener)>,
    }

    /// Asks the gateway listening on `path` for its listening sockets:
    /// `Ok(None)` when none answers there (a first start, or a file left by
    /// a gateway that died).
    pub fn take_over(path: &Path) -> Result<Option<TakeOver>, String> {
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(format!("cannot reach the running gateway at {}: {e}", path.display())),
        };
        let fail = |e: std::io::Error| format!("upgrade through {}: {e}", path.display());
        stream.set_read_timeout(Some(STEP_TIMEOUT)).map_err(fail)?;
        stream.set_write_timeout(Some(STEP_TIMEOUT)).map_err(fail)?;
        (&stream).write_all(format!("{HELLO}\n").as_bytes()).map_err(fail)?;
        let mut bytes = vec![0u8; 64 * 1024];
        let mut fds: Vec<RawFd> = vec![-1; MAX_SOCKETS];
        let (n, count) = stream.recv_with_fd(&mut bytes, &mut fds).map_err(fail)?;
        // Owned at once, so that every one is closed whatever follows.
        let owned: Vec<OwnedFd> = fds[..count]
            .iter()
            // SAFETY: recvmsg just created these descriptors in this process;
            // nothing else owns them.
            .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        let text = String::from_utf8_lossy(&bytes[..n]).into_owned();
        let mut lines = text.lines();
        let old_pid = lines
            .next()
            .and_then(|l| l.strip_prefix(HELLO))
            .and_then(|l| l.trim().strip_prefix("pid="))
            .and_then(|p| p.parse::<u32>().ok())
            .ok_or_else(|| {
                format!(
                    "upgrade through {}: the running gateway answered something else",
                    path.display()
                )
            })?;
        let keys: Vec<String> = lines.map(str::to_string).collect();
        if keys.len() != owned.len() {
            return Err(format!(
                "upgrade through {}: {} listeners named but {} sockets received",
                path.display(),
                keys.len(),
                owned.len()
            ));
        }
        let sockets = keys
            .into_iter()
            .zip(owned)
            .map(|(k, fd)| (k, std::net::TcpListener::from(fd)))
            .collect();
        Ok(Some(TakeOver {
            stream,
            old_pid,
            sockets,
        }))
    }

    impl TakeOver {
        /// Tells the old gateway that this one serves, and waits until it
        /// has let go of `path`.
        pub fn finish(self) -> Result<(), String> {
            let fail = |e: std::io::Error| format!("upgrade: {e}");
            (&self.stream)
                .write_all(format!("ready pid={}\n", std::process::id()).as_bytes())
                .map_err(fail)?;
            let mut line = String::new();
            BufReader::new(&self.stream).read_line(&mut line).map_err(fail)?;
            if line.trim() == "done" {
                Ok(())
            } else {
                Err("upgrade: the old gateway did not confirm; it may still hold the upgrade socket".into())
            }
        }
    }

    /// Listens on `path` for a gateway that replaces this one. A file left
    /// there by a gateway that is gone is replaced; one where a gateway
    /// answers is an error.
    pub fn listen(path: &Path) -> Result<UnixListener, String> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "another gateway listens on the upgrade socket {}",
                    path.display()
                ));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on the upgrade socket {}: {e}", path.display()))?;
        // Whoever can connect can take the listening sockets: the owner only.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        Ok(listener)
    }

    /// Answers upgrade requests on `listener` (a thread of its own), one at
    /// a time, until one succeeds: then the file `path` is removed, and
    /// `handed_over` gets the new gateway's process id. The service manager
    /// hears nothing more from this process (the new one is the service now).
    pub fn serve(
        listener: UnixListener,
        path: PathBuf,
        gateway: Arc<Gateway>,
        runtime: tokio::runtime::Handle,
        handed_over: tokio::sync::oneshot::Sender<u32>,
    ) {
        let spawned = std::thread::Builder::new().name("gw-upgrade".into()).spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                match hand_over(&conn, &gateway, &runtime) {
                    Ok(pid) => {
                        drop(listener);
                        let _ = std::fs::remove_file(&path);
                        crate::notify::hand_over(pid);
                        let _ = (&conn).write_all(b"done\n");
                        let _ = handed_over.send(pid);
                        return;
                    }
                    Err(why) => tracing::warn!(reason = %why, "upgrade abandoned; this gateway keeps serving"),
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot answer upgrade requests");
        }
    }

    /// One upgrade conversation, up to the new gateway's `ready`.
    fn hand_over(conn: &UnixStream, gateway: &Gateway, runtime: &tokio::runtime::Handle) -> Result<u32, String> {
        let fail = |e: std::io::Error| e.to_string();
        conn.set_read_timeout(Some(STEP_TIMEOUT)).map_err(fail)?;
        conn.set_write_timeout(Some(STEP_TIMEOUT)).map_err(fail)?;
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(fail)?;
        if line.trim() != HELLO {
            let _ = (&*conn).write_all(b"error: unknown request\n");
            return Err("not an upgrade request".into());
        }
        let sockets = runtime.block_on(gateway.listening_sockets());
        let sockets = &sockets[..sockets.len().min(MAX_SOCKETS)];
        let mut message = format!("{HELLO} pid={}\n", std::process::id());
        for (key, _) in sockets {
            message.push_str(key);
            message.push('\n');
        }
        let fds: Vec<RawFd> = sockets.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        conn.send_with_fd(message.as_bytes(), &fds).map_err(fail)?;
        tracing::info!(
            sockets = fds.len(),
            "upgrade: listening sockets handed over; waiting for the new gateway to serve"
        );
        conn.set_read_timeout(Some(START_TIMEOUT)).map_err(fail)?;
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => Err("the new gateway stopped before serving (its log says why)".into()),
            Ok(_) => line
                .trim()
                .strip_prefix("ready pid=")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| "the new gateway answered something else".into()),
            Err(e) => Err(format!("the new gateway did not serve within {START_TIMEOUT:?}: {e}")),
        }
    }

    /// `SIGUSR2`: starts this program again with the same arguments; it
    /// takes the listening sockets through the upgrade socket. A process
    /// that ends before taking over is reported in the log.
    pub fn spawn_successor(program: &Path) {
        let mut command = std::process::Command::new(program);
        command
            .args(std::env::args_os().skip(1))
            .stdin(std::process::Stdio::null());
        // The watchdog is the new process's once it is the main one.
        command.env_remove("WATCHDOG_PID");
        match command.spawn() {
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(pid, program = %program.display(), "upgrade: new gateway started");
                let _ = std::thread::Builder::new().name("gw-successor".into()).spawn(move || {
                    if let Ok(status) = child.wait() {
                        tracing::warn!(pid, %status, "upgrade: the new gateway exited");
                    }
                });
            }
            Err(e) => {
                tracing::error!(program = %program.display(), error = %e, "upgrade: cannot start the new gateway")
            }
        }
    }
}
