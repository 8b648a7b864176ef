//! `dmp worker`: pulls work from the cluster's queue, `slots` pieces at a
//! time, and does it. A worker holds a lease under its name while it
//! lives, so that the others can tell a dead holder of a finish step from
//! a slow one. A piece of work is acknowledged only after the target
//! committed it; a stop hands the pieces in flight back at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::cluster::{Cluster, SETTLE_LIMIT};
use crate::error::{Error, Result, retrying};
use crate::lease::{Lease, keep};
use crate::records::{Work, worker_lease};
use crate::run_work::{Outcome, RunWork};
use dmp_contract::{Connectors, ErrorKind};
use dmp_engine::Shutdown;

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique in the cluster; shown in progress records.
    pub name: String,
    /// Pieces of work done at once.
    pub slots: usize,
}

/// How long a stopping worker waits for its streams to stop.
const STREAM_STOP_WAIT: Duration = Duration::from_secs(30);
/// A nak'ed piece of work comes back after this long.
const RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long one pull waits for work.
const PULL_WAIT: Duration = Duration::from_secs(2);

/// What a worker shares with its tasks.
pub(crate) struct Member {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) name: String,
    /// The epoch of this worker's lease.
    pub(crate) epoch: u64,
    /// The ack wait of the cluster's consumer: a piece of work in hand is
    /// said to go on at a third of it.
    ack_wait: Duration,
    pub(crate) connectors: Arc<dyn Connectors>,
    pub(crate) stop: Shutdown,
    /// The runs this worker works on, by pipeline.
    runs: Mutex<HashMap<String, Arc<RunWork>>>,
    /// The pipelines whose change stream this worker holds.
    streams: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Member {
    pub(crate) fn holds_stream(&self, pipeline: &str) -> bool {
        self.streams.lock().is_ok_and(|s| s.contains(pipeline))
    }

    pub(crate) fn set_holding(&self, pipeline: &str, holding: bool) {
        if let Ok(mut streams) = self.streams.lock() {
            if holding {
                streams.insert(pipeline.to_string());
            } else {
                streams.remove(pipeline);
            }
        }
    }

    /// Drops `run` from the runs open here, unless another took its place.
    pub(crate) async fn forget_run(&self, pipeline: &str, run: &Arc<RunWork>) {
        let mut runs = self.runs.lock().await;
        if runs
            .get(pipeline)
            .is_some_and(|held| Arc::ptr_eq(held, run))
        {
            runs.remove(pipeline);
        }
    }

    /// Waits (a while) for the streams this worker holds to stop.
    async fn streams_stopped(&self) {
        let waited = std::time::Instant::now();
        while self.streams.lock().is_ok_and(|s| !s.is_empty())
            && waited.elapsed() < STREAM_STOP_WAIT
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Works until `stop` fires (or the worker's lease is lost), then hands
/// back what is in flight.
pub async fn work(
    cluster: Arc<Cluster>,
    options: WorkerOptions,
    connectors: Arc<dyn Connectors>,
    stop: Shutdown,
) -> Result<()> {
    let lease = take_name(&cluster, &options.name, &stop).await?;
    info!(
        worker = options.name,
        slots = options.slots,
        epoch = lease.epoch,
        "worker joined the cluster"
    );
    let consumer = cluster.consumer().await?;
    let member = Arc::new(Member {
        cluster: cluster.clone(),
        name: options.name.clone(),
        epoch: lease.epoch,
        ack_wait: consumer.cached_info().config.ack_wait,
        connectors,
        stop: stop.child(),
        runs: Mutex::new(HashMap::new()),
        streams: std::sync::Mutex::new(std::collections::HashSet::new()),
    });
    // Losing the name (a pause past the lease time) stops the worker:
    // another may hold its claims by now.
    let renewing = {
        let (cluster, lease, stop) = (cluster.clone(), lease.clone(), member.stop.clone());
        tokio::spawn(async move { keep(cluster.leases(), lease, &stop, || async { true }).await })
    };
    let streams = tokio::spawn(crate::stream_holder::take_streams(member.clone()));
    let pulled = pull(&member, &consumer, options.slots.max(1)).await;
    member.stop.trigger();
    streams.abort();
    member.streams_stopped().await;
    let lease = renewing.await.unwrap_or(lease);
    for run in member.runs.lock().await.values() {
        run.report(&member).await;
    }
    if let Err(e) = cluster.leases().release(&lease).await {
        warn!(error = %e, "cannot let go of the worker's lease; it expires");
    }
    info!(worker = options.name, "worker left the cluster");
    pulled
}

/// Takes the lease of the worker's name; a previous worker of that name
/// that died holds it until it expires.
async fn take_name(cluster: &Cluster, name: &str, stop: &Shutdown) -> Result<Lease> {
    let key = worker_lease(name);
    let waited = std::time::Instant::now();
    let mut said = false;
    loop {
        let acquire = || cluster.leases().acquire(&key, name);
        if let Some(lease) = retrying("taking the worker's name", SETTLE_LIMIT, acquire).await? {
            return Ok(lease);
        }
        if waited.elapsed() > cluster.options().lease_time * 2 {
            return Err(Error::Engine(dmp_contract::Error::Config(format!(
                "a worker named {name} is in the cluster already; give this one another --name"
            ))));
        }
        if !said {
            info!(
                worker = name,
                "the name is held: waiting for a previous worker of that name to expire"
            );
            said = true;
        }
        tokio::select! {
            () = stop.wait() => return Err(Error::Engine(dmp_contract::Error::Interrupted)),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Pulls pieces of work while slots are free, each done on a task of its
/// own; on a stop, waits for those in flight.
async fn pull(
    member: &Arc<Member>,
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    slots: usize,
) -> Result<()> {
    let free = Arc::new(Semaphore::new(slots));
    let mut tasks = JoinSet::new();
    let mut outcome = Ok(());
    while !member.stop.is_triggered() {
        // At least one slot free before asking, so that nothing waits in
        // this worker that another could do.
        let permit = tokio::select! {
            () = member.stop.wait() => break,
            permit = free.clone().acquire_owned() => permit.map_err(|_| Error::Engine(dmp_contract::Error::Interrupted))?,
        };
        let wanted = 1 + free.available_permits();
        drop(permit);
        let fetched = consumer
            .fetch()
            .max_messages(wanted)
            .expires(PULL_WAIT)
            .messages()
            .await;
        let mut messages = match fetched {
            Ok(messages) => messages,
            Err(e) => {
                warn!(error = %e, "cannot pull work; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    warn!(error = %e, "pulling work failed; trying again");
                    break;
                }
            };
            let Ok(permit) = free.clone().acquire_owned().await else {
                break;
            };
            let member = member.clone();
            tasks.spawn(async move {
                handle(&member, message).await;
                drop(permit);
            });
        }
        while let Some(joined) = tasks.try_join_next() {
            if let Err(e) = joined {
                outcome = Err(Error::Engine(dmp_contract::Error::Task {
                    context: "a work task".into(),
                    source: e,
                }));
                member.stop.trigger();
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    outcome
}

/// Does one piece of work and answers the queue: acknowledged when done,
/// handed back when it could not be done now, ended when it failed for
/// good, left alone when another worker took it over.
async fn handle(member: &Arc<Member>, message: async_nats::jetstream::Message) {
    let work: Work = match serde_json::from_slice(&message.payload) {
        Ok(work) => work,
        Err(e) => {
            error!(subject = %message.subject, error = %e, "a message on the work queue is not DMP work; dropped");
            answer(&message, AckKind::Term).await;
            return;
        }
    };
    let delivered = message
        .info()
        .map_or(1, |info| u64::try_from(info.delivered).unwrap_or(1));
    let span = info_span!("work", pipeline = %dmp_model::printable(work.pipeline()), run = work.run(), delivered);
    async {
        let heartbeat = in_progress(&message, member.ack_wait);
        let outcome = execute(member, &work, delivered).await;
        heartbeat.abort();
        match outcome {
            Ok(Outcome::Done) => {
                if let Err(e) = message.double_ack().await {
                    // Redelivered, the work finds the target's checkpoint
                    // done and is acknowledged then.
                    warn!(error = %e, "the acknowledgement was not confirmed");
                }
            }
            Ok(Outcome::Busy) => answer(&message, AckKind::Nak(Some(RETRY_DELAY))).await,
            Ok(Outcome::Stale | Outcome::Failed) => answer(&message, AckKind::Term).await,
            Err(e) => settle_error(member, &message, &work, delivered, e).await,
        }
    }
    .instrument(span)
    .await;
}

async fn settle_error(
    member: &Arc<Member>,
    message: &async_nats::jetstream::Message,
    work: &Work,
    delivered: u64,
    error: Error,
) {
    let engine: dmp_contract::Error = error.into();
    match engine.kind() {
        ErrorKind::Deposed => {
            // The other worker answers for it now.
            info!(error = %engine.report(), "work taken over by another worker");
        }
        ErrorKind::Interrupted => answer(message, AckKind::Nak(None)).await,
        _ => {
            let reason = dmp_state::without_row_values(&engine.report());
            warn!(work = %work.describe(None), error = %reason, "work failed");
            // The run's record says how many deliveries the work gets (the
            // run may not even open here: a database this worker cannot
            // reach); work of a run no longer there is ended.
            let failed = match member.cluster.run_record(work.pipeline()).await {
                Ok(Some(record)) if record.key == work.run() => {
                    crate::run_work::record_error(member, &record, work, delivered, &reason).await
                }
                Ok(_) => Ok(true),
                Err(e) => Err(e),
            };
            match failed {
                Ok(true) => answer(message, AckKind::Term).await,
                Ok(false) => answer(message, AckKind::Nak(Some(RETRY_DELAY))).await,
                Err(e) => {
                    warn!(error = %e, "cannot record the failure; the work comes back");
                    answer(message, AckKind::Nak(Some(RETRY_DELAY))).await;
                }
            }
        }
    }
}

async fn execute(member: &Arc<Member>, work: &Work, delivered: u64) -> Result<Outcome> {
    let Some(run) = run_for(member, work).await? else {
        info!(work = %work.describe(None), "work of a run the cluster no longer works on; dropped");
        return Ok(Outcome::Stale);
    };
    run.execute(member, work, delivered).await
}

/// The run `work` belongs to, opened on first use; `None` when the
/// cluster's record of the pipeline is of another run (the work is stale).
async fn run_for(member: &Arc<Member>, work: &Work) -> Result<Option<Arc<RunWork>>> {
    let mut runs = member.runs.lock().await;
    if let Some(run) = runs.get(work.pipeline())
        && run.id() == work.run()
    {
        return Ok(Some(run.clone()));
    }
    let Some(record) = member.cluster.run_record(work.pipeline()).await? else {
        return Ok(None);
    };
    if record.key != work.run() || record.plan.is_none() {
        return Ok(None);
    }
    let run = Arc::new(RunWork::open(member, record).await?);
    run.clone().start_reporting(member.clone());
    runs.insert(work.pipeline().to_string(), run.clone());
    Ok(Some(run))
}

/// Tells JetStream the work goes on, every third of the ack wait, until
/// aborted.
fn in_progress(
    message: &async_nats::jetstream::Message,
    ack_wait: Duration,
) -> tokio::task::JoinHandle<()> {
    let message = message.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ack_wait / 3).await;
            if let Err(e) = message.ack_with(AckKind::Progress).await {
                warn!(error = %e, "cannot tell the queue the work goes on");
            }
        }
    })
}

async fn answer(message: &async_nats::jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        warn!(error = %e, "cannot answer the work queue; the work comes back after the ack wait");
    }
}
