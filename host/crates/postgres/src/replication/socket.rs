//! The replication connection's socket: TCP (TLS as `sslmode` says, the
//! same rules as the sqlx sessions of this connector, from `tls.rs`) or a
//! Unix socket.
//!
//! sslmode: `disable`/`allow` plain; `prefer` TLS when the server offers
//! it; `require` TLS without checking the certificate; `verify-ca` the
//! certificate chains to `sslrootcert` (and nothing else); `verify-full`
//! also names the host.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sqlx::postgres::PgSslMode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::super::config::Url;
use dmp_contract::tls;

pub(super) enum Socket {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// Connects to the URL's server and negotiates TLS as its sslmode says.
pub(super) async fn connect(url: &Url) -> Result<Socket, sqlx::Error> {
    if url.host.starts_with('/') {
        return connect_unix(url).await;
    }
    // PGHOSTADDR, as the sqlx sessions use it: connect there, check the
    // certificate against the host name.
    let mut tcp = match url.host_addr {
        Some(addr) => TcpStream::connect((addr, url.port)).await?,
        None => TcpStream::connect((url.host.as_str(), url.port)).await?,
    };
    // Status updates are small and late ones hold WAL: no Nagle delay.
    tcp.set_nodelay(true)?;
    let required = match url.tls.mode {
        PgSslMode::Disable | PgSslMode::Allow => return Ok(Socket::Tcp(tcp)),
        PgSslMode::Prefer => false,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
    };
    if !request_tls(&mut tcp).await? {
        if required {
            return Err(sqlx::Error::Tls(
                "the server does not accept TLS connections, which sslmode requires".into(),
            ));
        }
        return Ok(Socket::Tcp(tcp));
    }
    let tls = &url.tls;
    let config = tls::client_config(tls.verify(), tls.roots.as_ref(), tls.client.as_ref())
        .map_err(|e| sqlx::Error::Tls(e.into()))?;
    let name = tls::server_name(&url.host).map_err(|e| sqlx::Error::Tls(e.into()))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| match e.kind() {
            // A refused certificate: no retry will change that.
            io::ErrorKind::InvalidData => sqlx::Error::Tls(e.into()),
            _ => sqlx::Error::Io(e),
        })?;
    Ok(Socket::Tls(Box::new(tls)))
}

#[cfg(unix)]
async fn connect_unix(url: &Url) -> Result<Socket, sqlx::Error> {
    let path = format!("{}/.s.PGSQL.{}", url.host.trim_end_matches('/'), url.port);
    Ok(Socket::Unix(tokio::net::UnixStream::connect(path).await?))
}

#[cfg(not(unix))]
async fn connect_unix(url: &Url) -> Result<Socket, sqlx::Error> {
    Err(sqlx::Error::Configuration(
        format!("{}: Unix sockets are not available here", url.host).into(),
    ))
}

/// Sends an `SSLRequest`; the server answers `S` (go ahead) or `N`.
async fn request_tls(tcp: &mut TcpStream) -> Result<bool, sqlx::Error> {
    let mut request = bytes::BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    match tcp.read_u8().await? {
        b'S' => Ok(true),
        b'N' => Ok(false),
        other => Err(super::error::protocol(format!(
            "unexpected answer 0x{other:02x} to a TLS request"
        ))),
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
