//! Write DMP plugins in Rust: transforms, and conflict resolvers for two-way sync.
//!
//! A transform is opened once per table with its settings and the table's
//! schema, says what its output schema is, then sees every row. Build the
//! crate for `wasm32-wasip2` and the result is a WebAssembly component the
//! `dmp` host runs in a sandbox.
//!
//! ```
//! use dmp_sdk::{Config, Outcome, Row, TableSchema, Transform};
//!
//! /// Upper-cases one column and drops rows where it is empty.
//! struct Shout {
//!     column: String,
//! }
//!
//! impl Transform for Shout {
//!     fn open(config: &Config, _input: &TableSchema) -> Result<Self, String> {
//!         Ok(Shout { column: config.require("column")?.to_string() })
//!     }
//!
//!     fn process(&mut self, row: &mut Row<'_>) -> Outcome {
//!         match row.get::<&str>(&self.column) {
//!             Some("") => Outcome::Drop,
//!             Some(text) => {
//!                 let loud = text.to_uppercase();
//!                 row.set(&self.column, loud);
//!                 Outcome::Keep
//!             }
//!             None => Outcome::Keep,
//!         }
//!     }
//! }
//!
//! dmp_sdk::export_transform!(Shout);
//! ```
//!
//! A conflict resolver for two-way sync is the other kind of plugin: it
//! implements [`Resolver`] and is exported with [`export_resolver!`]
//! instead.
#![deny(missing_docs)]

mod adapter;
#[doc(hidden)]
#[allow(missing_docs, clippy::all, unsafe_code)]
pub mod bindings;
mod cell;
mod resolver;
#[doc(hidden)]
#[allow(missing_docs, clippy::all, unsafe_code)]
pub mod resolver_bindings;
mod row;
mod schema;

#[doc(hidden)]
pub use adapter::Adapter;
pub use bindings::dmp::transform::host::Level;
pub use bindings::dmp::transform::types::{
    Batch, BatchResult, Column, ColumnData, DataType, DecimalType, Op, OutputColumn, Reject,
    TableSchema, Value,
};
pub use cell::{Cell, ColumnBuilder, cell, value_cell};
pub use resolver::Resolver;
#[doc(hidden)]
pub use resolver::ResolverAdapter;
pub use resolver_bindings::exports::dmp::transform::resolve::{
    Conflict, ConflictKind, Resolution, RowVersion, Side,
};
pub use row::{FromCell, Row};
pub use schema::SchemaExt;

/// A plugin's settings for one table: the `config` table of its
/// `[[transform]]` entry in the pipeline file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Settings from key/value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The setting `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The setting `key`, or an error that names it.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing setting `{key}`"))
    }

    /// A comma-separated setting as a list (empty when absent).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// All settings, in the order given.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

/// What becomes of an input row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Keep the row, with the values it was given.
    Keep,
    /// Leave it out.
    Drop,
    /// Emit the copies made with [`Row::emit`] (fan-out): set values, emit,
    /// set others, emit again.
    Many,
    /// Refuse it: it goes to the dead-letter store with this reason.
    Reject(String),
}

/// A transform plugin. Implement it and export the type with
/// [`export_transform!`].
pub trait Transform: Sized + 'static {
    /// Opens the transform for a table. An error stops the pipeline before
    /// any row moves, with this message.
    fn open(config: &Config, input: &TableSchema) -> Result<Self, String>;

    /// The schema of the rows this transform emits. The default keeps the
    /// input schema; use [`SchemaExt`] to add, drop, rename or retype
    /// columns.
    fn output_schema(&self, input: &TableSchema) -> TableSchema {
        input.clone()
    }

    /// Decides what becomes of one row.
    fn process(&mut self, row: &mut Row<'_>) -> Outcome;

    /// Transforms a whole batch at once, for transforms that work column
    /// by column. Return `None` (the default) to go row by row through
    /// [`Transform::process`].
    fn process_batch(
        &mut self,
        _input: &Batch,
        _schemas: (&TableSchema, &TableSchema),
    ) -> Option<Result<BatchResult, String>> {
        None
    }
}

/// Writes a line to the host's log.
pub fn log(level: Level, message: &str) {
    bindings::dmp::transform::host::log(level, message);
}

/// Exports a [`Transform`] implementation as the plugin's `transform`
/// interface. Use it once per plugin crate.
#[macro_export]
macro_rules! export_transform {
    ($transform:ty) => {
        #[doc(hidden)]
        struct DmpPluginExport;

        impl $crate::bindings::exports::dmp::transform::transform::Guest for DmpPluginExport {
            type Transformer = $crate::Adapter<$transform>;
        }

        $crate::bindings::export!(DmpPluginExport with_types_in $crate::bindings);
    };
}
