//! The one place that knows which connectors this build has: each one's
//! URL schemes, an example URL, what it can do, and how to open it. Every
//! list of schemes a message shows is derived from here, so adding a
//! connector is its own folder plus one entry below.

use std::path::PathBuf;
use std::sync::Arc;

use dmp_contract::Endpoint;
use dmp_contract::Result;
use dmp_contract::{Source, SourceOptions, Target, TargetOptions};

type OpenSource = fn(&Endpoint, SourceOptions) -> Result<Arc<dyn Source>>;
type OpenTarget = fn(&Endpoint, TargetOptions) -> Result<Arc<dyn Target>>;
type LocalFiles = fn(&Endpoint) -> Result<Vec<PathBuf>>;

/// One connector.
pub(crate) struct Connector {
    /// Its URL schemes; the first is the one messages show.
    pub(crate) schemes: &'static [&'static str],
    /// A URL as a user writes it.
    pub(crate) example: &'static str,
    pub(crate) source: Option<OpenSource>,
    pub(crate) target: Option<OpenTarget>,
    /// Its source has a change stream (modes `cdc`, `full+cdc`).
    pub(crate) changes: bool,
    /// The files and folders it reads or writes for an endpoint.
    pub(crate) files: LocalFiles,
}

/// The certificate files of the SQL connectors' TLS parameters.
const PG_TLS_FILES: &[&str] = &["sslrootcert", "sslcert", "sslkey"];
const MYSQL_TLS_FILES: &[&str] = &[
    "ssl-ca", "sslca", "ssl_ca", "ssl-cert", "sslcert", "ssl_cert", "ssl-key", "sslkey", "ssl_key",
];

/// Every connector of this build.
pub(crate) const CONNECTORS: &[Connector] = &[
    Connector {
        schemes: &["sqlite"],
        example: "sqlite://PATH",
        source: Some(|e, o| Ok(Arc::new(dmp_sqlite::SqliteSource::open(e, o.limits)?))),
        target: Some(|e, o| Ok(Arc::new(dmp_sqlite::SqliteTarget::open(e, o)?))),
        changes: false,
        files: |e| Ok(vec![dmp_sqlite::database_file(e)?]),
    },
    Connector {
        schemes: &["file"],
        example: "file://DIR?format=csv|jsonl|parquet",
        source: Some(|e, o| Ok(Arc::new(dmp_file::FileSource::open(e, o.limits)?))),
        target: Some(|e, o| Ok(Arc::new(dmp_file::FileTarget::open(e, o)?))),
        changes: false,
        files: |e| Ok(vec![dmp_file::folder(e)?]),
    },
    Connector {
        schemes: &["postgres", "postgresql"],
        example: "postgres://USER:PASS@HOST:5432/DB",
        source: Some(|e, o| {
            let limits = o.limits;
            Ok(Arc::new(dmp_postgres::PostgresSource::open(e, o, limits)?))
        }),
        target: Some(|e, o| Ok(Arc::new(dmp_postgres::PostgresTarget::open(e, o)?))),
        changes: true,
        files: |e| Ok(dmp_contract::file_parameters(e, PG_TLS_FILES)),
    },
    Connector {
        schemes: &["mysql", "mariadb"],
        example: "mysql://USER:PASS@HOST:3306/DB",
        source: Some(|e, o| {
            let limits = o.limits;
            Ok(Arc::new(dmp_mysql::MysqlSource::open(e, o, limits)?))
        }),
        target: Some(|e, o| Ok(Arc::new(dmp_mysql::MysqlTarget::open(e, o)?))),
        changes: true,
        files: |e| Ok(dmp_contract::file_parameters(e, MYSQL_TLS_FILES)),
    },
    Connector {
        schemes: &["nats"],
        example: dmp_nats::EXAMPLE,
        source: Some(|e, _| Ok(Arc::new(dmp_nats::NatsSource::open(e)?))),
        target: Some(|e, o| Ok(Arc::new(dmp_nats::NatsTarget::open(e, o)?))),
        changes: true,
        files: |e| Ok(dmp_contract::file_parameters(e, &["creds"])),
    },
];

/// The connector serving `scheme`.
pub(crate) fn connector(scheme: &str) -> Option<&'static Connector> {
    CONNECTORS.iter().find(|c| c.schemes.contains(&scheme))
}

/// `sqlite://, file://, postgres:// (or postgresql://), …` for the
/// connectors `which` selects.
pub(crate) fn schemes(which: impl Fn(&Connector) -> bool) -> String {
    CONNECTORS
        .iter()
        .filter(|c| which(c))
        .map(|c| match c.schemes {
            [first, others @ ..] if !others.is_empty() => {
                let others: Vec<String> = others.iter().map(|s| format!("{s}://")).collect();
                format!("{first}:// (or {})", others.join(", "))
            }
            schemes => schemes.iter().map(|s| format!("{s}://")).collect(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Example URLs of every connector, for a message about a malformed one.
pub(crate) fn examples() -> String {
    CONNECTORS
        .iter()
        .map(|c| c.example)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_unique_and_listed_from_the_table() {
        let mut all: Vec<&str> = CONNECTORS
            .iter()
            .flat_map(|c| c.schemes.iter().copied())
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a scheme names two connectors");
        assert_eq!(
            schemes(|c| c.changes),
            "postgres:// (or postgresql://), mysql:// (or mariadb://), nats://"
        );
        assert!(schemes(|c| c.target.is_some()).starts_with("sqlite://, file://"));
        assert!(connector("mariadb").is_some_and(|c| c.schemes[0] == "mysql"));
        assert!(connector("nats").is_some_and(|c| c.target.is_some()));
        for c in CONNECTORS {
            assert!(c.example.starts_with(c.schemes[0]), "{}", c.example);
        }
    }
}
