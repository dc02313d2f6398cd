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

/// Hover on a store's name, where it is defined and where a limit names
/// it: the store's declaration, its URL's password hidden.
#[test]
fn hover_on_a_store_shows_its_declaration() {
    let (dir, mut client, _, _) = setup();
    let text = "listen 127.0.0.1:8080\nupstream app { server 127.0.0.1:9001 }\n\
        store cache redis \"redis://u:pw-1@127.0.0.1:6379\"\n\
        limit l { rate 10/s key client_ip store cache }\nroute /x -> app { limit l }\n";
    let u = uri(&dir.path().join("store.gw"));
    client.open(&u, text);
    for (needle, shift) in [("store cache redis", 7), ("store cache }", 7)] {
        let r = client.result("textDocument/hover", at(&u, position(text, needle, 0, shift)));
        let shown = r["contents"]["value"].as_str().unwrap_or("").to_string();
        assert!(
            shown.contains("store `cache`") && shown.contains("redis"),
            "at {needle:?}: {r}"
        );
        assert!(!shown.contains("pw-1"), "{shown}");
    }
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

/// A name defined in an imported file is renamed in every open document
/// that uses it and in the files they import, whichever file the rename
/// starts from; a new name that any of them defines is refused.
#[test]
fn rename_of_an_imported_name_edits_every_file_that_uses_it() {
    let (dir, mut client, app, common) = setup();
    let other_text = "import \"common.gw\"\nlisten 127.0.0.1:8081\n\
        upstream kitchen { server 127.0.0.1:9003 }\nroute /m -> menu\nroute /k -> kitchen\n";
    std::fs::write(dir.path().join("other.gw"), other_text).expect("write");
    let other = uri(&dir.path().join("other.gw"));
    client.open(&app, APP);
    client.open(&other, other_text);
    let renames = [
        (app.clone(), position(APP, "-> menu", 0, 4)),
        (other.clone(), position(other_text, "-> menu", 0, 4)),
        (common.clone(), position(COMMON, "menu", 0, 1)),
    ];
    for (n, (from, at_menu)) in renames.iter().enumerate() {
        if n == 2 {
            client.open(&common, COMMON);
        }
        let edit = client.result(
            "textDocument/rename",
            json!({ "textDocument": doc(from), "position": at_menu, "newName": "carte" }),
        );
        let changes = edit["changes"].as_object().expect("changes");
        let mut files: Vec<&str> = changes.keys().map(String::as_str).collect();
        files.sort();
        let mut want = vec![app.as_str(), common.as_str(), other.as_str()];
        want.sort();
        assert_eq!(files, want, "from {from}: {edit}");
        assert_eq!(
            apply_edits(APP, changes[&app].as_array().expect("edits")),
            APP.replace("-> menu", "-> carte")
        );
        assert_eq!(
            apply_edits(other_text, changes[&other].as_array().expect("edits")),
            other_text.replace("-> menu", "-> carte")
        );
        assert_eq!(
            apply_edits(COMMON, changes[&common].as_array().expect("edits")),
            COMMON.replace("menu", "carte")
        );
        // other.gw, which uses `menu`, defines `kitchen`: renaming `menu`
        // to it would make both one.
        let r = client.request(
            "textDocument/rename",
            json!({ "textDocument": doc(from), "position": at_menu, "newName": "kitchen" }),
        );
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("already a upstream named `kitchen`")
                || r["error"]["message"].as_str().unwrap_or("").contains("named `kitchen`"),
            "from {from}: {r}"
        );
        let r = client.request(
            "textDocument/rename",
            json!({ "textDocument": doc(from), "position": at_menu, "newName": "a b" }),
        );
        assert!(
            r["error"]["message"].as_str().unwrap_or("").contains("is not a name"),
            "{r}"
        );
    }
}

/// A file several open documents import gets the union of what their
/// compiles find in it, each diagnostic once; what no importer reports
/// any more goes, and all of it when the last importer closes.
#[test]
fn diagnostics_of_a_file_imported_by_several_documents_are_their_union() {
    let (dir, mut client, _, _) = setup();
    let shared_text = "upstream menu { server 127.0.0.1:9002 weight 0 }\nroute /s -> svc\n";
    let a_text = "import \"shared.gw\"\nlisten 127.0.0.1:8080\nupstream svc { server 127.0.0.1:9003 }\n";
    let b_text = "import \"shared.gw\"\nlisten 127.0.0.1:8081\nroute /m -> menu\n";
    std::fs::write(dir.path().join("shared.gw"), shared_text).expect("write");
    let shared = uri(&dir.path().join("shared.gw"));
    let (a, b) = (uri(&dir.path().join("a.gw")), uri(&dir.path().join("b.gw")));
    let codes = |l: &[Value]| {
        l.iter()
            .map(|d| d["code"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    // b.gw's compile finds `weight 0` and the unknown `svc` in shared.gw.
    client.open(&b, b_text);
    let list = client.diagnostics(&shared, |l| !l.is_empty());
    assert_eq!(codes(&list), ["GW0106", "GW0101"]);
    // a.gw's finds `weight 0` too, and that `menu` is unused (from its
    // point of view): the union, `weight 0` once.
    client.open(&a, a_text);
    let list = client.diagnostics(&shared, |l| codes(l).contains(&"GW0501".to_string()));
    assert_eq!(codes(&list), ["GW0501", "GW0106", "GW0101"], "{list:?}");
    // b.gw defines `svc` now: no importer reports it unknown any more.
    client.change(&b, 2, &format!("{b_text}upstream svc {{ server 127.0.0.1:9004 }}\n"));
    let list = client.diagnostics(&shared, |l| !codes(l).contains(&"GW0101".to_string()));
    assert_eq!(codes(&list), ["GW0501", "GW0106"], "{list:?}");
    // a.gw closes: what only it found goes.
    client.notify("textDocument/didClose", json!({ "textDocument": doc(&a) }));
    let list = client.diagnostics(&shared, |l| !codes(l).contains(&"GW0501".to_string()));
    assert_eq!(codes(&list), ["GW0106"], "{list:?}");
    client.notify("textDocument/didClose", json!({ "textDocument": doc(&b) }));
    client.diagnostics(&shared, |l| l.is_empty());
}

/// The same file reached through a symlinked folder, through `..` or with
/// its name percent-encoded is one document: its unsaved text is what the
/// files importing it read, and a change sent under any of its URIs
/// changes it.
#[test]
fn one_document_whichever_uri_names_it() {
    let (dir, mut client, app, _) = setup();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).expect("symlink");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    client.open(&app, APP);
    client.diagnostics(&app, |l| l.iter().any(|d| d["code"] == "GW0101"));
    let via_link = uri(&dir.path().join("link").join("common.gw"));
    let with_order = format!("{COMMON}upstream order {{ server 127.0.0.1:9003 }}\n");
    client.open(&via_link, &with_order);
    client.diagnostics(&app, |l| !l.iter().any(|d| d["code"] == "GW0101"));
    // The same document by another URI: `..` and an escaped letter.
    let odd = uri(&dir.path().join("sub").join("..").join("c%6Fmmon.gw"));
    client.change(&odd, 2, COMMON);
    client.diagnostics(&app, |l| l.iter().any(|d| d["code"] == "GW0101"));
    // The definition of `menu` is in the document, named as the client named it.
    let r = client.result("textDocument/definition", at(&app, position(APP, "-> menu", 0, 4)));
    let target = r.as_array().and_then(|l| l.first()).cloned().unwrap_or(r);
    assert_eq!(target["uri"], via_link.as_str(), "{target}");
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

/// `text` with LSP text edits applied (ASCII text: characters are bytes).
fn apply_edits(text: &str, edits: &[Value]) -> String {
    let offset = |p: &Value| {
        let line = p["line"].as_u64().expect("line") as usize;
        let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        start + p["character"].as_u64().expect("character") as usize
    };
    let mut spans: Vec<(usize, usize, &str)> = edits
        .iter()
        .map(|e| {
            (
                offset(&e["range"]["start"]),
                offset(&e["range"]["end"]),
                e["newText"].as_str().expect("newText"),
            )
        })
        .collect();
    spans.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut out = text.to_string();
    for (a, b, new) in spans {
        out.replace_range(a..b, new);
    }
    out
}

/// A suggestion that names part of the diagnostic's span replaces that part
/// only: `fil("k")` becomes `file("k")`, not `file`; `claims.sub` becomes
/// `claim.sub`, not `claim`; and each fix leaves no diagnostic of its kind.
#[test]
fn quick_fixes_replace_only_the_misspelt_part() {
    let (dir, mut client, _, _) = setup();
    std::fs::write(dir.path().join("keys.txt"), "k-0123456789abcdef0123456789abcdef\n").expect("write");
    let text = "listen 127.0.0.1:8080\n\
        upstream app { server 127.0.0.1:9 }\n\
        auth users jwt { issuer \"i\" audience \"a\" algorithms HS256 secret env(\"JWT_SECRET\") }\n\
        auth k api_key { keys fil(\"keys.txt\") }\n\
        limit l { rate 1/s key claims.sub }\n\
        route /x -> app { auth users limit l set request header x-u \"{claims.sub}\" }\n\
        route /y -> app { auth k }\n";
    let u = uri(&dir.path().join("fix.gw"));
    client.open(&u, text);
    client.diagnostics(&u, |l| l.len() >= 3);
    let actions = client.result(
        "textDocument/codeAction",
        json!({ "textDocument": doc(&u), "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 9, "character": 0 } },
                "context": { "diagnostics": [] } }),
    );
    let actions = actions.as_array().expect("actions").clone();
    let mut fixed_lines = Vec::new();
    for (version, action) in (2..).zip(&actions) {
        let edits = action["edit"]["changes"][u.as_str()].as_array().expect("edits").clone();
        let code = action["diagnostics"][0]["code"].clone();
        let line = edits[0]["range"]["start"]["line"].as_u64().expect("line");
        let fixed = apply_edits(text, &edits);
        fixed_lines.push(fixed.lines().nth(line as usize).unwrap_or("").to_string());
        client.change(&u, version, &fixed);
        let m = client.wait_for(
            |m| {
                m["method"] == "textDocument/publishDiagnostics"
                    && m["params"]["uri"] == u.as_str()
                    && m["params"]["version"] == version
            },
            "diagnostics of the fixed text",
        );
        let left: Vec<&Value> = m["params"]["diagnostics"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|d| d["code"] == code && d["range"]["start"]["line"] == line)
            .collect();
        assert!(left.is_empty(), "{} left {left:?} in\n{fixed}", action["title"]);
    }
    assert_eq!(
        fixed_lines,
        [
            "auth k api_key { keys file(\"keys.txt\") }",
            "limit l { rate 1/s key claim.sub }",
            "route /x -> app { auth users limit l set request header x-u \"{claim.sub}\" }",
        ],
        "{actions:?}"
    );
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

/// A 100,000-column line: diagnostics at the right character, and hover,
/// completion and formatting there still answered.
#[test]
fn a_hundred_thousand_column_line_is_served() {
    let (dir, mut client, _, _) = setup();
    let text = format!(
        "listen 127.0.0.1:8080\nupstream app {{ server 127.0.0.1:9001 }}\n\
         route /x -> app {{ set request header x-a \"{}\" }} route /y -> ap\n",
        "é".repeat(100_000)
    );
    let u = uri(&dir.path().join("long.gw"));
    client.open(&u, &text);
    let list = client.diagnostics(&u, |l| !l.is_empty());
    let at_ap = position(&text, "-> ap\n", 0, 3);
    let unknown = list.iter().find(|d| d["code"] == "GW0101").expect("GW0101");
    assert_eq!(unknown["range"]["start"], at_ap);
    let hover = client.result("textDocument/hover", at(&u, at_ap.clone()));
    assert!(hover.to_string().contains("GW0101"), "{hover}");
    client.result("textDocument/completion", at(&u, at_ap));
    let r = client.request(
        "textDocument/formatting",
        json!({ "textDocument": doc(&u), "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert!(r.get("result").is_some(), "{r}");
}

/// Completion inside an aggregate (a part's upstream, method, `optional`)
/// and a `require` (its reference, then its operator, then nothing: a
/// value), on lines after half-written ones too; inside a comment, nothing.
#[test]
fn completion_in_aggregates_and_requires_and_none_in_comments() {
    let (dir, mut client, _, _) = setup();
    let text = "listen 127.0.0.1:8080\n\
        upstream users { server 127.0.0.1:9001 }\n\
        upstream orders { server 127.0.0.1:9002 }\n\
        auth jw jwt { issuer \"i\" audience \"a\" algorithms HS256 secret env(\"JWT_SECRET\") }\n\
        route GET /me {\n  auth jw\n  require claim.role in [\"a\"] \n  require \n  require claim.scope \n  \
        require claim.sub == \n  aggregate {\n    profile users GET \"/u/{claim.sub}\"\n    \
        orders orders GET \"/o\" optional\n    \n    extra users \n    more users GET \"/m\" \n    last \n  }\n}\n\
        # a comment -> here, auth \nroute /c -> users # auth \n";
    let u = uri(&dir.path().join("c.gw"));
    client.open(&u, text);
    client.result("textDocument/documentSymbol", json!({ "textDocument": doc(&u) }));
    let mut complete = |needle: &str, shift: u32| {
        let mut got = labels(&client.result("textDocument/completion", at(&u, position(text, needle, 0, shift))));
        got.sort();
        got
    };
    let has = |got: &[String], want: &[&str]| want.iter().all(|w| got.iter().any(|g| g == w));
    let got = complete("  require \n", 10);
    assert!(has(&got, &["claim.", "header."]), "{got:?}");
    assert_eq!(complete("claim.scope \n", 12), ["!=", "==", "has", "in"]);
    assert_eq!(complete("claim.sub == \n", 13), Vec::<String>::new());
    let got = complete("[\"a\"] \n", 6);
    assert!(has(&got, &["aggregate", "limit", "require"]), "{got:?}");
    assert_eq!(complete("    \n    extra", 4), ["timeout"]);
    let got = complete("extra users \n", 12);
    assert!(has(&got, &["GET", "POST"]) && !has(&got, &["timeout"]), "{got:?}");
    assert_eq!(complete("more users GET \"/m\" \n", 20), ["optional", "timeout"]);
    assert_eq!(complete("last \n", 5), ["orders", "users"]);
    for (needle, shift) in [
        ("a comment", 4),
        ("comment -> ", 11),
        ("here, auth \n", 11),
        ("users # auth \n", 13),
    ] {
        assert_eq!(
            complete(needle, shift),
            Vec::<String>::new(),
            "in a comment at {needle:?}+{shift}"
        );
    }
}

/// Formatting a large file runs beside the main loop: another file's
/// diagnostics are published while it runs, and its edits come after.
#[test]
fn formatting_a_large_file_holds_up_no_diagnostics() {
    let (dir, mut client, _, _) = setup();
    let mut big = String::from("listen 127.0.0.1:8080\nupstream app {server 127.0.0.1:9001}\n");
    for i in 0..3000 {
        big.push_str(&format!("route GET /r{i}/{{id}} -> app {{  timeout 5s }}\n"));
    }
    let (a, b) = (uri(&dir.path().join("big.gw")), uri(&dir.path().join("small.gw")));
    client.open(&a, &big);
    client.diagnostics(&a, |_| true);
    let id = json!(client.send_request(
        "textDocument/formatting",
        json!({ "textDocument": doc(&a), "options": { "tabSize": 2, "insertSpaces": true } }),
    ));
    client.open(&b, "listen 127.0.0.1:8081\nroute /x -> nowhere\n");
    let list = client.diagnostics(&b, |l| !l.is_empty());
    assert_eq!(list[0]["code"], "GW0101");
    let answered = client.has_kept(|m| m.get("id") == Some(&id) && m.get("method").is_none());
    assert!(
        !answered,
        "the formatting was answered before the diagnostics of another file"
    );
    let r = client.response(&id);
    let edits = r["result"].as_array().expect("edits");
    assert_eq!(edits.len(), 1, "{r}");
    assert!(edits[0]["newText"]
        .as_str()
        .unwrap_or("")
        .contains("route GET /r2999/{id} -> app { timeout 5s }"));
    assert_eq!(edits[0]["range"]["end"], json!({ "line": 3002, "character": 0 }));
}

/// The server redacts secrets as `gwc check` does: nothing it sends
/// (diagnostics, their related information, hover, outline, quick fixes, a
/// refused formatting's reason) holds an inline secret or a URL's password,
/// in a file that parses or not.
#[test]
fn nothing_the_server_sends_shows_a_secret() {
    let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let text = format!(
        "listen 127.0.0.1:0
upstream app {{ server 127.0.0.1:9 }}
auth users jwt {{ issuer \"i\" audience \"a\" algorithms HS256 secret {hex} }}
auth remote jwt {{
  issuer \"i\"
  audience \"a\"
  algorithms RS256
  jwks url \"https://tok:JWKSPASSWORD@auth.example.com/jwks\"
}}
auth partners api_key {{
  key \"MISSPELTKEY-1\"
}}
store cache redis \"redis://user:REDISPASSWORD@h:6379\"
limit l {{ rate 1/s store cache }}
route GET /a -> app {{ auth users limit l }}
route GET /b -> app {{ auth remote }}
route GET /c -> app {{ auth partners }}
route GET /d -> ap
"
    );
    let secrets = [&hex[..12], "JWKSPASSWORD", "REDISPASSWORD", "MISSPELTKEY"];
    let dir = TempDir::new();
    let (mut client, _) = Client::start(dir.path(), &[]);
    let app = uri(&dir.path().join("app.gw"));
    let mut sent = Vec::new();
    client.open(&app, &text);
    let list = client.diagnostics(&app, |l| l.iter().any(|d| d["code"] == "GW0103"));
    sent.push(json!(list));
    // The declarations' texts a name's hover shows.
    for (needle, n) in [("auth users", 1), ("auth remote", 1), ("auth partners", 1)] {
        let hover = client.result("textDocument/hover", at(&app, position(&text, needle, n, 6)));
        assert!(hover.to_string().contains("defined in"), "{needle}: {hover}");
        sent.push(hover);
    }
    sent.push(client.result("textDocument/documentSymbol", json!({ "textDocument": doc(&app) })));
    let end = position(&text, "route GET /d", 0, 0);
    sent.push(client.result(
        "textDocument/codeAction",
        json!({ "textDocument": doc(&app), "range": { "start": { "line": 0, "character": 0 }, "end": end },
                "context": { "diagnostics": [] } }),
    ));
    // URLs without quotes: a syntax error quoting one.
    let bare = text
        .replace('"', "")
        .replace("issuer i audience a", "issuer \"i\" audience \"a\"");
    client.change(&app, 2, &bare);
    sent.push(json!(
        client.diagnostics(&app, |l| l.iter().any(|d| d["code"] == "GW0001"))
    ));
    // `secret = ...`: not formatted, and why.
    let broken = text.replace(&format!("secret {hex} }}"), &format!("secret = {hex} }}"));
    client.change(&app, 3, &broken);
    sent.push(json!(
        client.diagnostics(&app, |l| l.iter().any(|d| d["code"] == "GW0001"))
    ));
    let refused = client.request(
        "textDocument/formatting",
        json!({ "textDocument": doc(&app), "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert!(refused.to_string().contains("not formatted"), "{refused}");
    sent.push(refused);
    let all = serde_json::to_string_pretty(&sent).expect("JSON");
    for secret in secrets {
        assert!(!all.contains(secret), "gwc lsp sends {secret}:\n{all}");
    }
}
