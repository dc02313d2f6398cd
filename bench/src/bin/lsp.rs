//! `gwc lsp` latency on a 10,000-route file (the router benchmark's route
//! set, `gw_bench::config`), measured as an editor sees it: the release
//! binary over stdio, one client. Figures: the first diagnostics after
//! opening; diagnostics after a change (from sending `didChange` to the
//! `publishDiagnostics` of that version, debounce included), alternating a
//! mistake and its fix; completion at `-> |` with the file compiled, and
//! right after a change while the compile runs; hover and go to definition.
//! Targets (issue 14): diagnostics within 200 ms of a change, completion
//! within 50 ms. Beside the wall-clock figures, which a busy machine
//! inflates, two that load does not change much: the server's CPU time per
//! change (from /proc) and the in-process compile of the same text (the
//! part of a change's latency that is the compiler's).
//!
//! Run: `cargo build --release && cargo run --release -p gw-bench --bin lsp`
//! (or `bench/run lsp`). `RUNS` sets the samples per figure (default 21),
//! `ROUTES` the file's size (default 10000).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next: i64,
}

impl Client {
    fn send(&mut self, v: Value) {
        let text = v.to_string();
        let _ = write!(self.stdin, "Content-Length: {}\r\n\r\n{text}", text.len());
        let _ = self.stdin.flush();
    }

    fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next += 1;
        let id = self.next;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Waits (at most 30 s) for a message matching `want`.
    fn wait(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if want(&m) => return m,
                Ok(_) => {}
                Err(_) => panic!("gwc lsp did not answer within 30 s"),
            }
        }
    }

    fn response(&mut self, id: i64) -> Value {
        self.wait(|m| m["id"] == id && m.get("method").is_none())
    }
}

fn start(gwc: &PathBuf) -> Client {
    let mut child = Command::new(gwc)
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start gwc lsp");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    len = v.parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            if let Ok(v) = serde_json::from_slice(&body) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    Client {
        child,
        stdin,
        rx,
        next: 0,
    }
}

/// User + system CPU time of a process so far, in milliseconds (Linux).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `) `.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 1000.0 / 100.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `median / p90 / max` in milliseconds.
fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("{:.1} / {:.1} / {:.1}", ms(at(0.5)), ms(at(0.9)), ms(at(1.0)))
}

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(21);
    let routes: usize = std::env::var("ROUTES")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000);
    let gwc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/gwc");
    if !gwc.exists() {
        eprintln!("{} not found: run `cargo build --release` first", gwc.display());
        std::process::exit(2);
    }
    let text = gw_bench::config(&gw_bench::routes(routes));
    let dir = std::env::temp_dir().join(format!("gw-lsp-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("routes.gw");
    let _ = std::fs::write(&path, &text);
    let uri = format!("file://{}", path.display());
    let mut c = start(&gwc);
    let id = c.request("initialize", json!({"processId": null, "capabilities": {}}));
    c.response(id);
    c.notify("initialized", json!({}));

    let is_diag = |version: i64| {
        move |m: &Value| m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == version
    };
    let t = Instant::now();
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "gw", "version": 1, "text": text}}),
    );
    let first = c.wait(is_diag(1));
    let open = t.elapsed();
    let count = |m: &Value| m["params"]["diagnostics"].as_array().map_or(0, Vec::len);
    assert_eq!(count(&first), 0, "the generated file has diagnostics: {first}");

    let cpu_before = cpu_ms(c.child.id());
    // The last route's upstream, broken and fixed in turn (an incremental edit).
    let last_line = text.lines().count() - 1;
    let last = text.lines().last().unwrap_or("");
    let arrow = last.rfind("-> ").expect("a route with an upstream") + 3;
    let name = &last[arrow..];
    let (mut change, mut version) = (Vec::new(), 1);
    for i in 0..runs {
        version += 1;
        let new = if i % 2 == 0 {
            format!("{name}x")
        } else {
            name.to_string()
        };
        let old_len = if i % 2 == 0 { name.len() } else { name.len() + 1 };
        let t = Instant::now();
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{
                "range": {"start": {"line": last_line, "character": arrow}, "end": {"line": last_line, "character": arrow + old_len}},
                "text": new}]}),
        );
        let m = c.wait(is_diag(version));
        change.push(t.elapsed());
        assert_eq!(count(&m) > 0, i % 2 == 0, "version {version}: {m}");
    }

    let cpu_per_change = (cpu_ms(c.child.id()) - cpu_before) / runs as f64;
    // The compiler alone, in this process, on the same two texts.
    let broken = {
        let mut lines: Vec<&str> = text.lines().collect();
        let fixed = format!("{}{name}x", &last[..arrow]);
        lines.pop();
        let mut t = lines.join("\n");
        t.push('\n');
        t.push_str(&fixed);
        t.push('\n');
        t
    };
    let host = gw_compiler::host::MemoryHost::new();
    let mut compile = Vec::new();
    for i in 0..runs {
        let t = Instant::now();
        let _ = gw_compiler::compile_text(&host, "routes.gw", if i % 2 == 0 { &broken } else { &text });
        compile.push(t.elapsed());
    }

    // Completion after `-> ` on the last line, with the file compiled.
    let at = json!({"textDocument": {"uri": uri}, "position": {"line": last_line, "character": arrow}});
    let mut complete = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let id = c.request("textDocument/completion", at.clone());
        let r = c.response(id);
        complete.push(t.elapsed());
        assert!(r["result"].as_array().is_some_and(|a| a.len() >= 100), "{r}");
    }
    // ... and right after a change, while that change compiles.
    let mut busy = Vec::new();
    for i in 0..runs {
        version += 1;
        let edit = if i % 2 == 0 { " " } else { "" };
        let old_len = if i % 2 == 0 { 0 } else { 1 };
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": old_len}},
                "text": edit}]}),
        );
        // Past the debounce: the compile is running.
        std::thread::sleep(Duration::from_millis(40));
        let t = Instant::now();
        let id = c.request("textDocument/completion", at.clone());
        c.response(id);
        busy.push(t.elapsed());
        c.wait(is_diag(version));
    }

    // Hover and definition on the last route's upstream name (fresh analysis).
    let on_name = json!({"textDocument": {"uri": uri}, "position": {"line": last_line, "character": arrow + 1}});
    let (mut hover, mut definition) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let id = c.request("textDocument/hover", on_name.clone());
        c.response(id);
        hover.push(t.elapsed());
        let t = Instant::now();
        let id = c.request("textDocument/definition", on_name.clone());
        c.response(id);
        definition.push(t.elapsed());
    }
    let id = c.request("shutdown", Value::Null);
    c.response(id);
    c.notify("exit", Value::Null);
    let _ = c.child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "`gwc lsp` on {routes} routes ({:.1} MiB), {runs} samples each, milliseconds median / p90 / max:\n",
        text.len() as f64 / (1 << 20) as f64
    );
    println!("| what | latency (ms) | target |");
    println!("| --- | ---: | --- |");
    println!("| open → first diagnostics | {:.1} | |", ms(open));
    println!(
        "| change → its diagnostics (30 ms debounce included) | {} | < 200 |",
        summary(change)
    );
    println!(
        "| (the compiler alone, in-process, same texts) | {} | |",
        summary(compile)
    );
    println!("| (`gwc lsp` CPU time per change) | {cpu_per_change:.1} | |");
    println!("| completion at `-> |`, file compiled | {} | < 50 |", summary(complete));
    println!("| completion while the change compiles | {} | < 50 |", summary(busy));
    println!("| hover on a name | {} | |", summary(hover));
    println!("| go to definition | {} | |", summary(definition));
}
