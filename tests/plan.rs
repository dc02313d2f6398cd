//! Behaviour of the routing plan (compiler/src/plan): the precedence rules of
//! LANGUAGE.md as the router applies them, path and host normalisation, the
//! JSON form and its version check, secrets kept as references, the embedded
//! `test` blocks (GW0601) and `gwc route`'s explanations.

use gw_compiler::ast::Method;
use gw_compiler::host::MemoryHost;
use gw_compiler::plan::explain::{explain, Outcome, Reason};
use gw_compiler::plan::{lookup, Lookup, Plan, FORMAT_VERSION};
use gw_compiler::{compile_text, Code, Compilation};

const UPSTREAMS: &str = "
upstream a { server 127.0.0.1:9001 }
upstream b { server 127.0.0.1:9002 }
upstream c { server 127.0.0.1:9003 }
upstream d { server 127.0.0.1:9004 }
";

fn compile(routes: &str) -> Compilation {
    let text = format!("listen :8080\n{UPSTREAMS}\n{routes}");
    compile_text(
        &MemoryHost::new().var("JWT_SECRET", "s3cr3t-value-never-shown"),
        "app.gw",
        &text,
    )
}

fn plan(routes: &str) -> Plan {
    let c = compile(routes);
    let errors: Vec<String> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    c.plan.expect("a plan when there are no errors")
}

/// The answer for a request in words: the upstream name, `respond 404`,
/// `404`, `405 GET, HEAD` or `400`.
fn route(plan: &Plan, method: Method, host: &str, path: &str) -> String {
    match lookup(plan, Some(method), host, path) {
        Lookup::Matched { route, .. } => plan.target_name(&plan.routes[route]),
        Lookup::NotFound => "404".into(),
        Lookup::MethodNotAllowed { allow } => format!("405 {allow}"),
        Lookup::BadRequest(_) => "400".into(),
    }
}

fn get(plan: &Plan, path: &str) -> String {
    route(plan, Method::Get, "", path)
}

fn param(plan: &Plan, method: Method, path: &str, name: &str) -> Option<String> {
    match lookup(plan, Some(method), "", path) {
        Lookup::Matched { params, .. } => params.get(name).map(str::to_string),
        _ => None,
    }
}

#[test]
fn literal_beats_param() {
    let p = plan("route GET /users/{id} -> a\nroute GET /users/search -> b");
    assert_eq!(get(&p, "/users/search"), "b");
    assert_eq!(get(&p, "/users/7"), "a");
    assert_eq!(param(&p, Method::Get, "/users/7", "id").as_deref(), Some("7"));
}

#[test]
fn param_beats_catch_all() {
    let p = plan("route /files/{*rest} -> a\nroute GET /files/{name} -> b");
    assert_eq!(get(&p, "/files/x"), "b");
    assert_eq!(get(&p, "/files/x/y"), "a");
}

#[test]
fn precedence_is_by_specificity_not_file_order() {
    let later = plan("route GET /{*rest} -> a\nroute GET /users/{id} -> b");
    let earlier = plan("route GET /users/{id} -> b\nroute GET /{*rest} -> a");
    for p in [&later, &earlier] {
        assert_eq!(get(p, "/users/7"), "b");
        assert_eq!(get(p, "/other"), "a");
    }
}

#[test]
fn earlier_literal_segment_outranks_later_ones() {
    // Segment 1 decides: the literal `a` beats `{x}` even though the other
    // route has more literals after it.
    let p = plan("route GET /a/{y}/{z} -> a\nroute GET /{x}/b/c -> b");
    assert_eq!(get(&p, "/a/b/c"), "a");
}

#[test]
fn catch_all_matches_zero_segments() {
    let p = plan("route /payments/{*rest} -> a");
    for (path, rest) in [("/payments", ""), ("/payments/", ""), ("/payments/a/b", "a/b")] {
        assert_eq!(get(&p, path), "a", "{path}");
        assert_eq!(param(&p, Method::Get, path, "rest").as_deref(), Some(rest), "{path}");
    }
    assert_eq!(get(&p, "/paymentsx"), "404");
}

#[test]
fn catch_all_is_least_specific_also_when_empty() {
    let p = plan("route /payments/{*rest} -> a\nroute GET /payments -> b");
    assert_eq!(get(&p, "/payments"), "b");
    assert_eq!(get(&p, "/payments/"), "a");
    // POST /payments: the exact route does not take POST, the catch-all does.
    assert_eq!(route(&p, Method::Post, "", "/payments"), "a");
}

#[test]
fn explicit_methods_beat_every_method() {
    let p = plan("route /x -> a\nroute GET /x -> b");
    assert_eq!(get(&p, "/x"), "b");
    assert_eq!(route(&p, Method::Post, "", "/x"), "a");
}

#[test]
fn method_mismatch_falls_back_to_a_less_specific_route() {
    // LANGUAGE.md: with `route GET /users/{id}` and `route /{*rest}`,
    // `POST /users/7` goes to the catch-all.
    let p = plan("route GET /users/{id} -> a\nroute /{*rest} -> b");
    assert_eq!(route(&p, Method::Post, "", "/users/7"), "b");
    assert_eq!(get(&p, "/users/7"), "a");
}

#[test]
fn get_route_answers_head_unless_head_named() {
    let p = plan("route GET /x -> a\nroute GET /y -> b\nroute HEAD /y -> c");
    assert_eq!(route(&p, Method::Head, "", "/x"), "a");
    assert_eq!(route(&p, Method::Head, "", "/y"), "c");
    assert_eq!(get(&p, "/y"), "b");
}

#[test]
fn method_mismatch_gives_405_with_allow() {
    let p = plan("route GET /login -> a\nroute POST /login -> b\nroute DELETE /things/{id} -> c");
    assert_eq!(route(&p, Method::Put, "", "/login"), "405 GET, HEAD, POST");
    assert_eq!(route(&p, Method::Get, "", "/things/1"), "405 DELETE");
    assert_eq!(route(&p, Method::Get, "", "/nothing"), "404");
}

#[test]
fn allow_lists_every_route_whose_path_matched() {
    let p = plan("route GET /a/{x} -> a\nroute POST /a/b -> b\nroute PUT /{*rest} -> c");
    match lookup(&p, Some(Method::Delete), "", "/a/b") {
        Lookup::MethodNotAllowed { allow } => assert_eq!(allow.to_allow(), "GET, HEAD, POST, PUT"),
        other => panic!("expected 405, got {other:?}"),
    }
}

#[test]
fn trailing_slash_is_significant() {
    let p = plan("route GET /orders -> a");
    assert_eq!(get(&p, "/orders"), "a");
    assert_eq!(get(&p, "/orders/"), "404");
    let q = plan("route GET /orders/ -> b");
    assert_eq!(get(&q, "/orders/"), "b");
    assert_eq!(get(&q, "/orders"), "404");
}

#[test]
fn param_does_not_match_an_empty_segment() {
    let p = plan("route GET /users/{id} -> a");
    assert_eq!(get(&p, "/users/"), "404");
    assert_eq!(get(&p, "/users//x"), "404");
}

#[test]
fn double_slashes_are_not_collapsed() {
    let p = plan("route GET /a/b -> a\nroute GET /a//b -> b\nroute GET /x/{*rest} -> c");
    assert_eq!(get(&p, "/a/b"), "a");
    assert_eq!(get(&p, "/a//b"), "b");
    assert_eq!(param(&p, Method::Get, "/x//y", "rest").as_deref(), Some("/y"));
}

#[test]
fn unreserved_escapes_are_decoded_before_matching() {
    let p = plan("route GET /users/~me -> a\nroute GET /files/{name} -> b");
    assert_eq!(get(&p, "/users/%7Eme"), "a");
    assert_eq!(get(&p, "/%75sers/%7eme"), "a");
    // `%2F` is not unreserved: it stays inside the segment.
    assert_eq!(param(&p, Method::Get, "/files/a%2Fb", "name").as_deref(), Some("a%2Fb"));
    assert_eq!(param(&p, Method::Get, "/files/%41", "name").as_deref(), Some("A"));
}

#[test]
fn dot_dot_segments_are_rejected() {
    let p = plan("route /{*rest} -> a");
    for path in ["/a/../b", "/..", "/a/%2E%2E/b", "/a/%2e./b"] {
        assert_eq!(get(&p, path), "400", "{path}");
    }
    // Dots inside a segment are fine.
    assert_eq!(get(&p, "/a..b/c"), "a");
    assert_eq!(get(&p, "/a/.../b"), "a");
}

#[test]
fn host_route_beats_hostless_route() {
    let p = plan("route GET /orders/{id} -> a\nroute GET /orders/{id} host \"admin.example.com\" -> b");
    assert_eq!(route(&p, Method::Get, "admin.example.com", "/orders/1"), "b");
    assert_eq!(route(&p, Method::Get, "other.example.com", "/orders/1"), "a");
    assert_eq!(route(&p, Method::Get, "", "/orders/1"), "a");
}

#[test]
fn host_route_beats_a_more_specific_hostless_path() {
    let p = plan("route GET /{*rest} host \"api.example.com\" -> a\nroute GET /orders -> b");
    assert_eq!(route(&p, Method::Get, "api.example.com", "/orders"), "a");
    assert_eq!(route(&p, Method::Get, "www.example.com", "/orders"), "b");
}

#[test]
fn host_matching_ignores_case_port_and_trailing_dot() {
    let p = plan("route GET /x host \"Admin.Example.com\" -> a\nroute GET /x host \"127.0.0.1\" -> b");
    for host in ["admin.example.com", "ADMIN.example.COM:8443", "admin.example.com."] {
        assert_eq!(route(&p, Method::Get, host, "/x"), "a", "{host}");
    }
    assert_eq!(route(&p, Method::Get, "127.0.0.1:8080", "/x"), "b");
    assert_eq!(route(&p, Method::Get, "nobody.example.com", "/x"), "404");
}

#[test]
fn host_route_with_wrong_method_falls_back_to_hostless() {
    let p = plan("route POST /x host \"h.example\" -> a\nroute GET /x -> b");
    assert_eq!(route(&p, Method::Get, "h.example", "/x"), "b");
    assert_eq!(route(&p, Method::Put, "h.example", "/x"), "405 GET, HEAD, POST");
}

#[test]
fn root_path_and_root_catch_all() {
    let p = plan("route GET / -> a\nroute GET /{*rest} -> b");
    assert_eq!(get(&p, "/"), "a");
    assert_eq!(get(&p, "/x"), "b");
    let q = plan("route GET /{*rest} -> b");
    assert_eq!(param(&q, Method::Get, "/", "rest").as_deref(), Some(""));
}

#[test]
fn extension_methods_reach_only_every_method_routes() {
    let p = plan("route GET /x -> a\nroute /y -> b");
    assert!(matches!(lookup(&p, None, "", "/x"), Lookup::MethodNotAllowed { .. }));
    assert!(matches!(lookup(&p, None, "", "/y"), Lookup::Matched { .. }));
}

#[test]
fn params_line_up_with_their_route_names() {
    let p = plan("route GET /u/{id}/f/{*path} -> a\nroute POST /u/{uid}/f/{*p} -> b");
    match lookup(&p, Some(Method::Post), "", "/u/42/f/a/b.txt") {
        Lookup::Matched { params, .. } => {
            let got: Vec<(&str, &str)> = params.iter().collect();
            assert_eq!(got, [("uid", "42"), ("p", "a/b.txt")]);
        }
        other => panic!("expected a match, got {other:?}"),
    }
}

#[test]
fn many_literal_siblings_still_match() {
    let routes: String = (0..50).map(|i| format!("route GET /s{i}/{{id}} -> a\n")).collect();
    let p = plan(&format!("{routes}route GET /s7/special -> b"));
    assert_eq!(get(&p, "/s49/x"), "a");
    assert_eq!(get(&p, "/s7/special"), "b");
    assert_eq!(get(&p, "/s50/x"), "404");
}

#[test]
fn colliding_routes_produce_no_plan() {
    let c = compile("route GET /x/{a} -> a\nroute GET,POST /x/{b} -> b");
    assert!(c.plan.is_none());
    assert!(c.diagnostics.iter().any(|d| d.code == Code::GW0201));
}

// ------------------------------------------------------------------ retries, ejection, limits

#[test]
fn retry_without_on_covers_connect_errors_and_resets() {
    use gw_compiler::plan::RetryOn;
    let p = plan(
        "upstream r { server 127.0.0.1:9005 retry 2 }
         upstream s { server 127.0.0.1:9006 retry 1 on connect_error, 502 }
         upstream t { server 127.0.0.1:9007 retry 1 on reset }
         route /r -> r
         route /s -> s
         route /t -> t",
    );
    let on = |name: &str| {
        let u = p.upstreams.iter().find(|u| u.name == name).expect("the upstream");
        u.retry.as_ref().expect("a retry").on.clone()
    };
    assert_eq!(on("r"), [RetryOn::ConnectError, RetryOn::Reset]);
    assert_eq!(
        on("s"),
        [RetryOn::ConnectError, RetryOn::Status(502)],
        "a list is as written"
    );
    assert_eq!(on("t"), [RetryOn::Reset]);
    let printed = p.render();
    assert!(
        printed.contains("retry 2 on connect_error, reset budget 20%"),
        "{printed}"
    );
    // Without an `eject` block, the default ejection is shown as such.
    assert!(
        printed.contains("eject (default) after 1 failure to reach a server, for 10s"),
        "{printed}"
    );
}

#[test]
fn an_unknown_retry_condition_suggests_reset() {
    let c = compile(
        "upstream r { server 127.0.0.1:9005 retry 2 on rest }
route /r -> r",
    );
    let d: Vec<_> = c.diagnostics.iter().filter(|d| d.code == Code::GW0106).collect();
    assert_eq!(d.len(), 1, "{:?}", c.diagnostics);
    assert_eq!(d[0].message, "unknown retry condition `rest`");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `reset`?"));
}

#[test]
fn max_keys_defaults_to_100000_and_is_bounded() {
    let p = plan(
        "limit a { rate 10/s }
         limit b { rate 10/s max_keys 4321 }
         route /x -> a { limit a, b }",
    );
    let keys: Vec<u32> = p.rate_limits.iter().map(|l| l.max_keys).collect();
    assert_eq!(keys, [100_000, 4321]);
    assert!(p
        .render()
        .contains("b (rate 10/s burst 10 key client_ip max_keys 4321)"));
    // A plan written before `max_keys` existed reads with the default.
    let mut json: serde_json::Value = serde_json::from_str(&p.to_json()).expect("JSON");
    for l in json["rate_limits"].as_array_mut().expect("limits") {
        l.as_object_mut().expect("a limit").remove("max_keys");
    }
    let back = Plan::from_json(&json.to_string()).expect("an older plan reads");
    assert_eq!(back.rate_limits[1].max_keys, 100_000);
    for bad in ["0", "10000001", "lots"] {
        let c = compile(&format!(
            "limit a {{ rate 10/s max_keys {bad} }}
route /x -> a {{ limit a }}"
        ));
        assert!(
            c.diagnostics.iter().any(|d| d.code == Code::GW0106),
            "max_keys {bad}: {:?}",
            c.diagnostics
        );
    }
}

// ------------------------------------------------------------------ plan JSON and printing

const FULL: &str = r#"
auth users jwt {
  issuer "https://auth.example.com"
  audience "api"
  algorithms HS256
  secret env("JWT_SECRET")
}
limit per_user { rate 100/min burst 20 key claim.sub }
route /payments/{*rest} -> a {
  auth users
  require claim.scope has "payments:write"
  limit per_user
  strip_prefix /payments
  set request header X-User "{claim.sub}"
  timeout 3s
}
route GET /old/{*rest} { redirect 301 "/v2/{param.rest}" }
route /internal/{*rest} { respond 404 }
"#;

#[test]
fn plan_json_round_trips() {
    let p = plan(FULL);
    let json = p.to_json();
    assert!(json.contains(&format!("\"format_version\": {FORMAT_VERSION}")));
    let back = Plan::from_json(&json).expect("a plan reads back");
    assert_eq!(back.to_json(), json);
    assert_eq!(route(&back, Method::Post, "", "/payments/x"), "a");
    assert_eq!(route(&back, Method::Get, "", "/old/x"), "redirect 301");
}

#[test]
fn plan_read_through_serde_directly_still_routes() {
    let json = plan(FULL).to_json();
    let back: Plan = serde_json::from_str(&json).expect("serde reads a plan");
    assert_eq!(route(&back, Method::Post, "", "/payments/x"), "a");
    let other = json.replacen(
        &format!("\"format_version\": {FORMAT_VERSION}"),
        "\"format_version\": 2",
        1,
    );
    assert!(
        serde_json::from_str::<Plan>(&other).is_err(),
        "serde refuses another version too"
    );
}

#[test]
fn plan_json_of_other_version_is_refused() {
    let json = plan(FULL).to_json().replacen(
        &format!("\"format_version\": {FORMAT_VERSION}"),
        "\"format_version\": 999",
        1,
    );
    let err = Plan::from_json(&json).expect_err("version 999 is refused");
    assert!(err.0.contains("version 999"), "{err}");
    assert!(err.0.contains(&format!("reads version {FORMAT_VERSION}")), "{err}");
    assert!(Plan::from_json("{}")
        .expect_err("no version")
        .0
        .contains("format_version"));
}

#[test]
fn plan_json_with_bad_indices_is_refused() {
    let json = plan(FULL).to_json().replace("\"upstream\": 0", "\"upstream\": 77");
    let err = Plan::from_json(&json).expect_err("index out of range");
    assert!(err.0.contains("out of range"), "{err}");
}

#[test]
fn secrets_stay_references_in_json_and_print() {
    let p = plan(FULL);
    for text in [p.to_json(), p.render(), format!("{:?}", p.auths)] {
        assert!(!text.contains("s3cr3t-value-never-shown"), "{text}");
        assert!(text.contains("JWT_SECRET"), "{text}");
    }
    assert!(p.render().contains("secret env(\"JWT_SECRET\")"));
}

#[test]
fn printed_plan_shows_the_pipeline_in_order() {
    let text = plan(FULL).render();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing from:\n{text}"))
    };
    assert!(at("auth users (jwt)") < at("require claim.scope has"));
    assert!(at("require claim.scope has") < at("limit per_user"));
    assert!(at("limit per_user") < at("set request header x-user \"{claim.sub}\""));
    assert!(at("strip_prefix /payments") < at("-> a (round_robin over 127.0.0.1:9001)"));
    assert!(at("/old") < at("/payments"), "children print in sorted order:\n{text}");
}

// ------------------------------------------------------------------ embedded tests

#[test]
fn passing_tests_produce_no_diagnostics() {
    let c = compile(
        "route GET /orders/{id} -> a\nroute POST /login -> b\nroute /internal/{*rest} { respond 404 }\n\
         route GET /me { aggregate { p a GET \"/p\" } }\n\
         test \"routes\" {\n  GET /orders/42 -> a\n  POST /login -> b\n  DELETE /login -> 405\n\
           GET /internal/x -> 404\n  GET /nowhere -> 404\n  GET /me?x=1 -> aggregate\n  GET /a/../b -> 400\n}",
    );
    assert_eq!(c.errors(), 0, "{:#?}", c.diagnostics);
    let report = c.tests.expect("tests ran");
    assert_eq!((report.expectations, report.passed()), (7, 7));
}

fn failures(c: &Compilation) -> Vec<String> {
    c.diagnostics
        .iter()
        .filter(|d| d.code == Code::GW0601)
        .map(|d| d.message.clone())
        .collect()
}

#[test]
fn failing_expectation_says_which_route_took_the_request() {
    let c = compile("route /payments/{*rest} -> b\ntest \"t\" {\n  GET /payments/x -> a\n}");
    assert_eq!(
        failures(&c),
        ["expected `a`, but `GET /payments/x` is routed to `b` by route `/payments/{*rest}`"]
    );
    let d = &c.diagnostics.iter().find(|d| d.code == Code::GW0601).expect("a GW0601");
    let (line, _) = c.sources.line_col(d.span().expect("labelled"));
    assert_eq!(line, 10, "labelled at the expectation");
    assert_eq!(d.labels.len(), 2, "secondary label at the route");
    assert!(c.plan.is_none(), "a failing test is an error: no plan");
}

#[test]
fn failing_expectation_explains_404_405_and_respond() {
    let c = compile(
        "route GET /x -> a\nroute /hidden { respond 403 }\n\
         test \"t\" {\n  GET /y -> a\n  POST /x -> a\n  GET /hidden -> a\n  GET /x -> 404\n}",
    );
    assert_eq!(
        failures(&c),
        [
            "expected `a`, but `GET /y` gets 404: no route matches",
            "expected `a`, but `POST /x` gets 405: the routes for this path allow only GET, HEAD",
            "expected `a`, but `GET /hidden` is answered `403` by route `/hidden`",
            "expected `404`, but `GET /x` is routed to `a` by route `GET /x`",
        ]
    );
}

#[test]
fn auth_is_not_evaluated_in_tests() {
    let c = compile(&format!("{FULL}\ntest \"t\" {{\n  POST /payments/charge -> a\n}}"));
    assert_eq!(failures(&c), Vec::<String>::new());
}

#[test]
fn coverage_lists_routes_no_test_reaches() {
    let c = compile("route GET /x -> a\nroute GET /y -> b\ntest \"t\" {\n  GET /x -> a\n}");
    let report = c.tests.expect("tests ran");
    let unreached: Vec<(usize, &str)> = report.unreached().map(|(i, head, _)| (i, head)).collect();
    assert_eq!(unreached, [(1, "GET /y")]);
}

// ------------------------------------------------------------------ gwc route explanations

#[test]
fn explanation_names_the_losers_and_why() {
    let p = plan(
        "route GET /users/{id} -> a\nroute GET /users/search -> b\nroute POST /users/{id} -> c\n\
         route /{*rest} -> d\nroute GET /users/search host \"h.example\" -> a",
    );
    let e = explain(&p, Method::Get, "", "/users/search");
    assert!(matches!(e.outcome, Outcome::Matched { route: 1, .. }));
    let reasons: Vec<(usize, Reason)> = e.candidates.into_iter().map(|c| (c.route, c.reason)).collect();
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert!(matches!(&reasons[0], (0, Reason::LessSpecific { position: 2, .. })));
    assert!(matches!(&reasons[1], (2, Reason::Method { .. })));
    assert!(matches!(&reasons[2], (3, Reason::LessSpecific { position: 1, .. })));
    assert!(matches!(&reasons[3], (4, Reason::Host { .. })));
}

#[test]
fn host_matching_ignores_case_at_every_position() {
    let name = "api-gateway.internal.example.com";
    let p = plan(&format!("route GET /x host \"{name}\" -> a\nroute GET /x -> b"));
    for i in 0..name.len() {
        let mut spelled: Vec<u8> = name.bytes().collect();
        spelled[i] = spelled[i].to_ascii_uppercase();
        let spelled = String::from_utf8(spelled).expect("ascii");
        for host in [spelled.clone(), format!("{spelled}:8080"), format!("{spelled}.:1")] {
            assert_eq!(route(&p, Method::Get, &host, "/x"), "a", "{host}");
        }
    }
    for other in [
        "api-gateway.internal.example.co",
        "api-gateway.internal.example.comm",
        "é.example",
        ":80",
    ] {
        assert_eq!(route(&p, Method::Get, other, "/x"), "b", "{other}");
    }
}

// ------------------------------------------------------------------ the gwc commands

mod cli {
    use crate::support::Gwc;

    const APP: &str = r#"listen 127.0.0.1:8080
upstream orders { server 127.0.0.1:9001 }
upstream payment { balance least_conn server 127.0.0.1:9002 server 127.0.0.1:9003 weight 2 }
auth users jwt {
  issuer "https://auth.example.com"
  audience "api"
  algorithms HS256
  secret env("JWT_SECRET")
}
route GET /orders/{id} -> orders { auth users set request header x-user "{claim.sub}" }
route /payments/{*rest} -> payment { auth users strip_prefix /payments }
route GET /orders/{id} host "admin.example.com" -> orders
route /{*rest} { respond 404 }
test "routes" {
  GET /orders/42 -> orders
  GET /orders/42 host "admin.example.com" -> orders
  POST /payments/charge -> payment
}
"#;

    const SECRET: &str = "value-of-the-secret-never-printed";

    fn gwc() -> Gwc {
        Gwc::new().env("JWT_SECRET", SECRET).file("app.gw", APP)
    }

    #[test]
    fn plan_prints_the_tree_with_secrets_as_references() {
        let out = gwc()
            .args(["plan", "app.gw"])
            .status(0)
            .stdout_has("host admin.example.com")
            .stdout_has("/{id}")
            .stdout_has("auth users (jwt)")
            .stdout_has("-> payment (least_conn over 127.0.0.1:9002, 127.0.0.1:9003 weight 2)")
            .stdout_has("secret env(\"JWT_SECRET\")")
            .run();
        assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    }

    #[test]
    fn plan_of_a_broken_configuration_exits_one_with_diagnostics() {
        Gwc::new()
            .file("app.gw", "route GET /x -> nowhere")
            .args(["plan", "app.gw"])
            .status(1)
            .stderr_has("GW0101")
            .run();
    }

    #[test]
    fn build_writes_json_that_loads_back() {
        let out = gwc()
            .args(["build", "app.gw", "-o", "-"])
            .status(0)
            .stdout_has("\"format_version\": 1")
            .run();
        assert!(!out.stdout.contains(SECRET), "secrets stay references");
        let plan = gw_compiler::plan::Plan::from_json(&out.stdout).expect("the built plan loads");
        assert_eq!(plan.routes.len(), 4);
    }

    #[test]
    fn build_defaults_to_a_plan_json_beside_the_file() {
        gwc()
            .args(["build", "app.gw"])
            .status(0)
            .stdout_has("wrote app.plan.json: plan format version 1, 4 routes, 2 upstreams")
            .run();
    }

    #[test]
    fn test_passes_and_reports_coverage() {
        gwc()
            .args(["test", "--coverage", "app.gw"])
            .status(0)
            .stdout_has("coverage: 1 routes no test reaches:")
            .stdout_has("/{*rest}  (app.gw:13)")
            .stdout_has("app.gw: 3 expectations: 3 passed, 0 failed")
            .run();
    }

    #[test]
    fn test_failure_exits_one_with_gw0601_at_the_expectation() {
        let failing = APP.replace("POST /payments/charge -> payment", "POST /payments/charge -> orders");
        let out = Gwc::new()
            .env("JWT_SECRET", SECRET)
            .file("app.gw", failing)
            .args(["test", "--format", "json", "--coverage", "app.gw"])
            .status(1)
            .run();
        let json = out.json();
        assert_eq!(json["tests"]["failed"], 1);
        assert_eq!(json["tests"]["passed"], 2);
        let d = &json["diagnostics"][0];
        assert_eq!(d["code"], "GW0601");
        assert_eq!(d["line"], 17);
        assert!(d["message"].as_str().is_some_and(|m| m.contains("routed to `payment`")));
        assert_eq!(json["unreached"][0]["route"], "/{*rest}");
    }

    #[test]
    fn check_runs_the_embedded_tests_too() {
        let failing = APP.replace("GET /orders/42 -> orders", "GET /orders/42 -> payment");
        Gwc::new()
            .env("JWT_SECRET", SECRET)
            .file("app.gw", failing)
            .args(["check", "app.gw"])
            .status(1)
            .stdout_has("GW0601")
            .run();
    }

    #[test]
    fn route_shows_the_winner_policies_and_losers() {
        gwc()
            .args(["route", "app.gw", "GET", "/orders/42"])
            .status(0)
            .stdout_has("-> route `GET /orders/{id}` (app.gw:10)")
            .stdout_has("param.id = \"42\"")
            .stdout_has("1. auth users (jwt)")
            .stdout_has("2. set request header x-user \"{claim.sub}\"")
            .stdout_has("3. -> orders (round_robin over 127.0.0.1:9001)")
            .stdout_has("route `GET /orders/{id} host \"admin.example.com\"` (app.gw:12)\n    host: it answers only host `admin.example.com`")
            .stdout_has("route `/{*rest}` (app.gw:13)\n    less specific at segment 1: catch-all `{*rest}` where the winner has literal `orders`")
            .run();
    }

    #[test]
    fn route_takes_a_host() {
        gwc()
            .args(["route", "app.gw", "GET", "/orders/1", "host", "ADMIN.example.com:443"])
            .status(0)
            .stdout_has("-> route `GET /orders/{id} host \"admin.example.com\"` (app.gw:12)")
            .stdout_has("host: the winner names the request's host and this route names none")
            .run();
    }

    #[test]
    fn route_explains_405_and_400() {
        let app = "upstream a { server 127.0.0.1:9001 }\nroute GET /x -> a\nroute POST /x -> a\n";
        Gwc::new()
            .file("app.gw", app)
            .args(["route", "app.gw", "DELETE", "/x"])
            .status(0)
            .stdout_has("-> 405: the routes whose path matched allow only GET, HEAD, POST")
            .stdout_has("method: it accepts only POST")
            .run();
        Gwc::new()
            .file("app.gw", app)
            .args(["route", "app.gw", "GET", "/x/../y"])
            .status(0)
            .stdout_has("-> 400: the path has a `..` segment")
            .run();
    }

    #[test]
    fn route_still_explains_when_embedded_tests_fail() {
        let failing = APP.replace("POST /payments/charge -> payment", "POST /payments/charge -> orders");
        Gwc::new()
            .env("JWT_SECRET", SECRET)
            .file("app.gw", failing)
            .args(["route", "app.gw", "POST", "/payments/charge"])
            .status(0)
            .stdout_has("-> route `/payments/{*rest}` (app.gw:11)")
            .stderr_has("GW0601")
            .run();
        let failing = APP.replace("POST /payments/charge -> payment", "POST /payments/charge -> orders");
        Gwc::new()
            .env("JWT_SECRET", SECRET)
            .file("app.gw", failing)
            .args(["plan", "app.gw"])
            .status(1)
            .run();
    }

    #[test]
    fn route_json_has_the_winner_pipeline_and_losers() {
        let out = gwc()
            .args([
                "route",
                "--format",
                "json",
                "app.gw",
                "GET",
                "/orders/42",
                "host",
                "www.example.com",
            ])
            .status(0)
            .run();
        let json = out.json();
        assert_eq!(json["request"]["host"], "www.example.com");
        assert_eq!(json["status"], serde_json::Value::Null, "routed upstream");
        assert_eq!(json["route"]["route"], "GET /orders/{id}");
        assert_eq!(json["route"]["line"], 10);
        assert_eq!(json["params"]["id"], "42");
        assert_eq!(json["pipeline"][0], "auth users (jwt)");
        assert_eq!(json["candidates"].as_array().map(Vec::len), Some(2));
        let missing = gwc()
            .args(["route", "--format", "json", "app.gw", "DELETE", "/orders/42"])
            .run()
            .json();
        assert_eq!(missing["status"], 404, "the catch-all answers 404 itself");
        assert_eq!(missing["route"]["route"], "/{*rest}");
    }

    #[test]
    fn route_with_an_unknown_method_is_a_usage_error() {
        gwc()
            .args(["route", "app.gw", "FETCH", "/x"])
            .status(2)
            .stderr_has("`FETCH` is not a method")
            .run();
    }
}

// ------------------------------------------------------------------ allocation

pub(crate) mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts the allocations of the current thread, and the bytes it holds
    /// (delegating to `System`).
    struct Counting;

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
        static BYTES: Cell<isize> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            let _ = BYTES.try_with(|b| b.set(b.get() + layout.size() as isize));
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let _ = BYTES.try_with(|b| b.set(b.get() - layout.size() as isize));
            // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Allocations made on this thread while running `f`.
    pub fn during(f: impl FnOnce()) -> usize {
        let before = COUNT.with(Cell::get);
        f();
        COUNT.with(Cell::get) - before
    }

    /// What `f` returns, and the bytes this thread allocated and did not
    /// free while running it (what the result holds, when `f` runs alone
    /// on this thread).
    pub fn bytes_during<T>(f: impl FnOnce() -> T) -> (T, isize) {
        let before = BYTES.with(Cell::get);
        let out = f();
        (out, BYTES.with(Cell::get) - before)
    }
}

#[test]
fn lookup_allocates_nothing_for_ordinary_requests() {
    let p = plan(
        "route GET /users/{id}/files/{*path} -> a\nroute GET /users/search -> b\n\
         route GET /x host \"h.example\" -> c\nroute POST /x -> d",
    );
    let requests = [
        (Method::Get, "api.example.com", "/users/7/files/a/b.txt"),
        (Method::Get, "API.Example.com:443", "/users/search"),
        (Method::Get, "h.example", "/x"),
        (Method::Get, "H.EXAMPLE:8080", "/x"),
        (Method::Put, "", "/x"),
        (Method::Get, "", "/nothing/here"),
        (Method::Get, "", "/a/../b"),
    ];
    let allocations = alloc_count::during(|| {
        for (method, host, path) in requests {
            let found = lookup(&p, Some(method), host, path);
            if let Lookup::Matched { params, .. } = &found {
                std::hint::black_box(params.get("path"));
            }
            std::hint::black_box(found);
        }
    });
    assert_eq!(allocations, 0);
    // A path with escapes of unreserved characters is decoded into a copy.
    assert!(alloc_count::during(|| drop(lookup(&p, Some(Method::Get), "", "/users/%7Ejo/files/x"))) > 0);
}

#[test]
fn lookup_with_conditions_allocates_nothing_for_ordinary_requests() {
    use gw_compiler::plan::condition::Given;
    use gw_compiler::plan::router::lookup_with;
    let p = plan(
        "route GET /search when header.x-beta == \"1\" -> a\n\
         route GET /search when query.engine in [\"v2\", \"next\"] and header.x-beta != \"1\" -> b\n\
         route GET /search when client_ip in [\"10.0.0.0/8\"] and header.x-beta == \"2\" and query.engine == \"v1\" -> c\n\
         route GET /search -> d",
    );
    let requests = [
        ("x-beta", "1", Some("engine=v2"), "a"),
        ("x-other", "1", Some("engine=next"), "b"),
        ("x-beta", "2", Some("engine=v1"), "d"),
        ("x-beta", "3", None, "d"),
    ];
    let given: Vec<Given> = requests
        .iter()
        .map(|(n, v, q, _)| Given {
            headers: vec![(n.to_string(), v.to_string())],
            query: q.map(str::to_string),
            cookies: Vec::new(),
            client_ip: Some("192.0.2.1".parse().expect("address")),
        })
        .collect();
    let mut routed = Vec::with_capacity(requests.len());
    let allocations = alloc_count::during(|| {
        for g in &given {
            routed.push(lookup_with(&p, Some(Method::Get), "", "/search", g).route());
        }
    });
    assert_eq!(
        allocations, 0,
        "conditions on headers, undecoded queries and addresses do not allocate"
    );
    let names: Vec<String> = routed
        .iter()
        .map(|r| p.target_name(&p.routes[r.expect("routed")]))
        .collect();
    assert_eq!(names, requests.iter().map(|r| r.3).collect::<Vec<_>>());
    // A plan read back from JSON routes alike (the blocks are parsed again).
    let back = Plan::from_json(&p.to_json()).expect("the plan reads back");
    let office = Given {
        headers: vec![("x-beta".into(), "2".into())],
        query: Some("engine=v1".into()),
        client_ip: Some("10.9.8.7".parse().expect("address")),
        ..Given::default()
    };
    let r = lookup_with(&back, Some(Method::Get), "", "/search", &office).route();
    assert_eq!(r.map(|r| back.target_name(&back.routes[r])).as_deref(), Some("c"));
}
