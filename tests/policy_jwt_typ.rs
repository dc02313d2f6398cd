//! JWT explicit typing (RFC 8725 §3.11, RFC 9068 §4): a token whose `typ`
//! header names another kind of JWT — a logout token, a security event
//! token, an ID token type the operator did not ask for — is refused with
//! the same 401 as any other bad token. By default: no `typ`, `JWT` and
//! `at+jwt`, case-insensitive, with or without `application/`; `types`
//! sets the list. And what the checker says about `types`.

use crate::policy::{assert_unauthorized, bearer, claims, gateway, path, read, AUD, ISS};
use gw_compiler::host::MemoryHost;
use gw_compiler::{compile_text, Code};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// An HS256 token of the tests' shared secret with header `typ` (or none).
fn typed(typ: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = typ.map(str::to_string);
    let key = EncodingKey::from_secret(&read("hs.secret")).expect("the shared secret");
    jsonwebtoken::encode(&header, &claims(json!({})), &key).expect("a token")
}

fn auth(name: &str, types: &str) -> String {
    format!(
        "auth {name} jwt {{ issuer \"{ISS}\" audience \"{AUD}\" algorithms HS256 secret file(\"{}\") {types} }}\n",
        path("hs.secret")
    )
}

#[tokio::test]
async fn other_kinds_of_jwt_are_refused_by_default() {
    let text = format!(
        "listen 127.0.0.1:0\nupstream app {{ server {{up}} }}\nroute /r -> app {{ auth users }}\n{}",
        auth("users", "")
    );
    let (live, _up) = gateway(&text).await;
    for typ in [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt"),
        Some("AT+JWT"),
        Some("application/at+jwt"),
        Some("Application/JWT"),
    ] {
        let got = bearer(&live, "/r", &typed(typ)).await;
        assert_eq!(got.status, 200, "typ {typ:?} is an access token: {got:?}");
    }
    for typ in [
        "logout+jwt",   // OpenID Connect back-channel logout token
        "secevent+jwt", // security event token (RFC 8417)
        "application/secevent+jwt",
        "id_token+jwt",
        "dpop+jwt", // a DPoP proof (RFC 9449) is no access token
        "",
        "application/at+jwt/x",
        "at+jwt ",
    ] {
        let got = bearer(&live, "/r", &typed(Some(typ))).await;
        assert_unauthorized(&got, &format!("typ {typ:?}"));
    }
}

#[tokio::test]
async fn types_sets_the_accepted_list() {
    let text = format!(
        "listen 127.0.0.1:0\nupstream app {{ server {{up}} }}\n\
         route /strict -> app {{ auth strict }}\nroute /oidc -> app {{ auth oidc }}\n{}{}",
        // RFC 9068: only `at+jwt`; a token without `typ` is refused too.
        auth("strict", "types \"application/at+jwt\""),
        // An operator who takes ID-token-style tokens of a given type, and untyped ones.
        auth("oidc", "types \"id_token+jwt\", none"),
    );
    let (live, _up) = gateway(&text).await;
    let cases = [
        ("/strict", Some("at+jwt"), 200),
        ("/strict", Some("Application/AT+JWT"), 200),
        ("/strict", Some("JWT"), 401),
        ("/strict", None, 401),
        ("/oidc", Some("id_token+jwt"), 200),
        ("/oidc", Some("application/id_token+jwt"), 200),
        ("/oidc", None, 200),
        ("/oidc", Some("at+jwt"), 401),
        ("/oidc", Some("logout+jwt"), 401),
    ];
    for (route, typ, status) in cases {
        let got = bearer(&live, route, &typed(typ)).await;
        if status == 401 {
            assert_unauthorized(&got, &format!("{route} typ {typ:?}"));
        } else {
            assert_eq!(got.status, status, "{route} typ {typ:?}: {got:?}");
        }
    }
    // A refused token is refused again from the cache's side too: the
    // verified-token cache never holds it.
    let token = typed(Some("logout+jwt"));
    assert_unauthorized(&bearer(&live, "/oidc", &token).await, "again");
}

fn check(types: &str) -> Vec<(Code, String)> {
    let host = MemoryHost::new().var("S", "a-long-random-secret-for-tests");
    let text = format!(
        "listen 127.0.0.1:8080\nupstream app {{ server 127.0.0.1:9 }}\nroute /r -> app {{ auth users }}\n\
         auth users jwt {{ issuer \"i\" audience \"a\" algorithms HS256 secret env(\"S\") {types} }}\n"
    );
    compile_text(&host, "app.gw", &text)
        .diagnostics
        .iter()
        .map(|d| (d.code, d.message.clone()))
        .collect()
}

#[test]
fn types_are_checked() {
    assert_eq!(check("types \"at+jwt\", \"JWT\", none"), vec![]);
    assert_eq!(check("types \"application/secevent+jwt\""), vec![]);
    assert_eq!(
        check("types \"at jwt\""),
        vec![(Code::GW0003, "`at jwt` is not a token type".into())]
    );
    assert_eq!(
        check("types at_jwt"),
        vec![(
            Code::GW0106,
            "expected a token type such as `\"at+jwt\"`, or `none`, found `at_jwt`".into()
        )]
    );
    assert_eq!(
        check("types \"at+jwt\", \"application/AT+JWT\""),
        vec![(Code::GW0105, "token type `at+jwt` listed twice in auth `users`".into())]
    );
    assert_eq!(
        check("types none types \"jwt\"").first().map(|d| d.0),
        Some(Code::GW0105),
        "the attribute given twice"
    );
    // Not an attribute of an API key auth.
    let text = "upstream app { server 127.0.0.1:9 }\nroute /r -> app { auth k }\n\
                auth k api_key { keys file(\"k.txt\") types \"at+jwt\" }\n";
    let host = MemoryHost::new().file("k.txt", "k-123\n");
    let codes: Vec<Code> = compile_text(&host, "app.gw", text)
        .diagnostics
        .iter()
        .map(|d| d.code)
        .collect();
    assert_eq!(codes, vec![Code::GW0103]);
}

#[test]
fn the_plan_shows_a_list_that_is_not_the_default() {
    let host = MemoryHost::new().var("S", "a-long-random-secret-for-tests");
    let text = "upstream app { server 127.0.0.1:9 }\nroute /r -> app { auth a }\nroute /s -> app { auth b }\n\
                auth a jwt { issuer \"i\" audience \"a\" algorithms HS256 secret env(\"S\") types \"Application/AT+JWT\" }\n\
                auth b jwt { issuer \"i\" audience \"a\" algorithms HS256 secret env(\"S\") }\n";
    let c = compile_text(&host, "app.gw", text);
    let plan = c.plan.expect("a plan");
    let printed = plan.render();
    assert!(printed.contains("types \"at+jwt\"\n"), "{printed}");
    assert_eq!(printed.matches(" types ").count(), 1, "{printed}");
    // A plan built before `types` existed reads as the default list.
    let mut json: serde_json::Value = serde_json::from_str(&plan.to_json()).expect("JSON");
    for auth in json["auths"].as_array_mut().expect("auths") {
        if let Some(jwt) = auth["kind"]["jwt"].as_object_mut() {
            jwt.remove("types");
        }
    }
    let old = gw_compiler::plan::Plan::from_json(&json.to_string()).expect("an older plan loads");
    for auth in &old.auths {
        if let gw_compiler::plan::AuthKind::Jwt(j) = &auth.kind {
            assert!(j.types.accepts(None) && j.types.accepts(Some("JWT")) && !j.types.accepts(Some("logout+jwt")));
        }
    }
}
