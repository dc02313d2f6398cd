//! Behaviour of the whole-configuration checks (compiler/src/check): which
//! configurations produce which codes, where they point, and that they stay
//! linear on very large configurations.

use gw_compiler::host::MemoryHost;
use gw_compiler::{compile_text, Code, Compilation, Diagnostic};
use std::time::Duration;

/// A host holding the key and certificate files of tests/fixtures/files.
fn host() -> MemoryHost {
    MemoryHost::new()
        .file("files/rsa.pem", &include_bytes!("fixtures/files/rsa.pem")[..])
        .file(
            "files/rsa-pkcs1.pem",
            &include_bytes!("fixtures/files/rsa-pkcs1.pem")[..],
        )
        .file("files/ec256.pem", &include_bytes!("fixtures/files/ec256.pem")[..])
        .file("files/ec384.pem", &include_bytes!("fixtures/files/ec384.pem")[..])
        .file("files/ed25519.pem", &include_bytes!("fixtures/files/ed25519.pem")[..])
        .file(
            "files/ed25519-private.pem",
            &include_bytes!("fixtures/files/ed25519-private.pem")[..],
        )
        .file(
            "files/jwks-rsa.json",
            &include_bytes!("fixtures/files/jwks-rsa.json")[..],
        )
        .file("files/jwks-ec.json", &include_bytes!("fixtures/files/jwks-ec.json")[..])
        .file("files/keys.txt", &include_bytes!("fixtures/files/keys.txt")[..])
        .file("files/no-keys.txt", &include_bytes!("fixtures/files/no-keys.txt")[..])
        .file("files/not-pem.txt", &include_bytes!("fixtures/files/not-pem.txt")[..])
        .file("files/tls.crt", &include_bytes!("fixtures/files/tls.crt")[..])
        .file("files/tls.key", &include_bytes!("fixtures/files/tls.key")[..])
        .file("files/other.key", &include_bytes!("fixtures/files/other.key")[..])
        .file(
            "files/other-sec1.key",
            &include_bytes!("fixtures/files/other-sec1.key")[..],
        )
        .file("files/rsa-tls.crt", &include_bytes!("fixtures/files/rsa-tls.crt")[..])
        .file("files/rsa-tls.key", &include_bytes!("fixtures/files/rsa-tls.key")[..])
        .file(
            "files/rsa-tls-pkcs1.key",
            &include_bytes!("fixtures/files/rsa-tls-pkcs1.key")[..],
        )
        .var("JWT_SECRET", "a-long-random-secret-for-tests")
        .var("EMPTY", "")
}

fn compile(text: &str) -> Compilation {
    compile_text(&host(), "app.gw", text)
}

/// The codes of `text`'s diagnostics, GW0506 left out: most snippets here
/// are routes without a `listen` (GW0506 has its own tests below).
fn codes(text: &str) -> Vec<Code> {
    compile(text)
        .diagnostics
        .iter()
        .map(|d| d.code)
        .filter(|&c| c != Code::GW0506)
        .collect()
}

/// The diagnostics of `code`.
fn only(c: &Compilation, code: Code) -> Vec<&Diagnostic> {
    c.diagnostics.iter().filter(|d| d.code == code).collect()
}

/// The text a diagnostic's primary label covers.
fn primary_text<'a>(c: &'a Compilation, d: &Diagnostic) -> &'a str {
    c.sources.text(d.span().expect("a primary label"))
}

fn secondary_texts<'a>(c: &'a Compilation, d: &Diagnostic) -> Vec<&'a str> {
    d.labels
        .iter()
        .filter(|l| !l.primary)
        .map(|l| c.sources.text(l.span))
        .collect()
}

const UP: &str = "upstream app { server 127.0.0.1:9000 }\n";

fn with_up(routes: &str) -> String {
    format!("{UP}{routes}")
}

// ------------------------------------------------------------------ a clean configuration

#[test]
fn a_complete_configuration_has_no_diagnostics() {
    let text = r#"
listen 127.0.0.1:8080
listen :8443 tls { cert "files/tls.crt" key "files/tls.key" }
admin 127.0.0.1:9901
upstream orders { balance hash(claim.sub) server 127.0.0.1:9001 server 127.0.0.1:9002 backup timeout 1s retry 1 }
upstream web { balance hash(header.x-user-id) server 127.0.0.1:9003 health { path /healthz interval 2s timeout 500ms } }
upstream pg { server 127.0.0.1:5432 }
listen :5432 tcp -> pg
auth users jwt { issuer "https://auth.example.com" audience "api" algorithms RS256 public_key file("files/rsa.pem") }
auth hmac jwt { issuer "i" audience "a" algorithms HS256 secret env("JWT_SECRET") }
auth partners api_key { keys file("files/keys.txt") }
store shared redis "redis://127.0.0.1:6379"
limit per_user { rate 100/min key claim.sub store shared }
route GET /orders/{id} -> orders {
  auth users
  require claim.scope has "orders:read"
  limit per_user
  set request header x-user-id "{claim.sub}/{param.id}"
  timeout 3s
}
route GET /me { auth hmac aggregate { me orders GET "/users/{claim.sub}" timeout 2s } }
route GET /partners/{*rest} -> web { auth partners rewrite "/{param.rest}" }
route /internal/{*rest} { respond 404 }
test "routing" {
  GET /orders/1 -> orders
  GET /me -> aggregate
  GET /internal/x -> 404
}
"#;
    let c = compile(text);
    assert!(c.diagnostics.is_empty(), "{:#?}", c.diagnostics);
    assert!(c.config.is_some());
}

// ------------------------------------------------------------------ GW0101

#[test]
fn unknown_upstream_suggests_a_near_name() {
    let c = compile(&with_up("route GET /x -> ap\n"));
    let d = only(&c, Code::GW0101);
    assert_eq!(d.len(), 1);
    assert_eq!(primary_text(&c, d[0]), "ap");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `app`?"));
}

#[test]
fn suggestions_come_from_the_right_namespace() {
    // `per_ip` is a limit; the route names an auth, so no limit is suggested.
    let c = compile(&with_up(
        "limit per_ip { rate 1/s key client_ip }\nroute GET /x -> app { auth per_ip limit per_ipp }\n",
    ));
    let d = only(&c, Code::GW0101);
    assert_eq!(d.len(), 2, "{:#?}", c.diagnostics);
    let auth = d.iter().find(|d| d.message.contains("auth")).expect("unknown auth");
    assert_ne!(auth.help.as_deref(), Some("did you mean `per_ip`?"));
    let limit = d.iter().find(|d| d.message.contains("limit")).expect("unknown limit");
    assert_eq!(limit.help.as_deref(), Some("did you mean `per_ip`?"));
}

#[test]
fn unknown_names_in_tcp_listeners_aggregates_and_stores_are_gw0101() {
    let c = compile(&with_up(
        "listen :5432 tcp -> apq\nlimit l { rate 1/s key none store shard }\nroute GET /x { limit l aggregate { a aap GET \"/\" } }\n",
    ));
    let texts: Vec<&str> = only(&c, Code::GW0101).iter().map(|d| primary_text(&c, d)).collect();
    assert_eq!(texts, ["apq", "shard", "aap"]);
}

#[test]
fn test_expectation_naming_no_upstream_is_gw0101_but_aggregate_and_statuses_are_fine() {
    let c = compile(&with_up(
        "route GET /x -> app\ntest \"t\" { GET /x -> ap  GET /y -> aggregate  GET /z -> 404 }\n",
    ));
    let d = only(&c, Code::GW0101);
    assert_eq!(d.len(), 1, "{:#?}", c.diagnostics);
    assert_eq!(primary_text(&c, d[0]), "ap");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `app`?"));
}

// ------------------------------------------------------------------ GW0102

#[test]
fn duplicate_upstream_is_gw0102_at_the_later_definition() {
    let c = compile("upstream app { server 127.0.0.1:1 }\nupstream app { server 127.0.0.1:2 }\nroute /x -> app\n");
    let d = only(&c, Code::GW0102);
    assert_eq!(d.len(), 1);
    let (line, _) = c.sources.line_col(d[0].span().unwrap());
    assert_eq!(line, 2);
    let first = d[0].labels.iter().find(|l| !l.primary).expect("secondary label");
    assert_eq!(c.sources.line_col(first.span).0, 1);
}

#[test]
fn the_same_name_in_different_namespaces_is_not_a_duplicate() {
    let text = "upstream x { server 127.0.0.1:1 }\nlimit x { rate 1/s key none }\nstore x redis \"redis://127.0.0.1:6379\"\nauth x api_key { keys file(\"files/keys.txt\") }\n";
    assert!(!codes(text).contains(&Code::GW0102));
}

// ------------------------------------------------------------------ GW0201

#[test]
fn get_and_head_routes_do_not_collide() {
    assert!(codes(&with_up("route GET /x -> app\nroute HEAD /x -> app\n")).is_empty());
}

#[test]
fn an_every_method_route_and_a_get_route_do_not_collide() {
    assert!(codes(&with_up("route /x -> app\nroute GET /x -> app\n")).is_empty());
}

#[test]
fn routes_with_renamed_params_collide() {
    let c = compile(&with_up("route GET /x/{a} -> app\nroute GET /x/{b} -> app\n"));
    let d = only(&c, Code::GW0201);
    assert_eq!(d.len(), 1);
    assert_eq!(primary_text(&c, d[0]), "route GET /x/{b} -> app");
    assert_eq!(secondary_texts(&c, d[0]), ["route GET /x/{a} -> app"]);
}

#[test]
fn catch_alls_with_renamed_params_collide() {
    assert_eq!(
        codes(&with_up("route /s/{*a} -> app\nroute /s/{*b} -> app\n")),
        [Code::GW0201]
    );
}

#[test]
fn a_method_named_by_both_routes_collides() {
    assert_eq!(
        codes(&with_up("route GET,HEAD /x -> app\nroute POST,GET /x -> app\n")),
        [Code::GW0201]
    );
}

#[test]
fn routes_differing_in_host_param_position_or_trailing_slash_do_not_collide() {
    let text = with_up(
        "route GET /x -> app\nroute GET /x host \"a.example.com\" -> app\nroute GET /{p} -> app\nroute GET /x/ -> app\nroute GET /{*p} -> app\n",
    );
    assert!(codes(&text).is_empty(), "{:?}", codes(&text));
}

/// `routes` routes over 1,000 upstreams (all distinct), plus the planted
/// collisions: a renamed parameter, and an every-method pair.
fn many_routes(routes: usize) -> String {
    let mut text = String::with_capacity(routes * 40 + 40_000);
    text.push_str("listen 127.0.0.1:8080\n");
    for u in 0..1000 {
        text.push_str(&format!("upstream u{u} {{ server 127.0.0.1:{} }}\n", 1000 + u));
    }
    for r in 0..routes {
        text.push_str(&format!("route GET /r{r}/{{id}} -> u{}\n", r % 1000));
    }
    text.push_str("route GET /r77/{other} -> u1\n");
    text.push_str("route /all -> u2\nroute /all -> u3\n");
    text
}

/// The CPU time this thread has used: unlike wall-clock time, it does not
/// grow when other processes take the cores.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    assert!(ok, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Compiles `text` and returns what it found and the CPU time it took.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn timed(text: &str) -> (Compilation, Duration) {
    let start = thread_cpu_time();
    let c = compile(text);
    (c, thread_cpu_time() - start)
}

/// 100k routes: the planted collisions and nothing else are found, and the
/// whole check costs about 8 times what 12.5k routes cost (CPU time, the
/// least of three for the small one; 7.4 to 8.4 measured): a quadratic step
/// would cost 64 times. The bound, 20, leaves room for allocation and cache
/// effects; a worse-than-linear check fails rather than running for minutes
/// (a wall-clock watchdog at 200 times the small one's cost, a minute at
/// least).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn collision_check_is_linear_for_100k_routes() {
    let small_text = many_routes(12_500);
    let small = (0..3).map(|_| timed(&small_text).1).min().unwrap_or_default();
    let big_text = many_routes(100_000);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(timed(&big_text));
    });
    let watchdog = (small * 200).max(Duration::from_secs(60));
    let (c, big) = match rx.recv_timeout(watchdog) {
        Ok(done) => done,
        Err(_) => panic!("100k routes took over {watchdog:?} (12.5k: {small:?} of CPU)"),
    };
    let d = only(&c, Code::GW0201);
    assert_eq!(d.len(), 2, "{:#?}", d);
    assert_eq!(c.diagnostics.len(), 2);
    let ratio = big.as_secs_f64() / small.as_secs_f64();
    assert!(
        ratio < 20.0,
        "8 times the routes cost {ratio:.1} times the CPU time ({small:?} -> {big:?}): not linear"
    );
}

// ------------------------------------------------------------------ GW0202

#[test]
fn a_route_without_target_is_gw0202() {
    let c = compile("route GET /x { timeout 1s }\n");
    assert_eq!(only(&c, Code::GW0202).len(), 1);
}

#[test]
fn a_route_with_two_targets_is_gw0202() {
    let c = compile(&with_up("route GET /x -> app { respond 404 }\n"));
    let d = only(&c, Code::GW0202);
    assert_eq!(d.len(), 1);
    assert_eq!(secondary_texts(&c, d[0]), ["app", "respond 404"]);
}

#[test]
fn a_route_whose_target_was_invalid_is_not_also_gw0202() {
    let c = compile("route GET /x { respond 99 }\n");
    assert!(c.errors() > 0);
    assert!(only(&c, Code::GW0202).is_empty(), "{:#?}", c.diagnostics);
}

// ------------------------------------------------------------------ GW0203

#[test]
fn unknown_param_is_gw0203_with_a_suggestion() {
    let c = compile(&with_up(
        "route GET /users/{id} -> app { set request header x \"{param.ids}\" }\n",
    ));
    let d = only(&c, Code::GW0203);
    assert_eq!(d.len(), 1);
    assert_eq!(primary_text(&c, d[0]), "param.ids");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `param.id`?"));
}

#[test]
fn params_are_checked_in_redirects_rewrites_requires_and_aggregates() {
    let c = compile(&with_up(
        "route GET /a { redirect 301 \"/{param.x}\" }\nroute GET /b -> app { rewrite \"/{param.y}\" require param.z == \"1\" }\nroute GET /c/{w} { aggregate { p app GET \"/{param.v}\" } }\n",
    ));
    let texts: Vec<&str> = only(&c, Code::GW0203).iter().map(|d| primary_text(&c, d)).collect();
    assert_eq!(texts, ["param.x", "param.y", "param.z", "param.v"]);
}

// ------------------------------------------------------------------ GW0204

const JWT: &str =
    "auth users jwt { issuer \"i\" audience \"a\" algorithms RS256 public_key file(\"files/rsa.pem\") }\n";
const KEYS: &str = "auth partners api_key { keys file(\"files/keys.txt\") }\n";

#[test]
fn claim_in_template_without_jwt_is_gw0204() {
    let c = compile(&with_up(
        "route GET /x -> app { set request header x-user \"{claim.sub}\" }\n",
    ));
    let d = only(&c, Code::GW0204);
    assert_eq!(d.len(), 1);
    assert_eq!(primary_text(&c, d[0]), "claim.sub");
}

#[test]
fn claim_in_require_under_an_api_key_auth_is_gw0204_pointing_at_the_auth() {
    let c = compile(&format!(
        "{UP}{KEYS}route GET /x -> app {{ auth partners require claim.role == \"admin\" }}\n"
    ));
    let d = only(&c, Code::GW0204);
    assert_eq!(d.len(), 1);
    assert_eq!(primary_text(&c, d[0]), "claim.role");
    assert_eq!(secondary_texts(&c, d[0]), ["partners"]);
}

#[test]
fn a_limit_keyed_on_a_claim_on_a_route_without_jwt_is_gw0204() {
    let c = compile(&with_up(
        "limit per_user { rate 1/s key claim.sub }\nroute GET /x -> app { limit per_user }\n",
    ));
    let d = only(&c, Code::GW0204);
    assert_eq!(d.len(), 1);
    assert_eq!(primary_text(&c, d[0]), "per_user");
    assert_eq!(secondary_texts(&c, d[0]), ["claim.sub"]);
}

#[test]
fn claims_under_a_jwt_auth_are_fine() {
    let text = format!(
        "{UP}{JWT}limit per_user {{ rate 1/s key claim.sub }}\nroute GET /x -> app {{ auth users limit per_user require claim.scope has \"x\" set request header u \"{{claim.sub}}\" }}\n"
    );
    assert!(codes(&text).is_empty(), "{:?}", codes(&text));
}

// ------------------------------------------------------------------ GW0205

#[test]
fn a_listen_address_used_twice_is_gw0205() {
    let c = compile(&with_up(
        "listen 127.0.0.1:8080\nlisten 127.0.0.1:8080\nroute /x -> app\n",
    ));
    let d = only(&c, Code::GW0205);
    assert_eq!(d.len(), 1);
    assert_eq!(c.sources.line_col(d[0].span().unwrap()).0, 3);
}

#[test]
fn an_admin_address_equal_to_a_listen_address_is_gw0205() {
    assert_eq!(
        codes(&with_up(
            "listen 127.0.0.1:8080\nadmin 127.0.0.1:8080\nroute /x -> app\n"
        )),
        [Code::GW0205]
    );
}

#[test]
fn all_interfaces_and_one_interface_on_the_same_port_is_gw0205() {
    assert_eq!(
        codes(&with_up("listen :8080\nlisten 127.0.0.1:8080\nroute /x -> app\n")),
        [Code::GW0205]
    );
    assert!(codes(&with_up(
        "listen 127.0.0.1:8080\nlisten 127.0.0.2:8080\nroute /x -> app\n"
    ))
    .is_empty());
}

// ------------------------------------------------------------------ GW0301 / GW0302

#[test]
fn an_upstream_with_only_backup_servers_is_gw0301() {
    let c = compile("upstream app { server 127.0.0.1:1 backup }\nroute /x -> app\n");
    assert_eq!(only(&c, Code::GW0301).len(), 1);
}

#[test]
fn an_upstream_with_no_servers_is_gw0301() {
    assert_eq!(codes("upstream app { timeout 1s }\nroute /x -> app\n"), [Code::GW0301]);
}

#[test]
fn a_claim_hashed_upstream_reached_without_jwt_is_gw0302() {
    let text = format!(
        "{JWT}upstream app {{ balance hash(claim.sub) server 127.0.0.1:1 }}\nroute GET /ok -> app {{ auth users }}\nroute GET /bad -> app\nroute GET /agg {{ aggregate {{ a app GET \"/\" }} }}\nlisten :5432 tcp -> app\n"
    );
    let c = compile(&text);
    let texts: Vec<&str> = only(&c, Code::GW0302).iter().map(|d| primary_text(&c, d)).collect();
    assert_eq!(texts, ["app", "app", "app"], "{:#?}", c.diagnostics);
    let lines: Vec<usize> = only(&c, Code::GW0302)
        .iter()
        .map(|d| c.sources.line_col(d.span().unwrap()).0)
        .collect();
    assert_eq!(lines, [4, 5, 6]);
}

#[test]
fn a_header_hashed_upstream_is_never_gw0302() {
    assert!(codes("upstream app { balance hash(header.x-user) server 127.0.0.1:1 }\nroute GET /x -> app\n").is_empty());
}

// ------------------------------------------------------------------ GW0401 / GW0402

fn jwt_with(algs: &str, key: &str) -> String {
    format!("{UP}auth users jwt {{ issuer \"i\" audience \"a\" algorithms {algs} {key} }}\nroute GET /x -> app {{ auth users }}\nlisten 127.0.0.1:8080\n")
}

#[test]
fn hs256_with_rs256_is_gw0401() {
    let c = compile(&jwt_with("HS256, RS256", "jwks url \"https://a.example.com/jwks\""));
    let d = only(&c, Code::GW0401);
    assert_eq!(d.len(), 1, "{:#?}", c.diagnostics);
    assert_eq!(primary_text(&c, d[0]), "HS256, RS256");
}

#[test]
fn every_public_key_kind_fits_its_algorithm() {
    for (alg, file) in [
        ("RS256, PS512", "public_key file(\"files/rsa.pem\")"),
        ("RS256", "public_key file(\"files/rsa-pkcs1.pem\")"),
        ("ES256", "public_key file(\"files/ec256.pem\")"),
        ("ES384", "public_key file(\"files/ec384.pem\")"),
        ("EdDSA", "public_key file(\"files/ed25519.pem\")"),
        ("RS256", "jwks file(\"files/jwks-rsa.json\")"),
        ("ES256, RS384", "jwks file(\"files/jwks-ec.json\")"),
        ("HS512", "secret file(\"files/keys.txt\")"),
    ] {
        let text = jwt_with(alg, file);
        assert!(codes(&text).is_empty(), "{alg} {file}: {:?}", codes(&text));
    }
}

#[test]
fn a_key_of_the_wrong_type_is_gw0402() {
    for (alg, key, why) in [
        ("ES256", "public_key file(\"files/rsa.pem\")", "an RSA key"),
        ("ES256", "public_key file(\"files/ec384.pem\")", "an EC P-384 key"),
        ("RS256", "public_key file(\"files/ed25519.pem\")", "an Ed25519 key"),
        (
            "RS256",
            "public_key file(\"files/not-pem.txt\")",
            "not a PEM public key",
        ),
        ("EdDSA", "public_key file(\"files/ed25519-private.pem\")", "private key"),
        ("RS256", "public_key file(\"files/missing.pem\")", "no such file"),
        ("ES384", "jwks file(\"files/jwks-ec.json\")", "no key for `ES384`"),
        ("RS256", "jwks file(\"files/keys.txt\")", "not JSON"),
        ("RS256", "secret env(\"JWT_SECRET\")", "shared `secret`"),
        ("HS256", "public_key file(\"files/rsa.pem\")", "HS* algorithms"),
        ("HS256", "secret env(\"EMPTY\")", "is empty"),
    ] {
        let c = compile(&jwt_with(alg, key));
        let d = only(&c, Code::GW0402);
        assert_eq!(d.len(), 1, "{alg} {key}: {:#?}", c.diagnostics);
        assert!(d[0].message.contains(why), "{alg} {key}: {}", d[0].message);
    }
}

#[test]
fn an_api_key_file_without_keys_is_gw0402() {
    let text = format!("{UP}auth partners api_key {{ keys file(\"files/no-keys.txt\") }}\nroute GET /x -> app {{ auth partners }}\nlisten 127.0.0.1:8080\n");
    assert_eq!(codes(&text), [Code::GW0402]);
}

// ------------------------------------------------------------------ GW0403

#[test]
fn a_tls_listener_without_certificate_is_gw0403() {
    let c = compile(&with_up("listen :8443 tls { }\nroute /x -> app\n"));
    let d = only(&c, Code::GW0403);
    assert_eq!(d.len(), 1, "{:#?}", c.diagnostics);
    assert_eq!(primary_text(&c, d[0]), "tls");
}

#[test]
fn swapped_or_unreadable_certificate_files_are_gw0403() {
    let c = compile(&with_up(
        "listen :8443 tls { cert \"files/tls.key\" key \"files/tls.crt\" }\nlisten :8444 tls { cert \"files/nope.crt\" key \"files/tls.key\" }\nroute /x -> app\n",
    ));
    let d = only(&c, Code::GW0403);
    assert_eq!(d.len(), 3, "{:#?}", c.diagnostics);
    assert_eq!(d[0].help.as_deref(), Some("did you swap `cert` and `key`?"));
}

#[test]
fn a_key_that_does_not_belong_to_its_certificate_is_gw0403() {
    for (cert, key, matches) in [
        ("tls.crt", "tls.key", true),
        ("rsa-tls.crt", "rsa-tls.key", true),
        ("rsa-tls.crt", "rsa-tls-pkcs1.key", true),
        ("tls.crt", "other.key", false),
        ("tls.crt", "other-sec1.key", false),
        ("rsa-tls.crt", "tls.key", false),
    ] {
        let c = compile(&with_up(&format!(
            "listen :8443 tls {{ cert \"files/{cert}\" key \"files/{key}\" }}\nroute /x -> app\n"
        )));
        let d = only(&c, Code::GW0403);
        assert_eq!(d.len(), usize::from(!matches), "{cert} {key}: {:#?}", c.diagnostics);
        if let Some(d) = d.first() {
            assert!(d.message.contains("does not belong"), "{}", d.message);
            assert_eq!(primary_text(&c, d), format!("\"files/{key}\""));
        }
    }
}

#[test]
fn a_tls_listener_with_only_sni_certificates_is_gw0403() {
    let c = compile(&with_up(
        "listen :8443 tls { cert \"files/tls.crt\" key \"files/tls.key\" sni \"api.example.com\" }\nroute /x -> app\n",
    ));
    let d = only(&c, Code::GW0403);
    assert_eq!(d.len(), 1, "{:#?}", c.diagnostics);
    assert!(d[0].message.contains("no default certificate"));
}

// ------------------------------------------------------------------ GW0404

#[test]
fn an_unset_environment_variable_is_gw0404() {
    let c = compile(&jwt_with("HS256", "secret env(\"NOPE\")"));
    let d = only(&c, Code::GW0404);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].help.as_deref(), Some("set `NOPE` in the environment gw runs in"));
}

// ------------------------------------------------------------------ warnings

#[test]
fn unused_upstream_warns() {
    let c = compile(&with_up("upstream spare { server 127.0.0.1:2 }\nroute /x -> app\n"));
    let d = only(&c, Code::GW0501);
    assert_eq!(d.len(), 1);
    assert_eq!(primary_text(&c, d[0]), "spare");
    assert!(c.config.is_some(), "a warning does not fail the check");
}

#[test]
fn unused_auth_limit_and_store_warn_and_a_store_used_by_a_limit_does_not() {
    let text = format!(
        "{UP}{KEYS}limit l {{ rate 1/s key none store s1 }}\nstore s1 redis \"redis://127.0.0.1:6379\"\nstore s2 redis \"redis://127.0.0.1:6379\"\nroute /x -> app\n"
    );
    let c = compile(&text);
    let names: Vec<&str> = only(&c, Code::GW0501).iter().map(|d| primary_text(&c, d)).collect();
    assert_eq!(names, ["partners", "l", "s2"]);
}

#[test]
fn retry_on_a_post_route_warns_but_not_on_a_get_route() {
    let c = compile(&with_up(
        "route POST /x -> app { retry 1 }\nroute GET /y -> app { retry 1 }\nroute /z -> app { retry 1 }\n",
    ));
    let lines: Vec<usize> = only(&c, Code::GW0502)
        .iter()
        .map(|d| c.sources.line_col(d.span().unwrap()).0)
        .collect();
    assert_eq!(lines, [2, 4]);
}

#[test]
fn plain_http_with_auth_warns_except_on_loopback() {
    let base = format!("{UP}{KEYS}route GET /x -> app {{ auth partners }}\n");
    assert_eq!(codes(&format!("{base}listen :8080\n")), [Code::GW0503]);
    assert!(codes(&format!("{base}listen 127.0.0.1:8080\nlisten [::1]:8081\n")).is_empty());
}

#[test]
fn retries_that_cannot_fit_in_the_route_timeout_warn() {
    let c = compile(
        "upstream app { server 127.0.0.1:1 timeout 2s retry 2 }\nroute GET /x -> app { timeout 5s }\nroute GET /y -> app { timeout 6s }\nroute GET /z -> app { timeout 4s retry 1 }\n",
    );
    let d = only(&c, Code::GW0504);
    assert_eq!(d.len(), 1, "{:#?}", c.diagnostics);
    assert_eq!(primary_text(&c, d[0]), "5s");
}

#[test]
fn aggregate_parts_are_checked_against_the_aggregate_timeout() {
    let c = compile(
        "upstream app { server 127.0.0.1:1 timeout 2s retry 1 }\nroute GET /x { aggregate { a app GET \"/\" timeout 3s } }\n",
    );
    assert_eq!(only(&c, Code::GW0504).len(), 1);
}

#[test]
fn a_health_timeout_not_shorter_than_its_interval_warns() {
    let c = compile("upstream app { server 127.0.0.1:1 health { path /h interval 1s timeout 1s } }\nroute /x -> app\n");
    assert_eq!(only(&c, Code::GW0504).len(), 1);
}

#[test]
fn inline_secrets_warn() {
    assert_eq!(codes(&jwt_with("HS256", "secret \"s3cr3t\"")), [Code::GW0505]);
    let text =
        format!("{UP}auth k api_key {{ keys \"k-1\", \"k-2\" }}\nroute /x -> app {{ auth k }}\nlisten 127.0.0.1:1\n");
    assert_eq!(codes(&text), [Code::GW0505]);
}

// ------------------------------------------------------------------ GW0506

/// GW0506 diagnostics of the configuration rooted at `app.gw` in `host`.
fn gw0506(host: &MemoryHost) -> Vec<Diagnostic> {
    let c = gw_compiler::compile(host, "app.gw").expect("app.gw is there");
    c.diagnostics.into_iter().filter(|d| d.code == Code::GW0506).collect()
}

#[test]
fn a_root_with_routes_and_no_listen_warns_at_its_first_route() {
    let c = compile(&with_up(
        "admin 127.0.0.1:9901\nroute GET /b -> app\nroute GET /a -> app\n",
    ));
    let d = only(&c, Code::GW0506);
    assert_eq!(d.len(), 1, "{:#?}", c.diagnostics);
    assert!(!d[0].is_error(), "a warning: the file still compiles");
    assert!(c.plan.is_some());
    assert_eq!(
        primary_text(&c, d[0]),
        "route GET /b -> app",
        "the first route by position"
    );
    assert!(
        d[0].message.contains("`app.gw` has 2 routes and no `listen`"),
        "{}",
        d[0].message
    );
}

#[test]
fn a_root_with_a_listener_or_without_routes_is_not_gw0506() {
    for text in [
        with_up("listen 127.0.0.1:8080\nroute GET /a -> app\n"),
        with_up("listen 127.0.0.1:5432 tcp -> app\nroute GET /a -> app\n"),
        // Nothing to serve and nothing promised: an empty file, or upstreams alone.
        String::new(),
        "upstream app { server 127.0.0.1:1 }\n".to_string(),
    ] {
        let c = compile(&text);
        assert!(only(&c, Code::GW0506).is_empty(), "{text}\n{:#?}", c.diagnostics);
    }
}

#[test]
fn an_imported_file_of_routes_is_clean_when_its_root_listens() {
    let routes = "upstream app { server 127.0.0.1:1 }\nroute GET /a -> app\n";
    let listening = MemoryHost::new()
        .file("app.gw", "import \"routes.gw\"\nlisten 127.0.0.1:8080\n")
        .file("routes.gw", routes);
    assert!(gw0506(&listening).is_empty());
    // The same import under a root without a listener: the root is warned
    // about, the label pointing at the route in the imported file.
    let deaf = MemoryHost::new()
        .file("app.gw", "import \"routes.gw\"\nadmin 127.0.0.1:9901\n")
        .file("routes.gw", routes);
    let c = gw_compiler::compile(&deaf, "app.gw").expect("app.gw is there");
    let d = only(&c, Code::GW0506);
    assert_eq!(d.len(), 1);
    assert!(d[0].message.contains("`app.gw` has a route"), "{}", d[0].message);
    let span = d[0].span().expect("a span");
    assert_eq!(c.sources.get(span.file).name, "routes.gw");
}

#[test]
fn gw0506_stays_quiet_when_the_listen_line_may_have_failed() {
    // A `listen` with a bad port is dropped by lowering (GW0106): not also GW0506.
    let c = compile(&with_up("listen 127.0.0.1:99999\nroute GET /a -> app\n"));
    assert!(!only(&c, Code::GW0106).is_empty(), "{:#?}", c.diagnostics);
    assert!(only(&c, Code::GW0506).is_empty(), "{:#?}", c.diagnostics);
}

// ------------------------------------------------------------------ totality

#[test]
fn truncated_or_corrupted_key_files_are_diagnostics_not_panics() {
    let text = with_up(
        "listen :8443 tls { cert \"files/c\" key \"files/k\" }\nauth a jwt { issuer \"i\" audience \"a\" algorithms RS256, PS256 public_key file(\"files/p\") }\nauth b jwt { issuer \"i\" audience \"a\" algorithms ES256 jwks file(\"files/j\") }\nroute /x -> app { auth a }\nroute /y -> app { auth b }\n",
    );
    let originals: [&[u8]; 4] = [
        include_bytes!("fixtures/files/rsa-tls.crt"),
        include_bytes!("fixtures/files/rsa-tls.key"),
        include_bytes!("fixtures/files/rsa.pem"),
        include_bytes!("fixtures/files/jwks-ec.json"),
    ];
    let mut variants: Vec<Vec<u8>> = Vec::new();
    for original in originals {
        for cut in (0..original.len()).step_by(7) {
            variants.push(original[..cut].to_vec());
            let mut flipped = original.to_vec();
            flipped[cut] ^= 0x55;
            variants.push(flipped);
        }
    }
    for v in &variants {
        let host = MemoryHost::new()
            .file("files/c", v.clone())
            .file("files/k", v.clone())
            .file("files/p", v.clone())
            .file("files/j", v.clone());
        let c = compile_text(&host, "app.gw", &text);
        assert!(c.diagnostics.iter().all(|d| d.span().is_some()));
    }
}

#[test]
fn an_sni_name_must_be_a_dns_name_or_a_wildcard() {
    let tls = |sni: &str| {
        format!("listen :8443 tls {{ cert \"a.crt\" key \"a.key\" cert \"b.crt\" key \"b.key\" sni \"{sni}\" }}")
    };
    let bad = compile(&tls("https://Bad Name/"));
    assert!(bad
        .diagnostics
        .iter()
        .any(|d| d.code == Code::GW0003 && d.message.contains("server name")));
    for good in ["api.example.com", "*.example.com"] {
        let c = compile(&tls(good));
        assert!(
            !c.diagnostics.iter().any(|d| d.code == Code::GW0003),
            "{good}: {:?}",
            codes(&tls(good))
        );
    }
}

// ------------------------------------------------------------------ suggestions as edits

/// Applies a diagnostic's suggestion to the text it was made from.
fn apply_suggestion(text: &str, d: &Diagnostic) -> String {
    let s = d.suggestion.as_ref().expect("a suggestion");
    let mut out = text.to_string();
    out.replace_range(s.span.start as usize..s.span.end as usize, &s.replacement);
    out
}

/// Every "did you mean `x`?" carries its edit: `x` in place of only the
/// misspelt part (the call's name of `fil("k")`, the root of `claims.sub`),
/// and applying it removes the diagnostic — what an editor's quick fix does.
#[test]
fn every_did_you_mean_is_an_edit_that_removes_its_diagnostic() {
    let head = "listen 127.0.0.1:8080\nupstream app { server 127.0.0.1:9000 }\n";
    let jwt = "auth users jwt { issuer \"i\" audience \"a\" algorithms HS256 secret env(\"JWT_SECRET\") }\n";
    let cases: Vec<(String, &str)> = vec![
        (format!("{head}route /x -> ap\n"), "ap"),
        (format!("{head}auth k api_key {{ keys fil(\"files/keys.txt\") }}\nroute /x -> app {{ auth k }}\n"), "fil"),
        (format!("{head}{jwt}limit l {{ rate 1/s key claims.sub }}\nroute /x -> app {{ auth users limit l }}\n"), "claims"),
        (format!("{head}{jwt}route /x -> app {{ auth users set request header x-u \"{{claims.sub}}\" }}\n"), "claims"),
        (format!("{head}route GET /u/{{id}} -> app {{ rewrite \"/v/{{param.idd}}\" }}\n"), "param.idd"),
        (format!("{head}route get /x -> app\n"), "get"),
        (format!("{head}route DELET /x -> app\n"), "DELET"),
        (format!("{head}upstream b {{ server 127.0.0.1:1 timeot 5s }}\nroute /b -> b\n"), "timeot"),
        (format!("{head}upsteam b {{ server 127.0.0.1:1 }}\nroute /x -> app\n"), "upsteam"),
        (format!("{head}upstream b {{ server 127.0.0.1:1 balance roundrobin }}\nroute /b -> b\n"), "roundrobin"),
        (format!("{head}upstream b {{ server 127.0.0.1:1 retry 1 on timout }}\nroute /b -> b\n"), "timout"),
        (format!("{head}auth k jwtt {{ issuer \"i\" audience \"a\" algorithms HS256 secret env(\"JWT_SECRET\") }}\nroute /x -> app {{ auth k }}\n"), "jwtt"),
        (format!("{head}auth k jwt {{ issuer \"i\" audience \"a\" algorithms hs256 secret env(\"JWT_SECRET\") }}\nroute /x -> app {{ auth k }}\n"), "hs256"),
        (format!("{head}limit l {{ rate 1/s key clientip }}\nroute /x -> app {{ limit l }}\n"), "clientip"),
        (format!("{head}store s rediss \"redis://127.0.0.1:6379\"\nlimit l {{ rate 1/s key client_ip store s }}\nroute /x -> app {{ limit l }}\n"), "rediss"),
        (format!("{head}route /x -> app {{ set requets header x-a \"1\" }}\n"), "requets"),
        (format!("{head}auth k api_key {{ keys file(\"files/keys.txt\") from heder x-key }}\nroute /x -> app {{ auth k }}\n"), "heder"),
        (format!("{head}route GET /x -> app\ntest \"t\" {{ GET /x -> ap }}\n"), "ap"),
        (format!("{head}upstream b {{ server 127.0.0.1:1 timeout 3 s }}\nroute /b -> b\n"), "3 s"),
    ];
    for (text, misspelt) in &cases {
        let c = compile(text);
        let Some(d) = c.diagnostics.iter().find(|d| d.suggestion.is_some()) else {
            panic!("no suggestion for {misspelt:?} in {text}: {:#?}", c.diagnostics);
        };
        let s = d.suggestion.as_ref().expect("a suggestion");
        assert_eq!(c.sources.text(s.span), *misspelt, "{d:#?}");
        if let Some(word) = d.help.as_deref().and_then(|h| h.strip_prefix("did you mean `")) {
            // The help names what the fixed text reads: `param.id`, or the replacement itself.
            let meant = word.trim_end_matches("`?");
            assert!(meant.ends_with(s.replacement.as_str()), "{d:#?}");
        }
        let fixed = apply_suggestion(text, d);
        let after = compile(&fixed);
        let same = |e: &&Diagnostic| e.code == d.code && e.span().map(|s| s.start) == d.span().map(|s| s.start);
        assert!(
            !after.diagnostics.iter().any(|e| same(&e)),
            "the fix of {misspelt:?} left {:#?}\n{fixed}",
            after.diagnostics
        );
    }
    // Every "did you mean" of every fixture carries its edit too.
    for entry in std::fs::read_dir(crate::support::fixtures_dir())
        .expect("fixtures")
        .flatten()
    {
        let path = entry.path();
        // `files.gw` (GW0005's fixture) is a symlink to a folder.
        if path.extension().is_none_or(|e| e != "gw") || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let c = compile(&text);
        for d in c.diagnostics.iter().filter(|d| d.span().is_some_and(|s| s.file.0 == 0)) {
            if d.help.as_deref().is_some_and(|h| h.starts_with("did you mean `")) {
                assert!(d.suggestion.is_some(), "{}: {d:#?}", path.display());
                let after = compile(&apply_suggestion(&text, d));
                let same = |e: &&Diagnostic| e.code == d.code && e.span().map(|s| s.start) == d.span().map(|s| s.start);
                assert!(
                    !after.diagnostics.iter().any(|e| same(&e)),
                    "{}: {d:#?}",
                    path.display()
                );
            }
        }
    }
}

// ------------------------------------------------------------------ GW0405 and an upstream's `tls`

fn upstream_with(attrs: &str) -> String {
    format!("listen 127.0.0.1:8080\nupstream app {{\n  server 127.0.0.1:9443\n  {attrs}\n}}\nroute /x -> app\n")
}

#[test]
fn upstream_tls_files_are_checked_as_gw0405() {
    // Usable: a CA certificate, a client certificate with its own key.
    let ok = upstream_with("tls { ca \"files/tls.crt\" cert \"files/tls.crt\" key \"files/tls.key\" }");
    assert_eq!(codes(&ok), [], "{ok}");
    assert_eq!(codes(&upstream_with("tls")), [], "the system's roots");
    for (attrs, label) in [
        ("tls { ca \"files/tls.key\" }", "\"files/tls.key\""),
        ("tls { ca \"files/missing.pem\" }", "\"files/missing.pem\""),
        (
            "tls { cert \"files/tls.crt\" key \"files/other.key\" }",
            "\"files/other.key\"",
        ),
        (
            "tls { cert \"files/tls.key\" key \"files/tls.key\" }",
            "\"files/tls.key\"",
        ),
    ] {
        let c = compile(&upstream_with(attrs));
        let d = only(&c, Code::GW0405);
        assert_eq!(d.len(), 1, "{attrs}: {:#?}", c.diagnostics);
        assert_eq!(primary_text(&c, d[0]), label, "{attrs}");
    }
}

#[test]
fn upstream_tls_and_host_header_values_are_checked() {
    for (attrs, code) in [
        ("tls { server_name \"https://ledger.internal/\" }", Code::GW0003),
        ("tls { sni \"ledger.internal\" }", Code::GW0103),
        ("tls\n  tls", Code::GW0105),
        ("host_header upstream", Code::GW0106),
        ("host_header \"a name/with a path\"", Code::GW0003),
        ("host_header 443", Code::GW0106),
    ] {
        assert_eq!(codes(&upstream_with(attrs)), [code], "{attrs}");
    }
    for attrs in [
        "tls { server_name \"ledger.internal\" }",
        "tls { server_name \"10.0.0.1\" }",
        "host_header client",
        "host_header server",
        "host_header \"api.example.com:8443\"",
    ] {
        assert_eq!(codes(&upstream_with(attrs)), [], "{attrs}");
    }
}

/// A store's `tls` block: the upstreams' settings except `server_name`
/// (the Redis client verifies the URL's host), and only on `rediss://` —
/// written, or read from `env()` (where the check reads it).
#[test]
fn a_store_tls_block_needs_rediss_and_takes_no_server_name() {
    let store = |url: &str, tls: &str| {
        format!(
            "store s redis {url} {{ {tls} }}\nlimit l {{ rate 1/s key client_ip store s }}\nroute /x {{ limit l respond 200 }}\n"
        )
    };
    assert_eq!(
        codes(&store(
            "\"rediss://h:6380\"",
            "tls { ca \"files/tls.crt\" cert \"files/tls.crt\" key \"files/tls.key\" }"
        )),
        vec![]
    );
    assert_eq!(codes(&store("\"rediss://h:6380\"", "tls")), vec![]);
    let c = compile(&store("\"redis://h:6379\"", "tls { ca \"files/tls.crt\" }"));
    let d = only(&c, Code::GW0106);
    assert_eq!(d.len(), 1, "{:?}", c.diagnostics);
    assert!(primary_text(&c, d[0]).starts_with("tls"), "{}", primary_text(&c, d[0]));
    let c = compile(&store("\"rediss://h:6380\"", "tls { server_name \"redis.internal\" }"));
    let d = only(&c, Code::GW0106);
    assert_eq!(d.len(), 1, "{:?}", c.diagnostics);
    assert_eq!(primary_text(&c, d[0]), "\"redis.internal\"");
    // From the environment: read, then checked like a written one.
    let host = host()
        .var("PLAIN_URL", "redis://:pw@h:6379")
        .var("BAD_URL", "http://pw@h");
    let c = compile_text(&host, "app.gw", &store("env(\"PLAIN_URL\")", "tls"));
    assert_eq!(only(&c, Code::GW0106).len(), 1, "{:?}", c.diagnostics);
    let c = compile_text(&host, "app.gw", &store("env(\"BAD_URL\")", "timeout 1s"));
    let d = only(&c, Code::GW0003);
    assert_eq!(d.len(), 1, "{:?}", c.diagnostics);
    assert_eq!(primary_text(&c, d[0]), "env(\"BAD_URL\")");
    assert!(!d[0].message.contains("pw@"), "{}", d[0].message);
    let c = compile_text(&host, "app.gw", &store("env(\"UNSET_URL\")", "timeout 1s"));
    assert_eq!(only(&c, Code::GW0404).len(), 1, "{:?}", c.diagnostics);
}
