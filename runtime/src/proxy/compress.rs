//! A route's `compress`: the coding a request accepts ([`negotiate`], from
//! `Accept-Encoding` with its q-values, before the request is taken apart)
//! and the upstream's answer encoded as it streams ([`apply`]).
//!
//! An answer is left as it is when it is to a `HEAD`, a `1xx`, `204`, `206`
//! or `304`, already encoded (`Content-Encoding`), a range (`Content-Range`),
//! marked `Cache-Control: no-transform`, of a media type not in `types` (or
//! `text/event-stream`, whose events must not wait in an encoder), or of a
//! known length under `min_size`. Any other answer gets `Vary:
//! Accept-Encoding` whether or not this client took a coding; an encoded
//! one loses `Content-Length` and `Accept-Ranges`, and a strong `ETag`
//! becomes weak (the bytes are not the upstream's). The body is read frame by
//! frame into the encoder and its output sent as it comes: never buffered
//! whole. Trailer fields of an encoded answer are dropped.

use crate::body::{boxed, Body, BoxError};
use bytes::Bytes;
use gw_plan::{Coding, Compress};
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// What a request accepts of a route with `compress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Accept {
    /// Leave the answer alone (a `HEAD`).
    Untouched,
    /// No coding offered is acceptable: the answer goes as it is, with `Vary`.
    Identity,
    Coding(Coding),
}

/// The coding `cfg` offers that `headers`' `Accept-Encoding` likes best:
/// the highest q-value above 0, ties going to the coding named first in
/// `cfg`. A coding not named takes the q-value of `*`, if given. Without
/// `Accept-Encoding`, no coding (RFC 9110 12.5.3 allows any, but a client
/// that names none is not assumed to decode one).
pub(super) fn negotiate(cfg: &Compress, method: &Method, headers: &HeaderMap) -> Accept {
    if method == Method::HEAD {
        return Accept::Untouched;
    }
    let mut best: Option<(u16, Coding)> = None;
    for &coding in &cfg.codings {
        let q = quality(headers, coding.as_str());
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, coding));
        }
    }
    best.map_or(Accept::Identity, |(_, c)| Accept::Coding(c))
}

/// The q-value (0..=1000) `Accept-Encoding` gives `coding`: its own, else
/// that of `*`, else 0. `x-gzip` is `gzip` (RFC 9110 8.4.1.3).
fn quality(headers: &HeaderMap, coding: &str) -> u16 {
    let mut own = None;
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            let q = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| parse_q(v.trim()))
                })
                .unwrap_or(Some(1000));
            let Some(q) = q else { continue };
            let same = name.eq_ignore_ascii_case(coding) || (coding == "gzip" && name.eq_ignore_ascii_case("x-gzip"));
            if same {
                own = Some(own.map_or(q, |o: u16| o.max(q)));
            } else if name == "*" {
                star = Some(q);
            }
        }
    }
    own.or(star).unwrap_or(0)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in
/// thousandths; `None` when it is not one.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The answer of a route with `compress` as the client gets it (see the
/// module's header).
pub(super) fn apply(resp: Response<Body>, accept: Accept, cfg: &Compress) -> Response<Body> {
    if accept == Accept::Untouched || !eligible(&resp, cfg) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    add_vary(&mut parts.headers);
    let Accept::Coding(coding) = accept else {
        return Response::from_parts(parts, body);
    };
    let headers = &mut parts.headers;
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.as_str()));
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    if let Some(tag) = headers.get(header::ETAG) {
        if tag.as_bytes().starts_with(b"\"") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(tag.as_bytes());
            match HeaderValue::from_bytes(&weak) {
                Ok(v) => headers.insert(header::ETAG, v),
                Err(_) => headers.remove(header::ETAG),
            };
        }
    }
    Response::from_parts(parts, encode(body, coding, cfg.level))
}

/// Whether the answer is one `compress` may encode.
fn eligible(resp: &Response<Body>, cfg: &Compress) -> bool {
    let status = resp.status();
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        return false;
    }
    let headers = resp.headers();
    if headers.contains_key(header::CONTENT_ENCODING) || headers.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-transform")))
    });
    if no_transform {
        return false;
    }
    let Some(media) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "text/event-stream" || !cfg.types.iter().any(|t| matches_type(t, &media)) {
        return false;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| resp.body().size_hint().exact());
    length.is_none_or(|n| n >= cfg.min_size)
}

/// `text/*` matches `text/html`; `application/json` only itself.
fn matches_type(pattern: &str, media: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(ty) => media.split_once('/').is_some_and(|(t, _)| t == ty),
        None => pattern == media,
    }
}

/// `Vary: Accept-Encoding`, unless `Vary` already names it or is `*`.
fn add_vary(headers: &mut HeaderMap) {
    let named = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|f| f.trim() == "*" || f.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !named {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// `body` encoded with `coding` at `level`, as it streams.
fn encode(body: Body, coding: Coding, level: u32) -> Body {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
    use async_compression::Level;
    let reader = BodyReader {
        body,
        chunk: Bytes::new(),
    };
    let level = Level::Precise(level as i32);
    let encoder: Pin<Box<dyn AsyncRead + Send>> = match coding {
        Coding::Gzip => Box::pin(GzipEncoder::with_quality(reader, level)),
        Coding::Br => Box::pin(BrotliEncoder::with_quality(reader, level)),
        Coding::Zstd => Box::pin(ZstdEncoder::with_quality(reader, level)),
    };
    boxed(Encoded {
        encoder,
        buf: Vec::new(),
        done: false,
    })
}

/// A body's data as a reader (trailer frames are skipped; an error ends the
/// read with it).
struct BodyReader {
    body: Body,
    chunk: Bytes,
}

impl AsyncRead for BodyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let data = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = data.len().min(out.remaining());
        out.put_slice(&data[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncBufRead for BodyReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.chunk.is_empty() {
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => break,
            }
        }
        Poll::Ready(Ok(&this.chunk))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        let amt = amt.min(this.chunk.len());
        let _ = this.chunk.split_to(amt);
    }
}

/// The encoder's output as a body, in pieces of up to [`PIECE`] bytes.
struct Encoded {
    encoder: Pin<Box<dyn AsyncRead + Send>>,
    buf: Vec<u8>,
    done: bool,
}

/// The most one frame of encoded output holds.
const PIECE: usize = 16 * 1024;

impl HttpBody for Encoded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.buf.len() < PIECE {
            this.buf.resize(PIECE, 0);
        }
        let mut out = ReadBuf::new(&mut this.buf);
        match ready!(this.encoder.as_mut().poll_read(cx, &mut out)) {
            Ok(()) if out.filled().is_empty() => {
                this.done = true;
                Poll::Ready(None)
            }
            Ok(()) => Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(out.filled()))))),
            Err(e) => {
                this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(codings: &[Coding]) -> Compress {
        Compress {
            codings: codings.to_vec(),
            level: 5,
            min_size: 10,
            types: vec!["text/*".into(), "application/json".into()],
        }
    }

    fn accept(value: &str, codings: &[Coding]) -> Accept {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).expect("value"));
        negotiate(&cfg(codings), &Method::GET, &h)
    }

    #[test]
    fn q_values_choose_the_coding() {
        use Coding::*;
        let all = [Gzip, Br, Zstd];
        assert_eq!(accept("gzip", &all), Accept::Coding(Gzip));
        assert_eq!(
            accept("gzip, br", &all),
            Accept::Coding(Gzip),
            "a tie goes to the order written"
        );
        assert_eq!(accept("gzip;q=0.5, br", &all), Accept::Coding(Br));
        assert_eq!(accept("br;q=0, gzip;q=0.001", &all), Accept::Coding(Gzip));
        assert_eq!(accept("*", &[Zstd, Gzip]), Accept::Coding(Zstd));
        assert_eq!(
            accept("*;q=0.1, gzip;q=0", &all),
            Accept::Coding(Br),
            "q=0 refuses, * covers the rest"
        );
        assert_eq!(accept("identity", &all), Accept::Identity);
        assert_eq!(accept("gzip;q=0, *;q=0", &all), Accept::Identity);
        assert_eq!(accept("deflate", &all), Accept::Identity);
        assert_eq!(accept("GZIP;Q=1.0", &all), Accept::Coding(Gzip));
        assert_eq!(accept("x-gzip", &all), Accept::Coding(Gzip));
        assert_eq!(
            accept("gzip;q=2, br;q=0.9", &all),
            Accept::Coding(Br),
            "a bad q-value drops its item"
        );
        assert_eq!(accept("br", &[Gzip]), Accept::Identity, "only what is offered");
        let none = negotiate(&cfg(&all), &Method::GET, &HeaderMap::new());
        assert_eq!(none, Accept::Identity);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(negotiate(&cfg(&all), &Method::HEAD, &h), Accept::Untouched);
    }

    #[test]
    fn q_values_parse_as_the_grammar_says() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.0001"), None);
        assert_eq!(parse_q("2"), None);
        assert_eq!(parse_q(".5"), None);
    }

    #[test]
    fn media_types_match_exactly_or_by_type() {
        assert!(matches_type("text/*", "text/html"));
        assert!(!matches_type("text/*", "textual/html"));
        assert!(matches_type("application/json", "application/json"));
        assert!(!matches_type("application/json", "application/jsonx"));
    }
}
