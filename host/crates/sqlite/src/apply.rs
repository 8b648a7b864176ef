//! Applies a batch of changes and its checkpoint in one transaction. Each
//! segment becomes its net effect per primary key: a prepared `DELETE` per
//! key that is gone, then a prepared `INSERT … ON CONFLICT (key) DO UPDATE`
//! per final row. Statements run in-process, so one per row costs no round
//! trip; SQLite undoes a failed statement, not the transaction, so a row
//! it refuses for its data is refused alone and the rest applies.

use rusqlite::{Connection, Transaction};

use super::quote;
use super::target::{is_row_error, upsert_checkpoint};
use super::types::Bind;
use crate::error::{Result, ResultExt};
use dmp_contract::RejectSink;
use dmp_contract::net_effect::{NetRow, Refused, key_columns, keyless_reject, net_effect};
use dmp_model::json::row_to_json;
use dmp_model::{
    ChangeBatch, Checkpoint, Reject, RejectStage, SchemaDelta, TableChanges, TableSchema,
};

/// `INSERT INTO t (…) VALUES (?, …) ON CONFLICT (key) DO UPDATE SET c =
/// excluded.c, …`; `DO NOTHING` when the key is every column, a plain
/// insert without a key.
fn upsert_sql(table: &TableSchema, keys: &[usize]) -> String {
    let names: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote(&table.name),
        names.join(", "),
        vec!["?"; names.len()].join(", ")
    );
    if keys.is_empty() {
        return sql;
    }
    let key: Vec<&str> = keys.iter().map(|&k| names[k].as_str()).collect();
    let sets: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| !keys.contains(i))
        .map(|(_, name)| format!("{name} = excluded.{name}"))
        .collect();
    if sets.is_empty() {
        sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", key.join(", ")));
    } else {
        sql.push_str(&format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            sets.join(", ")
        ));
    }
    sql
}

fn delete_sql(table: &TableSchema, keys: &[usize]) -> String {
    let conditions: Vec<String> = keys
        .iter()
        .map(|&k| format!("{} = ?", quote(&table.columns[k].name)))
        .collect();
    format!(
        "DELETE FROM {} WHERE {}",
        quote(&table.name),
        conditions.join(" AND ")
    )
}

/// Changes table `from` into `to` in the batch's transaction; each step
/// first looks whether it is made already. SQLite keeps any value in any
/// column: a type change leaves the declared type as it was.
fn evolve(
    txn: &rusqlite::Transaction<'_>,
    from: &TableSchema,
    to: &TableSchema,
    changes: &[SchemaDelta],
) -> rusqlite::Result<()> {
    let columns = |table: &str| -> rusqlite::Result<Vec<String>> {
        txn.prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table], |r| r.get(0))?
            .collect()
    };
    for change in changes {
        let now = columns(&to.name)?;
        let has = |name: &str| now.iter().any(|c| c.eq_ignore_ascii_case(name));
        let sql = match change {
            SchemaDelta::AddColumn(column) if !has(&column.name) => Some(format!(
                "ALTER TABLE {} ADD COLUMN {}",
                quote(&to.name),
                super::target::column_def(column)
            )),
            SchemaDelta::DropColumn(name) if has(name) => Some(format!(
                "ALTER TABLE {} DROP COLUMN {}",
                quote(&to.name),
                quote(name)
            )),
            SchemaDelta::RenameColumn { from: old, to: new } if has(old) && !has(new) => {
                Some(format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    quote(&to.name),
                    quote(old),
                    quote(new)
                ))
            }
            SchemaDelta::RenameTable { from: old }
                if now.is_empty() && !columns(old)?.is_empty() =>
            {
                Some(format!(
                    "ALTER TABLE {} RENAME TO {}",
                    quote(old),
                    quote(&to.name)
                ))
            }
            SchemaDelta::DropTable => Some(format!("DROP TABLE IF EXISTS {}", quote(&from.name))),
            _ => None,
        };
        if let Some(sql) = sql {
            txn.execute(&sql, [])?;
        }
    }
    Ok(())
}

/// Applies `batch` and `checkpoint` in one transaction; refused rows go
/// to `sink` before the commit. Returns the changes applied.
#[tracing::instrument(level = "debug", skip_all, fields(segments = batch.segments.len(), changes = batch.len()))]
pub(super) fn apply(
    conn: &mut Connection,
    pipeline: &str,
    batch: &ChangeBatch,
    checkpoint: &Checkpoint,
    sink: &dyn RejectSink,
) -> Result<u64> {
    let ctx = || "applying changes to the SQLite target".to_string();
    let mut refused = Refused::default();
    let txn = conn.transaction().context(ctx)?;
    let mut applied = 0u64;
    for segment in &batch.segments {
        let schema = segment.table();
        let changes = match segment {
            TableChanges::Truncate { .. } => {
                txn.execute(&format!("DELETE FROM {}", quote(&schema.name)), [])
                    .context(|| format!("emptying table {}", schema.name))?;
                applied += 1;
                continue;
            }
            TableChanges::Rows { changes, .. } => changes,
            TableChanges::Evolve { from, changes, .. } => {
                evolve(&txn, from, schema, changes)
                    .context(|| format!("changing the shape of table {}", schema.name))?;
                continue;
            }
        };
        let keys = key_columns(schema)?;
        let net = net_effect(&keys, changes);
        for change in &net.refused {
            refused.push(schema, keyless_reject(schema, change, &checkpoint.position));
        }
        let mut bad = Vec::new();
        if !net.deletes.is_empty() {
            let sql = delete_sql(schema, &keys);
            applied += run_rows(&txn, schema, &sql, &net.deletes, Some(&keys), &mut bad)?;
        }
        if !net.upserts.is_empty() {
            let sql = upsert_sql(schema, &keys);
            applied += run_rows(&txn, schema, &sql, &net.upserts, None, &mut bad)?;
        }
        for (row, error) in bad {
            refused.push(
                schema,
                Reject {
                    stage: RejectStage::Target,
                    error,
                    row: row_to_json(schema, row.row),
                    position: checkpoint.position.clone(),
                },
            );
        }
    }
    upsert_checkpoint(&txn, pipeline, checkpoint)?;
    for (table, rejects) in refused.into_groups() {
        // Before the commit: a crash in between redoes the batch rather
        // than losing these rows.
        sink.reject(&table, rejects)?;
    }
    txn.commit().context(ctx)?;
    Ok(applied)
}

/// Runs the prepared statement `sql` once per row, binding the columns at
/// `columns` (all when `None`). Rows the server refuses for their data
/// go to `bad`. Returns the changes applied.
fn run_rows<'a>(
    txn: &Transaction<'_>,
    table: &TableSchema,
    sql: &str,
    rows: &[NetRow<'a>],
    columns: Option<&[usize]>,
    bad: &mut Vec<(NetRow<'a>, String)>,
) -> Result<u64> {
    let ctx = || format!("applying changes to table {}", table.name);
    let mut stmt = txn.prepare_cached(sql).context(ctx)?;
    let mut applied = 0;
    for row in rows {
        let values = &row.row.0;
        let bound = match columns {
            Some(columns) => columns.iter().enumerate().try_for_each(|(n, &i)| {
                stmt.raw_bind_parameter(
                    n + 1,
                    Bind(values.get(i).unwrap_or(&dmp_model::Value::Null)),
                )
            }),
            None => values
                .iter()
                .enumerate()
                .try_for_each(|(n, value)| stmt.raw_bind_parameter(n + 1, Bind(value))),
        };
        match bound.and_then(|()| stmt.raw_execute()) {
            Ok(_) => applied += row.changes,
            Err(e) if is_row_error(&e) => bad.push((*row, e.to_string())),
            Err(e) => return Err(e).context(ctx),
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use dmp_model::{Change, Column, DataType, Position, Row, Value};

    fn table(key: &[&str]) -> TableSchema {
        TableSchema {
            namespace: None,
            name: "Or\"der".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("v", DataType::TEXT),
            ],
            primary_key: key.iter().map(|k| (*k).to_string()).collect(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    #[derive(Default)]
    struct Sink(std::sync::Mutex<Vec<Reject>>);

    impl RejectSink for Sink {
        fn reject(&self, _: &TableSchema, rejects: Vec<Reject>) -> Result<()> {
            if let Ok(mut all) = self.0.lock() {
                all.extend(rejects);
            }
            Ok(())
        }
    }

    fn dump(conn: &Connection, table: &str) -> Vec<String> {
        let sql = format!(
            "SELECT id || '|' || coalesce(v, '~') FROM {} ORDER BY id",
            quote(table)
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<String>>>()
            .unwrap()
    }

    #[test]
    fn batches_apply_idempotently_with_their_checkpoint() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE \"Or\"\"der\" (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE log (id INTEGER, v TEXT);
             CREATE TABLE _dmp_checkpoints (pipeline TEXT NOT NULL, table_name TEXT NOT NULL,
               chunk INTEGER NOT NULL, position TEXT NOT NULL, rows INTEGER NOT NULL,
               done INTEGER NOT NULL, epoch INTEGER NOT NULL DEFAULT 0,
               PRIMARY KEY (pipeline, table_name, chunk)) WITHOUT ROWID;",
        )
        .unwrap();
        let keyed = Arc::new(table(&["id"]));
        let keyless = Arc::new(TableSchema {
            name: "log".into(),
            ..table(&[])
        });
        let row = |id: i64, v: Option<&str>| {
            Row(vec![
                Value::Int(id),
                v.map_or(Value::Null, |v| Value::Text(v.into())),
            ])
        };
        let mut batch = ChangeBatch::new();
        for id in 1..=3 {
            batch.push(&keyed, Change::Insert(row(id, Some("a"))));
        }
        batch.push(&keyless, Change::Insert(row(1, Some("x"))));
        batch.push(&keyless, Change::Delete(row(1, Some("x"))));
        batch.push(
            &keyed,
            Change::Update {
                before: Some(row(1, None)),
                after: row(10, Some("moved")),
            },
        );
        batch.push(&keyed, Change::Delete(row(2, None)));
        // NOT NULL: refused alone.
        batch.push(&keyed, Change::Insert(row(4, None)));
        let checkpoint = Checkpoint {
            table: String::new(),
            chunk: 0,
            position: Position::Log {
                log: "lsn=0/10".into(),
                skip: 0,
            },
            rows: 9,
            done: true,
            fence: None,
        };
        let sink = Sink::default();
        let applied = apply(&mut conn, "p", &batch, &checkpoint, &sink).unwrap();
        // 3 inserts, the keyless insert, the key move, the delete.
        assert_eq!(applied, 6);
        assert_eq!(dump(&conn, "Or\"der"), ["3|a", "10|moved"]);
        assert_eq!(dump(&conn, "log"), ["1|x"]);
        let refused = sink.0.lock().unwrap().clone();
        assert_eq!(refused.len(), 2);
        assert!(refused[0].error.contains("no primary key"));
        assert!(
            refused[1].error.contains("NOT NULL"),
            "{}",
            refused[1].error
        );
        assert!(refused.iter().all(|r| r.position == checkpoint.position));
        // Replayed: the keyed table converges.
        apply(&mut conn, "p", &batch, &checkpoint, &sink).unwrap();
        assert_eq!(dump(&conn, "Or\"der"), ["3|a", "10|moved"]);
        let mut truncate = ChangeBatch::new();
        truncate.truncate(&keyed, None);
        truncate.push(&keyed, Change::Insert(row(5, Some("b"))));
        assert_eq!(
            apply(&mut conn, "p", &truncate, &checkpoint, &sink).unwrap(),
            2
        );
        assert_eq!(dump(&conn, "Or\"der"), ["5|b"]);
        let position: String = conn
            .query_row(
                "SELECT position FROM _dmp_checkpoints WHERE pipeline = 'p' AND table_name = ''",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Position>(&position).unwrap(),
            checkpoint.position
        );
    }

    #[test]
    fn statements() {
        let t = table(&["id"]);
        assert_eq!(
            upsert_sql(&t, &[0]),
            "INSERT INTO \"Or\"\"der\" (\"id\", \"v\") VALUES (?, ?) \
             ON CONFLICT (\"id\") DO UPDATE SET \"v\" = excluded.\"v\""
        );
        assert_eq!(
            upsert_sql(&t, &[1, 0]),
            "INSERT INTO \"Or\"\"der\" (\"id\", \"v\") VALUES (?, ?) \
             ON CONFLICT (\"v\", \"id\") DO NOTHING"
        );
        assert_eq!(
            upsert_sql(&t, &[]),
            "INSERT INTO \"Or\"\"der\" (\"id\", \"v\") VALUES (?, ?)"
        );
        assert_eq!(
            delete_sql(&t, &[1, 0]),
            "DELETE FROM \"Or\"\"der\" WHERE \"v\" = ? AND \"id\" = ?"
        );
    }
}
