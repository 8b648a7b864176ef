//! The JSON form of values and rows: JSON Lines files and dead-letter rows.
//! Decimals are strings (exact), bytes base64, JSON columns embedded as they
//! are, times in ISO 8601 (`2024-01-02T03:04:05.123456Z`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;

use super::{DataType, Row, TableSchema, Value, ValueError, temporal};

/// Appends the JSON form of `value` to `out`, on one line.
pub fn write_value(out: &mut String, value: &Value) {
    use std::fmt::Write as _;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        // JSON has no such numbers: the strings PostgreSQL and most
        // readers take for them.
        Value::Float(f) if f.is_nan() => out.push_str("\"NaN\""),
        Value::Float(f) if *f > 0.0 => out.push_str("\"Infinity\""),
        Value::Float(_) => out.push_str("\"-Infinity\""),
        Value::Decimal(d) => write_str(out, d.as_str()),
        Value::Text(s) => write_str(out, s),
        Value::Bytes(b) => write_str(out, &BASE64.encode(b)),
        // Newlines can only be whitespace in valid JSON, so this keeps the
        // document's exact meaning and the one-record-per-line rule.
        Value::Json(s) => out.extend(
            s.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        ),
        // Dates and times need no JSON escaping.
        Value::Date(d) => {
            out.push('"');
            temporal::write_date(out, *d);
            out.push('"');
        }
        Value::Time(t) => {
            out.push('"');
            temporal::write_time(out, *t);
            out.push('"');
        }
        Value::Timestamp(ts) => {
            out.push('"');
            temporal::write_datetime(out, *ts, 'T');
            out.push('"');
        }
        Value::TimestampTz(ts) => {
            out.push('"');
            temporal::write_datetime(out, ts.naive_utc(), 'T');
            out.push_str("Z\"");
        }
        Value::Uuid(u) => write_str(out, &u.to_string()),
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires; writing a &str cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// Appends `{"column": value, ...}` for a row of `schema`.
pub fn write_row(out: &mut String, schema: &TableSchema, row: &Row) {
    out.push('{');
    for (i, (column, value)) in schema.columns.iter().zip(&row.0).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &column.name);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// A row as a JSON object (dead-letter store, error messages). A row
/// serde_json cannot hold as a value (a JSON column nested deeper than its
/// 128 levels) is kept as its text, a JSON string, rather than lost.
pub fn row_to_json(schema: &TableSchema, row: &Row) -> serde_json::Value {
    let mut text = String::new();
    write_row(&mut text, schema, row);
    parsed_or_text(text)
}

/// One value as JSON, as `row_to_json` keeps it: its text when serde_json
/// cannot hold it as a value.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    let mut text = String::new();
    write_value(&mut text, value);
    parsed_or_text(text)
}

fn parsed_or_text(text: String) -> serde_json::Value {
    match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(_) => serde_json::Value::String(text),
    }
}

/// Reads the JSON text of one field as a value of type `t`. A JSON column
/// keeps the field's exact text.
pub fn value_from_json(raw: &RawValue, t: &DataType) -> Result<Value, ValueError> {
    let text = raw.get();
    if text == "null" {
        return Ok(Value::Null);
    }
    if *t == DataType::Json {
        return Ok(Value::Json(text.to_string()));
    }
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ValueError(format!("invalid JSON: {e}")))?;
    let wrong = || ValueError(format!("JSON {text} is not a valid {t}"));
    match (&json, t) {
        (serde_json::Value::Bool(b), DataType::Bool) => Ok(Value::Bool(*b)),
        (serde_json::Value::Number(n), DataType::Int16 | DataType::Int32 | DataType::Int64) => {
            Value::Int(n.as_i64().ok_or_else(wrong)?).checked(t)
        }
        (serde_json::Value::Number(n), DataType::Float32 | DataType::Float64) => {
            Ok(Value::Float(n.as_f64().ok_or_else(wrong)?))
        }
        (serde_json::Value::Number(_), DataType::Decimal { .. } | DataType::Text { .. }) => {
            Value::parse_text(text, t)
        }
        (serde_json::Value::Bool(_), DataType::Text { .. }) => Ok(Value::Text(text.to_string())),
        // `\x` and hex as PostgreSQL prints bytes (no base64 starts so).
        (serde_json::Value::String(s), DataType::Bytes) if s.starts_with("\\x") => {
            Value::parse_text(s, t)
        }
        (serde_json::Value::String(s), DataType::Bytes) => Ok(Value::Bytes(
            BASE64
                .decode(s)
                .map_err(|e| ValueError(format!("invalid base64: {e}")))?,
        )),
        (serde_json::Value::String(s), _) => Value::parse_text(s, t),
        _ => Err(wrong()),
    }
}

/// The type a JSON field suggests, for files without a declared schema.
pub fn infer_type(raw: &RawValue) -> Option<DataType> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'n' => None,
        b't' | b'f' => Some(DataType::Bool),
        b'{' | b'[' => Some(DataType::Json),
        b'"' => {
            let s: String = serde_json::from_str(text).ok()?;
            Some(super::infer::infer_text_type(&s))
        }
        _ if text.contains(['.', 'e', 'E']) => Some(DataType::Float64),
        _ if text.parse::<i64>().is_ok() => Some(DataType::Int64),
        _ => Some(DataType::Float64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_json(text: &str, t: &str) -> Value {
        let t: DataType = t.parse().unwrap();
        let v = Value::parse_text(text, &t).unwrap();
        let mut json = String::new();
        write_value(&mut json, &v);
        let raw: Box<RawValue> = serde_json::from_str(&json).unwrap();
        let back = value_from_json(&raw, &t).unwrap();
        assert_eq!(back, v, "{json}");
        back
    }

    #[test]
    fn every_type_round_trips_through_json() {
        through_json("true", "bool");
        through_json("-9223372036854775808", "int64");
        through_json("1.0000000000000002", "float64");
        through_json("123456789012345678901234567890.50", "decimal(40,2)");
        through_json("tab\tquote\"é😀", "text");
        through_json("\\x00fffe", "bytes");
        through_json("{\"n\": 2.50, \"a\": [1]}", "json");
        through_json("2024-02-29", "date");
        through_json("23:59:59.999999", "time");
        through_json("2024-02-29 23:59:59.000001", "timestamp");
        through_json("2024-02-29 23:59:59.000001+00:00", "timestamptz");
        through_json("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid");
    }

    /// Bytes read back in base64 or as PostgreSQL prints them.
    #[test]
    fn bytes_are_read_in_base64_or_hex() {
        let raw = |text: &str| serde_json::from_str::<Box<RawValue>>(text).unwrap();
        let bytes = Value::Bytes(vec![0, 0xff, 0x10]);
        assert_eq!(
            value_from_json(&raw(r#""AP8Q""#), &DataType::Bytes).unwrap(),
            bytes
        );
        assert_eq!(
            value_from_json(&raw(r#""\\x00ff10""#), &DataType::Bytes).unwrap(),
            bytes
        );
        assert!(value_from_json(&raw(r#""\\xzz""#), &DataType::Bytes).is_err());
    }

    #[test]
    fn json_documents_stay_on_one_line() {
        let mut out = String::new();
        write_value(&mut out, &Value::Json("{\n  \"a\": 1\n}".into()));
        assert!(!out.contains('\n'));
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn a_row_too_deep_for_serde_json_keeps_its_text() {
        let schema = TableSchema {
            name: "t".into(),
            columns: vec![
                crate::Column::new("id", DataType::Int64),
                crate::Column::new("doc", DataType::Json),
            ],
            ..Default::default()
        };
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let row = Row(vec![Value::Int(2), Value::Json(deep.clone())]);
        let kept = row_to_json(&schema, &row);
        assert_eq!(
            kept,
            serde_json::Value::String(format!("{{\"id\":2,\"doc\":{deep}}}"))
        );
        assert_eq!(
            value_to_json(&Value::Json(deep.clone())),
            serde_json::Value::String(deep)
        );
        let shallow = Row(vec![Value::Int(1), Value::Json("[[1]]".into())]);
        assert_eq!(
            row_to_json(&schema, &shallow),
            serde_json::json!({"id": 1, "doc": [[1]]})
        );
    }
}
