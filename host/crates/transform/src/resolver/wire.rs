//! Conflicts into the WIT contract, resolutions out of it. A merged row
//! comes from the plugin and is untrusted: its width, every value's type,
//! NOT NULL columns and the key are checked before the host may write it.

use dmp_model::{Row, TableSchema, Value};

use super::conflict::{Conflict, ConflictKind, Resolution, RowVersion, Side};
use super::error::BadMerge;
use crate::bindings::resolver::wit as resolve;
use crate::bindings::wit;
use crate::convert::{schema_to_wit, value_from_wit, value_to_wit};

fn row_to_wit(row: &Row) -> Vec<wit::Value> {
    row.0.iter().map(value_to_wit).collect()
}

fn version_to_wit(version: &RowVersion) -> resolve::RowVersion {
    resolve::RowVersion {
        row: version.row.as_ref().map(row_to_wit),
        commit_time: version.commit_time.map(|t| t.timestamp_micros()),
        origin: match version.origin {
            Side::A => resolve::Side::A,
            Side::B => resolve::Side::B,
        },
    }
}

pub(crate) fn conflict_to_wit(conflict: &Conflict) -> resolve::Conflict {
    resolve::Conflict {
        table: schema_to_wit(&conflict.table),
        key: conflict.key.iter().map(value_to_wit).collect(),
        kind: match conflict.kind {
            ConflictKind::InsertExists => resolve::ConflictKind::InsertExists,
            ConflictKind::UpdateMissing => resolve::ConflictKind::UpdateMissing,
            ConflictKind::UpdateDiffers => resolve::ConflictKind::UpdateDiffers,
            ConflictKind::DeleteMissing => resolve::ConflictKind::DeleteMissing,
            ConflictKind::DeleteDiffers => resolve::ConflictKind::DeleteDiffers,
        },
        local: version_to_wit(&conflict.local),
        remote_old: conflict.remote_old.as_ref().map(row_to_wit),
        remote_new: version_to_wit(&conflict.remote_new),
    }
}

/// The plugin's answer in host terms; a merged row must be a whole row of
/// `table` with the conflict's `key`.
pub(crate) fn resolution_from_wit(
    resolution: resolve::Resolution,
    table: &TableSchema,
    key: &[Value],
) -> Result<Resolution, BadMerge> {
    Ok(match resolution {
        resolve::Resolution::ApplyRemote => Resolution::ApplyRemote,
        resolve::Resolution::KeepLocal => Resolution::KeepLocal,
        resolve::Resolution::Delete => Resolution::Delete,
        resolve::Resolution::Park => Resolution::Park,
        resolve::Resolution::Merged(values) => Resolution::Merged(merged_row(&values, table, key)?),
    })
}

fn merged_row(values: &[wit::Value], table: &TableSchema, key: &[Value]) -> Result<Row, BadMerge> {
    if values.len() != table.columns.len() {
        return Err(BadMerge::Width {
            got: values.len(),
            want: table.columns.len(),
        });
    }
    let mut row = Vec::with_capacity(values.len());
    for (column, value) in table.columns.iter().zip(values) {
        let value = value_from_wit(value, &column.data_type).map_err(|reason| BadMerge::Value {
            column: column.name.clone(),
            reason,
        })?;
        if value.is_null() && !column.nullable {
            return Err(BadMerge::Null {
                column: column.name.clone(),
            });
        }
        row.push(value);
    }
    for (name, expected) in table.primary_key.iter().zip(key) {
        let same = table
            .column_index(name)
            .and_then(|i| row.get(i))
            .is_some_and(|value| value == expected);
        if !same {
            return Err(BadMerge::Key {
                column: name.clone(),
            });
        }
    }
    Ok(Row(row))
}
