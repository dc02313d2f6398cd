//! `gwc lsp`, driven over JSON-RPC as an editor drives it: the real binary,
//! its stdin and stdout, every wait bounded (`lsp_support`). One test per
//! capability: diagnostics (the same as `gwc check`, for the file and its
//! imports, on open and on change, unsaved buffers first), definition and
//! references (imported names too), hover, completion, outline, folding,
//! formatting, rename, quick fixes, semantic tokens; then what a broken
//! client may send.

use crate::lsp_support::{position, uri, Client};
use crate::support::{Gwc, TempDir};
use serde_json::{json, Value};
use std::path::Path;

const APP: &str = r#"import "common.gw"
listen 127.0.0.1:8080
upstream orders {
  server 127.0.0.1:9001
  timeout 5s
}
auth users jwt {
  issuer "https://login.example"
  audience "api"
  algorithms HS256
  secret env("JWT_SECRET")
}
store shared redis "redis://127.0.0.1:6379"
limit per_user { rate 10/s key claim.sub store shared }
route GET /orders/{id} -> order {
  auth users
  limit per_user
}
route GET /menu -> menu
"#;

const COMMON: &str = "upstream menu { server 127.0.0.1:9002 }\n";

const ENV: &[(&str, &str)] = &[("JWT_SECRET", "s3cret")];

/// A folder with `app.gw` and `common.gw`, and a server started in it.
fn setup() -> (TempDir, Client, String, String) {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("app.gw"), APP).expect("write");
    std::fs::write(dir.path().join("common.gw"), COMMON).expect("write");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().expect("UTF-8").to_string();
    let mut env = ENV.to_vec();
    env.push(("XDG_CACHE_HOME", &cache));
    let (client, _) = Client::start(dir.path(), &env);
    let app = uri(&dir.path().join("app.gw"));
    let common = uri(&dir.path().join("common.gw"));
    (dir, client, app, common)
}

fn doc(uri: &str) -> Value {
    json!({ "uri": uri })
}

fn at(uri: &str, pos: Value) -> Value {
    json!({ "textDocument": doc(uri), "position": pos })
}

#[test]
fn initialize_announces_every_capability() {
    let dir = TempDir::new();
    let (client, init) = Client::start(dir.path(), &[]);
    let caps = &init["result"]["capabilities"];
    for cap in [
        "hoverProvider",
        "completionProvider",
        "definitionProvider",
        "referencesProvider",
        "documentSymbolProvider",
        "foldingRangeProvider",
        "documentFormattingProvider",
        "renameProvider",
        "codeActionProvider",
        "semanticTokensProvider",
    ] {
        assert!(!caps[cap].is_null(), "no {cap} in {caps}");
    }
    assert_eq!(caps["textDocumentSync"]["change"], 2, "incremental sync");
    assert_eq!(client.shutdown(), Some(0));
}

/// (code, severity, line, column, message, help) of `gwc check --format json`.
fn check_json(dir: &Path) -> Vec<(String, String, u64, u64, String, String)> {
    let out = Gwc::new()
        .current_dir(dir)
        .env("JWT_SECRET", "s3cret")
        .args(["check", "--format", "json", dir.join("app.gw").to_str().expect("UTF-8")])
        .run();
    out.json()["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("").to_string(),
                d["severity"].as_str().unwrap_or("").to_string(),
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
                d["message"].as_str().unwrap_or("").to_string(),
                d["help"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn diagnostics_on_open_are_those_of_gwc_check_with_a_link_to_the_explanation() {
    let (dir, mut client, app, _) = setup();
    client.open(&app, APP);
    let list = client.diagnostics(&app, |_| true);
    let ours: Vec<_> = list
        .iter()
        .map(|d| {
            let message = d["message"].as_str().unwrap_or("");
            let (message, help) = message.split_once("\nhelp: ").unwrap_or((message, ""));
            let severity = if d["severity"] == 1 { "error" } else { "warning" };
            (
                d["code"].as_str().unwrap_or("").to_string(),
                severity.to_string(),
                d["range"]["start"]["line"].as_u64().unwrap_or(99) + 1,
                d["range"]["start"]["character"].as_u64().unwrap_or(99) + 1,
                message.to_string(),
                help.to_string(),
            )
        })
        .collect();
    let check = check_json(dir.path());
    assert!(check.iter().any(|d| d.0 == "GW0101"), "{check:?}");
    assert_eq!(ours, check, "gwc lsp and gwc check disagree");
    let unknown = list.iter().find(|d| d["code"] == "GW0101").expect("GW0101");
    assert_eq!(unknown["source"], "gw");
    assert!(unknown["message"]
        .as_str()
        .unwrap_or("")
        .contains("did you mean `orders`?"));
    let href = unknown["codeDescription"]["href"]
        .as_str()
        .expect("a link to the explanation");
    let path = href.strip_prefix("file://").expect("a file URI");
    let page = std::fs::read_to_string(path).expect("the explanation page exists");
    let explain = Gwc::new().args(["explain", "GW0101"]).status(0).run().stdout;
    assert!(
        explain.contains(page.trim()),
        "the linked page is not `gwc explain GW0101`"
    );
}

#[test]
fn diagnostics_follow_every_change_and_carry_the_version() {
    let (_dir, mut client, app, _) = setup();
    client.open(&app, APP);
    client.diagnostics(&app, |l| l.iter().any(|d| d["code"] == "GW0101"));
    // Several quick changes: only the last one matters.
    client.change(&app, 2, &APP.replace("-> order {", "-> orde {"));
    client.change(&app, 3, &APP.replace("-> order {", "-> orders {"));
    let m = client.wait_for(
        |m| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == app.as_str()
                && m["params"]["version"] == 3
        },
        "diagnostics of version 3",
    );
    assert_eq!(m["params"]["diagnostics"], json!([]), "{m}");
    // An incremental change: a range edit that breaks the name again.
    let pos = position(&APP.replace("-> order {", "-> orders {"), "-> orders", 0, 3);
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": app, "version": 4 },
                "contentChanges": [{ "range": { "start": pos, "end": { "line": pos["line"], "character": pos["character"].as_u64().unwrap() + 6 } }, "text": "ordrs" }] }),
    );
    let list = client.diagnostics(&app, |l| !l.is_empty());
    assert_eq!(list[0]["code"], "GW0101");
    assert_eq!(list[0]["range"]["start"], pos);
}

#[test]
fn diagnostics_of_imported_files_and_unsaved_buffers_first() {
    let (dir, mut client, app, common) = setup();
    // On disk, common.gw has an error: it is reported for common.gw.
    std::fs::write(
        dir.path().join("common.gw"),
        "upstream menu { server 127.0.0.1:9002 weight 0 }\n",
    )
    .expect("write");
    client.open(&app, APP);
    let list = client.diagnostics(&common, |l| !l.is_empty());
    assert_eq!(list[0]["code"], "GW0106", "{list:?}");
    // The same file opened with unsaved text: that text is what app.gw imports.
    client.open(
        &common,
        "upstream menu { server 127.0.0.1:9002 }\nupstream order { server 127.0.0.1:9003 }\n",
    );
    let list = client.diagnostics(&app, |l| !l.iter().any(|d| d["code"] == "GW0101"));
    assert!(list.iter().all(|d| d["code"] != "GW0101"), "{list:?}");
}

#[test]
fn definition_and_references_of_every_kind_of_name() {
    let (dir, mut client, app, common) = setup();
    client.open(&app, APP);
    let line_of = |pos: &Value| pos["line"].as_u64().unwrap_or(99);
    for (name, use_at, def_in_common) in [
        ("users", position(APP, "auth users", 1, 6), false),
        ("per_user", position(APP, "limit per_user", 1, 7), false),
        ("shared", position(APP, "store shared", 1, 7), false),
        ("menu", position(APP, "-> menu", 0, 4), true),
    ] {
        let r = client.result("textDocument/definition", at(&app, use_at.clone()));
        let targets = r.as_array().cloned().unwrap_or_else(|| vec![r.clone()]);
        assert_eq!(targets.len(), 1, "{name}: {r}");
        let target = &targets[0];
        if def_in_common {
            assert_eq!(target["uri"], common.as_str(), "{name}");
            assert_eq!(target["range"]["start"], json!({"line": 0, "character": 9}));
        } else {
            assert_eq!(target["uri"], app.as_str(), "{name}");
            let def = position(APP, &format!(" {name}"), 0, 1);
            assert_eq!(target["range"]["start"], def, "{name}");
        }
        let refs = client.result(
            "textDocument/references",
            json!({ "textDocument": doc(&app), "position": use_at, "context": { "includeDeclaration": true } }),
        );
        let refs = refs.as_array().expect("locations");
        assert_eq!(refs.len(), 2, "{name}: {refs:?}");
        assert!(refs.iter().any(|l| line_of(&l["range"]["start"]) == line_of(&use_at)));
    }
    // The import's string leads to the file.
    let r = client.result("textDocument/definition", at(&app, position(APP, "common.gw", 0, 2)));
    assert_eq!(r["uri"], common.as_str());
    drop(dir);
}

#[test]
fn hover_explains_keywords_names_and_diagnostics() {
    let (_dir, mut client, app, _) = setup();
    client.open(&app, APP);
    let hover = |client: &mut Client, pos: Value| -> String {
        let r = client.result("textDocument/hover", at(&app, pos));
        r["contents"]["value"].as_str().unwrap_or("").to_string()
    };
    // An attribute: its value, default and range, from the schema (= docs/language.md).
    let text = hover(&mut client, position(APP, "timeout 5s", 0, 2));
    assert!(text.contains("`30s` *(decision)*") && text.contains("> 0"), "{text}");
    // The same word in a route block is the route's `timeout`... and a declaration keyword.
    let text = hover(&mut client, position(APP, "upstream orders", 0, 1));
    assert!(text.contains("a pool of servers"), "{text}");
    // A name: its definition.
    let text = hover(&mut client, position(APP, "auth users\n", 0, 7));
    assert!(
        text.contains("auth `users`") && text.contains("issuer \"https://login.example\""),
        "{text}"
    );
    // A diagnostic: its code's explanation.
    let text = hover(&mut client, position(APP, "-> order {", 0, 4));
    assert!(text.contains("**GW0101**") && text.contains("unknown name"), "{text}");
}

fn labels(r: &Value) -> Vec<String> {
    let items = r
        .as_array()
        .or_else(|| r["items"].as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|i| i["label"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn completion_offers_what_is_valid_at_the_cursor() {
    let (_dir, mut client, app, _) = setup();
    let text =
        format!("{APP}route /new -> \nroute /x {{ auth  }}\nupstream fresh {{\n  \n}}\nupstream b {{ balance  }}\n");
    // The file as it was, then as it is being typed (it no longer parses).
    client.open(&app, APP);
    // (The outline waits for the compiled file's index, names included.)
    client.result("textDocument/documentSymbol", json!({ "textDocument": doc(&app) }));
    client.change(&app, 2, &text);
    let complete = |client: &mut Client, pos: Value| labels(&client.result("textDocument/completion", at(&app, pos)));
    // `-> |` offers upstreams, the imported one included.
    let got = complete(&mut client, position(&text, "/new -> ", 0, 8));
    for name in ["orders", "menu", "fresh", "b"] {
        assert!(got.contains(&name.to_string()), "{got:?}");
    }
    assert!(!got.contains(&"users".to_string()), "{got:?}");
    // `auth |` in a route offers auths.
    let got = complete(&mut client, position(&text, "{ auth  }", 0, 7));
    assert_eq!(got, vec!["users"]);
    // An empty line in an upstream offers its attributes.
    let got = complete(&mut client, position(&text, "fresh {\n  ", 0, 10));
    for kw in ["balance", "server", "health", "retry", "http2"] {
        assert!(got.contains(&kw.to_string()), "{got:?}");
    }
    assert!(!got.contains(&"route".to_string()), "{got:?}");
    // `balance |` offers the strategies.
    let got = complete(&mut client, position(&text, "balance  }", 0, 8));
    assert!(
        got.contains(&"least_conn".to_string()) && got.contains(&"p2c".to_string()),
        "{got:?}"
    );
    // The top level offers declarations.
    let got = complete(&mut client, json!({ "line": text.lines().count(), "character": 0 }));
    assert!(
        got.contains(&"route".to_string()) && got.contains(&"upstream".to_string()),
        "{got:?}"
    );
}

#[test]
fn outline_folding_and_formatting() {
    let (_dir, mut client, app, _) = setup();
    client.open(&app, APP);
    let symbols = client.result("textDocument/documentSymbol", json!({ "textDocument": doc(&app) }));
    let names: Vec<&str> = symbols
        .as_array()
        .expect("symbols")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "import \"common.gw\"",
            "listen 127.0.0.1:8080",
            "upstream orders",
            "auth users",
            "store shared",
            "limit per_user",
            "route GET /orders/{id} -> order",
            "route GET /menu -> menu"
        ]
    );
    let folds = client.result("textDocument/foldingRange", json!({ "textDocument": doc(&app) }));
    let folds: Vec<(u64, u64)> = folds
        .as_array()
        .expect("ranges")
        .iter()
        .map(|f| (f["startLine"].as_u64().unwrap_or(0), f["endLine"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(folds, vec![(2, 5), (6, 11), (14, 17)]);
    // Formatting goes through `gwc fmt`'s formatter.
    let messy = "upstream a {server 127.0.0.1:1}\nroute /x -> a {   timeout 5s }\n";
    client.change(&app, 2, messy);
    let edits = client.result(
        "textDocument/formatting",
        json!({ "textDocument": doc(&app), "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    let expected = gw_compiler::format::format("a.gw", messy).expect("formats");
    assert_eq!(edits[0]["newText"], expected.as_str());
    // A file that does not parse is refused with its syntax error.
    client.change(&app, 3, "upstream a { server 127.0.0.1:1\n");
    let r = client.request(
        "textDocument/formatting",
        json!({ "textDocument": doc(&app), "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert!(r["error"]["message"].as_str().unwrap_or("").contains("GW0002"), "{r}");
}

#[test]
fn rename_changes_every_reference_across_files_and_refuses_keywords() {
    let (_dir, mut client, app, common) = setup();
    client.open(&app, APP);
    let prep = client.result("textDocument/prepareRename", at(&app, position(APP, "-> menu", 0, 4)));
    assert_eq!(prep["placeholder"], "menu");
    let edit = client.result(
        "textDocument/rename",
        json!({ "textDocument": doc(&app), "position": position(APP, "-> menu", 0, 4), "newName": "kitchen" }),
    );
    let changes = &edit["changes"];
    assert_eq!(changes[app.as_str()].as_array().map(Vec::len), Some(1), "{edit}");
    assert_eq!(changes[common.as_str()][0]["newText"], "kitchen", "{edit}");
    // Keywords are not names.
    let r = client.request(
        "textDocument/prepareRename",
        at(&app, position(APP, "upstream orders", 0, 2)),
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`upstream` is a keyword"),
        "{r}"
    );
    let r = client.request(
        "textDocument/rename",
        json!({ "textDocument": doc(&app), "position": position(APP, "timeout 5s", 0, 1), "newName": "x" }),
    );
    assert!(r["error"]["message"].as_str().unwrap_or("").contains("keyword"), "{r}");
    // A new name must be a name, and not taken.
    let r = client.request(
        "textDocument/rename",
        json!({ "textDocument": doc(&app), "position": position(APP, "-> menu", 0, 4), "newName": "9 lives" }),
    );
    assert!(r.get("error").is_some(), "{r}");
    let r = client.request(
        "textDocument/rename",
        json!({ "textDocument": doc(&app), "position": position(APP, "-> menu", 0, 4), "newName": "orders" }),
    );
    assert!(r["error"]["message"].as_str().unwrap_or("").contains("already"), "{r}");
}

#[test]
fn quick_fix_replaces_with_the_suggestion() {
    let (_dir, mut client, app, _) = setup();
    client.open(&app, APP);
    let list = client.diagnostics(&app, |l| !l.is_empty());
    let d = list.iter().find(|d| d["code"] == "GW0101").expect("GW0101").clone();
    let actions = client.result(
        "textDocument/codeAction",
        json!({ "textDocument": doc(&app), "range": d["range"], "context": { "diagnostics": [d] } }),
    );
    let action = &actions[0];
    assert_eq!(action["title"], "Replace `order` with `orders`");
    assert_eq!(action["kind"], "quickfix");
    let edit = &action["edit"]["changes"][app.as_str()][0];
    assert_eq!(edit["newText"], "orders");
    assert_eq!(edit["range"], d["range"]);
}

#[test]
fn semantic_tokens_colour_the_file() {
    let (_dir, mut client, app, _) = setup();
    client.open(&app, APP);
    let r = client.result("textDocument/semanticTokens/full", json!({ "textDocument": doc(&app) }));
    let data: Vec<u64> = r["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(data.len() % 5, 0);
    // Decode (line, start, length, type) and look some up.
    let mut tokens = Vec::new();
    let (mut line, mut col) = (0, 0);
    for t in data.chunks(5) {
        line += t[0];
        col = if t[0] == 0 { col + t[1] } else { t[1] };
        tokens.push((line, col, t[2], t[3], t[4]));
    }
    let find = |needle: &str, n: usize| {
        let p = position(APP, needle, n, 0);
        let (l, c) = (p["line"].as_u64().unwrap_or(0), p["character"].as_u64().unwrap_or(0));
        tokens.iter().find(|t| t.0 == l && t.1 == c).map(|t| (t.2, t.3, t.4))
    };
    // Types: 0 keyword, 1 property, 2 variable (+1 declaration), 3 string, 4 number.
    assert_eq!(find("upstream", 0), Some((8, 0, 0)));
    assert_eq!(find("orders {", 0), Some((6, 2, 1)));
    assert_eq!(find("server", 0), Some((6, 1, 0)));
    assert_eq!(find("\"https://login.example\"", 0), Some((23, 3, 0)));
    assert_eq!(find("5s", 0), Some((2, 4, 0)));
    assert_eq!(find("users\n", 0), Some((5, 2, 0)));
}

#[test]
fn a_broken_client_cannot_stop_the_server() {
    let dir = TempDir::new();
    let mut client = Client::spawn(dir.path(), &[]);
    // Before `initialize`: refused, not dropped.
    let r = client.request("textDocument/hover", json!({}));
    assert_eq!(r["error"]["code"], -32002, "{r}");
    client.request("initialize", json!({ "processId": null, "capabilities": {} }));
    client.notify("initialized", json!({}));
    // Not JSON, not a message, no Content-Length.
    client.send_raw(b"Content-Length: 9\r\n\r\n{not json");
    let e = client.wait_for(|m| m["error"]["code"] == -32700, "a parse error");
    assert_eq!(e["id"], Value::Null);
    client.send(&json!({ "jsonrpc": "2.0", "id": 41, "params": 3 }));
    let e = client.response(&json!(41));
    assert_eq!(e["error"]["code"], -32600);
    client.send_raw(b"Garbage-Header\r\n\r\n");
    client.wait_for(|m| m["error"]["code"] == -32700, "a header error");
    // Unknown methods, bad params, unknown documents.
    let r = client.request("gw/nothing", json!({}));
    assert_eq!(r["error"]["code"], -32601);
    let r = client.request("textDocument/hover", json!({ "textDocument": 5 }));
    assert_eq!(r["error"]["code"], -32602);
    let r = client.request(
        "textDocument/hover",
        at("file:///nowhere.gw", json!({ "line": 0, "character": 0 })),
    );
    assert_eq!(r["result"], Value::Null);
    // Positions past the end and inside a surrogate pair; text that is no configuration.
    let u = uri(&dir.path().join("x.gw"));
    client.open(&u, "route /😀 { respond 200 \"é😀\" }\n}}}{{{ \"open\n\u{0}\u{feff}");
    client.diagnostics(&u, |l| !l.is_empty());
    for (line, character) in [(0, 8), (0, 500), (99, 0), (1, 3), (0, 0)] {
        let pos = json!({ "line": line, "character": character });
        for method in [
            "textDocument/hover",
            "textDocument/completion",
            "textDocument/definition",
            "textDocument/prepareRename",
        ] {
            let r = client.request(method, at(&u, pos.clone()));
            assert!(r["error"]["code"] != -32603, "{method} at {pos}: {r}");
        }
    }
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": u, "version": 2 },
                "contentChanges": [{ "range": { "start": { "line": 50, "character": 9 }, "end": { "line": 0, "character": 3 } }, "text": "x" }] }),
    );
    let r = client.result("textDocument/semanticTokens/full", json!({ "textDocument": doc(&u) }));
    assert!(r["data"].is_array());
    // Nesting that would exhaust a parser's stack: a diagnostic, and every request answered.
    let deep = uri(&dir.path().join("deep.gw"));
    client.open(
        &deep,
        &format!(
            "route /x {{ require claim.a in {}{} }}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    );
    let list = client.diagnostics(&deep, |l| !l.is_empty());
    assert_eq!(list[0]["code"], "GW0001");
    for method in [
        "textDocument/semanticTokens/full",
        "textDocument/documentSymbol",
        "textDocument/foldingRange",
        "textDocument/formatting",
    ] {
        let r = client.request(
            method,
            json!({ "textDocument": doc(&deep), "options": { "tabSize": 2, "insertSpaces": true } }),
        );
        assert!(r["error"]["code"] != -32603, "{method}: {r}");
    }
    // Still answering; a clean exit.
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn dump_schema_lists_every_keyword() {
    let out = Gwc::new().args(["lsp", "--dump-schema"]).status(0).run();
    let json = out.json();
    let keywords = json["keywords"].as_array().expect("keywords");
    assert_eq!(keywords.len(), gw_compiler::schema::KEYWORDS.len());
    let timeout = keywords
        .iter()
        .find(|k| k["keyword"] == "timeout" && k["context"] == "upstream")
        .expect("upstream timeout");
    assert_eq!(timeout["default"], "`30s` *(decision)*");
}
