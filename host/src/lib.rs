//! DMP: moves data from a source to a target, resumably, with progress.
//! The `dmp` binary is a thin layer over the library crates under
//! `host/crates` (see the README's architecture section); this crate is
//! the command line, and names those crates under one roof for its tests.

pub mod cli;

pub use dmp_config as config;
pub use dmp_connectors as connectors;
/// The shared error, and the state store's driver (the demo writes its
/// SQLite database directly).
pub mod error {
    dmp_contract::driver_errors! { rusqlite::Error => dmp_state::error::driver_error }
}
pub use dmp_contract::{Error, ErrorKind, Result};
pub use dmp_engine as engine;
pub use dmp_model as model;
pub use dmp_server as server;
pub use dmp_state as state;
pub use dmp_transform as transform;
pub use dmp_verify as verify;
