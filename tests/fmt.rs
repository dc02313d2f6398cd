//! `gwc fmt`: the canonical layout is idempotent and never changes meaning.
//! Over every example, every `gw` snippet of docs/language.md, generated
//! configurations, the same configurations laid out at random (blanks,
//! newlines and comments between any two tokens) and mutated ones:
//! `fmt(fmt(x)) == fmt(x)`, every comment is kept, and the compiler says the
//! same about `x` and `fmt(x)` — the same plan JSON (source positions
//! aside) and the same diagnostics (codes and messages). Plus the command
//! itself: `--check`, in-place rewriting, stdin, and files that do not parse.

use crate::support::{Gwc, TempDir};
use gw_compiler::format::{format, format_source, tokens_of, Kind, Refused};
use gw_compiler::host::{Host, MemoryHost};
use proptest::prelude::*;
use std::io;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real file system, except that `name` reads as `text` and the
/// environment is empty (examples read key files beside them).
struct Overlay<'a> {
    name: &'a str,
    text: &'a str,
    memory: Option<&'a MemoryHost>,
}

impl Host for Overlay<'_> {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        if path == self.name {
            return Ok(self.text.as_bytes().to_vec());
        }
        match self.memory {
            Some(m) => m.read(path),
            None => std::fs::read(path),
        }
    }

    fn env(&self, _name: &str) -> Option<String> {
        None
    }
}

/// What the compiler makes of `text` as the file `name`: the plan JSON
/// without source positions, and each diagnostic's code and message.
fn meaning(name: &str, text: &str, memory: Option<&MemoryHost>) -> (Option<serde_json::Value>, Vec<String>) {
    let host = Overlay { name, text, memory };
    let c = gw_compiler::compile(&host, name).expect("the root reads from memory");
    let plan = c.plan.as_ref().map(|p| {
        let mut v: serde_json::Value = serde_json::from_str(&p.to_json()).expect("plan JSON");
        strip_origins(&mut v);
        v
    });
    let diagnostics = c
        .diagnostics
        .iter()
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    (plan, diagnostics)
}

/// Removes every `origin` (file, line, column of a route) from plan JSON.
fn strip_origins(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("origin");
            map.values_mut().for_each(strip_origins);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_origins),
        _ => {}
    }
}

fn comments(text: &str) -> Vec<String> {
    tokens_of(text)
        .expect("parses")
        .iter()
        .filter(|t| t.kind == Kind::Comment)
        .map(|t| t.text(text).trim_end().to_string())
        .collect()
}

/// Formats `text`, checks idempotence, comments and meaning; returns the
/// formatted text.
fn assert_formats_faithfully(name: &str, text: &str, memory: Option<&MemoryHost>) -> String {
    let once = match format(name, text) {
        Ok(f) => f,
        Err(e) => panic!("{name} was not formatted: {e:?}\n{text}"),
    };
    let twice = format(name, &once).unwrap_or_else(|e| panic!("{name}: the formatted text was refused: {e:?}"));
    assert_eq!(once, twice, "{name}: formatting is not idempotent\n--- input:\n{text}");
    assert_eq!(comments(text), comments(&once), "{name}: comments changed");
    let before = meaning(name, text, memory);
    let after = meaning(name, &once, memory);
    assert_eq!(before.1, after.1, "{name}: diagnostics changed\n--- formatted:\n{once}");
    assert_eq!(before.0, after.0, "{name}: the plan changed\n--- formatted:\n{once}");
    once
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "gw"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_formatted_and_formats_faithfully() {
    let files = examples();
    assert!(files.len() >= 2);
    for path in files {
        let name = path.to_str().expect("UTF-8 path");
        let text = std::fs::read_to_string(&path).expect("readable example");
        let formatted = assert_formats_faithfully(name, &text, None);
        assert!(
            meaning(name, &text, None).0.is_some(),
            "{name} compiles to a plan, so the plan comparison means something"
        );
        assert_eq!(formatted, text, "{name} is not formatted: run `gwc fmt {name}`");
    }
}

#[test]
fn every_docs_snippet_formats_faithfully() {
    let markdown = std::fs::read_to_string(root().join("docs/language.md")).expect("docs/language.md");
    let snippets = crate::examples::gw_snippets(&markdown);
    let mut with_plan = 0;
    for (line, text) in &snippets {
        let name = format!("snippet-{line}.gw");
        let memory = MemoryHost::new();
        assert_formats_faithfully(&name, text, Some(&memory));
        with_plan += usize::from(meaning(&name, text, Some(&memory)).0.is_some());
    }
    // Snippets that are whole configurations compile to a plan; the rest
    // (fragments naming things defined elsewhere) still keep their diagnostics.
    assert!(with_plan >= 3, "only {with_plan} snippets compile to a plan");
}

#[test]
fn generated_configurations_format_faithfully() {
    for (routes, upstreams) in [(1, 1), (40, 3), (400, 20)] {
        let text = crate::robustness::generated_config(routes, upstreams);
        let memory = MemoryHost::new();
        assert_formats_faithfully("gen.gw", &text, Some(&memory));
    }
    let memory = MemoryHost::new().file("common.gw", "upstream extra { server 10.0.0.1:80 }");
    assert_formats_faithfully("seed.gw", crate::robustness::SEED, Some(&memory));
}

/// The layout of a canonical file reads as intended (a hand-written check of
/// each rule, beside the properties).
#[test]
fn canonical_layout() {
    let input = "limit per_user {\n  rate 100/min; burst 20; key claim.sub;\n}\n\n\n\
        route GET, HEAD /x ->a{auth u limit a,b require claim.r in [ \"a\" , \"b\" ] }\n\
        upstream a { server 1.2.3.4:80 weight 2 # why two\n backup\n   # own line\n health { path /h } \
        balance hash( claim.sub ) }  # trailing\n\
        limit per_ip { rate 10/s burst 10 key client_ip }\n\
        test \"t\" {\n GET /x -> a\n DELETE /longer/path -> 404 # gone\n}\n";
    let expected = "limit per_user {\n  rate 100/min;\n  burst 20;\n  key claim.sub;\n}\n\n\
        route GET,HEAD /x -> a { auth u limit a, b require claim.r in [\"a\", \"b\"] }\n\
        upstream a {\n  server 1.2.3.4:80 weight 2  # why two\n    backup\n  # own line\n  health { path /h }\n  \
        balance hash(claim.sub)\n}  # trailing\n\
        limit per_ip { rate 10/s burst 10 key client_ip }\n\
        test \"t\" {\n  GET    /x           -> a\n  DELETE /longer/path -> 404  # gone\n}\n";
    let out = format("a.gw", input).expect("formats");
    assert_eq!(out, expected, "got:\n{out}");
}

#[test]
fn a_one_line_block_that_does_not_fit_is_split() {
    let long = format!(
        "route /x -> a {{ set request header x-a \"{}\" timeout 5s }}\n",
        "v".repeat(80)
    );
    let out = format("a.gw", &long).expect("formats");
    assert!(out.starts_with("route /x -> a {\n  set request header x-a \""), "{out}");
    assert!(out.ends_with("\n  timeout 5s\n}\n"), "{out}");
    let fits = "route /x -> a { timeout 5s }\n";
    assert_eq!(format("a.gw", fits).expect("formats"), fits);
}

#[test]
fn trailing_comments_align_within_their_block_and_continuations_follow() {
    let input = "upstream a {\n  server 1.2.3.4:80 # one\n  timeout 30s       # two\n                    # two, continued\n\n  connect_timeout 1s # after a blank line\n}\n";
    let out = format("a.gw", input).expect("formats");
    assert_eq!(
        out,
        "upstream a {\n  server 1.2.3.4:80  # one\n  timeout 30s        # two\n                     # two, continued\n\n  connect_timeout 1s  # after a blank line\n}\n"
    );
}

#[test]
fn files_that_do_not_parse_are_refused_with_their_diagnostics() {
    for (text, code) in [
        ("upstream a { server 1.2.3.4:80", "GW0002"),
        ("route /x -> a }", "GW0001"),
        ("upstrem a { server 1.2.3.4:80 }", "GW0001"),
        ("import \"open\nlisten :80\n", "GW0002"),
    ] {
        match format("bad.gw", text) {
            Err(Refused::Syntax { diagnostics, .. }) => {
                assert!(
                    diagnostics.iter().any(|d| d.code.as_str() == code),
                    "{text}: {diagnostics:?}"
                )
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    match format_source("bad.gw", b"route /x -> a # caf\xff\n") {
        Err(Refused::Syntax { diagnostics, .. }) => assert!(diagnostics[0].message.contains("UTF-8")),
        other => panic!("{other:?}"),
    }
}

/// A string left open inside an unknown attribute is no syntax error (the
/// attribute is GW0103), but it runs to the end of its line: the next token
/// of the attribute must stay on the next line, or the string would swallow it.
#[test]
fn an_open_string_in_an_unknown_attribute_keeps_its_line() {
    let input = "upstream a {\n  server 1.2.3.4:80 oops \" {\nweight 3\n}\n";
    let out = format("a.gw", input).expect("formats");
    assert_eq!(out, "upstream a {\n  server 1.2.3.4:80\n  oops \" {\n    weight 3\n}\n");
    assert_formats_faithfully("a.gw", input, Some(&MemoryHost::new()));
}

#[test]
fn whitespace_and_comment_only_files() {
    assert_eq!(format("a.gw", "").expect("formats"), "");
    assert_eq!(format("a.gw", "\n\n  \n").expect("formats"), "");
    assert_eq!(
        format("a.gw", "  # only\r\n\n\n# comments  \n").expect("formats"),
        "# only\n\n# comments\n"
    );
}

// ------------------------------------------------------------------ properties

/// Bases for the random layouts: configurations that parse.
fn bases() -> Vec<(String, MemoryHost)> {
    let common = MemoryHost::new().file("common.gw", "upstream extra { server 10.0.0.1:80 }");
    let mut out = vec![
        (crate::robustness::SEED.to_string(), common),
        (crate::robustness::generated_config(24, 3), MemoryHost::new()),
    ];
    for path in examples() {
        let text = std::fs::read_to_string(&path).expect("example");
        // Key files the examples name, read into memory.
        let mut host = MemoryHost::new();
        for key in ["keys/jwks.json"] {
            if let Ok(bytes) = std::fs::read(root().join("examples").join(key)) {
                host = host.file(&format!("examples/{key}"), bytes);
            }
        }
        out.push((text, host));
    }
    out
}

/// `text` with its tokens separated at random: blanks, newlines, blank
/// lines and comments wherever there was a blank before.
fn relayout(text: &str, choices: &[u8]) -> String {
    const SEPARATORS: &[&str] = &[
        " ",
        "\n",
        "  \n\n\t",
        " ",
        "\n\n\n",
        "  # note\n",
        "\n  # own line\n",
        "\t",
    ];
    let tokens = tokens_of(text).expect("a base parses");
    let mut out = String::new();
    let mut prev_end = 0;
    for (n, tok) in tokens.iter().enumerate() {
        let gap = &text[prev_end..tok.start];
        if n > 0 {
            let prev_comment = tokens[n - 1].kind == Kind::Comment;
            if gap.is_empty() {
                // Tokens written together stay together (`env(`, `GET,HEAD`).
            } else {
                let sep = SEPARATORS[choices[n % choices.len()] as usize % SEPARATORS.len()];
                out.push_str(sep);
                if prev_comment && !sep.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        out.push_str(tok.text(text));
        prev_end = tok.end;
    }
    out.push('\n');
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_layouts_format_to_the_same_meaning(base in 0..5usize, choices in proptest::collection::vec(any::<u8>(), 1..64)) {
        let bases = bases();
        let (text, host) = &bases[base % bases.len()];
        let name = if base % bases.len() >= 2 { "examples/x.gw" } else { "fuzz.gw" };
        let laid_out = relayout(text, &choices);
        assert_formats_faithfully(name, &laid_out, Some(host));
    }

    #[test]
    fn mutated_configurations_format_faithfully_or_are_refused(ms in proptest::collection::vec(crate::robustness::mutation(), 1..4)) {
        let bytes = ms.iter().fold(crate::robustness::SEED.as_bytes().to_vec(), crate::robustness::apply);
        let host = MemoryHost::new().file("common.gw", "upstream extra { server 10.0.0.1:80 }");
        match format_source("fuzz.gw", &bytes) {
            Ok(_) => {
                let text = String::from_utf8(bytes).expect("formatted input is UTF-8");
                assert_formats_faithfully("fuzz.gw", &text, Some(&host));
            }
            Err(Refused::Syntax { diagnostics, .. }) => prop_assert!(!diagnostics.is_empty()),
            Err(Refused::Unsafe(why)) => panic!("unsafe layout: {why}\n{:?}", String::from_utf8_lossy(&bytes)),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Err(Refused::Unsafe(why)) = format_source("fuzz.gw", &bytes) {
            panic!("unsafe layout: {why}\n{:?}", String::from_utf8_lossy(&bytes));
        }
    }
}

// ------------------------------------------------------------------ the command

const MESSY: &str = "upstream app {server 127.0.0.1:3001}\nroute /x -> app {   timeout 5s }\n";
const TIDY: &str = "upstream app { server 127.0.0.1:3001 }\nroute /x -> app { timeout 5s }\n";

#[test]
fn fmt_rewrites_files_in_place_and_check_reports_without_writing() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("app.gw"), MESSY).expect("write");
    std::fs::write(dir.path().join("tidy.gw"), TIDY).expect("write");
    Gwc::new()
        .current_dir(dir.path())
        .args(["fmt", "--check", "app.gw", "tidy.gw"])
        .status(1)
        .stdout("app.gw: not formatted (first difference at line 1)\n")
        .run();
    assert_eq!(std::fs::read_to_string(dir.path().join("app.gw")).expect("read"), MESSY);
    Gwc::new()
        .current_dir(dir.path())
        .args(["fmt", "app.gw", "tidy.gw"])
        .status(0)
        .stderr("formatted app.gw\n")
        .run();
    assert_eq!(std::fs::read_to_string(dir.path().join("app.gw")).expect("read"), TIDY);
    Gwc::new()
        .current_dir(dir.path())
        .args(["fmt", "--check", "app.gw", "tidy.gw"])
        .status(0)
        .stdout("")
        .run();
}

#[test]
fn fmt_reads_stdin_and_writes_stdout() {
    Gwc::new().args(["fmt", "-"]).stdin(MESSY).status(0).stdout(TIDY).run();
    Gwc::new().args(["fmt"]).stdin(MESSY).status(0).stdout(TIDY).run();
    Gwc::new()
        .args(["fmt", "--check", "-"])
        .stdin(MESSY)
        .status(1)
        .stdout_has("<stdin>: not formatted")
        .run();
}

#[test]
fn fmt_leaves_a_file_that_does_not_parse_untouched() {
    let dir = TempDir::new();
    let broken = "upstream app {  server 127.0.0.1:3001\nroute /x -> app\n";
    std::fs::write(dir.path().join("broken.gw"), broken).expect("write");
    Gwc::new()
        .current_dir(dir.path())
        .args(["fmt", "broken.gw"])
        .status(1)
        .stderr_has("GW0002")
        .stderr_has("broken.gw: not formatted: it does not parse")
        .run();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("broken.gw")).expect("read"),
        broken
    );
    Gwc::new()
        .args(["fmt", "missing.gw"])
        .status(2)
        .stderr_has("cannot read `missing.gw`")
        .run();
}

#[test]
fn ci_checks_the_examples_are_formatted() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains("fmt --check examples/*.gw"),
        ".ci/run does not run `gwc fmt --check` over the examples"
    );
}
