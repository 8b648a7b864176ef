//! A source and a target that keep their tables in memory, for the
//! engine's own tests: they fulfil the contract (chunks by key range,
//! resumable reads, rows and checkpoint written together) and let a test
//! inject what real systems do to a run (a transient failure, a stop).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::Shutdown;
use crate::error::{DriverError, Error, ErrorKind, Result};
use dmp_contract::{BatchStream, RejectSink, Source, Start, Target};
use dmp_model::{
    Batch, Change, Checkpoint, Chunk, Column, DataType, Position, Row, TableSchema, TableSelection,
    Value,
};

/// A table `name (id int64 primary key, label text)` with ids `1..=rows`.
pub fn numbered_table(name: &str, rows: i64) -> (TableSchema, Vec<Row>) {
    let mut id = Column::new("id", DataType::Int64);
    id.nullable = false;
    let schema = TableSchema {
        name: name.to_string(),
        columns: vec![id, Column::new("label", DataType::Text { max_len: None })],
        primary_key: vec!["id".into()],
        ..TableSchema::default()
    };
    let rows = (1..=rows)
        .map(|i| Row(vec![Value::Int(i), Value::Text(format!("{name} {i}"))]))
        .collect();
    (schema, rows)
}

/// The id of a row of a [`numbered_table`].
fn id_of(row: &Row) -> i64 {
    match row.0.first() {
        Some(Value::Int(id)) => *id,
        other => panic!("a numbered row starts with its id, not {other:?}"),
    }
}

fn id_of_key(key: &[Value]) -> i64 {
    match key.first() {
        Some(Value::Int(id)) => *id,
        other => panic!("a numbered key is an id, not {other:?}"),
    }
}

pub struct MemorySource {
    tables: Vec<(TableSchema, Vec<Row>)>,
}

impl MemorySource {
    pub fn new(tables: Vec<(TableSchema, Vec<Row>)>) -> Arc<Self> {
        Arc::new(MemorySource { tables })
    }

    fn rows(&self, table: &str) -> &[Row] {
        self.tables
            .iter()
            .find(|(schema, _)| schema.name == table)
            .map_or(&[], |(_, rows)| rows.as_slice())
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn discover(&self, selection: &TableSelection) -> Result<Vec<TableSchema>> {
        let mut found: Vec<TableSchema> = self
            .tables
            .iter()
            .map(|(schema, _)| schema.clone())
            .filter(|schema| selection.matches(&schema.name))
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// Chunks of `chunk_rows` ids: `[lower, upper)`.
    async fn plan_snapshot(&self, table: &TableSchema, chunk_rows: u64) -> Result<Vec<Chunk>> {
        let rows = self.rows(&table.name);
        let per_chunk = usize::try_from(chunk_rows.max(1)).unwrap_or(usize::MAX);
        let chunks = rows.chunks(per_chunk).enumerate().map(|(i, part)| Chunk {
            id: u32::try_from(i).unwrap_or(u32::MAX),
            lower: part.first().map(|row| vec![Value::Int(id_of(row))]),
            upper: part.last().map(|row| vec![Value::Int(id_of(row) + 1)]),
            estimated_rows: part.len() as u64,
        });
        Ok(chunks.collect())
    }

    fn read_chunk(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let lower = chunk.lower.as_deref().map_or(i64::MIN, id_of_key);
        let upper = chunk.upper.as_deref().map_or(i64::MAX, id_of_key);
        let after = match &resume {
            Position::Key { key } => id_of_key(key),
            _ => i64::MIN,
        };
        let rows: Vec<Row> = self
            .rows(&table.name)
            .iter()
            .filter(|row| (lower.max(after.saturating_add(1))..upper).contains(&id_of(row)))
            .cloned()
            .collect();
        let mut batches: Vec<Batch> = rows
            .chunks(batch_rows.max(1))
            .map(|part| Batch {
                table: table.clone(),
                chunk: chunk.id,
                position: Position::Key {
                    key: vec![Value::Int(part.last().map_or(after, id_of))],
                },
                changes: part.iter().cloned().map(Change::Insert).collect(),
                rejects: Vec::new(),
                wire: None,
                last: false,
            })
            .collect();
        match batches.last_mut() {
            Some(last) => last.last = true,
            None => batches.push(Batch {
                table,
                chunk: chunk.id,
                changes: Vec::new(),
                rejects: Vec::new(),
                wire: None,
                position: resume,
                last: true,
            }),
        }
        BatchStream::ready(batches.into_iter().map(Ok).collect())
    }
}

/// What a test makes the target do to the run.
#[derive(Default)]
pub struct Mishaps {
    /// The next this many writes fail as a lost connection would.
    pub failing_writes: AtomicU32,
    /// Fires `stop` (as Ctrl-C would) once this many writes committed.
    pub stop_after: Option<(u32, Shutdown)>,
}

#[derive(Default)]
pub struct Held {
    pub rows: BTreeMap<String, BTreeMap<i64, Row>>,
    pub checkpoints: BTreeMap<(String, u32), Checkpoint>,
    /// Rows written over a row of the same key: a resumed run that read a
    /// committed batch again.
    pub rewritten: u64,
    pub finished_tables: Vec<String>,
    pub writes: u32,
}

pub struct MemoryTarget {
    held: Mutex<Held>,
    mishaps: Mishaps,
}

impl MemoryTarget {
    pub fn new(mishaps: Mishaps) -> Arc<Self> {
        Arc::new(MemoryTarget {
            held: Mutex::new(Held::default()),
            mishaps,
        })
    }

    pub fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Target for MemoryTarget {
    fn column_type(&self, column: &Column) -> String {
        format!("{:?}", column.data_type)
    }

    async fn prepare(&self, tables: &[Arc<TableSchema>], start: Start) -> Result<()> {
        let mut held = self.held();
        for table in tables {
            let rows = held.rows.entry(table.name.clone()).or_default();
            if start == Start::Fresh {
                rows.clear();
            }
        }
        if start == Start::Fresh {
            held.checkpoints.clear();
        }
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        Ok(self.held().checkpoints.values().cloned().collect())
    }

    async fn write(
        &self,
        batch: Batch,
        checkpoint: Checkpoint,
        _rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let failing = &self.mishaps.failing_writes;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let lost = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
            return Err(Error::driver(
                format!("writing {}", batch.table.name),
                DriverError::of(ErrorKind::Transient, lost),
            ));
        }
        let mut held = self.held();
        let mut written = 0;
        for change in batch.changes {
            let Change::Insert(row) = change else {
                panic!("a snapshot batch holds inserts only");
            };
            let table = held.rows.entry(batch.table.name.clone()).or_default();
            if table.insert(id_of(&row), row).is_some() {
                held.rewritten += 1;
            }
            written += 1;
        }
        held.checkpoints
            .insert((checkpoint.table.clone(), checkpoint.chunk), checkpoint);
        held.writes += 1;
        if let Some((after, stop)) = &self.mishaps.stop_after
            && held.writes == *after
        {
            stop.trigger();
        }
        Ok(written)
    }

    async fn finish_table(&self, table: &TableSchema) -> Result<()> {
        self.held().finished_tables.push(table.name.clone());
        Ok(())
    }
}
