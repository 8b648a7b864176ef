//! Applies a batch of changes and its checkpoint in one transaction. Each
//! segment becomes its net effect per primary key: `DELETE … WHERE (key)
//! IN (…)` for the keys that are gone, then multi-row `INSERT … ON
//! DUPLICATE KEY UPDATE` of the final rows, values bound as the snapshot
//! writer binds them. InnoDB undoes a failed statement, not the
//! transaction, so a statement the server refuses for its data is redone
//! row by row and only the bad rows are refused. A truncate is a `DELETE`:
//! `TRUNCATE` would commit the transaction.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Transaction, TxOpts, Value as My};
use tracing::debug;

use super::chunks::key_param;
use super::conflicts;
use super::load_data::too_long;
use super::server::Server;
use super::sql::quote;
use super::types::to_param;
use super::writer::{
    CheckpointWrite, MAX_BYTES_PER_INSERT, MAX_PARAMS, MAX_ROWS_PER_INSERT, TablePlan, data_error,
    longest_value, row_size,
};
use crate::error::{Result, ResultExt};
use dmp_contract::RejectSink;
use dmp_contract::conflict::ConflictRules;
use dmp_contract::net_effect::{NetRow, Refused, key_columns, keyless_reject, net_effect};
use dmp_model::json::row_to_json;
use dmp_model::{ChangeBatch, Checkpoint, Reject, RejectStage, TableChanges, TableSchema};

/// Keys per DELETE statement.
const DELETE_KEYS: usize = 1000;

/// The statements of one table, made once per segment.
struct Statements<'a> {
    plan: &'a TablePlan,
    /// Primary key columns of the segment's table.
    keys: Vec<usize>,
    /// ` ON DUPLICATE KEY UPDATE …`, empty for a table without a key.
    on_duplicate: String,
}

impl<'a> Statements<'a> {
    fn new(plan: &'a TablePlan, keys: Vec<usize>, server: Server) -> Self {
        Statements {
            on_duplicate: on_duplicate(&plan.table, &keys, server),
            plan,
            keys,
        }
    }

    fn upsert_sql(&self, rows: usize) -> String {
        let mut sql = self.plan.insert_sql(rows);
        sql.push_str(&self.on_duplicate);
        sql
    }

    fn upsert_params(&self, rows: &[NetRow<'_>]) -> Vec<My> {
        let mut params = Vec::with_capacity(rows.len() * self.plan.table.columns.len());
        for row in rows {
            params.extend(row.row.0.iter().map(to_param));
        }
        params
    }

    fn delete_params(&self, rows: &[NetRow<'_>]) -> Vec<My> {
        rows.iter()
            .flat_map(|r| {
                self.keys
                    .iter()
                    .map(|&k| to_param(r.row.0.get(k).unwrap_or(&dmp_model::Value::Null)))
            })
            .collect()
    }
}

/// ` ON DUPLICATE KEY UPDATE c = …` for every column outside the key
/// (MySQL 8.0.19 and later name the new row by an alias, where `VALUES()`
/// is deprecated; MariaDB has only `VALUES()`); a no-op assignment when
/// the key is all the columns, so that a present row is left as it is.
fn on_duplicate(table: &TableSchema, keys: &[usize], server: Server) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let alias = !server.mariadb && server.version >= (8, 0, 19);
    let sets: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !keys.contains(i))
        .map(|(_, c)| {
            let name = quote(&c.name);
            if alias {
                format!("{name} = `new`.{name}")
            } else {
                format!("{name} = VALUES({name})")
            }
        })
        .collect();
    let sets = if sets.is_empty() {
        let first = quote(&table.columns[keys[0]].name);
        format!("{first} = {first}")
    } else {
        sets.join(", ")
    };
    if alias {
        format!(" AS `new` ON DUPLICATE KEY UPDATE {sets}")
    } else {
        format!(" ON DUPLICATE KEY UPDATE {sets}")
    }
}

/// `DELETE FROM t WHERE k IN (?, …)`, or `(k1, k2) IN ((?, ?), …)`; a
/// decimal key's parameters cast to its type so they compare exactly.
fn delete_sql(table: &TableSchema, keys: &[usize], rows: usize) -> String {
    let names: Vec<String> = keys
        .iter()
        .map(|&k| quote(&table.columns[k].name))
        .collect();
    let params: Vec<String> = keys
        .iter()
        .map(|&k| key_param(&table.columns[k].data_type))
        .collect();
    let one = if keys.len() == 1 {
        params.join("")
    } else {
        format!("({})", params.join(", "))
    };
    let list = vec![one.as_str(); rows].join(", ");
    if keys.len() == 1 {
        format!(
            "DELETE FROM {} WHERE {} IN ({list})",
            quote(&table.name),
            names.join("")
        )
    } else {
        format!(
            "DELETE FROM {} WHERE ({}) IN ({list})",
            quote(&table.name),
            names.join(", ")
        )
    }
}

/// Applies `batch` (its segments' plans as `plans`, one per segment) and
/// `checkpoint` in one transaction on `conn`; refused rows go to `sink`
/// before the commit. Returns the changes applied.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, fields(segments = batch.segments.len(), changes = batch.len()))]
pub(super) async fn apply(
    conn: &mut Conn,
    plans: &[Arc<TablePlan>],
    server: Server,
    pipeline: &str,
    conflicts: Option<(&ConflictRules, &str)>,
    batch: ChangeBatch,
    checkpoint: Checkpoint,
    sink: Arc<dyn RejectSink>,
) -> Result<u64> {
    let ctx = || "applying changes".to_string();
    let mut refused = Refused::default();
    let checkpoint_write = CheckpointWrite::new(&checkpoint, pipeline)?;
    // Two-way sync: REPEATABLE READ, whose locking reads also lock the
    // gap of a key found absent, so that no local insert of it slips in
    // between the conflict check and the apply.
    let mut options = TxOpts::default();
    if conflicts.is_some() {
        options.with_isolation_level(mysql_async::IsolationLevel::RepeatableRead);
    }
    let mut tx = conn.start_transaction(options).await.context(ctx)?;
    // Two-way sync: first, the mark that tells the reader of this side
    // that the transaction is the sync's own.
    if let Some((_, sync_id)) = conflicts {
        crate::origin::mark(&mut tx, sync_id).await.context(ctx)?;
    }
    let mut applied = 0u64;
    for (segment, plan) in batch.segments.iter().zip(plans) {
        let schema = segment.table();
        let seg_ctx = || format!("applying changes to table {}", schema.name);
        let changes = match segment {
            TableChanges::Truncate { .. } => {
                tx.query_drop(format!("DELETE FROM {}", quote(&schema.name)))
                    .await
                    .context(seg_ctx)?;
                applied += 1;
                continue;
            }
            TableChanges::Rows { changes, .. } => changes,
            // Made after the commit (see the target's apply).
            TableChanges::Evolve { .. } => continue,
        };
        let key = key_columns(schema)?;
        // Two-way sync: the conflicts are settled first; the keys whose
        // conflict kept this side's row are not written.
        let settled = match (conflicts, segment) {
            (Some((rules, sync_id)), TableChanges::Rows { origins, .. }) if !key.is_empty() => {
                let settled =
                    conflicts::check(&mut tx, rules, schema, &key, changes, origins).await?;
                conflicts::log(&mut tx, sync_id, &settled.entries).await?;
                Some(settled)
            }
            _ => None,
        };
        let mut net = net_effect(&key, changes);
        if let Some(settled) = &settled {
            net.settle(&key, settled);
        }
        for change in &net.refused {
            refused.push(schema, keyless_reject(schema, change, &checkpoint.position));
        }
        let statements = Statements::new(plan, key, server);
        let mut bad: Vec<(NetRow<'_>, String)> = Vec::new();
        applied += delete(&mut tx, &statements, &net.deletes, &mut bad)
            .await
            .context(seg_ctx)?;
        let (fitting, oversized): (Vec<NetRow<'_>>, Vec<NetRow<'_>>) = net
            .upserts
            .into_iter()
            .partition(|r| longest_value(r.row) <= plan.max_value);
        for row in oversized {
            let reason = too_long(longest_value(row.row), plan.max_value);
            bad.push((row, reason));
        }
        applied += upsert(&mut tx, &statements, &fitting, &mut bad)
            .await
            .context(seg_ctx)?;
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
    // Refused (a stream holder deposed), the transaction is dropped.
    checkpoint_write.write_in(&mut tx).await?;
    for (table, rejects) in refused.into_groups() {
        // Before the commit: a crash in between redoes the batch rather
        // than losing these rows.
        dmp_contract::dead_letter(&sink, &table, rejects).await?;
    }
    tx.commit()
        .await
        .context(|| format!("{}: committing", ctx()))?;
    Ok(applied)
}

/// Deletes the keys in groups; a group the server refuses is redone key
/// by key. Returns the changes applied.
async fn delete<'a>(
    tx: &mut Transaction<'_>,
    statements: &Statements<'_>,
    rows: &[NetRow<'a>],
    bad: &mut Vec<(NetRow<'a>, String)>,
) -> std::result::Result<u64, mysql_async::Error> {
    let plan = statements.plan;
    let keys = &statements.keys;
    let per_statement = (MAX_PARAMS / keys.len().max(1)).clamp(1, DELETE_KEYS);
    let mut applied = 0;
    for group in rows.chunks(per_statement) {
        applied += group_or_rows(tx, &plan.table.name, "delete", group, bad, |rows| {
            (
                delete_sql(&plan.table, keys, rows.len()),
                statements.delete_params(rows),
            )
        })
        .await?;
    }
    Ok(applied)
}

/// Upserts rows with multi-row statements within the parameter and packet
/// limits; a statement the server refuses for its data is redone row by
/// row. Returns the changes applied.
async fn upsert<'a>(
    tx: &mut Transaction<'_>,
    statements: &Statements<'_>,
    rows: &[NetRow<'a>],
    bad: &mut Vec<(NetRow<'a>, String)>,
) -> std::result::Result<u64, mysql_async::Error> {
    let plan = statements.plan;
    let max_rows = (MAX_PARAMS / plan.table.columns.len().max(1)).clamp(1, MAX_ROWS_PER_INSERT);
    // Half the packet limit leaves room for the statement and encoding.
    let max_bytes = MAX_BYTES_PER_INSERT.min(plan.max_value / 2).max(1);
    let mut applied = 0;
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len() && end - start < max_rows && (end == start || bytes < max_bytes) {
            bytes += row_size(rows[end].row);
            end += 1;
        }
        let group = &rows[start..end];
        start = end;
        applied += group_or_rows(tx, &plan.table.name, "upsert", group, bad, |rows| {
            (
                statements.upsert_sql(rows.len()),
                statements.upsert_params(rows),
            )
        })
        .await?;
    }
    Ok(applied)
}

/// Runs one statement for `group`; when the server refuses it for its
/// data, redoes it row by row so that only the bad rows go to `bad`.
/// Returns the changes applied.
async fn group_or_rows<'a>(
    tx: &mut Transaction<'_>,
    table: &str,
    what: &str,
    group: &[NetRow<'a>],
    bad: &mut Vec<(NetRow<'a>, String)>,
    render: impl Fn(&[NetRow<'a>]) -> (String, Vec<My>),
) -> std::result::Result<u64, mysql_async::Error> {
    let (sql, params) = render(group);
    let e = match tx.exec_drop(sql, params).await {
        Ok(()) => return Ok(changes(group)),
        Err(e) => e,
    };
    let Some(reason) = data_error(&e) else {
        return Err(e);
    };
    if let [row] = group {
        bad.push((*row, reason));
        return Ok(0);
    }
    debug!(table, error = %e, "{what} refused; redone row by row");
    let mut applied = 0;
    for row in group {
        let (sql, params) = render(std::slice::from_ref(row));
        match tx.exec_drop(sql, params).await {
            Ok(()) => applied += row.changes,
            Err(e) => match data_error(&e) {
                Some(reason) => bad.push((*row, reason)),
                None => return Err(e),
            },
        }
    }
    Ok(applied)
}

fn changes(rows: &[NetRow<'_>]) -> u64 {
    rows.iter().map(|r| r.changes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Column, DataType};

    fn table(key: &[&str]) -> TableSchema {
        TableSchema {
            namespace: None,
            name: "or`der".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new(
                    "code",
                    DataType::Decimal {
                        precision: Some(10),
                        scale: Some(2),
                    },
                ),
                Column::new("note", DataType::TEXT),
            ],
            primary_key: key.iter().map(|k| (*k).to_string()).collect(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn upserts_name_the_new_row_as_the_server_allows() {
        let t = table(&["id"]);
        let mariadb = Server::for_tests(true, (10, 11, 0));
        assert_eq!(
            on_duplicate(&t, &[0], mariadb),
            " ON DUPLICATE KEY UPDATE `code` = VALUES(`code`), `note` = VALUES(`note`)"
        );
        let mysql = Server::for_tests(false, (8, 0, 36));
        assert_eq!(
            on_duplicate(&t, &[0], mysql),
            " AS `new` ON DUPLICATE KEY UPDATE `code` = `new`.`code`, `note` = `new`.`note`"
        );
        let old = Server::for_tests(false, (8, 0, 18));
        assert!(on_duplicate(&t, &[0], old).contains("VALUES(`code`)"));
        // Every column in the key: a present row stays as it is.
        assert_eq!(
            on_duplicate(&t, &[0, 1, 2], mariadb),
            " ON DUPLICATE KEY UPDATE `id` = `id`"
        );
        assert_eq!(on_duplicate(&t, &[], mysql), "");
        let plan = TablePlan::new(Arc::new(t), mariadb, &std::collections::HashMap::new());
        let statements = Statements::new(&plan, vec![0], mariadb);
        assert_eq!(
            statements.upsert_sql(2),
            "INSERT INTO `or``der` (`id`, `code`, `note`) VALUES (?,?,?),(?,?,?) \
             ON DUPLICATE KEY UPDATE `code` = VALUES(`code`), `note` = VALUES(`note`)"
        );
    }

    #[test]
    fn deletes_list_keys_with_exact_parameters() {
        let t = table(&["id"]);
        assert_eq!(
            delete_sql(&t, &[0], 3),
            "DELETE FROM `or``der` WHERE `id` IN (?, ?, ?)"
        );
        assert_eq!(
            delete_sql(&t, &[1, 0], 2),
            "DELETE FROM `or``der` WHERE (`code`, `id`) IN \
             ((CAST(? AS DECIMAL(10,2)), ?), (CAST(? AS DECIMAL(10,2)), ?))"
        );
    }
}
