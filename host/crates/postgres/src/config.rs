//! `postgres://user:password@host:port/database?sslmode=…&schema=…` turned
//! into sqlx connection options, and the pools built from them. Every
//! session gets the same settings: UTC, ISO dates, no statement or idle
//! timeouts (a chunk's COPY or an index build may take long).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, PgConnection, PgPool};

use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::sql_url;
use dmp_contract::tls::{self, ClientCertificate, TrustRoots, Verify};

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
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let url = parse_url(endpoint.expose_url(), endpoint.base_dir(), &env)
            .map_err(|what| Error::Config(format!("{}: {what}", endpoint.place())))?;
        let mut options = PgConnectOptions::new_without_pgpass()
            .username(&url.user)
            .port(url.port)
            .database(&url.database)
            .ssl_mode(url.tls.mode)
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
        // Given as PEM, so that sqlx reads no file of its own choosing
        // (it would take PGSSLROOTCERT, … when these are unset).
        if let Some(roots) = &url.tls.roots {
            options = options.ssl_root_cert_from_pem(roots.pem());
        }
        if let Some(client) = &url.tls.client {
            options = options
                .ssl_client_cert_from_pem(client.chain_pem())
                .ssl_client_key_from_pem(client.key_pem());
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

/// The parts of a PostgreSQL URL, with what the libpq environment
/// variables add where the URL is silent.
#[derive(Clone)]
pub(super) struct Url {
    pub(super) user: String,
    pub(super) password: Option<String>,
    /// A host name or address, or a Unix socket directory (`/…`).
    pub(super) host: String,
    /// `PGHOSTADDR`: the address to connect to instead of resolving `host`
    /// (which TLS still checks the certificate against).
    pub(super) host_addr: Option<IpAddr>,
    pub(super) port: u16,
    pub(super) database: String,
    pub(super) tls: Tls,
    /// `PGOPTIONS`: command-line options for the server session.
    pub(super) server_options: Option<String>,
    pub(super) schema: String,
}

/// How a session is encrypted and what it trusts.
#[derive(Clone)]
pub(super) struct Tls {
    /// As libpq's sslmode; `require` with a root certificate is
    /// `verify-ca`, as in libpq.
    pub(super) mode: PgSslMode,
    pub(super) roots: Option<TrustRoots>,
    pub(super) client: Option<ClientCertificate>,
}

impl Tls {
    /// What the replication client checks of the server's certificate.
    pub(super) fn verify(&self) -> Verify {
        match self.mode {
            PgSslMode::VerifyFull => Verify::ChainAndName,
            PgSslMode::VerifyCa => Verify::Chain,
            _ => Verify::Nothing,
        }
    }
}

impl std::fmt::Debug for Url {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Url")
            .field("user", &self.user)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("ssl", &self.tls.mode)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// The URL's `?key=value` options, before the environment fills gaps.
#[derive(Default)]
struct Query {
    sslmode: Option<PgSslMode>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    schema: Option<String>,
}

/// Parses `scheme://user[:password]@host[:port]/database[?options]`;
/// `env` gives the libpq variables (PGPASSWORD, PGSSLMODE, PGSSLROOTCERT,
/// PGSSLCERT, PGSSLKEY, PGHOSTADDR, PGOPTIONS), which apply where the URL
/// says nothing, to every session alike. File paths are taken from
/// `base_dir`. Errors say which part is wrong and never repeat the password.
pub(super) fn parse_url(
    url: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Url, String> {
    let example = "postgres://user:password@host:5432/database?sslmode=require&schema=public";
    let url = sql_url::parse(url, "PostgreSQL", example)?;
    if url.user.is_empty() {
        return Err(format!(
            "the PostgreSQL URL names no user (expected {example})"
        ));
    }
    let host = if url.host.is_empty() {
        "localhost".to_string()
    } else {
        url.host
    };
    let port = url.port.unwrap_or(DEFAULT_PORT);
    // libpq's default: the database named like the user.
    let database = if url.database.is_empty() {
        url.user.clone()
    } else {
        url.database
    };
    let (user, password) = (url.user, url.password);
    let query = parse_query(&url.options)?;
    let host_addr = match env("PGHOSTADDR") {
        Some(addr) => Some(
            addr.parse()
                .map_err(|_| format!("PGHOSTADDR `{addr}` is not an IP address"))?,
        ),
        None => None,
    };
    let tls = resolve_tls(&query, &host, base_dir, env)?;
    Ok(Url {
        user,
        password: password.or_else(|| env("PGPASSWORD")),
        host,
        host_addr,
        port,
        database,
        tls,
        server_options: env("PGOPTIONS"),
        schema: query.schema.unwrap_or_else(|| DEFAULT_SCHEMA.into()),
    })
}

fn parse_query(options: &[(String, String)]) -> std::result::Result<Query, String> {
    let mut parsed = Query::default();
    for (key, value) in options {
        let (key, value) = (key.as_str(), value.clone());
        match key {
            "sslmode" | "ssl-mode" | "ssl_mode" => parsed.sslmode = Some(ssl_mode(key, &value)?),
            "sslrootcert" => parsed.sslrootcert = Some(value),
            "sslcert" => parsed.sslcert = Some(value),
            "sslkey" => parsed.sslkey = Some(value),
            "schema" | "currentSchema" => {
                if value.is_empty() {
                    return Err("the PostgreSQL URL's schema option is empty".into());
                }
                parsed.schema = Some(value);
            }
            other => {
                return Err(format!(
                    "unknown PostgreSQL URL option `{other}` (known: sslmode, sslrootcert, sslcert, sslkey, schema)"
                ));
            }
        }
    }
    Ok(parsed)
}

fn ssl_mode(key: &str, value: &str) -> std::result::Result<PgSslMode, String> {
    Ok(
        match value.to_ascii_lowercase().replace('_', "-").as_str() {
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
        },
    )
}

/// The session's TLS: the URL's sslmode, else PGSSLMODE, else `require`
/// for a server elsewhere and `prefer` on this machine. A root certificate
/// makes `require` check the chain (`verify-ca`), as libpq does; the
/// verifying modes need one.
fn resolve_tls(
    query: &Query,
    host: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Tls, String> {
    let mode = match (query.sslmode, env("PGSSLMODE")) {
        (Some(mode), _) => mode,
        (None, Some(value)) => ssl_mode("PGSSLMODE", &value)?,
        (None, None) if tls::is_local(host) => PgSslMode::Prefer,
        (None, None) => PgSslMode::Require,
    };
    let encrypts = !matches!(
        mode,
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer
    );
    if query.sslrootcert.is_some() && !encrypts {
        return Err(format!(
            "sslrootcert is only used with sslmode=require, verify-ca or verify-full (this URL's sslmode is {})",
            mode_name(mode)
        ));
    }
    let roots = match query.sslrootcert.clone().or_else(|| env("PGSSLROOTCERT")) {
        Some(value) if encrypts => Some(TrustRoots::load(&value, base_dir)?),
        _ => None,
    };
    let mode = match (mode, &roots) {
        (PgSslMode::Require, Some(_)) => PgSslMode::VerifyCa,
        (PgSslMode::VerifyCa | PgSslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs sslrootcert=PATH (the certificate of the CA that signed the server's) or sslrootcert=system (this system's trusted CAs)",
                mode_name(mode)
            ));
        }
        (mode, _) => mode,
    };
    let cert = query.sslcert.clone().or_else(|| env("PGSSLCERT"));
    let key = query.sslkey.clone().or_else(|| env("PGSSLKEY"));
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientCertificate::load(&cert, &key, base_dir)?),
        (None, None) => None,
        (Some(_), None) => return Err("sslcert is given without sslkey".into()),
        (None, Some(_)) => return Err("sslkey is given without sslcert".into()),
    };
    Ok(Tls {
        mode,
        roots,
        client,
    })
}

fn mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> std::result::Result<Url, String> {
        parse_url(url, Path::new("."), &|_| None)
    }

    #[test]
    fn full_urls_parse() {
        let url =
            parse("postgres://app:p%40ss%3Aw@db.example:6543/shop?sslmode=require&schema=Sales")
                .unwrap();
        assert_eq!(url.user, "app");
        assert_eq!(url.password.as_deref(), Some("p@ss:w"));
        assert_eq!(url.host, "db.example");
        assert_eq!(url.port, 6543);
        assert_eq!(url.database, "shop");
        assert!(matches!(url.tls.mode, PgSslMode::Require));
        assert_eq!(url.schema, "Sales");
        let url = parse("postgresql://postgres@127.0.0.1:55432/postgres").unwrap();
        assert_eq!(url.schema, "public");
        assert!(matches!(url.tls.mode, PgSslMode::Prefer));
        assert_eq!(url.password, None);
        let url = parse("postgres://u@[::1]/?sslmode=disable").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 5432);
        assert_eq!(url.database, "u");
        assert!(matches!(url.tls.mode, PgSslMode::Disable));
        let url = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(url.host, "/var/run/postgresql");
    }

    #[test]
    fn mistakes_are_named_without_the_password() {
        let err = parse("postgres://root:hunter2@h:port/db").unwrap_err();
        assert!(err.contains("port"), "{err}");
        assert!(!err.contains("hunter2"));
        assert!(parse("postgres://h/db").unwrap_err().contains("no user"));
        assert!(
            parse("postgres://u@h/db?sslmode=maybe")
                .unwrap_err()
                .contains("maybe")
        );
        assert!(
            parse("postgres://u@h/db?pool=3")
                .unwrap_err()
                .contains("pool")
        );
        assert!(
            parse("postgres://u@h/db?schema=")
                .unwrap_err()
                .contains("schema")
        );
    }

    #[test]
    fn remote_servers_require_tls_unless_the_url_says_otherwise() {
        let mode = |url: &str| parse(url).map(|u| mode_name(u.tls.mode));
        assert_eq!(mode("postgres://u@db.example.com/d"), Ok("require"));
        assert_eq!(mode("postgres://u@10.1.2.3/d"), Ok("require"));
        assert_eq!(mode("postgres://u@localhost/d"), Ok("prefer"));
        assert_eq!(mode("postgres://u@127.0.0.1/d"), Ok("prefer"));
        assert_eq!(mode("postgres://u@[::1]/d"), Ok("prefer"));
        assert_eq!(mode("postgres://u@%2Frun%2Fpg/d"), Ok("prefer"));
        assert_eq!(
            mode("postgres://u@db.example.com/d?sslmode=prefer"),
            Ok("prefer")
        );
        let err = parse("postgres://u@db/d?sslmode=verify-full").expect_err("no root");
        assert!(
            err.contains("sslrootcert=PATH") && err.contains("system"),
            "{err}"
        );
        let err = parse("postgres://u@db/d?sslmode=prefer&sslrootcert=ca.pem").expect_err("prefer");
        assert!(err.contains("only used with"), "{err}");
        let err = parse("postgres://u@db/d?sslcert=c.pem").expect_err("no key");
        assert!(err.contains("without sslkey"), "{err}");
    }

    #[test]
    fn a_root_certificate_makes_require_check_the_chain() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).expect("ca");
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).expect("write");
        let url = parse_url(
            "postgres://u@db/d?sslmode=require&sslrootcert=ca.pem",
            dir.path(),
            &|_| None,
        )
        .expect("parses");
        assert_eq!(mode_name(url.tls.mode), "verify-ca");
        assert_eq!(
            url.tls.roots.as_ref().map(|r| r.certificates().len()),
            Some(1)
        );
        let err = parse_url(
            "postgres://u@db/d?sslrootcert=missing.pem",
            dir.path(),
            &|_| None,
        )
        .expect_err("missing file");
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn libpq_variables_fill_what_the_url_leaves_out() {
        let env = |name: &str| match name {
            "PGPASSWORD" => Some("from-env".to_string()),
            "PGSSLMODE" => Some("disable".to_string()),
            "PGHOSTADDR" => Some("127.0.0.2".to_string()),
            "PGOPTIONS" => Some("-c work_mem=64MB".to_string()),
            _ => None,
        };
        let url = parse_url("postgres://u@db.example.com/d", Path::new("."), &env).expect("parses");
        assert_eq!(url.password.as_deref(), Some("from-env"));
        assert_eq!(mode_name(url.tls.mode), "disable");
        assert_eq!(url.host_addr, Some(IpAddr::from([127, 0, 0, 2])));
        assert_eq!(url.server_options.as_deref(), Some("-c work_mem=64MB"));
        let url = parse_url(
            "postgres://u:own@db/d?sslmode=require",
            Path::new("."),
            &env,
        )
        .expect("parses");
        assert_eq!(url.password.as_deref(), Some("own"));
        assert_eq!(mode_name(url.tls.mode), "require");
    }
}
