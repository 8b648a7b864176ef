//! What every runner sets up before rows move (full copy, incremental
//! pass, change stream): the transforms with their hot swap, each table's
//! shape after them, the prepared target, the dead-letter sink.

use std::collections::HashMap;
use std::sync::Arc;

use super::shutdown::Shutdown;
use crate::error::{Result, ResultExt};
use dmp_config::Pipeline;
use dmp_contract::{Start, Target};
use dmp_model::{SchemaObjects, TableSchema};
use dmp_state::{DeadLetterSink, StateStore};
use dmp_transform::{HotSwap, PluginRuntime, TransformChain, open_chains, watch};

/// A pipeline's transforms: a chain per table and the runtime their
/// plugins live in (and, for a run, the watcher that swaps new versions
/// in), kept for as long as they are used. Runs, `dmp plan`, replays and
/// verify all open them here.
pub struct Transforms {
    plugins: Option<Arc<PluginRuntime>>,
    chains: HashMap<String, TransformChain>,
    _hot_swap: Option<HotSwap>,
}

impl Transforms {
    /// Loads the pipeline's plugins and opens them for `tables`.
    pub async fn open(pipeline: &Pipeline, tables: &[Arc<TableSchema>]) -> Result<Self> {
        if pipeline.transforms.is_empty() {
            return Ok(Transforms {
                plugins: None,
                chains: HashMap::new(),
                _hot_swap: None,
            });
        }
        let runtime = PluginRuntime::shared(&pipeline.plugin_cache)?;
        let (opener, transforms, tables) = (
            runtime.clone(),
            pipeline.transforms.clone(),
            tables.to_vec(),
        );
        // Compiling a plugin takes from milliseconds to seconds: off the
        // async threads.
        let chains =
            tokio::task::spawn_blocking(move || open_chains(&opener, &transforms, &tables))
                .await
                .context(|| "opening transforms".to_string())??;
        Ok(Transforms {
            plugins: Some(runtime),
            chains,
            _hot_swap: None,
        })
    }

    /// As [`Transforms::open`], for a run: new plugin versions are swapped
    /// in while it goes on (`[run] watch_plugins`, or on SIGHUP).
    pub(super) async fn open_watched(
        pipeline: &Pipeline,
        tables: &[Arc<TableSchema>],
    ) -> Result<Self> {
        let mut transforms = Transforms::open(pipeline, tables).await?;
        if let Some(runtime) = &transforms.plugins {
            transforms._hot_swap = Some(watch(
                runtime.clone(),
                &transforms.chains,
                pipeline.watch_plugins,
            )?);
        }
        Ok(transforms)
    }

    /// The runtime, for tasks that outlive a borrow of this.
    pub(super) fn plugins(&self) -> Option<Arc<PluginRuntime>> {
        self.plugins.clone()
    }

    /// The chain of `table` (empty where no transform applies).
    pub fn chain(&self, table: &str) -> TransformChain {
        self.chains.get(table).cloned().unwrap_or_default()
    }

    /// Each table's shape after its transforms: what the target holds.
    pub fn outputs(&self, tables: &[Arc<TableSchema>]) -> Vec<Arc<TableSchema>> {
        tables
            .iter()
            .map(|table| {
                self.chains
                    .get(&table.name)
                    .map_or_else(|| table.clone(), |chain| chain.output_schema(table))
            })
            .collect()
    }
}

/// Prepares the target's objects and `outputs` for a `start`, again after
/// a passing failure.
pub(super) async fn prepare_target(
    pipeline: &Pipeline,
    target: &dyn Target,
    objects: &SchemaObjects,
    outputs: &[Arc<TableSchema>],
    start: Start,
    shutdown: &Shutdown,
) -> Result<()> {
    super::retry::retrying_step(
        &pipeline.retry,
        shutdown,
        "preparing the target",
        || async {
            target.prepare_objects(objects).await?;
            target.prepare(outputs, start).await
        },
    )
    .await
}

/// Where run `run`'s refused rows go, by the pipeline's `on_error`.
pub(super) fn dead_letter_sink(
    pipeline: &Pipeline,
    state: &Arc<StateStore>,
    run: i64,
) -> Arc<DeadLetterSink> {
    Arc::new(DeadLetterSink::new(
        state.clone(),
        pipeline.name.clone(),
        run,
        pipeline.on_error,
    ))
}
