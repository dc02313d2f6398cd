//! `gwc serve` under a service manager's notify protocol (systemd's
//! `Type=notify`): the test listens on the Unix datagram socket it names in
//! `NOTIFY_SOCKET` — a path, or an abstract name `@...` — and reads what the
//! real `gwc serve` sends: `READY=1` only once its listener accepts,
//! `RELOADING=1` (with a `MONOTONIC_USEC` read during the reload) then
//! `READY=1` around a reload that is swapped in and around one that is
//! refused, `WATCHDOG=1` about every half `WATCHDOG_USEC`, and `STOPPING=1`
//! on `SIGTERM`.

use crate::live::{get, Upstream};
use crate::serve_harness::{dead_addr, Served};
use crate::support::TempDir;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// The service manager's end: every datagram received, with when.
struct Manager {
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    _dir: Option<TempDir>,
}

impl Manager {
    fn listen(socket: UnixDatagram, dir: Option<TempDir>) -> Manager {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let got = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::downgrade(&got);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Until the test drops its end.
            while let Some(got) = into.upgrade() {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    got.lock().expect("lock").push((Instant::now(), text));
                }
            }
        });
        Manager { got, _dir: dir }
    }

    /// A socket at a path in a temporary folder; the path.
    fn at_path() -> (Manager, String) {
        let dir = TempDir::new();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        (Manager::listen(socket, Some(dir)), path.to_string_lossy().into_owned())
    }

    /// A socket with an abstract name; `@name`.
    fn abstract_name() -> (Manager, String) {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("gw-notify-test-{}-{:?}", std::process::id(), Instant::now());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract socket");
        (Manager::listen(socket, None), format!("@{name}"))
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits for a message after the first `from` that has `field` among its
    /// lines; its index and text.
    async fn next(&self, from: usize, field: &str, served: &Served) -> (usize, String) {
        let start = Instant::now();
        loop {
            let found = self
                .messages()
                .into_iter()
                .enumerate()
                .skip(from)
                .find(|(_, (_, m))| m.lines().any(|l| l == field));
            if let Some((i, (_, m))) = found {
                return (i, m);
            }
            assert!(
                start.elapsed() < WAIT,
                "no `{field}` after message {from} within {WAIT:?}; got {:?}\n{}",
                self.messages(),
                served.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd reads it.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn field<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tells_the_service_manager_ready_reloading_stopping_and_pings_its_watchdog() {
    let up = Upstream::named("a").await;
    // A port that was free a moment ago, written in the file, so that the
    // test can connect the moment READY=1 comes without reading the log.
    let addr = dead_addr();
    let app = |extra: &str| {
        format!(
            "listen {addr}\nupstream a {{ server {} }}\nroute GET /a -> a\n{extra}\n",
            up.addr
        )
    };
    let (manager, socket) = Manager::at_path();
    // Pings every 300 ms.
    let watchdog = Duration::from_millis(600);
    let served = Served::start_with_env(
        &[("app.gw", &app(""))],
        &["app.gw", "--watch-interval", "50ms"],
        &[
            ("NOTIFY_SOCKET", &socket),
            ("WATCHDOG_USEC", &watchdog.as_micros().to_string()),
        ],
    );

    // READY=1 only once the listener accepts.
    let (ready, message) = manager.next(0, "READY=1", &served).await;
    let connected = std::net::TcpStream::connect(addr);
    assert!(connected.is_ok(), "READY=1 came before {addr} accepted: {connected:?}");
    // Closed, so that the drain at the end has nothing to wait for.
    drop(connected);
    assert_eq!(ready, 0, "READY=1 is the first message: {:?}", manager.messages());
    assert!(
        field(&message, "STATUS").is_some_and(|s| s.contains("serving 1 listener")),
        "{message}"
    );
    assert_eq!(get(&format!("http://{addr}/a")).await.status, 200);

    // The watchdog: four pings, never faster than the cadence allows (a ping
    // is sent at most one half-period late, never early). Bounded, not timed.
    let mut at = ready;
    let mut pings = Vec::new();
    while pings.len() < 4 {
        let (i, _) = manager.next(at + 1, "WATCHDOG=1", &served).await;
        pings.push(manager.messages()[i].0);
        at = i;
    }
    let span = pings[3] - pings[0];
    assert!(
        span >= watchdog,
        "4 pings in {span:?}: faster than every {:?}",
        watchdog / 2
    );

    // A reload that is swapped in: RELOADING=1 with the monotonic clock of
    // its start, then READY=1 once the new plan serves.
    let before = monotonic_usec();
    let from = manager.messages().len();
    served.write("app.gw", &app("route GET /b { respond 204 }"));
    let (reloading, message) = manager.next(from, "RELOADING=1", &served).await;
    let usec: u64 = field(&message, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {message:?}"));
    let (_, message) = manager.next(reloading + 1, "READY=1", &served).await;
    let after = monotonic_usec();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec}, not in {before}..={after}"
    );
    assert_eq!(field(&message, "STATUS"), Some("reloaded"), "{message}");
    assert_eq!(
        get(&format!("http://{addr}/b")).await.status,
        204,
        "READY=1 before the new plan served"
    );

    // A reload that is refused (an unknown upstream): READY=1 all the same,
    // the running plan serving, and the status says so.
    let from = manager.messages().len();
    served.write("app.gw", &app("route GET /c -> nowhere"));
    let (reloading, _) = manager.next(from, "RELOADING=1", &served).await;
    let (mut at, mut message) = manager.next(reloading + 1, "READY=1", &served).await;
    // Just written, the file is first taken for a save caught half-way and
    // read again at the next interval (at most 3 times): the status says so.
    while field(&message, "STATUS").is_some_and(|s| s.starts_with("the configuration is being written")) {
        (at, message) = manager.next(at + 1, "READY=1", &served).await;
    }
    assert!(
        field(&message, "STATUS").is_some_and(|s| s.starts_with("reload refused")),
        "{message}\n{}",
        served.output()
    );
    assert_eq!(
        get(&format!("http://{addr}/b")).await.status,
        204,
        "the running plan serves"
    );

    // SIGTERM: STOPPING=1, then the drain and exit 0.
    let from = manager.messages().len();
    served.signal("TERM");
    let (stopping, message) = manager.next(from, "STOPPING=1", &served).await;
    assert!(
        field(&message, "STATUS").is_some_and(|s| s.starts_with("draining")),
        "{message}"
    );
    assert_eq!(served.wait_exit(WAIT).await, Some(0), "{}", served.output());
    let late: Vec<_> = manager.messages()[stopping..]
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .map(|(_, m)| m.clone())
        .collect();
    assert!(late.is_empty(), "READY=1 after STOPPING=1: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abstract_notify_socket_is_reached_and_no_watchdog_means_no_ping() {
    let (manager, socket) = Manager::abstract_name();
    let served = Served::start_with_env(
        &[("app.gw", "listen 127.0.0.1:0\nroute GET /a { respond 200 }\n")],
        &["app.gw"],
        &[("NOTIFY_SOCKET", &socket)],
    );
    let (ready, _) = manager.next(0, "READY=1", &served).await;
    assert_eq!(ready, 0);
    // Without WATCHDOG_USEC, no pings: a reload (SIGHUP) round trip later, none came.
    served.signal("HUP");
    let (reloading, _) = manager.next(ready + 1, "RELOADING=1", &served).await;
    manager.next(reloading + 1, "READY=1", &served).await;
    let pings = manager
        .messages()
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .count();
    assert_eq!(pings, 0, "{:?}", manager.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_takes_over_becomes_the_main_process_and_the_old_one_goes_silent() {
    let (manager, socket) = Manager::at_path();
    let sockets = TempDir::new();
    let upgrade = sockets.path().join("gw.sock");
    let upgrade = upgrade.to_str().expect("a UTF-8 path");
    let app = [("app.gw", "listen 127.0.0.1:0\nroute GET /a { respond 200 \"a\" }\n")];
    let args = ["app.gw", "--upgrade-socket", upgrade];
    let env = [("NOTIFY_SOCKET", socket.as_str()), ("WATCHDOG_USEC", "400000")];
    let old = Served::start_with_env(&app, &args, &env);
    let (first, _) = manager.next(0, "READY=1", &old).await;
    manager.next(first, "WATCHDOG=1", &old).await;
    let new = Served::start_with_env(&app, &args, &env);
    let (took, message) = manager.next(first + 1, "READY=1", &new).await;
    assert_eq!(
        field(&message, "MAINPID"),
        Some(new.pid().to_string().as_str()),
        "{message}"
    );
    assert_eq!(old.wait_exit(WAIT).await, Some(0), "{}", old.output());
    let after = manager.messages().len();
    // The new one pings its watchdog (WATCHDOG_PID is not the old one's).
    manager.next(after, "WATCHDOG=1", &new).await;
    let messages = manager.messages();
    assert!(
        !messages.iter().any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "the old gateway's drain is not the service stopping: {messages:?}"
    );
    assert!(took > first);
}
