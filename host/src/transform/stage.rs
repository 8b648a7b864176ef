//! The transform stage of a pipeline: for each table, the `[[transform]]`
//! entries that apply to it, in order, each with a pool of plugin instances
//! (one per concurrent chunk; a table's instances keep their state between
//! batches of a run).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bindings::wit;
use super::convert::{decode_result, encode_batch, schema_from_wit, schema_to_wit};
use super::instance::{Failure, Instance};
use super::plugin::LoadedPlugin;
use super::runtime::{Limits, PluginRuntime};
use crate::config::TransformSection;
use crate::error::{Error, Result, ResultExt};
use crate::model::{Batch, Reject, RejectStage, TableSchema, TableSelection, json::row_to_json};

/// One plugin applied to one table.
pub struct WasmTransform {
    plugin: Arc<LoadedPlugin>,
    config: Vec<(String, String)>,
    limits: Limits,
    input: Arc<TableSchema>,
    input_wit: wit::TableSchema,
    output: Arc<TableSchema>,
    idle: Mutex<Vec<Instance>>,
}

impl WasmTransform {
    /// Opens the plugin for a table: an error (the plugin refuses the
    /// table, traps, or declares an unusable schema) stops the pipeline
    /// before any row moves.
    pub fn open(
        plugin: Arc<LoadedPlugin>,
        config: Vec<(String, String)>,
        limits: Limits,
        input: Arc<TableSchema>,
    ) -> Result<Self> {
        let input_wit = schema_to_wit(&input);
        let place = format!("{} on table {}", plugin.place, input.name);
        let (instance, output) = Instance::open(&plugin, limits, &input.name, &config, &input_wit)
            .map_err(|f| Error::Plugin(format!("{place}: opening failed: {f}")))?;
        let output =
            schema_from_wit(&output, &input).map_err(|e| Error::Plugin(format!("{place}: {e}")))?;
        Ok(WasmTransform {
            plugin,
            config,
            limits,
            input,
            input_wit,
            output: Arc::new(output),
            idle: Mutex::new(vec![instance]),
        })
    }

    pub fn output_schema(&self) -> &Arc<TableSchema> {
        &self.output
    }

    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    fn place(&self, batch: &Batch) -> String {
        format!(
            "{} on table {} (batch ending at {})",
            self.plugin.place,
            self.input.name,
            serde_json::to_string(&batch.position).unwrap_or_default()
        )
    }

    /// Transforms a batch (blocking: run it off the async threads). Rows the
    /// plugin refuses join the batch's rejects; a failure of the whole call
    /// is an error naming plugin, table and batch.
    pub fn apply(&self, batch: Batch) -> std::result::Result<Batch, (Batch, String)> {
        let instance = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match instance {
            Some(instance) => instance,
            None => match Instance::open(
                &self.plugin,
                self.limits,
                &self.input.name,
                &self.config,
                &self.input_wit,
            ) {
                Ok((instance, _)) => instance,
                Err(f) => {
                    let message = format!(
                        "{}: opening another instance failed: {f}",
                        self.place(&batch)
                    );
                    return Err((batch, message));
                }
            },
        };
        let started = std::time::Instant::now();
        let encoded = encode_batch(&self.input, &batch.changes);
        let result = match instance.process(&encoded) {
            Ok(result) => result,
            // A trap poisons the instance: it is dropped, not pooled.
            Err(failure) => {
                let kept = matches!(failure, Failure::Refused(_));
                if kept && let Ok(mut idle) = self.idle.lock() {
                    idle.push(instance);
                }
                let message = format!("{}: {failure}", self.place(&batch));
                return Err((batch, message));
            }
        };
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
        let limit = u64::from(encoded.len)
            .saturating_mul(u64::from(self.limits.max_fanout))
            .max(1);
        if u64::from(result.len) > limit {
            let message = format!(
                "{}: returned {} rows for {} (more than {}x fan-out)",
                self.place(&batch),
                result.len,
                encoded.len,
                self.limits.max_fanout
            );
            return Err((batch, message));
        }
        let decoded = match decode_result(&result, &batch.changes, &self.input, &self.output) {
            Ok(decoded) => decoded,
            Err(e) => {
                let message = format!("{}: returned an invalid result: {e}", self.place(&batch));
                return Err((batch, message));
            }
        };
        let mut rejects = batch.rejects;
        for (row, reason) in decoded.rejects {
            rejects.push(Reject {
                stage: RejectStage::Transform,
                error: format!(
                    "{} (sha256 {}): {reason}",
                    self.plugin.name,
                    &self.plugin.hash[..12]
                ),
                row: row_to_json(&self.input, batch.changes[row].row()),
                position: batch.position.clone(),
            });
        }
        tracing::debug!(
            plugin = self.plugin.name,
            table = self.input.name,
            rows_in = encoded.len,
            rows_out = decoded.changes.len(),
            rejected = rejects.len(),
            micros = started.elapsed().as_micros(),
            "batch transformed"
        );
        Ok(Batch {
            table: self.output.clone(),
            chunk: batch.chunk,
            changes: decoded.changes,
            rejects,
            position: batch.position,
            last: batch.last,
        })
    }
}

/// What a plugin made of sample rows (`dmp plugin test`).
#[derive(Debug)]
pub struct SampleOutcome {
    /// Output rows with the input row index each comes from.
    pub rows: Vec<(usize, crate::model::Row)>,
    /// Refused input rows with the reason.
    pub rejects: Vec<(usize, String)>,
}

impl WasmTransform {
    /// Runs sample rows (inserts) through the plugin and reports what
    /// became of each.
    pub fn try_rows(
        &self,
        rows: Vec<crate::model::Row>,
    ) -> std::result::Result<SampleOutcome, String> {
        let changes: Vec<crate::model::Change> =
            rows.into_iter().map(crate::model::Change::Insert).collect();
        let (mut instance, _) = Instance::open(
            &self.plugin,
            self.limits,
            &self.input.name,
            &self.config,
            &self.input_wit,
        )
        .map_err(|f| format!("{}: opening failed: {f}", self.plugin.place))?;
        let result = instance
            .process(&encode_batch(&self.input, &changes))
            .map_err(|f| format!("{}: {f}", self.plugin.place))?;
        let decoded = decode_result(&result, &changes, &self.input, &self.output)
            .map_err(|e| format!("{}: returned an invalid result: {e}", self.plugin.place))?;
        Ok(SampleOutcome {
            rows: decoded
                .origins
                .into_iter()
                .zip(decoded.changes)
                .map(|(origin, change)| match change {
                    crate::model::Change::Insert(row) | crate::model::Change::Delete(row) => {
                        (origin, row)
                    }
                    crate::model::Change::Update { after, .. } => (origin, after),
                })
                .collect(),
            rejects: decoded.rejects,
        })
    }
}

/// Opens, for every table, the `[[transform]]` entries whose `tables`
/// globs match it (all tables when empty), in pipeline order, each stage
/// getting the previous stage's output schema. Each plugin file is loaded
/// once.
pub fn open_chains(
    runtime: &PluginRuntime,
    transforms: &[TransformSection],
    tables: &[Arc<TableSchema>],
) -> Result<HashMap<String, TransformChain>> {
    let mut loaded: HashMap<&str, Arc<LoadedPlugin>> = HashMap::new();
    let mut chains = HashMap::new();
    for table in tables {
        let mut schema = table.clone();
        let mut stages = Vec::new();
        for transform in transforms {
            let selection = TableSelection::new(&transform.tables, &[]).map_err(Error::Config)?;
            if !selection.matches(&table.name) {
                continue;
            }
            let plugin = match loaded.get(transform.plugin.as_str()) {
                Some(plugin) => plugin.clone(),
                None => {
                    let plugin = runtime.load(Path::new(&transform.plugin))?;
                    loaded.insert(&transform.plugin, plugin.clone());
                    plugin
                }
            };
            let limits = Limits {
                memory_bytes: usize::try_from(transform.memory_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
                time_per_call: Duration::from_millis(transform.timeout_ms),
                ..Limits::default()
            };
            let config = transform
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let stage = WasmTransform::open(plugin, config, limits, schema)?;
            schema = stage.output_schema().clone();
            stages.push(Arc::new(stage));
        }
        chains.insert(table.name.clone(), TransformChain::new(stages));
    }
    Ok(chains)
}

/// The transforms of one table, applied in order.
#[derive(Clone, Default)]
pub struct TransformChain {
    stages: Vec<Arc<WasmTransform>>,
}

impl TransformChain {
    pub fn new(stages: Vec<Arc<WasmTransform>>) -> Self {
        TransformChain { stages }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The schema rows have after the chain, given the table's schema.
    pub fn output_schema(&self, input: &Arc<TableSchema>) -> Arc<TableSchema> {
        self.stages
            .last()
            .map_or_else(|| input.clone(), |s| s.output_schema().clone())
    }

    /// Hashes of the plugins of this chain, for checkpoints and dead letters.
    pub fn plugins(&self) -> Vec<String> {
        self.stages
            .iter()
            .map(|s| format!("{}@{}", s.plugin.name, &s.plugin.hash[..12]))
            .collect()
    }

    /// Runs the batch through every stage, off the async threads. On a
    /// failure, gives back the batch as the failing stage got it.
    pub async fn apply(&self, batch: Batch) -> Result<std::result::Result<Batch, (Batch, String)>> {
        if self.stages.is_empty() {
            return Ok(Ok(batch));
        }
        let stages = self.stages.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = batch;
            for stage in &stages {
                batch = stage.apply(batch)?;
            }
            Ok(batch)
        })
        .await
        .context(|| "transform task".to_string())
    }
}

/// Turns every row of a batch a transform failed on into a reject, so the
/// batch's checkpoint can still be written.
pub fn reject_whole_batch(batch: &mut Batch, reason: &str) {
    let rows = std::mem::take(&mut batch.changes);
    for change in rows {
        batch.rejects.push(Reject {
            stage: RejectStage::Transform,
            error: reason.to_string(),
            row: row_to_json(&batch.table, change.row()),
            position: batch.position.clone(),
        });
    }
}
