//! The WebAssembly transform runtime: plugins are components that see rows
//! through the WIT contract in `wit/`, each call sandboxed (memory cap,
//! time limit, no imports but logging). One wasmtime `Engine` per process;
//! compiled components are cached on disk by content hash. Conflict
//! resolvers for two-way sync run in the same sandbox (`resolver`).

// The shared error: this crate meets no driver's.
use dmp_contract::error;

mod bindings;
mod cache;
mod convert;
mod guest_text;
mod host;
mod hot_swap;
mod instance;
mod limiter;
mod plugin;
mod resolver;
mod runtime;
mod stage;

pub use hot_swap::{HotSwap, watch};
pub use instance::Failure as PluginFailure;
pub use plugin::LoadedPlugin;
pub use resolver::{
    BadMerge, Conflict, ConflictKind, ConflictResolver, PluginArbiter, Resolution, ResolveError,
    ResolverPlugin, RowVersion, Settled, Side, error_chain,
};
pub use runtime::{
    DEFAULT_COMPILE_TIMEOUT_MS, DEFAULT_MAX_PLUGIN_MB, Limits, LoadError, LoadLimits, PluginRuntime,
};
pub use stage::{
    SampleOutcome, Traced, TransformChain, WasmTransform, open_chains, reject_whole_batch,
};
