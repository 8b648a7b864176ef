//! A compiled plugin, checked to import nothing but what the host grants,
//! ready to be instantiated per table.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::Component;

use super::bindings::PluginPre;
use super::host::{HostState, LogBudget};
use super::runtime::{LoadLimits, PluginRuntime};
use crate::error::{Error, Result};

/// The only import a plugin may have.
const GRANTED: &str = "dmp:transform/host@0.1.0";
/// Imports the host answers although plugins need not use them: the types
/// interface carries no functions.
const TYPES: &str = "dmp:transform/types@0.1.0";

pub struct LoadedPlugin {
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the file, recorded with every batch it transforms.
    pub hash: String,
    /// `plugin NAME (PATH, sha256 …)`, for messages.
    pub place: String,
    pub(crate) pre: PluginPre<HostState>,
    pub(crate) engine: wasmtime::Engine,
    /// Order of loading: a hot swap only moves to a later generation.
    pub generation: u64,
    /// The limits it was loaded under; a new version is loaded under them.
    pub load_limits: LoadLimits,
    /// What the plugin may still log, shared by all its instances.
    pub(crate) log: Arc<Mutex<LogBudget>>,
}

static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The next load's generation, taken when its file is read.
pub(crate) fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What was read of a plugin file before it was compiled.
pub(crate) struct PluginFile {
    pub name: String,
    pub path: PathBuf,
    pub hash: String,
    pub place: String,
    pub generation: u64,
    pub load_limits: LoadLimits,
}

/// Refuses a component that imports anything but what the host grants.
pub(crate) fn check_imports(
    runtime: &PluginRuntime,
    component: &Component,
    place: &str,
) -> Result<()> {
    let ty = component.component_type();
    let refused: Vec<&str> = ty
        .imports(&runtime.engine)
        .map(|(name, _)| name)
        .filter(|name| *name != GRANTED && *name != TYPES)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::Plugin(format!(
        "{place} imports {}: a plugin may import only {GRANTED} (no filesystem, network, environment or clock)",
        refused.join(", ")
    )))
}

impl LoadedPlugin {
    pub(crate) fn new(
        runtime: &PluginRuntime,
        file: PluginFile,
        component: &Component,
    ) -> Result<Arc<Self>> {
        let PluginFile {
            name,
            path,
            hash,
            place,
            generation,
            load_limits,
        } = file;
        check_imports(runtime, component, &place)?;
        let pre = runtime
            .linker
            .instantiate_pre(component)
            .and_then(PluginPre::new)
            .map_err(|e| {
                Error::Plugin(format!(
                    "{place} does not fit the dmp:transform@0.1.0 contract: {e:#}"
                ))
            })?;
        let log = Arc::new(Mutex::new(LogBudget::new(name.clone(), Instant::now())));
        Ok(Arc::new(LoadedPlugin {
            name,
            path,
            hash,
            place,
            pre,
            engine: runtime.engine.clone(),
            generation,
            load_limits,
            log,
        }))
    }
}
