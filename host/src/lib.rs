//! DMP: moves data from a source to a target, resumably, with progress.
//! The `dmp` binary is a thin layer over this library.

pub mod cli;
pub mod config;
pub mod connectors;
pub mod engine;
pub mod error;
pub mod model;
pub mod state;
pub mod transform;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
