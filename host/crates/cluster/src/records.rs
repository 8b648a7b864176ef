//! What the cluster writes to JetStream, and under which names: the work
//! items on the work queue, each run's record, and the progress records
//! the workers keep and the submitter reads. JSON, so that an operator
//! can read them with the `nats` tool.

use serde::{Deserialize, Serialize};

use dmp_engine::SharedPlan;
use dmp_nats::key_token;

/// The work queue's stream: one subject per pipeline.
pub const WORK_STREAM: &str = "DMP_WORK";
/// The durable consumer every worker pulls from.
pub const WORKERS_CONSUMER: &str = "dmp-workers";
/// Runs, one key per pipeline: the run the cluster works on.
pub const RUNS_BUCKET: &str = "DMP_RUNS";
/// Chunks, finish steps and workers of each run.
pub const PROGRESS_BUCKET: &str = "DMP_PROGRESS";
/// Leases: one per live worker, one per one-of-a-kind job.
pub const LEASES_BUCKET: &str = "DMP_LEASES";

/// A pipeline's name as one subject or key token.
pub fn pipeline_token(pipeline: &str) -> String {
    key_token(pipeline)
}

/// The work queue subject of a pipeline.
pub fn work_subject(pipeline: &str) -> String {
    format!("dmp.work.{}", pipeline_token(pipeline))
}

/// One piece of work on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Work {
    /// Copy chunk `chunk` of the plan's table number `table`.
    Chunk {
        pipeline: String,
        /// The run's key (`RunRecord::key`).
        run: String,
        table: usize,
        chunk: u32,
    },
    /// Every chunk of the table is done: build its indexes.
    FinishTable {
        pipeline: String,
        run: String,
        table: usize,
    },
    /// Every table is finished: build the foreign keys and views.
    FinishPipeline { pipeline: String, run: String },
}

impl Work {
    pub fn pipeline(&self) -> &str {
        match self {
            Work::Chunk { pipeline, .. }
            | Work::FinishTable { pipeline, .. }
            | Work::FinishPipeline { pipeline, .. } => pipeline,
        }
    }

    pub fn run(&self) -> &str {
        match self {
            Work::Chunk { run, .. }
            | Work::FinishTable { run, .. }
            | Work::FinishPipeline { run, .. } => run,
        }
    }

    /// `Nats-Msg-Id`: the same work published twice (a submission
    /// repeated) is stored once. `retry` tells a failed chunk's later
    /// attempt from its first.
    pub fn message_id(&self, retry: u32) -> String {
        let base = match self {
            Work::Chunk {
                pipeline,
                run,
                table,
                chunk,
            } => format!("{}:{run}:{table}:{chunk}", pipeline_token(pipeline)),
            Work::FinishTable {
                pipeline,
                run,
                table,
            } => format!("{}:{run}:finish:{table}", pipeline_token(pipeline)),
            Work::FinishPipeline { pipeline, run } => {
                format!("{}:{run}:finish", pipeline_token(pipeline))
            }
        };
        if retry == 0 {
            base
        } else {
            format!("{base}:retry{retry}")
        }
    }

    /// Its progress record's key.
    pub fn record_key(&self) -> String {
        format!(
            "{}{}",
            run_prefix(self.pipeline(), self.run()),
            self.record_kind()
        )
    }

    /// Its progress record's key within its run's (`run_prefix`).
    pub fn record_kind(&self) -> String {
        match self {
            Work::Chunk { table, chunk, .. } => format!("chunk.{table}.{chunk}"),
            Work::FinishTable { table, .. } => format!("finish.{table}"),
            Work::FinishPipeline { .. } => "finish.all".to_string(),
        }
    }

    /// What it is, for messages.
    pub fn describe(&self, plan: Option<&SharedPlan>) -> String {
        let table_name = |t: &usize| {
            plan.and_then(|p| p.tables.get(*t)).map_or_else(
                || format!("number {t}"),
                |(s, _)| dmp_model::printable(&s.name).into_owned(),
            )
        };
        match self {
            Work::Chunk { table, chunk, .. } => {
                format!("table {} chunk {chunk}", table_name(table))
            }
            Work::FinishTable { table, .. } => format!("finishing table {}", table_name(table)),
            Work::FinishPipeline { .. } => "finishing the pipeline".to_string(),
        }
    }
}

/// The key prefix of every progress record of a run.
pub fn run_prefix(pipeline: &str, run: &str) -> String {
    format!("{}.{run}.", pipeline_token(pipeline))
}

/// The key of a pipeline's run record.
pub fn run_key(pipeline: &str) -> String {
    format!("run.{}", pipeline_token(pipeline))
}

/// What `dmp run --cluster` submitted: the pipeline file as written (each
/// worker reads its `${…}` references from its own environment, so no
/// secret travels on the bus) and, for a full load, the plan every worker
/// follows; a change stream has none (its holder runs it whole).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub pipeline: String,
    /// Names the run in the cluster (work ids, progress keys): the state
    /// store's run id and when the run was first submitted, so that two
    /// submitters' runs numbered alike never meet.
    pub key: String,
    /// The pipeline file's text.
    pub text: String,
    /// The pipeline file's path on the submitter's machine: the base of
    /// its relative paths (plugins, files), which workers must see alike.
    pub path: std::path::PathBuf,
    /// `schema_and_data`, `schema_only` or `data_only`.
    pub scope: String,
    /// A full load's plan; `None` for a change stream.
    pub plan: Option<SharedPlan>,
    /// Deliveries a chunk gets before it is a failed chunk.
    pub max_deliver: u32,
}

impl RunRecord {
    /// The pipeline, read from the record's file as its workers read it.
    pub fn pipeline_file(&self) -> dmp_contract::Result<dmp_config::Pipeline> {
        let mut pipeline =
            dmp_config::Pipeline::parse(&self.text, &self.path, &dmp_config::ProcessSecrets)?;
        pipeline.scope = match self.scope.as_str() {
            "schema_only" => dmp_config::Scope::SchemaOnly,
            "data_only" => dmp_config::Scope::DataOnly,
            _ => dmp_config::Scope::SchemaAndData,
        };
        Ok(pipeline)
    }
}

/// A cluster-wide run key: `<run>-<milliseconds now>`.
pub fn new_run_key(run: i64) -> String {
    format!("{run}-{}", chrono::Utc::now().timestamp_millis())
}

/// A change stream's progress record, written by its holder about once a
/// second.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRecord {
    pub worker: String,
    /// The holder's lease epoch.
    pub epoch: u64,
    /// Changes and transactions applied since this holder took it.
    pub changes: u64,
    pub transactions: u64,
    pub lag_ms: u64,
    /// Rows of the snapshot copied by this holder (`full+cdc`).
    pub copied: u64,
}

/// The key of a pipeline's stream record in the progress bucket.
pub fn stream_record_key(pipeline: &str) -> String {
    format!("stream.{}", pipeline_token(pipeline))
}

/// The lease of a pipeline's change stream.
pub fn stream_lease(pipeline: &str) -> String {
    format!("stream.{}", pipeline_token(pipeline))
}

/// Where a piece of work stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    Running,
    Done,
    /// Gave up after `max_deliver` deliveries.
    Failed,
}

/// A chunk's or finish step's progress record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkRecord {
    pub state: WorkState,
    /// The worker that holds (or held, or finished) it.
    pub worker: String,
    /// That worker's lease epoch: a worker restarted under the same name
    /// is another holder.
    pub epoch: u64,
    /// Deliveries so far.
    pub attempts: u64,
    /// Rows the chunk's copy read (done chunks).
    #[serde(default)]
    pub rows: u64,
    /// Why attempts failed, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// What one worker did in a run, per table of the plan: rows read and
/// refused, and the chunks it finished. Rewritten about once a second.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRecord {
    pub worker: String,
    pub rows: Vec<u64>,
    pub rejected: Vec<u64>,
    pub chunks_done: u64,
    /// `table:chunk` of the chunks it copies now.
    pub copying: Vec<String>,
}

/// The lease key of a live worker.
pub fn worker_lease(name: &str) -> String {
    format!("worker.{}", key_token(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_names_are_stable_and_distinct() {
        let chunk = Work::Chunk {
            pipeline: "orders sync".into(),
            run: "7".into(),
            table: 1,
            chunk: 3,
        };
        assert_eq!(chunk.message_id(0), "orders=20sync:7:1:3");
        assert_eq!(chunk.message_id(2), "orders=20sync:7:1:3:retry2");
        assert_eq!(chunk.record_key(), "orders=20sync.7.chunk.1.3");
        assert_eq!(work_subject("orders sync"), "dmp.work.orders=20sync");
        let finish = Work::FinishTable {
            pipeline: "orders sync".into(),
            run: "7".into(),
            table: 1,
        };
        assert_ne!(finish.message_id(0), chunk.message_id(0));
        let text = serde_json::to_string(&chunk).unwrap();
        assert_eq!(serde_json::from_str::<Work>(&text).unwrap(), chunk);
    }
}
