//! `gwc diff OLD NEW` from the outside: what a reload would change, as text
//! and JSON, from `.gw` files and built plans; diff(1)'s exit statuses
//! (0 none, 1 changes, 2 trouble); no secret in any output; and the running
//! gateway logging the same summary at a reload.

use crate::live::Upstream;
use crate::serve_harness::Served;
use crate::support::Gwc;
use std::time::Duration;

const OLD: &str = r#"listen 127.0.0.1:8080
upstream orders {
  balance p2c
  server 127.0.0.1:9131
  server 127.0.0.1:9132
}
upstream login { server 127.0.0.1:9101 }
auth users jwt {
  issuer "https://login.example"
  audience "api"
  algorithms HS256
  secret "old-inline-secret-never-shown"
}
limit per_user { rate 100/min burst 20 key claim.sub }
store shared redis "redis://gw:old-url-password@127.0.0.1:6379"
limit per_ip { rate 10/s key client_ip store shared }
route GET /orders/{id} -> orders {
  auth users
  limit per_user
}
route POST /signup -> login
route /{*rest} { respond 404 }
"#;

/// `OLD` with: a route moved and one changed (a `require` and a limit
/// added), one removed, one added; a server swapped and the strategy
/// changed; the inline secret and the store's password changed.
const NEW: &str = r#"listen 127.0.0.1:8080
route /{*rest} { respond 404 }
upstream login { server 127.0.0.1:9101 }
upstream orders {
  balance least_conn
  server 127.0.0.1:9131
  server 127.0.0.1:9133
}
auth users jwt {
  issuer "https://login.example"
  audience "api"
  algorithms HS256
  secret "new-inline-secret-never-shown"
}
limit per_user { rate 100/min burst 20 key claim.sub }
store shared redis "redis://gw:new-url-password@127.0.0.1:6379"
limit per_ip { rate 10/s key client_ip store shared }
route GET /orders/{id} -> orders {
  auth users
  require claim.scope has "orders:read"
  limit per_user, per_ip
}
route POST /register -> login
"#;

const SECRETS: [&str; 4] = [
    "old-inline-secret-never-shown",
    "new-inline-secret-never-shown",
    "old-url-password",
    "new-url-password",
];

fn gwc() -> Gwc {
    Gwc::new().file("old.gw", OLD).file("new.gw", NEW)
}

fn assert_no_secret(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "`{s}` shown:\n{text}");
    }
}

#[test]
fn diff_says_what_a_reload_changes_in_a_stable_order_and_exits_one() {
    let out = gwc()
        .args(["diff", "old.gw", "new.gw"])
        .status(1)
        .stdout(
            "\
~ upstream orders (least_conn over 127.0.0.1:9131, 127.0.0.1:9133)
    - server 127.0.0.1:9132
    ~ balance: p2c -> least_conn
    + server 127.0.0.1:9133
~ auth users (jwt)
    ~ an inline secret or URL password: <redacted> -> <redacted>
~ store shared (redis \"redis://gw:<redacted>@127.0.0.1:6379\")
    ~ an inline secret or URL password: <redacted> -> <redacted>
~ route GET /orders/{id} -> orders  (new.gw:18)
    + require claim.scope has \"orders:read\"
    ~ limit: per_user -> per_user, per_ip
+ route POST /register -> login  (new.gw:23)
- route POST /signup -> login  (old.gw:21)

1 upstream changed; 1 auth changed; 1 store changed; 3 routes (1 added, 1 removed, 1 changed)
",
        )
        // Warnings go to stderr, as `gwc plan` prints them.
        .stderr_has("warning[GW0505]")
        .run();
    assert_no_secret(&out.stderr);
    assert_no_secret(&out.stdout);
    // The same two files the other way round: the same names, the other way.
    let back = gwc().args(["diff", "new.gw", "old.gw"]).status(1).run();
    assert!(
        back.stdout.contains("- route POST /register -> login  (new.gw:23)"),
        "{}",
        back.stdout
    );
    assert!(
        back.stdout.contains("+ route POST /signup -> login  (old.gw:21)"),
        "{}",
        back.stdout
    );
}

#[test]
fn diff_json_lists_each_change_with_counts_and_no_secret() {
    let out = gwc()
        .args(["diff", "--format", "json", "old.gw", "new.gw"])
        .status(1)
        .run();
    assert_no_secret(&out.stdout);
    let j = out.json();
    assert_eq!(j["changed"], true);
    assert_eq!(j["counts"]["route"]["added"], 1);
    assert_eq!(j["counts"]["route"]["removed"], 1);
    assert_eq!(j["counts"]["route"]["changed"], 1);
    assert_eq!(j["counts"]["listen"]["added"], 0);
    let changes = j["changes"].as_array().expect("changes");
    let route = changes
        .iter()
        .find(|c| c["kind"] == "route" && c["change"] == "changed")
        .expect("the changed route");
    assert_eq!(route["name"], "GET /orders/{id}");
    assert_eq!(route["origin"], "new.gw:18");
    assert_eq!(route["details"][0]["change"], "added");
    assert_eq!(route["details"][0]["new"], "require claim.scope has \"orders:read\"");
    assert_eq!(route["details"][1]["old"], "limit per_user");
    assert_eq!(route["details"][1]["new"], "limit per_user, per_ip");
}

#[test]
fn a_file_whose_routes_only_moved_has_no_changes_and_exits_zero() {
    let moved = "listen 127.0.0.1:8080\nroute POST /b { respond 204 }\n\nroute GET /a { respond 200 }\n";
    Gwc::new()
        .file(
            "a.gw",
            "listen 127.0.0.1:8080\nroute GET /a { respond 200 }\nroute POST /b { respond 204 }\n",
        )
        .file("b.gw", moved)
        .args(["diff", "a.gw", "b.gw"])
        .status(0)
        .stdout("no changes\n")
        .run();
}

#[test]
fn a_built_plan_compares_with_its_source_and_the_next_edit() {
    // `gwc build` carries the inline secrets: the comparison sees them, no
    // output shows them.
    let dir = gwc().args(["build", "old.gw", "-o", "-"]).status(0).run();
    Gwc::new()
        .file("old.gw", OLD)
        .file("deployed.plan.json", &dir.stdout)
        .args(["diff", "deployed.plan.json", "old.gw"])
        .status(0)
        .stdout("no changes\n")
        .run();
    let out = Gwc::new()
        .file("new.gw", NEW)
        .file("deployed.plan.json", &dir.stdout)
        .args(["diff", "deployed.plan.json", "new.gw"])
        .status(1)
        .stdout_has("3 routes (1 added, 1 removed, 1 changed)")
        .run();
    assert_no_secret(&out.stdout);
    assert_no_secret(&out.stderr);
}

#[test]
fn trouble_exits_two_with_the_reason_on_stderr() {
    // A configuration with errors: its diagnostics, then 2.
    gwc()
        .file("broken.gw", "listen 127.0.0.1:8080\nroute GET /x -> nowhere\n")
        .args(["diff", "old.gw", "broken.gw"])
        .status(2)
        .stdout("")
        .stderr_has("error[GW0101]")
        .run();
    gwc()
        .args(["diff", "old.gw", "missing.gw"])
        .status(2)
        .stdout("")
        .stderr_has("cannot read `missing.gw`: no such file")
        .run();
    gwc()
        .file("other.plan.json", r#"{"format_version": 999}"#)
        .args(["diff", "other.plan.json", "new.gw"])
        .status(2)
        .stdout("")
        .stderr_has("plan format version 999 is not supported")
        .run();
    gwc().args(["diff", "old.gw"]).status(2).run();
}

/// The running gateway logs the summary `gwc diff` prints, then one line
/// per change, at each reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_logs_what_it_changed() {
    let up = Upstream::named("a").await;
    let text = |extra: &str| {
        format!(
            "listen 127.0.0.1:0\nupstream a {{ server {} }}\nroute GET /a -> a\n{extra}",
            up.addr
        )
    };
    let served = Served::start(&[("app.gw", &text(""))], &["app.gw", "--watch-interval", "50ms"]);
    served.bound(1).await;
    served.write("app.gw", &text("route GET /b { respond 204 }\n"));
    let wait = Duration::from_secs(15);
    let lines = served.wait_lines(wait, 1, |l| l.contains("reloaded:")).await;
    assert!(
        lines[0].contains("gw::reload: reloaded: 1 route added file=app.gw"),
        "{}",
        lines[0]
    );
    let change = served.wait_lines(wait, 1, |l| l.contains("+ route")).await;
    assert!(
        change[0].ends_with("gw::reload: + route GET /b respond 204  (app.gw:4)"),
        "{}",
        change[0]
    );
}
