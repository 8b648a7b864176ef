//! `dmp cdc status|drop-slot PIPELINE`: the change stream's standing at the
//! source, and removing what it holds there.

use std::path::PathBuf;

use clap::Subcommand;

use super::EXIT_OK;
use crate::config::Pipeline;
use crate::connectors::REGISTRY;
use crate::engine;
use crate::error::{Error, Result};

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

pub(super) async fn cdc(command: CdcCommand) -> Result<u8> {
    match command {
        CdcCommand::Status { pipeline, json } => {
            let pipeline = Pipeline::load(&pipeline)?;
            // A two-way sync's legs, one after the other (JSON: a list).
            let mut standings = Vec::new();
            for stream in pipeline.streams() {
                standings.push(engine::stream_standing(&REGISTRY, &stream).await?);
            }
            if json && standings.len() > 1 {
                let text = serde_json::to_string_pretty(&standings)
                    .map_err(|e| Error::Data(format!("status as JSON: {e}")))?;
                println!("{text}");
                return Ok(EXIT_OK);
            }
            for standing in &standings {
                show_standing(standing, json)?;
            }
            Ok(EXIT_OK)
        }
        CdcCommand::DropSlot { pipeline } => {
            let pipeline = Pipeline::load(&pipeline)?;
            engine::drop_stream(&REGISTRY, &pipeline).await?;
            println!(
                "pipeline {}: change stream removed at the source",
                pipeline.name
            );
            Ok(EXIT_OK)
        }
    }
}

/// One change stream's standing, as text or JSON.
fn show_standing(status: &engine::StreamStanding, json: bool) -> Result<()> {
    if json {
        let text = serde_json::to_string_pretty(status)
            .map_err(|e| Error::Data(format!("status as JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
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
    Ok(())
}
