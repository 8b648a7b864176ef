//! Integration tests: whole pipelines through the real `dmp` binary, on real
//! SQLite databases and files, compared cell by cell.

mod support;

mod cli_errors;
mod crash;
mod round_trip;
mod transform;
