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
