//! `mysql://user:password@host:port/database?ssl-mode=…` (or `mariadb://`)
//! turned into connection options, and the pools built from them. Every
//! session gets the same settings: UTC, utf8mb4 and a strict `sql_mode`.

use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};

use super::server::Server;
use super::sql::SQL_MODE;
use crate::config::Endpoint;
use crate::error::{Error, Result, ResultExt};

const DEFAULT_PORT: u16 = 3306;

/// How the connection is encrypted, named like MySQL's `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    /// Encrypted when the server offers TLS, else plain (MySQL's default).
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
    ssl: SslMode,
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
        let url = parse_url(endpoint.expose_url())
            .map_err(|what| Error::Config(format!("{}: {what}", endpoint.place())))?;
        let place = format!("MySQL {}:{}/{}", url.host, url.port, url.database);
        let builder = OptsBuilder::default()
            .ip_or_hostname(url.host)
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
            ssl: url.ssl,
            database: url.database,
            place,
            origin: endpoint.place().to_string(),
        })
    }

    /// What a connection error says it was doing.
    pub(super) fn connecting(&self) -> String {
        format!("connecting to {} ({})", self.place, self.origin)
    }

    fn opts(&self, role: Role, ssl: bool, pool_size: usize) -> Opts {
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
        let ssl_opts = ssl.then(|| self.ssl_opts());
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
            .ssl_opts(ssl_opts)
            .into()
    }

    fn ssl_opts(&self) -> SslOpts {
        let verify_ca = matches!(self.ssl, SslMode::VerifyCa | SslMode::VerifyIdentity);
        SslOpts::default()
            .with_danger_accept_invalid_certs(!verify_ca)
            .with_danger_skip_domain_validation(self.ssl != SslMode::VerifyIdentity)
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
            SslMode::Disable => self.opts(role, false, size),
            SslMode::Prefer => {
                let tls = self.opts(role, true, size);
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
                        self.opts(role, false, size)
                    }
                    Err(e) => return Err(e).context(ctx),
                }
            }
            _ => self.opts(role, true, size),
        };
        let pool = Pool::new(opts);
        // Fail here, with the place, rather than in the first chunk.
        let conn = pool.get_conn().await.context(ctx)?;
        drop(conn);
        Ok(pool)
    }
}

/// The parts of a MySQL URL.
#[derive(Debug, PartialEq)]
struct Url {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    database: String,
    ssl: SslMode,
}

/// Parses `scheme://user[:password]@host[:port]/database[?ssl-mode=…]`.
/// Errors say which part is wrong and never repeat the password.
fn parse_url(url: &str) -> std::result::Result<Url, String> {
    let example = "mysql://user:password@host:3306/database";
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("expected a URL like {example}"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (decode(u)?, Some(decode(p)?)),
            None => (decode(info)?, None),
        },
        None => (String::new(), None),
    };
    if user.is_empty() {
        return Err(format!("the MySQL URL names no user (expected {example})"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in the MySQL URL's host".to_string())?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("the MySQL URL names no host (expected {example})"));
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse()
            .map_err(|_| format!("the MySQL URL's port `{p}` is not a number from 1 to 65535"))?,
    };
    let database = decode(path.trim_end_matches('/'))?;
    if database.is_empty() {
        return Err(format!(
            "the MySQL URL names no database (expected {example}): DMP reads and writes one database"
        ));
    }
    let mut ssl = SslMode::Prefer;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("URL option `{pair}` has no `=value`"))?;
        match key {
            "ssl-mode" | "sslmode" | "ssl_mode" => {
                ssl = match value.to_ascii_lowercase().replace('_', "-").as_str() {
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
                }
            }
            other => {
                return Err(format!(
                    "unknown MySQL URL option `{other}` (known: ssl-mode)"
                ));
            }
        }
    }
    Ok(Url {
        user,
        password,
        host,
        port,
        database,
        ssl,
    })
}

/// `%XX` escapes of user, password and database name.
fn decode(text: &str) -> std::result::Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let decoded = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(crate::model::decode_hex);
            match decoded {
                Some(b) => {
                    out.extend(b);
                    i += 3;
                    continue;
                }
                None => return Err("bad `%` escape in the MySQL URL".to_string()),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a `%` escape in the MySQL URL is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_urls_parse() {
        let url =
            parse_url("mysql://app:p%40ss%3Aw@db.example:3307/shop?ssl-mode=require").unwrap();
        assert_eq!(
            url,
            Url {
                user: "app".into(),
                password: Some("p@ss:w".into()),
                host: "db.example".into(),
                port: 3307,
                database: "shop".into(),
                ssl: SslMode::Require,
            }
        );
        let url = parse_url("mariadb://root@[::1]/my%20db?sslmode=disable").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 3306);
        assert_eq!(url.database, "my db");
        assert_eq!(url.password, None);
        assert_eq!(url.ssl, SslMode::Disable);
        assert_eq!(
            parse_url("mysql://root@127.0.0.1:53306/x").unwrap().ssl,
            SslMode::Prefer
        );
    }

    #[test]
    fn missing_parts_are_named_without_the_password() {
        let err = parse_url("mysql://root:hunter2@127.0.0.1:53306/").unwrap_err();
        assert!(err.contains("no database"), "{err}");
        assert!(!err.contains("hunter2"));
        assert!(
            parse_url("mysql://127.0.0.1/db")
                .unwrap_err()
                .contains("no user")
        );
        assert!(
            parse_url("mysql://u@:3306/db")
                .unwrap_err()
                .contains("no host")
        );
        assert!(
            parse_url("mysql://u@h:port/db")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            parse_url("mysql://u@h/db?ssl-mode=maybe")
                .unwrap_err()
                .contains("maybe")
        );
        assert!(
            parse_url("mysql://u@h/db?pool=3")
                .unwrap_err()
                .contains("pool")
        );
    }
}
