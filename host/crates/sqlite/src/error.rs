//! This connector's errors: rusqlite's, a busy or locked database being
//! worth another try.

dmp_contract::driver_errors! { rusqlite::Error => driver_error }

/// `e` as the engine sees it: a busy or locked database is worth a retry.
pub fn driver_error(e: rusqlite::Error) -> DriverError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    let busy = matches!(e.sqlite_error_code(), Some(DatabaseBusy | DatabaseLocked));
    DriverError::of(
        if busy {
            ErrorKind::Transient
        } else {
            ErrorKind::Fatal
        },
        e,
    )
}
