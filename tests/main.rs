//! Integration tests: whole pipelines through the real `dmp` binary, on real
//! SQLite databases, files and private PostgreSQL / MariaDB servers,
//! compared cell by cell.

mod support;

mod cli_errors;
mod crash;
mod round_trip;
mod sql;
mod transform;
