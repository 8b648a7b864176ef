//! Type mapping between SQLite declared types and the model. SQLite stores
//! any value in any column, so reads convert leniently where no precision is
//! lost and refuse the row otherwise. Decimals and JSON are declared with a
//! `_TEXT` suffix on our targets: SQLite's NUMERIC affinity would turn
//! `12.50` into the float `12.5`.

use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, ValueRef};
use uuid::Uuid;

use dmp_model::{Column, DataType, Decimal, Value, ValueError};

/// The model type for a declared SQLite column type.
pub(super) fn data_type_from_declared(declared: &str) -> DataType {
    let upper = declared.trim().to_ascii_uppercase();
    let (name, args) = match upper.split_once('(') {
        Some((name, rest)) => (
            name.trim().to_string(),
            rest.trim_end_matches(')').to_string(),
        ),
        None => (upper.clone(), String::new()),
    };
    let sizes: Vec<u32> = args
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let decimal = || DataType::Decimal {
        precision: sizes.first().and_then(|p| u16::try_from(*p).ok()),
        scale: sizes.first().map(|_| {
            sizes
                .get(1)
                .and_then(|s| u16::try_from(*s).ok())
                .unwrap_or(0)
        }),
    };
    match name.as_str() {
        "" => DataType::TEXT,
        "BOOL" | "BOOLEAN" => DataType::Bool,
        "DECIMAL_TEXT" | "DECIMAL" | "NUMERIC" | "MONEY" => decimal(),
        "JSON" | "JSONB" | "JSON_TEXT" => DataType::Json,
        "UUID" => DataType::Uuid,
        "DATE" => DataType::Date,
        "TIME" => DataType::Time,
        "DATETIME" | "TIMESTAMP" => DataType::Timestamp,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => DataType::TimestampTz,
        "SMALLINT" | "INT2" | "TINYINT" => DataType::Int16,
        "INT4" | "MEDIUMINT" => DataType::Int32,
        "FLOAT4" | "REAL4" => DataType::Float32,
        "BYTEA" => DataType::Bytes,
        _ if name.contains("INT") => DataType::Int64,
        _ if name.contains("CHAR") || name.contains("CLOB") || name.contains("TEXT") => {
            DataType::Text {
                max_len: sizes.first().copied(),
            }
        }
        _ if name.contains("BLOB") => DataType::Bytes,
        _ if name.contains("REAL") || name.contains("FLOA") || name.contains("DOUB") => {
            DataType::Float64
        }
        _ => DataType::TEXT,
    }
}

/// The declared type our SQLite target creates for a column; reading it back
/// gives the same model type.
pub(super) fn declared_type(column: &Column, rowid_alias: bool) -> String {
    match column.data_type {
        DataType::Int64 if rowid_alias => "INTEGER".into(),
        DataType::Bool => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT4".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT4".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal {
            precision: Some(p),
            scale,
        } => format!("DECIMAL_TEXT({p},{})", scale.unwrap_or(0)),
        DataType::Decimal { .. } => "DECIMAL_TEXT".into(),
        DataType::Text { max_len: Some(n) } => format!("VARCHAR({n})"),
        DataType::Text { max_len: None } => "TEXT".into(),
        DataType::Bytes => "BLOB".into(),
        DataType::Json => "JSON_TEXT".into(),
        DataType::Date => "DATE".into(),
        DataType::Time => "TIME".into(),
        DataType::Timestamp => "TIMESTAMP".into(),
        DataType::TimestampTz => "TIMESTAMPTZ".into(),
        DataType::Uuid => "UUID".into(),
    }
}

/// Converts a stored SQLite value to the column's model type.
pub(super) fn read_value(cell: ValueRef<'_>, t: &DataType) -> Result<Value, ValueError> {
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| ValueError(format!("invalid UTF-8 in text: {e}")))
    };
    match (cell, t) {
        (ValueRef::Null, _) => Ok(Value::Null),
        (ValueRef::Integer(i), DataType::Bool) => Ok(Value::Bool(i != 0)),
        (ValueRef::Integer(i), DataType::Int16 | DataType::Int32 | DataType::Int64) => {
            Value::Int(i).checked(t)
        }
        (ValueRef::Real(f), DataType::Int16 | DataType::Int32 | DataType::Int64)
            if f.fract() == 0.0 && f.abs() < 9.0e15 =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Value::Int(f as i64).checked(t)
        }
        #[allow(clippy::cast_precision_loss)]
        (ValueRef::Integer(i), DataType::Float32 | DataType::Float64) => Ok(Value::Float(i as f64)),
        (ValueRef::Real(f), DataType::Float32 | DataType::Float64) => Ok(Value::Float(f)),
        // NUMERIC affinity stored the number as an integer or a float; the
        // column's scale says how many fraction digits it was written with.
        (ValueRef::Integer(i), DataType::Decimal { scale, .. }) => {
            with_scale(i.to_string().parse().map_err(ValueError)?, *scale)
        }
        (ValueRef::Real(f), DataType::Decimal { scale, .. }) if f.is_finite() => with_scale(
            f.to_string().parse::<Decimal>().map_err(ValueError)?,
            *scale,
        ),
        (ValueRef::Integer(i), DataType::Text { .. } | DataType::Json) => {
            Value::parse_text(&i.to_string(), t)
        }
        (ValueRef::Real(f), DataType::Text { .. } | DataType::Json) => {
            Value::parse_text(&f.to_string(), t)
        }
        (ValueRef::Text(b) | ValueRef::Blob(b), DataType::Text { .. }) => Ok(Value::Text(text(b)?)),
        (ValueRef::Blob(b), DataType::Bytes) => Ok(Value::Bytes(b.to_vec())),
        (ValueRef::Text(b), DataType::Bytes) => Ok(Value::Bytes(b.to_vec())),
        (ValueRef::Blob(b), DataType::Uuid) if b.len() == 16 => Uuid::from_slice(b)
            .map(Value::Uuid)
            .map_err(|e| ValueError(e.to_string())),
        (ValueRef::Integer(secs), DataType::Timestamp | DataType::TimestampTz) => {
            let ts = chrono::DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| ValueError(format!("unix time {secs} is out of range")))?;
            Ok(if *t == DataType::Timestamp {
                Value::Timestamp(ts.naive_utc())
            } else {
                Value::TimestampTz(ts)
            })
        }
        (ValueRef::Text(b), _) => Value::parse_text(&text(b)?, t),
        (cell, t) => Err(ValueError(format!(
            "a stored {} cannot be read as {t}",
            match cell.data_type() {
                rusqlite::types::Type::Null => "null",
                rusqlite::types::Type::Integer => "integer",
                rusqlite::types::Type::Real => "real",
                rusqlite::types::Type::Text => "text",
                rusqlite::types::Type::Blob => "blob",
            }
        ))),
    }
}

fn with_scale(d: Decimal, scale: Option<u16>) -> Result<Value, ValueError> {
    Ok(Value::Decimal(match scale {
        Some(s) => d.rescale(usize::from(s)).unwrap_or(d),
        None => d,
    }))
}

/// A stored value as JSON, for dead-lettering a row that did not decode.
pub(super) fn raw_json(cell: ValueRef<'_>) -> serde_json::Value {
    match cell {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => f.into(),
        ValueRef::Text(b) => String::from_utf8_lossy(b).into_owned().into(),
        ValueRef::Blob(b) => format!("\\x{}", dmp_model::encode_hex(b)).into(),
    }
}

/// Binds a model value to a statement parameter without copying text.
pub(super) struct Bind<'a>(pub &'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Decimal(d) => ToSqlOutput::Borrowed(ValueRef::Text(d.as_str().as_bytes())),
            Value::Text(s) | Value::Json(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            other => ToSqlOutput::Owned(rusqlite::types::Value::Text(other.to_text())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_read_back_as_written() {
        let all = [
            "bool",
            "int16",
            "int32",
            "int64",
            "float32",
            "float64",
            "decimal(12,3)",
            "decimal",
            "text(40)",
            "text",
            "bytes",
            "json",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "uuid",
        ];
        for name in all {
            let t: DataType = name.parse().unwrap();
            let declared = declared_type(&Column::new("c", t), false);
            assert_eq!(data_type_from_declared(&declared), t, "{declared}");
        }
        assert_eq!(data_type_from_declared("INTEGER"), DataType::Int64);
        assert_eq!(
            data_type_from_declared("varchar(20)"),
            DataType::Text { max_len: Some(20) }
        );
        assert_eq!(
            data_type_from_declared("NUMERIC(10, 2)"),
            DataType::Decimal {
                precision: Some(10),
                scale: Some(2)
            }
        );
    }

    #[test]
    fn lenient_reads_never_lose_precision() {
        assert_eq!(
            read_value(ValueRef::Real(3.0), &DataType::Int64),
            Ok(Value::Int(3))
        );
        assert!(read_value(ValueRef::Real(3.5), &DataType::Int64).is_err());
        assert!(read_value(ValueRef::Integer(40_000), &DataType::Int16).is_err());
        assert!(read_value(ValueRef::Text(b"abc"), &DataType::Int64).is_err());
        assert!(read_value(ValueRef::Text(b"\xff"), &DataType::TEXT).is_err());
        assert_eq!(
            read_value(ValueRef::Real(12.5), &"decimal(5,2)".parse().unwrap()),
            Ok(Value::Decimal("12.50".parse().unwrap()))
        );
    }
}
