//! A pipeline's change stream on the cluster: one worker holds it at a
//! time, under a lease (`stream.<pipeline>` in `DMP_LEASES`), and runs it
//! as `dmp run` would, from the target's checkpoint. Every worker tries to
//! take the streams nobody holds, at a third of the lease time; a holder
//! that dies stops renewing, and another takes the stream over once the
//! lease has expired. The lease's epoch goes with every checkpoint the
//! stream commits, and the target refuses a smaller one than it holds: a
//! holder deposed without noticing (paused, cut off) cannot commit after
//! its successor.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, error, info, info_span, warn};

use crate::error::Result;
use crate::lease::Lease;
use crate::records::{RUNS_BUCKET, RunRecord, StreamRecord, stream_lease, stream_record_key};
use crate::worker::Member;
use dmp_engine::{Progress, Shutdown, open_pipeline};
use dmp_state::StateStore;

/// How often a holder writes its stream's progress record.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Looks for streams nobody holds, every third of the lease time, and
/// takes each it can, until the worker stops.
pub(crate) async fn take_streams(member: Arc<Member>) {
    loop {
        if let Err(e) = take_free_streams(&member).await {
            warn!(error = %e, "cannot look for change streams to take; trying again");
        }
        tokio::select! {
            () = member.stop.wait() => return,
            () = tokio::time::sleep(member.cluster.leases().renew_every()) => {}
        }
    }
}

async fn take_free_streams(member: &Arc<Member>) -> Result<()> {
    let what = format!("reading bucket {RUNS_BUCKET}");
    let entries = dmp_nats::bucket_entries(&member.cluster.runs, "run.", &what).await?;
    for (key, value) in entries {
        let Ok(record) = serde_json::from_slice::<RunRecord>(&value) else {
            warn!(key, "a run record DMP did not write; passed over");
            continue;
        };
        if record.plan.is_some() || member.holds_stream(&record.pipeline) {
            continue;
        }
        let name = stream_lease(&record.pipeline);
        let Some(lease) = member.cluster.leases().acquire(&name, &member.name).await? else {
            continue;
        };
        member.set_holding(&record.pipeline, true);
        let holder = member.clone();
        let span = info_span!("stream", pipeline = %dmp_model::printable(&record.pipeline), epoch = lease.epoch);
        tokio::spawn(
            async move {
                hold(&holder, record.clone(), lease).await;
                holder.set_holding(&record.pipeline, false);
            }
            .instrument(span),
        );
    }
    Ok(())
}

/// Runs the stream while the lease is renewed and the run's record is
/// there; lets go of the lease when it ends.
async fn hold(member: &Arc<Member>, record: RunRecord, lease: Lease) {
    info!(worker = member.name, "took the change stream");
    let stop = member.stop.child();
    let guard = tokio::spawn(keep(
        member.clone(),
        record.clone(),
        lease.clone(),
        stop.clone(),
    ));
    let progress = Progress::new();
    let reporter = tokio::spawn(report(
        member.clone(),
        record.pipeline.clone(),
        lease.epoch,
        progress.clone(),
    ));
    match run(member, &record, lease.epoch, progress, stop.clone()).await {
        Ok(()) => info!("the change stream stopped"),
        Err(e) if e.kind() == dmp_contract::ErrorKind::Interrupted => {
            info!("the change stream stopped")
        }
        Err(e) => {
            error!(error = %e.report(), "the change stream failed; another worker (or this one) takes it again")
        }
    }
    // The stream is over: the guard stops renewing and gives the lease
    // as last renewed, to let go of.
    stop.trigger();
    reporter.abort();
    let lease = guard.await.unwrap_or(lease);
    if let Err(e) = member.cluster.leases().release(&lease).await {
        warn!(error = %e, "cannot let go of the stream's lease; it expires");
    }
}

async fn run(
    member: &Member,
    record: &RunRecord,
    epoch: u64,
    progress: Arc<Progress>,
    stop: Shutdown,
) -> dmp_contract::Result<()> {
    let mut pipeline = record.pipeline_file()?;
    pipeline.epoch = Some(epoch);
    let (source, target) = open_pipeline(&*member.connectors, &pipeline)?;
    let state = Arc::new(StateStore::for_pipeline(&pipeline)?);
    dmp_engine::run(&pipeline, false, source, target, state, progress, stop)
        .await
        .map(|_| ())
}

/// Renews the stream's lease (see `lease::keep`); stops the stream when
/// the lease is lost, or when the run's record is gone or replaced
/// (`dmp run --stop`, another submission).
async fn keep(member: Arc<Member>, record: RunRecord, lease: Lease, stop: Shutdown) -> Lease {
    let still_wanted = || {
        let (member, record) = (member.clone(), record.clone());
        async move {
            match member.cluster.run_record(&record.pipeline).await {
                Ok(Some(now)) if now.key == record.key => true,
                Ok(_) => {
                    info!("the stream was stopped or submitted anew; stopping it here");
                    false
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the run's record; going on");
                    true
                }
            }
        }
    };
    crate::lease::keep(member.cluster.leases(), lease, &stop, still_wanted).await
}

/// Writes the stream's progress record about once a second.
async fn report(member: Arc<Member>, pipeline: String, epoch: u64, progress: Arc<Progress>) {
    let key = stream_record_key(&pipeline);
    loop {
        tokio::time::sleep(REPORT_EVERY).await;
        let record = StreamRecord {
            worker: member.name.clone(),
            epoch,
            changes: progress.stream.changes(),
            transactions: progress.stream.transactions(),
            lag_ms: progress.stream.lag_ms(),
            copied: progress.tables().iter().map(|t| t.done()).sum(),
        };
        if let Err(e) = member.cluster.put_record(&key, &record, None).await {
            warn!(error = %e, "cannot write the stream's progress");
        }
    }
}
