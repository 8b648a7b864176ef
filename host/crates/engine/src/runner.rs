//! Runs a full snapshot: plan (or reload the interrupted run's plan), prepare
//! the target, then copy the chunks that are not done, `parallelism` at a
//! time, each through a bounded reader → writer channel.

use super::setup::{Transforms, dead_letter_sink, prepare_target};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use super::plan::discover_for_target;
use super::progress::{Progress, TableProgress};
use super::shutdown::Shutdown;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use dmp_config::{OnError, Pipeline, Scope};
use dmp_contract::{BatchStream, READ_AHEAD_BATCHES, RejectSink, Source, Start, Target};
use dmp_model::{
    Batch, Checkpoint, Chunk, Fence, Position, SchemaObjects, TablePhase, TableSchema, printable,
};
use dmp_state::{DeadLetterSink, RunStatus, StateStore, without_row_values};
use dmp_transform::{PluginRuntime, TransformChain, reject_whole_batch};

#[derive(Debug, Clone, Serialize)]
pub struct TableSummary {
    pub name: String,
    /// Where the table stands at the end of the run (`done`; `indexing`
    /// or `failed` only in a summary of a run that stopped).
    #[serde(flatten)]
    pub phase: TablePhase,
    /// Rows of the table read in this run.
    pub rows: u64,
    /// Rows written to the target in this run (transforms may drop or add
    /// rows; refused rows are not written).
    pub written: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub pipeline: String,
    pub run: i64,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
    pub tables: Vec<TableSummary>,
    /// Rows handled in this run.
    pub rows: u64,
    /// Rows refused in this run (dead-lettered or skipped).
    pub rejected: u64,
    pub elapsed: Duration,
    /// The change stream's figures (cdc runs; a two-way sync's from side
    /// A to side B).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<super::stream::StreamSummary>,
    /// A two-way sync's stream back, from side B to side A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub back: Option<super::stream::StreamSummary>,
}

/// Everything a chunk copy needs, shared by all chunk tasks.
pub(super) struct RunContext {
    pub(super) pipeline: Pipeline,
    pub(super) run: i64,
    pub(super) source: Arc<dyn Source>,
    pub(super) target: Arc<dyn Target>,
    pub(super) state: Arc<StateStore>,
    pub(super) sink: Arc<DeadLetterSink>,
    pub(super) stop: Shutdown,
    /// Keeps the plugin engine (and its time-limit ticker) alive.
    pub(super) _plugins: Option<Arc<PluginRuntime>>,
}

/// Per-table bookkeeping during a run.
pub(super) struct TableRun {
    pub(super) schema: Arc<TableSchema>,
    /// The schema after the table's transforms: what the target holds.
    output: Arc<TableSchema>,
    chain: TransformChain,
    progress: Arc<TableProgress>,
    chunks_left: AtomicUsize,
    pub(super) rows: AtomicU64,
    written: AtomicU64,
    /// Said once that its rows pass through undecoded.
    wire_said: std::sync::Once,
}

/// Runs (or resumes) `pipeline`. Stops at the next batch boundary when
/// `shutdown` fires, leaving checkpoints from which the next run resumes.
/// `restart` abandons an interrupted run instead of resuming it.
pub async fn run(
    pipeline: &Pipeline,
    restart: bool,
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    shutdown: Shutdown,
) -> Result<RunSummary> {
    let span = info_span!("pipeline", name = %printable(&pipeline.name));
    async move {
        let started = Instant::now();
        let (run_id, plan, start, objects) =
            plan_or_resume(pipeline, restart, &*source, &*target, &state).await?;
        let tables: Vec<Arc<TableSchema>> = plan.iter().map(|(t, _)| t.clone()).collect();
        let transforms = Transforms::open_watched(pipeline, &tables).await?;
        let outputs = transforms.outputs(&tables);
        super::assess::check(pipeline, &outputs, &objects, &*target)?;
        prepare_target(pipeline, &*target, &objects, &outputs, start, &shutdown).await?;
        state.mark_prepared(run_id)?;
        let committed: HashMap<(String, u32), Checkpoint> = match start {
            Start::Resume | Start::Keep => target
                .checkpoints()
                .await?
                .into_iter()
                .map(|c| ((c.table.clone(), c.chunk), c))
                .collect(),
            Start::Fresh => HashMap::new(),
        };
        let sink = dead_letter_sink(pipeline, &state, run_id);
        // Fires on the caller's stop too, or on this run's first fatal error.
        let stop = shutdown.child();
        let ctx = Arc::new(RunContext {
            pipeline: pipeline.clone(),
            run: run_id,
            source,
            target,
            state: state.clone(),
            sink: sink.clone(),
            stop: stop.clone(),
            _plugins: transforms.plugins(),
        });

        let (jobs_in_order, table_runs) =
            work_list(&ctx, &plan, &outputs, &committed, &transforms, &progress).await?;
        let jobs = if pipeline.scope == Scope::SchemaOnly {
            for table_run in &table_runs {
                if table_run.chunks_left.load(Ordering::Acquire) > 0 {
                    finish_table(&ctx, table_run).await?;
                }
            }
            Vec::new()
        } else {
            jobs_in_order
        };
        if start == Start::Resume {
            info!(
                run = run_id,
                chunks_left = jobs.len(),
                "resuming interrupted run"
            );
        }

        let mut tasks = copy_chunks(&ctx, jobs);
        let mut first_error = join_tasks(&mut tasks, &stop, "chunk task").await;
        ctx.source.end_snapshot().await;
        if first_error.is_none()
            && let Err(e) = finish_pipeline(&*ctx.target, &outputs, &objects).await
        {
            first_error = Some(e);
        }
        if let Some(position) = ctx.source.snapshot_position() {
            info!(%position, "source change log position at the snapshot");
            state.set_snapshot_position(run_id, &position)?;
        }

        let rows: u64 = table_runs
            .iter()
            .map(|t| t.rows.load(Ordering::Relaxed))
            .sum();
        let rejected = sink.count();
        end_run(
            &state,
            run_id,
            first_error.map_or(Ok(()), Err),
            rows,
            rejected,
        )?;
        let summary = RunSummary {
            pipeline: pipeline.name.clone(),
            run: run_id,
            resumed: start == Start::Resume,
            tables: table_runs.iter().map(|t| t.summary()).collect(),
            rows,
            rejected,
            elapsed: started.elapsed(),
            stream: None,
            back: None,
        };
        info!(
            rows,
            rejected,
            secs = summary.elapsed.as_secs_f64(),
            "run finished"
        );
        Ok(summary)
    }
    .instrument(span)
    .await
}

/// A chunk to copy: its table, where it resumes and the rows read before.
type Job = (Arc<TableRun>, Chunk, Position, u64);

/// The work list: every chunk without a `done` checkpoint, resumed after
/// its last committed position, taken round robin over the tables (small
/// tables finish early instead of queueing behind every chunk of a big
/// one); and each table's run. A table with nothing left is finished now.
async fn work_list(
    ctx: &Arc<RunContext>,
    plan: &Plan,
    outputs: &[Arc<TableSchema>],
    committed: &HashMap<(String, u32), Checkpoint>,
    transforms: &Transforms,
    progress: &Progress,
) -> Result<(Vec<Job>, Vec<Arc<TableRun>>)> {
    let mut jobs = Vec::new();
    let mut table_runs = Vec::new();
    for ((schema, chunks), output) in plan.iter().zip(outputs) {
        let mut done_rows = 0;
        let mut left = Vec::new();
        for chunk in chunks {
            match committed.get(&(schema.name.clone(), chunk.id)) {
                Some(c) if c.done => done_rows += c.rows,
                Some(c) => {
                    done_rows += c.rows;
                    left.push((chunk.clone(), c.position.clone(), c.rows));
                }
                None => left.push((chunk.clone(), Position::Start, 0)),
            }
        }
        let estimated: u64 = chunks.iter().map(|c| c.estimated_rows).sum();
        let table_run = Arc::new(TableRun::new(
            schema.clone(),
            output.clone(),
            transforms.chain(&schema.name),
            progress.table(&schema.name, estimated, done_rows),
            left.len(),
        ));
        if left.is_empty() {
            finish_table(ctx, &table_run).await?;
        }
        jobs.push(
            left.into_iter()
                .map(|(chunk, position, rows)| (table_run.clone(), chunk, position, rows))
                .collect::<std::collections::VecDeque<_>>(),
        );
        table_runs.push(table_run);
    }
    let mut in_order = Vec::new();
    while jobs.iter().any(|j| !j.is_empty()) {
        for table_jobs in &mut jobs {
            if let Some(job) = table_jobs.pop_front() {
                in_order.push(job);
            }
        }
    }
    Ok((in_order, table_runs))
}

/// Copies the chunks, `parallelism` at a time, each on a task of the
/// returned set; the last chunk of a table finishes it.
fn copy_chunks(ctx: &Arc<RunContext>, jobs: Vec<Job>) -> JoinSet<Result<()>> {
    let permits = Arc::new(Semaphore::new(ctx.pipeline.parallelism));
    let mut tasks = JoinSet::new();
    for (table_run, chunk, position, rows) in jobs {
        let ctx = ctx.clone();
        let permits = permits.clone();
        let span =
            info_span!("chunk", table = %printable(&table_run.schema.name), chunk = chunk.id);
        tasks.spawn(
            async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Interrupted)?;
                if ctx.stop.is_triggered() {
                    return Err(Error::Interrupted);
                }
                enter(&ctx, &table_run, TablePhase::Copying)?;
                let copied = copy_chunk_with_retries(&ctx, &table_run, chunk, position, rows);
                if let Err(e) = copied.await {
                    failed(&ctx, &table_run, &e);
                    return Err(e);
                }
                if table_run.chunks_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    finish_table(&ctx, &table_run).await?;
                }
                Ok(())
            }
            .instrument(span),
        );
    }
    tasks
}

impl TableRun {
    pub(super) fn new(
        schema: Arc<TableSchema>,
        output: Arc<TableSchema>,
        chain: TransformChain,
        progress: Arc<TableProgress>,
        chunks_left: usize,
    ) -> Self {
        TableRun {
            schema,
            output,
            chain,
            progress,
            chunks_left: AtomicUsize::new(chunks_left),
            rows: AtomicU64::new(0),
            written: AtomicU64::new(0),
            wire_said: std::sync::Once::new(),
        }
    }

    fn summary(&self) -> TableSummary {
        TableSummary {
            name: self.schema.name.clone(),
            phase: self.progress.phase(),
            rows: self.rows.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
        }
    }
}

/// Waits for every task; the first error (other than an interruption, which
/// any error triggers in the others) stops the rest and is returned.
pub(super) async fn join_tasks(
    tasks: &mut JoinSet<Result<()>>,
    stop: &Shutdown,
    what: &str,
) -> Option<Error> {
    let mut first_error: Option<Error> = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.context(|| what.to_string()).and_then(|r| r) {
            if first_error.is_none() || matches!(first_error, Some(Error::Interrupted)) {
                if e.kind() != ErrorKind::Interrupted {
                    // A database's error may quote a row: the values
                    // only at DEBUG.
                    tracing::debug!(error = %e.report(), "stopping the run");
                    warn!(
                        error = %without_row_values(&e.report()),
                        "stopping the run"
                    );
                }
                first_error = Some(e);
            }
            stop.trigger();
        }
    }
    first_error
}

/// Records how a run ended, and passes its outcome on.
pub(super) fn end_run<T>(
    state: &StateStore,
    run: i64,
    outcome: Result<T>,
    rows: u64,
    rejected: u64,
) -> Result<T> {
    match outcome {
        Ok(value) => {
            state.finish_run(run, RunStatus::Done, rows, rejected, None)?;
            Ok(value)
        }
        Err(error) => {
            let status = match error.kind() {
                ErrorKind::Interrupted => RunStatus::Interrupted,
                _ => RunStatus::Failed,
            };
            state.finish_run(run, status, rows, rejected, Some(&error.report()))?;
            Err(error)
        }
    }
}

pub(super) type Plan = Vec<(Arc<TableSchema>, Vec<Chunk>)>;

/// Reloads the plan of an interrupted run, or discovers and plans anew.
pub(super) async fn plan_or_resume(
    pipeline: &Pipeline,
    restart: bool,
    source: &dyn Source,
    target: &dyn Target,
    state: &StateStore,
) -> Result<(i64, Plan, Start, SchemaObjects)> {
    let (schemas, objects) = discover_for_target(pipeline, source, target, false).await?;
    if let Some(record) = state.unfinished_run(&pipeline.name)? {
        if restart {
            state.abandon_run(record.id)?;
            info!(run = record.id, "interrupted run abandoned; starting anew");
        } else {
            let plan = state.load_plan(record.id)?;
            let planned: Vec<&str> = plan.iter().map(|(t, _)| t.name.as_str()).collect();
            let selected: Vec<&str> = schemas.iter().map(|t| t.name.as_str()).collect();
            if planned != selected {
                return Err(Error::Config(format!(
                    "pipeline {}: the interrupted run {} copies tables [{}] but the pipeline now selects [{}]; \
                     run with --restart to abandon it and start anew",
                    pipeline.name,
                    record.id,
                    planned.join(", "),
                    selected.join(", ")
                )));
            }
            let start = if record.prepared {
                Start::Resume
            } else {
                Start::Fresh
            };
            return Ok((record.id, plan, start, objects));
        }
    }
    let mut plan = Vec::new();
    for schema in schemas {
        let chunks = source.plan_snapshot(&schema, pipeline.chunk_rows).await?;
        info!(
            table = schema.name,
            chunks = chunks.len(),
            rows = chunks.iter().map(|c| c.estimated_rows).sum::<u64>(),
            "table planned"
        );
        plan.push((Arc::new(schema), chunks));
    }
    let run = state.begin_run(&pipeline.name, "full", &plan)?;
    Ok((run, plan, Start::Fresh, objects))
}

/// Copies one chunk; after a transient failure, waits and continues from
/// the chunk's checkpoint on the target.
pub(super) async fn copy_chunk_with_retries(
    ctx: &RunContext,
    table: &TableRun,
    chunk: Chunk,
    resume: Position,
    rows: u64,
) -> Result<()> {
    let what = format!("table {} chunk {}", table.schema.name, chunk.id);
    super::retry::retrying(
        &ctx.pipeline.retry,
        &ctx.stop,
        &what,
        (resume, rows),
        |(resume, rows)| copy_chunk(ctx, table, chunk.clone(), resume, rows),
        || async {
            let held = ctx.target.checkpoints().await?;
            Ok(held
                .into_iter()
                .find(|c| c.table == table.schema.name && c.chunk == chunk.id)
                .map_or((Position::Start, 0), |c| (c.position, c.rows)))
        },
    )
    .await
}

/// Copies one chunk, batch by batch, from `resume` to its end.
async fn copy_chunk(
    ctx: &RunContext,
    table: &TableRun,
    chunk: Chunk,
    resume: Position,
    rows_before: u64,
) -> Result<()> {
    let chunk_id = chunk.id;
    let batch_rows = ctx.target.batch_rows(ctx.pipeline.batch_rows);
    let schema = table.schema.clone();
    let batches = if wire_passes(ctx, table).await? {
        ctx.source
            .read_chunk_wire(schema, chunk, resume, batch_rows)
    } else {
        ctx.source.read_chunk(schema, chunk, resume, batch_rows)
    };
    let mut staged = transform_stage(table.chain.clone(), batches);
    let mut rows = rows_before;
    let name = &table.schema.name;
    loop {
        let Staged {
            read,
            mut batch,
            versions,
            bytes,
            plugin_time,
            ..
        } = staged
            .next(&ctx.stop, ctx.pipeline.on_error, name, || {
                format!(
                    "table {name} chunk {chunk_id}: the reader stopped before the end of the chunk"
                )
            })
            .await?;
        let fence = rows;
        rows += read;
        let rejects = std::mem::take(&mut batch.rejects);
        let rejected = rejects.len() as u64;
        if let Some(elapsed) = plugin_time {
            table.progress.add_plugin_time(elapsed);
        }
        let sink: Arc<dyn RejectSink> = ctx.sink.produced_by(HashMap::from([(
            table.schema.name.clone(),
            versions.clone(),
        )]));
        // Before the write: its commit moves the checkpoint past these rows.
        dmp_contract::dead_letter(&sink, &table.schema, rejects).await?;
        let checkpoint = Checkpoint {
            table: table.schema.name.clone(),
            chunk: chunk_id,
            position: batch.position.clone(),
            rows,
            done: batch.last,
            fence: Some(Fence::Rows(fence)),
        };
        let last = batch.last;
        let span = tracing::debug_span!("batch", rows = read, last);
        let written = ctx
            .target
            .write(batch, checkpoint.clone(), sink)
            .instrument(span)
            .await?;
        tracing::debug!(rows = read, written, "batch committed");
        ctx.state.record_progress(ctx.run, &checkpoint, &versions)?;
        table.progress.add(read);
        table.progress.add_batch(bytes, rejected);
        table.rows.fetch_add(read, Ordering::Relaxed);
        table.written.fetch_add(written, Ordering::Relaxed);
        if last {
            return Ok(());
        }
    }
}

/// Whether the table's rows can go from the source to the target in the
/// source's wire form, undecoded: no transform sees them, and the target
/// takes that form for every column.
async fn wire_passes(ctx: &RunContext, table: &TableRun) -> Result<bool> {
    if !table.chain.is_empty() {
        return Ok(false);
    }
    let passes = match ctx.source.wire_format(&table.schema).await? {
        Some(format) => ctx.target.takes_wire(&table.output, &format).await?,
        None => false,
    };
    if passes {
        table.wire_said.call_once(|| {
            info!(table = %table.schema.name, "rows pass from the source to the target undecoded, in the source's wire form");
        });
    }
    Ok(passes)
}

/// A batch between the transform stage and the writer.
pub(super) struct Staged {
    /// Rows the batch had when read (before transforms).
    pub(super) read: u64,
    pub(super) batch: Batch,
    /// The plugin versions that produced it (or, on a failure, the
    /// versions running then).
    pub(super) versions: String,
    /// Why the transforms failed on it (the batch then holds the rows of
    /// the chain's input that reached the failing plugin).
    pub(super) failure: Option<String>,
    /// Source bytes of the batch as read.
    pub(super) bytes: u64,
    /// Time in the plugins, when the chain has any.
    pub(super) plugin_time: Option<std::time::Duration>,
}

/// The transform stage of a chunk: a task between the reader and the
/// writer, joined by bounded channels, so that a batch is transformed while
/// the previous one is written. The chunk's writer owns it: dropping the
/// stage (the chunk done, failed or stopped) ends its task, and the
/// reader's with it.
pub(super) struct Stage {
    staged: mpsc::Receiver<Result<Staged>>,
    task: tokio::task::AbortHandle,
}

impl Stage {
    /// The next transformed batch, with a transform failure settled by
    /// `on_error`: the batch's rows refused, or the run stopped. `early`
    /// says what ended when the reader stops before its last batch.
    pub(super) async fn next(
        &mut self,
        stop: &Shutdown,
        on_error: OnError,
        table: &str,
        early: impl FnOnce() -> String,
    ) -> Result<Staged> {
        let next = tokio::select! {
            biased;
            () = stop.wait() => return Err(Error::Interrupted),
            next = self.staged.recv() => next,
        };
        let mut staged = next.ok_or_else(|| Error::Data(early()))??;
        if let Some(reason) = staged.failure.take() {
            if on_error == OnError::Fail {
                return Err(Error::Data(format!("{reason} (on_error = \"fail\")")));
            }
            warn!(table = %table, error = %reason, "transform failed on a batch; its rows are refused");
            reject_whole_batch(&mut staged.batch, &reason);
        }
        Ok(staged)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// About the bytes a batch read from the source: its wire bytes, or its
/// rows' values.
fn batch_bytes(batch: &Batch) -> u64 {
    let rows: usize = batch.changes.iter().map(|c| c.row().approx_bytes()).sum();
    (rows + batch.wire.as_ref().map_or(0, |w| w.bytes.len())) as u64
}

pub(super) fn transform_stage(chain: TransformChain, mut batches: BatchStream) -> Stage {
    let (tx, staged) = mpsc::channel(READ_AHEAD_BATCHES);
    let task = tokio::spawn(async move {
        while let Some(next) = batches.recv().await {
            let staged = match next {
                Err(e) => Err(e),
                Ok(batch) => {
                    let read = batch.rows_read();
                    let bytes = batch_bytes(&batch);
                    let started = std::time::Instant::now();
                    let applied = chain.apply(batch).await;
                    let plugin_time = (!chain.plugins().is_empty()).then(|| started.elapsed());
                    match applied {
                        Err(e) => Err(e),
                        Ok(Ok((batch, versions))) => Ok(Staged {
                            read,
                            batch,
                            versions,
                            failure: None,
                            bytes,
                            plugin_time,
                        }),
                        Ok(Err((batch, reason))) => Ok(Staged {
                            read,
                            batch,
                            versions: chain.plugins().join(","),
                            failure: Some(reason),
                            bytes,
                            plugin_time,
                        }),
                    }
                }
            };
            let failed = staged.is_err();
            // A closed receiver means the writer stopped: so does the stage.
            if tx.send(staged).await.is_err() || failed {
                return;
            }
        }
    });
    Stage {
        staged,
        task: task.abort_handle(),
    }
}

/// Moves `table` to `phase`, for the display and in the state store.
pub(super) fn enter(ctx: &RunContext, table: &TableRun, phase: TablePhase) -> Result<()> {
    if table.progress.enter(phase.clone()) {
        ctx.state
            .set_table_phase(ctx.run, &table.schema.name, &phase)?;
    }
    Ok(())
}

/// Records why the run stopped on `table` (a stop on request is no
/// failure). Best effort: the run reports the error either way.
pub(super) fn failed(ctx: &RunContext, table: &TableRun, error: &Error) {
    if error.kind() == ErrorKind::Interrupted {
        return;
    }
    let reason = without_row_values(&error.report());
    if let Err(e) = enter(ctx, table, TablePhase::Failed { reason }) {
        warn!(table = %printable(&table.schema.name), error = %e.report(), "cannot record the table's failure");
    }
}

/// Foreign keys and what reads the tables (views), last: every table's
/// rows are there by now.
pub(super) async fn finish_pipeline(
    target: &dyn Target,
    outputs: &[Arc<TableSchema>],
    objects: &SchemaObjects,
) -> Result<()> {
    target.finish_pipeline(outputs).await?;
    target.finish_objects(objects, outputs).await
}

pub(super) async fn finish_table(ctx: &RunContext, table: &TableRun) -> Result<()> {
    enter(ctx, table, TablePhase::Indexing)?;
    if let Err(e) = ctx.target.finish_table(&table.output).await {
        failed(ctx, table, &e);
        return Err(e);
    }
    ctx.state.mark_table_done(ctx.run, &table.schema.name)?;
    enter(ctx, table, TablePhase::Done)?;
    table.progress.finish();
    info!(table = table.schema.name, "table done");
    Ok(())
}
