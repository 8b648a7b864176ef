//! The error every layer returns. Messages name the place (file, key, table,
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
    /// Another worker took this work over (the target's checkpoint moved
    /// past where this one continued from): nothing was written; the work
    /// is left to the other, not retried.
    Deposed,
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
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
    /// See [`ErrorKind::Deposed`].
    #[error("{0}")]
    Deposed(String),
    /// A typed error of a layer above this crate (a private file that is
    /// not ours, a sealed payload that does not open, a plugin refused for
    /// its size, a path DMP will not write), with the kind that layer gave
    /// it.
    #[error("{source}")]
    Layer {
        kind: ErrorKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
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
    /// A driver's error (a database, a file format) where it happened; the
    /// connector decided its kind and its words.
    #[error("{context}")]
    Driver {
        context: String,
        #[source]
        source: DriverError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A driver's error as the connector that met it sees it: whether another
/// try may help ([`ErrorKind`]) and what the driver said, once (drivers
/// repeat themselves down their chains of causes). The driver's own error
/// stays as the source for a caller that wants it.
#[derive(Debug, thiserror::Error)]
#[error("{said}")]
pub struct DriverError {
    kind: ErrorKind,
    said: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl DriverError {
    /// `said` is the driver's message with its causes (see
    /// [`causes_once`]); `kind` is `Transient` for what another try may
    /// cure, else `Fatal` (or `Config` for what no run cures).
    pub fn new(
        kind: ErrorKind,
        said: String,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        DriverError {
            kind,
            said,
            source: Box::new(source),
        }
    }

    /// `error` of `kind`, said as its display and its causes'.
    pub fn of(kind: ErrorKind, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        let said = causes_once(error.to_string(), error.source());
        DriverError::new(kind, said, error)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The driver's own error.
    pub fn driver(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl Error {
    /// `error` under `context`, as a connector saw it.
    pub fn driver(context: String, error: DriverError) -> Self {
        Error::Driver {
            context,
            source: error,
        }
    }

    /// A typed error of a layer above this crate, of `kind`.
    pub fn layer(kind: ErrorKind, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Layer {
            kind,
            source: Box::new(error),
        }
    }

    /// The error and its causes on one line, each said once:
    /// `creating index i on table t: duplicate key value violates unique
    /// constraint "x"`. A driver's error is said in its connector's words
    /// (a database's message and detail, without PostgreSQL's source-file
    /// line); a cause that only repeats what wraps it is left out.
    pub fn report(&self) -> String {
        causes_once(self.to_string(), std::error::Error::source(self))
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Unsupported(_) | Error::Plugin(_) => ErrorKind::Config,
            Error::Data(_) => ErrorKind::Data,
            Error::SourceChanged(_) => ErrorKind::SourceChanged,
            Error::Interrupted => ErrorKind::Interrupted,
            Error::Deposed(_) => ErrorKind::Deposed,
            Error::Layer { kind, .. } => *kind,
            Error::Driver { source, .. } => source.kind,
            Error::Io { .. } | Error::Json { .. } | Error::Task { .. } => ErrorKind::Fatal,
        }
    }
}

/// `text` followed by each of `cause` and its causes that says something
/// new; a [`DriverError`] ends the chain with its own words.
pub fn causes_once(mut text: String, cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut cause = cause;
    while let Some(error) = cause {
        let (said, next) = match error.downcast_ref::<DriverError>() {
            Some(driver) => (driver.said.clone(), None),
            None => (error.to_string(), error.source()),
        };
        if !said.is_empty() && !text.ends_with(&said) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
        cause = next;
    }
    text
}

/// Errors that can be wrapped with a description of where they happened.
pub trait Contextual {
    fn with_context(self, context: String) -> Error;
}

impl Contextual for std::io::Error {
    fn with_context(self, context: String) -> Error {
        Error::Io {
            context,
            source: self,
        }
    }
}

impl Contextual for serde_json::Error {
    fn with_context(self, context: String) -> Error {
        Error::Json {
            context,
            source: self,
        }
    }
}

impl Contextual for tokio::task::JoinError {
    fn with_context(self, context: String) -> Error {
        Error::Task {
            context,
            source: self,
        }
    }
}

impl Contextual for DriverError {
    fn with_context(self, context: String) -> Error {
        Error::driver(context, self)
    }
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

/// The `error` module of a crate that meets drivers' errors: the shared
/// [`Error`], and `Contextual`/`ResultExt` traits of its own that also
/// take each named driver error, turned into a [`DriverError`] by the
/// given function (the orphan rule keeps a crate from adding drivers to
/// this crate's traits). Use: `dmp_contract::driver_errors! { sqlx::Error
/// => driver_error }` in `error.rs`.
#[macro_export]
macro_rules! driver_errors {
    ($($driver:ty => $convert:path),* $(,)?) => {
        pub use $crate::error::{DriverError, Error, ErrorKind, Result};

        /// Errors that can be wrapped with a description of where they
        /// happened: the shared ones and this crate's drivers'.
        pub trait Contextual {
            fn with_context(self, context: String) -> Error;
        }

        $crate::driver_errors!(@shared std::io::Error, $crate::error::JsonError, $crate::error::JoinError);

        $(
            impl Contextual for $driver {
                fn with_context(self, context: String) -> Error {
                    Error::driver(context, $convert(self))
                }
            }
        )*

        /// `result.context(|| format!("reading {path}"))` on any contextual
        /// error.
        pub trait ResultExt<T> {
            fn context(self, context: impl FnOnce() -> String) -> Result<T>;
        }

        impl<T, E: Contextual> ResultExt<T> for std::result::Result<T, E> {
            fn context(self, context: impl FnOnce() -> String) -> Result<T> {
                self.map_err(|e| e.with_context(context()))
            }
        }
    };
    (@shared $($shared:ty),*) => {
        $(
            impl Contextual for $shared {
                fn with_context(self, context: String) -> Error {
                    $crate::error::Contextual::with_context(self, context)
                }
            }
        )*
    };
}

/// The shared error types, named for [`driver_errors!`].
pub type JsonError = serde_json::Error;
pub type JoinError = tokio::task::JoinError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_error_is_said_once_in_its_connectors_words() {
        let io = std::io::Error::other("connection reset by peer");
        let driver = DriverError::new(ErrorKind::Transient, "the server went away".into(), io);
        let e = Error::driver("reading table t".into(), driver);
        assert_eq!(e.report(), "reading table t: the server went away");
        assert_eq!(e.kind(), ErrorKind::Transient);
        let nested = Error::Io {
            context: "writing t".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(nested.report(), "writing t: disk full");
        assert_eq!(nested.kind(), ErrorKind::Fatal);
    }
}
