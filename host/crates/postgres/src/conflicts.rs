//! Two-way sync on PostgreSQL: the conflict check of an apply transaction
//! and the conflict log (`_dmp_conflicts`). The check locks the batch's
//! keys (`FOR UPDATE`: no local write slips in before the apply) and
//! compares each row with the remote side's before- and after-images,
//! encoded as the apply writes them; the judging is the contract's.

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row as _};

use super::copy_binary::coerce;
use super::sql::{pg_text, qualified, quote_ident, quote_literal};
use super::writer::WriteTable;
use dmp_contract::conflict::{
    ConflictEntry, ConflictKind, ConflictRules, Expected, Found, KeyCheck, Settled, judge, settle,
    tombstone_key, tombstone_table, versions_table, write_order_sql,
};
use dmp_model::{Row, TableSchema, Value};

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

/// What a table's writes are ordered by, under `last_writer_wins`; both
/// orders keep the table's deletes in `tombstones` (qualified).
#[derive(Debug, Clone)]
pub(super) enum Order {
    /// Not ordered: another policy.
    None,
    /// A column of the rows (its index); a delete by the deleted row's.
    Column { index: usize, tombstones: String },
    /// Commit times; those of the rows DMP wrote here are in `versions`
    /// (qualified), see `versions_table`.
    CommitTime {
        versions: String,
        tombstones: String,
    },
}

impl Order {
    fn tombstones(&self) -> Option<&str> {
        match self {
            Order::None => None,
            Order::Column { tombstones, .. } | Order::CommitTime { tombstones, .. } => {
                Some(tombstones)
            }
        }
    }
}

/// This side's row's commit time (µs): the remote write's when DMP wrote
/// it (its versions row names the row's transaction), else its own
/// (`track_commit_timestamp`).
const ROW_TIME: &str = "CASE WHEN v.xid = t.xmin THEN v.write_us \
    ELSE round(extract(epoch FROM pg_xact_commit_timestamp(t.xmin)) * 1000000)::bigint END";

/// A tombstone's commit time (µs): the remote delete's when DMP deleted
/// the row, else that of the transaction that did.
const TOMBSTONE_TIME: &str = "COALESCE(d.write_us, \
    round(extract(epoch FROM pg_xact_commit_timestamp(d.xid)) * 1000000)::bigint)";

/// The 32-bit id of the current transaction, as `xmin` shows it.
const CURRENT_XID: &str = "(txid_current() % 4294967296)::text::xid";

/// One table's conflict check: what settles it and how its rows compare.
pub(super) struct Checked<'a> {
    pub(super) rules: &'a ConflictRules,
    pub(super) table: &'a WriteTable,
    pub(super) schema: &'a TableSchema,
    /// What the table's policy orders writes by.
    pub(super) order: Order,
}

/// One segment of a run to check: its table's rules and its keys (see
/// `key_checks`).
pub(super) struct SegmentCheck<'a, 'c> {
    pub(super) checked: Checked<'a>,
    pub(super) keys: &'a [KeyCheck<'c>],
}

/// Checks a run of segments (no key in two of them) against this side's
/// rows, inside the apply transaction, and settles each one's conflicts
/// (`None`: a segment with nothing to check). The run's locks and
/// comparisons go in one round trip, after `prologue`. Errors are the
/// server's, for the caller to tell a race from a failure.
pub(super) async fn check_run(
    conn: &mut PgConnection,
    prologue: &str,
    run: &[Option<SegmentCheck<'_, '_>>],
) -> std::result::Result<Vec<Settled>, sqlx::Error> {
    let mut script = prologue.to_string();
    let mut found = Vec::new();
    for segment in run.iter().flatten() {
        let table = segment.checked.table;
        for group in segment.keys.chunks(CHECK_KEYS) {
            script.push_str(&lock_sql(table, group));
            script.push_str(";\n");
            script.push_str(&compare_sql(
                table,
                group,
                &segment.checked.order,
                found.len(),
            ));
            script.push_str(";\n");
            // Nothing there: the same as a deletion's result.
            found.extend(group.iter().map(|c| Found {
                same_as_last: c.last.is_none(),
                ..Found::default()
            }));
        }
    }
    if !script.is_empty() {
        for row in sqlx::raw_sql(AssertSqlSafe(script))
            .fetch_all(&mut *conn)
            .await?
        {
            // The locks' rows have one column.
            if row.len() < 5 {
                continue;
            }
            let i = usize::try_from(row.try_get::<i32, _>(0)?).unwrap_or(usize::MAX);
            let Some(slot) = found.get_mut(i) else {
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
    }
    let mut settled = Vec::with_capacity(run.len());
    let mut at = 0;
    for segment in run {
        let Some(segment) = segment else {
            settled.push(Settled::default());
            continue;
        };
        let keys = segment.keys;
        let part = &mut found[at..at + keys.len()];
        at += keys.len();
        let checked = &segment.checked;
        checked.order_by_tombstones(conn, keys, part).await?;
        settled.push(settle(
            checked.rules,
            checked.schema,
            &checked.table.key,
            keys,
            part,
        ));
    }
    Ok(settled)
}

impl Checked<'_> {
    /// A remote write of a key this side deleted meanwhile is ordered
    /// against the delete, by the value its tombstone kept; without one
    /// (expired, or deleted before), the order stays unknown.
    async fn order_by_tombstones(
        &self,
        conn: &mut PgConnection,
        checks: &[KeyCheck<'_>],
        found: &mut [Found],
    ) -> std::result::Result<(), sqlx::Error> {
        let Some(tombstones) = self.order.tombstones() else {
            return Ok(());
        };
        let missing: Vec<(usize, &KeyCheck<'_>)> = checks
            .iter()
            .enumerate()
            .filter(|(i, c)| judge(c, &found[*i]) == Some(ConflictKind::UpdateMissing))
            .collect();
        for group in missing.chunks(CHECK_KEYS) {
            let sql = tombstone_sql(self.table, tombstones, &self.order, group);
            if sql.is_empty() {
                continue;
            }
            for row in sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await?
            {
                let i = usize::try_from(row.try_get::<i32, _>(0)?).unwrap_or(usize::MAX);
                if let Some(slot) = found.get_mut(i) {
                    slot.order = row
                        .try_get::<Option<i32>, _>(1)?
                        .and_then(|o| i8::try_from(o).ok());
                }
            }
        }
        Ok(())
    }
}

/// Per key (numbered as in `checks`), the order of the remote write
/// against the tombstone's delete: one `SELECT` each, `UNION ALL`.
fn tombstone_sql(
    table: &WriteTable,
    tombstones: &str,
    order: &Order,
    checks: &[(usize, &KeyCheck<'_>)],
) -> String {
    let parts: Vec<String> = checks
        .iter()
        .filter_map(|(i, check)| {
            let row = check.last?;
            let (remote, local) = match *order {
                Order::Column { index: c, .. } => (
                    literal(table, c, row),
                    format!("d.{}", table.quoted_names[c]),
                ),
                Order::CommitTime { .. } => (
                    format!("{}::bigint", check.commit_time?),
                    TOMBSTONE_TIME.into(),
                ),
                Order::None => return None,
            };
            let order = write_order_sql(&remote, &local, false, true);
            Some(format!(
                "SELECT {i}::int, {order} FROM {tombstones} d WHERE ({}) = ({})",
                key_names_of(table, "d."),
                key_values(table, check.key_row)
            ))
        })
        .collect();
    parts.join(" UNION ALL ")
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

/// One `SELECT` per key, `UNION ALL`: its number (from `base`), whether the row equals
/// the expected one and the last one, the order of the policy's column,
/// and the row as JSON. Values compare as text (as their types print
/// them), which every type has, unlike `=`.
fn compare_sql(table: &WriteTable, checks: &[KeyCheck<'_>], order: &Order, base: usize) -> String {
    let from = match order {
        Order::CommitTime { versions, .. } => format!(
            "{} t LEFT JOIN {versions} v ON ({}) = ({})",
            table.qualified,
            key_names_of(table, "v."),
            key_names_of(table, "t.")
        ),
        _ => format!("{} t", table.qualified),
    };
    let mut parts = Vec::with_capacity(checks.len());
    for (n, check) in checks.iter().enumerate() {
        let i = base + n;
        let expected = match check.expected {
            Expected::Row(row) => same_sql(table, row),
            Expected::Absent | Expected::Present => "false".into(),
        };
        let last = check
            .last
            .map_or_else(|| "false".to_string(), |row| same_sql(table, row));
        // A delete's value is the deleted row's.
        let remote = check
            .last
            .map(|r| (r, false))
            .or(check.deleted.map(|r| (r, true)));
        let order = match (order, remote, check.commit_time) {
            (&Order::Column { index: c, .. }, Some((row, deletes)), _) => write_order_sql(
                &literal(table, c, row),
                &format!("t.{}", table.quoted_names[c]),
                deletes,
                false,
            ),
            // A delete's time is its own.
            (Order::CommitTime { .. }, _, Some(us)) => write_order_sql(
                &format!("{us}::bigint"),
                ROW_TIME,
                check.last.is_none(),
                false,
            ),
            _ => "NULL::int".into(),
        };
        parts.push(format!(
            "SELECT {i}::int, {expected}, {last}, {order}, row_to_json(t)::text FROM {from} \
             WHERE ({}) = ({})",
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

/// The statements that keep the tombstones of `table`'s deleted rows
/// under `last_writer_wins` by `column` (`None`: by commit time): the
/// tombstone table, of the key's types (and the column's) as the table
/// has them, and a trigger that fires for every delete — the sync's own
/// too (`ENABLE ALWAYS`: its sessions may run as `replica`). By commit
/// time a tombstone holds the deleting transaction (`xid`) and, when DMP
/// deleted the row, the remote delete's time (`write_us`, set by the
/// apply); and a versions table holds the times of the rows DMP wrote
/// (see `versions_table`). The trigger reads the deleted row as JSON, so
/// that a column dropped later leaves a NULL rather than failing the
/// user's delete. Each statement does nothing when made.
pub(super) fn tombstone_ddl(
    schema: &str,
    table: &TableSchema,
    column: Option<&str>,
) -> std::result::Result<Vec<String>, String> {
    let tombstones = qualified(schema, &tombstone_table(&table.name));
    let target = qualified(schema, &table.name);
    let primary_key = tombstone_key(table)?;
    let keys: Vec<String> = primary_key.iter().map(|k| quote_ident(k)).collect();
    let keys = keys.join(", ");
    let mut kept = vec![keys.clone()];
    let mut added = Vec::new();
    let mut update = Vec::new();
    let mut dated = "jsonb_build_object('deleted_at', clock_timestamp())".to_string();
    match column {
        Some(column) => {
            if !primary_key.iter().any(|k| k == column) {
                let value = quote_ident(column);
                kept.push(value.clone());
                update.push(format!("{value} = EXCLUDED.{value}"));
            }
        }
        None => {
            added.push("ADD COLUMN xid xid, ADD COLUMN write_us bigint".to_string());
            update.push("xid = EXCLUDED.xid, write_us = NULL".into());
            dated = format!(
                "jsonb_build_object('deleted_at', clock_timestamp(), 'xid', {CURRENT_XID}::text, \
                 'write_us', NULL)"
            );
        }
    }
    added.push("ADD COLUMN deleted_at timestamptz NOT NULL DEFAULT now()".into());
    update.push("deleted_at = EXCLUDED.deleted_at".into());
    let mut statements = vec![shadow_sql(
        &tombstones,
        &target,
        &kept.join(", "),
        &keys,
        &added.join(", "),
    )];
    statements.push(format!(
        "CREATE OR REPLACE FUNCTION {tombstones}() RETURNS trigger LANGUAGE plpgsql AS $dmp$ \
         BEGIN INSERT INTO {tombstones} SELECT * FROM jsonb_populate_record(NULL::{tombstones}, \
         to_jsonb(OLD) || {dated}) ON CONFLICT ({keys}) DO UPDATE SET {}; RETURN NULL; END $dmp$",
        update.join(", "),
    ));
    statements.push(format!(
        "DO $dmp$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = {reg}::regclass \
         AND tgname = '{TOMBSTONE_TRIGGER}') THEN \
         CREATE TRIGGER {TOMBSTONE_TRIGGER} AFTER DELETE ON {target} FOR EACH ROW \
         EXECUTE FUNCTION {tombstones}(); \
         ALTER TABLE {target} ENABLE ALWAYS TRIGGER {TOMBSTONE_TRIGGER}; END IF; END $dmp$",
        reg = quote_literal(&target),
    ));
    if column.is_none() {
        statements.push(shadow_sql(
            &qualified(schema, &versions_table(&table.name)),
            &target,
            &keys,
            &keys,
            "ADD COLUMN xid xid NOT NULL, ADD COLUMN write_us bigint NOT NULL",
        ));
    }
    Ok(statements)
}

/// Makes table `shadow` once: `target`'s columns `kept` (their types as
/// there), primary key `keys`, and the columns `added` (`ADD COLUMN …`).
fn shadow_sql(shadow: &str, target: &str, kept: &str, keys: &str, added: &str) -> String {
    format!(
        "DO $dmp$ BEGIN IF to_regclass({reg}) IS NULL THEN \
         CREATE TABLE {shadow} AS SELECT {kept} FROM {target} WITH NO DATA; \
         ALTER TABLE {shadow} ADD PRIMARY KEY ({keys}), {added}; END IF; END $dmp$",
        reg = quote_literal(shadow),
    )
}

/// Whether the server keeps a commit time per transaction, which
/// `last_writer_wins` by commit time reads for this side's rows.
pub(super) const COMMIT_TIMES: &str = "SELECT current_setting('track_commit_timestamp') = 'on'";

/// Under `last_writer_wins` by commit time, after a batch's writes: the
/// remote commit time of each key DMP wrote (`times`: a key's row, its
/// time) in the versions table, with the transaction that wrote it, and
/// of each key it deleted in the tombstone its delete left. Only rows
/// and tombstones of this transaction are marked (a row the server
/// refused keeps its own time).
pub(super) fn record_times_sql(
    schema: &str,
    table: &WriteTable,
    written: &[(&Row, i64)],
    deleted: &[(&Row, i64)],
) -> Vec<String> {
    let names: Vec<String> = (0..table.key.len()).map(|n| format!("k{n}")).collect();
    let values = |rows: &[(&Row, i64)]| {
        let tuples: Vec<String> = rows
            .iter()
            .map(|(row, us)| format!("({}, {us}::bigint)", key_values(table, row)))
            .collect();
        format!("(VALUES {}) r({}, us)", tuples.join(", "), names.join(", "))
    };
    let on = |alias: &str| {
        let r: Vec<String> = names.iter().map(|n| format!("r.{n}")).collect();
        format!("({}) = ({})", key_names_of(table, alias), r.join(", "))
    };
    let mut out = Vec::new();
    if !written.is_empty() {
        out.push(format!(
            "INSERT INTO {versions} ({keys}, xid, write_us) SELECT {t_keys}, t.xmin, r.us \
             FROM {target} t JOIN {values} ON {on} WHERE t.xmin = {CURRENT_XID} \
             ON CONFLICT ({keys}) DO UPDATE SET xid = EXCLUDED.xid, write_us = EXCLUDED.write_us",
            versions = qualified(schema, &versions_table(&table.name)),
            keys = key_names(table),
            t_keys = key_names_of(table, "t."),
            target = table.qualified,
            values = values(written),
            on = on("t."),
        ));
    }
    if !deleted.is_empty() {
        out.push(format!(
            "UPDATE {tombstones} d SET write_us = r.us FROM {values} WHERE {on} \
             AND d.xid = {CURRENT_XID}",
            tombstones = qualified(schema, &tombstone_table(&table.name)),
            values = values(deleted),
            on = on("d."),
        ));
    }
    out
}

/// The trigger that writes a table's tombstones.
const TOMBSTONE_TRIGGER: &str = "_dmp_tombstone";

/// Forgets `table`'s tombstones older than `retention` before the
/// earlier of now and the remote commit time `commit_us` a leg has applied: a
/// sync stopped for a while keeps those its catching up still needs.
pub(super) fn purge_sql(
    schema: &str,
    table: &str,
    retention: std::time::Duration,
    commit_us: i64,
) -> String {
    format!(
        "DELETE FROM {} WHERE deleted_at < LEAST(now(), to_timestamp({commit_us}::float8 / 1000000)) \
         - make_interval(secs => {})",
        qualified(schema, &tombstone_table(table)),
        retention.as_secs_f64()
    )
}
