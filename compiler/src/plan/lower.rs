//! Compiling a checked [`Config`] into a [`Plan`]: names become indices into
//! the shared tables, defaults are filled in (see [`super::defaults`]),
//! templates are split once, secrets stay references, and the routes are
//! compiled into the [`Router`].
//!
//! The checker has already proved that every name resolves and that no two
//! routes collide; if it missed something, lowering reports it (GW0101,
//! GW0201) instead of building a wrong plan.

use super::*;
use crate::ast;
use crate::codes::Code;
use crate::diagnostic::{suggest, Diagnostic};
use crate::source::{SourceMap, Span};
use router::{canonical_host, BuildError, Router};
use std::collections::HashMap;

/// Compiles `config`. `Err` holds the diagnostics that prevented it.
pub fn lower(config: &ast::Config, sources: &SourceMap) -> Result<Plan, Vec<Diagnostic>> {
    let mut cx = Lower {
        config,
        diags: Vec::new(),
        upstreams: index(config.upstreams.iter().map(|u| u.name.node.as_str())),
        auths: index(config.auths.iter().map(|a| a.name.node.as_str())),
        limits: index(config.rate_limits.iter().map(|l| l.name.node.as_str())),
        stores: index(config.stores.iter().map(|s| s.name.node.as_str())),
    };
    let listeners = config.listens.iter().filter_map(|l| cx.listener(l)).collect();
    let upstreams = config.upstreams.iter().map(upstream).collect();
    let auths = config.auths.iter().map(auth).collect();
    let rate_limits = config.rate_limits.iter().map(|l| cx.rate_limit(l)).collect();
    let stores = config.stores.iter().map(store).collect();
    let mut compressions: Vec<Compress> = config.compress.first().map(compress).into_iter().collect();
    let top_compress = (!compressions.is_empty()).then_some(0);
    let mut routes: Vec<Route> = config.routes.iter().map(|r| cx.route(r, sources)).collect();
    for (route, r) in routes.iter_mut().zip(&config.routes) {
        route.compress = match r.compress.as_deref() {
            None => top_compress.filter(|_| matches!(route.target, Target::Upstream { .. })),
            Some(ast::RouteCompress::Off(_)) => None,
            Some(ast::RouteCompress::On(c)) => {
                compressions.push(compress(c));
                Some(compressions.len() - 1)
            }
        };
    }
    let router = match Router::build(&routes) {
        Ok(r) => Some(r),
        Err(errors) => {
            for e in errors {
                cx.build_error(e);
            }
            None
        }
    };
    match router {
        Some(router) if cx.diags.is_empty() => Ok(Plan {
            format_version: FORMAT_VERSION,
            listeners,
            admin: config.admins.iter().map(|a| a.node.to_string()).collect(),
            limits: server_limits(&config.limits),
            upstreams,
            auths,
            rate_limits,
            stores,
            routes,
            trust_proxies: trust_proxies(&config.trust_proxies),
            compressions,
            router,
        }),
        _ => Err(cx.diags),
    }
}

/// The `trust_proxies` ranges, each once, in the order written.
fn trust_proxies(ranges: &[crate::source::Spanned<ipnet::IpNet>]) -> Vec<ipnet::IpNet> {
    let mut out: Vec<ipnet::IpNet> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if !out.contains(&r.node) {
            out.push(r.node);
        }
    }
    out
}

/// `compress { ... }` with its defaults filled in.
fn compress(c: &ast::Compress) -> Compress {
    Compress {
        codings: match c.codings.is_empty() {
            true => vec![Coding::Gzip, Coding::Br, Coding::Zstd],
            false => c.codings.iter().map(|c| c.node).collect(),
        },
        level: c.level.as_ref().map_or(defaults::COMPRESS_LEVEL, |l| l.node as u32),
        min_size: c.min_size.as_ref().map_or(defaults::COMPRESS_MIN_SIZE, |m| m.node),
        types: match c.types.is_empty() {
            true => defaults::COMPRESS_TYPES.iter().map(|t| t.to_string()).collect(),
            false => c.types.iter().map(|t| t.node.clone()).collect(),
        },
    }
}

fn index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut map = HashMap::new();
    for (i, n) in names.enumerate() {
        map.entry(n).or_insert(i);
    }
    map
}

struct Lower<'c> {
    config: &'c ast::Config,
    diags: Vec<Diagnostic>,
    upstreams: HashMap<&'c str, usize>,
    auths: HashMap<&'c str, usize>,
    limits: HashMap<&'c str, usize>,
    stores: HashMap<&'c str, usize>,
}

impl<'c> Lower<'c> {
    fn resolve(&mut self, what: &str, table: Table, name: &ast::Name) -> Option<usize> {
        let map = match table {
            Table::Upstream => &self.upstreams,
            Table::Auth => &self.auths,
            Table::Limit => &self.limits,
            Table::Store => &self.stores,
        };
        if let Some(&i) = map.get(name.node.as_str()) {
            return Some(i);
        }
        let typo = suggest(&name.node, map.keys().copied());
        self.diags.push(
            Diagnostic::new(Code::GW0101, format!("unknown {what} `{}`", name.node))
                .primary(name.span, format!("no {what} of this name"))
                .did_you_mean(name.span, typo),
        );
        None
    }

    fn build_error(&mut self, e: BuildError) {
        let routes = &self.config.routes;
        match e {
            BuildError::Collision { first, second } => {
                let (Some(a), Some(b)) = (routes.get(first), routes.get(second)) else {
                    return;
                };
                self.diags.push(
                    Diagnostic::new(
                        Code::GW0201,
                        format!(
                            "route `{}` claims the same requests as an earlier route with equal precedence",
                            b.path.node.raw
                        ),
                    )
                    .primary(b.head_span, "collides")
                    .secondary(a.head_span, "first defined here")
                    .help("give the routes different methods, hosts or path shapes"),
                );
            }
            BuildError::BadPattern { route } => {
                if let Some(r) = routes.get(route) {
                    self.diags.push(
                        Diagnostic::new(Code::GW0003, format!("invalid path pattern `{}`", r.path.node.raw))
                            .primary(r.path.span, "not a path pattern"),
                    );
                }
            }
        }
    }

    fn listener(&mut self, l: &ast::Listen) -> Option<Listener> {
        let kind = match &l.kind {
            ast::ListenKind::Http => ListenerKind::Http,
            ast::ListenKind::Tls {
                certs,
                client_ca,
                client_auth,
                ..
            } => ListenerKind::Tls {
                client_auth: client_ca.as_ref().map(|ca| gw_plan::ClientAuth {
                    ca: secret(&ca.node),
                    required: client_auth.as_ref().is_none_or(|how| how.node),
                }),
                certificates: certs
                    .iter()
                    .map(|c| Certificate {
                        cert: secret(&c.cert.node),
                        key: secret(&c.key.node),
                        sni: c.sni.as_ref().map(|s| canonical_host(&s.node)),
                    })
                    .collect(),
            },
            ast::ListenKind::Tcp { upstream } => ListenerKind::Tcp {
                upstream: self.resolve("upstream", Table::Upstream, upstream)?,
            },
        };
        Some(Listener {
            address: l.address.node.to_string(),
            kind,
            proxy_protocol: l.proxy_protocol,
        })
    }

    fn rate_limit(&mut self, l: &ast::Limit) -> RateLimit {
        let (count, per) = match &l.rate {
            Some(r) => (r.node.count, Ms::from_duration(r.node.per)),
            None => (1, Ms::secs(1)),
        };
        RateLimit {
            name: l.name.node.clone(),
            count,
            per,
            burst: l
                .burst
                .as_ref()
                .map_or_else(|| u32::try_from(count.max(1)).unwrap_or(u32::MAX), |b| b.node),
            key: match l.key.as_ref().map(|k| &k.node) {
                None | Some(ast::LimitKey::ClientIp) => LimitKey::ClientIp,
                Some(ast::LimitKey::None) => LimitKey::None,
                Some(ast::LimitKey::ApiKey) => LimitKey::ApiKey,
                Some(ast::LimitKey::Ref(r)) => LimitKey::Ref(r.clone()),
            },
            store: l.store.as_ref().and_then(|s| self.resolve("store", Table::Store, s)),
            max_keys: l.max_keys.as_ref().map_or(defaults::LIMIT_MAX_KEYS, |m| m.node),
        }
    }

    fn route(&mut self, r: &ast::Route, sources: &SourceMap) -> Route {
        let target = if let Some(a) = &r.aggregate {
            Target::Aggregate(Aggregate {
                parts: a
                    .parts
                    .iter()
                    .map(|p| AggregatePart {
                        name: p.name.node.clone(),
                        upstream: self.resolve("upstream", Table::Upstream, &p.upstream).unwrap_or(0),
                        method: p.method.node,
                        path: template(&p.path.node),
                        optional: p.optional,
                    })
                    .collect(),
                timeout: a.timeout.as_ref().map(|t| Ms::from_duration(t.node)),
            })
        } else if let Some(resp) = &r.respond {
            Target::Respond {
                status: resp.status.node,
                body: resp.body.as_ref().map(|b| b.node.clone()),
            }
        } else if let Some(red) = &r.redirect {
            Target::Redirect {
                status: red.status.node,
                location: template(&red.location.node),
            }
        } else if let Some(sp) = &r.split {
            Target::Split(Split {
                sides: sp
                    .sides
                    .iter()
                    .map(|s| SplitSide {
                        upstream: self.resolve("upstream", Table::Upstream, &s.upstream).unwrap_or(0),
                        weight: s.weight.node,
                    })
                    .collect(),
                sticky: sp.sticky.as_ref().map(|k| k.node.clone()),
            })
        } else if let Some(up) = &r.upstream {
            Target::Upstream {
                upstream: self.resolve("upstream", Table::Upstream, up).unwrap_or(0),
            }
        } else {
            self.diags.push(
                Diagnostic::new(Code::GW0202, format!("route `{}` has no target", r.path.node.raw))
                    .primary(r.head_span, "no target")
                    .help("add `-> UPSTREAM`, or a `respond`, `redirect` or `aggregate` block"),
            );
            Target::Respond {
                status: 404,
                body: None,
            }
        };
        let (mut request_headers, mut response_headers) = (Vec::new(), Vec::new());
        for t in &r.transforms {
            let name = t.name.node.to_ascii_lowercase();
            let op = match &t.value {
                Some(v) => HeaderOp::Set {
                    name,
                    value: template(&v.node),
                },
                None => HeaderOp::Remove { name },
            };
            match t.direction {
                ast::Direction::Request => request_headers.push(op),
                ast::Direction::Response => response_headers.push(op),
            }
        }
        Route {
            path: r.path.node.raw.clone(),
            host: r.host.as_ref().map(|h| canonical_host(&h.node)),
            methods: r.methods.as_ref().map(|m| MethodSet::of(m.node.iter().copied())),
            params: r.path.node.params().map(str::to_string).collect(),
            when: r
                .when
                .iter()
                .filter_map(|c| Condition::new(c.subject.node.clone(), c.op.clone()).ok())
                .collect(),
            auth: r.auth.as_ref().and_then(|a| self.resolve("auth", Table::Auth, a)),
            requires: r
                .requires
                .iter()
                .map(|q| Require {
                    subject: q.subject.node.clone(),
                    op: match &q.op {
                        ast::RequireOp::Has(v) => RequireOp::Has(v.clone()),
                        ast::RequireOp::In(v) => RequireOp::In(v.clone()),
                        ast::RequireOp::InRanges(v) => RequireOp::InRanges(v.clone()),
                        ast::RequireOp::Eq(v) => RequireOp::Eq(v.clone()),
                        ast::RequireOp::Ne(v) => RequireOp::Ne(v.clone()),
                    },
                })
                .collect(),
            limits: r
                .limits
                .iter()
                .filter_map(|l| self.resolve("limit", Table::Limit, l))
                .collect(),
            request_headers,
            response_headers,
            strip_prefix: r.strip_prefix.as_ref().map(|s| s.node.clone()),
            rewrite: r.rewrite.as_ref().map(|t| template(&t.node)),
            timeout: r.timeout.as_ref().map(|t| Ms::from_duration(t.node)),
            retry: r.retry.as_ref().map(retry),
            cors: r.cors.as_ref().map(|c| Cors {
                origins: c.origins.iter().map(|o| o.node.clone()).collect(),
                methods: MethodSet::of(c.methods.iter().map(|m| m.node)),
                headers: c.headers.iter().map(|h| h.node.to_ascii_lowercase()).collect(),
                expose: c.expose.iter().map(|h| h.node.to_ascii_lowercase()).collect(),
                credentials: c.credentials.is_some(),
                max_age: c.max_age.as_ref().map(|d| Ms::from_duration(d.node)),
            }),
            target,
            compress: None,
            cache: r.cache.as_ref().map(|c| Cache {
                ttl: c
                    .ttl
                    .as_ref()
                    .map_or(defaults::CACHE_TTL, |d| Ms::from_duration(d.node)),
                max_size: c.max_size.as_ref().map_or(defaults::CACHE_MAX_SIZE, |m| m.node),
            }),
            mirror: r.mirror.as_ref().and_then(|m| {
                Some(Mirror {
                    upstream: self.resolve("upstream", Table::Upstream, &m.upstream)?,
                    percent: m.percent.node,
                })
            }),
            origin: origin(sources, r.head_span),
        }
    }
}

#[derive(Clone, Copy)]
enum Table {
    Upstream,
    Auth,
    Limit,
    Store,
}

/// Where a span was written.
pub fn origin(sources: &SourceMap, span: Span) -> Origin {
    if sources.files().nth(span.file.0 as usize).is_none() {
        return Origin::default();
    }
    let (line, column) = sources.line_col(span);
    Origin {
        file: sources.get(span.file).name.clone(),
        line: line as u32,
        column: column as u32,
    }
}

fn secret(s: &ast::Source) -> Secret {
    match s {
        ast::Source::Inline(v) => Secret::Inline(v.clone()),
        ast::Source::Env(n) => Secret::Env(n.clone()),
        ast::Source::File(p) => Secret::File(p.clone()),
    }
}

/// Splits a template once into literal and reference pieces (adjacent
/// literals merged).
pub fn template(t: &ast::Template) -> Template {
    let mut pieces: Vec<Piece> = Vec::new();
    for p in &t.parts {
        match p {
            ast::TemplatePart::Literal(l) => match pieces.last_mut() {
                Some(Piece::Literal(prev)) => prev.push_str(l),
                _ if l.is_empty() => {}
                _ => pieces.push(Piece::Literal(l.clone())),
            },
            ast::TemplatePart::Ref(r) => pieces.push(Piece::Ref(r.node.clone())),
        }
    }
    Template { pieces }
}

fn ms(d: &Option<crate::source::Spanned<std::time::Duration>>, default: Ms) -> Ms {
    d.as_ref().map_or(default, |d| Ms::from_duration(d.node))
}

fn retry(r: &ast::Retry) -> Retry {
    Retry {
        attempts: r.attempts.node,
        on: r
            .on
            .iter()
            .map(|o| match o.node {
                ast::RetryOn::ConnectError => RetryOn::ConnectError,
                ast::RetryOn::Reset => RetryOn::Reset,
                ast::RetryOn::Timeout => RetryOn::Timeout,
                ast::RetryOn::Status(s) => RetryOn::Status(s),
            })
            .collect(),
        budget_percent: r.budget.as_ref().map_or(defaults::RETRY_BUDGET_PERCENT, |b| b.node),
    }
}

fn server_limits(blocks: &[ast::ServerLimits]) -> ServerLimits {
    let mut l = ServerLimits::default();
    // The first block that sets a bound wins (the checker reports repeats).
    for b in blocks.iter().rev() {
        if let Some(v) = &b.header_timeout {
            l.header_timeout = Ms::from_duration(v.node);
        }
        if let Some(v) = &b.idle_timeout {
            l.idle_timeout = Ms::from_duration(v.node);
        }
        if let Some(v) = &b.max_header_size {
            l.max_header_size = v.node;
        }
        if let Some(v) = &b.max_body_size {
            l.max_body_size = v.node;
        }
        if let Some(v) = &b.max_connections {
            l.max_connections = v.node;
        }
    }
    l
}

fn upstream(u: &ast::Upstream) -> Upstream {
    Upstream {
        name: u.name.node.clone(),
        balance: match u.balance.as_ref().map(|b| &b.node) {
            None | Some(ast::Balance::RoundRobin) => Balance::RoundRobin,
            Some(ast::Balance::LeastConn) => Balance::LeastConn,
            Some(ast::Balance::Random) => Balance::Random,
            Some(ast::Balance::P2c) => Balance::P2c,
            Some(ast::Balance::IpHash) => Balance::IpHash,
            Some(ast::Balance::Hash(r)) => Balance::Hash(r.node.clone()),
        },
        servers: u
            .servers
            .iter()
            .map(|s| Server {
                address: s.address.node.to_string(),
                weight: s.weight.as_ref().map_or(1, |w| w.node),
                backup: s.backup.is_some(),
                resolve: s.resolve.as_ref().map(|r| Ms::from_duration(r.node)),
            })
            .collect(),
        health: u.health.as_ref().map(|h| Health {
            path: h.path.as_ref().map_or_else(|| "/".to_string(), |p| p.node.clone()),
            interval: ms(&h.interval, defaults::HEALTH_INTERVAL),
            timeout: ms(&h.timeout, defaults::HEALTH_TIMEOUT),
            expect: h.expect.as_ref().map_or(defaults::HEALTH_EXPECT, |e| e.node),
            unhealthy: h.unhealthy.as_ref().map_or(defaults::HEALTH_UNHEALTHY, |v| v.node),
            healthy: h.healthy.as_ref().map_or(defaults::HEALTH_HEALTHY, |v| v.node),
        }),
        eject: u.eject.as_ref().map(|e| Eject {
            errors: e.errors.as_ref().map_or(defaults::EJECT_ERRORS, |v| v.node),
            duration: ms(&e.duration, defaults::EJECT_FOR),
        }),
        connect_timeout: ms(&u.connect_timeout, defaults::CONNECT_TIMEOUT),
        timeout: ms(&u.timeout, defaults::UPSTREAM_TIMEOUT),
        retry: u.retry.as_ref().map(retry),
        pool: Pool {
            max_idle: u
                .pool
                .as_ref()
                .and_then(|p| p.max_idle.as_ref())
                .map_or(defaults::POOL_MAX_IDLE, |v| v.node),
            idle_timeout: u
                .pool
                .as_ref()
                .and_then(|p| p.idle_timeout.as_ref())
                .map_or(defaults::POOL_IDLE_TIMEOUT, |v| Ms::from_duration(v.node)),
        },
        http2: u.http2.is_some(),
        tls: u.tls.as_ref().map(upstream_tls),
        host_header: match u.host_header.as_ref().map(|h| &h.node) {
            None | Some(ast::HostHeader::Client) => gw_plan::HostHeader::Client,
            Some(ast::HostHeader::Server) => gw_plan::HostHeader::Server,
            Some(ast::HostHeader::Fixed(n)) => gw_plan::HostHeader::Fixed(n.clone()),
        },
    }
}

fn token_from(f: &Option<crate::source::Spanned<ast::TokenFrom>>, default: TokenFrom) -> TokenFrom {
    match f.as_ref().map(|f| &f.node) {
        None => default,
        Some(ast::TokenFrom::Header { name, bearer }) => TokenFrom::Header {
            name: name.to_ascii_lowercase(),
            bearer: *bearer,
        },
        Some(ast::TokenFrom::Query(q)) => TokenFrom::Query(q.clone()),
        Some(ast::TokenFrom::Cookie(c)) => TokenFrom::Cookie(c.clone()),
    }
}

fn auth(a: &ast::Auth) -> Auth {
    let kind = match &a.kind {
        ast::AuthKind::Jwt(j) => AuthKind::Jwt(Jwt {
            issuer: j.issuer.as_ref().map(|s| s.node.clone()).unwrap_or_default(),
            audience: j.audience.as_ref().map(|s| s.node.clone()).unwrap_or_default(),
            algorithms: j
                .algorithms
                .as_ref()
                .map(|l| l.node.iter().map(|a| a.node).collect())
                .unwrap_or_default(),
            key: match j.key.as_ref().map(|k| &k.node) {
                Some(ast::KeySource::Secret(s)) => JwtKey::Secret(secret(s)),
                Some(ast::KeySource::PublicKey(s)) => JwtKey::PublicKey(secret(s)),
                Some(ast::KeySource::JwksFile(s)) => JwtKey::JwksFile(secret(s)),
                Some(ast::KeySource::JwksUrl { url, refresh }) => JwtKey::JwksUrl {
                    url: url.clone(),
                    refresh: refresh.map_or(defaults::JWKS_REFRESH, Ms::from_duration),
                },
                // GW0402 rules this out; an empty key set rejects every token.
                None => JwtKey::JwksFile(Secret::Inline(String::new())),
            },
            leeway: ms(&j.leeway, defaults::JWT_LEEWAY),
            types: j.types.as_ref().map(|t| t.node.clone()).unwrap_or_default(),
            from: token_from(
                &j.from,
                TokenFrom::Header {
                    name: "authorization".into(),
                    bearer: true,
                },
            ),
        }),
        ast::AuthKind::ApiKey(k) => AuthKind::ApiKey(ApiKey {
            from: token_from(
                &k.from,
                TokenFrom::Header {
                    name: defaults::API_KEY_HEADER.into(),
                    bearer: false,
                },
            ),
            keys: match k.keys.as_ref().map(|k| &k.node) {
                Some(ast::ApiKeys::File(s)) => ApiKeys::File(secret(s)),
                Some(ast::ApiKeys::Inline(list)) => ApiKeys::Inline(list.iter().cloned().map(Secret::Inline).collect()),
                None => ApiKeys::Inline(Vec::new()),
            },
        }),
    };
    Auth {
        name: a.name.node.clone(),
        kind,
    }
}

/// An upstream's or a store's `tls` block.
fn upstream_tls(t: &ast::UpstreamTls) -> gw_plan::UpstreamTls {
    gw_plan::UpstreamTls {
        ca: t.ca.as_ref().map(|c| secret(&c.node)),
        server_name: t.server_name.as_ref().map(|s| s.node.clone()),
        client_cert: t.client_cert.as_ref().map(|c| gw_plan::ClientCertificate {
            cert: secret(&c.cert.node),
            key: secret(&c.key.node),
        }),
    }
}

fn store(s: &ast::Store) -> Store {
    let (url, url_from) = match s.url.as_ref().map(|u| &u.node) {
        Some(ast::Source::Inline(u)) => (u.clone(), None),
        Some(other) => (String::new(), Some(secret(other))),
        None => (String::new(), None),
    };
    Store {
        name: s.name.node.clone(),
        url,
        url_from,
        tls: s.tls.as_ref().map(upstream_tls),
        timeout: ms(&s.timeout, defaults::STORE_TIMEOUT),
        on_error_allow: s.on_error_allow.as_ref().map(|v| v.node) != Some(false),
    }
}
