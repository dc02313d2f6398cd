//! Route conditions (`route GET /search when header.x-beta == "1" -> v2`):
//! what a condition is in the plan, what a request offers them
//! ([`Facts`]), and how one is evaluated — by the router, during the
//! lookup, so that tests, `gwc route` and traffic agree.
//!
//! A condition reads only what the request itself carries (`header.X`,
//! `query.X`, `cookie.X`, `client_ip`): a route is chosen before its `auth`
//! runs. `REF == "v"` and `REF in [...]` hold when the request has the
//! reference with one of the values; `REF != "v"` holds when it has not
//! that value (absent included); `REF present` when it has the reference
//! at all. For `client_ip` the values are CIDR blocks (or single
//! addresses), and `==`/`in` mean "within" ([`within`]).

use crate::words::Reference;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// One condition of a route's `when`: `header.x-beta == "1"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(with = "crate::serde_as::reference")]
    pub subject: Reference,
    pub op: CondOp,
    /// For `client_ip`: the op's values as blocks, filled by
    /// [`Condition::new`] (and again when a plan is read from JSON).
    #[serde(skip)]
    pub nets: Vec<IpNet>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CondOp {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    Present,
}

impl CondOp {
    /// The values the op compares with (none for `present`).
    pub fn values(&self) -> &[String] {
        match self {
            CondOp::Eq(v) | CondOp::Ne(v) => std::slice::from_ref(v),
            CondOp::In(vs) => vs,
            CondOp::Present => &[],
        }
    }
}

/// A `client_ip` value as a block: `10.0.0.0/8`, or one address
/// (`192.0.2.7` is `192.0.2.7/32`). Host bits are cleared. The one place
/// the language's CIDR strings are parsed for conditions.
pub fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Whether `ip` is within `net` (an IPv4-mapped IPv6 client address counts
/// as its IPv4 address).
pub fn within(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    net.contains(&ip)
}

impl Condition {
    /// A condition; `Err(value)` names a `client_ip` value that is not a
    /// block or an address.
    pub fn new(subject: Reference, op: CondOp) -> Result<Condition, String> {
        let mut c = Condition {
            subject,
            op,
            nets: Vec::new(),
        };
        c.prepare()?;
        Ok(c)
    }

    /// Fills `nets` from the op's values (for `client_ip`).
    pub fn prepare(&mut self) -> Result<(), String> {
        self.nets.clear();
        if self.subject == Reference::ClientIp {
            for v in self.op.values() {
                self.nets.push(parse_net(v).ok_or_else(|| v.clone())?);
            }
        }
        Ok(())
    }

    /// Whether the request of `facts` satisfies the condition.
    #[inline]
    pub fn holds(&self, facts: &dyn Facts) -> bool {
        if self.subject == Reference::ClientIp {
            let Some(ip) = facts.client_ip() else {
                return matches!(self.op, CondOp::Ne(_));
            };
            let inside = self.nets.iter().any(|n| within(n, ip));
            return match self.op {
                CondOp::Present => true,
                CondOp::Ne(_) => !inside,
                CondOp::Eq(_) | CondOp::In(_) => inside,
            };
        }
        let value = facts.value(&self.subject);
        match (&self.op, value) {
            (CondOp::Present, v) => v.is_some(),
            (CondOp::Ne(x), v) => v.is_none_or(|v| *v != **x),
            (CondOp::Eq(x), Some(v)) => *v == **x,
            (CondOp::In(xs), Some(v)) => xs.iter().any(|x| **x == *v),
            (_, None) => false,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            CondOp::Eq(v) => write!(f, "{} == {v:?}", self.subject),
            CondOp::Ne(v) => write!(f, "{} != {v:?}", self.subject),
            CondOp::Present => write!(f, "{} present", self.subject),
            CondOp::In(vs) => {
                write!(f, "{} in [", self.subject)?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v:?}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// `header.x-beta == "1" and query.engine present` — a route's `when`
/// as written (without the keyword).
pub fn display_all(conds: &[Condition]) -> String {
    conds.iter().map(Condition::to_string).collect::<Vec<_>>().join(" and ")
}

/// What a request offers to conditions. The runtime reads its request;
/// tests and `gwc route` give values ([`Given`]). [`NoFacts`] is a request
/// with none (every `==`, `in` and `present` fails).
pub trait Facts {
    /// The value of a `header.X` (the first field of that name),
    /// `query.X` (decoded) or `cookie.X`; `None` when absent.
    fn value(&self, r: &Reference) -> Option<Cow<'_, str>>;
    /// The client's address, when known.
    fn client_ip(&self) -> Option<IpAddr>;
}

/// A request that carries nothing conditions read.
pub struct NoFacts;

impl Facts for NoFacts {
    fn value(&self, _: &Reference) -> Option<Cow<'_, str>> {
        None
    }
    fn client_ip(&self) -> Option<IpAddr> {
        None
    }
}

/// What an embedded test or `gwc route` says a request carries.
#[derive(Clone, Debug, Default)]
pub struct Given {
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The query string (after `?`), if any.
    pub query: Option<String>,
    /// `cookie NAME "v"` lines (searched before any `Cookie` header).
    pub cookies: Vec<(String, String)>,
    pub client_ip: Option<IpAddr>,
}

impl Given {
    /// Takes the query string off a request target: `/a?b=1` → `/a`.
    pub fn split_target(target: &str) -> (&str, Option<&str>) {
        match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        }
    }
}

impl Facts for Given {
    fn value(&self, r: &Reference) -> Option<Cow<'_, str>> {
        match r {
            Reference::Header(h) => self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| Cow::Borrowed(v.as_str())),
            Reference::Query(q) => self.query.as_deref().and_then(|qs| query_value(qs, q)),
            Reference::Cookie(c) => self
                .cookies
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, v)| Cow::Borrowed(v.as_str()))
                .or_else(|| {
                    let line = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("cookie"))?;
                    cookie_value(&line.1, c).map(Cow::Borrowed)
                }),
            _ => None,
        }
    }
    fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
}

/// The value of query parameter `name` in `query`, `%XX` and `+` decoded
/// (the runtime reads queries the same way).
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// The value of cookie `name` in one `Cookie` line.
pub fn cookie_value<'l>(line: &'l str, name: &str) -> Option<&'l str> {
    line.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// `%XX` and `+` decoding (invalid escapes are kept as written).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(a), Some(b)) => {
                        out.push((a * 16 + b) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(headers: &[(&str, &str)], query: Option<&str>, ip: Option<&str>) -> Given {
        Given {
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            query: query.map(str::to_string),
            cookies: Vec::new(),
            client_ip: ip.map(|i| i.parse().unwrap()),
        }
    }

    #[test]
    fn each_op_reads_the_request() {
        let beta = Condition::new(Reference::Header("x-beta".into()), CondOp::Eq("1".into())).unwrap();
        assert!(beta.holds(&given(&[("x-beta", "1")], None, None)));
        assert!(!beta.holds(&given(&[("x-beta", "2")], None, None)));
        assert!(!beta.holds(&NoFacts));
        let not = Condition::new(Reference::Header("x-beta".into()), CondOp::Ne("1".into())).unwrap();
        assert!(not.holds(&NoFacts), "`!=` holds for an absent reference");
        assert!(!not.holds(&given(&[("x-beta", "1")], None, None)));
        let engine = Condition::new(
            Reference::Query("engine".into()),
            CondOp::In(vec!["v2".into(), "next step".into()]),
        )
        .unwrap();
        assert!(engine.holds(&given(&[], Some("a=1&engine=next+step"), None)));
        assert!(!engine.holds(&given(&[], Some("engine=v1"), None)));
        let present = Condition::new(Reference::Cookie("s".into()), CondOp::Present).unwrap();
        assert!(present.holds(&given(&[("cookie", "a=1; s=2")], None, None)));
        assert!(!present.holds(&given(&[("cookie", "a=1")], None, None)));
    }

    #[test]
    fn client_ip_compares_blocks() {
        let office = Condition::new(
            Reference::ClientIp,
            CondOp::In(vec!["10.0.0.0/8".into(), "192.0.2.7".into()]),
        )
        .unwrap();
        assert!(office.holds(&given(&[], None, Some("10.1.2.3"))));
        assert!(office.holds(&given(&[], None, Some("192.0.2.7"))));
        assert!(office.holds(&given(&[], None, Some("::ffff:10.9.9.9"))));
        assert!(!office.holds(&given(&[], None, Some("192.0.2.8"))));
        assert!(Condition::new(Reference::ClientIp, CondOp::Eq("10.0.0.0/33".into())).is_err());
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }
}
