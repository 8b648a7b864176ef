//! PostgreSQL: discovery from the catalogs, chunks read with binary `COPY
//! (SELECT …) TO STDOUT` inside one exported snapshot, rows written with
//! binary `COPY FROM STDIN`, each batch in one transaction with its
//! checkpoint.

mod apply;
mod catalog;
mod checksum;
mod chunks;
mod config;
mod conflict_log;
mod conflicts;
mod copy_binary;
mod ddl;
pub mod error;
mod incremental;
mod objects;
mod options;
mod replication;
mod snapshot;
mod source;
mod sql;
mod target;
mod types;
mod wire;
mod writer;

pub use source::PostgresSource;
pub use target::PostgresTarget;
