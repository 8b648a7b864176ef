//! The transform stage of a pipeline: for each table, the `[[transform]]`
//! entries that apply to it, in order, each with a pool of plugin instances
//! (one per concurrent chunk; a table's instances keep their state between
//! batches of a run).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::Duration;

use super::bindings::wit;
use super::convert::{decode_result, encode_batch, schema_from_wit, schema_to_wit};
use super::guest_text::{MAX_ERROR_BYTES, capped};
use super::instance::{Failure, Instance};
use super::plugin::LoadedPlugin;
use super::runtime::{Limits, LoadLimits, PluginRuntime};
use crate::error::{Error, Result, ResultExt};
use dmp_config::TransformSection;
use dmp_model::{Batch, Reject, RejectStage, TableSchema, TableSelection, json::row_to_json};

/// One version of a plugin opened for a table, with its idle instances.
struct Version {
    plugin: Arc<LoadedPlugin>,
    idle: Mutex<Vec<Instance>>,
}

/// One plugin applied to one table. The plugin can be swapped while the
/// pipeline runs: each batch pins the version it starts with, so batches in
/// flight finish on the old one.
pub struct WasmTransform {
    current: ArcSwap<Version>,
    config: Vec<(String, String)>,
    limits: Limits,
    input: Arc<TableSchema>,
    input_wit: wit::TableSchema,
    output: Arc<TableSchema>,
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
        let (instance, output) = Self::open_version(&plugin, &config, limits, &input, &input_wit)
            .map_err(Error::Plugin)?;
        Ok(WasmTransform {
            current: ArcSwap::from_pointee(Version {
                plugin,
                idle: Mutex::new(vec![instance]),
            }),
            config,
            limits,
            input,
            input_wit,
            output: Arc::new(output),
        })
    }

    fn open_version(
        plugin: &LoadedPlugin,
        config: &[(String, String)],
        limits: Limits,
        input: &TableSchema,
        input_wit: &wit::TableSchema,
    ) -> std::result::Result<(Instance, TableSchema), String> {
        let place = format!("{} on table {}", plugin.place, input.name);
        let (instance, output) = Instance::open(plugin, limits, &input.name, config, input_wit)
            .map_err(|f| format!("{place}: opening failed: {f}"))?;
        let output = schema_from_wit(&output, input).map_err(|e| format!("{place}: {e}"))?;
        Ok((instance, output))
    }

    /// Installs a new version of the plugin if it opens for this table with
    /// the same output schema and is newer than the running one; otherwise
    /// the running version stays and the reason is returned.
    pub fn swap(&self, plugin: Arc<LoadedPlugin>) -> std::result::Result<bool, String> {
        let running = self.current.load();
        if plugin.hash == running.plugin.hash || plugin.generation <= running.plugin.generation {
            return Ok(false);
        }
        let (instance, output) = Self::open_version(
            &plugin,
            &self.config,
            self.limits,
            &self.input,
            &self.input_wit,
        )?;
        if output != *self.output {
            return Err(format!(
                "{} on table {}: its output schema differs from the running version's",
                plugin.place, self.input.name
            ));
        }
        let new = Arc::new(Version {
            plugin,
            idle: Mutex::new(vec![instance]),
        });
        // Two reloads may finish out of order: only ever move forward.
        let previous = self.current.rcu(|current| {
            if new.plugin.generation > current.plugin.generation {
                new.clone()
            } else {
                current.clone()
            }
        });
        Ok(previous.plugin.generation < new.plugin.generation)
    }

    /// The limits the running version was loaded under.
    pub fn load_limits(&self) -> LoadLimits {
        self.current.load().plugin.load_limits
    }

    /// The plugin file this transform runs.
    pub fn plugin_path(&self) -> std::path::PathBuf {
        self.current.load().plugin.path.clone()
    }

    /// `name@sha256-prefix` of the running version.
    pub fn version(&self) -> String {
        let plugin = &self.current.load().plugin;
        format!("{}@{}", plugin.name, &plugin.hash[..12])
    }

    pub fn output_schema(&self) -> &Arc<TableSchema> {
        &self.output
    }

    fn place(&self, plugin: &LoadedPlugin, batch: &Batch) -> String {
        format!(
            "{} on table {} (batch ending at {})",
            plugin.place,
            self.input.name,
            serde_json::to_string(&batch.position).unwrap_or_default()
        )
    }

    /// Transforms a batch (blocking: run it off the async threads). Rows the
    /// plugin refuses join the batch's rejects; a failure of the whole call
    /// is an error naming plugin, table and batch. Tells where each output
    /// row and each new reject came from in the input.
    // The failing batch is handed back whole by design (its rows become
    // rejects); it moves once per batch, boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    fn apply(&self, mut batch: Batch) -> std::result::Result<Applied, (Batch, String)> {
        let version = self.current.load_full();
        let plugin = &*version.plugin;
        let instance = version.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match instance {
            Some(instance) => instance,
            None => match Instance::open(
                plugin,
                self.limits,
                &self.input.name,
                &self.config,
                &self.input_wit,
            ) {
                Ok((instance, _)) => instance,
                Err(f) => {
                    let message = format!(
                        "{}: opening another instance failed: {f}",
                        self.place(plugin, &batch)
                    );
                    return Err((batch, message));
                }
            },
        };
        let started = std::time::Instant::now();
        let encoded = encode_batch(&self.input, &batch.changes);
        // One span per call: rows in and out, refused rows, time in the plugin.
        let span = tracing::debug_span!(
            "plugin_call",
            plugin = %plugin.name,
            hash = &plugin.hash[..12],
            table = %self.input.name,
            rows_in = encoded.len,
            rows_out = tracing::field::Empty,
            rejected = tracing::field::Empty,
            micros = tracing::field::Empty,
        );
        let _entered = span.enter();
        let result = match instance.process(&encoded) {
            Ok(result) => result,
            // A trap poisons the instance: it is dropped, not pooled.
            Err(failure) => {
                let kept = matches!(failure, Failure::Refused(_));
                if kept && let Ok(mut idle) = version.idle.lock() {
                    idle.push(instance);
                }
                let message = format!("{}: {failure}", self.place(plugin, &batch));
                return Err((batch, message));
            }
        };
        if let Ok(mut idle) = version.idle.lock() {
            idle.push(instance);
        }
        let limit = u64::from(encoded.len)
            .saturating_mul(u64::from(self.limits.max_fanout))
            .max(1);
        if u64::from(result.len) > limit {
            let message = format!(
                "{}: returned {} rows for {} (more than {}x fan-out)",
                self.place(plugin, &batch),
                result.len,
                encoded.len,
                self.limits.max_fanout
            );
            return Err((batch, message));
        }
        let decoded = match decode_result(&result, &mut batch.changes, &self.input, &self.output) {
            Ok(decoded) => decoded,
            Err(e) => {
                let message = format!(
                    "{}: returned an invalid result: {e}",
                    self.place(plugin, &batch)
                );
                return Err((batch, message));
            }
        };
        let mut rejects = batch.rejects;
        let refused: Vec<usize> = decoded.rejects.iter().map(|(row, _)| *row).collect();
        for (row, reason) in decoded.rejects {
            let reason = capped(reason, MAX_ERROR_BYTES);
            rejects.push(Reject {
                stage: RejectStage::Transform,
                error: format!("{} (sha256 {}): {reason}", plugin.name, &plugin.hash[..12]),
                row: row_to_json(&self.input, batch.changes[row].row()),
                position: batch.position.clone(),
            });
        }
        span.record("rows_out", decoded.changes.len());
        span.record("rejected", rejects.len());
        span.record("micros", started.elapsed().as_micros());
        tracing::debug!(parent: &span, "batch transformed");
        let batch = Batch {
            table: self.output.clone(),
            chunk: batch.chunk,
            changes: decoded.changes,
            rejects,
            wire: None,
            position: batch.position,
            last: batch.last,
        };
        Ok(Applied {
            batch,
            version: format!("{}@{}", plugin.name, &plugin.hash[..12]),
            origins: decoded.origins,
            refused,
        })
    }
}

/// A batch one plugin transformed, with the input row each output row and
/// each of the plugin's rejects (the last ones of `batch.rejects`) came from.
struct Applied {
    batch: Batch,
    version: String,
    origins: Vec<usize>,
    refused: Vec<usize>,
}

/// What a plugin made of sample rows (`dmp plugin test`).
#[derive(Debug)]
pub struct SampleOutcome {
    /// Output rows with the input row index each comes from.
    pub rows: Vec<(usize, dmp_model::Row)>,
    /// Refused input rows with the reason.
    pub rejects: Vec<(usize, String)>,
}

impl WasmTransform {
    /// Runs sample rows (inserts) through the plugin and reports what
    /// became of each.
    pub fn try_rows(
        &self,
        rows: Vec<dmp_model::Row>,
    ) -> std::result::Result<SampleOutcome, String> {
        let mut changes: Vec<dmp_model::Change> =
            rows.into_iter().map(dmp_model::Change::Insert).collect();
        let version = self.current.load_full();
        let place = &version.plugin.place;
        let (mut instance, _) = Instance::open(
            &version.plugin,
            self.limits,
            &self.input.name,
            &self.config,
            &self.input_wit,
        )
        .map_err(|f| format!("{place}: opening failed: {f}"))?;
        let result = instance
            .process(&encode_batch(&self.input, &changes))
            .map_err(|f| format!("{place}: {f}"))?;
        let decoded = decode_result(&result, &mut changes, &self.input, &self.output)
            .map_err(|e| format!("{place}: returned an invalid result: {e}"))?;
        Ok(SampleOutcome {
            rows: decoded
                .origins
                .into_iter()
                .zip(decoded.changes)
                .map(|(origin, change)| match change {
                    dmp_model::Change::Insert(row) | dmp_model::Change::Delete(row) => {
                        (origin, row)
                    }
                    dmp_model::Change::Update { after, .. } => (origin, after),
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
                    let path = Path::new(&transform.plugin);
                    if !path.is_file() {
                        return Err(Error::Config(format!(
                            "{}.plugin: {} does not exist or is not a file",
                            transform.place,
                            path.display()
                        )));
                    }
                    let load = LoadLimits {
                        max_bytes: transform.max_plugin_mb.saturating_mul(1 << 20),
                        compile_timeout: Duration::from_millis(transform.compile_timeout_ms),
                    };
                    let plugin = runtime.load(path, load)?;
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

    /// The running versions of this chain's plugins.
    pub fn plugins(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.version()).collect()
    }

    pub fn stages(&self) -> &[Arc<WasmTransform>] {
        &self.stages
    }

    /// Runs the batch through every stage, off the async threads, and names
    /// the plugin versions that did it. Rows refused by any stage are kept
    /// as the chain got them (the source's row, which `dmp dlq replay`
    /// sends through the whole chain again). On a failure, gives back the
    /// chain's input rows that reached the failing stage, in the input
    /// schema.
    #[allow(clippy::result_large_err)] // See `WasmTransform::apply`.
    pub async fn apply(
        &self,
        batch: Batch,
    ) -> Result<std::result::Result<(Batch, String), (Batch, String)>> {
        Ok(self
            .apply_traced(batch)
            .await?
            .map(|traced| (traced.batch, traced.versions)))
    }

    /// `apply`, also telling which input change each output change came
    /// from (a change stream names each output by its source change).
    #[allow(clippy::result_large_err)] // See `WasmTransform::apply`.
    pub async fn apply_traced(
        &self,
        batch: Batch,
    ) -> Result<std::result::Result<Traced, (Batch, String)>> {
        if self.stages.is_empty() {
            let origins = (0..batch.changes.len()).collect();
            return Ok(Ok(Traced {
                batch,
                versions: String::new(),
                origins,
            }));
        }
        let stages = self.stages.clone();
        tokio::task::spawn_blocking(move || {
            // Later stages see rows earlier ones made: keep the input to
            // name the source row of what they refuse.
            let input = (stages.len() > 1).then(|| (batch.table.clone(), batch.changes.clone()));
            let mut origins: Vec<usize> = (0..batch.changes.len()).collect();
            let mut batch = batch;
            let mut versions = Vec::with_capacity(stages.len());
            for stage in &stages {
                let earlier = batch.rejects.len();
                let applied = match stage.apply(batch) {
                    Ok(applied) => applied,
                    Err((mut failed, reason)) => {
                        if let Some((schema, rows)) = &input {
                            // Origins ascend: dedup leaves each source row once.
                            origins.dedup();
                            failed.table = schema.clone();
                            failed.changes = origins
                                .iter()
                                .filter_map(|&i| rows.get(i).cloned())
                                .collect();
                        }
                        return Err((failed, reason));
                    }
                };
                batch = applied.batch;
                if let Some((schema, rows)) = &input {
                    let new = batch.rejects.iter_mut().skip(earlier);
                    for (reject, row) in new.zip(&applied.refused) {
                        if let Some(source) = origins.get(*row).and_then(|&i| rows.get(i)) {
                            reject.row = row_to_json(schema, source.row());
                        }
                    }
                }
                origins = applied
                    .origins
                    .iter()
                    .filter_map(|&o| origins.get(o).copied())
                    .collect();
                versions.push(applied.version);
            }
            Ok(Traced {
                batch,
                versions: versions.join(","),
                origins,
            })
        })
        .await
        .context(|| "transform task".to_string())
    }
}

/// A batch through a chain: the plugin versions that made it, and for
/// each of its changes the index of the input change it came from
/// (ascending; one input may give several).
pub struct Traced {
    pub batch: Batch,
    pub versions: String,
    pub origins: Vec<usize>,
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
