//! A two-way sync conflict in host terms, and the row each resolution
//! leaves on the side it is applied to. Both legs meet the same conflict
//! from opposite ends ([`Conflict::mirrored`]); they agree when they settle
//! on the same row.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dmp_model::{Row, TableSchema, Value};

pub use dmp_contract::conflict::{ConflictKind, Side};

/// A row as one side last wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowVersion {
    /// The row, in the table's column order; `None` where it does not
    /// exist (deleted, or never there).
    pub row: Option<Row>,
    /// When that side committed it, where its database says.
    pub commit_time: Option<DateTime<Utc>>,
    /// The side that wrote it.
    pub origin: Side,
}

/// A change from the remote side that does not fit the local row.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub table: Arc<TableSchema>,
    /// The primary key's values, in key order.
    pub key: Vec<Value>,
    pub kind: ConflictKind,
    /// The row on the side the change is applied to.
    pub local: RowVersion,
    /// The remote row before the change, where the source gives it.
    pub remote_old: Option<Row>,
    /// The remote row after the change (`row` is `None` for a delete).
    pub remote_new: RowVersion,
}

impl Conflict {
    /// The same conflict as the other leg meets it: the local row there is
    /// the remote row here and the other way round; both changes started
    /// from the same old row.
    pub fn mirrored(&self) -> Conflict {
        Conflict {
            table: self.table.clone(),
            key: self.key.clone(),
            kind: self.kind.mirrored(),
            local: self.remote_new.clone(),
            remote_old: self.remote_old.clone(),
            remote_new: self.local.clone(),
        }
    }

    /// What applying `resolution` here leaves on this side.
    pub fn settle(&self, resolution: &Resolution) -> Settled {
        let row = match resolution {
            Resolution::ApplyRemote => self.remote_new.row.clone(),
            Resolution::KeepLocal => self.local.row.clone(),
            Resolution::Merged(row) => Some(row.clone()),
            Resolution::Delete => None,
            Resolution::Park => return Settled::Parked,
        };
        row.map_or(Settled::Absent, Settled::Row)
    }

    /// Refuses a conflict whose rows or key do not fit its table: a
    /// mistake of the caller, which a resolver should never be shown.
    pub(crate) fn check(&self) -> Result<(), String> {
        let width = self.table.columns.len();
        let rows = [
            ("local row", self.local.row.as_ref()),
            ("remote old row", self.remote_old.as_ref()),
            ("remote new row", self.remote_new.row.as_ref()),
        ];
        for (what, row) in rows {
            if let Some(row) = row
                && row.0.len() != width
            {
                return Err(format!(
                    "the {what} has {} values, the table has {width} columns",
                    row.0.len()
                ));
            }
        }
        if self.key.len() != self.table.primary_key.len() {
            return Err(format!(
                "the key has {} values, the primary key has {} columns",
                self.key.len(),
                self.table.primary_key.len()
            ));
        }
        Ok(())
    }
}

/// What the host does with a conflicting change.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Write the remote row (for a remote delete: delete the local row).
    ApplyRemote,
    /// Leave the local row and drop the change.
    KeepLocal,
    /// Write this row instead; checked against the table and the key.
    Merged(Row),
    /// Delete the local row.
    Delete,
    /// Apply nothing; the conflict waits for a person.
    Park,
}

impl Resolution {
    /// The name the conflict log uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Resolution::ApplyRemote => "apply_remote",
            Resolution::KeepLocal => "keep_local",
            Resolution::Merged(_) => "merged",
            Resolution::Delete => "delete",
            Resolution::Park => "park",
        }
    }
}

/// What one leg is left with once it applied a resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// The side holds this row.
    Row(Row),
    /// The side holds no row with the key.
    Absent,
    /// Nothing was applied; the conflict is listed for a person.
    Parked,
}

impl std::fmt::Display for Settled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Settled::Row(row) => {
                f.write_str("the row (")?;
                for (i, value) in row.0.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match value {
                        Value::Null => f.write_str("NULL")?,
                        value => f.write_str(&value.to_text())?,
                    }
                }
                f.write_str(")")
            }
            Settled::Absent => f.write_str("no row"),
            Settled::Parked => f.write_str("the change parked"),
        }
    }
}
