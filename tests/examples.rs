//! The files people read first stay true: every `examples/*.gw` compiles with
//! no errors and no warnings, the food court has the shape the README
//! promises, and every ```` ```gw ```` snippet of `docs/language.md` parses.
//! Snippets that are wrong on purpose are fenced ```` ```gw-error ```` or
//! ```` ```text ```` and skipped.

use gw_compiler::host::Host;
use gw_compiler::Compilation;
use std::io;
use std::path::{Path, PathBuf};

/// The compiler's [`Host`] over the real file system. The environment is
/// empty on purpose: an example must not depend on the machine it runs on.
struct FsHost;

impl Host for FsHost {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn env(&self, _name: &str) -> Option<String> {
        None
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "gw"))
        .collect();
    files.sort();
    files
}

fn compile(path: &Path) -> Compilation {
    let name = path.to_str().expect("a UTF-8 path");
    gw_compiler::compile(&FsHost, name).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

/// `file:line:col: GW0101 message` for each diagnostic, for failure output.
fn listing(c: &Compilation) -> String {
    c.diagnostics
        .iter()
        .map(|d| {
            let at = match d.span() {
                Some(span) => {
                    let (line, col) = c.sources.line_col(span);
                    format!("{}:{line}:{col}", c.sources.get(span.file).name)
                }
                None => "?".to_string(),
            };
            let help = d.help.as_deref().map(|h| format!(" (help: {h})")).unwrap_or_default();
            format!("  {at}: {} {}: {}{help}", d.code, d.severity.as_str(), d.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_example_checks_without_errors_or_warnings() {
    let files = examples();
    assert!(
        files.len() >= 2,
        "expected the quickstart and the food court, found {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let c = compile(file);
        if !c.diagnostics.is_empty() {
            failures.push(format!("{}:\n{}", file.display(), listing(&c)));
        }
    }
    assert!(
        failures.is_empty(),
        "examples with diagnostics:\n{}",
        failures.join("\n")
    );
}

#[test]
fn food_court_has_four_pooled_services_an_aggregate_and_tests() {
    let c = compile(&root().join("examples/food-court.gw"));
    let Some(config) = &c.config else {
        panic!("the food court does not compile:\n{}", listing(&c));
    };
    for service in ["login", "payment", "notification", "orders"] {
        let upstream = config
            .upstreams
            .iter()
            .find(|u| u.name.node == service)
            .unwrap_or_else(|| panic!("no upstream `{service}`"));
        let primaries = upstream.servers.iter().filter(|s| s.backup.is_none()).count();
        assert!(primaries >= 2, "upstream `{service}` has {primaries} primary servers");
        assert!(upstream.health.is_some(), "upstream `{service}` has no health check");
    }
    assert!(
        config.routes.iter().any(|r| r.aggregate.is_some()),
        "no aggregate route"
    );
    assert!(!config.tests.is_empty(), "no test block");
    assert!(c.plan.is_some(), "the food court does not compile to a plan");
    assert!(
        config
            .auths
            .iter()
            .any(|a| matches!(a.kind, gw_compiler::ast::AuthKind::Jwt(_))),
        "no jwt auth"
    );
}

/// The ```gw blocks of a markdown text, each with the line of its opening fence.
pub fn gw_snippets(markdown: &str) -> Vec<(usize, String)> {
    let mut snippets = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```") => {
                if fence.trim_start_matches('`').trim() == "gw" {
                    current = Some((n + 1, String::new()));
                } else {
                    // Another language (or none): skip to its closing fence.
                    current = Some((0, String::new()));
                }
            }
            None => {}
            Some(_) if fence.starts_with("```") => {
                if let Some((start, text)) = current.take() {
                    if start > 0 {
                        snippets.push((start, text));
                    }
                }
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    snippets
}

#[test]
fn every_gw_snippet_in_the_language_reference_parses() {
    let path = root().join("docs/language.md");
    let markdown = std::fs::read_to_string(&path).expect("docs/language.md exists");
    let snippets = gw_snippets(&markdown);
    assert!(snippets.len() >= 10, "only {} gw snippets found", snippets.len());
    let failures: Vec<String> = snippets
        .iter()
        .filter_map(|(line, text)| {
            gw_grammar::parse_file(text)
                .err()
                .map(|e| format!("docs/language.md snippet at line {line}:\n{e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn snippet_extraction_skips_other_fences() {
    let md = "```gw\nlisten :80\n```\n\n```gw-error\nlisten\n```\n```text\nx\n```\n```gw\nadmin 127.0.0.1:9901\n```\n";
    let snippets = gw_snippets(md);
    assert_eq!(
        snippets,
        vec![
            (1, "listen :80\n".to_string()),
            (11, "admin 127.0.0.1:9901\n".to_string())
        ]
    );
}

#[test]
fn language_reference_lists_every_code_with_its_severity() {
    let markdown = std::fs::read_to_string(root().join("docs/language.md")).expect("docs/language.md exists");
    let rows: Vec<(String, String)> = markdown
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", code, severity, _meaning, ""] if code.starts_with("GW") => {
                    Some((code.to_string(), severity.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    let expected: Vec<(String, String)> = gw_compiler::Code::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), c.severity().as_str().to_string()))
        .collect();
    assert_eq!(
        rows, expected,
        "the diagnostic table of docs/language.md and the code registry differ"
    );
}
