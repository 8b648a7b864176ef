//! Helpers to derive an output schema from the input schema.

use crate::bindings::dmp::transform::types::{Column, DataType, TableSchema};

/// Builder-style changes to a table schema.
pub trait SchemaExt: Sized {
    /// The column named `name`.
    fn column(&self, name: &str) -> Option<&Column>;
    /// Adds a nullable column at the end.
    fn with_column(self, name: &str, data_type: DataType) -> Self;
    /// Removes a column (and takes it out of the primary key).
    fn without_column(self, name: &str) -> Self;
    /// Renames a column (in the primary key too).
    fn renamed(self, from: &str, to: &str) -> Self;
    /// Gives a column another type.
    fn retyped(self, name: &str, data_type: DataType) -> Self;
}

impl SchemaExt for TableSchema {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn with_column(mut self, name: &str, data_type: DataType) -> Self {
        self.columns.push(Column {
            name: name.to_string(),
            data_type,
            nullable: true,
            default: None,
        });
        self
    }

    fn without_column(mut self, name: &str) -> Self {
        self.columns.retain(|c| c.name != name);
        self.primary_key.retain(|k| k != name);
        self
    }

    fn renamed(mut self, from: &str, to: &str) -> Self {
        for c in self.columns.iter_mut().filter(|c| c.name == from) {
            c.name = to.to_string();
        }
        for k in self.primary_key.iter_mut().filter(|k| *k == from) {
            *k = to.to_string();
        }
        self
    }

    fn retyped(mut self, name: &str, data_type: DataType) -> Self {
        for c in self.columns.iter_mut().filter(|c| c.name == name) {
            c.data_type = data_type;
            c.default = None;
        }
        self
    }
}
