//! Dead-letter rows: rows a source, transform or target refused, kept with
//! the reason and the source position so they can be inspected and replayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::params;

use super::{StateStore, now};
use crate::config::OnError;
use crate::connectors::RejectSink;
use crate::error::{Error, Result, ResultExt};
use crate::model::{Reject, TableSchema};

/// A stored dead-letter row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    /// Its number in the store (`dmp dlq purge --id`).
    pub id: i64,
    pub table: String,
    pub stage: String,
    pub error: String,
    pub row: serde_json::Value,
    pub position: serde_json::Value,
    pub created_at: String,
}

impl StateStore {
    /// Stores rejects; storing the same rejects again (a redone batch) keeps
    /// one copy.
    pub fn dead_letter(
        &self,
        pipeline: &str,
        run: i64,
        table: &str,
        rejects: &[Reject],
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let ctx = || self.ctx("storing dead-letter rows");
        let txn = conn.transaction().context(ctx)?;
        for (seq, reject) in rejects.iter().enumerate() {
            txn.execute(
                "INSERT OR IGNORE INTO dead_letters (pipeline, run_id, table_name, stage, position, seq, error, row, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    pipeline,
                    run,
                    table,
                    reject.stage.as_str(),
                    serde_json::to_string(&reject.position).context(ctx)?,
                    i64::try_from(seq).unwrap_or(i64::MAX),
                    reject.error,
                    reject.row.to_string(),
                    now()
                ],
            )
            .context(ctx)?;
        }
        txn.commit().context(ctx)
    }

    /// The dead-letter rows of a pipeline, oldest first.
    pub fn dead_letters(&self, pipeline: &str) -> Result<Vec<DeadLetter>> {
        let conn = self.conn()?;
        let ctx = || self.ctx("reading dead-letter rows");
        let mut stmt = conn
            .prepare("SELECT id, table_name, stage, error, row, position, created_at FROM dead_letters WHERE pipeline = ?1 ORDER BY id")
            .context(ctx)?;
        type Stored = (i64, String, String, String, String, String, String);
        let rows: Vec<Stored> = stmt
            .query_map([pipeline], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .context(ctx)?;
        rows.into_iter()
            .map(|(id, table, stage, error, row, position, created_at)| {
                Ok(DeadLetter {
                    id,
                    table,
                    stage,
                    error,
                    row: serde_json::from_str(&row).context(ctx)?,
                    position: serde_json::from_str(&position).context(ctx)?,
                    created_at,
                })
            })
            .collect()
    }
}

impl StateStore {
    /// Deletes a pipeline's dead-letter rows: those of `table` when given,
    /// those numbered `ids` when given, else all. Returns how many.
    pub fn purge_dead_letters(
        &self,
        pipeline: &str,
        table: Option<&str>,
        ids: &[i64],
    ) -> Result<usize> {
        let mut conn = self.conn()?;
        let ctx = || self.ctx("purging dead-letter rows");
        let txn = conn.transaction().context(ctx)?;
        let mut purged = 0;
        if ids.is_empty() {
            purged += txn
                .execute(
                    "DELETE FROM dead_letters WHERE pipeline = ?1 AND (?2 IS NULL OR table_name = ?2)",
                    params![pipeline, table],
                )
                .context(ctx)?;
        } else {
            for id in ids {
                purged += txn
                    .execute(
                        "DELETE FROM dead_letters WHERE pipeline = ?1 AND id = ?2 AND (?3 IS NULL OR table_name = ?3)",
                        params![pipeline, id, table],
                    )
                    .context(ctx)?;
            }
        }
        txn.commit().context(ctx)?;
        Ok(purged)
    }
}

/// Applies the run's `on_error` policy to refused rows.
pub struct DeadLetterSink {
    store: Arc<StateStore>,
    pipeline: String,
    run: i64,
    policy: OnError,
    count: AtomicU64,
}

impl DeadLetterSink {
    pub fn new(store: Arc<StateStore>, pipeline: String, run: i64, policy: OnError) -> Self {
        DeadLetterSink {
            store,
            pipeline,
            run,
            policy,
            count: AtomicU64::new(0),
        }
    }

    /// Rows refused so far in this run (stored or skipped).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl RejectSink for DeadLetterSink {
    fn reject(&self, table: &TableSchema, rejects: Vec<Reject>) -> Result<()> {
        let Some(first) = rejects.first() else {
            return Ok(());
        };
        match self.policy {
            OnError::Fail => {
                return Err(Error::Data(format!(
                    "table {}: a row was refused ({} stage, at {}): {} (on_error = \"fail\")",
                    table.name,
                    first.stage.as_str(),
                    serde_json::to_string(&first.position).unwrap_or_default(),
                    first.error
                )));
            }
            OnError::Skip => {
                for r in &rejects {
                    tracing::warn!(
                        table = table.name,
                        stage = r.stage.as_str(),
                        error = r.error,
                        "row skipped"
                    );
                }
            }
            OnError::DeadLetter => {
                self.store
                    .dead_letter(&self.pipeline, self.run, &table.name, &rejects)?;
                tracing::warn!(
                    table = table.name,
                    rows = rejects.len(),
                    first_error = first.error,
                    "rows dead-lettered"
                );
            }
        }
        self.count
            .fetch_add(rejects.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
