//! One plugin instance opened for one table: its own store, memory cap and
//! time limit. A trap poisons an instance; the caller drops it.

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceAny;
use wasmtime::{Engine, Store, Trap};

use super::bindings::{Plugin, wit};
use super::guest_text::{MAX_ERROR_BYTES, capped};
use super::host::{HostState, LogBudget};
use super::limiter::{OverBudget, SandboxLimiter};
use super::plugin::LoadedPlugin;
use super::runtime::{EPOCH_TICK, Limits};

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The plugin returned an error.
    #[error("{0}")]
    Refused(String),
    /// It ran past its time limit.
    #[error("ran past its time limit")]
    Timeout,
    /// It tried to grow its memories and tables past the cap.
    #[error("ran past its memory limit")]
    Memory,
    /// It trapped (a panic, an invalid operation).
    #[error("trapped: {0}")]
    Trap(String),
}

impl Failure {
    /// The plugin's own error, cut to a bound: it is copied into every
    /// row of the batch it fails.
    pub(crate) fn refused(message: String) -> Failure {
        Failure::Refused(capped(message, MAX_ERROR_BYTES))
    }
}

pub(crate) struct Instance {
    store: Store<HostState>,
    bindings: Plugin,
    transformer: ResourceAny,
    limits: Limits,
}

/// Epoch ticks a call may run for under `limits`.
pub(crate) fn deadline_ticks(limits: &Limits) -> u64 {
    let tick = EPOCH_TICK.as_millis().max(1);
    u64::try_from(limits.time_per_call.as_millis().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

impl Instance {
    /// Instantiates the plugin and opens it for a table; returns the
    /// instance and the output schema it declares.
    pub(crate) fn open(
        plugin: &LoadedPlugin,
        limits: Limits,
        table: &str,
        config: &[(String, String)],
        input: &wit::TableSchema,
    ) -> Result<(Instance, wit::TableSchema), Failure> {
        let mut store = sandboxed_store(&plugin.engine, &plugin.name, &plugin.log, table, &limits);
        let bindings = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, &e))?;
        let opened = bindings
            .dmp_transform_transform()
            .transformer()
            .call_open(&mut store, config, input)
            .map_err(|e| classify(&store, &e))?;
        let transformer = opened.map_err(Failure::refused)?;
        store.set_epoch_deadline(deadline_ticks(&limits));
        let output = bindings
            .dmp_transform_transform()
            .transformer()
            .call_output_schema(&mut store, transformer)
            .map_err(|e| classify(&store, &e))?;
        Ok((
            Instance {
                store,
                bindings,
                transformer,
                limits,
            },
            output,
        ))
    }

    pub(crate) fn process(&mut self, batch: &wit::Batch) -> Result<wit::BatchResult, Failure> {
        self.store.set_epoch_deadline(deadline_ticks(&self.limits));
        self.store.data_mut().last_error = None;
        let result = self
            .bindings
            .dmp_transform_transform()
            .transformer()
            .call_process(&mut self.store, self.transformer, batch)
            .map_err(|e| classify(&self.store, &e))?;
        result.map_err(Failure::refused)
    }
}

/// A store for one plugin instance: its memory budget, and a deadline
/// armed for the first call.
pub(crate) fn sandboxed_store(
    engine: &Engine,
    plugin: &str,
    log: &Arc<Mutex<LogBudget>>,
    table: &str,
    limits: &Limits,
) -> Store<HostState> {
    let state = HostState {
        limiter: SandboxLimiter::new(limits.memory_bytes),
        plugin: plugin.to_string(),
        table: table.to_string(),
        log: log.clone(),
        last_error: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(deadline_ticks(limits));
    store
}

/// Names the cause of a failed call. A guest panic arrives as an
/// `unreachable` trap; the SDK logs the panic message just before, so it is
/// taken from the instance's last error line.
pub(crate) fn classify(store: &Store<HostState>, e: &wasmtime::Error) -> Failure {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => Failure::Timeout,
            Trap::UnreachableCodeReached => Failure::Trap(match &store.data().last_error {
                Some(message) => format!("panicked: {message}"),
                None => "reached unreachable code (a panic)".into(),
            }),
            other => Failure::Trap(other.to_string()),
        };
    }
    let text = format!("{e:?}");
    if e.downcast_ref::<OverBudget>().is_some() || text.contains("over its limit of") {
        Failure::Memory
    } else {
        Failure::Trap(text.lines().next().unwrap_or("unknown error").to_string())
    }
}
