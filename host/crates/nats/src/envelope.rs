//! The Debezium envelope, DMP's message form on the bus: `{"before",
//! "after", "source": {…}, "op", "ts_ms"}`, rows as JSON objects keyed by
//! column with the model's JSON value encoding (decimals as strings,
//! timestamps ISO 8601 UTC, bytes base64, JSON columns as JSON, NaN and
//! ±Infinity as strings). Snapshot rows are `r`, inserts `c`, updates `u`,
//! deletes `d`, truncates `t`. Reading checks every value against the
//! declared column type, so a message that does not fit is refused with
//! the column named.

use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use dmp_model::json::{value_from_json, write_row};
use dmp_model::{Change, Row, TableSchema, Value};

/// What a change event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A row of a snapshot (`r`).
    Read,
    Create,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }

    pub fn parse(code: &str) -> Option<Op> {
        Some(match code {
            "r" => Op::Read,
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "t" => Op::Truncate,
            _ => return None,
        })
    }
}

/// Where a change comes from: the envelope's `source` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The pipeline.
    pub name: String,
    pub db: String,
    pub schema: Option<String>,
    pub table: String,
    /// The source position's own fields: `lsn` for PostgreSQL, `file`,
    /// `pos` and `gtid` for MySQL/MariaDB.
    pub position: Vec<(String, Json)>,
    /// Source commit time, milliseconds since the epoch.
    pub ts_ms: i64,
    pub snapshot: bool,
}

/// A decoded change event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub op: Op,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source_ts_ms: Option<i64>,
    pub ts_ms: Option<i64>,
}

impl Envelope {
    /// The change a target applies; `None` for a truncate.
    pub fn change(self) -> Option<Change> {
        match (self.op, self.before, self.after) {
            (Op::Read | Op::Create, _, Some(after)) => Some(Change::Insert(after)),
            (Op::Update, before, Some(after)) => Some(Change::Update { before, after }),
            (Op::Delete, Some(before), _) => Some(Change::Delete(before)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("`op` is missing or not one of r, c, u, d, t")]
    Op,
    #[error("`{field}` is missing (a `{op}` event needs it)")]
    Missing {
        field: &'static str,
        op: &'static str,
    },
    #[error("`{field}.{column}`: {reason}")]
    Value {
        field: &'static str,
        column: String,
        reason: String,
    },
    #[error("`{field}` has no column `{column}` of table {table}")]
    UnknownColumn {
        field: &'static str,
        column: String,
        table: String,
    },
}

/// The event of `change` to a row of `schema` (the message's text);
/// `snapshot` rows are `r`. JSON columns go in as the text they are.
pub fn encode(
    schema: &TableSchema,
    change: &Change,
    snapshot: bool,
    source: &SourceInfo,
    now_ms: i64,
) -> String {
    encode_with(schema, change, snapshot, &source_text(source), now_ms)
}

/// `encode` with the `source` block rendered already (`source_text`):
/// the rows of a snapshot batch share it. Written into one buffer, the
/// row images in place (a message per row: the copies add up).
pub fn encode_with(
    schema: &TableSchema,
    change: &Change,
    snapshot: bool,
    source: &str,
    now_ms: i64,
) -> String {
    let (before, after) = match change {
        Change::Insert(after) => (None, Some(after)),
        Change::Update { before, after } => (before.as_ref(), Some(after)),
        Change::Delete(before) => (Some(before), None),
    };
    let mut text = String::with_capacity(source.len() + 512);
    text.push_str("{\"before\":");
    write_image(&mut text, schema, before);
    text.push_str(",\"after\":");
    write_image(&mut text, schema, after);
    finish(&mut text, op_of(change, snapshot), source, now_ms);
    text
}

fn write_image(text: &mut String, schema: &TableSchema, row: Option<&Row>) {
    match row {
        Some(row) => write_row(text, schema, row),
        None => text.push_str("null"),
    }
}

/// The envelope's end: the `source` block, the op and the time.
fn finish(text: &mut String, op: Op, source: &str, now_ms: i64) {
    use std::fmt::Write;
    text.push_str(",\"source\":");
    text.push_str(source);
    // Writing to a String cannot fail.
    let _ = write!(text, ",\"op\":\"{}\",\"ts_ms\":{now_ms}}}", op.code());
}

/// The op of `change` (`r` for a snapshot row).
pub fn op_of(change: &Change, snapshot: bool) -> Op {
    match change {
        Change::Insert(_) if snapshot => Op::Read,
        Change::Insert(_) => Op::Create,
        Change::Update { .. } => Op::Update,
        Change::Delete(_) => Op::Delete,
    }
}

/// An event (`envelope`, the text `encode` made) in CloudEvents'
/// structured mode: the envelope is its `data`.
pub fn cloud_event(id: &str, source: &SourceInfo, op: Op, envelope: &str, now_ms: i64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let subject = match &source.schema {
        Some(schema) => format!("{schema}.{}", source.table),
        None => source.table.clone(),
    };
    let kind = match op {
        Op::Read => "read",
        Op::Create => "create",
        Op::Update => "update",
        Op::Delete => "delete",
        Op::Truncate => "truncate",
    };
    let head = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": format!("/dmp/{}", source.name),
        "type": format!("io.dmp.change.{kind}"),
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
    });
    let mut text = head.to_string();
    text.pop();
    text.push_str(",\"data\":");
    text.push_str(envelope);
    text.push('}');
    text
}

/// The event of a truncate of `source.table`.
pub fn encode_truncate(source: &SourceInfo, now_ms: i64) -> String {
    let mut text = "{\"before\":null,\"after\":null".to_string();
    finish(&mut text, Op::Truncate, &source_text(source), now_ms);
    text
}

/// The envelope's `source` block as JSON text.
pub fn source_text(source: &SourceInfo) -> String {
    source_block(source).to_string()
}

fn source_block(source: &SourceInfo) -> Json {
    let mut block = Map::new();
    block.insert("connector".into(), "dmp".into());
    block.insert("name".into(), source.name.clone().into());
    block.insert("db".into(), source.db.clone().into());
    block.insert(
        "schema".into(),
        source.schema.clone().map_or(Json::Null, Json::from),
    );
    block.insert("table".into(), source.table.clone().into());
    for (key, value) in &source.position {
        block.insert(key.clone(), value.clone());
    }
    block.insert("ts_ms".into(), source.ts_ms.into());
    block.insert("snapshot".into(), source.snapshot.into());
    Json::Object(block)
}

/// Reads an event of a row of `schema`, each value checked against its
/// column's type. Columns the message lacks are null (a row image may
/// carry only the key).
pub fn decode(bytes: &[u8], schema: &TableSchema) -> Result<Envelope, EnvelopeError> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        before: Option<&'a RawValue>,
        #[serde(borrow)]
        after: Option<&'a RawValue>,
        op: Option<String>,
        ts_ms: Option<i64>,
        source: Option<Map<String, Json>>,
    }
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        specversion: Option<&'a str>,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
        #[serde(borrow)]
        schema: Option<&'a RawValue>,
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
    }
    // A CloudEvent carries the envelope as its data; with a Connect schema
    // it is the payload.
    if let Ok(
        Wrapped {
            specversion: Some(_),
            data: Some(inner),
            ..
        }
        | Wrapped {
            schema: Some(_),
            payload: Some(inner),
            ..
        },
    ) = serde_json::from_slice::<Wrapped<'_>>(bytes)
    {
        return decode(inner.get().as_bytes(), schema);
    }
    let raw: Raw<'_> =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let op = raw
        .op
        .as_deref()
        .and_then(Op::parse)
        .ok_or(EnvelopeError::Op)?;
    let before = image(raw.before, schema, "before")?;
    let after = image(raw.after, schema, "after")?;
    let needs = |field: &'static str, present: bool| {
        if present {
            Ok(())
        } else {
            Err(EnvelopeError::Missing {
                field,
                op: op.code(),
            })
        }
    };
    match op {
        Op::Read | Op::Create | Op::Update => needs("after", after.is_some())?,
        Op::Delete => needs("before", before.is_some())?,
        Op::Truncate => {}
    }
    Ok(Envelope {
        op,
        before,
        after,
        source_ts_ms: raw
            .source
            .as_ref()
            .and_then(|s| s.get("ts_ms"))
            .and_then(Json::as_i64),
        ts_ms: raw.ts_ms,
    })
}

/// A row image (`before` or `after`), or none when absent or null.
fn image(
    raw: Option<&RawValue>,
    schema: &TableSchema,
    field: &'static str,
) -> Result<Option<Row>, EnvelopeError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(None);
    };
    let fields: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(raw.get())
        .map_err(|e| EnvelopeError::NotJson(format!("`{field}`: {e}")))?;
    if let Some(unknown) = fields
        .keys()
        .find(|name| !schema.columns.iter().any(|c| &c.name == *name))
    {
        return Err(EnvelopeError::UnknownColumn {
            field,
            column: unknown.clone(),
            table: schema.name.clone(),
        });
    }
    let mut values = Vec::with_capacity(schema.columns.len());
    for column in &schema.columns {
        let value = match fields.get(&column.name) {
            Some(raw) => {
                value_from_json(raw, &column.data_type).map_err(|e| EnvelopeError::Value {
                    field,
                    column: column.name.clone(),
                    reason: e.to_string(),
                })?
            }
            None => Value::Null,
        };
        values.push(value);
    }
    Ok(Some(Row(values)))
}

#[cfg(test)]
mod tests;
