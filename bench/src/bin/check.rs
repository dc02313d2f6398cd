//! `gwc check` speed on generated configurations of 1k, 10k and 100k routes
//! over 1k upstreams: medians of the whole command (process start, reading,
//! checking, rendering) and of the in-process compile, and the growth factor
//! per 10× more routes (1.0 would be perfectly linear: 10× the time).
//!
//! Run: `cargo run --release -p gw-bench --bin check` (builds `gwc` first
//! with `cargo build --release`). Set `RUNS` to change the sample count.
//! `check --write ROUTES FILE` only writes a generated file of `ROUTES`
//! routes (over 1k upstreams), for measuring one large `gwc check` by hand
//! (`/usr/bin/time -v gwc check FILE`: peak memory per byte of input).

use gw_compiler::host::MemoryHost;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `routes` routes over `upstreams` upstreams: literals, parameters,
/// catch-alls and a quarter with hosts; no collisions, everything used.
pub fn generate(routes: usize, upstreams: usize) -> String {
    let mut s = String::with_capacity(routes * 64);
    s.push_str("listen 127.0.0.1:8080\n");
    for u in 0..upstreams {
        s.push_str(&format!(
            "upstream svc{u} {{\n  balance least_conn\n  server 127.0.0.1:{} server 127.0.0.1:{} weight 2\n}}\n",
            10000 + u % 50000,
            20000 + u % 40000
        ));
    }
    for r in 0..routes {
        let u = r % upstreams;
        match r % 4 {
            0 => s.push_str(&format!("route GET /api/v{}/items{r} -> svc{u}\n", r % 7)),
            1 => s.push_str(&format!(
                "route GET,POST /users{r}/{{id}}/orders -> svc{u} {{ timeout 5s }}\n"
            )),
            2 => s.push_str(&format!("route /static{r}/{{*file}} -> svc{u}\n")),
            _ => s.push_str(&format!(
                "route GET /t{r}/{{id}} host \"h{}.example.com\" -> svc{u}\n",
                r % 50
            )),
        }
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gwc() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target").join("release").join("gwc")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, routes, file] = args.as_slice() {
        if flag == "--write" {
            let Ok(routes) = routes.parse::<usize>() else {
                eprintln!("usage: check --write ROUTES FILE");
                std::process::exit(2);
            };
            if let Err(e) = std::fs::write(file, generate(routes, 1_000)) {
                eprintln!("cannot write {file}: {e}");
                std::process::exit(1);
            }
            return;
        }
    }
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    let gwc = gwc();
    let have_binary = gwc.exists();
    if !have_binary {
        eprintln!(
            "note: {} not found; run `cargo build --release` for the command timings",
            gwc.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("gw-check-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    println!("| routes | upstreams | file | `gwc check` median | in-process compile median |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let mut rows = Vec::new();
    for routes in [1_000, 10_000, 100_000] {
        let text = generate(routes, 1_000);
        let path = dir.join(format!("routes-{routes}.gw"));
        if std::fs::write(&path, &text).is_err() {
            eprintln!("cannot write {}", path.display());
            return;
        }
        let host = MemoryHost::new();
        let mut compile = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let c = gw_compiler::compile_text(&host, "bench.gw", &text);
            compile.push(start.elapsed());
            assert_eq!(c.errors(), 0, "generated configuration has errors");
        }
        let mut command = Vec::new();
        if have_binary {
            for _ in 0..runs {
                let start = Instant::now();
                let status = Command::new(&gwc)
                    .arg("check")
                    .arg(&path)
                    .output()
                    .map(|o| o.status.success());
                command.push(start.elapsed());
                assert_eq!(status.ok(), Some(true), "gwc check failed on {}", path.display());
            }
        }
        let cmd = if command.is_empty() {
            None
        } else {
            Some(median(command))
        };
        let comp = median(compile);
        println!(
            "| {routes} | 1000 | {:.1} MiB | {} | {:.1} ms |",
            text.len() as f64 / (1 << 20) as f64,
            cmd.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
            comp.as_secs_f64() * 1e3
        );
        rows.push((routes, cmd, comp));
    }
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let growth = |x: Duration, y: Duration| y.as_secs_f64() / x.as_secs_f64() / 10.0;
        let cmd = match (a.1, b.1) {
            (Some(x), Some(y)) => format!("{:.2}", growth(x, y)),
            _ => "-".into(),
        };
        println!(
            "growth {}→{} routes, per 10× (1.00 = linear): command {cmd}, compile {:.2}",
            a.0,
            b.0,
            growth(a.2, b.2)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
