//! `dmp run PIPELINE` or `dmp run --source URL --target URL`

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::{ProgressDisplay, peak_rss_bytes};
use super::{EXIT_DATA, EXIT_OK, EXIT_RUNTIME};
use crate::config::{Pipeline, Scope};
use crate::connectors::Registry;
use crate::engine::{Launcher, Progress, RunObserver, RunSummary, Session, Written};
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
    let launched = match args.cluster.join().await? {
        Some(cluster) => {
            let Some(path) = &args.pipeline else {
                return Err(Error::Config(
                    "--cluster needs a pipeline file: the workers read it".into(),
                ));
            };
            if args.stop {
                return stop_on_cluster(&cluster, &pipeline.name).await;
            }
            Some(launched_on_cluster(
                cluster,
                &pipeline,
                path,
                args.max_deliver,
            )?)
        }
        None => None,
    };
    if pipeline.every.is_some() {
        return run_scheduled(pipeline, args.restart, interactive, args.json, launched).await;
    }
    let summary = run_pipeline(&pipeline, args.restart, interactive, launched).await?;
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

/// A run handed to a launcher, and the file it reads.
type Launched = Option<(Arc<dyn Launcher>, Written)>;

/// A session of `pipeline`, handed to `launched` when given.
fn session(pipeline: Pipeline, launched: Launched) -> Session {
    let session = Session::new(pipeline, Arc::new(Registry));
    match launched {
        Some((launcher, written)) => session.launched_by(launcher, written),
        None => session,
    }
}

/// Runs a pipeline once (here, or handed to `launched`) with progress
/// display and Ctrl-C handling. Ctrl-C of a run on a cluster stops the
/// watching; the workers go on.
pub(super) async fn run_pipeline(
    pipeline: &Pipeline,
    restart: bool,
    interactive: bool,
    launched: Launched,
) -> Result<RunSummary> {
    let session = session(pipeline.clone(), launched);
    let signals = super::signals::stop_on_signals(session.stopper());
    let mut display = Display::new(interactive, None);
    let result = session.run_once_observed(restart, &mut display).await;
    signals.abort();
    result
}

/// The cluster's launcher of `pipeline`, read from `path` by the workers.
fn launched_on_cluster(
    cluster: Arc<dmp_cluster::Cluster>,
    pipeline: &Pipeline,
    path: &std::path::Path,
    max_deliver: u32,
) -> Result<(Arc<dyn Launcher>, Written)> {
    let launcher = dmp_cluster::ClusterLauncher::new(cluster, Arc::new(Registry), max_deliver);
    dmp_cluster::cluster_runs(pipeline)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read pipeline file {}: {e}", path.display())))?;
    // Workers resolve the file's relative paths from where it is.
    let path =
        std::path::absolute(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok((Arc::new(launcher), Written { text, path }))
}

/// `dmp run --cluster … --stop`.
async fn stop_on_cluster(cluster: &dmp_cluster::Cluster, pipeline: &str) -> Result<u8> {
    let stopped = dmp_cluster::stop_run(cluster, pipeline).await?;
    println!(
        "pipeline {}: {}",
        printable(pipeline),
        if stopped {
            "stopped in the cluster"
        } else {
            "the cluster runs nothing of it"
        }
    );
    Ok(EXIT_OK)
}

/// `[run] every`: the session runs the pipeline on its schedule until
/// stopped; each run's summary is printed as it ends.
async fn run_scheduled(
    pipeline: Pipeline,
    restart: bool,
    interactive: bool,
    json: bool,
    launched: Launched,
) -> Result<u8> {
    let session = session(pipeline, launched);
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
    let two_way = summary.back.is_some();
    let streams = [
        (
            &summary.stream,
            if two_way { "stream A → B" } else { "stream" },
        ),
        (&summary.back, "stream B → A"),
    ];
    for (stream, label) in streams {
        let Some(stream) = stream else { continue };
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
        println!(
            "  {label}: {} changes in {} transactions, {} target commits; lag p50 {}, p99 {}, max {}; at {}",
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
