//! The contract every source connector fulfils.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::error::{Error, Result};
use dmp_model::{
    Batch, Change, Chunk, Position, Reject, Row, SchemaObjects, TableSchema, TableSelection,
    WireFormat,
};

/// Batches of one chunk, in key order, from a reader the stream starts.
/// The stream ends after a batch with `last = true`, or early with an
/// error. Dropping it stops the reader at its next batch: it finishes
/// what it has begun (cut in the middle, a database session would go back
/// to its pool inside a transaction) and sends no more.
pub struct BatchStream {
    batches: mpsc::Receiver<Result<Batch>>,
}

impl BatchStream {
    /// What `read` sends, read on a task of the stream's own, in the
    /// caller's span (the engine's, naming the table and chunk); an error
    /// `read` returns ends the stream as its last item.
    pub fn spawn<Read, Reading>(read: Read) -> Self
    where
        Read: FnOnce(mpsc::Sender<Result<Batch>>) -> Reading + Send + 'static,
        Reading: Future<Output = Result<()>> + Send + 'static,
    {
        let (tx, batches) = mpsc::channel(READ_AHEAD_BATCHES);
        let errors = tx.clone();
        tokio::spawn(
            async move {
                if let Err(e) = read(tx).await {
                    // The stream may be gone (a stop): nothing left to tell.
                    let _ = errors.send(Err(e)).await;
                }
            }
            .instrument(tracing::Span::current()),
        );
        BatchStream { batches }
    }

    /// The same for a reader that blocks (files, SQLite), on a blocking
    /// thread.
    pub fn spawn_blocking<Read>(read: Read) -> Self
    where
        Read: FnOnce(&mpsc::Sender<Result<Batch>>) -> Result<()> + Send + 'static,
    {
        let (tx, batches) = mpsc::channel(READ_AHEAD_BATCHES);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            if let Err(e) = read(&tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        BatchStream { batches }
    }

    /// Batches that are all there already: no reader to wait for.
    pub fn ready(items: Vec<Result<Batch>>) -> Self {
        let (tx, batches) = mpsc::channel(items.len().max(1));
        for item in items {
            // Fits: the channel holds them all.
            let _ = tx.try_send(item);
        }
        BatchStream { batches }
    }

    /// The next batch; `None` once the reader is done.
    pub async fn recv(&mut self) -> Option<Result<Batch>> {
        self.batches.recv().await
    }
}

/// Batches a reader may hold ready ahead of the writer: small, so memory
/// stays flat whatever the table size.
pub const READ_AHEAD_BATCHES: usize = 2;

/// `[run] batch_bytes`: a batch ends at 64 MiB of source rows.
pub const fn default_batch_bytes() -> usize {
    64 << 20
}
/// `[run] max_value_bytes`: a file record of more than 256 MiB is refused.
pub const fn default_max_value_bytes() -> usize {
    256 << 20
}

/// How much a reader holds at once besides `batch_rows` (given with each
/// read): `[run] batch_bytes` and `max_value_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// A batch ends once its rows hold this many bytes as the source gave
    /// them, whatever `batch_rows` says: wide rows keep memory bounded, and
    /// with `READ_AHEAD_BATCHES` so does what waits in the channels.
    pub batch_bytes: usize,
    /// File readers refuse a single record (a CSV record, a JSON line)
    /// longer than this, without holding it whole; database and Parquet
    /// readers refuse a row holding a value longer than this
    /// (`connectors::Oversized`).
    pub max_value_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            batch_bytes: default_batch_bytes(),
            max_value_bytes: default_max_value_bytes(),
        }
    }
}

impl ReadLimits {
    /// Whether a batch of `rows` rows (with `batch_rows` asked for) holding
    /// `bytes` bytes is complete.
    pub fn batch_full(&self, rows: usize, batch_rows: usize, bytes: usize) -> bool {
        rows >= batch_rows.max(1) || bytes >= self.batch_bytes
    }

    /// Whether a single value of `bytes` bytes is refused.
    pub fn too_long(&self, bytes: usize) -> bool {
        bytes > self.max_value_bytes
    }
}

/// Rows and refusals gathered into a batch until it holds `batch_rows` of
/// them or `batch_bytes` bytes (`ReadLimits::batch_full`).
pub struct Gathering {
    batch_rows: usize,
    limits: ReadLimits,
    pub changes: Vec<Change>,
    pub rejects: Vec<Reject>,
    bytes: usize,
}

impl Gathering {
    pub fn new(batch_rows: usize, limits: ReadLimits) -> Self {
        let batch_rows = batch_rows.max(1);
        Gathering {
            batch_rows,
            limits,
            changes: Vec::with_capacity(batch_rows.min(1 << 16)),
            rejects: Vec::new(),
            bytes: 0,
        }
    }

    pub fn push_row(&mut self, row: Row) {
        self.bytes += row.approx_bytes();
        self.changes.push(Change::Insert(row));
    }

    pub fn push_reject(&mut self, reject: Reject) {
        // Refusals are rare: measuring one by its text is cheap enough.
        self.bytes +=
            reject.error.len() + serde_json::to_string(&reject.row).map_or(0, |t| t.len());
        self.rejects.push(reject);
    }

    /// The rows a batch holds at most.
    pub fn batch_rows(&self) -> usize {
        self.batch_rows
    }

    /// The limits it gathers within.
    pub fn limits(&self) -> ReadLimits {
        self.limits
    }

    pub fn full(&self) -> bool {
        self.limits.batch_full(
            self.changes.len() + self.rejects.len(),
            self.batch_rows,
            self.bytes,
        )
    }

    /// What was gathered, leaving the gathering empty (and sized for the
    /// next batch, which would otherwise grow from nothing again).
    pub fn take(&mut self) -> (Vec<Change>, Vec<Reject>) {
        self.bytes = 0;
        let next = Vec::with_capacity(self.batch_rows.min(1 << 16));
        (
            std::mem::replace(&mut self.changes, next),
            std::mem::take(&mut self.rejects),
        )
    }
}

#[async_trait]
pub trait Source: Send + Sync {
    /// Schemas of the selected tables, sorted by name. Views are skipped.
    async fn discover(&self, selection: &TableSelection) -> Result<Vec<TableSchema>>;

    /// The source schema's objects besides the selected `tables`: views
    /// and sequences that go with them (a target of the same dialect
    /// recreates them), and what DMP does not carry (routines, extensions),
    /// for the migration assessment.
    async fn objects(
        &self,
        selection: &TableSelection,
        tables: &[TableSchema],
    ) -> Result<SchemaObjects> {
        let _ = (selection, tables);
        Ok(SchemaObjects::default())
    }

    /// Splits a table's snapshot into chunks of about `chunk_rows` rows that
    /// can be read in parallel and checkpointed on their own. The plan is
    /// stored, so a resumed run reads the same chunks.
    async fn plan_snapshot(&self, table: &TableSchema, chunk_rows: u64) -> Result<Vec<Chunk>>;

    /// Reads a chunk after `resume` (a position a checkpoint recorded for this
    /// chunk, or `Position::Start`) in batches of at most `batch_rows` rows.
    /// Rows that cannot be decoded travel as the batch's rejects.
    fn read_chunk(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream;

    /// The wire form this source can hand the table's rows over in
    /// undecoded (see `read_chunk_wire`), if any.
    async fn wire_format(&self, table: &TableSchema) -> Result<Option<WireFormat>> {
        let _ = table;
        Ok(None)
    }

    /// Reads a chunk as `read_chunk` does, its rows left in the form
    /// `wire_format` named (`Batch::wire`), for a target that takes it:
    /// only the last row's key is decoded, for the checkpoint. Sources
    /// without a wire form read values.
    fn read_chunk_wire(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream {
        self.read_chunk(table, chunk, resume, batch_rows)
    }

    /// Where the source's change log stood when the snapshot was taken (a
    /// binlog file+pos and GTID, an LSN), once the first chunk was read; a
    /// later change-data-capture run starts there.
    fn snapshot_position(&self) -> Option<String> {
        None
    }

    /// Every chunk of the snapshot is read: let go of what holds it open
    /// (sessions in a snapshot transaction hold the tables against the
    /// source's DDL). Reading another chunk afterwards is still possible,
    /// in a newer snapshot.
    async fn end_snapshot(&self) {}

    /// Incremental runs: reads the rows of `table` that come after `after`
    /// in `(cursor, primary key)` order (all rows from `Position::Start`),
    /// in that order, in batches of at most `batch_rows` rows. Each batch's
    /// position is the `Position::Cursor` of its last row (or `after` for an
    /// empty final batch); the stream ends with a `last` batch. The rows go
    /// out as `Change::Insert` (the target upserts them).
    fn read_incremental(
        &self,
        table: Arc<TableSchema>,
        cursor: usize,
        after: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let _ = (cursor, after, batch_rows);
        BatchStream::ready(vec![Err(Error::Unsupported(format!(
            "table {}: this source cannot read incrementally",
            table.name
        )))])
    }

    /// Exports the snapshot this source's chunks are read in, for readers
    /// in other processes (the workers of a run shared over a cluster),
    /// which adopt it with `use_snapshot`: every chunk then sees the same
    /// data. It lasts while this source is open. `None`: each reader
    /// takes a snapshot of its own.
    async fn share_snapshot(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Makes every later snapshot read use `snapshot`, a snapshot exported
    /// by the source's change stream (`SnapshotStart::snapshot`), so that the
    /// copy and the stream meet without gap or overlap, or by the submitter
    /// of a shared run (`share_snapshot`).
    fn use_snapshot(&self, snapshot: String) -> Result<()> {
        Err(Error::Unsupported(format!(
            "this source cannot read snapshot {snapshot} exported by its change stream"
        )))
    }

    /// The database's own checksums of its rows (`dmp verify`), if it can
    /// compute them; otherwise verify reads the rows and hashes them.
    fn checksums(&self) -> Option<&dyn super::Checksums> {
        None
    }

    /// The database server's clock now, in microseconds since the Unix
    /// epoch (a two-way sync compares its sides' clocks); `None` where
    /// the source has no clock of its own (files, a bus).
    async fn server_time(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// The change stream of this source, if it has one (`mode = "cdc"`).
    fn changes(
        &self,
        options: &super::ChangeOptions,
    ) -> Result<Option<Arc<dyn super::ChangeSource>>> {
        let _ = options;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_ends_at_its_rows_or_its_bytes_whichever_comes_first() {
        let limits = ReadLimits {
            batch_bytes: 1000,
            max_value_bytes: 10,
        };
        assert!(!limits.batch_full(9, 10, 999));
        assert!(limits.batch_full(10, 10, 0));
        assert!(limits.batch_full(1, 10, 1000));
        // A batch holds at least one row, however large.
        assert!(limits.batch_full(1, 0, 0));
    }
}
