//! What changes from one plan to another: the one summary `gwc diff OLD
//! NEW` prints and `gwc serve` logs at each reload. Listeners and admin
//! addresses, the server-wide `limits`, upstreams (their servers and
//! settings), auths, limits, stores and routes are added, removed or
//! changed, each change said in the language's words.
//!
//! - Identity: a route is its head (methods, host, path pattern), so a
//!   route moved in the file is not changed; an upstream, auth, limit or
//!   store is its name; a listener its address and kind (`:8443 tls`), as a
//!   reload compares them; an admin listener its address.
//! - Whether something changed is decided on the whole of its compiled form
//!   (other declarations named, not indexed; where it is written left out),
//!   so nothing that changes behaviour goes unreported; what changed is then
//!   said attribute by attribute ([`Detail`]).
//! - Secrets are never shown: inline secrets and keys appear as
//!   `inline(<redacted>)` and URL passwords as `<redacted>`, and a change of
//!   one is reported as "an inline secret or URL password changed" without
//!   either value.
//! - The order is stable: kinds in a fixed order (listeners, admin, limits
//!   block, upstreams, auths, limits, stores, routes), then by name (routes
//!   by path, host, methods), so the same two plans always give the same
//!   text, whatever the order of their files.

use super::print::{cors, size, strategy};
use super::*;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// Added, removed or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }

    /// `+`, `-`, `~` (as Terraform marks its plans).
    pub fn sign(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        }
    }
}

/// What a change is about; also the order of the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Listen,
    Admin,
    /// The server-wide `limits` block.
    Limits,
    /// One range of `trust_proxies`.
    TrustProxies,
    Upstream,
    Auth,
    Limit,
    Store,
    Route,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Listen,
        Kind::Admin,
        Kind::Limits,
        Kind::TrustProxies,
        Kind::Upstream,
        Kind::Auth,
        Kind::Limit,
        Kind::Store,
        Kind::Route,
    ];

    /// The declaration keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Listen => "listen",
            Kind::Admin => "admin",
            Kind::Limits => "limits",
            Kind::TrustProxies => "trust_proxies",
            Kind::Upstream => "upstream",
            Kind::Auth => "auth",
            Kind::Limit => "limit",
            Kind::Store => "store",
            Kind::Route => "route",
        }
    }

    /// `1 listener`, `2 routes`.
    fn count(self, n: usize) -> String {
        let (one, many) = match self {
            Kind::Listen => ("listener", "listeners"),
            Kind::Admin => ("admin listener", "admin listeners"),
            Kind::Limits => ("`limits` block", "`limits` blocks"),
            Kind::TrustProxies => ("trusted proxy range", "trusted proxy ranges"),
            Kind::Upstream => ("upstream", "upstreams"),
            Kind::Auth => ("auth", "auths"),
            Kind::Limit => ("limit", "limits"),
            Kind::Store => ("store", "stores"),
            Kind::Route => ("route", "routes"),
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }
}

/// One attribute that differs in something changed: a server added, `balance`
/// changed, a `require` removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub change: Change,
    /// The attribute: `balance`, `server 127.0.0.1:9001`, `target`, or the
    /// whole statement when it is its own identity (`require ...`).
    pub what: String,
    /// The attribute as it was and as it is, each as written (`balance p2c`);
    /// `None` on the side where it does not exist.
    pub old: Option<String>,
    pub new: Option<String>,
    /// For [`Change::Changed`]: the values alone (`p2c`, `least_conn`), for
    /// `what: old -> new`.
    values: Option<(String, String)>,
}

/// Something added, removed or changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub change: Change,
    pub kind: Kind,
    /// The route's head (`GET /orders/{id}`), the declaration's name
    /// (`orders`), the listener (`:8443 tls`) or admin address; empty for
    /// the `limits` block.
    pub name: String,
    /// Where a route is written: in the new plan, or the old one for a
    /// removal (`app.gw:12`).
    pub origin: Option<String>,
    /// A few words after the name: a route's target, an upstream's
    /// strategy, an auth's kind, a limit's rate.
    pub about: Option<String>,
    /// For a change: what differs. For an addition or removal: its
    /// attributes (a route's policies in the order they run).
    pub details: Vec<Detail>,
}

/// What changes from one plan to another (see the module's documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the stable order.
    pub entries: Vec<Entry>,
}

/// What changes from `old` to `new`. Memory stays in proportion to the
/// names compared and the changes found: each thing's compiled form is made
/// when it is compared and dropped after.
pub fn diff(old: &Plan, new: &Plan) -> Diff {
    let mut entries = Vec::new();
    for kind in Kind::ALL {
        let mut after: HashMap<String, usize> = (0..len(new, kind)).map(|j| (key(new, kind, j), j)).collect();
        let mut found: Vec<(Vec<String>, Entry)> = Vec::new();
        for i in 0..len(old, kind) {
            match after.remove(&key(old, kind, i)) {
                None => {
                    let b = item(old, kind, i);
                    found.push((b.sort.clone(), whole(Change::Removed, kind, &b)));
                }
                Some(j) => {
                    let (b, a) = (item(old, kind, i), item(new, kind, j));
                    if b.raw != a.raw {
                        let mut e = whole(Change::Changed, kind, &a);
                        e.details = details(&b, &a);
                        found.push((a.sort.clone(), e));
                    }
                }
            }
        }
        let mut added: Vec<usize> = after.into_values().collect();
        added.sort_unstable();
        for j in added {
            let a = item(new, kind, j);
            found.push((a.sort.clone(), whole(Change::Added, kind, &a)));
        }
        // By name; a removal before an addition of the same name (a listener
        // that changes kind).
        found.sort_by(|(x, e), (y, f)| (x, e.change != Change::Removed).cmp(&(y, f.change != Change::Removed)));
        entries.extend(found.into_iter().map(|(_, e)| e));
    }
    Diff { entries }
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries of `kind` were added, removed, changed.
    pub fn counts(&self, kind: Kind) -> [usize; 3] {
        let mut n = [0; 3];
        for e in self.entries.iter().filter(|e| e.kind == kind) {
            n[e.change as usize] += 1;
        }
        n
    }

    /// One line: `1 listener added; 2 routes (1 added, 1 changed)`, or
    /// `no changes`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for kind in Kind::ALL {
            let n = self.counts(kind);
            let total: usize = n.iter().sum();
            let each: Vec<String> = [Change::Added, Change::Removed, Change::Changed]
                .into_iter()
                .filter(|c| n[*c as usize] > 0)
                .map(|c| format!("{} {}", n[c as usize], c.as_str()))
                .collect();
            match each.as_slice() {
                [] => {}
                [_] => {
                    let c = [Change::Added, Change::Removed, Change::Changed]
                        .into_iter()
                        .find(|c| n[*c as usize] > 0)
                        .unwrap_or(Change::Changed);
                    parts.push(format!("{} {}", kind.count(total), c.as_str()));
                }
                _ => parts.push(format!("{} ({})", kind.count(total), each.join(", "))),
            }
        }
        if parts.is_empty() {
            "no changes".into()
        } else {
            parts.join("; ")
        }
    }

    /// The text `gwc diff` prints: one entry a line, its details indented
    /// under it, then a blank line and [`Diff::summary`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&e.head());
            out.push('\n');
            for d in &e.details {
                out.push_str("    ");
                out.push_str(&e.detail_line(d));
                out.push('\n');
            }
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `{"changed", "summary", "counts", "changes"}`, for tools.
    pub fn to_json(&self) -> Value {
        let counts: serde_json::Map<String, Value> = Kind::ALL
            .into_iter()
            .map(|k| {
                let [added, removed, changed] = self.counts(k);
                (
                    k.as_str().to_string(),
                    serde_json::json!({ "added": added, "removed": removed, "changed": changed }),
                )
            })
            .collect();
        let changes: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let details: Vec<Value> = e
                    .details
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "change": d.change.as_str(),
                            "what": d.what,
                            "old": d.old,
                            "new": d.new,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "change": e.change.as_str(),
                    "kind": e.kind.as_str(),
                    "name": e.name,
                    "origin": e.origin,
                    "about": e.about,
                    "details": details,
                })
            })
            .collect();
        serde_json::json!({
            "changed": !self.is_empty(),
            "summary": self.summary(),
            "counts": counts,
            "changes": changes,
        })
    }
}

impl Entry {
    /// `~ route GET /orders/{id} -> orders (app.gw:12)`.
    pub fn head(&self) -> String {
        let mut s = format!("{} {}", self.change.sign(), self.kind.as_str());
        if !self.name.is_empty() {
            s.push(' ');
            s.push_str(&self.name);
        }
        if let Some(a) = &self.about {
            if self.kind == Kind::Route {
                s.push_str(&format!(" {a}"));
            } else {
                s.push_str(&format!(" ({a})"));
            }
        }
        if let Some(o) = &self.origin {
            s.push_str(&format!("  ({o})"));
        }
        s
    }

    /// A detail as `gwc diff` prints it: `+ server 127.0.0.1:9004`,
    /// `~ balance: p2c -> least_conn`; for something added or removed
    /// whole, its attributes without a mark.
    pub fn detail_line(&self, d: &Detail) -> String {
        match (self.change, d.change, &d.values) {
            (Change::Changed, Change::Changed, Some((old, new))) => format!("~ {}: {old} -> {new}", d.what),
            (Change::Changed, c, _) => {
                format!(
                    "{} {}",
                    c.sign(),
                    d.new.as_deref().or(d.old.as_deref()).unwrap_or(&d.what)
                )
            }
            _ => d.new.as_deref().or(d.old.as_deref()).unwrap_or(&d.what).to_string(),
        }
    }

    /// The entry on one line, for a log: its head, then its details after
    /// `: `, separated by `; `.
    pub fn line(&self) -> String {
        let mut s = self.head();
        if !self.details.is_empty() {
            let details: Vec<String> = self.details.iter().map(|d| self.detail_line(d)).collect();
            s.push_str(": ");
            s.push_str(&details.join("; "));
        }
        s
    }
}

// ------------------------------------------------------------------ what is compared

/// One attribute of something, in the language's words.
struct Fact {
    /// What identifies the attribute among its siblings.
    key: String,
    /// Its value alone (`p2c`); empty for an attribute that is its own key.
    value: String,
    /// As written (`balance p2c`).
    line: String,
}

fn fact(key: impl Into<String>, value: impl Into<String>) -> Fact {
    let (key, value) = (key.into(), value.into());
    let line = if value.is_empty() {
        key.clone()
    } else {
        format!("{key} {value}")
    };
    Fact { key, value, line }
}

/// A statement that is its own identity (`require claim.scope has "x"`).
fn statement(line: impl Into<String>) -> Fact {
    fact(line, "")
}

/// Something a plan holds, ready to be compared.
struct Item {
    name: String,
    sort: Vec<String>,
    origin: Option<String>,
    about: Option<String>,
    facts: Vec<Fact>,
    /// Its compiled form, other declarations by name, its place left out:
    /// what decides whether it changed.
    raw: Value,
    /// Each secret value in `raw` (inline secrets, URL passwords), in order.
    secrets: Vec<String>,
}

fn new_item(key: String, name: String, facts: Vec<Fact>, raw: Value) -> Item {
    let mut redacted = raw.clone();
    redact_json(&mut redacted);
    let mut secrets = Vec::new();
    hidden(&raw, &redacted, &mut secrets);
    Item {
        sort: vec![key],
        name,
        origin: None,
        about: None,
        facts: unique(facts),
        raw,
        secrets,
    }
}

/// The values `redact_json` hid: where `raw` and `redacted` differ.
fn hidden(raw: &Value, redacted: &Value, out: &mut Vec<String>) {
    match (raw, redacted) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    hidden(v, w, out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (v, w) in a.iter().zip(b) {
                hidden(v, w, out);
            }
        }
        (Value::String(a), Value::String(b)) if a != b => out.push(a.clone()),
        _ => {}
    }
}

/// Keys made unique (`server 127.0.0.1:9001` twice: the second is `#2`).
fn unique(facts: Vec<Fact>) -> Vec<Fact> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    facts
        .into_iter()
        .map(|mut f| {
            let n = seen.entry(f.key.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                f.key = format!("{} #{n}", f.key);
            }
            f
        })
        .collect()
}

/// An entry for `item` as a whole; an addition or removal lists its facts.
fn whole(change: Change, kind: Kind, i: &Item) -> Entry {
    let side = |f: &Fact| Some(f.line.clone());
    let details = match change {
        Change::Changed => Vec::new(),
        _ => i
            .facts
            .iter()
            .filter(|f| !(kind == Kind::Route && f.key == "target"))
            .map(|f| Detail {
                change,
                what: f.key.clone(),
                old: if change == Change::Removed { side(f) } else { None },
                new: if change == Change::Added { side(f) } else { None },
                values: None,
            })
            .collect(),
    };
    // Upstreams, auths and limits say what they are in `about`; their
    // attributes are for `gwc plan` (a route's policies are its point).
    let details = if matches!(kind, Kind::Route | Kind::Listen) {
        details
    } else {
        Vec::new()
    };
    Entry {
        change,
        kind,
        name: i.name.clone(),
        origin: i.origin.clone(),
        about: i.about.clone(),
        details,
    }
}

/// What differs between two versions of one thing.
fn details(old: &Item, new: &Item) -> Vec<Detail> {
    let mut out = Vec::new();
    for f in &old.facts {
        if !new.facts.iter().any(|g| g.key == f.key) {
            out.push(Detail {
                change: Change::Removed,
                what: f.key.clone(),
                old: Some(f.line.clone()),
                new: None,
                values: None,
            });
        }
    }
    for g in &new.facts {
        match old.facts.iter().find(|f| f.key == g.key) {
            None => out.push(Detail {
                change: Change::Added,
                what: g.key.clone(),
                old: None,
                new: Some(g.line.clone()),
                values: None,
            }),
            Some(f) if f.line != g.line => out.push(Detail {
                change: Change::Changed,
                what: g.key.clone(),
                old: Some(f.line.clone()),
                new: Some(g.line.clone()),
                values: Some((f.value.clone(), g.value.clone())),
            }),
            Some(_) => {}
        }
    }
    if old.secrets != new.secrets {
        out.push(Detail {
            change: Change::Changed,
            what: "an inline secret or URL password".into(),
            old: None,
            new: None,
            values: Some(("<redacted>".into(), "<redacted>".into())),
        });
    }
    if out.is_empty() {
        // Cannot happen while the facts say everything the plan holds; if
        // they fall behind, the change is still reported.
        out.push(Detail {
            change: Change::Changed,
            what: "settings".into(),
            old: None,
            new: None,
            values: Some(("…".into(), "… (see `gwc plan`)".into())),
        });
    }
    out
}

/// How many things of `kind` the plan holds.
fn len(plan: &Plan, kind: Kind) -> usize {
    match kind {
        Kind::Listen => plan.listeners.len(),
        Kind::Admin => plan.admin.len(),
        Kind::Limits => 1,
        Kind::TrustProxies => plan.trust_proxies.len(),
        Kind::Upstream => plan.upstreams.len(),
        Kind::Auth => plan.auths.len(),
        Kind::Limit => plan.rate_limits.len(),
        Kind::Store => plan.stores.len(),
        Kind::Route => plan.routes.len(),
    }
}

/// The identity of the `i`-th thing of `kind`.
fn key(plan: &Plan, kind: Kind, i: usize) -> String {
    match kind {
        Kind::Listen => listener_name(&plan.listeners[i]),
        Kind::Admin => plan.admin[i].clone(),
        Kind::Limits => String::new(),
        Kind::TrustProxies => gw_plan::range_text(&plan.trust_proxies[i]),
        Kind::Upstream => plan.upstreams[i].name.clone(),
        Kind::Auth => plan.auths[i].name.clone(),
        Kind::Limit => plan.rate_limits[i].name.clone(),
        Kind::Store => plan.stores[i].name.clone(),
        Kind::Route => plan.routes[i].head(),
    }
}

/// The `i`-th thing of `kind`, ready to be compared.
fn item(plan: &Plan, kind: Kind, i: usize) -> Item {
    match kind {
        Kind::Listen => listener(plan, &plan.listeners[i]),
        Kind::Admin => {
            let a = &plan.admin[i];
            new_item(a.clone(), a.clone(), Vec::new(), Value::Null)
        }
        Kind::Limits => server_limits(&plan.limits),
        Kind::TrustProxies => {
            let range = gw_plan::range_text(&plan.trust_proxies[i]);
            new_item(range.clone(), range, Vec::new(), Value::Null)
        }
        Kind::Upstream => upstream(&plan.upstreams[i]),
        Kind::Auth => auth(&plan.auths[i]),
        Kind::Limit => rate_limit(plan, &plan.rate_limits[i]),
        Kind::Store => store(&plan.stores[i]),
        Kind::Route => route(plan, &plan.routes[i]),
    }
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn upstream_name(plan: &Plan, i: usize) -> String {
    plan.upstreams.get(i).map_or_else(|| "?".into(), |u| u.name.clone())
}

/// Replaces the index at `v[field]` with the name `name_of` gives it.
fn name_index(v: &mut Value, field: &str, name_of: impl Fn(usize) -> String) {
    if let Some(slot) = v.get_mut(field) {
        if let Some(i) = slot.as_u64() {
            *slot = Value::String(name_of(i as usize));
        }
    }
}

/// `127.0.0.1:8080`, `:8443 tls`, `:5432 tcp`: the address and kind a
/// reload compares.
fn listener_name(l: &Listener) -> String {
    if l.proxy_protocol {
        return match l.kind {
            ListenerKind::Tls { .. } => format!("{} proxy_protocol tls", l.address),
            _ => format!("{} proxy_protocol", l.address),
        };
    }
    match l.kind {
        ListenerKind::Http => l.address.clone(),
        ListenerKind::Tls { .. } => format!("{} tls", l.address),
        ListenerKind::Tcp { .. } => format!("{} tcp", l.address),
    }
}

fn listener(plan: &Plan, l: &Listener) -> Item {
    let facts = match &l.kind {
        ListenerKind::Http => Vec::new(),
        ListenerKind::Tls {
            certificates,
            client_auth,
        } => certificates
            .iter()
            .map(|c| {
                let which = c.sni.as_deref().map_or("default".to_string(), |s| format!("sni {s}"));
                fact(format!("certificate {which}"), format!("cert {} key {}", c.cert, c.key))
            })
            .chain(client_auth.iter().map(|a| {
                let how = if a.required { "required" } else { "optional" };
                fact("client_ca", format!("{} client_auth {how}", a.ca))
            }))
            .collect(),
        ListenerKind::Tcp { upstream } => vec![fact("->", upstream_name(plan, *upstream))],
    };
    let mut raw = to_value(l);
    if let Some(tcp) = raw.get_mut("kind").and_then(|k| k.get_mut("tcp")) {
        name_index(tcp, "upstream", |i| upstream_name(plan, i));
    }
    let name = listener_name(l);
    new_item(name.clone(), name, facts, raw)
}

fn server_limits(l: &ServerLimits) -> Item {
    let facts = vec![
        fact("header_timeout", l.header_timeout.to_string()),
        fact("idle_timeout", l.idle_timeout.to_string()),
        fact("max_header_size", size(l.max_header_size)),
        fact("max_body_size", size(l.max_body_size)),
        fact("max_connections", l.max_connections.to_string()),
    ];
    new_item(String::new(), String::new(), facts, to_value(l))
}

fn upstream(u: &Upstream) -> Item {
    let mut facts = vec![fact("balance", u.balance.to_string())];
    for s in &u.servers {
        let mut opts = format!("weight {}", s.weight);
        if s.backup {
            opts.push_str(" backup");
        }
        if let Some(r) = s.resolve {
            opts.push_str(&format!(" resolve {r}"));
        }
        let mut f = fact(format!("server {}", s.address), opts);
        f.line = format!("server {}", s.address);
        if s.weight != 1 {
            f.line.push_str(&format!(" weight {}", s.weight));
        }
        if s.backup {
            f.line.push_str(" backup");
        }
        if let Some(r) = s.resolve {
            f.line.push_str(&format!(" resolve {r}"));
        }
        facts.push(f);
    }
    if let Some(h) = &u.health {
        let expect = if h.expect.0 == h.expect.1 {
            h.expect.0.to_string()
        } else {
            format!("{}..{}", h.expect.0, h.expect.1)
        };
        facts.push(fact(
            "health",
            format!(
                "{{ path {} interval {} timeout {} expect {expect} unhealthy {} healthy {} }}",
                h.path, h.interval, h.timeout, h.unhealthy, h.healthy
            ),
        ));
    }
    if let Some(e) = &u.eject {
        facts.push(fact("eject", format!("{{ errors {} for {} }}", e.errors, e.duration)));
    }
    facts.push(fact("connect_timeout", u.connect_timeout.to_string()));
    facts.push(fact("timeout", u.timeout.to_string()));
    if let Some(r) = &u.retry {
        facts.push(retry(r));
    }
    facts.push(fact(
        "pool",
        format!(
            "{{ max_idle {} idle_timeout {} }}",
            u.pool.max_idle, u.pool.idle_timeout
        ),
    ));
    if u.http2 {
        facts.push(statement("http2"));
    }
    if let Some(t) = &u.tls {
        facts.push(tls_fact(t));
    }
    match &u.host_header {
        gw_plan::HostHeader::Client => {}
        gw_plan::HostHeader::Server => facts.push(fact("host_header", "server".to_string())),
        gw_plan::HostHeader::Fixed(n) => facts.push(fact("host_header", format!("{n:?}"))),
    }
    let mut i = new_item(u.name.clone(), u.name.clone(), facts, to_value(u));
    i.about = Some(strategy(u));
    i
}

/// `retry 1 on connect_error budget 20%` as a fact whose value is what
/// follows `retry`.
fn retry(r: &Retry) -> Fact {
    let line = r.to_string();
    let value = line.strip_prefix("retry ").unwrap_or(&line).to_string();
    fact("retry", value)
}

fn auth(a: &Auth) -> Item {
    let (kind, facts) = match &a.kind {
        AuthKind::Jwt(j) => {
            let algorithms: Vec<&str> = j.algorithms.iter().map(|a| a.as_str()).collect();
            let mut facts = vec![
                fact("issuer", format!("{:?}", j.issuer)),
                fact("audience", format!("{:?}", j.audience)),
                fact("algorithms", algorithms.join(", ")),
            ];
            // `jwks file("...")`, `secret env("...")`, `jwks url "..." refresh 10m`.
            let key = j.key.to_string();
            let (_, rest) = key.split_once(' ').unwrap_or((&key, ""));
            let mut k = fact("key", rest.to_string());
            k.line = key.clone();
            facts.push(k);
            facts.push(fact("leeway", j.leeway.to_string()));
            facts.push(fact("from", j.from.to_string()));
            facts.push(fact("types", j.types.to_string()));
            ("jwt", facts)
        }
        AuthKind::ApiKey(k) => {
            let keys = match &k.keys {
                ApiKeys::File(s) => s.to_string(),
                ApiKeys::Inline(list) => format!("{} inline keys (redacted)", list.len()),
            };
            ("api_key", vec![fact("from", k.from.to_string()), fact("keys", keys)])
        }
    };
    let mut i = new_item(a.name.clone(), a.name.clone(), facts, to_value(a));
    i.about = Some(kind.to_string());
    i
}

fn rate_limit(plan: &Plan, l: &RateLimit) -> Item {
    let per = match l.per.0 {
        1_000 => "s".to_string(),
        60_000 => "min".to_string(),
        3_600_000 => "hour".to_string(),
        _ => l.per.to_string(),
    };
    let store = l.store.and_then(|s| plan.stores.get(s)).map(|s| s.name.clone());
    let mut facts = vec![
        fact("rate", format!("{}/{per}", l.count)),
        fact("burst", l.burst.to_string()),
        fact("key", l.key.to_string()),
    ];
    match &store {
        Some(s) => facts.push(fact("store", s.clone())),
        // The cap on keys in memory means nothing for a limit kept in Redis.
        None => facts.push(fact("max_keys", l.max_keys.to_string())),
    }
    let about = facts.iter().map(|f| f.line.clone()).collect::<Vec<_>>().join(" ");
    let mut raw = to_value(l);
    name_index(&mut raw, "store", |i| {
        plan.stores.get(i).map_or_else(|| "?".into(), |s| s.name.clone())
    });
    let mut i = new_item(l.name.clone(), l.name.clone(), facts, raw);
    i.about = Some(about);
    i
}

/// An upstream's or a store's `tls` block (files by reference only).
fn tls_fact(t: &gw_plan::UpstreamTls) -> Fact {
    let mut block = Vec::new();
    if let Some(ca) = &t.ca {
        block.push(format!("ca {ca}"));
    }
    if let Some(n) = &t.server_name {
        block.push(format!("server_name {n:?}"));
    }
    if let Some(c) = &t.client_cert {
        block.push(format!("cert {} key {}", c.cert, c.key));
    }
    if block.is_empty() {
        statement("tls")
    } else {
        fact("tls", format!("{{ {} }}", block.join(" ")))
    }
}

fn store(s: &Store) -> Item {
    let url = s.url_shown();
    let mut facts = vec![
        fact("redis", url.clone()),
        fact("timeout", s.timeout.to_string()),
        fact("on_error", if s.on_error_allow { "allow" } else { "deny" }),
    ];
    if let Some(t) = &s.tls {
        facts.push(tls_fact(t));
    }
    let mut i = new_item(s.name.clone(), s.name.clone(), facts, to_value(s));
    i.about = Some(format!("redis {url}"));
    i
}

fn route(plan: &Plan, r: &Route) -> Item {
    let mut facts = Vec::new();
    if let Some(c) = &r.cors {
        facts.push(fact("cors", format!("{{ {} }}", cors(c))));
    }
    if let Some(a) = r.auth.and_then(|a| plan.auths.get(a)) {
        facts.push(fact("auth", a.name.clone()));
    }
    for q in &r.requires {
        facts.push(statement(q.to_string()));
    }
    let limits: Vec<&str> = r
        .limits
        .iter()
        .filter_map(|l| plan.rate_limits.get(*l))
        .map(|l| l.name.as_str())
        .collect();
    if !limits.is_empty() {
        facts.push(fact("limit", limits.join(", ")));
    }
    for (direction, ops) in [("request", &r.request_headers), ("response", &r.response_headers)] {
        for h in ops {
            facts.push(match h {
                HeaderOp::Set { name, value } => {
                    let mut f = fact(format!("set {direction} header {name}"), value.to_string());
                    f.line = format!("set {direction} header {name} {value}");
                    f
                }
                HeaderOp::Remove { name } => statement(format!("remove {direction} header {name}")),
            });
        }
    }
    if let Some(p) = &r.strip_prefix {
        facts.push(fact("strip_prefix", p.clone()));
    }
    if let Some(t) = &r.rewrite {
        facts.push(fact("rewrite", t.to_string()));
    }
    if let Some(t) = r.timeout {
        facts.push(fact("timeout", t.to_string()));
    }
    if let Some(t) = &r.retry {
        facts.push(retry(t));
    }
    if let Some(c) = r.compress.and_then(|c| plan.compressions.get(c)) {
        let line = c.to_string();
        facts.push(fact(
            "compress",
            line.strip_prefix("compress ").unwrap_or(&line).to_string(),
        ));
    }
    if let Some(c) = &r.cache {
        let line = c.to_string();
        facts.push(fact("cache", line.strip_prefix("cache ").unwrap_or(&line).to_string()));
    }
    if let Some(m) = &r.mirror {
        facts.push(fact(
            "mirror",
            format!("{} {}%", upstream_name(plan, m.upstream), m.percent),
        ));
    }
    // `-> orders` is written `-> orders`, and said `target: orders -> payment`
    // when it changes.
    let (target, target_value) = match &r.target {
        Target::Upstream { upstream } => {
            let name = upstream_name(plan, *upstream);
            (format!("-> {name}"), name)
        }
        _ => {
            let t = print::target(plan, r);
            (t.clone(), t)
        }
    };
    let mut t = fact("target", target_value);
    t.line = target.clone();
    facts.push(t);

    let mut raw = to_value(r);
    if let Some(o) = raw.as_object_mut() {
        o.remove("origin");
        // Indices into the plan's tables, compared by what they point at.
        if let Some(c) = r.compress.and_then(|c| plan.compressions.get(c)) {
            o.insert("compress".into(), to_value(c));
        }
        if let Some(m) = &r.mirror {
            o.insert(
                "mirror".into(),
                Value::String(format!("{} {}%", upstream_name(plan, m.upstream), m.percent)),
            );
        }
    }
    name_index(&mut raw, "auth", |i| {
        plan.auths.get(i).map_or_else(|| "?".into(), |a| a.name.clone())
    });
    if let Some(Value::Array(ls)) = raw.get_mut("limits") {
        for l in ls.iter_mut() {
            if let Some(i) = l.as_u64() {
                *l = Value::String(
                    plan.rate_limits
                        .get(i as usize)
                        .map_or_else(|| "?".into(), |l| l.name.clone()),
                );
            }
        }
    }
    if let Some(t) = raw.get_mut("target") {
        if let Some(u) = t.get_mut("upstream") {
            name_index(u, "upstream", |i| upstream_name(plan, i));
        }
        if let Some(Value::Array(parts)) = t.get_mut("aggregate").and_then(|a| a.get_mut("parts")) {
            for p in parts.iter_mut() {
                name_index(p, "upstream", |i| upstream_name(plan, i));
            }
        }
    }
    let head = r.head();
    let mut i = new_item(head.clone(), head, facts, raw);
    i.sort = vec![
        r.path.clone(),
        r.host.clone().unwrap_or_default(),
        r.methods.map(|m| m.to_string_compact()).unwrap_or_default(),
    ];
    i.origin = Some(r.origin.to_string());
    i.about = Some(target);
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryHost;

    fn plan(text: &str) -> Plan {
        let key = "k".repeat(64);
        let host = MemoryHost::new().var("S", &key).var("T", &key);
        let c = crate::compile_text(&host, "app.gw", text);
        let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
        c.plan.unwrap_or_else(|| panic!("no plan: {errors:?}"))
    }

    const BASE: &str = "listen 127.0.0.1:8080
admin 127.0.0.1:9901
upstream orders { balance p2c server 127.0.0.1:9001 server 127.0.0.1:9002 }
upstream login { server 127.0.0.1:9101 }
auth users jwt { issuer \"i\" audience \"a\" algorithms HS256 secret env(\"S\") }
limit per_user { rate 100/min burst 20 key claim.sub }
route GET /orders/{id} -> orders { auth users limit per_user }
route POST /login -> login
route /{*rest} { respond 404 }
";

    #[test]
    fn the_same_plan_has_no_changes() {
        let d = diff(&plan(BASE), &plan(BASE));
        assert!(d.is_empty(), "{}", d.render());
        assert_eq!(d.render(), "no changes\n");
    }

    #[test]
    fn a_route_moved_in_the_file_is_not_changed() {
        let moved = BASE.replace("route POST /login -> login\n", "") + "\n\n# later\nroute POST /login -> login\n";
        let d = diff(&plan(BASE), &plan(&moved));
        assert!(d.is_empty(), "{}", d.render());
    }

    #[test]
    fn declarations_reordered_are_not_changed() {
        // Indices of upstreams, auths and limits move; names do not.
        let reordered = BASE.replace(
            "upstream orders { balance p2c server 127.0.0.1:9001 server 127.0.0.1:9002 }\nupstream login { server 127.0.0.1:9101 }",
            "upstream login { server 127.0.0.1:9101 }\nupstream orders { balance p2c server 127.0.0.1:9001 server 127.0.0.1:9002 }",
        );
        assert_ne!(reordered, BASE);
        let d = diff(&plan(BASE), &plan(&reordered));
        assert!(d.is_empty(), "{}", d.render());
    }

    #[test]
    fn routes_added_removed_and_changed_with_their_policies() {
        let new = BASE.replace("route POST /login -> login\n", "").replace(
            "{ auth users limit per_user }",
            "{ auth users require claim.scope has \"r\" limit per_user }",
        ) + "route GET /menu -> orders { auth users }\n";
        let d = diff(&plan(BASE), &plan(&new));
        let text = d.render();
        let want = [
            "~ route GET /orders/{id} -> orders  (app.gw:7)\n    + require claim.scope has \"r\"\n",
            "+ route GET /menu -> orders  (app.gw:9)\n    auth users\n",
            "- route POST /login -> login  (app.gw:8)\n",
            "\n3 routes (1 added, 1 removed, 1 changed)\n",
        ];
        for w in want {
            assert!(text.contains(w), "{w:?} not in:\n{text}");
        }
        // By path, not by place in the file.
        let names: Vec<&str> = d.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["POST /login", "GET /menu", "GET /orders/{id}"]);
    }

    #[test]
    fn a_target_change_is_a_change_of_the_route() {
        let new = BASE.replace("route POST /login -> login", "route POST /login { respond 503 }");
        let d = diff(&plan(BASE), &plan(&new));
        assert_eq!(d.entries.len(), 1);
        assert_eq!(
            d.entries[0].line(),
            "~ route POST /login respond 503  (app.gw:8): ~ target: login -> respond 503"
        );
    }

    #[test]
    fn upstream_servers_and_settings() {
        let new = BASE.replace(
            "upstream orders { balance p2c server 127.0.0.1:9001 server 127.0.0.1:9002 }",
            "upstream orders { balance least_conn server 127.0.0.1:9001 weight 3 server 127.0.0.1:9003 timeout 2s }",
        );
        let d = diff(&plan(BASE), &plan(&new));
        assert_eq!(d.entries.len(), 1, "{}", d.render());
        let lines: Vec<String> = d.entries[0]
            .details
            .iter()
            .map(|x| d.entries[0].detail_line(x))
            .collect();
        assert_eq!(
            lines,
            [
                "- server 127.0.0.1:9002",
                "~ balance: p2c -> least_conn",
                "~ server 127.0.0.1:9001: weight 1 -> weight 3",
                "+ server 127.0.0.1:9003",
                "~ timeout: 30s -> 2s",
            ]
        );
        assert_eq!(d.summary(), "1 upstream changed");
    }

    #[test]
    fn trusted_proxy_ranges_added_and_removed() {
        let old = plan(&format!("{BASE}trust_proxies [\"10.0.0.0/8\", \"127.0.0.1\"]"));
        let new = plan(&format!("{BASE}trust_proxies [\"10.0.0.0/8\", \"192.168.0.0/16\"]"));
        let text = diff(&old, &new).render();
        assert!(text.contains("+ trust_proxies 192.168.0.0/16"), "{text}");
        assert!(text.contains("- trust_proxies 127.0.0.1"), "{text}");
        assert!(!text.contains("10.0.0.0/8"), "{text}");
    }

    #[test]
    fn listeners_admin_limits_auths_and_stores() {
        let new = BASE
            .replace("listen 127.0.0.1:8080", "listen 127.0.0.1:8080\nlisten 127.0.0.1:8081")
            .replace(
                "admin 127.0.0.1:9901",
                "admin 127.0.0.1:9902\nlimits { header_timeout 5s }",
            )
            .replace("audience \"a\"", "audience \"b\"")
            + "store shared redis \"redis://u:pw-never-shown@127.0.0.1:6379\"\n";
        let d = diff(&plan(BASE), &plan(&new));
        let text = d.render();
        for w in [
            "+ listen 127.0.0.1:8081\n",
            "- admin 127.0.0.1:9901\n+ admin 127.0.0.1:9902\n",
            "~ limits\n    ~ header_timeout: 10s -> 5s\n",
            "~ auth users (jwt)\n    ~ audience: \"a\" -> \"b\"\n",
            "+ store shared (redis \"redis://u:<redacted>@127.0.0.1:6379\")\n",
        ] {
            assert!(text.contains(w), "{w:?} not in:\n{text}");
        }
        assert!(!text.contains("pw-never-shown"), "{text}");
        assert!(!d.to_json().to_string().contains("pw-never-shown"));
    }

    #[test]
    fn a_changed_inline_secret_is_reported_without_either_value() {
        let old = BASE.replace("secret env(\"S\")", "secret \"first-secret-value\"");
        let new = BASE.replace("secret env(\"S\")", "secret \"second-secret-value\"");
        let d = diff(&plan(&old), &plan(&new));
        let text = d.render();
        let json = d.to_json().to_string();
        assert_eq!(d.entries.len(), 1, "{text}");
        assert!(
            text.contains("~ an inline secret or URL password: <redacted> -> <redacted>"),
            "{text}"
        );
        for out in [&text, &json] {
            assert!(!out.contains("first-secret") && !out.contains("second-secret"), "{out}");
        }
    }

    #[test]
    fn a_listener_that_changes_kind_is_removed_and_added() {
        let new = BASE.replace("listen 127.0.0.1:8080", "listen 127.0.0.1:8080 tcp -> orders");
        let d = diff(&plan(BASE), &plan(&new));
        let heads: Vec<String> = d.entries.iter().map(Entry::head).collect();
        assert_eq!(
            heads,
            ["- listen 127.0.0.1:8080", "+ listen 127.0.0.1:8080 tcp"],
            "{}",
            d.render()
        );
    }

    #[test]
    fn json_has_counts_for_every_kind_and_each_change() {
        let new = BASE.replace("route POST /login -> login\n", "");
        let j = diff(&plan(BASE), &plan(&new)).to_json();
        assert_eq!(j["changed"], true);
        assert_eq!(j["counts"]["route"]["removed"], 1);
        assert_eq!(j["counts"]["upstream"]["changed"], 0);
        assert_eq!(j["changes"][0]["kind"], "route");
        assert_eq!(j["changes"][0]["change"], "removed");
        assert_eq!(j["changes"][0]["name"], "POST /login");
        assert_eq!(j["changes"][0]["origin"], "app.gw:8");
    }

    /// A route's `compress` and `mirror` are compared by what they say, not
    /// by their index in the plan's tables (which another route's change
    /// can shift).
    #[test]
    fn compress_and_mirror_are_compared_by_what_they_say() {
        let old = BASE
            .replace("-> orders { auth users", "-> orders { compress { br } auth users")
            .replace(
                "route POST /login -> login",
                "route POST /login -> login { compress { zstd } }",
            );
        let new = old.replace("compress { br } ", "");
        let d = diff(&plan(&old), &plan(&new));
        assert_eq!(d.entries.len(), 1, "{}", d.render());
        assert!(d.render().contains("GET /orders/{id}"), "{}", d.render());
        assert!(d.render().contains("compress"), "{}", d.render());
        // The mirror's upstream by name: reordering upstreams changes nothing.
        let mirrored = BASE.replace(
            "route POST /login -> login",
            "route POST /login -> login { mirror orders 5% }",
        );
        let reordered = mirrored.replace(
            "upstream orders { balance p2c server 127.0.0.1:9001 server 127.0.0.1:9002 }\nupstream login { server 127.0.0.1:9101 }",
            "upstream login { server 127.0.0.1:9101 }\nupstream orders { balance p2c server 127.0.0.1:9001 server 127.0.0.1:9002 }",
        );
        assert_ne!(mirrored, reordered);
        let d = diff(&plan(&mirrored), &plan(&reordered));
        assert!(d.is_empty(), "{}", d.render());
    }

    /// Every attribute of every declaration is said in words, never as
    /// the "settings" fallback.
    #[test]
    fn each_attribute_is_said_in_words() {
        let edits: &[(&str, &str)] = &[
            ("server 127.0.0.1:9101 }", "server 127.0.0.1:9101 backup server 127.0.0.1:9102 }"),
            ("server 127.0.0.1:9101 }", "server 127.0.0.1:9101 health { path /h } }"),
            ("server 127.0.0.1:9101 }", "server 127.0.0.1:9101 eject { errors 2 for 5s } }"),
            ("server 127.0.0.1:9101 }", "server 127.0.0.1:9101 connect_timeout 1s }"),
            ("server 127.0.0.1:9101 }", "server 127.0.0.1:9101 retry 2 }"),
            ("server 127.0.0.1:9101 }", "server 127.0.0.1:9101 pool { max_idle 3 } }"),
            ("server 127.0.0.1:9101 }", "server 127.0.0.1:9101 http2 }"),
            ("algorithms HS256", "algorithms HS384"),
            ("issuer \"i\"", "issuer \"j\" leeway 5s"),
            ("secret env(\"S\")", "secret env(\"T\")"),
            ("issuer \"i\"", "issuer \"i\" from header x-token"),
            ("issuer \"i\"", "issuer \"i\" types \"jwt\""),
            ("burst 20", "burst 21"),
            ("rate 100/min", "rate 100/s"),
            ("key claim.sub", "key client_ip"),
            ("key claim.sub }", "key claim.sub max_keys 10 }"),
            ("-> login", "-> login { timeout 3s }"),
            ("-> login", "-> login { retry 1 }"),
            ("-> login", "-> login { strip_prefix /login }"),
            ("-> login", "-> login { rewrite \"/x\" }"),
            ("-> login", "-> login { set request header x-a \"1\" }"),
            ("-> login", "-> login { remove response header server }"),
            ("-> login", "-> login { cors { origins \"https://a.example\" } }"),
            ("-> login", "-> login { mirror orders 10% }"),
            ("-> login", "-> login { compress { gzip level 3 } }"),
            ("admin 127.0.0.1:9901", "admin 127.0.0.1:9901\ncompress { br }"),
            ("{ respond 404 }", "{ respond 404 \"gone\" }"),
            ("listen 127.0.0.1:8080", "listen 127.0.0.1:8080\nlimits { idle_timeout 5s max_header_size 8KiB max_body_size 1MiB max_connections 9 }"),
        ];
        for (from, to) in edits {
            let new = BASE.replacen(from, to, 1);
            assert_ne!(new, BASE, "{from}");
            let d = diff(&plan(BASE), &plan(&new));
            assert!(!d.is_empty(), "{to}: no change found");
            let text = d.render();
            assert!(!text.contains("settings"), "{to}: said as the fallback:\n{text}");
        }
    }
}
