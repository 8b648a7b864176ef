//! The contract every target connector fulfils.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{LoggedConflict, NameRules, Resolution, SchemaItem, TakenName};
use crate::error::Error;
use crate::error::Result;
use dmp_model::{
    Batch, Carry, ChangeBatch, Checkpoint, Column, Reject, SchemaObjects, TableSchema, WireFormat,
};

/// What to do with a table that already exists on the target when a new
/// (not resumed) full run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfExists {
    /// Stop before anything is written.
    Fail,
    /// Empty it, keep its definition.
    Truncate,
    /// Add the rows to what is there.
    Append,
    /// Drop and create it from the source schema (the default: a full run
    /// makes the target a copy of the source).
    #[default]
    Replace,
}

/// Whether a run starts anew or continues an interrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Resume,
    /// Incremental and change data capture runs: create the tables that are
    /// missing (with their indexes), leave existing ones and every
    /// checkpoint as they are.
    Keep,
}

/// The error a fenced write (`Checkpoint::fence`) ends in when the
/// target's checkpoint of the chunk moved since it was read: another
/// worker wrote the chunk meanwhile.
pub fn deposed(checkpoint: &dmp_model::Checkpoint) -> Error {
    Error::Deposed(match checkpoint.fence {
        Some(dmp_model::Fence::Epoch(epoch)) => format!(
            "the change stream's checkpoint carries a newer holder's epoch than {epoch}: \
             another worker holds the stream now; this one stops"
        ),
        _ => format!(
            "table {} chunk {}: another worker moved the chunk's checkpoint; \
             this copy of the chunk stops and leaves it to that worker",
            checkpoint.table, checkpoint.chunk
        ),
    })
}

/// Receives rows a stage refused. Called by a target *before* it commits
/// the batch those rows came from, so that a crash between the two redoes
/// the batch rather than losing the rows. Returns an error when the run's
/// policy is to stop on bad rows.
pub trait RejectSink: Send + Sync {
    fn reject(&self, table: &TableSchema, rejects: Vec<Reject>) -> Result<()>;
}

/// Hands `rejects` of `table` to `sink` on a blocking thread (a sink
/// writes the state store) and waits for it: callers do this before the
/// commit that moves their checkpoint past those rows, so that a crash in
/// between redoes the batch rather than losing them.
pub async fn dead_letter(
    sink: &Arc<dyn RejectSink>,
    table: &Arc<TableSchema>,
    rejects: Vec<Reject>,
) -> Result<()> {
    if rejects.is_empty() {
        return Ok(());
    }
    let (sink, held) = (sink.clone(), table.clone());
    tokio::task::spawn_blocking(move || sink.reject(&held, rejects))
        .await
        .map_err(|e| Error::Task {
            context: format!("keeping the refused rows of table {}", table.name),
            source: e,
        })?
}

#[async_trait]
pub trait Target: Send + Sync {
    /// The column type this target creates for a column, as its DDL says it.
    fn column_type(&self, column: &Column) -> String;

    /// What becomes of `item` (of `table`, or of the schema) on this
    /// target: carried as it is, converted (the target's form), or not
    /// carried (why). Answers from the plan alone, reading nothing.
    fn assess(&self, table: Option<&TableSchema>, item: SchemaItem<'_>) -> Carry<String> {
        let _ = table;
        match item {
            SchemaItem::Column(column) => Carry::Carried(self.column_type(column)),
            other => Carry::NotCarried(format!("this target keeps no {}", other.kind())),
        }
    }

    /// The table as this target has it now, if it exists, its columns as
    /// model types: where a change stream's changes of shape start from.
    async fn describe(&self, table: &str) -> Result<Option<TableSchema>> {
        let _ = table;
        Ok(None)
    }

    /// Creates what the tables need before they are created (sequences
    /// their defaults draw from), from the schema's `objects`. Idempotent.
    async fn prepare_objects(&self, objects: &SchemaObjects) -> Result<()> {
        let _ = objects;
        Ok(())
    }

    /// Creates what reads the tables (views, materialized views) once
    /// every table of the run is finished: those of `objects` whose
    /// relations are among `tables` or created before them. Idempotent.
    async fn finish_objects(
        &self,
        objects: &SchemaObjects,
        tables: &[Arc<TableSchema>],
    ) -> Result<()> {
        let _ = (objects, tables);
        Ok(())
    }

    /// Where this target needs the names of indexes and constraints unique
    /// (the engine decides every name at plan time by these rules).
    fn name_rules(&self) -> NameRules {
        NameRules::PER_TABLE
    }

    /// Names in the target's schema held by objects other than the tables
    /// named (which a run creates, replaces or appends to): the plan avoids
    /// them. Reads the target; nothing is changed.
    async fn taken_names(&self, tables: &[String]) -> Result<Vec<TakenName>> {
        let _ = tables;
        Ok(Vec::new())
    }

    /// Fresh: creates the tables per `if_exists` and forgets this pipeline's
    /// checkpoints. Resume: makes partly written tables ready to continue at
    /// their checkpoints. Must be safe to repeat after a crash.
    async fn prepare(&self, tables: &[Arc<TableSchema>], start: Start) -> Result<()>;

    /// The checkpoints that are durable on the target for this pipeline.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;

    /// Writes the batch's changes and its checkpoint so that, after a crash,
    /// either both are there or neither is. Rows the target refuses go to
    /// `rejects` before that commit. Returns the number of rows written.
    /// Writes of different chunks may be called concurrently.
    async fn write(
        &self,
        batch: Batch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64>;

    /// Applies `batch` (see [`ChangeBatch`]: idempotent upserts and deletes
    /// by primary key, truncates, segment after segment) and `checkpoint`
    /// in one transaction, so that after a crash either both are there or
    /// neither is. Refused rows go to `rejects` before that commit. Changes
    /// of a table without a primary key: inserts are appended; updates and
    /// deletes are refused rows. Returns the changes applied. Calls do not
    /// overlap.
    async fn apply(
        &self,
        batch: ChangeBatch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let _ = (batch, checkpoint, rejects);
        Err(Error::Unsupported(
            "this target cannot apply changes (incremental and CDC modes)".to_string(),
        ))
    }

    /// Called once every chunk of a table is done: builds secondary indexes,
    /// publishes files. Idempotent.
    async fn finish_table(&self, table: &TableSchema) -> Result<()>;

    /// Moves the table's identity counters (sequences) past its largest
    /// key: at cut-over, when a change stream that inserted rows with their
    /// keys stops. Targets whose counters follow inserted keys by
    /// themselves (MySQL's AUTO_INCREMENT, SQLite's AUTOINCREMENT) need
    /// nothing. Idempotent.
    async fn advance_counters(&self, table: &TableSchema) -> Result<()> {
        let _ = table;
        Ok(())
    }

    /// Whether this target takes rows of `table` in the source's wire
    /// `format` as they are (`Batch::wire`): the same binary form for
    /// every column it writes.
    async fn takes_wire(&self, table: &TableSchema, format: &WireFormat) -> Result<bool> {
        let _ = (table, format);
        Ok(false)
    }

    /// The rows a batch for this target holds at most, given the
    /// pipeline's `batch_rows`: a target that gains nothing from large
    /// batches (a message per row) keeps memory down by asking for less.
    fn batch_rows(&self, asked: usize) -> usize {
        asked
    }

    /// Whether `apply` changes the rows in place, so that a later read sees
    /// them (`dmp verify --repair`); files append changes to a log instead.
    fn applies_in_place(&self) -> bool {
        true
    }

    /// Called once after every table of the run is finished: creates the
    /// foreign keys among `tables` (now that all rows are there, in any
    /// order). Idempotent.
    async fn finish_pipeline(&self, tables: &[Arc<TableSchema>]) -> Result<()> {
        let _ = tables;
        Ok(())
    }

    /// Two-way sync: the entries of this side's conflict log for sync
    /// `sync_id`, oldest first; none when the log was never made. Reads
    /// only; what a running sync logs meanwhile may be missing.
    async fn conflict_log(&self, sync_id: &str) -> Result<Vec<LoggedConflict>> {
        let _ = sync_id;
        Err(no_conflict_log())
    }

    /// Two-way sync: the row of `table` at `key` (JSON object text of its
    /// primary key's columns, as the conflict log holds it) as this side
    /// has it now, as JSON object text; `None` when there is none. A
    /// snapshot of one moment: nothing is locked.
    async fn read_row(&self, table: &str, key: &str) -> Result<Option<String>> {
        let _ = (table, key);
        Err(no_conflict_log())
    }

    /// Two-way sync: carries out `resolution` on this side in one
    /// transaction, durable when this returns: its write at the key
    /// (tagged as the sync's own, so that the change stream reading this
    /// side drops it) and the marking of every unresolved parked entry of
    /// the key up to `seen_up_to`. Returns the entries marked. Safe to
    /// repeat.
    async fn resolve_conflicts(&self, resolution: &Resolution<'_>) -> Result<u64> {
        let _ = resolution;
        Err(no_conflict_log())
    }
}

/// What a target without a conflict log answers `dmp conflicts`.
fn no_conflict_log() -> Error {
    Error::Unsupported(
        "this target keeps no conflict log (two-way sync runs between PostgreSQL and MariaDB)"
            .to_string(),
    )
}
