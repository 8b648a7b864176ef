//! Adds a `stamped_by` column holding the version this plugin was built as
//! (`STAMP_VERSION` at build time): the hot-swap test tells which version
//! processed each row. The version `broken` refuses to open.

use dmp_sdk::{Config, DataType, Outcome, Row, SchemaExt, TableSchema, Transform};

const VERSION: &str = match option_env!("STAMP_VERSION") {
    Some(version) => version,
    None => "dev",
};

pub struct Stamp;

impl Transform for Stamp {
    fn open(_config: &Config, _input: &TableSchema) -> Result<Self, String> {
        if VERSION == "broken" {
            return Err("this build is broken on purpose".into());
        }
        Ok(Stamp)
    }

    fn output_schema(&self, input: &TableSchema) -> TableSchema {
        input
            .clone()
            .with_column("stamped_by", DataType::Text(None))
    }

    fn process(&mut self, row: &mut Row<'_>) -> Outcome {
        row.set("stamped_by", VERSION);
        Outcome::Keep
    }
}

dmp_sdk::export_transform!(Stamp);
