//! Recovery from syntax errors (compiler/src/syntax/mod.rs): after a
//! declaration that does not parse, parsing goes on at the next line that
//! starts, in column 1, with a declaration keyword, so an unclosed `{` no
//! longer hides every later mistake; and the recovery stays linear.

use gw_compiler::host::MemoryHost;
use gw_compiler::{compile_text, Code, Compilation};
use std::time::Duration;

fn compile(text: &str) -> Compilation {
    compile_text(&MemoryHost::new(), "app.gw", text)
}

fn codes(c: &Compilation) -> Vec<Code> {
    c.diagnostics.iter().map(|d| d.code).collect()
}

/// The text of the primary label of each diagnostic of `code`.
fn texts(c: &Compilation, code: Code) -> Vec<String> {
    c.diagnostics
        .iter()
        .filter(|d| d.code == code)
        .map(|d| c.sources.text(d.span().expect("a span")).to_string())
        .collect()
}

#[test]
fn an_unclosed_brace_hides_no_later_mistake() {
    let text = "\
listen 127.0.0.1:8080
upstream app {
  server 127.0.0.1:9000

route GET /a -> app
route GET /b -> ap2
route GET /c -> app { timeout 5parsecs }
upstream other {
  server 127.0.0.1:9001
  bogus 3
}
route GET /d -> other
";
    let c = compile(text);
    let found = codes(&c);
    // Every mistake, in order: the brace, the unknown name, the bad
    // duration, the unknown attribute.
    assert_eq!(
        found,
        vec![Code::GW0002, Code::GW0101, Code::GW0003, Code::GW0103],
        "{:#?}",
        c.diagnostics
    );
    let brace = &c.diagnostics[0];
    assert_eq!(c.sources.text(brace.span().expect("span")), "{");
    let next: Vec<_> = brace.labels.iter().filter(|l| !l.primary).collect();
    assert_eq!(next.len(), 1);
    assert_eq!(c.sources.text(next[0].span), "route", "points at where parsing goes on");
    assert_eq!(next[0].message, "the next declaration starts here");
    // `app` is defined by the declaration that did not parse: naming it is
    // no second mistake; `ap2` is one.
    assert_eq!(texts(&c, Code::GW0101), vec!["ap2"]);
    assert_eq!(texts(&c, Code::GW0003), vec!["5parsecs"]);
    assert_eq!(texts(&c, Code::GW0103), vec!["bogus"]);
    assert!(c.config.is_none() && c.plan.is_none());
}

#[test]
fn every_declaration_with_a_syntax_error_is_reported() {
    // Two syntax errors in two declarations, and a well-formed mistake after them.
    let text = "\
upstream app { server 127.0.0.1:9000 }
route GET /a -> app { timeout }
route GET /b -> app { require claim.x }
route GET /c -> nowhere
";
    let c = compile(text);
    assert_eq!(
        codes(&c),
        vec![Code::GW0001, Code::GW0001, Code::GW0101],
        "{:#?}",
        c.diagnostics
    );
    let lines: Vec<usize> = c
        .diagnostics
        .iter()
        .map(|d| c.sources.line_col(d.span().unwrap()).0)
        .collect();
    assert_eq!(lines, vec![2, 3, 4]);
}

#[test]
fn recovery_needs_the_keyword_in_column_1() {
    // Indented, `auth` and `limit` are attributes of the route whose block
    // is never closed: parsing does not resume there, so they are not
    // misread as (broken) declarations. The route at column 1 is where it
    // resumes.
    let text = "\
upstream app { server 127.0.0.1:9000 }
route GET /a -> app {
  auth users
  limit per_ip
route GET /b -> nowhere
";
    let c = compile(text);
    assert_eq!(codes(&c), vec![Code::GW0002, Code::GW0101], "{:#?}", c.diagnostics);
    assert_eq!(texts(&c, Code::GW0101), vec!["nowhere"]);
}

#[test]
fn a_declaration_keyword_in_column_1_ends_an_unclosed_block() {
    // `auth` at column 1 is a declaration, even after an unclosed block.
    let text = "\
upstream app { server 127.0.0.1:9000 }
route GET /a -> app {
  timeout 5s
auth users jwt { issuer \"i\" audience \"a\" algorithms RS256 leeway forever public_key file(\"k.pem\") }
";
    let c = compile(text);
    let found = codes(&c);
    assert_eq!(found[0], Code::GW0002, "{:#?}", c.diagnostics);
    // The auth block was parsed: its own bad `leeway` is reported.
    assert!(
        c.diagnostics
            .iter()
            .any(|d| c.sources.text(d.span().unwrap()) == "forever" && d.message.contains("duration")),
        "{:#?}",
        c.diagnostics
    );
}

#[test]
fn a_valid_file_is_parsed_as_before_whatever_its_indentation() {
    // Without a syntax error nothing depends on columns: attributes at
    // column 1 inside a block, several declarations on one line.
    let text = "\
listen 127.0.0.1:8080
upstream app { server 127.0.0.1:9000 }
auth users jwt {
issuer \"i\"
audience \"a\"
algorithms HS256
secret env(\"S\")
}
limit per_ip { rate 1/s }
route GET /a -> app {
auth users
limit per_ip
}
route GET /b -> app; route GET /c -> app
";
    let host = MemoryHost::new().var("S", "a-long-random-secret-for-tests");
    let c = compile_text(&host, "app.gw", text);
    assert!(c.diagnostics.is_empty(), "{:#?}", c.diagnostics);
    assert_eq!(c.config.as_ref().map(|c| c.routes.len()), Some(3));
}

#[test]
fn a_large_valid_file_with_attributes_in_column_1_parses_whole() {
    // Parsing goes in batches that end where a line starts with a
    // declaration keyword; here such lines are attributes (`auth` in
    // column 1 inside route blocks), so batches end inside blocks. Such a
    // batch is parsed again a declaration at a time: nothing is reported.
    let mut text = String::from(
        "listen 127.0.0.1:8080\nupstream app { server 127.0.0.1:9000 }\n\
         auth users jwt { issuer \"i\" audience \"a\" algorithms HS256 secret env(\"S\") }\n",
    );
    let n = 5_000; // about 200 KB: several batches
    for i in 0..n {
        text.push_str(&format!("route GET /r{i} -> app {{\nauth users\ntimeout 5s\n}}\n"));
    }
    let host = MemoryHost::new().var("S", "a-long-random-secret-for-tests");
    let c = compile_text(&host, "app.gw", &text);
    assert!(
        c.diagnostics.is_empty(),
        "{:#?}",
        &c.diagnostics[..c.diagnostics.len().min(3)]
    );
    let routes = &c.config.as_ref().expect("a configuration").routes;
    assert_eq!(routes.len(), n);
    assert!(routes.iter().all(|r| r.auth.is_some() && r.timeout.is_some()));
    // A batch that surely ends inside a block: the first line with a
    // keyword in column 1 after 64 KiB is the route's own `auth`.
    let long = format!(
        "listen 127.0.0.1:8080\nupstream app {{ server 127.0.0.1:9000 }}\n\
         auth users jwt {{ issuer \"i\" audience \"a\" algorithms HS256 secret env(\"S\") }}\n\
         route GET /long -> app {{\n  set response header x-pad \"{}\"\nauth users\n}}\nroute GET /next -> app\n",
        "p".repeat(70 * 1024)
    );
    let c = compile_text(&host, "app.gw", &long);
    assert!(c.diagnostics.is_empty(), "{:#?}", c.diagnostics);
    let routes = &c.config.as_ref().expect("a configuration").routes;
    assert_eq!(routes.len(), 2);
    assert!(routes[0].auth.is_some());
    // And a mistake after those batches is still found, once.
    text.push_str("route GET /last -> nowhere\n");
    let c = compile_text(&host, "app.gw", &text);
    assert_eq!(codes(&c), vec![Code::GW0101]);
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn recovery_stays_linear() {
    use crate::checks::thread_cpu_time;
    // 40,000 declarations with syntax errors, each reported: parsing each one
    // to the end of the file (quadratic) would take hours. The bound is on
    // this thread's CPU time, which other processes taking the cores do
    // not stretch.
    let n = 40_000;
    let mut text = String::from("upstream app { server 127.0.0.1:9000 }\n");
    for i in 0..n {
        text.push_str(&format!("route GET /r{i} -> app {{ timeout }}\n"));
    }
    let start = thread_cpu_time();
    let c = compile(&text);
    let took = thread_cpu_time() - start;
    assert_eq!(c.diagnostics.iter().filter(|d| d.code == Code::GW0001).count(), n);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// Nesting past the limit is reported once per declaration that goes too
/// deep, at the bracket that does, however deep it goes; that declaration
/// is skipped and the rest of the file is checked as usual. Unclosed
/// brackets adding up across declarations refuse the file, once.
#[test]
fn too_deep_is_once_per_declaration_and_hides_no_other_mistake() {
    let deep_list = format!(
        "route GET /a -> app {{ x {}{} }}\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let deep_block = format!("route GET /b -> app {{ y {}\n", "{".repeat(100));
    let text = format!(
        "listen 127.0.0.1:8080\nupstream app {{ server 127.0.0.1:9001 }}\n{deep_list}{deep_block}route GET /c -> ap\n"
    );
    let c = compile(&text);
    let deep: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("nested more than"))
        .map(|d| c.sources.line_col(d.span().expect("a span")))
        .collect();
    assert_eq!(deep, [(3, 88), (4, 88)], "{:?}", c.diagnostics);
    assert!(codes(&c).contains(&Code::GW0101), "{:?}", codes(&c));
    // 40 unclosed braces in each of three routes: 120 deep in all.
    let route = |p: &str| format!("route GET /{p} -> app {{ {}\n", "{ x ".repeat(40));
    let text = format!("{}{}{}", route("a"), route("b"), route("c"));
    let c = compile(&text);
    let deep = c
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("nested more than"))
        .count();
    assert_eq!(deep, 1, "{:?}", codes(&c));
}
