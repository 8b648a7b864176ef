//! Where a session's runs happen: in this process (the default), or handed
//! to other processes — a cluster's workers — through a [`Launcher`] the
//! caller gives the session. The engine never knows who they are.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::{Progress, RunSummary, Shutdown};
use dmp_config::Pipeline;

/// A pipeline file as written, `${…}` references unresolved: what other
/// processes read (each resolves the references from its own
/// environment), and where it is (the base of its relative paths).
#[derive(Debug, Clone)]
pub struct Written {
    pub text: String,
    pub path: PathBuf,
}

/// One run handed to a [`Launcher`].
pub struct Launch<'a> {
    pub pipeline: &'a Pipeline,
    pub written: &'a Written,
    pub restart: bool,
    /// Where the launcher shows the run's progress as it hears it.
    pub progress: Arc<Progress>,
    /// Stops the following of the run (the run itself goes on elsewhere;
    /// [`Launcher::halt`] ends it).
    pub stop: Shutdown,
}

/// Runs pipelines in other processes.
#[async_trait]
pub trait Launcher: Send + Sync {
    /// Whether it runs `pipeline` (its mode); the others run in this
    /// process.
    fn runs(&self, pipeline: &Pipeline) -> bool;

    /// Hands the run over and follows it into `launch.progress` until it
    /// ends (its outcome) or `launch.stop` fires (`Interrupted` for a
    /// load, the stream's summary so far for a stream).
    async fn launch(&self, launch: Launch<'_>) -> Result<RunSummary>;

    /// Ends what runs elsewhere of `pipeline`; whether anything did.
    async fn halt(&self, pipeline: &str) -> Result<bool>;

    /// Who does what of `pipeline`'s current run, `None` when it has none.
    async fn placement(&self, pipeline: &str) -> Result<Option<Placement>>;
}

/// Who does what of a run handed to other processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The run's key where it runs.
    pub run: String,
    pub workers: Vec<PlacedWorker>,
    /// Each chunk and finish step handed out so far, in plan order.
    pub work: Vec<PlacedWork>,
    /// A change stream's holder.
    pub stream: Option<PlacedStream>,
}

/// One worker's share of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlacedWorker {
    pub name: String,
    /// Rows it read, over all tables.
    pub rows: u64,
    pub chunks_done: u64,
    /// `table chunk` of each chunk it copies now.
    pub copying: Vec<String>,
}

/// A chunk (`chunk` set) or a finish step (`chunk` none; `table` none for
/// the pipeline's), and who holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlacedWork {
    pub table: Option<String>,
    pub chunk: Option<u32>,
    /// running | done | failed
    pub state: String,
    /// The worker that holds it (running), did it (done) or failed it last.
    pub worker: String,
    pub attempts: u64,
    pub rows: u64,
    /// The last attempt's error.
    pub error: Option<String>,
}

/// A change stream's holder and how far it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlacedStream {
    pub worker: String,
    /// The holder's fencing epoch.
    pub epoch: u64,
    pub changes: u64,
    pub lag_ms: u64,
}
