//! {{name}}: a DMP transform plugin. This template upper-cases the text
//! column named by the `column` setting and drops rows where it is empty.

use dmp_sdk::{Config, DataType, Outcome, Row, SchemaExt, TableSchema, Transform};

pub struct Plugin {
    column: String,
}

impl Transform for Plugin {
    fn open(config: &Config, input: &TableSchema) -> Result<Self, String> {
        let column = config.require("column")?.to_string();
        match input.column(&column) {
            Some(c) if matches!(c.data_type, DataType::Text(_)) => Ok(Plugin { column }),
            Some(_) => Err(format!("column `{column}` is not text")),
            None => Err(format!("table {} has no column `{column}`", input.name)),
        }
    }

    fn process(&mut self, row: &mut Row<'_>) -> Outcome {
        match row.get::<&str>(&self.column) {
            Some("") => Outcome::Drop,
            Some(text) => {
                let upper = text.to_uppercase();
                row.set(&self.column, upper);
                Outcome::Keep
            }
            None => Outcome::Keep,
        }
    }
}

dmp_sdk::export_transform!(Plugin);
