//! The language's words that both the syntax tree and the plan use: HTTP
//! methods, request references (`claim.sub`, `header.x-user-id`), JWT
//! algorithms and token types. The compiler's `ast` re-exports them, so a
//! route's method is one type from the parser to the runtime.

/// HTTP methods a route or test names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
}

impl Method {
    pub const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Connect,
        Method::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Safe to retry without the route's say-so.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
        )
    }
}

/// Where a request value comes from: `claim.sub`, `header.x-user-id`, ...
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// `claim.a.b` — a (nested) JWT claim.
    Claim(Vec<String>),
    /// `header.x-user-id` (lower-cased).
    Header(String),
    /// `query.page`.
    Query(String),
    /// `param.id` — a path parameter of the route.
    Param(String),
    /// `cookie.session`.
    Cookie(String),
    /// `client_ip`.
    ClientIp,
    /// `client_cert.subject`, `client_cert.san`, `client_cert.fingerprint`:
    /// the verified client certificate of an mTLS listener.
    ClientCert(CertField),
}

/// What `client_cert.X` reads of a verified client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertField {
    /// The subject's distinguished name, as RFC 4514 writes it (`CN=orders,O=shop`).
    Subject,
    /// Every DNS, URI and IP subject alternative name.
    San,
    /// SHA-256 of the certificate's DER, lower-case hex.
    Fingerprint,
}

impl CertField {
    pub fn as_str(self) -> &'static str {
        match self {
            CertField::Subject => "subject",
            CertField::San => "san",
            CertField::Fingerprint => "fingerprint",
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Claim(path) => write!(f, "claim.{}", path.join(".")),
            Reference::Header(h) => write!(f, "header.{h}"),
            Reference::Query(q) => write!(f, "query.{q}"),
            Reference::Param(p) => write!(f, "param.{p}"),
            Reference::Cookie(c) => write!(f, "cookie.{c}"),
            Reference::ClientIp => f.write_str("client_ip"),
            Reference::ClientCert(field) => write!(f, "client_cert.{}", field.as_str()),
        }
    }
}

/// The JWT `typ` headers an auth accepts (RFC 8725 §3.11 explicit typing).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenTypes {
    /// A token without `typ` is accepted (`none` in the list).
    pub untyped: bool,
    /// Media types, lower-cased, without an `application/` prefix when
    /// nothing else has a `/` ([`TokenTypes::normalize`]).
    pub names: Vec<String>,
}

impl TokenTypes {
    /// The types accepted when the auth does not say: no `typ`, `JWT`, and
    /// `at+jwt` (RFC 9068 access tokens).
    pub fn default_list() -> TokenTypes {
        TokenTypes {
            untyped: true,
            names: vec!["jwt".into(), "at+jwt".into()],
        }
    }

    /// A `typ` as compared (RFC 7515 §4.1.9): case-insensitive, and
    /// `application/` may be left out when no other `/` follows.
    pub fn normalize(typ: &str) -> String {
        let lower = typ.to_ascii_lowercase();
        match lower.strip_prefix("application/") {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => lower,
        }
    }

    /// Whether a token whose header has this `typ` (or none) is accepted.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        match typ {
            None => self.untyped,
            Some(t) => {
                let t = TokenTypes::normalize(t);
                self.names.contains(&t)
            }
        }
    }
}

impl Default for TokenTypes {
    fn default() -> TokenTypes {
        TokenTypes::default_list()
    }
}

impl std::fmt::Display for TokenTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
        if self.untyped {
            parts.push("none".into());
        }
        f.write_str(&parts.join(", "))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// HMAC with a shared secret (HS*), as opposed to a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// The kind of public key the algorithm needs.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyKind::Secret,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => KeyKind::Ec,
            Algorithm::EdDSA => KeyKind::Ed25519,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Secret,
    Rsa,
    Ec,
    Ed25519,
}

impl Reference {
    /// A reference as the language writes it (`claim.a.b`, `header.X`,
    /// lower-cased, `query.page`, `param.id`, `cookie.session`,
    /// `client_ip`, `client_cert.san`); `None` for anything else.
    pub fn parse(text: &str) -> Option<Reference> {
        if text == "client_ip" {
            return Some(Reference::ClientIp);
        }
        let (root, rest) = text.split_once('.')?;
        if rest.is_empty() || rest.split('.').any(str::is_empty) {
            return None;
        }
        Some(match root {
            "claim" => Reference::Claim(rest.split('.').map(str::to_string).collect()),
            "header" if !rest.contains('.') => Reference::Header(rest.to_ascii_lowercase()),
            "query" if !rest.contains('.') => Reference::Query(rest.to_string()),
            "param" if !rest.contains('.') => Reference::Param(rest.to_string()),
            "cookie" if !rest.contains('.') => Reference::Cookie(rest.to_string()),
            "client_cert" => Reference::ClientCert(match rest {
                "subject" => CertField::Subject,
                "san" => CertField::San,
                "fingerprint" => CertField::Fingerprint,
                _ => return None,
            }),
            _ => return None,
        })
    }
}
