//! `dmp serve` through its HTTP API: a real service process, the real
//! PostgreSQL and MariaDB test servers.

mod access;
mod audit;
mod bad_input;
pub(crate) mod conflicts;
pub(crate) mod lag;
mod lifecycle;
mod listen;
mod rotate;
mod secrets;
mod sql;
