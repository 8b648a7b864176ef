//! A pipeline as a library caller drives it (the CLI today, the service
//! next): opened through the build's connectors, run once or on its
//! schedule, watched through each run's progress, stopped through a handle.
//! Many sessions can run in one process; two runs of the same pipeline
//! exclude each other through the state store's lease.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::LegEnds;
use crate::error::{Error, ErrorKind, Result};
use crate::launch::{Launch, Launcher, Written};
use crate::{Progress, RunSummary, Shutdown};
use dmp_config::{Leg, Pipeline, RunMode, Schedule};
use dmp_contract::{Connectors, Source, Target};
use dmp_state::StateStore;

/// What a caller hears of a session's runs.
#[async_trait]
pub trait RunObserver: Send {
    /// A run starts and reports into `progress`.
    async fn started(&mut self, progress: &Arc<Progress>);
    /// The run ended; on a schedule, before the wait for the next start.
    async fn finished(&mut self, outcome: &Result<RunSummary>);
}

/// An observer that hears nothing.
pub struct Unobserved;

#[async_trait]
impl RunObserver for Unobserved {
    async fn started(&mut self, _: &Arc<Progress>) {}
    async fn finished(&mut self, _: &Result<RunSummary>) {}
}

/// How a session's runs went, once it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionEnd {
    pub runs: u64,
    /// Runs that failed for a passing reason (a server down); the schedule
    /// went on after each.
    pub failed: u64,
    /// Rows dead-lettered or skipped over all runs.
    pub rejected: u64,
}

/// The source and target of `pipeline`, opened through `connectors`. A
/// mode that streams changes needs a source that has a change stream.
pub fn open_pipeline(
    connectors: &dyn Connectors,
    pipeline: &Pipeline,
) -> Result<(Arc<dyn Source>, Arc<dyn Target>)> {
    if pipeline.mode.streams_changes()
        && connectors.has_change_stream(&pipeline.source) == Some(false)
    {
        return Err(Error::Config(format!(
            "{}: mode = \"{}\" needs a source with a change log ({})",
            pipeline.source,
            pipeline.mode.as_str(),
            connectors.change_stream_schemes()
        )));
    }
    let source = connectors.open_source(&pipeline.source, pipeline.source_options())?;
    let target = connectors.open_target(&pipeline.target, pipeline.target_options())?;
    Ok((source, target))
}

pub struct Session {
    pipeline: Arc<Pipeline>,
    connectors: Arc<dyn Connectors>,
    stop: Shutdown,
    /// Runs the pipeline elsewhere, when it runs it.
    launcher: Option<(Arc<dyn Launcher>, Written)>,
}

impl Session {
    pub fn new(pipeline: Pipeline, connectors: Arc<dyn Connectors>) -> Self {
        Session {
            pipeline: Arc::new(pipeline),
            connectors,
            stop: Shutdown::new(),
            launcher: None,
        }
    }

    /// Hands the session's runs to `launcher` (other processes read the
    /// pipeline as `written`) when it runs the pipeline's mode.
    #[must_use]
    pub fn launched_by(mut self, launcher: Arc<dyn Launcher>, written: Written) -> Self {
        self.launcher = Some((launcher, written));
        self
    }

    /// Whether the runs go to a launcher.
    pub fn is_launched(&self) -> bool {
        self.launcher
            .as_ref()
            .is_some_and(|(launcher, _)| launcher.runs(&self.pipeline))
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Fires to stop the session: the run in flight stops at its next
    /// batch boundary (a stream after the transaction being applied) with
    /// valid checkpoints, and a schedule starts no further run.
    pub fn stopper(&self) -> Shutdown {
        self.stop.clone()
    }

    /// One run in the pipeline's mode (a stream goes on until stopped),
    /// under the pipeline's lease, reporting into `progress`; or handed to
    /// the session's launcher and followed.
    pub async fn run_once(&self, restart: bool, progress: Arc<Progress>) -> Result<RunSummary> {
        if let Some((launcher, written)) = &self.launcher
            && launcher.runs(&self.pipeline)
        {
            let launch = Launch {
                pipeline: &self.pipeline,
                written,
                restart,
                progress,
                stop: self.stop.child(),
            };
            return launcher.launch(launch).await;
        }
        if self.pipeline.mode == RunMode::Bidirectional {
            return self.run_two_way(restart, progress).await;
        }
        let (source, target) = open_pipeline(&*self.connectors, &self.pipeline)?;
        let state = Arc::new(StateStore::for_pipeline(&self.pipeline)?);
        let _lease = state.lease(&self.pipeline.name)?;
        crate::run(
            &self.pipeline,
            restart,
            source,
            target,
            state,
            progress,
            self.stop.child(),
        )
        .await
    }

    /// A two-way sync: each side opened as the source of one leg and the
    /// target of the other.
    async fn run_two_way(&self, restart: bool, progress: Arc<Progress>) -> Result<RunSummary> {
        crate::resolver::load_resolver(&self.pipeline).await?;
        let open = |leg| -> Result<LegEnds> {
            let (source, target) = open_pipeline(&*self.connectors, &self.pipeline.leg(leg))?;
            Ok(LegEnds { source, target })
        };
        let (a_to_b, b_to_a) = (open(Leg::AToB)?, open(Leg::BToA)?);
        let state = Arc::new(StateStore::for_pipeline(&self.pipeline)?);
        let _lease = state.lease(&self.pipeline.name)?;
        crate::run_two_way(
            &self.pipeline,
            restart,
            a_to_b,
            b_to_a,
            state,
            progress,
            self.stop.child(),
        )
        .await
    }

    /// Runs the pipeline once, or on its schedule (`[run] every`) until
    /// stopped. Runs never overlap. On a schedule, a run that fails for a
    /// passing reason is logged and the schedule goes on; a configuration
    /// error or a change of the source that the settings do not carry ends
    /// it, as every later run would end the same way. Only `restart`'s
    /// first run starts anew.
    pub async fn run(&self, restart: bool, observer: &mut dyn RunObserver) -> Result<SessionEnd> {
        let Some(schedule) = self.pipeline.every.clone() else {
            let summary = self.run_once_observed(restart, observer).await?;
            return Ok(SessionEnd {
                runs: 1,
                failed: 0,
                rejected: summary.rejected,
            });
        };
        self.run_scheduled(&schedule, restart, observer).await
    }

    async fn run_scheduled(
        &self,
        schedule: &Schedule,
        mut restart: bool,
        observer: &mut dyn RunObserver,
    ) -> Result<SessionEnd> {
        let mut end = SessionEnd::default();
        loop {
            let started = chrono::Utc::now();
            match self.run_once_observed(restart, observer).await {
                Ok(summary) => {
                    tracing::info!(
                        run = summary.run,
                        rows = summary.rows,
                        rejected = summary.rejected,
                        secs = summary.elapsed.as_secs_f64(),
                        "scheduled run finished"
                    );
                    end.rejected += summary.rejected;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(end),
                Err(e) if matches!(e.kind(), ErrorKind::Config | ErrorKind::SourceChanged) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::error!(error = %e.report(), "scheduled run failed; trying again at the next start");
                    end.failed += 1;
                }
            }
            end.runs += 1;
            restart = false;
            let next = schedule.next_start(started, chrono::Utc::now());
            tracing::info!(next = %next.format("%Y-%m-%d %H:%M:%S UTC"), "next run");
            let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                () = self.stop.wait() => return Ok(end),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One run, as [`Session::run_once`], that `observer` hears.
    pub async fn run_once_observed(
        &self,
        restart: bool,
        observer: &mut dyn RunObserver,
    ) -> Result<RunSummary> {
        let progress = Progress::new();
        observer.started(&progress).await;
        let outcome = self.run_once(restart, progress).await;
        observer.finished(&outcome).await;
        outcome
    }

    /// Runs the session on a task of its own, owned by the returned
    /// handle, in the caller's tracing span.
    pub fn spawn(self, restart: bool, mut observer: Box<dyn RunObserver + Send>) -> SessionHandle {
        let stop = self.stopper();
        let task = tokio::spawn(
            async move { self.run(restart, &mut *observer).await }
                .instrument(tracing::Span::current()),
        );
        SessionHandle { stop, task }
    }
}

/// A session running on its own task. Dropping the handle stops the
/// session (at a batch boundary) rather than leaving it running unowned.
pub struct SessionHandle {
    stop: Shutdown,
    task: JoinHandle<Result<SessionEnd>>,
}

impl SessionHandle {
    /// Asks the session to stop; [`SessionHandle::join`] waits for it.
    pub fn stop(&self) {
        self.stop.trigger();
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the session to end and gives how it went.
    pub async fn join(mut self) -> Result<SessionEnd> {
        let task = &mut self.task;
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(Error::Task {
                context: "the session's task".into(),
                source: e,
            }),
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            self.stop.trigger();
        }
    }
}
