//! The PROXY protocol header a layer-4 balancer sends first on each
//! connection (`listen ... proxy_protocol`): HAProxy's v1 text line and v2
//! binary header, parsed by the `ppp` crate. This module frames the header
//! on the socket — it peeks until the whole header is there and then reads
//! exactly its bytes, so what follows (a TLS ClientHello, an HTTP request)
//! is left on the socket for the next reader — and takes the source address
//! from it. A connection without a valid header is closed; the header is
//! awaited no longer than `header_timeout`.
//!
//! Bounds: a v1 line is at most 107 bytes (the specification's maximum);
//! a v2 header at most 16 bytes plus [`MAX_V2_BODY`] of addresses and TLVs.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature (12 bytes), before version, family and length.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, `\r\n` included (the specification's figure).
const V1_MAX: usize = 107;
/// The most a v2 header may carry after its 16 fixed bytes: addresses (at
/// most 216, for UNIX sockets) and TLVs (the balancers in use send well
/// under a KiB). The format allows 65,535; a longer one is refused.
pub(crate) const MAX_V2_BODY: usize = 4096;

/// What the bytes seen so far say about the header.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet to tell.
    More,
    /// The header is the first `n` bytes.
    Header(usize),
    /// Not a PROXY header, or one over the bounds.
    Invalid,
}

/// Frames a header from the first bytes of a connection.
pub fn frame(seen: &[u8]) -> Frame {
    let v2 = seen.len().min(12);
    if seen[..v2] == V2_SIGNATURE[..v2] {
        if seen.len() < 16 {
            return Frame::More;
        }
        let body = usize::from(u16::from_be_bytes([seen[14], seen[15]]));
        if body > MAX_V2_BODY {
            return Frame::Invalid;
        }
        return Frame::Header(16 + body);
    }
    let v1 = seen.len().min(6);
    if seen[..v1] != b"PROXY "[..v1] {
        return Frame::Invalid;
    }
    match seen.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i + 2 <= V1_MAX => Frame::Header(i + 2),
        Some(_) => Frame::Invalid,
        None if seen.len() >= V1_MAX => Frame::Invalid,
        None => Frame::More,
    }
}

/// The source address a whole header gives: `Ok(Some(addr))` for a proxied
/// TCP connection, `Ok(None)` for one that names none (v1 `UNKNOWN`, v2
/// `LOCAL` — a balancer's own health check — or a UNIX or unspecified
/// family: the connection's own peer stands), `Err` for an invalid header.
pub fn source(header: &[u8]) -> Result<Option<SocketAddr>, ()> {
    use ppp::{v1, v2};
    if header.starts_with(V2_SIGNATURE) {
        let h = v2::Header::try_from(header).map_err(|_| ())?;
        if h.len() != header.len() {
            return Err(());
        }
        if h.command == v2::Command::Local {
            return Ok(None);
        }
        return Ok(match h.addresses {
            v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
        });
    }
    let h = v1::Header::try_from(header).map_err(|_| ())?;
    if h.header.len() != header.len() {
        return Err(());
    }
    Ok(match h.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    })
}

/// Reads the PROXY header at the start of `stream` (its bytes only) and
/// returns the peer it names, or `peer` when it names none. `None` when
/// the header is invalid, the client closed, or `wait` passed first.
pub(crate) async fn read(stream: &mut TcpStream, peer: SocketAddr, wait: Duration) -> Option<SocketAddr> {
    let reading = async {
        let mut buf = [0u8; 16 + V1_MAX];
        let len = loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            match frame(&buf[..n]) {
                Frame::Header(len) => break len,
                Frame::Invalid => return None,
                // Rare (a header split across packets): look again shortly.
                Frame::More => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        let mut header = vec![0u8; len];
        stream.read_exact(&mut header).await.ok()?;
        source(&header).ok().map(|found| found.unwrap_or(peer))
    };
    tokio::time::timeout(wait, reading).await.ok().flatten()
}

/// The fuzz target's body (`fuzz/fuzz_targets/proxy_header.rs`): framing
/// and parsing never panic, a header framed is within the bounds and the
/// bytes given, and framing never changes its mind as more bytes come —
/// every prefix frames as "more" or as the whole does.
pub fn fuzz_proxy_header(data: &[u8]) {
    let whole = frame(data);
    if let Frame::Header(n) = whole {
        assert!(n <= 16 + MAX_V2_BODY, "a header of {n} bytes");
        if let Some(header) = data.get(..n) {
            let _ = source(header);
        }
    }
    for k in 0..data.len().min(16 + V1_MAX + 1) {
        let part = frame(&data[..k]);
        assert!(
            part == Frame::More || part == whole,
            "{k} bytes frame as {part:?}, all of them as {whole:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_are_framed_and_read() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(frame(&v1[..10]), Frame::More);
        let Frame::Header(n) = frame(v1) else {
            panic!("a v1 header")
        };
        assert_eq!(
            source(&v1[..n]),
            Ok(Some("192.0.2.7:5555".parse().expect("an address")))
        );
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n";
        assert_eq!(
            source(v1_6),
            Ok(Some("[2001:db8::7]:5555".parse().expect("an address")))
        );
        assert_eq!(source(b"PROXY UNKNOWN\r\n"), Ok(None));
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80]);
        assert_eq!(frame(&v2[..15]), Frame::More);
        assert_eq!(frame(&v2), Frame::Header(28));
        assert_eq!(source(&v2), Ok(Some("198.51.100.9:8080".parse().expect("an address"))));
        v2[12] = 0x20; // LOCAL
        assert_eq!(source(&v2), Ok(None));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(frame(b"GET / HTTP/1.1\r\n"), Frame::Invalid);
        assert_eq!(frame(b"\x16\x03\x01"), Frame::Invalid);
        assert_eq!(frame(&[b'P'; 200]), Frame::Invalid);
        let long = format!("PROXY {}\r\n", "1".repeat(120));
        assert_eq!(frame(long.as_bytes()), Frame::Invalid);
        assert!(source(b"PROXY TCP4 300.0.2.7 10.0.0.1 5555 80\r\n").is_err());
        assert!(source(b"PROXY TCP9 1.2.3.4 10.0.0.1 5555 80\r\n").is_err());
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(frame(&v2), Frame::Invalid);
    }
}
