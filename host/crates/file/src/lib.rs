//! Files as a source and a target: one file per table in a folder, as CSV,
//! JSON Lines or Parquet. A `TABLE.schema.json` beside a file declares its
//! schema (targets write one, so a round trip keeps every type); without it,
//! CSV and JSON Lines types are inferred from a sample.

mod bounded;
mod change_log;
mod csv_format;
pub mod error;
mod folder;
mod incremental;
mod jsonl_format;
mod options;
mod parquet_format;
mod schema_file;
mod source;
mod table_file;
mod target;

pub use folder::UnsafePath;
pub use source::FileSource;

/// The folder of a `file://` endpoint.
pub fn folder(endpoint: &dmp_contract::Endpoint) -> dmp_contract::Result<std::path::PathBuf> {
    Ok(options::FileOptions::parse(endpoint)?.dir)
}
pub use target::FileTarget;
