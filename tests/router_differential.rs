//! The router against a deliberately naive reference. Thousands of random
//! route sets (literals from a small alphabet, `{param}`, `{*rest}`, method
//! lists, a few hosts) are compiled from `.gw` text by the real compiler, and
//! random requests are answered both by `plan::lookup` (the segment tree with
//! backtracking) and by [`reference`], written directly from LANGUAGE.md:
//! take every route whose host, path and method match, rank them by
//! specificity (host; then segment by segment literal > param > catch-all,
//! with the end of a pattern above a catch-all matching zero segments; then
//! named methods over every method) and pick the maximum; else 405 with the
//! methods of the routes whose path matched; else 404. Route sets with two
//! routes of equal precedence (GW0201) are thinned out before compiling.
//!
//! Some routes carry a condition (`when header.x-v == "1"` or `"2"`) and
//! requests may carry that header: a route whose condition does not hold
//! does not match, a conditioned route ranks above the unconditioned one of
//! the same host, shape and method tier, and a request whose only matching
//! routes failed their conditions gets 404 rather than 405. Two routes
//! with the same condition on the same host, shape and methods collide
//! (GW0206) and are thinned out too.

use gw_compiler::ast::Method;
use gw_compiler::compile_text;
use gw_compiler::host::MemoryHost;
use gw_compiler::plan::condition::Given;
use gw_compiler::plan::router::lookup_with;
use gw_compiler::plan::{Lookup, Plan};
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(&'static str),
    Param,
    CatchAll,
}

#[derive(Clone, Debug)]
struct R {
    methods: Option<BTreeSet<Method>>,
    host: Option<&'static str>,
    segs: Vec<Seg>,
    /// `when header.x-v == "VALUE"`.
    cond: Option<&'static str>,
}

impl R {
    fn text(&self, i: usize) -> String {
        let methods = match &self.methods {
            Some(ms) => format!("{} ", ms.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")),
            None => String::new(),
        };
        let path: Vec<String> = self
            .segs
            .iter()
            .enumerate()
            .map(|(n, s)| match s {
                Seg::Lit(l) => l.to_string(),
                Seg::Param => format!("{{p{n}}}"),
                Seg::CatchAll => "{*rest}".to_string(),
            })
            .collect();
        let host = self.host.map_or(String::new(), |h| format!(" host \"{h}\""));
        let when = self
            .cond
            .map_or(String::new(), |v| format!(" when header.x-v == \"{v}\""));
        format!("route {methods}/{}{host}{when} -> u{i}\n", path.join("/"))
    }

    /// Same host, path shape and condition, and a method in common (or
    /// both every method).
    fn collides(&self, other: &R) -> bool {
        self.host == other.host
            && self.segs == other.segs
            && self.cond == other.cond
            && match (&self.methods, &other.methods) {
                (None, None) => true,
                (Some(a), Some(b)) => !a.is_disjoint(b),
                _ => false,
            }
    }
}

#[derive(Clone, Debug)]
struct Req {
    method: Method,
    host: &'static str,
    path: String,
    /// The `x-v` header.
    xv: Option<&'static str>,
}

const METHODS: [Method; 4] = [Method::Get, Method::Head, Method::Post, Method::Delete];

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        5 => prop::sample::select(vec!["a", "b", "c", ""]).prop_map(Seg::Lit),
        2 => Just(Seg::Param),
    ]
}

fn route() -> impl Strategy<Value = R> {
    (
        prop::option::weighted(0.6, prop::sample::subsequence(METHODS.to_vec(), 1..=2)),
        prop::option::weighted(0.25, prop::sample::select(vec!["h1.example", "h2.example"])),
        prop::collection::vec(seg(), 1..=3),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.3, prop::sample::select(vec!["1", "2"])),
    )
        .prop_map(|(methods, host, mut segs, catch_all, cond)| {
            if catch_all {
                // `/{*rest}` or `/x/{*rest}`: replace the last segment.
                segs.pop();
                segs.push(Seg::CatchAll);
            }
            R {
                methods: methods.map(|m| m.into_iter().collect()),
                host,
                segs,
                cond,
            }
        })
}

/// Drops every route that collides with an earlier one.
fn without_collisions(routes: Vec<R>) -> Vec<R> {
    let mut kept: Vec<R> = Vec::new();
    for r in routes {
        if !kept.iter().any(|k| k.collides(&r)) {
            kept.push(r);
        }
    }
    kept
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec![
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Delete,
        ]),
        prop::sample::select(vec!["", "h1.example", "H2.Example:8080", "h3.example"]),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "", "x", "%61"]), 1..=4),
        prop::option::of(prop::sample::select(vec!["1", "2", "3"])),
    )
        .prop_map(|(method, host, segs, xv)| Req {
            method,
            host,
            path: format!("/{}", segs.join("/")),
            xv,
        })
}

/// The answer in comparable form.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Route(usize, Vec<String>),
    NotFound,
    NotAllowed(BTreeSet<Method>),
}

// ------------------------------------------------------------------ the reference

fn request_host(host: &str) -> String {
    host.split(':').next().unwrap_or("").to_ascii_lowercase()
}

/// The request's segments, `%61` decoded (the only escape generated).
fn request_segs(path: &str) -> Vec<String> {
    path[1..].split('/').map(|s| s.replace("%61", "a")).collect()
}

fn path_matches(segs: &[Seg], req: &[String]) -> bool {
    for (i, s) in segs.iter().enumerate() {
        match s {
            Seg::CatchAll => return true,
            Seg::Lit(l) => {
                if req.get(i).map(String::as_str) != Some(*l) {
                    return false;
                }
            }
            Seg::Param => {
                if req.get(i).is_none_or(|s| s.is_empty()) {
                    return false;
                }
            }
        }
    }
    segs.len() == req.len()
}

/// The methods a route takes; `GET` adds `HEAD` unless a route with the same
/// host and path shape names `HEAD`. `None`: every method.
fn methods_of(routes: &[R], i: usize) -> Option<BTreeSet<Method>> {
    let r = &routes[i];
    let mut set = r.methods.clone()?;
    let head_named = routes
        .iter()
        .any(|o| o.host == r.host && o.segs == r.segs && o.methods.as_ref().is_some_and(|m| m.contains(&Method::Head)));
    if set.contains(&Method::Get) && !head_named {
        set.insert(Method::Head);
    }
    Some(set)
}

/// Specificity, compared lexicographically: host first, then per position
/// literal 3 > param 2 > end of pattern 1 > catch-all 0, then named methods,
/// then a condition.
fn specificity(r: &R) -> (bool, Vec<u8>, bool, bool) {
    let mut ranks: Vec<u8> = r
        .segs
        .iter()
        .map(|s| match s {
            Seg::Lit(_) => 3,
            Seg::Param => 2,
            Seg::CatchAll => 0,
        })
        .collect();
    ranks.resize(8, 1);
    (r.host.is_some(), ranks, r.methods.is_some(), r.cond.is_some())
}

fn reference(routes: &[R], req: &Req) -> Answer {
    let host = request_host(req.host);
    let segs = request_segs(&req.path);
    let path_matched: Vec<usize> = (0..routes.len())
        .filter(|&i| routes[i].host.is_none_or(|h| h == host))
        .filter(|&i| path_matches(&routes[i].segs, &segs))
        .collect();
    let method_matched: Vec<usize> = path_matched
        .iter()
        .copied()
        .filter(|&i| methods_of(routes, i).is_none_or(|m| m.contains(&req.method)))
        .collect();
    let matching: Vec<usize> = method_matched
        .iter()
        .copied()
        .filter(|&i| routes[i].cond.is_none_or(|v| req.xv == Some(v)))
        .collect();
    if let Some(&best) = matching.iter().max_by_key(|&&i| specificity(&routes[i])) {
        let ties = matching
            .iter()
            .filter(|&&i| specificity(&routes[i]) == specificity(&routes[best]))
            .count();
        assert_eq!(
            ties, 1,
            "equal precedence among {matching:?}: the collision filter missed one"
        );
        return Answer::Route(best, params(&routes[best], &segs));
    }
    if path_matched.is_empty() || !method_matched.is_empty() {
        // Nothing there, or routes for the method whose conditions fail.
        return Answer::NotFound;
    }
    let mut allow = BTreeSet::new();
    for i in path_matched {
        allow.extend(methods_of(routes, i).unwrap_or_default());
    }
    Answer::NotAllowed(allow)
}

fn params(r: &R, segs: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in r.segs.iter().enumerate() {
        match s {
            Seg::Param => out.push(segs[i].clone()),
            Seg::CatchAll => out.push(segs.get(i..).map(|rest| rest.join("/")).unwrap_or_default()),
            Seg::Lit(_) => {}
        }
    }
    out
}

// ------------------------------------------------------------------ the plan

fn compile(routes: &[R]) -> Plan {
    let mut text = String::from("listen :8080\n");
    for i in 0..routes.len() {
        text.push_str(&format!("upstream u{i} {{ server 127.0.0.1:{} }}\n", 9000 + i));
    }
    for (i, r) in routes.iter().enumerate() {
        text.push_str(&r.text(i));
    }
    let c = compile_text(&MemoryHost::new(), "diff.gw", &text);
    let errors: Vec<String> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect();
    assert!(errors.is_empty(), "{text}\n{errors:#?}");
    c.plan.expect("a plan")
}

fn answer(plan: &Plan, req: &Req) -> Answer {
    let given = Given {
        headers: req.xv.iter().map(|v| ("x-v".to_string(), v.to_string())).collect(),
        ..Given::default()
    };
    match lookup_with(plan, Some(req.method), req.host, &req.path, &given) {
        Lookup::Matched { route, params } => Answer::Route(route, params.iter().map(|(_, v)| v.to_string()).collect()),
        Lookup::NotFound => Answer::NotFound,
        Lookup::MethodNotAllowed { allow } => Answer::NotAllowed(allow.iter().collect()),
        Lookup::BadRequest(e) => panic!("no generated path is bad, got {e}"),
    }
}

proptest! {
    #![proptest_config(crate::property::config(3000, "tests/regressions/router_differential.txt"))]

    #[test]
    fn router_agrees_with_the_naive_reference(
        routes in prop::collection::vec(route(), 1..=12).prop_map(without_collisions),
        requests in prop::collection::vec(request(), 1..=24),
    ) {
        let plan = compile(&routes);
        for req in &requests {
            let want = reference(&routes, req);
            let got = answer(&plan, req);
            prop_assert_eq!(&got, &want, "{:?} over {:#?}", req, routes.iter().enumerate().map(|(i, r)| r.text(i)).collect::<Vec<_>>());
        }
    }
}

/// Requests built from the routes themselves hit matching paths far more
/// often than random ones: every route is tried on paths made from its own
/// pattern, with each parameter filled and catch-alls given 0–2 segments.
#[test]
fn router_agrees_on_paths_made_from_the_patterns() {
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(crate::property::config(
        1000,
        "tests/regressions/router_differential.txt",
    ));
    let strategy = prop::collection::vec(route(), 2..=10).prop_map(without_collisions);
    let result = runner.run(&strategy, |routes| {
        let plan = compile(&routes);
        for r in &routes {
            for fill in 0..3 {
                let segs: Vec<String> = r
                    .segs
                    .iter()
                    .flat_map(|s| match s {
                        Seg::Lit(l) => vec![l.to_string()],
                        Seg::Param => vec!["v".to_string()],
                        Seg::CatchAll => (0..fill).map(|k| ["a", "", "z"][k % 3].to_string()).collect(),
                    })
                    .collect();
                let path = if segs.is_empty() {
                    "/".to_string()
                } else {
                    format!("/{}", segs.join("/"))
                };
                for method in [Method::Get, Method::Head, Method::Post, Method::Patch] {
                    for host in ["", r.host.unwrap_or("")] {
                        for xv in [None, r.cond] {
                            let req = Req {
                                method,
                                host,
                                path: path.clone(),
                                xv,
                            };
                            prop_assert_eq!(answer(&plan, &req), reference(&routes, &req), "{:?}", req);
                        }
                    }
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
