//! `cdc` and `full+cdc` runs: find where the change stream starts (the
//! target's stream checkpoint, a consistent snapshot copied first, the
//! position of an earlier full run, or now), then stream until stopped.

use super::setup::{Transforms, dead_letter_sink, prepare_target};
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::plan::discover_for_target;
use super::progress::Progress;
use super::runner::{self, RunSummary, end_run};
use super::shutdown::Shutdown;
use super::stream::{StreamContext, StreamTable, stream};
use crate::error::{Error, Result};
use dmp_config::Pipeline;
use dmp_contract::{ChangeSource, RejectSink, Source, Start, Target};
use dmp_model::TablePhase;
use dmp_model::{ChangeBatch, Checkpoint, Fence, Position, STREAM_CHECKPOINT, TableSchema};
use dmp_state::{DeadLetterSink, StateStore};

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    pipeline: &Pipeline,
    restart: bool,
    with_snapshot: bool,
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    shutdown: Shutdown,
) -> Result<RunSummary> {
    let started = Instant::now();
    let changes = source.changes(&pipeline.change_options())?.ok_or_else(|| {
        Error::Config(format!(
            "{}: mode = \"{}\" needs a source with a change log, which `{}://` has not",
            pipeline.source,
            pipeline.mode.as_str(),
            pipeline.source.scheme()
        ))
    })?;
    let (schemas, objects) = discover_for_target(pipeline, &*source, &*target, false).await?;
    let schemas: Vec<Arc<TableSchema>> = schemas.into_iter().map(Arc::new).collect();
    let held = if restart {
        None
    } else {
        stream_checkpoint(&*target).await?
    };
    let mut snapshot_summary = None;
    let from = match held {
        Some(position) => {
            info!(
                ?position,
                "continuing the change stream where the target stands"
            );
            position
        }
        None if with_snapshot
            && let Some(position) =
                copied_snapshot(pipeline, restart, &*target, &state).await? =>
        {
            info!(
                ?position,
                "the snapshot is copied already; streaming from where it began"
            );
            position
        }
        None if with_snapshot => {
            let (position, summary) = snapshot_then_position(
                pipeline,
                restart,
                &changes,
                &schemas,
                source.clone(),
                target.clone(),
                state.clone(),
                progress.clone(),
                shutdown.clone(),
            )
            .await?;
            snapshot_summary = Some(summary);
            // Tests: the copy is done, the stream has not begun.
            dmp_contract::crash_point("snapshot-copied");
            position
        }
        None => start_without_snapshot(pipeline, &*changes, &schemas, &state).await?,
    };

    let plan: Vec<_> = schemas.iter().map(|s| (s.clone(), Vec::new())).collect();
    let transforms = Transforms::open_watched(pipeline, &schemas).await?;
    let outputs = transforms.outputs(&schemas);
    // Changes of shape start from the tables as the target has them (the
    // source may have changed since the target last followed it, and the
    // stream brings them there).
    let mut held = Vec::with_capacity(schemas.len());
    for schema in &schemas {
        held.push(target.describe(&schema.name).await?);
    }
    if snapshot_summary.is_none() {
        super::assess::check(pipeline, &outputs, &objects, &*target)?;
        prepare_target(
            pipeline,
            &*target,
            &objects,
            &outputs,
            Start::Keep,
            &shutdown,
        )
        .await?;
        // Indexes and foreign keys of the tables made now.
        let made: Vec<Arc<TableSchema>> = outputs
            .iter()
            .zip(&held)
            .filter(|(_, held)| held.is_none())
            .map(|(output, _)| output.clone())
            .collect();
        for output in &made {
            target.finish_table(output).await?;
        }
        target.finish_pipeline(&made).await?;
        target.finish_objects(&objects, &outputs).await?;
    }
    let tables: Vec<StreamTable> = schemas
        .iter()
        .zip(held)
        .map(|(schema, held)| {
            StreamTable::new(schema.clone(), transforms.chain(&schema.name), held)
        })
        .collect();
    let run_id = state.begin_run(&pipeline.name, "cdc", &plan)?;
    state.mark_prepared(run_id)?;
    for (schema, _) in &plan {
        state.set_table_phase(run_id, &schema.name, &TablePhase::Streaming)?;
    }
    let sink = dead_letter_sink(pipeline, &state, run_id);
    // The start is durable before anything streams: a restart never skips
    // ahead to a later "now".
    let fence = pipeline.epoch.map(Fence::Epoch);
    hold_position(&*target, &sink, &from, fence).await?;
    // The target holds where the stream stands from now on.
    state.clear_stream_start(&pipeline.name)?;
    let batch_rows = target.batch_rows(pipeline.batch_rows);
    let ctx = StreamContext {
        changes,
        target,
        tables,
        sink: sink.clone(),
        progress,
        stop: shutdown,
        batch_rows,
        limits: pipeline.read_limits(),
        on_error: pipeline.on_error,
        schema_changes: pipeline.cdc.schema_changes,
        plugins: transforms
            .plugins()
            .map(|runtime| (runtime, pipeline.transforms.clone())),
        fence,
        write_idle_positions: pipeline.origin.is_none(),
    };
    let outcome = super::retry::retrying(
        &pipeline.retry,
        &ctx.stop,
        "the change stream",
        from.clone(),
        |from| stream(&ctx, from),
        || async {
            Ok(stream_checkpoint(&*ctx.target)
                .await?
                .unwrap_or_else(|| from.clone()))
        },
    )
    .await;
    // Stopped while waiting to reconnect: the target holds a checkpoint, as
    // when stopped while streaming, so the run ends the same way.
    let outcome = match outcome {
        Err(Error::Interrupted) => Ok(super::stream::StreamSummary::default()),
        other => other,
    };
    let rejected = sink.count();
    let changes = outcome.as_ref().map_or(0, |s| s.changes);
    let stream_summary = end_run(&state, run_id, outcome, changes, rejected)?;
    let (tables, rows) = snapshot_summary
        .map(|s| (s.tables, s.rows))
        .unwrap_or_default();
    Ok(RunSummary {
        pipeline: pipeline.name.clone(),
        run: run_id,
        resumed: false,
        tables,
        rows: rows + stream_summary.changes,
        rejected,
        elapsed: started.elapsed(),
        stream: Some(stream_summary),
        back: None,
    })
}

/// The stream position the target holds for this pipeline, if any.
pub(super) async fn stream_checkpoint(target: &dyn Target) -> Result<Option<Position>> {
    Ok(target
        .checkpoints()
        .await?
        .into_iter()
        .find(|c| c.table == STREAM_CHECKPOINT)
        .map(|c| c.position))
}

/// Writes `position` as the stream checkpoint (with no change).
async fn hold_position(
    target: &dyn Target,
    sink: &Arc<DeadLetterSink>,
    position: &Position,
    fence: Option<Fence>,
) -> Result<()> {
    let checkpoint = Checkpoint {
        table: STREAM_CHECKPOINT.to_string(),
        chunk: 0,
        position: position.clone(),
        rows: 0,
        done: true,
        fence,
    };
    let sink: Arc<dyn RejectSink> = sink.clone();
    target.apply(ChangeBatch::new(), checkpoint, sink).await?;
    Ok(())
}

/// Where the stream of a `full+cdc` pipeline starts when the process
/// stopped after its snapshot was copied and before the stream held its
/// first checkpoint: where the snapshot began. Copying it again would be
/// wasted work on a database, and wrong on a bus, whose consumers keep the
/// rows of the first copy that a second one no longer holds.
async fn copied_snapshot(
    pipeline: &Pipeline,
    restart: bool,
    target: &dyn Target,
    state: &StateStore,
) -> Result<Option<Position>> {
    if restart || state.unfinished_run(&pipeline.name)?.is_some() {
        return Ok(None);
    }
    let Some(start) = state.stream_start(&pipeline.name)? else {
        return Ok(None);
    };
    let held = target.checkpoints().await?;
    let copied = !held.is_empty() && held.iter().all(|c| c.done);
    Ok(copied.then_some(start))
}

/// `full+cdc` without a stream checkpoint: copies (or resumes copying) a
/// snapshot and returns where the stream starts so that it meets the copy.
#[allow(clippy::too_many_arguments)]
async fn snapshot_then_position(
    pipeline: &Pipeline,
    restart: bool,
    changes: &Arc<dyn ChangeSource>,
    schemas: &[Arc<TableSchema>],
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    shutdown: Shutdown,
) -> Result<(Position, RunSummary)> {
    let fresh = restart || state.unfinished_run(&pipeline.name)?.is_none();
    let start = changes.begin_snapshot(schemas, fresh).await?;
    let exported = start.snapshot.is_some();
    if let Some(snapshot) = start.snapshot {
        source.use_snapshot(snapshot)?;
    }
    // Any position at or before the snapshot works: applying is
    // idempotent, so changes the snapshot holds already converge.
    let before = match (start.position.clone(), fresh) {
        (Some(position), _) => position,
        (None, true) => changes.current_position(schemas).await?,
        (None, false) => state.stream_start(&pipeline.name)?.ok_or_else(|| {
            Error::Config(format!(
                "pipeline {}: the interrupted snapshot has no recorded stream start; run with --restart",
                pipeline.name
            ))
        })?,
    };
    if fresh {
        state.set_stream_start(&pipeline.name, &before)?;
    }
    info!(position = ?before, exported, fresh, "copying the snapshot the change stream starts from");
    let summary = runner::run(
        pipeline,
        restart,
        source.clone(),
        target,
        state,
        progress,
        shutdown,
    )
    .await?;
    // The snapshot's own position is exact (no change replayed) when one
    // uninterrupted snapshot was read; else the earlier point.
    let exact = match source.snapshot_position() {
        Some(text) if fresh && !summary.resumed && !exported && start.position.is_none() => {
            changes.position_from_snapshot(&text).await?
        }
        _ => None,
    };
    Ok((exact.unwrap_or(before), summary))
}

/// `cdc` without a stream checkpoint: the position of the pipeline's last
/// full run if the source can stream from there, else now.
async fn start_without_snapshot(
    pipeline: &Pipeline,
    changes: &dyn ChangeSource,
    schemas: &[Arc<TableSchema>],
    state: &StateStore,
) -> Result<Position> {
    // A two-way sync's leg fixed its start before the other side's first
    // load (see `bidirectional`).
    if let Some(position) = state.stream_start(&pipeline.name)? {
        changes.current_position(schemas).await?;
        info!(
            ?position,
            "streaming from the start recorded before the first load"
        );
        return Ok(position);
    }
    let recorded = state.snapshot_position(&pipeline.name)?;
    let from_snapshot = match &recorded {
        Some(text) => changes.position_from_snapshot(text).await?,
        None => None,
    };
    if let (Some(text), Some(position)) = (&recorded, from_snapshot) {
        // Makes sure the publication/slot exist before streaming.
        changes.current_position(schemas).await?;
        info!(?position, snapshot = %text, "streaming from the last full run's snapshot");
        return Ok(position);
    }
    let now = changes.current_position(schemas).await?;
    if changes.holds_everything() {
        info!(?now, "streaming the source's log from its first change");
        return Ok(now);
    }
    match recorded {
        Some(text) => warn!(
            snapshot = %text,
            "the source cannot stream from the last full run's snapshot position; streaming changes from now on (changes in between are not copied: use mode = \"full+cdc\")"
        ),
        None => warn!(
            "no checkpoint and no earlier full run: streaming changes from now on; rows already in the source are not copied (use mode = \"full+cdc\")"
        ),
    }
    Ok(now)
}
