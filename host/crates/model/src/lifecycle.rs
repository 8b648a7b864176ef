//! Where each table of a run stands: planned → copying → indexing → done,
//! streaming for a change stream, or failed with the reason. The engine
//! publishes it through its progress counters and keeps it in the state
//! store (`run_tables.phase`) for anyone reading the run later (the coming
//! service's API). The target's checkpoints, not this, decide where a
//! resumed run continues.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum TablePhase {
    /// In the run's plan; no chunk started yet.
    Planned,
    /// Chunks are being read and written.
    Copying,
    /// Every chunk is in; the key and indexes are being built.
    Indexing,
    /// Copied and finished.
    Done,
    /// Its changes are being applied from the change stream.
    Streaming,
    /// The run stopped on this table.
    Failed { reason: String },
}

impl TablePhase {
    /// The phase's name as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            TablePhase::Planned => "planned",
            TablePhase::Copying => "copying",
            TablePhase::Indexing => "indexing",
            TablePhase::Done => "done",
            TablePhase::Streaming => "streaming",
            TablePhase::Failed { .. } => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_stored_tagged() {
        let failed = TablePhase::Failed {
            reason: "disk full".into(),
        };
        let json = serde_json::to_string(&failed).expect("json");
        assert_eq!(json, r#"{"phase":"failed","reason":"disk full"}"#);
        let back: TablePhase = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, failed);
        assert_eq!(
            serde_json::to_string(&TablePhase::Indexing).expect("json"),
            r#"{"phase":"indexing"}"#
        );
    }
}
