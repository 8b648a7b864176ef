//! CSV: a header line, RFC 4180 quoting, `\N` (configurable) for NULL.

use std::fs::File;
use std::io::{BufWriter, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::bounded::{Fenced, Oversized};
use super::options::FileOptions;
use super::source::{RowRead, RowReader};
use super::target::TableWriter;
use crate::error::{Error, Result, ResultExt};
use dmp_model::{Column, DataType, Row, TableSchema, Value, infer_text_type, widen};

/// Records looked at to infer column types.
const SAMPLE_RECORDS: usize = 1000;

/// The parser's own buffer: it may read this far past a record's end.
const BUFFER_BYTES: usize = 64 << 10;

/// Opens `path` for a CSV parser that holds no record longer than `max`
/// bytes (see `next_record`), its header (if any) read.
fn open_reader(path: &Path, options: &FileOptions, max: usize) -> Result<csv::Reader<Fenced>> {
    let ctx = || format!("reading {}", path.display());
    let file = File::open(path).context(ctx)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(options.header)
        .flexible(true)
        .buffer_capacity(BUFFER_BYTES)
        .from_reader(Fenced::new(file));
    if options.header {
        reader.get_mut().set_fence(fence(0, max));
        // Read now, so that the first record's start is known.
        if let Err(e) = reader.byte_headers() {
            if reader.get_ref().tripped() {
                return Err(Error::Data(format!(
                    "{}: the header line is longer than max_value_bytes ({max})",
                    path.display()
                )));
            }
            return Err(e).context(ctx);
        }
    }
    Ok(reader)
}

/// How far the parser may read for a record starting at `start`: the
/// bound, and the buffer it reads ahead into.
fn fence(start: u64, max: usize) -> u64 {
    start
        .saturating_add(max as u64)
        .saturating_add(BUFFER_BYTES as u64 + 1)
}

/// A CSV record read within the bound.
enum Record {
    Read,
    TooLong(Oversized),
    End,
}

/// Reads the next record into `record`, holding at most about `max` bytes
/// of it. A longer record is refused: one the parser finished (within its
/// read-ahead) is skipped as read; one it could not finish (an unclosed
/// quote runs on) stops the parser at the fence, which then starts again
/// at the line after the one the record began on.
fn next_record(
    reader: &mut csv::Reader<Fenced>,
    record: &mut csv::ByteRecord,
    max: usize,
) -> std::result::Result<Record, csv::Error> {
    let start = reader.position().clone();
    reader.get_mut().set_fence(fence(start.byte(), max));
    let read = reader.read_byte_record(record);
    let seen = reader.position().byte().saturating_sub(start.byte());
    match read {
        Ok(false) => Ok(Record::End),
        Ok(true) if seen <= max as u64 => Ok(Record::Read),
        Ok(true) => Ok(Record::TooLong(Oversized {
            line: start.line(),
            bytes: seen,
            whole: true,
            // Not the records after it: the excerpt ends with it.
            excerpt: reader.get_mut().excerpt(start.byte(), seen)?,
        })),
        Err(_) if reader.get_ref().tripped() => {
            let fenced = reader.get_mut();
            let excerpt = fenced.excerpt(start.byte(), u64::MAX)?;
            let next = fenced.next_line(start.byte())?;
            let mut resume = csv::Position::new();
            resume
                .set_line(start.line() + 1)
                .set_record(start.record() + 1);
            let to = match next {
                Some(byte) => {
                    resume.set_byte(byte);
                    SeekFrom::Start(byte)
                }
                None => SeekFrom::End(0),
            };
            reader.seek_raw(to, resume)?;
            Ok(Record::TooLong(Oversized {
                line: start.line(),
                bytes: seen,
                whole: false,
                excerpt,
            }))
        }
        Err(e) => Err(e),
    }
}

/// Column names from the header (or `column_1`...) and types inferred from
/// the first records.
pub(super) fn infer_schema(
    path: &Path,
    table: &str,
    options: &FileOptions,
    max: usize,
) -> Result<TableSchema> {
    let mut reader = open_reader(path, options, max)?;
    let names: Vec<String> = if options.header {
        reader
            .byte_headers()
            .context(|| format!("reading {}", path.display()))?
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
        match next_record(&mut reader, &mut record, max) {
            Ok(Record::Read) => {}
            Ok(Record::End) => break,
            Ok(Record::TooLong(_)) | Err(_) => continue,
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
    reader: csv::Reader<Fenced>,
    schema: Arc<TableSchema>,
    null: String,
    record: csv::ByteRecord,
    path: String,
    /// `[run] max_value_bytes`: the longest record taken.
    max: usize,
}

impl CsvRows {
    pub(super) fn open(
        path: &Path,
        schema: Arc<TableSchema>,
        options: &FileOptions,
        max: usize,
    ) -> Result<Self> {
        Ok(CsvRows {
            reader: open_reader(path, options, max)?,
            schema,
            null: options.null.clone(),
            record: csv::ByteRecord::new(),
            path: path.display().to_string(),
            max,
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
        match next_record(&mut self.reader, &mut self.record, self.max) {
            Ok(Record::End) => Ok(None),
            Ok(Record::TooLong(oversized)) => Ok(Some(oversized.reject(&self.path, self.max))),
            Ok(Record::Read) => Ok(Some(match self.decode() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::Column;

    #[test]
    fn an_unclosed_quote_is_refused_at_the_bound_and_the_next_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let mut text = String::from("id,v\n1,fine\n2,\"never closed\n");
        for i in 3..=2000 {
            text.push_str(&format!("{i},row {i} with some text to make it longer\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let schema = Arc::new(TableSchema {
            name: "t".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("v", DataType::TEXT),
            ],
            ..Default::default()
        });
        let options = FileOptions {
            dir: dir.path().to_path_buf(),
            format: super::super::options::Format::Csv,
            null: "\\N".into(),
            delimiter: b',',
            header: true,
        };
        let mut rows = CsvRows::open(&path, schema, &options, 4096).unwrap();
        let (mut good, mut refused) = (0, Vec::new());
        while let Some(read) = rows.next_row().unwrap() {
            match read {
                RowRead::Row(_) => good += 1,
                RowRead::Reject { error, raw } => refused.push((error, raw)),
            }
        }
        assert_eq!(refused.len(), 1, "{refused:?}");
        let (error, raw) = &refused[0];
        assert!(
            error.contains("t.csv line 3: a record of more than"),
            "{error}"
        );
        assert!(error.contains("max_value_bytes (4096)"), "{error}");
        let excerpt = raw.as_str().unwrap();
        assert_eq!(excerpt.len(), dmp_contract::EXCERPT_BYTES);
        assert!(
            excerpt.starts_with("2,\"never closed\n3,row 3"),
            "{excerpt}"
        );
        // Every line after the runaway one is read again as its own record.
        assert_eq!(good, 1999);
    }
}
