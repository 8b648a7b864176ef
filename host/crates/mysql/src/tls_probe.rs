//! `ssl-mode=verify-ca` for MySQL. mysql_async checks the name of every
//! certificate it verifies (its "skip domain validation" looks for an error
//! text rustls no longer produces), so a server whose certificate names
//! another host than the URL's would be refused. One probe handshake,
//! checked against `ssl-ca` alone, reads the name the CA vouched for; the
//! driver's sessions then verify the chain and that name, so each of them
//! still proves the server holds a certificate of that CA.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use dmp_contract::tls::{self, ClientCertificate, TrustRoots, Verify};

type Result<T> = std::result::Result<T, mysql_async::Error>;

/// A network failure: retried like any lost connection (a refused
/// certificate arrives here too, and is not).
fn io(e: std::io::Error) -> mysql_async::Error {
    mysql_async::Error::Io(mysql_async::IoError::Io(e))
}

/// Anything else the probe refuses.
fn refused(what: impl Into<String>) -> mysql_async::Error {
    mysql_async::Error::Other(what.into().into())
}

/// CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL |
/// CLIENT_SECURE_CONNECTION: what an SSLRequest announces.
const SSL_REQUEST_CAPABILITIES: u32 = 0x1 | 0x200 | 0x800 | 0x8000;
const CLIENT_SSL: u16 = 0x800;
/// A greeting is a few dozen bytes; nothing larger is read.
const MAX_GREETING: usize = 64 * 1024;

/// The DNS name the server's certificate (which must chain to `roots`)
/// is issued for; a wildcard name gives a name it covers.
pub(super) async fn certified_name(
    host: &str,
    port: u16,
    roots: &TrustRoots,
    identity: Option<&ClientCertificate>,
) -> Result<String> {
    let mut tcp = TcpStream::connect((host, port)).await.map_err(io)?;
    request_tls(&mut tcp).await?;
    let config = tls::client_config(Verify::Chain, Some(roots), identity)
        .map_err(|e| refused(format!("TLS settings: {e}")))?;
    let name = tls::server_name(host).map_err(|e| refused(e.to_string()))?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(io)?;
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or_else(|| refused("the server showed no certificate"))?;
    let parsed = webpki::EndEntityCert::try_from(certificate)
        .map_err(|e| refused(format!("the server's certificate does not parse: {e}")))?;
    let dns = parsed.valid_dns_names().next().map(|name| {
        // Any label stands for a wildcard's star.
        name.strip_prefix("*.")
            .map_or_else(|| name.to_string(), |rest| format!("dmp-verify-ca.{rest}"))
    });
    dns.ok_or_else(|| {
        refused("ssl-mode=verify-ca: the server's certificate names no DNS host (only addresses); use verify-identity with the address it names")
    })
}

/// Reads the server's greeting and asks for TLS, as a MySQL client does
/// before its login (which the probe never sends).
async fn request_tls(tcp: &mut TcpStream) -> Result<()> {
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).await.map_err(io)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_GREETING {
        return Err(refused(format!(
            "the server's greeting is {len} bytes long"
        )));
    }
    let mut greeting = vec![0u8; len];
    tcp.read_exact(&mut greeting).await.map_err(io)?;
    if greeting.first() == Some(&0xff) {
        let message = String::from_utf8_lossy(greeting.get(3..).unwrap_or_default());
        return Err(refused(format!(
            "the server refused the connection: {message}"
        )));
    }
    if greeting.first() != Some(&10) {
        return Err(refused("the server does not speak MySQL protocol 10"));
    }
    // version\0, connection id (4), auth data (8), filler (1), capabilities.
    let version_end = greeting
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| refused("a truncated server greeting"))?;
    let at = version_end + 1 + 4 + 8 + 1;
    let capabilities = greeting
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| refused("a truncated server greeting"))?;
    if capabilities & CLIENT_SSL == 0 {
        return Err(mysql_async::Error::Driver(
            mysql_async::DriverError::NoClientSslFlagFromServer,
        ));
    }
    let mut request = vec![32, 0, 0, header[3].wrapping_add(1)];
    request.extend(SSL_REQUEST_CAPABILITIES.to_le_bytes());
    request.extend((16u32 << 20).to_le_bytes());
    request.push(45); // utf8mb4
    request.extend([0u8; 23]);
    tcp.write_all(&request).await.map_err(io)
}
