//! A run's progress records as read at one moment, and what they say:
//! rows per table, each table's phase, whether the run is finished, and
//! which failed work leaves nothing else to wait for.

use std::collections::{HashMap, HashSet};

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::records::{WorkRecord, WorkState, WorkerRecord};
use dmp_contract::Target;
use dmp_engine::{SharedPlan, TablePhase};
use dmp_model::Checkpoint;

/// Rows each table's checkpoints hold, and the chunks they hold done.
pub(crate) async fn committed(
    target: &dyn Target,
    plan: &SharedPlan,
) -> Result<(Vec<u64>, HashSet<(usize, u32)>)> {
    let held: HashMap<(String, u32), Checkpoint> = target
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| ((c.table.clone(), c.chunk), c))
        .collect();
    let mut rows = Vec::new();
    let mut done = HashSet::new();
    for (index, (table, chunks)) in plan.tables.iter().enumerate() {
        let mut sum = 0;
        for chunk in chunks {
            if let Some(c) = held.get(&(table.name.clone(), chunk.id)) {
                sum += c.rows;
                if c.done {
                    done.insert((index, chunk.id));
                }
            }
        }
        rows.push(sum);
    }
    Ok((rows, done))
}

/// The run's progress records as read at one moment.
pub(crate) struct RunView {
    pub(crate) work: HashMap<String, WorkRecord>,
    pub(crate) workers: Vec<WorkerRecord>,
}

impl RunView {
    pub(crate) async fn read(cluster: &Cluster, prefix: &str) -> Result<Self> {
        let mut work = HashMap::new();
        let mut workers = Vec::new();
        for (key, value) in cluster.records(prefix).await? {
            let kind = key.trim_start_matches(prefix);
            let what = || format!("progress record {key}");
            if kind.starts_with("worker.") {
                workers
                    .push(serde_json::from_slice(&value).map_err(|e| Error::refused(what(), e))?);
            } else {
                let record: WorkRecord =
                    serde_json::from_slice(&value).map_err(|e| Error::refused(what(), e))?;
                work.insert(kind.to_string(), record);
            }
        }
        Ok(RunView { work, workers })
    }

    pub(crate) fn state(&self, kind: &str) -> Option<WorkState> {
        self.work.get(kind).map(|r| r.state)
    }

    pub(crate) fn rows(&self, table: usize) -> u64 {
        self.workers.iter().filter_map(|w| w.rows.get(table)).sum()
    }

    pub(crate) fn rejected(&self, table: usize) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| w.rejected.get(table))
            .sum()
    }

    pub(crate) fn phase(&self, table: usize, plan: &SharedPlan) -> TablePhase {
        let chunks = &plan.tables[table].1;
        let failed = chunks
            .iter()
            .filter(|c| self.state(&format!("chunk.{table}.{}", c.id)) == Some(WorkState::Failed))
            .count();
        match self.state(&format!("finish.{table}")) {
            Some(WorkState::Done) => TablePhase::Done,
            Some(WorkState::Running) => TablePhase::Indexing,
            Some(WorkState::Failed) => TablePhase::Failed {
                reason: "its finish step failed".into(),
            },
            None if failed > 0 => TablePhase::Failed {
                reason: format!("{failed} chunk(s) failed"),
            },
            None if chunks
                .iter()
                .any(|c| self.work.contains_key(&format!("chunk.{table}.{}", c.id))) =>
            {
                TablePhase::Copying
            }
            None => TablePhase::Planned,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state("finish.all") == Some(WorkState::Done)
    }

    /// When failed work leaves nothing else to wait for: what failed.
    pub(crate) async fn failure(
        &self,
        plan: &SharedPlan,
        target: &dyn Target,
    ) -> Result<Option<String>> {
        let failed: Vec<(&String, &WorkRecord)> = self
            .work
            .iter()
            .filter(|(_, r)| r.state == WorkState::Failed)
            .collect();
        if failed.is_empty() {
            return Ok(None);
        }
        // Waits while any other work may still move.
        let (_, done) = committed(target, plan).await?;
        for (table, (_, chunks)) in plan.tables.iter().enumerate() {
            let mut all_done = true;
            for chunk in chunks {
                let state = self.state(&format!("chunk.{table}.{}", chunk.id));
                if state == Some(WorkState::Failed) {
                    all_done = false;
                    continue;
                }
                if !done.contains(&(table, chunk.id)) {
                    return Ok(None);
                }
            }
            if all_done
                && !matches!(
                    self.state(&format!("finish.{table}")),
                    Some(WorkState::Done | WorkState::Failed)
                )
            {
                return Ok(None);
            }
        }
        let mut said: Vec<String> = failed
            .iter()
            .map(|(kind, record)| {
                format!(
                    "{} after {} deliveries: {}",
                    describe(kind, plan),
                    record.attempts,
                    record
                        .errors
                        .last()
                        .map_or("no error recorded", String::as_str)
                )
            })
            .collect();
        said.sort();
        Ok(Some(format!(
            "run {}: {} piece(s) of work failed for good; the rest is done. {}. \
             Fix the cause and run `dmp run --cluster` again to retry them",
            plan.run,
            said.len(),
            said.join("; ")
        )))
    }
}

/// `chunk.T.C` / `finish.T` / `finish.all` in words.
pub(crate) fn describe(kind: &str, plan: &SharedPlan) -> String {
    let table = |t: &str| describe_table(t, Some(plan));
    let parts: Vec<&str> = kind.split('.').collect();
    match parts.as_slice() {
        ["chunk", t, c] => format!("table {} chunk {c}", table(t)),
        ["finish", "all"] => "the pipeline's finish step".to_string(),
        ["finish", t] => format!("table {}'s finish step", table(t)),
        _ => kind.to_string(),
    }
}

/// The plan's table number `table` by its name (the number when the plan
/// has no such table).
pub(crate) fn describe_table(table: &str, plan: Option<&SharedPlan>) -> String {
    table
        .parse::<usize>()
        .ok()
        .and_then(|t| plan?.tables.get(t))
        .map_or_else(
            || table.to_string(),
            |(s, _)| dmp_model::printable(&s.name).into_owned(),
        )
}
