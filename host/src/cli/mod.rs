//! The `dmp` command line: parsing, logging, exit codes. Commands live in
//! one file each; this is the only place that turns errors into exit codes.

mod cdc;
mod conflicts;
mod demo;
mod dlq;
mod log_lines;
mod plan;
mod plugin;
mod progress;
mod run;
mod scaffold;
mod serve;
mod signals;
mod verify;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::ErrorKind;

/// Exit codes, as documented in the README.
pub const EXIT_OK: u8 = 0;
pub const EXIT_DATA: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_RUNTIME: u8 = 3;
/// The source changed in a way the pipeline's settings do not carry.
pub const EXIT_SOURCE_CHANGED: u8 = 4;
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "dmp",
    version,
    about = "Data migration and synchronization",
    max_term_width = 100
)]
struct Cli {
    /// More log output (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline (or resume it where an interrupted run stopped).
    Run(run::RunArgs),
    /// Show what a run would do: tables, rows, chunks, type mapping. Writes nothing.
    Plan {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare source and target row by row (checksums in each database);
    /// exit 0 when equal, 1 when rows differ. --repair rewrites them.
    Verify(verify::VerifyArgs),
    /// Change data capture: stream status, dropping the replication slot.
    #[command(subcommand)]
    Cdc(cdc::CdcCommand),
    /// Two-way sync conflicts: list them, show one, resolve a parked one.
    #[command(subcommand)]
    Conflicts(conflicts::ConflictsCommand),
    /// Dead-letter rows: what could not be moved, and why.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Create a sample shop database and migrate it to SQLite and JSON Lines.
    Demo(demo::DemoArgs),
    /// Develop WebAssembly transform plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run the control plane: HTTP API, dashboard and metrics, running the
    /// pipelines stored in its home.
    Serve(serve::ServeArgs),
    /// API tokens of `dmp serve`.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// Dashboard users of `dmp serve`.
    #[command(subcommand)]
    User(serve::UserCommand),
    /// The secret key of `dmp serve`.
    #[command(subcommand)]
    Secrets(serve::SecretsCommand),
    /// Join a cluster (NATS JetStream) and copy the chunks of the runs
    /// submitted to it with `dmp run --cluster`.
    Worker(worker::WorkerArgs),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let interactive = progress::is_terminal();
    init_logging(
        cli.verbose,
        interactive,
        matches!(cli.command, Command::Serve(_)),
    );
    let outcome = runtime.block_on(async {
        let command = async {
            match cli.command {
                Command::Run(args) => run::run(args, interactive).await,
                Command::Plan { pipeline, json } => {
                    plan::plan(&pipeline, json).await.map(|()| EXIT_OK)
                }
                Command::Demo(args) => demo::demo(args, interactive).await,
                Command::Cdc(command) => cdc::cdc(command).await,
                Command::Conflicts(command) => conflicts::conflicts(command).await,
                Command::Dlq(command) => dlq::dlq(command).await,
                Command::Verify(args) => verify::verify_command(args).await,
                Command::Plugin(command) => plugin::plugin(command).await,
                Command::Serve(args) => serve::serve(args).await,
                Command::Token(command) => serve::token(command),
                Command::User(command) => serve::user(command),
                Command::Secrets(command) => serve::secrets(command),
                Command::Worker(args) => worker::worker(args).await,
            }
        };
        tokio::select! {
            outcome = command => Some(outcome),
            () = signals::aborted() => None,
        }
    });
    let Some(outcome) = outcome else {
        // Tasks still writing are dropped with the runtime, not awaited.
        runtime.shutdown_background();
        eprintln!("aborted");
        return ExitCode::from(EXIT_INTERRUPTED);
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors quote names from the source: shown escaped.
            eprintln!("error: {}", crate::model::printable(&e.report()));
            ExitCode::from(match e.kind() {
                ErrorKind::Config => EXIT_CONFIG,
                ErrorKind::SourceChanged => EXIT_SOURCE_CHANGED,
                ErrorKind::Data => EXIT_DATA,
                ErrorKind::Interrupted => EXIT_INTERRUPTED,
                ErrorKind::Transient | ErrorKind::Fatal | ErrorKind::Deposed => EXIT_RUNTIME,
            })
        }
    }
}

/// The pipeline's source and target, opened through this build's
/// connectors.
fn open_pipeline(
    pipeline: &crate::config::Pipeline,
) -> crate::error::Result<(
    std::sync::Arc<dyn dmp_contract::Source>,
    std::sync::Arc<dyn dmp_contract::Target>,
)> {
    crate::engine::open_pipeline(&crate::connectors::REGISTRY, pipeline)
}

/// Log lines on stderr; for the service, also each pipeline's lines for
/// the API (at info and above, whatever stderr shows).
fn init_logging(verbose: u8, interactive: bool, service: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match (verbose, interactive) {
        (0, true) => "warn",
        (0, false) | (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(log_lines::OneLineStderr {
            colours: interactive,
        })
        .with_ansi(interactive)
        .with_target(false)
        .with_filter(filter);
    let pipelines = service.then(|| {
        crate::server::logs::layer().with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(pipelines)
        .try_init();
}
