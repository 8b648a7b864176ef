//! Writes one batch: its rows with binary `COPY FROM STDIN` and its
//! checkpoint, in one transaction. When the server refuses the COPY for
//! the data (a constraint, a value out of range), the transaction is
//! redone with the rows in savepoints, halving the failing groups until
//! each bad row is found and refused alone; the good rows commit with the
//! checkpoint.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use super::copy_binary::{CopyEncoder, Encoding, coerce, header, trailer};
use super::ddl::{upsert_checkpoint, upsert_fenced_checkpoint};
use super::sql::{qualified, quote_ident, typed_literal};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::RejectSink;
use dmp_model::{
    Batch, Change, Checkpoint, Fence, Position, Reject, RejectStage, Row, TableSchema,
    json::row_to_json,
};

/// Bytes of COPY data per protocol message.
const PIECE: usize = 1 << 20;

/// A target table as the writer sees it: its actual column types, read
/// from `pg_attribute` when the run was prepared.
#[derive(Debug)]
pub(super) struct WriteTable {
    pub(super) name: String,
    pub(super) qualified: String,
    /// Per model column: its encoding on the target, or `None` for a
    /// generated column (the server computes it).
    pub(super) columns: Vec<Option<Encoding>>,
    /// Per model column: the target column's SQL type, for key literals.
    pub(super) sql_types: Vec<String>,
    /// Per model column: its quoted name.
    pub(super) quoted_names: Vec<String>,
    pub(super) copy_sql: String,
    pub(super) fields: i16,
    /// Model column indices of the primary key.
    pub(super) key: Vec<usize>,
    /// Rows load with foreign key triggers off (`session_replication_role
    /// = replica`): the table has foreign keys already (a data-only or
    /// append run) and tables arrive in any order.
    pub(super) replica: bool,
    /// Two-way sync: each batch's transaction is tagged with this sync id,
    /// so that the first load does not come back from this side either.
    pub(super) origin: Option<String>,
}

impl WriteTable {
    /// Where a refused row came from: its key, else the batch's position.
    fn position_of(&self, row: &Row, batch: &Position) -> Position {
        let key: Option<Vec<_>> = self.key.iter().map(|&i| row.0.get(i).cloned()).collect();
        match key {
            Some(key) if !key.is_empty() => Position::Key { key },
            _ => batch.clone(),
        }
    }

    pub(super) fn new(
        schema_name: &str,
        table: &TableSchema,
        columns: Vec<Option<Encoding>>,
        sql_types: Vec<String>,
        replica: bool,
    ) -> Self {
        let copied: Vec<String> = table
            .columns
            .iter()
            .zip(&columns)
            .filter(|(_, e)| e.is_some())
            .map(|(c, _)| quote_ident(&c.name))
            .collect();
        let qualified = qualified(schema_name, &table.name);
        WriteTable {
            name: table.name.clone(),
            copy_sql: format!(
                "COPY {qualified} ({}) FROM STDIN (FORMAT binary)",
                copied.join(", ")
            ),
            fields: i16::try_from(copied.len()).unwrap_or(i16::MAX),
            qualified,
            columns,
            sql_types,
            quoted_names: table.columns.iter().map(|c| quote_ident(&c.name)).collect(),
            key: table.primary_key_indices(),
            replica,
            origin: None,
        }
    }

    /// `"a", "b"`: the columns rows are written to (generated ones left
    /// to the server).
    pub(super) fn written_names(&self) -> String {
        self.columns
            .iter()
            .zip(&self.quoted_names)
            .filter(|(e, _)| e.is_some())
            .map(|(_, name)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Errors that belong to the rows, not the connection: a data exception
/// (class 22), an integrity constraint (class 23), a row too large for an
/// index (54000).
pub(super) fn is_row_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("22") || code.starts_with("23") || code == "54000"
        }),
        _ => false,
    }
}

pub(super) fn server_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut msg = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                && let Some(detail) = pg.detail()
            {
                msg.push_str(": ");
                msg.push_str(detail);
            }
            msg
        }
        other => other.to_string(),
    }
}

/// What the writer does with a batch, in order.
enum Step<'a> {
    /// Encoded tuples (ranges in the encoder's stream) of insert rows.
    Insert(Vec<(&'a Row, Range<usize>)>),
    Delete(&'a Row),
}

/// Encodes the batch's rows; rows whose values do not fit the target
/// column are refused here, before anything is sent.
fn plan<'a>(
    table: &WriteTable,
    schema: &TableSchema,
    batch: &'a Batch,
    refused: &mut Vec<Reject>,
) -> Result<(CopyEncoder, Vec<Step<'a>>)> {
    // About 20 bytes a field: one allocation for most batches.
    let per_row = 2 + 20 * usize::try_from(table.fields).unwrap_or(0);
    let mut encoder = CopyEncoder::with_capacity(batch.changes.len() * per_row + 64);
    let mut steps: Vec<Step<'a>> = Vec::new();
    let mut pending: Vec<(&'a Row, Range<usize>)> = Vec::new();
    for change in &batch.changes {
        let insert = match change {
            Change::Insert(row) => Some(row),
            Change::Update { before, after } => {
                if table.key.is_empty() {
                    return Err(no_key(table, "update"));
                }
                if !pending.is_empty() {
                    steps.push(Step::Insert(std::mem::take(&mut pending)));
                }
                steps.push(Step::Delete(before.as_ref().unwrap_or(after)));
                Some(after)
            }
            Change::Delete(row) => {
                if table.key.is_empty() {
                    return Err(no_key(table, "delete"));
                }
                if !pending.is_empty() {
                    steps.push(Step::Insert(std::mem::take(&mut pending)));
                }
                steps.push(Step::Delete(row));
                None
            }
        };
        let Some(row) = insert else { continue };
        let start = encoder.begin_row(table.fields);
        let mut failure = None;
        for (i, (value, encoding)) in row.0.iter().zip(&table.columns).enumerate() {
            let Some(encoding) = encoding else { continue };
            if let Err(e) = encoder.field(value, encoding) {
                let column = schema.columns.get(i).map_or("?", |c| c.name.as_str());
                failure = Some(format!("column {column}: {e}"));
                break;
            }
        }
        match failure {
            None => pending.push((row, start..encoder.len())),
            Some(error) => {
                encoder.abandon_row(start);
                refused.push(Reject {
                    stage: RejectStage::Target,
                    error,
                    row: row_to_json(schema, row),
                    position: table.position_of(row, &batch.position),
                });
            }
        }
    }
    if !pending.is_empty() {
        steps.push(Step::Insert(pending));
    }
    Ok((encoder, steps))
}

fn no_key(table: &WriteTable, op: &str) -> Error {
    Error::Unsupported(format!(
        "table {}: cannot apply an {op} to a table without a primary key",
        table.name
    ))
}

/// Writes `batch` and its checkpoint in one transaction; refused rows go
/// to `sink` before the commit. Returns the rows written.
pub(super) async fn write(
    pool: &PgPool,
    schema_name: &str,
    pipeline: &str,
    table: &WriteTable,
    batch: Batch,
    checkpoint: Checkpoint,
    sink: Arc<dyn RejectSink>,
) -> Result<u64> {
    let chunk = batch.chunk;
    let ctx = || format!("writing table {} chunk {chunk}", table.name);
    let mut batch = batch;
    if let Some(wire) = batch.wire.take() {
        if super::wire::takes(&wire.format, &table.columns, &table.sql_types)
            && batch.changes.is_empty()
        {
            match attempt_wire(pool, table, &wire.bytes).await {
                Ok(txn) => {
                    let done = Done {
                        checkpoint: &checkpoint,
                        refused: Vec::new(),
                        schema: &batch.table,
                        sink,
                    };
                    commit(txn, schema_name, pipeline, done, ctx).await?;
                    return Ok(wire.rows);
                }
                Err(e) if is_row_error(&e) => {
                    tracing::debug!(table = table.name, error = %e, "batch refused by the server; decoding it to find the bad rows");
                }
                Err(e) => return Err(e).context(ctx),
            }
        }
        batch.wire = Some(wire);
        batch.decode_wire().map_err(Error::Data)?;
    }
    let mut refused = Vec::new();
    let (encoder, steps) = plan(table, &batch.table, &batch, &mut refused)?;
    let stream = encoder.finish();
    let first = attempt(pool, table, &stream, &steps, false).await;
    let outcome = match first {
        Err(e) if is_row_error(&e) => {
            tracing::debug!(table = table.name, error = %e, "batch refused by the server; isolating the bad rows");
            attempt(pool, table, &stream, &steps, true).await
        }
        other => other,
    };
    let (txn, written, bad) = outcome.context(ctx)?;
    for (row, error) in bad {
        refused.push(Reject {
            stage: RejectStage::Target,
            error,
            row: row_to_json(&batch.table, row),
            position: table.position_of(row, &batch.position),
        });
    }
    let done = Done {
        checkpoint: &checkpoint,
        refused,
        schema: &batch.table,
        sink,
    };
    commit(txn, schema_name, pipeline, done, ctx).await?;
    Ok(written)
}

/// What a written batch leaves to commit with it.
struct Done<'a> {
    checkpoint: &'a Checkpoint,
    /// Rows refused, for the dead letters.
    refused: Vec<Reject>,
    schema: &'a Arc<TableSchema>,
    sink: Arc<dyn RejectSink>,
}

/// Records the checkpoint in the batch's transaction, hands the refused
/// rows to the dead letters and commits.
async fn commit(
    mut txn: Transaction<'static, Postgres>,
    schema_name: &str,
    pipeline: &str,
    done: Done<'_>,
    ctx: impl Fn() -> String + Copy,
) -> Result<()> {
    let Done {
        checkpoint,
        refused,
        schema,
        sink,
    } = done;
    let position = serde_json::to_string(&checkpoint.position).context(ctx)?;
    let sql = match checkpoint.fence {
        Some(Fence::Rows(_)) => upsert_fenced_checkpoint(schema_name),
        _ => upsert_checkpoint(schema_name),
    };
    let mut upsert = sqlx::query(AssertSqlSafe(sql))
        .bind(pipeline)
        .bind(&checkpoint.table)
        .bind(i32::try_from(checkpoint.chunk).unwrap_or(i32::MAX))
        .bind(position)
        .bind(i64::try_from(checkpoint.rows).unwrap_or(i64::MAX))
        .bind(checkpoint.done);
    if let Some(Fence::Rows(rows)) = checkpoint.fence {
        upsert = upsert.bind(i64::try_from(rows).unwrap_or(i64::MAX));
    }
    let written = upsert.execute(&mut *txn).await.context(ctx)?;
    if written.rows_affected() == 0 {
        // Dropping the transaction rolls the batch back.
        return Err(dmp_contract::deposed(checkpoint));
    }
    // Before the commit: a crash in between redoes the batch rather than
    // losing these rows.
    dmp_contract::dead_letter(&sink, schema, refused).await?;
    txn.commit().await.context(ctx)?;
    Ok(())
}

/// The batch's tuples as the source sent them, in one COPY, in a
/// transaction left open for the checkpoint.
async fn attempt_wire(
    pool: &PgPool,
    table: &WriteTable,
    tuples: &[u8],
) -> std::result::Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut txn = begin(pool, table).await?;
    let parts = [header(), tuples, trailer()];
    copy(&mut txn, &table.copy_sql, parts.into_iter()).await?;
    Ok(txn)
}

/// A transaction for one batch: see `attempt`.
async fn begin(
    pool: &PgPool,
    table: &WriteTable,
) -> std::result::Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut txn = pool.begin().await?;
    // The batch and its checkpoint commit together: a commit lost in a
    // crash (synchronous_commit = off) loses both, and the batch is redone
    // whole from the previous checkpoint. Nothing is lost or doubled.
    let mut settings = String::from("SET LOCAL synchronous_commit = off");
    if table.replica {
        settings.push_str("; SET LOCAL session_replication_role = replica");
    }
    if let Some(origin) = &table.origin {
        settings.push_str("; ");
        settings.push_str(&crate::replication::origin_tag(origin));
    }
    sqlx::raw_sql(AssertSqlSafe(settings))
        .execute(&mut *txn)
        .await?;
    Ok(txn)
}

type Attempt<'a> = (Transaction<'static, Postgres>, u64, Vec<(&'a Row, String)>);

/// One try at the batch, in a transaction left open for the checkpoint.
/// `isolate`: inserts go in savepoints, failing groups are halved and the
/// single rows that still fail are returned with the server's message.
/// A failed try's transaction rolls back when it is dropped.
async fn attempt<'a>(
    pool: &PgPool,
    table: &WriteTable,
    stream: &[u8],
    steps: &[Step<'a>],
    isolate: bool,
) -> std::result::Result<Attempt<'a>, sqlx::Error> {
    let mut txn = begin(pool, table).await?;
    let conn: &mut PgConnection = &mut txn;
    let mut written = 0u64;
    let mut bad = Vec::new();
    let whole = count_rows(steps);
    for step in steps {
        match step {
            Step::Insert(rows) if !isolate && rows.len() == whole => {
                // The common case: the whole stream as it was encoded.
                written += copy(conn, &table.copy_sql, std::iter::once(stream)).await?;
            }
            Step::Insert(rows) if !isolate => {
                written += copy_rows(conn, table, stream, rows).await?;
            }
            Step::Insert(rows) => {
                written += isolate_rows(conn, table, rows, &mut bad).await?;
            }
            Step::Delete(row) => {
                delete(conn, table, row).await?;
                written += 1;
            }
        }
    }
    Ok((txn, written, bad))
}

fn count_rows(steps: &[Step<'_>]) -> usize {
    match steps {
        [Step::Insert(rows)] => rows.len(),
        _ => usize::MAX,
    }
}

/// Runs one COPY over the given pieces of a stream.
pub(super) async fn copy<'s>(
    conn: &mut PgConnection,
    sql: &str,
    parts: impl Iterator<Item = &'s [u8]>,
) -> std::result::Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(sql).await?;
    for part in parts {
        for piece in part.chunks(PIECE) {
            if let Err(e) = copy.send(piece).await {
                let _ = copy.abort("dmp: send failed").await;
                return Err(e);
            }
        }
    }
    copy.finish().await
}

/// COPY of some encoded tuples: header, the tuples, trailer.
async fn copy_rows(
    conn: &mut PgConnection,
    table: &WriteTable,
    stream: &[u8],
    rows: &[(&Row, Range<usize>)],
) -> std::result::Result<u64, sqlx::Error> {
    let mut assembled = Vec::with_capacity(PIECE.min(stream.len()) + 32);
    assembled.extend_from_slice(header());
    for (_, range) in rows {
        assembled.extend_from_slice(&stream[range.clone()]);
    }
    assembled.extend_from_slice(trailer());
    copy(conn, &table.copy_sql, std::iter::once(assembled.as_slice())).await
}

/// Inserts `rows` in savepoints, halving failing groups down to single
/// rows, which are refused with the server's message. Groups go as one
/// multi-row INSERT of typed literals with the savepoint around it in the
/// same simple query: one round trip each, where a COPY would take three
/// and wait on TCP delayed acknowledgements (sqlx 0.9.0 does not set
/// TCP_NODELAY).
async fn isolate_rows<'a>(
    conn: &mut PgConnection,
    table: &WriteTable,
    rows: &[(&'a Row, Range<usize>)],
    bad: &mut Vec<(&'a Row, String)>,
) -> std::result::Result<u64, sqlx::Error> {
    let mut written = 0;
    // The whole group failed already: start with its halves.
    let (first, second) = rows.split_at(rows.len() / 2);
    let mut stack: Vec<&[(&'a Row, Range<usize>)]> = vec![second, first];
    while let Some(group) = stack.pop() {
        if group.is_empty() {
            continue;
        }
        let sql = format!(
            "SAVEPOINT dmp_rows; {}; RELEASE SAVEPOINT dmp_rows",
            insert_sql(table, group.iter().map(|(row, _)| *row))
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
            Ok(_) => written += group.len() as u64,
            Err(e) if is_row_error(&e) => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT dmp_rows; RELEASE SAVEPOINT dmp_rows")
                    .execute(&mut *conn)
                    .await?;
                if let [(row, _)] = group {
                    bad.push((row, server_message(&e)));
                } else {
                    let (first, second) = group.split_at(group.len() / 2);
                    // Popped first half first: rows keep their order.
                    stack.push(second);
                    stack.push(first);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// `INSERT INTO t (…) VALUES (…), …` with each value a literal of its
/// target column's type. Identity columns take the given values, as COPY
/// does.
fn insert_sql<'r>(table: &WriteTable, rows: impl Iterator<Item = &'r Row>) -> String {
    let included: Vec<usize> = (0..table.columns.len())
        .filter(|&i| table.columns[i].is_some())
        .collect();
    let names: Vec<&str> = included
        .iter()
        .map(|&i| table.quoted_names[i].as_str())
        .collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ",
        table.qualified,
        names.join(", ")
    );
    for (n, row) in rows.enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (k, &i) in included.iter().enumerate() {
            if k > 0 {
                sql.push_str(", ");
            }
            let value = row.0.get(i).unwrap_or(&dmp_model::Value::Null);
            // The value as the binary path sends it; one that does not
            // convert goes as it is, for the server to refuse.
            let coerced = match &table.columns[i] {
                Some(enc) => coerce(value, enc.wire).unwrap_or(Cow::Borrowed(value)),
                None => Cow::Borrowed(value),
            };
            sql.push_str(&typed_literal(&coerced, &table.sql_types[i]));
        }
        sql.push(')');
    }
    sql
}

/// Deletes the row with `row`'s primary key.
async fn delete(
    conn: &mut PgConnection,
    table: &WriteTable,
    row: &Row,
) -> std::result::Result<(), sqlx::Error> {
    let mut columns = Vec::with_capacity(table.key.len());
    let mut values = Vec::with_capacity(table.key.len());
    for &k in &table.key {
        let (Some(value), Some(sql_type)) = (row.0.get(k), table.sql_types.get(k)) else {
            return Err(sqlx::Error::Protocol(format!(
                "table {}: a row without its key column {k}",
                table.name
            )));
        };
        columns.push(k);
        values.push(typed_literal(value, sql_type));
    }
    let names: Vec<&str> = columns
        .iter()
        .map(|&k| table.quoted_names.get(k).map_or("", String::as_str))
        .collect();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DELETE FROM {} WHERE ({}) = ({})",
        table.qualified,
        names.join(", "),
        values.join(", ")
    )))
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Column, DataType, Value};

    use super::super::copy_binary::Wire;
    use std::sync::Arc;

    #[test]
    fn isolated_rows_insert_as_typed_literals() {
        let table = TableSchema {
            namespace: None,
            name: "Order".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("total", DataType::Int64),
                Column::new("note", DataType::TEXT),
            ],
            primary_key: vec!["id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        let write = WriteTable::new(
            "public",
            &table,
            vec![
                Some(Encoding::plain(Wire::Int8)),
                None,
                Some(Encoding::plain(Wire::Text)),
            ],
            vec!["bigint".into(), "bigint".into(), "text".into()],
            false,
        );
        assert_eq!(
            write.copy_sql,
            "COPY \"public\".\"Order\" (\"id\", \"note\") FROM STDIN (FORMAT binary)"
        );
        let rows = [
            Row(vec![
                Value::Int(1),
                Value::Int(5),
                Value::Text("it's".into()),
            ]),
            Row(vec![Value::Int(2), Value::Null, Value::Null]),
        ];
        assert_eq!(
            insert_sql(&write, rows.iter()),
            "INSERT INTO \"public\".\"Order\" (\"id\", \"note\") OVERRIDING SYSTEM VALUE VALUES \
             ('1'::bigint, 'it''s'::text), ('2'::bigint, NULL::text)"
        );
    }

    #[test]
    fn changes_become_copies_and_deletes_in_order() {
        let table = TableSchema {
            namespace: None,
            name: "t".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("n", DataType::Int16),
            ],
            primary_key: vec!["id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        let write = WriteTable::new(
            "public",
            &table,
            vec![
                Some(Encoding::plain(Wire::Int8)),
                Some(Encoding::plain(Wire::Int2)),
            ],
            vec!["bigint".into(), "smallint".into()],
            false,
        );
        let row = |id: i64, n: i64| Row(vec![Value::Int(id), Value::Int(n)]);
        let batch = Batch {
            table: Arc::new(table.clone()),
            chunk: 0,
            changes: vec![
                Change::Insert(row(1, 1)),
                Change::Insert(row(2, 70_000)),
                Change::Update {
                    before: None,
                    after: row(3, 3),
                },
                Change::Delete(row(4, 0)),
            ],
            rejects: Vec::new(),
            wire: None,
            position: dmp_model::Position::Start,
            last: true,
        };
        let mut refused = Vec::new();
        let (encoder, steps) = plan(&write, &table, &batch, &mut refused).unwrap();
        // 70000 does not fit smallint: refused before anything is sent.
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].error.contains("column n"),
            "{}",
            refused[0].error
        );
        let shape: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Insert(rows) => format!("copy {}", rows.len()),
                Step::Delete(r) => format!("delete {:?}", r.0[0]),
            })
            .collect();
        assert_eq!(
            shape,
            ["copy 1", "delete Int(3)", "copy 1", "delete Int(4)"]
        );
        // Header, two tuples of two fields, trailer.
        let stream = encoder.finish();
        assert_eq!(stream.len(), 19 + 2 * (2 + 4 + 8 + 4 + 2) + 2);
        let mut no_key = batch.clone();
        no_key.table = Arc::new(TableSchema {
            primary_key: Vec::new(),
            ..table.clone()
        });
        let keyless = WriteTable::new(
            "public",
            &no_key.table,
            write.columns.clone(),
            write.sql_types.clone(),
            false,
        );
        assert!(plan(&keyless, &no_key.table, &no_key, &mut refused).is_err());
    }

    #[test]
    fn only_data_errors_are_row_errors() {
        assert!(!is_row_error(&sqlx::Error::PoolTimedOut));
        assert!(!is_row_error(&sqlx::Error::Protocol("x".into())));
    }
}
