//! Two-way sync on MySQL/MariaDB: the conflict check of an apply
//! transaction and the conflict log (`_dmp_conflicts`). The check locks
//! the batch's keys (`FOR UPDATE`) and compares each row with the remote
//! side's before- and after-images, bound as the apply binds them, with
//! `<=>` (NULL-safe); the judging is the contract's.

use mysql_async::prelude::Queryable;
use mysql_async::{Transaction, Value as My};

use super::chunks::key_param;
use super::sql::quote;
use super::types::to_param;
use super::writer::MAX_PARAMS;
use crate::error::{Result, ResultExt};
use dmp_contract::conflict::{
    ConflictEntry, ConflictKind, ConflictRules, Expected, Found, KeyCheck, Settled, judge,
    key_checks, settle, tombstone_key, tombstone_table, write_order_sql,
};
use dmp_model::{Change, ChangeOrigin, DataType, Row, TableSchema, Value};

pub(super) const CONFLICTS_DDL: &str = "CREATE TABLE IF NOT EXISTS _dmp_conflicts (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pipeline VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL, `key` LONGTEXT NOT NULL,
    kind VARCHAR(32) NOT NULL, decision VARCHAR(32) NOT NULL, remote_side VARCHAR(8) NOT NULL,
    remote_old LONGTEXT, remote_new LONGTEXT, local_row LONGTEXT,
    remote_commit_time DATETIME(6), logged_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    resolution VARCHAR(255), resolved_at DATETIME(6))
    ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// What the comparison gives per key found: its number, whether the row
/// equals the expected one and the last one (0 or 1), the order of the
/// policy's column, the row as JSON.
type Compared = (i64, i64, i64, Option<i64>, Option<String>);

/// Checks one table's changes against this side's rows, inside the apply
/// transaction, and settles the conflicts by `rules`.
pub(super) async fn check(
    tx: &mut Transaction<'_>,
    rules: &ConflictRules,
    schema: &TableSchema,
    key: &[usize],
    changes: &[Change],
    origins: &[ChangeOrigin],
) -> Result<Settled> {
    let ctx = || format!("checking table {} for conflicts", schema.name);
    let checks = key_checks(key, changes, origins);
    let column = rules.order_column(schema)?;
    // Parameters of one key's SELECT: its number, two images, the order
    // column thrice and the key.
    let per_key = 4 + 2 * schema.columns.len() + key.len();
    let keys_per_statement = (MAX_PARAMS / per_key.max(1)).clamp(1, 500);
    let mut found = Vec::with_capacity(checks.len());
    for group in checks.chunks(keys_per_statement) {
        let (sql, params) = lock_sql(schema, key, group);
        tx.exec_drop(sql, params).await.context(ctx)?;
        let mut part: Vec<Found> = group
            .iter()
            .map(|c| Found {
                // Nothing there: the same as a deletion's result.
                same_as_last: c.last.is_none(),
                ..Found::default()
            })
            .collect();
        let (sql, params) = compare_sql(schema, key, group, column);
        let rows: Vec<Compared> = tx.exec(sql, params).await.context(ctx)?;
        for (i, same_as_expected, same_as_last, order, local) in rows {
            let Some(slot) = usize::try_from(i).ok().and_then(|i| part.get_mut(i)) else {
                continue;
            };
            *slot = Found {
                present: true,
                same_as_expected: same_as_expected != 0,
                same_as_last: same_as_last != 0,
                order: order.and_then(|o| i8::try_from(o).ok()),
                local,
            };
        }
        found.extend(part);
    }
    if let (Some(c), Some(_)) = (column, rules.tombstone_column(&schema.name)) {
        order_by_tombstones(tx, schema, key, c, &checks, &mut found)
            .await
            .context(ctx)?;
    }
    Ok(settle(rules, schema, key, &checks, &found))
}

/// A remote write of a key this side deleted meanwhile is ordered against
/// the delete, by the value its tombstone kept; without one (expired, or
/// deleted before), the order stays unknown.
async fn order_by_tombstones(
    tx: &mut Transaction<'_>,
    schema: &TableSchema,
    key: &[usize],
    column: usize,
    checks: &[KeyCheck<'_>],
    found: &mut [Found],
) -> std::result::Result<(), mysql_async::Error> {
    let missing: Vec<(usize, &Row)> = checks
        .iter()
        .enumerate()
        .filter(|(i, c)| judge(c, &found[*i]) == Some(ConflictKind::UpdateMissing))
        .filter_map(|(i, c)| Some((i, c.last?)))
        .collect();
    let per_key = 4 + key.len();
    let keys_per_statement = (MAX_PARAMS / per_key).clamp(1, 500);
    let local = format!("d.{}", quote(&schema.columns[column].name));
    let r = key_param(&schema.columns[column].data_type);
    let order = write_order_sql(&r, &local, false, true);
    let key_where: Vec<String> = key
        .iter()
        .zip(key_params(schema, key))
        .map(|(&k, p)| format!("d.{} <=> {p}", quote(&schema.columns[k].name)))
        .collect();
    // Locking, as the comparison: the tombstone as it is now.
    let one = format!(
        "(SELECT CAST(? AS SIGNED), {order} FROM {} d WHERE {} FOR UPDATE)",
        quote(&tombstone_table(&schema.name)),
        key_where.join(" AND ")
    );
    for group in missing.chunks(keys_per_statement) {
        let mut params = Vec::with_capacity(group.len() * per_key);
        for (i, row) in group {
            params.push(My::Int(i64::try_from(*i).unwrap_or(i64::MAX)));
            params.extend(std::iter::repeat_n(value(row, column), 3));
            params.extend(key.iter().map(|&k| value(row, k)));
        }
        let sql = vec![one.as_str(); group.len()].join(" UNION ALL ");
        let rows: Vec<(i64, Option<i64>)> = tx.exec(sql, params).await?;
        for (i, order) in rows {
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| found.get_mut(i)) {
                slot.order = order.and_then(|o| i8::try_from(o).ok());
            }
        }
    }
    Ok(())
}

/// `SELECT 1 FROM t WHERE (key) IN (…) FOR UPDATE`.
fn lock_sql(schema: &TableSchema, key: &[usize], checks: &[KeyCheck<'_>]) -> (String, Vec<My>) {
    let one = format!("({})", key_params(schema, key).join(", "));
    let list = vec![one.as_str(); checks.len()].join(", ");
    let sql = format!(
        "SELECT 1 FROM {} WHERE ({}) IN ({list}) FOR UPDATE",
        quote(&schema.name),
        key_names(schema, key)
    );
    let params = checks
        .iter()
        .flat_map(|c| key.iter().map(|&k| value(c.key_row, k)))
        .collect();
    (sql, params)
}

/// One `SELECT … FOR UPDATE` per key, `UNION ALL`: its number, whether
/// the row equals the expected one and the last one, the order of the
/// policy's column, and the row as JSON.
fn compare_sql(
    schema: &TableSchema,
    key: &[usize],
    checks: &[KeyCheck<'_>],
    column: Option<usize>,
) -> (String, Vec<My>) {
    let mut parts = Vec::with_capacity(checks.len());
    let mut params = Vec::new();
    let json = row_json(schema);
    let key_where: Vec<String> = key
        .iter()
        .zip(key_params(schema, key))
        .map(|(&k, p)| format!("{} <=> {p}", quote(&schema.columns[k].name)))
        .collect();
    let key_where = key_where.join(" AND ");
    for (i, check) in checks.iter().enumerate() {
        params.push(My::Int(i64::try_from(i).unwrap_or(i64::MAX)));
        let expected = match check.expected {
            Expected::Row(row) => same_sql(schema, row, &mut params),
            Expected::Absent | Expected::Present => "0".into(),
        };
        let last = match check.last {
            Some(row) => same_sql(schema, row, &mut params),
            None => "0".into(),
        };
        // A delete's value is the deleted row's.
        let remote = check
            .last
            .map(|r| (r, false))
            .or(check.deleted.map(|r| (r, true)));
        let order = match (column, remote) {
            (Some(c), Some((row, deletes))) => {
                let local = quote(&schema.columns[c].name);
                let r = key_param(&schema.columns[c].data_type);
                // The remote value, bound once per comparison.
                params.extend(std::iter::repeat_n(value(row, c), 3));
                write_order_sql(&r, &local, deletes, false)
            }
            _ => "NULL".into(),
        };
        params.extend(key.iter().map(|&k| value(check.key_row, k)));
        // A locking read: it reads the rows as they are now, not as the
        // transaction's snapshot (taken at its first plain read, perhaps a
        // segment earlier) had them.
        parts.push(format!(
            "(SELECT CAST(? AS SIGNED), ({expected}) + 0, ({last}) + 0, {order}, {json} FROM {} \
             WHERE {key_where} FOR UPDATE)",
            quote(&schema.name)
        ));
    }
    (parts.join(" UNION ALL "), params)
}

/// `(a <=> ? AND …)` over the columns, binding `row`'s values.
fn same_sql(schema: &TableSchema, row: &Row, params: &mut Vec<My>) -> String {
    let terms: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            params.push(value(row, i));
            format!("{} <=> {}", quote(&c.name), key_param(&c.data_type))
        })
        .collect();
    if terms.is_empty() {
        "1".into()
    } else {
        format!("({})", terms.join(" AND "))
    }
}

/// `JSON_OBJECT('a', `a`, …)`: the row for the log (and for `dmp
/// conflicts resolve`, which copies it to the other side, and a resolver).
/// Bytes as `\x` and hex, as PostgreSQL prints them: `JSON_OBJECT` would
/// put them in as text, which arbitrary bytes are not.
pub(super) fn row_json(schema: &TableSchema) -> String {
    let pairs: Vec<String> = schema
        .columns
        .iter()
        .map(|c| {
            let value = match c.data_type {
                DataType::Bytes => format!("CONCAT('\\\\x', LOWER(HEX({})))", quote(&c.name)),
                _ => quote(&c.name),
            };
            format!(
                "'{}', {value}",
                c.name.replace('\\', "\\\\").replace('\'', "''"),
            )
        })
        .collect();
    format!("JSON_OBJECT({})", pairs.join(", "))
}

fn key_params(schema: &TableSchema, key: &[usize]) -> Vec<String> {
    key.iter()
        .map(|&k| key_param(&schema.columns[k].data_type))
        .collect()
}

fn key_names(schema: &TableSchema, key: &[usize]) -> String {
    let names: Vec<String> = key
        .iter()
        .map(|&k| quote(&schema.columns[k].name))
        .collect();
    names.join(", ")
}

fn value(row: &Row, i: usize) -> My {
    to_param(row.0.get(i).unwrap_or(&Value::Null))
}

/// Writes the log's rows for `entries` in the transaction.
pub(super) async fn log(
    tx: &mut Transaction<'_>,
    pipeline: &str,
    entries: &[ConflictEntry],
) -> Result<()> {
    let text = |v: &Option<serde_json::Value>| v.as_ref().map(ToString::to_string);
    for e in entries {
        let time = e.commit_time.map(|us| us as f64 / 1_000_000.0);
        tx.exec_drop(
            "INSERT INTO _dmp_conflicts (pipeline, table_name, `key`, kind, decision, remote_side, \
             remote_old, remote_new, local_row, remote_commit_time) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, FROM_UNIXTIME(?))",
            (
                pipeline,
                e.table.as_str(),
                e.key.to_string(),
                e.kind.as_str(),
                e.decision.as_str(),
                e.remote.as_str(),
                text(&e.remote_old),
                text(&e.remote_new),
                e.local.clone(),
                time,
            ),
        )
        .await
        .context(|| format!("logging a conflict of table {}", e.table))?;
    }
    Ok(())
}

/// The statements that keep the tombstones of `table`'s deleted rows
/// (under `last_writer_wins` by `column`): the tombstone table, of the
/// key's and the column's types as the table has them, and a trigger
/// that fires for every delete, the sync's own too, with the time in UTC
/// (sessions' time zones differ). Each does nothing when made.
pub(super) fn tombstone_ddl(
    table: &TableSchema,
    column: &str,
) -> std::result::Result<Vec<String>, String> {
    let primary_key = tombstone_key(table)?;
    let name = tombstone_table(&table.name);
    let tombstones = quote(&name);
    let mut kept: Vec<&str> = primary_key.iter().map(String::as_str).collect();
    if !kept.contains(&column) {
        kept.push(column);
    }
    let list = |prefix: &str| {
        let names: Vec<String> = kept
            .iter()
            .map(|c| format!("{prefix}{}", quote(c)))
            .collect();
        names.join(", ")
    };
    let keys: Vec<String> = primary_key.iter().map(|k| quote(k)).collect();
    let mut update = vec!["deleted_at = VALUES(deleted_at)".to_string()];
    if !primary_key.iter().any(|k| k == column) {
        update.insert(0, format!("{0} = VALUES({0})", quote(column)));
    }
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {tombstones} (deleted_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
         PRIMARY KEY ({})) ENGINE=InnoDB SELECT {} FROM {} LIMIT 0",
        keys.join(", "),
        list(""),
        quote(&table.name)
    );
    let trigger = format!(
        "CREATE TRIGGER IF NOT EXISTS {tombstones} AFTER DELETE ON {} FOR EACH ROW \
         INSERT INTO {tombstones} ({}, deleted_at) VALUES ({}, UTC_TIMESTAMP(6)) \
         ON DUPLICATE KEY UPDATE {}",
        quote(&table.name),
        list(""),
        list("OLD."),
        update.join(", ")
    );
    Ok(vec![create, trigger])
}

/// Forgets `table`'s tombstones older than `retention` before the earlier
/// of now and the remote commit time `commit_us` a leg has applied: a
/// sync stopped for a while keeps those its catching up still needs.
pub(super) fn purge_sql(table: &str, retention: std::time::Duration, commit_us: i64) -> String {
    format!(
        "DELETE FROM {} WHERE deleted_at < LEAST(UTC_TIMESTAMP(6), \
         TIMESTAMPADD(MICROSECOND, {commit_us}, '1970-01-01 00:00:00')) \
         - INTERVAL {} MICROSECOND",
        quote(&tombstone_table(table)),
        retention.as_micros()
    )
}
