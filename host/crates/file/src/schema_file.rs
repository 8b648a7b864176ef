//! `TABLE.schema.json`: a table's declared schema beside its data file.

use std::path::Path;

use crate::error::{Error, Result, ResultExt};
use dmp_model::TableSchema;

pub(super) fn read(path: &Path) -> Result<Option<TableSchema>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("reading schema file {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::Config(format!(
            "{}:{}: invalid schema file: {e}",
            path.display(),
            e.line()
        ))
    })
}

pub(super) fn write(path: &Path, schema: &TableSchema) -> Result<()> {
    let text =
        serde_json::to_string_pretty(schema).context(|| format!("encoding {}", path.display()))?;
    super::target::write_atomically(path, text.as_bytes())
}
