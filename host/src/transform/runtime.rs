//! The process-wide wasmtime engine, the epoch ticker that enforces time
//! limits, and the on-disk cache of compiled components.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::Plugin;
use super::host::HostState;
use super::plugin::LoadedPlugin;
use crate::error::{Error, Result};

/// How often the engine's epoch advances: the resolution of time limits.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sandbox limits of one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to.
    pub memory_bytes: usize,
    /// Wall time one call may take.
    pub time_per_call: Duration,
    /// Output rows per input row (fan-out) before a batch is refused.
    pub max_fanout: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            time_per_call: Duration::from_secs(1),
            max_fanout: 100,
        }
    }
}

pub struct PluginRuntime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    cache_dir: PathBuf,
    ticking: Arc<AtomicBool>,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

fn wasm_error(context: String, e: &wasmtime::Error) -> Error {
    Error::Plugin(format!("{context}: {e:?}"))
}

/// The process's runtime: one engine (and one timer thread) for every
/// pipeline a process runs.
static SHARED: std::sync::Mutex<Option<Arc<PluginRuntime>>> = std::sync::Mutex::new(None);

impl PluginRuntime {
    /// The process-wide runtime, created on first use with `cache_dir`.
    pub fn shared(cache_dir: &Path) -> Result<Arc<Self>> {
        let mut shared = SHARED
            .lock()
            .map_err(|_| Error::Plugin("plugin runtime poisoned by a panic".into()))?;
        if let Some(runtime) = shared.as_ref().filter(|r| r.cache_dir == cache_dir) {
            return Ok(runtime.clone());
        }
        let runtime = Self::new(cache_dir)?;
        *shared = Some(runtime.clone());
        Ok(runtime)
    }

    /// A runtime of its own, whose compiled components are cached in `cache_dir`.
    fn new(cache_dir: &Path) -> Result<Arc<Self>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Calls are synchronous; without the async machinery a call into a
        // plugin costs a third as much (WASM-NOTES).
        config.concurrency_support(false);
        let engine = Engine::new(&config)
            .map_err(|e| wasm_error("starting the WebAssembly engine".into(), &e))?;
        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| wasm_error("granting the host interface".into(), &e))?;
        let ticking = Arc::new(AtomicBool::new(true));
        {
            let engine = engine.clone();
            let ticking = ticking.clone();
            std::thread::Builder::new()
                .name("dmp-epoch".into())
                .spawn(move || {
                    while ticking.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::Plugin(format!("starting the plugin timer thread: {e}")))?;
        }
        Ok(Arc::new(PluginRuntime {
            engine,
            linker,
            cache_dir: cache_dir.to_path_buf(),
            ticking,
        }))
    }

    /// Reads, checks and compiles (or loads from the cache) a plugin.
    pub fn load(&self, path: &Path) -> Result<Arc<LoadedPlugin>> {
        let generation = super::plugin::next_generation();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read plugin {}: {e}", path.display())))?;
        let hash: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = path
            .file_stem()
            .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
        let place = format!("plugin {name} ({}, sha256 {})", path.display(), &hash[..12]);
        let component = self.compile(&bytes, &hash, &place)?;
        LoadedPlugin::new(
            self,
            name,
            path.to_path_buf(),
            hash,
            place,
            &component,
            generation,
        )
    }

    fn compile(&self, bytes: &[u8], hash: &str, place: &str) -> Result<Component> {
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        let cached = self.cache_dir.join(format!("{hash}-{compat:016x}.cwasm"));
        if cached.is_file() {
            // SAFETY: the file was written by `Component::serialize` of this
            // engine configuration (its name carries the content hash and the
            // engine's compatibility hash), in a folder only dmp writes.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(plugin = place, error = ?e, "compiled plugin cache unreadable; compiling again")
                }
            }
        }
        let component_bytes = if wasmparser::Parser::is_core_wasm(bytes) {
            // A core module carrying its WIT type (a Rust plugin built for
            // wasm32-unknown-unknown): wrap it into a component.
            wit_component::ComponentEncoder::default()
                .module(bytes)
                .and_then(|encoder| encoder.validate(true).encode())
                .map_err(|e| Error::Plugin(format!("{place}: not a DMP plugin module: {e:#}")))?
        } else {
            bytes.to_vec()
        };
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, &component_bytes).map_err(|e| {
            Error::Plugin(format!("{place}: not a valid WebAssembly component: {e:#}"))
        })?;
        tracing::info!(
            plugin = place,
            ms = started.elapsed().as_millis(),
            "plugin compiled"
        );
        if std::fs::create_dir_all(&self.cache_dir).is_ok()
            && let Ok(serialized) = component.serialize()
        {
            let tmp = cached.with_extension("tmp");
            if std::fs::write(&tmp, serialized)
                .and_then(|()| std::fs::rename(&tmp, &cached))
                .is_err()
            {
                tracing::warn!(plugin = place, "could not cache the compiled plugin");
            }
        }
        Ok(component)
    }
}
