//! Why a resolver gave no usable answer. Every message names the plugin
//! (name, path, hash) and, past opening, the table and the kind of
//! conflict; the plugin's own failure stays the `source`.

use crate::error::{Error, ErrorKind};

use super::conflict::{ConflictKind, Settled};
use crate::instance::Failure;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The resolver refused its settings, or failed while opening.
    #[error("{place}: opening the resolver failed")]
    Open {
        place: String,
        #[source]
        failure: Failure,
    },
    /// The caller built a conflict that does not fit its table; the
    /// resolver was not asked.
    #[error("a {kind} conflict on table {table} does not fit the table: {reason}")]
    Malformed {
        table: String,
        kind: ConflictKind,
        reason: String,
    },
    /// The call failed: the plugin's error, a trap, or its time or memory
    /// limit.
    #[error("{place} on table {table}: resolving a {kind} conflict failed")]
    Call {
        place: String,
        table: String,
        kind: ConflictKind,
        #[source]
        failure: Failure,
    },
    /// The plugin merged a row the table cannot take.
    #[error("{place} on table {table}: the merged row it gave for a {kind} conflict is refused")]
    Merged {
        place: String,
        table: String,
        kind: ConflictKind,
        #[source]
        problem: BadMerge,
    },
    /// The two legs of one conflict would leave different rows.
    #[error(
        "{place} on table {table}: not deterministic: a {kind} conflict leaves {this_leg} on one leg and {other_leg} on the other"
    )]
    Diverged {
        place: String,
        table: String,
        kind: ConflictKind,
        this_leg: Settled,
        other_leg: Settled,
    },
    /// Asked the same conflict twice, it answered differently.
    #[error(
        "{place} on table {table}: not deterministic: a {kind} conflict asked twice leaves {first}, then {again}"
    )]
    Unrepeatable {
        place: String,
        table: String,
        kind: ConflictKind,
        first: Settled,
        again: Settled,
    },
}

impl ResolveError {
    /// A resolver that cannot open is a pipeline that cannot start; past
    /// that, a conflict it cannot decide is a change that cannot be
    /// applied as configured.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ResolveError::Open { .. } => ErrorKind::Config,
            ResolveError::Malformed { .. } => ErrorKind::Fatal,
            ResolveError::Call { .. }
            | ResolveError::Merged { .. }
            | ResolveError::Diverged { .. }
            | ResolveError::Unrepeatable { .. } => ErrorKind::Data,
        }
    }
}

impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        Error::layer(e.kind(), e)
    }
}

/// What is wrong with a merged row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMerge {
    #[error("it has {got} values, the table has {want} columns")]
    Width { got: usize, want: usize },
    #[error("column `{column}`: {reason}")]
    Value { column: String, reason: String },
    #[error("column `{column}` is NOT NULL")]
    Null { column: String },
    /// A merged row may not move the row to another key.
    #[error("key column `{column}` differs from the conflict's key")]
    Key { column: String },
}
