//! The process-wide wasmtime engine, the epoch ticker that enforces time
//! limits, and loading plugins: size and compile-time limits, and the
//! authenticated on-disk cache of compiled components.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::Plugin;
use super::cache::{CompileCache, default_key_path};
use super::host::HostState;
use super::plugin::{LoadedPlugin, PluginFile};
use crate::error::{Error, Result};

/// How often the engine's epoch advances: the resolution of time limits.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

pub use dmp_config::{DEFAULT_COMPILE_TIMEOUT_MS, DEFAULT_MAX_PLUGIN_MB};

/// Limits on loading a plugin: its file's size and its compilation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    pub max_bytes: u64,
    pub compile_timeout: Duration,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_bytes: DEFAULT_MAX_PLUGIN_MB << 20,
            compile_timeout: Duration::from_millis(DEFAULT_COMPILE_TIMEOUT_MS),
        }
    }
}

/// Why a plugin was refused before it was compiled or while it was.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "plugin {plugin} ({path}) is {bytes} bytes, over the limit of {max} bytes (`max_plugin_mb`)",
        path = path.display()
    )]
    TooLarge {
        plugin: String,
        path: PathBuf,
        bytes: u64,
        max: u64,
    },
    #[error(
        "{place}: compiling took longer than {} (`compile_timeout_ms`); the plugin is refused",
        humantime::format_duration(*timeout)
    )]
    CompileTimeout { place: String, timeout: Duration },
}

impl From<LoadError> for crate::error::Error {
    fn from(e: LoadError) -> Self {
        crate::error::Error::layer(crate::error::ErrorKind::Config, e)
    }
}

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
    /// The key that authenticates cache entries (see `cache.rs`).
    cache_key: PathBuf,
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
            cache_key: default_key_path(cache_dir),
            ticking,
        }))
    }

    /// Reads, checks and compiles (or loads from the cache) a transform
    /// plugin, within `load`'s size and time limits.
    pub fn load(&self, path: &Path, load: LoadLimits) -> Result<Arc<LoadedPlugin>> {
        let (file, component) = self.compile_file(path, load)?;
        LoadedPlugin::new(self, file, &component)
    }

    /// Reads, checks and compiles (or loads from the cache) a plugin file,
    /// whatever world it is built against.
    pub(crate) fn compile_file(
        &self,
        path: &Path,
        load: LoadLimits,
    ) -> Result<(PluginFile, Component)> {
        let generation = super::plugin::next_generation();
        let name = path
            .file_stem()
            .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
        let bytes = read_bounded(path, &name, load.max_bytes)?;
        let hash: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let place = format!("plugin {name} ({}, sha256 {})", path.display(), &hash[..12]);
        let component = self.compile(bytes, &hash, &place, load.compile_timeout)?;
        let file = PluginFile {
            name,
            path: path.to_path_buf(),
            hash,
            place,
            generation,
            load_limits: load,
        };
        Ok((file, component))
    }

    fn compile(
        &self,
        bytes: Vec<u8>,
        hash: &str,
        place: &str,
        timeout: Duration,
    ) -> Result<Component> {
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        let entry = format!("{hash}-{compat:016x}.cwasm");
        let cache = CompileCache::open(&self.cache_dir, &self.cache_key);
        if let Some(compiled) = cache.as_ref().and_then(|c| c.get(&entry, place)) {
            // SAFETY: deserializing runs the bytes as native code. They
            // carry a valid HMAC under this user's private key, bound to
            // the entry's name (the plugin's content hash and this engine's
            // compatibility hash): this user's dmp serialized them from
            // this very plugin with this engine configuration.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize(&self.engine, &compiled) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(plugin = place, error = ?e, "compiled plugin cache unreadable; compiling again")
                }
            }
        }
        let component = self.compile_within(bytes, place, timeout)?;
        if let Some(cache) = &cache
            && let Ok(serialized) = component.serialize()
        {
            cache.put(&entry, &serialized, place);
        }
        Ok(component)
    }

    /// Compiles on a thread of its own and waits at most `timeout`. A
    /// compilation cannot be interrupted: one past its time is left to
    /// finish in the background, its result dropped, and the plugin
    /// refused.
    fn compile_within(&self, bytes: Vec<u8>, place: &str, timeout: Duration) -> Result<Component> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let engine = self.engine.clone();
        let owned_place = place.to_string();
        std::thread::Builder::new()
            .name("dmp-compile".into())
            .spawn(move || {
                // The receiver may have given up: nobody to tell then.
                let _ = tx.send(compile_component(&engine, &bytes, &owned_place));
            })
            .map_err(|e| Error::Plugin(format!("{place}: starting the compiler thread: {e}")))?;
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(LoadError::CompileTimeout {
                place: place.to_string(),
                timeout,
            }
            .into()),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Plugin(format!(
                "{place}: the compiler stopped without a result (a panic)"
            ))),
        }
    }
}

/// Turns a plugin file into a compiled component.
fn compile_component(engine: &Engine, bytes: &[u8], place: &str) -> Result<Component> {
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
    let component = Component::new(engine, &component_bytes)
        .map_err(|e| Error::Plugin(format!("{place}: not a valid WebAssembly component: {e:#}")))?;
    tracing::info!(
        plugin = place,
        ms = started.elapsed().as_millis(),
        "plugin compiled"
    );
    Ok(component)
}

/// The plugin file, refused unread when larger than `max` bytes (read
/// through a bound too: the file may grow meanwhile).
fn read_bounded(path: &Path, name: &str, max: u64) -> Result<Vec<u8>> {
    let unreadable =
        |e: std::io::Error| Error::Config(format!("cannot read plugin {}: {e}", path.display()));
    let too_large = |bytes: u64| LoadError::TooLarge {
        plugin: name.to_string(),
        path: path.to_path_buf(),
        bytes,
        max,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    if len > max {
        return Err(too_large(len).into());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64).into());
    }
    Ok(bytes)
}
