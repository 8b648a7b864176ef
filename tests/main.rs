//! Integration tests: whole pipelines through the real `dmp` binary, on real
//! SQLite databases, files and private PostgreSQL / MariaDB servers,
//! compared cell by cell.

mod support;

mod bad_input;
mod browser;
mod cli_errors;
mod cluster;
mod conformance;
mod crash;
mod dlq;
mod file_safety;
mod nats;
mod round_trip;
mod security;
mod serve;
mod sql;
mod state_store;
mod terminal;
mod transform;
