//! A compiled conflict resolver: loaded and sandboxed exactly as a
//! transform is (same engine, compile cache, size and compile-time limits,
//! nothing importable but `host`), but built against the `resolver` world.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::ResolveError;
use super::instance::ConflictResolver;
use crate::bindings::resolver::ResolverPre;
use crate::error::{Error, Result};
use crate::host::{HostState, LogBudget};
use crate::plugin::check_imports;
use crate::runtime::{Limits, LoadLimits, PluginRuntime};

pub struct ResolverPlugin {
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the file.
    pub hash: String,
    /// `plugin NAME (PATH, sha256 …)`, for messages.
    pub place: String,
    pub(crate) pre: ResolverPre<HostState>,
    pub(crate) engine: wasmtime::Engine,
    /// What the plugin may still log, shared by all its instances.
    pub(crate) log: Arc<Mutex<LogBudget>>,
}

impl ResolverPlugin {
    /// Reads, checks and compiles (or loads from the cache) a resolver
    /// plugin within `load`'s limits. A plugin of another world (a
    /// transform) or one importing more than `host` is refused.
    pub fn load(runtime: &PluginRuntime, path: &Path, load: LoadLimits) -> Result<Arc<Self>> {
        let (file, component) = runtime.compile_file(path, load)?;
        check_imports(runtime, &component, &file.place)?;
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .and_then(ResolverPre::new)
            .map_err(|e| {
                Error::Plugin(format!(
                    "{} is not a conflict resolver (world `resolver` of dmp:transform@0.1.0): {e:#}",
                    file.place
                ))
            })?;
        let log = Arc::new(Mutex::new(LogBudget::new(
            file.name.clone(),
            Instant::now(),
        )));
        Ok(Arc::new(ResolverPlugin {
            name: file.name,
            path: file.path,
            hash: file.hash,
            place: file.place,
            pre,
            engine: runtime.engine.clone(),
            log,
        }))
    }

    /// Opens the resolver with the pipeline's settings for it, each call
    /// under `limits`. The settings are checked here: an error stops the
    /// pipeline before any change moves.
    pub fn open(
        self: &Arc<Self>,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> std::result::Result<ConflictResolver, ResolveError> {
        ConflictResolver::open(self.clone(), config, limits)
    }
}
