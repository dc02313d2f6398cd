//! Per-rule tests: each literal shape parses as the rule it is meant to be.

use super::*;

fn value_kind(src: &str) -> Rule {
    let mut pairs = parse_rule(Rule::value, src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let value = pairs.next().unwrap();
    let inner = value.into_inner().next().unwrap();
    assert_eq!(inner.as_str(), src, "the whole input is one token");
    inner.as_rule()
}

#[test]
fn literals_parse_as_their_kind() {
    for (src, rule) in [
        ("42", Rule::integer),
        ("1_000", Rule::integer),
        ("20%", Rule::percent),
        ("250ms", Rule::duration),
        ("5s", Rule::duration),
        ("1h30m", Rule::duration),
        ("16KiB", Rule::size),
        ("10MB", Rule::size),
        ("100/min", Rule::rate),
        ("10/s", Rule::rate),
        ("200..299", Rule::status_range),
        ("1.2.3.4:80", Rule::address),
        ("[::1]:8080", Rule::address),
        (":8080", Rule::address),
        ("orders.internal:80", Rule::address),
        ("/users/{id}/orders", Rule::path),
        ("/static/{*file}", Rule::path),
        ("claim.sub", Rule::reference),
        ("header.x-user-id", Rule::reference),
        ("claim.address.city", Rule::reference),
        ("client_ip", Rule::ident),
        ("round_robin", Rule::ident),
        ("env(\"JWT_SECRET\")", Rule::call),
        ("hash(claim.sub)", Rule::call),
        ("[\"a\", \"b\"]", Rule::list),
        ("\"{claim.sub}\"", Rule::string),
        ("\"no end", Rule::unterminated_string),
        ("5parsecs", Rule::bad),
    ] {
        assert_eq!(value_kind(src), rule, "{src}");
    }
}

#[test]
fn newlines_are_not_significant() {
    let src = "limit per_user { rate 100/min burst 20 key claim.sub }";
    let file = parse_file(src).unwrap().next().unwrap();
    let limit = file.into_inner().next().unwrap();
    assert_eq!(limit.as_rule(), Rule::limit);
    let settings: Vec<_> = limit
        .into_inner()
        .filter(|p| p.as_rule() == Rule::limit_setting)
        .map(|p| p.as_str().to_string())
        .collect();
    assert_eq!(settings, ["rate 100/min", "burst 20", "key claim.sub"]);
}

#[test]
fn keywords_may_be_names() {
    assert!(parse_file("upstream limit { server :1 }\nroute /x -> limit").is_ok());
}

#[test]
fn unknown_attribute_is_recovered_not_fatal() {
    let src = "limit l { rat 100/min burst 20 }";
    let file = parse_file(src).unwrap().next().unwrap();
    let limit = file.into_inner().next().unwrap();
    let rules: Vec<_> = limit.into_inner().map(|p| p.as_rule()).collect();
    assert!(rules.contains(&Rule::limit_unknown), "{rules:?}");
    assert!(rules.contains(&Rule::limit_setting), "{rules:?}");
}

#[test]
fn unbalanced_brace_is_an_error() {
    assert!(parse_file("upstream a { server :1").is_err());
}
