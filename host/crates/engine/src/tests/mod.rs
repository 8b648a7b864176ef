//! The engine on in-memory connectors: what a run does at its edges
//! (chunks, checkpoints, resume, retries, stops, schedules), whatever
//! system is behind the contract.

mod memory;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use async_trait::async_trait;

use crate::error::{ErrorKind, Result};
use crate::{Progress, RunObserver, RunSummary, Session, Shutdown};
use dmp_config::{Pipeline, Schedule};
use dmp_contract::{Connectors, Endpoint, Source, SourceOptions, Target, TargetOptions};
use dmp_state::StateStore;
use memory::{MemorySource, MemoryTarget, Mishaps, numbered_table};

/// A pipeline between in-memory endpoints: chunks of 100 rows, batches of
/// 32, two at a time, its state store in `dir`.
fn pipeline(dir: &tempfile::TempDir) -> Pipeline {
    let mut pipeline =
        Pipeline::from_urls("memory://source", "memory://target", &[]).expect("pipeline");
    pipeline.state = dir.path().join("state.db");
    pipeline.chunk_rows = 100;
    pipeline.batch_rows = 32;
    pipeline.parallelism = 2;
    pipeline
}

fn source() -> Arc<MemorySource> {
    MemorySource::new(vec![
        numbered_table("orders", 1000),
        numbered_table("users", 250),
    ])
}

async fn run(
    pipeline: &Pipeline,
    restart: bool,
    source: &Arc<MemorySource>,
    target: &Arc<MemoryTarget>,
    stop: Shutdown,
) -> Result<RunSummary> {
    let state = Arc::new(StateStore::for_pipeline(pipeline)?);
    crate::run(
        pipeline,
        restart,
        source.clone(),
        target.clone(),
        state,
        Progress::new(),
        stop,
    )
    .await
}

/// The target holds exactly the source's rows, none written twice.
fn assert_copied(target: &MemoryTarget) {
    let held = target.held();
    for (name, rows) in [("orders", 1000), ("users", 250)] {
        let table = held.rows.get(name).expect("the table was prepared");
        let expected = numbered_table(name, rows).1;
        assert_eq!(
            table.values().cloned().collect::<Vec<_>>(),
            expected,
            "{name}"
        );
    }
    assert_eq!(held.rewritten, 0, "a committed batch was written again");
}

#[tokio::test]
async fn a_full_run_copies_every_chunk_and_finishes_each_table_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, target) = (source(), MemoryTarget::new(Mishaps::default()));
    let summary = run(&pipeline(&dir), false, &source, &target, Shutdown::new())
        .await
        .expect("the run");
    assert_eq!(summary.rows, 1250);
    assert!(!summary.resumed);
    assert_copied(&target);
    let held = target.held();
    // 10 + 3 chunks, each with its final checkpoint.
    assert_eq!(held.checkpoints.len(), 13);
    assert!(held.checkpoints.values().all(|c| c.done));
    let mut finished = held.finished_tables.clone();
    finished.sort();
    assert_eq!(finished, ["orders", "users"]);
}

#[tokio::test]
async fn a_stopped_run_stops_at_a_batch_boundary_and_the_next_resumes_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = pipeline(&dir);
    let stop = Shutdown::new();
    let source = source();
    let target = MemoryTarget::new(Mishaps {
        stop_after: Some((7, stop.clone())),
        ..Mishaps::default()
    });
    let stopped = run(&pipeline, false, &source, &target, stop).await;
    assert_eq!(
        stopped.expect_err("the run stops").kind(),
        ErrorKind::Interrupted
    );
    {
        // What is there is what the checkpoints say: whole batches only.
        let held = target.held();
        let rows: usize = held.rows.values().map(|t| t.len()).sum();
        let checkpointed: u64 = held.checkpoints.values().map(|c| c.rows).sum();
        assert_eq!(rows as u64, checkpointed);
        assert!(rows < 1250, "the stop came before the end");
    }
    let resumed = run(&pipeline, false, &source, &target, Shutdown::new())
        .await
        .expect("the resumed run");
    assert!(resumed.resumed);
    assert_copied(&target);
}

#[tokio::test]
async fn a_transient_write_failure_is_retried_from_the_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pipeline = pipeline(&dir);
    pipeline.retry.base = std::time::Duration::from_millis(1);
    let source = source();
    let target = MemoryTarget::new(Mishaps {
        failing_writes: AtomicU32::new(2),
        ..Mishaps::default()
    });
    let summary = run(&pipeline, false, &source, &target, Shutdown::new())
        .await
        .expect("the run gets through");
    assert_eq!(summary.rows, 1250);
    assert_copied(&target);
}

/// The in-memory endpoints as a build's connectors.
struct MemoryConnectors {
    source: Arc<MemorySource>,
    target: Arc<MemoryTarget>,
}

impl Connectors for MemoryConnectors {
    fn open_source(&self, _: &Endpoint, _: SourceOptions) -> Result<Arc<dyn Source>> {
        Ok(self.source.clone())
    }

    fn open_target(&self, _: &Endpoint, _: TargetOptions) -> Result<Arc<dyn Target>> {
        Ok(self.target.clone())
    }

    fn has_change_stream(&self, _: &Endpoint) -> Option<bool> {
        Some(false)
    }

    fn change_stream_schemes(&self) -> String {
        String::new()
    }

    fn local_files(&self, _: &Endpoint) -> Result<Vec<std::path::PathBuf>> {
        Ok(Vec::new())
    }
}

/// A session that runs the pipeline every hour, and the target it fills.
fn hourly_session(dir: &tempfile::TempDir) -> (Session, Arc<MemoryTarget>) {
    let mut pipeline = pipeline(dir);
    pipeline.every = Some(Schedule::parse("1h").expect("schedule"));
    let target = MemoryTarget::new(Mishaps::default());
    let connectors = Arc::new(MemoryConnectors {
        source: source(),
        target: target.clone(),
    });
    (Session::new(pipeline, connectors), target)
}

/// Counts runs and stops the session after `stop_at` of them.
struct Counting {
    finished: u32,
    stop_at: u32,
    stop: Shutdown,
}

#[async_trait]
impl RunObserver for Counting {
    async fn started(&mut self, _: &Arc<Progress>) {}

    async fn finished(&mut self, outcome: &Result<RunSummary>) {
        assert!(outcome.is_ok(), "{outcome:?}");
        self.finished += 1;
        if self.finished == self.stop_at {
            self.stop.trigger();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_session_runs_at_each_start_until_stopped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (session, target) = hourly_session(&dir);
    let mut observer = Counting {
        finished: 0,
        stop_at: 3,
        stop: session.stopper(),
    };
    // Paused time: the hour between starts passes as soon as the session
    // waits.
    let end = session
        .run(false, &mut observer)
        .await
        .expect("the schedule");
    assert_eq!((end.runs, end.failed, end.rejected), (3, 0, 0));
    assert_copied(&target);
}

/// Says when the first run ended.
struct FirstRun(Option<tokio::sync::oneshot::Sender<()>>);

#[async_trait]
impl RunObserver for FirstRun {
    async fn started(&mut self, _: &Arc<Progress>) {}

    async fn finished(&mut self, _: &Result<RunSummary>) {
        if let Some(ended) = self.0.take() {
            let _ = ended.send(());
        }
    }
}

#[tokio::test]
async fn a_session_handle_stops_its_session_and_owns_its_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (session, target) = hourly_session(&dir);
    let (ended, first_run) = tokio::sync::oneshot::channel();
    let handle = session.spawn(false, Box::new(FirstRun(Some(ended))));
    first_run.await.expect("the first run ends");
    // The session now waits an hour for its next start; the handle ends it.
    assert!(!handle.is_finished());
    handle.stop();
    let end = handle.join().await.expect("the session ends");
    assert_eq!(end.runs, 1);
    assert_copied(&target);
}
