//! `mysql://user:password@host:port/database?ssl-mode=…` (or `mariadb://`)
//! turned into connection options, and the pools built from them. Every
//! session gets the same settings: UTC, utf8mb4 and a strict `sql_mode`.

use std::time::Duration;

use std::path::Path;

use mysql_async::{
    ClientIdentity, Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts,
};

use super::server::Server;
use super::sql::SQL_MODE;
use super::tls_probe;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::sql_url;
use dmp_contract::tls::{self, ClientCertificate, TrustRoots};

const DEFAULT_PORT: u16 = 3306;

/// How the connection is encrypted, named like MySQL's `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    /// Encrypted when the server offers TLS, else plain (the default for a
    /// server on this machine; elsewhere only when asked for).
    Prefer,
    /// Encrypted, the certificate not checked (MySQL's `REQUIRED`).
    Require,
    /// Encrypted, certificate chain checked, host name not.
    VerifyCa,
    /// Encrypted, certificate and host name checked.
    VerifyIdentity,
}

/// A parsed URL. The password only lives in `builder`; nothing here is
/// ever formatted into a message.
#[derive(Clone)]
pub(super) struct MysqlConfig {
    builder: OptsBuilder,
    host: String,
    port: u16,
    ssl: SslMode,
    /// `ssl-ca`: the only roots the server's certificate may chain to.
    ssl_roots: Option<TrustRoots>,
    /// `ssl-cert` and `ssl-key`.
    ssl_client: Option<ClientCertificate>,
    pub(super) database: String,
    /// The database, for messages: `MySQL 127.0.0.1:3306/shop`.
    pub(super) place: String,
    /// Where the URL was written (`p.toml:4 target.url`): named with
    /// connection errors, which are often a mistake there.
    pub(super) origin: String,
}

/// What a session is used for: targets write with foreign key checks off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Source,
    Target,
}

impl MysqlConfig {
    pub(super) fn parse(endpoint: &Endpoint) -> Result<Self> {
        let url = parse_url(endpoint.expose_url(), endpoint.base_dir())
            .map_err(|what| Error::Config(format!("{}: {what}", endpoint.place())))?;
        let place = format!("MySQL {}:{}/{}", url.host, url.port, url.database);
        let builder = OptsBuilder::default()
            .ip_or_hostname(url.host.clone())
            .tcp_port(url.port)
            .user(Some(url.user))
            .pass(url.password)
            .db_name(Some(url.database.clone()))
            .tcp_nodelay(true)
            // The driver would otherwise switch to the unix socket path the
            // server reports whenever that path exists here: through a
            // tunnel or proxy on this machine, that is another server.
            .prefer_socket(false)
            .stmt_cache_size(64);
        Ok(MysqlConfig {
            builder,
            host: url.host,
            port: url.port,
            ssl: url.tls.mode,
            ssl_roots: url.tls.roots,
            ssl_client: url.tls.client,
            database: url.database,
            place,
            origin: endpoint.place().to_string(),
        })
    }

    /// What a connection error says it was doing.
    pub(super) fn connecting(&self) -> String {
        format!("connecting to {} ({})", self.place, self.origin)
    }

    fn opts(&self, role: Role, ssl: Option<&SslOpts>, pool_size: usize) -> Opts {
        let mut setup = format!(
            "SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = '{SQL_MODE}', \
             net_write_timeout = 3600, net_read_timeout = 3600"
        );
        if role == Role::Target {
            // Foreign keys are added after the load; appended tables may have
            // some already, and their order of arrival is not the load's.
            setup.push_str(", FOREIGN_KEY_CHECKS = 0");
        }
        let pool = PoolOpts::default()
            .with_constraints(
                PoolConstraints::new(pool_size.max(1), pool_size.max(1)).unwrap_or_default(),
            )
            // Writers always commit or roll back (mysql_async rolls back an
            // abandoned transaction on return), and the session settings are
            // the same for every use: a reset per checkout only costs time.
            .with_reset_connection(false)
            .with_inactive_connection_ttl(Duration::from_secs(0));
        // Reading, a row may be larger than the server's own limit (which
        // only bounds what it receives): the driver must accept any. A
        // writer keeps the server's value, which the driver reads, so that
        // large parameters go as long data.
        let max_packet = (role == Role::Source).then_some(1 << 30);
        self.builder
            .clone()
            .max_allowed_packet(max_packet)
            .setup(vec![setup])
            .pool_opts(pool)
            .ssl_opts(ssl.cloned())
            .into()
    }

    /// The driver's TLS settings: never its built-in public roots, only
    /// `ssl-ca`. `verify-ca` checks the name its probe found in the
    /// server's certificate (see `tls_probe.rs`).
    async fn ssl_opts(&self) -> Result<SslOpts> {
        let certified_name = match (&self.ssl, &self.ssl_roots) {
            (SslMode::VerifyCa, Some(roots)) => Some(
                tls_probe::certified_name(&self.host, self.port, roots, self.ssl_client.as_ref())
                    .await
                    .context(|| self.connecting())?,
            ),
            _ => None,
        };
        let verify_ca = matches!(self.ssl, SslMode::VerifyCa | SslMode::VerifyIdentity);
        let roots = self
            .ssl_roots
            .iter()
            .map(|roots| roots.pem().into())
            .collect();
        let identity = self.ssl_client.as_ref().map(|client| {
            ClientIdentity::new(
                client.chain_pem().to_vec().into(),
                client.key_pem().to_vec().into(),
            )
        });
        Ok(SslOpts::default()
            .with_disable_built_in_roots(true)
            .with_root_certs(roots)
            .with_client_identity(identity)
            .with_danger_accept_invalid_certs(!verify_ca)
            .with_danger_tls_hostname_override(certified_name))
    }

    /// A pool of `size` sessions and the server it reaches (which
    /// decides type names and SQL dialect details).
    pub(super) async fn connect(&self, role: Role, size: usize) -> Result<(Pool, Server)> {
        let pool = self.pool(role, size).await?;
        let mut conn = pool.get_conn().await.context(|| self.connecting())?;
        let server = Server::detect(&mut conn, &self.place).await?;
        tracing::debug!(
            place = self.place,
            server = server.name(),
            version = ?server.version,
            "connected"
        );
        Ok((pool, server))
    }

    /// A pool of `size` sessions. With `ssl-mode=prefer` one connection is
    /// tried with TLS first; a server that offers none gets plain ones.
    async fn pool(&self, role: Role, size: usize) -> Result<Pool> {
        let ctx = || self.connecting();
        let opts = match self.ssl {
            SslMode::Disable => self.opts(role, None, size),
            SslMode::Prefer => {
                let tls = self.opts(role, Some(&self.ssl_opts().await?), size);
                match Conn::new(tls.clone()).await {
                    Ok(conn) => {
                        let _ = conn.disconnect().await;
                        tls
                    }
                    Err(mysql_async::Error::Driver(
                        mysql_async::DriverError::NoClientSslFlagFromServer,
                    )) => {
                        tracing::debug!(
                            place = self.place,
                            "server offers no TLS; plain connection"
                        );
                        self.opts(role, None, size)
                    }
                    Err(e) => return Err(e).context(ctx),
                }
            }
            _ => self.opts(role, Some(&self.ssl_opts().await?), size),
        };
        let pool = Pool::new(opts);
        // Fail here, with the place, rather than in the first chunk.
        let conn = pool.get_conn().await.context(ctx)?;
        drop(conn);
        Ok(pool)
    }
}

/// The parts of a MySQL URL.
struct Url {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    database: String,
    tls: Tls,
}

/// How a session is encrypted and what it trusts.
struct Tls {
    mode: SslMode,
    roots: Option<TrustRoots>,
    client: Option<ClientCertificate>,
}

/// The URL's TLS options before they are resolved.
#[derive(Default)]
struct TlsQuery {
    mode: Option<SslMode>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// Parses `scheme://user[:password]@host[:port]/database[?ssl-mode=…]`;
/// certificate paths are taken from `base_dir`. Errors say which part is
/// wrong and never repeat the password.
fn parse_url(url: &str, base_dir: &Path) -> std::result::Result<Url, String> {
    let example = "mysql://user:password@host:3306/database";
    let url = sql_url::parse(url, "MySQL", example)?;
    if url.user.is_empty() {
        return Err(format!("the MySQL URL names no user (expected {example})"));
    }
    if url.host.is_empty() {
        return Err(format!("the MySQL URL names no host (expected {example})"));
    }
    if url.database.is_empty() {
        return Err(format!(
            "the MySQL URL names no database (expected {example}): DMP reads and writes one database"
        ));
    }
    let tls = resolve_tls(parse_query(&url.options)?, &url.host, base_dir)?;
    Ok(Url {
        user: url.user,
        password: url.password,
        host: url.host,
        port: url.port.unwrap_or(DEFAULT_PORT),
        database: url.database,
        tls,
    })
}

fn parse_query(options: &[(String, String)]) -> std::result::Result<TlsQuery, String> {
    let mut parsed = TlsQuery::default();
    for (key, value) in options {
        let value = value.clone();
        match key.replace('_', "-").as_str() {
            "ssl-mode" | "sslmode" => parsed.mode = Some(ssl_mode(key, &value)?),
            "ssl-ca" | "sslca" => parsed.ca = Some(value),
            "ssl-cert" | "sslcert" => parsed.cert = Some(value),
            "ssl-key" | "sslkey" => parsed.key = Some(value),
            _ => {
                return Err(format!(
                    "unknown MySQL URL option `{key}` (known: ssl-mode, ssl-ca, ssl-cert, ssl-key)"
                ));
            }
        }
    }
    Ok(parsed)
}

fn ssl_mode(key: &str, value: &str) -> std::result::Result<SslMode, String> {
    Ok(
        match value.to_ascii_lowercase().replace('_', "-").as_str() {
            "disable" | "disabled" => SslMode::Disable,
            "prefer" | "preferred" => SslMode::Prefer,
            "require" | "required" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-identity" | "verify-full" => SslMode::VerifyIdentity,
            other => {
                return Err(format!(
                    "unknown {key} `{other}` (expected disable, prefer, require, verify-ca or verify-identity)"
                ));
            }
        },
    )
}

/// The URL's ssl-mode, else `require` for a server elsewhere and `prefer`
/// on this machine. A CA makes `require` check the chain (`verify-ca`):
/// a certificate given is a certificate checked. The verifying modes need
/// one.
fn resolve_tls(query: TlsQuery, host: &str, base_dir: &Path) -> std::result::Result<Tls, String> {
    let mode = match query.mode {
        Some(mode) => mode,
        None if tls::is_local(host) => SslMode::Prefer,
        None => SslMode::Require,
    };
    let roots = match &query.ca {
        Some(_) if matches!(mode, SslMode::Disable | SslMode::Prefer) => {
            return Err(format!(
                "ssl-ca is only used with ssl-mode=require, verify-ca or verify-identity (this URL's ssl-mode is {mode:?})"
            ));
        }
        Some(ca) => Some(TrustRoots::load(ca, base_dir)?),
        None => None,
    };
    let mode = match (mode, &roots) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (SslMode::VerifyCa | SslMode::VerifyIdentity, None) => {
            return Err(
                "ssl-mode verify-ca and verify-identity need ssl-ca=PATH (the certificate of the CA that signed the server's) or ssl-ca=system (this system's trusted CAs)"
                    .into(),
            );
        }
        (mode, _) => mode,
    };
    let client = match (&query.cert, &query.key) {
        (Some(cert), Some(key)) => Some(ClientCertificate::load(cert, key, base_dir)?),
        (None, None) => None,
        (Some(_), None) => return Err("ssl-cert is given without ssl-key".into()),
        (None, Some(_)) => return Err("ssl-key is given without ssl-cert".into()),
    };
    Ok(Tls {
        mode,
        roots,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> std::result::Result<Url, String> {
        parse_url(url, Path::new("."))
    }

    #[test]
    fn full_urls_parse() {
        let url = parse("mysql://app:p%40ss%3Aw@db.example:3307/shop?ssl-mode=require").unwrap();
        assert_eq!(url.user, "app");
        assert_eq!(url.password.as_deref(), Some("p@ss:w"));
        assert_eq!(url.host, "db.example");
        assert_eq!(url.port, 3307);
        assert_eq!(url.database, "shop");
        assert_eq!(url.tls.mode, SslMode::Require);
        let url = parse("mariadb://root@[::1]/my%20db?sslmode=disable").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 3306);
        assert_eq!(url.database, "my db");
        assert_eq!(url.password, None);
        assert_eq!(url.tls.mode, SslMode::Disable);
        // The host is decoded as PostgreSQL's is (the two parsers drifted).
        assert_eq!(
            parse("mysql://u@db%2Dprimary/x").unwrap().host,
            "db-primary"
        );
    }

    #[test]
    fn remote_servers_require_tls_unless_the_url_says_otherwise() {
        let mode = |url: &str| parse(url).map(|u| u.tls.mode);
        assert_eq!(mode("mysql://root@127.0.0.1:53306/x"), Ok(SslMode::Prefer));
        assert_eq!(mode("mysql://root@localhost/x"), Ok(SslMode::Prefer));
        assert_eq!(mode("mysql://root@db.example.com/x"), Ok(SslMode::Require));
        assert_eq!(
            mode("mysql://root@db.example.com/x?ssl-mode=preferred"),
            Ok(SslMode::Prefer)
        );
        let err = parse("mysql://u@h/db?ssl-mode=verify-identity")
            .err()
            .expect("no CA");
        assert!(err.contains("ssl-ca=PATH"), "{err}");
        let err = parse("mysql://u@h/db?ssl-cert=c.pem")
            .err()
            .expect("no key");
        assert!(err.contains("without ssl-key"), "{err}");
    }

    #[test]
    fn a_ca_makes_require_check_the_chain() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).expect("ca");
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).expect("write");
        let url = parse_url("mysql://u@db/x?ssl-mode=required&ssl_ca=ca.pem", dir.path())
            .expect("parses");
        assert_eq!(url.tls.mode, SslMode::VerifyCa);
        let err = parse_url("mysql://u@db/x?ssl-ca=nope.pem", dir.path())
            .err()
            .expect("missing");
        assert!(err.contains("nope.pem"), "{err}");
    }

    #[test]
    fn missing_parts_are_named_without_the_password() {
        let err = parse("mysql://root:hunter2@127.0.0.1:53306/")
            .err()
            .expect("error");
        assert!(err.contains("no database"), "{err}");
        assert!(!err.contains("hunter2"));
        let err = |url: &str| parse(url).err().expect("error");
        assert!(err("mysql://127.0.0.1/db").contains("no user"));
        assert!(err("mysql://u@:3306/db").contains("no host"));
        assert!(err("mysql://u@h:port/db").contains("port"));
        assert!(err("mysql://u@h/db?ssl-mode=maybe").contains("maybe"));
        assert!(err("mysql://u@h/db?pool=3").contains("pool"));
    }
}
