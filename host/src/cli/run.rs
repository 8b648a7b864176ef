//! `dmp run PIPELINE` or `dmp run --source URL --target URL`

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::{ProgressDisplay, peak_rss_bytes};
use super::{EXIT_DATA, EXIT_OK, EXIT_RUNTIME};
use crate::config::{Pipeline, Scope};
use crate::connectors::Registry;
use crate::engine::{Progress, RunObserver, RunSummary, Session};
use crate::error::{Error, ErrorKind, Result};
use crate::model::printable;

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
    /// Hand the run to the workers of a cluster (`dmp worker`) instead of
    /// running it here, and watch it to its end.
    #[command(flatten)]
    cluster: super::worker::ClusterArgs,
    /// With --cluster: deliveries a chunk gets before it counts as failed.
    #[arg(long, default_value_t = dmp_cluster::DEFAULT_MAX_DELIVER, requires = "url")]
    max_deliver: u32,
    /// With --cluster: end what the cluster runs for this pipeline (its
    /// change stream, or the chunks of a load not yet copied).
    #[arg(long, requires = "url")]
    stop: bool,
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
    let summary = match args.cluster.join().await? {
        Some(cluster) => {
            let Some(path) = &args.pipeline else {
                return Err(Error::Config(
                    "--cluster needs a pipeline file: the workers read it".into(),
                ));
            };
            if args.stop {
                let stopped = dmp_cluster::stop_run(&cluster, &pipeline.name).await?;
                println!(
                    "pipeline {}: {}",
                    printable(&pipeline.name),
                    if stopped {
                        "stopped in the cluster"
                    } else {
                        "the cluster runs nothing of it"
                    }
                );
                return Ok(EXIT_OK);
            }
            let submitted = Submitted {
                path,
                restart: args.restart,
                max_deliver: args.max_deliver,
            };
            run_on_cluster(&cluster, &pipeline, &submitted, interactive).await?
        }
        None if pipeline.every.is_some() => {
            return run_scheduled(pipeline, args.restart, interactive, args.json).await;
        }
        None => run_pipeline(&pipeline, args.restart, interactive).await?,
    };
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

/// Runs a pipeline once with progress display and Ctrl-C handling.
pub(super) async fn run_pipeline(
    pipeline: &Pipeline,
    restart: bool,
    interactive: bool,
) -> Result<RunSummary> {
    let session = Session::new(pipeline.clone(), Arc::new(Registry));
    let signals = super::signals::stop_on_signals(session.stopper());
    let mut display = Display::new(interactive, None);
    let result = session.run_once_observed(restart, &mut display).await;
    signals.abort();
    result
}

/// What `dmp run --cluster` submits besides the pipeline.
struct Submitted<'a> {
    path: &'a std::path::Path,
    restart: bool,
    max_deliver: u32,
}

/// Submits the pipeline's run to a cluster and shows its progress as the
/// workers report it, with Ctrl-C handling (which stops the watching; the
/// workers go on).
async fn run_on_cluster(
    cluster: &dmp_cluster::Cluster,
    pipeline: &Pipeline,
    submitted: &Submitted<'_>,
    interactive: bool,
) -> Result<RunSummary> {
    let text = std::fs::read_to_string(submitted.path).map_err(|e| {
        Error::Config(format!(
            "cannot read pipeline file {}: {e}",
            submitted.path.display()
        ))
    })?;
    // Workers resolve the file's relative paths from where it is.
    let path = std::path::absolute(submitted.path)
        .map_err(|e| Error::Config(format!("{}: {e}", submitted.path.display())))?;
    let stop = crate::engine::Shutdown::new();
    let signals = super::signals::stop_on_signals(stop.clone());
    let progress = Progress::new();
    let shown = ProgressDisplay::start(progress.clone(), interactive);
    let submission = dmp_cluster::Submission {
        pipeline,
        text: &text,
        path: &path,
        restart: submitted.restart,
        max_deliver: submitted.max_deliver,
    };
    let outcome = if pipeline.mode.streams_changes() {
        dmp_cluster::submit_stream(cluster, submission, progress, stop).await
    } else {
        let (source, target) = crate::engine::open_pipeline(&Registry, pipeline)?;
        let state = Arc::new(crate::state::StateStore::for_pipeline(pipeline)?);
        let _lease = state.lease(&pipeline.name)?;
        dmp_cluster::submit(cluster, submission, source, target, state, progress, stop).await
    };
    shown.stop().await;
    signals.abort();
    Ok(outcome?)
}

/// `[run] every`: the session runs the pipeline on its schedule until
/// stopped; each run's summary is printed as it ends.
async fn run_scheduled(
    pipeline: Pipeline,
    restart: bool,
    interactive: bool,
    json: bool,
) -> Result<u8> {
    let session = Session::new(pipeline, Arc::new(Registry));
    let signals = super::signals::stop_on_signals(session.stopper());
    let mut display = Display::new(interactive, Some(json));
    let outcome = session.run(restart, &mut display).await;
    signals.abort();
    outcome.map(|_| display.code)
}

/// The progress display of each run, and (on a schedule) its summary.
struct Display {
    interactive: bool,
    /// Print each run's summary (as JSON when set).
    summaries: Option<bool>,
    shown: Option<ProgressDisplay>,
    /// The exit code so far: a run that dead-lettered rows or failed marks it.
    code: u8,
}

impl Display {
    fn new(interactive: bool, summaries: Option<bool>) -> Self {
        Display {
            interactive,
            summaries,
            shown: None,
            code: EXIT_OK,
        }
    }
}

#[async_trait::async_trait]
impl RunObserver for Display {
    async fn started(&mut self, progress: &Arc<Progress>) {
        self.shown = Some(ProgressDisplay::start(progress.clone(), self.interactive));
    }

    async fn finished(&mut self, outcome: &Result<RunSummary>) {
        if let Some(shown) = self.shown.take() {
            shown.stop().await;
        }
        let Some(json) = self.summaries else { return };
        match outcome {
            Ok(summary) => {
                print_summary(summary, json);
                if summary.rejected > 0 {
                    self.code = EXIT_DATA;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => self.code = EXIT_RUNTIME,
        }
    }
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
