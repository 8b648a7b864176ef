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
pub use target::FileTarget;
