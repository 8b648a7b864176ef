//! The pipeline runner. It plans chunks, copies them in parallel through
//! bounded channels (reader → writer), checkpoints every batch on the
//! target, and resumes an interrupted run where its checkpoints say; it
//! runs incremental passes and applies change streams the same way. It
//! knows connectors only through the `Source`, `Target` and `ChangeSource`
//! traits.

// The shared error: this crate meets no driver's.
use dmp_contract::error;

mod assess;
mod bidirectional;
mod cdc;
mod clocks;
mod conflicts;
mod evolve;
mod incremental;
mod lag;
mod launch;
mod letter;
mod naming;
mod plan;
mod progress;
mod replay;
mod resolver;
mod retry;
mod runner;
mod session;
mod setup;
mod shared_run;
mod shutdown;
mod standing;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tracing::Instrument;

pub use assess::{assess, not_carried};
pub use bidirectional::{LegEnds, run_two_way};
pub use conflicts::{
    About, ConflictError, EntryRows, EntryView, JsonColumn, ResolveSummary, RowOutcome, Sides,
    entry_view,
};
pub use dmp_model::TablePhase;
pub use launch::{Launch, Launcher, PlacedStream, PlacedWork, PlacedWorker, Placement, Written};
pub use plan::discover;
pub use plan::{ColumnPlan, PlanReport, TablePlan, plan};
pub use progress::{Progress, StreamProgress, TableProgress};
pub use replay::{ReplayOptions, ReplaySummary, TableReplay, replay};
pub use runner::{RunSummary, TableSummary};
pub use session::{RunObserver, Session, SessionEnd, SessionHandle, Unobserved, open_pipeline};
pub use setup::Transforms;
pub use shared_run::{ChunkWork, SharedPlan, plan_shared};
pub use shutdown::Shutdown;
pub use standing::{StreamStanding, drop_stream, stream_standing};
pub use stream::StreamSummary;

use crate::error::Result;
use dmp_config::{Pipeline, RunMode};
use dmp_contract::{Source, Target};
use dmp_state::StateStore;

/// Runs `pipeline` once in its mode: a full snapshot (resuming an
/// interrupted one unless `restart`), an incremental pass (from the
/// target's cursor marks, or from the start with `restart`), or a change
/// stream that goes on until `shutdown` fires (from the target's position,
/// or anew with `restart`).
pub async fn run(
    pipeline: &Pipeline,
    restart: bool,
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    shutdown: Shutdown,
) -> Result<RunSummary> {
    // The full runner opens its own `pipeline` span.
    let span = tracing::info_span!("pipeline", name = %dmp_model::printable(&pipeline.name), mode = pipeline.mode.as_str());
    let expired = state.expire_dead_letters(&pipeline.name, pipeline.dead_letter_retention)?;
    if expired > 0 {
        tracing::info!(
            pipeline = pipeline.name,
            rows = expired,
            retention = %humantime::format_duration(pipeline.dead_letter_retention),
            "expired dead-letter rows deleted"
        );
    }
    match pipeline.mode {
        RunMode::Full => {
            runner::run(pipeline, restart, source, target, state, progress, shutdown).await
        }
        RunMode::Incremental => {
            incremental::run(pipeline, restart, source, target, state, progress, shutdown)
                .instrument(span)
                .await
        }
        RunMode::Cdc | RunMode::FullCdc => {
            cdc::run(
                pipeline,
                restart,
                pipeline.mode == RunMode::FullCdc,
                source,
                target,
                state,
                progress,
                shutdown,
            )
            .instrument(span)
            .await
        }
        RunMode::Bidirectional => Err(error::Error::Config(format!(
            "pipeline {}: a two-way sync opens each side as a source and as a target; run it through a Session (or run_two_way)",
            dmp_model::printable(&pipeline.name)
        ))),
    }
}
