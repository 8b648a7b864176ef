//! One run as a worker works on it: the pipeline read from the run's
//! record, its source and target open, and the pieces of work done against
//! them — chunks (fenced at the target, so a chunk given to two workers is
//! written once), and the finish steps, each claimed in a progress record
//! so that it runs once, by whoever finished the last piece before it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::error::Result;
use crate::records::{
    RunRecord, Work, WorkRecord, WorkState, WorkerRecord, run_prefix, worker_lease,
};
use crate::worker::Member;
use dmp_engine::{ChunkWork, open_pipeline};
use dmp_nats::key_token;
use dmp_state::StateStore;

/// What doing a piece of work came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// Another worker is at it (a finish step): ask again later.
    Busy,
    /// Work of a run the cluster no longer works on.
    Stale,
    /// Given up after `max_deliver` deliveries.
    Failed,
}

pub(crate) struct RunWork {
    record: RunRecord,
    /// The record's plan (a full load's record has one).
    plan: dmp_engine::SharedPlan,
    work: ChunkWork,
    chunks_done: AtomicU64,
    /// `table:chunk` of the chunks being copied.
    copying: std::sync::Mutex<BTreeSet<String>>,
}

/// How a finish step's claim went.
enum Claim {
    Taken(u64),
    Done,
    Busy,
}

/// Adds why an attempt at `work` of the run of `run` failed to the work's
/// record; `true` when that was its last delivery and the work is failed
/// now. Needs no open run: a worker that cannot open it (a database it
/// cannot reach) still counts its attempts.
pub(crate) async fn record_error(
    member: &Member,
    run: &RunRecord,
    work: &Work,
    delivered: u64,
    reason: &str,
) -> Result<bool> {
    let key = work.record_key();
    let last = delivered >= u64::from(run.max_deliver);
    let mut record = match member.cluster.record::<WorkRecord>(&key).await? {
        Some((record, _)) => record,
        None => running(member, delivered),
    };
    record.errors.push(format!(
        "attempt {delivered} on worker {}: {reason}",
        member.name
    ));
    record.attempts = delivered;
    record.worker = member.name.clone();
    record.epoch = member.epoch;
    if last {
        record.state = WorkState::Failed;
        warn!(work = %work.describe(run.plan.as_ref()), attempts = delivered, "work failed for good");
    }
    member.cluster.put_record(&key, &record, None).await?;
    Ok(last)
}

/// A record of work this worker holds, at its `delivered`th delivery.
fn running(member: &Member, delivered: u64) -> WorkRecord {
    WorkRecord {
        state: WorkState::Running,
        worker: member.name.clone(),
        epoch: member.epoch,
        attempts: delivered,
        rows: 0,
        errors: Vec::new(),
    }
}

/// A run this worker has had nothing to do for this long is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// How often a worker rewrites its progress record.
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl RunWork {
    pub(crate) async fn open(member: &Member, record: RunRecord) -> Result<Self> {
        let pipeline = record.pipeline_file()?;
        let Some(plan) = record.plan.clone() else {
            return Err(crate::error::Error::refused(
                format!("run {}", record.key),
                "a change stream's run has no chunks",
            ));
        };
        let (source, target) = open_pipeline(&*member.connectors, &pipeline)?;
        let state = Arc::new(StateStore::for_pipeline(&pipeline)?);
        info!(
            pipeline = %dmp_model::printable(&pipeline.name),
            run = record.key,
            chunks = plan.chunks(),
            "joined a run"
        );
        let work = ChunkWork::open(
            &pipeline,
            plan.clone(),
            source,
            target,
            state,
            member.stop.clone(),
        )
        .await?;
        Ok(RunWork {
            record,
            plan,
            work,
            chunks_done: AtomicU64::new(0),
            copying: std::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// The run's key.
    pub(crate) fn id(&self) -> &str {
        &self.record.key
    }

    pub(crate) async fn execute(
        &self,
        member: &Member,
        work: &Work,
        delivered: u64,
    ) -> Result<Outcome> {
        let key = work.record_key();
        let held: Option<(WorkRecord, u64)> = member.cluster.record(&key).await?;
        if let Some((record, _)) = &held {
            match record.state {
                WorkState::Done => {
                    // Done before, its follow-up may not have been handed
                    // out (the worker stopped in between).
                    self.hand_out_next(member, work).await?;
                    return Ok(Outcome::Done);
                }
                WorkState::Failed => return Ok(Outcome::Failed),
                WorkState::Running => {}
            }
        }
        if delivered > u64::from(self.record.max_deliver) {
            let reason = format!(
                "delivered {delivered} times without an end: the workers that took it stopped (killed, or out of memory)"
            );
            record_error(member, &self.record, work, delivered, &reason).await?;
            return Ok(Outcome::Failed);
        }
        match work {
            Work::Chunk { table, chunk, .. } => {
                self.copy(member, &key, held, *table, *chunk, delivered)
                    .await
            }
            Work::FinishTable { table, .. } => match self.claim(member, &key, delivered).await? {
                Claim::Done => Ok(Outcome::Done),
                Claim::Busy => Ok(Outcome::Busy),
                Claim::Taken(revision) => {
                    self.work.finish_table(*table).await?;
                    self.settle(member, &key, revision, delivered, 0).await?;
                    self.hand_out_next(member, work).await?;
                    Ok(Outcome::Done)
                }
            },
            Work::FinishPipeline { .. } => match self.claim(member, &key, delivered).await? {
                Claim::Done => Ok(Outcome::Done),
                Claim::Busy => Ok(Outcome::Busy),
                Claim::Taken(revision) => {
                    self.work.finish_pipeline().await?;
                    self.settle(member, &key, revision, delivered, 0).await?;
                    info!("run finished");
                    Ok(Outcome::Done)
                }
            },
        }
    }

    async fn copy(
        &self,
        member: &Member,
        key: &str,
        held: Option<(WorkRecord, u64)>,
        table: usize,
        chunk: u32,
        delivered: u64,
    ) -> Result<Outcome> {
        let errors = held.map(|(r, _)| r.errors).unwrap_or_default();
        let running = WorkRecord {
            errors,
            ..running(member, delivered)
        };
        member.cluster.put_record(key, &running, None).await?;
        let label = format!("{table}:{chunk}");
        self.copying_now(&label, true);
        let copied = self.work.copy(table, chunk).await;
        self.copying_now(&label, false);
        let copied = copied?;
        let done = WorkRecord {
            state: WorkState::Done,
            rows: copied,
            ..running
        };
        member.cluster.put_record(key, &done, None).await?;
        self.chunks_done.fetch_add(1, Ordering::Relaxed);
        let work = Work::Chunk {
            pipeline: self.record.pipeline.clone(),
            run: self.id().to_string(),
            table,
            chunk,
        };
        self.hand_out_next(member, &work).await?;
        Ok(Outcome::Done)
    }

    /// Hands out what `work` done may make ready: whoever commits a
    /// table's last chunk hands out the table's finish step, whoever
    /// finishes the last table the pipeline's. Handed out twice (two last
    /// chunks at once, a redelivery), a step is stored once, or finds
    /// itself done.
    async fn hand_out_next(&self, member: &Member, work: &Work) -> Result<()> {
        match work {
            Work::Chunk { table, .. } => {
                if self.work.table_copied(*table).await? {
                    let finish = Work::FinishTable {
                        pipeline: self.record.pipeline.clone(),
                        run: self.id().to_string(),
                        table: *table,
                    };
                    member.cluster.publish(&finish, 0).await?;
                }
                Ok(())
            }
            Work::FinishTable { .. } => self.finish_pipeline_when_ready(member).await,
            Work::FinishPipeline { .. } => Ok(()),
        }
    }

    /// After a table's finish step: hands out the pipeline's once every
    /// table's is done.
    async fn finish_pipeline_when_ready(&self, member: &Member) -> Result<()> {
        let prefix = run_prefix(&self.record.pipeline, self.id());
        for table in 0..self.plan.tables.len() {
            let key = format!("{prefix}finish.{table}");
            match member.cluster.record::<WorkRecord>(&key).await? {
                Some((record, _)) if record.state == WorkState::Done => {}
                _ => return Ok(()),
            }
        }
        let finish = Work::FinishPipeline {
            pipeline: self.record.pipeline.clone(),
            run: self.id().to_string(),
        };
        member.cluster.publish(&finish, 0).await
    }

    /// Claims a finish step: free, or held by a worker that is gone.
    async fn claim(&self, member: &Member, key: &str, delivered: u64) -> Result<Claim> {
        loop {
            let held: Option<(WorkRecord, u64)> = member.cluster.record(key).await?;
            let mine = running(member, delivered);
            let revision = match held {
                None => 0,
                Some((record, _)) if record.state == WorkState::Done => return Ok(Claim::Done),
                Some((record, revision)) => {
                    let theirs = record.worker != member.name || record.epoch != member.epoch;
                    if theirs
                        && record.state == WorkState::Running
                        && self.alive(member, &record).await?
                    {
                        return Ok(Claim::Busy);
                    }
                    if theirs {
                        warn!(
                            worker = record.worker,
                            "taking over a finish step from a worker that is gone"
                        );
                    }
                    revision
                }
            };
            if member
                .cluster
                .put_record(key, &mine, Some(revision))
                .await?
            {
                // The revision the claim was written at.
                return match member.cluster.record::<WorkRecord>(key).await? {
                    Some((record, revision))
                        if record.worker == member.name && record.epoch == member.epoch =>
                    {
                        Ok(Claim::Taken(revision))
                    }
                    _ => Ok(Claim::Busy),
                };
            }
        }
    }

    async fn alive(&self, member: &Member, record: &WorkRecord) -> Result<bool> {
        let holder = member
            .cluster
            .leases()
            .holder(&worker_lease(&record.worker))
            .await?;
        Ok(holder.is_some_and(|(_, epoch)| epoch == record.epoch))
    }

    /// Marks a claimed finish step done, unless another took it over.
    async fn settle(
        &self,
        member: &Member,
        key: &str,
        revision: u64,
        delivered: u64,
        rows: u64,
    ) -> Result<()> {
        let done = WorkRecord {
            state: WorkState::Done,
            rows,
            ..running(member, delivered)
        };
        if !member
            .cluster
            .put_record(key, &done, Some(revision))
            .await?
        {
            warn!(
                key,
                "another worker took the step over meanwhile; it was done twice (it is idempotent)"
            );
            member.cluster.put_record(key, &done, None).await?;
        }
        Ok(())
    }

    fn copying_now(&self, label: &str, on: bool) {
        if let Ok(mut copying) = self.copying.lock() {
            if on {
                copying.insert(label.to_string());
            } else {
                copying.remove(label);
            }
        }
    }

    /// Writes this worker's record of the run.
    pub(crate) async fn report(&self, member: &Member) {
        let tables = self.work.progress().tables();
        let record = WorkerRecord {
            worker: member.name.clone(),
            rows: tables.iter().map(|t| t.done()).collect(),
            rejected: tables.iter().map(|t| t.rejected()).collect(),
            chunks_done: self.chunks_done.load(Ordering::Relaxed),
            copying: self
                .copying
                .lock()
                .map(|c| c.iter().cloned().collect())
                .unwrap_or_default(),
        };
        let key = format!(
            "{}worker.{}",
            run_prefix(&self.record.pipeline, self.id()),
            key_token(&member.name)
        );
        if let Err(e) = member.cluster.put_record(&key, &record, None).await {
            warn!(error = %e, "cannot write the worker's progress");
        }
    }

    /// Reports every second, while the worker runs, whatever changed; a
    /// run left idle for `IDLE_CLOSE` is closed (its source and target
    /// sessions let go), to be opened again should more of it come.
    pub(crate) fn start_reporting(self: Arc<Self>, member: Arc<Member>) {
        tokio::spawn(async move {
            let mut last = None;
            let mut idle_since = std::time::Instant::now();
            loop {
                tokio::select! {
                    () = member.stop.wait() => return,
                    () = tokio::time::sleep(REPORT_EVERY) => {}
                }
                let now: Vec<u64> = self
                    .work
                    .progress()
                    .tables()
                    .iter()
                    .map(|t| t.done())
                    .collect();
                let copying = self.copying.lock().map(|c| c.len()).unwrap_or_default();
                let seen = (now, copying, self.chunks_done.load(Ordering::Relaxed));
                if last.as_ref() != Some(&seen) {
                    self.report(&member).await;
                    last = Some(seen);
                    idle_since = std::time::Instant::now();
                } else if copying == 0 && idle_since.elapsed() >= IDLE_CLOSE {
                    member.forget_run(&self.record.pipeline, &self).await;
                    info!(run = self.id(), "run idle; closed until more of it comes");
                    return;
                }
            }
        });
    }
}
