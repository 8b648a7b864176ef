//! `/metrics`: Prometheus text of what the service's pipelines do, per
//! pipeline and table. Counters only go up (they add what each run
//! moved, sampled every second); names and labels carry no secret and
//! no row data.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabel {
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub pipeline: String,
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabel {
    pub pipeline: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub pipeline: String,
    pub state: String,
}

fn lag_histogram() -> Histogram {
    // 5 ms … ~82 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 15,
    ))
}

fn plugin_histogram() -> Histogram {
    // 10 µs … ~80 ms per row batch.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_01, 2.0, 14,
    ))
}

pub struct Metrics {
    registry: Registry,
    pub rows_read: Family<TableLabel, Counter>,
    pub rows_written: Family<TableLabel, Counter>,
    pub bytes_read: Family<TableLabel, Counter>,
    pub batches: Family<TableLabel, Counter>,
    pub dead_letters: Family<TableLabel, Counter>,
    pub retries: Family<PipelineLabel, Counter>,
    pub changes: Family<PipelineLabel, Counter>,
    pub runs: Family<RunLabel, Counter>,
    pub lag_seconds: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    pub lag_now_ms: Family<PipelineLabel, Gauge>,
    pub plugin_seconds: Family<TableLabel, Histogram, fn() -> Histogram>,
    pub state: Family<StateLabel, Gauge>,
    /// Requests refused for their credentials (401) or role (403): not in
    /// the audit log, which anyone could otherwise fill.
    pub refused: Family<StatusLabel, Counter>,
    encode: Mutex<()>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dmp");
        let rows_read = Family::<TableLabel, Counter>::default();
        let rows_written = Family::<TableLabel, Counter>::default();
        let bytes_read = Family::<TableLabel, Counter>::default();
        let batches = Family::<TableLabel, Counter>::default();
        let dead_letters = Family::<TableLabel, Counter>::default();
        let retries = Family::<PipelineLabel, Counter>::default();
        let changes = Family::<PipelineLabel, Counter>::default();
        let runs = Family::<RunLabel, Counter>::default();
        let lag_seconds =
            Family::<PipelineLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                lag_histogram,
            );
        let lag_now_ms = Family::<PipelineLabel, Gauge>::default();
        let plugin_seconds =
            Family::<TableLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                plugin_histogram,
            );
        let state = Family::<StateLabel, Gauge>::default();
        let refused = Family::<StatusLabel, Counter>::default();
        registry.register("rows_read", "Source rows read", rows_read.clone());
        registry.register(
            "rows_written",
            "Rows written to the target (or refused into dead letters)",
            rows_written.clone(),
        );
        registry.register(
            "bytes_read",
            "Bytes of source rows read",
            bytes_read.clone(),
        );
        registry.register("batches", "Batches written", batches.clone());
        registry.register(
            "dead_letters",
            "Rows stored as dead letters",
            dead_letters.clone(),
        );
        registry.register("retries", "Transient failures retried", retries.clone());
        registry.register("changes", "Change stream changes applied", changes.clone());
        registry.register("runs", "Runs ended, by outcome", runs.clone());
        registry.register(
            "lag_seconds",
            "Change stream lag (source commit to target commit), sampled every second",
            lag_seconds.clone(),
        );
        registry.register(
            "lag_milliseconds",
            "Change stream lag now",
            lag_now_ms.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Time of one transform call on a batch",
            plugin_seconds.clone(),
        );
        registry.register(
            "pipeline_state",
            "1 for the state each pipeline is in",
            state.clone(),
        );
        registry.register(
            "http_refused",
            "API requests refused for their credentials (401) or role (403)",
            refused.clone(),
        );
        Metrics {
            registry,
            rows_read,
            rows_written,
            bytes_read,
            batches,
            dead_letters,
            retries,
            changes,
            runs,
            lag_seconds,
            lag_now_ms,
            plugin_seconds,
            state,
            refused,
            encode: Mutex::new(()),
        }
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        let _one = self.encode.lock();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics could not be encoded");
        }
        out
    }

    /// Records that `pipeline` is now in `state` (and in no other).
    pub fn set_state(&self, pipeline: &str, state: &str) {
        for s in crate::supervisor::STATES {
            self.state
                .get_or_create(&StateLabel {
                    pipeline: pipeline.to_string(),
                    state: (*s).to_string(),
                })
                .set(i64::from(*s == state));
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn table(pipeline: &str, table: &str) -> TableLabel {
    TableLabel {
        pipeline: pipeline.to_string(),
        table: table.to_string(),
    }
}

pub fn pipeline(pipeline: &str) -> PipelineLabel {
    PipelineLabel {
        pipeline: pipeline.to_string(),
    }
}
