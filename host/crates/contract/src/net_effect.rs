//! What a run of one table's changes leaves behind, per primary key: the
//! final row, or nothing. SQL targets apply that instead of each change, so
//! a key touched many times in a batch is written once, and a replayed
//! change (after a crash, or from before a snapshot) converges to the row
//! the source has. Also the grouping of refused rows that every SQL
//! target's apply hands to the reject sink.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use dmp_model::json::{row_to_json, write_value};
use dmp_model::{Change, Position, Reject, RejectStage, Row, TableSchema, Value};

/// One row to write or one key to delete, with the number of the
/// segment's changes it stands for (changes are counted at the key of
/// their new image; a key moved away by an update counts none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetRow<'a> {
    pub row: &'a Row,
    pub changes: u64,
}

/// The net effect of a segment.
#[derive(Debug, Default, PartialEq)]
pub struct NetEffect<'a> {
    /// Keys whose final state is gone (deleted, or moved away by an update
    /// of the key): only the key columns of these rows are read.
    pub deletes: Vec<NetRow<'a>>,
    /// Rows to write: the final row of each key (an upsert), or, for a
    /// table without a primary key, every insert (appended).
    pub upserts: Vec<NetRow<'a>>,
    /// Updates and deletes of a table without a primary key: they cannot
    /// find their row.
    pub refused: Vec<&'a Change>,
}

impl NetEffect<'_> {
    /// Drops the rows and deletes of the keys in `skip` (by [`key_text`]):
    /// changes a conflict decided not to write.
    pub fn without(&mut self, key: &[usize], skip: &HashSet<String>) {
        if skip.is_empty() {
            return;
        }
        self.deletes
            .retain(|r| !skip.contains(&key_text(key, r.row)));
        self.upserts
            .retain(|r| !skip.contains(&key_text(key, r.row)));
    }
}

impl<'a> NetEffect<'a> {
    /// Takes a table's settled conflicts in: the remote changes they keep
    /// out are dropped, the rows and deletes a resolver chose instead are
    /// added.
    pub fn settle(&mut self, key: &[usize], settled: &'a crate::conflict::Settled) {
        self.without(key, &settled.skip);
        self.deletes
            .extend(settled.deletes.iter().map(|row| NetRow { row, changes: 1 }));
        self.upserts
            .extend(settled.writes.iter().map(|row| NetRow { row, changes: 1 }));
    }
}

/// The positions of `table`'s primary key columns; an error when one is
/// not among its columns (a transform dropped or renamed it).
pub fn key_columns(table: &TableSchema) -> Result<Vec<usize>> {
    table
        .primary_key
        .iter()
        .map(|name| {
            table.column_index(name).ok_or_else(|| {
                Error::Config(format!(
                    "table {}: primary key column {name} is not among its columns",
                    table.name
                ))
            })
        })
        .collect()
}

/// Computes the net effect of `changes` (one table's, in source order)
/// for a table whose primary key is at `key` (empty: no key). The last
/// change of a key wins; an update whose old key differs from its new one
/// deletes the old key.
pub fn net_effect<'a>(key: &[usize], changes: &'a [Change]) -> NetEffect<'a> {
    let mut net = NetEffect::default();
    if key.is_empty() {
        for change in changes {
            match change {
                Change::Insert(row) => net.upserts.push(NetRow { row, changes: 1 }),
                Change::Update { .. } | Change::Delete(_) => net.refused.push(change),
            }
        }
        return net;
    }
    // Per key in order of first appearance: its final row (None: gone)
    // and the changes counted there.
    let mut slots: Vec<(Option<&'a Row>, &'a Row, u64)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut set = |row: &'a Row, state: Option<&'a Row>, counted: u64| {
        let slot = *index.entry(key_text(key, row)).or_insert_with(|| {
            slots.push((None, row, 0));
            slots.len() - 1
        });
        let entry = &mut slots[slot];
        entry.0 = state;
        entry.1 = row;
        entry.2 += counted;
    };
    for change in changes {
        match change {
            Change::Insert(row) => set(row, Some(row), 1),
            Change::Update { before, after } => {
                if let Some(before) = before
                    && key_text(key, before) != key_text(key, after)
                {
                    set(before, None, 0);
                }
                set(after, Some(after), 1);
            }
            Change::Delete(row) => set(row, None, 1),
        }
    }
    for (state, last, counted) in slots {
        match state {
            Some(row) => net.upserts.push(NetRow {
                row,
                changes: counted,
            }),
            None => net.deletes.push(NetRow {
                row: last,
                changes: counted,
            }),
        }
    }
    net
}

/// A key's identity: its values' JSON forms, which differ whenever the
/// values do (a column's values all have one kind).
pub fn key_text(key: &[usize], row: &Row) -> String {
    let mut text = String::new();
    for &i in key {
        write_value(&mut text, row.0.get(i).unwrap_or(&Value::Null));
        text.push(',');
    }
    text
}

/// Rows refused while applying a batch, grouped by table in the order
/// their tables came, for the reject sink.
#[derive(Default)]
pub struct Refused(Vec<(Arc<TableSchema>, Vec<Reject>)>);

impl Refused {
    pub fn push(&mut self, table: &Arc<TableSchema>, reject: Reject) {
        match self.0.iter_mut().find(|(t, _)| t.name == table.name) {
            Some((_, list)) => list.push(reject),
            None => self.0.push((table.clone(), vec![reject])),
        }
    }

    pub fn into_groups(self) -> Vec<(Arc<TableSchema>, Vec<Reject>)> {
        self.0
    }
}

/// The reject of a change that a table without primary key cannot apply.
pub fn keyless_reject(table: &TableSchema, change: &Change, position: &Position) -> Reject {
    let op = match change {
        Change::Delete(_) => "a delete",
        _ => "an update",
    };
    Reject {
        stage: RejectStage::Target,
        error: format!("table {} has no primary key: cannot apply {op}", table.name),
        row: row_to_json(table, change.row()),
        position: position.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Column, DataType};

    fn row(id: i64, v: &str) -> Row {
        Row(vec![Value::Int(id), Value::Text(v.into())])
    }

    fn update(before: Option<Row>, after: Row) -> Change {
        Change::Update { before, after }
    }

    /// `(upserts as id=v, deletes as id, changes)`.
    fn shape(net: &NetEffect<'_>) -> (Vec<String>, Vec<String>, u64) {
        let text = |r: &Row| match (&r.0[0], &r.0[1]) {
            (Value::Int(i), Value::Text(v)) => format!("{i}={v}"),
            (Value::Int(i), _) => i.to_string(),
            _ => "?".into(),
        };
        (
            net.upserts.iter().map(|r| text(r.row)).collect(),
            net.deletes
                .iter()
                .map(|r| text(r.row).split('=').next().unwrap_or("").to_string())
                .collect(),
            net.deletes
                .iter()
                .chain(&net.upserts)
                .map(|r| r.changes)
                .sum(),
        )
    }

    #[test]
    fn the_last_change_of_a_key_wins() {
        let changes = vec![
            Change::Insert(row(1, "a")),
            update(None, row(1, "b")),
            Change::Insert(row(2, "x")),
            update(Some(row(1, "b")), row(1, "c")),
            Change::Delete(row(2, "x")),
            Change::Delete(row(3, "")),
        ];
        let net = net_effect(&[0], &changes);
        assert_eq!(
            shape(&net),
            (vec!["1=c".into()], vec!["2".into(), "3".into()], 6)
        );
        assert!(net.refused.is_empty());
    }

    #[test]
    fn delete_then_insert_again_is_an_upsert() {
        let changes = vec![Change::Delete(row(7, "old")), Change::Insert(row(7, "new"))];
        assert_eq!(
            shape(&net_effect(&[0], &changes)),
            (vec!["7=new".into()], vec![], 2)
        );
        let changes = vec![Change::Insert(row(7, "new")), Change::Delete(row(7, ""))];
        assert_eq!(
            shape(&net_effect(&[0], &changes)),
            (vec![], vec!["7".into()], 2)
        );
    }

    #[test]
    fn a_key_update_deletes_the_old_key() {
        // 1 moves to 2, then 3 moves to 1: 1 holds 3's row, 3 is gone.
        let changes = vec![
            update(Some(row(1, "a")), row(2, "a")),
            update(Some(row(3, "c")), row(1, "c")),
        ];
        let net = net_effect(&[0], &changes);
        assert_eq!(
            shape(&net),
            (vec!["1=c".into(), "2=a".into()], vec!["3".into()], 2)
        );
        // Moved away and back: the final row; the key passed through is gone.
        let changes = vec![
            update(Some(row(1, "a")), row(2, "a")),
            update(Some(row(2, "a")), row(1, "b")),
        ];
        assert_eq!(
            shape(&net_effect(&[0], &changes)),
            (vec!["1=b".into()], vec!["2".into()], 2)
        );
        // An old image holding only the key still finds it.
        let changes = vec![update(
            Some(Row(vec![Value::Int(5), Value::Null])),
            row(6, "z"),
        )];
        assert_eq!(
            shape(&net_effect(&[0], &changes)),
            (vec!["6=z".into()], vec!["5".into()], 1)
        );
    }

    #[test]
    fn composite_keys_compare_every_column() {
        let r = |a: i64, b: &str, v: i64| {
            Row(vec![Value::Int(a), Value::Text(b.into()), Value::Int(v)])
        };
        let changes = vec![
            Change::Insert(r(1, "x", 1)),
            Change::Insert(r(1, "y", 2)),
            update(None, r(1, "x", 3)),
        ];
        let net = net_effect(&[0, 1], &changes);
        let upserts: Vec<&Row> = net.upserts.iter().map(|r| r.row).collect();
        assert_eq!(upserts, vec![&r(1, "x", 3), &r(1, "y", 2)]);
        // Keys whose texts would run together if not separated.
        let t = |a: &str, b: &str| Row(vec![Value::Text(a.into()), Value::Text(b.into())]);
        let changes = vec![Change::Insert(t("a,", "b")), Change::Insert(t("a", ",b"))];
        assert_eq!(net_effect(&[0, 1], &changes).upserts.len(), 2);
    }

    #[test]
    fn keyless_tables_append_inserts_and_refuse_the_rest() {
        let changes = vec![
            Change::Insert(row(1, "a")),
            Change::Insert(row(1, "a")),
            update(None, row(1, "b")),
            Change::Delete(row(1, "a")),
        ];
        let net = net_effect(&[], &changes);
        assert_eq!(net.upserts.len(), 2);
        assert!(net.deletes.is_empty());
        assert_eq!(net.refused.len(), 2);
        let table = TableSchema {
            namespace: None,
            name: "log".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("v", DataType::TEXT),
            ],
            primary_key: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        let at = Position::Log {
            log: "lsn=0/1".into(),
            skip: 0,
        };
        let reject = keyless_reject(&table, net.refused[1], &at);
        assert_eq!(
            reject.error,
            "table log has no primary key: cannot apply a delete"
        );
        assert_eq!(reject.position, at);
        assert_eq!(reject.row["v"], "a");
        assert_eq!(
            keyless_reject(&table, net.refused[0], &at).error,
            "table log has no primary key: cannot apply an update"
        );
    }

    #[test]
    fn key_columns_must_exist() {
        let mut table = TableSchema {
            namespace: None,
            name: "t".into(),
            columns: vec![
                Column::new("a", DataType::Int64),
                Column::new("b", DataType::Int64),
            ],
            primary_key: vec!["b".into(), "a".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        assert_eq!(key_columns(&table).unwrap(), vec![1, 0]);
        table.primary_key.push("gone".into());
        assert!(key_columns(&table).is_err());
    }
}
