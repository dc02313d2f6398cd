//! A small LSP client for tests: it runs the real `gwc lsp` binary, speaks
//! JSON-RPC to it over its stdin and stdout, and waits (at most
//! [`WAIT`]) for responses and notifications. Notifications that arrive
//! while waiting for something else are kept for later waits.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
    /// Notifications (and stray messages) not yet consumed.
    pending: Vec<Value>,
}

/// The `file://` URI of a path.
pub fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

impl Client {
    /// Starts `gwc lsp` in `dir` with only `env` set, without initializing.
    pub fn spawn(dir: &Path, env: &[(&str, &str)]) -> Client {
        let mut child = Command::new(crate::support::gwc_path())
            .arg("lsp")
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start gwc lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.parse::<usize>().ok();
                    }
                }
                let Some(length) = length else { return };
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let Ok(value) = serde_json::from_slice::<Value>(&body) else {
                    return;
                };
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Client {
            child,
            stdin,
            rx,
            next_id: 1,
            pending: Vec::new(),
        }
    }

    /// Starts `gwc lsp` in `dir` and completes the `initialize` handshake.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> (Client, Value) {
        let mut client = Client::spawn(dir, env);
        let init = client.request(
            "initialize",
            json!({ "processId": null, "rootUri": uri(dir), "capabilities": {} }),
        );
        client.notify("initialized", json!({}));
        (client, init)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("write to gwc lsp");
        self.stdin.flush().expect("flush");
    }

    pub fn send(&mut self, message: &Value) {
        let text = message.to_string();
        self.send_raw(format!("Content-Length: {}\r\n\r\n{text}", text.len()).as_bytes());
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request without waiting; returns its id.
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    /// The whole response (`result` or `error`) to a request.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.response(&json!(id))
    }

    /// The `result` of a request, failing on an error response.
    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params);
        assert!(response.get("error").is_none(), "{method} failed: {response}");
        response["result"].clone()
    }

    /// Waits for the response with `id`.
    pub fn response(&mut self, id: &Value) -> Value {
        self.wait_for(
            |m| m.get("id") == Some(id) && m.get("method").is_none(),
            &format!("the response to {id}"),
        )
    }

    /// Waits for a message matching `want` (taking it from those kept, or
    /// keeping the others that arrive meanwhile).
    pub fn wait_for(&mut self, want: impl Fn(&Value) -> bool, what: &str) -> Value {
        if let Some(at) = self.pending.iter().position(&want) {
            return self.pending.remove(at);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if want(&m) => return m,
                Ok(m) => self.pending.push(m),
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {WAIT:?}; kept: {:?}", self.pending),
                Err(RecvTimeoutError::Disconnected) => panic!("gwc lsp ended while waiting for {what}"),
            }
        }
    }

    /// The next diagnostics published for `uri` that satisfy `want`
    /// (earlier ones for that URI are dropped).
    pub fn diagnostics(&mut self, uri: &str, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let is_for = |m: &Value| m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri;
        loop {
            let m = self.wait_for(is_for, &format!("diagnostics for {uri}"));
            let list = m["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
            if want(&list) {
                return list;
            }
        }
    }

    pub fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "gw", "version": 1, "text": text } }),
        );
    }

    /// Replaces the whole text of an open document.
    pub fn change(&mut self, uri: &str, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "text": text }] }),
        );
    }

    /// `shutdown` then `exit`; the server's exit status.
    pub fn shutdown(mut self) -> Option<i32> {
        let r = self.request("shutdown", Value::Null);
        assert!(r.get("error").is_none(), "{r}");
        self.notify("exit", Value::Null);
        self.wait_exit()
    }

    /// Waits (bounded) for the process to end.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "gwc lsp did not exit within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (line, character) of the `n`th occurrence of `needle` in `text`
/// (UTF-16 characters), plus `shift` characters.
pub fn position(text: &str, needle: &str, n: usize, shift: u32) -> Value {
    let at = text
        .match_indices(needle)
        .nth(n)
        .unwrap_or_else(|| panic!("no {needle:?} #{n}"))
        .0;
    let before = &text[..at];
    let line = before.matches('\n').count();
    let col: usize = before.rsplit('\n').next().unwrap_or("").encode_utf16().count();
    json!({ "line": line, "character": col as u32 + shift })
}
