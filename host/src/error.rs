//! The library's error type. Messages name the place (file, key, table,
//! chunk); the underlying error stays as the `source`, so the binary prints
//! the whole chain once.

/// Decides what the run does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A mistake in the pipeline file or on the command line, or something
    /// the pipeline cannot do as configured.
    Config,
    /// The source changed while the run went on, in a way the pipeline's
    /// settings do not carry (a schema change the policy stops on, a table
    /// gone): the target holds everything before it; the user changes the
    /// settings or copies again.
    SourceChanged,
    /// A row that cannot be moved, with `on_error = "fail"`.
    Data,
    /// Worth retrying: a busy database, a reset connection.
    Transient,
    /// Anything else: the run stops with a valid checkpoint.
    Fatal,
    /// Stopped on request (Ctrl-C); the checkpoint is valid.
    Interrupted,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Unsupported(String),
    /// See [`ErrorKind::SourceChanged`].
    #[error("{0}")]
    SourceChanged(String),
    /// A plugin that cannot be loaded or opened: the pipeline stops before
    /// any row moves.
    #[error("{0}")]
    Plugin(String),
    /// A file path DMP will not write: outside the output folder, or a link.
    #[error(transparent)]
    UnsafePath(#[from] crate::connectors::UnsafePath),
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
    /// A file dmp keeps private (state store, keys, plugin cache) that is
    /// another user's or cannot be made private.
    #[error(transparent)]
    PrivateFile(#[from] crate::state::PrivateFileError),
    /// A dead-letter key that cannot be read, or a sealed payload it does
    /// not open.
    #[error(transparent)]
    Sealing(#[from] crate::state::SealError),
    /// A plugin refused for its size or its compilation time.
    #[error(transparent)]
    PluginLoad(#[from] crate::transform::LoadError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context}")]
    Csv {
        context: String,
        #[source]
        source: csv::Error,
    },
    #[error("{context}")]
    Parquet {
        context: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{context}")]
    Arrow {
        context: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{context}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{context}")]
    Postgres {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{context}")]
    Mysql {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("{context}")]
    Task {
        context: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error and its causes on one line, each said once:
    /// `creating index i on table t: duplicate key value violates unique
    /// constraint "x"`. A database error is its own message and detail
    /// (without PostgreSQL's source-file line); a cause that only repeats
    /// what wraps it is left out.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let (said, next) = match cause.downcast_ref::<sqlx::Error>() {
                // Its source is the same database error again.
                Some(sqlx::Error::Database(db)) => (database_message(&**db), None),
                _ => match cause.downcast_ref::<mysql_async::Error>() {
                    Some(e) => mysql_message(e),
                    None => (cause.to_string(), cause.source()),
                },
            };
            if !said.is_empty() && !text.ends_with(&said) {
                text.push_str(": ");
                text.push_str(&said);
            }
            source = next;
        }
        text
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_)
            | Error::Unsupported(_)
            | Error::Plugin(_)
            | Error::PrivateFile(
                crate::state::PrivateFileError::NotOurs { .. }
                | crate::state::PrivateFileError::WrongKind { .. },
            )
            | Error::Sealing(_)
            | Error::PluginLoad(_) => ErrorKind::Config,
            Error::Data(_) => ErrorKind::Data,
            Error::SourceChanged(_) => ErrorKind::SourceChanged,
            Error::Interrupted => ErrorKind::Interrupted,
            Error::Sqlite { source, .. } if is_busy(source) => ErrorKind::Transient,
            Error::Postgres { source, .. } if postgres_transient(source) => ErrorKind::Transient,
            Error::Mysql { source, .. } if mysql_transient(source) => ErrorKind::Transient,
            _ => ErrorKind::Fatal,
        }
    }
}

/// mysql_async's own words once: its display wraps each layer in a prefix
/// ("Input/output error: Input/output error: …") and its sources repeat
/// the server's error.
fn mysql_message(e: &mysql_async::Error) -> (String, Option<&(dyn std::error::Error + 'static)>) {
    match e {
        mysql_async::Error::Server(server) => (server.to_string(), None),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => (io.to_string(), None),
        mysql_async::Error::Io(other) => (other.to_string(), None),
        mysql_async::Error::Driver(driver) => (driver.to_string(), None),
        other => (other.to_string(), std::error::Error::source(other)),
    }
}

/// A database's own words: PostgreSQL's message and DETAIL (sqlx's
/// display adds the server's source-file line, which means nothing here).
fn database_message(db: &dyn sqlx::error::DatabaseError) -> String {
    match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        Some(pg) => match pg.detail() {
            Some(detail) => format!("{} ({detail})", pg.message()),
            None => pg.message().to_string(),
        },
        None => db.message().to_string(),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Lost connections, deadlocks, serialization failures, too many
/// connections, a server shutting down: worth another try.
fn postgres_transient(e: &sqlx::Error) -> bool {
    match e {
        // A refused certificate arrives as invalid data from the TLS
        // layer: no retry changes it.
        sqlx::Error::Io(io) => !is_refused_certificate(io),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                "40001"
                    | "40P01"
                    | "53300"
                    | "57P01"
                    | "57P02"
                    | "57P03"
                    | "08000"
                    | "08003"
                    | "08006"
            )
        }),
        // sqlx reads the one-byte answer to its SSLRequest into a zeroed
        // buffer and does not check for end of stream: a connection closed
        // during the handshake reads as this "answer".
        sqlx::Error::Protocol(message) => message == "unexpected response from SSLRequest: 0x00",
        _ => false,
    }
}

/// An I/O error that is the TLS layer refusing the peer (its certificate,
/// its name), not the network failing.
fn is_refused_certificate(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && e.get_ref().is_some_and(|inner| {
            inner
                .downcast_ref::<tokio_rustls::rustls::Error>()
                .is_some()
        })
}

/// Lost connections, lock wait timeouts, deadlocks, too many connections.
fn mysql_transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => !is_refused_certificate(io),
        mysql_async::Error::Io(_) => false,
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => true,
        mysql_async::Error::Server(server) => {
            matches!(server.code, 1040 | 1053 | 1205 | 1213 | 2006 | 2013)
        }
        _ => false,
    }
}

/// Errors that can be wrapped with a description of where they happened.
pub trait Contextual {
    fn with_context(self, context: String) -> Error;
}

macro_rules! contextual {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl Contextual for $ty {
            fn with_context(self, context: String) -> Error {
                Error::$variant { context, source: self }
            }
        }
    )*};
}

contextual! {
    std::io::Error => Io,
    rusqlite::Error => Sqlite,
    csv::Error => Csv,
    parquet::errors::ParquetError => Parquet,
    arrow_schema::ArrowError => Arrow,
    serde_json::Error => Json,
    tokio::task::JoinError => Task,
    sqlx::Error => Postgres,
    mysql_async::Error => Mysql,
}

/// `result.context(|| format!("reading {path}"))` on any contextual error.
pub trait ResultExt<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Contextual> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.with_context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_closed_during_the_tls_handshake_is_worth_a_retry() {
        let eof = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert!(postgres_transient(&eof));
        let not_postgres =
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x48".into());
        assert!(!postgres_transient(&not_postgres));
    }
}
