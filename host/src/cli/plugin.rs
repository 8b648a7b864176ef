//! `dmp plugin test`: runs a plugin on sample rows, without a database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::value::RawValue;

use super::EXIT_OK;
use crate::error::{Error, Result};
use crate::model::json::{value_from_json, write_row};
use crate::model::{Row, TableSchema, Value};
use crate::transform::{Limits, PluginRuntime, WasmTransform};

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Create a plugin project that builds as it is.
    New(super::scaffold::NewArgs),
    /// Run a plugin on sample rows and print its output schema and what
    /// became of each row.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub(super) struct TestArgs {
    /// The plugin (`.wasm` component or module).
    plugin: PathBuf,
    /// The input table's schema, as in a `TABLE.schema.json` file.
    #[arg(long)]
    schema: PathBuf,
    /// Sample rows, one JSON object per line.
    #[arg(long)]
    rows: PathBuf,
    /// A plugin setting; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
}

pub(super) async fn plugin(command: PluginCommand) -> Result<u8> {
    match command {
        PluginCommand::New(args) => super::scaffold::new_plugin(&args),
        PluginCommand::Test(args) => tokio::task::spawn_blocking(move || test(&args))
            .await
            .map_err(|e| Error::Data(format!("plugin test task: {e}")))?,
    }
}

fn read_schema(path: &Path) -> Result<TableSchema> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "{}:{}: invalid schema: {e}",
            path.display(),
            e.line()
        ))
    })
}

fn read_rows(path: &Path, schema: &TableSchema) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let place = || format!("{}:{}", path.display(), n + 1);
        let map: HashMap<String, &RawValue> = serde_json::from_str(line)
            .map_err(|e| Error::Config(format!("{}: invalid JSON: {e}", place())))?;
        if let Some(extra) = map.keys().find(|k| schema.column_index(k).is_none()) {
            return Err(Error::Config(format!(
                "{}: unknown column `{extra}`",
                place()
            )));
        }
        let mut values = Vec::with_capacity(schema.columns.len());
        for column in &schema.columns {
            values.push(match map.get(&column.name) {
                Some(raw) => value_from_json(raw, &column.data_type).map_err(|e| {
                    Error::Config(format!("{}: column {}: {e}", place(), column.name))
                })?,
                None => Value::Null,
            });
        }
        rows.push(Row(values));
    }
    Ok(rows)
}

/// A row as one line of JSON, columns in schema order.
fn row_to_json(schema: &TableSchema, row: &Row) -> String {
    let mut text = String::new();
    write_row(&mut text, schema, row);
    text
}

fn test(args: &TestArgs) -> Result<u8> {
    let schema = Arc::new(read_schema(&args.schema)?);
    let rows = read_rows(&args.rows, &schema)?;
    let mut config = Vec::new();
    for pair in &args.config {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--config {pair}: expected KEY=VALUE")))?;
        config.push((k.to_string(), v.to_string()));
    }
    let cache =
        crate::config::default_plugin_cache().unwrap_or_else(|| PathBuf::from(".dmp/plugins"));
    let runtime = PluginRuntime::shared(&cache)?;
    let plugin = runtime.load(&args.plugin, crate::transform::LoadLimits::default())?;
    println!("{} ({} rows in)", plugin.place, rows.len());
    let transform = WasmTransform::open(plugin, config, Limits::default(), schema.clone())?;
    let output = transform.output_schema().clone();
    println!("output schema of table {}:", output.name);
    for c in &output.columns {
        println!(
            "  {} {}{}",
            c.name,
            c.data_type,
            if c.nullable { "" } else { " NOT NULL" }
        );
    }
    if !output.primary_key.is_empty() {
        println!("  primary key ({})", output.primary_key.join(", "));
    }
    let outcome = transform.try_rows(rows.clone()).map_err(Error::Data)?;
    for (index, input) in rows.iter().enumerate() {
        let emitted: Vec<&Row> = outcome
            .rows
            .iter()
            .filter(|(o, _)| *o == index)
            .map(|(_, r)| r)
            .collect();
        let rejected = outcome.rejects.iter().find(|(r, _)| *r == index);
        print!("row {}: {}", index + 1, row_to_json(&schema, input));
        match (rejected, emitted.len()) {
            (Some((_, reason)), _) => println!("\n  rejected: {reason}"),
            (None, 0) => println!("\n  dropped"),
            (None, 1) => println!("\n  kept: {}", row_to_json(&output, emitted[0])),
            (None, n) => {
                println!("\n  {n} rows:");
                for row in emitted {
                    println!("    {}", row_to_json(&output, row));
                }
            }
        }
    }
    Ok(EXIT_OK)
}
