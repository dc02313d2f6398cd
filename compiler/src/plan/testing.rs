//! Running the `test` blocks embedded in a configuration against its plan,
//! with no network: each expectation is routed by
//! [`router::lookup`](super::router::lookup) — the function the runtime
//! uses — and each one that fails becomes a GW0601 diagnostic at the
//! expectation saying what happens instead. Tests check routing only: auth,
//! require and limits are not evaluated, so an authenticated route is still
//! reached. The headers, query, cookies and address an expectation gives
//! are what route conditions read, and a sticky split's key picks its side.

use super::condition::{Facts, Given};
use super::router::{lookup_with, Lookup};
use super::{Origin, Plan, Target};
use crate::ast::{Config, Expectation, Expected};
use crate::codes::Code;
use crate::diagnostic::{suggest, Diagnostic};

/// What running the tests found.
#[derive(Clone, Debug, Default)]
pub struct TestReport {
    /// Expectations run.
    pub expectations: usize,
    /// Expectations that failed (one diagnostic each).
    pub failures: Vec<Diagnostic>,
    /// Per route (plan order): whether some expectation's request reached it.
    pub reached: Vec<bool>,
    /// Per route (plan order): its head as written and where, for coverage
    /// reports (the plan itself is dropped when a test fails).
    pub routes: Vec<(String, Origin)>,
    /// The plan the tests ran against, kept here only when some failed (the
    /// compilation then has no plan to run, but `gwc route` can still
    /// explain where the failing requests go).
    pub plan: Option<Plan>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.expectations - self.failures.len()
    }

    /// Routes that no test reaches (index, head, origin), in file order.
    pub fn unreached(&self) -> impl Iterator<Item = (usize, &str, &Origin)> + '_ {
        self.reached
            .iter()
            .zip(&self.routes)
            .enumerate()
            .filter(|(_, (r, _))| !**r)
            .map(|(i, (_, (head, origin)))| (i, head.as_str(), origin))
    }
}

/// Runs every expectation of every `test` block of `config` against `plan`
/// (compiled from the same `config`, so route indices agree).
pub fn run(config: &Config, plan: &Plan) -> TestReport {
    let mut report = TestReport {
        reached: vec![false; plan.routes.len()],
        routes: plan.routes.iter().map(|r| (r.head(), r.origin.clone())).collect(),
        ..TestReport::default()
    };
    for test in &config.tests {
        for e in &test.expectations {
            report.expectations += 1;
            if let Some(d) = run_one(config, plan, e, &mut report.reached) {
                report.failures.push(d);
            }
        }
    }
    report
}

/// What the gateway does with a request, in words.
enum Actual {
    /// Routed to an upstream (or `aggregate`) by a route; `split` when it
    /// is a side of a sticky split.
    Routed { name: String, route: usize, split: bool },
    /// Split at random (no sticky key in the request).
    Split { sides: String, route: usize },
    /// The gateway answers itself with a status.
    Status {
        status: u16,
        why: String,
        route: Option<usize>,
    },
}

fn run_one(config: &Config, plan: &Plan, e: &Expectation, reached: &mut [bool]) -> Option<Diagnostic> {
    let target = e.path.node.as_str();
    let (path, query) = Given::split_target(target);
    let given = Given {
        headers: e
            .headers
            .iter()
            .map(|(n, v)| (n.node.clone(), v.node.clone()))
            .collect(),
        query: query.map(str::to_string),
        cookies: e
            .cookies
            .iter()
            .map(|(n, v)| (n.node.clone(), v.node.clone()))
            .collect(),
        client_ip: e.client_ip.as_ref().map(|ip| ip.node),
    };
    let host = e.host.as_ref().map_or("", |h| h.node.as_str());
    let method = e.method.node;
    let upstream_name = |i: usize| plan.upstreams.get(i).map_or("?", |u| u.name.as_str()).to_string();
    let actual = match lookup_with(plan, Some(method), host, path, &given) {
        Lookup::Matched { route, params } => {
            if let Some(r) = reached.get_mut(route) {
                *r = true;
            }
            let r = plan.routes.get(route)?;
            match &r.target {
                Target::Upstream { upstream } => Actual::Routed {
                    name: upstream_name(*upstream),
                    route,
                    split: false,
                },
                Target::Split(sp) => {
                    let key = sp.sticky.as_ref().and_then(|k| match k {
                        super::words::Reference::Param(p) => params.get(p).map(str::to_string),
                        k => given.value(k).map(|v| v.into_owned()),
                    });
                    match key {
                        Some(key) => Actual::Routed {
                            name: sp
                                .sides
                                .get(sp.side_for_key(&key))
                                .map_or("?".into(), |s| upstream_name(s.upstream)),
                            route,
                            split: true,
                        },
                        None => Actual::Split {
                            sides: sp
                                .sides
                                .iter()
                                .map(|s| format!("`{}` ({}%)", upstream_name(s.upstream), s.weight))
                                .collect::<Vec<_>>()
                                .join(", "),
                            route,
                        },
                    }
                }
                Target::Aggregate(_) => Actual::Routed {
                    name: "aggregate".into(),
                    route,
                    split: false,
                },
                Target::Respond { status, .. } => Actual::Status {
                    status: *status,
                    why: format!("is answered `{status}` by route `{}`", r.head()),
                    route: Some(route),
                },
                Target::Redirect { status, .. } => Actual::Status {
                    status: *status,
                    why: format!("is redirected with `{status}` by route `{}`", r.head()),
                    route: Some(route),
                },
            }
        }
        Lookup::NotFound => Actual::Status {
            status: 404,
            why: "gets 404: no route matches".into(),
            route: None,
        },
        Lookup::MethodNotAllowed { allow } => Actual::Status {
            status: 405,
            why: format!("gets 405: the routes for this path allow only {allow}"),
            route: None,
        },
        Lookup::BadRequest(why) => Actual::Status {
            status: 400,
            why: format!("gets 400: {why}"),
            route: None,
        },
    };
    let pass = match (&e.expect.node, &actual) {
        (Expected::Upstream(want), Actual::Routed { name, split, .. }) => want == name || (*split && want == "split"),
        (Expected::Upstream(want), Actual::Split { .. }) => want == "split",
        (Expected::Status(want), Actual::Status { status, .. }) => want == status,
        _ => false,
    };
    if pass {
        return None;
    }
    let wanted = match &e.expect.node {
        Expected::Upstream(n) => format!("`{n}`"),
        Expected::Status(s) => format!("`{s}`"),
    };
    let (what, route) = match &actual {
        Actual::Split { sides, route } => (
            format!(
                "is split at random between {sides} by route `{}`",
                plan.routes.get(*route).map_or(String::new(), |r| r.head())
            ),
            Some(*route),
        ),
        Actual::Routed { name, route, .. } => (
            format!(
                "is routed to `{name}` by route `{}`",
                plan.routes.get(*route).map_or(String::new(), |r| r.head())
            ),
            Some(*route),
        ),
        Actual::Status { why, route, .. } => (why.clone(), *route),
    };
    let mut d = Diagnostic::new(
        Code::GW0601,
        format!("expected {wanted}, but `{} {target}` {what}", method.as_str()),
    )
    .primary(
        e.span,
        match &actual {
            Actual::Routed { name, .. } => format!("goes to `{name}`, not {wanted}"),
            Actual::Split { .. } => format!("goes to a side chosen at random, not {wanted}"),
            Actual::Status { status, .. } => format!("gets `{status}`, not {wanted}"),
        },
    );
    if let Some(r) = route.and_then(|r| config.routes.get(r)) {
        d = d.secondary(r.head_span, "this route takes the request");
    }
    if let (Actual::Split { route, .. }, Expected::Upstream(_)) = (&actual, &e.expect.node) {
        let key = match plan.routes.get(*route).map(|r| &r.target) {
            Some(Target::Split(super::Split { sticky: Some(k), .. })) => {
                format!("give the request its sticky key (`{k}`) to expect a side, or expect `-> split`")
            }
            _ => "the split is not sticky: expect `-> split`".to_string(),
        };
        return Some(d.help(key));
    }
    let help = match &e.expect.node {
        Expected::Upstream(n) if n != "aggregate" && n != "split" && !plan.upstreams.iter().any(|u| &u.name == n) => {
            let typo = suggest(n, plan.upstreams.iter().map(|u| u.name.as_str()));
            return Some(
                d.help(format!("there is no upstream `{n}`"))
                    .did_you_mean(e.expect.span, typo),
            );
        }
        Expected::Upstream(n) => {
            let heads: Vec<String> = plan
                .routes
                .iter()
                .filter(|r| plan.target_name(r) == *n)
                .map(|r| format!("`{}`", r.head()))
                .collect();
            (!heads.is_empty()).then(|| format!("`{n}` is reached by {}", heads.join(", ")))
        }
        Expected::Status(_) => None,
    };
    Some(d.maybe_help(help))
}
