//! This connector's errors: mysql_async's said once, with the kind (worth
//! a retry or not) decided here.

use dmp_contract::tls::is_refused_certificate;

dmp_contract::driver_errors! { mysql_async::Error => driver_error }

/// `e` as the engine sees it.
pub fn driver_error(e: mysql_async::Error) -> DriverError {
    let kind = if transient(&e) {
        ErrorKind::Transient
    } else if matches!(&e, mysql_async::Error::Server(server) if matches!(server.code, 1044 | 1045 | 1049))
    {
        // The server refused the URL's settings (access denied, unknown
        // database): nothing was written; the URL must change.
        ErrorKind::Config
    } else {
        ErrorKind::Fatal
    };
    DriverError::new(kind, said(&e), e)
}

/// mysql_async's own words once: its display wraps each layer in a prefix
/// ("Input/output error: Input/output error: …") and its sources repeat
/// the server's error.
fn said(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(server) => server.to_string(),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.to_string(),
        mysql_async::Error::Io(other) => other.to_string(),
        mysql_async::Error::Driver(driver) => driver.to_string(),
        other => {
            dmp_contract::error::causes_once(other.to_string(), std::error::Error::source(other))
        }
    }
}

/// Lost connections, lock wait timeouts, deadlocks, too many connections.
fn transient(e: &mysql_async::Error) -> bool {
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
