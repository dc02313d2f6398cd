//! Helpers for the server-side tests (`serve_*.rs`): a `gwc serve` process
//! whose log is read line by line as it runs, raw TCP upstreams, a raw
//! HTTP/1.1 exchange over a socket, and a TLS client. Every wait is bounded.

#![allow(dead_code)]

use crate::support::{gwc_path, TempDir};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------ a running `gwc serve`

/// A `gwc serve` process in a temporary folder. Killed when dropped.
pub struct Served {
    pub dir: TempDir,
    child: Mutex<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(reader: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if let Ok(mut lines) = into.lock() {
                lines.push(line);
            }
        }
    });
}

impl Served {
    /// Writes `files` into a fresh folder and runs `gwc serve ARGS...` there.
    pub fn start(files: &[(&str, &str)], args: &[&str]) -> Served {
        let dir = TempDir::new();
        for (name, text) in files {
            write(dir.path(), name, text);
        }
        Served::start_in(dir, args)
    }

    /// Runs `gwc serve ARGS...` in `dir`.
    pub fn start_in(dir: TempDir, args: &[&str]) -> Served {
        Served::spawn(dir, args, false)
    }

    /// Like [`Served::start`], in a process group of its own (as a
    /// supervisor such as GNU `timeout` runs it), so that [`Served::signal_group`]
    /// reaches it.
    pub fn start_grouped(files: &[(&str, &str)], args: &[&str]) -> Served {
        let dir = TempDir::new();
        for (name, text) in files {
            write(dir.path(), name, text);
        }
        Served::spawn(dir, args, true)
    }

    /// Like [`Served::start`], with these environment variables (and no other).
    pub fn start_with_env(files: &[(&str, &str)], args: &[&str], env: &[(&str, &str)]) -> Served {
        let dir = TempDir::new();
        for (name, text) in files {
            write(dir.path(), name, text);
        }
        Served::spawn_with(dir, args, false, env)
    }

    fn spawn(dir: TempDir, args: &[&str], grouped: bool) -> Served {
        Served::spawn_with(dir, args, grouped, &[])
    }

    fn spawn_with(dir: TempDir, args: &[&str], grouped: bool, env: &[(&str, &str)]) -> Served {
        let mut command = Command::new(gwc_path());
        if grouped {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let mut child = command
            .arg("serve")
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gwc serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        Served {
            dir,
            child: Mutex::new(child),
            stderr,
            stdout,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Rewrites a file of the configuration (the gateway watches it).
    pub fn write(&self, name: &str, text: &str) {
        write(self.dir.path(), name, text);
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Everything printed so far, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout_lines().join("\n"),
            self.stderr_lines().join("\n")
        )
    }

    /// Waits (at most `limit`) until `count` stderr lines satisfy `pred`;
    /// returns them, or panics with the output.
    pub async fn wait_lines(&self, limit: Duration, count: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let found: Vec<String> = self.stderr_lines().into_iter().filter(|l| pred(l)).collect();
            if found.len() >= count {
                return found;
            }
            if start.elapsed() > limit {
                panic!(
                    "waited {limit:?} for {count} matching log lines, found {}\n{}",
                    found.len(),
                    self.output()
                );
            }
            if let Some(status) = self.exited() {
                panic!("gwc serve exited ({status}) while waiting\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status, if the process has exited.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().ok()?.try_wait().ok().flatten()
    }

    /// The addresses of the `listening` log lines (`bound=ADDR`, or the
    /// `bound` field of a JSON line), in order, once `count` are there.
    pub async fn bound(&self, count: usize) -> Vec<SocketAddr> {
        let lines = self
            .wait_lines(Duration::from_secs(20), count, |l| {
                l.contains("listening") && !l.contains("admin") && bound_of(l).is_some()
            })
            .await;
        lines.iter().filter_map(|l| bound_of(l)).collect()
    }

    /// The admin listener's address.
    pub async fn admin(&self) -> SocketAddr {
        let lines = self
            .wait_lines(Duration::from_secs(20), 1, |l| l.contains("admin listening"))
            .await;
        bound_of(&lines[0]).expect("admin bound address")
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends `signal` to the process group of a [`Served::start_grouped`]
    /// process (with `kill(2)`: no `kill` process in between).
    pub fn signal_group(&self, signal: i32) {
        let group = i32::try_from(self.pid()).expect("a pid");
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        let sent = unsafe { libc::kill(-group, signal) };
        assert_eq!(sent, 0, "kill(-{group}, {signal})");
    }

    /// Sends `signal` to the process itself with `kill(2)`.
    pub fn signal_now(&self, signal: i32) {
        let pid = i32::try_from(self.pid()).expect("a pid");
        // SAFETY: as above, for one process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal})");
    }

    /// Waits (at most `limit`) for the process to exit; its exit code
    /// (`None`: killed by a signal), or panics.
    pub async fn wait_exit(&self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status.code();
            }
            if start.elapsed() > limit {
                panic!("gwc serve did not exit within {limit:?}\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create a folder");
    }
    // Write a sibling and rename it in place: the watcher never sees half a file.
    let tmp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
    std::fs::write(&tmp, text).expect("write a file");
    std::fs::rename(&tmp, &path).expect("rename a file");
}

/// `bound=ADDR` in a text log line, or `"bound":"ADDR"` in a JSON one.
pub fn bound_of(line: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return v["bound"].as_str()?.parse().ok();
    }
    let at = line.find("bound=")? + "bound=".len();
    let rest = &line[at..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

// ------------------------------------------------------------------ raw TCP upstreams

/// A TCP server that writes `NAME\n` to each connection, then echoes.
pub struct TcpEcho {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl TcpEcho {
    pub async fn start(name: &'static str) -> TcpEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        TcpEcho { addr, connections }
    }

    pub fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A loopback address where nothing listens (a port that was just free).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Reads one line (at most 5 s).
pub async fn read_line(s: &mut TcpStream) -> String {
    let fut = async {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match s.read(&mut byte).await {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => out.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("a line within 5 s")
}

// ------------------------------------------------------------------ raw HTTP/1.1

/// Sends `request` (raw bytes) and reads one response: its head and a body
/// of `content-length` bytes. `None` when the connection closes first.
pub async fn exchange(s: &mut TcpStream, request: &[u8]) -> Option<(u16, String)> {
    s.write_all(request).await.ok()?;
    read_response(s).await
}

pub async fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let fut = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some((status, String::from_utf8_lossy(&buf[head_end..]).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.ok().flatten()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Waits (at most `limit`) until the peer closes `s`; how long that took,
/// or `None` if it stayed open. Bytes the peer sends are skipped.
pub async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let fut = async {
        let mut chunk = [0u8; 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, fut).await.ok()
}

// ------------------------------------------------------------------ TLS

/// `tests/fixtures/tls/NAME`, absolute.
pub fn tls_fixture(name: &str) -> String {
    crate::support::fixtures_dir()
        .join("tls")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The DER of the first certificate in a PEM file.
pub fn cert_der(path: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).expect("read a certificate");
    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

/// A TLS client trusting the test CA, offering `alpn`.
pub fn tls_connector(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(tls_fixture("ca.crt")).expect("read the CA");
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("PEM")).expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
