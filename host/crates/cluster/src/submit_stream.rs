//! `dmp run --cluster` for a change stream (`mode = "cdc"` or
//! `"full+cdc"`): the run's record goes to the cluster, whose workers
//! elect the stream's holder (see `stream_holder`), and the submitter
//! shows the stream's progress as the holder reports it until stopped;
//! the stream goes on without it. `--stop` ends it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::records::{RUNS_BUCKET, StreamRecord, new_run_key, run_key, stream_record_key};
use crate::submit::Submission;
use dmp_engine::{Progress, RunSummary, Shutdown};

const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Puts the stream on the cluster (a stream there already keeps its
/// holder) and shows its progress until `stop` fires.
pub(crate) async fn submit_stream(
    cluster: &Cluster,
    submission: Submission<'_>,
    progress: Arc<Progress>,
    stop: Shutdown,
) -> Result<RunSummary> {
    let started = Instant::now();
    let pipeline = submission.pipeline;
    if submission.restart {
        return Err(Error::Engine(dmp_contract::Error::Config(format!(
            "pipeline {}: --restart of a change stream runs on one machine (`dmp run --restart`); \
             stop the cluster's stream first (`dmp run --cluster … --stop`)",
            dmp_model::printable(&pipeline.name)
        ))));
    }
    let key = match cluster.run_record(&pipeline.name).await? {
        Some(held) if held.plan.is_none() => held.key,
        _ => new_run_key(0),
    };
    let record = submission.record(key, None);
    cluster.put_run_record(&record).await?;
    info!(
        run = record.key,
        "change stream submitted to the cluster; its workers elect its holder"
    );
    let key = stream_record_key(&pipeline.name);
    let mut last = StreamRecord::default();
    loop {
        if let Ok(Some((held, _))) = cluster.record::<StreamRecord>(&key).await {
            if held.worker != last.worker || held.epoch != last.epoch {
                info!(
                    worker = held.worker,
                    epoch = held.epoch,
                    "the stream's holder"
                );
            }
            progress
                .stream
                .mirror(held.changes, held.transactions, held.lag_ms);
            last = held;
        }
        tokio::select! {
            () = stop.wait() => break,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
    info!("stopped watching; the stream goes on in the cluster");
    Ok(RunSummary {
        pipeline: pipeline.name.clone(),
        run: 0,
        resumed: false,
        tables: Vec::new(),
        rows: last.copied,
        rejected: 0,
        elapsed: started.elapsed(),
        stream: None,
        back: None,
    })
}

/// Ends what the cluster runs for `pipeline`: its record goes, and with it
/// the stream (its holder stops within a third of the lease time) or the
/// chunks not yet copied (workers drop them). Whether there was one.
pub async fn stop_run(cluster: &Cluster, pipeline: &str) -> Result<bool> {
    let key = run_key(pipeline);
    let held = cluster.run_record(pipeline).await?.is_some();
    cluster
        .runs
        .delete(&key)
        .await
        .map_err(|e| Error::from_nats(format!("deleting {key} of bucket {RUNS_BUCKET}"), e))?;
    Ok(held)
}
