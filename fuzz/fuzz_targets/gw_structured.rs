//! The `.gw` front end fuzzed with structure: the same body as `gw_text`
//! (`gw_fuzz::gw_config`), but most mutations work on the language's tokens
//! and lines rather than bytes — a token replaced by a word of the language
//! or by another token of the file (so names keep resolving, or stop
//! resolving, in interesting ways), a line or a `{ ... }` block deleted,
//! duplicated or moved, a line of the examples and fixtures inserted, a
//! number made extreme — so that inputs stay close to configurations and
//! reach the checker, the lowering and the embedded tests, not only the
//! parser. One mutation in four is libFuzzer's own; crossover splices lines.
#![no_main]

use libfuzzer_sys::{fuzz_crossover, fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| gw_fuzz::gw_config(data));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng::new(seed);
    if rng.below(4) == 0 {
        return fuzzer_mutate(data, size, max_size);
    }
    let mut tokens = tokens(&data[..size]);
    for _ in 0..1 + rng.below(3) {
        mutate(&mut tokens, &mut rng);
    }
    let out: Vec<u8> = tokens.concat();
    if out.is_empty() || out.len() > max_size {
        return fuzzer_mutate(data, size, max_size);
    }
    data[..out.len()].copy_from_slice(&out);
    out.len()
});

fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
    // Lines of `a` up to a point, then lines of `b` from another.
    let mut rng = Rng::new(seed);
    let (la, lb) = (lines(a), lines(b));
    let cut_a = rng.below(la.len() + 1);
    let cut_b = rng.below(lb.len() + 1);
    let mut n = 0;
    for line in la[..cut_a].iter().chain(&lb[cut_b..]) {
        if n + line.len() > out.len() {
            break;
        }
        out[n..n + line.len()].copy_from_slice(line);
        n += line.len();
    }
    n
});

/// Lines of the examples and fixtures, inserted whole.
const SOURCES: &[&str] = &[
    include_str!("../../examples/food-court.gw"),
    include_str!("../../examples/quickstart.gw"),
    include_str!("../../tests/fixtures/GW0505_inline_secrets.gw"),
    include_str!("../../tests/fixtures/GW0601_routed_elsewhere.gw"),
    include_str!("../../tests/fixtures/GW0301_no_usable_server.gw"),
    include_str!("../../tests/fixtures/GW0402_key_files.gw"),
    include_str!("../../tests/fixtures/GW0403_tls_certificates.gw"),
];

/// Words of the language and values that sit at limits.
const WORDS: &[&str] = &[
    "listen",
    "admin",
    "limits",
    "upstream",
    "server",
    "route",
    "auth",
    "limit",
    "store",
    "test",
    "import",
    "respond",
    "redirect",
    "aggregate",
    "require",
    "set",
    "remove",
    "add",
    "request",
    "response",
    "header",
    "query",
    "path",
    "rewrite",
    "strip_prefix",
    "cors",
    "origins",
    "methods",
    "credentials",
    "max_age",
    "balance",
    "round_robin",
    "least_conn",
    "random",
    "hash",
    "weight",
    "backup",
    "resolve",
    "health",
    "interval",
    "timeout",
    "expect",
    "unhealthy",
    "healthy",
    "eject",
    "errors",
    "for",
    "connect_timeout",
    "retry",
    "on",
    "budget",
    "connect_error",
    "reset",
    "pool",
    "max_idle",
    "idle_timeout",
    "http2",
    "tls",
    "tcp",
    "cert",
    "key",
    "sni",
    "jwt",
    "api_key",
    "issuer",
    "audience",
    "algorithms",
    "jwks",
    "url",
    "file",
    "refresh",
    "leeway",
    "from",
    "bearer",
    "keys",
    "secret",
    "rate",
    "burst",
    "redis",
    "on_error",
    "allow",
    "deny",
    "max_keys",
    "header_timeout",
    "max_header_size",
    "max_body_size",
    "max_connections",
    "optional",
    "host",
    "in",
    "not",
    "claim.sub",
    "claim.role",
    "param.id",
    "param.rest",
    "header.x-user-id",
    "client_ip",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "GET,HEAD",
    "*",
    "->",
    "=",
    "==",
    "!=",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ";",
    "\"",
    "#",
    "\n",
    "/",
    "/a/{id}",
    "/{*rest}",
    "/x/{*rest}/y",
    "{id}",
    "{*rest}",
    "\"{claim.sub}\"",
    "\"{param.id}\"",
    "\"\\u{e9}\"",
    "\"\\u{110000}\"",
    "env(\"X\")",
    "env(\"UNSET\")",
    "file(\"files/keys.txt\")",
    "file(\"missing\")",
    "RS256",
    "ES256",
    "HS256",
    "EdDSA",
    "none",
    "127.0.0.1:8080",
    ":80",
    "[::1]:80",
    "[::1]",
    "0.0.0.0:0",
    "example.com",
    "*.example.com",
    "localhost:65535",
    "a:65536",
    "1s",
    "0s",
    "10ms",
    "1h30m",
    "100/min",
    "0/s",
    "1/s",
    "10MiB",
    "0B",
    "16KiB",
    "200",
    "200..299",
    "599",
    "600",
    "301",
    "404",
    "20%",
    "0%",
    "100%",
    "101%",
    "0",
    "1",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551615",
    "99999999999999999999",
    "-1",
    "1e9",
    "\"https://auth.example.com\"",
    "\"redis://u:p@127.0.0.1:6379\"",
    "\"redis://[::1]:6379/0\"",
    "\"\"",
    "has",
    "cookie",
    "expose",
    "headers",
    "location",
    "public_key",
    "template",
    "body",
    "claim",
    "param",
];

/// A tiny generator seeded by libFuzzer (so a mutation can be replayed).
struct Rng(u64);

impl Rng {
    fn new(seed: u32) -> Rng {
        Rng(u64::from(seed) ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// `.gw` text as tokens that concatenate back to it: whitespace runs,
/// strings (with their quotes and escapes), comments, brackets and
/// punctuation, and runs of anything else.
fn tokens(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let start = i;
        let b = text[i];
        if b.is_ascii_whitespace() {
            while i < text.len() && text[i].is_ascii_whitespace() {
                i += 1;
            }
        } else if b == b'"' {
            i += 1;
            while i < text.len() && text[i] != b'"' && text[i] != b'\n' {
                i += if text[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(text.len());
        } else if b == b'#' {
            while i < text.len() && text[i] != b'\n' {
                i += 1;
            }
        } else if b"{}[](),;".contains(&b) {
            i += 1;
        } else {
            while i < text.len() && !text[i].is_ascii_whitespace() && !b"\"#{}[](),;".contains(&text[i]) {
                i += 1;
            }
        }
        out.push(text[start..i].to_vec());
    }
    out
}

/// `text`'s lines, each with its newline.
fn lines(text: &[u8]) -> Vec<&[u8]> {
    text.split_inclusive(|b| *b == b'\n').collect()
}

/// Indexes of the tokens that are not whitespace.
fn solid(tokens: &[Vec<u8>]) -> Vec<usize> {
    (0..tokens.len())
        .filter(|&i| !tokens[i].iter().all(u8::is_ascii_whitespace))
        .collect()
}

/// The token range of the `{ ... }` block opened at `open`, if it closes.
fn block(tokens: &[Vec<u8>], open: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.as_slice() {
            b"{" => depth += 1,
            b"}" => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some((open, i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// The token range of the line around token `at`.
fn line_at(tokens: &[Vec<u8>], at: usize) -> (usize, usize) {
    let ends = |t: &Vec<u8>| t.contains(&b'\n');
    let start = (0..at).rev().find(|&i| ends(&tokens[i])).map_or(0, |i| i + 1);
    let end = (at..tokens.len())
        .find(|&i| ends(&tokens[i]))
        .map_or(tokens.len(), |i| i + 1);
    (start, end)
}

fn mutate(tokens: &mut Vec<Vec<u8>>, rng: &mut Rng) {
    let solid = solid(tokens);
    let pick = |rng: &mut Rng| solid.get(rng.below(solid.len())).copied();
    match rng.below(10) {
        // A token becomes a word of the language.
        0 | 1 => {
            if let Some(i) = pick(rng) {
                tokens[i] = WORDS[rng.below(WORDS.len())].as_bytes().to_vec();
            } else {
                tokens.push(WORDS[rng.below(WORDS.len())].as_bytes().to_vec());
            }
        }
        // A word of the language goes in between two tokens.
        2 => {
            let at = rng.below(tokens.len() + 1);
            let word = WORDS[rng.below(WORDS.len())].as_bytes().to_vec();
            tokens.splice(at..at, [b" ".to_vec(), word, b" ".to_vec()]);
        }
        // A token becomes another token of the file (a name used elsewhere).
        3 => {
            if let (Some(i), Some(j)) = (pick(rng), pick(rng)) {
                tokens[i] = tokens[j].clone();
            }
        }
        // A token goes.
        4 => {
            if let Some(i) = pick(rng) {
                tokens.remove(i);
            }
        }
        // A line goes, or is copied elsewhere, or moves.
        5 | 6 => {
            let Some(i) = pick(rng) else { return };
            let (start, end) = line_at(tokens, i);
            let line: Vec<Vec<u8>> = tokens[start..end].to_vec();
            let how = rng.below(3);
            if how != 1 {
                tokens.drain(start..end);
            }
            if how != 0 {
                let at = rng.below(tokens.len() + 1);
                let at = line_at(tokens, at.min(tokens.len().saturating_sub(1)))
                    .0
                    .min(tokens.len());
                tokens.splice(at..at, line);
            }
        }
        // A `{ ... }` block goes or is doubled.
        7 => {
            let opens: Vec<usize> = (0..tokens.len()).filter(|&i| tokens[i] == b"{").collect();
            let Some(&open) = opens.get(rng.below(opens.len())) else {
                return;
            };
            let Some((start, end)) = block(tokens, open) else {
                return;
            };
            if rng.below(2) == 0 {
                tokens.drain(start..end);
            } else {
                let copy: Vec<Vec<u8>> = tokens[start..end].to_vec();
                tokens.splice(end..end, copy);
            }
        }
        // A line of the examples or fixtures goes in at the start of a line.
        8 => {
            let source = SOURCES[rng.below(SOURCES.len())];
            let lines: Vec<&str> = source.split_inclusive('\n').collect();
            let Some(line) = lines.get(rng.below(lines.len())) else {
                return;
            };
            let at = rng.below(tokens.len() + 1);
            let at = if at == tokens.len() { at } else { line_at(tokens, at).0 };
            let mut new = self::tokens(line.as_bytes());
            if !line.ends_with('\n') {
                new.push(b"\n".to_vec());
            }
            tokens.splice(at..at, new);
        }
        // A number becomes an extreme one.
        _ => {
            let numbers: Vec<usize> = solid
                .iter()
                .copied()
                .filter(|&i| tokens[i].first().is_some_and(u8::is_ascii_digit))
                .collect();
            let Some(&i) = numbers.get(rng.below(numbers.len())) else {
                return;
            };
            const EXTREMES: &[&str] = &[
                "0",
                "1",
                "65535",
                "65536",
                "4294967296",
                "18446744073709551616",
                "999999999999999999999999",
            ];
            let digits = tokens[i].iter().take_while(|b| b.is_ascii_digit()).count();
            let mut t = EXTREMES[rng.below(EXTREMES.len())].as_bytes().to_vec();
            t.extend_from_slice(&tokens[i][digits..]);
            tokens[i] = t;
        }
    }
}
