//! One snapshot per fixture: every `tests/fixtures/GWxxxx_description.gw` is
//! checked by the real `gwc` (from the fixtures folder, so paths stay
//! relative) and its snapshot shows the source, the rendered text (no colour,
//! fixed width) and the JSON together. The fixture's own code must be among
//! its diagnostics.
//!
//! Update with `INSTA_UPDATE=always cargo test snapshots`, then read the
//! changed `tests/snapshots/*.snap` files before committing them.

use crate::support::{fixtures_dir, root, Gwc};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `GW0101_unknown_upstream.gw` → `GW0101`, if the name has that shape.
fn fixture_code(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".gw")?;
    let (code, rest) = stem.split_once('_')?;
    let digits = code.strip_prefix("GW")?;
    (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()).then_some(code)
}

/// The fixtures, sorted by name.
fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| fixture_code(n).is_some())
        .collect();
    names.sort();
    names
}

/// The snapshot text of one fixture, after checking that it reports its code.
fn snapshot_of(name: &str) -> String {
    let code = fixture_code(name).unwrap_or_default();
    let source = std::fs::read_to_string(fixtures_dir().join(name)).expect("read the fixture");
    let text = Gwc::new().current_dir(fixtures_dir()).args(["check", name]).run();
    let json = Gwc::new()
        .current_dir(fixtures_dir())
        .args(["check", "--format", "json", name])
        .run();
    let codes = json.codes();
    assert!(
        codes.iter().any(|c| c == code),
        "{name} should report {code}, but reports {codes:?}\n{}",
        text.stdout
    );
    assert_eq!(text.status, json.status, "text and JSON runs exit alike");
    format!(
        "--- {name}\n{source}\n--- gwc check {name}   (exit status {status})\n{text}\n--- gwc check --format json {name}\n{json}",
        status = text.status.map_or("none".to_string(), |s| s.to_string()),
        text = text.stdout,
        json = json.stdout,
    )
}

#[test]
fn every_fixture_matches_its_snapshot_and_reports_its_code() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let mut failed = Vec::new();
    for name in fixtures() {
        let snapshot_name = name.trim_end_matches(".gw").to_string();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let snapshot = snapshot_of(&name);
            settings.bind(|| insta::assert_snapshot!(snapshot_name.as_str(), snapshot));
        }));
        if result.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "fixtures that failed (see above): {failed:?}");
}

#[test]
fn every_snapshot_belongs_to_a_fixture() {
    let fixtures = fixtures();
    let stale: Vec<String> = std::fs::read_dir(root().join("tests").join("snapshots"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter_map(|n| n.strip_suffix(".snap").map(|stem| format!("{stem}.gw")))
                .filter(|n| fixture_code(n).is_some() && !fixtures.contains(n))
                .collect()
        })
        .unwrap_or_default();
    assert!(stale.is_empty(), "snapshots without a fixture: {stale:?}");
}

#[test]
fn fixture_names_start_with_their_code() {
    assert_eq!(fixture_code("GW0101_unknown_upstream.gw"), Some("GW0101"));
    assert_eq!(fixture_code("GW0101_.gw"), None);
    assert_eq!(fixture_code("GW101_x.gw"), None);
    assert_eq!(fixture_code("common.gw"), None);
}
