//! MySQL and MariaDB: discovery from `information_schema`, chunks read
//! with the binary protocol inside one consistent snapshot (binlog position
//! recorded), rows written with `LOAD DATA LOCAL INFILE` streamed from
//! memory, each batch in one transaction with its checkpoint.

mod apply;
mod binlog;
mod catalog;
mod checksum;
mod chunks;
mod config;
mod conflict_log;
mod conflicts;
mod ddl;
pub mod error;
mod evolve;
mod incremental;
mod load_data;
mod options;
mod origin;
mod server;
mod snapshot;
mod source;
mod sql;
mod target;
mod tls_probe;
mod types;
mod writer;

pub use source::MysqlSource;
pub use target::MysqlTarget;
