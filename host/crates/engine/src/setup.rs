//! What every runner sets up before rows move (full copy, incremental
//! pass, change stream): the transforms with their hot swap, each table's
//! shape after them, the prepared target, the dead-letter sink.

use std::collections::HashMap;
use std::sync::Arc;

use super::runner::open_transforms;
use super::shutdown::Shutdown;
use crate::error::Result;
use dmp_config::Pipeline;
use dmp_contract::{Start, Target};
use dmp_model::{SchemaObjects, TableSchema};
use dmp_state::{DeadLetterSink, StateStore};
use dmp_transform::{HotSwap, PluginRuntime, TransformChain, watch};

/// A run's transforms: a chain per table, the runtime their plugins live
/// in and the watcher that swaps new versions in, for the run's length.
pub(super) struct Transforms {
    plugins: Option<Arc<PluginRuntime>>,
    chains: HashMap<String, TransformChain>,
    _hot_swap: Option<HotSwap>,
}

impl Transforms {
    /// Opens the pipeline's plugins for `tables` and watches them.
    pub(super) async fn open(pipeline: &Pipeline, tables: &[Arc<TableSchema>]) -> Result<Self> {
        let plan: Vec<_> = tables.iter().map(|t| (t.clone(), Vec::new())).collect();
        let (plugins, chains) = open_transforms(pipeline, &plan).await?;
        let hot_swap = match &plugins {
            Some(runtime) => Some(watch(runtime.clone(), &chains, pipeline.watch_plugins)?),
            None => None,
        };
        Ok(Transforms {
            plugins,
            chains,
            _hot_swap: hot_swap,
        })
    }

    /// The runtime, for tasks that outlive a borrow of this.
    pub(super) fn plugins(&self) -> Option<Arc<PluginRuntime>> {
        self.plugins.clone()
    }

    /// The chain of `table` (empty where no transform applies).
    pub(super) fn chain(&self, table: &str) -> TransformChain {
        self.chains.get(table).cloned().unwrap_or_default()
    }

    /// Each table's shape after its transforms: what the target holds.
    pub(super) fn outputs(&self, tables: &[Arc<TableSchema>]) -> Vec<Arc<TableSchema>> {
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
