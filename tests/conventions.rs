//! What a newcomer and a packager expect of a command-line tool: shell
//! completions that load, a manual page that renders, `--format json` on
//! `gwc plan`, help that says what `gwc serve` takes, `gwc build` saying
//! where its output went (in words that agree in number), a unit written
//! apart from its number reported once, `/plan` readable with `curl`, and a
//! refused reload logged without a field trailing its diagnostics.

use crate::live::{get, plan_of};
use crate::serve_harness::Served;
use crate::support::{gwc_path, root, Gwc, TempDir};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Whether `tool` runs here; under CI (`CI=true`) it must.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "`{tool}` is needed under CI"
        );
        eprintln!("skipped: `{tool}` is not installed");
    }
    found
}

// ------------------------------------------------------------------ completions

#[test]
fn completion_scripts_name_every_command() {
    for (shell, marker) in [
        ("bash", "complete -F _gwc"),
        ("zsh", "#compdef gwc"),
        ("fish", "complete -c gwc"),
    ] {
        let out = Gwc::new().args(["completions", shell]).status(0).stderr("").run();
        assert!(out.stdout.contains(marker), "{shell}: no `{marker}`\n{}", out.stdout);
        for command in ["check", "diff", "serve", "completions", "man"] {
            assert!(out.stdout.contains(command), "{shell}: `{command}` missing");
        }
    }
    Gwc::new()
        .args(["completions", "tcsh"])
        .status(2)
        .stderr_has("invalid value 'tcsh'")
        .run();
}

/// Sourcing the bash script defines the completion function without an
/// error, and completing `gwc di` offers `diff`.
#[test]
fn the_bash_script_loads_and_completes_a_command() {
    if !have("bash") {
        return;
    }
    let script = Gwc::new().args(["completions", "bash"]).status(0).run().stdout;
    let dir = TempDir::new();
    let file = dir.path().join("gwc.bash");
    std::fs::write(&file, script).expect("write the script");
    let probe = format!(
        "set -e; source '{}'; complete -p gwc; \
         COMP_WORDS=(gwc di); COMP_CWORD=1; COMP_LINE='gwc di'; COMP_POINT=6; \
         _gwc gwc di gwc; echo \"offered: ${{COMPREPLY[*]}}\"",
        file.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("run bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "bash said: {stderr}");
    assert!(stdout.contains("-F _gwc gwc"), "{stdout}");
    assert!(stdout.contains("offered: diff"), "{stdout}");
}

// ------------------------------------------------------------------ the manual

#[test]
fn the_manual_page_is_roff_with_every_command() {
    let page = Gwc::new().args(["man"]).status(0).stderr("").run().stdout;
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &page[..page.len().min(200)]
    );
    for section in [
        ".TH gwc 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH SUBCOMMANDS",
        ".SH VERSION",
    ] {
        assert!(page.contains(section), "no `{section}`");
    }
    for command in ["gwc\\-check(1)", "gwc\\-diff(1)", "gwc\\-serve(1)", "gwc\\-man(1)"] {
        assert!(page.contains(command), "no `{command}`\n{page}");
    }
    assert!(page.contains("Exit status"), "the exit statuses are in the page");
}

/// `groff -man` renders the page without a warning (what `man` does).
#[test]
fn the_manual_page_renders() {
    if !have("groff") {
        return;
    }
    let page = Gwc::new().args(["man"]).status(0).run().stdout;
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=100n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run groff");
    {
        use std::io::Write;
        let mut stdin = groff.stdin.take().expect("stdin");
        stdin.write_all(page.as_bytes()).expect("write the page");
    }
    let out = groff.wait_with_output().expect("groff");
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "groff: {stderr}");
    // groff marks bold by overstriking: compare the letters only.
    let letters = strip_overstrike(&text);
    for want in [
        "NAME",
        "gwc - gw: a load balancer",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "gwc-serve(1)",
    ] {
        assert!(letters.contains(want), "the rendered page lacks `{want}`:\n{letters}");
    }
}

/// Text without groff's overstrike (`X\bX` for bold, `_\bX` for underline).
fn strip_overstrike(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
            continue;
        }
        out.push(c);
    }
    out.into_iter().collect()
}

#[test]
fn man_writes_one_page_per_command_into_a_folder() {
    let out = Gwc::new().args(["man", "--dir", "man1"]).status(0).run();
    assert!(
        out.stdout.contains("wrote the manual pages into man1"),
        "{}",
        out.stdout
    );
    // The builder's folder is gone when it returns: look through a fresh one.
    let dir = TempDir::new();
    let status = Command::new(gwc_path())
        .args(["man", "--dir"])
        .arg(dir.path().join("man1"))
        .env_clear()
        .output()
        .expect("run gwc man");
    assert!(status.status.success());
    for page in ["gwc.1", "gwc-check.1", "gwc-diff.1", "gwc-serve.1", "gwc-completions.1"] {
        let text = std::fs::read_to_string(dir.path().join("man1").join(page)).unwrap_or_default();
        assert!(text.contains(".SH SYNOPSIS"), "{page}: {text}");
    }
}

// ------------------------------------------------------------------ the commands

#[test]
fn plan_prints_redacted_json_with_format_json() {
    let text = "listen 127.0.0.1:8080
auth partners api_key { keys \"inline-key-never-shown\" }
upstream a { server 127.0.0.1:9001 }
route GET /a -> a { auth partners }
";
    let out = Gwc::new()
        .file("app.gw", text)
        .args(["plan", "--format", "json", "app.gw"])
        .status(0)
        .run();
    assert!(!out.stdout.contains("inline-key-never-shown"), "{}", out.stdout);
    let j = out.json();
    assert_eq!(j["format_version"], 1);
    assert_eq!(j["routes"][0]["path"], "/a");
    assert!(out.stdout.contains("<redacted>"), "{}", out.stdout);
}

#[test]
fn serve_help_says_file_may_be_a_built_plan() {
    let out = Gwc::new().args(["serve", "--help"]).status(0).run();
    assert!(out.stdout.contains("or a plan built by `gwc build`"), "{}", out.stdout);
    let out = Gwc::new().args(["--help"]).status(0).run();
    for command in ["diff", "completions", "man"] {
        assert!(
            out.stdout.contains(&format!("  {command} ")),
            "`{command}` in gwc --help:\n{}",
            out.stdout
        );
    }
}

#[test]
fn build_says_where_it_wrote_in_agreeing_words() {
    Gwc::new()
        .file("app.gw", "listen 127.0.0.1:8080\nupstream a { server 127.0.0.1:9001 }\nroute GET /a -> a\n")
        .args(["build", "app.gw"])
        .status(0)
        .stdout(
            "wrote app.plan.json: plan format version 1, 1 route, 1 upstream; serve it with `gwc serve app.plan.json`\n",
        )
        .run();
    // Beside the source, and ignored by this repository's .gitignore.
    let ignore = std::fs::read_to_string(root().join(".gitignore")).expect("read .gitignore");
    assert!(ignore.lines().any(|l| l == "*.plan.json"), "{ignore}");
}

/// `timeout 3 seconds`: one diagnostic at `3 seconds` that says `3s`, not a
/// second one calling `seconds` an unknown attribute.
#[test]
fn a_unit_written_apart_is_one_diagnostic() {
    let text = "listen 127.0.0.1:8080
upstream a {
  server 127.0.0.1:9001
  timeout 2 minutes
}
route GET /x -> a {
  timeout 3 seconds
}
limits { max_body_size 10 MB }
";
    let out = Gwc::new()
        .file("app.gw", text)
        .args(["check", "--format", "json", "app.gw"])
        .status(1)
        .run();
    assert_eq!(out.codes(), ["GW0106", "GW0106", "GW0106"], "{}", out.stdout);
    let d = &out.json()["diagnostics"];
    assert_eq!(d[1]["message"], "expected a duration such as `5s`, found `3 seconds`");
    assert_eq!(d[1]["help"], "write the number and its unit as one word: `3s`");
    assert_eq!((d[1]["line"].as_u64(), d[1]["column"].as_u64()), (Some(7), Some(11)));
    assert_eq!(d[1]["labels"][0]["end_column"], 20);
    assert_eq!(d[0]["help"], "write the number and its unit as one word: `2m`");
    assert_eq!(d[2]["help"], "write the number and its unit as one word: `10MB`");
    // A word after a number that was accepted is still an unknown attribute.
    Gwc::new()
        .file(
            "app.gw",
            "listen 127.0.0.1:8080\nlimits { max_connections 10 seconds }\n",
        )
        .args(["check", "--format", "json", "app.gw"])
        .status(1)
        .run()
        .codes()
        .iter()
        .for_each(|c| assert_eq!(c, "GW0103"));
}

// ------------------------------------------------------------------ the running gateway

/// `curl http://ADMIN/plan` prints one item a line and ends the last line.
#[tokio::test]
async fn plan_endpoint_is_pretty_printed_and_ends_with_a_newline() {
    let options = gw_runtime::Options {
        admin_override: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let gw = gw_runtime::Gateway::start(
        plan_of("listen 127.0.0.1:0\nroute GET /a { respond 200 }\n", &[]),
        options,
    )
    .await
    .expect("gateway starts");
    let admin = gw.admin_addr().expect("admin");
    let got = get(&format!("http://{admin}/plan")).await;
    assert_eq!(got.status, 200);
    assert!(got.body.lines().count() > 20, "pretty-printed:\n{}", got.body);
    assert!(
        got.body.ends_with("}\n"),
        "ends with a newline: {:?}",
        &got.body[got.body.len().saturating_sub(10)..]
    );
}

/// A refused reload: one line with its fields, then each diagnostic as
/// `gwc check` draws it, and no field dangling after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_logs_its_fields_before_the_diagnostics() {
    let served = Served::start(
        &[("app.gw", "listen 127.0.0.1:0\nroute GET /a { respond 200 }\n")],
        &["app.gw", "--watch-interval", "50ms"],
    );
    served.bound(1).await;
    served.write(
        "app.gw",
        "listen 127.0.0.1:0\nroute GET /a { respond 200 }\nroute GET /b -> nowhere\n",
    );
    let wait = Duration::from_secs(15);
    let first = served.wait_lines(wait, 1, |l| l.contains("reload refused")).await;
    assert!(
        first[0].ends_with("reload refused, keeping the running plan: 1 error file=app.gw"),
        "{}",
        first[0]
    );
    served.wait_lines(wait, 1, |l| l.contains("help: define it")).await;
    let log = served.stderr_lines();
    let at = log.iter().position(|l| l.contains("reload refused")).unwrap_or(0);
    assert!(log[at + 1].ends_with("gw::reload: error[GW0101]"), "{}", log.join("\n"));
    assert!(
        !log.iter().any(|l| l.trim_start().starts_with("file=")),
        "a field after the diagnostic:\n{}",
        log.join("\n")
    );
}
