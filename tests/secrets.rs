//! Secrets never printed (docs/language.md §1): a configuration with planted
//! secrets — an inline JWT secret, inline API keys, a bare-word secret, the
//! password of a store's URL and of a JWKS URL — and every output of gw is
//! searched for them: `gwc check` (text and JSON, diagnostics whose snippet
//! only comes near a secret included), `gwc plan`, `gwc route`, `gwc test`,
//! the log of `gwc serve` (start, a refused reload), and the admin `/plan`
//! and `/metrics`. The plan file `gwc build` writes is the one exception,
//! and says so. Control characters from the file never reach the output
//! raw.

use crate::serve_harness::{exchange, Served};
use crate::support::Gwc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The planted secrets: none may appear in any output.
const SECRETS: [&str; 5] = [
    "PLANTED-jwt-secret-0123456789",
    "PLANTED-api-key-1",
    "PLANTED-api-key-2",
    "PLANTEDREDISPASSWORD",
    "PLANTEDJWKSPASSWORD",
];

/// A valid configuration holding every planted secret (warnings only).
fn app() -> String {
    "listen 127.0.0.1:0
admin 127.0.0.2:0
upstream app { server 127.0.0.1:9 }
auth users jwt {
  issuer \"i\"
  audience \"a\"
  algorithms HS256
  secret \"PLANTED-jwt-secret-0123456789\"
}
auth remote jwt {
  issuer \"i\"
  audience \"a\"
  algorithms RS256
  jwks url \"http://reader:PLANTEDJWKSPASSWORD@127.0.0.1:9/jwks.json\"
}
auth partners api_key {
  keys \"PLANTED-api-key-1 partner-a\", \"PLANTED-api-key-2\"
}
store shared redis \"redis://gw:PLANTEDREDISPASSWORD@127.0.0.1:9/0\" { on_error allow }
limit per_key { rate 10/s key api_key store shared }
route GET /a -> app { auth users }
route GET /b -> app { auth partners limit per_key }
route GET /c -> app { auth remote }
test \"routing\" { GET /a -> app }
"
    .to_string()
}

/// Fails naming the output and the secret found in it.
fn assert_clean(what: &str, output: &str) {
    for secret in SECRETS {
        assert!(!output.contains(secret), "{what} prints {secret}:\n{output}");
    }
    for raw in ["\u{1b}", "\u{7}", "\0"] {
        assert!(
            !output.contains(raw),
            "{what} prints a raw control character {raw:?}:\n{output}"
        );
    }
}

#[test]
fn check_plan_route_and_test_never_print_a_secret() {
    for args in [
        vec!["check", "app.gw"],
        vec!["check", "--format", "json", "app.gw"],
        vec!["plan", "app.gw"],
        vec!["route", "app.gw", "GET", "/b"],
        vec!["test", "app.gw"],
    ] {
        let out = Gwc::new().file("app.gw", app()).args(args.clone()).run();
        assert_eq!(out.status, Some(0), "gwc {args:?}: {}{}", out.stdout, out.stderr);
        assert_clean(
            &format!("gwc {}", args.join(" ")),
            &format!("{}{}", out.stdout, out.stderr),
        );
    }
    // What stands in their place.
    let out = Gwc::new().file("app.gw", app()).args(["check", "app.gw"]).run();
    assert!(
        out.stdout.contains("secret \"*****************************\""),
        "{}",
        out.stdout
    );
    let out = Gwc::new().file("app.gw", app()).args(["plan", "app.gw"]).run();
    assert!(
        out.stdout.contains("redis://gw:<redacted>@127.0.0.1:9/0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("http://reader:<redacted>@127.0.0.1:9/jwks.json"),
        "{}",
        out.stdout
    );
}

#[test]
fn every_diagnostic_near_a_secret_masks_it() {
    // Errors on the lines next to the secrets, in the same declarations, a
    // declaration that does not parse, and values whose messages quote them.
    let broken = "\
upstream app { server 127.0.0.1:9 }
auth users jwt {
  issuer \"i\"
  audience \"a\"
  algorithms HS256
  secret \"PLANTED-jwt-secret-0123456789\"
  leeway forever
}
auth partners api_key {
  keys \"PLANTED-api-key-1 partner-a\", \"PLANTED-api-key-2\"
  from nowhere x-api-key
}
auth bare jwt { issuer \"i\" audience \"a\" algorithms HS256 secret PLANTED-api-key-1 }
store shared redis \"rediz://gw:PLANTEDREDISPASSWORD@127.0.0.1:9/0\"
auth broken jwt {
  secret \"PLANTED-jwt-secret-0123456789\"
  issuer = \"i\"
route GET /a -> app { auth users }
route GET /b -> app { auth partners }
";
    for args in [
        vec!["check", "broken.gw"],
        vec!["check", "--format", "json", "broken.gw"],
        vec!["plan", "broken.gw"],
    ] {
        let out = Gwc::new().file("broken.gw", broken).args(args.clone()).run();
        assert_eq!(out.status, Some(1), "gwc {args:?}: {}{}", out.stdout, out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert_clean(&format!("gwc {}", args.join(" ")), &all);
        // The diagnostics are there all the same.
        for code in ["GW0106", "GW0003", "GW0001"] {
            assert!(all.contains(code), "gwc {args:?} lacks {code}:\n{all}");
        }
    }
}

#[test]
fn control_characters_from_the_file_are_escaped() {
    // ESC, BEL, CR and NUL written raw into the file, in a string, in a bad
    // value and in an import's name.
    let text = "upstream app { server 127.0.0.1:9 }\n\
                route GET /a { respond 999 \"\u{1b}[2J\u{7}\" }\n\
                route GET /b -> app { timeout 5\u{1b}[31m\r\0s }\n\
                import \"\u{1b}]0;owned\u{7}.gw\"\n";
    for args in [vec!["check", "app.gw"], vec!["check", "--format", "json", "app.gw"]] {
        let out = Gwc::new().file("app.gw", text).args(args.clone()).run();
        assert_eq!(out.status, Some(1));
        let all = format!("{}{}", out.stdout, out.stderr);
        assert_clean(&format!("gwc {}", args.join(" ")), &all);
        assert!(!all.contains('\r'), "a raw CR:\n{all}");
    }
    let out = Gwc::new().file("app.gw", text).args(["check", "app.gw"]).run();
    assert!(out.stdout.contains("\\u{1b}[2J\\u{7}"), "{}", out.stdout);
    // Written as escapes in a valid file, they are not sent raw by `gwc
    // plan` or `gwc route` either.
    let valid = "upstream app { server 127.0.0.1:9 }\n\
                 route GET /a -> app { set response header x-a \"\\u{1b}[2J\\u{7}\" }\n\
                 route GET /b { respond 200 \"\\u{1b}]0;owned\\u{7}\" }\n";
    for args in [
        vec!["plan", "app.gw"],
        vec!["route", "app.gw", "GET", "/a"],
        vec!["route", "app.gw", "GET", "/b"],
    ] {
        let out = Gwc::new().file("app.gw", valid).args(args.clone()).run();
        assert_eq!(out.status, Some(0), "gwc {args:?}: {}{}", out.stdout, out.stderr);
        assert_clean(
            &format!("gwc {}", args.join(" ")),
            &format!("{}{}", out.stdout, out.stderr),
        );
    }
    assert!(out.stdout.contains("5\\u{1b}[31m\\r\\0s"), "{}", out.stdout);
}

/// Bidirectional overrides and isolates ("Trojan Source": a line that
/// reads in another order than it parses) and zero-width characters are
/// shown escaped in diagnostics, like control characters.
#[test]
fn invisible_characters_from_the_file_are_escaped() {
    let text = "upstream app { server 127.0.0.1:9 }\n\
                route GET /a { respond 999 \"ok\u{202e} \u{2066}admin\u{2069}\" }\n\
                route GET /b -> app { timeout 5\u{200b}s }\n\
                route GET /c -> ap\u{feff}p\n";
    let invisible = ['\u{202e}', '\u{2066}', '\u{2069}', '\u{200b}', '\u{feff}'];
    for args in [vec!["check", "app.gw"], vec!["check", "--format", "json", "app.gw"]] {
        let out = Gwc::new().file("app.gw", text).args(args.clone()).run();
        assert_eq!(out.status, Some(1));
        let all = format!("{}{}", out.stdout, out.stderr);
        for c in invisible {
            assert!(!all.contains(c), "gwc {args:?} prints {c:?} raw:\n{all}");
        }
    }
    let out = Gwc::new().file("app.gw", text).args(["check", "app.gw"]).run();
    for escaped in ["ok\\u{202e} \\u{2066}admin\\u{2069}", "5\\u{200b}s"] {
        assert!(out.stdout.contains(escaped), "{escaped}: {}", out.stdout);
    }
}

#[test]
fn build_says_its_plan_carries_the_secrets() {
    // The one exception: serving a built plan needs inline secrets.
    let out = Gwc::new()
        .file("app.gw", app())
        .args(["build", "app.gw", "-o", "app.plan.json"])
        .status(0)
        .stdout_has("note: the plan carries 5 secrets written inline in the configuration")
        .run();
    assert_clean("gwc build (its messages)", &out.stderr);
    let out = Gwc::new()
        .file("app.gw", app())
        .args(["build", "app.gw", "-o", "-"])
        .run();
    assert!(
        out.stdout.contains("PLANTED-jwt-secret-0123456789"),
        "the plan file carries it"
    );
    assert!(
        out.stderr.contains("note: the plan carries 5 secrets"),
        "{}",
        out.stderr
    );
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect to admin");
    let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    let (status, body) = exchange(&mut s, request.as_bytes()).await.expect("an answer");
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn serve_log_admin_plan_and_metrics_never_show_a_secret() {
    let served = Served::start(&[("app.gw", &app())], &["app.gw"]);
    let listen = served.bound(1).await[0];
    let admin = served.admin().await;
    // Traffic that is refused (a wrong API key) and routed.
    let mut s = TcpStream::connect(listen).await.expect("connect");
    let _ = exchange(
        &mut s,
        b"GET /b HTTP/1.1\r\nhost: x\r\nx-api-key: PLANTED-api-key-3\r\nconnection: close\r\n\r\n",
    )
    .await;
    let plan = get(admin, "/plan").await;
    assert_clean("/plan", &plan);
    assert!(plan.contains("<redacted>"), "{plan}");
    let metrics = get(admin, "/metrics").await;
    assert_clean("/metrics", &metrics);
    // A reload refused for an error next to the secret: its diagnostics are logged.
    served.write(
        "app.gw",
        &app().replace("  algorithms HS256\n", "  algorithms HS256\n  leeway forever\n"),
    );
    served.signal("HUP");
    served
        .wait_lines(Duration::from_secs(20), 1, |l| {
            l.contains("leeway") || l.contains("GW0106")
        })
        .await;
    served.signal("TERM");
    served.wait_exit(Duration::from_secs(30)).await;
    assert_clean("the serve log", &served.output());
}

/// Passwords written without percent-encoding what cuts a URL: `/` (a base64
/// password has it), `?`, `#`, a space, a quote, a backtick.
const CUTTING_PASSWORDS: [&str; 6] = [
    "q7Zk/9vR+CUTPASSWORD/aXe2=",
    "q7Zk?CUTPASSWORD",
    "q7Zk#CUTPASSWORD",
    "q7Zk CUTPASSWORD",
    "q7Zk\\\"CUTPASSWORD",
    "q7Zk`CUTPASSWORD",
];

fn cut_store(password: &str) -> String {
    app().replace("gw:PLANTEDREDISPASSWORD", &format!(":{password}"))
}

#[test]
fn a_store_url_whose_password_cuts_the_url_is_refused_without_printing_it() {
    for pw in CUTTING_PASSWORDS {
        for args in [
            vec!["check", "app.gw"],
            vec!["check", "--format", "json", "app.gw"],
            vec!["plan", "app.gw"],
        ] {
            let out = Gwc::new().file("app.gw", cut_store(pw)).args(args.clone()).run();
            let all = format!("{}{}", out.stdout, out.stderr);
            assert_eq!(out.status, Some(1), "gwc {args:?} with {pw}: {all}");
            assert!(all.contains("GW0003") && all.contains("percent-encode"), "{pw}: {all}");
            assert!(!all.contains("CUTPASSWORD"), "gwc {args:?} prints {pw}:\n{all}");
        }
    }
}

/// A built plan edited by hand to carry such a URL (the checker never lets
/// one through): `/plan` hides the password and the log's error quotes no
/// part of the URL.
#[tokio::test]
async fn a_store_url_whose_password_cuts_the_url_is_never_served_in_plan_or_log() {
    let out = Gwc::new()
        .file("app.gw", app())
        .args(["build", "app.gw", "-o", "-"])
        .run();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    for pw in ["q7Zk/9vR+CUTPASSWORD/aXe2=", "q7Zk?CUTPASSWORD", "q7Zk CUTPASSWORD"] {
        let mut plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
        plan["stores"][0]["url"] = format!("redis://:{pw}@127.0.0.1:6379").into();
        let served = Served::start(&[("app.plan.json", &plan.to_string())], &["app.plan.json"]);
        let admin = served.admin().await;
        let shown = get(admin, "/plan").await;
        assert!(!shown.contains("CUTPASSWORD"), "/plan shows {pw}:\n{shown}");
        assert!(shown.contains("redis://:<redacted>@127.0.0.1:6379"), "{shown}");
        served
            .wait_lines(Duration::from_secs(20), 1, |l| l.contains("redis store cannot be used"))
            .await;
        served.signal("TERM");
        served.wait_exit(Duration::from_secs(30)).await;
        let log = served.output();
        assert!(!log.contains("CUTPASSWORD"), "the log shows {pw}:\n{log}");
    }
}

/// Secrets and URLs written without quotes: a message quoting the value
/// ("found `...`", shortened) and the snippet both hide them.
#[test]
fn unquoted_secrets_and_urls_are_never_printed() {
    let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let text = format!(
        "listen 127.0.0.1:0
upstream app {{ server 127.0.0.1:9 }}
auth users jwt {{ issuer \"i\" audience \"a\" algorithms HS256 secret {hex} }}
auth remote jwt {{
  issuer \"i\"
  audience \"a\"
  algorithms RS256
  jwks url https://tok:BAREJWKSPASSWORD@auth.example.com/jwks
}}
store s redis redis://user:BAREREDISPASSWORD@h:6379
limit l {{ rate 1/s store s }}
route GET /a -> app {{ auth users limit l }}
route GET /b -> app {{ auth remote }}
"
    );
    for args in [vec!["check", "app.gw"], vec!["check", "--format", "json", "app.gw"]] {
        let out = Gwc::new().file("app.gw", &text).args(args.clone()).run();
        let all = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.status, Some(1), "{all}");
        for secret in [&hex[..12], "BAREJWKSPASSWORD", "BAREREDISPASSWORD"] {
            assert!(!all.contains(secret), "gwc {args:?} prints {secret}:\n{all}");
        }
        assert!(all.contains("GW0003"), "{all}");
    }
}

// ------------------------------------------------------------------ any layout

mod layouts {
    //! The values of `secret` and `keys` in every layout the grammar takes
    //! (on the next line, after comments, one per line after commas as
    //! `gwc fmt` writes them, in lists, after references), in files that
    //! parse and in files that do not: no secret appears in any diagnostic
    //! (its JSON, and the lines its snippets show as the renderer draws
    //! them), of the file or of `gwc fmt`'s layout of it.

    use gw_compiler::format::{format_source, Refused};
    use gw_compiler::host::MemoryHost;
    use gw_compiler::{redact, Diagnostic, SourceMap};
    use proptest::prelude::*;

    fn blank() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            " ",
            "  ",
            "\n",
            "\n    ",
            " # note \"q\" [\n  ",
            "\n# note\n",
            "\t",
            "\r\n  ",
        ])
    }

    fn secret() -> impl Strategy<Value = String> {
        "[a-z0-9]{10}".prop_map(|s| format!("SeK{s}"))
    }

    /// A value of `keys` or `secret`: its text and the secrets in it.
    fn value() -> impl Strategy<Value = (String, Vec<String>)> {
        let leaf = prop_oneof![
            4 => secret().prop_map(|s| (format!("\"{s}\""), vec![s])),
            1 => secret().prop_map(|s| (s.clone(), vec![s])),
            1 => Just(("env(\"GW_K\")".to_string(), vec![])),
            1 => Just(("file(\"k.txt\")".to_string(), vec![])),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            (prop::collection::vec((inner, blank()), 1..4), blank()).prop_map(|(items, end)| {
                let mut text = "[".to_string();
                let mut all = Vec::new();
                for (i, ((t, s), b)) in items.into_iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(b);
                    text.push_str(&t);
                    all.extend(s);
                }
                text.push_str(end);
                text.push(']');
                (text, all)
            })
        })
    }

    /// `word` and its values, laid out with the blanks given.
    fn statement(word: &'static str) -> impl Strategy<Value = (String, Vec<String>)> {
        (blank(), prop::collection::vec((blank(), value(), blank()), 1..4)).prop_map(move |(first, values)| {
            let mut text = word.to_string();
            let mut all = Vec::new();
            for (i, (before, (t, s), after)) in values.into_iter().enumerate() {
                text.push_str(if i == 0 { first } else { before });
                text.push_str(&t);
                text.push_str(after);
                all.extend(s);
                text.push(',');
            }
            text.pop();
            (text, all)
        })
    }

    /// A configuration holding secrets, with a mistake or not.
    fn configuration() -> impl Strategy<Value = (String, Vec<String>)> {
        (statement("keys"), statement("secret"), 0..5u8).prop_map(|((keys, mut k), (secret, s), mistake)| {
            let extra = match mistake {
                0 => "",
                1 => "\n  leeway forever",
                2 => "\n  issuer = \"x\"",
                3 => "\n  Secret \"x\"",
                _ => "\n  from nowhere x",
            };
            let text = format!(
                "listen 127.0.0.1:0\nupstream app {{ server 127.0.0.1:9 }}\n\
                 auth partners api_key {{\n  {keys}\n}}\n\
                 auth users jwt {{\n  issuer \"i\"\n  audience \"a\"\n  algorithms HS256\n  {secret}{extra}\n}}\n\
                 route GET /a -> app {{ auth users }}\nroute GET /b -> app {{ auth partners }}\n"
            );
            k.extend(s);
            (text, k)
        })
    }

    /// Fails naming the first secret (or 8 bytes of one) in `shown`.
    fn assert_hidden(what: &str, shown: &str, secrets: &[String], text: &str) {
        for s in secrets {
            for w in s.as_bytes().windows(8) {
                let w = std::str::from_utf8(w).expect("ASCII");
                assert!(
                    !shown.contains(w),
                    "{what} shows `{w}` of {s}:\n{shown}\n--- in ---\n{text}"
                );
            }
        }
    }

    /// Every diagnostic as shown: JSON, and the lines around each label as
    /// the renderer draws them (masked, escaped).
    fn check_all(diagnostics: &[Diagnostic], sources: &SourceMap, secrets: &[String], text: &str) {
        for d in diagnostics {
            assert_hidden(d.code.as_str(), &d.to_json(sources).to_string(), secrets, text);
            for l in &d.labels {
                let f = sources.get(l.span.file);
                let (first, _) = f.line_col(l.span.start);
                let (last, _) = f.line_col(l.span.end);
                let lines = f.lines(first.saturating_sub(3), last + 2);
                let shown = redact::shown(&f.text, lines, f.secrets());
                assert_hidden(&format!("{}'s snippet", d.code), &shown, secrets, text);
            }
        }
    }

    fn compile_and_check(text: &str, secrets: &[String]) {
        let host = MemoryHost::new().file("k.txt", "k1\n");
        let c = gw_compiler::compile_text(&host, "app.gw", text);
        assert!(!c.diagnostics.is_empty(), "GW0505 at least");
        check_all(&c.diagnostics, &c.sources, secrets, text);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn no_layout_shows_a_secret((text, secrets) in configuration()) {
            compile_and_check(&text, &secrets);
            match format_source("app.gw", text.as_bytes()) {
                Ok(formatted) => compile_and_check(&formatted, &secrets),
                Err(Refused::Syntax { sources, diagnostics }) => check_all(&diagnostics, &sources, &secrets, &text),
                Err(Refused::Unsafe(why)) => panic!("gwc fmt: {why}"),
            }
        }
    }
}

/// The layouts a review found shown in GW0505's snippet or GW0106's
/// message, `gwc fmt`'s own among them, through `gwc check`.
#[test]
fn secrets_in_any_layout_are_masked_by_gwc_check() {
    let layouts = [
        "keys\n    \"LAYOUTKEY-1\"",
        "keys \"LAYOUTKEY-1\"\n  , \"LAYOUTKEY-2\"",
        "keys \"LAYOUTKEY-1\", \"LAYOUTKEY-2\",  # partner b\n    \"LAYOUTKEY-3\"",
        "keys env(\"GW_K\"), \"LAYOUTKEY-1\"",
        "keys [\"LAYOUTKEY-1\",\"LAYOUTKEY-2\"]",
    ];
    for keys in layouts {
        let text = format!(
            "listen 127.0.0.1:0\nupstream app {{ server 127.0.0.1:9 }}\n\
             auth partners api_key {{\n  {keys}\n}}\n\
             auth users jwt {{\n  issuer \"i\"\n  audience \"a\"\n  algorithms HS256\n  secret\n    \"LAYOUTSECRET\"\n}}\n\
             route GET /a -> app {{ auth users }}\nroute GET /b -> app {{ auth partners }}\n"
        );
        for args in [vec!["check", "app.gw"], vec!["check", "--format", "json", "app.gw"]] {
            let out = Gwc::new()
                .file("app.gw", &text)
                .env("GW_K", "x")
                .args(args.clone())
                .run();
            let all = format!("{}{}", out.stdout, out.stderr);
            assert!(all.contains("GW0505"), "{all}");
            assert!(!all.contains("LAYOUT"), "gwc {args:?} shows a secret:\n{all}");
        }
    }
}

/// A secret under a misspelled name (`key` for `keys`, `Secret`) is an
/// unknown attribute (GW0103), whose snippet shows its line: masked, in a
/// declaration that parses and in one that does not.
#[test]
fn secrets_under_misspelled_names_are_masked() {
    let text = "listen 127.0.0.1:0
upstream app { server 127.0.0.1:9 }
auth partners api_key {
  key \"MISSPELTKEY-1\", [\"MISSPELTKEY-2\"]
}
auth users jwt {
  issuer \"i\"
  audience \"a\"
  algorithms HS256
  Secret \"MISSPELTSECRET-1\"
  secret env(\"GW_K\")
}
auth broken jwt {
  Secret \"MISSPELTSECRET-2\"
  issuer = \"i\"
}
route GET /a -> app { auth users }
route GET /b -> app { auth partners }
";
    for args in [vec!["check", "app.gw"], vec!["check", "--format", "json", "app.gw"]] {
        let out = Gwc::new()
            .file("app.gw", text)
            .env("GW_K", "k")
            .args(args.clone())
            .run();
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains("GW0103") && all.contains("GW0001"), "{all}");
        assert!(!all.contains("MISSPELT"), "gwc {args:?} shows a secret:\n{all}");
    }
}

/// A misspelled `auth` declaration with a misspelled secret word in it is
/// a syntax error whose snippet shows the line: the value is masked.
#[test]
fn secrets_in_a_misspelled_auth_declaration_are_masked() {
    let text = "listen 127.0.0.1:0
upstream app { server 127.0.0.1:9 }
auht users jwt { issuer \"i\" audience \"a\" algorithms HS256 Secret \"MISSPELT-1\" }
Auth other jwt { issuer \"i\" audience \"a\" algorithms HS256 secrte \"MISSPELT-2\" }
auth partners api_key { kyes \"MISSPELT-3\" }
route GET /a -> app
";
    for args in [vec!["check", "app.gw"], vec!["check", "--format", "json", "app.gw"]] {
        let out = Gwc::new().file("app.gw", text).args(args.clone()).run();
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains("GW0001"), "{all}");
        assert!(!all.contains("MISSPELT"), "gwc {args:?} shows a secret:\n{all}");
    }
}

/// A store's URL read from `env("X")` and from `file("p")`, each with a
/// planted password: `gwc check` (text, JSON), `plan`, `route`, `test`, the
/// serve log and the admin `/plan` show the reference, never the URL; and
/// a URL there that is not a Redis URL is refused without quoting it.
#[tokio::test]
async fn a_store_url_from_env_or_file_is_never_printed() {
    const ENV_PASSWORD: &str = "PLANTEDENVREDISPASSWORD";
    const FILE_PASSWORD: &str = "PLANTEDFILEREDISPASSWORD";
    let env_url = format!("redis://gw:{ENV_PASSWORD}@127.0.0.1:9/0");
    let file_url = format!("redis://:{FILE_PASSWORD}@127.0.0.1:9/1\n");
    let text = "listen 127.0.0.1:0
admin 127.0.0.2:0
upstream app { server 127.0.0.1:9 }
store from_env redis env(\"GW_REDIS_URL\") { on_error allow }
store from_file redis file(\"redis.url\") { on_error allow }
limit a { rate 10/s key client_ip store from_env }
limit b { rate 10/s key client_ip store from_file }
route GET /a -> app { limit a limit b }
test \"routing\" { GET /a -> app }
";
    let clean = |what: &str, output: &str| {
        for secret in [ENV_PASSWORD, FILE_PASSWORD] {
            assert!(!output.contains(secret), "{what} prints {secret}:\n{output}");
        }
    };
    for args in [
        vec!["check", "app.gw"],
        vec!["check", "--format", "json", "app.gw"],
        vec!["plan", "app.gw"],
        vec!["route", "app.gw", "GET", "/a"],
        vec!["test", "app.gw"],
    ] {
        let out = Gwc::new()
            .file("app.gw", text)
            .file("redis.url", &file_url)
            .env("GW_REDIS_URL", &env_url)
            .args(args.clone())
            .run();
        assert_eq!(out.status, Some(0), "gwc {args:?}: {}{}", out.stdout, out.stderr);
        clean(
            &format!("gwc {}", args.join(" ")),
            &format!("{}{}", out.stdout, out.stderr),
        );
    }
    let out = Gwc::new()
        .file("app.gw", text)
        .file("redis.url", &file_url)
        .env("GW_REDIS_URL", &env_url)
        .args(["plan", "app.gw"])
        .run();
    assert!(
        out.stdout.contains("from_env redis env(\"GW_REDIS_URL\")"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("from_file redis file("), "{}", out.stdout);
    // Unset: GW0404; not a Redis URL: GW0003, quoting none of it.
    let out = Gwc::new()
        .file("app.gw", text)
        .file("redis.url", &file_url)
        .args(["check", "app.gw"])
        .run();
    assert_eq!(out.status, Some(1), "{}", out.stdout);
    assert!(out.stdout.contains("GW0404"), "{}", out.stdout);
    let out = Gwc::new()
        .file("app.gw", text)
        .file("redis.url", format!("rediz://:{FILE_PASSWORD}@h/1"))
        .env("GW_REDIS_URL", &format!("redis://gw:{ENV_PASSWORD}@127.0.0.1:notaport"))
        .args(["check", "app.gw"])
        .run();
    assert_eq!(out.status, Some(1), "{}", out.stdout);
    assert_eq!(out.stdout.matches("GW0003").count(), 2, "{}", out.stdout);
    clean("gwc check (bad URLs)", &format!("{}{}", out.stdout, out.stderr));

    let served = Served::start_with_env(
        &[("app.gw", text), ("redis.url", &file_url)],
        &["app.gw"],
        &[("GW_REDIS_URL", &env_url)],
    );
    let admin = served.admin().await;
    served
        .wait_lines(Duration::from_secs(20), 2, |l| {
            l.contains("redis store not reachable yet")
        })
        .await;
    let plan = get(admin, "/plan").await;
    clean("/plan", &plan);
    assert!(plan.contains("GW_REDIS_URL"), "{plan}");
    served.signal("TERM");
    served.wait_exit(Duration::from_secs(30)).await;
    clean("the serve log", &served.output());
}
