//! The route pipeline's policies, in the order they run: auth (401),
//! require (403), limit (429). Each returns an [`Identity`] for what follows
//! (templates, hash keys, limit keys) or a ready rejection response.
//!
//! Status: `require` is evaluated here; verifying JWTs and API keys and
//! enforcing rate limits arrive with the policies issue. Until then a route
//! with `auth` fails closed (401) rather than letting unauthenticated
//! requests through, and limits are not enforced.

use crate::body::Body;
use crate::error::status_response;
use crate::metrics::Rejection;
use crate::proxy::Conn;
use crate::request::RequestCtx;
use crate::state::Runtime;
use gw_compiler::plan::{RequireOp, Route};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

/// Who the request is, as far as the policies found out.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub claims: Option<serde_json::Value>,
    pub api_key: Option<String>,
}

/// Why a policy refused the request (the response is made from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Rejection,
    /// Seconds until a rate-limited request may be retried.
    pub retry_after: Option<u64>,
}

impl Rejected {
    fn new(reason: Rejection) -> Rejected {
        Rejected {
            reason,
            retry_after: None,
        }
    }

    /// The response: 401 with `WWW-Authenticate`, 403, or 429 with `Retry-After`.
    pub fn response(&self) -> Response<Body> {
        let status = match self.reason {
            Rejection::Unauthorized => StatusCode::UNAUTHORIZED,
            Rejection::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::FORBIDDEN,
        };
        let mut response = status_response(status);
        if self.reason == Rejection::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Runs auth, require and limits for `route`.
pub fn check<B>(rt: &Runtime, route: &Route, req: &Request<B>, conn: Conn) -> Result<Identity, Rejected> {
    let _ = rt;
    let identity = Identity::default();
    if route.auth.is_some() {
        return Err(Rejected::new(Rejection::Unauthorized));
    }
    let ctx = RequestCtx {
        client_ip: conn.client.ip(),
        headers: req.headers(),
        query: req.uri().query(),
        params: None,
        claims: identity.claims.as_ref(),
        api_key: identity.api_key.as_deref(),
    };
    for r in &route.requires {
        let value = ctx.value(&r.subject);
        let ok = match (&r.op, value.as_deref()) {
            (RequireOp::Has(v), _) => has(ctx.claims, &r.subject, value.as_deref(), v),
            (RequireOp::In(vs), Some(x)) => vs.iter().any(|v| v == x),
            (RequireOp::Eq(v), Some(x)) => v == x,
            (RequireOp::Ne(v), Some(x)) => v != x,
            (RequireOp::Ne(_), None) => true,
            _ => false,
        };
        if !ok {
            return Err(Rejected::new(Rejection::Forbidden));
        }
    }
    Ok(identity)
}

/// `has`: an array claim containing `v`, or a string whose space-separated
/// words include `v` (the OAuth `scope` convention).
fn has(
    claims: Option<&serde_json::Value>,
    subject: &gw_compiler::ast::Reference,
    value: Option<&str>,
    v: &str,
) -> bool {
    if let (Some(claims), gw_compiler::ast::Reference::Claim(path)) = (claims, subject) {
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
    }
    value.is_some_and(|s| s.split(' ').any(|w| w == v))
}
