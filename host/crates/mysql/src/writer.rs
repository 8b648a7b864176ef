//! Writing one batch: its rows and its checkpoint in one transaction. The
//! fast path streams the rows from memory with `LOAD DATA LOCAL INFILE`;
//! LOCAL turns data errors into warnings even in strict mode, so a batch
//! that raised any is rolled back and redone with prepared INSERTs, which
//! fail on bad values: a failing group of rows is then redone row by row
//! and the rows the server refuses go to the reject sink before the rest
//! commits.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Transaction, TxOpts, Value as My};
use tracing::debug;

use super::load_data::{Encoder, too_long};
use super::server::Server;
use super::sql::{quote, quote_list};
use super::types::to_param;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::RejectSink;
use dmp_model::json::row_to_json;
use dmp_model::{
    Batch, Change, Checkpoint, DataType, Fence, Position, Reject, RejectStage, Row, TableSchema,
};

/// MySQL's limit on parameters of one statement.
pub(super) const MAX_PARAMS: usize = 65_535;
/// Rows per INSERT statement, and bytes: big statements amortize the round
/// trip, past this there is no gain and the packet limit comes near.
pub(super) const MAX_ROWS_PER_INSERT: usize = 2_000;
pub(super) const MAX_BYTES_PER_INSERT: usize = 4 << 20;
/// Pieces the LOAD DATA stream is handed to the driver in.
const INFILE_PIECE: usize = 1 << 20;

/// How a batch of inserts goes to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    LoadData,
    Insert,
}

/// Everything about writing one table that does not change per batch.
pub(super) struct TablePlan {
    pub(super) table: Arc<TableSchema>,
    load_sql: String,
    insert_head: String,
    row_placeholders: String,
    encoder: Encoder,
    /// The server's `max_allowed_packet`.
    pub(super) max_value: usize,
    keys: Vec<usize>,
}

impl TablePlan {
    /// `actual` is the data type of each column of the target table as the
    /// server has it (`information_schema.COLUMNS.DATA_TYPE`): tables that
    /// were there before may differ from what the model would create.
    pub(super) fn new(
        table: Arc<TableSchema>,
        server: Server,
        actual: &HashMap<String, String>,
    ) -> Self {
        let name = quote(&table.name);
        let columns = quote_list(
            &table
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
        );
        // Some types read a binary-charset field as their binary form or
        // refuse it (MySQL JSON, MariaDB INET6): such columns go through a
        // variable converted to text; BIT columns through a number.
        let mut targets = Vec::new();
        let mut sets = Vec::new();
        for (i, c) in table.columns.iter().enumerate() {
            let quoted = quote(&c.name);
            match actual.get(&c.name).map(String::as_str) {
                Some("json" | "inet4" | "inet6") => {
                    targets.push(format!("@v{i}"));
                    sets.push(format!("{quoted} = CONVERT(@v{i} USING utf8mb4)"));
                }
                // MariaDB's UUID type takes a binary-charset field as its
                // internal byte order (segments swapped for RFC 4122
                // UUIDs): give it the text form instead.
                Some("uuid") => {
                    targets.push(format!("@v{i}"));
                    sets.push(format!("{quoted} = CONVERT(@v{i} USING utf8mb4)"));
                }
                Some("bit") => {
                    targets.push(format!("@v{i}"));
                    sets.push(format!("{quoted} = CAST(@v{i} AS UNSIGNED)"));
                }
                _ => targets.push(quoted),
            }
        }
        let mut load_sql = format!(
            "LOAD DATA LOCAL INFILE 'dmp-batch' INTO TABLE {name} CHARACTER SET binary \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
            targets.join(", ")
        );
        if !sets.is_empty() {
            load_sql.push_str(" SET ");
            load_sql.push_str(&sets.join(", "));
        }
        let types: Vec<DataType> = table.columns.iter().map(|c| c.data_type).collect();
        let max_value = usize::try_from(server.max_packet).unwrap_or(usize::MAX);
        TablePlan {
            load_sql,
            insert_head: format!("INSERT INTO {name} ({columns}) VALUES "),
            row_placeholders: format!("({})", vec!["?"; table.columns.len()].join(",")),
            encoder: Encoder::new(&types, max_value),
            max_value,
            keys: table.primary_key_indices(),
            table,
        }
    }

    pub(super) fn insert_sql(&self, rows: usize) -> String {
        let mut sql = String::with_capacity(
            self.insert_head.len() + rows * (self.row_placeholders.len() + 1),
        );
        sql.push_str(&self.insert_head);
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&self.row_placeholders);
        }
        sql
    }

    /// Where a refused row came from: its key, else the batch's position.
    fn position_of(&self, row: &Row, batch: &Position) -> Position {
        if self.keys.is_empty() {
            batch.clone()
        } else {
            Position::Key {
                key: self.keys.iter().map(|&i| row.0[i].clone()).collect(),
            }
        }
    }

    fn refuse(&self, row: &Row, error: String, batch: &Position) -> Reject {
        Reject {
            stage: RejectStage::Target,
            error,
            row: row_to_json(&self.table, row),
            position: self.position_of(row, batch),
        }
    }
}

/// Server errors that belong to a row's values, not to the connection.
fn is_data_error(code: u16) -> bool {
    matches!(
        code,
        1048 | 1062
            | 1169
            | 1216
            | 1263
            | 1264
            | 1265
            | 1292
            | 1300
            | 1364
            | 1366
            | 1367
            | 1406
            | 1411
            | 1451
            | 1452
            | 1586
            | 1690
            | 1859
            | 3140
            | 3156
            | 3819
            | 4025
    )
}

/// The server refuses LOAD DATA LOCAL (`local_infile` off).
fn is_load_data_disabled(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1148 | 3948 | 3950 | 4166))
}

pub(super) fn data_error(e: &mysql_async::Error) -> Option<String> {
    match e {
        mysql_async::Error::Server(s) if is_data_error(s.code) => {
            Some(format!("{} (MySQL error {})", s.message, s.code))
        }
        _ => None,
    }
}

/// What a batch write did.
pub(super) struct Written {
    pub(super) rows: u64,
    /// LOAD DATA is refused by the server: use INSERTs from now on.
    pub(super) load_data_disabled: bool,
}

/// An unfenced write keeps the epoch the row has (its value is 0).
const CHECKPOINT_SQL: &str = "INSERT INTO _dmp_checkpoints (pipeline, table_name, chunk, position, `rows`, done, epoch) \
     VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE position = VALUES(position), \
     `rows` = VALUES(`rows`), done = VALUES(done), epoch = GREATEST(epoch, VALUES(epoch))";

/// Writes `batch` and `checkpoint` in one transaction on `conn`; in a
/// two-way sync, marked as sync `origin`'s (see `crate::origin`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_batch(
    conn: &mut Conn,
    plan: &TablePlan,
    batch: &Batch,
    checkpoint: &Checkpoint,
    pipeline: &str,
    origin: Option<&str>,
    method: Method,
    sink: Arc<dyn RejectSink>,
) -> Result<Written> {
    let ctx = || format!("writing table {} chunk {}", plan.table.name, batch.chunk);
    let checkpoint = CheckpointWrite::new(checkpoint, pipeline)?;
    let inserts_only = batch.changes.iter().all(|c| matches!(c, Change::Insert(_)));
    let mut refused: Vec<Reject> = Vec::new();
    let mut load_data_disabled = false;
    // Rows LOAD DATA could not take cleanly, to redo with INSERTs.
    let mut redo: Option<Vec<&Row>> = None;
    if inserts_only && method == Method::LoadData {
        let mut buffer = Vec::with_capacity(64 * batch.changes.len());
        let mut accepted: Vec<&Row> = Vec::with_capacity(batch.changes.len());
        for change in &batch.changes {
            let row = change.row();
            match plan.encoder.encode_row(row, &mut buffer) {
                Ok(()) => accepted.push(row),
                Err(reason) => refused.push(plan.refuse(row, reason, &batch.position)),
            }
        }
        set_infile(conn, buffer);
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .context(ctx)?;
        if let Some(origin) = origin {
            crate::origin::mark(&mut tx, origin).await.context(ctx)?;
        }
        let loaded = if accepted.is_empty() {
            Ok(())
        } else {
            match tx.query_drop(plan.load_sql.as_str()).await {
                Ok(()) if tx.get_warnings() == 0 => Ok(()),
                Ok(()) => Err(warnings(&mut tx).await),
                Err(e) if is_load_data_disabled(&e) => {
                    load_data_disabled = true;
                    Err(e.to_string())
                }
                Err(e) => match data_error(&e) {
                    Some(reason) => Err(reason),
                    None => {
                        let _ = tx.rollback().await;
                        return Err(e).context(ctx);
                    }
                },
            }
        };
        match loaded {
            Ok(()) => {
                finish(tx, checkpoint, &plan.table, refused, sink, &ctx).await?;
                return Ok(Written {
                    rows: accepted.len() as u64,
                    load_data_disabled,
                });
            }
            Err(why) => {
                // Values the server adjusted or refused: redo with INSERTs,
                // which fail on them, so only those rows are refused.
                debug!(
                    table = plan.table.name,
                    why, "LOAD DATA not clean; batch redone with INSERTs"
                );
                tx.rollback().await.context(ctx)?;
                redo = Some(accepted);
            }
        }
    }
    let mut tx = conn
        .start_transaction(TxOpts::default())
        .await
        .context(ctx)?;
    if let Some(origin) = origin {
        crate::origin::mark(&mut tx, origin).await.context(ctx)?;
    }
    let written = match &redo {
        Some(rows) => insert_rows(&mut tx, plan, rows, &batch.position, &mut refused)
            .await
            .context(ctx)?,
        None => apply_changes(&mut tx, plan, batch, &mut refused).await?,
    };
    finish(tx, checkpoint, &plan.table, refused, sink, &ctx).await?;
    Ok(Written {
        rows: written,
        load_data_disabled,
    })
}

/// The first warnings of the last statement, for the debug log.
async fn warnings(tx: &mut Transaction<'_>) -> String {
    let count = tx.get_warnings();
    let shown: Vec<(String, u32, String)> =
        tx.query("SHOW WARNINGS LIMIT 3").await.unwrap_or_default();
    let shown: Vec<String> = shown
        .into_iter()
        .map(|(level, code, message)| format!("{level} {code}: {message}"))
        .collect();
    format!("{count} warnings: {}", shown.join("; "))
}

/// Hands the encoded rows to the driver for the next LOAD DATA LOCAL.
fn set_infile(conn: &mut Conn, buffer: Vec<u8>) {
    let all = Bytes::from(buffer);
    let pieces: Vec<std::io::Result<Bytes>> = (0..all.len())
        .step_by(INFILE_PIECE)
        .map(|at| Ok(all.slice(at..(at + INFILE_PIECE).min(all.len()))))
        .collect();
    conn.set_infile_handler(async move { Ok(futures_util::stream::iter(pieces).boxed()) });
}

/// The checkpoint a batch's (or a change batch's) transaction writes, and
/// what it checks first when fenced (`Checkpoint::fence`).
pub(super) struct CheckpointWrite<'a> {
    checkpoint: &'a Checkpoint,
    pipeline: &'a str,
    params: Params,
}

impl<'a> CheckpointWrite<'a> {
    pub(super) fn new(checkpoint: &'a Checkpoint, pipeline: &'a str) -> Result<Self> {
        let ctx = || format!("writing the checkpoint of table {}", checkpoint.table);
        let epoch = match checkpoint.fence {
            Some(Fence::Epoch(epoch)) => epoch,
            _ => 0,
        };
        let params = Params::Positional(vec![
            My::from(pipeline),
            My::from(checkpoint.table.as_str()),
            My::from(checkpoint.chunk),
            My::from(serde_json::to_string(&checkpoint.position).context(ctx)?),
            My::from(checkpoint.rows),
            My::from(checkpoint.done),
            My::from(epoch),
        ]);
        Ok(CheckpointWrite {
            checkpoint,
            pipeline,
            params,
        })
    }

    /// Checks the fence (the checkpoint row locked until the commit) and
    /// writes the checkpoint; refused, the transaction is to be dropped.
    pub(super) async fn write_in(self, tx: &mut Transaction<'_>) -> Result<()> {
        let ctx = || {
            format!(
                "writing the checkpoint of table {} chunk {}",
                self.checkpoint.table, self.checkpoint.chunk
            )
        };
        if let Some(fence) = self.checkpoint.fence {
            let held: Option<(u64, bool, u64)> = tx
                .exec_first(
                    "SELECT `rows`, done, epoch FROM _dmp_checkpoints \
                     WHERE pipeline = ? AND table_name = ? AND chunk = ? FOR UPDATE",
                    (
                        self.pipeline,
                        self.checkpoint.table.as_str(),
                        self.checkpoint.chunk,
                    ),
                )
                .await
                .context(ctx)?;
            let refused = match (fence, held) {
                (Fence::Rows(from), Some((rows, done, _))) => done || rows != from,
                (Fence::Epoch(epoch), Some((_, _, held))) => held > epoch,
                (_, None) => false,
            };
            if refused {
                return Err(dmp_contract::deposed(self.checkpoint));
            }
        }
        tx.exec_drop(CHECKPOINT_SQL, self.params)
            .await
            .context(ctx)?;
        Ok(())
    }
}

/// Fence, checkpoint, dead letters, commit: in that order, so a crash
/// before the commit redoes the batch and its rejects.
async fn finish(
    mut tx: Transaction<'_>,
    checkpoint: CheckpointWrite<'_>,
    table: &Arc<TableSchema>,
    refused: Vec<Reject>,
    sink: Arc<dyn RejectSink>,
    ctx: &(dyn Fn() -> String + Sync),
) -> Result<()> {
    // An error drops (rolls back) the transaction.
    checkpoint.write_in(&mut tx).await?;
    dmp_contract::dead_letter(&sink, table, refused).await?;
    tx.commit()
        .await
        .context(|| format!("{}: committing", ctx()))
}

/// Applies a batch's changes in order: inserts in groups, updates and
/// deletes by primary key.
async fn apply_changes(
    tx: &mut Transaction<'_>,
    plan: &TablePlan,
    batch: &Batch,
    refused: &mut Vec<Reject>,
) -> Result<u64> {
    let ctx = || format!("writing table {} chunk {}", plan.table.name, batch.chunk);
    let mut written = 0;
    let mut pending: Vec<&Row> = Vec::new();
    for change in &batch.changes {
        if let Change::Insert(row) = change {
            pending.push(row);
            continue;
        }
        written += insert_rows(tx, plan, &pending, &batch.position, refused)
            .await
            .context(ctx)?;
        pending.clear();
        if plan.keys.is_empty() {
            return Err(Error::Unsupported(format!(
                "table {}: {} of a row in a table without primary key",
                plan.table.name,
                change.op()
            )));
        }
        match change {
            Change::Update { before, after } => {
                delete(tx, plan, before.as_ref().unwrap_or(after))
                    .await
                    .context(ctx)?;
                written += insert_rows(tx, plan, &[after], &batch.position, refused)
                    .await
                    .context(ctx)?;
            }
            Change::Delete(row) => {
                delete(tx, plan, row).await.context(ctx)?;
                written += 1;
            }
            Change::Insert(_) => {}
        }
    }
    written += insert_rows(tx, plan, &pending, &batch.position, refused)
        .await
        .context(ctx)?;
    Ok(written)
}

async fn delete(
    tx: &mut Transaction<'_>,
    plan: &TablePlan,
    row: &Row,
) -> std::result::Result<(), mysql_async::Error> {
    let conditions: Vec<String> = plan
        .keys
        .iter()
        .map(|&i| format!("{} = ?", quote(&plan.table.columns[i].name)))
        .collect();
    let sql = format!(
        "DELETE FROM {} WHERE {}",
        quote(&plan.table.name),
        conditions.join(" AND ")
    );
    let params: Vec<My> = plan.keys.iter().map(|&i| to_param(&row.0[i])).collect();
    tx.exec_drop(sql, params).await
}

/// The longest text or bytes value of a row.
pub(super) fn longest_value(row: &Row) -> usize {
    row.0
        .iter()
        .map(|v| match v {
            dmp_model::Value::Text(s) | dmp_model::Value::Json(s) => s.len(),
            dmp_model::Value::Bytes(b) => b.len(),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Bytes a row takes in an INSERT, roughly.
pub(super) fn row_size(row: &Row) -> usize {
    row.0
        .iter()
        .map(|v| match v {
            dmp_model::Value::Text(s) | dmp_model::Value::Json(s) => s.len() + 9,
            dmp_model::Value::Bytes(b) => b.len() + 9,
            _ => 9,
        })
        .sum()
}

/// Inserts rows with multi-row prepared INSERTs. A statement that fails
/// on a row's values is rolled back by the server on its own (InnoDB
/// undoes a failed statement, not the transaction), so its rows are
/// redone one by one and only the bad ones are refused.
async fn insert_rows(
    tx: &mut Transaction<'_>,
    plan: &TablePlan,
    rows: &[&Row],
    batch: &Position,
    refused: &mut Vec<Reject>,
) -> std::result::Result<u64, mysql_async::Error> {
    let (fitting, oversized): (Vec<&Row>, Vec<&Row>) = rows
        .iter()
        .partition(|row| longest_value(row) <= plan.max_value);
    for row in oversized {
        refused.push(plan.refuse(row, too_long(longest_value(row), plan.max_value), batch));
    }
    let rows = fitting.as_slice();
    let ncols = plan.table.columns.len().max(1);
    let max_rows = (MAX_PARAMS / ncols).clamp(1, MAX_ROWS_PER_INSERT);
    let mut written = 0;
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len()
            && end - start < max_rows
            && (end == start || bytes < MAX_BYTES_PER_INSERT)
        {
            bytes += row_size(rows[end]);
            end += 1;
        }
        let group = &rows[start..end];
        match execute_insert(tx, plan, group).await {
            Ok(()) => written += group.len() as u64,
            Err(e) => match data_error(&e) {
                Some(_) if group.len() > 1 => {
                    for row in group {
                        match execute_insert(tx, plan, std::slice::from_ref(row)).await {
                            Ok(()) => written += 1,
                            Err(e) => match data_error(&e) {
                                Some(reason) => refused.push(plan.refuse(row, reason, batch)),
                                None => return Err(e),
                            },
                        }
                    }
                }
                Some(reason) => refused.push(plan.refuse(group[0], reason, batch)),
                None => return Err(e),
            },
        }
        start = end;
    }
    Ok(written)
}

async fn execute_insert(
    tx: &mut Transaction<'_>,
    plan: &TablePlan,
    rows: &[&Row],
) -> std::result::Result<(), mysql_async::Error> {
    let mut params = Vec::with_capacity(rows.len() * plan.table.columns.len());
    for row in rows {
        params.extend(row.0.iter().map(to_param));
    }
    tx.exec_drop(plan.insert_sql(rows.len()), params).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::Column;

    #[test]
    fn statements_name_every_column() {
        let table = Arc::new(TableSchema {
            namespace: None,
            name: "Ünï`code".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("doc", DataType::Json),
            ],
            primary_key: vec!["id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        });
        let mut actual = HashMap::new();
        let plan = TablePlan::new(table.clone(), Server::for_tests(true, (10, 11, 0)), &actual);
        assert_eq!(
            plan.load_sql,
            "LOAD DATA LOCAL INFILE 'dmp-batch' INTO TABLE `Ünï``code` CHARACTER SET binary \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`id`, `doc`)"
        );
        assert_eq!(
            plan.insert_sql(2),
            "INSERT INTO `Ünï``code` (`id`, `doc`) VALUES (?,?),(?,?)"
        );
        actual.insert("doc".to_string(), "json".to_string());
        let mysql = TablePlan::new(table, Server::for_tests(false, (8, 0, 36)), &actual);
        assert!(
            mysql
                .load_sql
                .ends_with("(`id`, @v1) SET `doc` = CONVERT(@v1 USING utf8mb4)"),
            "{}",
            mysql.load_sql
        );
        assert!(is_data_error(1406) && is_data_error(4025) && !is_data_error(1213));
    }
}
