//! `?schemas=true`: the Kafka Connect schema Debezium's JSON converter puts
//! beside each event (`{"schema": …, "payload": <envelope>}`), for
//! consumers that read it. Types follow the envelope's value encoding:
//! decimals, dates, times and uuids are strings (with Debezium's logical
//! names where it has them), bytes are base64 strings, JSON is any JSON.

use serde_json::{Value as Json, json};

use dmp_model::{DataType, TableSchema};

/// The schema of `table`'s events; `name` is the record's name (its
/// subject).
pub fn envelope_schema(table: &TableSchema, name: &str) -> Json {
    let fields: Vec<Json> = table
        .columns
        .iter()
        .map(|column| {
            let mut field = field_type(column.data_type);
            field["optional"] = Json::Bool(column.nullable);
            field["field"] = Json::String(column.name.clone());
            field
        })
        .collect();
    let row = |field: &str| json!({"type": "struct", "fields": fields, "optional": true, "name": format!("{name}.Value"), "field": field});
    json!({
        "type": "struct",
        "name": format!("{name}.Envelope"),
        "optional": false,
        "fields": [
            row("before"),
            row("after"),
            {"type": "struct", "optional": false, "field": "source", "name": "io.dmp.Source", "fields": [
                {"type": "string", "optional": false, "field": "connector"},
                {"type": "string", "optional": false, "field": "name"},
                {"type": "string", "optional": false, "field": "db"},
                {"type": "string", "optional": true, "field": "schema"},
                {"type": "string", "optional": false, "field": "table"},
                {"type": "int64", "optional": false, "field": "ts_ms"},
                {"type": "boolean", "optional": false, "field": "snapshot"}
            ]},
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"}
        ]
    })
}

/// A column's Connect type.
fn field_type(data_type: DataType) -> Json {
    match data_type {
        DataType::Bool => json!({"type": "boolean"}),
        DataType::Int16 => json!({"type": "int16"}),
        DataType::Int32 => json!({"type": "int32"}),
        DataType::Int64 => json!({"type": "int64"}),
        DataType::Float32 => json!({"type": "float"}),
        DataType::Float64 => json!({"type": "double"}),
        DataType::Decimal { .. } => json!({"type": "string", "name": "io.dmp.Decimal"}),
        DataType::Text { .. } => json!({"type": "string"}),
        DataType::Bytes => json!({"type": "string", "name": "io.dmp.Base64"}),
        DataType::Json => json!({"type": "string", "name": "io.debezium.data.Json"}),
        DataType::Date => json!({"type": "string", "name": "io.debezium.time.IsoDate"}),
        DataType::Time => json!({"type": "string", "name": "io.debezium.time.IsoTime"}),
        DataType::Timestamp => json!({"type": "string", "name": "io.debezium.time.IsoTimestamp"}),
        DataType::TimestampTz => {
            json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp"})
        }
        DataType::Uuid => json!({"type": "string", "name": "io.debezium.data.Uuid"}),
    }
}

/// `{"schema": schema, "payload": envelope}`, the envelope's text spliced
/// in as it is.
pub fn with_schema(schema: &str, envelope: &str) -> String {
    let mut text = String::with_capacity(schema.len() + envelope.len() + 24);
    text.push_str("{\"schema\":");
    text.push_str(schema);
    text.push_str(",\"payload\":");
    text.push_str(envelope);
    text.push('}');
    text
}
