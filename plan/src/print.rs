//! The plan as a tree a person reads at a glance (`gwc plan`): listeners,
//! then host → path tree (children in precedence order: literal, `{param}`,
//! `{*rest}`) → methods → route → policies in the order they run → target
//! and strategy; then the shared upstreams, auths, limits and stores.
//! Secrets appear as `env("NAME")` or `file("path")`, never as values.

use crate::*;
use std::fmt::Write;

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = write_plan(&mut out, plan);
    out
}

fn write_plan(out: &mut String, plan: &Plan) -> fmt::Result {
    writeln!(out, "plan (format version {})", plan.format_version)?;
    for l in &plan.listeners {
        match &l.kind {
            ListenerKind::Http if l.proxy_protocol => writeln!(out, "listen {} http proxy_protocol", l.address)?,
            ListenerKind::Http => writeln!(out, "listen {} http", l.address)?,
            ListenerKind::Tls {
                certificates,
                client_auth,
            } => {
                let proxy = if l.proxy_protocol { " proxy_protocol" } else { "" };
                writeln!(out, "listen {} tls{proxy}", l.address)?;
                for c in certificates {
                    let sni = c.sni.as_deref().map_or("default".to_string(), |s| format!("sni {s}"));
                    writeln!(out, "  {sni}: cert {} key {}", c.cert, c.key)?;
                }
                if let Some(ca) = client_auth {
                    let how = if ca.required { "required" } else { "optional" };
                    writeln!(out, "  client_ca {} client_auth {how}", ca.ca)?;
                }
            }
            ListenerKind::Tcp { upstream } => {
                writeln!(out, "listen {} tcp -> {}", l.address, upstream_name(plan, *upstream))?
            }
        }
    }
    for a in &plan.admin {
        writeln!(out, "admin {a}")?;
    }
    if !plan.trust_proxies.is_empty() {
        let nets: Vec<String> = plan.trust_proxies.iter().map(crate::range_text).collect();
        writeln!(out, "trust_proxies {}", nets.join(", "))?;
    }
    let l = &plan.limits;
    writeln!(
        out,
        "limits header_timeout {} idle_timeout {} max_header_size {} max_body_size {} max_connections {}",
        l.header_timeout,
        l.idle_timeout,
        size(l.max_header_size),
        size(l.max_body_size),
        l.max_connections
    )?;

    writeln!(out)?;
    writeln!(
        out,
        "routes (children in precedence order: literal, {{param}}, {{*rest}})"
    )?;
    if plan.routes.is_empty() {
        writeln!(out, "  (none: every request gets 404)")?;
    }
    for host in plan.router.hosts() {
        writeln!(out, "  host {host}")?;
        write_tree(out, plan, Some(host))?;
    }
    if plan.routes.iter().any(|r| r.host.is_none()) {
        writeln!(out, "  any host")?;
        write_tree(out, plan, None)?;
    }

    if !plan.upstreams.is_empty() {
        writeln!(out)?;
        writeln!(out, "upstreams")?;
    }
    for u in &plan.upstreams {
        write_upstream(out, u)?;
    }
    if !plan.auths.is_empty() {
        writeln!(out)?;
        writeln!(out, "auths")?;
    }
    for a in &plan.auths {
        match &a.kind {
            AuthKind::Jwt(j) => {
                let algs: Vec<&str> = j.algorithms.iter().map(|a| a.as_str()).collect();
                let types = if j.types == crate::words::TokenTypes::default_list() {
                    String::new()
                } else {
                    format!(" types {}", j.types)
                };
                writeln!(
                    out,
                    "  {} jwt: issuer {:?} audience {:?} algorithms {} {} leeway {} from {}{types}",
                    a.name,
                    j.issuer,
                    j.audience,
                    algs.join(", "),
                    j.key,
                    j.leeway,
                    j.from
                )?;
            }
            AuthKind::ApiKey(k) => {
                let keys = match &k.keys {
                    ApiKeys::File(s) => format!("keys {s}"),
                    ApiKeys::Inline(list) => format!("{} inline keys (redacted)", list.len()),
                };
                writeln!(out, "  {} api_key: from {} {keys}", a.name, k.from)?;
            }
        }
    }
    if !plan.rate_limits.is_empty() {
        writeln!(out)?;
        writeln!(out, "limits")?;
    }
    for l in &plan.rate_limits {
        writeln!(out, "  {}", rate_limit(plan, l))?;
    }
    if !plan.stores.is_empty() {
        writeln!(out)?;
        writeln!(out, "stores")?;
    }
    for s in &plan.stores {
        writeln!(
            out,
            "  {} redis {} timeout {} on_error {}{}",
            s.name,
            s.url_shown(),
            s.timeout,
            if s.on_error_allow { "allow" } else { "deny" },
            if s.tls.is_some() { " tls" } else { "" }
        )?;
    }
    Ok(())
}

/// A byte count as the language writes it (`1MiB`, `512B`).
pub fn size(n: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= scale && n.is_multiple_of(scale) {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n}B")
}

fn upstream_name(plan: &Plan, i: usize) -> &str {
    plan.upstreams.get(i).map_or("?", |u| u.name.as_str())
}

fn rate_limit(plan: &Plan, l: &RateLimit) -> String {
    let store = l
        .store
        .and_then(|s| plan.stores.get(s))
        .map_or(String::new(), |s| format!(" store {}", s.name));
    let per = match l.per.0 {
        1_000 => "s".to_string(),
        60_000 => "min".to_string(),
        3_600_000 => "hour".to_string(),
        _ => l.per.to_string(),
    };
    // The cap on keys in memory means nothing for a limit kept in Redis.
    let max_keys = if l.store.is_some() {
        String::new()
    } else {
        format!(" max_keys {}", l.max_keys)
    };
    format!(
        "{} (rate {}/{per} burst {} key {}{store}{max_keys})",
        l.name, l.count, l.burst, l.key
    )
}

fn write_tree(out: &mut String, plan: &Plan, host: Option<&str>) -> fmt::Result {
    let mut result = Ok(());
    plan.router.walk(host, &mut |depth, label, routes| {
        if result.is_err() {
            return;
        }
        result = write_node(out, plan, depth, label, &routes);
    });
    result
}

fn write_node(
    out: &mut String,
    plan: &Plan,
    depth: usize,
    label: &str,
    routes: &[(Option<MethodSet>, usize)],
) -> fmt::Result {
    let indent = "  ".repeat(depth + 1);
    if depth > 0 {
        writeln!(out, "{indent}/{label}")?;
    } else if !routes.is_empty() {
        // Routes on the root have no segment (cannot happen: every path has one).
        writeln!(out, "{indent}/")?;
    }
    for (methods, i) in routes {
        let Some(route) = plan.routes.get(*i) else { continue };
        let methods = methods.map_or("*".to_string(), |m| m.to_allow());
        writeln!(out, "{indent}  {methods}  route `{}` ({})", route.head(), route.origin)?;
        for line in pipeline(plan, route) {
            writeln!(out, "{indent}      {line}")?;
        }
    }
    Ok(())
}

/// A `cors` block's attributes as the language writes them: `origins
/// https://a.example methods GET, POST credentials max_age 600`.
pub fn cors(c: &Cors) -> String {
    let mut s = format!("origins {}", c.origins.join(", "));
    if !c.methods.is_empty() {
        s.push_str(&format!(" methods {}", c.methods));
    }
    if !c.headers.is_empty() {
        s.push_str(&format!(" headers {}", c.headers.join(", ")));
    }
    if !c.expose.is_empty() {
        s.push_str(&format!(" expose {}", c.expose.join(", ")));
    }
    if c.credentials {
        s.push_str(" credentials");
    }
    if let Some(m) = c.max_age {
        s.push_str(&format!(" max_age {m}"));
    }
    s
}

/// The route's policies in the order they run, then its target.
pub fn pipeline(plan: &Plan, r: &Route) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(c) = &r.cors {
        let s = format!("cors {}", cors(c));
        lines.push(s);
    }
    if let Some(a) = r.auth.and_then(|a| plan.auths.get(a)) {
        let kind = match &a.kind {
            AuthKind::Jwt(_) => "jwt",
            AuthKind::ApiKey(_) => "api_key",
        };
        lines.push(format!("auth {} ({kind})", a.name));
    }
    for q in &r.requires {
        lines.push(q.to_string());
    }
    for l in r.limits.iter().filter_map(|l| plan.rate_limits.get(*l)) {
        lines.push(format!("limit {}", rate_limit(plan, l)));
    }
    for h in &r.request_headers {
        lines.push(header_op("request", h));
    }
    if let Some(p) = &r.strip_prefix {
        lines.push(format!("strip_prefix {p}"));
    }
    if let Some(t) = &r.rewrite {
        lines.push(format!("rewrite {t}"));
    }
    if let Some(t) = r.timeout {
        lines.push(format!("timeout {t}"));
    }
    if let Some(t) = &r.retry {
        lines.push(t.to_string());
    }
    lines.push(target(plan, r));
    if let Some(m) = &r.mirror {
        lines.push(format!("mirror {} {}%", upstream_name(plan, m.upstream), m.percent));
    }
    if let Some(c) = r.compress.and_then(|c| plan.compressions.get(c)) {
        lines.push(c.to_string());
    }
    if let Some(c) = &r.cache {
        lines.push(c.to_string());
    }
    for h in &r.response_headers {
        lines.push(header_op("response", h));
    }
    lines
}

fn header_op(direction: &str, h: &HeaderOp) -> String {
    match h {
        HeaderOp::Set { name, value } => format!("set {direction} header {name} {value}"),
        HeaderOp::Remove { name } => format!("remove {direction} header {name}"),
    }
}

/// `-> orders (round_robin over 127.0.0.1:9001, ...)` and the like.
pub fn target(plan: &Plan, r: &Route) -> String {
    match &r.target {
        Target::Upstream { upstream } => match plan.upstreams.get(*upstream) {
            Some(u) => format!("-> {} ({})", u.name, strategy(u)),
            None => "-> ?".into(),
        },
        Target::Split(sp) => {
            let mut s = String::from("split {");
            for side in &sp.sides {
                match plan.upstreams.get(side.upstream) {
                    Some(u) => s.push_str(&format!(" {} {}% ({});", u.name, side.weight, strategy(u))),
                    None => s.push_str(&format!(" ? {}%;", side.weight)),
                }
            }
            if let Some(k) = &sp.sticky {
                s.push_str(&format!(" sticky {k}"));
            }
            s.push_str(" }");
            s
        }
        Target::Aggregate(a) => {
            let mut s = String::from("aggregate {");
            for p in &a.parts {
                s.push_str(&format!(
                    " {} {} {} {}{};",
                    p.name,
                    upstream_name(plan, p.upstream),
                    p.method.as_str(),
                    p.path,
                    if p.optional { " optional" } else { "" }
                ));
            }
            if let Some(t) = a.timeout {
                s.push_str(&format!(" timeout {t}"));
            }
            s.push_str(" }");
            s
        }
        Target::Respond { status, body: Some(b) } => format!("respond {status} {b:?}"),
        Target::Respond { status, body: None } => format!("respond {status}"),
        Target::Redirect { status, location } => format!("redirect {status} {location}"),
    }
}

/// `round_robin over 127.0.0.1:9001, 127.0.0.1:9002 weight 3, 127.0.0.1:9003 backup`
pub fn strategy(u: &Upstream) -> String {
    let servers: Vec<String> = u
        .servers
        .iter()
        .map(|s| {
            let mut t = s.address.clone();
            if s.weight != 1 {
                t.push_str(&format!(" weight {}", s.weight));
            }
            if s.backup {
                t.push_str(" backup");
            }
            t
        })
        .collect();
    format!("{} over {}", u.balance, servers.join(", "))
}

fn write_upstream(out: &mut String, u: &Upstream) -> fmt::Result {
    writeln!(out, "  {}: {}", u.name, strategy(u))?;
    writeln!(
        out,
        "    connect_timeout {} timeout {} pool max_idle {} idle_timeout {}{}",
        u.connect_timeout,
        u.timeout,
        u.pool.max_idle,
        u.pool.idle_timeout,
        if u.http2 { " http2" } else { "" }
    )?;
    if let Some(t) = &u.tls {
        let mut line = String::from("    tls");
        match &t.ca {
            Some(ca) => line.push_str(&format!(" ca {ca}")),
            None => line.push_str(" (system roots)"),
        }
        if let Some(n) = &t.server_name {
            line.push_str(&format!(" server_name {n:?}"));
        }
        if let Some(c) = &t.client_cert {
            line.push_str(&format!(" cert {} key {}", c.cert, c.key));
        }
        writeln!(out, "{line}")?;
    }
    match &u.host_header {
        HostHeader::Client => {}
        HostHeader::Server => writeln!(out, "    host_header server")?,
        HostHeader::Fixed(n) => writeln!(out, "    host_header {n:?}")?,
    }
    if let Some(h) = &u.health {
        writeln!(
            out,
            "    health path {} interval {} timeout {} expect {}..{} unhealthy {} healthy {}",
            h.path, h.interval, h.timeout, h.expect.0, h.expect.1, h.unhealthy, h.healthy
        )?;
    }
    match &u.eject {
        Some(e) => writeln!(out, "    eject errors {} for {}", e.errors, e.duration)?,
        None => writeln!(
            out,
            "    eject (default) after {} failure to reach a server, for {}",
            crate::defaults::IMPLICIT_EJECT_ERRORS,
            crate::defaults::IMPLICIT_EJECT_FOR
        )?,
    }
    if let Some(r) = &u.retry {
        writeln!(out, "    {r}")?;
    }
    for s in u.servers.iter().filter(|s| s.resolve.is_some()) {
        if let Some(every) = s.resolve {
            writeln!(out, "    {} re-resolved every {every}", s.address)?;
        }
    }
    Ok(())
}
