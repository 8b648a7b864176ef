//! Two-way sync on PostgreSQL, by hand: reading the conflict log
//! (`_dmp_conflicts`), a row as JSON (`row_to_json`), and resolving a
//! parked conflict — the chosen side's row written here from its JSON
//! (`json_populate_record` converts each field as the column's type reads
//! it) and the key's entries marked, in one transaction tagged as the
//! sync's own so that the change stream reading this side drops it.

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row as _};

use super::conflicts::CONFLICTS;
use super::sql::qualified;
use super::writer::WriteTable;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::conflict::Decision;
use dmp_contract::conflict_log::{key_fields, object_fields};
use dmp_contract::{LoggedConflict, Resolution, RowWrite};

/// A time as RFC 3339 in UTC with microseconds (see [`LoggedConflict`]).
fn utc_text(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

/// The log's entries of sync `sync_id`, oldest first; none when this side
/// has no log (it never applied a change of a two-way sync).
pub(super) async fn entries(
    pool: &PgPool,
    schema: &str,
    place: &str,
    sync_id: &str,
) -> Result<Vec<LoggedConflict>> {
    let ctx = || format!("{place}: reading the conflict log {schema}.{CONFLICTS}");
    let sql = format!(
        "SELECT id, pipeline, table_name, key, kind, decision, remote_side, remote_old, \
         remote_new, local_row, {}, {}, resolution, {} FROM {} WHERE pipeline = $1 ORDER BY id",
        utc_text("remote_commit_time"),
        utc_text("logged_at"),
        utc_text("resolved_at"),
        qualified(schema, CONFLICTS)
    );
    let rows = match sqlx::query(AssertSqlSafe(sql))
        .bind(sync_id)
        .fetch_all(pool)
        .await
    {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e).context(ctx),
    };
    rows.iter()
        .map(|row| {
            Ok(LoggedConflict {
                id: row.try_get(0).context(ctx)?,
                pipeline: row.try_get(1).context(ctx)?,
                table: row.try_get(2).context(ctx)?,
                key: row.try_get(3).context(ctx)?,
                kind: row.try_get(4).context(ctx)?,
                decision: row.try_get(5).context(ctx)?,
                remote_side: row.try_get(6).context(ctx)?,
                remote_old: row.try_get(7).context(ctx)?,
                remote_new: row.try_get(8).context(ctx)?,
                local_row: row.try_get(9).context(ctx)?,
                remote_commit_time: row.try_get(10).context(ctx)?,
                logged_at: row.try_get(11).context(ctx)?,
                resolution: row.try_get(12).context(ctx)?,
                resolved_at: row.try_get(13).context(ctx)?,
            })
        })
        .collect()
}

/// Aliases unlikely to be a column's name: in PostgreSQL a bare name that
/// is both a column and a table alias means the column.
const ROW: &str = "_dmp_row";
const KEY: &str = "_dmp_key";

/// `(_dmp_row."a", …) = (_dmp_key."a", …)`: the row at the key that
/// `json_populate_record` made of the key's JSON.
fn key_match(table: &WriteTable) -> String {
    let names = |alias: &str| {
        table
            .key
            .iter()
            .map(|&k| format!("{alias}.{}", table.quoted_names[k]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) = ({})", names(ROW), names(KEY))
}

/// `key` checked against the table's primary key: a key that lacks one
/// of its columns would match nothing, or too much.
fn check_key(table: &WriteTable, names: &[String], key: &str) -> Result<()> {
    let fields = object_fields(key).context(|| {
        format!(
            "table {}: the conflict's key {key} is no JSON object",
            table.name
        )
    })?;
    key_fields(&table.name, &fields, names, key).map(|_| ())
}

/// The row at `key` as `row_to_json` gives it, if there is one.
pub(super) async fn read_row(
    pool: &PgPool,
    table: &WriteTable,
    key_names: &[String],
    key: &str,
    place: &str,
) -> Result<Option<String>> {
    check_key(table, key_names, key)?;
    let sql = format!(
        "SELECT row_to_json({ROW})::text FROM {q} {ROW}, json_populate_record(NULL::{q}, $1::json) \
         {KEY} WHERE {}",
        key_match(table),
        q = table.qualified
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(pool)
        .await
        .context(|| format!("{place}: reading row {key} of table {}", table.name))
}

/// The upsert of a row given as JSON: the written columns it has, their
/// values converted by `json_populate_record`; on the key's row, its
/// other columns set.
fn upsert_sql(table: &WriteTable, names: &[String], row: &str) -> Result<String> {
    let fields = object_fields(row).context(|| {
        format!(
            "table {}: the chosen side's row is no JSON object",
            table.name
        )
    })?;
    let key_names: Vec<String> = table.key.iter().map(|&k| names[k].clone()).collect();
    key_fields(&table.name, &fields, &key_names, row)?;
    let written: Vec<usize> = (0..names.len())
        .filter(|&i| table.columns[i].is_some() && fields.contains_key(&names[i]))
        .collect();
    let list = written
        .iter()
        .map(|&i| table.quoted_names[i].as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let sets: Vec<String> = written
        .iter()
        .filter(|i| !table.key.contains(i))
        .map(|&i| format!("{0} = EXCLUDED.{0}", table.quoted_names[i]))
        .collect();
    let on_conflict = if sets.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", sets.join(", "))
    };
    let keys: Vec<&str> = table
        .key
        .iter()
        .map(|&k| table.quoted_names[k].as_str())
        .collect();
    Ok(format!(
        "INSERT INTO {q} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} \
         FROM json_populate_record(NULL::{q}, $1::json) ON CONFLICT ({}) {on_conflict}",
        keys.join(", "),
        q = table.qualified
    ))
}

/// Where `resolution` writes: the table as the target knows it (its
/// model column names alongside) and whether the session may turn off
/// triggers as the apply does (`session_replication_role = replica`: the
/// row is the other side's, made by its triggers already).
pub(super) struct Written<'a> {
    pub(super) table: &'a WriteTable,
    pub(super) names: &'a [String],
    pub(super) replica: bool,
}

/// Carries out `resolution` in one transaction: the sync's tag first,
/// then the write (none for [`RowWrite::Keep`]: `written` may be `None`),
/// then the marking of the key's unresolved parked entries.
pub(super) async fn resolve(
    pool: &PgPool,
    schema: &str,
    place: &str,
    written: Option<Written<'_>>,
    resolution: &Resolution<'_>,
) -> Result<u64> {
    let ctx = || {
        format!(
            "{place}: resolving the conflicts of table {} at key {}",
            resolution.table, resolution.key
        )
    };
    let write = match (&resolution.write, &written) {
        (RowWrite::Keep, _) => None,
        (RowWrite::Upsert(row), Some(w)) => Some(upsert_sql(w.table, w.names, row)?),
        (RowWrite::Delete, Some(w)) => {
            let key_names: Vec<String> = w.table.key.iter().map(|&k| w.names[k].clone()).collect();
            check_key(w.table, &key_names, resolution.key)?;
            Some(format!(
                "DELETE FROM {q} {ROW} USING json_populate_record(NULL::{q}, $1::json) {KEY} \
                 WHERE {}",
                key_match(w.table),
                q = w.table.qualified
            ))
        }
        (_, None) => {
            return Err(Error::Config(format!(
                "{}: no table to write the resolution into",
                ctx()
            )));
        }
    };
    let mut txn = pool.begin().await.context(ctx)?;
    // First: the reader of this side's changes learns the transaction is
    // the sync's own before any of its changes.
    sqlx::raw_sql(AssertSqlSafe(crate::replication::origin_tag(
        resolution.sync_id,
    )))
    .execute(&mut *txn)
    .await
    .context(ctx)?;
    if written.as_ref().is_some_and(|w| w.replica) {
        sqlx::raw_sql("SET LOCAL session_replication_role = replica")
            .execute(&mut *txn)
            .await
            .context(ctx)?;
    }
    if let Some(sql) = write {
        let value = match &resolution.write {
            RowWrite::Upsert(row) => row.as_str(),
            _ => resolution.key,
        };
        sqlx::query(AssertSqlSafe(sql))
            .bind(value)
            .execute(&mut *txn)
            .await
            .context(ctx)?;
    }
    let log = qualified(schema, CONFLICTS);
    let has_log: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&log)
        .fetch_one(&mut *txn)
        .await
        .context(ctx)?;
    let marked = if has_log {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {log} SET resolution = $1, resolved_at = now() WHERE pipeline = $2 \
             AND table_name = $3 AND key = $4 AND decision = $5 AND resolution IS NULL \
             AND id <= $6"
        )))
        .bind(&resolution.resolution)
        .bind(resolution.sync_id)
        .bind(resolution.table)
        .bind(resolution.key)
        .bind(Decision::Park.as_str())
        .bind(resolution.seen_up_to)
        .execute(&mut *txn)
        .await
        .context(ctx)?
        .rows_affected()
    } else {
        0
    };
    txn.commit().await.context(ctx)?;
    Ok(marked)
}

/// The names a key's JSON uses: the model columns' (the quoted ones are
/// for SQL only).
pub(super) fn column_names(table: &dmp_model::TableSchema) -> Vec<String> {
    table.columns.iter().map(|c| c.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy_binary::{Encoding, Wire};
    use dmp_model::{Column, DataType, TableSchema};

    fn table() -> (WriteTable, Vec<String>) {
        let schema = TableSchema {
            name: "Order".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("note", DataType::TEXT),
                Column::new("total", DataType::Int64),
            ],
            primary_key: vec!["id".into()],
            ..Default::default()
        };
        let table = WriteTable::new(
            "public",
            &schema,
            vec![
                Some(Encoding::plain(Wire::Int8)),
                Some(Encoding::plain(Wire::Text)),
                // Generated: the server computes it.
                None,
            ],
            vec!["bigint".into(), "text".into(), "bigint".into()],
            false,
        );
        (table, column_names(&schema))
    }

    #[test]
    fn a_row_is_upserted_by_its_key_from_its_json() {
        let (table, names) = table();
        let sql = upsert_sql(&table, &names, r#"{"id": 1, "note": "x", "total": 3}"#).unwrap();
        assert_eq!(
            sql,
            "INSERT INTO \"public\".\"Order\" (\"id\", \"note\") OVERRIDING SYSTEM VALUE \
             SELECT \"id\", \"note\" FROM json_populate_record(NULL::\"public\".\"Order\", $1::json) \
             ON CONFLICT (\"id\") DO UPDATE SET \"note\" = EXCLUDED.\"note\""
        );
        let e = upsert_sql(&table, &names, r#"{"note": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("primary key column id"), "{e}");
        assert_eq!(key_match(&table), "(_dmp_row.\"id\") = (_dmp_key.\"id\")");
    }
}
