//! SQLite as a source and a target: an embedded file, no server. Reads use
//! rowid (or primary key) ranges; writes use prepared multi-row INSERTs in
//! one transaction per batch, with the checkpoint in the same transaction.

mod apply;
mod config;
pub mod error;
mod incremental;
mod source;
mod target;
mod types;

pub use source::SqliteSource;

/// The database file of a `sqlite://` endpoint.
pub fn database_file(
    endpoint: &dmp_contract::Endpoint,
) -> dmp_contract::Result<std::path::PathBuf> {
    config::database_path(endpoint)
}
pub use target::SqliteTarget;

/// Quotes an identifier for SQLite (mixed case, reserved words, unicode).
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
