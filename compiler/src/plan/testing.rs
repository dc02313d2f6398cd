//! Running the `test` blocks embedded in a configuration against its plan,
//! with no network: each expectation is routed by
//! [`router::lookup`](super::router::lookup) — the function the runtime
//! uses — and each one that fails becomes a GW0601 diagnostic at the
//! expectation saying what happens instead. Tests check routing only: auth,
//! require and limits are not evaluated, so an authenticated route is still
//! reached. Header expectations are carried but do not affect routing.

use super::router::{lookup, Lookup};
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
    /// Routed to an upstream (or `aggregate`) by a route.
    Routed { name: String, route: usize },
    /// The gateway answers itself with a status.
    Status {
        status: u16,
        why: String,
        route: Option<usize>,
    },
}

fn run_one(config: &Config, plan: &Plan, e: &Expectation, reached: &mut [bool]) -> Option<Diagnostic> {
    let target = e.path.node.as_str();
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let host = e.host.as_ref().map_or("", |h| h.node.as_str());
    let method = e.method.node;
    let actual = match lookup(plan, Some(method), host, path) {
        Lookup::Matched { route, .. } => {
            if let Some(r) = reached.get_mut(route) {
                *r = true;
            }
            let r = plan.routes.get(route)?;
            match &r.target {
                Target::Upstream { upstream } => Actual::Routed {
                    name: plan
                        .upstreams
                        .get(*upstream)
                        .map_or("?", |u| u.name.as_str())
                        .to_string(),
                    route,
                },
                Target::Aggregate(_) => Actual::Routed {
                    name: "aggregate".into(),
                    route,
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
        (Expected::Upstream(want), Actual::Routed { name, .. }) => want == name,
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
        Actual::Routed { name, route } => (
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
            Actual::Status { status, .. } => format!("gets `{status}`, not {wanted}"),
        },
    );
    if let Some(r) = route.and_then(|r| config.routes.get(r)) {
        d = d.secondary(r.head_span, "this route takes the request");
    }
    let help = match &e.expect.node {
        Expected::Upstream(n) if n != "aggregate" && !plan.upstreams.iter().any(|u| &u.name == n) => {
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
