//! `postgres://user:password@host:port/database?sslmode=…&schema=…` turned
//! into sqlx connection options, and the pools built from them. Every
//! session gets the same settings: UTC, ISO dates, no statement or idle
//! timeouts (a chunk's COPY or an index build may take long).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, PgConnection, PgPool};

use crate::config::Endpoint;
use crate::error::{Error, Result, ResultExt};

const DEFAULT_PORT: u16 = 5432;
const DEFAULT_SCHEMA: &str = "public";

/// A parsed URL. Nothing here is ever formatted into a message.
#[derive(Clone)]
pub(super) struct PgConfig {
    options: PgConnectOptions,
    /// The URL's parts, for the replication client (sqlx speaks no
    /// replication protocol).
    pub(super) url: Url,
    /// The schema tables are read from or written to.
    pub(super) schema: String,
    /// The database, for messages: `PostgreSQL 127.0.0.1:5432/shop`.
    pub(super) place: String,
    /// Where the URL was written (`p.toml:4 target.url`): named with
    /// connection errors, which are often a mistake there.
    pub(super) origin: String,
}

impl PgConfig {
    pub(super) fn parse(endpoint: &Endpoint) -> Result<Self> {
        let url = parse_url(endpoint.expose_url())
            .map_err(|what| Error::Config(format!("{}: {what}", endpoint.place())))?;
        let mut options = PgConnectOptions::new_without_pgpass()
            .username(&url.user)
            .port(url.port)
            .database(&url.database)
            .ssl_mode(url.ssl)
            .application_name("dmp")
            .options([
                ("statement_timeout", "0"),
                ("idle_in_transaction_session_timeout", "0"),
                ("TimeZone", "UTC"),
                ("DateStyle", "ISO"),
                ("IntervalStyle", "postgres"),
            ])
            // Statements are few and each is run many times per connection.
            .statement_cache_capacity(64);
        options = if url.host.starts_with('/') {
            options.socket(&url.host)
        } else {
            options.host(&url.host)
        };
        if let Some(password) = &url.password {
            options = options.password(password);
        }
        if let Some(root) = &url.ssl_root_cert {
            options = options.ssl_root_cert(root);
        }
        let schema = if url.schema == DEFAULT_SCHEMA {
            String::new()
        } else {
            format!(" schema {}", url.schema)
        };
        Ok(PgConfig {
            options,
            schema: url.schema.clone(),
            place: format!(
                "PostgreSQL {}:{}/{}{schema}",
                url.host, url.port, url.database
            ),
            url,
            origin: endpoint.place().to_string(),
        })
    }

    /// A pool of at most `size` sessions, connected on first use.
    pub(super) fn pool(&self, size: usize) -> PgPool {
        PgPoolOptions::new()
            .max_connections(u32::try_from(size.max(1)).unwrap_or(u32::MAX))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(120))
            .connect_lazy_with(self.options.clone())
    }

    /// Connects once and hangs up: a pool retries a refused connection
    /// until its acquire timeout and then reports only the timeout, so the
    /// first contact goes around it to surface the real cause at once.
    pub(super) async fn check_reachable(&self) -> Result<()> {
        use sqlx::Connection as _;
        let conn = self.connect().await?;
        conn.close().await.context(|| self.connecting())
    }

    /// One session outside any pool (the snapshot holder).
    pub(super) async fn connect(&self) -> Result<PgConnection> {
        self.options.connect().await.context(|| self.connecting())
    }

    /// What a connection error says it was doing.
    pub(super) fn connecting(&self) -> String {
        format!("connecting to {} ({})", self.place, self.origin)
    }
}

/// The parts of a PostgreSQL URL.
#[derive(Clone)]
pub(super) struct Url {
    pub(super) user: String,
    pub(super) password: Option<String>,
    /// A host name or address, or a Unix socket directory (`/…`).
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) database: String,
    pub(super) ssl: PgSslMode,
    pub(super) ssl_root_cert: Option<String>,
    pub(super) schema: String,
}

impl std::fmt::Debug for Url {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Url")
            .field("user", &self.user)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("ssl", &self.ssl)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Parses `scheme://user[:password]@host[:port]/database[?options]`.
/// Errors say which part is wrong and never repeat the password.
fn parse_url(url: &str) -> std::result::Result<Url, String> {
    let example = "postgres://user:password@host:5432/database?sslmode=prefer&schema=public";
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
        return Err(format!(
            "the PostgreSQL URL names no user (expected {example})"
        ));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in the PostgreSQL URL's host".to_string())?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h)?, Some(p)),
            None => (decode(hostport)?, None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p.parse().map_err(|_| {
            format!("the PostgreSQL URL's port `{p}` is not a number from 1 to 65535")
        })?,
    };
    // libpq's default: the database named like the user.
    let database = match decode(path.trim_end_matches('/'))? {
        db if db.is_empty() => user.clone(),
        db => db,
    };
    let mut parsed = Url {
        user,
        password,
        host: if host.is_empty() {
            "localhost".into()
        } else {
            host
        },
        port,
        database,
        ssl: PgSslMode::Prefer,
        ssl_root_cert: None,
        schema: DEFAULT_SCHEMA.into(),
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("URL option `{pair}` has no `=value`"))?;
        let value = decode(value)?;
        match key {
            "sslmode" | "ssl-mode" | "ssl_mode" => {
                parsed.ssl = match value.to_ascii_lowercase().replace('_', "-").as_str() {
                    "disable" => PgSslMode::Disable,
                    "allow" => PgSslMode::Allow,
                    "prefer" => PgSslMode::Prefer,
                    "require" => PgSslMode::Require,
                    "verify-ca" => PgSslMode::VerifyCa,
                    "verify-full" => PgSslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "unknown {key} `{other}` (expected disable, allow, prefer, require, verify-ca or verify-full)"
                        ));
                    }
                }
            }
            "sslrootcert" => parsed.ssl_root_cert = Some(value),
            "schema" | "currentSchema" => {
                if value.is_empty() {
                    return Err("the PostgreSQL URL's schema option is empty".into());
                }
                parsed.schema = value;
            }
            other => {
                return Err(format!(
                    "unknown PostgreSQL URL option `{other}` (known: sslmode, sslrootcert, schema)"
                ));
            }
        }
    }
    Ok(parsed)
}

/// `%XX` escapes of user, password, host, database and option values.
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
                None => return Err("bad `%` escape in the PostgreSQL URL".to_string()),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| "a `%` escape in the PostgreSQL URL is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_urls_parse() {
        let url = parse_url(
            "postgres://app:p%40ss%3Aw@db.example:6543/shop?sslmode=require&schema=Sales",
        )
        .unwrap();
        assert_eq!(url.user, "app");
        assert_eq!(url.password.as_deref(), Some("p@ss:w"));
        assert_eq!(url.host, "db.example");
        assert_eq!(url.port, 6543);
        assert_eq!(url.database, "shop");
        assert!(matches!(url.ssl, PgSslMode::Require));
        assert_eq!(url.schema, "Sales");
        let url = parse_url("postgresql://postgres@127.0.0.1:55432/postgres").unwrap();
        assert_eq!(url.schema, "public");
        assert!(matches!(url.ssl, PgSslMode::Prefer));
        assert_eq!(url.password, None);
        let url = parse_url("postgres://u@[::1]/?sslmode=disable").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 5432);
        assert_eq!(url.database, "u");
        assert!(matches!(url.ssl, PgSslMode::Disable));
        let url = parse_url("postgres://u@%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(url.host, "/var/run/postgresql");
    }

    #[test]
    fn mistakes_are_named_without_the_password() {
        let err = parse_url("postgres://root:hunter2@h:port/db").unwrap_err();
        assert!(err.contains("port"), "{err}");
        assert!(!err.contains("hunter2"));
        assert!(
            parse_url("postgres://h/db")
                .unwrap_err()
                .contains("no user")
        );
        assert!(
            parse_url("postgres://u@h/db?sslmode=maybe")
                .unwrap_err()
                .contains("maybe")
        );
        assert!(
            parse_url("postgres://u@h/db?pool=3")
                .unwrap_err()
                .contains("pool")
        );
        assert!(
            parse_url("postgres://u@h/db?schema=")
                .unwrap_err()
                .contains("schema")
        );
    }
}
