//! `dmp verify --repair`: rewrites exactly the rows that differ, through
//! the target's normal apply path (idempotent upserts and deletes by key,
//! with a checkpoint in the same transaction), so a repair interrupted
//! half way is simply run again.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::side::CanonRow;
use super::table::Diff;
use crate::error::{Error, Result};
use dmp_contract::{RejectSink, Target};
use dmp_model::canonical::parse_canonical;
use dmp_model::{
    Change, ChangeBatch, Checkpoint, Position, REPAIR_CHUNK, Reject, Row, TableChanges,
    TableSchema, Value,
};

/// What a repair did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSummary {
    /// Differences found before repairing.
    pub found: u64,
    /// Rows written (missing or differing in the target).
    pub written: u64,
    /// Rows deleted (extra in the target).
    pub deleted: u64,
    /// Rows the target refused, with the reason.
    pub refused: Vec<String>,
}

pub(super) struct Repairer {
    target: Arc<dyn Target>,
    /// The compared columns under the target's names and the source's
    /// types (what a run writes), key first.
    schema: Arc<TableSchema>,
    /// Positions of the key columns in `schema`.
    key: Vec<usize>,
    summary: Mutex<RepairSummary>,
}

/// Collects the rows the target refuses during a repair.
#[derive(Default)]
struct Refusals(Mutex<Vec<Reject>>);

impl RejectSink for Refusals {
    fn reject(&self, _table: &TableSchema, rejects: Vec<Reject>) -> Result<()> {
        if let Ok(mut all) = self.0.lock() {
            all.extend(rejects);
        }
        Ok(())
    }
}

impl Repairer {
    pub(super) fn new(target: Arc<dyn Target>, schema: Arc<TableSchema>) -> Self {
        let key = schema
            .primary_key
            .iter()
            .filter_map(|k| schema.column_index(k))
            .collect();
        Repairer {
            target,
            schema,
            key,
            summary: Mutex::default(),
        }
    }

    fn row(&self, cells: &CanonRow, only_key: bool) -> std::result::Result<Row, String> {
        let mut values = Vec::with_capacity(cells.len());
        for (i, (cell, column)) in cells.iter().zip(&self.schema.columns).enumerate() {
            let value = match cell {
                Some(_) if only_key && !self.key.contains(&i) => Value::Null,
                Some(text) => parse_canonical(text, &column.data_type)
                    .map_err(|e| format!("column {}: {e}", column.name))?,
                None => Value::Null,
            };
            values.push(value);
        }
        Ok(Row(values))
    }

    /// Writes one group of differences in one transaction.
    pub(super) async fn fix(&self, diffs: Vec<Diff>) -> Result<()> {
        let mut changes = Vec::with_capacity(diffs.len());
        let mut refused = Vec::new();
        let (mut written, mut deleted) = (0u64, 0u64);
        for diff in &diffs {
            let (cells, delete) = match diff {
                Diff::Missing(row) | Diff::Differs { source: row, .. } => (row, false),
                Diff::Extra(row) => (row, true),
            };
            match self.row(cells, delete) {
                Ok(row) if delete => {
                    deleted += 1;
                    changes.push(Change::Delete(row));
                }
                Ok(row) => {
                    written += 1;
                    changes.push(Change::Insert(row));
                }
                Err(e) => refused.push(e),
            }
        }
        let sink = Arc::new(Refusals::default());
        let checkpoint = Checkpoint {
            table: self.schema.name.clone(),
            chunk: REPAIR_CHUNK,
            position: Position::Start,
            rows: diffs.len() as u64,
            done: true,
            fence: None,
        };
        let batch = ChangeBatch {
            segments: vec![TableChanges::Rows {
                table: self.schema.clone(),
                changes,
                origins: Vec::new(),
            }],
        };
        self.target.apply(batch, checkpoint, sink.clone()).await?;
        let rejects = sink.0.lock().map(|r| r.clone()).unwrap_or_default();
        let mut summary = self
            .summary
            .lock()
            .map_err(|_| Error::Data("repair bookkeeping poisoned".into()))?;
        summary.found += diffs.len() as u64;
        // What the target refused was not written (deletes are not refused).
        summary.written += written.saturating_sub(rejects.len() as u64);
        summary.deleted += deleted;
        summary.refused.extend(refused);
        for reject in rejects {
            summary
                .refused
                .push(format!("{}: {}", reject.row, reject.error));
        }
        Ok(())
    }

    pub(super) fn summary(&self) -> RepairSummary {
        self.summary.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
