//! A private certificate authority for the TLS servers: the CA, a server
//! certificate for `localhost` (not for `127.0.0.1`, so that a URL naming
//! the address is a wrong host name), a client certificate for the user
//! `dmp_cert`, and a second CA that signed nothing here. Generated with
//! rcgen at each launch, into the server's directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::launch::{StartError, run};

/// The user a client certificate logs in as (its common name).
pub const CERT_USER: &str = "dmp_cert";
/// A user that logs in with a password (SCRAM on PostgreSQL).
pub const PASSWORD_USER: &str = "dmp_password";
/// Its password.
pub const PASSWORD: &str = "s3cret-pass";

/// The certificate files of a TLS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    /// The CA that signed the server's and the client's certificates.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Another CA, which signed neither: trusting it alone must fail.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// The client certificate of [`CERT_USER`].
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// Its private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    pub(crate) fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub(crate) fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Writes a fresh set into `dir`; the server's files are given to
    /// `owner` (servers refuse a key others can read).
    pub(crate) fn generate(dir: &Path, owner: Option<&str>) -> Result<TlsFiles, StartError> {
        let files = TlsFiles {
            dir: dir.join("tls"),
        };
        std::fs::create_dir_all(&files.dir).map_err(|e| io_error(&files.dir, &e))?;
        let (ca_cert, ca_key) = authority("DMP test CA")?;
        let (other_cert, _) = authority("Another CA")?;
        let ca = Issuer::new(ca_cert.1, ca_key);
        let (server_cert, server_key) = leaf("localhost", &["localhost"], true, &ca)?;
        let (client_cert, client_key) = leaf(CERT_USER, &[], false, &ca)?;
        write(&files.ca(), &ca_cert.0)?;
        write(&files.other_ca(), &other_cert.0)?;
        write(&files.server_cert(), &server_cert)?;
        write(&files.server_key(), &server_key)?;
        write(&files.client_cert(), &client_cert)?;
        write(&files.client_key(), &client_key)?;
        if let Some(owner) = owner {
            run(Command::new("chown")
                .arg("-R")
                .arg(format!("{owner}:"))
                .arg(&files.dir))?;
        }
        Ok(files)
    }
}

/// A self-signed CA: its PEM and params (to sign with), and its key.
fn authority(name: &str) -> Result<((String, CertificateParams), KeyPair), StartError> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok(((cert.pem(), params), key))
}

/// A certificate `issuer` signed: for a server (`names` as its DNS names)
/// or for a client (`common_name` is the user). Returns PEM and key PEM.
fn leaf(
    common_name: &str,
    names: &[&str],
    server: bool,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), StartError> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let names: Vec<String> = names.iter().map(ToString::to_string).collect();
    let mut params = CertificateParams::new(names).map_err(rcgen_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let cert = params.signed_by(&key, issuer).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, text: &str) -> Result<(), StartError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, &e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, e: &std::io::Error) -> StartError {
    StartError(format!("{}: {e}", path.display()))
}

fn rcgen_error(e: rcgen::Error) -> StartError {
    StartError(format!("generating test certificates: {e}"))
}
