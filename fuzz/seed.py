#!/usr/bin/env python3
"""Writes the fuzz corpora's seed inputs, taken from the tests, into DIR/<corpus>/
(default fuzz/work/seeds): `fuzz/run --seed` runs it, then minimises the seeds
together with the committed corpus (`cargo fuzz cmin`) into fuzz/corpus/.

- gw (the corpus of gw_text and gw_structured): examples/*.gw, bench/bench.gw, tests/fixtures/**/*.gw,
  every ```gw block of docs/language.md, and the configuration the property
  tests mutate (tests/robustness.rs's SEED).
- h1_request: every byte-string literal of the tests that is a request
  (`METHOD target HTTP/...`), prefixed by the two bytes the reader takes
  first (max_header_size, then how the bytes are split).
- h1_response: every byte-string literal that is a response (`HTTP/1.x ...`),
  prefixed by what was asked (plain, HEAD, upgrade) and the split byte.
"""
import hashlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "work" / "seeds"

LITERAL = re.compile(rb'b"((?:[^"\\]|\\.)*)"', re.S)
METHOD = re.compile(rb"^[A-Z@][A-Z@-]* \S+ HTTP/")


def unescape(raw: bytes) -> bytes:
    """A Rust byte-string literal's contents as bytes."""
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        e = raw[i + 1 : i + 2]
        if e == b"\n":  # line continuation: skip the newline and leading spaces
            i += 2
            while i < len(raw) and raw[i] in b" \t\n\r":
                i += 1
            continue
        simple = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"0": b"\0", b"\\": b"\\", b'"': b'"', b"'": b"'"}
        if e in simple:
            out += simple[e]
            i += 2
        elif e == b"x":
            out.append(int(raw[i + 2 : i + 4], 16))
            i += 4
        else:
            out += raw[i : i + 2]
            i += 2
    return bytes(out)


def literals(paths):
    for path in paths:
        for m in LITERAL.finditer(path.read_bytes()):
            yield unescape(m.group(1))


def write(target: str, data: bytes):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    configs = [p.read_bytes() for p in sorted(ROOT.glob("examples/*.gw"))]
    configs += [(ROOT / "bench" / "bench.gw").read_bytes()]
    configs += [p.read_bytes() for p in sorted((ROOT / "tests" / "fixtures").rglob("*.gw"))]
    doc = (ROOT / "docs" / "language.md").read_text()
    configs += [m.group(1).encode() for m in re.finditer(r"```gw\n(.*?)```", doc, re.S)]
    robustness = (ROOT / "tests" / "robustness.rs").read_text()
    seed = re.search(r'const SEED: &str = r#"(.*?)"#;', robustness, re.S)
    if seed:
        configs.append(seed.group(1).encode())
    for c in configs:
        write("gw", c)

    tests = sorted((ROOT / "tests").glob("*.rs")) + sorted((ROOT / "runtime" / "src").glob("*.rs"))
    requests, responses = set(), set()
    for lit in literals(tests):
        if METHOD.match(lit):
            requests.add(lit)
        elif lit.startswith(b"HTTP/1."):
            responses.add(lit)
    for r in sorted(requests):
        # max_header_size 8 KiB read whole-ish; 64 bytes (most heads refused); pieces of 1 and 3
        for prefix in (b"\x7f\x3f", b"\x00\x07", b"\x7f\x80", b"\xff\x82"):
            write("h1_request", prefix + r)
    for r in sorted(responses):
        for prefix in (b"\x00\x3f", b"\x01\x80", b"\x02\x05", b"\x04\x00"):
            write("h1_response", prefix + r)
    # route: the method byte, then host NUL path; paths from the examples' routes
    # and the tests' requests, hosts from the examples.
    paths = {b"/", b"/orders/42", b"/%2e%2e/admin", b"/a//b/../c", b"/menu/%F0%9F%8D%95", b"/x?q=1"}
    for r in requests:
        target = r.split(b" ")[1] if r.count(b" ") >= 2 else b"/"
        if target.startswith(b"/"):
            paths.add(target)
    for m in re.finditer(rb"route [A-Z,]* ?(/\S*)", b"\n".join(configs)):
        paths.add(m.group(1).replace(b"{", b"").replace(b"}", b"").replace(b"*", b""))
    for i, p in enumerate(sorted(paths)):
        for host in (b"", b"api.example.com", b"ADMIN.Example.COM:8080"):
            write("route", bytes([i % 10]) + host + b"\0" + p)
    for t in ("gw", "h1_request", "h1_response", "route"):
        print(f"{t}: {len(list((OUT / t).iterdir()))} seeds in {OUT / t}")


main()
