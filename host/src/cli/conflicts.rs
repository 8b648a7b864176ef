//! `dmp conflicts list|show|resolve PIPELINE`: the conflicts a two-way
//! sync logged on its two sides, and resolving a parked one by choosing
//! the side whose row both keep. The reading and resolving are the
//! engine's (`dmp_engine::Sides`, shared with the service); this file
//! parses the arguments and prints.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use super::EXIT_OK;
use crate::config::Pipeline;
use crate::connectors::REGISTRY;
use crate::engine::{
    ConflictError, EntryView, JsonColumn, ResolveSummary, RowOutcome, Sides, entry_view,
};
use crate::error::{Error, Result};
use crate::model::printable;
use dmp_contract::conflict::Side;
use dmp_contract::{EntryId, LoggedConflict};

#[derive(Debug, Subcommand)]
pub(super) enum ConflictsCommand {
    /// The conflicts both sides logged, oldest first: by default those
    /// parked and not resolved yet.
    List {
        /// The pipeline file (mode = "bidirectional").
        pipeline: PathBuf,
        /// Every entry: settled by the policy, parked, resolved.
        #[arg(long)]
        all: bool,
        /// Print the entries as a JSON array, every column.
        #[arg(long)]
        json: bool,
    },
    /// One conflict in full: the remote change's rows, this side's row
    /// then, the times and the resolution.
    Show {
        /// The pipeline file.
        pipeline: PathBuf,
        /// The conflict as `list` names it: `a:ID` or `b:ID` (the side
        /// whose log holds it).
        id: String,
        /// Print the entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resolve a parked conflict by choosing a side: that side's current
    /// row at the key (or its absence) is written to the other side, and
    /// the key's parked entries on both sides are marked resolved. The
    /// write is the sync's own: the change streams do not carry it back.
    Resolve {
        /// The pipeline file.
        pipeline: PathBuf,
        /// The conflict as `list` names it: `a:ID` or `b:ID`.
        id: String,
        /// The side whose row both keep.
        #[arg(long, value_enum)]
        side: SideArg,
    },
}

/// `--side a|b`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum SideArg {
    A,
    B,
}

impl From<SideArg> for Side {
    fn from(side: SideArg) -> Self {
        match side {
            SideArg::A => Side::A,
            SideArg::B => Side::B,
        }
    }
}

pub(super) async fn conflicts(command: ConflictsCommand) -> Result<u8> {
    match command {
        ConflictsCommand::List {
            pipeline,
            all,
            json,
        } => {
            let sides = open(&pipeline)?;
            let entries = sides.entries(all).await?;
            if json {
                let views: Vec<EntryView> = entries
                    .into_iter()
                    .map(|(side, e)| entry_view(side, e, true))
                    .collect();
                println!("{}", to_json(&views)?);
            } else {
                print_list(sides.sync_id(), &entries, all);
            }
        }
        ConflictsCommand::Show { pipeline, id, json } => {
            let id: EntryId = id.parse()?;
            let sides = open(&pipeline)?;
            let entry = sides.find(id).await?;
            if json {
                println!("{}", to_json(&entry_view(id.side, entry, true))?);
            } else {
                print_entry(sides.sync_id(), id, &entry);
            }
        }
        ConflictsCommand::Resolve { pipeline, id, side } => {
            let id: EntryId = id.parse()?;
            let sides = open(&pipeline)?;
            let done = sides.resolve(id, side.into()).await?;
            print_resolved(&done);
        }
    }
    Ok(EXIT_OK)
}

/// Both sides of the two-way sync in pipeline file `path`; a pipeline of
/// another mode is refused naming the file, which the user typed.
fn open(path: &Path) -> Result<Sides> {
    let pipeline = Pipeline::load(path)?;
    Sides::open(&REGISTRY, &pipeline).map_err(|e| match e {
        ConflictError::NotTwoWay { .. } => Error::Config(format!("{}: {e}", path.display())),
        other => other.into(),
    })
}

fn print_resolved(done: &ResolveSummary) {
    let key = match &done.key {
        JsonColumn::Raw(raw) => raw.get(),
        JsonColumn::Text(text) => text,
    };
    let written = match done.row {
        RowOutcome::Written => "written to",
        RowOutcome::Deleted => "deleted on",
    };
    println!(
        "conflict {} (table {}, key {}) resolved by side {}: its row {written} side {}; \
         entries marked resolved: {} on side {}, {} on side {}",
        done.id,
        printable(&done.table),
        printable(key),
        done.side,
        done.other_side,
        done.marked_on_side,
        done.side,
        done.marked_on_other_side,
        done.other_side
    );
}

fn print_list(sync_id: &str, entries: &[(Side, LoggedConflict)], all: bool) {
    let sync_id = printable(sync_id);
    if entries.is_empty() {
        if all {
            println!("sync {sync_id}: no conflicts logged");
        } else {
            println!("sync {sync_id}: no parked conflicts wait (--all lists every entry)");
        }
        return;
    }
    let what = if all {
        "conflicts"
    } else {
        "parked conflicts, not resolved"
    };
    println!("sync {sync_id}: {} {what}", entries.len());
    let header = [
        "ID",
        "TABLE",
        "KEY",
        "KIND",
        "DECISION",
        "LOGGED AT",
        "RESOLUTION",
    ];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|(side, e)| {
            [
                EntryId {
                    side: *side,
                    id: e.id,
                }
                .to_string(),
                printable(&e.table).into_owned(),
                printable(&e.key).into_owned(),
                e.kind.clone(),
                e.decision.clone(),
                e.logged_at.clone(),
                e.resolution.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
}

fn print_entry(sync_id: &str, id: EntryId, e: &LoggedConflict) {
    let remote = printable(&e.remote_side);
    println!("conflict {id} of sync {}", printable(sync_id));
    println!("  table        {}", printable(&e.table));
    println!("  key          {}", printable(&e.key));
    println!("  kind         {}", e.kind);
    println!("  decision     {}", e.decision);
    println!(
        "  change of    side {remote}, logged on side {}",
        id.side.as_str()
    );
    println!(
        "  committed    {}",
        e.remote_commit_time.as_deref().unwrap_or("-")
    );
    println!("  logged at    {}", e.logged_at);
    match &e.resolution {
        Some(resolution) => println!(
            "  resolution   {resolution} at {}",
            e.resolved_at.as_deref().unwrap_or("-")
        ),
        None if e.is_open() => println!("  resolution   - (waiting: dmp conflicts resolve)"),
        None => println!("  resolution   -"),
    }
    let rows = [
        (
            format!("side {remote}'s row before its change"),
            &e.remote_old,
        ),
        (
            format!("side {remote}'s row after its change"),
            &e.remote_new,
        ),
        (
            format!("side {}'s row then", id.side.as_str()),
            &e.local_row,
        ),
    ];
    for (title, row) in rows {
        match row {
            Some(row) => {
                println!("  {title}:");
                for line in pretty_json(&printable(row)).lines() {
                    println!("    {line}");
                }
            }
            None => println!("  {title}: none"),
        }
    }
}

/// `text` (JSON) indented, two spaces a level, its tokens as they are:
/// parsing it into values would round long numbers.
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Skip the blanks to see whether it is empty.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| Error::Data(format!("writing the conflicts as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_with_its_tokens_kept() {
        let text = r#"{"id": 12345678901234567890123, "v": "a, {b}: \"c\"", "e": {}, "l": [1,2]}"#;
        assert_eq!(
            pretty_json(text),
            "{\n  \"id\": 12345678901234567890123,\n  \"v\": \"a, {b}: \\\"c\\\"\",\n  \
             \"e\": {},\n  \"l\": [\n    1,\n    2\n  ]\n}"
        );
    }
}
