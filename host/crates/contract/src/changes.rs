//! The contract of a change data capture source: a database's change log
//! (PostgreSQL logical replication, MySQL/MariaDB row binlog) streamed as
//! row changes grouped in source transactions.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::error::Result;
use dmp_model::{Change, Position, Reject, TableSchema, TableSelection};

/// Settings of a pipeline's change stream (`[cdc]` in the pipeline file).
#[derive(Debug, Clone)]
pub struct ChangeOptions {
    /// The pipeline's name, from which slot and publication names derive.
    pub pipeline: String,
    /// PostgreSQL replication slot. Default: `dmp_<pipeline>` (lower case,
    /// other characters than `[a-z0-9_]` as `_`).
    pub slot: Option<String>,
    /// PostgreSQL publication. Default: same as the slot.
    pub publication: Option<String>,
    /// MySQL/MariaDB: the server id this reader registers as replica with.
    /// Default: derived from the pipeline name (must differ from every
    /// server and other replica of the topology).
    pub server_id: Option<u32>,
    /// How often an idle stream reports the source's position, so that a
    /// quiet database does not hold change log for ever. Default: 10 s.
    pub heartbeat: Duration,
    /// The pipeline's tables: a table created at the source while
    /// streaming is streamed too when this selects it.
    pub selection: TableSelection,
    /// Two-way sync: the tag of the transactions DMP itself applied to
    /// this database (the pipeline's sync id), which the stream drops, so
    /// that nothing DMP wrote comes back as a change (see
    /// [`TargetOptions::origin`](crate::TargetOptions)). `None`: every
    /// transaction is read.
    pub origin: Option<String>,
}

impl ChangeOptions {
    /// A change-stream setting a source connector takes in its own
    /// options (`[source.options] slot`) as well as in `[cdc]`: whichever
    /// is given; both is refused rather than one silently winning.
    pub fn either<T>(
        endpoint: &crate::Endpoint,
        own: Option<T>,
        cdc: Option<T>,
        key: &str,
    ) -> crate::Result<Option<T>> {
        match (own, cdc) {
            (Some(_), Some(_)) => Err(crate::Error::Config(format!(
                "{}: `{key}` is given both here and in [cdc]",
                endpoint.options_place().unwrap_or(endpoint.place())
            ))),
            (own, cdc) => Ok(own.or(cdc)),
        }
    }
}

/// What the change stream hands on, in the source's commit order.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// A source transaction starts. `log` is the position from which the
    /// source streams this transaction again (the end of the previous one).
    Begin { log: String },
    /// A row change in the open transaction. `table` indexes the tables the
    /// stream was opened with; values follow that schema's column order.
    Change { table: usize, change: Change },
    /// A row of the open transaction that could not be decoded (it counts
    /// as a change for positions).
    Reject { table: usize, reject: Reject },
    /// A change of the open transaction for a table the stream knows
    /// nothing of (a message bus may carry subjects no schema describes):
    /// refused under that name, counted as a change for positions.
    Unrouted { table: String, reject: Reject },
    /// Tables emptied in the open transaction.
    Truncate { tables: Vec<usize> },
    /// The open transaction committed. `position` (a `Position::Log` with
    /// `skip = 0`) is where the stream resumes after it; `commit_time` is
    /// its commit time at the source in microseconds since the Unix epoch.
    Commit {
        position: Position,
        commit_time: Option<i64>,
    },
    /// No transaction of the streamed tables for a while: the source's log
    /// has moved on to `position` (always between transactions).
    Heartbeat { position: Position },
    /// Table `table` changed shape at this point of the stream, or (an
    /// index one past the tables known so far) a table of the selection
    /// was created. Comes before the first change that has the new shape;
    /// the changes after it have `change.schema`'s columns.
    Schema { table: usize, change: SchemaChange },
}

/// A streamed table's change of shape, as the source saw it.
#[derive(Debug, Clone)]
pub struct SchemaChange {
    /// The table as it now is.
    pub schema: Arc<TableSchema>,
    pub event: TableEvent,
    /// The statement that made it, where the source's log has it (MySQL's
    /// binlog does; PostgreSQL's logical decoding carries no DDL).
    pub statement: Option<String>,
    /// Columns renamed: (old name, new name).
    pub renamed: Vec<(String, String)>,
    /// Columns the source no longer has, as opposed to columns only
    /// missing from older rows (replayed after a restart, before the column
    /// was added).
    pub dropped: Vec<String>,
}

/// What happened to the table itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableEvent {
    Created,
    Altered,
    /// Renamed from this name.
    Renamed(String),
    Dropped,
}

/// A running change stream: events come through a bounded channel (the
/// reader waits when the applier lags); the applier reports through
/// `confirmed` each position that the target holds durably, and only those
/// may be acknowledged to the source (which then frees its log up to
/// there). Dropping the feed stops the reader.
pub struct ChangeFeed {
    pub events: mpsc::Receiver<Result<StreamEvent>>,
    pub confirmed: watch::Sender<Option<Position>>,
    /// The task reading the source's log, which the feed owns.
    reader: tokio::task::JoinHandle<()>,
}

impl ChangeFeed {
    /// A feed whose `events` the `reader` sends, on a task the feed owns.
    pub fn spawn(
        events: mpsc::Receiver<Result<StreamEvent>>,
        confirmed: watch::Sender<Option<Position>>,
        reader: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        ChangeFeed {
            events,
            confirmed,
            reader: tokio::spawn(reader),
        }
    }

    /// Ends the feed and waits (a while) for its reader to finish: it
    /// sees the feed closed, tells the source the last confirmed position
    /// and closes its connection. Dropped instead, the feed's reader does
    /// the same on its own, unwaited.
    pub async fn close(self) {
        let ChangeFeed { events, reader, .. } = self;
        drop(events);
        if tokio::time::timeout(CLOSE_WAIT, reader).await.is_err() {
            tracing::warn!("the change stream's reader did not stop in time; left to end alone");
        }
    }
}

/// How long closing a feed waits for its reader.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The consistent starting point of a `full+cdc` run.
#[derive(Debug, Clone)]
pub struct SnapshotStart {
    /// Where the stream starts once the snapshot is copied, if known now
    /// (PostgreSQL: the slot's consistent point); `None` when it is the
    /// snapshot's own position (`Source::snapshot_position`, MySQL).
    pub position: Option<Position>,
    /// A snapshot the source's readers must import so that they read
    /// exactly the state at `position` (PostgreSQL: the slot's exported
    /// snapshot). Pass it to `Source::use_snapshot`.
    pub snapshot: Option<String>,
}

/// How far the source's change log is ahead of what this pipeline has
/// confirmed.
#[derive(Debug, Clone, Default)]
pub struct StreamLag {
    /// Bytes of change log the source keeps for this pipeline.
    pub retained_bytes: Option<u64>,
    /// The source's current log position and the confirmed one, as text.
    pub current: Option<String>,
    pub confirmed: Option<String>,
}

#[async_trait]
pub trait ChangeSource: Send + Sync {
    /// Sets up what the stream needs at the source (publication, slot,
    /// replica registration checks) and returns the consistent point a
    /// `full+cdc` run starts from. Called before the snapshot is read.
    /// `fresh`: a new run: an existing slot is dropped and created anew
    /// with an exported snapshot. Otherwise (an interrupted snapshot is
    /// resumed) the existing slot is kept and its confirmed point returned
    /// with no snapshot: the chunks left are read in a newer snapshot and
    /// the stream replays from the older point, which converges because
    /// applying changes is idempotent.
    async fn begin_snapshot(
        &self,
        tables: &[Arc<TableSchema>],
        fresh: bool,
    ) -> Result<SnapshotStart>;

    /// The source's current log position: where a `cdc` run that has no
    /// checkpoint and no snapshot position starts. Creates what the stream
    /// needs, as `begin_snapshot` does.
    async fn current_position(&self, tables: &[Arc<TableSchema>]) -> Result<Position>;

    /// Turns a snapshot position text (`Source::snapshot_position`) into a
    /// stream position, when this source can stream from there (it may
    /// have to ask the source whether it still keeps that log).
    async fn position_from_snapshot(&self, snapshot_position: &str) -> Result<Option<Position>>;

    /// Starts streaming the changes of `tables` from `from` (a
    /// `Position::Log`; the engine skips the `skip` changes itself).
    async fn open(&self, tables: Vec<Arc<TableSchema>>, from: Position) -> Result<ChangeFeed>;

    /// How much change log the source keeps for this pipeline.
    async fn lag(&self) -> Result<StreamLag>;

    /// Whether the log holds every row from its beginning (a message
    /// stream that carries its snapshot), so that streaming from
    /// `current_position` misses nothing a snapshot would have copied.
    fn holds_everything(&self) -> bool {
        false
    }

    /// Removes what `begin_snapshot` created at the source (the slot and
    /// the publication): `dmp cdc drop-slot`. Nothing to do is not an error.
    async fn drop_stream(&self) -> Result<()>;
}
