//! `dmp verify`: proves that a pipeline's target holds what its source
//! holds, table by table, and names every row that differs.
//!
//! Both sides checksum their rows in buckets of the key digest (see
//! `connectors::checksum`): inside the database where it can spell every
//! column canonically in SQL (PostgreSQL, MySQL/MariaDB), otherwise by
//! reading the rows and hashing them here (SQLite, files, float and JSON
//! columns, and a source whose rows pass through the pipeline's
//! transforms: the transformed rows are what the target should hold).
//! Only differing buckets are split further and fetched.

// The shared error: this crate meets no driver's.
use dmp_contract::error;

mod repair;
mod side;
mod table;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tracing::{Instrument, info, info_span};

use crate::error::{Error, Result};
use dmp_config::Pipeline;
use dmp_contract::{CompareColumn, Connectors, Source, SourceOptions, Start, TargetOptions};
use dmp_engine::Transforms;
use dmp_model::canonical::length_prefixed;
use dmp_model::{Column, TableSchema, TableSelection};
use dmp_transform::TransformChain;

pub use repair::RepairSummary;
pub use table::{ColumnDifference, DifferenceKind, Findings, RowDifference};

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only these of the pipeline's tables (names or globs); all if empty.
    pub tables: Vec<String>,
    /// Compare about this percentage of each table's rows (a sample of
    /// the key space); all when `None`.
    pub sample_percent: Option<f64>,
    /// Rewrite the differing rows in the target, then verify again.
    pub repair: bool,
    /// Differences listed per table (all are counted).
    pub max_listed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Equal,
    Different,
    /// The target has no such table.
    MissingInTarget,
}

/// Where a side's checksums were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hashing {
    /// By the database, in SQL.
    Database,
    /// By dmp, reading the rows.
    Dmp,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub target_table: String,
    pub status: TableStatus,
    pub key: Vec<String>,
    /// Columns the target has and the source (after transforms) has not,
    /// which are not compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
    /// Columns of the source (after its transforms) that the target lacks:
    /// their values are lost, so the table differs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_columns: Vec<String>,
    pub source_hashing: Option<Hashing>,
    pub target_hashing: Option<Hashing>,
    #[serde(flatten)]
    pub findings: Findings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairSummary>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub pipeline: String,
    pub equal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_percent: Option<f64>,
    pub tables: Vec<TableReport>,
    pub elapsed_ms: u64,
}

/// Verifies `pipeline`'s tables, opening its endpoints through
/// `connectors` (the target is also read back, and written by a repair).
pub async fn verify(
    connectors: &dyn Connectors,
    pipeline: &Pipeline,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let readers = SourceOptions {
        readers: pipeline.parallelism.max(1),
        limits: pipeline.read_limits(),
    };
    let source = connectors.open_source(&pipeline.source, readers.clone())?;
    // The target is read back through its own connector's reader.
    let target_reader = connectors
        .open_source(&pipeline.target, readers)
        .map_err(|e| {
            Error::Unsupported(format!(
                "verify reads the target {} back and cannot: {e}",
                pipeline.target
            ))
        })?;
    let mut schemas = dmp_engine::discover(pipeline, source.as_ref()).await?;
    if !options.tables.is_empty() {
        let only = TableSelection::new(&options.tables, &[]).map_err(Error::Config)?;
        if let Some(name) = only
            .missing(&schemas.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            .first()
        {
            return Err(Error::Config(format!(
                "--tables: table `{name}` is not one of the pipeline's tables"
            )));
        }
        schemas.retain(|s| only.matches(&s.name));
    }
    let schemas: Vec<Arc<TableSchema>> = schemas.into_iter().map(Arc::new).collect();
    let transforms = Transforms::open(pipeline, &schemas).await?;
    let all = TableSelection::new(&["*".to_string()], &[]).map_err(Error::Config)?;
    let target_tables = target_reader.discover(&all).await?;
    let mut tables = Vec::with_capacity(schemas.len());
    for schema in schemas {
        let chain = Some(transforms.chain(&schema.name)).filter(|c| !c.is_empty());
        let span = info_span!("verify", table = %schema.name);
        let report = async {
            let output = chain
                .as_ref()
                .map_or_else(|| schema.clone(), |c| c.output_schema(&schema));
            let found = target_tables
                .iter()
                .find(|t| t.name == output.name)
                .or_else(|| {
                    target_tables
                        .iter()
                        .find(|t| t.name.eq_ignore_ascii_case(&output.name))
                });
            let Some(target_schema) = found else {
                return Ok(missing_table(&schema, &output));
            };
            let pair = TablePair::new(
                pipeline,
                &source,
                &target_reader,
                schema.clone(),
                output,
                Arc::new(target_schema.clone()),
                chain,
            );
            pair.verify(connectors, pipeline, options).await
        }
        .instrument(span)
        .await?;
        info!(
            table = report.table,
            status = ?report.status,
            differences = report.findings.total(),
            elapsed_ms = report.elapsed_ms,
            "table verified"
        );
        tables.push(report);
    }
    Ok(VerifyReport {
        pipeline: pipeline.name.clone(),
        equal: tables.iter().all(|t| t.status == TableStatus::Equal),
        sample_percent: options.sample_percent,
        tables,
        elapsed_ms: millis(started),
    })
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn missing_table(schema: &TableSchema, output: &TableSchema) -> TableReport {
    TableReport {
        table: schema.name.clone(),
        target_table: output.name.clone(),
        status: TableStatus::MissingInTarget,
        key: output.primary_key.clone(),
        not_compared: Vec::new(),
        missing_columns: Vec::new(),
        source_hashing: None,
        target_hashing: None,
        findings: Findings::default(),
        repair: None,
        elapsed_ms: 0,
    }
}

/// A source table and its target table, columns matched by name.
struct TablePair {
    schema: Arc<TableSchema>,
    output: Arc<TableSchema>,
    target_schema: Arc<TableSchema>,
    source: side::Side,
    target: side::Side,
    /// Compared columns' source names, key first.
    names: Vec<String>,
    /// Compared columns' target names, key first.
    target_names: Vec<String>,
    key: Vec<String>,
    not_compared: Vec<String>,
    missing_columns: Vec<String>,
}

impl TablePair {
    fn new(
        pipeline: &Pipeline,
        source: &Arc<dyn Source>,
        target_reader: &Arc<dyn Source>,
        schema: Arc<TableSchema>,
        output: Arc<TableSchema>,
        target_schema: Arc<TableSchema>,
        chain: Option<TransformChain>,
    ) -> Self {
        let target_index = |name: &str| {
            target_schema.column_index(name).or_else(|| {
                target_schema
                    .columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
            })
        };
        // (output position, target position), key columns first.
        let mut matched: Vec<(usize, usize)> = Vec::new();
        let mut not_compared = Vec::new();
        let mut missing_columns = Vec::new();
        let key_positions: Vec<usize> = output
            .primary_key
            .iter()
            .filter_map(|k| output.column_index(k))
            .collect();
        let order = key_positions
            .iter()
            .copied()
            .chain((0..output.columns.len()).filter(|i| !key_positions.contains(i)));
        for i in order {
            match target_index(&output.columns[i].name) {
                Some(j) => matched.push((i, j)),
                None => missing_columns.push(output.columns[i].name.clone()),
            }
        }
        for c in &target_schema.columns {
            if !matched
                .iter()
                .any(|&(_, j)| target_schema.columns[j].name == c.name)
            {
                not_compared.push(c.name.clone());
            }
        }
        // A key column missing on the target leaves no usable key: then
        // the rows are compared whole.
        let keyed = key_positions
            .iter()
            .all(|k| matched.iter().any(|&(i, _)| i == *k));
        let key_columns = if keyed && !key_positions.is_empty() {
            key_positions.len()
        } else {
            matched.len()
        };
        let reference: Vec<_> = matched
            .iter()
            .map(|&(i, _)| output.columns[i].data_type)
            .collect();
        let names: Vec<String> = matched
            .iter()
            .map(|&(i, _)| output.columns[i].name.clone())
            .collect();
        let target_names: Vec<String> = matched
            .iter()
            .map(|&(_, j)| target_schema.columns[j].name.clone())
            .collect();
        let side = |role,
                    source: &Arc<dyn Source>,
                    schema: &Arc<TableSchema>,
                    columns: Vec<CompareColumn>,
                    positions,
                    chain| {
            side::Side::new(
                role,
                source.clone(),
                schema.clone(),
                columns,
                key_columns,
                reference.clone(),
                positions,
                chain,
                pipeline.batch_rows,
                pipeline.chunk_rows,
            )
        };
        let source_side = side(
            "source",
            source,
            &schema,
            matched
                .iter()
                .map(|&(i, _)| compare_column(&output.columns[i], &output.columns[i]))
                .collect(),
            matched.iter().map(|&(i, _)| i).collect(),
            chain,
        );
        let target_side = side(
            "target",
            target_reader,
            &target_schema,
            matched
                .iter()
                .map(|&(i, j)| compare_column(&target_schema.columns[j], &output.columns[i]))
                .collect(),
            matched.iter().map(|&(_, j)| j).collect(),
            None,
        );
        TablePair {
            key: names[..key_columns].to_vec(),
            schema,
            output,
            target_schema,
            source: source_side,
            target: target_side,
            names,
            target_names,
            not_compared,
            missing_columns,
        }
    }

    /// The schema repaired rows are written in: the compared columns under
    /// the target's names, with the types a run writes.
    fn write_schema(&self) -> TableSchema {
        let columns = self
            .names
            .iter()
            .zip(&self.target_names)
            .filter_map(|(source, target)| {
                let c = &self.output.columns[self.output.column_index(source)?];
                Some(Column {
                    name: target.clone(),
                    ..c.clone()
                })
            })
            .collect();
        TableSchema {
            name: self.target_schema.name.clone(),
            columns,
            primary_key: self.target_names[..self.key.len()].to_vec(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..(*self.output).clone()
        }
    }

    async fn verify(
        &self,
        connectors: &dyn Connectors,
        pipeline: &Pipeline,
        options: &VerifyOptions,
    ) -> Result<TableReport> {
        let sample = options.sample_percent;
        let started = Instant::now();
        let max_listed = options.max_listed;
        let mut repair_summary = None;
        let findings = if options.repair {
            let target = connectors.open_target(
                &pipeline.target,
                TargetOptions {
                    pipeline: pipeline.name.clone(),
                    if_exists: pipeline.if_exists,
                    writers: 1,
                    data_only: true,
                    source_database: None,
                    origin: None,
                    conflicts: None,
                },
            )?;
            if !target.applies_in_place() {
                return Err(Error::Unsupported(format!(
                    "--repair: the target {} keeps changes in a change log beside its files, \
                     which a read does not see; run the pipeline again with --restart instead",
                    pipeline.target
                )));
            }
            let write_schema = Arc::new(self.write_schema());
            if self.output.primary_key.is_empty() {
                return Err(Error::Unsupported(format!(
                    "table {}: --repair needs a primary key to rewrite rows by",
                    self.schema.name
                )));
            }
            target
                .prepare(std::slice::from_ref(&write_schema), Start::Keep)
                .await?;
            let repairer = repair::Repairer::new(target, write_schema);
            let found = table::compare(
                &self.source,
                &self.target,
                &self.names,
                sample,
                max_listed,
                |diffs| repairer.fix(diffs),
            )
            .await?;
            let summary = repairer.summary();
            info!(
                found = found.total(),
                written = summary.written,
                deleted = summary.deleted,
                refused = summary.refused.len(),
                "repaired; verifying again"
            );
            repair_summary = Some(summary);
            // A fresh reader: the first one may hold a snapshot from before
            // the repair (MySQL keeps one per reader).
            let fresh = self.target.reading_from(connectors.open_source(
                &pipeline.target,
                SourceOptions {
                    readers: pipeline.parallelism.max(1),
                    limits: pipeline.read_limits(),
                },
            )?);
            table::compare(
                &self.source,
                &fresh,
                &self.names,
                sample,
                max_listed,
                |_| async { Ok(()) },
            )
            .await?
        } else {
            table::compare(
                &self.source,
                &self.target,
                &self.names,
                sample,
                max_listed,
                |_| async { Ok(()) },
            )
            .await?
        };
        let hashing = |side: &side::Side| {
            Some(if side.in_database() {
                Hashing::Database
            } else {
                Hashing::Dmp
            })
        };
        Ok(TableReport {
            table: self.schema.name.clone(),
            target_table: self.target_schema.name.clone(),
            status: if findings.total() == 0 && self.missing_columns.is_empty() {
                TableStatus::Equal
            } else {
                TableStatus::Different
            },
            key: self.key.clone(),
            not_compared: self.not_compared.clone(),
            missing_columns: self.missing_columns.clone(),
            source_hashing: hashing(&self.source),
            target_hashing: hashing(&self.target),
            findings,
            repair: repair_summary,
            elapsed_ms: millis(started),
        })
    }
}

/// Column `c` of one side, framed by `reference`, the source's column.
fn compare_column(c: &Column, reference: &Column) -> CompareColumn {
    CompareColumn {
        name: c.name.clone(),
        data_type: c.data_type,
        prefixed: length_prefixed(&reference.data_type),
    }
}
