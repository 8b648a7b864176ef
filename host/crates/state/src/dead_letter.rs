//! Dead-letter rows: rows a source, transform or target refused, kept with
//! the reason, the source position and the plugin versions that produced
//! them, so they can be inspected and replayed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::params;

use super::redact::without_row_values;
use super::sealing::{Field, seal, unseal};
use super::{StateStore, TIMESTAMP, now};
use crate::error::{Error, Result, ResultExt};
use dmp_config::OnError;
use dmp_contract::RejectSink;
use dmp_model::{Position, Reject, RejectStage, TableSchema};

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
    /// The transform chain's plugin versions that handled the row
    /// (`name@sha256-prefix`, comma-separated); empty when none did.
    pub plugins: String,
    pub created_at: String,
}

/// The dead-letter rows of one table and stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetterGroup {
    pub table: String,
    pub stage: String,
    pub rows: usize,
    /// The most frequent error of the group, and how many rows have it.
    pub top_error: String,
    pub top_error_rows: usize,
}

/// Rows per (table, stage), with their most frequent error.
pub fn dead_letter_groups(letters: &[DeadLetter]) -> Vec<DeadLetterGroup> {
    let mut by: std::collections::BTreeMap<(&str, &str), std::collections::BTreeMap<&str, usize>> =
        std::collections::BTreeMap::new();
    for d in letters {
        *by.entry((&d.table, &d.stage))
            .or_default()
            .entry(&d.error)
            .or_default() += 1;
    }
    by.into_iter()
        .map(|((table, stage), errors)| {
            let rows = errors.values().sum();
            let (top_error, top_error_rows) = errors
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .unwrap_or(("", 0));
            DeadLetterGroup {
                table: table.to_string(),
                stage: stage.to_string(),
                rows,
                top_error: top_error.to_string(),
                top_error_rows,
            }
        })
        .collect()
}

/// A dead-letter row as `dmp dlq replay` needs it: the row's JSON text as
/// stored (JSON columns keep their exact text) and a typed position.
#[derive(Debug, Clone)]
pub struct StoredLetter {
    pub id: i64,
    pub table: String,
    pub stage: RejectStage,
    pub row: String,
    pub position: Position,
    pub plugins: String,
    /// The mode of the run that stored it (`full`, `incremental`, `cdc`).
    pub run_mode: Option<String>,
}

/// What a replay made of one dead-letter row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// It reached the target: the row leaves the store.
    Replayed(i64),
    /// It failed again: the row stays with the new error and the plugin
    /// versions that handled it this time.
    Failed {
        id: i64,
        error: String,
        plugins: String,
    },
}

impl StateStore {
    /// Stores rejects with the plugin versions that handled them; storing
    /// the same rejects again (a redone batch) keeps one copy. An error
    /// text several rejects share (a batch a plugin failed on as a whole)
    /// is stored once, the rows pointing at it.
    pub fn dead_letter(
        &self,
        pipeline: &str,
        run: i64,
        table: &str,
        rejects: &[Reject],
        plugins: &str,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let ctx = || self.ctx("storing dead-letter rows");
        let key = self.key.as_ref();
        let txn = conn.transaction().context(ctx)?;
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for reject in rejects {
            *uses.entry(reject.error.as_str()).or_default() += 1;
        }
        let mut shared: HashMap<&str, i64> = HashMap::new();
        let mut ignored = false;
        for (seq, reject) in rejects.iter().enumerate() {
            // A row the reader refused never met a plugin.
            let plugins =
                (reject.stage != RejectStage::Source && !plugins.is_empty()).then_some(plugins);
            let text = reject.error.as_str();
            let (error, error_id) = if uses.get(text).is_some_and(|n| *n > 1) {
                let id = match shared.get(text) {
                    Some(id) => *id,
                    None => {
                        txn.execute(
                            "INSERT INTO dead_letter_errors (error) VALUES (?1)",
                            [seal(key, Field::Error, text)?],
                        )
                        .context(ctx)?;
                        let id = txn.last_insert_rowid();
                        shared.insert(text, id);
                        id
                    }
                };
                (String::new(), Some(id))
            } else {
                (seal(key, Field::Error, text)?, None)
            };
            let stored = txn.execute(
                "INSERT OR IGNORE INTO dead_letters (pipeline, run_id, table_name, stage, position, seq, error, row, created_at, plugins, error_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    pipeline,
                    run,
                    table,
                    reject.stage.as_str(),
                    serde_json::to_string(&reject.position).context(ctx)?,
                    i64::try_from(seq).unwrap_or(i64::MAX),
                    error,
                    seal(key, Field::Row, &reject.row.to_string())?,
                    now(),
                    plugins,
                    error_id
                ],
            )
            .context(ctx)?;
            ignored |= stored == 0;
        }
        if ignored {
            drop_unused_errors(&txn).context(ctx)?;
        }
        txn.commit().context(ctx)
    }

    /// The dead-letter rows of a pipeline, oldest first.
    pub fn dead_letters(&self, pipeline: &str) -> Result<Vec<DeadLetter>> {
        let conn = self.conn()?;
        let ctx = || self.ctx("reading dead-letter rows");
        let mut stmt = conn
            .prepare(
                "SELECT d.id, d.table_name, d.stage, coalesce(e.error, d.error), d.row, d.position, d.created_at, coalesce(d.plugins, '')
                 FROM dead_letters d LEFT JOIN dead_letter_errors e ON e.id = d.error_id
                 WHERE d.pipeline = ?1 ORDER BY d.id",
            )
            .context(ctx)?;
        type Stored = (i64, String, String, String, String, String, String, String);
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
                    r.get(7)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .context(ctx)?;
        let key = self.key.as_ref();
        rows.into_iter()
            .map(
                |(id, table, stage, error, row, position, created_at, plugins)| {
                    let row = unseal(key, Field::Row, id, row)?;
                    Ok(DeadLetter {
                        id,
                        table,
                        stage,
                        error: unseal(key, Field::Error, id, error)?,
                        row: serde_json::from_str(&row).context(ctx)?,
                        position: serde_json::from_str(&position).context(ctx)?,
                        plugins,
                        created_at,
                    })
                },
            )
            .collect()
    }

    /// The tables that have dead-letter rows to replay: `table` when given,
    /// those of the rows numbered `ids` when given (each must exist), else
    /// all, by name.
    pub fn tables_to_replay(
        &self,
        pipeline: &str,
        table: Option<&str>,
        ids: &[i64],
    ) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let ctx = || self.ctx("reading dead-letter rows to replay");
        for id in ids {
            let found: i64 = conn
                .query_row(
                    "SELECT count(*) FROM dead_letters WHERE pipeline = ?1 AND id = ?2 AND (?3 IS NULL OR table_name = ?3)",
                    params![pipeline, id, table],
                    |r| r.get(0),
                )
                .context(ctx)?;
            if found == 0 {
                return Err(Error::Config(format!(
                    "pipeline {pipeline}: there is no dead-letter row #{id}{}",
                    table.map_or(String::new(), |t| format!(" of table {t}"))
                )));
            }
        }
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT table_name FROM dead_letters
                 WHERE pipeline = ?1 AND (?2 IS NULL OR table_name = ?2) ORDER BY table_name",
            )
            .context(ctx)?;
        let tables: Vec<String> = stmt
            .query_map(params![pipeline, table], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context(ctx)?;
        if ids.is_empty() {
            return Ok(tables);
        }
        let mut with_ids = Vec::new();
        for t in tables {
            let has: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM dead_letters WHERE pipeline = ?1 AND table_name = ?2
                       AND id IN (SELECT value FROM json_each(?3)))",
                    params![pipeline, t, serde_json::to_string(ids).context(ctx)?],
                    |r| r.get(0),
                )
                .context(ctx)?;
            if has {
                with_ids.push(t);
            }
        }
        Ok(with_ids)
    }

    /// Up to `limit` dead-letter rows of `table` numbered above `after`,
    /// oldest first; only those numbered `ids` when given. Paging keeps a
    /// replay's memory flat however many rows wait.
    pub fn letters_to_replay(
        &self,
        pipeline: &str,
        table: &str,
        ids: &[i64],
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredLetter>> {
        let conn = self.conn()?;
        let ctx = || self.ctx("reading dead-letter rows to replay");
        let mut stmt = conn
            .prepare(
                "SELECT d.id, d.table_name, d.stage, d.row, d.position, coalesce(d.plugins, ''), r.mode
                 FROM dead_letters d LEFT JOIN runs r ON r.id = d.run_id
                 WHERE d.pipeline = ?1 AND d.table_name = ?2 AND d.id > ?3
                   AND (?4 IS NULL OR d.id IN (SELECT value FROM json_each(?4)))
                 ORDER BY d.id LIMIT ?5",
            )
            .context(ctx)?;
        let only = if ids.is_empty() {
            None
        } else {
            Some(serde_json::to_string(ids).context(ctx)?)
        };
        type Stored = (i64, String, String, String, String, String, Option<String>);
        let rows: Vec<Stored> = stmt
            .query_map(
                params![
                    pipeline,
                    table,
                    after,
                    only,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .and_then(|rows| rows.collect())
            .context(ctx)?;
        let key = self.key.as_ref();
        rows.into_iter()
            .map(|(id, table, stage, row, position, plugins, run_mode)| {
                let stage = stage_from_str(&stage).ok_or_else(|| {
                    Error::Data(format!(
                        "dead-letter row #{id} in state store {}: unknown stage `{stage}`",
                        self.path.display()
                    ))
                })?;
                Ok(StoredLetter {
                    id,
                    table,
                    stage,
                    row: unseal(key, Field::Row, id, row)?,
                    position: serde_json::from_str(&position).context(ctx)?,
                    plugins,
                    run_mode,
                })
            })
            .collect()
    }

    /// Records the outcome of a replay in one transaction: replayed rows
    /// leave the store, failed ones get their new error.
    pub fn settle_dead_letters(&self, pipeline: &str, outcomes: &[Settled]) -> Result<()> {
        let mut conn = self.conn()?;
        let ctx = || self.ctx("recording the replay of dead-letter rows");
        let key = self.key.as_ref();
        let txn = conn.transaction().context(ctx)?;
        for outcome in outcomes {
            match outcome {
                Settled::Replayed(id) => txn.execute(
                    "DELETE FROM dead_letters WHERE pipeline = ?1 AND id = ?2",
                    params![pipeline, id],
                ),
                Settled::Failed { id, error, plugins } => txn.execute(
                    "UPDATE dead_letters SET error = ?3, error_id = NULL, plugins = nullif(?4, '') WHERE pipeline = ?1 AND id = ?2",
                    params![pipeline, id, seal(key, Field::Error, error)?, plugins],
                ),
            }
            .context(ctx)?;
        }
        drop_unused_errors(&txn).context(ctx)?;
        txn.commit().context(ctx)
    }
}

fn stage_from_str(stage: &str) -> Option<RejectStage> {
    [
        RejectStage::Source,
        RejectStage::Transform,
        RejectStage::Target,
    ]
    .into_iter()
    .find(|s| s.as_str() == stage)
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
        drop_unused_errors(&txn).context(ctx)?;
        txn.commit().context(ctx)?;
        if purged > 0 {
            compact(&conn).context(ctx)?;
        }
        Ok(purged)
    }

    /// Deletes a pipeline's dead-letter rows stored more than `retention`
    /// ago (`[run] dead_letter_retention`). Returns how many.
    pub fn expire_dead_letters(
        &self,
        pipeline: &str,
        retention: std::time::Duration,
    ) -> Result<usize> {
        let cutoff = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|age| chrono::Utc::now().checked_sub_signed(age));
        // A retention reaching before the calendar's start keeps everything.
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let cutoff = cutoff.format(TIMESTAMP).to_string();
        let mut conn = self.conn()?;
        let ctx = || self.ctx("deleting expired dead-letter rows");
        let txn = conn.transaction().context(ctx)?;
        let expired = txn
            .execute(
                "DELETE FROM dead_letters WHERE pipeline = ?1 AND created_at < ?2",
                params![pipeline, cutoff],
            )
            .context(ctx)?;
        drop_unused_errors(&txn).context(ctx)?;
        txn.commit().context(ctx)?;
        Ok(expired)
    }
}

/// Forgets shared error texts no dead-letter row points at any more.
fn drop_unused_errors(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM dead_letter_errors WHERE id NOT IN
           (SELECT error_id FROM dead_letters WHERE error_id IS NOT NULL)",
        [],
    )
    .map(drop)
}

/// Rewrites the file without the free pages deleted rows left, and empties
/// the write-ahead log, whose older frames still hold them: purged rows
/// must not be readable in the files afterwards.
fn compact(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch("VACUUM")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
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

    /// A sink for the rows of one batch, which records with them the
    /// plugin versions that produced that batch, per table (`versions`
    /// as the transform chain names them; empty without transforms).
    pub fn produced_by(self: &Arc<Self>, versions: HashMap<String, String>) -> Arc<dyn RejectSink> {
        Arc::new(Produced {
            sink: self.clone(),
            versions,
        })
    }

    fn refuse(&self, table: &TableSchema, rejects: Vec<Reject>, plugins: &str) -> Result<()> {
        let Some(first) = rejects.first() else {
            return Ok(());
        };
        // Errors quoting row values are logged whole only at DEBUG: the
        // dead-letter store is the place for the rows.
        match self.policy {
            OnError::Fail => {
                tracing::debug!(table = table.name, error = first.error, "row refused");
                return Err(Error::Data(format!(
                    "table {}: a row was refused ({} stage, at {}): {} (on_error = \"fail\")",
                    table.name,
                    first.stage.as_str(),
                    serde_json::to_string(&first.position).unwrap_or_default(),
                    without_row_values(&first.error)
                )));
            }
            OnError::Skip => {
                for r in &rejects {
                    tracing::debug!(table = table.name, error = r.error, "row refused");
                    tracing::warn!(
                        table = table.name,
                        stage = r.stage.as_str(),
                        error = without_row_values(&r.error),
                        "row skipped"
                    );
                }
            }
            OnError::DeadLetter => {
                self.store
                    .dead_letter(&self.pipeline, self.run, &table.name, &rejects, plugins)?;
                tracing::debug!(table = table.name, first_error = first.error, "row refused");
                tracing::warn!(
                    table = table.name,
                    rows = rejects.len(),
                    plugins,
                    first_error = without_row_values(&first.error),
                    "rows dead-lettered"
                );
            }
        }
        self.count
            .fetch_add(rejects.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl RejectSink for DeadLetterSink {
    /// Rows stored this way record no plugin versions: see
    /// [`DeadLetterSink::produced_by`].
    fn reject(&self, table: &TableSchema, rejects: Vec<Reject>) -> Result<()> {
        self.refuse(table, rejects, "")
    }
}

/// [`DeadLetterSink`] for one batch, knowing the plugin versions that
/// produced it.
struct Produced {
    sink: Arc<DeadLetterSink>,
    versions: HashMap<String, String>,
}

impl RejectSink for Produced {
    fn reject(&self, table: &TableSchema, rejects: Vec<Reject>) -> Result<()> {
        let plugins = self.versions.get(&table.name).map_or("", String::as_str);
        self.sink.refuse(table, rejects, plugins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::Value;

    fn reject(stage: RejectStage, id: i64) -> Reject {
        Reject {
            stage,
            error: format!("bad {id}"),
            row: serde_json::json!({ "id": id }),
            position: Position::Key {
                key: vec![Value::Int(id)],
            },
        }
    }

    #[test]
    fn letters_keep_their_plugins_and_settle_after_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("state.db")).unwrap());
        store
            .dead_letter(
                "p",
                1,
                "t",
                &[
                    reject(RejectStage::Source, 1),
                    reject(RejectStage::Transform, 2),
                ],
                "mask@0123456789ab",
            )
            .unwrap();
        let sink = Arc::new(DeadLetterSink::new(
            store.clone(),
            "p".into(),
            1,
            OnError::DeadLetter,
        ));
        let schema = TableSchema {
            namespace: None,
            name: "t".into(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        sink.produced_by(HashMap::from([("t".to_string(), "a@1,b@2".to_string())]))
            .reject(&schema, vec![reject(RejectStage::Target, 3)])
            .unwrap();
        assert_eq!(sink.count(), 1);
        let letters = store.dead_letters("p").unwrap();
        let plugins: Vec<&str> = letters.iter().map(|d| d.plugins.as_str()).collect();
        // The reader's reject never met a plugin.
        assert_eq!(plugins, ["", "mask@0123456789ab", "a@1,b@2"]);

        assert_eq!(store.tables_to_replay("p", None, &[]).unwrap(), ["t"]);
        assert!(store.tables_to_replay("p", None, &[99]).is_err());
        assert!(store.tables_to_replay("p", Some("u"), &[1]).is_err());
        assert_eq!(store.tables_to_replay("p", None, &[1]).unwrap(), ["t"]);
        let stored = store.letters_to_replay("p", "t", &[], 0, 10).unwrap();
        assert_eq!(stored.len(), 3);
        assert_eq!(stored[2].stage, RejectStage::Target);
        assert_eq!(stored[2].row, r#"{"id":3}"#);
        // Pages follow the numbers.
        let page = store
            .letters_to_replay("p", "t", &[], stored[0].id, 1)
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, stored[1].id);
        store
            .settle_dead_letters(
                "p",
                &[
                    Settled::Replayed(stored[0].id),
                    Settled::Failed {
                        id: stored[1].id,
                        error: "still bad".into(),
                        plugins: "mask@fedcba987654".into(),
                    },
                ],
            )
            .unwrap();
        let left = store.dead_letters("p").unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].error, "still bad");
        assert_eq!(left[0].plugins, "mask@fedcba987654");
        let only = store
            .letters_to_replay("p", "t", &[left[1].id], 0, 10)
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].id, left[1].id);
    }

    #[test]
    fn a_shared_error_is_stored_once_and_forgotten_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.db")).unwrap();
        let mut rejects: Vec<Reject> = (1..=3)
            .map(|id| reject(RejectStage::Transform, id))
            .collect();
        for r in &mut rejects[..2] {
            r.error = "the batch failed".into();
        }
        store.dead_letter("p", 1, "t", &rejects, "").unwrap();
        // A redone batch stores nothing new.
        store.dead_letter("p", 1, "t", &rejects, "").unwrap();
        let errors: Vec<String> = store
            .dead_letters("p")
            .unwrap()
            .into_iter()
            .map(|d| d.error)
            .collect();
        assert_eq!(errors, ["the batch failed", "the batch failed", "bad 3"]);
        let shared = |store: &StateStore| -> i64 {
            store
                .conn()
                .unwrap()
                .query_row("SELECT count(*) FROM dead_letter_errors", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(shared(&store), 1);
        store.purge_dead_letters("p", None, &[]).unwrap();
        assert_eq!(shared(&store), 0);
    }

    #[test]
    fn letters_older_than_the_retention_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.db")).unwrap();
        let rejects: Vec<Reject> = (1..=2).map(|id| reject(RejectStage::Target, id)).collect();
        store.dead_letter("p", 1, "t", &rejects, "").unwrap();
        store.dead_letter("q", 1, "t", &rejects[..1], "").unwrap();
        let old = (chrono::Utc::now() - chrono::Duration::days(31))
            .format(super::super::TIMESTAMP)
            .to_string();
        store
            .conn()
            .unwrap()
            .execute(
                "UPDATE dead_letters SET created_at = ?1 WHERE error = 'bad 1'",
                [old],
            )
            .unwrap();
        let month = std::time::Duration::from_secs(30 * 24 * 3600);
        assert_eq!(store.expire_dead_letters("p", month).unwrap(), 1);
        let left: Vec<String> = store
            .dead_letters("p")
            .unwrap()
            .into_iter()
            .map(|d| d.error)
            .collect();
        assert_eq!(left, ["bad 2"]);
        // Another pipeline's letters, as old, are left to its own runs.
        assert_eq!(store.dead_letters("q").unwrap().len(), 1);
    }

    #[test]
    fn an_old_store_gets_the_plugins_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, run_id INTEGER NOT NULL,
                   table_name TEXT NOT NULL, stage TEXT NOT NULL, position TEXT NOT NULL, seq INTEGER NOT NULL,
                   error TEXT NOT NULL, row TEXT NOT NULL, created_at TEXT NOT NULL,
                   UNIQUE (pipeline, table_name, stage, position, seq));
                 INSERT INTO dead_letters (pipeline, run_id, table_name, stage, position, seq, error, row, created_at)
                   VALUES ('p', 1, 't', 'target', '{\"kind\":\"start\"}', 0, 'old', '{\"id\":1}', '2024-01-01');",
            )
            .unwrap();
        }
        let store = StateStore::open(&path).unwrap();
        let letters = store.dead_letters("p").unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].plugins, "");
        assert_eq!(letters[0].error, "old");
    }
}
