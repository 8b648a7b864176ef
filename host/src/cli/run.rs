//! `dmp run PIPELINE` or `dmp run --source URL --target URL`

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::{ProgressDisplay, peak_rss_bytes};
use super::{EXIT_DATA, EXIT_OK, EXIT_RUNTIME};
use crate::config::{Pipeline, Schedule, Scope};
use crate::connectors::open_pipeline;
use crate::engine::{self, Progress, RunSummary, Shutdown};
use crate::error::{Error, ErrorKind, Result};
use crate::model::printable;
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
    /// After the run, compare source and target (`dmp verify`); exit 1
    /// when rows differ.
    #[arg(long, conflicts_with = "schema_only")]
    verify: bool,
    /// Refuse to start when any object of the source schema would not be
    /// carried (as `[run] strict_schema = true`; `dmp plan` lists them).
    #[arg(long)]
    strict_schema: bool,
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
    pipeline.strict_schema |= args.strict_schema;
    pipeline.scope = match (args.schema_only, args.data_only) {
        (true, _) => Scope::SchemaOnly,
        (_, true) => Scope::DataOnly,
        _ => Scope::SchemaAndData,
    };
    if let Some(schedule) = pipeline.every.clone() {
        return run_scheduled(&pipeline, &schedule, args.restart, interactive, args.json).await;
    }
    let summary = run_pipeline(&pipeline, args.restart, interactive).await?;
    print_summary(&summary, args.json);
    let verified = if args.verify {
        super::verify::verify_pipeline(&pipeline, &super::verify::VerifyFlags::all(args.json))
            .await?
    } else {
        EXIT_OK
    };
    Ok(if summary.rejected > 0 || verified != EXIT_OK {
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
    let shutdown = Shutdown::new();
    let signals = stop_on_signals(shutdown.clone());
    let result = run_once(pipeline, restart, interactive, shutdown).await;
    signals.abort();
    result
}

/// One run with its own connectors, state store handle and progress
/// display.
async fn run_once(
    pipeline: &Pipeline,
    restart: bool,
    interactive: bool,
    shutdown: Shutdown,
) -> Result<RunSummary> {
    let (source, target) = open_pipeline(pipeline)?;
    let state = Arc::new(StateStore::for_pipeline(pipeline)?);
    let _lease = state.lease(&pipeline.name)?;
    let progress = Progress::new();
    let display = ProgressDisplay::start(progress.clone(), interactive);
    let result = engine::run(pipeline, restart, source, target, state, progress, shutdown).await;
    display.stop().await;
    result
}

/// Ctrl-C or SIGTERM stop the run at the next batch boundary (a stream
/// after the transaction being applied); a second Ctrl-C exits at once.
pub(super) fn stop_on_signals(shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            () = terminate => {}
        }
        eprintln!("stopping after the batches in flight (Ctrl-C again to abort at once)");
        shutdown.trigger();
        if tokio::signal::ctrl_c().await.is_ok() {
            ABORT.notify_one();
        }
    })
}

/// A second Ctrl-C: the command is dropped where it stands and `main`
/// returns (what is committed stays; the next run resumes from it).
static ABORT: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves when the user asked to abort at once.
pub(super) async fn aborted() {
    ABORT.notified().await;
}

/// `[run] every`: runs the pipeline, waits for the schedule's next start,
/// and again, until stopped. Runs never overlap; a run that fails for a
/// passing reason (a server down) is logged and the schedule goes on; a
/// configuration error stops it.
async fn run_scheduled(
    pipeline: &Pipeline,
    schedule: &Schedule,
    restart: bool,
    interactive: bool,
    json: bool,
) -> Result<u8> {
    let shutdown = Shutdown::new();
    let signals = stop_on_signals(shutdown.clone());
    let mut restart = restart;
    let mut code = EXIT_OK;
    let outcome = loop {
        let started = chrono::Utc::now();
        match run_once(pipeline, restart, interactive, shutdown.clone()).await {
            Ok(summary) => {
                tracing::info!(
                    run = summary.run,
                    rows = summary.rows,
                    rejected = summary.rejected,
                    secs = summary.elapsed.as_secs_f64(),
                    "scheduled run finished"
                );
                print_summary(&summary, json);
                if summary.rejected > 0 {
                    code = EXIT_DATA;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted) => break Ok(code),
            // Every later run would stop the same way.
            Err(e) if matches!(e.kind(), ErrorKind::Config | ErrorKind::SourceChanged) => {
                break Err(e);
            }
            Err(e) => {
                tracing::error!(error = %e.report(), "scheduled run failed; trying again at the next start");
                code = EXIT_RUNTIME;
            }
        }
        restart = false;
        let next = schedule.next_start(started, chrono::Utc::now());
        tracing::info!(next = %next.format("%Y-%m-%d %H:%M:%S UTC"), "next run");
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = shutdown.wait() => break Ok(code),
            () = tokio::time::sleep(wait) => {}
        }
    };
    signals.abort();
    outcome
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
        printable(&summary.pipeline),
        summary.run,
        if summary.resumed { " (resumed)" } else { "" },
        secs
    );
    for table in &summary.tables {
        let name = printable(&table.name);
        if table.written == table.rows {
            println!("  {name:24} {:>10} rows", table.rows);
        } else {
            println!(
                "  {name:24} {:>10} rows read, {} written",
                table.rows, table.written
            );
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = summary.rows as f64 / secs;
    if let Some(stream) = &summary.stream {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
        println!(
            "  stream: {} changes in {} transactions, {} target commits; lag p50 {}, p99 {}, max {}; at {}",
            stream.changes,
            stream.transactions,
            stream.batches,
            ms(stream.lag_p50_ms),
            ms(stream.lag_p99_ms),
            ms(stream.lag_max_ms),
            stream.position.as_deref().unwrap_or("-")
        );
    }
    println!(
        "  total {} rows, {:.0} rows/s, {} dead-lettered, peak memory {} MiB",
        summary.rows,
        rate,
        summary.rejected,
        peak_rss_bytes().map_or_else(|| "?".to_string(), |b| (b >> 20).to_string())
    );
}
