//! One plugin instance opened for one table: its own store, memory cap and
//! time limit. A trap poisons an instance; the caller drops it.

use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap};

use super::bindings::{Plugin, wit};
use super::guest_text::{MAX_ERROR_BYTES, capped};
use super::host::HostState;
use super::limiter::{OverBudget, SandboxLimiter};
use super::plugin::LoadedPlugin;
use super::runtime::{EPOCH_TICK, Limits};

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The plugin returned an error.
    Refused(String),
    /// It ran past its time limit.
    Timeout,
    /// It tried to grow its memories and tables past the cap.
    Memory,
    /// It trapped (a panic, an invalid operation).
    Trap(String),
}

impl Failure {
    /// The plugin's own error, cut to a bound: it is copied into every
    /// row of the batch it fails.
    fn refused(message: String) -> Failure {
        Failure::Refused(capped(message, MAX_ERROR_BYTES))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(message) => write!(f, "{message}"),
            Failure::Timeout => f.write_str("ran past its time limit"),
            Failure::Memory => f.write_str("ran past its memory limit"),
            Failure::Trap(reason) => write!(f, "trapped: {reason}"),
        }
    }
}

pub(crate) struct Instance {
    store: Store<HostState>,
    bindings: Plugin,
    transformer: ResourceAny,
    limits: Limits,
}

fn deadline_ticks(limits: &Limits) -> u64 {
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
        let state = HostState {
            limiter: SandboxLimiter::new(limits.memory_bytes),
            plugin: plugin.name.clone(),
            table: table.to_string(),
            log: plugin.log.clone(),
            last_error: None,
        };
        let mut store = Store::new(&plugin.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(&limits));
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

/// Names the cause of a failed call. A guest panic arrives as an
/// `unreachable` trap; the SDK logs the panic message just before, so it is
/// taken from the instance's last error line.
fn classify(store: &Store<HostState>, e: &wasmtime::Error) -> Failure {
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
