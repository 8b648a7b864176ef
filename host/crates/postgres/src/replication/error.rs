//! Errors of the replication client, as `sqlx::Error`s: the rest of the
//! connector (and `Error::kind`) then treats them like any other
//! PostgreSQL error: a lost connection is transient, a server error keeps
//! its SQLSTATE, which decides whether it is worth another try.

use std::borrow::Cow;
use std::fmt;

use sqlx::error::{DatabaseError, ErrorKind};

/// An `ErrorResponse` from the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ServerError {
    pub(super) severity: String,
    pub(super) code: String,
    pub(super) message: String,
    pub(super) detail: Option<String>,
    pub(super) hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an `ErrorResponse` body: `(type, text\0)*\0`.
    pub(super) fn parse(body: &[u8]) -> ServerError {
        let mut error = ServerError::default();
        let mut rest = body;
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
            let text = String::from_utf8_lossy(&tail[..end]).into_owned();
            match kind {
                // `V` is the untranslated severity (PostgreSQL 9.6+).
                b'V' => error.severity = text,
                b'S' if error.severity.is_empty() => error.severity = text,
                b'C' => error.code = text,
                b'M' => error.message = text,
                b'D' => error.detail = Some(text),
                b'H' => error.hint = Some(text),
                _ => {}
            }
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        error
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, "; {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

impl DatabaseError for ServerError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.code))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code.as_str() {
            "23505" => ErrorKind::UniqueViolation,
            "23503" => ErrorKind::ForeignKeyViolation,
            "23502" => ErrorKind::NotNullViolation,
            "23514" => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

pub(super) fn server(error: ServerError) -> sqlx::Error {
    sqlx::Error::Database(Box::new(error))
}

/// The server broke the protocol, or sent what this client cannot read.
pub(super) fn protocol(what: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Protocol(what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_keep_message_and_sqlstate() {
        let body = b"SERROR\0VERROR\0C42704\0Mreplication slot \"x\" does not exist\0Fslot.c\0\0";
        let e = ServerError::parse(body);
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.code, "42704");
        assert_eq!(
            e.to_string(),
            "replication slot \"x\" does not exist (SQLSTATE 42704)"
        );
        let wrapped = server(e);
        let sqlx::Error::Database(db) = &wrapped else {
            panic!("{wrapped:?}")
        };
        assert_eq!(db.code().as_deref(), Some("42704"));
        // A terminated walsender is worth another try, as for sqlx.
        let gone = server(ServerError::parse(
            b"SFATAL\0C57P01\0Mterminating connection\0\0",
        ));
        let err = crate::error::Error::driver("source".into(), crate::error::driver_error(gone));
        assert_eq!(err.kind(), crate::error::ErrorKind::Transient);
        let lost = crate::error::Error::driver(
            "source".into(),
            crate::error::driver_error(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
        );
        assert_eq!(lost.kind(), crate::error::ErrorKind::Transient);
    }
}
