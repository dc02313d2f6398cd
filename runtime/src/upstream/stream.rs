//! A connection to an upstream server ([`Stream`]: plain TCP, or TLS over
//! TCP when the upstream has `tls`) and how a server's connections are made
//! ([`Dialer`]: its address, `connect_timeout`, and its TLS client). Both
//! clients — the gateway's own HTTP/1.1 client over the server's pool, and
//! hyper's for `http2`, aggregate parts and health checks — dial through
//! the server's `Dialer`, so they verify the server the same way.
//!
//! A handshake that fails (an unknown CA, a wrong name, an expired
//! certificate, no client certificate the server accepts) is a connect
//! error, as a refused connection is: it is logged with rustls' reason and
//! counted on the server (`gw_upstream_errors_total{kind="tls"}`). The whole of
//! connecting, TCP and TLS, is bounded by `connect_timeout`.

use super::health::ServerState;
use crate::tls_client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use rustls::pki_types::ServerName;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A connection to a server.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    /// Boxed: the TLS state is large, and most upstreams are plain.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Tls(s) if s.get_ref().1.alpn_protocol() == Some(tls_client::H2) => Connected::new().negotiated_h2(),
            _ => Connected::new(),
        }
    }
}

/// A server's TLS client: the upstream's config (shared by its servers, and
/// with it the session cache) and the name this server is verified by.
#[derive(Clone)]
pub(crate) struct ServerTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// How one server's connections are made.
pub(crate) struct Dialer {
    pub addr: SocketAddr,
    timeout: Duration,
    /// `None`: plain TCP. `Some(Err)`: the upstream's TLS settings could not
    /// be loaded (a file gone since the check): every connect fails.
    tls: Option<Result<ServerTls, Arc<str>>>,
    /// For the log and the TLS error counter.
    upstream: Arc<str>,
    state: Arc<ServerState>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why no connection could be made.
#[derive(Debug)]
pub(crate) enum DialError {
    /// Refused, unreachable, or another socket error.
    Io(io::Error),
    /// Not within `connect_timeout` (TCP and TLS together).
    TimedOut,
    /// The TLS handshake failed (the reason is logged).
    Tls,
}

impl From<DialError> for io::Error {
    fn from(e: DialError) -> io::Error {
        match e {
            DialError::Io(e) => e,
            DialError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            DialError::Tls => io::Error::new(io::ErrorKind::ConnectionAborted, "TLS handshake failed"),
        }
    }
}

impl Dialer {
    /// The dialer of server `addr`, whose address was written with `host`
    /// (the TLS name unless `server_name` says otherwise). `tls` is the
    /// upstream's client config, when it has `tls`.
    pub(crate) fn new(
        config: &gw_plan::Upstream,
        host: &str,
        addr: SocketAddr,
        tls: Option<&Result<Arc<rustls::ClientConfig>, Arc<str>>>,
        state: Arc<ServerState>,
    ) -> Dialer {
        let server_name = config.tls.as_ref().and_then(|t| t.server_name.as_deref());
        let tls = tls.map(|t| {
            let client = t.clone()?;
            let name = tls_client::server_name(server_name, host).map_err(Arc::<str>::from)?;
            Ok(ServerTls {
                connector: TlsConnector::from(client),
                name,
            })
        });
        Dialer {
            addr,
            timeout: config.connect_timeout.as_duration(),
            tls,
            upstream: config.name.as_str().into(),
            state,
        }
    }

    /// Connects (and shakes hands, with `tls`) within `connect_timeout`.
    pub(crate) async fn dial(&self) -> Result<Stream, DialError> {
        let connecting = async {
            let tcp = TcpStream::connect(self.addr).await.map_err(DialError::Io)?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Stream::Plain(tcp));
            };
            let tls = match tls {
                Ok(t) => t,
                Err(why) => return Err(self.tls_failed(why)),
            };
            match tls.connector.connect(tls.name.clone(), tcp).await {
                Ok(s) => Ok(Stream::Tls(Box::new(s))),
                Err(e) => Err(self.tls_failed(&tls_client::why(&e))),
            }
        };
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(r) => r,
            Err(_) => Err(DialError::TimedOut),
        }
    }

    /// Logs and counts a failed handshake.
    fn tls_failed(&self, why: &str) -> DialError {
        self.state.count_tls_error();
        tracing::warn!(
            upstream = %self.upstream,
            server = %self.addr,
            error = why,
            "TLS handshake with the server failed"
        );
        DialError::Tls
    }
}
