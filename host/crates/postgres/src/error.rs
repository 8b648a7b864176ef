//! This connector's errors: sqlx's said in PostgreSQL's words, with the
//! kind (worth a retry or not) decided here.

use dmp_contract::tls::is_refused_certificate;

dmp_contract::driver_errors! { sqlx::Error => driver_error }

/// `e` as the engine sees it.
pub fn driver_error(e: sqlx::Error) -> DriverError {
    let kind = if transient(&e) {
        ErrorKind::Transient
    } else if settings_refused(&e) {
        ErrorKind::Config
    } else {
        ErrorKind::Fatal
    };
    let said = match &e {
        // Its source is the same database error again.
        sqlx::Error::Database(db) => database_message(&**db),
        other => {
            dmp_contract::error::causes_once(other.to_string(), std::error::Error::source(other))
        }
    };
    DriverError::new(kind, said, e)
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

/// The server refused the URL's settings: a wrong user or password, or a
/// database it does not have. Nothing was written; the URL must change.
fn settings_refused(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| matches!(code.as_ref(), "28000" | "28P01" | "3D000")))
}

/// Lost connections, deadlocks, serialization failures, too many
/// connections, a server shutting down: worth another try.
fn transient(e: &sqlx::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_closed_during_the_tls_handshake_is_worth_a_retry() {
        let eof = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert!(transient(&eof));
        let not_postgres =
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x48".into());
        assert!(!transient(&not_postgres));
        assert_eq!(driver_error(eof).kind(), ErrorKind::Transient);
    }
}
