//! Every diagnostic code lands with its explain page, a fixture and a
//! snapshot; every page's wrong example really produces its code and its fix
//! really does not. Also `gwc explain` from the outside.
//!
//! The examples are compiled in memory against the files of
//! `tests/fixtures/{keys,certs,common}` (as `keys/...`, `certs/...`,
//! `common/...`) with `JWT_SECRET` set, so a page may name those files,
//! and `/dev/zero`, a device.

use crate::support::{fixtures_dir, root, Gwc};
use gw_compiler::host::MemoryHost;
use gw_compiler::{compile_text, Code};
use std::path::Path;

/// The `gw` block of a page's `## Example` or `## Fix` section: the first
/// fence tagged `gw` after the heading and before the next `## ` heading.
fn block<'a>(page: &'a str, heading: &str) -> Option<&'a str> {
    let start = page.find(&format!("\n{heading}\n"))? + heading.len() + 2;
    let section = &page[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let open = section.find("```gw\n")? + "```gw\n".len();
    let len = section[open..].find("\n```")? + 1;
    Some(&section[open..open + len])
}

/// The world the examples see.
fn host() -> MemoryHost {
    let mut host = MemoryHost::new()
        .var("JWT_SECRET", "explain-pages-test-secret-0123456789abcdef0123456789")
        .special("/dev/zero", "a character device");
    for dir in ["keys", "certs", "common"] {
        add_files(&mut host, &fixtures_dir(), Path::new(dir));
    }
    host
}

fn add_files(host: &mut MemoryHost, base: &Path, rel: &Path) {
    let Ok(entries) = std::fs::read_dir(base.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let rel = rel.join(entry.file_name());
        if entry.path().is_dir() {
            add_files(host, base, &rel);
        } else if let Ok(bytes) = std::fs::read(entry.path()) {
            host.files.insert(rel.to_string_lossy().into_owned(), bytes);
        }
    }
}

/// The codes compiling `text` produces, as `GW0101 message` lines.
fn diagnostics(text: &str) -> Vec<(Code, bool, String)> {
    compile_text(&host(), "app.gw", text)
        .diagnostics
        .iter()
        .map(|d| (d.code, d.is_error(), format!("{} {}", d.code, d.message)))
        .collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Fails with every problem listed, not only the first.
fn assert_none(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[test]
fn every_code_has_a_page_with_title_example_and_fix() {
    let mut problems = Vec::new();
    for code in Code::ALL {
        let page = code.explanation();
        let title = format!("# {code}: ");
        if !page.starts_with(&title) {
            problems.push(format!("{code}: the page does not start with `{title}`"));
        }
        if page.len() < 400 {
            problems.push(format!("{code}: the page is too short to explain anything"));
        }
        for heading in ["## Example", "## Fix"] {
            if block(page, heading).is_none() {
                problems.push(format!("{code}: no ```gw block under `{heading}`"));
            }
        }
    }
    assert_none(problems, "explain pages");
}

#[test]
fn every_page_example_produces_its_code() {
    let mut problems = Vec::new();
    for &code in Code::ALL {
        let Some(example) = block(code.explanation(), "## Example") else {
            continue; // reported by the test above
        };
        let found = diagnostics(example);
        if !found.iter().any(|(c, _, _)| *c == code) {
            let found: Vec<_> = found.into_iter().map(|(_, _, m)| m).collect();
            problems.push(format!("{code}: the example produces {found:?}"));
        }
    }
    assert_none(problems, "examples that do not produce their code");
}

#[test]
fn every_page_fix_is_free_of_its_code_and_of_errors() {
    let mut problems = Vec::new();
    for &code in Code::ALL {
        let Some(fix) = block(code.explanation(), "## Fix") else {
            continue;
        };
        let found = diagnostics(fix);
        if found.iter().any(|(c, error, _)| *c == code || *error) {
            let found: Vec<_> = found.into_iter().map(|(_, _, m)| m).collect();
            problems.push(format!("{code}: the fix produces {found:?}"));
        }
    }
    assert_none(problems, "fixes that are not fixes");
}

#[test]
fn every_code_has_a_fixture() {
    let fixtures = file_names(&fixtures_dir());
    let missing: Vec<String> = Code::ALL
        .iter()
        .filter(|code| {
            !fixtures
                .iter()
                .any(|f| f.starts_with(&format!("{code}_")) && f.ends_with(".gw"))
        })
        .map(|code| format!("{code}: no tests/fixtures/{code}_*.gw"))
        .collect();
    assert_none(missing, "codes without a fixture");
}

#[test]
fn every_code_has_a_snapshot() {
    let snapshots = file_names(&root().join("tests").join("snapshots"));
    let missing: Vec<String> = Code::ALL
        .iter()
        .filter(|code| {
            !snapshots
                .iter()
                .any(|f| f.starts_with(&format!("{code}_")) && f.ends_with(".snap"))
        })
        .map(|code| format!("{code}: no tests/snapshots/{code}_*.snap"))
        .collect();
    assert_none(missing, "codes without a snapshot");
}

#[test]
fn explain_prints_the_page_of_a_code() {
    Gwc::new()
        .args(["explain", "GW0101"])
        .status(0)
        .stdout(Code::GW0101.explanation())
        .stderr("")
        .run();
}

#[test]
fn explain_takes_codes_in_any_case_and_bare_numbers() {
    for given in ["gw0203", "Gw0203", "203", "0203"] {
        Gwc::new()
            .args(["explain", given])
            .status(0)
            .stdout(Code::GW0203.explanation())
            .run();
    }
}

#[test]
fn explain_of_an_unknown_code_suggests_the_closest_and_the_list() {
    Gwc::new()
        .args(["explain", "GW0110"])
        .status(2)
        .stdout("")
        .stderr(
            "error: unknown diagnostic code `GW0110`\n\
             help: did you mean `GW0210`?\n\
             help: run `gwc explain --list` to see every code\n",
        )
        .run();
}

#[test]
fn explain_of_something_unlike_any_code_still_points_at_the_list() {
    Gwc::new()
        .args(["explain", "banana"])
        .status(2)
        .stderr("error: unknown diagnostic code `banana`\nhelp: run `gwc explain --list` to see every code\n")
        .run();
}

#[test]
fn explain_list_shows_every_code_with_severity_and_summary() {
    let out = Gwc::new().args(["explain", "--list"]).status(0).run();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), Code::ALL.len());
    for (line, code) in lines.iter().zip(Code::ALL) {
        assert!(line.starts_with(code.as_str()), "{line}");
        assert!(line.contains(code.severity().as_str()), "{line}");
        assert!(line.ends_with(code.summary()), "{line}");
    }
    assert!(out
        .stdout
        .contains("GW0501  warning  upstream, auth, limit or store defined and never used"));
}

#[test]
fn explain_without_a_code_is_a_usage_error() {
    Gwc::new().args(["explain"]).status(2).stderr_has("CODE").run();
}
