//! `gwc route FILE METHOD PATH [host NAME]`: which route a request takes and
//! why — the winner (with file:line) and its captured parameters, the
//! policies it passes in order, the upstream and its strategy, and every
//! other route whose path matched with the reason it lost (another host, a
//! method it does not take, a less specific segment at position N, every
//! method against a named one, a condition that does not hold). The request
//! may carry headers, cookies, an address and a query string, which route
//! conditions read and a sticky split's key comes from; a split says the
//! side the request takes. The answer comes from the same lookup the
//! runtime uses.

use super::plan::compile_plan_despite_failing_tests;
use super::EXIT_USAGE;
use gw_compiler::ast::Method;
use gw_compiler::plan::condition::{Facts, Given};
use gw_compiler::plan::explain::{explain_with, Explanation, Outcome};
use gw_compiler::plan::words::Reference;
use gw_compiler::plan::{Plan, Route, Target};
use std::io::{self, Write};
use std::process::ExitCode;

/// Show the route a request takes, its policies, and the routes that lost.
#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// The `.gw` file (compiled with the files it imports).
    #[arg(value_name = "FILE")]
    file: String,
    /// The request method: GET, POST, ...
    #[arg(value_name = "METHOD")]
    method: String,
    /// The request path, with its query string if any (route conditions read it).
    #[arg(value_name = "PATH")]
    path: String,
    /// `host NAME`: the request's host.
    #[arg(value_name = "host NAME", num_args = 0..=2)]
    rest: Vec<String>,
    /// The request's host (same as `host NAME`).
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// A header the request carries, `NAME: VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A cookie the request carries, `NAME=VALUE` (repeatable).
    #[arg(long = "cookie", value_name = "NAME=VALUE")]
    cookies: Vec<String>,
    /// The address the request comes from.
    #[arg(long, value_name = "ADDR")]
    client_ip: Option<std::net::IpAddr>,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The winner, its policies in order, and the routes that lost.
    Text,
    /// `{"request","status","route","params","allow","pipeline","candidates"}`;
    /// `status` is the gateway's own answer, `null` when the request goes upstream.
    Json,
}

pub fn run(args: RouteArgs) -> ExitCode {
    let Some(method) = Method::parse(&args.method.to_ascii_uppercase()) else {
        eprintln!(
            "error: `{}` is not a method: use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT or TRACE",
            args.method
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let host = match (args.rest.as_slice(), args.host) {
        ([], h) => h.unwrap_or_default(),
        ([kw, name], None) if kw == "host" => name.clone(),
        _ => {
            eprintln!("error: after the path, write `host NAME` (or use `--host NAME`)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (plan, _) = match compile_plan_despite_failing_tests(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (path, query) = Given::split_target(&args.path);
    let mut given = Given {
        query: query.map(str::to_string),
        client_ip: args.client_ip,
        ..Given::default()
    };
    for h in &args.headers {
        let Some((n, v)) = h.split_once(':') else {
            eprintln!("error: write a header as `NAME: VALUE`, found `{h}`");
            return ExitCode::from(EXIT_USAGE);
        };
        given
            .headers
            .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    for c in &args.cookies {
        let Some((n, v)) = c.split_once('=') else {
            eprintln!("error: write a cookie as `NAME=VALUE`, found `{c}`");
            return ExitCode::from(EXIT_USAGE);
        };
        given.cookies.push((n.trim().to_string(), v.trim().to_string()));
    }
    let e = explain_with(&plan, method, &host, path, &given);
    if args.format == Format::Json {
        let doc = json(&plan, &e, method, &host, &args.path);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let mut out = String::new();
    let request = if host.is_empty() {
        format!("{} {}", method.as_str(), args.path)
    } else {
        format!("{} {} host {host}", method.as_str(), args.path)
    };
    match &e.outcome {
        Outcome::Matched { route, params } => {
            let r = &plan.routes[*route];
            out.push_str(&format!("{request}\n  -> route `{}` ({})\n", r.head(), r.origin));
            if !params.is_empty() {
                let list: Vec<String> = params.iter().map(|(n, v)| format!("param.{n} = {v:?}")).collect();
                out.push_str(&format!("  params: {}\n", list.join(", ")));
            }
            out.push_str("  in order:\n");
            for (i, line) in plan.pipeline(r).iter().enumerate() {
                out.push_str(&format!("    {}. {line}\n", i + 1));
            }
            if let Some(side) = split_side(&plan, r, params, &given) {
                out.push_str(&format!("  split: {side}\n"));
            }
        }
        Outcome::NotFound => out.push_str(&format!("{request}\n  -> 404: no route matches\n")),
        Outcome::MethodNotAllowed { allow } => out.push_str(&format!(
            "{request}\n  -> 405: the routes whose path matched allow only {allow} (Allow: {allow})\n"
        )),
        Outcome::BadRequest(why) => out.push_str(&format!("{request}\n  -> 400: {why}\n")),
    }
    if e.candidates.is_empty() {
        if matches!(e.outcome, Outcome::Matched { .. }) {
            out.push_str("no other route matches this path\n");
        }
    } else {
        let what = if matches!(e.outcome, Outcome::Matched { .. }) {
            "other routes whose path matched, and why they lost:"
        } else {
            "routes whose path matched, and why they do not take it:"
        };
        out.push_str(&format!("{what}\n"));
        for c in &e.candidates {
            let r = &plan.routes[c.route];
            out.push_str(&format!("  route `{}` ({})\n    {}\n", r.head(), r.origin, c.reason));
        }
    }
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    ExitCode::SUCCESS
}

/// Which side of a split the request takes, in words: `checkout-v2 (for
/// cookie.session = "abc")`, or `at random: checkout-v1 90%, ...`.
fn split_side(plan: &Plan, r: &Route, params: &[(String, String)], given: &Given) -> Option<String> {
    let Target::Split(sp) = &r.target else { return None };
    let name = |i: usize| plan.upstreams.get(i).map_or("?", |u| u.name.as_str());
    let key = sp.sticky.as_ref().and_then(|k| {
        let v = match k {
            Reference::Param(p) => params.iter().find(|(n, _)| n == p).map(|(_, v)| v.clone()),
            k => given.value(k).map(|v| v.into_owned()),
        };
        v.map(|v| (k, v))
    });
    Some(match key {
        Some((k, v)) => {
            let side = sp.sides.get(sp.side_for_key(&v))?;
            format!("{} (for {k} = {v:?})", name(side.upstream))
        }
        None => {
            let sides: Vec<String> = sp
                .sides
                .iter()
                .map(|s| format!("{} {}%", name(s.upstream), s.weight))
                .collect();
            let why = match &sp.sticky {
                Some(k) => format!(" (the request has no {k})"),
                None => String::new(),
            };
            format!("at random{why}: {}", sides.join(", "))
        }
    })
}

/// The explanation as one JSON object, for tools.
fn json(plan: &Plan, e: &Explanation, method: Method, host: &str, path: &str) -> serde_json::Value {
    let route_json = |i: usize| {
        plan.routes.get(i).map(|r| {
            serde_json::json!({
                "route": r.head(),
                "target": plan.target_name(r),
                "file": r.origin.file,
                "line": r.origin.line,
            })
        })
    };
    let (status, route, params, allow, pipeline) = match &e.outcome {
        Outcome::Matched { route, params } => {
            // The gateway's own answer; `null` when the request goes upstream.
            let status = match plan.routes.get(*route).map(|r| &r.target) {
                Some(Target::Respond { status, .. }) | Some(Target::Redirect { status, .. }) => Some(*status),
                _ => None,
            };
            let params: serde_json::Map<String, serde_json::Value> = params
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let pipeline = plan.routes.get(*route).map(|r| plan.pipeline(r)).unwrap_or_default();
            (status, route_json(*route), Some(params), None, pipeline)
        }
        Outcome::NotFound => (Some(404), None, None, None, Vec::new()),
        Outcome::MethodNotAllowed { allow } => (
            Some(405),
            None,
            None,
            Some(allow.iter().map(Method::as_str).collect::<Vec<_>>()),
            Vec::new(),
        ),
        Outcome::BadRequest(_) => (Some(400), None, None, None, Vec::new()),
    };
    let candidates: Vec<serde_json::Value> = e
        .candidates
        .iter()
        .map(|c| {
            let mut v = route_json(c.route).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("reason".into(), serde_json::Value::String(c.reason.to_string()));
            }
            v
        })
        .collect();
    serde_json::json!({
        "request": { "method": method.as_str(), "host": host, "path": path },
        "status": status,
        "route": route,
        "params": params,
        "allow": allow,
        "pipeline": pipeline,
        "candidates": candidates,
    })
}
