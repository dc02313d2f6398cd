//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`), one function per
//! reader, shared with the corpus replay in `tests/fuzz_corpus.rs`, which
//! includes this file as a module: what CI replays is what was fuzzed. Each
//! body panics on a broken property (that is the finding); hangs and memory
//! are bounded by libFuzzer's `-timeout`/`-rss_limit_mb` here and by the
//! replay's deadline there.
//!
//! The HTTP/1.1 readers' properties live beside them in the runtime
//! (`gw_runtime::fuzz_request_reader`, `gw_runtime::fuzz_response_reader`:
//! the same reading whole and in pieces, and the loop's own invariants);
//! the `.gw` front end's are here: every diagnostic points inside its file
//! and renders as `gwc check` draws it (text and JSON), there is a
//! configuration exactly when there are no errors, a plan survives its JSON
//! round trip (`gwc build`, then `gwc serve app.plan.json`), and compiling
//! again gives the same diagnostics and plan.

use gw_compiler::host::{Host, MemoryHost};
use std::io;
use std::sync::OnceLock;

/// `gwc check`'s renderer, the real one (the binary's own module).
#[path = "../../src/render.rs"]
#[allow(dead_code)]
mod render;

/// A corpus: its folder of `fuzz/corpus/` and `fuzz/regressions/`, the body
/// its inputs go through, and the fuzz targets that run that body (and read
/// and grow that corpus).
pub type Corpus = (&'static str, fn(&[u8]), &'static [&'static str]);

/// Every corpus.
pub const CORPORA: &[Corpus] = &[
    ("gw", gw_config, &["gw_text", "gw_structured"]),
    ("h1_request", h1_request, &["h1_request"]),
    ("h1_response", h1_response, &["h1_response"]),
    ("route", route, &["route"]),
    ("proxy_header", proxy_header, &["proxy_header"]),
];

/// The PROXY protocol header a `proxy_protocol` listener reads first.
pub fn proxy_header(data: &[u8]) {
    gw_runtime::fuzz_proxy_header(data);
}

/// The HTTP/1.1 request reader of the gateway's server loop.
pub fn h1_request(data: &[u8]) {
    gw_runtime::fuzz_request_reader(data);
}

/// The upstream response reader of the gateway's HTTP/1.1 client.
pub fn h1_response(data: &[u8]) {
    gw_runtime::fuzz_response_reader(data);
}

/// The router on what a client controls: a request's method, host and path
/// against the food-court example's plan, as the proxy looks it up (and as
/// `gwc route` explains it). `data[0]` picks the method (or one the
/// language does not name); the host runs to the first NUL, the path is
/// the rest (UTF-8 only: the proxy's path comes from a parsed URI).
pub fn route(data: &[u8]) {
    use gw_compiler::ast::Method;
    use gw_compiler::plan::router::{lookup, Lookup};
    let [m, rest @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (host, path) = text.split_once('\0').unwrap_or(("", text));
    let method = Method::ALL.get(usize::from(*m) % (Method::ALL.len() + 1)).copied();
    let plan = food_court();
    match lookup(plan, method, host, path) {
        Lookup::Matched { route, params } => {
            assert!(route < plan.routes.len(), "route {route} of {}", plan.routes.len());
            for (name, value) in params.iter() {
                assert!(!name.is_empty(), "a parameter without a name (value {value:?})");
            }
        }
        Lookup::NotFound | Lookup::BadRequest(_) => {}
        Lookup::MethodNotAllowed { allow } => assert!(!allow.is_empty(), "405 allowing nothing"),
    }
    if let Some(method) = method {
        let _ = gw_compiler::plan::explain::explain(plan, method, host, path);
    }
}

/// `examples/food-court.gw`'s plan, compiled once.
fn food_court() -> &'static gw_compiler::plan::Plan {
    static PLAN: OnceLock<gw_compiler::plan::Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let host = MemoryHost::new()
            .file("food-court.gw", &include_bytes!("../../examples/food-court.gw")[..])
            .file("keys/jwks.json", &include_bytes!("../../examples/keys/jwks.json")[..]);
        match gw_compiler::compile(&host, "food-court.gw").ok().and_then(|c| c.plan) {
            Some(plan) => plan,
            None => panic!("examples/food-court.gw compiles"),
        }
    })
}

/// The fuzzed file's name; `again.gw` is the same bytes under another name,
/// so `import "again.gw"` loads the file twice (duplicates across files) and
/// `import "fuzz.gw"` closes a cycle.
const ROOT: &str = "fuzz.gw";
const AGAIN: &str = "again.gw";

/// At most this many diagnostics of one input are rendered (rendering is the
/// slowest step, and the thousandth of one kind finds nothing the first did
/// not).
const RENDERED: usize = 16;

/// The files and variables the fixtures and examples name, so that mutated
/// configurations reach the checks of keys, certificates and imports.
fn files() -> &'static MemoryHost {
    static FILES: OnceLock<MemoryHost> = OnceLock::new();
    FILES.get_or_init(|| {
        MemoryHost::new()
            .file(
                "common/upstreams.gw",
                &include_bytes!("../../tests/fixtures/common/upstreams.gw")[..],
            )
            .file(
                "certs/api.crt",
                &include_bytes!("../../tests/fixtures/certs/api.crt")[..],
            )
            .file(
                "certs/api.key",
                &include_bytes!("../../tests/fixtures/certs/api.key")[..],
            )
            .file(
                "files/tls.crt",
                &include_bytes!("../../tests/fixtures/files/tls.crt")[..],
            )
            .file(
                "files/tls.key",
                &include_bytes!("../../tests/fixtures/files/tls.key")[..],
            )
            .file(
                "files/rsa.pem",
                &include_bytes!("../../tests/fixtures/files/rsa.pem")[..],
            )
            .file(
                "files/ec384.pem",
                &include_bytes!("../../tests/fixtures/files/ec384.pem")[..],
            )
            .file(
                "files/keys.txt",
                &include_bytes!("../../tests/fixtures/files/keys.txt")[..],
            )
            .file(
                "files/jwks-ec.json",
                &include_bytes!("../../tests/fixtures/files/jwks-ec.json")[..],
            )
            .file(
                "keys/rs256.pem",
                &include_bytes!("../../tests/fixtures/keys/rs256.pem")[..],
            )
            .file(
                "keys/partners.txt",
                &include_bytes!("../../tests/fixtures/keys/partners.txt")[..],
            )
            .file("keys/jwks.json", &include_bytes!("../../examples/keys/jwks.json")[..])
            .var("JWT_SECRET", "a-secret-of-at-least-thirty-two-bytes!!")
            .var("KEYS", "k1\nk2")
            .var("X", "x")
    })
}

/// [`files`] with the fuzzed bytes as `fuzz.gw` and `again.gw`.
struct FuzzHost<'a> {
    root: &'a [u8],
}

impl Host for FuzzHost<'_> {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        if path == ROOT || path == AGAIN {
            return Ok(self.root.to_vec());
        }
        files().read(path)
    }

    fn env(&self, name: &str) -> Option<String> {
        files().env(name)
    }
}

/// The `.gw` front end: `data` compiled as a root file the way `gwc check`
/// compiles one (load, parse, check, lower, embedded tests), its
/// diagnostics rendered, its plan through JSON and back.
pub fn gw_config(data: &[u8]) {
    let host = FuzzHost { root: data };
    let Ok(c) = gw_compiler::compile(&host, ROOT) else {
        panic!("the root file is always readable");
    };
    for d in &c.diagnostics {
        assert!(!d.message.is_empty(), "{} without a message", d.code);
        assert!(d.span().is_some(), "{} without a primary span", d.code);
        for label in &d.labels {
            let len = c.sources.get(label.span.file).text.len() as u32;
            assert!(
                label.span.start <= label.span.end && label.span.end <= len,
                "{}: span {:?} outside a file of {len} bytes",
                d.code,
                label.span
            );
        }
    }
    assert_eq!(
        c.config.is_some(),
        c.errors() == 0,
        "a configuration exactly when there are no errors"
    );
    if c.plan.is_some() {
        assert!(c.config.is_some(), "a plan without a configuration");
    }
    let style = render::Style {
        color: false,
        width: render::FIXED_WIDTH,
    };
    for d in c.diagnostics.iter().take(RENDERED) {
        let text = render::render(d, &c.sources, style);
        assert!(
            text.contains(d.code.as_str()),
            "{} rendered without its code:\n{text}",
            d.code
        );
        let _ = d.to_json(&c.sources);
    }
    let json = c.plan.as_ref().map(gw_compiler::plan::Plan::to_json);
    if let (Some(plan), Some(json)) = (&c.plan, &json) {
        let back = match gw_compiler::plan::Plan::from_json(json) {
            Ok(back) => back,
            Err(e) => panic!("a compiled plan does not load back from its JSON: {e}\n{json}"),
        };
        assert_eq!(&back.to_json(), json, "a plan changed through its JSON");
        let _ = plan.render();
    }
    // The same file compiles the same again (maps iterate in another order
    // each time): `gwc check` and `gwc build` are reproducible.
    let Ok(again) = gw_compiler::compile(&host, ROOT) else {
        panic!("the root file is always readable");
    };
    assert!(
        again.diagnostics == c.diagnostics,
        "the diagnostics differ from one compile to the next"
    );
    assert_eq!(
        again.plan.as_ref().map(gw_compiler::plan::Plan::to_json),
        json,
        "the plan differs from one compile to the next"
    );
}
