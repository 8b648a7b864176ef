//! The library's error type. Messages name the place (file, key, table,
//! chunk); the underlying error stays as the `source`, so the binary prints
//! the whole chain once.

/// Decides what the run does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A mistake in the pipeline file or on the command line.
    Config,
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
    /// A plugin that cannot be loaded or opened: the pipeline stops before
    /// any row moves.
    #[error("{0}")]
    Plugin(String),
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
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
    Task {
        context: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Unsupported(_) | Error::Plugin(_) => ErrorKind::Config,
            Error::Data(_) => ErrorKind::Data,
            Error::Interrupted => ErrorKind::Interrupted,
            Error::Sqlite { source, .. } if is_busy(source) => ErrorKind::Transient,
            _ => ErrorKind::Fatal,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
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
