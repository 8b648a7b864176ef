//! `dmp run --cluster`: plans a full run once, prepares the target, puts
//! the run's record and its chunks on the cluster, then watches the
//! workers' progress records until the run is finished or nothing more
//! can be done (failed chunks). The submitter keeps the source's shared
//! snapshot open meanwhile. Stopping it stops the watching only: the
//! workers go on, and submitting again watches the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::cluster::{Cluster, SETTLE_LIMIT};
use crate::error::retrying;
use crate::error::{Error, Result};
use crate::records::{RunRecord, Work, WorkRecord, WorkState, new_run_key, run_prefix};
use crate::run_view::{RunView, committed};
use dmp_config::{Pipeline, Scope};
use dmp_contract::{Source, Target};
use dmp_engine::{Progress, RunSummary, SharedPlan, Shutdown, TableSummary, plan_shared};
use dmp_state::{RunStatus, StateStore};

/// Deliveries a chunk gets by default before it is a failed chunk.
pub const DEFAULT_MAX_DELIVER: u32 = 5;

/// How often the submitter asks whether the run is finished: one read of
/// one key, cheap; often, as the run's end waits for it.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Rounds of the watch between two reads of the whole progress (2 s).
const SCAN_ROUNDS: u64 = 40;

/// How long the progress may stay unreadable before the watch gives up.
const UNREAD_LIMIT: Duration = Duration::from_secs(120);

/// What `dmp run --cluster` hands over.
pub(crate) struct Submission<'a> {
    pub pipeline: &'a Pipeline,
    /// The pipeline file's text and path, for the workers to read.
    pub text: &'a str,
    pub path: &'a std::path::Path,
    pub restart: bool,
    pub max_deliver: u32,
}

impl Submission<'_> {
    /// The run's record under `key`, with `plan` for a full load.
    pub(crate) fn record(&self, key: String, plan: Option<SharedPlan>) -> RunRecord {
        RunRecord {
            pipeline: self.pipeline.name.clone(),
            key,
            text: self.text.to_string(),
            path: self.path.to_path_buf(),
            scope: scope_name(self.pipeline.scope).to_string(),
            plan,
            max_deliver: self.max_deliver.max(1),
        }
    }
}

/// Submits the run and watches it to its end; the summary counts what the
/// target's checkpoints hold.
pub(crate) async fn submit(
    cluster: &Cluster,
    submission: Submission<'_>,
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    stop: Shutdown,
) -> Result<RunSummary> {
    let started = Instant::now();
    let pipeline = submission.pipeline;
    crate::launcher::cluster_runs(pipeline)?;
    if pipeline.mode.streams_changes() {
        return Err(Error::Engine(dmp_contract::Error::Config(format!(
            "pipeline {}: a change stream goes to the cluster through submit_stream",
            dmp_model::printable(&pipeline.name)
        ))));
    }
    let plan = plan_shared(
        pipeline,
        submission.restart,
        &*source,
        &*target,
        &state,
        &stop,
    )
    .await?;
    // A resumed run keeps its key, and with it its progress records.
    let key = match cluster.run_record(&pipeline.name).await? {
        Some(held) if plan.resumed && held.plan.as_ref().is_some_and(|p| p.run == plan.run) => {
            held.key
        }
        _ => new_run_key(plan.run),
    };
    let record = submission.record(key, Some(plan.clone()));
    cluster.put_run_record(&record).await?;
    let tables: Vec<_> = plan
        .tables
        .iter()
        .map(|(t, chunks)| {
            progress.table(&t.name, chunks.iter().map(|c| c.estimated_rows).sum(), 0)
        })
        .collect();
    let handed = hand_out(cluster, &record, &plan, &*target).await?;
    info!(
        run = plan.run,
        chunks = plan.chunks(),
        handed_out = handed,
        "run submitted to the cluster"
    );
    let prefix = run_prefix(&pipeline.name, &record.key);
    let watched = watch(cluster, &prefix, &plan, &*target, &tables, &stop).await;
    source.end_snapshot().await;
    let (rows, _) = committed(&*target, &plan).await?;
    let rejected: u64 = tables.iter().map(|t| t.rejected()).sum();
    let total_rows: u64 = rows.iter().sum();
    let outcome = match watched {
        Ok(()) => {
            state.finish_run(plan.run, RunStatus::Done, total_rows, rejected, None)?;
            Ok(())
        }
        Err(e) => {
            let engine: dmp_contract::Error = e.into();
            let status = if engine.kind() == dmp_contract::ErrorKind::Interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            state.finish_run(
                plan.run,
                status,
                total_rows,
                rejected,
                Some(&engine.report()),
            )?;
            Err(Error::Engine(engine))
        }
    };
    outcome?;
    Ok(RunSummary {
        pipeline: pipeline.name.clone(),
        run: plan.run,
        resumed: plan.resumed,
        tables: plan
            .tables
            .iter()
            .zip(&tables)
            .zip(&rows)
            .map(|(((t, _), shown), rows)| TableSummary {
                name: t.name.clone(),
                phase: shown.phase(),
                rows: *rows,
                written: rows.saturating_sub(shown.rejected()),
            })
            .collect(),
        rows: total_rows,
        rejected,
        elapsed: started.elapsed(),
        stream: None,
        back: None,
    })
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::SchemaAndData => "schema_and_data",
        Scope::SchemaOnly => "schema_only",
        Scope::DataOnly => "data_only",
    }
}

/// Puts on the queue what the run still needs: each chunk the target does
/// not hold done (a failed one anew), the finish step of each table whose
/// chunks are all done, and the pipeline's when every table is finished.
/// Returns how many pieces were handed out.
async fn hand_out(
    cluster: &Cluster,
    record: &RunRecord,
    plan: &SharedPlan,
    target: &dyn Target,
) -> Result<usize> {
    let (_, done) = committed(target, plan).await?;
    let prefix = run_prefix(&record.pipeline, &record.key);
    let mut handing = Handing {
        cluster,
        // Through a JetStream cluster still electing the bucket's leader.
        view: retrying("reading the run's progress", SETTLE_LIMIT, || {
            RunView::read(cluster, &prefix)
        })
        .await?,
        // A retry of failed work needs an id of its own, or the queue
        // would take it for the first attempt within its dedupe window.
        retry: u32::try_from(chrono::Utc::now().timestamp() % i64::from(u32::MAX)).unwrap_or(1),
        handed: 0,
    };
    let mut finished_tables = 0;
    for (table, (_, chunks)) in plan.tables.iter().enumerate() {
        let mut left = 0;
        for chunk in chunks.iter().filter(|c| !done.contains(&(table, c.id))) {
            left += 1;
            let work = Work::Chunk {
                pipeline: record.pipeline.clone(),
                run: record.key.clone(),
                table,
                chunk: chunk.id,
            };
            handing.hand(&work).await?;
        }
        if left > 0 {
            continue;
        }
        let finish = Work::FinishTable {
            pipeline: record.pipeline.clone(),
            run: record.key.clone(),
            table,
        };
        if handing.is_done(&finish) {
            finished_tables += 1;
        } else {
            handing.hand(&finish).await?;
        }
    }
    let finish = Work::FinishPipeline {
        pipeline: record.pipeline.clone(),
        run: record.key.clone(),
    };
    if finished_tables == plan.tables.len() && !handing.is_done(&finish) {
        handing.hand(&finish).await?;
    }
    Ok(handing.handed)
}

/// Work being handed out, against the run's records as they were.
struct Handing<'a> {
    cluster: &'a Cluster,
    view: RunView,
    retry: u32,
    handed: usize,
}

impl Handing<'_> {
    fn is_done(&self, work: &Work) -> bool {
        self.view.state(&work.record_kind()) == Some(WorkState::Done)
    }

    /// Publishes `work`. A failed record of it goes first (gone, not
    /// reset: a record naming a live worker as holder would keep a finish
    /// step from being claimed), and the retry gets an id of its own.
    async fn hand(&mut self, work: &Work) -> Result<()> {
        let retry = if self.view.state(&work.record_kind()) == Some(WorkState::Failed) {
            self.cluster.forget_record(&work.record_key()).await?;
            self.retry
        } else {
            0
        };
        self.cluster.publish(work, retry).await?;
        self.handed += 1;
        Ok(())
    }
}

/// Follows the run's progress records into `tables` until the pipeline's
/// finish step is done (`Ok`), or every piece of work is done or failed
/// with some failed (`Err` naming them), or `stop` fires.
async fn watch(
    cluster: &Cluster,
    prefix: &str,
    plan: &SharedPlan,
    target: &dyn Target,
    tables: &[Arc<dmp_engine::TableProgress>],
    stop: &Shutdown,
) -> Result<()> {
    let (base_rows, _) = committed(target, plan).await?;
    let mut unread_since: Option<Instant> = None;
    let finish = format!("{prefix}finish.all");
    for round in 0u64.. {
        // Each round asks whether the run is finished (one read); every
        // SCAN_ROUNDS rounds, and at the end, the whole view is read for
        // the progress and the failures: a pass over the bucket, which
        // holds every run's records for a week.
        let finished = matches!(
            cluster.record::<WorkRecord>(&finish).await,
            Ok(Some((record, _))) if record.state == WorkState::Done
        );
        if finished || round % SCAN_ROUNDS == 0 {
            let view = match RunView::read(cluster, prefix).await {
                Ok(view) => {
                    unread_since = None;
                    view
                }
                // A JetStream cluster electing a leader, a server
                // restarting: the workers go on meanwhile.
                Err(e) if unread_since.is_none_or(|since| since.elapsed() < UNREAD_LIMIT) => {
                    tracing::warn!(error = %e, "cannot read the run's progress; trying again");
                    unread_since.get_or_insert_with(Instant::now);
                    tokio::time::sleep(WATCH_EVERY).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (index, shown) in tables.iter().enumerate() {
                let rows = base_rows[index] + view.rows(index);
                shown.mirror(rows, view.rejected(index), view.phase(index, plan));
            }
            if view.is_done() {
                return Ok(());
            }
            if let Some(failure) = view.failure(plan, target).await? {
                return Err(Error::Engine(dmp_contract::Error::Data(failure)));
            }
        }
        tokio::select! {
            () = stop.wait() => {
                info!(run = plan.run, "stopped watching; the workers go on with the run");
                return Err(Error::Engine(dmp_contract::Error::Interrupted));
            }
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
    Ok(())
}
