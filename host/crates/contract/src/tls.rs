//! TLS settings shared by the database connectors: which certificates a
//! connection trusts, the certificate it shows the server, and the mode a
//! URL gets when it names none.
//!
//! Trust is exclusive: the roots a user gives (`sslrootcert`, `ssl-ca`) are
//! the only anchors, or the system's store when asked for (`system`). No
//! compiled-in list of public CAs is ever added — the workspace replaces
//! `webpki-roots` with an empty list (`vendor/webpki-roots`) because the
//! drivers would otherwise add it to every root the user names.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Whether `host` is this machine: a loopback name or address, or a Unix
/// socket directory. Connections elsewhere require TLS unless the URL says
/// otherwise; traffic that never leaves the machine may go plain.
pub fn is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a connection trusts: the certificates of a PEM file, or the
/// system's trusted roots (`system`, as libpq's `sslrootcert=system`).
#[derive(Clone)]
pub struct TrustRoots {
    certificates: Vec<CertificateDer<'static>>,
}

impl TrustRoots {
    /// Loads `value` (`system` or a path, relative to `base_dir`) now, so
    /// that a missing or unreadable file is a configuration error with its
    /// place rather than a failed handshake later.
    pub fn load(value: &str, base_dir: &Path) -> Result<Self, String> {
        if value == "system" {
            return Self::system();
        }
        let path = resolve(value, base_dir);
        let pem = read(&path, "root certificate")?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("{}: holds no PEM certificate", path.display()));
        }
        Ok(TrustRoots { certificates })
    }

    fn system() -> Result<Self, String> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let why = found
                .errors
                .first()
                .map_or_else(|| "the store is empty".to_string(), ToString::to_string);
            return Err(format!(
                "sslrootcert=system: no trusted root certificates found on this system ({why})"
            ));
        }
        Ok(TrustRoots {
            certificates: found.certs,
        })
    }

    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The certificates as one PEM document (for drivers that take PEM).
    pub fn pem(&self) -> Vec<u8> {
        pem_certificates(&self.certificates)
    }
}

/// The certificate chain and key a client shows the server (`sslcert` and
/// `sslkey`, `ssl-cert` and `ssl-key`), read when the URL is parsed.
#[derive(Clone)]
pub struct ClientCertificate {
    chain: Vec<CertificateDer<'static>>,
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl ClientCertificate {
    pub fn load(cert: &str, key: &str, base_dir: &Path) -> Result<Self, String> {
        let cert_path = resolve(cert, base_dir);
        let key_path = resolve(key, base_dir);
        let chain_pem = read(&cert_path, "client certificate")?;
        let chain = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate file: {e}", cert_path.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: holds no PEM certificate", cert_path.display()));
        }
        let key_pem = read(&key_path, "client key")?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            format!(
                "{}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                key_path.display()
            )
        })?;
        Ok(ClientCertificate {
            chain,
            chain_pem,
            key_pem,
        })
    }

    pub fn chain_pem(&self) -> &[u8] {
        &self.chain_pem
    }

    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, rustls::Error> {
        PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| rustls::Error::General(format!("client key: {e}")))
    }
}

/// How much of the server's certificate a connection checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted, any certificate (`require`): protects against listeners,
    /// not against a server in the middle.
    Nothing,
    /// The chain ends at a trusted root; the name is not checked.
    Chain,
    /// The chain, and the certificate names the host.
    ChainAndName,
}

/// A rustls client configuration for `verify` against `roots` (required
/// unless nothing is verified), showing `identity` when given.
pub fn client_config(
    verify: Verify,
    roots: Option<&TrustRoots>,
    identity: Option<&ClientCertificate>,
) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (verify, roots) {
        (Verify::Nothing, _) => Arc::new(AnyCertificate { provider }),
        (_, None) => {
            return Err(rustls::Error::General(
                "certificate verification needs a root certificate".into(),
            ));
        }
        (_, Some(roots)) => {
            let mut store = RootCertStore::empty();
            for certificate in roots.certificates() {
                store.add(certificate.clone())?;
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            if verify == Verify::Chain {
                Arc::new(AnyHostName { verifier })
            } else {
                verifier
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        Some(identity) => builder.with_client_auth_cert(identity.chain.clone(), identity.key()?),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The server name a TLS session checks the certificate against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, rustls::Error> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| rustls::Error::General(format!("`{host}` is not a host name: {e}")))
}

fn resolve(path: &str, base_dir: &Path) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn pem_certificates(certificates: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut pem = String::new();
    for certificate in certificates {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let body = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

/// `require`: encrypted, with any certificate (as libpq and MySQL do
/// without a root certificate); the handshake's signatures are checked.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the chain is checked against the given roots, the host name
/// is not (libpq's meaning).
#[derive(Debug)]
struct AnyHostName {
    verifier: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let checked = self.verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match checked {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}

/// An I/O error that is the TLS layer refusing the peer (its certificate,
/// its name), not the network failing: no retry changes it.
pub fn is_refused_certificate(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && e.get_ref().is_some_and(|inner| {
            inner
                .downcast_ref::<tokio_rustls::rustls::Error>()
                .is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_is_local() {
        for local in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.0.1",
            "::1",
            "[::1]",
            "/run/pg",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in [
            "db.example.com",
            "10.0.0.5",
            "::ffff:10.0.0.5",
            "localhost.evil.com",
            "",
        ] {
            assert!(!is_local(remote), "{remote}");
        }
    }

    #[test]
    fn root_files_are_read_at_parse_time_with_their_path_in_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = TrustRoots::load("ca.pem", dir.path())
            .err()
            .expect("missing");
        assert!(
            missing.contains("ca.pem") && missing.contains("root certificate"),
            "{missing}"
        );
        std::fs::write(dir.path().join("empty.pem"), "not pem").expect("write");
        let empty = TrustRoots::load("empty.pem", dir.path())
            .err()
            .expect("empty");
        assert!(empty.contains("no PEM certificate"), "{empty}");
    }

    #[test]
    fn pem_round_trips_der() {
        let der = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x05]);
        let pem = pem_certificates(std::slice::from_ref(&der));
        let back: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(back, vec![der]);
    }

    #[test]
    fn no_compiled_in_roots_are_trusted() {
        assert!(webpki_roots::TLS_SERVER_ROOTS.is_empty());
    }
}
