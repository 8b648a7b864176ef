//! A resolver plugin as the connectors' [`Arbiter`]: the apply of a
//! two-way sync leg asks it about each conflict of a table whose policy is
//! `resolver`. Both legs share one instance, one call at a time.

use std::sync::{Arc, Mutex};

use chrono::DateTime;
use dmp_contract::conflict::{Arbiter, Case, Decision, Side};

use super::conflict::{Conflict, Resolution, RowVersion};
use super::instance::ConflictResolver;

pub struct PluginArbiter {
    resolver: Mutex<ConflictResolver>,
}

impl PluginArbiter {
    pub fn new(resolver: ConflictResolver) -> Self {
        PluginArbiter {
            resolver: Mutex::new(resolver),
        }
    }
}

impl Arbiter for PluginArbiter {
    fn decide(&self, case: &Case<'_>) -> Result<Decision, String> {
        let local_side = match case.remote {
            Side::A => Side::B,
            Side::B => Side::A,
        };
        let conflict = Conflict {
            table: Arc::new(case.table.clone()),
            key: case.key.clone(),
            kind: case.kind,
            local: RowVersion {
                row: case.local.clone(),
                commit_time: None,
                origin: local_side,
            },
            remote_old: case.remote_old.cloned(),
            remote_new: RowVersion {
                row: case.remote_new.cloned(),
                commit_time: case.commit_time.and_then(DateTime::from_timestamp_micros),
                origin: case.remote,
            },
        };
        let mut resolver = self
            .resolver
            .lock()
            .map_err(|_| "the resolver failed in another call".to_string())?;
        let resolution = resolver.resolve(&conflict).map_err(|e| error_chain(&e))?;
        Ok(match resolution {
            Resolution::ApplyRemote => Decision::ApplyRemote,
            Resolution::KeepLocal => Decision::KeepLocal,
            Resolution::Merged(row) => Decision::Merged(row),
            Resolution::Delete => Decision::Delete,
            Resolution::Park => Decision::Park,
        })
    }
}

/// An error with its causes, on one line: the plugin's own failure is the
/// innermost.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
