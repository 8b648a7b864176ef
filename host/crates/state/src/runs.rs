//! Runs and their chunk plans.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{StateStore, now};
use crate::error::{Error, Result, ResultExt};
use dmp_model::{Checkpoint, Chunk, Position, TablePhase, TableSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Done,
    Failed,
    Interrupted,
    /// Given up by `dmp run --restart`; never resumed.
    Abandoned,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

/// An unfinished run found at start-up.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: i64,
    /// Whether the target was prepared (tables created) for it.
    pub prepared: bool,
}

/// A table of a run's plan, as stored.
pub type PlannedTable = (Arc<TableSchema>, Vec<Chunk>);

impl StateStore {
    /// The last snapshot (full) run of `pipeline` if it did not finish
    /// (crashed, failed or interrupted): the next full run resumes it.
    /// Incremental and streaming runs resume from the target's checkpoints
    /// and are not looked at.
    pub fn unfinished_run(&self, pipeline: &str) -> Result<Option<RunRecord>> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT id, status, prepared FROM runs WHERE pipeline = ?1 AND mode = 'full' ORDER BY id DESC LIMIT 1",
            [pipeline],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            },
        )
        .optional()
        .context(|| self.ctx("looking up the last run"))
        .map(|last| {
            last.filter(|(_, status, _)| {
                status != RunStatus::Done.as_str() && status != RunStatus::Abandoned.as_str()
            })
            .map(|(id, _, prepared)| RunRecord { id, prepared })
        })
    }

    /// Records a new run and its chunk plan in one transaction.
    pub fn begin_run(&self, pipeline: &str, mode: &str, plan: &[PlannedTable]) -> Result<i64> {
        let mut conn = self.conn()?;
        let ctx = || self.ctx("recording the run plan");
        let txn = conn.transaction().context(ctx)?;
        txn.execute(
            "INSERT INTO runs (pipeline, mode, status, started_at) VALUES (?1, ?2, 'running', ?3)",
            params![pipeline, mode, now()],
        )
        .context(ctx)?;
        let run = txn.last_insert_rowid();
        for (table, chunks) in plan {
            let schema = serde_json::to_string(&**table).context(ctx)?;
            txn.execute(
                "INSERT INTO run_tables (run_id, table_name, source_schema) VALUES (?1, ?2, ?3)",
                params![run, table.name, schema],
            )
            .context(ctx)?;
            for chunk in chunks {
                txn.execute(
                    "INSERT INTO chunks (run_id, table_name, chunk, spec) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        run,
                        table.name,
                        chunk.id,
                        serde_json::to_string(chunk).context(ctx)?
                    ],
                )
                .context(ctx)?;
            }
        }
        txn.commit().context(ctx)?;
        Ok(run)
    }

    /// The plan a run was started with.
    pub fn load_plan(&self, run: i64) -> Result<Vec<PlannedTable>> {
        let conn = self.conn()?;
        let ctx = || self.ctx("reading the run plan");
        let tables: Vec<(String, String)> = conn
            .prepare("SELECT table_name, source_schema FROM run_tables WHERE run_id = ?1 ORDER BY table_name")
            .and_then(|mut s| s.query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .context(ctx)?;
        let mut plan = Vec::new();
        for (name, schema) in tables {
            let chunks: Vec<String> = conn
                .prepare(
                    "SELECT spec FROM chunks WHERE run_id = ?1 AND table_name = ?2 ORDER BY chunk",
                )
                .and_then(|mut s| s.query_map(params![run, name], |r| r.get(0))?.collect())
                .context(ctx)?;
            let chunks = chunks
                .iter()
                .map(|c| serde_json::from_str(c).context(ctx))
                .collect::<Result<Vec<Chunk>>>()?;
            plan.push((
                Arc::new(serde_json::from_str(&schema).context(ctx)?),
                chunks,
            ));
        }
        Ok(plan)
    }

    pub fn abandon_run(&self, run: i64) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE runs SET status = 'abandoned', finished_at = ?2 WHERE id = ?1",
                params![run, now()],
            )
            .context(|| self.ctx("abandoning the run"))?;
        Ok(())
    }

    pub fn mark_prepared(&self, run: i64) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE runs SET prepared = 1, status = 'running' WHERE id = ?1",
                [run],
            )
            .context(|| self.ctx("marking the run prepared"))?;
        Ok(())
    }

    /// Records where the source's change log stood at the run's snapshot.
    pub fn set_snapshot_position(&self, run: i64, position: &str) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE runs SET snapshot_position = ?2 WHERE id = ?1",
                rusqlite::params![run, position],
            )
            .context(|| self.ctx("recording the snapshot position"))?;
        Ok(())
    }

    /// The source change log position recorded by the pipeline's latest
    /// run that recorded one.
    pub fn snapshot_position(&self, pipeline: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        let position = self
            .conn()?
            .query_row(
                "SELECT snapshot_position FROM runs WHERE pipeline = ?1 AND snapshot_position IS NOT NULL ORDER BY id DESC LIMIT 1",
                [pipeline],
                |r| r.get(0),
            )
            .optional()
            .context(|| self.ctx("reading the snapshot position"))?;
        Ok(position)
    }

    /// Records where a `full+cdc` pipeline's stream starts once its snapshot
    /// is copied, before the copy begins: a resumed copy must stream from
    /// this same point (or an earlier one), never from a later one.
    pub fn set_stream_start(&self, pipeline: &str, position: &Position) -> Result<()> {
        let ctx = || self.ctx("recording where the change stream starts");
        let text = serde_json::to_string(position).context(ctx)?;
        self.conn()?
            .execute(
                "INSERT INTO stream_starts (pipeline, position, recorded_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, recorded_at = excluded.recorded_at",
                params![pipeline, text, now()],
            )
            .context(ctx)?;
        Ok(())
    }

    /// Forgets where the stream starts once the target holds the stream's
    /// own checkpoint (a later `full+cdc` run copies a snapshot anew).
    pub fn clear_stream_start(&self, pipeline: &str) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM stream_starts WHERE pipeline = ?1", [pipeline])
            .context(|| self.ctx("forgetting where the change stream started"))?;
        Ok(())
    }

    /// Where the stream of `pipeline`'s snapshot (being copied, or copied
    /// and not yet streamed from) starts.
    pub fn stream_start(&self, pipeline: &str) -> Result<Option<Position>> {
        let ctx = || self.ctx("reading where the change stream starts");
        let text: Option<String> = self
            .conn()?
            .query_row(
                "SELECT position FROM stream_starts WHERE pipeline = ?1",
                [pipeline],
                |r| r.get(0),
            )
            .optional()
            .context(ctx)?;
        text.map(|t| serde_json::from_str(&t).context(ctx))
            .transpose()
    }

    /// Mirrors a checkpoint that the target made durable (for `dmp status`
    /// and progress; resuming trusts the target's own copy).
    /// `plugins` names the plugin versions that produced the batch.
    pub fn record_progress(&self, run: i64, checkpoint: &Checkpoint, plugins: &str) -> Result<()> {
        let position = serde_json::to_string(&checkpoint.position)
            .context(|| self.ctx("recording progress"))?;
        self.conn()?
            .execute(
                "UPDATE chunks SET position = ?4, rows = ?5, done = ?6, plugins = ?7 WHERE run_id = ?1 AND table_name = ?2 AND chunk = ?3",
                params![
                    run,
                    checkpoint.table,
                    checkpoint.chunk,
                    position,
                    i64::try_from(checkpoint.rows).unwrap_or(i64::MAX),
                    checkpoint.done,
                    plugins
                ],
            )
            .context(|| self.ctx("recording progress"))?;
        Ok(())
    }

    pub fn mark_table_done(&self, run: i64, table: &str) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE run_tables SET done = 1 WHERE run_id = ?1 AND table_name = ?2",
                params![run, table],
            )
            .context(|| self.ctx("marking a table done"))?;
        Ok(())
    }

    /// Records where a table of the run stands (`TablePhase`, as JSON).
    pub fn set_table_phase(&self, run: i64, table: &str, phase: &TablePhase) -> Result<()> {
        let text = serde_json::to_string(phase)
            .map_err(|e| Error::Data(format!("table phase as JSON: {e}")))?;
        self.conn()?
            .execute(
                "UPDATE run_tables SET phase = ?3 WHERE run_id = ?1 AND table_name = ?2",
                params![run, table, text],
            )
            .context(|| self.ctx("recording a table's phase"))?;
        Ok(())
    }

    /// Where each table of the run stands, in plan order; tables no phase
    /// was recorded for (runs of older versions) are planned or done.
    pub fn table_phases(&self, run: i64) -> Result<Vec<(String, TablePhase)>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT table_name, phase, done FROM run_tables WHERE run_id = ?1 ORDER BY rowid",
            )
            .context(|| self.ctx("reading the tables' phases"))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .context(|| self.ctx("reading the tables' phases"))?;
        Ok(rows
            .into_iter()
            .map(|(table, phase, done)| {
                let phase = phase
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or(if done {
                        TablePhase::Done
                    } else {
                        TablePhase::Planned
                    });
                (table, phase)
            })
            .collect())
    }

    pub fn finish_run(
        &self,
        run: i64,
        status: RunStatus,
        rows: u64,
        rejected: u64,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, rows = rows + ?4, rejected = rejected + ?5, error = ?6 WHERE id = ?1",
                params![
                    run,
                    status.as_str(),
                    now(),
                    i64::try_from(rows).unwrap_or(i64::MAX),
                    i64::try_from(rejected).unwrap_or(i64::MAX),
                    error
                ],
            )
            .context(|| self.ctx("recording the end of the run"))?;
        Ok(())
    }
}
