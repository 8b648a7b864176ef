//! An incremental run: for every table, the rows whose cursor column moved
//! past the high-water mark the target holds, upserted by primary key, the
//! new mark committed with them. Soft-deleted rows are deleted. The first
//! run (no mark yet) copies every row.

use super::setup::{Transforms, dead_letter_sink, prepare_target};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span};

use super::plan::discover_for_target;
use super::progress::{Progress, TableProgress};
use super::runner::{RunSummary, Staged, TableSummary, end_run, join_tasks, transform_stage};
use super::shutdown::Shutdown;
use crate::error::{Error, Result};
use dmp_config::{OnError, Pipeline, RetryPolicy};
use dmp_contract::{BatchStream, RejectSink, SchemaChange, Source, Start, TableEvent, Target};
use dmp_model::{
    Batch, CURSOR_CHUNK, Change, ChangeBatch, Checkpoint, Position, Row, TableChanges, TablePhase,
    TableSchema, Value,
};
use dmp_state::{DeadLetterSink, StateStore};
use dmp_transform::TransformChain;

/// One table of an incremental run.
struct IncrementalTable {
    schema: Arc<TableSchema>,
    cursor: usize,
    soft_delete: Option<usize>,
    chain: TransformChain,
    /// Where the last run stopped, and the rows it had counted.
    after: Position,
    rows_before: u64,
}

/// Brings a table the target has to the source's shape before its rows
/// come: what loses nothing is carried (columns added at the source since
/// the last run, with their defaults filling the rows there; wider types),
/// the rest follows `[cdc] schema_changes`. The table's mark is written
/// again with the change.
async fn follow_shape(
    pipeline: &Pipeline,
    target: &dyn Target,
    sink: &Arc<DeadLetterSink>,
    marks: &HashMap<String, Checkpoint>,
    schema: &TableSchema,
    output: &Arc<TableSchema>,
    held: &TableSchema,
) -> Result<()> {
    let change = SchemaChange {
        schema: output.clone(),
        event: TableEvent::Altered,
        statement: None,
        renamed: Vec::new(),
        dropped: Vec::new(),
    };
    let changes = super::evolve::deltas(
        held,
        None,
        output,
        &change,
        pipeline.cdc.schema_changes,
        "the start of the run",
    )?;
    if changes.is_empty() {
        return Ok(());
    }
    let mark = marks
        .get(&schema.name)
        .cloned()
        .unwrap_or_else(|| Checkpoint {
            table: schema.name.clone(),
            chunk: CURSOR_CHUNK,
            position: Position::Start,
            rows: 0,
            done: false,
            fence: None,
        });
    info!(table = %schema.name, changes = changes.len(), "the table changed shape at the source; the target follows");
    let batch = ChangeBatch {
        segments: vec![TableChanges::Evolve {
            table: output.clone(),
            from: Arc::new(held.clone()),
            changes,
        }],
    };
    let sink: Arc<dyn RejectSink> = sink.clone();
    target.apply(batch, mark, sink).await?;
    Ok(())
}

/// `restart`: ignore the marks and read every row again (upserted: the
/// target ends the same, with rows the source no longer has left alone).
pub(super) async fn run(
    pipeline: &Pipeline,
    restart: bool,
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    shutdown: Shutdown,
) -> Result<RunSummary> {
    let started = Instant::now();
    let (schemas, objects) = discover_for_target(pipeline, &*source, &*target, false).await?;
    let schemas: Vec<Arc<TableSchema>> = schemas.into_iter().map(Arc::new).collect();
    let plan: Vec<_> = schemas.iter().map(|s| (s.clone(), Vec::new())).collect();
    let transforms = Transforms::open_watched(pipeline, &schemas).await?;
    let outputs = transforms.outputs(&schemas);
    let mut tables = Vec::new();
    for schema in &schemas {
        let (cursor, soft_delete) = cursor_columns(pipeline, schema)?;
        tables.push((schema.clone(), cursor, soft_delete));
    }
    super::assess::check(pipeline, &outputs, &objects, &*target)?;
    // The tables the target has already, as it has them.
    let mut held = Vec::with_capacity(outputs.len());
    for output in &outputs {
        held.push(target.describe(&output.name).await?);
    }
    prepare_target(
        pipeline,
        &*target,
        &objects,
        &outputs,
        Start::Keep,
        &shutdown,
    )
    .await?;
    let marks: HashMap<String, Checkpoint> = target
        .checkpoints()
        .await?
        .into_iter()
        .filter(|c| c.chunk == CURSOR_CHUNK && !restart)
        .map(|c| (c.table.clone(), c))
        .collect();
    let run_id = state.begin_run(&pipeline.name, "incremental", &plan)?;
    state.mark_prepared(run_id)?;
    let sink = dead_letter_sink(pipeline, &state, run_id);
    for ((schema, output), held) in schemas.iter().zip(&outputs).zip(&held) {
        if let Some(held) = held {
            follow_shape(pipeline, &*target, &sink, &marks, schema, output, held).await?;
        }
    }
    // Fires on the caller's stop too, or on this run's first fatal error.
    let stop = shutdown.child();

    let permits = Arc::new(Semaphore::new(pipeline.parallelism));
    let mut tasks = JoinSet::new();
    let mut counters = Vec::new();
    for (schema, cursor, soft_delete) in tables {
        let mark = marks.get(&schema.name);
        let table = IncrementalTable {
            chain: transforms.chain(&schema.name),
            after: mark.map_or(Position::Start, |c| c.position.clone()),
            rows_before: mark.map_or(0, |c| c.rows),
            schema: schema.clone(),
            cursor,
            soft_delete,
        };
        let counter = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        counters.push((schema.name.clone(), counter.clone()));
        let ctx = TableContext {
            source: source.clone(),
            target: target.clone(),
            state: state.clone(),
            sink: sink.clone(),
            stop: stop.clone(),
            progress: progress.clone(),
            batch_rows: target.batch_rows(pipeline.batch_rows),
            on_error: pipeline.on_error,
            retry: pipeline.retry,
            run: run_id,
        };
        let permits = permits.clone();
        let span =
            info_span!("table", table = %dmp_model::printable(&schema.name), mode = "incremental");
        tasks.spawn(
            async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Interrupted)?;
                if ctx.stop.is_triggered() {
                    return Err(Error::Interrupted);
                }
                let progress = ctx.progress.table(&table.schema.name, 0, 0);
                let what = format!("table {}", table.schema.name);
                super::retry::retrying(
                    &ctx.retry,
                    &ctx.stop,
                    &what,
                    (table.after.clone(), table.rows_before),
                    |(after, rows)| sync_table(&ctx, &table, after, rows, &progress, &counter),
                    || async {
                        let held = ctx.target.checkpoints().await?;
                        Ok(held
                            .into_iter()
                            .find(|c| c.table == table.schema.name && c.chunk == CURSOR_CHUNK)
                            .map_or((Position::Start, 0), |c| (c.position, c.rows)))
                    },
                )
                .await?;
                ctx.state.mark_table_done(ctx.run, &table.schema.name)?;
                Ok(())
            }
            .instrument(span),
        );
    }
    let mut first_error = join_tasks(&mut tasks, &stop, "table task").await;
    if first_error.is_none() {
        // Indexes and foreign keys of the tables this run created.
        for output in &outputs {
            if let Err(e) = target.finish_table(output).await {
                first_error = Some(e);
                break;
            }
        }
    }
    if first_error.is_none() {
        let finished = async {
            target.finish_pipeline(&outputs).await?;
            target.finish_objects(&objects, &outputs).await
        };
        if let Err(e) = finished.await {
            first_error = Some(e);
        }
    }
    let rows: u64 = counters
        .iter()
        .map(|(_, c)| c.0.load(Ordering::Relaxed))
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
        resumed: false,
        tables: counters
            .iter()
            .map(|(name, c)| TableSummary {
                name: name.clone(),
                phase: TablePhase::Done,
                rows: c.0.load(Ordering::Relaxed),
                written: c.1.load(Ordering::Relaxed),
            })
            .collect(),
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
        "incremental run finished"
    );
    Ok(summary)
}

/// The cursor (and soft-delete) column of a table, from its
/// `[table."GLOB"]` entry.
fn cursor_columns(pipeline: &Pipeline, schema: &TableSchema) -> Result<(usize, Option<usize>)> {
    let Some(options) = pipeline.table_options(&schema.name) else {
        return Err(Error::Config(format!(
            "table {}: incremental mode needs its cursor column: add `[table.\"{}\"]` with `cursor = \"updated_at\"` (a column that grows with every insert and update)",
            schema.name, schema.name
        )));
    };
    let column = |name: &str, key: &str| {
        schema.column_index(name).ok_or_else(|| {
            Error::Config(format!(
                "{}.{key}: table {} has no column `{name}` (columns: {})",
                options.place,
                schema.name,
                schema
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    let Some(cursor) = options.cursor.as_deref() else {
        return Err(Error::Config(format!(
            "{}: table {} has no `cursor` column set; incremental mode needs one",
            options.place, schema.name
        )));
    };
    let cursor = column(cursor, "cursor")?;
    let soft_delete = options
        .soft_delete
        .as_deref()
        .map(|name| column(name, "soft_delete"))
        .transpose()?;
    Ok((cursor, soft_delete))
}

/// What every table task shares.
struct TableContext {
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    state: Arc<StateStore>,
    sink: Arc<DeadLetterSink>,
    stop: Shutdown,
    progress: Arc<Progress>,
    batch_rows: usize,
    on_error: OnError,
    retry: RetryPolicy,
    run: i64,
}

/// Reads the table's new rows and applies them batch by batch.
async fn sync_table(
    ctx: &TableContext,
    table: &IncrementalTable,
    after: Position,
    rows_before: u64,
    progress: &TableProgress,
    counter: &(AtomicU64, AtomicU64),
) -> Result<()> {
    info!(table = table.schema.name, after = ?after, "reading rows past the cursor");
    let batches =
        ctx.source
            .read_incremental(table.schema.clone(), table.cursor, after, ctx.batch_rows);
    let batches = mark_soft_deletes(batches, table.soft_delete);
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
            .next(&ctx.stop, ctx.on_error, name, || {
                format!("table {name}: the reader stopped before the end of the new rows")
            })
            .await?;
        rows += read;
        let last = batch.last;
        let checkpoint = Checkpoint {
            table: table.schema.name.clone(),
            chunk: CURSOR_CHUNK,
            position: batch.position.clone(),
            rows,
            done: false,
            fence: None,
        };
        let rejects = std::mem::take(&mut batch.rejects);
        let rejected = rejects.len() as u64;
        if let Some(elapsed) = plugin_time {
            progress.add_plugin_time(elapsed);
        }
        let sink: Arc<dyn RejectSink> = ctx
            .sink
            .produced_by(HashMap::from([(table.schema.name.clone(), versions)]));
        // Before the apply: its commit moves the mark past these rows.
        dmp_contract::dead_letter(&sink, &table.schema, rejects).await?;
        // An empty last batch still commits its mark: it may be the first
        // mark of a table that had no rows.
        if !batch.changes.is_empty() || last {
            let mut changes = ChangeBatch::new();
            if !batch.changes.is_empty() {
                changes.segments.push(TableChanges::Rows {
                    table: batch.table.clone(),
                    changes: std::mem::take(&mut batch.changes),
                    origins: Vec::new(),
                });
            }
            let applied = ctx
                .target
                .apply(changes, checkpoint.clone(), sink)
                .instrument(tracing::debug_span!("batch", rows = read))
                .await?;
            counter.1.fetch_add(applied, Ordering::Relaxed);
        }
        counter.0.fetch_add(read, Ordering::Relaxed);
        progress.add(read);
        progress.add_batch(bytes, rejected);
        if last {
            progress.finish();
            info!(table = table.schema.name, rows = counter.0.load(Ordering::Relaxed), position = ?checkpoint.position, "table in sync");
            return Ok(());
        }
    }
}

/// Turns the rows whose soft-delete column is set into deletes, before the
/// transforms (which may drop that column) see them.
fn mark_soft_deletes(mut batches: BatchStream, column: Option<usize>) -> BatchStream {
    let Some(column) = column else {
        return batches;
    };
    BatchStream::spawn(move |tx| async move {
        while let Some(next) = batches.recv().await {
            let next = next.map(|mut batch: Batch| {
                for change in &mut batch.changes {
                    if let Change::Insert(row) = change
                        && row.0.get(column).is_some_and(is_marked)
                    {
                        let row = std::mem::take(&mut row.0);
                        *change = Change::Delete(Row(row));
                    }
                }
                batch
            });
            // A closed stream means the writer stopped: so does this.
            if tx.send(next).await.is_err() {
                break;
            }
        }
        Ok(())
    })
}

/// A soft-delete flag is set: not NULL, not false, not zero, not empty.
pub(super) fn is_marked(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(v) => *v != 0,
        Value::Text(t) => !t.is_empty() && !matches!(t.as_str(), "0" | "f" | "false" | "n" | "no"),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_delete_flags() {
        assert!(!is_marked(&Value::Null));
        assert!(!is_marked(&Value::Bool(false)));
        assert!(is_marked(&Value::Bool(true)));
        assert!(!is_marked(&Value::Int(0)));
        assert!(is_marked(&Value::Int(1)));
        assert!(!is_marked(&Value::Text("false".into())));
        assert!(is_marked(&Value::Text("2026-01-01".into())));
    }
}
