//! `dmp plan PIPELINE`

use std::path::Path;

use super::open_pipeline;
use crate::config::Pipeline;
use crate::engine;
use crate::error::{Result, ResultExt};
use crate::model::{Assessed, Status, printable};

pub(super) async fn plan(path: &Path, json: bool) -> Result<()> {
    let pipeline = Pipeline::load(path)?;
    let (source, target) = open_pipeline(&pipeline)?;
    let report = engine::plan(&pipeline, &*source, &*target).await?;
    if json {
        let text =
            serde_json::to_string_pretty(&report).context(|| "encoding the plan".to_string())?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "pipeline {}: {} → {}",
        printable(&report.pipeline),
        printable(&report.source),
        printable(&report.target)
    );
    println!(
        "mode full, batch {} rows, chunk {} rows, parallelism {}",
        pipeline.batch_rows, pipeline.chunk_rows, pipeline.parallelism
    );
    for table in &report.tables {
        println!();
        println!(
            "table {}  ~{} rows in {} chunk(s)  primary key ({})",
            printable(&table.name),
            table.estimated_rows,
            table.chunks,
            printable(&table.primary_key.join(", "))
        );
        if !table.transforms.is_empty() {
            println!("  transforms: {}", printable(&table.transforms.join(" → ")));
            let source: Vec<String> = table
                .source_columns
                .iter()
                .map(|c| format!("{} {}", printable(&c.name), c.model_type))
                .collect();
            println!("  source columns: {}", source.join(", "));
            println!("  after transforms:");
        }
        let names: Vec<_> = table.columns.iter().map(|c| printable(&c.name)).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (c, name) in table.columns.iter().zip(&names) {
            println!(
                "  {name:width$}  {:16} → {}{}",
                c.model_type,
                printable(&c.target_type),
                if c.nullable { "" } else { " NOT NULL" }
            );
        }
        for index in &table.indexes {
            println!("  index {}", printable(index));
        }
    }
    if report.tables.is_empty() {
        println!("no table matches the selection");
    }
    print_assessment(&report.assessment);
    Ok(())
}

/// Every object with what becomes of it, the ones left behind last (so
/// they stay on screen), and the counts.
fn print_assessment(assessment: &[Assessed]) {
    if assessment.is_empty() {
        return;
    }
    println!();
    println!("schema objects:");
    for status in [Status::Carried, Status::Converted, Status::NotCarried] {
        for a in assessment.iter().filter(|a| a.status == status) {
            let name = match &a.table {
                Some(table) if *table != a.name => format!("{table}.{}", a.name),
                _ => a.name.clone(),
            };
            let detail = if a.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", a.detail)
            };
            println!(
                "  {:11}  {:17}  {}",
                status.as_str(),
                a.kind.as_str(),
                printable(&format!("{name}{detail}"))
            );
        }
    }
    let count = |s: Status| assessment.iter().filter(|a| a.status == s).count();
    println!(
        "{} carried, {} converted, {} not carried",
        count(Status::Carried),
        count(Status::Converted),
        count(Status::NotCarried)
    );
}
