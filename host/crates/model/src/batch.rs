//! What flows through a pipeline: rows and changes grouped into batches, each
//! carrying the source position reached after its last row.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Column, TableSchema, Value};

/// One row: values in the order of its table's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// About the memory the row holds: its values, and the text and bytes
    /// they own. What batches are bounded by (`batch_bytes`) where a source
    /// has no size of its own for a row.
    pub fn approx_bytes(&self) -> usize {
        let owned: usize = self
            .0
            .iter()
            .map(|value| match value {
                Value::Text(s) | Value::Json(s) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::Decimal(d) => d.as_str().len(),
                _ => 0,
            })
            .sum();
        owned + self.0.len() * std::mem::size_of::<Value>()
    }
}

/// A change to one row. Snapshots produce only inserts.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Insert(Row),
    /// `before` holds the old image where the source provides one (full, or
    /// only the key columns with the others null).
    Update {
        before: Option<Row>,
        after: Row,
    },
    /// The deleted row's old image (at least its key).
    Delete(Row),
}

impl Change {
    /// The row a target writes: the new image, or the old one for a delete.
    pub fn row(&self) -> &Row {
        match self {
            Change::Insert(row) | Change::Delete(row) => row,
            Change::Update { after, .. } => after,
        }
    }

    pub fn row_mut(&mut self) -> &mut Row {
        match self {
            Change::Insert(row) | Change::Delete(row) => row,
            Change::Update { after, .. } => after,
        }
    }

    pub fn op(&self) -> &'static str {
        match self {
            Change::Insert(_) => "insert",
            Change::Update { .. } => "update",
            Change::Delete(_) => "delete",
        }
    }
}

/// Where a reader stands in a source, stored in checkpoints. A position is
/// always the point *after* the last row that was handed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// Nothing read yet.
    Start,
    /// Key of the last row read, in the chunk's key order (a rowid, a
    /// primary key tuple).
    Key { key: Vec<Value> },
    /// Number of records consumed from a file.
    Record { index: u64 },
    /// Incremental runs: the cursor column's value and the primary key of
    /// the last row read; the next run reads rows ordered after
    /// `(cursor, key)`, so equal cursor values on a batch boundary are not
    /// lost.
    Cursor { cursor: Value, key: Vec<Value> },
    /// A change log position. `log` is where the source's stream restarts
    /// (connector-specific text: `lsn=0/16B3748`, `file=…;pos=…;gtid=…`);
    /// the first transaction streamed from there has had its first `skip`
    /// changes handed on already (0 at a transaction boundary).
    Log { log: String, skip: u64 },
}

/// The checkpoint chunk number of a table's incremental cursor (snapshot
/// chunks count up from 0; the number must fit an SQL `integer`).
pub const CURSOR_CHUNK: u32 = i32::MAX as u32;

/// The checkpoint chunk number of rows `dmp verify --repair` rewrote.
pub const REPAIR_CHUNK: u32 = CURSOR_CHUNK - 1;

/// The checkpoint chunk number of rows `dmp dlq replay` wrote.
pub const REPLAY_CHUNK: u32 = CURSOR_CHUNK - 2;

/// The checkpoint table name of a pipeline's change stream (a name no SQL
/// table can have unquoted, and which `_dmp_checkpoints` keeps apart from
/// the snapshot's per-table rows).
pub const STREAM_CHECKPOINT: &str = "";

/// Whether `table` is one of DMP's own in a database it writes to
/// (`_dmp_checkpoints`): never data, so never discovered or streamed —
/// a two-way sync's side is a target and a source at once.
pub fn is_dmp_table(table: &str) -> bool {
    table.starts_with("_dmp_")
}

/// A slice of a table's snapshot that can be copied, checkpointed and redone
/// on its own. Bounds are keys in the source's order: `lower` exclusive,
/// `upper` inclusive, `None` open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub id: u32,
    pub lower: Option<Vec<Value>>,
    pub upper: Option<Vec<Value>>,
    pub estimated_rows: u64,
}

impl Chunk {
    /// The whole table as one chunk.
    pub fn whole(estimated_rows: u64) -> Self {
        Chunk {
            id: 0,
            lower: None,
            upper: None,
            estimated_rows,
        }
    }
}

/// Where a row was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectStage {
    Source,
    Transform,
    Target,
}

impl RejectStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectStage::Source => "source",
            RejectStage::Transform => "transform",
            RejectStage::Target => "target",
        }
    }
}

/// A row that could not be moved, with the reason. `row` is the row as JSON
/// when it could be decoded, else the raw record as a JSON string.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub stage: RejectStage,
    pub error: String,
    pub row: serde_json::Value,
    /// Source position of the row (a key or record number).
    pub position: Position,
}

/// Rows of one table read together, plus the position after the last one.
#[derive(Debug, Clone)]
pub struct Batch {
    pub table: Arc<TableSchema>,
    pub chunk: u32,
    pub changes: Vec<Change>,
    /// Rows the reader could not decode; they travel with the batch so they
    /// are dead-lettered before the batch's checkpoint commits.
    pub rejects: Vec<Reject>,
    /// Inserted rows still in the source's wire form (besides `changes`),
    /// when the target said it takes that form as it is.
    pub wire: Option<WireRows>,
    pub position: Position,
    /// Set on the chunk's final batch (which may be empty).
    pub last: bool,
}

impl Batch {
    /// Rows read from the source for this batch, good and bad.
    pub fn rows_read(&self) -> u64 {
        (self.changes.len() + self.rejects.len()) as u64 + self.wire.as_ref().map_or(0, |w| w.rows)
    }

    /// Turns rows in wire form into inserts (and rejects, for values that
    /// do not decode): for a writer that must see the values after all.
    pub fn decode_wire(&mut self) -> std::result::Result<(), String> {
        let Some(wire) = self.wire.take() else {
            return Ok(());
        };
        let (rows, rejects) = wire
            .decoder
            .decode(&wire.bytes, &self.table, &self.position)?;
        self.changes.extend(rows.into_iter().map(Change::Insert));
        self.rejects.extend(rejects);
        Ok(())
    }
}

/// A form rows can travel in from a source to a target without being
/// decoded into values and encoded again: the source's own wire format,
/// which a target of the same kind takes as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireFormat {
    /// PostgreSQL binary COPY tuples, one field per column in order.
    PostgresBinary(Vec<WireColumn>),
}

/// One column of a wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireColumn {
    /// The binary form of the values (`Int4`, `Text`, `Numeric`, …).
    pub form: String,
    /// The column's type with its modifiers (`numeric(12,2)`).
    pub sql_type: String,
}

/// Rows in a wire format, and the way back to values.
#[derive(Clone)]
pub struct WireRows {
    pub format: Arc<WireFormat>,
    /// The rows' encoded tuples, one after another.
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub decoder: Arc<dyn WireDecoder>,
}

impl std::fmt::Debug for WireRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireRows")
            .field("format", &self.format)
            .field("bytes", &self.bytes.len())
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Decodes rows in a wire format: the source's decoder, travelling with
/// the rows.
pub trait WireDecoder: Send + Sync {
    /// The rows of `bytes` (of `table`), and those whose values do not
    /// decode as rejects (at their key, else at `position`).
    fn decode(
        &self,
        bytes: &[u8],
        table: &TableSchema,
        position: &Position,
    ) -> std::result::Result<(Vec<Row>, Vec<Reject>), String>;
}

/// What a target stores, atomically with a batch's rows, so that a restarted
/// run knows where each chunk stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub table: String,
    pub chunk: u32,
    pub position: Position,
    /// Rows of this chunk read so far (written plus rejected).
    pub rows: u64,
    pub done: bool,
    /// What the target checks before it commits (see [`Fence`]); `None`:
    /// nothing (read-backs, runs that are not shared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Fence>,
}

/// How a target makes sure that only the current holder of a piece of
/// work commits it; a write that fails the check is refused whole
/// (`Error::Deposed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fence {
    /// A chunk write: the `rows` of the chunk's checkpoint this batch
    /// continues from. A second worker given the same chunk moved it
    /// meanwhile, and writing would store rows twice.
    Rows(u64),
    /// A change stream's apply under a lease taken at this epoch: the
    /// checkpoint records the epoch, and a smaller one than it holds is a
    /// holder that was deposed without noticing.
    Epoch(u64),
}

/// Where a streamed change was read in the source's change log: message
/// targets derive each message's id and position from it, so that a change
/// published twice is known as the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeOrigin {
    /// Where the source streams the change's transaction again from (a
    /// `Position::Log`'s `log`).
    pub log: String,
    /// The change's place in its transaction, from 1: resuming at
    /// `Position::Log { log, skip: index }` continues right after it.
    pub index: u64,
    /// Which of the changes a transform made of this one source change
    /// (0 without transforms, or for the first).
    pub part: u32,
    /// The transaction's commit time at the source, microseconds since
    /// the epoch, when the stream knew it with the change.
    pub commit_time: Option<i64>,
}

/// One table's part of a [`ChangeBatch`].
#[derive(Debug, Clone)]
pub enum TableChanges {
    /// Row changes of one table, in source order.
    Rows {
        table: Arc<TableSchema>,
        changes: Vec<Change>,
        /// Each change's origin, for a change stream (same length as
        /// `changes`); empty when the changes were not streamed
        /// (incremental runs, replays, repairs).
        origins: Vec<ChangeOrigin>,
    },
    /// The table was emptied at the source.
    Truncate {
        table: Arc<TableSchema>,
        origin: Option<ChangeOrigin>,
    },
    /// The table's shape changed at the source: the target's table `from`
    /// becomes `table` by `changes`. A batch has no rows of the table after
    /// this (they come in the next one, in the new shape).
    Evolve {
        table: Arc<TableSchema>,
        from: Arc<TableSchema>,
        changes: Vec<SchemaDelta>,
    },
}

/// One step of a table's change of shape, as a target applies it.
/// Applying one that is already there does nothing, so that a batch redone
/// after a crash applies cleanly.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaDelta {
    /// A new column (last), with its default filling the existing rows.
    AddColumn(Box<Column>),
    DropColumn(String),
    RenameColumn {
        from: String,
        to: String,
    },
    /// A column's type or nullability changes to `to`'s.
    AlterColumn {
        from: Box<Column>,
        to: Box<Column>,
    },
    RenameTable {
        from: String,
    },
    DropTable,
}

impl TableChanges {
    pub fn table(&self) -> &Arc<TableSchema> {
        match self {
            TableChanges::Rows { table, .. }
            | TableChanges::Truncate { table, .. }
            | TableChanges::Evolve { table, .. } => table,
        }
    }

    /// Row changes carried (a truncate counts one, a change of shape none).
    pub fn len(&self) -> usize {
        match self {
            TableChanges::Rows { changes, .. } => changes.len(),
            TableChanges::Truncate { .. } => 1,
            TableChanges::Evolve { .. } => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Changes of several tables that a target applies in one transaction, in
/// order (incremental runs and change data capture). Unlike a snapshot
/// [`Batch`], applying is idempotent: an insert is an upsert by primary
/// key, an update replaces the row (deleting its old key when the key
/// changed), a delete of a missing row does nothing. So a change replayed
/// after a crash, or streamed from a point older than the snapshot it
/// lands on, leaves the row as the source has it.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// Consecutive changes of one table form one segment; segments keep
    /// the source's order.
    pub segments: Vec<TableChanges>,
}

impl ChangeBatch {
    pub fn new() -> Self {
        ChangeBatch {
            segments: Vec::new(),
        }
    }

    /// Appends a change, opening a new segment when the table differs from
    /// the last one.
    pub fn push(&mut self, table: &Arc<TableSchema>, change: Change) {
        if let Some(TableChanges::Rows {
            table: t,
            changes,
            origins,
        }) = self.segments.last_mut()
            && Arc::ptr_eq(t, table)
            && origins.is_empty()
        {
            changes.push(change);
            return;
        }
        self.segments.push(TableChanges::Rows {
            table: table.clone(),
            changes: vec![change],
            origins: Vec::new(),
        });
    }

    pub fn truncate(&mut self, table: &Arc<TableSchema>, origin: Option<ChangeOrigin>) {
        self.segments.push(TableChanges::Truncate {
            table: table.clone(),
            origin,
        });
    }

    /// Changes carried (truncates count one each).
    pub fn len(&self) -> usize {
        self.segments.iter().map(TableChanges::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

impl Default for ChangeBatch {
    fn default() -> Self {
        Self::new()
    }
}
