//! The fuzz corpora replayed as ordinary tests on stable: every file of
//! `fuzz/corpus/<corpus>/` (the inputs `fuzz/run` found, minimised) and of
//! `fuzz/regressions/<corpus>/` (inputs that once failed, kept whatever the
//! fuzzer does next) goes through its fuzz targets' own body — `fuzz/src/lib.rs`,
//! included here as a module, so CI runs exactly what was fuzzed — on a
//! thread with a deadline, so that a panic or a hang fails with the file's
//! name.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../fuzz/src/lib.rs"]
mod harness;

/// One input may take this long (most take well under a millisecond; the
/// slowest `.gw` inputs a few, on a loaded machine a hundred times that).
const PER_INPUT: Duration = Duration::from_secs(20);

/// The files of `dir`, sorted (none when it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
    files.sort();
    files
}

/// Runs every input of `corpus` through its body; fails naming the input
/// that panicked or took longer than [`PER_INPUT`].
fn replay(corpus: &str) {
    let body = harness::CORPORA
        .iter()
        .find(|(name, _, _)| *name == corpus)
        .map(|(_, body, _)| *body)
        .unwrap_or_else(|| panic!("no corpus {corpus}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let committed = inputs(&root.join("corpus").join(corpus));
    assert!(
        !committed.is_empty(),
        "fuzz/corpus/{corpus}/ is empty: `fuzz/run --minimize` makes it"
    );
    let files: Vec<PathBuf> = committed
        .into_iter()
        .chain(inputs(&root.join("regressions").join(corpus)))
        .collect();
    let count = files.len();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("replay {corpus}"))
        .stack_size(8 << 20) // as libFuzzer's main thread
        .spawn(move || {
            for file in files {
                let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let _ = tx.send(Err(file.clone()));
                let outcome = std::panic::catch_unwind(|| body(&bytes));
                let _ = tx.send(Ok((file, outcome.is_ok())));
            }
        })
        .expect("a replay thread");
    let mut failed = Vec::new();
    let mut current = None;
    let mut done = 0;
    loop {
        let deadline = Instant::now() + PER_INPUT;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Err(started)) => current = Some(started),
            Ok(Ok((file, ok))) => {
                done += 1;
                if !ok {
                    failed.push(file.display().to_string());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{corpus}: {} took longer than {PER_INPUT:?}",
                current.map_or("an input".to_string(), |f| f.display().to_string())
            ),
        }
    }
    let _ = worker.join();
    assert!(failed.is_empty(), "{corpus}: these inputs panicked: {failed:#?}");
    assert_eq!(done, count, "{corpus}: the replay stopped early");
}

#[test]
fn gw_corpus_replays() {
    replay("gw");
}

#[test]
fn h1_request_corpus_replays() {
    replay("h1_request");
}

#[test]
fn h1_response_corpus_replays() {
    replay("h1_response");
}

#[test]
fn route_corpus_replays() {
    replay("route");
}

#[test]
fn proxy_header_corpus_replays() {
    replay("proxy_header");
}

/// Every corpus has its test above and every fuzz target a corpus, and
/// every folder of `fuzz/corpus/` and `fuzz/regressions/` is a corpus's, so
/// that nothing is silently left out.
#[test]
fn every_corpus_is_replayed() {
    let this = include_str!("fuzz_corpus.rs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let declared = manifest.matches("[[bin]]").count();
    let mut targets = 0;
    for (corpus, _, fuzzed_by) in harness::CORPORA {
        assert!(
            this.contains(&format!("replay(\"{corpus}\")")),
            "no replay test for {corpus}"
        );
        for target in *fuzzed_by {
            targets += 1;
            assert!(
                root.join("fuzz_targets").join(format!("{target}.rs")).is_file(),
                "no fuzz/fuzz_targets/{target}.rs"
            );
        }
    }
    assert_eq!(targets, declared, "a target of fuzz/Cargo.toml is missing from CORPORA");
    for folder in ["corpus", "regressions"] {
        for dir in std::fs::read_dir(root.join(folder)).into_iter().flatten().flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            assert!(
                harness::CORPORA.iter().any(|(c, _, _)| *c == name),
                "fuzz/{folder}/{name} belongs to no corpus"
            );
        }
    }
}
