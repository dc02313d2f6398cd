//! A plan as loaded ([`LoadedPlan`]): the immutable [`Plan`] plus what
//! loading it made (upstreams with their servers, pools and clients, the
//! policies' key sets and limit budgets, per-route counters). A reload loads
//! the new plan, inheriting from the old one — unchanged servers keep their
//! health, unchanged routes their counters, upstreams their retry counters
//! (by name), unchanged limits their budgets —
//! then swaps it in atomically ([`Shared::current`]); requests in flight
//! finish on the plan they started with.

use crate::metrics::{ConfigInfo, Metrics, RouteMetrics};
use crate::upstream::health::ServerState;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use gw_plan::{HeaderOp, Plan};
use hyper::header::HeaderName;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

pub struct LoadedPlan {
    pub plan: Arc<Plan>,
    pub upstreams: Vec<Arc<Upstream>>,
    /// Indexed like `plan.routes`.
    pub route_metrics: Vec<Arc<RouteMetrics>>,
    /// `route.head()` for each route, the metrics label.
    pub route_labels: Vec<String>,
    /// Per route, the names its response header transforms set or remove
    /// (`None` when it has none): trailer fields by these names are dropped.
    pub transformed_response_headers: Vec<Option<Arc<[HeaderName]>>>,
    /// Auth key sets, API keys and rate-limit state of the plan's policies.
    pub policies: Arc<crate::policy::Policies>,
    /// The plan's digest and when it was loaded (`/metrics`).
    pub config: ConfigInfo,
    /// Per route, the state of its `mirror` (`None` when it has none).
    pub mirrors: Vec<Option<Arc<MirrorState>>>,
    /// Per route, its `cache` (`None` when it has none).
    pub caches: Vec<Option<Arc<crate::cache::RouteCache>>>,
}

/// A mirrored route's copies: the requests counted so far (its share is
/// taken by counting, so 10% is every tenth request) and the copies in
/// flight (bounded by the proxy).
#[derive(Debug, Default)]
pub struct MirrorState {
    pub seen: AtomicU64,
    pub in_flight: AtomicUsize,
}

impl LoadedPlan {
    /// Loads `plan`, inheriting from `previous`.
    pub async fn load(plan: Arc<Plan>, previous: Option<&LoadedPlan>) -> LoadedPlan {
        let old_states: HashMap<String, Arc<ServerState>> = previous
            .map(|p| {
                p.upstreams
                    .iter()
                    .flat_map(|u| u.states())
                    .map(|s| (s.id.clone(), s))
                    .collect()
            })
            .unwrap_or_default();
        let old_upstreams: HashMap<&str, &Arc<crate::metrics::UpstreamMetrics>> = previous
            .map(|p| p.upstreams.iter().map(|u| (u.name.as_str(), &u.metrics)).collect())
            .unwrap_or_default();
        let mut upstreams = Vec::with_capacity(plan.upstreams.len());
        for u in &plan.upstreams {
            let mut built = Upstream::build(u, &old_states).await;
            if let Some(m) = old_upstreams.get(u.name.as_str()) {
                built.metrics = Arc::clone(m);
            }
            upstreams.push(Arc::new(built));
        }
        let old_metrics: HashMap<&str, &Arc<RouteMetrics>> = previous
            .map(|p| {
                p.route_labels
                    .iter()
                    .map(String::as_str)
                    .zip(&p.route_metrics)
                    .collect()
            })
            .unwrap_or_default();
        let route_labels: Vec<String> = plan.routes.iter().map(|r| r.head()).collect();
        let route_metrics = route_labels
            .iter()
            .map(|l| {
                old_metrics
                    .get(l.as_str())
                    .map_or_else(|| Arc::new(RouteMetrics::default()), |m| (*m).clone())
            })
            .collect();
        let transformed_response_headers = plan
            .routes
            .iter()
            .map(|r| {
                let names: Vec<HeaderName> = r
                    .response_headers
                    .iter()
                    .filter_map(|op| {
                        let (HeaderOp::Set { name, .. } | HeaderOp::Remove { name }) = op;
                        HeaderName::from_bytes(name.as_bytes()).ok()
                    })
                    .collect();
                (!names.is_empty()).then(|| Arc::from(names))
            })
            .collect();
        let policies = Arc::new(crate::policy::Policies::build(&plan, previous.map(|p| &*p.policies)).await);
        let config = ConfigInfo::of(&plan);
        let mirrors = plan
            .routes
            .iter()
            .map(|r| r.mirror.as_ref().map(|_| Arc::new(MirrorState::default())))
            .collect();
        let caches = caches(&plan, previous);
        LoadedPlan {
            config,
            plan,
            upstreams,
            route_metrics,
            route_labels,
            transformed_response_headers,
            policies,
            mirrors,
            caches,
        }
    }
}

/// Each cached route's cache: the previous plan's when the route is
/// unchanged (its head, its `cache` settings and its target), else a new one.
fn caches(plan: &Plan, previous: Option<&LoadedPlan>) -> Vec<Option<Arc<crate::cache::RouteCache>>> {
    let identity = |plan: &Plan, r: &gw_plan::Route| -> Option<String> {
        let c = r.cache?;
        let target = match &r.target {
            gw_plan::Target::Upstream { upstream, .. } => plan.upstreams.get(*upstream).map(|u| u.name.clone()),
            t => Some(format!("{t:?}")),
        };
        Some(format!("{}\n{c}\n{target:?}", r.head()))
    };
    let mut old: HashMap<String, Arc<crate::cache::RouteCache>> = HashMap::new();
    if let Some(p) = previous {
        for (r, c) in p.plan.routes.iter().zip(&p.caches) {
            if let (Some(id), Some(c)) = (identity(&p.plan, r), c) {
                old.insert(id, c.clone());
            }
        }
    }
    plan.routes
        .iter()
        .map(|r| {
            let id = identity(plan, r)?;
            let cfg = r.cache?;
            Some(
                old.remove(&id)
                    .unwrap_or_else(|| Arc::new(crate::cache::RouteCache::new(&cfg))),
            )
        })
        .collect()
}

/// What every connection and request shares: the current plan (swapped on
/// reload), the process-wide counters, and whether the gateway is ready.
pub struct Shared {
    pub current: ArcSwap<LoadedPlan>,
    pub metrics: Arc<Metrics>,
    /// A [`Phase`] (what admin `/ready` answers).
    phase: AtomicU8,
}

/// Where the gateway is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Loading its plan and binding its listeners.
    Starting = 0,
    /// Every listener bound and accepting.
    Serving = 1,
    /// Shutting down: no new connections, the open ones finishing.
    Draining = 2,
}

impl Shared {
    pub fn new(loaded: LoadedPlan) -> Shared {
        Shared {
            current: ArcSwap::from_pointee(loaded),
            metrics: Arc::new(Metrics::default()),
            phase: AtomicU8::new(Phase::Starting as u8),
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }
}
