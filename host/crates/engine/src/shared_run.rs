//! A full run shared by workers in several processes: the submitter plans
//! it and prepares the target once ([`plan_shared`]); each worker opens the
//! plan ([`ChunkWork::open`]) and copies the chunks it is given. A chunk
//! resumes from the target's checkpoint (or is skipped when that says
//! done), and its writes are fenced (`Checkpoint::fence`), so two workers
//! given the same chunk never both write a batch of it. Finishing a table
//! (indexes) and the pipeline (foreign keys) are calls of their own, made
//! once by whichever worker claims them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tracing::{Instrument, info_span};

use super::progress::Progress;
use super::runner::{self, RunContext, TableRun};
use super::setup::{Transforms, dead_letter_sink, prepare_target};
use super::shutdown::Shutdown;
use crate::error::{Error, Result};
use dmp_config::Pipeline;
use dmp_contract::{Source, Start, Target};
use dmp_model::{Checkpoint, Chunk, Position, SchemaObjects, TablePhase, TableSchema, printable};
use dmp_state::StateStore;

/// What every worker of a shared run needs to copy its chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedPlan {
    /// The run's id in the submitter's state store (dead letters stored by
    /// a worker carry it).
    pub run: i64,
    /// Whether the run continues an interrupted one.
    pub resumed: bool,
    /// The selected tables, in the plan's order, each with its chunks.
    pub tables: Vec<(TableSchema, Vec<Chunk>)>,
    pub objects: SchemaObjects,
    /// The source snapshot every chunk is read in, held open by the
    /// submitter (`Source::share_snapshot`).
    pub snapshot: Option<String>,
}

impl SharedPlan {
    /// Chunks over all tables.
    pub fn chunks(&self) -> usize {
        self.tables.iter().map(|(_, chunks)| chunks.len()).sum()
    }
}

/// Plans a full run for workers, or reloads the interrupted one (unless
/// `restart`), and prepares the target: what a submitter does before it
/// hands the chunks out. Its `source` must stay open until every chunk is
/// copied when the plan shares a snapshot.
pub async fn plan_shared(
    pipeline: &Pipeline,
    restart: bool,
    source: &dyn Source,
    target: &dyn Target,
    state: &StateStore,
    shutdown: &Shutdown,
) -> Result<SharedPlan> {
    let (run, plan, start, objects) =
        runner::plan_or_resume(pipeline, restart, source, target, state).await?;
    let tables: Vec<Arc<TableSchema>> = plan.iter().map(|(t, _)| t.clone()).collect();
    let transforms = Transforms::open(pipeline, &tables).await?;
    let outputs = transforms.outputs(&tables);
    super::assess::check(pipeline, &outputs, &objects, target)?;
    prepare_target(pipeline, target, &objects, &outputs, start, shutdown).await?;
    state.mark_prepared(run)?;
    let snapshot = source.share_snapshot().await?;
    Ok(SharedPlan {
        run,
        resumed: start == Start::Resume,
        tables: plan
            .into_iter()
            .map(|(table, chunks)| (TableSchema::clone(&table), chunks))
            .collect(),
        objects,
        snapshot,
    })
}

/// A worker's side of a shared run: the run's source, target and
/// transforms, open for as long as the worker copies its chunks.
pub struct ChunkWork {
    ctx: Arc<RunContext>,
    plan: SharedPlan,
    tables: Vec<Arc<TableRun>>,
    outputs: Vec<Arc<TableSchema>>,
    progress: Arc<Progress>,
    _transforms: Transforms,
}

impl ChunkWork {
    /// Opens the run of `plan` for copying; `stop` ends the copies in
    /// flight at their next batch boundary.
    pub async fn open(
        pipeline: &Pipeline,
        plan: SharedPlan,
        source: Arc<dyn Source>,
        target: Arc<dyn Target>,
        state: Arc<StateStore>,
        stop: Shutdown,
    ) -> Result<Self> {
        if let Some(snapshot) = &plan.snapshot {
            source.use_snapshot(snapshot.clone())?;
        }
        let schemas: Vec<Arc<TableSchema>> = plan
            .tables
            .iter()
            .map(|(t, _)| Arc::new(t.clone()))
            .collect();
        let transforms = Transforms::open_watched(pipeline, &schemas).await?;
        let outputs = transforms.outputs(&schemas);
        let progress = Progress::new();
        let tables = schemas
            .iter()
            .zip(&outputs)
            .zip(&plan.tables)
            .map(|((schema, output), (_, chunks))| {
                Arc::new(TableRun::new(
                    schema.clone(),
                    output.clone(),
                    transforms.chain(&schema.name),
                    progress.table(
                        &schema.name,
                        chunks.iter().map(|c| c.estimated_rows).sum(),
                        0,
                    ),
                    chunks.len(),
                ))
            })
            .collect();
        let ctx = Arc::new(RunContext {
            pipeline: pipeline.clone(),
            run: plan.run,
            source,
            target,
            sink: dead_letter_sink(pipeline, &state, plan.run),
            state,
            stop,
            _plugins: transforms.plugins(),
        });
        Ok(ChunkWork {
            ctx,
            plan,
            tables,
            outputs,
            progress,
            _transforms: transforms,
        })
    }

    /// What this worker did in the run, per table.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Copies chunk `chunk` of the plan's table number `table`, from where
    /// the target's checkpoint says (nothing when it says done), retrying
    /// passing failures by the pipeline's policy; gives the rows read in
    /// this copy (approximate while other chunks of the table run in this
    /// worker at once). `Error::Deposed` means another worker writes the
    /// chunk now.
    pub async fn copy(&self, table: usize, chunk: u32) -> Result<u64> {
        let (table_run, planned) = self.chunk(table, chunk)?;
        let span = info_span!("chunk", table = %printable(&table_run.schema.name), chunk);
        async {
            let held = self.checkpoint(&table_run.schema.name, chunk).await?;
            if held.as_ref().is_some_and(|c| c.done) {
                tracing::debug!("the target holds the chunk done; skipped");
                return Ok(0);
            }
            let (position, rows) = held.map_or((Position::Start, 0), |c| (c.position, c.rows));
            let before = table_run.rows.load(Ordering::Relaxed);
            runner::enter(&self.ctx, &table_run, TablePhase::Copying)?;
            let copied =
                runner::copy_chunk_with_retries(&self.ctx, &table_run, planned, position, rows);
            if let Err(e) = copied.await {
                if e.kind() != dmp_contract::ErrorKind::Deposed {
                    runner::failed(&self.ctx, &table_run, &e);
                }
                return Err(e);
            }
            Ok(table_run
                .rows
                .load(Ordering::Relaxed)
                .saturating_sub(before))
        }
        .instrument(span)
        .await
    }

    /// Whether the target holds every chunk of the plan's table number
    /// `table` done.
    pub async fn table_copied(&self, table: usize) -> Result<bool> {
        let (schema, chunks) = self
            .plan
            .tables
            .get(table)
            .ok_or_else(|| self.no_table(table))?;
        let held: HashMap<u32, Checkpoint> = self
            .ctx
            .target
            .checkpoints()
            .await?
            .into_iter()
            .filter(|c| c.table == schema.name)
            .map(|c| (c.chunk, c))
            .collect();
        Ok(chunks
            .iter()
            .all(|c| held.get(&c.id).is_some_and(|c| c.done)))
    }

    /// Builds what the table gets after its rows (indexes; files
    /// published). Idempotent, so a finisher that died may be replaced.
    pub async fn finish_table(&self, table: usize) -> Result<()> {
        let table_run = self.tables.get(table).ok_or_else(|| self.no_table(table))?;
        runner::finish_table(&self.ctx, table_run).await
    }

    /// Builds what needs every table's rows (foreign keys, views), once
    /// every table is finished. Idempotent.
    pub async fn finish_pipeline(&self) -> Result<()> {
        runner::finish_pipeline(&*self.ctx.target, &self.outputs, &self.plan.objects).await
    }

    fn chunk(&self, table: usize, chunk: u32) -> Result<(Arc<TableRun>, Chunk)> {
        let table_run = self.tables.get(table).ok_or_else(|| self.no_table(table))?;
        let planned = self.plan.tables[table]
            .1
            .iter()
            .find(|c| c.id == chunk)
            .cloned()
            .ok_or_else(|| {
                Error::Data(format!(
                    "run {}: table {} has no chunk {chunk} in its plan",
                    self.plan.run,
                    printable(&table_run.schema.name)
                ))
            })?;
        Ok((table_run.clone(), planned))
    }

    async fn checkpoint(&self, table: &str, chunk: u32) -> Result<Option<Checkpoint>> {
        Ok(self
            .ctx
            .target
            .checkpoints()
            .await?
            .into_iter()
            .find(|c| c.table == table && c.chunk == chunk))
    }

    fn no_table(&self, table: usize) -> Error {
        Error::Data(format!(
            "run {}: the plan has {} tables, no table number {table}",
            self.plan.run,
            self.plan.tables.len()
        ))
    }
}

impl Drop for ChunkWork {
    fn drop(&mut self) {
        let source = self.ctx.source.clone();
        // Lets go of the snapshot's sessions; best effort, as on any stop.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { source.end_snapshot().await });
        }
    }
}
