//! `gwc check` from the outside: exit statuses, the summary line, plain
//! output when not on a terminal, the JSON shape, `--deny-warnings`, files
//! that cannot be read, several files at once, and spans in imported files.

use crate::support::Gwc;

const CLEAN: &str = "\
upstream orders {
  server 127.0.0.1:9001
}

route GET /orders/{id} -> orders
listen 127.0.0.1:8080
";

/// Two lowering errors: a bad duration (line 3, column 11) and a weight of 0.
const TWO_ERRORS: &str = "\
upstream orders {
  server 127.0.0.1:9001 weight 0
  timeout 5parsecs
}

route GET /orders/{id} -> orders
";

/// One warning (GW0501: `legacy` is never used) and nothing else.
const ONE_WARNING: &str = "\
upstream orders {
  server 127.0.0.1:9001
}

upstream legacy {
  server 127.0.0.1:9101
}

route GET /orders/{id} -> orders
listen 127.0.0.1:8080
";

#[test]
fn clean_file_exits_zero_and_says_no_problems_found() {
    Gwc::new()
        .file("app.gw", CLEAN)
        .args(["check", "app.gw"])
        .status(0)
        .stdout("app.gw: no problems found\n")
        .stderr("")
        .run();
}

#[test]
fn errors_exit_one_with_every_error_counted() {
    let out = Gwc::new()
        .file("app.gw", TWO_ERRORS)
        .args(["check", "app.gw"])
        .status(1)
        .stdout_has("error[GW0106]")
        .stdout_has("error[GW0003]")
        .stdout_has("[app.gw:3:11]")
        .stderr("")
        .run();
    assert!(out.stdout.ends_with("app.gw: 2 errors\n"), "{}", out.stdout);
}

#[test]
fn one_error_is_counted_in_the_singular() {
    let out = Gwc::new()
        .file(
            "app.gw",
            "upstream orders {\n  server 127.0.0.1:9001\n  timeout 5parsecs\n}\nroute GET /x -> orders\n",
        )
        .args(["check", "app.gw"])
        .status(1)
        .run();
    assert!(out.stdout.ends_with("app.gw: 1 error\n"), "{}", out.stdout);
}

#[test]
fn warnings_alone_exit_zero_and_are_counted() {
    let out = Gwc::new()
        .file("app.gw", ONE_WARNING)
        .args(["check", "app.gw"])
        .status(0)
        .stdout_has("warning[GW0501]")
        .run();
    assert!(out.stdout.ends_with("app.gw: 1 warning\n"), "{}", out.stdout);
}

#[test]
fn errors_and_warnings_are_summed_up_together() {
    let text = format!("{ONE_WARNING}\nlimit per_ip {{ rate 0/s burst 0 key client_ip }}\nroute POST /login -> orders {{ limit per_ip }}\n");
    let out = Gwc::new()
        .file("app.gw", text)
        .args(["check", "app.gw"])
        .status(1)
        .run();
    assert!(out.stdout.ends_with("app.gw: 2 errors, 1 warning\n"), "{}", out.stdout);
}

#[test]
fn deny_warnings_makes_a_warning_fail() {
    Gwc::new()
        .file("app.gw", ONE_WARNING)
        .args(["check", "--deny-warnings", "app.gw"])
        .status(1)
        .stdout_has("app.gw: 1 warning (warnings denied)")
        .run();
}

#[test]
fn deny_warnings_passes_a_clean_file() {
    Gwc::new()
        .file("app.gw", CLEAN)
        .args(["check", "--deny-warnings", "app.gw"])
        .status(0)
        .stdout("app.gw: no problems found\n")
        .run();
}

#[test]
fn output_has_no_colour_when_stdout_is_not_a_terminal() {
    Gwc::new()
        .file("app.gw", TWO_ERRORS)
        .args(["check", "app.gw"])
        .status(1)
        .stdout_has("×")
        .stdout_lacks("\u{1b}[")
        .run();
}

#[test]
fn output_has_no_colour_when_no_color_is_set() {
    Gwc::new()
        .file("app.gw", TWO_ERRORS)
        .env("NO_COLOR", "1")
        .args(["check", "app.gw"])
        .status(1)
        .stdout_lacks("\u{1b}")
        .run();
}

#[test]
fn long_messages_wrap_at_a_fixed_width_when_not_on_a_terminal() {
    let out = Gwc::new()
        .file(
            "app.gw",
            "route GET /x -> orders { frobnicate 1 }\nupstream orders { server 127.0.0.1:1 }\n",
        )
        .env("COLUMNS", "40")
        .args(["check", "app.gw"])
        .status(1)
        .run();
    let widest = out.stdout.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest > 40 && widest <= 100, "widest line {widest}:\n{}", out.stdout);
}

#[test]
fn json_has_the_documented_shape_with_one_based_positions() {
    let out = Gwc::new()
        .file("app.gw", TWO_ERRORS)
        .args(["check", "--format", "json", "app.gw"])
        .status(1)
        .stderr("")
        .run();
    let json = out.json();
    let object = json.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["diagnostics"]);
    let list = json["diagnostics"].as_array().expect("a list");
    assert_eq!(list.len(), 2);
    let mut keys: Vec<_> = list[0].as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["code", "column", "file", "help", "labels", "line", "message", "severity"]
    );
    // Sorted by position: the weight (line 2) before the duration (line 3).
    assert_eq!(list[0]["code"], "GW0106");
    assert_eq!(list[1]["code"], "GW0003");
    assert_eq!(list[1]["severity"], "error");
    assert_eq!(list[1]["file"], "app.gw");
    assert_eq!(list[1]["line"], 3);
    assert_eq!(list[1]["column"], 11);
    assert_eq!(list[1]["message"], "expected a duration such as `5s`, found `5parsecs`");
    assert!(list[1]["help"].is_string());
    let label = &list[1]["labels"][0];
    assert_eq!(label["primary"], true);
    assert_eq!((label["line"].as_u64(), label["column"].as_u64()), (Some(3), Some(11)));
}

#[test]
fn json_of_a_clean_file_is_an_empty_list_and_no_summary() {
    Gwc::new()
        .file("app.gw", CLEAN)
        .args(["check", "--format", "json", "app.gw"])
        .status(0)
        .stdout("{\n  \"diagnostics\": []\n}\n")
        .run();
}

#[test]
fn json_of_several_files_is_one_object() {
    let out = Gwc::new()
        .file("a.gw", TWO_ERRORS)
        .file("b.gw", "upstream b {\n  server 300.1.2.3:80\n}\nroute GET /b -> b\n")
        .args(["check", "--format", "json", "a.gw", "b.gw"])
        .status(1)
        .run();
    let json = out.json();
    let files: Vec<_> = json["diagnostics"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["file"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(files, ["a.gw", "a.gw", "b.gw"]);
}

#[test]
fn two_files_are_checked_in_one_run() {
    let out = Gwc::new()
        .file("a.gw", CLEAN)
        .file("b.gw", "upstream b {\n  server 300.1.2.3:80\n}\nroute GET /b -> b\n")
        .args(["check", "a.gw", "b.gw"])
        .status(1)
        .stdout_has("[b.gw:2:10]")
        .run();
    assert!(out.stdout.ends_with("2 files: 1 error\n"), "{}", out.stdout);
}

/// Routes without a listener, meant to be imported.
const ROUTES_ONLY: &str = "upstream orders {\n  server 127.0.0.1:9001\n}\nroute GET /orders/{id} -> orders\n";

#[test]
fn an_empty_file_and_routes_without_listen_are_not_reported_clean() {
    // An empty file has nothing to warn about: it promises nothing.
    Gwc::new()
        .file("empty.gw", "")
        .args(["check", "empty.gw"])
        .status(0)
        .stdout("empty.gw: no problems found\n")
        .run();
    let out = Gwc::new()
        .file("app.gw", ROUTES_ONLY)
        .args(["check", "--deny-warnings", "app.gw"])
        .status(1)
        .stdout_has("warning[GW0506]")
        .stdout_has("no `listen`")
        .run();
    assert!(
        out.stdout.ends_with("app.gw: 1 warning (warnings denied)\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_file_imported_by_another_on_the_command_line_is_checked_as_an_import() {
    let out = Gwc::new()
        .file("app.gw", "import \"routes/orders.gw\"\nlisten 127.0.0.1:8080\n")
        .file("routes/orders.gw", ROUTES_ONLY)
        .args(["check", "--deny-warnings", "app.gw", "./routes/../routes/orders.gw"])
        .status(0)
        .run();
    assert_eq!(out.stdout, "2 files: no problems found\n");
    // Alone, the same file is a root, and says what is missing.
    Gwc::new()
        .file("routes/orders.gw", ROUTES_ONLY)
        .args(["check", "routes/orders.gw"])
        .status(0)
        .stdout_has("warning[GW0506]")
        .stdout_has("`routes/orders.gw` has a route and no `listen`")
        .stdout_has("checked with the file that imports it")
        .run();
}

#[test]
fn missing_file_on_the_command_line_exits_two_naming_it() {
    Gwc::new()
        .args(["check", "nope.gw"])
        .status(2)
        .stdout("")
        .stderr("error: cannot read `nope.gw`: no such file\n")
        .run();
}

#[test]
fn folder_on_the_command_line_exits_two() {
    Gwc::new()
        .dir("conf")
        .args(["check", "conf"])
        .status(2)
        .stderr_has("cannot read `conf`")
        .run();
}

#[test]
fn unreadable_file_still_lets_the_others_be_checked() {
    Gwc::new()
        .file("a.gw", TWO_ERRORS)
        .args(["check", "a.gw", "nope.gw"])
        .status(2)
        .stdout_has("error[GW0003]")
        .stderr_has("cannot read `nope.gw`")
        .run();
}

#[test]
fn check_without_files_is_a_usage_error() {
    Gwc::new().args(["check"]).status(2).stderr_has("FILE").run();
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    Gwc::new().args(["frobnicate"]).status(2).run();
}

#[test]
fn unknown_format_is_a_usage_error() {
    Gwc::new()
        .file("app.gw", CLEAN)
        .args(["check", "--format", "yaml", "app.gw"])
        .status(2)
        .run();
}

#[test]
fn error_in_an_imported_file_points_into_that_file() {
    let out = Gwc::new()
        .file(
            "app.gw",
            "import \"common/upstreams.gw\"\n\nroute GET /orders/{id} -> orders\n",
        )
        .file(
            "common/upstreams.gw",
            "upstream orders {\n  server 127.0.0.1:9001\n  timeout 5parsecs\n}\n",
        )
        .args(["check", "app.gw"])
        .status(1)
        .stdout_has("╭─[common/upstreams.gw:3:11]")
        .stdout_has("3 │   timeout 5parsecs")
        .run();
    assert!(out.stdout.ends_with("app.gw: 1 error\n"), "{}", out.stdout);
}

#[test]
fn json_positions_of_an_imported_file_name_that_file() {
    let out = Gwc::new()
        .file("app.gw", "import \"common.gw\"\n\nroute GET /orders/{id} -> orders\n")
        .file(
            "common.gw",
            "upstream orders {\n  server 127.0.0.1:9001\n  timeout 5parsecs\n}\n",
        )
        .args(["check", "--format", "json", "app.gw"])
        .status(1)
        .run();
    let d = &out.json()["diagnostics"][0];
    assert_eq!(
        (d["file"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("common.gw"), Some(3), Some(11))
    );
}

#[test]
fn duplicate_in_an_imported_file_shows_both_files() {
    let out = Gwc::new()
        .file("app.gw", "import \"common.gw\"\n\nupstream orders {\n  server 127.0.0.1:9001\n}\n\nroute GET /orders/{id} -> orders\n")
        .file("common.gw", "# shared\nupstream orders {\n  server 127.0.0.1:9002\n}\n")
        .args(["check", "app.gw"])
        .status(1)
        .stdout_has("error[GW0102]")
        .run();
    // Whichever file holds the later definition, the other one is shown too.
    assert!(out.stdout.contains("[app.gw:3:10]"), "{}", out.stdout);
    assert!(out.stdout.contains("[common.gw:2:10]"), "{}", out.stdout);
}

#[test]
fn import_cycle_through_a_subfolder_is_reported_as_a_cycle() {
    Gwc::new()
        .file("app.gw", "import \"shared/b.gw\"\n")
        .file("shared/b.gw", "import \"../app.gw\"\n")
        .args(["check", "app.gw"])
        .status(1)
        .stdout_has("import cycle")
        .stdout_lacks("shared/../shared")
        .run();
}
