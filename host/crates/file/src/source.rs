//! Reads a folder of files, one table per file. A file is one chunk; its
//! position is the number of records consumed.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::options::{FileOptions, Format};
use super::{csv_format, jsonl_format, parquet_format, schema_file, table_file};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::{BatchStream, Gathering, ReadLimits, Source};
use dmp_model::{
    Batch, Change, Chunk, Position, Reject, RejectStage, Row, TableSchema, TableSelection,
};

/// One record of a file: a row, or why it is not one.
pub(super) enum RowRead {
    Row(Row),
    Reject {
        error: String,
        raw: serde_json::Value,
    },
}

/// Reads the records of one file in order.
pub(super) trait RowReader: Send {
    /// The next record; `Ok(None)` at the end; `Err` when the file itself
    /// cannot be read further.
    fn next_row(&mut self) -> Result<Option<RowRead>>;
}

pub struct FileSource {
    options: FileOptions,
    limits: ReadLimits,
}

impl FileSource {
    pub fn open(endpoint: &Endpoint, limits: ReadLimits) -> Result<Self> {
        let options = FileOptions::parse(endpoint)?;
        if !options.dir.is_dir() {
            return Err(Error::Config(format!(
                "{}: folder {} does not exist",
                endpoint.place(),
                options.dir.display()
            )));
        }
        Ok(FileSource { options, limits })
    }

    fn tables(&self) -> Result<Vec<(String, PathBuf)>> {
        let ctx = || format!("listing folder {}", self.options.dir.display());
        let mut tables = Vec::new();
        for entry in std::fs::read_dir(&self.options.dir).context(ctx)? {
            let entry = entry.context(ctx)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().context(ctx)?.is_file() {
                continue;
            }
            // A target wrote the table's name encoded (`table_file`).
            if let Some(stem) = self.options.format.matches(&name) {
                tables.push((table_file::decode(stem).into_owned(), entry.path()));
            }
        }
        tables.sort();
        Ok(tables)
    }

    /// The file holding `table` (`orders.jsonl` or `orders.ndjson`...).
    fn path_of(&self, table: &str) -> Result<PathBuf> {
        self.tables()?
            .into_iter()
            .find(|(name, _)| name == table)
            .map(|(_, path)| path)
            .ok_or_else(|| {
                Error::Config(format!(
                    "table {}: its file is gone from {}",
                    dmp_model::printable(table),
                    self.options.dir.display()
                ))
            })
    }

    fn schema_of(&self, table: &str, path: &std::path::Path) -> Result<TableSchema> {
        if let Some(mut declared) = schema_file::read(&self.options.schema_path(table)?)? {
            declared.name = table.to_string();
            return Ok(declared);
        }
        let max = self.limits.max_value_bytes;
        match self.options.format {
            Format::Csv => csv_format::infer_schema(path, table, &self.options, max),
            Format::Jsonl => jsonl_format::infer_schema(path, table, max),
            Format::Parquet => Ok(parquet_format::read_schema(path, table)?.0),
        }
    }

    fn open_rows(
        &self,
        path: &std::path::Path,
        table: Arc<TableSchema>,
        batch_rows: usize,
        skip: u64,
    ) -> Result<(Box<dyn RowReader>, u64)> {
        let max = self.limits.max_value_bytes;
        Ok(match self.options.format {
            Format::Csv => (
                Box::new(csv_format::CsvRows::open(path, table, &self.options, max)?),
                skip,
            ),
            Format::Jsonl => (
                Box::new(jsonl_format::JsonlRows::open(path, table, max)?),
                skip,
            ),
            // Parquet skips by itself, without decoding the rows.
            Format::Parquet => (
                Box::new(parquet_format::ParquetRows::open(
                    path, table, batch_rows, skip, max,
                )?),
                0,
            ),
        })
    }
}

#[async_trait]
impl Source for FileSource {
    async fn discover(&self, selection: &TableSelection) -> Result<Vec<TableSchema>> {
        self.tables()?
            .into_iter()
            .filter(|(table, _)| selection.matches(table))
            .map(|(table, path)| self.schema_of(&table, &path))
            .collect()
    }

    async fn plan_snapshot(&self, table: &TableSchema, _chunk_rows: u64) -> Result<Vec<Chunk>> {
        let path = self.path_of(&table.name)?;
        let rows = match self.options.format {
            Format::Parquet => parquet_format::read_schema(&path, &table.name)?.1,
            Format::Csv | Format::Jsonl => estimate_lines(&path)?,
        };
        Ok(vec![Chunk::whole(rows)])
    }

    fn read_chunk(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let path = self.path_of(&table.name);
        let start = match resume {
            Position::Record { index } => index,
            _ => 0,
        };
        let opened =
            path.and_then(|path| self.open_rows(&path, table.clone(), batch_rows.max(1), start));
        let gathering = Gathering::new(batch_rows, self.limits);
        BatchStream::spawn_blocking(move |tx| {
            opened.and_then(|(rows, skip)| {
                read_file(rows, skip, start, &table, chunk.id, gathering, tx)
            })
        })
    }

    fn read_incremental(
        &self,
        table: Arc<TableSchema>,
        cursor: usize,
        after: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let rows = self.path_of(&table.name).and_then(|path| {
            self.open_rows(&path, table.clone(), batch_rows.max(1), 0)
                .map(|(rows, _)| rows)
        });
        super::incremental::read(
            rows,
            table,
            cursor,
            after,
            Gathering::new(batch_rows, self.limits),
        )
    }
}

/// Lines in a text file (a header line included): cheap and close enough
/// for progress.
fn estimate_lines(path: &std::path::Path) -> Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

fn read_file(
    mut rows: Box<dyn RowReader>,
    skip: u64,
    start: u64,
    table: &Arc<TableSchema>,
    chunk: u32,
    mut gathering: Gathering,
    tx: &mpsc::Sender<Result<Batch>>,
) -> Result<()> {
    for _ in 0..skip {
        if rows.next_row()?.is_none() {
            break;
        }
    }
    let mut index = start;
    let batch = |(changes, rejects): (Vec<Change>, Vec<Reject>), index: u64, last: bool| Batch {
        table: table.clone(),
        chunk,
        changes,
        rejects,
        wire: None,
        position: Position::Record { index },
        last,
    };
    while let Some(read) = rows.next_row()? {
        index += 1;
        match read {
            RowRead::Row(row) => gathering.push_row(row),
            RowRead::Reject { error, raw } => gathering.push_reject(Reject {
                stage: RejectStage::Source,
                error,
                row: raw,
                position: Position::Record { index },
            }),
        }
        if gathering.full()
            && tx
                .blocking_send(Ok(batch(gathering.take(), index, false)))
                .is_err()
        {
            return Ok(());
        }
    }
    let _ = tx.blocking_send(Ok(batch(gathering.take(), index, true)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Column, DataType};

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            name: "t".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("v", DataType::TEXT),
            ],
            ..Default::default()
        })
    }

    #[test]
    fn batches_end_at_batch_bytes_before_batch_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let text: String = (1..=10)
            .map(|i| format!("{{\"id\":{i},\"v\":\"{}\"}}\n", "x".repeat(1000)))
            .collect();
        std::fs::write(&path, text).unwrap();
        let limits = ReadLimits {
            batch_bytes: 2500,
            max_value_bytes: 1 << 20,
        };
        let rows = jsonl_format::JsonlRows::open(&path, table(), limits.max_value_bytes).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        read_file(
            Box::new(rows),
            0,
            0,
            &table(),
            0,
            Gathering::new(1000, limits),
            &tx,
        )
        .unwrap();
        let mut sizes = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            let batch = batch.unwrap();
            sizes.push((batch.changes.len(), batch.last, batch.position));
        }
        // Each row holds a little over 1000 bytes: three make a batch.
        let record = |index| Position::Record { index };
        assert_eq!(
            sizes,
            [
                (3, false, record(3)),
                (3, false, record(6)),
                (3, false, record(9)),
                (1, true, record(10))
            ]
        );
    }
}
