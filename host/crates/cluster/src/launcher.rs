//! The cluster as a session's launcher: `dmp run --cluster` and
//! `dmp serve --cluster` hand each run of a full load or a change stream
//! to the cluster's workers through it, follow it, end it, and say who
//! does what of it.

use std::sync::Arc;

use async_trait::async_trait;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::records::{
    RunRecord, StreamRecord, WorkRecord, WorkState, run_prefix, stream_record_key,
};
use crate::run_view::{RunView, describe_table};
use crate::submit::{Submission, submit};
use crate::submit_stream::{stop_run, submit_stream};
use crate::written::written_secrets;
use dmp_config::{Pipeline, RunMode};
use dmp_contract::Connectors;
use dmp_engine::{Launch, Launcher, PlacedStream, PlacedWork, PlacedWorker, Placement, RunSummary};
use dmp_state::StateStore;

/// Hands runs to a cluster's workers.
pub struct ClusterLauncher {
    cluster: Arc<Cluster>,
    connectors: Arc<dyn Connectors>,
    /// Deliveries a chunk gets before it is a failed chunk.
    max_deliver: u32,
}

impl ClusterLauncher {
    pub fn new(cluster: Arc<Cluster>, connectors: Arc<dyn Connectors>, max_deliver: u32) -> Self {
        ClusterLauncher {
            cluster,
            connectors,
            max_deliver,
        }
    }

    async fn submit(&self, launch: Launch<'_>) -> Result<RunSummary> {
        let pipeline = launch.pipeline;
        let secrets = written_secrets(&launch.written.text);
        if !secrets.is_empty() {
            let file = launch
                .written
                .path
                .file_name()
                .map_or_else(String::new, |f| format!("{} ", f.to_string_lossy()));
            return Err(Error::Engine(dmp_contract::Error::Config(format!(
                "{file}{}: a secret written out; a run on a cluster travels to its workers \
                 in clear, so take it from a `${{VAR}}` or `${{file:PATH}}` reference, \
                 which each worker resolves from its own environment",
                secrets.join(", ")
            ))));
        }
        let submission = Submission {
            pipeline,
            text: &launch.written.text,
            path: &launch.written.path,
            restart: launch.restart,
            max_deliver: self.max_deliver,
        };
        if pipeline.mode.streams_changes() {
            return submit_stream(&self.cluster, submission, launch.progress, launch.stop).await;
        }
        let (source, target) = dmp_engine::open_pipeline(&*self.connectors, pipeline)?;
        let state = Arc::new(StateStore::for_pipeline(pipeline)?);
        let _lease = state.lease(&pipeline.name)?;
        submit(
            &self.cluster,
            submission,
            source,
            target,
            state,
            launch.progress,
            launch.stop,
        )
        .await
    }

    async fn read_placement(&self, pipeline: &str) -> Result<Option<Placement>> {
        let Some(record) = self.cluster.run_record(pipeline).await? else {
            return Ok(None);
        };
        let mut placement = Placement {
            run: record.key.clone(),
            ..Placement::default()
        };
        if record.plan.is_none() {
            let held = self
                .cluster
                .record::<StreamRecord>(&stream_record_key(pipeline))
                .await?;
            placement.stream = held.map(|(s, _)| PlacedStream {
                worker: s.worker,
                epoch: s.epoch,
                changes: s.changes,
                lag_ms: s.lag_ms,
            });
            return Ok(Some(placement));
        }
        let view = RunView::read(&self.cluster, &run_prefix(pipeline, &record.key)).await?;
        placement.workers = placed_workers(&view, &record);
        placement.work = placed_work(&view, &record);
        Ok(Some(placement))
    }
}

/// Each worker's share, busiest first.
fn placed_workers(view: &RunView, record: &RunRecord) -> Vec<PlacedWorker> {
    let mut workers: Vec<PlacedWorker> = view
        .workers
        .iter()
        .map(|w| PlacedWorker {
            name: w.worker.clone(),
            rows: w.rows.iter().sum(),
            chunks_done: w.chunks_done,
            copying: w
                .copying
                .iter()
                .map(|c| copying_in_words(c, record))
                .collect(),
        })
        .collect();
    workers.sort_by(|a, b| b.chunks_done.cmp(&a.chunks_done).then(a.name.cmp(&b.name)));
    workers
}

/// `T:C` of a worker record as `table C`.
fn copying_in_words(copying: &str, record: &RunRecord) -> String {
    match copying.split_once(':') {
        Some((table, chunk)) => format!("{} {chunk}", describe_table(table, record.plan.as_ref())),
        None => copying.to_string(),
    }
}

/// The work taken so far, in plan order: chunks, then finish steps.
fn placed_work(view: &RunView, record: &RunRecord) -> Vec<PlacedWork> {
    let Some(plan) = &record.plan else {
        return Vec::new();
    };
    let placed = |record: &WorkRecord, table: Option<String>, chunk: Option<u32>| PlacedWork {
        table,
        chunk,
        state: match record.state {
            WorkState::Running => "running",
            WorkState::Done => "done",
            WorkState::Failed => "failed",
        }
        .to_string(),
        worker: record.worker.clone(),
        attempts: record.attempts,
        rows: record.rows,
        error: record.errors.last().cloned(),
    };
    let mut work = Vec::new();
    for (index, (table, chunks)) in plan.tables.iter().enumerate() {
        for chunk in chunks {
            if let Some(held) = view.work.get(&format!("chunk.{index}.{}", chunk.id)) {
                work.push(placed(held, Some(table.name.clone()), Some(chunk.id)));
            }
        }
    }
    for (index, (table, _)) in plan.tables.iter().enumerate() {
        if let Some(held) = view.work.get(&format!("finish.{index}")) {
            work.push(placed(held, Some(table.name.clone()), None));
        }
    }
    if let Some(held) = view.work.get("finish.all") {
        work.push(placed(held, None, None));
    }
    work
}

/// Refuses a pipeline whose mode a cluster does not run: it runs full
/// loads and change streams; an incremental run's cursor, and a two-way
/// sync's pair of streams, are one machine's.
pub fn cluster_runs(pipeline: &Pipeline) -> dmp_contract::Result<()> {
    if matches!(
        pipeline.mode,
        RunMode::Full | RunMode::Cdc | RunMode::FullCdc
    ) {
        return Ok(());
    }
    Err(dmp_contract::Error::Config(format!(
        "pipeline {}: mode = \"{}\" runs on one machine; a cluster runs full loads and change streams",
        dmp_model::printable(&pipeline.name),
        pipeline.mode.as_str()
    )))
}

#[async_trait]
impl Launcher for ClusterLauncher {
    fn runs(&self, pipeline: &Pipeline) -> bool {
        cluster_runs(pipeline).is_ok()
    }

    async fn launch(&self, launch: Launch<'_>) -> dmp_contract::Result<RunSummary> {
        Ok(self.submit(launch).await?)
    }

    async fn halt(&self, pipeline: &str) -> dmp_contract::Result<bool> {
        Ok(stop_run(&self.cluster, pipeline).await?)
    }

    async fn placement(&self, pipeline: &str) -> dmp_contract::Result<Option<Placement>> {
        Ok(self.read_placement(pipeline).await?)
    }
}
