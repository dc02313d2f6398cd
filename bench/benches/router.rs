//! Route lookup over 10, 1k and 10k routes (gw's plan and, on the same paths,
//! the `matchit` crate, which matches neither hosts nor methods), and plan
//! compilation of 10k routes. Each lookup iteration answers a batch of
//! `BATCH` requests; divide the reported time by `BATCH` for one lookup.
//! See bench/README.md for how to run and the figures measured.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gw_bench::{config, distinct_paths, requests, routes};
use gw_compiler::host::MemoryHost;
use gw_compiler::plan::{lookup, Lookup};
use std::hint::black_box;

const BATCH: usize = 1000;

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(BATCH as u64));
    for n in [10usize, 1_000, 10_000] {
        let specs = routes(n);
        let compiled = gw_compiler::compile_text(&MemoryHost::new(), "bench.gw", &config(&specs));
        let Some(plan) = compiled.plan else {
            panic!("the workload compiles: {:?}", compiled.diagnostics.first());
        };
        let reqs = requests(&specs, BATCH);
        // Sanity: the workload routes what it should.
        let misses = reqs
            .iter()
            .filter(|r| !matches!(lookup(&plan, Some(r.method), &r.host, &r.path), Lookup::Matched { .. }))
            .count();
        assert_eq!(misses, BATCH / 10, "one request in ten misses");

        group.bench_with_input(BenchmarkId::new("gw", n), &reqs, |b, reqs| {
            b.iter(|| {
                let mut found = 0usize;
                for r in reqs {
                    if let Lookup::Matched { route, params } =
                        lookup(&plan, Some(r.method), black_box(&r.host), black_box(&r.path))
                    {
                        found += route + params.len();
                    }
                }
                found
            })
        });

        let mut router = matchit::Router::new();
        for (i, p) in distinct_paths(&specs).into_iter().enumerate() {
            if let Err(e) = router.insert(p.clone(), i) {
                panic!("matchit refuses `{p}`: {e}");
            }
        }
        group.bench_with_input(BenchmarkId::new("matchit", n), &reqs, |b, reqs| {
            b.iter(|| {
                let mut found = 0usize;
                for r in reqs {
                    if let Ok(m) = router.at(black_box(&r.path)) {
                        found += *m.value + m.params.len();
                    }
                }
                found
            })
        });
    }
    group.finish();
}

fn compilation(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    let text = config(&routes(10_000));
    let host = MemoryHost::new();
    let compiled = gw_compiler::compile_text(&host, "bench.gw", &text);
    let Some(cfg) = compiled.config else {
        panic!("the workload compiles: {:?}", compiled.diagnostics.first());
    };
    group.bench_function("plan_10k_routes", |b| {
        b.iter(|| gw_compiler::plan::lower(black_box(&cfg), &compiled.sources).map(|p| p.routes.len()))
    });
    group.bench_function("text_to_plan_10k_routes", |b| {
        b.iter(|| {
            gw_compiler::compile_text(&host, "bench.gw", black_box(&text))
                .plan
                .is_some()
        })
    });
    group.finish();
}

criterion_group!(benches, lookups, compilation);
criterion_main!(benches);
