//! Migrations between PostgreSQL, MariaDB and SQLite on private server
//! instances started by `dmp-test-servers`, compared value by value.

pub(crate) mod cdc;
pub(crate) mod conflicts;
mod crash;
pub(crate) mod every_type;
mod evolve;
pub(crate) mod faults;
mod fidelity;
mod incremental;
mod resolver_sync;
mod schema;
mod tls;
mod two_way;
mod verify;
