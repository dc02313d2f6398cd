//! The runtime's modules import in one direction (ARCHITECTURE.md, "The
//! runtime's layers"). This reads `runtime/src/**/*.rs`, collects every
//! path into the crate each file names (`crate::…`, `super::…`, `self::…`,
//! grouped `use` lists included; comments and literals skipped), and fails
//! when:
//!
//! - the top-level modules (each file or folder directly under
//!   `runtime/src`) import each other in a cycle;
//! - the files of one folder import each other in a cycle (a folder's
//!   `mod.rs` is the folder itself: its files may use what it defines);
//! - a module imports across a rule of the layout: the server side
//!   (`upstream/`) never the client side, the proxy or the gateway's state;
//!   the policies (`policy/`) only the small shared parts; the small shared
//!   parts only each other;
//! - a path names the crate root (`crate::Gateway`) instead of a module.
//!
//! Each failure names the modules and the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The small shared parts: they import only each other.
const SHARED: &[&str] = &[
    "body", "bufpool", "clock", "error", "log", "metrics", "request", "secrets", "text",
];

/// What a top-level module must never import, and why.
const NEVER: &[(&str, &[&str], &str)] = &[
    (
        "upstream",
        &["listen", "proxy", "policy", "gateway", "loaded", "conn"],
        "the server side never sees the client side, a request's life or the gateway's state",
    ),
    (
        "policy",
        &["listen", "proxy", "upstream", "gateway", "loaded", "conn"],
        "a policy takes what it reads (the plan's policies, the request, the client's address)",
    ),
];

/// A module's path below the crate root: `listen/h1server.rs` is
/// `["listen", "h1server"]`, `listen/mod.rs` is `["listen"]`, `lib.rs` is `[]`.
type ModPath = Vec<String>;

/// One import: from a file's module to the module a path names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    from: ModPath,
    to: ModPath,
    file: String,
}

fn module_of(file: &str) -> ModPath {
    let file = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = file.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// `text` with comments, string and character literals blanked out
/// (newlines kept), so that only code is left to read.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, 2);
            while j < rest.len() && depth > 0 {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if rest[0] == b'r' && (rest.starts_with(b"r\"") || rest.starts_with(b"r#")) && !ident_before(b, i) {
            // A raw string: r"…", r#"…"#, …
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let start = 2 + hashes;
            let end = rest[start..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| start + p + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A character literal ('a', '\n', '\u{1F600}'), or a lifetime ('a).
            let literal_end = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch) == Some(&b'\'')).then_some(2 + ch)
            };
            match literal_end {
                Some(end) => {
                    blank(&mut out, &rest[..end]);
                    i += end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        i += 1;
        match c {
            ':' if chars.get(i) == Some(&':') => {
                i += 1;
                out.push(Token::PathSep);
            }
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            c if c.is_whitespace() => {}
            c => out.push(Token::Other(c)),
        }
    }
    out
}

/// Every path of `tokens[at..]` that starts there (`a::b::{c, d::e}` gives
/// `a::b::c` and `a::b::d::e`), and where the path ends.
fn paths_at(tokens: &[Token], at: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut i = at;
    while let Some(Token::Ident(name)) = tokens.get(i) {
        prefix.push(name.clone());
        if tokens.get(i + 1) != Some(&Token::PathSep) {
            return (vec![prefix], i + 1);
        }
        i += 2;
        if tokens.get(i) == Some(&Token::Open) {
            let mut all = Vec::new();
            i += 1;
            loop {
                match tokens.get(i) {
                    None => return (all, i),
                    Some(Token::Close) => return (all, i + 1),
                    Some(Token::Comma) => i += 1,
                    Some(Token::Ident(_)) => {
                        let (inner, next) = paths_at(tokens, i);
                        all.extend(inner.into_iter().map(|p| prefix.iter().cloned().chain(p).collect()));
                        i = next;
                    }
                    Some(_) => i += 1,
                }
            }
        }
    }
    (vec![prefix], i)
}

/// The imports of one file: every `crate::`, `super::` and `self::` path,
/// resolved against the module it is written in (inline `mod x { … }`
/// blocks included) to the longest prefix that is one of `modules`.
fn imports_of(file: &str, text: &str, modules: &BTreeSet<ModPath>) -> Vec<Import> {
    let from = module_of(file);
    let toks = tokens(&code_of(text));
    // The inline modules open at each depth: (depth at their `{`, name).
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Token::Open => depth += 1,
            Token::Close => {
                if inline.last().is_some_and(|(d, _)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Ident(kw) if kw == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Open)) = (toks.get(i + 1), toks.get(i + 2)) {
                    inline.push((depth + 1, name.clone()));
                }
            }
            Token::Ident(first) if matches!(first.as_str(), "crate" | "super" | "self") => {
                let after_sep = i > 0 && toks[i - 1] == Token::PathSep;
                if !after_sep {
                    let here: ModPath = from
                        .iter()
                        .cloned()
                        .chain(inline.iter().map(|(_, n)| n.clone()))
                        .collect();
                    let (paths, next) = paths_at(&toks, i);
                    for path in paths {
                        if let Some(to) = resolve(&here, &path, modules) {
                            out.push(Import {
                                from: from.clone(),
                                to,
                                file: file.to_string(),
                            });
                        }
                    }
                    i = next;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The module `path` (written in module `here`) names: the longest prefix of
/// its absolute form that is a file of the crate. `None` for a path that
/// stays in `here`'s own file or names nothing (`crate` alone).
fn resolve(here: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    if path.len() < 2 {
        return None; // `pub(crate)`, `&self`, `use super::*`: no module named
    }
    let mut absolute: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => here.clone(),
        Some("super") => here.clone(),
        _ => return None,
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        absolute.pop();
        while rest.first().is_some_and(|s| s == "super") {
            absolute.pop();
            rest = &rest[1..];
        }
    }
    absolute.extend(rest.iter().cloned());
    (0..=absolute.len())
        .rev()
        .map(|n| absolute[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// The runtime's files, relative to `runtime/src`, and their text.
fn runtime_files() -> Vec<(String, String)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runtime/src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.push((relative(&path, &src), text));
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// What is wrong with the imports of `files` (empty when nothing is).
fn check(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<ModPath> = files.iter().map(|(f, _)| module_of(f)).collect();
    let imports: Vec<Import> = files
        .iter()
        .flat_map(|(f, text)| imports_of(f, text, &modules))
        .collect();
    let mut errors = Vec::new();
    let mut top: Graph = BTreeMap::new();
    let mut folders: BTreeMap<String, Graph> = BTreeMap::new();
    for import in &imports {
        if import.from.is_empty() {
            continue; // lib.rs: the crate's face uses everything
        }
        if import.to.is_empty() {
            errors.push(format!(
                "{} names the crate root (`crate::…` that is not a module): name the module instead",
                import.file
            ));
            continue;
        }
        let (a, b) = (&import.from[0], &import.to[0]);
        if a != b {
            top.entry(a.clone())
                .or_default()
                .entry(b.clone())
                .or_default()
                .insert(import.file.clone());
            continue;
        }
        // Within one folder: its files (not the folder's own mod.rs).
        if import.from.len() >= 2 && import.to.len() >= 2 && import.from[1] != import.to[1] {
            folders
                .entry(a.clone())
                .or_default()
                .entry(import.from[1].clone())
                .or_default()
                .entry(import.to[1].clone())
                .or_default()
                .insert(import.file.clone());
        }
    }
    if let Some(cycle) = find_cycle(&top) {
        errors.push(format!(
            "the runtime's modules import each other in a cycle: {}",
            describe(&cycle, &top, "")
        ));
    }
    for (folder, graph) in &folders {
        if let Some(cycle) = find_cycle(graph) {
            errors.push(format!(
                "the files of {folder}/ import each other in a cycle: {}",
                describe(&cycle, graph, &format!("{folder}/"))
            ));
        }
    }
    for (from, to) in top.iter().flat_map(|(a, bs)| bs.keys().map(move |b| (a, b))) {
        let files = || top[from][to].iter().cloned().collect::<Vec<_>>().join(", ");
        if SHARED.contains(&from.as_str()) && !SHARED.contains(&to.as_str()) {
            errors.push(format!(
                "{from} is a small shared part and imports {to} ({}): a shared part imports only the others",
                files()
            ));
        }
        for (module, never, why) in NEVER {
            if from == module && never.contains(&to.as_str()) {
                errors.push(format!("{from} imports {to} ({}): {why}", files()));
            }
        }
    }
    errors
}

/// Module → module it imports → the files that do.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// A cycle of `graph`, as its modules in order (the first repeated last).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// `a -> b (in x.rs) -> a (in y.rs)`.
fn describe(cycle: &[String], graph: &Graph, folder: &str) -> String {
    let mut text = format!("{folder}{}", cycle[0]);
    for pair in cycle.windows(2) {
        let files: Vec<&str> = graph[&pair[0]][&pair[1]].iter().map(String::as_str).collect();
        text.push_str(&format!(" -> {folder}{} (in {})", pair[1], files.join(", ")));
    }
    text
}

#[test]
fn the_runtime_s_modules_import_in_one_direction() {
    let files = runtime_files();
    assert!(
        files.iter().any(|(f, _)| f == "lib.rs") && files.len() > 20,
        "the runtime's sources were not found"
    );
    let errors = check(&files);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_string(), text.to_string())
}

#[test]
fn a_cycle_between_top_level_modules_is_named() {
    let files = [
        file("lib.rs", "mod a; mod b;"),
        file("a/mod.rs", "mod x; use crate::b::thing;"),
        file("a/x.rs", ""),
        // Grouped, and behind a comment and a string that name `crate::a`.
        file(
            "b.rs",
            "// crate::a::nothing\nconst S: &str = \"crate::a\";\nuse crate::{text, a::x::Y};",
        ),
        file("text.rs", "pub(crate) fn f(&self) {}"),
    ];
    let errors = check(&files);
    assert_eq!(
        errors,
        ["the runtime's modules import each other in a cycle: a -> b (in a/mod.rs) -> a (in b.rs)"]
    );
}

#[test]
fn a_cycle_between_the_files_of_a_folder_is_named_and_the_folder_s_own_items_are_not_one() {
    let files = [
        file("lib.rs", "mod up;"),
        file(
            "up/mod.rs",
            "mod pool; mod client; pub struct SendError; use pool::Pool;",
        ),
        // A file may use its folder's own items, and its folder may use it.
        file("up/pool.rs", "use super::SendError; use super::client::usable;"),
        file(
            "up/client.rs",
            "use super::{SendError, pool::Pool};\n#[cfg(test)]\nmod tests { use super::*; fn t() { let c = 'x'; } }",
        ),
    ];
    let errors = check(&files);
    assert_eq!(
        errors,
        ["the files of up/ import each other in a cycle: up/client -> up/pool (in up/client.rs) -> up/client (in up/pool.rs)"]
    );
}

#[test]
fn the_layout_s_rules_are_kept() {
    let files = [
        file("lib.rs", ""),
        file("upstream/mod.rs", "use crate::listen::Conn; use crate::body::Body;"),
        file("listen.rs", "use crate::upstream::Upstream;"),
        file("policy/mod.rs", "fn f(l: &crate::loaded::LoadedPlan) {}"),
        file("loaded.rs", "use crate::policy::Policies;"),
        file("body.rs", "use crate::upstream::UpstreamBody;"),
        file("error.rs", "use crate::Gateway;"),
    ];
    let errors = check(&files);
    assert_eq!(
        errors,
        [
            "error.rs names the crate root (`crate::…` that is not a module): name the module instead",
            "the runtime's modules import each other in a cycle: body -> upstream (in body.rs) -> body (in upstream/mod.rs)",
            "body is a small shared part and imports upstream (body.rs): a shared part imports only the others",
            "policy imports loaded (policy/mod.rs): a policy takes what it reads (the plan's policies, the request, the client's address)",
            "upstream imports listen (upstream/mod.rs): the server side never sees the client side, a request's life or the gateway's state",
        ]
    );
}
