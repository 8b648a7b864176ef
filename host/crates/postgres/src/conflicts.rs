//! Two-way sync on PostgreSQL: the conflict check of an apply transaction
//! and the conflict log (`_dmp_conflicts`). The check locks the batch's
//! keys (`FOR UPDATE`: no local write slips in before the apply) and
//! compares each row with the remote side's before- and after-images,
//! encoded as the apply writes them; the judging is the contract's.

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row as _};

use super::copy_binary::coerce;
use super::sql::{pg_text, qualified, quote_literal};
use super::writer::WriteTable;
use dmp_contract::conflict::{
    ConflictEntry, ConflictRules, Expected, Found, KeyCheck, Settled, key_checks, settle,
};
use dmp_model::{Change, ChangeOrigin, Row, TableSchema, Value};

/// The conflict log's table, in the target schema.
pub(super) const CONFLICTS: &str = "_dmp_conflicts";

/// Keys compared per statement.
const CHECK_KEYS: usize = 500;

pub(super) fn create_conflicts(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         pipeline text NOT NULL, table_name text NOT NULL, key text NOT NULL, \
         kind text NOT NULL, decision text NOT NULL, remote_side text NOT NULL, \
         remote_old text, remote_new text, local_row text, remote_commit_time timestamptz, \
         logged_at timestamptz NOT NULL DEFAULT now(), resolution text, resolved_at timestamptz)",
        qualified(schema, CONFLICTS)
    )
}

/// One table's conflict check: what settles it and how its rows compare.
pub(super) struct Checked<'a> {
    pub(super) rules: &'a ConflictRules,
    pub(super) table: &'a WriteTable,
    pub(super) schema: &'a TableSchema,
    /// The column the table's policy orders writes by.
    pub(super) column: Option<usize>,
}

impl Checked<'_> {
    /// Checks the table's changes against this side's rows, inside the
    /// apply transaction, and settles the conflicts. Errors are the
    /// server's, for the caller to tell a race from a failure.
    pub(super) async fn check(
        &self,
        conn: &mut PgConnection,
        changes: &[Change],
        origins: &[ChangeOrigin],
    ) -> std::result::Result<Settled, sqlx::Error> {
        let table = self.table;
        let checks = key_checks(&table.key, changes, origins);
        let mut found = Vec::with_capacity(checks.len());
        for group in checks.chunks(CHECK_KEYS) {
            sqlx::raw_sql(AssertSqlSafe(lock_sql(table, group)))
                .execute(&mut *conn)
                .await?;
            let mut part = vec![Found::default(); group.len()];
            for (i, check) in group.iter().enumerate() {
                // Nothing there: the same as a deletion's result.
                part[i].same_as_last = check.last.is_none();
            }
            let rows = sqlx::raw_sql(AssertSqlSafe(compare_sql(table, group, self.column)))
                .fetch_all(&mut *conn)
                .await?;
            for row in rows {
                let i = usize::try_from(row.try_get::<i32, _>(0)?).unwrap_or(usize::MAX);
                let Some(slot) = part.get_mut(i) else {
                    continue;
                };
                *slot = Found {
                    present: true,
                    same_as_expected: row.try_get(1)?,
                    same_as_last: row.try_get(2)?,
                    order: row
                        .try_get::<Option<i32>, _>(3)?
                        .and_then(|o| i8::try_from(o).ok()),
                    local: row.try_get(4)?,
                };
            }
            found.extend(part);
        }
        Ok(settle(self.rules, self.schema, &table.key, &checks, &found))
    }
}

/// `SELECT 1 FROM t WHERE (key) IN (…) FOR UPDATE`.
fn lock_sql(table: &WriteTable, checks: &[KeyCheck<'_>]) -> String {
    let keys: Vec<String> = checks.iter().map(|c| key_tuple(table, c.key_row)).collect();
    format!(
        "SELECT 1 FROM {} WHERE ({}) IN ({}) FOR UPDATE",
        table.qualified,
        key_names(table),
        keys.join(", ")
    )
}

/// One `SELECT` per key, `UNION ALL`: its number, whether the row equals
/// the expected one and the last one, the order of the policy's column,
/// and the row as JSON. Values compare as text (as their types print
/// them), which every type has, unlike `=`.
fn compare_sql(table: &WriteTable, checks: &[KeyCheck<'_>], column: Option<usize>) -> String {
    let mut parts = Vec::with_capacity(checks.len());
    for (i, check) in checks.iter().enumerate() {
        let expected = match check.expected {
            Expected::Row(row) => same_sql(table, row),
            Expected::Absent | Expected::Present => "false".into(),
        };
        let last = check
            .last
            .map_or_else(|| "false".to_string(), |row| same_sql(table, row));
        let order = match (column, check.last) {
            (Some(c), Some(row)) => {
                let local = format!("t.{}", table.quoted_names[c]);
                let remote = literal(table, c, row);
                format!(
                    "CASE WHEN {remote} > {local} THEN 1 WHEN {remote} < {local} THEN -1 \
                     WHEN {remote} = {local} THEN 0 END"
                )
            }
            _ => "NULL::int".into(),
        };
        parts.push(format!(
            "SELECT {i}::int, {expected}, {last}, {order}, row_to_json(t)::text FROM {} t \
             WHERE ({}) = ({})",
            table.qualified,
            key_names_of(table, "t."),
            key_values(table, check.key_row)
        ));
    }
    parts.join(" UNION ALL ")
}

/// `(t.a::text IS NOT DISTINCT FROM (lit)::text AND …)` over the written
/// columns.
fn same_sql(table: &WriteTable, row: &Row) -> String {
    let terms: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_some())
        .map(|(i, _)| {
            format!(
                "t.{}::text IS NOT DISTINCT FROM ({})::text",
                table.quoted_names[i],
                literal(table, i, row)
            )
        })
        .collect();
    if terms.is_empty() {
        "true".into()
    } else {
        format!("({})", terms.join(" AND "))
    }
}

/// Column `i` of `row` as a literal of the column's type, converted as
/// the apply converts it.
fn literal(table: &WriteTable, i: usize, row: &Row) -> String {
    let value = row.0.get(i).unwrap_or(&Value::Null);
    let text = match table.columns.get(i).and_then(Option::as_ref) {
        Some(encoding) => coerce(value, encoding.wire).ok().and_then(|v| pg_text(&v)),
        None => pg_text(value),
    };
    match text {
        Some(text) => format!("{}::{}", quote_literal(&text), table.sql_types[i]),
        None => format!("NULL::{}", table.sql_types[i]),
    }
}

fn key_names(table: &WriteTable) -> String {
    key_names_of(table, "")
}

fn key_names_of(table: &WriteTable, prefix: &str) -> String {
    let names: Vec<String> = table
        .key
        .iter()
        .map(|&k| format!("{prefix}{}", table.quoted_names[k]))
        .collect();
    names.join(", ")
}

fn key_values(table: &WriteTable, row: &Row) -> String {
    let values: Vec<String> = table.key.iter().map(|&k| literal(table, k, row)).collect();
    values.join(", ")
}

fn key_tuple(table: &WriteTable, row: &Row) -> String {
    format!("({})", key_values(table, row))
}

/// The log's rows for `entries`, one `INSERT` (empty: none).
pub(super) fn log_sql(schema: &str, pipeline: &str, entries: &[ConflictEntry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let text = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or_else(|| "NULL".to_string(), |v| quote_literal(&v.to_string()))
    };
    let rows: Vec<String> = entries
        .iter()
        .map(|e| {
            let time = e.commit_time.map_or_else(
                || "NULL".to_string(),
                |us| format!("to_timestamp({us}::float8 / 1000000)"),
            );
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {time})",
                quote_literal(pipeline),
                quote_literal(&e.table),
                quote_literal(&e.key.to_string()),
                quote_literal(e.kind.as_str()),
                quote_literal(e.decision.as_str()),
                quote_literal(e.remote.as_str()),
                text(&e.remote_old),
                text(&e.remote_new),
                e.local
                    .as_deref()
                    .map_or_else(|| "NULL".to_string(), quote_literal),
            )
        })
        .collect();
    format!(
        "INSERT INTO {} (pipeline, table_name, key, kind, decision, remote_side, remote_old, \
         remote_new, local_row, remote_commit_time) VALUES {}",
        qualified(schema, CONFLICTS),
        rows.join(", ")
    )
}
