//! One plugin instance opened for one table: its own store, memory cap and
//! time limit. A trap poisons an instance; the caller drops it.

use wasmtime::component::ResourceAny;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::{Plugin, wit};
use super::host::HostState;
use super::plugin::LoadedPlugin;
use super::runtime::{EPOCH_TICK, Limits};

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The plugin returned an error.
    Refused(String),
    /// It ran past its time limit.
    Timeout,
    /// It tried to grow its memory past the cap.
    Memory,
    /// It trapped (a panic, an invalid operation).
    Trap(String),
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
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .instances(256)
                .tables(256)
                .memories(16)
                .build(),
            plugin: plugin.name.clone(),
            table: table.to_string(),
            last_error: None,
        };
        let mut store = Store::new(&plugin.engine, state);
        store.limiter(|state| &mut state.limits);
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
        let transformer = opened.map_err(Failure::Refused)?;
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
        result.map_err(Failure::Refused)
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
    if text.contains("forcing trap when growing memory") {
        Failure::Memory
    } else {
        Failure::Trap(text.lines().next().unwrap_or("unknown error").to_string())
    }
}
