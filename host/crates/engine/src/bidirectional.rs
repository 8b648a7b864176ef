//! Two-way sync (`mode = "bidirectional"`): the pipeline runs as two
//! legs, side A to side B and back, each an ordinary change stream (see
//! `cdc`) with its checkpoint in its own target's transactions, applying
//! under the pipeline's sync id, which the other leg's reader drops, so
//! that nothing DMP applies comes back to where it came from.
//!
//! The leg that copies the first load starts once the other leg has fixed
//! where it starts — before the load, so that no write made to either
//! side during the load is missed. What the load writes itself is not
//! tagged: it comes back once, as rows equal to the ones already there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{Instrument, info};

use crate::error::{Error, Result};
use crate::{Progress, RunSummary, Shutdown};
use dmp_config::{Leg, Pipeline, RunMode};
use dmp_contract::conflict::Policy;
use dmp_contract::{Source, Target};
use dmp_state::StateStore;

/// How often the leg that follows asks whether the first load is copied.
const LOAD_POLL: Duration = Duration::from_millis(200);

/// What one leg reads from and applies to.
pub struct LegEnds {
    pub source: Arc<dyn Source>,
    pub target: Arc<dyn Target>,
}

/// Runs both legs of `pipeline` until `shutdown` fires or one of them
/// fails (which stops the other, at its next transaction boundary).
/// `progress` shows the leg from A to B (and its load), its `back()` the
/// leg from B to A.
pub async fn run_two_way(
    pipeline: &Pipeline,
    restart: bool,
    a_to_b: LegEnds,
    b_to_a: LegEnds,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    shutdown: Shutdown,
) -> Result<RunSummary> {
    if pipeline.mode != RunMode::Bidirectional {
        return Err(Error::Config(format!(
            "pipeline {}: mode = \"{}\" is not a two-way sync",
            dmp_model::printable(&pipeline.name),
            pipeline.mode.as_str()
        )));
    }
    let started = Instant::now();
    let forward = pipeline.leg(Leg::AToB);
    let back = pipeline.leg(Leg::BToA);
    let loading = pipeline.loading_leg();
    match loading {
        Some(Leg::AToB) => fix_start(&back, restart, &b_to_a, &state).await?,
        Some(Leg::BToA) => fix_start(&forward, restart, &a_to_b, &state).await?,
        None => {}
    }
    let by_time = std::iter::once(&pipeline.sync.conflict)
        .chain(pipeline.sync.table_conflicts.values())
        .any(|p| matches!(p, Policy::LastWriterWins { .. } | Policy::LastCommitWins));
    super::clocks::refuse_far_apart(
        &*a_to_b.source,
        &*b_to_a.source,
        pipeline.sync.max_clock_skew,
        by_time,
    )
    .await?;
    let stop = shutdown.child();
    let back_progress = progress.back_leg();
    let forward_run = run_leg(LegRun {
        pipeline: &forward,
        restart,
        ends: &a_to_b,
        after_load_into: (loading == Some(Leg::BToA)).then_some(&*b_to_a.target),
        state: state.clone(),
        progress,
        stop: stop.clone(),
    });
    let back_run = run_leg(LegRun {
        pipeline: &back,
        restart,
        ends: &b_to_a,
        after_load_into: (loading == Some(Leg::AToB)).then_some(&*a_to_b.target),
        state,
        progress: back_progress,
        stop: stop.clone(),
    });
    let clocks = super::clocks::watch(
        a_to_b.source.clone(),
        b_to_a.source.clone(),
        pipeline.sync.max_clock_skew,
        stop.clone(),
    );
    let (forward_summary, back_summary, ()) = tokio::join!(
        forward_run.instrument(tracing::info_span!("leg", leg = Leg::AToB.as_str())),
        back_run.instrument(tracing::info_span!("leg", leg = Leg::BToA.as_str())),
        clocks
    );
    let (forward_summary, back_summary) = settle(forward_summary, back_summary)?;
    Ok(RunSummary {
        pipeline: pipeline.name.clone(),
        run: forward_summary.run,
        resumed: false,
        tables: [forward_summary.tables, back_summary.tables].concat(),
        rows: forward_summary.rows + back_summary.rows,
        rejected: forward_summary.rejected + back_summary.rejected,
        elapsed: started.elapsed(),
        stream: forward_summary.stream,
        back: back_summary.stream,
    })
}

/// Both legs' outcomes as one: the first real failure, else a stop.
fn settle(
    forward: Result<RunSummary>,
    back: Result<RunSummary>,
) -> Result<(RunSummary, RunSummary)> {
    match (forward, back) {
        (Ok(f), Ok(b)) => Ok((f, b)),
        (Err(e), _) | (_, Err(e)) if e.kind() != crate::error::ErrorKind::Interrupted => Err(e),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Records where the leg that does not load starts — now, before the
/// other leg's load writes anything — unless it holds a start already (a
/// checkpoint of its own, or a start recorded by an interrupted first
/// run).
async fn fix_start(
    leg: &Pipeline,
    restart: bool,
    ends: &LegEnds,
    state: &StateStore,
) -> Result<()> {
    if !restart
        && (state.stream_start(&leg.name)?.is_some()
            || super::cdc::stream_checkpoint(&*ends.target)
                .await?
                .is_some())
    {
        return Ok(());
    }
    let changes = ends
        .source
        .changes(&leg.change_options())?
        .ok_or_else(|| no_change_stream(leg))?;
    // The tables this side has now: the first load may create the rest
    // (which is no missing table).
    let schemas: Vec<_> = ends
        .source
        .discover(&leg.selection)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    let position = changes.current_position(&schemas).await?;
    info!(
        leg = leg.name,
        ?position,
        "the leg back starts here, before the first load"
    );
    state.set_stream_start(&leg.name, &position)?;
    Ok(())
}

fn no_change_stream(leg: &Pipeline) -> Error {
    Error::Config(format!(
        "{}: a two-way sync reads both sides' change logs, which `{}://` has not",
        leg.source,
        leg.source.scheme()
    ))
}

/// One leg to run.
struct LegRun<'a> {
    pipeline: &'a Pipeline,
    restart: bool,
    ends: &'a LegEnds,
    /// Start once this target (the other leg's) holds its stream
    /// checkpoint: its first load is copied.
    after_load_into: Option<&'a dyn Target>,
    state: Arc<StateStore>,
    progress: Arc<Progress>,
    stop: Shutdown,
}

/// Runs one leg as a change stream; its failure stops the other leg.
async fn run_leg(leg: LegRun<'_>) -> Result<RunSummary> {
    let outcome = async {
        if let Some(loaded) = leg.after_load_into {
            wait_for_load(loaded, &leg.stop).await?;
        }
        super::cdc::run(
            leg.pipeline,
            leg.restart,
            leg.pipeline.mode == RunMode::FullCdc,
            leg.ends.source.clone(),
            leg.ends.target.clone(),
            leg.state.clone(),
            leg.progress.clone(),
            leg.stop.clone(),
        )
        .await
    }
    .await;
    if outcome.is_err() {
        leg.stop.trigger();
    }
    outcome
}

/// Waits until `target` holds the loading leg's stream checkpoint.
async fn wait_for_load(target: &dyn Target, stop: &Shutdown) -> Result<()> {
    loop {
        if super::cdc::stream_checkpoint(target).await?.is_some() {
            return Ok(());
        }
        tokio::select! {
            () = stop.wait() => return Err(Error::Interrupted),
            () = tokio::time::sleep(LOAD_POLL) => {}
        }
    }
}
