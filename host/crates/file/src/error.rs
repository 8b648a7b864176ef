//! This connector's errors: the CSV, Parquet and Arrow readers' and
//! writers', none worth another try.

dmp_contract::driver_errors! {
    csv::Error => driver_error,
    parquet::errors::ParquetError => driver_error,
    arrow_schema::ArrowError => driver_error,
}

/// `e` as the engine sees it.
pub fn driver_error(e: impl std::error::Error + Send + Sync + 'static) -> DriverError {
    DriverError::of(ErrorKind::Fatal, e)
}
