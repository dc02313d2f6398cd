//! CORS answered at the gateway. A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is looked up with the method it asks
//! about — so a route `GET /menu` answers the preflight of `GET /menu`
//! instead of a 405 or a catch-all — and answered `204` before auth (a
//! preflight carries no credentials). Other requests from an allowed origin
//! get `Access-Control-Allow-Origin` (with credentials and exposed headers)
//! on whatever the route answers. A disallowed origin gets no CORS headers;
//! every answer of a CORS route carries `Vary: Origin`.
//!
//! `origins *` answers `*`, or echoes the origin when `credentials` is on
//! (browsers refuse `*` with credentials). `methods` defaults to the
//! route's methods; `headers`, `expose` and `max_age` are sent only when
//! given.

use crate::body::{empty, Body};
use gw_plan::router::{lookup, Lookup};
use gw_plan::words::Method;
use gw_plan::{Cors, Plan, Route};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};

fn method_of(m: &[u8]) -> Option<Method> {
    Some(match m {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"POST" => Method::Post,
        b"PUT" => Method::Put,
        b"PATCH" => Method::Patch,
        b"DELETE" => Method::Delete,
        b"OPTIONS" => Method::Options,
        _ => return None,
    })
}

/// The request's `Origin`, kept for [`decorate`].
pub fn origin<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::ORIGIN).cloned()
}

/// The answer to a preflight for a route with `cors`, and that route's
/// index; `None` when the request is not a preflight or its route has no
/// `cors` (it is then routed as usual). `host` is the request's host
/// (`request::request_host`).
pub fn preflight<B>(plan: &Plan, req: &Request<B>, host: Option<&HeaderValue>) -> Option<(Response<Body>, usize)> {
    if req.method() != hyper::Method::OPTIONS {
        return None;
    }
    let headers = req.headers();
    let origin = headers.get(header::ORIGIN)?;
    let wanted = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let method = method_of(wanted.as_bytes())?;
    let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
    let Lookup::Matched { route: index, .. } = lookup(plan, Some(method), host, req.uri().path()) else {
        return None;
    };
    let route = plan.routes.get(index)?;
    let cors = route.cors.as_ref()?;
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let out = resp.headers_mut();
    out.insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    if let Some(allow) = allowed_origin(cors, origin) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if cors.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Ok(v) = HeaderValue::from_str(&methods(cors, route)) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if !cors.headers.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&cors.headers.join(", ")) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if let Some(max_age) = cors.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(max_age.0 / 1000));
        }
    }
    Some((resp, index))
}

/// Adds the CORS headers of route `route` (if it has `cors`) to its answer.
pub fn decorate(
    plan: &Plan,
    route: Option<usize>,
    origin: Option<HeaderValue>,
    mut resp: Response<Body>,
) -> Response<Body> {
    let Some(cors) = route.and_then(|i| plan.routes.get(i)).and_then(|r| r.cors.as_ref()) else {
        return resp;
    };
    let out = resp.headers_mut();
    add_vary_origin(out);
    let Some(allow) = origin.as_ref().and_then(|o| allowed_origin(cors, o)) else {
        return resp;
    };
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if cors.credentials {
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cors.expose.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cors.expose.join(", ")) {
            out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
    resp
}

fn add_vary_origin(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin") || v.trim() == "*");
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The `Access-Control-Allow-Origin` for `origin`, if it is allowed.
fn allowed_origin(cors: &Cors, origin: &HeaderValue) -> Option<HeaderValue> {
    let o = origin.to_str().ok()?;
    if cors.origins.iter().any(|a| a == "*") {
        return Some(if cors.credentials {
            origin.clone()
        } else {
            HeaderValue::from_static("*")
        });
    }
    let o = o.trim_end_matches('/');
    cors.origins
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
        .then(|| origin.clone())
}

/// `Access-Control-Allow-Methods`: the `methods` given, else the route's.
fn methods(cors: &Cors, route: &Route) -> String {
    if cors.methods.iter().next().is_some() {
        return cors.methods.to_allow();
    }
    match route.methods {
        Some(m) => m.to_allow(),
        None => "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".to_string(),
    }
}
