//! `dmp cdc status|drop-slot PIPELINE`: the change stream's standing at the
//! source, and removing what it holds there.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use serde::Serialize;

use super::EXIT_OK;
use super::open_pipeline;
use crate::config::Pipeline;
use crate::error::{Error, Result};
use crate::model::{Position, STREAM_CHECKPOINT};
use dmp_contract::ChangeSource;

#[derive(Debug, Subcommand)]
pub(super) enum CdcCommand {
    /// Where the stream stands: the target's position and the change log
    /// the source keeps for this pipeline.
    Status {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop the pipeline's replication slot and publication at the source
    /// (PostgreSQL), so that it stops keeping change log for it. The next
    /// `cdc` run starts from that moment; `full+cdc` copies again.
    DropSlot {
        /// The pipeline file.
        pipeline: PathBuf,
    },
}

#[derive(Debug, Serialize)]
struct Status {
    pipeline: String,
    /// The position the target holds (applied and committed).
    target_position: Option<String>,
    source_position: Option<String>,
    confirmed_position: Option<String>,
    retained_bytes: Option<u64>,
}

pub(super) async fn cdc(command: CdcCommand) -> Result<u8> {
    match command {
        CdcCommand::Status { pipeline, json } => {
            let pipeline = Pipeline::load(&pipeline)?;
            let (source, target) = open_pipeline(&pipeline)?;
            let changes = change_source(&pipeline, &*source)?;
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
            let status = Status {
                pipeline: pipeline.name.clone(),
                target_position: held,
                source_position: lag.current,
                confirmed_position: lag.confirmed,
                retained_bytes: lag.retained_bytes,
            };
            if json {
                let text = serde_json::to_string_pretty(&status)
                    .map_err(|e| Error::Data(format!("status as JSON: {e}")))?;
                println!("{text}");
            } else {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
                println!("pipeline {}", status.pipeline);
                println!("  target holds      {}", show(&status.target_position));
                println!("  source is at      {}", show(&status.source_position));
                println!("  source confirmed  {}", show(&status.confirmed_position));
                println!(
                    "  change log kept   {}",
                    status
                        .retained_bytes
                        .map_or_else(|| "-".to_string(), |b| format!("{} KiB", b / 1024))
                );
            }
            Ok(EXIT_OK)
        }
        CdcCommand::DropSlot { pipeline } => {
            let pipeline = Pipeline::load(&pipeline)?;
            let (source, _target) = open_pipeline(&pipeline)?;
            change_source(&pipeline, &*source)?.drop_stream().await?;
            println!(
                "pipeline {}: change stream removed at the source",
                pipeline.name
            );
            Ok(EXIT_OK)
        }
    }
}

fn change_source(
    pipeline: &Pipeline,
    source: &dyn dmp_contract::Source,
) -> Result<Arc<dyn ChangeSource>> {
    source.changes(&pipeline.change_options())?.ok_or_else(|| {
        Error::Config(format!(
            "{}: this source has no change stream ({} have one)",
            pipeline.source,
            crate::connectors::change_stream_schemes()
        ))
    })
}
