//! Applies a batch of changes and its checkpoint in one transaction. Each
//! segment becomes its net effect per primary key: one `DELETE … WHERE
//! (key) IN (…)` for the keys that are gone, then one upsert of the final
//! rows (`INSERT … ON CONFLICT (key) DO UPDATE`): literals, with every
//! other statement of the batch in one script (one round trip), for small
//! sets; a binary COPY into a temporary staging table for big ones. When the server refuses the data, the transaction
//! is redone with the rows in savepoints so that only the bad ones are
//! refused. The commit is synchronous: the source is told this position is
//! durable once it returns.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use tracing::debug;

use super::conflicts;
use super::copy_binary::{CopyEncoder, coerce};
use super::ddl::CHECKPOINTS;
use super::sql::{pg_text, qualified, quote_ident, quote_literal, typed_literal};
use super::writer::{WriteTable, copy, is_row_error, server_message};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::RejectSink;
use dmp_contract::conflict::{
    ConflictEntry, ConflictRules, KeyCheck, Settled, key_checks, tombstone_table, versions_table,
};
use dmp_contract::net_effect::{NetRow, Refused, key_columns, keyless_reject, net_effect};
use dmp_model::json::row_to_json;
use dmp_model::{
    ChangeBatch, Checkpoint, Fence, Reject, RejectStage, SchemaDelta, TableChanges, TableSchema,
    Value,
};

/// Upserts of more rows than this go through a staging table: one COPY
/// instead of a statement of literals the server has to parse.
const LITERAL_ROWS: usize = 1000;
/// Keys per DELETE statement, rows per upsert in the slow path.
const GROUP_ROWS: usize = 1000;
/// Statements are sent together up to this many bytes of SQL.
const SCRIPT_BYTES: usize = 4 << 20;

/// What the transaction does, in order.
enum Step<'a> {
    /// Consecutive truncates, in one statement: tables that reference each
    /// other can only be emptied at once.
    Truncate(Vec<&'a WriteTable>),
    Delete {
        table: &'a WriteTable,
        schema: &'a Arc<TableSchema>,
        rows: Vec<NetRow<'a>>,
    },
    Upsert {
        table: &'a WriteTable,
        schema: &'a Arc<TableSchema>,
        rows: Vec<NetRow<'a>>,
        /// The rows as a binary COPY stream, sent when there are more than
        /// [`LITERAL_ROWS`].
        stream: Vec<u8>,
    },
    /// Statements sent as they are: a table's change of shape (each does
    /// nothing when it is already made), or a two-way sync's record of the
    /// commit times of what the batch wrote.
    Statements(Vec<String>),
}

impl Step<'_> {
    fn schema(&self) -> Option<&Arc<TableSchema>> {
        match self {
            Step::Truncate(_) | Step::Statements(_) => None,
            Step::Delete { schema, .. } | Step::Upsert { schema, .. } => Some(schema),
        }
    }
}

/// Turns the batch into steps. Changes that cannot apply (updates and
/// deletes without a key, values that do not fit their column) are
/// refused here, before anything is sent.
fn plan<'a>(
    schema_name: &str,
    tables: &'a [Option<Arc<WriteTable>>],
    segments: &'a [TableChanges],
    checkpoint: &Checkpoint,
    settled: &'a [Settled],
    refused: &mut Refused,
) -> Result<Vec<Step<'a>>> {
    let mut steps: Vec<Step<'a>> = Vec::new();
    for (n, (segment, table)) in segments.iter().zip(tables).enumerate() {
        if let TableChanges::Evolve {
            table,
            from,
            changes,
        } = segment
        {
            steps.push(Step::Statements(evolve(schema_name, from, table, changes)));
            continue;
        }
        let Some(table) = table else {
            return Err(Error::Data(format!(
                "table {}: no write plan for its changes",
                segment.table().name
            )));
        };
        let changes = match segment {
            TableChanges::Truncate { .. } => {
                if let Some(Step::Truncate(list)) = steps.last_mut() {
                    if !list.iter().any(|t| t.qualified == table.qualified) {
                        list.push(table);
                    }
                } else {
                    steps.push(Step::Truncate(vec![table]));
                }
                continue;
            }
            TableChanges::Rows { changes, .. } => changes,
            TableChanges::Evolve { .. } => continue,
        };
        let schema = segment.table();
        let key = key_columns(schema)?;
        let mut net = net_effect(&key, changes);
        // Two-way sync: the keys whose conflict kept this side's row.
        if let Some(settled) = settled.get(n) {
            net.settle(&key, settled);
        }
        for change in &net.refused {
            refused.push(schema, keyless_reject(schema, change, &checkpoint.position));
        }
        if !net.deletes.is_empty() {
            steps.push(Step::Delete {
                table,
                schema,
                rows: net.deletes,
            });
        }
        if net.upserts.is_empty() {
            continue;
        }
        // Every row is encoded, whichever way it goes: a value that does
        // not fit its column is refused with the column's name.
        let per_row = 2 + 20 * usize::try_from(table.fields).unwrap_or(0);
        let mut encoder = CopyEncoder::with_capacity(net.upserts.len() * per_row + 64);
        let mut rows = Vec::with_capacity(net.upserts.len());
        for net_row in net.upserts {
            let start = encoder.begin_row(table.fields);
            let mut failure = None;
            for (i, (value, encoding)) in net_row.row.0.iter().zip(&table.columns).enumerate() {
                let Some(encoding) = encoding else { continue };
                if let Err(e) = encoder.field(value, encoding) {
                    let column = schema.columns.get(i).map_or("?", |c| c.name.as_str());
                    failure = Some(format!("column {column}: {e}"));
                    break;
                }
            }
            match failure {
                None => rows.push(net_row),
                Some(error) => {
                    encoder.abandon_row(start);
                    refused.push(
                        schema,
                        Reject {
                            stage: RejectStage::Target,
                            error,
                            row: row_to_json(schema, net_row.row),
                            position: checkpoint.position.clone(),
                        },
                    );
                }
            }
        }
        if !rows.is_empty() {
            steps.push(Step::Upsert {
                table,
                schema,
                rows,
                stream: encoder.finish(),
            });
        }
    }
    Ok(steps)
}

/// How an apply transaction begins.
#[derive(Debug, Clone, Copy)]
pub(super) struct ApplySession<'a> {
    /// The session runs as PostgreSQL's own replication apply does
    /// (`session_replication_role = replica`: no foreign key checks, no
    /// ordinary triggers), so that rows arriving in another order than the
    /// keys need (tables of an incremental run, a segment's deletes before
    /// its upserts) are not refused.
    pub(super) replica: bool,
    /// Two-way sync: the sync id the transaction is tagged with, as its
    /// first change, a transactional logical decoding message
    /// (`dmp.origin`) that the reader of this database drops the
    /// transaction for (see `replication::ORIGIN_PREFIX`).
    pub(super) origin: Option<&'a str>,
    /// Two-way sync: each key is checked against this side's row first,
    /// and conflicts are settled by these rules and logged.
    pub(super) conflicts: Option<&'a ConflictRules>,
}

impl ApplySession<'_> {
    /// The statements that open the transaction, after `BEGIN`.
    fn prologue(&self) -> String {
        let mut prologue = String::new();
        if self.replica {
            prologue.push_str("SET LOCAL session_replication_role = replica;\n");
        }
        if let Some(origin) = self.origin {
            prologue.push_str(&crate::replication::origin_tag(origin));
            prologue.push_str(";\n");
        }
        prologue
    }
}

/// Applies `batch` (its segments' tables as `tables`, one per segment)
/// and `checkpoint` in one transaction; refused rows go to `sink` before
/// the commit. Returns the changes applied. `session` says how the
/// transaction begins (see [`ApplySession`]).
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, fields(segments = batch.segments.len(), changes = batch.len()))]
pub(super) async fn apply(
    pool: &PgPool,
    schema_name: &str,
    pipeline: &str,
    session: ApplySession<'_>,
    tables: &[Option<Arc<WriteTable>>],
    batch: ChangeBatch,
    checkpoint: Checkpoint,
    sink: Arc<dyn RejectSink>,
) -> Result<u64> {
    let ctx = || "applying changes".to_string();
    if let Some(rules) = session.conflicts {
        let apply = Settling {
            pool,
            schema_name,
            pipeline,
            session,
            rules,
            tables,
        };
        return apply.apply(&batch, &checkpoint, sink).await;
    }
    let mut refused = Refused::default();
    let steps = plan(
        schema_name,
        tables,
        &batch.segments,
        &checkpoint,
        &[],
        &mut refused,
    )?;
    // Sent with the last statements: one round trip fewer per batch, which
    // a change stream of small transactions feels.
    let checkpoint_sql = checkpoint_sql(schema_name, pipeline, &checkpoint).context(ctx)?;
    let prologue = session.prologue();
    if let Some((script, applied)) = one_script(&steps, &checkpoint_sql, &prologue) {
        // The common case of a stream: BEGIN, the statements, the
        // checkpoint and COMMIT in one round trip. Rows refused before
        // the target are dead-lettered first (before the commit, as the
        // contract wants; a redone batch writes them again, idempotently).
        dead_letter(std::mem::take(&mut refused), &sink).await?;
        let mut conn = pool.acquire().await.context(ctx)?;
        match sqlx::raw_sql(AssertSqlSafe(script))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => return Ok(applied),
            Err(e) => {
                // A failed statement leaves the transaction open and
                // aborted: end it before the connection goes back.
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .context(ctx)?;
                if is_deposed(&e) {
                    return Err(dmp_contract::deposed(&checkpoint));
                }
                if !is_data_error(&e) {
                    return Err(e).context(ctx);
                }
                debug!(error = %e, "changes refused by the server; isolating the bad rows");
            }
        }
        let (txn, applied, bad) =
            match attempt(pool, &steps, &checkpoint_sql, &prologue, true).await {
                Err(e) if is_deposed(&e) => return Err(dmp_contract::deposed(&checkpoint)),
                outcome => outcome.context(ctx)?,
            };
        refuse_bad(&steps, bad, &checkpoint, &mut refused);
        dead_letter(refused, &sink).await?;
        txn.commit().await.context(ctx)?;
        return Ok(applied);
    }
    let first = attempt(pool, &steps, &checkpoint_sql, &prologue, false).await;
    let outcome = match first {
        Err(e) if is_deposed(&e) => return Err(dmp_contract::deposed(&checkpoint)),
        Err(e) if is_data_error(&e) => {
            debug!(error = %e, "changes refused by the server; isolating the bad rows");
            attempt(pool, &steps, &checkpoint_sql, &prologue, true).await
        }
        other => other,
    };
    let (txn, applied, bad) = outcome.context(ctx)?;
    refuse_bad(&steps, bad, &checkpoint, &mut refused);
    dead_letter(refused, &sink).await?;
    txn.commit().await.context(ctx)?;
    Ok(applied)
}

/// The rows the server refused, as rejects of their tables.
fn refuse_bad(
    steps: &[Step<'_>],
    bad: Vec<(usize, NetRow<'_>, String)>,
    checkpoint: &Checkpoint,
    refused: &mut Refused,
) {
    for (step, row, error) in bad {
        let Some(schema) = steps.get(step).and_then(Step::schema) else {
            continue;
        };
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

/// Hands refused rows to the sink; called before the commit, so a crash in
/// between redoes the batch rather than losing them.
async fn dead_letter(refused: Refused, sink: &Arc<dyn RejectSink>) -> Result<()> {
    for (table, rejects) in refused.into_groups() {
        dmp_contract::dead_letter(sink, &table, rejects).await?;
    }
    Ok(())
}

/// The whole batch as one script from `BEGIN` to `COMMIT`, with the
/// changes it applies, when every step fits in literal statements (no
/// staging table) and the script stays small.
fn one_script(steps: &[Step<'_>], checkpoint_sql: &str, prologue: &str) -> Option<(String, u64)> {
    let mut script = String::from("BEGIN;\n");
    script.push_str(prologue);
    let mut applied = 0u64;
    for step in steps {
        match step {
            Step::Truncate(tables) => {
                script.push_str(&truncate_sql(tables));
                applied += tables.len() as u64;
            }
            Step::Delete { table, rows, .. } if rows.len() <= GROUP_ROWS => {
                script.push_str(&delete_sql(table, rows));
                applied += rows.iter().map(|r| r.changes).sum::<u64>();
            }
            Step::Upsert { table, rows, .. } if rows.len() <= LITERAL_ROWS => {
                script.push_str(&upsert_sql(table, rows));
                applied += rows.iter().map(|r| r.changes).sum::<u64>();
            }
            Step::Delete { .. } | Step::Upsert { .. } => return None,
            Step::Statements(statements) => script.push_str(&statements.join(";\n")),
        }
        script.push_str(";\n");
        if script.len() > SCRIPT_BYTES {
            return None;
        }
    }
    script.push_str(checkpoint_sql);
    script.push_str(";\nCOMMIT");
    Some((script, applied))
}

/// The checkpoint upsert with its values as literals. A stream's apply
/// fenced on an epoch first locks the checkpoint row and raises
/// [`DEPOSED_STATE`] when the row carries a newer epoch, then records its
/// own.
fn checkpoint_sql(
    schema_name: &str,
    pipeline: &str,
    checkpoint: &Checkpoint,
) -> std::result::Result<String, serde_json::Error> {
    let position = serde_json::to_string(&checkpoint.position)?;
    let table = qualified(schema_name, CHECKPOINTS);
    let key = format!(
        "pipeline = {} AND table_name = {} AND chunk = {}",
        quote_literal(pipeline),
        quote_literal(&checkpoint.table),
        i32::try_from(checkpoint.chunk).unwrap_or(i32::MAX),
    );
    // Fenced on an epoch, the checkpoint records it too.
    let epoch = match checkpoint.fence {
        Some(Fence::Epoch(epoch)) => Some(epoch),
        _ => None,
    };
    let (column, value, update) = match epoch {
        Some(epoch) => (", epoch", format!(", {epoch}"), ", epoch = EXCLUDED.epoch"),
        None => ("", String::new(), ""),
    };
    let upsert = format!(
        "INSERT INTO {table} (pipeline, table_name, chunk, position, \"rows\", done{column}) \
         VALUES ({}, {}, {}, {}, {}, {}{value}) ON CONFLICT (pipeline, table_name, chunk) DO UPDATE \
         SET position = EXCLUDED.position, \"rows\" = EXCLUDED.\"rows\", done = EXCLUDED.done{update}",
        quote_literal(pipeline),
        quote_literal(&checkpoint.table),
        i32::try_from(checkpoint.chunk).unwrap_or(i32::MAX),
        quote_literal(&position),
        i64::try_from(checkpoint.rows).unwrap_or(i64::MAX),
        checkpoint.done,
    );
    let Some(epoch) = epoch else {
        return Ok(upsert);
    };
    let body = format!(
        "BEGIN PERFORM 1 FROM {table} WHERE {key} FOR UPDATE; \
         IF EXISTS (SELECT 1 FROM {table} WHERE {key} AND epoch > {epoch}) THEN \
         RAISE EXCEPTION 'deposed: the stream is held at a newer epoch than {epoch}' \
         USING ERRCODE = '{DEPOSED_STATE}'; END IF; END"
    );
    // A dollar quote no name in the body can end early.
    let mut tag = String::from("dmp_fence");
    while body.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    Ok(format!("DO ${tag}${body}${tag}$;\n{upsert}"))
}

/// The SQLSTATE a deposed stream holder's apply fails with.
const DEPOSED_STATE: &str = "DMP01";

/// Whether `e` is the fence refusing a deposed stream holder's apply.
fn is_deposed(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(DEPOSED_STATE))
}

/// A data exception, a constraint, or two rows the server counts as one
/// key (`ON CONFLICT DO UPDATE` touching a row twice, 21000): the rows'
/// fault, found by applying them apart.
fn is_data_error(e: &sqlx::Error) -> bool {
    is_row_error(e)
        || matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("21000"))
}

type Attempt<'a> = (
    Transaction<'static, Postgres>,
    u64,
    Vec<(usize, NetRow<'a>, String)>,
);

/// One try at the steps and the checkpoint statement, in a transaction
/// left open for the dead letters and the commit. `isolate`: deletes and upserts go in savepoints, failing groups are
/// halved, and the single rows that still fail come back with the
/// server's message (and their step). A failed try rolls back when its
/// transaction is dropped.
async fn attempt<'a>(
    pool: &PgPool,
    steps: &[Step<'a>],
    checkpoint_sql: &str,
    prologue: &str,
    isolate: bool,
) -> std::result::Result<Attempt<'a>, sqlx::Error> {
    let mut txn = pool.begin().await?;
    let mut staged = HashSet::new();
    let (applied, bad) = attempt_in(
        &mut txn,
        steps,
        checkpoint_sql,
        prologue,
        isolate,
        &mut staged,
    )
    .await?;
    Ok((txn, applied, bad))
}

type Applied<'a> = (u64, Vec<(usize, NetRow<'a>, String)>);

/// [`attempt`] in an open transaction; `staged`: the staging tables this
/// transaction made so far (a second use empties one first).
async fn attempt_in<'a>(
    conn: &mut PgConnection,
    steps: &[Step<'a>],
    checkpoint_sql: &str,
    prologue: &str,
    isolate: bool,
    staged: &mut HashSet<String>,
) -> std::result::Result<Applied<'a>, sqlx::Error> {
    let mut script = prologue.to_string();
    let mut applied = 0u64;
    let mut bad = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Truncate(tables) => {
                script.push_str(&truncate_sql(tables));
                script.push_str(";\n");
                applied += tables.len() as u64;
            }
            Step::Statements(statements) => {
                for sql in statements {
                    script.push_str(sql);
                    script.push_str(";\n");
                }
            }
            Step::Delete { table, rows, .. } if !isolate => {
                for group in rows.chunks(GROUP_ROWS) {
                    script.push_str(&delete_sql(table, group));
                    script.push_str(";\n");
                }
                applied += rows.iter().map(|r| r.changes).sum::<u64>();
            }
            Step::Upsert { table, rows, .. } if !isolate && rows.len() <= LITERAL_ROWS => {
                script.push_str(&upsert_sql(table, rows));
                script.push_str(";\n");
                applied += rows.iter().map(|r| r.changes).sum::<u64>();
            }
            Step::Upsert {
                table,
                rows,
                stream,
                ..
            } if !isolate => {
                flush(conn, &mut script).await?;
                stage(conn, table, stream, staged).await?;
                applied += rows.iter().map(|r| r.changes).sum::<u64>();
            }
            Step::Delete { table, rows, .. } => {
                flush(conn, &mut script).await?;
                applied += isolate_rows(conn, rows, |g| delete_sql(table, g), n, &mut bad).await?;
            }
            Step::Upsert { table, rows, .. } => {
                flush(conn, &mut script).await?;
                applied += isolate_rows(conn, rows, |g| upsert_sql(table, g), n, &mut bad).await?;
            }
        }
        if script.len() > SCRIPT_BYTES {
            flush(conn, &mut script).await?;
        }
    }
    script.push_str(checkpoint_sql);
    flush(conn, &mut script).await?;
    Ok((applied, bad))
}

/// A two-way sync leg's apply: in one transaction, the prologue, each
/// table's conflict check, the steps without the keys a conflict kept,
/// the conflict log's rows and the checkpoint.
struct Settling<'a> {
    pool: &'a PgPool,
    schema_name: &'a str,
    pipeline: &'a str,
    session: ApplySession<'a>,
    rules: &'a ConflictRules,
    tables: &'a [Option<Arc<WriteTable>>],
}

/// How one try of a settling apply ended, short of an error.
enum Try {
    Applied(u64),
    /// The server refused some rows: tried again with the rows apart.
    DataError,
    /// A local write of a checked key committed meanwhile (a serialization
    /// failure) or a deadlock with one: tried again at once.
    Raced(sqlx::Error),
}

/// Tries of a batch that meets local writes of its keys, before the
/// stream's own retry takes over.
const RACE_TRIES: u32 = 100;

impl Settling<'_> {
    async fn apply(
        &self,
        batch: &ChangeBatch,
        checkpoint: &Checkpoint,
        sink: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let ctx = || "applying changes".to_string();
        let checkpoint_sql =
            checkpoint_sql(self.schema_name, self.pipeline, checkpoint).context(ctx)?;
        let columns = batch
            .segments
            .iter()
            .map(|segment| self.rules.order_column(segment.table()))
            .collect::<Result<Vec<_>>>()?;
        // Each segment's keys, and the runs they make, once for every try.
        let keys = self.keys(batch);
        let batch = Checking {
            batch,
            runs: runs(&keys, self.tables),
            keys,
            columns,
        };
        let (mut isolate, mut raced) = (false, 0);
        loop {
            let tried = self
                .try_once(&batch, checkpoint, &checkpoint_sql, &sink, isolate)
                .await?;
            match tried {
                Try::Applied(applied) => return Ok(applied),
                Try::DataError if !isolate => {
                    debug!("changes refused by the server; isolating the bad rows");
                    isolate = true;
                }
                Try::DataError => {
                    return Err(Error::Data(
                        "applying changes: the rows apart failed as a whole".into(),
                    ));
                }
                Try::Raced(e) if raced < RACE_TRIES => {
                    raced += 1;
                    debug!(error = %e, raced, "a local write of a checked key meanwhile; again");
                    // A little apart, so that the local writer gets ahead.
                    let pause = 1 + (u64::from(raced) * 7919) % 20;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                Try::Raced(e) => return Err(e).context(ctx),
            }
        }
    }

    /// One transaction: the prologue (REPEATABLE READ: a key found absent
    /// cannot be locked, and under READ COMMITTED a local insert of it
    /// committing meanwhile would be overwritten unseen; here the write
    /// fails instead, and the next try's check sees the local row), the
    /// checks, the steps, the log, the checkpoint and the commit.
    async fn try_once(
        &self,
        checking: &Checking<'_>,
        checkpoint: &Checkpoint,
        checkpoint_sql: &str,
        sink: &Arc<dyn RejectSink>,
        isolate: bool,
    ) -> Result<Try> {
        let ctx = || "applying changes".to_string();
        let failed = |e: sqlx::Error| -> Result<Try> {
            if is_deposed(&e) {
                Err(dmp_contract::deposed(checkpoint))
            } else if matches!(&e, sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40001" | "40P01")))
            {
                Ok(Try::Raced(e))
            } else if is_data_error(&e) && !isolate {
                Ok(Try::DataError)
            } else {
                Err(e).context(ctx)
            }
        };
        let mut txn = self.pool.begin().await.context(ctx)?;
        let prologue = format!(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;\n{}",
            self.session.prologue()
        );
        // Run by run, each checked after the ones before it are written: a
        // key changed in two segments of a batch is expected, the second
        // time, to hold what the first one wrote. A run's checks go in one
        // round trip, its writes in another (with the log and the
        // checkpoint, for the last).
        let runs = &checking.runs;
        let mut refused = Refused::default();
        let mut entries = Vec::new();
        let mut applied = 0;
        let mut staged = HashSet::new();
        for (r, run) in runs.iter().enumerate() {
            let segments = &checking.batch.segments[run.clone()];
            let tables = &self.tables[run.clone()];
            let keys = &checking.keys[run.clone()];
            let first = if r == 0 { prologue.as_str() } else { "" };
            let settled = match self
                .check(
                    &mut txn,
                    first,
                    segments,
                    tables,
                    keys,
                    &checking.columns[run.clone()],
                )
                .await
            {
                Ok(settled) => settled,
                Err(e) => return failed(e),
            };
            let mut steps = plan(
                self.schema_name,
                tables,
                segments,
                checkpoint,
                &settled,
                &mut refused,
            )?;
            let record = self.record_times(tables, keys, &settled);
            if !record.is_empty() {
                steps.push(Step::Statements(record));
            }
            entries.extend(settled.iter().flat_map(|s| s.entries.iter().cloned()));
            let tail = if r + 1 == runs.len() {
                self.tail(&entries, checkpoint_sql)
            } else {
                String::new()
            };
            match attempt_in(&mut txn, &steps, &tail, "", isolate, &mut staged).await {
                Ok((done, bad)) => {
                    applied += done;
                    refuse_bad(&steps, bad, checkpoint, &mut refused);
                }
                Err(e) => return failed(e),
            }
        }
        if runs.is_empty() {
            let tail = self.tail(&entries, checkpoint_sql);
            if let Err(e) = attempt_in(&mut txn, &[], &tail, &prologue, isolate, &mut staged).await
            {
                return failed(e);
            }
        }
        dead_letter(refused, sink).await?;
        match txn.commit().await {
            Ok(()) => Ok(Try::Applied(applied)),
            Err(e) => failed(e),
        }
    }

    /// The conflict log's rows of `entries`, then the checkpoint.
    fn tail(&self, entries: &[ConflictEntry], checkpoint_sql: &str) -> String {
        let log = conflicts::log_sql(
            self.schema_name,
            self.session.origin.unwrap_or(self.pipeline),
            entries,
        );
        if log.is_empty() {
            checkpoint_sql.to_string()
        } else {
            format!("{log};\n{checkpoint_sql}")
        }
    }

    /// Each segment's keys (see `key_checks`): `None` for a segment with
    /// nothing to check (no rows, no key).
    fn keys<'b>(&self, batch: &'b ChangeBatch) -> Vec<Option<Vec<KeyCheck<'b>>>> {
        batch
            .segments
            .iter()
            .zip(self.tables)
            .map(|(segment, table)| match (segment, table) {
                (
                    TableChanges::Rows {
                        changes, origins, ..
                    },
                    Some(table),
                ) if !table.key.is_empty() => Some(key_checks(&table.key, changes, origins)),
                _ => None,
            })
            .collect()
    }

    /// Each segment's settled conflicts, in segment order (an empty one
    /// for those without keys); `columns`: each segment's order column.
    /// One round trip, after `prologue` (see `conflicts::check_run`).
    async fn check(
        &self,
        conn: &mut PgConnection,
        prologue: &str,
        segments: &[TableChanges],
        tables: &[Option<Arc<WriteTable>>],
        keys: &[Option<Vec<KeyCheck<'_>>>],
        columns: &[Option<usize>],
    ) -> std::result::Result<Vec<Settled>, sqlx::Error> {
        let run: Vec<Option<conflicts::SegmentCheck<'_, '_>>> = segments
            .iter()
            .zip(tables)
            .zip(keys)
            .zip(columns)
            .map(|(((segment, table), keys), column)| {
                let (Some(table), Some(keys)) = (table, keys) else {
                    return None;
                };
                let schema = segment.table();
                Some(conflicts::SegmentCheck {
                    checked: conflicts::Checked {
                        rules: self.rules,
                        table,
                        schema,
                        order: self.order(schema, *column),
                    },
                    keys,
                })
            })
            .collect();
        conflicts::check_run(conn, prologue, &run).await
    }

    /// What `schema`'s policy orders writes by (`column`: its column's
    /// index, if it names one).
    fn order(&self, schema: &TableSchema, column: Option<usize>) -> conflicts::Order {
        let tombstones = || qualified(self.schema_name, &tombstone_table(&schema.name));
        match column {
            Some(index) => conflicts::Order::Column {
                index,
                tombstones: tombstones(),
            },
            None if self.rules.by_commit_time(&schema.name) => conflicts::Order::CommitTime {
                versions: qualified(self.schema_name, &versions_table(&schema.name)),
                tombstones: tombstones(),
            },
            None => conflicts::Order::None,
        }
    }

    /// Under `last_writer_wins` by commit time: the statements that record
    /// the remote commit times of what the run writes (see
    /// `conflicts::record_times_sql`); the keys a conflict kept are not
    /// written, so not recorded.
    fn record_times(
        &self,
        tables: &[Option<Arc<WriteTable>>],
        keys: &[Option<Vec<KeyCheck<'_>>>],
        settled: &[Settled],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for ((table, keys), settled) in tables.iter().zip(keys).zip(settled) {
            let (Some(table), Some(keys)) = (table, keys) else {
                continue;
            };
            if !self.rules.by_commit_time(&table.name) {
                continue;
            }
            let (mut written, mut deleted) = (Vec::new(), Vec::new());
            for check in keys {
                let Some(us) = check.commit_time else {
                    continue;
                };
                if settled.skip.contains(&check.key) {
                    continue;
                }
                match check.last {
                    Some(row) => written.push((row, us)),
                    None => deleted.push((check.key_row, us)),
                }
            }
            out.extend(conflicts::record_times_sql(
                self.schema_name,
                table,
                &written,
                &deleted,
            ));
        }
        out
    }
}

/// A two-way batch as its tries check it: each segment's keys and order
/// column, and the runs the keys make (see [`runs`]).
struct Checking<'b> {
    batch: &'b ChangeBatch,
    keys: Vec<Option<Vec<KeyCheck<'b>>>>,
    columns: Vec<Option<usize>>,
    runs: Vec<Range<usize>>,
}

/// The batch's segments (their keys as `keys`) in runs that are checked
/// at once: a run ends before a segment that touches a key the run
/// touched already (it must see the run's writes), and a segment with
/// nothing to check — a truncate, a change of shape — is a run of its own
/// (what follows it must see it done).
fn runs(
    keys: &[Option<Vec<KeyCheck<'_>>>],
    tables: &[Option<Arc<WriteTable>>],
) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut touched: HashSet<(&str, &str)> = HashSet::new();
    for (n, (keys, table)) in keys.iter().zip(tables).enumerate() {
        let (Some(keys), Some(table)) = (keys, table) else {
            if start < n {
                runs.push(start..n);
            }
            runs.push(n..n + 1);
            start = n + 1;
            touched.clear();
            continue;
        };
        let these: Vec<(&str, &str)> = keys
            .iter()
            .map(|c| (table.name.as_str(), c.key.as_str()))
            .collect();
        if these.iter().any(|k| touched.contains(k)) {
            runs.push(start..n);
            start = n;
            touched.clear();
        }
        touched.extend(these);
    }
    if start < keys.len() {
        runs.push(start..keys.len());
    }
    runs
}

/// The statements that change table `from` into `to`, each doing nothing
/// when its change is already made (a batch redone after a crash).
fn evolve(
    schema: &str,
    from: &TableSchema,
    to: &TableSchema,
    changes: &[SchemaDelta],
) -> Vec<String> {
    let mut out = Vec::new();
    let table = qualified(schema, &to.name);
    for change in changes {
        match change {
            SchemaDelta::AddColumn(column) => out.push(format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {}",
                super::ddl::column_def(column)
            )),
            SchemaDelta::DropColumn(name) => out.push(format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                quote_ident(name)
            )),
            SchemaDelta::RenameColumn { from, to: new } => out.push(format!(
                "DO $dmp$ BEGIN IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {}::regclass \
                 AND attname = {} AND NOT attisdropped) THEN ALTER TABLE {table} RENAME COLUMN {} TO {}; \
                 END IF; END $dmp$",
                quote_literal(&table),
                quote_literal(from),
                quote_ident(from),
                quote_ident(new)
            )),
            SchemaDelta::AlterColumn { from, to: new } => {
                let column = quote_ident(&new.name);
                if from.data_type != new.data_type || from.enum_values != new.enum_values {
                    let t = super::types::ddl_type(new);
                    out.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} TYPE {t} USING {column}::{t}"
                    ));
                }
                if from.nullable != new.nullable {
                    out.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} {} NOT NULL",
                        if new.nullable { "DROP" } else { "SET" }
                    ));
                }
            }
            SchemaDelta::RenameTable { from: old } => out.push(format!(
                "ALTER TABLE IF EXISTS {} RENAME TO {}",
                qualified(schema, old),
                quote_ident(&to.name)
            )),
            SchemaDelta::DropTable => out.push(format!(
                "DROP TABLE IF EXISTS {}",
                qualified(schema, &from.name)
            )),
        }
    }
    out
}

/// Sends the statements gathered so far in one round trip.
async fn flush(
    conn: &mut PgConnection,
    script: &mut String,
) -> std::result::Result<(), sqlx::Error> {
    if script.is_empty() {
        return Ok(());
    }
    let sql = std::mem::take(script);
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await?;
    Ok(())
}

/// Upserts many rows: binary COPY into a session-private staging table
/// (emptied at commit), then one `INSERT … SELECT … ON CONFLICT`.
async fn stage(
    conn: &mut PgConnection,
    table: &WriteTable,
    stream: &[u8],
    staged: &mut HashSet<String>,
) -> std::result::Result<(), sqlx::Error> {
    let name = stage_name(table);
    // Created from a query rather than `LIKE`: only the written columns,
    // with their types and no constraints (a NOT NULL generated column
    // would refuse the COPY), so the target's own constraints judge the
    // rows in the INSERT.
    let prepare = if staged.insert(name.clone()) {
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS \
             SELECT {} FROM {} WITH NO DATA",
            table.written_names(),
            table.qualified
        )
    } else {
        // A second segment of the table in this transaction.
        format!("TRUNCATE {name}")
    };
    sqlx::raw_sql(AssertSqlSafe(prepare))
        .execute(&mut *conn)
        .await?;
    let copy_sql = format!(
        "COPY {name} ({}) FROM STDIN (FORMAT binary)",
        table.written_names()
    );
    copy(conn, &copy_sql, std::iter::once(stream)).await?;
    sqlx::raw_sql(AssertSqlSafe(upsert_from_sql(table, &name)))
        .execute(conn)
        .await?;
    Ok(())
}

/// `pg_temp."_dmp_stage_…"`: one per target table and session; named by a
/// hash because table names may be as long as the identifier limit.
fn stage_name(table: &WriteTable) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    table.qualified.hash(&mut hasher);
    format!(
        "pg_temp.{}",
        quote_ident(&format!("_dmp_stage_{:016x}", hasher.finish()))
    )
}

/// Applies `rows` in savepoints, halving failing groups down to single
/// rows, which come back with the server's message. Each group is one
/// round trip: the savepoint and its statement in one simple query.
async fn isolate_rows<'a>(
    conn: &mut PgConnection,
    rows: &[NetRow<'a>],
    render: impl Fn(&[NetRow<'a>]) -> String,
    step: usize,
    bad: &mut Vec<(usize, NetRow<'a>, String)>,
) -> std::result::Result<u64, sqlx::Error> {
    let mut applied = 0;
    let mut stack: Vec<&[NetRow<'a>]> = rows.chunks(GROUP_ROWS).rev().collect();
    while let Some(group) = stack.pop() {
        if group.is_empty() {
            continue;
        }
        let sql = format!(
            "SAVEPOINT dmp_change; {}; RELEASE SAVEPOINT dmp_change",
            render(group)
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
            Ok(_) => applied += group.iter().map(|r| r.changes).sum::<u64>(),
            Err(e) if is_data_error(&e) => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT dmp_change; RELEASE SAVEPOINT dmp_change")
                    .execute(&mut *conn)
                    .await?;
                if let [row] = group {
                    bad.push((step, *row, server_message(&e)));
                } else {
                    let (first, second) = group.split_at(group.len() / 2);
                    // Popped first: rows keep their order.
                    stack.push(second);
                    stack.push(first);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(applied)
}

fn truncate_sql(tables: &[&WriteTable]) -> String {
    let names: Vec<&str> = tables.iter().map(|t| t.qualified.as_str()).collect();
    format!("TRUNCATE {}", names.join(", "))
}

/// `DELETE FROM t WHERE ("a", "b") IN ((…), (…))` for the rows' keys.
fn delete_sql(table: &WriteTable, rows: &[NetRow<'_>]) -> String {
    let names: Vec<&str> = table
        .key
        .iter()
        .map(|&k| table.quoted_names[k].as_str())
        .collect();
    let mut sql = format!(
        "DELETE FROM {} WHERE ({}) IN (",
        table.qualified,
        names.join(", ")
    );
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (m, &k) in table.key.iter().enumerate() {
            if m > 0 {
                sql.push_str(", ");
            }
            let value = row.row.0.get(k).unwrap_or(&Value::Null);
            sql.push_str(&typed_literal(value, &table.sql_types[k]));
        }
        sql.push(')');
    }
    sql.push(')');
    sql
}

/// `INSERT … VALUES (…), … ON CONFLICT (key) DO UPDATE SET …`; a plain
/// insert for a table without a key. The literals are untyped: INSERT
/// reads each with its column's input function, as a cast would, and the
/// server parses 1,000 rows in half the time it takes for typed ones.
fn upsert_sql(table: &WriteTable, rows: &[NetRow<'_>]) -> String {
    let mut sql = format!(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ",
        table.qualified,
        table.written_names()
    );
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        let mut first = true;
        for (i, encoding) in table.columns.iter().enumerate() {
            let Some(encoding) = encoding else { continue };
            if !first {
                sql.push_str(", ");
            }
            first = false;
            let value = row.row.0.get(i).unwrap_or(&Value::Null);
            // Planned rows convert (those that do not were refused).
            let text = coerce(value, encoding.wire).ok().and_then(|v| pg_text(&v));
            match text {
                Some(text) => sql.push_str(&quote_literal(&text)),
                None => sql.push_str("NULL"),
            }
        }
        sql.push(')');
    }
    sql.push_str(&on_conflict(table));
    sql
}

/// `INSERT INTO t (…) SELECT … FROM stage ON CONFLICT …`.
fn upsert_from_sql(table: &WriteTable, stage: &str) -> String {
    let names = table.written_names();
    format!(
        "INSERT INTO {} ({names}) OVERRIDING SYSTEM VALUE SELECT {names} FROM {stage}{}",
        table.qualified,
        on_conflict(table)
    )
}

/// ` ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c, …`: every written
/// column outside the key; `DO NOTHING` when the key is all of them.
fn on_conflict(table: &WriteTable) -> String {
    if table.key.is_empty() {
        return String::new();
    }
    let key: Vec<&str> = table
        .key
        .iter()
        .map(|&k| table.quoted_names[k].as_str())
        .collect();
    let sets: Vec<String> = table
        .columns
        .iter()
        .zip(&table.quoted_names)
        .enumerate()
        .filter(|(i, (e, _))| e.is_some() && !table.key.contains(i))
        .map(|(_, (_, name))| format!("{name} = EXCLUDED.{name}"))
        .collect();
    if sets.is_empty() {
        format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
    } else {
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            sets.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Change, Column, DataType, Position, Row, Value};

    use super::super::copy_binary::{Encoding, Wire};

    fn schema(key: &[&str]) -> TableSchema {
        TableSchema {
            namespace: None,
            name: "Order".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("n", DataType::Int16),
                Column::new("note", DataType::TEXT),
            ],
            primary_key: key.iter().map(|k| (*k).to_string()).collect(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    fn write_table(table: &TableSchema, generated_note: bool) -> WriteTable {
        WriteTable::new(
            "public",
            table,
            vec![
                Some(Encoding::plain(Wire::Int8)),
                Some(Encoding::plain(Wire::Int2)),
                (!generated_note).then(|| Encoding::plain(Wire::Text)),
            ],
            vec!["bigint".into(), "smallint".into(), "text".into()],
            false,
        )
    }

    fn row(id: i64, n: i64, note: &str) -> Row {
        Row(vec![
            Value::Int(id),
            Value::Int(n),
            Value::Text(note.into()),
        ])
    }

    fn net(row: &Row) -> NetRow<'_> {
        NetRow { row, changes: 1 }
    }

    /// A run of checks ends before a segment that touches one of its keys
    /// again; a truncate stands alone.
    #[test]
    fn runs_end_where_a_key_comes_again() {
        let table = Arc::new(schema(&["id"]));
        let write = Some(Arc::new(write_table(&table, false)));
        let rows = |changes: Vec<Change>| TableChanges::Rows {
            table: table.clone(),
            changes,
            origins: Vec::new(),
        };
        let segments = [
            rows(vec![Change::Insert(row(1, 1, "a"))]),
            rows(vec![Change::Insert(row(2, 1, "a"))]),
            // 1 again: a new run.
            rows(vec![Change::Update {
                before: Some(row(1, 1, "a")),
                after: row(1, 2, "b"),
            }]),
            rows(vec![Change::Delete(row(3, 1, "a"))]),
            TableChanges::Truncate {
                table: table.clone(),
                origin: None,
            },
            rows(vec![Change::Insert(row(3, 1, "a"))]),
        ];
        let tables = vec![write; segments.len()];
        let keys: Vec<Option<Vec<KeyCheck<'_>>>> = segments
            .iter()
            .map(|segment| match segment {
                TableChanges::Rows { changes, .. } => Some(key_checks(&[0], changes, &[])),
                _ => None,
            })
            .collect();
        assert_eq!(runs(&keys, &tables), vec![0..2, 2..4, 4..5, 5..6]);
        assert!(runs(&[], &[]).is_empty());
    }

    #[test]
    fn upserts_update_every_column_outside_the_key() {
        let table = write_table(&schema(&["id"]), false);
        let rows = [row(1, 2, "it's"), row(2, 3, "b")];
        let nets: Vec<NetRow<'_>> = rows.iter().map(net).collect();
        assert_eq!(
            upsert_sql(&table, &nets),
            "INSERT INTO \"public\".\"Order\" (\"id\", \"n\", \"note\") OVERRIDING SYSTEM VALUE VALUES \
             ('1', '2', 'it''s'), ('2', '3', 'b') \
             ON CONFLICT (\"id\") DO UPDATE SET \"n\" = EXCLUDED.\"n\", \"note\" = EXCLUDED.\"note\""
        );
        // A generated column is neither written nor set.
        let generated = write_table(&schema(&["id", "n"]), true);
        assert_eq!(
            upsert_sql(&generated, &nets[..1]),
            "INSERT INTO \"public\".\"Order\" (\"id\", \"n\") OVERRIDING SYSTEM VALUE VALUES \
             ('1', '2') ON CONFLICT (\"id\", \"n\") DO NOTHING"
        );
        let keyless = write_table(&schema(&[]), false);
        assert!(upsert_sql(&keyless, &nets[..1]).ends_with("'it''s')"));
        // Values as the column's wire carries them; NULL bare.
        let odd = [Row(vec![
            Value::Text("7".into()),
            Value::Null,
            Value::Int(5),
        ])];
        let odd: Vec<NetRow<'_>> = odd.iter().map(net).collect();
        assert!(
            upsert_sql(&keyless, &odd).ends_with("VALUES ('7', NULL, '5')"),
            "{}",
            upsert_sql(&keyless, &odd)
        );
        let stage = stage_name(&table);
        assert!(stage.starts_with("pg_temp.\"_dmp_stage_"), "{stage}");
        assert_eq!(
            upsert_from_sql(&table, "pg_temp.\"s\""),
            "INSERT INTO \"public\".\"Order\" (\"id\", \"n\", \"note\") OVERRIDING SYSTEM VALUE \
             SELECT \"id\", \"n\", \"note\" FROM pg_temp.\"s\" ON CONFLICT (\"id\") DO UPDATE SET \
             \"n\" = EXCLUDED.\"n\", \"note\" = EXCLUDED.\"note\""
        );
    }

    #[test]
    fn deletes_list_keys_as_typed_literals() {
        let table = write_table(&schema(&["id", "note"]), false);
        let rows = [
            row(1, 0, "a"),
            Row(vec![Value::Int(2), Value::Null, Value::Text("b'".into())]),
        ];
        let nets: Vec<NetRow<'_>> = rows.iter().map(net).collect();
        assert_eq!(
            delete_sql(&table, &nets),
            "DELETE FROM \"public\".\"Order\" WHERE (\"id\", \"note\") IN \
             (('1'::bigint, 'a'::text), ('2'::bigint, 'b'''::text))"
        );
        let other = WriteTable::new(
            "s",
            &TableSchema {
                name: "x".into(),
                ..schema(&["id"])
            },
            table.columns.clone(),
            table.sql_types.clone(),
            false,
        );
        assert_eq!(
            truncate_sql(&[&table, &other]),
            "TRUNCATE \"public\".\"Order\", \"s\".\"x\""
        );
        assert_eq!(qualified("s", "x"), other.qualified);
    }

    #[test]
    fn plans_net_effects_and_refuses_what_cannot_apply() {
        let keyed = Arc::new(schema(&["id"]));
        let keyless = Arc::new(TableSchema {
            name: "log".into(),
            ..schema(&[])
        });
        let tables = vec![
            Arc::new(write_table(&keyed, false)),
            Arc::new(write_table(&keyless, false)),
            Arc::new(write_table(&keyless, false)),
            Arc::new(write_table(&keyed, false)),
        ];
        let mut batch = ChangeBatch::new();
        batch.push(&keyed, Change::Insert(row(1, 1, "a")));
        // 70000 does not fit smallint.
        batch.push(&keyed, Change::Insert(row(2, 70_000, "b")));
        batch.push(
            &keyed,
            Change::Update {
                before: Some(row(1, 1, "a")),
                after: row(3, 1, "a"),
            },
        );
        batch.push(&keyless, Change::Insert(row(9, 9, "x")));
        batch.push(&keyless, Change::Delete(row(9, 9, "x")));
        batch.truncate(&keyless, None);
        batch.truncate(&keyed, None);
        let checkpoint = Checkpoint {
            table: String::new(),
            chunk: 0,
            position: Position::Log {
                log: "lsn=0/1".into(),
                skip: 0,
            },
            rows: 0,
            done: true,
            fence: None,
        };
        let mut refused = Refused::default();
        let tables: Vec<Option<Arc<WriteTable>>> = tables.into_iter().map(Some).collect();
        let steps = plan(
            "public",
            &tables,
            &batch.segments,
            &checkpoint,
            &[],
            &mut refused,
        )
        .unwrap();
        let shape: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Truncate(t) => format!("truncate {}", t.len()),
                Step::Delete { table, rows, .. } => format!("delete {} {}", table.name, rows.len()),
                Step::Upsert { table, rows, .. } => format!("upsert {} {}", table.name, rows.len()),
                Step::Statements(statements) => statements.join("; "),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "delete Order 1",
                "upsert Order 1",
                "upsert log 1",
                "truncate 2"
            ]
        );
        let groups = refused.into_groups();
        let errors: Vec<(&str, &str)> = groups
            .iter()
            .flat_map(|(t, r)| r.iter().map(|r| (t.name.as_str(), r.error.as_str())))
            .collect();
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0].0 == "Order" && errors[0].1.starts_with("column n:"),
            "{errors:?}"
        );
        assert_eq!(
            errors[1],
            ("log", "table log has no primary key: cannot apply a delete")
        );
        // Header, the good row alone (three fields), trailer.
        let Step::Upsert { stream, .. } = &steps[1] else {
            panic!("not an upsert");
        };
        assert_eq!(stream.len(), 19 + 2 + (4 + 8) + (4 + 2) + (4 + 1) + 2);
    }

    #[test]
    fn checkpoints_go_as_literals() {
        let checkpoint = Checkpoint {
            table: "it's".into(),
            chunk: dmp_model::CURSOR_CHUNK,
            position: Position::Log {
                log: "lsn=0/1".into(),
                skip: 2,
            },
            rows: 5,
            done: false,
            fence: None,
        };
        assert_eq!(
            checkpoint_sql("s", "p", &checkpoint).unwrap(),
            "INSERT INTO \"s\".\"_dmp_checkpoints\" (pipeline, table_name, chunk, position, \"rows\", done) \
             VALUES ('p', 'it''s', 2147483647, '{\"kind\":\"log\",\"log\":\"lsn=0/1\",\"skip\":2}', 5, false) \
             ON CONFLICT (pipeline, table_name, chunk) DO UPDATE SET position = EXCLUDED.position, \
             \"rows\" = EXCLUDED.\"rows\", done = EXCLUDED.done"
        );
    }

    #[test]
    fn cardinality_violations_are_data_errors() {
        assert!(!is_data_error(&sqlx::Error::PoolTimedOut));
    }
}
