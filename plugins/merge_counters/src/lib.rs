//! A conflict resolver for two-way sync that merges counters: when both
//! sides change a row, each side's increments are kept.
//!
//! Setting `counters` (required): comma-separated integer columns that
//! count something (`views, likes`).
//!
//! Rules, by kind of conflict:
//! - `update-differs` (both sides updated the row): each counter becomes
//!   `local + remote_new - remote_old`, i.e. the old value plus both sides'
//!   deltas; every other column takes side A's value.
//! - `insert-exists` (both sides inserted the key): each counter becomes
//!   the sum of the two rows' (both counted from nothing); every other
//!   column takes side A's value.
//! - `update-missing` (updated on the remote side, deleted here):
//!   `apply-remote`, and `delete-differs` (the same conflict met on the
//!   other leg: deleted there, changed here): `keep-local`. A row still
//!   being counted on one side outlives its deletion on the other.
//! - `delete-missing` (deleted on both sides): `delete`.
//! - Anything it cannot merge — a counter that is NULL or whose sum does
//!   not fit its column, no old remote row to take a delta from, both
//!   versions claiming the same side — is parked for a person.
//!
//! Determinism: DMP asks about each conflict on both legs, the second time
//! with local and remote swapped (and an `update-missing` met as a
//! `delete-differs`). Every rule above is symmetric in the two rows — sums
//! commute, "side A's value" names a side, not an end — and reads nothing
//! but the conflict, so both legs end with the same row. Commit times are
//! not used: a database may not know its own row's (MariaDB keeps none),
//! and a rule that sees a time on one leg but not on the other diverges.

use dmp_sdk::{Config, Conflict, ConflictKind, DataType, Resolution, Resolver, Side, Value};

pub struct MergeCounters {
    counters: Vec<String>,
}

/// A counter column: its position and the values its type holds.
struct Counter {
    index: usize,
    range: std::ops::RangeInclusive<i128>,
}

impl MergeCounters {
    /// The counter columns of the conflict's table; an error (a settings
    /// mistake) when one is missing or not an integer column.
    fn counter_columns(&self, conflict: &Conflict) -> Result<Vec<Counter>, String> {
        self.counters
            .iter()
            .map(|name| {
                let index = conflict.column_index(name).ok_or_else(|| {
                    format!("table {} has no column `{name}`", conflict.table.name)
                })?;
                let range = match conflict.table.columns[index].data_type {
                    DataType::Int16 => i128::from(i16::MIN)..=i128::from(i16::MAX),
                    DataType::Int32 => i128::from(i32::MIN)..=i128::from(i32::MAX),
                    DataType::Int64 => i128::from(i64::MIN)..=i128::from(i64::MAX),
                    _ => {
                        return Err(format!(
                            "column `{name}` of table {} is not an integer column",
                            conflict.table.name
                        ));
                    }
                };
                Ok(Counter { index, range })
            })
            .collect()
    }

    /// Side A's row with each counter replaced by the local plus the remote
    /// new row's, less `base`'s (the old row both deltas start from) where
    /// given. `None` when the rows cannot be merged.
    fn merge(
        &self,
        conflict: &Conflict,
        counters: &[Counter],
        base: Option<&[Value]>,
    ) -> Option<Vec<Value>> {
        let (local, remote) = (&conflict.local, &conflict.remote_new);
        let (local_row, remote_row) = (local.row.as_ref()?, remote.row.as_ref()?);
        let side_a = match (local.origin, remote.origin) {
            (Side::A, Side::B) => local_row,
            (Side::B, Side::A) => remote_row,
            // Without one version from each side there is no side A's
            // value to take.
            _ => return None,
        };
        let mut merged = side_a.clone();
        for counter in counters {
            let column = counter.index;
            // i128: no overflow in between, so the result does not depend
            // on the order of the terms (nor on which end is local).
            let mut sum =
                i128::from(int(local_row, column)?) + i128::from(int(remote_row, column)?);
            if let Some(base) = base {
                sum -= i128::from(int(base, column)?);
            }
            // A sum past the column's width cannot be stored: parked.
            if !counter.range.contains(&sum) {
                return None;
            }
            *merged.get_mut(column)? = Value::Int(i64::try_from(sum).ok()?);
        }
        Some(merged)
    }
}

/// The integer in `row` at `column`; NULL or another kind cannot be merged.
fn int(row: &[Value], column: usize) -> Option<i64> {
    match row.get(column) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

impl Resolver for MergeCounters {
    fn open(config: &Config) -> Result<Self, String> {
        let counters = config.list("counters");
        if counters.is_empty() {
            return Err("setting `counters` must name at least one integer column".into());
        }
        Ok(MergeCounters { counters })
    }

    fn resolve(&self, conflict: &Conflict) -> Result<Resolution, String> {
        let counters = self.counter_columns(conflict)?;
        let merged = match conflict.kind {
            ConflictKind::UpdateDiffers => conflict
                .remote_old
                .as_ref()
                .and_then(|old| self.merge(conflict, &counters, Some(old))),
            ConflictKind::InsertExists => self.merge(conflict, &counters, None),
            ConflictKind::UpdateMissing if conflict.remote_new.row.is_some() => {
                return Ok(Resolution::ApplyRemote);
            }
            ConflictKind::DeleteDiffers if conflict.local.row.is_some() => {
                return Ok(Resolution::KeepLocal);
            }
            ConflictKind::DeleteMissing => return Ok(Resolution::Delete),
            ConflictKind::UpdateMissing | ConflictKind::DeleteDiffers => None,
        };
        Ok(merged.map_or(Resolution::Park, Resolution::Merged))
    }
}

dmp_sdk::export_resolver!(MergeCounters);
