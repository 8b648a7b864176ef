//! Two-way sync: the resolver plugin a pipeline names (`[sync] conflict =
//! "resolver"`), loaded once into the slot both legs' targets hold.

use std::sync::Arc;

use crate::error::{Error, Result, ResultExt};
use dmp_config::Pipeline;
use dmp_contract::conflict::{Policy, ResolverSlot};
use dmp_transform::{
    Limits, LoadLimits, PluginArbiter, PluginRuntime, ResolverPlugin, error_chain,
};

/// Loads and opens the pipeline's resolver plugin, if a policy names it.
/// A plugin that does not load or refuses to open stops the sync before
/// any change moves.
pub(crate) async fn load_resolver(pipeline: &Pipeline) -> Result<()> {
    let slots: Vec<ResolverSlot> = std::iter::once(&pipeline.sync.conflict)
        .chain(pipeline.sync.table_conflicts.values())
        .filter_map(|policy| match policy {
            Policy::Resolver(slot) => Some(slot.clone()),
            _ => None,
        })
        .collect();
    // One slot per pipeline file: every policy naming it holds a clone.
    let Some(slot) = slots.into_iter().next() else {
        return Ok(());
    };
    if slot.arbiter().is_some() {
        return Ok(());
    }
    let runtime = PluginRuntime::shared(&pipeline.plugin_cache)?;
    let (path, config) = (slot.plugin.clone(), slot.config.clone());
    // Compiling takes from milliseconds to seconds: off the async threads.
    let arbiter = tokio::task::spawn_blocking(move || -> Result<PluginArbiter> {
        let plugin = ResolverPlugin::load(&runtime, &path, LoadLimits::default())?;
        let resolver = plugin
            .open(config, Limits::default())
            .map_err(|e| Error::Plugin(error_chain(&e)))?;
        Ok(PluginArbiter::new(resolver))
    })
    .await
    .context(|| format!("loading the resolver {}", slot.plugin.display()))??;
    slot.set(Arc::new(arbiter));
    tracing::info!(plugin = %slot.plugin.display(), "conflict resolver loaded");
    Ok(())
}
