//! Runtime errors and the one place that maps them to responses. An error
//! records which side failed and whether a retry is safe when it is made;
//! response bodies never name internal addresses or causes.

use crate::body::{full, Body};
use hyper::{header, Response, StatusCode};

/// Why a request could not be served as routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No healthy server in the upstream (503).
    NoServer,
    /// TCP connect failed or was refused (502; safe to retry elsewhere).
    Connect,
    /// `connect_timeout` elapsed (504; safe to retry elsewhere).
    ConnectTimeout,
    /// The upstream did not answer within `timeout` (504).
    Timeout,
    /// The connection closed or reset after the request was sent (or while
    /// it was being sent) and before a whole response head came (502). The
    /// server may have acted on the request: a retry is safe for idempotent
    /// methods only, and only when the route's `retry` names `reset`.
    Reset,
    /// The upstream broke the protocol, or the connection once its answer
    /// had begun (502).
    Upstream,
    /// The client's body exceeded `max_body_size` (413).
    BodyTooLarge,
    /// The client's body failed while being read (400).
    ClientBody,
    /// The client's body had not all come when the route's timeout ran out
    /// (408): the client is the slow side, not the server.
    ClientTimeout,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Connect | ErrorKind::Reset | ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::ConnectTimeout | ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::ClientBody => StatusCode::BAD_REQUEST,
            ErrorKind::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The failure happened before the upstream saw the request, so another
    /// server may take it whatever the method.
    pub fn before_request_sent(self) -> bool {
        matches!(self, ErrorKind::Connect | ErrorKind::ConnectTimeout)
    }

    /// A short, stable name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoServer => "no_server",
            ErrorKind::Connect => "connect_error",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::ClientBody => "client_body",
            ErrorKind::ClientTimeout => "client_timeout",
        }
    }
}

/// A response the gateway makes itself: status and a one-line JSON body
/// naming only the status.
pub fn status_response(status: StatusCode) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("error");
    let body = format!(
        "{{\"error\":\"{}\",\"status\":{}}}\n",
        reason.to_ascii_lowercase(),
        status.as_u16()
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// [`status_response`] for a request the gateway will not serve at all (a
/// bad host, a transfer coding it does not implement): on HTTP/1.x with
/// `connection: close`, so that the connection ends after it (both HTTP/1.1
/// servers, the gateway's loop and hyper's, close on it). HTTP/2 has no
/// `Connection`: the stream ends, the connection serves on.
pub fn closing_response(status: StatusCode, version: hyper::Version) -> Response<Body> {
    let mut resp = status_response(status);
    if version < hyper::Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    resp
}

pub fn error_response(kind: ErrorKind) -> Response<Body> {
    status_response(kind.status())
}
