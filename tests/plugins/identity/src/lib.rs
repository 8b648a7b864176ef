//! Passes every row through unchanged, or, with `stamp = COLUMN` and
//! `version = V`, adds a text column holding V (hot-swap tests).

use dmp_sdk::{Config, DataType, Outcome, Row, SchemaExt, TableSchema, Transform};

pub struct Identity {
    stamp: Option<(String, String)>,
}

impl Transform for Identity {
    fn open(config: &Config, _input: &TableSchema) -> Result<Self, String> {
        let stamp = match config.get("stamp") {
            Some(column) => Some((column.to_string(), config.require("version")?.to_string())),
            None => None,
        };
        Ok(Identity { stamp })
    }

    fn output_schema(&self, input: &TableSchema) -> TableSchema {
        match &self.stamp {
            Some((column, _)) => input.clone().with_column(column, DataType::Text(None)),
            None => input.clone(),
        }
    }

    fn process(&mut self, row: &mut Row<'_>) -> Outcome {
        if let Some((column, version)) = &self.stamp {
            row.set(column, version.as_str());
        }
        Outcome::Keep
    }
}

dmp_sdk::export_transform!(Identity);
