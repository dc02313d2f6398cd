//! Several `gwc serve` processes on one port, and upgrades that lose no
//! connection: two gateways with `--reuse-port` share a port and one drains
//! on SIGTERM while clients keep connecting; a gateway started with
//! `--upgrade-socket` takes the running one's listening sockets (and admin)
//! and the old one drains, then `SIGUSR2` does it again, under steady load
//! with no failed request.

use crate::serve_harness::{exchange, Served};
use crate::support::TempDir;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn app(listen: &str, admin: &str) -> String {
    format!(
        "listen {listen}
         admin {admin}
         route GET /hello {{ respond 200 \"hi\" }}\n"
    )
}

/// Steady load: a few clients, each sending one request per connection
/// (`Connection: close`) as fast as answers come, so that connections are
/// always waiting in the listening socket's queue.
struct Load {
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match TcpStream::connect(addr).await {
                            Ok(mut s) => {
                                exchange(&mut s, b"GET /hello HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").await
                            }
                            Err(e) => {
                                failed.lock().unwrap().push(format!("connect: {e}"));
                                continue;
                            }
                        };
                        match outcome {
                            Some((200, body)) if body == "hi" => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failed.lock().unwrap().push(format!("answer: {other:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            ok,
            failed,
            stop,
            tasks,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `more` requests more have succeeded.
    async fn more(&self, more: usize) {
        let target = self.ok() + more;
        let start = Instant::now();
        while self.ok() < target {
            assert!(
                start.elapsed() < WAIT,
                "load stalled at {} answers; failures: {:?}",
                self.ok(),
                self.failures()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn failures(&self) -> Vec<String> {
        self.failed.lock().unwrap().clone()
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(WAIT, t).await;
        }
        (self.ok.load(Ordering::Relaxed), self.failed.lock().unwrap().clone())
    }
}

fn access_lines(s: &Served) -> usize {
    s.stderr_lines().iter().filter(|l| l.contains("gw::access")).count()
}

/// Kills a process this test did not spawn itself (the gateway `SIGUSR2`
/// started), whatever happens.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) on a pid this test's gateway started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_takes_the_sockets_and_loses_no_request() {
    let sockets = TempDir::new();
    let upgrade = sockets.path().join("gw.sock");
    let upgrade = upgrade.to_str().expect("a UTF-8 path");
    let args = ["app.gw", "--threads", "2", "--upgrade-socket", upgrade];
    let config = app("127.0.0.1:0", "127.0.0.2:0");
    let old = Served::start(&[("app.gw", &config)], &args);
    let addr = old.bound(1).await[0];
    let admin = old.admin().await;
    old.wait_lines(WAIT, 1, |l| l.contains("listening for upgrades")).await;
    let load = Load::start(addr, 4);
    load.more(50).await;

    // A new process with the same arguments takes over.
    let new = Served::start(&[("app.gw", &config)], &args);
    new.wait_lines(WAIT, 1, |l| l.contains("upgrade: serving")).await;
    assert_eq!(
        old.wait_exit(WAIT).await,
        Some(0),
        "the old gateway drains and exits\n{}",
        old.output()
    );
    assert_eq!(new.bound(1).await, vec![addr], "the same socket\n{}", new.output());
    assert_eq!(new.admin().await, admin, "admin taken over too");
    load.more(50).await;
    // Access lines are written in batches, up to 50 ms later.
    new.wait_lines(WAIT, 1, |l| l.contains("gw::access")).await;
    let served_by_old = access_lines(&old);
    assert!(served_by_old > 0, "the old gateway served before\n{}", old.output());

    // SIGUSR2: the running gateway starts its successor itself.
    new.signal("USR2");
    let started = new
        .wait_lines(WAIT, 1, |l| l.contains("upgrade: new gateway started"))
        .await;
    let pid: i32 = started[0]
        .split("pid=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a pid in {}", started[0]));
    let _successor = KillOnDrop(Some(pid));
    assert_eq!(
        new.wait_exit(WAIT).await,
        Some(0),
        "drained and exited\n{}",
        new.output()
    );
    load.more(50).await;
    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(
        std::path::Path::new(upgrade).exists(),
        "the successor listens for the next upgrade"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_leaves_the_running_gateway_serving() {
    let sockets = TempDir::new();
    let upgrade = sockets.path().join("gw.sock");
    let upgrade = upgrade.to_str().expect("a UTF-8 path");
    let config = app("127.0.0.1:0", "127.0.0.2:0");
    let old = Served::start(&[("app.gw", &config)], &["app.gw", "--upgrade-socket", upgrade]);
    let addr = old.bound(1).await[0];
    old.wait_lines(WAIT, 1, |l| l.contains("listening for upgrades")).await;
    // The new configuration adds a listener on a port that is taken: the
    // new process receives the sockets, cannot bind, and stops.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken = holder.local_addr().expect("its address");
    let new_config = format!("listen {taken}\n{config}");
    let new = Served::start(&[("app.gw", &new_config)], &["app.gw", "--upgrade-socket", upgrade]);
    assert_eq!(new.wait_exit(WAIT).await, Some(2), "{}", new.output());
    old.wait_lines(WAIT, 1, |l| l.contains("upgrade abandoned")).await;
    let mut s = TcpStream::connect(addr).await.expect("still listening");
    let answer = exchange(&mut s, b"GET /hello HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(answer.map(|a| a.0), Some(200));
    assert!(old.exited().is_none());
}

/// `net.ipv4.tcp_migrate_req` set to 1 for the test, and back after.
struct MigrateReq(Option<String>);

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

impl MigrateReq {
    /// `Err` (why) when it cannot be set here.
    fn enable() -> Result<MigrateReq, String> {
        let was = std::fs::read_to_string(MIGRATE_REQ).map_err(|e| format!("cannot read {MIGRATE_REQ}: {e}"))?;
        if was.trim() == "1" {
            return Ok(MigrateReq(None));
        }
        std::fs::write(MIGRATE_REQ, "1").map_err(|e| format!("cannot set {MIGRATE_REQ} to 1: {e}"))?;
        Ok(MigrateReq(Some(was)))
    }
}

impl Drop for MigrateReq {
    fn drop(&mut self) {
        if let Some(was) = &self.0 {
            let _ = std::fs::write(MIGRATE_REQ, was.trim());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_a_port_and_one_drains_without_a_failed_request() {
    // Without it, Linux resets the connections still queued on the socket
    // of the gateway that stops (docs/deploy.md).
    let _migrate = match MigrateReq::enable() {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED two_gateways_share_a_port...: {why} (needs root in this network namespace)");
            return;
        }
    };
    let (port, admin_port) = (free_port(), free_port());
    let config = app(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{admin_port}"));
    let first = Served::start(&[("app.gw", &config)], &["app.gw", "--reuse-port", "--threads", "2"]);
    let addr = first.bound(1).await[0];
    // The second one has its own admin: `--reuse-port` never applies to it.
    let second_config = app(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    let second = Served::start(
        &[("app.gw", &second_config)],
        &["app.gw", "--reuse-port", "--threads", "2"],
    );
    assert_eq!(second.bound(1).await, vec![addr]);
    let third = Served::start(&[("app.gw", &config)], &["app.gw", "--reuse-port"]);
    assert_eq!(
        third.wait_exit(WAIT).await,
        Some(2),
        "admin's port is not shared\n{}",
        third.output()
    );

    let load = Load::start(addr, 4);
    load.more(100).await;
    let start = Instant::now();
    while access_lines(&first) == 0 || access_lines(&second) == 0 {
        assert!(start.elapsed() < WAIT, "the kernel spreads connections over both");
        load.more(20).await;
    }
    first.signal("TERM");
    assert_eq!(first.wait_exit(WAIT).await, Some(0), "{}", first.output());
    load.more(100).await;
    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
}
