//! What a SQL target does to each table before a run, decided in one place
//! from the run's start, the pipeline's settings and what the target holds;
//! each target only carries the decision out in its own SQL. (Three
//! targets used to decide it each their own way, and drifted.)

use std::collections::HashMap;

use super::TargetOptions;
use super::target::{IfExists, Start};
use crate::error::Error;
use dmp_model::TableSchema;

/// What the target holds of one table before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFacts {
    pub exists: bool,
    /// The table has a primary key: a resumed copy continues after the
    /// last key written; without one it can only continue at a row count.
    pub has_key: bool,
    pub progress: Progress,
}

/// The pipeline's checkpoints of the table on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    None,
    /// Some chunks are checkpointed, not all done.
    Partial,
    Done,
}

/// The pipeline's checkpoints on the target, per table: built from rows of
/// `(table, whether any of its chunks is done)`, one per checkpointed table.
#[derive(Debug, Default)]
pub struct Checkpointed(HashMap<String, Progress>);

impl FromIterator<(String, bool)> for Checkpointed {
    fn from_iter<I: IntoIterator<Item = (String, bool)>>(rows: I) -> Self {
        let progress = |done| {
            if done {
                Progress::Done
            } else {
                Progress::Partial
            }
        };
        Checkpointed(
            rows.into_iter()
                .map(|(t, done)| (t, progress(done)))
                .collect(),
        )
    }
}

/// The decision for `table` of a target with `options`; `exists`: the
/// target has it.
pub fn decide(
    start: Start,
    table: &TableSchema,
    exists: bool,
    checkpointed: &Checkpointed,
    options: &TargetOptions,
) -> Result<TablePrep, PrepRefusal> {
    let facts = TableFacts {
        exists,
        has_key: !table.primary_key.is_empty(),
        progress: checkpointed
            .0
            .get(&table.name)
            .copied()
            .unwrap_or(Progress::None),
    };
    table_prep(start, facts, options.if_exists, options.data_only)
}

/// What to do to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablePrep {
    /// Nothing: it stays as it is.
    Leave,
    /// Create it. `key_now`: with its primary key from the first row
    /// (incremental and change runs upsert), else the key is built after
    /// the load.
    Create { key_now: bool },
    /// Delete its rows.
    Empty,
    /// Drop it and create it again (key after the load).
    Replace,
    /// A table without a primary key, partly copied: empty it and forget
    /// its checkpoints, since a new snapshot cannot continue the old one's
    /// row count. It is copied again from the start.
    Restart,
}

/// Why a table stops the run before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepRefusal {
    /// `--data-only` creates no table, and this one is missing.
    Missing,
    /// `if_exists = "fail"`, and this one exists.
    Exists,
}

impl PrepRefusal {
    /// The refusal as a configuration error: `table` as the target names
    /// it, `place` the target.
    pub fn error(self, table: &str, place: &str) -> Error {
        Error::Config(match self {
            PrepRefusal::Missing => format!(
                "target table {table} does not exist in {place} (--data-only creates no table)"
            ),
            PrepRefusal::Exists => {
                format!("target table {table} already exists in {place} (if_exists = \"fail\")")
            }
        })
    }
}

/// The decision for one table.
pub fn table_prep(
    start: Start,
    facts: TableFacts,
    if_exists: IfExists,
    data_only: bool,
) -> Result<TablePrep, PrepRefusal> {
    if !facts.exists {
        return match (data_only, start) {
            (true, _) => Err(PrepRefusal::Missing),
            (false, Start::Keep) => Ok(TablePrep::Create { key_now: true }),
            (false, Start::Resume | Start::Fresh) => Ok(TablePrep::Create { key_now: false }),
        };
    }
    Ok(match start {
        // Incremental and change runs add to what the target has.
        Start::Keep => TablePrep::Leave,
        Start::Resume if !facts.has_key && facts.progress == Progress::Partial => {
            TablePrep::Restart
        }
        Start::Resume => TablePrep::Leave,
        Start::Fresh => match (if_exists, data_only) {
            (IfExists::Fail, false) => return Err(PrepRefusal::Exists),
            (IfExists::Fail | IfExists::Append, _) => TablePrep::Leave,
            (IfExists::Truncate, _) | (IfExists::Replace, true) => TablePrep::Empty,
            (IfExists::Replace, false) => TablePrep::Replace,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(exists: bool, has_key: bool, progress: Progress) -> TableFacts {
        TableFacts {
            exists,
            has_key,
            progress,
        }
    }

    #[test]
    fn missing_tables_are_created_unless_data_only() {
        let missing = facts(false, true, Progress::None);
        for start in [Start::Fresh, Start::Resume, Start::Keep] {
            let prep = table_prep(start, missing, IfExists::Replace, true);
            assert_eq!(prep, Err(PrepRefusal::Missing), "{start:?}");
        }
        let create = |start| table_prep(start, missing, IfExists::Fail, false);
        assert_eq!(create(Start::Keep), Ok(TablePrep::Create { key_now: true }));
        assert_eq!(
            create(Start::Resume),
            Ok(TablePrep::Create { key_now: false })
        );
        assert_eq!(
            create(Start::Fresh),
            Ok(TablePrep::Create { key_now: false })
        );
    }

    #[test]
    fn a_fresh_run_does_what_if_exists_says() {
        let there = facts(true, true, Progress::Done);
        let fresh = |if_exists, data_only| table_prep(Start::Fresh, there, if_exists, data_only);
        assert_eq!(fresh(IfExists::Fail, false), Err(PrepRefusal::Exists));
        assert_eq!(fresh(IfExists::Truncate, false), Ok(TablePrep::Empty));
        assert_eq!(fresh(IfExists::Append, false), Ok(TablePrep::Leave));
        assert_eq!(fresh(IfExists::Replace, false), Ok(TablePrep::Replace));
        // Data only: never dropped, never refused for existing.
        assert_eq!(fresh(IfExists::Fail, true), Ok(TablePrep::Leave));
        assert_eq!(fresh(IfExists::Truncate, true), Ok(TablePrep::Empty));
        assert_eq!(fresh(IfExists::Append, true), Ok(TablePrep::Leave));
        assert_eq!(fresh(IfExists::Replace, true), Ok(TablePrep::Empty));
    }

    #[test]
    fn only_a_partly_copied_table_without_key_restarts() {
        let resume = |has_key, progress| {
            table_prep(
                Start::Resume,
                facts(true, has_key, progress),
                IfExists::Append,
                false,
            )
        };
        assert_eq!(resume(false, Progress::Partial), Ok(TablePrep::Restart));
        // Rows it had before the run, and a table copied whole, stay.
        assert_eq!(resume(false, Progress::None), Ok(TablePrep::Leave));
        assert_eq!(resume(false, Progress::Done), Ok(TablePrep::Leave));
        assert_eq!(resume(true, Progress::Partial), Ok(TablePrep::Leave));
        let keep = table_prep(
            Start::Keep,
            facts(true, false, Progress::Partial),
            IfExists::Replace,
            false,
        );
        assert_eq!(keep, Ok(TablePrep::Leave));
    }
}
