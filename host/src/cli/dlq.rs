//! `dmp dlq list|show|replay|purge PIPELINE`: the rows a pipeline's runs
//! could not move, kept in its state store with their table, stage, error,
//! source position and plugin versions; replay sends them again.

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;

use super::open_pipeline;
use super::{EXIT_DATA, EXIT_OK};
use crate::config::Pipeline;
use crate::engine::{ReplayOptions, ReplaySummary, Shutdown, replay};
use crate::error::{Error, Result};
use crate::model::printable;
use crate::state::{StateStore, dead_letter_groups};

#[derive(Debug, Subcommand)]
pub(super) enum DlqCommand {
    /// Dead-letter rows per table and stage, with the most frequent error.
    List {
        /// The pipeline file.
        pipeline: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The rows themselves, oldest first.
    Show {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Only this table's rows.
        #[arg(long)]
        table: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send rows through the current transforms and the target again
    /// (after fixing the plugin or the target): rows that arrive leave the
    /// store, rows that fail again stay with the new error. Exit 1 when
    /// some still fail.
    Replay {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Only this table's rows.
        #[arg(long)]
        table: Option<String>,
        /// Only these rows (numbers as `show` gives them); repeatable.
        #[arg(long = "id", num_args = 1..)]
        ids: Vec<i64>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete rows: those of `--table`, those numbered `--id`, or with
    /// `--all` every one.
    Purge {
        /// The pipeline file.
        pipeline: PathBuf,
        #[arg(long)]
        table: Option<String>,
        /// A row's number as `show` gives it; repeatable.
        #[arg(long = "id")]
        ids: Vec<i64>,
        /// Every dead-letter row of the pipeline.
        #[arg(long, conflicts_with_all = ["table", "ids"])]
        all: bool,
    },
}

pub(super) async fn dlq(command: DlqCommand) -> Result<u8> {
    match command {
        DlqCommand::List { pipeline, json } => {
            let (pipeline, store) = open(&pipeline)?;
            let groups = dead_letter_groups(&store.dead_letters(&pipeline.name)?);
            if json {
                println!("{}", to_json(&groups)?);
            } else if groups.is_empty() {
                println!("pipeline {}: no dead-letter rows", pipeline.name);
            } else {
                println!("pipeline {}: dead-letter rows", printable(&pipeline.name));
                for g in &groups {
                    println!(
                        "  {:24} {:9} {:>8} rows  e.g. ({}×) {}",
                        printable(&g.table),
                        g.stage,
                        g.rows,
                        g.top_error_rows,
                        printable(&g.top_error)
                    );
                }
            }
        }
        DlqCommand::Show {
            pipeline,
            table,
            limit,
            json,
        } => {
            let (pipeline, store) = open(&pipeline)?;
            let rows = store
                .dead_letters(&pipeline.name)?
                .into_iter()
                .filter(|d| table.as_ref().is_none_or(|t| &d.table == t))
                .take(limit);
            for d in rows {
                if json {
                    println!("{}", serde_json::to_string(&d).map_err(json_error)?);
                } else {
                    println!(
                        "#{} {} ({}, {}) at {}: {}\n    {}",
                        d.id,
                        printable(&d.table),
                        d.stage,
                        d.created_at,
                        d.position,
                        printable(&d.error),
                        d.row
                    );
                    if !d.plugins.is_empty() {
                        println!("    plugins: {}", d.plugins);
                    }
                }
            }
        }
        DlqCommand::Replay {
            pipeline,
            table,
            ids,
            json,
        } => {
            let (pipeline, store) = open(&pipeline)?;
            // Replayed rows go to the target as a run's would.
            let _lease = store.lease(&pipeline.name)?;
            let (source, target) = open_pipeline(&pipeline)?;
            let stop = Shutdown::new();
            let signals = super::signals::stop_on_signals(stop.clone());
            let options = ReplayOptions { table, ids };
            let summary = replay(&pipeline, &store, source, target, &options, &stop).await;
            signals.abort();
            let summary = summary?;
            if json {
                println!("{}", to_json(&summary)?);
            } else {
                print_replay(&summary);
            }
            if summary.still_failing > 0 {
                return Ok(EXIT_DATA);
            }
        }
        DlqCommand::Purge {
            pipeline,
            table,
            ids,
            all,
        } => {
            if !all && table.is_none() && ids.is_empty() {
                return Err(Error::Config(
                    "dmp dlq purge: say which rows: --table NAME, --id N, or --all".to_string(),
                ));
            }
            let (pipeline, store) = open(&pipeline)?;
            // A running pipeline may be settling the rows being purged.
            let _lease = store.lease(&pipeline.name)?;
            let purged = store.purge_dead_letters(&pipeline.name, table.as_deref(), &ids)?;
            println!(
                "pipeline {}: {purged} dead-letter rows purged",
                pipeline.name
            );
        }
    }
    Ok(EXIT_OK)
}

fn print_replay(summary: &ReplaySummary) {
    if summary.tables.is_empty() {
        println!(
            "pipeline {}: no dead-letter rows to replay",
            summary.pipeline
        );
        return;
    }
    println!("pipeline {}: dead-letter rows replayed", summary.pipeline);
    for t in &summary.tables {
        println!(
            "  {:24} replayed {:>8}  still failing {:>8}",
            printable(&t.table),
            t.replayed,
            t.still_failing
        );
        for error in &t.errors {
            println!("      {}", printable(error));
        }
    }
    if summary.still_failing > 0 {
        println!(
            "{} rows still fail: they stay in the store with the new error (dmp dlq show)",
            summary.still_failing
        );
    }
}

fn open(path: &std::path::Path) -> Result<(Pipeline, StateStore)> {
    let pipeline = Pipeline::load(path)?;
    let store = StateStore::for_pipeline(&pipeline)?;
    Ok((pipeline, store))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> Error {
    Error::Data(format!("writing JSON: {e}"))
}
