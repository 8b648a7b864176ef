//! Incremental and change data capture runs into files: files cannot be
//! updated in place, so each table gets an append-only change log,
//! `TABLE.changes.jsonl`, one JSON object per change: the row's columns
//! plus `_op` (`insert` = upsert, `update`, `delete`, `truncate`) and
//! `_position` (the source position of the batch that carried it; a
//! consumer replays the log in order to rebuild the table). After each
//! batch the logs are synced and their lengths recorded atomically with the
//! checkpoints in `.dmp-checkpoints/PIPELINE/_changes.json`; a restarted run
//! cuts every log back to its recorded length, so no change is doubled.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::folder;
use super::target::write_atomically;
use crate::error::{Error, Result, ResultExt};
use dmp_model::json::{write_row, write_value};
use dmp_model::{Change, ChangeBatch, Checkpoint, Position, TableChanges, TableSchema};

/// What survives a crash: each log's committed length and the checkpoints
/// (the stream's and each table's cursor mark).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct ChangeLogState {
    lengths: BTreeMap<String, u64>,
    checkpoints: Vec<Checkpoint>,
}

pub(super) struct ChangeLogs {
    dir: PathBuf,
    state_path: PathBuf,
    state: ChangeLogState,
}

impl ChangeLogs {
    /// Loads the recorded state and cuts every log back to its committed
    /// length (a crash may have left changes after it).
    pub(super) fn open(dir: &Path, manifest_dir: &Path) -> Result<Self> {
        let state_path = manifest_dir.join("_changes.json");
        let state = read_state(&state_path)?;
        let logs = ChangeLogs {
            dir: dir.to_path_buf(),
            state_path,
            state,
        };
        for (table, &length) in &logs.state.lengths {
            let path = logs.path(table)?;
            // Never through a link: cutting one would cut its target.
            match folder::open_own(&path, false) {
                Ok(file) => file
                    .set_len(length)
                    .context(|| format!("cutting {} back to its checkpoint", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(folder::open_error(&path, "opening", e)),
            }
        }
        Ok(logs)
    }

    /// Removes the change logs of `tables` and the recorded state (a fresh
    /// full copy replaces what they described).
    pub(super) fn forget(
        dir: &Path,
        manifest_dir: &Path,
        tables: &[std::sync::Arc<TableSchema>],
    ) -> Result<()> {
        let remove = |path: PathBuf| match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
        for table in tables {
            remove(log_path(dir, &table.name)?)?;
        }
        remove(manifest_dir.join("_changes.json"))
    }

    fn path(&self, table: &str) -> Result<PathBuf> {
        log_path(&self.dir, table)
    }

    pub(super) fn checkpoints(&self) -> Vec<Checkpoint> {
        self.state.checkpoints.clone()
    }

    /// The recorded checkpoints, without opening the logs.
    pub(super) fn recorded(manifest_dir: &Path) -> Result<Vec<Checkpoint>> {
        Ok(read_state(&manifest_dir.join("_changes.json"))?.checkpoints)
    }

    /// Appends the batch's changes, syncs, then records the lengths and
    /// `checkpoint`. Returns the changes written.
    pub(super) fn append(&mut self, batch: &ChangeBatch, checkpoint: Checkpoint) -> Result<u64> {
        let position = position_text(&checkpoint.position);
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        let mut written = 0u64;
        for segment in &batch.segments {
            let out = texts.entry(segment.table().name.clone()).or_default();
            match segment {
                TableChanges::Rows { table, changes, .. } => {
                    for change in changes {
                        line(out, table, change, &position)?;
                        written += 1;
                    }
                }
                TableChanges::Truncate { .. } => {
                    out.push_str("{\"_op\":\"truncate\",\"_position\":");
                    write_value(out, &dmp_model::Value::Text(position.clone()));
                    out.push_str("}\n");
                    written += 1;
                }
                // The table's new shape, for readers of the log: the lines
                // after it have its columns.
                TableChanges::Evolve { table, .. } => {
                    out.push_str("{\"_op\":\"schema\",\"_position\":");
                    write_value(out, &dmp_model::Value::Text(position.clone()));
                    out.push_str(",\"_schema\":");
                    out.push_str(
                        &serde_json::to_string(&**table)
                            .context(|| format!("encoding the schema of {}", table.name))?,
                    );
                    out.push_str("}\n");
                }
            }
        }
        for (table, text) in &texts {
            let path = self.path(table)?;
            let ctx = || format!("appending to {}", path.display());
            let mut file = folder::open_append(&path)
                .map_err(|e| folder::open_error(&path, "appending to", e))?;
            file.write_all(text.as_bytes()).context(ctx)?;
            file.sync_data().context(ctx)?;
            let length = file.metadata().context(ctx)?.len();
            self.state.lengths.insert(table.clone(), length);
        }
        self.state
            .checkpoints
            .retain(|c| !(c.table == checkpoint.table && c.chunk == checkpoint.chunk));
        self.state.checkpoints.push(checkpoint);
        let bytes =
            serde_json::to_vec(&self.state).context(|| "encoding a checkpoint".to_string())?;
        write_atomically(&self.state_path, &bytes)?;
        Ok(written)
    }
}

/// `DIR/TABLE.changes.jsonl`, the table's name encoded.
fn log_path(dir: &Path, table: &str) -> Result<PathBuf> {
    Ok(folder::entry(dir, "", table, ".changes.jsonl")?)
}

fn read_state(path: &Path) -> Result<ChangeLogState> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .context(|| format!("reading checkpoint {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ChangeLogState::default()),
        Err(e) => Err(e).context(|| format!("reading checkpoint {}", path.display())),
    }
}

/// One change as a JSON line: the row's columns, `_op`, `_position`, and
/// for an update that changed the key, the old key as `_before`.
fn line(out: &mut String, table: &TableSchema, change: &Change, position: &str) -> Result<()> {
    let mut row = String::new();
    write_row(&mut row, table, change.row());
    let body = row
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| {
            Error::Data(format!(
                "table {}: a row that is not a JSON object",
                table.name
            ))
        })?;
    out.push_str("{\"_op\":\"");
    out.push_str(change.op());
    out.push_str("\",\"_position\":");
    write_value(out, &dmp_model::Value::Text(position.to_string()));
    if let Change::Update {
        before: Some(before),
        ..
    } = change
    {
        out.push_str(",\"_before\":");
        write_row(out, table, before);
    }
    if !body.is_empty() {
        out.push(',');
        out.push_str(body);
    }
    out.push_str("}\n");
    Ok(())
}

/// The position as readers of the log see it.
fn position_text(position: &Position) -> String {
    match position {
        Position::Log { log, skip: 0 } => log.clone(),
        Position::Log { log, skip } => format!("{log}+{skip}"),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use dmp_model::{Column, DataType, Row, Value};

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            namespace: None,
            name: "t".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("v", DataType::TEXT),
            ],
            primary_key: vec!["id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        })
    }

    fn row(id: i64, v: &str) -> Row {
        Row(vec![Value::Int(id), Value::Text(v.into())])
    }

    #[test]
    fn changes_append_and_a_restart_cuts_what_was_not_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("m");
        std::fs::create_dir_all(&manifests).unwrap();
        let t = table();
        let checkpoint = |log: &str| Checkpoint {
            table: String::new(),
            chunk: 0,
            position: Position::Log {
                log: log.into(),
                skip: 0,
            },
            rows: 0,
            done: true,
            fence: None,
        };
        let mut logs = ChangeLogs::open(dir.path(), &manifests).unwrap();
        let mut batch = ChangeBatch::new();
        batch.push(&t, Change::Insert(row(1, "a")));
        batch.push(
            &t,
            Change::Update {
                before: Some(row(1, "a")),
                after: row(2, "b"),
            },
        );
        batch.push(&t, Change::Delete(row(2, "")));
        assert_eq!(logs.append(&batch, checkpoint("lsn=0/10")).unwrap(), 3);
        let text = std::fs::read_to_string(dir.path().join("t.changes.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["_op"], "insert");
        assert_eq!(lines[0]["_position"], "lsn=0/10");
        assert_eq!(lines[1]["_before"]["id"], 1);
        assert_eq!(lines[1]["id"], 2);
        assert_eq!(lines[2]["_op"], "delete");

        // A crash after an append that was never checkpointed.
        let committed = text.len();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("t.changes.jsonl"))
            .unwrap()
            .write_all(b"{\"_op\":\"insert\",\"id\":9}\n")
            .unwrap();
        let logs = ChangeLogs::open(dir.path(), &manifests).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("t.changes.jsonl"))
                .unwrap()
                .len(),
            committed
        );
        assert_eq!(logs.checkpoints().len(), 1);
    }
}
