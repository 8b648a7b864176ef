//! Two-way sync on MariaDB, by hand: reading the conflict log
//! (`_dmp_conflicts`), a row as JSON (`JSON_OBJECT`), and resolving a
//! parked conflict — the chosen side's row written here from its JSON,
//! each field bound as a parameter of its column, and the key's entries
//! marked, in one transaction on a `skip_replication` session (the
//! caller's), so that the change stream reading this side drops it.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, TxOpts, Value as My};
use serde_json::value::RawValue;

use super::chunks::key_param;
use super::conflicts::row_json;
use super::sql::quote;
use super::types::to_param;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::conflict::Decision;
use dmp_contract::conflict_log::{key_fields, object_fields};
use dmp_contract::{LoggedConflict, Resolution, RowWrite};
use dmp_model::{Column, TableSchema, Value};

/// The log's table.
const CONFLICTS: &str = "_dmp_conflicts";

/// Error number of a missing table.
const NO_SUCH_TABLE: u16 = 1146;

/// A time as RFC 3339 in UTC with microseconds (see [`LoggedConflict`]):
/// sessions run with `time_zone = '+00:00'`, so a `DATETIME` the log
/// wrote holds UTC.
fn utc_text(column: &str) -> String {
    format!("DATE_FORMAT({column}, '%Y-%m-%dT%H:%i:%s.%fZ')")
}

/// The log's entries of sync `sync_id`, oldest first; none when this side
/// has no log (it never applied a change of a two-way sync).
pub(super) async fn entries(
    conn: &mut Conn,
    place: &str,
    sync_id: &str,
) -> Result<Vec<LoggedConflict>> {
    let ctx = || format!("{place}: reading the conflict log {CONFLICTS}");
    let sql = format!(
        "SELECT id, pipeline, table_name, `key`, kind, decision, remote_side, remote_old, \
         remote_new, local_row, {}, {}, resolution, {} FROM {CONFLICTS} WHERE pipeline = ? \
         ORDER BY id",
        utc_text("remote_commit_time"),
        utc_text("logged_at"),
        utc_text("resolved_at")
    );
    let rows: Vec<Row> = match conn.exec(sql, (sync_id,)).await {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) if e.code == NO_SUCH_TABLE => Vec::new(),
        Err(e) => return Err(e).context(ctx),
    };
    rows.into_iter().map(|row| entry(row, &ctx)).collect()
}

/// One row of the log's `SELECT` as an entry.
fn entry(mut row: Row, ctx: &impl Fn() -> String) -> Result<LoggedConflict> {
    let mut column = 0;
    let mut next = || {
        column += 1;
        column - 1
    };
    Ok(LoggedConflict {
        id: take(&mut row, next(), ctx)?,
        pipeline: take(&mut row, next(), ctx)?,
        table: take(&mut row, next(), ctx)?,
        key: take(&mut row, next(), ctx)?,
        kind: take(&mut row, next(), ctx)?,
        decision: take(&mut row, next(), ctx)?,
        remote_side: take(&mut row, next(), ctx)?,
        remote_old: take(&mut row, next(), ctx)?,
        remote_new: take(&mut row, next(), ctx)?,
        local_row: take(&mut row, next(), ctx)?,
        remote_commit_time: take(&mut row, next(), ctx)?,
        logged_at: take(&mut row, next(), ctx)?,
        resolution: take(&mut row, next(), ctx)?,
        resolved_at: take(&mut row, next(), ctx)?,
    })
}

/// Column `i` of `row` as a `T`; an error naming the column otherwise.
fn take<T: mysql_async::prelude::FromValue>(
    row: &mut Row,
    i: usize,
    ctx: &impl Fn() -> String,
) -> Result<T> {
    match row.take_opt::<T, usize>(i) {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(Error::Data(format!(
            "{}: column {i} holds {:?}, not the type expected",
            ctx(),
            e.0
        ))),
        None => Err(Error::Data(format!("{}: column {i} is missing", ctx()))),
    }
}

/// A field of a row's or key's JSON bound as a parameter of `column`:
/// null as NULL, booleans as 1 and 0, numbers as their digits (the server
/// converts them exactly), strings read as the column's type where the
/// model reads them (an RFC 3339 time with its offset, `\x` hex bytes),
/// else as they are for the server to convert; objects and arrays as
/// their JSON text.
fn param(raw: &RawValue, column: &Column) -> My {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => My::NULL,
        Some(b't') => My::Int(1),
        Some(b'f') => My::Int(0),
        Some(b'"') => match serde_json::from_str::<String>(text) {
            Ok(s) => match Value::parse_text(&s, &column.data_type) {
                Ok(value) => to_param(&value),
                Err(_) => My::Bytes(s.into_bytes()),
            },
            Err(_) => My::Bytes(text.as_bytes().to_vec()),
        },
        _ => My::Bytes(text.as_bytes().to_vec()),
    }
}

/// `k1 <=> ? AND …` for the table's key and the parameters of `key`.
fn key_where(schema: &TableSchema, key: &str) -> Result<(String, Vec<My>)> {
    let fields = fields(schema, key, "the conflict's key")?;
    let names = &schema.primary_key;
    let values = key_fields(&schema.name, &fields, names, key)?;
    let mut terms = Vec::with_capacity(names.len());
    let mut params = Vec::with_capacity(names.len());
    for (name, raw) in names.iter().zip(values) {
        let column = column(schema, name)?;
        terms.push(format!(
            "{} <=> {}",
            quote(name),
            key_param(&column.data_type)
        ));
        params.push(param(raw, column));
    }
    Ok((terms.join(" AND "), params))
}

fn fields(schema: &TableSchema, text: &str, what: &str) -> Result<BTreeMap<String, Box<RawValue>>> {
    object_fields(text).context(|| format!("table {}: {what} is no JSON object", schema.name))
}

fn column<'s>(schema: &'s TableSchema, name: &str) -> Result<&'s Column> {
    schema
        .columns
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::Data(format!("table {} has no column {name}", schema.name)))
}

/// The row at `key` as `JSON_OBJECT` gives it, if there is one.
pub(super) async fn read_row(
    conn: &mut Conn,
    schema: &TableSchema,
    key: &str,
    place: &str,
) -> Result<Option<String>> {
    let (condition, params) = key_where(schema, key)?;
    let sql = format!(
        "SELECT {} FROM {} WHERE {condition}",
        row_json(schema),
        quote(&schema.name)
    );
    conn.exec_first(sql, params)
        .await
        .context(|| format!("{place}: reading row {key} of table {}", schema.name))
}

/// `INSERT … ON DUPLICATE KEY UPDATE` of the columns of the table that the
/// row's JSON has, with their parameters (MariaDB: `VALUES()` names the
/// new row).
fn upsert(schema: &TableSchema, row: &str) -> Result<(String, Vec<My>)> {
    let fields = fields(schema, row, "the chosen side's row")?;
    key_fields(&schema.name, &fields, &schema.primary_key, row)?;
    let written: Vec<(&Column, &RawValue)> = schema
        .columns
        .iter()
        .filter_map(|c| fields.get(&c.name).map(|raw| (c, raw.as_ref())))
        .collect();
    let names: Vec<String> = written.iter().map(|(c, _)| quote(&c.name)).collect();
    let marks = vec!["?"; written.len()].join(", ");
    let mut sets: Vec<String> = written
        .iter()
        .filter(|(c, _)| !schema.primary_key.contains(&c.name))
        .map(|(c, _)| format!("{0} = VALUES({0})", quote(&c.name)))
        .collect();
    if sets.is_empty() {
        // The key is the whole row: a present row stays as it is.
        let first = names.first().cloned().unwrap_or_default();
        sets.push(format!("{first} = {first}"));
    }
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {}",
        quote(&schema.name),
        names.join(", "),
        sets.join(", ")
    );
    let params = written.iter().map(|(c, raw)| param(raw, c)).collect();
    Ok((sql, params))
}

/// Carries out `resolution` in one transaction on `conn` (a session the
/// caller tagged with `skip_replication`): the write (none for
/// [`RowWrite::Keep`], where `schema` may be `None`), then the marking
/// of the key's unresolved parked entries.
pub(super) async fn resolve(
    conn: &mut Conn,
    place: &str,
    schema: Option<&TableSchema>,
    resolution: &Resolution<'_>,
) -> Result<u64> {
    let ctx = || {
        format!(
            "{place}: resolving the conflicts of table {} at key {}",
            resolution.table, resolution.key
        )
    };
    let write = match (&resolution.write, schema) {
        (RowWrite::Keep, _) => None,
        (RowWrite::Upsert(row), Some(schema)) => Some(upsert(schema, row)?),
        (RowWrite::Delete, Some(schema)) => {
            let (condition, params) = key_where(schema, resolution.key)?;
            let sql = format!("DELETE FROM {} WHERE {condition}", quote(&schema.name));
            Some((sql, params))
        }
        (_, None) => {
            return Err(Error::Config(format!(
                "{}: no table to write the resolution into",
                ctx()
            )));
        }
    };
    let mut tx = conn
        .start_transaction(TxOpts::default())
        .await
        .context(ctx)?;
    // The sync's own write: the stream of this side does not carry it
    // back.
    crate::origin::mark(&mut tx, resolution.sync_id)
        .await
        .context(ctx)?;
    if let Some((sql, params)) = write {
        tx.exec_drop(sql, params).await.context(ctx)?;
    }
    let has_log: Option<u64> = tx
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (CONFLICTS,),
        )
        .await
        .context(ctx)?;
    let mut marked = 0;
    if has_log.unwrap_or(0) > 0 {
        tx.exec_drop(
            format!(
                "UPDATE {CONFLICTS} SET resolution = ?, resolved_at = CURRENT_TIMESTAMP(6) \
                 WHERE pipeline = ? AND table_name = ? AND `key` = ? AND decision = ? \
                 AND resolution IS NULL AND id <= ?"
            ),
            (
                resolution.resolution.as_str(),
                resolution.sync_id,
                resolution.table,
                resolution.key,
                Decision::Park.as_str(),
                resolution.seen_up_to,
            ),
        )
        .await
        .context(ctx)?;
        marked = tx.affected_rows();
    }
    tx.commit().await.context(ctx)?;
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::DataType;

    fn hot() -> TableSchema {
        TableSchema {
            name: "hot".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("v", DataType::TEXT),
                Column::new("at", DataType::TimestampTz),
            ],
            primary_key: vec!["id".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_row_is_upserted_from_its_json_with_each_field_bound() {
        let (sql, params) = upsert(
            &hot(),
            r#"{"id": 12345678901234567890, "v": null, "at": "2024-05-01T12:00:00+02:00"}"#,
        )
        .unwrap();
        assert_eq!(
            sql,
            "INSERT INTO `hot` (`id`, `v`, `at`) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE `v` = VALUES(`v`), `at` = VALUES(`at`)"
        );
        assert_eq!(params[0], My::Bytes(b"12345678901234567890".to_vec()));
        assert_eq!(params[1], My::NULL);
        // In UTC, as the sessions' time zone reads it.
        assert_eq!(params[2], My::Date(2024, 5, 1, 10, 0, 0, 0));
        let e = upsert(&hot(), r#"{"v": "x"}"#).unwrap_err().to_string();
        assert!(e.contains("primary key column id"), "{e}");
    }

    #[test]
    fn strings_the_model_cannot_read_go_to_the_server_as_they_are() {
        let at = Column::new("at", DataType::TimestampTz);
        let raw = |text: &str| RawValue::from_string(text.to_string()).unwrap();
        assert_eq!(
            param(&raw(r#""2024-05-01 10:00:00.000000""#), &at),
            My::Bytes(b"2024-05-01 10:00:00.000000".to_vec())
        );
        let flag = Column::new("on", DataType::Bool);
        assert_eq!(param(&raw("true"), &flag), My::Int(1));
        let (condition, params) = key_where(&hot(), r#"{"id":7}"#).unwrap();
        assert_eq!(condition, "`id` <=> ?");
        assert_eq!(params, vec![My::Bytes(b"7".to_vec())]);
    }
}
