//! Why a request takes the route it takes (`gwc route`): the winner comes
//! from [`router::lookup`](super::router::lookup) — the same function the
//! runtime calls — and every other route whose path pattern matches the
//! request is listed with the reason it lost: another host, a method it does
//! not accept, a condition that does not hold, or lower precedence
//! (hostless, a less specific segment at position N, every method against
//! a named one, no condition against a route whose conditions hold).

use crate::condition::{Facts, Given};
use crate::router::{lookup_with, normalize_path, parse_pattern, BadPath, Lookup, MethodSet, Seg};
use crate::words::Method;
use crate::{Plan, Route};

/// The router's answer, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Matched {
        route: usize,
        params: Vec<(String, String)>,
    },
    NotFound,
    MethodNotAllowed {
        allow: MethodSet,
    },
    BadRequest(BadPath),
}

/// A route whose path matched but that does not take the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub route: usize,
    pub reason: Reason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The route names another host.
    Host { host: String },
    /// The route does not accept the method; `accepts` is what it takes
    /// (`GET` routes take `HEAD` unless a route names `HEAD`).
    Method { accepts: MethodSet },
    /// The winner names the request's host; this route is hostless.
    Hostless,
    /// At 1-based segment `position` the winner has a more specific segment.
    LessSpecific {
        position: usize,
        this: String,
        winner: String,
    },
    /// Same host and shape, but the winner names the method and this route
    /// matches every method.
    EveryMethod,
    /// One of the route's conditions does not hold for the request.
    Condition { condition: String },
    /// Same host, shape and methods: the winner's conditions hold, and a
    /// route with conditions is tried before the one without.
    Unconditioned,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Host { host } => write!(f, "host: it answers only host `{host}`"),
            Reason::Method { accepts } => write!(f, "method: it accepts only {accepts}"),
            Reason::Hostless => f.write_str("host: the winner names the request's host and this route names none"),
            Reason::LessSpecific { position, this, winner } => {
                let what = |s: &str| {
                    if s.is_empty() {
                        "nothing (the path ends)".to_string()
                    } else if s.starts_with("{*") {
                        format!("catch-all `{s}`")
                    } else if s.starts_with('{') {
                        format!("parameter `{s}`")
                    } else {
                        format!("literal `{s}`")
                    }
                };
                write!(
                    f,
                    "less specific at segment {position}: {} where the winner has {}",
                    what(this),
                    what(winner)
                )
            }
            Reason::EveryMethod => f.write_str("method: it matches every method and the winner names this one"),
            Reason::Condition { condition } => write!(f, "condition: `{condition}` does not hold"),
            Reason::Unconditioned => {
                f.write_str("condition: the winner's conditions hold, and it is tried before this route without any")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub outcome: Outcome,
    /// In file order.
    pub candidates: Vec<Candidate>,
}

/// Explains how `method host path` is routed (`host` may be `""`), for a
/// request with no headers, cookies or address; a query string in `path`
/// is the request's.
pub fn explain(plan: &Plan, method: Method, host: &str, path: &str) -> Explanation {
    let (path, query) = Given::split_target(path);
    let given = Given {
        query: query.map(str::to_string),
        ..Given::default()
    };
    explain_with(plan, method, host, path, &given)
}

/// [`explain`] for a request whose headers, query, cookies and address
/// `facts` gives; `path` without its query.
pub fn explain_with(plan: &Plan, method: Method, host: &str, path: &str, facts: &dyn Facts) -> Explanation {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let outcome = match lookup_with(plan, Some(method), host, path, facts) {
        Lookup::Matched { route, params } => Outcome::Matched {
            route,
            params: params.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        },
        Lookup::NotFound => Outcome::NotFound,
        Lookup::MethodNotAllowed { allow } => Outcome::MethodNotAllowed { allow },
        Lookup::BadRequest(e) => Outcome::BadRequest(e),
    };
    let Ok(normal) = normalize_path(path) else {
        return Explanation {
            outcome,
            candidates: Vec::new(),
        };
    };
    let request_segs: Vec<&str> = normal[1..].split('/').collect();
    let request_host = host_name(host);
    let shapes: Vec<Option<Vec<Seg>>> = plan.routes.iter().map(|r| parse_pattern(&r.path)).collect();
    let winner = match &outcome {
        Outcome::Matched { route, .. } => Some(*route),
        _ => None,
    };
    let mut candidates = Vec::new();
    for (i, route) in plan.routes.iter().enumerate() {
        if Some(i) == winner {
            continue;
        }
        let Some(segs) = &shapes[i] else { continue };
        if !path_matches(segs, &request_segs) {
            continue;
        }
        let reason = if let Some(h) = route.host.as_deref().filter(|h| *h != request_host) {
            Reason::Host { host: h.to_string() }
        } else if !accepts(plan, &shapes, i, method) {
            Reason::Method {
                accepts: effective_methods(plan, &shapes, i),
            }
        } else if let Some(c) = route.when.iter().find(|c| !c.holds(facts)) {
            Reason::Condition {
                condition: c.to_string(),
            }
        } else if let Some(w) = winner {
            lost_to(route, &plan.routes[w], segs, shapes[w].as_deref().unwrap_or(&[]))
        } else {
            continue;
        };
        candidates.push(Candidate { route: i, reason });
    }
    Explanation { outcome, candidates }
}

fn host_name(host: &str) -> String {
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |e| &host[..=e])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    crate::router::canonical_host(name)
}

/// Does the pattern match the request's segments?
pub fn path_matches(segs: &[Seg], request: &[&str]) -> bool {
    for (i, s) in segs.iter().enumerate() {
        match s {
            Seg::CatchAll => return request.len() >= i,
            Seg::Literal(l) => {
                if request.get(i) != Some(&l.as_str()) {
                    return false;
                }
            }
            Seg::Param => {
                if request.get(i).is_none_or(|s| s.is_empty()) {
                    return false;
                }
            }
        }
    }
    segs.len() == request.len()
}

/// The methods a route takes: its own, plus `HEAD` for a `GET` route when
/// no route of the same host and shape names `HEAD`. Every method: `None`.
fn effective_methods(plan: &Plan, shapes: &[Option<Vec<Seg>>], i: usize) -> MethodSet {
    let route = &plan.routes[i];
    let Some(mut set) = route.methods else {
        return MethodSet::of(Method::ALL);
    };
    if set.contains(Method::Get) && !set.contains(Method::Head) {
        let head_named = plan.routes.iter().enumerate().any(|(j, r)| {
            j != i
                && r.host == route.host
                && shapes[j] == shapes[i]
                && r.methods.is_some_and(|m| m.contains(Method::Head))
        });
        if !head_named {
            set.insert(Method::Head);
        }
    }
    set
}

fn accepts(plan: &Plan, shapes: &[Option<Vec<Seg>>], i: usize, method: Method) -> bool {
    effective_methods(plan, shapes, i).contains(method)
}

fn rank(s: Option<&Seg>) -> u8 {
    match s {
        Some(Seg::Literal(_)) => 3,
        Some(Seg::Param) => 2,
        Some(Seg::CatchAll) => 0,
        // The pattern ended: only a catch-all matching zero segments
        // competes here, and it is less specific.
        None => 1,
    }
}

fn lost_to(route: &Route, winner: &Route, segs: &[Seg], winner_segs: &[Seg]) -> Reason {
    if winner.host.is_some() && route.host.is_none() {
        return Reason::Hostless;
    }
    let labels: Vec<&str> = route.path[1..].split('/').collect();
    let winner_labels: Vec<&str> = winner.path[1..].split('/').collect();
    for pos in 0..segs.len().max(winner_segs.len()) {
        if rank(segs.get(pos)) != rank(winner_segs.get(pos)) {
            return Reason::LessSpecific {
                position: pos + 1,
                this: labels.get(pos).copied().unwrap_or("").to_string(),
                winner: winner_labels.get(pos).copied().unwrap_or("").to_string(),
            };
        }
    }
    if route.methods.is_some() == winner.methods.is_some() && !winner.when.is_empty() && route.when.is_empty() {
        return Reason::Unconditioned;
    }
    Reason::EveryMethod
}
