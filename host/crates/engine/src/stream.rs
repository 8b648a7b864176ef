//! Applies a change stream to the target: events are gathered into batches
//! (whatever has arrived, up to `batch_rows` changes or `batch_bytes` of
//! their rows, cut at a transaction
//! boundary unless a transaction alone is bigger), run through the tables'
//! transforms, and applied with the stream position in one target
//! transaction. Only then is the position confirmed to the source, which
//! may then free its log. A restart resumes at the position the target
//! holds, so every change is applied exactly once in effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::error::TryRecvError;
use tracing::{Instrument, debug, info, warn};

use super::lag::LagHistogram;
use super::progress::Progress;
use super::shutdown::Shutdown;
use crate::error::{Error, Result, ResultExt};
use dmp_config::{OnError, SchemaChanges, TransformSection};
use dmp_contract::{
    ChangeSource, ReadLimits, SchemaChange, Start, StreamEvent, TableEvent, Target,
};
use dmp_model::{
    Batch, Change, ChangeBatch, ChangeOrigin, Checkpoint, Fence, Position, Reject, Row,
    STREAM_CHECKPOINT, TableChanges, TableSchema,
};
use dmp_state::DeadLetterSink;
use dmp_transform::{PluginRuntime, TransformChain, reject_whole_batch};

/// How often the stream logs its rate and lag.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Figures of a stream, for the run summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamSummary {
    /// Changes applied or refused.
    pub changes: u64,
    pub transactions: u64,
    /// Target transactions.
    pub batches: u64,
    /// Source commit → target commit, over the whole stream.
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
    pub lag_max_ms: Option<f64>,
    /// The last position the target holds.
    pub position: Option<String>,
}

/// A streamed table: its source schema and transforms, and its shape on
/// the target (as carried so far).
#[derive(Clone)]
pub(super) struct StreamTable {
    pub(super) schema: Arc<TableSchema>,
    pub(super) chain: TransformChain,
    pub(super) target: Arc<TableSchema>,
    /// The stream has seen the table in its shape (a change of shape
    /// right after a restart may be an older one, replayed).
    pub(super) streamed: bool,
    /// Dropped at the source (and, applied, on the target).
    pub(super) dropped: bool,
}

impl StreamTable {
    /// A table the target has as `target` (or, unknown, as the
    /// transforms' output).
    pub(super) fn new(
        schema: Arc<TableSchema>,
        chain: TransformChain,
        target: Option<TableSchema>,
    ) -> Self {
        StreamTable {
            target: target.map_or_else(|| chain.output_schema(&schema), Arc::new),
            schema,
            chain,
            streamed: false,
            dropped: false,
        }
    }
}

pub(super) struct StreamContext {
    pub(super) changes: Arc<dyn ChangeSource>,
    pub(super) target: Arc<dyn Target>,
    pub(super) tables: Vec<StreamTable>,
    pub(super) sink: Arc<DeadLetterSink>,
    pub(super) progress: Arc<Progress>,
    pub(super) stop: Shutdown,
    pub(super) batch_rows: usize,
    /// `[run] batch_bytes` ends a batch too.
    pub(super) limits: ReadLimits,
    pub(super) on_error: OnError,
    pub(super) schema_changes: SchemaChanges,
    /// The pipeline's plugins, to open for a table's new shape.
    pub(super) plugins: Option<(Arc<PluginRuntime>, Vec<TransformSection>)>,
    /// What each apply's checkpoint is fenced on (a cluster's stream
    /// holder: its lease's epoch).
    pub(super) fence: Option<Fence>,
    /// A position that moved with no change to apply (the source's other
    /// tables, a heartbeat) is written to the target's checkpoint; else
    /// only confirmed to the source. A two-way sync's legs write none: such
    /// a write would be a change of the other side's log, whose position
    /// its leg would write back, and so on for ever.
    pub(super) write_idle_positions: bool,
}

/// The source transaction being received.
struct OpenTransaction {
    /// Where the source streams it again from.
    log: String,
    /// Its changes received so far.
    seen: u64,
    /// Its first changes to drop: they were applied before a restart.
    skip: u64,
}

/// Changes received and not yet applied.
#[derive(Default)]
struct Pending {
    /// (table index, change) in source order; rejects keep their place.
    items: Vec<(usize, Item)>,
    changes: u64,
    /// About the memory its changes' rows hold (`Row::approx_bytes`).
    bytes: usize,
    /// Commit times (µs since the epoch) of the transactions it completes.
    commits: Vec<Option<i64>>,
    /// Where the stream stands after the last item (set at a commit or a
    /// heartbeat, or when a big transaction is cut).
    position: Option<Position>,
    /// It ends with a change of shape: applied at once, before any change
    /// in the new shape joins it.
    reshaped: bool,
}

enum Item {
    Change(Change, Option<ChangeOrigin>),
    Reject(Reject),
    /// A refused change of a table the stream does not know, by name.
    Unrouted(String, Reject),
    Truncate(Option<ChangeOrigin>),
    Schema(SchemaChange),
}

impl Item {
    fn origin_mut(&mut self) -> Option<&mut ChangeOrigin> {
        match self {
            Item::Change(_, origin) | Item::Truncate(origin) => origin.as_mut(),
            Item::Reject(_) | Item::Unrouted(..) | Item::Schema(_) => None,
        }
    }
}

/// Streams from `from` until the run is stopped (Ok) or fails.
pub(super) async fn stream(ctx: &StreamContext, from: Position) -> Result<StreamSummary> {
    let Position::Log { log, skip } = &from else {
        return Err(Error::Data(format!(
            "the change stream cannot start at {from:?}: not a change log position"
        )));
    };
    info!(%log, skip, "streaming changes");
    let mut tables = ctx.tables.clone();
    let schemas = tables.iter().map(|t| t.schema.clone()).collect();
    let mut feed = ctx
        .changes
        .open(
            schemas,
            Position::Log {
                log: log.clone(),
                skip: 0,
            },
        )
        .await?;
    ctx.progress.stream.start();
    let mut resume_skip = (*skip > 0).then(|| (log.clone(), *skip));
    let mut open: Option<OpenTransaction> = None;
    let mut pending = Pending::default();
    let mut summary = StreamSummary::default();
    let mut last_position = from.clone();
    let mut lag_all = LagHistogram::default();
    let mut lag_window = LagHistogram::default();
    let mut window_changes = 0u64;
    let mut window_start = Instant::now();
    let mut reports = tokio::task::JoinSet::new();
    loop {
        let first = tokio::select! {
            biased;
            () = ctx.stop.wait() => break,
            event = feed.events.recv() => event,
        };
        let Some(event) = first else {
            return Err(Error::Data(
                "the change stream ended without an error; its reader stopped".to_string(),
            ));
        };
        receive(event?, &mut open, &mut resume_skip, &mut pending);
        // Whatever else has arrived joins the batch: under load batches grow,
        // when idle each transaction goes alone (lowest lag).
        while !pending.full(ctx.batch_rows, ctx.limits) && !pending.reshaped {
            match feed.events.try_recv() {
                Ok(event) => receive(event?, &mut open, &mut resume_skip, &mut pending),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let cut = match &open {
            // A change of shape goes to the target with what came before it,
            // at the point in its transaction where it came.
            Some(txn) if pending.reshaped => {
                pending.position = Some(Position::Log {
                    log: txn.log.clone(),
                    skip: txn.seen,
                });
                true
            }
            None if pending.reshaped => {
                pending
                    .position
                    .get_or_insert_with(|| last_position.clone());
                true
            }
            None => true,
            // A transaction bigger than a batch: cut it, remembering how
            // much of it is applied.
            Some(txn) if pending.full(ctx.batch_rows, ctx.limits) => {
                pending.position = Some(Position::Log {
                    log: txn.log.clone(),
                    skip: txn.seen,
                });
                true
            }
            Some(_) => false,
        };
        let Some(position) = pending.position.clone().filter(|_| cut) else {
            continue;
        };
        // Nothing to apply: a position that did not move needs nothing; one
        // that moved is written below, or (see `write_idle_positions`) only
        // confirmed to the source, which may free its log up to there.
        if pending.items.is_empty() && (position == last_position || !ctx.write_idle_positions) {
            if position != last_position {
                let _ = feed.confirmed.send(Some(position.clone()));
                last_position = position;
            }
            pending = Pending::default();
            if open.is_none() {
                ctx.progress.stream.idle();
            }
            continue;
        }
        let mut batch = std::mem::take(&mut pending);
        let changes = batch.changes;
        let commit_times = std::mem::take(&mut batch.commits);
        ctx.progress
            .stream
            .applying(commit_times.iter().flatten().copied().min());
        apply(
            ctx,
            &mut tables,
            batch,
            position.clone(),
            summary.changes + changes,
        )
        .instrument(tracing::debug_span!("changes", changes))
        .await?;
        // Durable on the target: the source may free its log up to here.
        let _ = feed.confirmed.send(Some(position.clone()));
        let now_us = chrono::Utc::now().timestamp_micros();
        let mut last_lag_ms = None;
        for commit in commit_times.iter().flatten() {
            let lag = u64::try_from(now_us - commit).unwrap_or(0);
            lag_all.record(lag);
            lag_window.record(lag);
            last_lag_ms = Some(lag / 1000);
        }
        summary.changes += changes;
        summary.transactions += commit_times.len() as u64;
        summary.batches += 1;
        window_changes += changes;
        ctx.progress
            .stream
            .add(changes, commit_times.len() as u64, last_lag_ms);
        // A position moved by a heartbeat alone: caught up.
        if changes == 0 && commit_times.is_empty() && open.is_none() {
            ctx.progress.stream.idle();
        }
        last_position = position;
        if window_start.elapsed() >= REPORT_EVERY {
            report(&lag_window, window_changes, window_start.elapsed());
            // Off the apply loop: it asks the source. At most one at a
            // time, owned by the stream (ended with it).
            while reports.try_join_next().is_some() {}
            if reports.is_empty() {
                let changes = ctx.changes.clone();
                reports.spawn(async move { report_retained(&*changes).await });
            }
            lag_window.clear();
            window_changes = 0;
            window_start = Instant::now();
        }
    }
    // Stopped (for cut-over, maybe): the target's counters go past the
    // keys the stream inserted.
    for table in tables.iter().filter(|t| t.streamed && !t.dropped) {
        ctx.target.advance_counters(&table.target).await?;
    }
    // The reader tells the source where the target stands, then ends.
    feed.close().await;
    summary.lag_p50_ms = lag_all.percentile_ms(0.5);
    summary.lag_p99_ms = lag_all.percentile_ms(0.99);
    summary.lag_max_ms = lag_all.max_ms();
    summary.position = Some(match &last_position {
        Position::Log { log, skip: 0 } => log.clone(),
        Position::Log { log, skip } => format!("{log} (+{skip} changes)"),
        other => format!("{other:?}"),
    });
    info!(
        changes = summary.changes,
        transactions = summary.transactions,
        lag_p50_ms = summary.lag_p50_ms,
        lag_p99_ms = summary.lag_p99_ms,
        position = summary.position,
        "change stream stopped"
    );
    Ok(summary)
}

fn report(lag: &LagHistogram, changes: u64, elapsed: Duration) {
    #[allow(clippy::cast_precision_loss)]
    let rate = changes as f64 / elapsed.as_secs_f64().max(1e-9);
    info!(
        changes_per_sec = rate.round(),
        transactions = lag.count(),
        lag_p50_ms = lag.percentile_ms(0.5),
        lag_p99_ms = lag.percentile_ms(0.99),
        lag_max_ms = lag.max_ms(),
        "stream"
    );
}

/// How much change log the source keeps for this stream (slot lag), when
/// it can say quickly.
async fn report_retained(changes: &dyn ChangeSource) {
    match tokio::time::timeout(Duration::from_secs(2), changes.lag()).await {
        Ok(Ok(lag)) => {
            if let Some(bytes) = lag.retained_bytes {
                info!(
                    retained_bytes = bytes,
                    source = lag.current.as_deref().unwrap_or("?"),
                    confirmed = lag.confirmed.as_deref().unwrap_or("?"),
                    "change log kept at the source"
                );
            }
        }
        Ok(Err(e)) => debug!(error = %e, "cannot read the source's change log lag"),
        Err(_) => debug!("reading the source's change log lag timed out"),
    }
}

impl Pending {
    /// Whether the batch holds `batch_rows` changes or `batch_bytes` of rows.
    fn full(&self, batch_rows: usize, limits: ReadLimits) -> bool {
        let changes = usize::try_from(self.changes).unwrap_or(usize::MAX);
        limits.batch_full(changes, batch_rows, self.bytes)
    }
}

/// Adds one event to the pending batch.
fn receive(
    event: StreamEvent,
    open: &mut Option<OpenTransaction>,
    resume_skip: &mut Option<(String, u64)>,
    pending: &mut Pending,
) {
    let counted = |open: &mut Option<OpenTransaction>| -> bool {
        match open {
            Some(txn) => {
                txn.seen += 1;
                txn.seen > txn.skip
            }
            // A change outside a transaction (a source that has no
            // transaction markers for it): never skipped.
            None => true,
        }
    };
    // Where the change just counted was read (its commit time comes with
    // the commit).
    let origin = |open: &Option<OpenTransaction>| {
        open.as_ref().map(|txn| ChangeOrigin {
            log: txn.log.clone(),
            index: txn.seen,
            part: 0,
            commit_time: None,
        })
    };
    match event {
        StreamEvent::Begin { log } => {
            // Only the first transaction after a restart can have been
            // applied in part.
            let skip = match resume_skip.take() {
                Some((at, skip)) if at == log => skip,
                _ => 0,
            };
            *open = Some(OpenTransaction { log, seen: 0, skip });
        }
        StreamEvent::Change { table, change } => {
            if counted(open) {
                pending.bytes += change_bytes(&change);
                pending
                    .items
                    .push((table, Item::Change(change, origin(open))));
                pending.changes += 1;
            }
        }
        StreamEvent::Reject { table, reject } => {
            if counted(open) {
                pending.items.push((table, Item::Reject(reject)));
                pending.changes += 1;
            }
        }
        StreamEvent::Unrouted { table, reject } => {
            if counted(open) {
                pending.items.push((0, Item::Unrouted(table, reject)));
                pending.changes += 1;
            }
        }
        StreamEvent::Truncate { tables } => {
            if counted(open) {
                for table in tables {
                    pending.items.push((table, Item::Truncate(origin(open))));
                }
                pending.changes += 1;
            }
        }
        StreamEvent::Commit {
            position,
            commit_time,
        } => {
            if let Some(txn) = open.take() {
                // The transaction's changes still pending learn its time.
                for (_, item) in pending.items.iter_mut().rev() {
                    match item.origin_mut() {
                        Some(origin) if origin.log == txn.log => origin.commit_time = commit_time,
                        Some(_) => break,
                        None => {}
                    }
                }
            }
            pending.position = Some(position);
            pending.commits.push(commit_time);
        }
        StreamEvent::Heartbeat { position } => {
            if open.is_none() {
                pending.position = Some(position);
            }
        }
        // Not a change: a restart from a position before it meets it again
        // (and finds it made).
        StreamEvent::Schema { table, change } => {
            pending.items.push((table, Item::Schema(change)));
            pending.reshaped = true;
        }
    }
}

/// About the memory a change holds: its row images.
fn change_bytes(change: &Change) -> usize {
    match change {
        Change::Insert(row) | Change::Delete(row) => row.approx_bytes(),
        Change::Update { before, after } => {
            after.approx_bytes() + before.as_ref().map_or(0, Row::approx_bytes)
        }
    }
}

/// Transforms the pending changes segment by segment and applies them with
/// the stream checkpoint.
async fn apply(
    ctx: &StreamContext,
    tables: &mut Vec<StreamTable>,
    pending: Pending,
    position: Position,
    total: u64,
) -> Result<()> {
    let mut batch = ChangeBatch::new();
    let mut rejects: Vec<(Arc<TableSchema>, Vec<Reject>)> = Vec::new();
    // The plugin versions that produced each table's rows in this batch.
    let mut versions: HashMap<String, String> = HashMap::new();
    let mut items = pending.items.into_iter().peekable();
    // A change of shape the stream stops on ends the batch there: what
    // came before it is applied (the position is the point just before it).
    let mut stop = None;
    while let Some((table, item)) = items.next() {
        if let Item::Unrouted(name, reject) = item {
            // Kept under the name it came with: no table of the stream.
            let unknown = Arc::new(TableSchema {
                name,
                ..TableSchema::default()
            });
            rejects.push((unknown, vec![reject]));
            continue;
        }
        if let Item::Schema(change) = item {
            if let Err(e) = reshape(ctx, tables, table, change, &position, &mut batch).await {
                stop = Some(e);
                break;
            }
            continue;
        }
        if let Some(streamed) = tables.get_mut(table) {
            streamed.streamed = true;
        }
        let Some(streamed) = tables.get(table) else {
            return Err(Error::Data(format!(
                "the change stream named table #{table}, which it was not opened with"
            )));
        };
        let mut segment = Vec::new();
        let mut origins = Vec::new();
        let mut refused = Vec::new();
        let mut truncate = None;
        match item {
            Item::Change(change, origin) => {
                segment.push(change);
                origins.push(origin);
            }
            Item::Reject(reject) => refused.push(reject),
            Item::Truncate(origin) => truncate = Some(origin),
            Item::Schema(_) | Item::Unrouted(..) => {}
        }
        if truncate.is_none() {
            // The rest of this table's run of changes.
            while let Some((_, next)) = items
                .next_if(|(t, i)| *t == table && matches!(i, Item::Change(..) | Item::Reject(_)))
            {
                match next {
                    Item::Change(change, origin) => {
                        segment.push(change);
                        origins.push(origin);
                    }
                    Item::Reject(reject) => refused.push(reject),
                    Item::Truncate(_) | Item::Schema(_) | Item::Unrouted(..) => {}
                }
            }
        }
        if !refused.is_empty() {
            rejects.push((streamed.schema.clone(), refused));
        }
        let output = streamed.target.clone();
        if let Some(origin) = truncate {
            batch.truncate(&output, origin);
            continue;
        }
        if segment.is_empty() {
            continue;
        }
        let (changes, refused, produced_by, made_from) =
            transform(ctx, streamed, segment, &position).await?;
        versions.insert(streamed.schema.name.clone(), produced_by);
        if !refused.is_empty() {
            rejects.push((streamed.schema.clone(), refused));
        }
        if !changes.changes.is_empty() {
            batch.segments.push(TableChanges::Rows {
                origins: output_origins(&origins, &made_from),
                table: changes.table,
                changes: changes.changes,
            });
        }
    }
    let sink = ctx.sink.produced_by(versions);
    for (schema, refused) in rejects {
        // Before the apply: its commit moves the position past these rows.
        dmp_contract::dead_letter(&sink, &schema, refused).await?;
    }
    let checkpoint = Checkpoint {
        table: STREAM_CHECKPOINT.to_string(),
        chunk: 0,
        position,
        rows: total,
        done: true,
        fence: ctx.fence,
    };
    let applied = ctx.target.apply(batch, checkpoint, sink).await?;
    debug!(applied, "changes committed");
    stop.map_or(Ok(()), Err)
}

/// A table's change of shape: reopens its transforms on the new shape,
/// decides (by `[cdc] schema_changes`) what the target does, and puts that
/// at the end of `batch`; a new table of the selection is created on the
/// target at once. The table's rows after it are in the new shape.
async fn reshape(
    ctx: &StreamContext,
    tables: &mut Vec<StreamTable>,
    table: usize,
    change: SchemaChange,
    position: &Position,
    batch: &mut ChangeBatch,
) -> Result<()> {
    let schema = change.schema.clone();
    // The shape the table already streams in (its first word after a
    // start) keeps its transforms.
    let same = tables.get(table).filter(|t| *t.schema == *schema);
    let chain = match same {
        Some(streamed) => streamed.chain.clone(),
        None => open_chain(ctx, &schema).await?,
    };
    let mut output = chain.output_schema(&schema);
    let at = match position {
        Position::Log { log, .. } => log.clone(),
        other => format!("{other:?}"),
    };
    if table >= tables.len() {
        if change.event != TableEvent::Created || table != tables.len() {
            return Err(Error::Data(format!(
                "the change stream named table #{table}, which it was not opened with"
            )));
        }
        if ctx.schema_changes == SchemaChanges::Stop {
            return Err(Error::SourceChanged(format!(
                "table {} was created at the source, at {at}; with [cdc] schema_changes =                  \"stop\" the stream stops here. Set schema_changes = \"additive\" or \"apply\" \
                 under [cdc] to stream it, and run the same command again",
                schema.name
            )));
        }
        output = create_table(ctx, output).await?;
        info!(table = %schema.name, "table created at the source: streamed from here");
        tables.push(StreamTable {
            schema,
            chain,
            target: output,
            streamed: true,
            dropped: false,
        });
        return Ok(());
    }
    let streamed = &mut tables[table];
    let before = streamed
        .streamed
        .then(|| streamed.chain.output_schema(&streamed.schema));
    let deltas = super::evolve::deltas(
        &streamed.target,
        before.as_deref(),
        &output,
        &change,
        ctx.schema_changes,
        &at,
    )?;
    if !deltas.is_empty() {
        info!(table = %schema.name, changes = deltas.len(), "table changed shape at the source; the target follows");
        batch.segments.push(TableChanges::Evolve {
            table: output.clone(),
            from: streamed.target.clone(),
            changes: deltas,
        });
        streamed.target = output;
    }
    streamed.schema = schema;
    streamed.chain = chain;
    streamed.streamed = true;
    streamed.dropped = change.event == TableEvent::Dropped;
    Ok(())
}

/// The table's transforms opened on its (new) shape; a plugin that refuses
/// it stops the stream.
async fn open_chain(ctx: &StreamContext, schema: &Arc<TableSchema>) -> Result<TransformChain> {
    let Some((runtime, transforms)) = &ctx.plugins else {
        return Ok(TransformChain::default());
    };
    let (runtime, transforms, tables) = (runtime.clone(), transforms.clone(), vec![schema.clone()]);
    let mut chains = tokio::task::spawn_blocking(move || {
        dmp_transform::open_chains(&runtime, &transforms, &tables)
    })
    .await
    .context(|| format!("opening the transforms of table {}", schema.name))??;
    Ok(chains.remove(&schema.name).unwrap_or_default())
}

/// A table created at the source while streaming, created on the target
/// (its index names planned against the target's), with its indexes.
async fn create_table(ctx: &StreamContext, output: Arc<TableSchema>) -> Result<Arc<TableSchema>> {
    let mut planned = vec![(*output).clone()];
    let taken = ctx
        .target
        .taken_names(std::slice::from_ref(&output.name))
        .await?;
    super::naming::assign(&mut planned, &ctx.target.name_rules(), &taken);
    let output = Arc::new(planned.remove(0));
    ctx.target
        .prepare(std::slice::from_ref(&output), Start::Keep)
        .await?;
    ctx.target.finish_table(&output).await?;
    Ok(output)
}

/// The origin of each change a transform made, from the origins of its
/// input (`made_from`: the input index of each output): outputs of one
/// input are its parts 0, 1, …. Empty when an input's origin is unknown.
fn output_origins(inputs: &[Option<ChangeOrigin>], made_from: &[usize]) -> Vec<ChangeOrigin> {
    let mut origins = Vec::with_capacity(made_from.len());
    let mut previous = None;
    let mut part = 0;
    for &input in made_from {
        let Some(Some(origin)) = inputs.get(input) else {
            return Vec::new();
        };
        part = if previous == Some(input) { part + 1 } else { 0 };
        previous = Some(input);
        origins.push(ChangeOrigin {
            part,
            ..origin.clone()
        });
    }
    origins
}

/// Runs one table's segment through its transforms (the op of each change
/// is visible to the plugin); also says which input change each output
/// came from.
async fn transform(
    ctx: &StreamContext,
    table: &StreamTable,
    changes: Vec<Change>,
    position: &Position,
) -> Result<(Batch, Vec<Reject>, String, Vec<usize>)> {
    let batch = Batch {
        table: table.schema.clone(),
        chunk: 0,
        changes,
        rejects: Vec::new(),
        wire: None,
        position: position.clone(),
        last: false,
    };
    let (mut batch, versions, made_from, failure) = match table.chain.apply_traced(batch).await? {
        Ok(traced) => (traced.batch, traced.versions, traced.origins, None),
        Err((batch, reason)) => (
            batch,
            table.chain.plugins().join(","),
            Vec::new(),
            Some(reason),
        ),
    };
    if let Some(reason) = failure {
        if ctx.on_error == OnError::Fail {
            return Err(Error::Data(format!("{reason} (on_error = \"fail\")")));
        }
        warn!(table = %table.schema.name, error = %reason, "transform failed on a batch of changes; they are refused");
        reject_whole_batch(&mut batch, &reason);
    }
    let refused = std::mem::take(&mut batch.rejects);
    Ok((batch, refused, versions, made_from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Row, Value};

    #[test]
    fn a_pending_batch_is_full_at_batch_rows_or_batch_bytes() {
        let limits = ReadLimits {
            batch_bytes: 10_000,
            max_value_bytes: 100_000,
        };
        let (mut open, mut resume) = (None, None);
        let mut pending = Pending::default();
        let begin = StreamEvent::Begin {
            log: "lsn=0/1".into(),
        };
        receive(begin, &mut open, &mut resume, &mut pending);
        let wide = |id: i64| StreamEvent::Change {
            table: 0,
            change: Change::Update {
                before: Some(Row(vec![Value::Int(id), Value::Text("a".repeat(2000))])),
                after: Row(vec![Value::Int(id), Value::Text("b".repeat(2000))]),
            },
        };
        for id in 0..2 {
            receive(wide(id), &mut open, &mut resume, &mut pending);
        }
        assert!(!pending.full(1000, limits));
        // The third update's images take the batch past 10,000 bytes.
        receive(wide(2), &mut open, &mut resume, &mut pending);
        assert_eq!(pending.changes, 3);
        assert!(pending.full(1000, limits));
        // Narrow changes end it at batch_rows.
        let mut pending = Pending::default();
        for id in 0..3 {
            let change = StreamEvent::Change {
                table: 0,
                change: Change::Delete(Row(vec![Value::Int(id)])),
            };
            receive(change, &mut open, &mut resume, &mut pending);
        }
        assert!(!pending.full(4, limits));
        assert!(pending.full(3, limits));
    }
}
