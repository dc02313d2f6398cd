//! The service manager's notify protocol (`sd_notify(3)`) for `gwc serve`:
//! with `NOTIFY_SOCKET` set (systemd's `Type=notify`), `READY=1` once every
//! listener is bound, `RELOADING=1` (with `MONOTONIC_USEC`) when a reload
//! starts and `READY=1` when it ends — swapped in or refused, the gateway
//! serves again —, `STOPPING=1` when the drain starts, a `STATUS=` line for
//! `systemctl status`, and `WATCHDOG=1` every half `WATCHDOG_USEC` while
//! every serving runtime answers (see [`spawn_watchdog`]). A gateway that
//! took over from another (`--upgrade-socket`) sends `MAINPID=` with its
//! `READY=1`, and the one it replaced says nothing more ([`hand_over`]).
//! Without `NOTIFY_SOCKET` every call does nothing.
//!
//! Written here rather than taken from the `sd-notify` crate: its 0.4 line
//! connects to `NOTIFY_SOCKET` as a path, so the abstract names (`@...`)
//! that systemd hands to services in containers and user managers reach
//! nothing; the protocol is one datagram of `KEY=VALUE` lines to a Unix
//! socket, a stable interface (systemd's PORTABILITY_AND_STABILITY), and
//! std sends to abstract names itself. The socket is opened once; a message
//! that cannot be sent is logged, never fatal (a supervisor that stopped
//! listening must not stop the gateway).

use std::sync::OnceLock;
use std::time::Duration;

/// The notify socket of this process, opened at the first message.
static SOCKET: OnceLock<Option<imp::Socket>> = OnceLock::new();

/// Set once a gateway that replaces this one has taken its sockets
/// ([`hand_over`]): from then on the new process is the service.
static HANDED_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn send(message: &str) {
    if HANDED_OVER.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let socket = SOCKET.get_or_init(|| {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        match imp::Socket::open(&value) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(socket = ?value, error = %e, "NOTIFY_SOCKET is set but cannot be used; not notifying the service manager");
                None
            }
        }
    });
    if let Some(s) = socket {
        if let Err(e) = s.send(message) {
            tracing::warn!(error = %e, "could not notify the service manager");
        }
    }
}

/// The listeners are bound: the service is up.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={}", one_line(status)));
}

/// This process took the listening sockets of the gateway it replaces
/// (`gwc serve --upgrade-socket`) and serves: it becomes the service's main
/// process (systemd accepts `MAINPID=` from it with `NotifyAccess=all`).
pub fn took_over(status: &str) {
    send(&format!(
        "MAINPID={}\nREADY=1\nSTATUS={}",
        std::process::id(),
        one_line(status)
    ));
}

/// The gateway `pid` took this one's sockets and is the service now: this
/// process says nothing more to the service manager (no `STOPPING=1`, no
/// watchdog pings) while it drains.
pub fn hand_over(pid: u32) {
    send(&format!("STATUS=handed over to pid {pid}; draining"));
    HANDED_OVER.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A reload starts (a change of the configuration or `SIGHUP`).
/// `MONOTONIC_USEC` tells systemd 253 and later which reload request this
/// answers; systemd 252 ignores it.
pub fn reloading() {
    match imp::monotonic_usec() {
        Some(usec) => send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading")),
        None => send("RELOADING=1\nSTATUS=reloading"),
    }
}

/// The drain starts: no new connections.
pub fn stopping(status: &str) {
    send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
}

/// One `STATUS=` value: a line, as the protocol separates fields by newlines.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// `WATCHDOG_USEC`, when the service manager watches this process: set to a
/// positive number, and `WATCHDOG_PID` unset or this process (as
/// `sd_watchdog_enabled(3)` reads them).
pub fn watchdog_timeout() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// With a watchdog, pings it every half `WATCHDOG_USEC` from a task on the
/// calling runtime, each time only when that runtime runs the task (a
/// wedged main thread sends nothing) and every worker runtime runs a task
/// sent to it within the same half period. So systemd restarts a gateway
/// whose threads stop serving (`Restart=on-watchdog` or `on-failure`),
/// not just one that exits.
pub fn spawn_watchdog(workers: Vec<tokio::runtime::Handle>) {
    let Some(timeout) = watchdog_timeout() else {
        return;
    };
    let every = (timeout / 2).max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut wedged = false;
        loop {
            tick.tick().await;
            match runtimes_answer(&workers, every).await {
                Ok(()) => {
                    if wedged {
                        tracing::info!("every worker thread answers again; pinging the watchdog again");
                        wedged = false;
                    }
                    send("WATCHDOG=1");
                }
                Err(worker) if !wedged => {
                    wedged = true;
                    tracing::error!(worker, within = ?every,
                        "a worker thread did not run a task in time; not pinging the watchdog");
                }
                Err(_) => {}
            }
        }
    });
}

/// Whether every runtime of `workers` runs a task within `within`; the
/// number (1-based, as the threads are named) of the first that does not.
pub async fn runtimes_answer(workers: &[tokio::runtime::Handle], within: Duration) -> Result<(), usize> {
    let deadline = tokio::time::Instant::now() + within;
    let sent: Vec<_> = workers.iter().map(|h| h.spawn(async {})).collect();
    for (i, task) in sent.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(())) => {}
            _ => return Err(i + 1),
        }
    }
    Ok(())
}

#[cfg(unix)]
mod imp {
    use std::ffi::OsStr;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::time::Duration;

    /// An unbound datagram socket and the address to send to.
    pub struct Socket {
        socket: UnixDatagram,
        to: SocketAddr,
    }

    impl Socket {
        /// `NOTIFY_SOCKET`: a path (`/run/systemd/notify`) or, on Linux, an
        /// abstract name written with a leading `@`.
        pub fn open(value: &OsStr) -> io::Result<Socket> {
            let bytes = value.as_bytes();
            let to = match bytes.first() {
                Some(b'/') => SocketAddr::from_pathname(value)?,
                Some(b'@') => abstract_name(&bytes[1..])?,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "neither a path nor an abstract name (`@...`)",
                    ))
                }
            };
            let socket = UnixDatagram::unbound()?;
            // A service manager that stops reading never blocks the gateway for long.
            socket.set_write_timeout(Some(Duration::from_secs(1)))?;
            Ok(Socket { socket, to })
        }

        pub fn send(&self, message: &str) -> io::Result<()> {
            self.socket.send_to_addr(message.as_bytes(), &self.to).map(drop)
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn abstract_name(name: &[u8]) -> io::Result<SocketAddr> {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn abstract_name(_: &[u8]) -> io::Result<SocketAddr> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "abstract socket names exist on Linux only",
        ))
    }

    /// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares with.
    pub fn monotonic_usec() -> Option<u64> {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the call's duration.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
            return None;
        }
        let secs = u64::try_from(ts.tv_sec).ok()?;
        let nanos = u64::try_from(ts.tv_nsec).ok()?;
        Some(secs * 1_000_000 + nanos / 1_000)
    }
}

#[cfg(not(unix))]
mod imp {
    use std::ffi::OsStr;
    use std::io;

    pub struct Socket;

    impl Socket {
        pub fn open(_: &OsStr) -> io::Result<Socket> {
            Err(io::Error::new(io::ErrorKind::Unsupported, "Unix sockets only"))
        }

        pub fn send(&self, _: &str) -> io::Result<()> {
            Ok(())
        }
    }

    pub fn monotonic_usec() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_one_line() {
        assert_eq!(one_line("reload refused:\nGW0101\r\n"), "reload refused: GW0101  ");
    }

    /// A worker whose thread is stuck (a blocking call on its runtime) does
    /// not run the task sent to it: the watchdog is not pinged.
    #[tokio::test]
    async fn a_wedged_worker_is_noticed() {
        let runtime = |name: &str| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let handle = rt.handle().clone();
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let wedge = name == "wedged";
            let thread = std::thread::spawn(move || {
                rt.block_on(async move {
                    if wedge {
                        // Blocks the runtime's only thread until told to stop.
                        let _ = stop_rx.recv();
                    } else {
                        tokio::task::spawn_blocking(move || stop_rx.recv()).await.ok();
                    }
                });
            });
            (handle, stop_tx, thread)
        };
        let (healthy, stop_healthy, t1) = runtime("healthy");
        let (wedged, stop_wedged, t2) = runtime("wedged");
        let within = Duration::from_millis(300);
        assert_eq!(runtimes_answer(std::slice::from_ref(&healthy), within).await, Ok(()));
        assert_eq!(
            runtimes_answer(&[healthy.clone(), wedged.clone()], within).await,
            Err(2)
        );
        let _ = stop_wedged.send(());
        let _ = stop_healthy.send(());
        t1.join().expect("join");
        t2.join().expect("join");
    }
}
