//! The keyword table (`gw_compiler::schema`), the source of the language
//! server's completion and hover, cannot drift from the grammar or from the
//! reference: every keyword set of `grammar/src/gw.pest` equals the table's
//! keywords of the same context, and every attribute table of
//! docs/language.md has one row per keyword of its context, with the same
//! value and default cells and a range cell that starts with the table's.

use gw_compiler::schema::{self, Context, KEYWORDS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).expect("readable")
}

/// The rules of gw.pest: name → body (comments dropped).
fn pest_rules() -> BTreeMap<String, String> {
    let text = read("grammar/src/gw.pest");
    let mut rules = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        if let Some((name, body)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                rules.insert(name.to_string(), body.trim().to_string());
            }
        }
    }
    rules
}

/// The quoted strings of a rule body.
fn quoted(body: &str) -> Vec<String> {
    body.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

/// The rule names a body refers to.
fn refs(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_string = false;
    let mut word = String::new();
    for c in body.chars() {
        if c == '"' {
            in_string = !in_string;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    out
}

/// The keywords a rule stands for: a `k_*` rule's word, a `*_kw` rule's
/// words, or those of the keyword rules it refers to.
fn words(rules: &BTreeMap<String, String>, rule: &str) -> BTreeSet<String> {
    let body = &rules[rule];
    if rule.starts_with("k_") || (rule.ends_with("_kw") && body.starts_with("@{")) {
        return quoted(body).into_iter().collect();
    }
    refs(body)
        .iter()
        .filter(|r| r.starts_with("k_") || r.ends_with("_kw"))
        .flat_map(|r| words(rules, r))
        .collect()
}

fn schema_words(contexts: &[Context]) -> BTreeSet<String> {
    KEYWORDS
        .iter()
        .filter(|k| contexts.contains(&k.context))
        .map(|k| k.keyword.to_string())
        .collect()
}

#[test]
fn every_keyword_set_of_the_grammar_equals_its_context_in_the_schema() {
    let rules = pest_rules();
    use Context::*;
    // (rules of gw.pest, whether the first keyword is the statement's own,
    // the schema contexts they must equal)
    let sets: &[(&[&str], bool, &[Context])] = &[
        (&["top_kw"], false, &[Top]),
        (&["listen_tls", "listen_tcp", "listen_proxy"], false, &[Listen]),
        (&["tls_kw"], false, &[Tls]),
        (&["tls_cert"], true, &[Cert]),
        (&["limits_kw"], false, &[Limits]),
        (&["upstream_kw"], false, &[Upstream]),
        (&["server_opt"], false, &[Server]),
        (&["health_kw"], false, &[Health]),
        (&["eject_kw"], false, &[Eject]),
        (&["pool_kw"], false, &[Pool]),
        (&["upstream_tls_kw"], false, &[UpstreamTls]),
        (&["retry"], true, &[Retry]),
        (&["auth_kw"], false, &[Jwt, ApiKey]),
        (&["auth_from"], true, &[From]),
        (&["auth_jwks"], true, &[Jwks]),
        (&["limit_kw"], false, &[Limit]),
        (&["store_kw"], false, &[Store]),
        (&["route"], true, &[RouteHead]),
        (&["route_kw"], false, &[Route]),
        (&["set_header", "remove_header"], true, &[Header]),
        (&["require_op"], false, &[Require]),
        (&["cors_kw"], false, &[Cors]),
        (&["compress_kw"], false, &[Compress]),
        (&["aggregate_timeout"], false, &[Aggregate]),
        (&["aggregate_part"], false, &[Part]),
        (&["condition", "cond_op"], false, &[Condition]),
        (&["split_sticky"], false, &[Split]),
        (
            &["expectation", "expect_header", "expect_cookie", "expect_client"],
            false,
            &[Expectation],
        ),
    ];
    let mut failures = Vec::new();
    for (names, skip_own, contexts) in sets {
        let mut grammar = BTreeSet::new();
        for name in *names {
            let Some(body) = rules.get(*name) else {
                failures.push(format!("gw.pest has no rule `{name}`"));
                continue;
            };
            let mut keyword_refs: Vec<String> = refs(body).into_iter().filter(|r| r.starts_with("k_")).collect();
            if *skip_own && !keyword_refs.is_empty() {
                keyword_refs.remove(0);
            }
            if name.ends_with("_kw") {
                grammar.extend(words(&rules, name));
            } else {
                grammar.extend(keyword_refs.iter().flat_map(|r| words(&rules, r)));
            }
        }
        let schema = schema_words(contexts);
        if grammar != schema {
            failures.push(format!(
                "{names:?} in gw.pest: {grammar:?}\n  schema {contexts:?}: {schema:?}\n  only in gw.pest: {:?}\n  only in the schema: {:?}",
                grammar.difference(&schema).collect::<Vec<_>>(),
                schema.difference(&grammar).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the schema and gw.pest differ:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_keyword_of_the_grammar_is_in_the_schema_and_back() {
    let rules = pest_rules();
    let grammar: BTreeSet<String> = rules
        .keys()
        .filter(|r| r.starts_with("k_") || (r.ends_with("_kw") && rules[*r].starts_with("@{")))
        .flat_map(|r| words(&rules, r))
        .collect();
    let schema: BTreeSet<String> = KEYWORDS.iter().map(|k| k.keyword.to_string()).collect();
    assert_eq!(grammar, schema, "keywords of gw.pest vs the schema");
}

/// A markdown table's header cells and rows, under each heading.
fn tables(markdown: &str) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let mut out: Vec<(String, Vec<String>, Vec<Vec<String>>)> = Vec::new();
    let mut heading = String::new();
    let mut in_table = false;
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
            in_table = false;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = split_row(line);
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            continue;
        }
        if !in_table {
            out.push((heading.clone(), cells, Vec::new()));
            in_table = true;
        } else if let Some(last) = out.last_mut() {
            last.2.push(cells);
        }
    }
    out
}

/// The cells of a table row (`\|` is a `|` inside a cell).
fn split_row(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(cell) = cells.last_mut() {
                    cell.push('|');
                }
            }
            '|' => cells.push(String::new()),
            _ => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The keyword a row documents: the first word of a first cell written in
/// backticks and starting with a lower-case letter.
fn row_keyword(first: &str) -> Option<&str> {
    let inner = first.strip_prefix('`')?;
    let word = inner.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next()?;
    word.starts_with(|c: char| c.is_ascii_lowercase()).then_some(word)
}

#[test]
fn every_attribute_table_of_the_reference_matches_the_schema() {
    use Context::*;
    let headings: &[(&str, Context)] = &[
        ("2. Declarations", Top),
        ("`listen`", Tls),
        ("`limits`", Limits),
        ("Attributes of `upstream NAME { ... }`", Upstream),
        ("Servers", Server),
        ("`health { ... }` — active checks", Health),
        ("`eject { ... }` — passive checks (outlier detection)", Eject),
        ("`pool { ... }` — upstream keep-alive", Pool),
        ("`tls { ... }` — TLS to the servers", UpstreamTls),
        ("Retries", Retry),
        ("`auth NAME jwt { ... }`", Jwt),
        ("`auth NAME api_key { ... }`", ApiKey),
        ("`limit NAME { ... }`", Limit),
        ("`store NAME redis \"URL\" [{ ... }]`", Store),
        ("Attributes of a route block", Route),
        ("`cors { ... }`", Cors),
        ("`compress { ... }`", Compress),
        ("`cache { ... }`", Cache),
    ];
    let markdown = read("docs/language.md");
    let tables = tables(&markdown);
    let mut failures = Vec::new();
    for (heading, context) in headings {
        let found: Vec<_> = tables.iter().filter(|(h, _, _)| h == heading).collect();
        if found.is_empty() {
            failures.push(format!("docs/language.md has no table under `{heading}`"));
            continue;
        }
        let mut documented = BTreeSet::new();
        for (_, header, rows) in found {
            let column = |name: &str| header.iter().position(|h| h == name);
            let (value, default) = (column("value"), column("default"));
            let range = column("range").or(column("range / notes"));
            let purpose = column("purpose");
            for row in rows {
                let Some(word) = row.first().and_then(|c| row_keyword(c)) else {
                    continue;
                };
                let syntax = row[0].trim_matches('`');
                let Some(entry) = schema::in_context(*context).find(|k| k.row && k.keyword == word) else {
                    failures.push(format!(
                        "`{heading}`: the row `{syntax}` has no keyword `{word}` in the schema's {context:?}"
                    ));
                    continue;
                };
                // A keyword's row is the one whose first cell is its syntax
                // (`jwks` has two rows: the file and the URL).
                if entry.syntax != syntax {
                    let other = rows
                        .iter()
                        .any(|r| r.first().is_some_and(|c| c.trim_matches('`') == entry.syntax));
                    if !other {
                        failures.push(format!("`{heading}`: row `{syntax}`, schema syntax `{}`", entry.syntax));
                    }
                    documented.insert(entry.keyword);
                    continue;
                }
                documented.insert(entry.keyword);
                let mut check = |what: &str, cell: Option<usize>, expected: &str, prefix: bool| {
                    let Some(cell) = cell.and_then(|c| row.get(c)) else {
                        return;
                    };
                    let ok = if prefix {
                        cell.starts_with(expected)
                    } else {
                        cell == expected
                    };
                    if !ok {
                        failures.push(format!(
                            "`{heading}` `{word}`: {what} is `{cell}` in the reference, `{expected}` in the schema"
                        ));
                    }
                };
                check("the value", value, entry.value, false);
                check("the default", default, entry.default, false);
                check("the range", range, entry.range, true);
                check("the purpose", purpose, entry.doc, false);
            }
        }
        for entry in schema::in_context(*context).filter(|k| k.row) {
            if !documented.contains(entry.keyword) {
                failures.push(format!(
                    "`{}` ({context:?}) has no row under `{heading}` in docs/language.md",
                    entry.keyword
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the schema and docs/language.md differ:\n{}",
        failures.join("\n")
    );
}

/// Keywords without a row of their own still appear in the reference, in
/// code (inside another row's syntax or in prose).
#[test]
fn keywords_without_a_row_are_in_the_reference() {
    let markdown = read("docs/language.md");
    // Fenced blocks are code; outside them, text between backticks is.
    let mut code: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            code.push(line.to_string());
        } else {
            code.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
        }
    }
    for entry in KEYWORDS.iter().filter(|k| !k.row) {
        let found = code.iter().any(|c| {
            c.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .any(|w| w == entry.keyword)
        });
        assert!(
            found,
            "`{}` ({:?}) is not in docs/language.md",
            entry.keyword, entry.context
        );
        assert!(!entry.doc.is_empty());
    }
}

#[test]
fn every_keyword_has_a_doc_line_and_valid_block_contexts() {
    for entry in KEYWORDS {
        assert!(!entry.doc.is_empty() && !entry.syntax.is_empty(), "{}", entry.keyword);
        assert!(
            entry.syntax.contains(entry.keyword) || entry.context == Context::Part,
            "`{}`: its syntax `{}` does not show it",
            entry.keyword,
            entry.syntax
        );
    }
    // One keyword per context (a context's keywords are what completion offers).
    let mut seen = BTreeSet::new();
    for entry in KEYWORDS {
        assert!(
            seen.insert((format!("{:?}", entry.context), entry.keyword)),
            "{} twice",
            entry.keyword
        );
    }
}
