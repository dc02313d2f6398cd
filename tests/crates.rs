//! How the crates layer (ARCHITECTURE.md): grammar → compiler → gwc, with
//! the plan (`gw-plan`) shared by the compiler and the runtime, and no
//! parser in the runtime's tree. The runtime's own tests load plans built
//! from `.gw` sources in `runtime/testdata/`; this file checks that each
//! built plan is what the compiler makes of its source today.

use crate::support::root;
use gw_compiler::host::MemoryHost;
use std::collections::{BTreeMap, BTreeSet};

/// Each package of Cargo.lock with the names of its dependencies (of every
/// kind and every feature: the lock is a superset of any one build).
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in text.split("[[package]]").skip(1) {
        let mut name = None;
        let mut deps = Vec::new();
        let mut in_deps = false;
        for line in package.lines().map(str::trim) {
            if let Some(n) = line.strip_prefix("name = ") {
                name = Some(n.trim_matches('"').to_string());
            } else if line.starts_with("dependencies = [") {
                in_deps = !line.ends_with(']');
            } else if in_deps && line == "]" {
                in_deps = false;
            } else if in_deps {
                let dep = line.trim_end_matches(',').trim_matches('"');
                deps.push(dep.split(' ').next().unwrap_or(dep).to_string());
            }
        }
        if let Some(name) = name {
            graph.entry(name).or_default().extend(deps);
        }
    }
    graph
}

/// The packages `from` depends on, directly or not.
fn reachable(graph: &BTreeMap<String, Vec<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(p) = todo.pop() {
        for d in graph.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_runtime_depends_on_the_plan_not_on_the_parser() {
    let graph = lock_graph();
    assert!(
        graph.contains_key("gw-runtime") && graph.contains_key("gw-plan"),
        "{:?}",
        graph.keys()
    );
    for krate in ["gw-runtime", "gw-plan"] {
        let deps = reachable(&graph, krate);
        for parser in ["pest", "pest_derive", "pest_meta", "gw-grammar", "gw-compiler"] {
            assert!(!deps.contains(parser), "{krate} depends on {parser}");
        }
    }
    assert!(reachable(&graph, "gw-runtime").contains("gw-plan"));
    // The check itself sees what it is meant to see.
    assert!(reachable(&graph, "gw-compiler").contains("pest"));
}

/// `runtime/testdata/NAME.gw` built is `runtime/testdata/NAME.json`;
/// `GW_UPDATE_TESTDATA=1` rewrites the built plans.
#[test]
fn runtime_test_plans_are_built_from_their_sources() {
    let dir = root().join("runtime/testdata");
    let update = std::env::var_os("GW_UPDATE_TESTDATA").is_some();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("runtime/testdata").flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "gw") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let host = MemoryHost::new();
        let mut c = gw_compiler::compile_text(&host, "t.gw", &text);
        let Some(plan) = c.plan.take() else {
            panic!("{} does not compile: {:#?}", path.display(), c.diagnostics);
        };
        let built = plan.to_json();
        let json = path.with_extension("json");
        if update {
            std::fs::write(&json, &built).expect("write");
        }
        let committed = std::fs::read_to_string(&json).unwrap_or_default();
        assert!(
            committed == built,
            "{} is not the plan of {} today: run `GW_UPDATE_TESTDATA=1 cargo test --test integration crates::`",
            json.display(),
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "runtime/testdata holds {checked} sources");
}
