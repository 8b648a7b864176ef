//! `dmp plan`: what a run would do, computed without writing anything.

use std::sync::Arc;

use serde::Serialize;

use super::setup::Transforms;
use crate::error::{Error, Result};
use dmp_config::Pipeline;
use dmp_contract::{Source, Target};
use dmp_model::{Assessed, SchemaObjects, TableSchema};

#[derive(Debug, Serialize)]
pub struct ColumnPlan {
    pub name: String,
    /// The model type the source column maps to.
    pub model_type: String,
    /// The column type the target would create.
    pub target_type: String,
    pub nullable: bool,
}

#[derive(Debug, Serialize)]
pub struct TablePlan {
    pub name: String,
    pub estimated_rows: u64,
    pub chunks: usize,
    /// Plugins applied to the table, in order (`name@sha256-prefix`).
    pub transforms: Vec<String>,
    /// The source's columns, when transforms change them.
    pub source_columns: Vec<ColumnPlan>,
    /// The columns the target gets (after transforms).
    pub primary_key: Vec<String>,
    pub columns: Vec<ColumnPlan>,
    pub indexes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanReport {
    pub pipeline: String,
    pub source: String,
    pub target: String,
    pub tables: Vec<TablePlan>,
    /// Every object of the selected source schema and what becomes of it.
    pub assessment: Vec<Assessed>,
}

/// Discovers the selected tables and reports, for each, the rows and chunks
/// a run would copy and the target type of every column.
pub async fn plan(
    pipeline: &Pipeline,
    source: &dyn Source,
    target: &dyn Target,
) -> Result<PlanReport> {
    let (schemas, objects) = discover_for_target(pipeline, source, target, true).await?;
    let mut planned = Vec::new();
    for schema in schemas {
        let chunks = source.plan_snapshot(&schema, pipeline.chunk_rows).await?;
        planned.push((Arc::new(schema), chunks));
    }
    let inputs: Vec<Arc<TableSchema>> = planned.iter().map(|(t, _)| t.clone()).collect();
    let transforms = Transforms::open(pipeline, &inputs).await?;
    let mut tables = Vec::new();
    for (input, chunks) in &planned {
        let chain = transforms.chain(&input.name);
        let schema = chain.output_schema(input);
        let describe = |c: &dmp_model::Column| ColumnPlan {
            name: c.name.clone(),
            model_type: c.data_type.to_string(),
            target_type: target.column_type(c),
            nullable: c.nullable,
        };
        tables.push(TablePlan {
            transforms: chain.plugins(),
            source_columns: if chain.is_empty() {
                Vec::new()
            } else {
                input.columns.iter().map(describe).collect()
            },
            name: schema.qualified_name(),
            estimated_rows: chunks.iter().map(|c| c.estimated_rows).sum(),
            chunks: chunks.len(),
            primary_key: schema.primary_key.clone(),
            columns: schema.columns.iter().map(describe).collect(),
            indexes: schema
                .indexes
                .iter()
                .map(|i| {
                    format!(
                        "{}{} ({}){}",
                        if i.unique { "unique " } else { "" },
                        i.name,
                        i.columns.join(", "),
                        i.source_name
                            .as_ref()
                            .map_or_else(String::new, |s| format!(" [source name {s}]"))
                    )
                })
                .collect(),
        });
    }
    let outputs = transforms.outputs(&inputs);
    Ok(PlanReport {
        pipeline: pipeline.name.clone(),
        source: pipeline.source.to_string(),
        target: pipeline.target.to_string(),
        tables,
        assessment: super::assess::assess(&outputs, &objects, target),
    })
}

/// The selected tables' schemas, their indexes and constraints named for
/// `target` (see `naming`), and the schema's other objects that go with
/// them. `dmp plan` (`lenient`) shows names without the target's own when
/// the target cannot be read; a run needs them.
pub(crate) async fn discover_for_target(
    pipeline: &Pipeline,
    source: &dyn Source,
    target: &dyn Target,
    lenient: bool,
) -> Result<(Vec<TableSchema>, SchemaObjects)> {
    let mut schemas = discover(pipeline, source).await?;
    let objects = source.objects(&pipeline.selection, &schemas).await?;
    let names: Vec<String> = schemas.iter().map(|s| s.name.clone()).collect();
    let taken = match target.taken_names(&names).await {
        Ok(taken) => taken,
        Err(e) if lenient => {
            tracing::warn!(error = %e, "cannot read the target's names: index and constraint names are planned without them");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    super::naming::assign(&mut schemas, &target.name_rules(), &taken);
    Ok((schemas, objects))
}

/// The selected tables' schemas; a table named literally that the source
/// does not have is an error naming where it was written.
pub async fn discover(pipeline: &Pipeline, source: &dyn Source) -> Result<Vec<TableSchema>> {
    let schemas = source.discover(&pipeline.selection).await?;
    let found: Vec<String> = schemas.iter().map(|s| s.name.clone()).collect();
    let missing = pipeline.selection.missing(&found);
    if let Some(name) = missing.first() {
        let place = pipeline
            .table_places
            .get(*name)
            .map_or("tables.include", String::as_str);
        return Err(Error::Config(format!(
            "{place}: table `{name}` does not exist in the source {}",
            pipeline.source
        )));
    }
    if schemas.is_empty() {
        tracing::warn!(source = %pipeline.source, "no table matches the selection");
    }
    Ok(schemas)
}
