//! `dmp conflicts list|show|resolve PIPELINE`: the conflicts a two-way
//! sync logged on its two sides (each side's `_dmp_conflicts` holds those
//! of the other side's changes), and resolving a parked one by choosing
//! the side whose row both keep.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::value::RawValue;

use super::EXIT_OK;
use crate::config::{Leg, Pipeline, RunMode};
use crate::connectors::REGISTRY;
use crate::error::{Error, Result};
use crate::model::printable;
use dmp_contract::conflict::{Decision, Side};
use dmp_contract::{Connectors, EntryId, LoggedConflict, Resolution, RowWrite, Target};

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
            let sides = Sides::open(&pipeline)?;
            let entries: Vec<(Side, LoggedConflict)> = sides
                .entries()
                .await?
                .into_iter()
                .filter(|(_, e)| all || e.is_open())
                .collect();
            if json {
                let views: Vec<EntryView> = entries.iter().map(|(s, e)| view(*s, e)).collect();
                println!("{}", to_json(&views)?);
            } else {
                print_list(&sides.sync_id, &entries, all);
            }
        }
        ConflictsCommand::Show { pipeline, id, json } => {
            let id: EntryId = id.parse()?;
            let sides = Sides::open(&pipeline)?;
            let entry = sides.find(id).await?;
            if json {
                println!("{}", to_json(&view(id.side, &entry))?);
            } else {
                print_entry(&sides.sync_id, id, &entry);
            }
        }
        ConflictsCommand::Resolve { pipeline, id, side } => {
            let id: EntryId = id.parse()?;
            let sides = Sides::open(&pipeline)?;
            resolve(&sides, id, side.into()).await?;
        }
    }
    Ok(EXIT_OK)
}

/// The two sides of a two-way sync, each opened as the target of the leg
/// that writes into it: with the sync id and the leg's conflict rules, as
/// the running sync has them (MariaDB sessions tagged as its own).
struct Sides {
    sync_id: String,
    a: Arc<dyn Target>,
    b: Arc<dyn Target>,
}

impl Sides {
    fn open(path: &Path) -> Result<Sides> {
        let pipeline = Pipeline::load(path)?;
        if pipeline.mode != RunMode::Bidirectional {
            return Err(Error::Config(format!(
                "{}: conflicts are logged by a two-way sync (mode = \"bidirectional\"); \
                 this pipeline's mode is \"{}\"",
                path.display(),
                pipeline.mode.as_str()
            )));
        }
        // Side A is the target of the leg that carries B's changes.
        let open = |leg: Leg, endpoint| {
            let mut options = pipeline.leg(leg).target_options();
            // One statement at a time: one session is enough.
            options.writers = 1;
            REGISTRY.open_target(endpoint, options)
        };
        Ok(Sides {
            sync_id: pipeline.sync_id().to_string(),
            a: open(Leg::BToA, &pipeline.source)?,
            b: open(Leg::AToB, &pipeline.target)?,
        })
    }

    fn side(&self, side: Side) -> &dyn Target {
        match side {
            Side::A => &*self.a,
            Side::B => &*self.b,
        }
    }

    /// Both logs' entries of this sync, oldest first (by the time each
    /// side logged them; clocks apart by less than `max_clock_skew`).
    async fn entries(&self) -> Result<Vec<(Side, LoggedConflict)>> {
        let mut entries = Vec::new();
        for side in [Side::A, Side::B] {
            let log = self.side(side).conflict_log(&self.sync_id).await?;
            entries.extend(log.into_iter().map(|e| (side, e)));
        }
        entries.sort_by(|(s1, e1), (s2, e2)| {
            (&e1.logged_at, s1.as_str(), e1.id).cmp(&(&e2.logged_at, s2.as_str(), e2.id))
        });
        Ok(entries)
    }

    async fn find(&self, id: EntryId) -> Result<LoggedConflict> {
        let log = self.side(id.side).conflict_log(&self.sync_id).await?;
        self.pick(id, log)
    }

    /// Entry `id` of its side's `log`; an error naming it when there is
    /// none.
    fn pick(&self, id: EntryId, log: Vec<LoggedConflict>) -> Result<LoggedConflict> {
        log.into_iter().find(|e| e.id == id.id).ok_or_else(|| {
            Error::Config(format!(
                "sync {}: no conflict {id}: side {}'s log has no entry {} \
                 (`dmp conflicts list --all` shows them)",
                self.sync_id,
                id.side.as_str(),
                id.id
            ))
        })
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// Resolves conflict `id` by side `chosen`: its row now is written to the
/// other side with that side's entries marked (one transaction), then the
/// chosen side's entries are marked. The other side goes first: should the
/// second step fail, the chosen side's entries still wait, and resolving
/// one of them again writes the chosen side's row again. Both logs are
/// read before the row: only the entries seen then are marked.
async fn resolve(sides: &Sides, id: EntryId, chosen: Side) -> Result<()> {
    let log = |side| sides.side(side).conflict_log(&sides.sync_id);
    let (log_a, log_b) = (log(Side::A).await?, log(Side::B).await?);
    let last = |log: &[LoggedConflict]| log.iter().map(|e| e.id).max().unwrap_or(0);
    let (seen_a, seen_b) = (last(&log_a), last(&log_b));
    let seen = |side| match side {
        Side::A => seen_a,
        Side::B => seen_b,
    };
    let entry = sides.pick(id, if id.side == Side::A { log_a } else { log_b })?;
    let about = || {
        format!(
            "conflict {id} (table {}, key {})",
            printable(&entry.table),
            printable(&entry.key)
        )
    };
    if entry.decision != Decision::Park.as_str() {
        return Err(Error::Config(format!(
            "{} was not parked: it was settled as {} when logged; only parked conflicts \
             are resolved by hand",
            about(),
            entry.decision
        )));
    }
    if let Some(resolution) = &entry.resolution {
        return Err(Error::Config(format!(
            "{} is resolved already ({resolution}, at {})",
            about(),
            entry.resolved_at.as_deref().unwrap_or("an unknown time")
        )));
    }
    let target = other(chosen);
    let row = sides
        .side(chosen)
        .read_row(&entry.table, &entry.key)
        .await?;
    let written = match &row {
        Some(_) => "written to",
        None => "deleted on",
    };
    let resolution = |side, write| Resolution {
        sync_id: &sides.sync_id,
        table: &entry.table,
        key: &entry.key,
        write,
        resolution: Resolution::label(chosen),
        seen_up_to: seen(side),
    };
    let write = row.map_or(RowWrite::Delete, RowWrite::Upsert);
    let marked_there = sides
        .side(target)
        .resolve_conflicts(&resolution(target, write))
        .await?;
    let marked_here = sides
        .side(chosen)
        .resolve_conflicts(&resolution(chosen, RowWrite::Keep))
        .await?;
    println!(
        "{} resolved by side {}: its row {written} side {}; entries marked resolved: \
         {marked_here} on side {}, {marked_there} on side {}",
        about(),
        chosen.as_str(),
        target.as_str(),
        chosen.as_str(),
        target.as_str()
    );
    Ok(())
}

/// An entry as `--json` shows it: named `a:ID`, its JSON columns as JSON.
#[derive(Serialize)]
struct EntryView<'a> {
    id: String,
    side: &'static str,
    log_id: i64,
    pipeline: &'a str,
    table_name: &'a str,
    key: Json,
    kind: &'a str,
    decision: &'a str,
    remote_side: &'a str,
    remote_old: Option<Json>,
    remote_new: Option<Json>,
    local_row: Option<Json>,
    remote_commit_time: Option<&'a str>,
    logged_at: &'a str,
    resolution: Option<&'a str>,
    resolved_at: Option<&'a str>,
}

/// A JSON column: its text as it is (every digit kept), or a string when
/// it is no JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum Json {
    Raw(Box<RawValue>),
    Text(String),
}

fn json(text: &str) -> Json {
    RawValue::from_string(text.to_string()).map_or_else(|_| Json::Text(text.to_string()), Json::Raw)
}

fn view(side: Side, e: &LoggedConflict) -> EntryView<'_> {
    EntryView {
        id: EntryId { side, id: e.id }.to_string(),
        side: side.as_str(),
        log_id: e.id,
        pipeline: &e.pipeline,
        table_name: &e.table,
        key: json(&e.key),
        kind: &e.kind,
        decision: &e.decision,
        remote_side: &e.remote_side,
        remote_old: e.remote_old.as_deref().map(json),
        remote_new: e.remote_new.as_deref().map(json),
        local_row: e.local_row.as_deref().map(json),
        remote_commit_time: e.remote_commit_time.as_deref(),
        logged_at: &e.logged_at,
        resolution: e.resolution.as_deref(),
        resolved_at: e.resolved_at.as_deref(),
    }
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

    #[test]
    fn an_entry_shows_its_json_columns_as_json() {
        let entry = LoggedConflict {
            id: 7,
            pipeline: "p".into(),
            table: "hot".into(),
            key: r#"{"id":1}"#.into(),
            kind: "update_differs".into(),
            decision: "parked".into(),
            remote_side: "b".into(),
            remote_old: None,
            remote_new: Some(r#"{"id":1,"n":1.50}"#.into()),
            local_row: Some("not json".into()),
            remote_commit_time: None,
            logged_at: "2024-05-01T10:00:00.000000Z".into(),
            resolution: None,
            resolved_at: None,
        };
        let text = serde_json::to_string(&view(Side::A, &entry)).unwrap();
        assert!(
            text.starts_with(r#"{"id":"a:7","side":"a","log_id":7,"pipeline":"p","#),
            "{text}"
        );
        assert!(text.contains(r#""key":{"id":1}"#), "{text}");
        assert!(text.contains(r#""remote_new":{"id":1,"n":1.50}"#), "{text}");
        assert!(text.contains(r#""local_row":"not json""#), "{text}");
    }
}
