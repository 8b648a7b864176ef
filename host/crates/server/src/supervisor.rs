//! The pipelines the service runs: one engine session each, started,
//! stopped, paused and resumed through the API, watched every second (the
//! status, rates, lag history, events and metrics come from here), and
//! brought back after the service restarts as they were.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::definitions::{Desired, read_pipeline};
use crate::error::{Result, ServeError};
use crate::metrics;
use crate::service::Service;
use dmp_engine::{Progress, RunObserver, RunSummary, Session, SessionHandle, Written};

/// The states a pipeline can be in, as the API names them.
pub const STATES: &[&str] = &[
    "idle",
    "running",
    "streaming",
    "paused",
    "done",
    "failed",
    "stopped",
];

/// One sample a second, an hour of lag kept.
const LAG_POINTS: usize = 3600;
const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TableStatus {
    pub name: String,
    pub phase: String,
    pub rows_done: u64,
    pub rows_total: u64,
    pub rows_per_s: f64,
    /// Remaining rows over the current speed; none while it is unknown.
    pub eta_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LagStatus {
    pub ms: Option<u64>,
    pub changes: u64,
    pub transactions: u64,
}

impl LagStatus {
    fn of(stream: &dmp_engine::StreamProgress) -> Self {
        LagStatus {
            ms: (stream.transactions() > 0).then(|| stream.lag_ms()),
            changes: stream.changes(),
            transactions: stream.transactions(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub name: String,
    /// idle | running | streaming | paused | done | failed | stopped
    pub state: String,
    pub mode: String,
    /// The service's number of the current (or last) run.
    pub run: Option<i64>,
    pub tables: Vec<TableStatus>,
    /// The change stream (a two-way sync's from side A to side B).
    pub lag: Option<LagStatus>,
    /// A two-way sync's stream from side B back to side A.
    pub back: Option<LagStatus>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    /// Rows per second over all tables.
    pub rows_per_s: f64,
    /// Where its runs run: `local` (in the service) or `cluster` (handed
    /// to the workers of `dmp serve --cluster`).
    pub place: String,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct LagPoint {
    /// Unix time in milliseconds.
    pub at: i64,
    /// The change stream's lag (a two-way sync's from side A to side B).
    pub lag_ms: u64,
    /// A two-way sync's lag from side B back to side A; absent for a
    /// one-way pipeline and while the leg back has applied nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub back_lag_ms: Option<u64>,
}

/// What a pipeline's watchers hear: its status (every second while it
/// runs, and on each change of state).
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub data: String,
}

/// A pipeline known to the supervisor.
pub struct Slot {
    pub name: String,
    live: Mutex<Live>,
    pub events: broadcast::Sender<Event>,
    lag: Mutex<VecDeque<LagPoint>>,
}

#[derive(Default)]
struct Live {
    state: &'static str,
    mode: String,
    handle: Option<SessionHandle>,
    progress: Option<Arc<Progress>>,
    started_at: Option<String>,
    error: Option<String>,
    run: Option<i64>,
    /// Set by stop and pause: the state the session ends in.
    ending: Option<&'static str>,
    /// Whether the pipeline runs on a schedule (idle between runs).
    scheduled: bool,
    rates: HashMap<String, Rate>,
    /// What the metrics were given of each table's counters so far.
    counted: HashMap<String, Counted>,
    changes_counted: u64,
    /// Counts the sessions started: a watcher watches only its own.
    generation: u64,
    /// The session's runs go to the service's launcher (a cluster).
    launched: bool,
}

#[derive(Clone, Copy)]
struct Rate {
    done: u64,
    at: Instant,
    per_s: f64,
}

#[derive(Default, Clone, Copy)]
struct Counted {
    rows: u64,
    written: u64,
    bytes: u64,
    batches: u64,
    rejected: u64,
    plugin: Duration,
}

impl Slot {
    fn new(name: &str) -> Arc<Slot> {
        Arc::new(Slot {
            name: name.to_string(),
            live: Mutex::new(Live {
                state: "idle",
                ..Live::default()
            }),
            events: broadcast::channel(64).0,
            lag: Mutex::new(VecDeque::new()),
        })
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_active(&self) -> bool {
        self.live()
            .handle
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    pub fn status(&self) -> Status {
        let live = self.live();
        let mut tables = Vec::new();
        let mut total_rate = 0.0;
        let mut lag = None;
        let mut back = None;
        let mut state = live.state;
        if let Some(progress) = &live.progress {
            for t in progress.tables() {
                let rate = live.rates.get(&t.name).map_or(0.0, |r| r.per_s);
                total_rate += rate;
                let remaining = t.total().saturating_sub(t.done());
                tables.push(TableStatus {
                    name: t.name.clone(),
                    phase: t.phase().name().to_string(),
                    rows_done: t.done(),
                    rows_total: t.total(),
                    rows_per_s: rate,
                    eta_s: if t.is_finished() {
                        Some(0.0)
                    } else if rate > 0.0 {
                        Some(remaining as f64 / rate)
                    } else {
                        None
                    },
                });
            }
            if progress.stream.is_active() {
                if state == "running" {
                    state = "streaming";
                }
                lag = Some(LagStatus::of(&progress.stream));
            }
            back = progress
                .back()
                .filter(|b| b.stream.is_active())
                .map(|b| LagStatus::of(&b.stream));
        }
        Status {
            name: self.name.clone(),
            state: state.to_string(),
            mode: live.mode.clone(),
            run: live.run,
            tables,
            lag,
            back,
            error: live.error.clone(),
            started_at: live.started_at.clone(),
            rows_per_s: total_rate,
            place: if live.launched { "cluster" } else { "local" }.to_string(),
        }
    }

    /// The lag samples of the last `minutes`.
    pub fn lag_history(&self, minutes: u64) -> Vec<LagPoint> {
        let since = chrono::Utc::now().timestamp_millis()
            - i64::try_from(minutes.saturating_mul(60_000)).unwrap_or(i64::MAX);
        self.lag
            .lock()
            .map(|lag| lag.iter().filter(|p| p.at >= since).copied().collect())
            .unwrap_or_default()
    }

    fn announce(&self) {
        let status = self.status();
        if let Ok(data) = serde_json::to_string(&status) {
            let _ = self.events.send(Event {
                kind: "status",
                data,
            });
        }
    }

    fn set_state(&self, service: &Service, state: &'static str) {
        self.live().state = state;
        service.metrics.set_state(&self.name, state);
        self.announce();
    }

    /// One second of watching: rates, lag history, metrics, an event.
    fn sample(&self, service: &Service) {
        let now = Instant::now();
        let mut live = self.live();
        let Some(progress) = live.progress.clone() else {
            return;
        };
        let name = self.name.clone();
        for t in progress.tables() {
            let done = t.done();
            let rate = live.rates.entry(t.name.clone()).or_insert(Rate {
                done,
                at: now,
                per_s: 0.0,
            });
            let secs = now.duration_since(rate.at).as_secs_f64();
            if secs >= 0.5 {
                let current = done.saturating_sub(rate.done) as f64 / secs;
                // Smoothed, so that one slow batch does not swing the ETA.
                rate.per_s = if rate.per_s == 0.0 {
                    current
                } else {
                    0.7 * rate.per_s + 0.3 * current
                };
                rate.done = done;
                rate.at = now;
            }
            let label = metrics::table(&name, &t.name);
            let counted = live.counted.entry(t.name.clone()).or_default();
            *counted = count_table(&service.metrics, &label, &t, *counted);
        }
        let label = metrics::pipeline(&name);
        let changes = progress.stream.changes();
        service
            .metrics
            .changes
            .get_or_create(&label)
            .inc_by(changes.saturating_sub(live.changes_counted));
        live.changes_counted = changes.max(live.changes_counted);
        let streaming = applying(&progress.stream);
        let back_lag_ms = progress
            .back()
            .filter(|b| applying(&b.stream))
            .map(|b| b.stream.lag_ms());
        drop(live);
        let lag_ms = progress.stream.lag_ms();
        if streaming {
            service
                .metrics
                .lag_seconds
                .get_or_create(&label)
                .observe(lag_ms as f64 / 1000.0);
            service
                .metrics
                .lag_now_ms
                .get_or_create(&label)
                .set(i64::try_from(lag_ms).unwrap_or(i64::MAX));
        }
        // A two-way sync's point carries both legs: while only side B's
        // changes have been applied, A → B shows what its stream reports
        // (0 until it applies its first batch).
        if (streaming || back_lag_ms.is_some())
            && let Ok(mut lag) = self.lag.lock()
        {
            if lag.len() == LAG_POINTS {
                lag.pop_front();
            }
            lag.push_back(LagPoint {
                at: chrono::Utc::now().timestamp_millis(),
                lag_ms,
                back_lag_ms,
            });
        }
        self.announce();
    }
}

/// Whether `stream` runs and has applied a transaction: its lag means
/// something then.
fn applying(stream: &dmp_engine::StreamProgress) -> bool {
    stream.is_active() && stream.transactions() > 0
}

/// Adds what table `t` did since `counted` to the metrics; returns the
/// new counts.
fn count_table(
    metrics: &crate::metrics::Metrics,
    label: &metrics::TableLabel,
    t: &dmp_engine::TableProgress,
    counted: Counted,
) -> Counted {
    let done = t.done();
    // Handled rows that were not refused reached the target.
    let written = done.saturating_sub(t.rejected());
    let add = |family: &prometheus_client::metrics::family::Family<
        metrics::TableLabel,
        prometheus_client::metrics::counter::Counter,
    >,
               now: u64,
               before: u64| {
        family
            .get_or_create(label)
            .inc_by(now.saturating_sub(before));
    };
    add(&metrics.rows_read, done, counted.rows);
    add(&metrics.rows_written, written, counted.written);
    add(&metrics.bytes_read, t.bytes(), counted.bytes);
    add(&metrics.batches, t.batches(), counted.batches);
    add(&metrics.dead_letters, t.rejected(), counted.rejected);
    let plugin = t.plugin_time();
    let batches = t.batches().saturating_sub(counted.batches);
    if plugin > counted.plugin && batches > 0 {
        // Per batch, as the run's own timing is per batch.
        let per_batch = (plugin - counted.plugin).as_secs_f64() / batches as f64;
        let histogram = metrics.plugin_seconds.get_or_create(label);
        for _ in 0..batches.min(1000) {
            histogram.observe(per_batch);
        }
    }
    Counted {
        rows: done.max(counted.rows),
        written: written.max(counted.written),
        bytes: t.bytes().max(counted.bytes),
        batches: t.batches().max(counted.batches),
        rejected: t.rejected().max(counted.rejected),
        plugin: plugin.max(counted.plugin),
    }
}

/// Every pipeline's slot, by name.
#[derive(Default)]
pub struct Supervisor {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Supervisor {
    /// The slot of `name` (made idle on first use).
    pub fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .entry(name.to_string())
            .or_insert_with(|| Slot::new(name))
            .clone()
    }

    pub fn forget(&self, name: &str) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(name);
        }
    }

    fn all(&self) -> Vec<Arc<Slot>> {
        self.slots
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Starts pipeline `name`'s session (resuming what its last run left
/// unless `restart`); 409 while it runs.
pub fn start(service: &Arc<Service>, name: &str, restart: bool) -> Result<()> {
    let text = service.store.pipeline_text(name, &service.key)?;
    let pipeline = read_pipeline(&text, &service.rules, &*service.connectors)?;
    let slot = service.supervisor.slot(name);
    let mut live = slot.live();
    if live.handle.as_ref().is_some_and(|h| !h.is_finished()) {
        return Err(ServeError::Conflict(format!(
            "pipeline {name} is running already"
        )));
    }
    live.mode = pipeline.mode.as_str().to_string();
    live.scheduled = pipeline.every.is_some();
    live.error = None;
    live.ending = None;
    live.state = "running";
    live.generation += 1;
    let generation = live.generation;
    let mut session = Session::new(pipeline, service.connectors.clone());
    if let Some(launcher) = &service.launcher {
        // Workers read the file as the service keeps it (their own
        // environment fills its references), based where the service
        // bases its relative paths.
        let written = Written {
            path: service.rules.data_root.join(format!("{name}.toml")),
            text,
        };
        session = session.launched_by(launcher.clone(), written);
    }
    live.launched = session.is_launched();
    let observer = SlotObserver {
        slot: slot.clone(),
        service: service.clone(),
    };
    let span = tracing::info_span!("session", pipeline = %name);
    let handle = span.in_scope(|| session.spawn(restart, Box::new(observer)));
    live.handle = Some(handle);
    drop(live);
    service.store.set_desired(name, Desired::Running)?;
    service.metrics.set_state(name, "running");
    slot.announce();
    tokio::spawn(watch(service.clone(), slot, generation));
    Ok(())
}

/// Stops (or pauses) pipeline `name` at its next batch boundary; its
/// checkpoints stay valid and the next start resumes from them. A
/// pipeline run on the cluster is ended there too.
pub async fn stop(service: &Service, name: &str, pause: bool) -> Result<()> {
    let launched = stop_session(service, name, pause)?;
    if launched || launched_by_file(service, name) {
        halt_elsewhere(service, name).await?;
    }
    Ok(())
}

/// Stops the session of `name`; whether its runs went to the launcher.
fn stop_session(service: &Service, name: &str, pause: bool) -> Result<bool> {
    let slot = service.supervisor.slot(name);
    let mut live = slot.live();
    let running = live.handle.as_ref().is_some_and(|h| !h.is_finished());
    let (desired, state) = if pause {
        (Desired::Paused, "paused")
    } else {
        (Desired::Stopped, "stopped")
    };
    if pause && !running {
        return Err(ServeError::Conflict(format!(
            "pipeline {name} is not running"
        )));
    }
    live.ending = Some(state);
    if let Some(handle) = &live.handle {
        handle.stop();
    }
    if !running {
        live.state = state;
    }
    let launched = live.launched;
    drop(live);
    service.store.set_desired(name, desired)?;
    if !running {
        slot.set_state(service, state);
    }
    Ok(launched)
}

/// Whether the launcher runs stored pipeline `name` (one the service has
/// not started since it began may still run on the cluster).
fn launched_by_file(service: &Service, name: &str) -> bool {
    let Some(launcher) = &service.launcher else {
        return false;
    };
    service
        .store
        .pipeline_text(name, &service.key)
        .and_then(|text| read_pipeline(&text, &service.rules, &*service.connectors))
        .is_ok_and(|pipeline| launcher.runs(&pipeline))
}

/// Ends what the launcher runs of `name`.
async fn halt_elsewhere(service: &Service, name: &str) -> Result<()> {
    let Some(launcher) = &service.launcher else {
        return Ok(());
    };
    let halted = launcher.halt(name).await.map_err(|e| {
        ServeError::Engine(dmp_contract::Error::Layer {
            kind: dmp_contract::ErrorKind::Transient,
            source: format!(
                "pipeline {name} is stopped here, but the cluster did not hear it; stop it again: {}",
                e.report()
            )
            .into(),
        })
    })?;
    tracing::info!(pipeline = %name, halted, "ended in the cluster");
    Ok(())
}

/// Samples `slot` every second while its session runs, then settles
/// the state the session ended in.
async fn watch(service: Arc<Service>, slot: Arc<Slot>, generation: u64) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        if slot.live().generation != generation {
            return;
        }
        slot.sample(&service);
        if !slot.is_active() {
            break;
        }
    }
    let ended = {
        let mut live = slot.live();
        if live.generation == generation {
            live.handle.take()
        } else {
            None
        }
    };
    let Some(handle) = ended else {
        // Taken by the service's own stop.
        return;
    };
    let outcome = handle.join().await;
    let ending = slot.live().ending;
    match outcome {
        // A schedule stopped between runs: no run heard the stop.
        Ok(_) => {
            if let Some(ending) = ending
                && slot.status().state == "idle"
            {
                slot.set_state(&service, ending);
            }
        }
        Err(e) if e.kind() == dmp_contract::ErrorKind::Interrupted => {}
        // A schedule ends on an error every later run would meet too.
        Err(e) => {
            if let Err(e) = service.store.set_desired(&slot.name, Desired::Stopped) {
                tracing::error!(error = %e.message(), "pipeline state not recorded");
            }
            slot.live().error = Some(dmp_contract::mask_secrets(&e.report()));
            slot.set_state(&service, "failed");
        }
    }
}

/// Brings back the pipelines that were running (or paused) when the
/// service stopped, however it stopped.
pub fn restore(service: &Arc<Service>) -> Result<()> {
    for (name, desired) in service.store.pipeline_names()? {
        let slot = service.supervisor.slot(&name);
        match desired {
            Desired::Running => {
                if let Err(e) = start(service, &name, false) {
                    tracing::error!(pipeline = %name, error = %e.message(), "pipeline not brought back");
                    slot.live().error = Some(e.message());
                    slot.set_state(service, "failed");
                }
            }
            Desired::Paused => slot.set_state(service, "paused"),
            Desired::Stopped => service.metrics.set_state(&name, "idle"),
        }
    }
    Ok(())
}

/// Stops every session and waits for each to leave valid checkpoints.
pub async fn stop_all(service: &Service) {
    let mut handles = Vec::new();
    for slot in service.supervisor.all() {
        if let Some(handle) = slot.live().handle.take() {
            handle.stop();
            handles.push((slot.name.clone(), handle));
        }
    }
    for (name, handle) in handles {
        match handle.join().await {
            Ok(_) => tracing::info!(pipeline = %name, "pipeline stopped"),
            Err(e) => {
                tracing::warn!(pipeline = %name, error = %e.report(), "pipeline ended with an error while stopping")
            }
        }
    }
}

/// Hears a session's runs into its slot and the service store.
struct SlotObserver {
    slot: Arc<Slot>,
    service: Arc<Service>,
}

#[async_trait]
impl RunObserver for SlotObserver {
    async fn started(&mut self, progress: &Arc<Progress>) {
        let mode = {
            let mut live = self.slot.live();
            live.progress = Some(progress.clone());
            live.started_at = Some(crate::store::now());
            live.rates.clear();
            live.counted.clear();
            live.changes_counted = 0;
            live.error = None;
            live.mode.clone()
        };
        match self.service.store.begin_service_run(&self.slot.name, &mode) {
            Ok(run) => self.slot.live().run = Some(run),
            Err(e) => tracing::error!(error = %e.message(), "run not recorded"),
        }
        self.slot.set_state(&self.service, "running");
    }

    async fn finished(&mut self, outcome: &dmp_contract::Result<RunSummary>) {
        // The last second's counters, before the run's progress is left.
        self.slot.sample(&self.service);
        let (run, ending, scheduled) = {
            let live = self.slot.live();
            (live.run, live.ending, live.scheduled)
        };
        let name = self.slot.name.clone();
        if let Err(e) = outcome
            && e.kind() != dmp_contract::ErrorKind::Interrupted
        {
            tracing::error!(error = %e.report(), "run failed");
        }
        let (state, status, error) = match outcome {
            Ok(_) if scheduled && ending.is_none() => ("idle", "done", None),
            Ok(_) => (ending.unwrap_or("done"), "done", None),
            Err(e) if e.kind() == dmp_contract::ErrorKind::Interrupted => {
                (ending.unwrap_or("stopped"), "interrupted", None)
            }
            Err(e) => (
                "failed",
                "failed",
                Some(dmp_contract::mask_secrets(&e.report())),
            ),
        };
        if let Some(run) = run {
            let (rows, rejected) = outcome.as_ref().map_or((0, 0), |s| (s.rows, s.rejected));
            if let Err(e) =
                self.service
                    .store
                    .finish_service_run(run, status, rows, rejected, error.as_deref())
            {
                tracing::error!(error = %e.message(), "end of run not recorded");
            }
        }
        self.service
            .metrics
            .runs
            .get_or_create(&metrics::RunLabel {
                pipeline: name.clone(),
                status: status.to_string(),
            })
            .inc();
        // A run that ended by itself is not brought back after a restart;
        // one stopped with the service is.
        let ended_by_itself = !scheduled && ending.is_none() && status != "interrupted";
        if (ended_by_itself || (status == "failed" && !scheduled))
            && let Err(e) = self.service.store.set_desired(&name, Desired::Stopped)
        {
            tracing::error!(error = %e.message(), "pipeline state not recorded");
        }
        self.slot.live().error = error;
        self.slot.set_state(&self.service, state);
    }
}
