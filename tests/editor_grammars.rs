//! The editor grammars never fall behind the language. gw.pest is the
//! authority; the VS Code extension's TextMate grammar
//! (editors/vscode/syntaxes/gw.tmLanguage.json) and the tree-sitter grammar
//! (editors/tree-sitter-gw) must know exactly its keywords and attribute
//! names, reference roots and units, and agree with each other on the value
//! words they colour (methods, strategies, algorithms, ...). The tree-sitter
//! grammar must also parse, with no ERROR node, every example, every docs
//! snippet and everything else gw.pest parses cleanly; its corpus
//! (test/corpus, the format of `tree-sitter test`) is run here with the
//! committed parser, and its queries must compile and colour every keyword.
//! The VS Code snippets must be valid `.gw`.

use gw_grammar::{Pair, Rule};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tree_sitter::{Node, Parser, Query, QueryCursor, StreamingIterator, Tree};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    let full = root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

type Words = BTreeSet<String>;

/// A name-like literal: `[A-Za-z_][A-Za-z0-9_]*` with at least one letter.
fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

// ------------------------------------------------------------------ the sources of words

/// What one source knows of the language's words. A source leaves out the
/// categories it has no opinion on (gw.pest knows no value words: the
/// compiler checks values).
#[derive(Default)]
struct Source {
    name: &'static str,
    /// Declaration keywords, attribute names and the words inside statements
    /// (`weight`, `on`, `bearer`, `has`, ...): gw.pest's `k_*` and `*_kw` rules.
    keywords: Option<Words>,
    /// `claim`, `header`, ...: what a reference starts with.
    reference_roots: Option<Words>,
    /// Units of durations, sizes and rates.
    units: Option<Words>,
    /// Words that stand in value slots and get their own colour: methods,
    /// strategies, algorithms, auth and store kinds, built-in functions, ...
    values: Option<Words>,
}

/// Every source of the language's words, compared category by category.
///
/// To add one, write a function that returns its `Source` with the categories
/// it has, and list it here: `keywords_and_attributes_agree` then holds it to
/// the others.
fn sources() -> Vec<Source> {
    vec![gw_pest(), textmate(), tree_sitter_grammar(), language_server()]
}

/// The language server's completion and hover table (`gw_compiler::schema`):
/// its keywords. (Its value words mix in reference prefixes such as `claim.`
/// and statuses, so they are not compared; tests/schema.rs holds the table to
/// gw.pest and docs/language.md keyword by keyword and context by context.)
fn language_server() -> Source {
    Source {
        name: "gw_compiler::schema::KEYWORDS (gwc lsp)",
        keywords: Some(
            gw_compiler::schema::KEYWORDS
                .iter()
                .map(|k| k.keyword.to_string())
                .collect(),
        ),
        ..Default::default()
    }
}

/// The string literals of each rule of gw.pest, by rule name.
fn pest_rules() -> BTreeMap<String, Vec<String>> {
    let text = read("grammar/src/gw.pest");
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        // A rule starts at `name = {`, `name = @{`, ...; a body may go on over the next lines.
        let rule_start = line.split_once('=').filter(|(name, body)| {
            !line.starts_with(char::is_whitespace)
                && is_word(name.trim())
                && ["{", "_{", "@{", "${", "!{"]
                    .iter()
                    .any(|open| body.trim_start().starts_with(open))
        });
        let body = match rule_start {
            Some((name, body)) => {
                current = Some(name.trim().to_string());
                body
            }
            None => line,
        };
        if let Some(rule) = &current {
            rules.entry(rule.clone()).or_default().extend(string_literals(body));
        }
    }
    rules
}

/// The `"..."` literals of a pest rule body.
fn string_literals(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut lit = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(e) = chars.next() {
                            lit.push('\\');
                            lit.push(e);
                        }
                    }
                    '"' => break,
                    c => lit.push(c),
                }
            }
            out.push(lit);
        }
    }
    out
}

fn gw_pest() -> Source {
    let rules = pest_rules();
    let words_of = |names: &mut dyn Iterator<Item = &String>| -> Words {
        names
            .flat_map(|name| rules[name].iter())
            .filter(|w| is_word(w))
            .cloned()
            .collect()
    };
    let keywords = words_of(&mut rules.keys().filter(|n| n.starts_with("k_") || n.ends_with("_kw")));
    let units = ["duration", "size", "rate"].map(String::from);
    Source {
        name: "grammar/src/gw.pest",
        keywords: Some(keywords),
        reference_roots: Some(words_of(&mut std::iter::once(&"reference".to_string()))),
        units: Some(words_of(&mut units.iter())),
        values: None,
    }
}

/// Which category a TextMate scope puts its words in.
fn textmate_category(scope: &str) -> Option<&'static str> {
    // The first prefix that matches decides; `*` is a wildcard, not a word.
    const CATEGORIES: &[(&str, Option<&str>)] = &[
        ("keyword.declaration.", Some("keywords")),
        ("keyword.other.gw", Some("keywords")),
        ("keyword.operator.wordlike.", Some("keywords")),
        ("support.type.property-name.", Some("keywords")),
        ("variable.language.reference.", Some("reference_roots")),
        ("keyword.other.unit.", Some("units")),
        ("constant.language.wildcard.", None),
        ("constant.language.", Some("values")),
        ("support.type.kind.", Some("values")),
        ("support.function.builtin.", Some("values")),
        ("variable.language.client-ip.", Some("values")),
    ];
    CATEGORIES
        .iter()
        .find(|(prefix, _)| scope == *prefix || scope.starts_with(prefix))
        .and_then(|(_, category)| *category)
}

/// The text of capture group `n` of a TextMate (Oniguruma) regex; group 0 is
/// the whole regex without its lookarounds.
fn regex_group(regex: &str, n: usize) -> Option<String> {
    let bytes = regex.as_bytes();
    let mut stack: Vec<(Option<usize>, usize)> = Vec::new();
    let mut count = 0;
    let mut lookarounds: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    let mut in_class = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !in_class => {
                in_class = true;
                if bytes.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if bytes.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if in_class => in_class = false,
            b'(' if !in_class => {
                if bytes.get(i + 1) == Some(&b'?') {
                    let lookaround = matches!(
                        (bytes.get(i + 2), bytes.get(i + 3)),
                        (Some(b'='), _) | (Some(b'!'), _) | (Some(b'<'), Some(b'=')) | (Some(b'<'), Some(b'!'))
                    );
                    stack.push((None, if lookaround { i } else { usize::MAX }));
                } else {
                    count += 1;
                    stack.push((Some(count), i));
                }
            }
            b')' if !in_class => {
                let (group, start) = stack.pop()?;
                match group {
                    Some(k) if k == n => return Some(regex[start + 1..i].to_string()),
                    None if start != usize::MAX => lookarounds.push((start, i + 1)),
                    _ => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    if n != 0 {
        return None;
    }
    let mut whole = String::new();
    let mut at = 0;
    lookarounds.sort_unstable();
    for (start, end) in lookarounds {
        if start >= at {
            whole.push_str(&regex[at..start]);
            at = end;
        }
    }
    whole.push_str(&regex[at..]);
    Some(whole.replace("\\b", ""))
}

/// The words of a regex group that must be a plain alternation (`a|b|c`,
/// maybe inside `(?:...)`); `allow` lets other literal items through unread.
fn alternation_words(text: &str, allow: &[&str], context: &str) -> Vec<String> {
    let inner = text
        .strip_prefix("(?:")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    inner
        .split('|')
        .filter(|item| !allow.contains(item))
        .map(|item| {
            assert!(
                is_word(item),
                "{context}: `{text}` is not a plain alternation of words; a keyword-coloured \
                 group must list its words so that the editor-grammar test can read them"
            );
            item.to_string()
        })
        .collect()
}

fn textmate() -> Source {
    let grammar = json("editors/vscode/syntaxes/gw.tmLanguage.json");
    let mut found: BTreeMap<&str, Words> = BTreeMap::new();
    fn walk(v: &Value, found: &mut BTreeMap<&'static str, Words>) {
        match v {
            Value::Object(map) => {
                let mut groups: Vec<(&str, &Value)> = Vec::new();
                if let Some(Value::String(m)) = map.get("match") {
                    if let Some(Value::String(name)) = map.get("name") {
                        classify(m, 0, name, found);
                    }
                    groups.push((m, map.get("captures").unwrap_or(&Value::Null)));
                }
                for (regex_key, captures_key) in [
                    ("begin", "beginCaptures"),
                    ("end", "endCaptures"),
                    ("begin", "captures"),
                    ("end", "captures"),
                ] {
                    if let Some(Value::String(r)) = map.get(regex_key) {
                        groups.push((r, map.get(captures_key).unwrap_or(&Value::Null)));
                    }
                }
                for (regex, captures) in groups {
                    if let Value::Object(caps) = captures {
                        for (n, cap) in caps {
                            if let (Ok(n), Some(Value::String(name))) = (n.parse::<usize>(), cap.get("name")) {
                                classify(regex, n, name, found);
                            }
                        }
                    }
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    fn classify(regex: &str, n: usize, scope: &str, found: &mut BTreeMap<&'static str, Words>) {
        let Some(category) = textmate_category(scope) else {
            return;
        };
        let text = regex_group(regex, n).unwrap_or_else(|| panic!("no group {n} in TextMate regex `{regex}`"));
        let allow: &[&str] = if category == "units" { &["/", "%"] } else { &[] };
        let context = format!("TextMate scope {scope} on group {n} of `{regex}`");
        found
            .entry(category)
            .or_default()
            .extend(alternation_words(&text, allow, &context));
    }
    walk(&grammar, &mut found);
    Source {
        name: "editors/vscode/syntaxes/gw.tmLanguage.json",
        keywords: found.remove("keywords"),
        reference_roots: found.remove("reference_roots"),
        units: found.remove("units"),
        values: found.remove("values"),
    }
}

/// The words of every group of a regex that is a plain alternation of words.
fn word_groups(pattern: &str) -> Words {
    (1..)
        .map_while(|n| regex_group(pattern, n))
        .filter_map(|g| {
            let items: Vec<&str> = g.split('|').collect();
            items
                .iter()
                .all(|i| is_word(i))
                .then(|| items.iter().map(|i| i.to_string()).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// The first PATTERN inside a rule of tree-sitter's grammar.json.
fn first_pattern(v: &Value) -> Option<&str> {
    match v {
        Value::Object(map) if map.get("type") == Some(&Value::String("PATTERN".into())) => map.get("value")?.as_str(),
        Value::Object(map) => map.values().find_map(first_pattern),
        Value::Array(items) => items.iter().find_map(first_pattern),
        _ => None,
    }
}

/// The quoted words of `#any-of?` and `#eq?` predicates in a query.
fn predicate_words(query: &str) -> Words {
    let mut out = Words::new();
    for start in ["(#any-of?", "(#eq?"] {
        for (at, _) in query.match_indices(start) {
            let rest = &query[at..];
            let end = rest.find(')').expect("a predicate ends");
            for lit in string_literals(&rest[..end]) {
                out.insert(lit);
            }
        }
    }
    out
}

fn tree_sitter_grammar() -> Source {
    let grammar = json("editors/tree-sitter-gw/src/grammar.json");
    let mut keywords = Words::new();
    fn strings(v: &Value, out: &mut Words) {
        match v {
            Value::Object(map) => {
                if let (Some("STRING"), Some(Value::String(s))) =
                    (map.get("type").and_then(Value::as_str), map.get("value"))
                {
                    if is_word(s) {
                        out.insert(s.clone());
                    }
                }
                map.values().for_each(|v| strings(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    strings(&grammar["rules"], &mut keywords);
    let pattern =
        |rule: &str| first_pattern(&grammar["rules"][rule]).unwrap_or_else(|| panic!("no pattern in rule {rule}"));
    let units = ["duration", "size", "rate"]
        .iter()
        .flat_map(|r| word_groups(pattern(r)))
        .collect();
    Source {
        name: "editors/tree-sitter-gw (src/grammar.json, queries/highlights.scm)",
        keywords: Some(keywords),
        reference_roots: Some(word_groups(pattern("reference"))),
        units: Some(units),
        values: Some(predicate_words(&read("editors/tree-sitter-gw/queries/highlights.scm"))),
    }
}

#[test]
fn keywords_and_attributes_agree() {
    let sources = sources();
    let mut failures = Vec::new();
    type Pick = fn(&Source) -> &Option<Words>;
    let categories: [(&str, Pick); 4] = [
        ("keywords and attribute names", |s| &s.keywords),
        ("reference roots", |s| &s.reference_roots),
        ("units", |s| &s.units),
        ("value words", |s| &s.values),
    ];
    for (category, pick) in categories {
        let having: Vec<(&str, &Words)> = sources
            .iter()
            .filter_map(|s| pick(s).as_ref().map(|w| (s.name, w)))
            .collect();
        let Some((first, reference)) = having.first() else {
            continue;
        };
        assert!(
            reference.len() >= 3,
            "{first} has only {reference:?} as {category}: the test cannot read it"
        );
        for (name, words) in &having[1..] {
            let missing: Vec<_> = reference.difference(words).collect();
            let extra: Vec<_> = words.difference(reference).collect();
            if !missing.is_empty() || !extra.is_empty() {
                failures.push(format!(
                    "{category}: {name} differs from {first}\n  missing: {missing:?}\n  not in {first}: {extra:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the editor grammars fell behind the language:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_word_readers_find_what_they_should() {
    // Guards the readers above: a reader that silently found nothing would make
    // the comparison vacuous.
    let pest = gw_pest();
    let keywords = pest.keywords.expect("gw.pest has keywords");
    for word in [
        "upstream",
        "route",
        "server",
        "max_body_size",
        "credentials",
        "has",
        "on_error",
        "strip_prefix",
    ] {
        assert!(keywords.contains(word), "gw.pest's keywords miss {word}: {keywords:?}");
    }
    assert!(!keywords.contains("ident_char"), "rule names are not keywords");
    let roots = pest.reference_roots.expect("roots");
    assert_eq!(
        roots.iter().map(String::as_str).collect::<Vec<_>>(),
        ["claim", "client_cert", "cookie", "header", "param", "query"]
    );
    let units = pest.units.expect("units");
    for unit in ["ms", "KiB", "B", "minute", "h"] {
        assert!(units.contains(unit), "{unit} missing from {units:?}");
    }
    assert_eq!(regex_group("(?<![\\w.-])(a|b)(?![\\w.-])", 1).as_deref(), Some("a|b"));
    assert_eq!(
        regex_group("(?<![\\w.-])(?:a|b)(?![\\w.-])", 0).as_deref(),
        Some("(?:a|b)")
    );
    assert_eq!(regex_group("([x(])(c)", 2).as_deref(), Some("c"));
    assert_eq!(word_groups("([0-9]+(ms|s))+"), ["ms", "s"].map(String::from).into());
    assert_eq!(
        predicate_words("((x) @a (#any-of? @a \"p\" \"q\")) (#not-any-of? @b \"r\")"),
        ["p", "q"].map(String::from).into()
    );
}

// ------------------------------------------------------------------ the tree-sitter parser

fn parser() -> Parser {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_gw::LANGUAGE.into())
        .expect("the generated parser's ABI is one tree-sitter reads");
    parser
}

fn parse(parser: &mut Parser, text: &str) -> Tree {
    parser
        .parse(text, None)
        .expect("tree-sitter returns a tree when no timeout or cancellation is set")
}

/// `line:col ERROR` (1-based) for every ERROR and MISSING node.
fn syntax_errors(tree: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(node: Node, out: &mut Vec<String>) {
        if node.is_error() || node.is_missing() {
            let at = node.start_position();
            out.push(format!("{}:{} {}", at.row + 1, at.column + 1, node.to_sexp()));
            return;
        }
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            walk(child, out);
        }
    }
    walk(tree.root_node(), &mut out);
    out
}

/// The ```gw blocks of a markdown file, each with the line of its fence.
fn gw_snippets(path: &str) -> Vec<(String, String)> {
    crate::examples::gw_snippets(&read(path))
        .into_iter()
        .map(|(line, text)| (format!("{path}:{line}"), text))
        .collect()
}

fn files_in(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| e.expect("a readable directory entry").path())
        // Files only: `tests/fixtures/files.gw` is a symlink to a folder (GW0005).
        .filter(|p| p.extension().is_some_and(|x| x == ext) && p.is_file())
        .collect();
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// Every example and every ```gw snippet of the docs and the README: the
/// texts people copy from, which the language reference keeps valid (and the
/// file the VS Code extension's README pictures).
fn examples_and_docs_snippets() -> Vec<(String, String)> {
    let mut texts: Vec<(String, String)> = files_in("examples", "gw")
        .iter()
        .chain(files_in("editors/vscode/images", "gw").iter())
        .map(|p| (relative(p), std::fs::read_to_string(p).expect("a readable example")))
        .collect();
    for doc in files_in("docs", "md")
        .iter()
        .map(|p| relative(p))
        .chain(["README.md".to_string()])
    {
        texts.extend(gw_snippets(&doc));
    }
    texts
}

#[test]
fn every_example_and_docs_snippet_parses_without_error_nodes() {
    let mut parser = parser();
    let texts = examples_and_docs_snippets();
    assert!(texts.len() >= 12, "only {} examples and snippets found", texts.len());
    let failures: Vec<String> = texts
        .iter()
        .filter_map(|(name, text)| {
            let errors = syntax_errors(&parse(&mut parser, text));
            (!errors.is_empty()).then(|| format!("{name}: {}", errors.join(", ")))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "tree-sitter-gw cannot parse:\n{}",
        failures.join("\n")
    );
}

/// Whether gw.pest parses `text` with none of its recovery rules: no unknown
/// declaration or attribute swallowed, no `bad` value, no unterminated string.
fn pest_parses_cleanly(text: &str) -> bool {
    fn clean(pair: Pair<'_, Rule>) -> bool {
        let rule = format!("{:?}", pair.as_rule());
        !(rule.ends_with("unknown") || rule == "bad" || rule == "unterminated_string") && pair.into_inner().all(clean)
    }
    gw_grammar::parse_file(text).is_ok_and(|pairs| pairs.into_iter().all(clean))
}

#[test]
fn tree_sitter_parses_whatever_gw_pest_parses_cleanly() {
    // Fixtures of every diagnostic code and the explain pages' snippets hold
    // many shapes examples do not (semantic mistakes are well-formed text).
    let mut texts = examples_and_docs_snippets();
    for fixture in files_in("tests/fixtures", "gw") {
        texts.push((
            relative(&fixture),
            std::fs::read_to_string(&fixture).expect("a readable fixture"),
        ));
    }
    for page in files_in("compiler/explain", "md") {
        texts.extend(gw_snippets(&relative(&page)));
    }
    let mut parser = parser();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, text) in &texts {
        if !pest_parses_cleanly(text) {
            continue;
        }
        checked += 1;
        let errors = syntax_errors(&parse(&mut parser, text));
        if !errors.is_empty() {
            failures.push(format!("{name}: {}", errors.join(", ")));
        }
    }
    assert!(checked >= 60, "only {checked} texts parsed cleanly with gw.pest");
    assert!(
        failures.is_empty(),
        "gw.pest parses these but tree-sitter-gw does not:\n{}",
        failures.join("\n")
    );
}

// ------------------------------------------------------------------ the corpus

struct CorpusCase {
    file: String,
    name: String,
    input: String,
    expected: String,
    expect_error: bool,
}

/// The cases of test/corpus/*.txt, read as `tree-sitter test` reads them: a
/// `===` header with the name (and attributes such as `:error`), the input,
/// a `---` line, and the expected tree.
fn corpus() -> Vec<CorpusCase> {
    let is_rule = |line: &str, c: char| line.len() >= 3 && line.chars().all(|x| x == c);
    let mut cases = Vec::new();
    for path in files_in("editors/tree-sitter-gw/test/corpus", "txt") {
        let text = std::fs::read_to_string(&path).expect("a readable corpus file");
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if !is_rule(lines[i], '=') {
                i += 1;
                continue;
            }
            let mut name = Vec::new();
            let mut expect_error = false;
            i += 1;
            while i < lines.len() && !is_rule(lines[i], '=') {
                match lines[i].trim() {
                    ":error" => expect_error = true,
                    attribute if attribute.starts_with(':') => {}
                    line => name.push(line),
                }
                i += 1;
            }
            i += 1;
            let start = i;
            while i < lines.len() && !is_rule(lines[i], '-') {
                i += 1;
            }
            let input = lines[start..i.min(lines.len())].join("\n");
            i += 1;
            let start = i;
            while i < lines.len() && !is_rule(lines[i], '=') {
                i += 1;
            }
            cases.push(CorpusCase {
                file: relative(&path),
                name: name.join(" "),
                input,
                expected: lines[start.min(lines.len())..i].join("\n"),
                expect_error,
            });
        }
    }
    cases
}

/// An S-expression with single spaces and no field names, as `tree-sitter
/// test` compares them when the expected trees have no fields.
fn normalize_sexp(sexp: &str) -> String {
    let mut out = String::new();
    for token in sexp.split_whitespace() {
        if token.ends_with(':')
            && token[..token.len() - 1]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
        {
            continue;
        }
        if !out.is_empty() && !out.ends_with('(') && !token.starts_with(')') {
            out.push(' ');
        }
        out.push_str(token);
    }
    out
}

#[test]
fn the_corpus_parses_as_written() {
    let cases = corpus();
    assert!(cases.len() >= 15, "only {} corpus cases found", cases.len());
    let mut parser = parser();
    let mut failures = Vec::new();
    for case in &cases {
        let tree = parse(&mut parser, &case.input);
        let label = format!("{} \"{}\"", case.file, case.name);
        if case.expect_error {
            if !tree.root_node().has_error() {
                failures.push(format!(
                    "{label}: expected an error, parsed as {}",
                    tree.root_node().to_sexp()
                ));
            }
            continue;
        }
        let (actual, expected) = (
            normalize_sexp(&tree.root_node().to_sexp()),
            normalize_sexp(&case.expected),
        );
        if actual != expected {
            failures.push(format!("{label}:\n  expected {expected}\n  actual   {actual}"));
        }
    }
    assert!(failures.is_empty(), "corpus cases that fail:\n{}", failures.join("\n"));
}

// ------------------------------------------------------------------ the queries

fn query_files() -> Vec<PathBuf> {
    let mut files = files_in("editors/tree-sitter-gw/queries", "scm");
    files.extend(files_in("editors/tree-sitter-gw/queries/helix", "scm"));
    files
}

#[test]
fn every_query_compiles_against_the_grammar() {
    let language = tree_sitter_gw::LANGUAGE.into();
    let files = query_files();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for expected in ["highlights.scm", "folds.scm", "indents.scm", "locals.scm"] {
        assert!(names.iter().any(|n| n == expected), "queries/{expected} is missing");
    }
    for path in files {
        let source = std::fs::read_to_string(&path).expect("a readable query");
        if let Err(e) = Query::new(&language, &source) {
            panic!("{} does not compile: {e}", relative(&path));
        }
    }
}

/// Helix names its captures differently (`constant.numeric`, not `number`);
/// queries/helix/highlights.scm is highlights.scm with these names.
const HELIX_CAPTURES: &[(&str, &str)] = &[
    ("@keyword.import", "@keyword.control.import"),
    ("@property", "@variable.other.member"),
    ("@type.definition", "@type"),
    ("@variable.member", "@variable.other.member"),
    ("@character.special", "@special"),
    ("@function.call", "@function"),
    ("@string.escape", "@constant.character.escape"),
    ("@number", "@constant.numeric"),
];

/// highlights.scm with Helix's capture names.
fn helix_highlights(main: &str) -> String {
    let mut out = String::from(
        "; Generated from ../highlights.scm with Helix's capture names by tests/editor_grammars.rs:\n\
         ; edit that file, then run GW_UPDATE_HELIX_QUERIES=1 cargo test --test integration helix\n\n",
    );
    for line in main.lines() {
        let line = line.replace(" @spell", "");
        let mut renamed = String::new();
        let mut rest = line.as_str();
        while let Some(at) = rest.find('@') {
            renamed.push_str(&rest[..at]);
            let end = rest[at + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .map_or(rest.len(), |e| at + 1 + e);
            let capture = &rest[at..end];
            renamed.push_str(
                HELIX_CAPTURES
                    .iter()
                    .find(|(from, _)| *from == capture)
                    .map_or(capture, |(_, to)| to),
            );
            rest = &rest[end..];
        }
        renamed.push_str(rest);
        out.push_str(&renamed);
        out.push('\n');
    }
    out
}

#[test]
fn helix_highlights_are_the_main_ones_with_helix_names() {
    let expected = helix_highlights(&read("editors/tree-sitter-gw/queries/highlights.scm"));
    let path = root().join("editors/tree-sitter-gw/queries/helix/highlights.scm");
    if std::env::var_os("GW_UPDATE_HELIX_QUERIES").is_some() {
        std::fs::write(&path, &expected).expect("queries/helix/highlights.scm is writable");
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "queries/helix/highlights.scm is not highlights.scm with Helix's names: run \
         GW_UPDATE_HELIX_QUERIES=1 cargo test --test integration helix"
    );
    assert!(
        expected.contains("@constant.numeric") && !expected.contains("@number"),
        "the renaming ran"
    );
}

/// Every leaf whose kind is a keyword, in every corpus input, is coloured by
/// highlights.scm; and the corpus holds every keyword, so no keyword goes
/// untested.
#[test]
fn highlights_colour_every_keyword_and_the_corpus_holds_them_all() {
    let keywords = tree_sitter_grammar().keywords.expect("keywords");
    let language = tree_sitter_gw::LANGUAGE.into();
    let query =
        Query::new(&language, &read("editors/tree-sitter-gw/queries/highlights.scm")).expect("highlights compile");
    let mut parser = parser();
    let mut seen = Words::new();
    let mut uncoloured = BTreeSet::new();
    for case in corpus().iter().filter(|c| !c.expect_error) {
        let tree = parse(&mut parser, &case.input);
        let mut coloured = BTreeSet::new();
        let mut cursor = QueryCursor::new();
        let mut matches = cursor.matches(&query, tree.root_node(), case.input.as_bytes());
        while let Some(m) = matches.next() {
            for capture in m.captures {
                coloured.insert(capture.node.id());
            }
        }
        let mut stack = vec![tree.root_node()];
        while let Some(node) = stack.pop() {
            let mut cursor = node.walk();
            stack.extend(node.children(&mut cursor));
            if node.child_count() == 0 && keywords.contains(node.kind()) {
                seen.insert(node.kind().to_string());
                if !coloured.contains(&node.id()) {
                    let at = node.start_position();
                    uncoloured.insert(format!(
                        "`{}` in {} \"{}\" at {}:{}",
                        node.kind(),
                        case.file,
                        case.name,
                        at.row + 1,
                        at.column + 1
                    ));
                }
            }
        }
    }
    let unseen: Vec<_> = keywords.difference(&seen).collect();
    assert!(
        unseen.is_empty(),
        "keywords no corpus case uses (add them to test/corpus): {unseen:?}"
    );
    assert!(
        uncoloured.is_empty(),
        "keywords highlights.scm leaves uncoloured:\n{}",
        uncoloured.into_iter().collect::<Vec<_>>().join("\n")
    );
}

// ------------------------------------------------------------------ the VS Code snippets

/// A snippet body with each placeholder replaced by its default (the first
/// choice, or nothing), as inserting it and pressing Tab through would leave it.
fn expand_snippet(body: &str) -> String {
    fn expand(chars: &[char], i: &mut usize, until: Option<char>) -> String {
        let mut out = String::new();
        while *i < chars.len() {
            let c = chars[*i];
            if Some(c) == until {
                return out;
            }
            match c {
                '\\' if *i + 1 < chars.len() => {
                    out.push(chars[*i + 1]);
                    *i += 2;
                }
                '$' if chars.get(*i + 1) == Some(&'{') => {
                    *i += 2;
                    while *i < chars.len() && chars[*i].is_ascii_digit() {
                        *i += 1;
                    }
                    match chars.get(*i) {
                        Some(':') => {
                            *i += 1;
                            out.push_str(&expand(chars, i, Some('}')));
                            *i += 1;
                        }
                        Some('|') => {
                            *i += 1;
                            let choices = expand(chars, i, Some('|'));
                            let first = choices.split('\u{0}').next().unwrap_or_default().to_string();
                            out.push_str(&first);
                            *i += 2;
                        }
                        _ => *i += 1,
                    }
                }
                '$' => {
                    *i += 1;
                    while *i < chars.len() && chars[*i].is_ascii_digit() {
                        *i += 1;
                    }
                }
                ',' if until == Some('|') => {
                    out.push('\u{0}');
                    *i += 1;
                }
                c => {
                    out.push(c);
                    *i += 1;
                }
            }
        }
        out
    }
    let chars: Vec<char> = body.chars().collect();
    expand(&chars, &mut 0, None)
}

#[test]
fn every_vscode_snippet_is_valid_gw() {
    let snippets = json("editors/vscode/snippets/gw.json");
    let snippets = snippets.as_object().expect("snippets are an object");
    const DECLARATIONS: &[&str] = &[
        "import", "listen", "admin", "limits", "upstream", "auth", "limit", "store", "route", "test",
    ];
    let mut declared = Words::new();
    let mut parser = parser();
    let mut failures = Vec::new();
    for (name, snippet) in snippets {
        let body: Vec<&str> = snippet["body"]
            .as_array()
            .expect("a body")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let text = expand_snippet(&body.join("\n"));
        let first = text.split_whitespace().next().unwrap_or_default();
        // Attribute snippets are tried in the block they belong to.
        let text = if DECLARATIONS.contains(&first) {
            declared.insert(first.to_string());
            text
        } else if ["health", "eject", "retry"].contains(&first) {
            format!("upstream u {{\n  server 127.0.0.1:9001\n  {text}\n}}\n")
        } else {
            format!("route /x -> u {{\n  {text}\n}}\n")
        };
        if !pest_parses_cleanly(&text) {
            failures.push(format!("snippet {name:?}: gw.pest does not parse it cleanly:\n{text}"));
        }
        let errors = syntax_errors(&parse(&mut parser, &text));
        if !errors.is_empty() {
            failures.push(format!(
                "snippet {name:?}: tree-sitter-gw: {}:\n{text}",
                errors.join(", ")
            ));
        }
    }
    let missing: Vec<_> = DECLARATIONS.iter().filter(|d| !declared.contains(**d)).collect();
    assert!(missing.is_empty(), "declarations without a snippet: {missing:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn snippet_expansion_takes_defaults_and_first_choices() {
    assert_eq!(
        expand_snippet("a ${1:x} ${2|p,q|} $3 ${4:/p/{id\\}}$0"),
        "a x p  /p/{id}"
    );
    assert_eq!(expand_snippet("${1:outer ${2:inner}}"), "outer inner");
    assert_eq!(expand_snippet("${1|GET\\,HEAD,POST|}"), "GET,HEAD");
}
