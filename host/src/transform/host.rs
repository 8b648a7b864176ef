//! What the host grants a plugin: logging, tagged with plugin and table.

use wasmtime::StoreLimits;

use super::bindings::{Level, dmp};

/// The data of one plugin instance's store.
pub(crate) struct HostState {
    pub limits: StoreLimits,
    pub plugin: String,
    pub table: String,
    /// The last error line the plugin logged (a panic message).
    pub last_error: Option<String>,
}

impl dmp::transform::types::Host for HostState {}

impl dmp::transform::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let (plugin, table) = (self.plugin.as_str(), self.table.as_str());
        match level {
            Level::Trace => tracing::trace!(plugin, table, "{message}"),
            Level::Debug => tracing::debug!(plugin, table, "{message}"),
            Level::Info => tracing::info!(plugin, table, "{message}"),
            Level::Warn => tracing::warn!(plugin, table, "{message}"),
            Level::Error => tracing::error!(plugin, table, "{message}"),
        }
        if matches!(level, Level::Error) {
            self.last_error = Some(message);
        }
    }
}
