//! The route pipeline's policies, in the order they run: auth (401),
//! require (403), limit (429). [`check`] returns an [`Identity`] for what
//! follows (templates, hash keys, limit keys) or a [`Rejected`] from which the
//! response is made. CORS is answered at the gateway too ([`cors`]), before
//! routing, because a preflight names the method it wants, not its own.
//!
//! What a plan's policies need at run time — verified key sets, API key
//! digests, rate-limit state — is built once per plan into [`Policies`]; a
//! reload carries over what did not change (limit budgets, fetched JWKS).
//! A policy reads what it is given (the policies, the route, the request's
//! parts, the client's address), never the gateway's state.
//!
//! Submodules: [`jwt`] (JWT verification and the verified-token cache),
//! [`jwks`] (key sets from PEM, JWKS files and URLs, with refresh), [`api_key`],
//! [`limit`] (keyed GCRA over governor), [`redis`] (the budgets of limits
//! with a `store`, shared through Redis), [`cors`], [`demo_token`].

pub mod api_key;
pub(crate) mod cors;
pub mod demo_token;
mod jwks;
pub mod jwt;
pub mod limit;
pub mod redis;

use crate::body::Body;
use crate::error::status_response;
use crate::metrics::Rejection;
use crate::request::{ClientCert, RequestCtx};
use gw_plan::words::{CertField, Reference};
use gw_plan::{AuthKind, Plan, RequireOp, Route};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

/// Who the request is, as far as the policies found out.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// The verified token's claims (a `jwt` auth).
    pub claims: Option<Arc<serde_json::Value>>,
    /// The name of the API key that authenticated the request (an `api_key` auth).
    pub api_key: Option<String>,
}

/// Why a policy refused the request (the response is made from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Rejection,
    /// Seconds until a rate-limited request may be retried (rounded up).
    pub retry_after: Option<u64>,
    /// `RateLimit-Policy` and `RateLimit` values of the limit that refused.
    pub rate_limit: Option<(HeaderValue, HeaderValue)>,
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl Rejected {
    pub fn new(reason: Rejection) -> Rejected {
        Rejected {
            reason,
            retry_after: None,
            rate_limit: None,
        }
    }

    /// The response: 401 with `WWW-Authenticate`, 403, or 429 with
    /// `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` headers.
    /// The body names the status only.
    pub fn response(&self) -> Response<Body> {
        let status = match self.reason {
            Rejection::Unauthorized => StatusCode::UNAUTHORIZED,
            Rejection::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::FORBIDDEN,
        };
        let mut response = status_response(status);
        let headers = response.headers_mut();
        if self.reason == Rejection::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some((policy, state)) = &self.rate_limit {
            headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
            headers.insert(RATELIMIT.clone(), state.clone());
        }
        response
    }
}

/// One auth of the plan, ready to verify requests.
enum Authenticator {
    Jwt(Arc<jwt::JwtAuth>),
    ApiKey(api_key::ApiKeyAuth),
    /// Its key material could not be loaded: every request fails closed (401).
    Broken,
}

/// The run-time state of a plan's policies, indexed like the plan's `auths`
/// and `rate_limits`.
pub(crate) struct Policies {
    auths: Vec<Authenticator>,
    pub limits: Vec<Arc<limit::Limit>>,
}

impl Policies {
    /// Loads key material (resolving secrets, fetching JWKS URLs once) and
    /// makes the limiters; what `previous` has for an unchanged auth or
    /// limit is kept. Starts the background work (JWKS refresh, pruning of
    /// idle limit keys), which stops when the policies are dropped.
    pub async fn build(plan: &Plan, previous: Option<&Policies>) -> Policies {
        let mut auths = Vec::with_capacity(plan.auths.len());
        for auth in &plan.auths {
            let built = match &auth.kind {
                AuthKind::Jwt(j) => {
                    let reuse = previous.and_then(|p| p.jwt_remote(j));
                    match jwt::JwtAuth::build(&auth.name, j, reuse).await {
                        Ok(a) => Authenticator::Jwt(Arc::new(a)),
                        Err(e) => {
                            tracing::error!(auth = %auth.name, error = %e, "jwt auth cannot load its keys; its routes answer 401");
                            Authenticator::Broken
                        }
                    }
                }
                AuthKind::ApiKey(k) => match api_key::ApiKeyAuth::build(k) {
                    Ok(a) => Authenticator::ApiKey(a),
                    Err(e) => {
                        tracing::error!(auth = %auth.name, error = %e, "api_key auth cannot load its keys; its routes answer 401");
                        Authenticator::Broken
                    }
                },
            };
            auths.push(built);
        }
        // The stores some limit uses; an unchanged one keeps its connections.
        let mut stores: Vec<Option<Arc<redis::RedisStore>>> = vec![None; plan.stores.len()];
        for i in plan.rate_limits.iter().filter_map(|l| l.store) {
            let (Some(slot), Some(def)) = (stores.get_mut(i), plan.stores.get(i)) else {
                continue;
            };
            if slot.is_none() {
                let kept = previous.and_then(|p| {
                    p.limits
                        .iter()
                        .filter_map(|l| l.shared.as_ref())
                        .find(|s| s.same_as(def))
                        .cloned()
                });
                *slot = Some(kept.unwrap_or_else(|| {
                    let store = Arc::new(redis::RedisStore::new(def));
                    let warming = store.clone();
                    tokio::spawn(async move { warming.warm().await });
                    store
                }));
            }
        }
        let limits: Vec<Arc<limit::Limit>> = plan
            .rate_limits
            .iter()
            .map(|l| {
                let def = l.store.and_then(|s| plan.stores.get(s));
                let kept = previous.and_then(|p| p.limits.iter().find(|old| old.same_as(l, def)).cloned());
                if let Some(kept) = &kept {
                    // A new `max_keys` keeps the budgets already counted.
                    kept.limiter.set_max_keys(l.max_keys as usize);
                }
                kept.unwrap_or_else(|| {
                    let shared = l.store.and_then(|s| stores.get(s).cloned().flatten());
                    let local = shared.is_none();
                    let limit = Arc::new(limit::Limit::new(l, shared));
                    if local {
                        limit::spawn_pruning(&limit);
                    }
                    limit
                })
            })
            .collect();
        Policies { auths, limits }
    }

    /// The JWKS fetcher an earlier plan had for the same URL, to keep its keys.
    fn jwt_remote(&self, j: &gw_plan::Jwt) -> Option<Arc<jwks::Remote>> {
        self.auths.iter().find_map(|a| match a {
            Authenticator::Jwt(auth) => auth.remote_for(j),
            _ => None,
        })
    }
}

/// Runs auth, require and limits for `route`. The request is borrowed only
/// while the returned future is made; the future holds its headers and URI.
pub(crate) fn check<'a, B>(
    policies: &'a Policies,
    route: &'a Route,
    req: &'a Request<B>,
    client_ip: IpAddr,
    client_cert: Option<&'a ClientCert>,
) -> impl Future<Output = Result<Identity, Rejected>> + Send + 'a {
    check_parts(policies, route, req.headers(), req.uri(), client_ip, client_cert)
}

/// [`check`] over the parts of a request.
pub(crate) async fn check_parts(
    policies: &Policies,
    route: &Route,
    headers: &HeaderMap,
    uri: &Uri,
    client_ip: IpAddr,
    client_cert: Option<&ClientCert>,
) -> Result<Identity, Rejected> {
    let mut identity = Identity::default();
    if route.auth.is_none() && route.requires.is_empty() && route.limits.is_empty() {
        return Ok(identity);
    }
    if let Some(a) = route.auth {
        match policies.auths.get(a) {
            Some(Authenticator::Jwt(auth)) => {
                identity.claims = Some(auth.verify(headers, uri.query()).await?);
            }
            Some(Authenticator::ApiKey(auth)) => {
                identity.api_key = Some(auth.authenticate(headers, uri.query())?);
            }
            Some(Authenticator::Broken) | None => return Err(Rejected::new(Rejection::Unauthorized)),
        }
    }
    let ctx = RequestCtx {
        client_ip,
        headers,
        query: uri.query(),
        params: None,
        claims: identity.claims.as_deref(),
        api_key: identity.api_key.as_deref(),
        client_cert,
    };
    for r in &route.requires {
        if !require_holds(&ctx, &r.subject, &r.op) {
            return Err(Rejected::new(Rejection::Forbidden));
        }
    }
    for &l in &route.limits {
        if let Some(limit) = policies.limits.get(l) {
            match &limit.shared {
                // Boxed: a Redis round trip dwarfs the allocation, and a route
                // with local limits only does not carry its state.
                Some(store) => Box::pin(limit.check_shared(store, &limit.shared_key(&ctx))).await?,
                None => limit.check(&ctx)?,
            }
        }
    }
    Ok(identity)
}

/// Whether `subject op` holds for this request. A missing value satisfies
/// only `!=`; but a connection without a client certificate satisfies no
/// `require` on `client_cert.*` (403, whatever the operator).
pub(crate) fn require_holds(ctx: &RequestCtx<'_>, subject: &Reference, op: &RequireOp) -> bool {
    if matches!(subject, Reference::ClientCert(_)) && ctx.client_cert.is_none() {
        return false;
    }
    if let (RequireOp::InRanges(nets), Reference::ClientIp) = (op, subject) {
        let ip = ctx.client_ip.to_canonical();
        return nets.iter().any(|n| n.contains(&ip));
    }
    let value = ctx.value(subject);
    match (op, value.as_deref()) {
        (RequireOp::Has(v), _) if *subject == Reference::ClientCert(CertField::San) => {
            ctx.client_cert.is_some_and(|c| c.san.iter().any(|name| name == v))
        }
        (RequireOp::Has(v), _) => has(ctx.claims, subject, value.as_deref(), v),
        (RequireOp::In(vs), Some(x)) => vs.iter().any(|v| v == x),
        (RequireOp::InRanges(nets), Some(x)) => x
            .parse::<IpAddr>()
            .is_ok_and(|ip| nets.iter().any(|n| n.contains(&ip.to_canonical()))),
        (RequireOp::Eq(v), Some(x)) => v == x,
        (RequireOp::Ne(v), Some(x)) => v != x,
        (RequireOp::Ne(_), None) => true,
        _ => false,
    }
}

/// `has`: an array claim containing `v`, or a string whose space-separated
/// words include `v` (the OAuth `scope` convention).
fn has(claims: Option<&serde_json::Value>, subject: &Reference, value: Option<&str>, v: &str) -> bool {
    if let (Some(claims), Reference::Claim(path)) = (claims, subject) {
        let mut cur = claims;
        for k in path {
            match cur.get(k) {
                Some(next) => cur = next,
                None => return false,
            }
        }
        if let Some(items) = cur.as_array() {
            return items.iter().any(|i| i.as_str() == Some(v));
        }
        if !cur.is_string() {
            return false;
        }
    }
    value.is_some_and(|s| s.split(' ').any(|w| w == v))
}

/// Where a credential is read from, shared by both kinds of auth: the one
/// value of the header (two are refused), a query parameter or a cookie.
/// `None` when absent or ambiguous.
pub(crate) fn credential<'h>(
    from: &gw_plan::TokenFrom,
    headers: &'h HeaderMap,
    query: Option<&'h str>,
    max_len: usize,
) -> Option<std::borrow::Cow<'h, str>> {
    use gw_plan::TokenFrom;
    use std::borrow::Cow;
    let raw: Cow<'h, str> = match from {
        TokenFrom::Header { name, bearer } => {
            let mut values = headers.get_all(name.as_str()).iter();
            let value = values.next()?;
            if values.next().is_some() {
                return None;
            }
            // Refuse an oversized credential before looking inside it.
            if value.len() > max_len + 16 {
                return None;
            }
            let s = value.to_str().ok()?.trim();
            if *bearer {
                let (scheme, token) = s.split_once(' ')?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return None;
                }
                Cow::Borrowed(token.trim_start())
            } else {
                Cow::Borrowed(s)
            }
        }
        TokenFrom::Query(q) => {
            if query.is_some_and(|qs| qs.len() > 64 * 1024) {
                return None;
            }
            crate::request::query_param(query?, q)?
        }
        TokenFrom::Cookie(c) => Cow::Borrowed(crate::request::cookie(headers, c)?),
    };
    if raw.is_empty() || raw.len() > max_len {
        return None;
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_plan::words::CertField;

    fn ctx<'a>(headers: &'a HeaderMap, cert: Option<&'a ClientCert>, ip: &str) -> RequestCtx<'a> {
        RequestCtx {
            client_ip: ip.parse().expect("an address"),
            headers,
            query: None,
            params: None,
            claims: None,
            api_key: None,
            client_cert: cert,
        }
    }

    #[test]
    fn no_require_on_a_client_certificate_holds_without_one() {
        let headers = HeaderMap::new();
        let san = Reference::ClientCert(CertField::San);
        let none = ctx(&headers, None, "127.0.0.1");
        for op in [
            RequireOp::Ne("spiffe://x".into()),
            RequireOp::Has("spiffe://x".into()),
            RequireOp::Eq(String::new()),
        ] {
            assert!(!require_holds(&none, &san, &op), "{op:?}");
        }
        let cert = ClientCert {
            san: vec!["spiffe://shop/orders".into(), "orders.test".into()],
            san_text: "spiffe://shop/orders, orders.test".into(),
            ..ClientCert::default()
        };
        let some = ctx(&headers, Some(&cert), "127.0.0.1");
        assert!(require_holds(&some, &san, &RequireOp::Has("orders.test".into())));
        assert!(!require_holds(&some, &san, &RequireOp::Has("orders".into())));
        assert!(require_holds(&some, &san, &RequireOp::Ne("spiffe://x".into())));
    }

    #[test]
    fn client_ip_in_takes_ranges_of_both_families() {
        let headers = HeaderMap::new();
        let nets: Vec<ipnet::IpNet> = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32"]
            .iter()
            .map(|n| n.parse().expect("a range"))
            .collect();
        let op = RequireOp::InRanges(nets);
        for (ip, want) in [
            ("10.200.1.1", true),
            ("11.0.0.1", false),
            ("::ffff:10.1.1.1", true),
            ("2001:db8:ffff::1", true),
            ("2001:db9::1", false),
            ("192.0.2.1", true),
            ("192.0.2.2", false),
        ] {
            assert_eq!(
                require_holds(&ctx(&headers, None, ip), &Reference::ClientIp, &op),
                want,
                "{ip}"
            );
        }
    }
}
