//! Conflict resolvers for two-way sync: plugins of the WIT world
//! `resolver`, run in the transforms' sandbox. The host hands a resolver a
//! conflict and gets back what to write; a resolver must be deterministic,
//! since both legs of a sync ask it about the same conflict and must end
//! with the same row ([`ConflictResolver::check_converges`]).

mod arbiter;
mod conflict;
mod error;
mod instance;
mod plugin;
mod wire;

#[cfg(test)]
mod tests;

pub use arbiter::{PluginArbiter, error_chain};
pub use conflict::{Conflict, ConflictKind, Resolution, RowVersion, Settled, Side};
pub use error::{BadMerge, ResolveError};
pub use instance::ConflictResolver;
pub use plugin::ResolverPlugin;
