//! Workloads for the router benchmarks (`benches/router.rs`): a realistic
//! route set of any size as `.gw` text — literals, parameters, a literal
//! beside a parameter, catch-alls, several methods per path, and a fifth of
//! the routes on their own host — plus requests that hit every route and some
//! that miss, and the same paths in `matchit`'s syntax for comparison.

use gw_compiler::ast::Method;

/// One route of the workload.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub method: Option<Method>,
    pub host: Option<String>,
    /// `/api/res3/{id}`; the same text is valid for matchit.
    pub path: String,
}

/// One request of the workload.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub host: String,
    pub path: String,
}

/// `n` routes: eight per resource (list, create, get, update, delete, a
/// nested item, a search literal beside `{id}`, a static catch-all); every
/// fifth route is on one of 50 hosts.
pub fn routes(n: usize) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| {
            let r = format!("res{}", i / 8);
            let (method, path) = match i % 8 {
                0 => (Some(Method::Get), format!("/api/{r}")),
                1 => (Some(Method::Post), format!("/api/{r}")),
                2 => (Some(Method::Get), format!("/api/{r}/{{id}}")),
                3 => (Some(Method::Put), format!("/api/{r}/{{id}}")),
                4 => (Some(Method::Delete), format!("/api/{r}/{{id}}")),
                5 => (Some(Method::Get), format!("/api/{r}/{{id}}/items/{{item}}")),
                6 => (Some(Method::Get), format!("/api/{r}/search")),
                _ => (None, format!("/static/{r}/{{*path}}")),
            };
            let host = (i % 5 == 0).then(|| format!("h{}.example.com", (i / 5) % 50));
            RouteSpec { method, host, path }
        })
        .collect()
}

/// The routes as a `.gw` configuration (one upstream per 100 routes).
pub fn config(routes: &[RouteSpec]) -> String {
    let upstreams = routes.len().div_ceil(100).max(1);
    let mut text = String::from("listen 127.0.0.1:8080\n");
    for u in 0..upstreams {
        text.push_str(&format!("upstream u{u} {{ server 127.0.0.1:{} }}\n", 10_000 + u));
    }
    for (i, r) in routes.iter().enumerate() {
        let method = r.method.map_or(String::new(), |m| format!("{} ", m.as_str()));
        let host = r.host.as_ref().map_or(String::new(), |h| format!(" host \"{h}\""));
        text.push_str(&format!("route {method}{}{host} -> u{}\n", r.path, i / 100));
    }
    text
}

/// A concrete request path for a route pattern.
fn fill(pattern: &str, k: usize) -> String {
    pattern
        .replace("{id}", &format!("{}", 1000 + k))
        .replace("{item}", "7")
        .replace("{*path}", "css/site.css")
}

/// `count` requests spread over the routes (every route's path, with its
/// host when it has one, else `api.example.com`), one in ten a miss (404).
pub fn requests(routes: &[RouteSpec], count: usize) -> Vec<Request> {
    let step = (routes.len() / count.max(1)).max(1);
    (0..count)
        .map(|k| {
            if k % 10 == 9 {
                return Request {
                    method: Method::Get,
                    host: "api.example.com".into(),
                    path: format!("/api/nothing{k}/here"),
                };
            }
            let r = &routes[(k * step + k / 7) % routes.len()];
            Request {
                method: r.method.unwrap_or(Method::Get),
                host: r.host.clone().unwrap_or_else(|| "api.example.com".into()),
                path: fill(&r.path, k),
            }
        })
        .collect()
}

/// The distinct paths of the routes, for routers without methods or hosts.
pub fn distinct_paths(routes: &[RouteSpec]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    routes
        .iter()
        .filter(|r| seen.insert(r.path.clone()))
        .map(|r| r.path.clone())
        .collect()
}
