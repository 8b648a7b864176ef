//! `dmp verify PIPELINE`: compares source and target table by table and
//! names the rows that differ; exit 0 when equal, 1 when not.

use std::path::PathBuf;

use clap::Args;

use super::{EXIT_DATA, EXIT_OK};
use crate::config::Pipeline;
use crate::engine::Shutdown;
use crate::error::{Error, Result};
use crate::verify::{
    DifferenceKind, TableReport, TableStatus, VerifyOptions, VerifyReport, verify,
};

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    #[command(flatten)]
    options: VerifyFlags,
}

/// The options `dmp verify` and `dmp run --verify` share.
#[derive(Debug, Args, Clone)]
pub(super) struct VerifyFlags {
    /// Only these tables (names or globs, comma-separated or repeated).
    #[arg(long = "tables", value_name = "TABLE", value_delimiter = ',')]
    tables: Vec<String>,
    /// Compare about PCT percent of each table's rows, a quick check.
    #[arg(long, value_name = "PCT", value_parser = percent)]
    sample: Option<f64>,
    /// Rewrite the rows that differ in the target, then verify again.
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Differences listed per table (all are counted).
    #[arg(long, value_name = "N", default_value_t = 20)]
    max_listed: usize,
}

fn percent(text: &str) -> std::result::Result<f64, String> {
    let pct: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if pct > 0.0 && pct <= 100.0 {
        Ok(pct)
    } else {
        Err(format!("{text}: give a percentage above 0 and at most 100"))
    }
}

impl VerifyFlags {
    /// Every table, no repair (`dmp run --verify`).
    pub(super) fn all(json: bool) -> Self {
        VerifyFlags {
            tables: Vec::new(),
            sample: None,
            repair: false,
            json,
            max_listed: 20,
        }
    }

    fn options(&self) -> VerifyOptions {
        VerifyOptions {
            tables: self.tables.clone(),
            sample_percent: self.sample,
            repair: self.repair,
            max_listed: self.max_listed,
        }
    }
}

pub(super) async fn verify_command(args: VerifyArgs) -> Result<u8> {
    let pipeline = Pipeline::load(&args.pipeline)?;
    verify_pipeline(&pipeline, &args.options).await
}

/// Verifies, prints the report, and gives the exit code. Ctrl-C stops at
/// once: verifying writes nothing but repairs, each of which is one
/// transaction.
pub(super) async fn verify_pipeline(pipeline: &Pipeline, flags: &VerifyFlags) -> Result<u8> {
    let shutdown = Shutdown::new();
    let signals = super::signals::stop_on_signals(shutdown.clone());
    let options = flags.options();
    let outcome = tokio::select! {
        report = verify(&crate::connectors::REGISTRY, pipeline, &options) => report,
        () = shutdown.wait() => Err(Error::Interrupted),
    };
    signals.abort();
    let report = outcome?;
    if flags.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => return Err(Error::Data(format!("writing the report: {e}"))),
        }
    } else {
        print_report(&report);
    }
    Ok(if report.equal { EXIT_OK } else { EXIT_DATA })
}

fn print_report(report: &VerifyReport) {
    let sample = report
        .sample_percent
        .map(|p| format!(" (sample of {p}% of the key space)"))
        .unwrap_or_default();
    println!(
        "verify {}{sample}",
        crate::model::printable(&report.pipeline)
    );
    for table in &report.tables {
        print_table(table);
    }
    let different = report
        .tables
        .iter()
        .filter(|t| t.status != TableStatus::Equal)
        .count();
    if report.equal {
        println!(
            "all {} tables equal ({:.1} s)",
            report.tables.len(),
            report.elapsed_ms as f64 / 1000.0
        );
    } else {
        println!(
            "{different} of {} tables differ ({:.1} s)",
            report.tables.len(),
            report.elapsed_ms as f64 / 1000.0
        );
    }
}

fn print_table(t: &TableReport) {
    let f = &t.findings;
    let name = if t.table == t.target_table {
        crate::model::printable(&t.table).into_owned()
    } else {
        crate::model::printable(&format!("{} → {}", t.table, t.target_table)).into_owned()
    };
    match t.status {
        TableStatus::MissingInTarget => {
            println!("  {name}: missing in the target");
            return;
        }
        TableStatus::Equal => println!(
            "  {name}: equal, {} rows ({:.1} s)",
            f.source_rows,
            t.elapsed_ms as f64 / 1000.0
        ),
        TableStatus::Different if f.total() == 0 => println!(
            "  {name}: differs: {} column(s) missing in target ({})",
            t.missing_columns.len(),
            t.missing_columns.join(", ")
        ),
        TableStatus::Different => println!(
            "  {name}: {} differences: {} missing in target, {} extra in target, {} differing \
             (source {} rows, target {} rows)",
            f.total(),
            f.missing_in_target,
            f.extra_in_target,
            f.differing_rows,
            f.source_rows,
            f.target_rows
        ),
    }
    for (rows, side) in [
        (f.unreadable_source_rows, "source"),
        (f.unreadable_target_rows, "target"),
    ] {
        if rows > 0 {
            println!(
                "    {rows} {side} rows could not be read (a value dmp refuses; the run \
                 dead-letters them): not compared"
            );
        }
    }
    if let Some(repair) = &t.repair {
        println!(
            "    repaired {} differences: {} rows written, {} deleted, {} refused",
            repair.found,
            repair.written,
            repair.deleted,
            repair.refused.len()
        );
        for reason in repair.refused.iter().take(5) {
            println!("      refused: {reason}");
        }
    }
    for column in &t.missing_columns {
        println!("    column missing in target: {column} (its values are not there)");
    }
    for column in &t.not_compared {
        println!("    not compared: {column} (target only)");
    }
    for d in &f.differences {
        let key: Vec<String> = d
            .key
            .iter()
            .map(|(k, v)| format!("{k}={}", shown(v.as_deref())))
            .collect();
        let key = key.join(", ");
        match d.kind {
            DifferenceKind::MissingInTarget => println!("    missing in target: {key}"),
            DifferenceKind::ExtraInTarget => println!("    extra in target:   {key}"),
            DifferenceKind::Differs => {
                let columns: Vec<String> = d
                    .columns
                    .iter()
                    .map(|c| {
                        format!(
                            "{}: source {}, target {}",
                            crate::model::printable(&c.column),
                            shown(c.source.as_deref()),
                            shown(c.target.as_deref())
                        )
                    })
                    .collect();
                println!("    differs:           {key}: {}", columns.join("; "));
            }
        }
    }
    if (f.differences.len() as u64) < f.total() {
        println!(
            "    … and {} more (--max-listed, --json)",
            f.total() - f.differences.len() as u64
        );
    }
}

/// A canonical value for a person: NULL apart from the empty text, long
/// values cut.
fn shown(value: Option<&str>) -> String {
    match value {
        None => "NULL".into(),
        Some(text) if text.chars().count() > 60 => {
            format!("{:?}…", text.chars().take(60).collect::<String>())
        }
        Some(text) => format!("{text:?}"),
    }
}
