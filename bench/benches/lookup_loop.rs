//! A steadier lookup measurement than criterion's on a busy machine: for
//! 10, 1k and 10k routes, 1 000 000 lookups timed as one block, gw and
//! matchit alternated `ROUNDS` times (default 5), and the median of each with
//! their ratio printed. Run: `cargo bench -p gw-bench --bench lookup_loop`.

use gw_bench::{config, distinct_paths, requests, routes};
use gw_compiler::host::MemoryHost;
use gw_compiler::plan::{lookup, Lookup};
use std::hint::black_box;
use std::time::Instant;

const REQUESTS: usize = 1000;
const REPEAT: usize = 1000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!("routes      gw   matchit   gw/matchit   (ns per lookup, median of {rounds})");
    for n in [10usize, 1_000, 10_000] {
        let specs = routes(n);
        let compiled = gw_compiler::compile_text(&MemoryHost::new(), "bench.gw", &config(&specs));
        let Some(plan) = compiled.plan else {
            panic!("the workload compiles: {:?}", compiled.diagnostics.first());
        };
        let reqs = requests(&specs, REQUESTS);
        let mut router = matchit::Router::new();
        for (i, p) in distinct_paths(&specs).into_iter().enumerate() {
            if let Err(e) = router.insert(p.clone(), i) {
                panic!("matchit refuses `{p}`: {e}");
            }
        }
        let (mut gw, mut mi) = (Vec::new(), Vec::new());
        let mut found = 0usize;
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..REPEAT {
                for r in &reqs {
                    if let Lookup::Matched { route, params } =
                        lookup(&plan, Some(r.method), black_box(&r.host), black_box(&r.path))
                    {
                        found += route + params.len();
                    }
                }
            }
            gw.push(t.elapsed().as_nanos() as f64 / (REPEAT * REQUESTS) as f64);
            let t = Instant::now();
            for _ in 0..REPEAT {
                for r in &reqs {
                    if let Ok(m) = router.at(black_box(&r.path)) {
                        found += *m.value + m.params.len();
                    }
                }
            }
            mi.push(t.elapsed().as_nanos() as f64 / (REPEAT * REQUESTS) as f64);
        }
        let (g, m) = (median(gw), median(mi));
        println!("{n:>6} {g:>7.1} {m:>9.1} {:>11.2}×", g / m);
        black_box(found);
    }
}
