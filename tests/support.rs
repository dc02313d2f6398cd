//! A small builder that runs the real `gwc` binary and asserts what it
//! prints and how it exits (after casey/just's `tests/test.rs`):
//!
//! ```ignore
//! Gwc::new()
//!     .file("app.gw", "listen :8080")
//!     .args(["check", "app.gw"])
//!     .status(0)
//!     .stdout_has("app.gw: no problems found")
//!     .run();
//! ```
//!
//! Each run gets a fresh temporary folder as its working directory (removed
//! afterwards) and an empty environment, so nothing on the machine leaks in.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The path of the `gwc` binary cargo built for these tests.
pub fn gwc_path() -> &'static str {
    env!("CARGO_BIN_EXE_gwc")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    root().join("tests").join("fixtures")
}

/// A temporary folder, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "gwc-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The exit status; `None` when killed by a signal.
    pub status: Option<i32>,
}

/// One invocation of `gwc`, with the files it needs and what it must do.
pub struct Gwc {
    dir: TempDir,
    /// Working directory: the temporary folder unless [`Gwc::current_dir`].
    cwd: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    status: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
    stdout_has: Vec<String>,
    stderr_has: Vec<String>,
    stdout_lacks: Vec<String>,
}

impl Default for Gwc {
    fn default() -> Self {
        Gwc::new()
    }
}

impl Gwc {
    pub fn new() -> Gwc {
        Gwc {
            dir: TempDir::new(),
            cwd: None,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            status: None,
            stdout: None,
            stderr: None,
            stdout_has: Vec::new(),
            stderr_has: Vec::new(),
            stdout_lacks: Vec::new(),
        }
    }

    /// Writes a file (creating folders) in the temporary folder.
    pub fn file(self, path: &str, contents: impl AsRef<[u8]>) -> Gwc {
        let full = self.dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("create a folder");
        }
        std::fs::write(&full, contents).expect("write a file");
        self
    }

    /// Creates an empty folder in the temporary folder.
    pub fn dir(self, path: &str) -> Gwc {
        std::fs::create_dir_all(self.dir.path().join(path)).expect("create a folder");
        self
    }

    /// Runs in `dir` instead of the temporary folder.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Gwc {
        self.cwd = Some(dir.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Gwc
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Gwc {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// What the run reads on its standard input (empty otherwise).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Gwc {
        self.stdin = Some(bytes.into());
        self
    }

    /// The exit status the run must have.
    pub fn status(mut self, status: i32) -> Gwc {
        self.status = Some(status);
        self
    }

    /// The exact standard output.
    pub fn stdout(mut self, text: &str) -> Gwc {
        self.stdout = Some(text.to_string());
        self
    }

    /// The exact standard error.
    pub fn stderr(mut self, text: &str) -> Gwc {
        self.stderr = Some(text.to_string());
        self
    }

    /// Text the standard output must contain.
    pub fn stdout_has(mut self, text: &str) -> Gwc {
        self.stdout_has.push(text.to_string());
        self
    }

    /// Text the standard output must not contain.
    pub fn stdout_lacks(mut self, text: &str) -> Gwc {
        self.stdout_lacks.push(text.to_string());
        self
    }

    /// Text the standard error must contain.
    pub fn stderr_has(mut self, text: &str) -> Gwc {
        self.stderr_has.push(text.to_string());
        self
    }

    /// Runs `gwc` and checks every expectation; returns the output for more.
    pub fn run(self) -> Output {
        let cwd = self.cwd.clone().unwrap_or_else(|| self.dir.path().to_path_buf());
        let mut child = Command::new(gwc_path())
            .args(&self.args)
            .current_dir(&cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run gwc");
        if let Some(mut input) = child.stdin.take() {
            use std::io::Write;
            let bytes = self.stdin.clone().unwrap_or_default();
            // A writer thread, so a child that prints before reading cannot deadlock.
            std::thread::spawn(move || {
                let _ = input.write_all(&bytes);
            });
        }
        let out = child.wait_with_output().expect("run gwc");
        let output = Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            status: out.status.code(),
        };
        let context = || {
            format!(
                "gwc {}\n--- status: {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.args.join(" "),
                output.status,
                clip(&output.stdout),
                clip(&output.stderr)
            )
        };
        assert!(!output.stderr.contains("panicked"), "gwc panicked\n{}", context());
        if let Some(status) = self.status {
            assert_eq!(output.status, Some(status), "unexpected exit status\n{}", context());
        }
        if let Some(stdout) = &self.stdout {
            assert_eq!(&output.stdout, stdout, "unexpected stdout\n{}", context());
        }
        if let Some(stderr) = &self.stderr {
            assert_eq!(&output.stderr, stderr, "unexpected stderr\n{}", context());
        }
        for text in &self.stdout_has {
            assert!(
                output.stdout.contains(text.as_str()),
                "stdout lacks {text:?}\n{}",
                context()
            );
        }
        for text in &self.stdout_lacks {
            assert!(
                !output.stdout.contains(text.as_str()),
                "stdout has {text:?}\n{}",
                context()
            );
        }
        for text in &self.stderr_has {
            assert!(
                output.stderr.contains(text.as_str()),
                "stderr lacks {text:?}\n{}",
                context()
            );
        }
        output
    }
}

/// At most a few thousand characters of `text`, for failure messages.
fn clip(text: &str) -> String {
    const MAX: usize = 4000;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}\n[... {} more bytes]", &text[..at], text.len() - at),
        None => text.to_string(),
    }
}

impl Output {
    /// Standard output parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The codes of `gwc check --format json` output, in order.
    pub fn codes(&self) -> Vec<String> {
        self.json()["diagnostics"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|d| d["code"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}
