//! Where a pipeline's change stream stands (the target's position, the
//! change log the source keeps for it) and removing what it holds at the
//! source: for `dmp cdc` and the service.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use dmp_config::Pipeline;
use dmp_contract::{ChangeSource, Connectors};
use dmp_model::{Position, STREAM_CHECKPOINT};

#[derive(Debug, Clone, Serialize)]
pub struct StreamStanding {
    pub pipeline: String,
    /// The position the target holds (applied and committed).
    pub target_position: Option<String>,
    pub source_position: Option<String>,
    pub confirmed_position: Option<String>,
    /// Change log the source keeps for the stream.
    pub retained_bytes: Option<u64>,
}

/// The standing of `pipeline`'s change stream.
pub async fn stream_standing(
    connectors: &dyn Connectors,
    pipeline: &Pipeline,
) -> Result<StreamStanding> {
    // A two-way sync: its first leg's (`dmp cdc status` shows each).
    let streams = pipeline.streams();
    let pipeline = streams.first().unwrap_or(pipeline);
    let (source, target) = crate::open_pipeline(connectors, pipeline)?;
    let changes = change_source(connectors, pipeline, &*source)?;
    let lag = changes.lag().await?;
    let held = target
        .checkpoints()
        .await?
        .into_iter()
        .find(|c| c.table == STREAM_CHECKPOINT)
        .map(|c| match c.position {
            Position::Log { log, skip: 0 } => log,
            Position::Log { log, skip } => format!("{log} (+{skip} changes)"),
            other => format!("{other:?}"),
        });
    Ok(StreamStanding {
        pipeline: pipeline.name.clone(),
        target_position: held,
        source_position: lag.current,
        confirmed_position: lag.confirmed,
        retained_bytes: lag.retained_bytes,
    })
}

/// Drops what the stream holds at the source (PostgreSQL: its slot and
/// publication), so that the source stops keeping change log for it.
/// A two-way sync's legs each hold their own.
/// A lost connection is retried as the pipeline's `[retry]` says (both
/// drops do nothing when already done).
pub async fn drop_stream(connectors: &dyn Connectors, pipeline: &Pipeline) -> Result<()> {
    // Nothing to stop it but the process's end.
    let stop = crate::Shutdown::new();
    for stream in pipeline.streams() {
        let source = connectors.open_source(&stream.source, stream.source_options())?;
        let changes = change_source(connectors, &stream, &*source)?;
        crate::retry::retrying_step(&pipeline.retry, &stop, "dropping the change stream", || {
            changes.drop_stream()
        })
        .await?;
    }
    Ok(())
}

fn change_source(
    connectors: &dyn Connectors,
    pipeline: &Pipeline,
    source: &dyn dmp_contract::Source,
) -> Result<Arc<dyn ChangeSource>> {
    source.changes(&pipeline.change_options())?.ok_or_else(|| {
        Error::Config(format!(
            "{}: this source has no change stream ({} have one)",
            pipeline.source,
            connectors.change_stream_schemes()
        ))
    })
}
