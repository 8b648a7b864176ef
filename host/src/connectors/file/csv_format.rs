//! CSV: a header line, RFC 4180 quoting, `\N` (configurable) for NULL.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use super::options::FileOptions;
use super::source::{RowRead, RowReader};
use super::target::TableWriter;
use crate::error::{Error, Result, ResultExt};
use crate::model::{Column, DataType, Row, TableSchema, Value, infer_text_type, widen};

/// Records looked at to infer column types.
const SAMPLE_RECORDS: usize = 1000;

fn reader_builder(options: &FileOptions) -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder
        .delimiter(options.delimiter)
        .has_headers(options.header)
        .flexible(true);
    builder
}

/// Column names from the header (or `column_1`...) and types inferred from
/// the first records.
pub(super) fn infer_schema(path: &Path, table: &str, options: &FileOptions) -> Result<TableSchema> {
    let ctx = || format!("reading {}", path.display());
    let mut reader = reader_builder(options).from_path(path).context(ctx)?;
    let names: Vec<String> = if options.header {
        reader
            .byte_headers()
            .context(ctx)?
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .collect()
    } else {
        Vec::new()
    };
    let mut types: Vec<Option<DataType>> = vec![None; names.len()];
    let mut record = csv::ByteRecord::new();
    for _ in 0..SAMPLE_RECORDS {
        // Bad records are for the reader to refuse, one by one; the sample
        // just skips them.
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => continue,
        }
        if types.len() < record.len() {
            types.resize(record.len(), None);
        }
        for (i, field) in record.iter().enumerate() {
            let Ok(text) = std::str::from_utf8(field) else {
                types[i] = Some(DataType::TEXT);
                continue;
            };
            if text.is_empty() || text == options.null {
                continue;
            }
            let t = infer_text_type(text);
            types[i] = Some(types[i].map_or(t, |prev| widen(prev, t)));
        }
    }
    let columns = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("column_{}", i + 1));
            Column::new(name, t.unwrap_or(DataType::TEXT))
        })
        .collect();
    Ok(TableSchema {
        namespace: None,
        name: table.to_string(),
        columns,
        primary_key: Vec::new(),
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
        ..Default::default()
    })
}

pub(super) struct CsvRows {
    reader: csv::Reader<File>,
    schema: Arc<TableSchema>,
    null: String,
    record: csv::ByteRecord,
    path: String,
}

impl CsvRows {
    pub(super) fn open(
        path: &Path,
        schema: Arc<TableSchema>,
        options: &FileOptions,
    ) -> Result<Self> {
        let reader = reader_builder(options)
            .from_path(path)
            .context(|| format!("opening {}", path.display()))?;
        Ok(CsvRows {
            reader,
            schema,
            null: options.null.clone(),
            record: csv::ByteRecord::new(),
            path: path.display().to_string(),
        })
    }

    fn decode(&self) -> std::result::Result<Row, String> {
        if self.record.len() != self.schema.columns.len() {
            // A quote left open swallows the lines after it into one field.
            let newlines: usize = self
                .record
                .iter()
                .map(|f| f.iter().filter(|b| **b == b'\n').count())
                .sum::<usize>()
                // Run to the end of the file, the field ends with its last newline.
                - usize::from(self.record.iter().next_back().is_some_and(|f| f.ends_with(b"\n")));
            let hint = if newlines > 0 {
                format!(
                    " (a quoted field runs from line {} to line {}: is a closing quote missing?)",
                    self.line(),
                    self.line() + newlines as u64
                )
            } else {
                String::new()
            };
            return Err(format!(
                "{} fields where the header has {}{hint}",
                self.record.len(),
                self.schema.columns.len()
            ));
        }
        let mut values = Vec::with_capacity(self.record.len());
        for (field, column) in self.record.iter().zip(&self.schema.columns) {
            let text = std::str::from_utf8(field)
                .map_err(|e| format!("column {}: invalid UTF-8: {e}", column.name))?;
            let is_text = matches!(column.data_type, DataType::Text { .. });
            let value = if text == self.null || (text.is_empty() && !is_text) {
                Value::Null
            } else {
                Value::parse_text(text, &column.data_type)
                    .map_err(|e| format!("column {}: {e}", column.name))?
            };
            values.push(value);
        }
        Ok(Row(values))
    }

    fn raw(&self) -> serde_json::Value {
        self.record
            .iter()
            .map(|f| serde_json::Value::String(String::from_utf8_lossy(f).into_owned()))
            .collect()
    }
}

impl RowReader for CsvRows {
    fn next_row(&mut self) -> Result<Option<RowRead>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => Ok(Some(match self.decode() {
                Ok(row) => RowRead::Row(row),
                Err(error) => RowRead::Reject {
                    error: format!("{} line {}: {error}", self.path, self.line()),
                    raw: self.raw(),
                },
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. }
                ) =>
            {
                Ok(Some(RowRead::Reject {
                    error: format!("{}: {e}", self.path),
                    raw: serde_json::Value::Null,
                }))
            }
            Err(e) => Err(e).context(|| format!("reading {}", self.path)),
        }
    }
}

impl CsvRows {
    fn line(&self) -> u64 {
        self.record.position().map_or(0, csv::Position::line)
    }
}

pub(super) struct CsvWriter {
    writer: csv::Writer<BufWriter<File>>,
    null: String,
    field: String,
}

impl CsvWriter {
    /// Continues `file` (already truncated to its checkpoint); writes the
    /// header when the file is empty.
    pub(super) fn new(
        file: File,
        schema: &TableSchema,
        options: &FileOptions,
        empty: bool,
    ) -> Result<Self> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(options.delimiter)
            .from_writer(BufWriter::with_capacity(1 << 20, file));
        if empty && options.header {
            writer
                .write_record(schema.columns.iter().map(|c| c.name.as_str()))
                .context(|| format!("writing the header of table {}", schema.name))?;
        }
        Ok(CsvWriter {
            writer,
            null: options.null.clone(),
            field: String::new(),
        })
    }
}

impl TableWriter for CsvWriter {
    fn write_rows(&mut self, _schema: &TableSchema, rows: &[&Row]) -> Result<()> {
        for row in rows {
            for value in &row.0 {
                self.field.clear();
                match value {
                    Value::Null => self.field.push_str(&self.null),
                    Value::Text(s) => self.field.push_str(s),
                    other => self.field.push_str(&other.to_text()),
                }
                self.writer
                    .write_field(self.field.as_bytes())
                    .context(|| "writing a CSV field".to_string())?;
            }
            self.writer
                .write_record(None::<&[u8]>)
                .context(|| "writing a CSV record".to_string())?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<Option<u64>> {
        self.writer.flush().context(|| "flushing CSV".to_string())?;
        let file = self.writer.get_ref().get_ref();
        file.sync_data().context(|| "syncing CSV".to_string())?;
        Ok(Some(
            file.metadata()
                .context(|| "reading CSV size".to_string())?
                .len(),
        ))
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.writer.flush().context(|| "flushing CSV".to_string())?;
        let buffered = self
            .writer
            .into_inner()
            .map_err(|e| Error::Data(format!("flushing CSV: {}", e.error())))?;
        let file = buffered
            .into_inner()
            .map_err(|e| Error::Data(format!("flushing CSV: {}", e.error())))?;
        file.sync_all().context(|| "syncing CSV".to_string())?;
        Ok(())
    }
}
