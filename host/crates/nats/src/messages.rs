//! A batch as messages: one per row change, its envelope, id and headers.
//! Snapshot rows are read events (`r`) named by chunk and key; streamed
//! changes are named by their place in the source's change log and carry
//! the position the stream resumes at right after them.

use std::collections::HashSet;
use std::sync::Arc;

use async_nats::HeaderMap;

use crate::config::{Format, NatsConfig};
use crate::envelope::{self, SourceInfo};
use crate::headers;
use crate::message_id::{keyless_message_id, message_id, row_message_id, snapshot_message_id};
use crate::publish::Outgoing;
use dmp_model::{
    Change, ChangeOrigin, Position, Reject, RejectStage, Row, TableSchema, json::row_to_json,
};

/// What every message of a target shares.
pub(crate) struct Publisher<'a> {
    pub(crate) config: &'a NatsConfig,
    pub(crate) pipeline: &'a str,
    /// The source's database, for the envelope's `source.db`.
    pub(crate) database: &'a str,
    /// The full run's epoch (see `checkpoint_store::Epoch`).
    pub(crate) epoch: u64,
    /// Messages published already (after the last checkpoint, by a run
    /// that stopped): left out.
    pub(crate) published: &'a HashSet<String>,
    /// The largest message the server takes.
    pub(crate) max_payload: usize,
    pub(crate) now_ms: i64,
    /// Snapshot rows' `source` blocks by table, as text.
    pub(crate) source_texts: std::sync::Mutex<std::collections::HashMap<String, Arc<str>>>,
    /// With `?schemas=true`: each table's Connect schema, as text.
    pub(crate) connect_schemas: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// Messages of a batch, and the rows that cannot be one.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) messages: Vec<Outgoing>,
    pub(crate) refused: Vec<Reject>,
}

/// One change to put in the outbox.
pub(crate) struct Event<'a> {
    pub(crate) table: &'a TableSchema,
    pub(crate) version: &'a str,
    /// `None` for a truncate.
    pub(crate) change: Option<&'a Change>,
    pub(crate) snapshot: bool,
    pub(crate) id: String,
    /// Where the stream resumes right after it, for streamed changes.
    pub(crate) resume: Option<Position>,
    pub(crate) source_position: Vec<(String, serde_json::Value)>,
    pub(crate) commit_ms: Option<i64>,
    /// The batch's position, for a refused row.
    pub(crate) at: &'a Position,
}

impl Publisher<'_> {
    /// Adds `event`'s message to `outbox` (see `message`).
    pub(crate) fn push(&self, outbox: &mut Outbox, event: Event<'_>) {
        if let Some(message) = self.message(event, &mut outbox.refused) {
            outbox.messages.push(message);
        }
    }

    /// `event`'s message, unless it is published already, or its row
    /// refused (into `refused`) when the message is larger than the server
    /// takes.
    pub(crate) fn message(&self, event: Event<'_>, refused: &mut Vec<Reject>) -> Option<Outgoing> {
        if self.published.contains(&event.id) {
            return None;
        }
        let table = event.table;
        let source = SourceInfo {
            name: self.pipeline.to_string(),
            db: self.database.to_string(),
            schema: table.namespace.clone(),
            table: table.name.clone(),
            position: event.source_position,
            ts_ms: event.commit_ms.unwrap_or(self.now_ms),
            snapshot: event.snapshot,
        };
        let (op, text) = match event.change {
            Some(change) => (
                envelope::op_of(change, event.snapshot),
                envelope::encode_with(
                    table,
                    change,
                    event.snapshot,
                    &self.source_text(&source),
                    self.now_ms,
                ),
            ),
            None => (
                envelope::Op::Truncate,
                envelope::encode_truncate(&source, self.now_ms),
            ),
        };
        let text = if self.config.schemas {
            crate::connect_schema::with_schema(&self.connect_schema(table), &text)
        } else {
            text
        };
        let text = match self.config.format {
            Format::Debezium => text,
            Format::CloudEvents => {
                envelope::cloud_event(&event.id, &source, op, &text, self.now_ms)
            }
        };
        if text.len() > self.max_payload {
            let row = event
                .change
                .map_or(serde_json::Value::Null, |c| row_to_json(table, c.row()));
            refused.push(Reject {
                stage: RejectStage::Target,
                error: format!(
                    "table {}: the message is {} bytes, more than the {} bytes the NATS server takes (its max_payload)",
                    table.qualified_name(),
                    text.len(),
                    self.max_payload
                ),
                row,
                position: event.at.clone(),
            });
            return None;
        }
        let mut headers = HeaderMap::new();
        headers.insert(headers::PIPELINE, self.pipeline);
        headers.insert(headers::TABLE, table.qualified_name().as_str());
        headers.insert(headers::OP, op.code());
        headers.insert(headers::SCHEMA_VERSION, event.version);
        if let Some(resume) = &event.resume
            && let Ok(json) = serde_json::to_string(resume)
        {
            headers.insert(headers::POSITION, json.as_str());
        }
        Some(Outgoing {
            subject: self.config.subject(table.namespace.as_deref(), &table.name),
            id: event.id,
            headers,
            body: text.into(),
        })
    }

    /// The `source` block's text; a snapshot's (the same for every row of
    /// a table in a batch) made once.
    fn source_text(&self, source: &SourceInfo) -> Arc<str> {
        if !source.snapshot {
            return envelope::source_text(source).into();
        }
        let mut known = self
            .source_texts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .entry(source.table.clone())
            .or_insert_with(|| envelope::source_text(source).into())
            .clone()
    }

    /// `table`'s Connect schema as text, made once per batch.
    fn connect_schema(&self, table: &TableSchema) -> String {
        let mut known = self
            .connect_schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = self.config.subject(table.namespace.as_deref(), &table.name);
        known
            .entry(name.clone())
            .or_insert_with(|| crate::connect_schema::envelope_schema(table, &name).to_string())
            .clone()
    }

    /// The id of a snapshot row: by key, or by place for a table without
    /// a primary key.
    pub(crate) fn snapshot_id(
        &self,
        table: &TableSchema,
        key: &[usize],
        chunk: u32,
        before: u64,
        index: usize,
        row: &Row,
    ) -> String {
        let name = table.qualified_name();
        let run = format!("{}@{}", self.pipeline, self.epoch);
        if key.is_empty() {
            return keyless_message_id(&run, &name, chunk, before, index);
        }
        let values: Vec<_> = key.iter().filter_map(|&i| row.0.get(i).cloned()).collect();
        snapshot_message_id(&run, &name, chunk, &values)
    }

    /// The id of a streamed change, or of a change with no place in a log
    /// (an incremental run's row), by its content.
    pub(crate) fn change_id(
        &self,
        table: &TableSchema,
        origin: Option<&ChangeOrigin>,
        change: Option<&Change>,
    ) -> String {
        match origin {
            Some(o) => message_id(self.pipeline, &o.log, o.index, o.part),
            None => {
                let mut text = String::new();
                if let Some(change) = change {
                    text.push_str(change.op());
                    dmp_model::json::write_row(&mut text, table, change.row());
                }
                row_message_id(self.pipeline, &table.qualified_name(), &text)
            }
        }
    }
}

/// The fields of a change log position text (`lsn=0/16B3748`,
/// `file=binlog.000003;pos=4;gtid=…`) for the envelope's `source` block:
/// numbers as numbers.
pub(crate) fn position_fields(log: &str) -> Vec<(String, serde_json::Value)> {
    log.split(';')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| {
            let value = match value.parse::<u64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => serde_json::Value::from(value),
            };
            (key.to_string(), value)
        })
        .collect()
}

/// Where a stream resumes right after the change at `origin`: after the
/// whole source change once its last part is out, else just before it.
pub(crate) fn resume_after(origin: &ChangeOrigin, last_part: bool) -> Position {
    Position::Log {
        log: origin.log.clone(),
        skip: if last_part {
            origin.index
        } else {
            origin.index.saturating_sub(1)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_texts_become_source_fields() {
        assert_eq!(
            position_fields("lsn=0/16B3748"),
            vec![("lsn".to_string(), serde_json::json!("0/16B3748"))]
        );
        assert_eq!(
            position_fields("file=binlog.000003;pos=1234;gtid=0-1-7"),
            vec![
                ("file".to_string(), serde_json::json!("binlog.000003")),
                ("pos".to_string(), serde_json::json!(1234)),
                ("gtid".to_string(), serde_json::json!("0-1-7")),
            ]
        );
    }

    #[test]
    fn a_stream_resumes_after_the_last_part_of_a_change() {
        let origin = ChangeOrigin {
            log: "lsn=0/1".into(),
            index: 3,
            part: 0,
            commit_time: None,
        };
        let at = |skip| Position::Log {
            log: "lsn=0/1".into(),
            skip,
        };
        assert_eq!(resume_after(&origin, true), at(3));
        assert_eq!(resume_after(&origin, false), at(2));
    }
}
