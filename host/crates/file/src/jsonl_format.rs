//! JSON Lines: one JSON object per line, keys are column names.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::bounded::{Line, read_line};
use super::source::{RowRead, RowReader};
use super::target::TableWriter;
use crate::error::{Error, Result, ResultExt};
use dmp_model::json::{infer_type, value_from_json, write_row};
use dmp_model::{Column, DataType, Row, TableSchema, Value, widen};

const SAMPLE_LINES: usize = 1000;

/// Columns in order of first appearance in the first lines; types
/// inferred. Lines longer than `max` bytes are passed over unread.
pub(super) fn infer_schema(path: &Path, table: &str, max: usize) -> Result<TableSchema> {
    let ctx = || format!("reading {}", path.display());
    let mut reader = BufReader::new(File::open(path).context(ctx)?);
    let mut columns: Vec<(String, Option<DataType>)> = Vec::new();
    let mut line = Vec::new();
    for number in 1..=SAMPLE_LINES as u64 {
        match read_line(&mut reader, &mut line, max, number).context(ctx)? {
            Line::Read => {}
            Line::TooLong(_) => continue,
            Line::End => break,
        }
        let Ok(object) = parse_object(&line) else {
            continue;
        };
        for (key, raw) in object {
            let inferred = infer_type(raw);
            match columns.iter_mut().find(|(name, _)| *name == key) {
                Some((_, t)) => {
                    if let Some(new) = inferred {
                        *t = Some(t.map_or(new, |old| widen(old, new)));
                    }
                }
                None => columns.push((key, inferred)),
            }
        }
    }
    Ok(TableSchema {
        namespace: None,
        name: table.to_string(),
        columns: columns
            .into_iter()
            .map(|(name, t)| Column::new(name, t.unwrap_or(DataType::TEXT)))
            .collect(),
        primary_key: Vec::new(),
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
        ..Default::default()
    })
}

/// A JSON object key, borrowed from the line unless it holds escapes.
#[derive(serde::Deserialize, PartialEq, Eq, Hash)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

fn parse_object(line: &[u8]) -> std::result::Result<Vec<(String, &RawValue)>, String> {
    let map: HashMap<Key<'_>, &RawValue> =
        serde_json::from_slice(line).map_err(|e| e.to_string())?;
    // Keep the line's key order, which HashMap loses.
    let mut entries: Vec<(usize, String, &RawValue)> = map
        .into_iter()
        .map(|(k, v)| {
            let at = (v.get().as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
            (at, k.0.into_owned(), v)
        })
        .collect();
    entries.sort_by_key(|(at, _, _)| *at);
    Ok(entries.into_iter().map(|(_, k, v)| (k, v)).collect())
}

/// Why a line is not a record, at a column of the line (serde_json's own
/// `line 1` would contradict the file line the caller names).
fn record_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let place = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&place).unwrap_or(&message);
    match e.classify() {
        serde_json::error::Category::Data => {
            format!("not a JSON object of column values: {message}")
        }
        _ => format!("invalid JSON at column {}: {message}", e.column()),
    }
}

pub(super) struct JsonlRows {
    reader: BufReader<File>,
    schema: Arc<TableSchema>,
    line: Vec<u8>,
    number: u64,
    path: String,
    /// `[run] max_value_bytes`: the longest line taken.
    max: usize,
}

impl JsonlRows {
    pub(super) fn open(path: &Path, schema: Arc<TableSchema>, max: usize) -> Result<Self> {
        let file = File::open(path).context(|| format!("opening {}", path.display()))?;
        Ok(JsonlRows {
            reader: BufReader::with_capacity(1 << 20, file),
            schema,
            line: Vec::new(),
            number: 0,
            path: path.display().to_string(),
            max,
        })
    }

    fn decode(&self, line: &[u8]) -> std::result::Result<Row, String> {
        let text = std::str::from_utf8(line)
            .map_err(|e| format!("invalid UTF-8 after byte {} of the line", e.valid_up_to()))?;
        let map: HashMap<Key<'_>, &RawValue> =
            serde_json::from_str(text).map_err(|e| record_error(&e))?;
        let mut values = Vec::with_capacity(self.schema.columns.len());
        for column in &self.schema.columns {
            values.push(match map.get(&Key(Cow::Borrowed(column.name.as_str()))) {
                Some(raw) => value_from_json(raw, &column.data_type)
                    .map_err(|e| format!("column {}: {e}", column.name))?,
                None => Value::Null,
            });
        }
        if let Some(extra) = map
            .keys()
            .find(|k| self.schema.column_index(&k.0).is_none())
        {
            return Err(format!("unknown column `{}`", extra.0));
        }
        Ok(Row(values))
    }
}

impl RowReader for JsonlRows {
    fn next_row(&mut self) -> Result<Option<RowRead>> {
        loop {
            self.number += 1;
            let read = read_line(&mut self.reader, &mut self.line, self.max, self.number)
                .context(|| format!("reading {}", self.path))?;
            match read {
                Line::Read => {}
                Line::TooLong(oversized) => {
                    return Ok(Some(oversized.reject(&self.path, self.max)));
                }
                Line::End => return Ok(None),
            }
            let line = self.line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            return Ok(Some(match self.decode(line) {
                Ok(row) => RowRead::Row(row),
                Err(error) => RowRead::Reject {
                    error: format!("{} line {}: {error}", self.path, self.number),
                    raw: serde_json::Value::String(String::from_utf8_lossy(line).into_owned()),
                },
            }));
        }
    }
}

pub(super) struct JsonlWriter {
    out: BufWriter<File>,
    line: String,
}

impl JsonlWriter {
    pub(super) fn new(file: File) -> Self {
        JsonlWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            line: String::new(),
        }
    }
}

impl TableWriter for JsonlWriter {
    fn write_rows(&mut self, schema: &TableSchema, rows: &[&Row]) -> Result<()> {
        for row in rows {
            self.line.clear();
            write_row(&mut self.line, schema, row);
            self.line.push('\n');
            self.out
                .write_all(self.line.as_bytes())
                .context(|| format!("writing table {}", schema.name))?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<Option<u64>> {
        self.out
            .flush()
            .context(|| "flushing JSON Lines".to_string())?;
        let file = self.out.get_ref();
        file.sync_data()
            .context(|| "syncing JSON Lines".to_string())?;
        Ok(Some(
            file.metadata()
                .context(|| "reading file size".to_string())?
                .len(),
        ))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::Data(format!("flushing JSON Lines: {}", e.error())))?;
        file.sync_all().context(|| "syncing JSON Lines".to_string())
    }
}
