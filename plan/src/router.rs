//! The one route matcher, used by the runtime for every request and by
//! `gwc test` / `gwc route`, so that tests and traffic agree.
//!
//! Shape: a host table (exact, lower-cased names in a hash map, then the
//! hostless routes), and per host a segment tree. Each node has a map of
//! literal children, at most one `{param}` child and at most one `{*rest}`
//! child, and a method table for the routes that end there.
//!
//! Precedence (LANGUAGE.md): among the routes whose host, path **and** method
//! match, the most specific wins:
//!
//! 1. a route naming the request's host before a hostless route;
//! 2. then segment by segment from the left: a literal before `{param}`
//!    before `{*rest}`; a catch-all is the least specific thing at its
//!    position, also when it matches zero segments (so `/payments` beats
//!    `/payments/{*rest}` for the request `/payments`);
//! 3. then a route naming the method before a route matching every method.
//!    `GET` also matches `HEAD` unless a route with the same host and path
//!    shape names `HEAD`.
//!
//! The search is a depth-first walk trying children literal → param →
//! catch-all and, where the path ends, the node's own routes before a
//! zero-segment catch-all. That order is exactly the order of rule 2, so the
//! first route found whose method table accepts the method is the most
//! specific one; a branch whose path matches but whose methods do not is left
//! (backtracking) and its methods are remembered for `Allow`. When no route
//! matches path and method but some matched the path, the answer is `405`
//! with the union of those routes' methods; otherwise `404`.
//!
//! Paths: must start with `/`; `%XX` escapes of unreserved characters
//! (`A-Z a-z 0-9 - . _ ~`) are decoded before matching, other escapes stay as
//! written (`%2F` is not a separator); `//` is not collapsed (it is an empty
//! segment); a `..` segment (also written `%2E%2E`) is a bad request. A
//! `{param}` matches exactly one non-empty segment; `{*rest}` matches zero or
//! more segments, empty ones included, and captures them without the leading
//! slash. Hosts are compared case-insensitively, without port and without a
//! trailing dot.
//!
//! Conditions (`route GET /search when header.x-beta == "1"`): at a node,
//! the routes with a `when` for the request's method are tried, in file
//! order, before the route without one for that method, and the routes
//! with a `when` for every method before the route for every method
//! (the checker refuses two that one request could both satisfy, GW0206,
//! so the order never decides). A conditioned route whose conditions do
//! not hold is passed over like one whose method does not match, so the
//! search goes on to less specific routes; when none takes the request
//! and one was passed over only for its conditions, the answer is `404`,
//! not `405` (the method is allowed there, the request is not).
//!
//! The lookup allocates only for captured parameters (and a decoded copy of
//! the path when it has escapes of unreserved characters, or of a query
//! value a condition reads), and never panics.

use crate::condition::{Facts, NoFacts};
use crate::words::Method;
use crate::Route;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

// ------------------------------------------------------------------ method sets

/// A set of methods (a bit per [`Method`]). JSON: a list of names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MethodSet(u16);

impl MethodSet {
    pub const EMPTY: MethodSet = MethodSet(0);

    pub fn of(methods: impl IntoIterator<Item = Method>) -> MethodSet {
        let mut set = MethodSet::EMPTY;
        for m in methods {
            set.insert(m);
        }
        set
    }

    fn bit(m: Method) -> u16 {
        1 << (m as u16)
    }

    pub fn insert(&mut self, m: Method) {
        self.0 |= Self::bit(m);
    }

    pub fn contains(self, m: Method) -> bool {
        self.0 & Self::bit(m) != 0
    }

    /// [`MethodSet::contains`] by `Method as usize`.
    #[inline]
    fn contains_index(self, i: usize) -> bool {
        i < 16 && self.0 & (1 << i) != 0
    }

    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }

    /// `GET, HEAD` — the value of an `Allow` header.
    pub fn to_allow(self) -> String {
        self.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
    }

    /// `GET,HEAD` — as written in a route.
    pub fn to_string_compact(self) -> String {
        self.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Method::as_str)).finish()
    }
}

impl fmt::Display for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_allow())
    }
}

impl Serialize for MethodSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Method::as_str))
    }
}

impl<'de> Deserialize<'de> for MethodSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut set = MethodSet::EMPTY;
        for n in names {
            let m =
                Method::parse(&n).ok_or_else(|| serde::de::Error::custom(format!("`{n}` is not an HTTP method")))?;
            set.insert(m);
        }
        Ok(set)
    }
}

// ------------------------------------------------------------------ patterns and paths

/// One segment of a compiled path pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    /// Already normalised like a request path.
    Literal(String),
    Param,
    CatchAll,
}

/// Splits a path pattern as written (`/users/{id}/files/{*rest}`) into
/// segments; `None` when it is not a valid pattern.
pub fn parse_pattern(raw: &str) -> Option<Vec<Seg>> {
    let body = raw.strip_prefix('/')?;
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut segs = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if let Some(inner) = part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            match inner.strip_prefix('*') {
                Some(name) if i == last && !name.is_empty() => segs.push(Seg::CatchAll),
                Some(_) => return None,
                None if !inner.is_empty() => segs.push(Seg::Param),
                None => return None,
            }
        } else if part.contains(['{', '}']) {
            return None;
        } else {
            segs.push(Seg::Literal(decode_unreserved(part).into_owned()));
        }
    }
    Some(segs)
}

/// Why a request path is refused before routing (`400`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPath {
    /// Does not start with `/`.
    NotAbsolute,
    /// Has a `..` segment.
    DotDot,
}

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadPath::NotAbsolute => f.write_str("the path does not start with `/`"),
            BadPath::DotDot => f.write_str("the path has a `..` segment"),
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes of unreserved characters; borrows when there are none.
pub fn decode_unreserved(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let decodable = |i: usize| -> Option<u8> {
        let hi = hex(*bytes.get(i + 1)?)?;
        let lo = hex(*bytes.get(i + 2)?)?;
        let b = hi * 16 + lo;
        is_unreserved(b).then_some(b)
    };
    let Some(first) = (0..bytes.len()).find(|&i| bytes[i] == b'%' && decodable(i).is_some()) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut i = first;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = decodable(i) {
                out.push(char::from(b));
                i += 3;
                continue;
            }
        }
        // Copy one whole character.
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    Cow::Owned(out)
}

/// The path as the router matches it: escapes of unreserved characters
/// decoded, `..` segments refused.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, BadPath> {
    if !path.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    // One pass, eight bytes at a time: any escape, any dot?
    let (escape, dot) = scan(path.as_bytes());
    let dots = dot && path.contains("..");
    let path = if escape {
        decode_unreserved(path)
    } else {
        Cow::Borrowed(path)
    };
    if (dots || escape) && path.split('/').any(|s| s == "..") {
        return Err(BadPath::DotDot);
    }
    Ok(path)
}

/// Whether `bytes` has a `%` and whether it has a `.` (SWAR: eight bytes
/// per step).
#[inline]
fn scan(bytes: &[u8]) -> (bool, bool) {
    let (mut pct, mut dot) = (0u64, 0u64);
    let mut i = 0;
    while i < bytes.len() {
        let w = word(bytes, i);
        pct |= bytes_eq(w, b'%');
        dot |= bytes_eq(w, b'.');
        i += 8;
    }
    (pct != 0, dot != 0)
}

/// Longest host name we look up (DNS allows 253).
const MAX_HOST: usize = 255;

/// The host without port or trailing dot, lower-cased (into `buf` only when
/// it has upper-case or non-ASCII bytes). Eight bytes per step.
fn normalize_host<'h>(host: &'h str, buf: &'h mut [u8; MAX_HOST]) -> Option<&'h str> {
    let bytes = host.as_bytes();
    let mut end = bytes.len();
    let mut copy = false;
    if bytes.first() == Some(&b'[') {
        end = bytes.iter().position(|&b| b == b']').map_or(end, |i| i + 1);
        copy = bytes[..end].iter().any(u8::is_ascii_uppercase);
    } else {
        let mut i = 0;
        while i < bytes.len() {
            let w = word(bytes, i);
            // Upper-case ASCII: b + 63 reaches 0x80 and b + 37 does not.
            let mut upper = w.wrapping_add(LO * 63) & !w.wrapping_add(LO * 37) & HI;
            let colon = bytes_eq(w, b':');
            if colon != 0 {
                let k = (colon.trailing_zeros() / 8) as usize;
                upper &= (1u64 << (8 * k)).wrapping_sub(1);
                end = i + k;
            }
            // Non-ASCII bytes (the additions may carry): take the slow path.
            copy |= upper != 0 || w & HI != 0;
            if colon != 0 {
                break;
            }
            i += 8;
        }
    }
    let name = host.get(..end)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST {
        return None;
    }
    if !copy {
        return Some(name);
    }
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

/// A route's host as stored in the plan: lower-case, no trailing dot.
pub fn canonical_host(host: &str) -> String {
    let h = host.strip_suffix('.').unwrap_or(host);
    h.to_ascii_lowercase()
}

// ------------------------------------------------------------------ the tree

const NONE: u32 = u32::MAX;
/// Up to this many literal children are scanned; more are hashed.
const SCAN_MAX: usize = 8;

/// Up to eight bytes of `b` from `at`, zero-padded, as one little-endian
/// word (without a call to `memcpy`).
#[inline]
fn word(b: &[u8], at: usize) -> u64 {
    let Some(s) = b.get(at..) else { return 0 };
    if let Some(&w) = s.first_chunk::<8>() {
        return u64::from_le_bytes(w);
    }
    let (mut w, mut i) = (0u64, 0usize);
    if let Some(&c) = s.first_chunk::<4>() {
        w = u64::from(u32::from_le_bytes(c));
        i = 4;
    }
    if let Some(&c) = s.get(i..).and_then(|r| r.first_chunk::<2>()) {
        w |= u64::from(u16::from_le_bytes(c)) << (8 * i);
        i += 2;
    }
    if let Some(&c) = s.get(i) {
        w |= u64::from(c) << (8 * i);
    }
    w
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` equal to `b` (exact up to the first
/// match, which is all the callers use).
#[inline]
fn bytes_eq(w: u64, b: u8) -> u64 {
    let x = w ^ (LO * u64::from(b));
    x.wrapping_sub(LO) & !x & HI
}

/// A key's length, first and last eight bytes: compared before the bytes
/// themselves, and hashed (an FxHash-style mix). Keys come from the
/// configuration and requests only look up, so flooding is not a concern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sig {
    len: usize,
    head: u64,
    tail: u64,
}

impl Sig {
    #[inline]
    fn of(key: &str) -> Sig {
        let b = key.as_bytes();
        Sig {
            len: b.len(),
            head: word(b, 0),
            tail: word(b, b.len().saturating_sub(8)),
        }
    }

    /// Well mixed in the high bits (callers index with `hash >> shift`).
    #[inline]
    fn hash(self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let h = (self.head ^ self.len as u64).wrapping_mul(K);
        (h ^ (h >> 32) ^ self.tail).wrapping_mul(K)
    }
}

/// A key (a literal segment or a host name) and its node.
#[derive(Clone, Debug)]
struct Edge {
    sig: Sig,
    key: Box<str>,
    node: u32,
}

impl Edge {
    #[inline]
    fn is(&self, sig: Sig, key: &str) -> bool {
        // Keys of up to 16 bytes are wholly covered by the signature.
        self.sig == sig && (sig.len <= 16 || *self.key == *key)
    }
}

/// Keys to nodes: scanned when few, else an open-addressing hash table.
#[derive(Clone, Debug, Default)]
struct Edges {
    edges: Vec<Edge>,
    /// Indices into `edges` (`NONE`: empty); empty while scanning.
    slots: Vec<u32>,
    /// `64 - log2(slots.len())`: a hash's top bits pick its first slot.
    shift: u32,
}

impl Edges {
    #[inline(always)]
    fn get(&self, key: &str) -> Option<u32> {
        let sig = Sig::of(key);
        if self.slots.is_empty() {
            return self.edges.iter().find(|e| e.is(sig, key)).map(|e| e.node);
        }
        let mask = self.slots.len() - 1;
        let mut i = (sig.hash() >> self.shift) as usize;
        loop {
            let slot = *self.slots.get(i)?;
            let e = self.edges.get(slot as usize)?;
            if e.is(sig, key) {
                return Some(e.node);
            }
            i = (i + 1) & mask;
        }
    }

    fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// The keys and their nodes, sorted by key.
    fn iter(&self) -> Vec<(&str, u32)> {
        let mut v: Vec<(&str, u32)> = self.edges.iter().map(|e| (&*e.key, e.node)).collect();
        v.sort_unstable();
        v
    }

    fn insert(&mut self, key: &str, node: u32) {
        self.edges.push(Edge {
            sig: Sig::of(key),
            key: key.into(),
            node,
        });
        if self.edges.len() > SCAN_MAX {
            self.rehash();
        }
    }

    /// Rebuilds the table at most half full (slots are never `NONE`-free,
    /// so a probe always ends).
    fn rehash(&mut self) {
        let want = (self.edges.len() * 2).next_power_of_two();
        if self.slots.len() >= want && self.slots.len() >= self.edges.len() * 2 {
            let mask = self.slots.len() - 1;
            let last = self.edges.len() - 1;
            let mut i = (self.edges[last].sig.hash() >> self.shift) as usize;
            while self.slots[i] != NONE {
                i = (i + 1) & mask;
            }
            self.slots[i] = last as u32;
            return;
        }
        self.slots = vec![NONE; want.max(16)];
        self.shift = 64 - self.slots.len().trailing_zeros();
        let mask = self.slots.len() - 1;
        for (n, e) in self.edges.iter().enumerate() {
            let mut i = (e.sig.hash() >> self.shift) as usize;
            while self.slots[i] != NONE {
                i = (i + 1) & mask;
            }
            self.slots[i] = n as u32;
        }
    }
}

/// The routes that end at a node, by method.
#[derive(Clone, Debug)]
struct Table {
    /// The route naming each method (index = `Method as usize`), after `GET`
    /// has been extended to `HEAD` where no route names `HEAD`.
    explicit: [u32; Method::ALL.len()],
    /// The route matching every method.
    any: u32,
    /// The methods of `explicit` and of `conditioned` (for `Allow`).
    allow: MethodSet,
    /// Routes with a `when`, in file order: their methods (`None`: every
    /// method) and route.
    conditioned: Vec<(Option<MethodSet>, u32)>,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            explicit: [NONE; Method::ALL.len()],
            any: NONE,
            allow: MethodSet::EMPTY,
            conditioned: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Node {
    literals: Edges,
    param: u32,
    catch_all: u32,
    table: Option<Box<Table>>,
    /// For printing: the segment as first written (`orders`, `{id}`, `{*rest}`).
    label: Box<str>,
}

impl Node {
    fn new(label: &str) -> Node {
        Node {
            literals: Edges::default(),
            param: NONE,
            catch_all: NONE,
            table: None,
            label: label.into(),
        }
    }
}

/// What [`Router::walk`] calls for each node: depth, segment label, and the
/// routes ending there (their methods, `None` for every method; route index).
pub type Visit<'v> = dyn FnMut(usize, &str, Vec<(Option<MethodSet>, usize)>) + 'v;

/// The compiled route table of a [`Plan`](super::Plan).
#[derive(Clone, Debug, Default)]
pub struct Router {
    hosts: Edges,
    /// Root of the hostless tree, if any route is hostless.
    hostless: u32,
    nodes: Vec<Node>,
}

/// A route table that cannot be built (the checker rules these out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// Two routes claim the same requests with equal precedence.
    Collision { first: usize, second: usize },
    /// A route's path is not a valid pattern.
    BadPattern { route: usize },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Collision { first, second } => write!(
                f,
                "routes {first} and {second} claim the same requests with equal precedence"
            ),
            BuildError::BadPattern { route } => write!(f, "route {route} has an invalid path pattern"),
        }
    }
}

impl Router {
    /// Compiles the routes (in file order; indices are route numbers).
    pub fn build(routes: &[Route]) -> Result<Router, Vec<BuildError>> {
        let mut r = Router {
            hosts: Edges::default(),
            hostless: NONE,
            nodes: Vec::new(),
        };
        let mut errors = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let Some(segs) = parse_pattern(&route.path) else {
                errors.push(BuildError::BadPattern { route: i });
                continue;
            };
            let labels: Vec<&str> = route.path[1..].split('/').collect();
            let root = r.root(route.host.as_deref());
            let mut node = root;
            for (seg, label) in segs.iter().zip(labels) {
                node = r.child(node, seg, label);
            }
            if let Err(first) = r.insert(node, i, route.methods, !route.when.is_empty()) {
                errors.push(BuildError::Collision { first, second: i });
            }
        }
        // GET answers HEAD where no route at the same node names HEAD.
        for n in &mut r.nodes {
            if let Some(t) = n.table.as_deref_mut() {
                let (get, head) = (Method::Get as usize, Method::Head as usize);
                let head_named = t.explicit[head] != NONE
                    || t.conditioned
                        .iter()
                        .any(|(m, _)| m.is_some_and(|m| m.contains(Method::Head)));
                if head_named {
                    continue;
                }
                if t.explicit[get] != NONE {
                    t.explicit[head] = t.explicit[get];
                    t.allow.insert(Method::Head);
                }
                for (m, _) in &mut t.conditioned {
                    if let Some(set) = m.as_mut().filter(|s| s.contains(Method::Get)) {
                        set.insert(Method::Head);
                        t.allow.insert(Method::Head);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(r)
        } else {
            Err(errors)
        }
    }

    fn push(&mut self, label: &str) -> u32 {
        self.nodes.push(Node::new(label));
        (self.nodes.len() - 1) as u32
    }

    fn root(&mut self, host: Option<&str>) -> u32 {
        match host {
            Some(h) => {
                let h = canonical_host(h);
                if let Some(n) = self.hosts.get(&h) {
                    return n;
                }
                let n = self.push("");
                self.hosts.insert(&h, n);
                n
            }
            None => {
                if self.hostless == NONE {
                    self.hostless = self.push("");
                }
                self.hostless
            }
        }
    }

    fn child(&mut self, node: u32, seg: &Seg, label: &str) -> u32 {
        let idx = node as usize;
        let existing = match seg {
            Seg::Literal(l) => self.nodes[idx].literals.get(l).unwrap_or(NONE),
            Seg::Param => self.nodes[idx].param,
            Seg::CatchAll => self.nodes[idx].catch_all,
        };
        if existing != NONE {
            return existing;
        }
        let new = self.push(label);
        let n = &mut self.nodes[idx];
        match seg {
            Seg::Literal(l) => n.literals.insert(l, new),
            Seg::Param => n.param = new,
            Seg::CatchAll => n.catch_all = new,
        }
        new
    }

    /// Adds a route ending at `node`; `Err(first)` on a collision. Routes
    /// with conditions never collide here (the checker tells the ones that
    /// overlap, GW0206).
    fn insert(&mut self, node: u32, route: usize, methods: Option<MethodSet>, conditioned: bool) -> Result<(), usize> {
        let t = self.nodes[node as usize].table.get_or_insert_with(Box::default);
        let route = route as u32;
        if conditioned {
            if let Some(set) = methods {
                t.allow = t.allow.union(set);
            }
            t.conditioned.push((methods, route));
            return Ok(());
        }
        match methods {
            None => {
                if t.any != NONE {
                    return Err(t.any as usize);
                }
                t.any = route;
            }
            Some(set) => {
                if let Some(m) = set.iter().find(|m| t.explicit[*m as usize] != NONE) {
                    return Err(t.explicit[m as usize] as usize);
                }
                for m in set.iter() {
                    t.explicit[m as usize] = route;
                }
                t.allow = t.allow.union(set);
            }
        }
        Ok(())
    }

    /// The hosts that have routes of their own, sorted.
    pub fn hosts(&self) -> Vec<&str> {
        self.hosts.iter().into_iter().map(|(h, _)| h).collect()
    }

    /// Walks the tree of `host` (`None`: the hostless tree) depth-first in
    /// precedence order: `visit(depth, label, routes ending here by method)`.
    pub fn walk(&self, host: Option<&str>, visit: &mut Visit<'_>) {
        let root = match host {
            Some(h) => self.hosts.get(h).unwrap_or(NONE),
            None => self.hostless,
        };
        if root != NONE {
            self.walk_node(root, 0, visit);
        }
    }

    fn walk_node(&self, node: u32, depth: usize, visit: &mut Visit<'_>) {
        let Some(n) = self.nodes.get(node as usize) else {
            return;
        };
        let mut routes: Vec<(Option<MethodSet>, usize)> = Vec::new();
        if let Some(t) = n.table.as_deref() {
            let explicit_conditioned = t.conditioned.iter().filter(|(m, _)| m.is_some());
            routes.extend(explicit_conditioned.map(|&(m, r)| (m, r as usize)));
            // Group the explicit methods by route, in route order.
            let mut by_route: Vec<(usize, MethodSet)> = Vec::new();
            for m in Method::ALL {
                let r = t.explicit[m as usize];
                if r == NONE {
                    continue;
                }
                match by_route.iter_mut().find(|(x, _)| *x == r as usize) {
                    Some((_, set)) => set.insert(m),
                    None => by_route.push((r as usize, MethodSet::of([m]))),
                }
            }
            routes.extend(by_route.into_iter().map(|(r, s)| (Some(s), r)));
            let any_conditioned = t.conditioned.iter().filter(|(m, _)| m.is_none());
            routes.extend(any_conditioned.map(|&(m, r)| (m, r as usize)));
            if t.any != NONE {
                routes.push((None, t.any as usize));
            }
        }
        visit(depth, &n.label, routes);
        for (_, child) in n.literals.iter() {
            self.walk_node(child, depth + 1, visit);
        }
        if n.param != NONE {
            self.walk_node(n.param, depth + 1, visit);
        }
        if n.catch_all != NONE {
            self.walk_node(n.catch_all, depth + 1, visit);
        }
    }
}

// ------------------------------------------------------------------ lookup

/// The router's answer for one request.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The route that takes the request, with its captured parameters.
    Matched { route: usize, params: Params<'a> },
    /// `404`: no route's host and path match.
    NotFound,
    /// `405`: some route's path matched, none accepts the method. `allow`
    /// is the union of the methods of the routes whose path matched.
    MethodNotAllowed { allow: MethodSet },
    /// `400`: the path is refused before routing.
    BadRequest(BadPath),
}

impl Lookup<'_> {
    /// The matched route, if any.
    pub fn route(&self) -> Option<usize> {
        match self {
            Lookup::Matched { route, .. } => Some(*route),
            _ => None,
        }
    }
}

/// Captured ranges kept inline up to this many parameters (no allocation).
const INLINE_CAPS: usize = 4;

/// Byte ranges of captured parameters: inline first, then spilled.
#[derive(Debug, Clone, Default)]
struct Caps {
    inline: [(u32, u32); INLINE_CAPS],
    len: usize,
    spill: Vec<(u32, u32)>,
}

impl Caps {
    #[inline]
    fn push(&mut self, c: (u32, u32)) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = c,
            None => self.spill.push(c),
        }
        self.len += 1;
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.spill.truncate(len.saturating_sub(INLINE_CAPS));
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<(u32, u32)> {
        if i >= self.len {
            return None;
        }
        match self.inline.get(i) {
            Some(c) => Some(*c),
            None => self.spill.get(i - INLINE_CAPS).copied(),
        }
    }
}

/// Captured path parameters: ranges into the (normalised) path, in the order
/// of the route's parameter names.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    path: Cow<'a, str>,
    names: &'a [String],
    ranges: Caps,
}

impl<'a> Params<'a> {
    /// The value of parameter `name` (a catch-all without its leading slash).
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| n == name)?;
        let (s, e) = self.ranges.get(i)?;
        self.path.get(s as usize..e as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().enumerate().filter_map(|(i, n)| {
            let (s, e) = self.ranges.get(i)?;
            Some((n.as_str(), self.path.get(s as usize..e as usize).unwrap_or("")))
        })
    }

    pub fn len(&self) -> usize {
        self.ranges.len.min(self.names.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path the parameters were captured from (after normalisation).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Finds the route for a request that carries nothing route conditions
/// read (see [`lookup_with`]). `method` is `None` for a method the
/// language does not name (only routes matching every method take it);
/// `host` is the `Host` header or URI authority (`""` if absent); `path` is
/// the request path without query string.
pub fn lookup<'a>(plan: &'a crate::Plan, method: Option<Method>, host: &str, path: &'a str) -> Lookup<'a> {
    lookup_in(&plan.router, &plan.routes, method, host, path, &NoFacts)
}

/// [`lookup`] for a request whose headers, query, cookies and address
/// `facts` gives, for the routes with conditions.
pub fn lookup_with<'a>(
    plan: &'a crate::Plan,
    method: Option<Method>,
    host: &str,
    path: &'a str,
    facts: &dyn Facts,
) -> Lookup<'a> {
    lookup_in(&plan.router, &plan.routes, method, host, path, facts)
}

/// [`lookup_with`] over a router and its routes.
pub fn lookup_in<'a>(
    router: &Router,
    routes: &'a [Route],
    method: Option<Method>,
    host: &str,
    path: &'a str,
    facts: &dyn Facts,
) -> Lookup<'a> {
    let path = match normalize_path(path) {
        Ok(p) => p,
        Err(e) => return Lookup::BadRequest(e),
    };
    let mut search = Search {
        router,
        routes,
        facts,
        held_back: false,
        path: &path,
        method: method.map(|m| m as usize),
        caps: Caps::default(),
        allow: MethodSet::EMPTY,
        path_matched: false,
    };
    let mut found = None;
    if !router.hosts.is_empty() && !host.is_empty() {
        let mut buf = [0u8; MAX_HOST];
        if let Some(h) = normalize_host(host, &mut buf) {
            if let Some(root) = router.hosts.get(h) {
                found = search.node(root, Some(1));
            }
        }
    }
    if found.is_none() && router.hostless != NONE {
        search.caps.truncate(0);
        found = search.node(router.hostless, Some(1));
    }
    match found {
        Some(route) => {
            let ranges = search.caps;
            let names = routes.get(route).map_or(&[][..], |r| r.params.as_slice());
            Lookup::Matched {
                route,
                params: Params { path, names, ranges },
            }
        }
        None if search.held_back => Lookup::NotFound,
        None if search.path_matched => Lookup::MethodNotAllowed { allow: search.allow },
        None => Lookup::NotFound,
    }
}

struct Search<'r, 'p> {
    router: &'r Router,
    routes: &'r [Route],
    facts: &'r dyn Facts,
    /// A route took the path and the method but not the request's
    /// conditions.
    held_back: bool,
    path: &'p str,
    method: Option<usize>,
    caps: Caps,
    allow: MethodSet,
    path_matched: bool,
}

impl Search<'_, '_> {
    /// The route of the node's table for the method; otherwise remembers
    /// the table's methods for `Allow`.
    #[inline]
    fn pick(&mut self, node: u32) -> Option<usize> {
        let t = self.router.nodes.get(node as usize)?.table.as_deref()?;
        let conditioned = !t.conditioned.is_empty();
        if let Some(m) = self.method {
            if conditioned {
                if let Some(r) = self.conditioned(t, |set| set.is_some_and(|s| s.contains_index(m))) {
                    return Some(r);
                }
            }
            if let Some(&r) = t.explicit.get(m) {
                if r != NONE {
                    return Some(r as usize);
                }
            }
        }
        if conditioned {
            if let Some(r) = self.conditioned(t, |set| set.is_none()) {
                return Some(r);
            }
        }
        if t.any != NONE {
            return Some(t.any as usize);
        }
        self.path_matched = true;
        self.allow = self.allow.union(t.allow);
        None
    }

    /// The first of the table's conditioned routes whose methods `takes`
    /// and whose conditions hold; notes one passed over for its conditions.
    #[cold]
    fn conditioned(&mut self, t: &Table, takes: impl Fn(Option<MethodSet>) -> bool) -> Option<usize> {
        for &(methods, r) in &t.conditioned {
            if !takes(methods) {
                continue;
            }
            let holds = self
                .routes
                .get(r as usize)
                .is_some_and(|route| route.when.iter().all(|c| c.holds(self.facts)));
            if holds {
                return Some(r as usize);
            }
            self.held_back = true;
        }
        None
    }

    /// Searches below `node` for the segments from byte `pos` (`None`: the
    /// path has no more segments).
    fn node(&mut self, node: u32, pos: Option<usize>) -> Option<usize> {
        let n = self.router.nodes.get(node as usize)?;
        let len = self.path.len();
        let Some(start) = pos else {
            // The path ends here: this node's routes, then a catch-all
            // matching zero segments.
            if n.table.is_some() {
                if let Some(r) = self.pick(node) {
                    return Some(r);
                }
            }
            if n.catch_all != NONE {
                let mark = self.caps.len;
                self.caps.push((len as u32, len as u32));
                if let Some(r) = self.pick(n.catch_all) {
                    return Some(r);
                }
                self.caps.truncate(mark);
            }
            return None;
        };
        let rest = self.path.get(start..)?;
        let (seg, next) = match rest.as_bytes().iter().position(|&b| b == b'/') {
            Some(i) => (rest.get(..i)?, Some(start + i + 1)),
            None => (rest, None),
        };
        if let Some(child) = n.literals.get(seg) {
            if let Some(r) = self.node(child, next) {
                return Some(r);
            }
        }
        if n.param != NONE && !seg.is_empty() {
            let mark = self.caps.len;
            self.caps.push((start as u32, (start + seg.len()) as u32));
            if let Some(r) = self.node(n.param, next) {
                return Some(r);
            }
            self.caps.truncate(mark);
        }
        if n.catch_all != NONE {
            let mark = self.caps.len;
            self.caps.push((start as u32, len as u32));
            if let Some(r) = self.pick(n.catch_all) {
                return Some(r);
            }
            self.caps.truncate(mark);
        }
        None
    }
}
