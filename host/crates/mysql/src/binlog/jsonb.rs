//! MySQL's binary JSON (JSONB), as row events carry JSON columns, written
//! as the text the server prints (`{"a": 1, "b": [1, 2]}`, keys in stored
//! order), which is what the snapshot reads.

use std::fmt::Write;

use mysql_async::binlog::jsonb::{JsonDom, JsonNumber, JsonScalar, Value};

pub(super) fn to_text(value: Value<'_>) -> Result<String, String> {
    let mut out = String::new();
    write(&mut out, value)?;
    Ok(out)
}

fn write(out: &mut String, value: Value<'_>) -> Result<(), String> {
    let err = |e: std::io::Error| format!("invalid JSONB: {e}");
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::I16(n) => push_display(out, n),
        Value::U16(n) => push_display(out, n),
        Value::I32(n) => push_display(out, n),
        Value::U32(n) => push_display(out, n),
        Value::I64(n) => push_display(out, n),
        Value::U64(n) => push_display(out, n),
        Value::F64(f) => push_double(out, f),
        Value::String(s) => {
            let text = std::str::from_utf8(s.str_raw())
                .map_err(|e| format!("invalid UTF-8 in a JSON string: {e}"))?;
            push_string(out, text);
        }
        Value::SmallArray(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, item.map_err(err)?)?;
            }
            out.push(']');
        }
        Value::LargeArray(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, item.map_err(err)?)?;
            }
            out.push(']');
        }
        Value::SmallObject(o) => {
            out.push('{');
            for (i, entry) in o.iter().enumerate() {
                let (key, item) = entry.map_err(err)?;
                if i > 0 {
                    out.push_str(", ");
                }
                push_string(out, &key.value());
                out.push_str(": ");
                write(out, item)?;
            }
            out.push('}');
        }
        Value::LargeObject(o) => {
            out.push('{');
            for (i, entry) in o.iter().enumerate() {
                let (key, item) = entry.map_err(err)?;
                if i > 0 {
                    out.push_str(", ");
                }
                push_string(out, &key.value());
                out.push_str(": ");
                write(out, item)?;
            }
            out.push('}');
        }
        opaque @ Value::Opaque(_) => match opaque.parse().map_err(err)? {
            JsonDom::Scalar(JsonScalar::Number(JsonNumber::Decimal(d))) => push_display(out, d),
            JsonDom::Scalar(JsonScalar::DateTime(t)) => {
                push_string(out, &format!("{t:.6}"));
            }
            JsonDom::Scalar(JsonScalar::Opaque(o)) => push_string(out, &o.to_string()),
            other => {
                return Err(format!("unexpected opaque JSON value {other:?}"));
            }
        },
    }
    Ok(())
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// Doubles keep a fraction or exponent so they read back as doubles.
fn push_double(out: &mut String, f: f64) {
    match serde_json::Number::from_f64(f) {
        Some(n) => {
            let text = n.to_string();
            out.push_str(&text);
            if f.is_finite() && !text.contains(['.', 'e', 'E']) {
                out.push_str(".0");
            }
        }
        // JSON has no NaN or infinity; MySQL refuses to store them.
        None => out.push_str("null"),
    }
}

fn push_string(out: &mut String, s: &str) {
    // serde_json's escaping is JSON's; it cannot fail on a str.
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_written_as_json() {
        assert_eq!(to_text(Value::I32(-5)).unwrap(), "-5");
        assert_eq!(to_text(Value::F64(1.0)).unwrap(), "1.0");
        assert_eq!(to_text(Value::F64(0.25)).unwrap(), "0.25");
        assert_eq!(to_text(Value::Bool(true)).unwrap(), "true");
        assert_eq!(to_text(Value::Null).unwrap(), "null");
        let mut s = String::new();
        push_string(&mut s, "a\"b\n");
        assert_eq!(s, r#""a\"b\n""#);
    }
}
