//! `dmp run PIPELINE` or `dmp run --source URL --target URL`

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::{ProgressDisplay, peak_rss_bytes};
use super::{EXIT_DATA, EXIT_OK};
use crate::config::{Pipeline, Scope};
use crate::connectors::open_pipeline;
use crate::engine::{self, Progress, RunSummary, Shutdown};
use crate::error::{Error, Result};
use crate::state::StateStore;

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The pipeline file. Without it, give --source and --target.
    pipeline: Option<PathBuf>,
    /// Source URL (instead of a pipeline file).
    #[arg(long, conflicts_with = "pipeline", requires = "target")]
    source: Option<String>,
    /// Target URL (instead of a pipeline file).
    #[arg(long, conflicts_with = "pipeline", requires = "source")]
    target: Option<String>,
    /// Table globs to include (with --source/--target); repeatable.
    #[arg(long = "tables", value_name = "GLOB", conflicts_with = "pipeline")]
    tables: Vec<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Abandon an interrupted run of this pipeline and start anew.
    #[arg(long)]
    restart: bool,
    /// Create the target tables, indexes and foreign keys, copy no row.
    #[arg(long, conflicts_with = "data_only")]
    schema_only: bool,
    /// Copy rows into target tables that exist already; no DDL.
    #[arg(long)]
    data_only: bool,
}

pub(super) async fn run(args: RunArgs, interactive: bool) -> Result<u8> {
    let mut pipeline = match (&args.pipeline, &args.source, &args.target) {
        (Some(path), _, _) => Pipeline::load(path)?,
        (None, Some(source), Some(target)) => Pipeline::from_urls(source, target, &args.tables)?,
        _ => {
            return Err(Error::Config(
                "give a pipeline file (dmp run pipeline.toml) or --source URL --target URL".into(),
            ));
        }
    };
    pipeline.scope = match (args.schema_only, args.data_only) {
        (true, _) => Scope::SchemaOnly,
        (_, true) => Scope::DataOnly,
        _ => Scope::SchemaAndData,
    };
    let summary = run_pipeline(&pipeline, args.restart, interactive).await?;
    print_summary(&summary, args.json);
    Ok(if summary.rejected > 0 {
        EXIT_DATA
    } else {
        EXIT_OK
    })
}

/// Runs a pipeline with progress display and Ctrl-C handling.
pub(super) async fn run_pipeline(
    pipeline: &Pipeline,
    restart: bool,
    interactive: bool,
) -> Result<RunSummary> {
    let (source, target) = open_pipeline(pipeline)?;
    let state = Arc::new(StateStore::open(&pipeline.state)?);
    let progress = Progress::new();
    let shutdown = Shutdown::new();
    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("stopping after the batches in flight (Ctrl-C again to abort at once)");
                shutdown.trigger();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(i32::from(super::EXIT_INTERRUPTED));
                }
            }
        })
    };
    let display = ProgressDisplay::start(progress.clone(), interactive);
    let result = engine::run(pipeline, restart, source, target, state, progress, shutdown).await;
    display.stop().await;
    signals.abort();
    result
}

pub(super) fn print_summary(summary: &RunSummary, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string_pretty(summary) {
            println!("{text}");
        }
        return;
    }
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    println!(
        "pipeline {}: run {}{} done in {:.2}s",
        summary.pipeline,
        summary.run,
        if summary.resumed { " (resumed)" } else { "" },
        secs
    );
    for table in &summary.tables {
        if table.written == table.rows {
            println!("  {:24} {:>10} rows", table.name, table.rows);
        } else {
            println!(
                "  {:24} {:>10} rows read, {} written",
                table.name, table.rows, table.written
            );
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = summary.rows as f64 / secs;
    println!(
        "  total {} rows, {:.0} rows/s, {} dead-lettered, peak memory {} MiB",
        summary.rows,
        rate,
        summary.rejected,
        peak_rss_bytes().map_or_else(|| "?".to_string(), |b| (b >> 20).to_string())
    );
}
