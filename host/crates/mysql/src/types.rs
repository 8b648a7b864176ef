//! Type mapping between MySQL / MariaDB and the model, in both directions,
//! and the conversion of values read with the binary protocol. Decoding is
//! exact or refuses the row: decimals come from their text, unsigned
//! BIGINT becomes decimal(20,0), zero dates become NULL (the documented
//! policy), a TIME beyond one day is refused with the value named.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use mysql_async::Value as My;
use uuid::Uuid;

use super::server::Server;
use dmp_model::{DataType, Decimal, Value, ValueError};

/// How a column is selected: most as they are, some through a function
/// whose text the model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadAs {
    Plain,
    /// Geometry as WKT: `ST_AsText(col)`.
    Wkt,
    /// A type the model does not know: `CAST(col AS CHAR)`.
    Text,
}

/// What a source column's values look like on the wire, beyond the model
/// type: the cases where the same wire value means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    Other,
    /// BIT(n): big-endian bytes.
    Bit,
    /// A JSON column the server validates (MySQL JSON, MariaDB's CHECK
    /// json_valid): no need to parse it again.
    TrustedJson,
    /// ENUM and SET: text values that sort by their declaration index.
    Ordinal,
}

/// A MySQL column type as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Mapped {
    pub(super) data_type: DataType,
    pub(super) enum_values: Option<Vec<String>>,
    pub(super) read: ReadAs,
    pub(super) wire: Wire,
    /// Why the column is read in a lossy or unusual way, for a warning.
    pub(super) note: Option<&'static str>,
}

impl Mapped {
    fn new(data_type: DataType) -> Self {
        Mapped {
            data_type,
            enum_values: None,
            read: ReadAs::Plain,
            wire: Wire::Other,
            note: None,
        }
    }
}

/// Sizes in parentheses: `decimal(10,2)` → [10, 2]; `enum(…)` has none.
fn sizes(column_type: &str) -> Vec<u32> {
    column_type
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(args, _)| {
            args.split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The labels of `enum('a','b''c')` or `set(…)`, unquoted.
pub(super) fn enum_labels(column_type: &str) -> Vec<String> {
    let Some(start) = column_type.find('(') else {
        return Vec::new();
    };
    let body = &column_type[start + 1..];
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => match chars.next() {
                    Some('\\') | None => label.push('\\'),
                    Some(other) => label.push(other),
                },
                c => label.push(c),
            }
        }
        labels.push(label);
    }
    labels
}

/// The model type of a column from `DATA_TYPE` and `COLUMN_TYPE` of
/// `information_schema.COLUMNS`; `json_check` says a MariaDB text column
/// carries `CHECK (json_valid(col))`.
pub(super) fn model_type(data_type: &str, column_type: &str, json_check: bool) -> Mapped {
    let base = data_type.trim().to_ascii_lowercase();
    let full = column_type.trim().to_ascii_lowercase();
    let unsigned = full.contains("unsigned");
    let sizes = sizes(&full);
    let first = sizes.first().copied();
    let text = |max_len| Mapped::new(DataType::Text { max_len });
    match base.as_str() {
        "tinyint" if first == Some(1) => Mapped::new(DataType::Bool),
        "tinyint" => Mapped::new(DataType::Int16),
        "smallint" if unsigned => Mapped::new(DataType::Int32),
        "smallint" => Mapped::new(DataType::Int16),
        "mediumint" => Mapped::new(DataType::Int32),
        "int" | "integer" if unsigned => Mapped::new(DataType::Int64),
        "int" | "integer" => Mapped::new(DataType::Int32),
        "bigint" if unsigned => Mapped::new(DataType::Decimal {
            precision: Some(20),
            scale: Some(0),
        }),
        "bigint" => Mapped::new(DataType::Int64),
        "decimal" | "numeric" | "dec" | "fixed" => Mapped::new(DataType::Decimal {
            precision: Some(first.and_then(|p| u16::try_from(p).ok()).unwrap_or(10)),
            scale: Some(
                sizes
                    .get(1)
                    .and_then(|s| u16::try_from(*s).ok())
                    .unwrap_or(0),
            ),
        }),
        "float" => Mapped::new(DataType::Float32),
        "double" | "real" | "double precision" => Mapped::new(DataType::Float64),
        "bit" => Mapped {
            wire: Wire::Bit,
            ..Mapped::new(if first.unwrap_or(1) == 1 {
                DataType::Bool
            } else {
                DataType::Int64
            })
        },
        "char" | "varchar" => text(first),
        "tinytext" | "text" | "mediumtext" | "longtext" if json_check => Mapped {
            wire: Wire::TrustedJson,
            ..Mapped::new(DataType::Json)
        },
        "tinytext" | "text" | "mediumtext" | "longtext" => text(None),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            Mapped::new(DataType::Bytes)
        }
        "json" => Mapped {
            wire: Wire::TrustedJson,
            ..Mapped::new(DataType::Json)
        },
        "date" => Mapped::new(DataType::Date),
        "time" => Mapped::new(DataType::Time),
        "datetime" => Mapped::new(DataType::Timestamp),
        "timestamp" => Mapped::new(DataType::TimestampTz),
        "year" => Mapped::new(DataType::Int16),
        "enum" => {
            let labels = enum_labels(column_type);
            let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
            Mapped {
                enum_values: Some(labels),
                wire: Wire::Ordinal,
                ..text(Some(u32::try_from(longest).unwrap_or(u32::MAX)))
            }
        }
        "set" => Mapped {
            wire: Wire::Ordinal,
            ..text(None)
        },
        "uuid" => Mapped::new(DataType::Uuid),
        "inet4" | "inet6" => Mapped {
            read: ReadAs::Text,
            ..text(None)
        },
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => Mapped {
            read: ReadAs::Wkt,
            note: Some("geometry read as WKT text"),
            ..text(None)
        },
        _ => Mapped {
            read: ReadAs::Text,
            note: Some("type unknown to DMP, read as text"),
            ..text(None)
        },
    }
}

/// A decoded cell: a value, or a zero date the policy turns into NULL
/// (the caller warns once per column).
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    Value(Value),
    ZeroDate,
}

/// How the server prints a TIME value, for messages.
fn time_text(negative: bool, days: u32, h: u8, m: u8, s: u8, micros: u32) -> String {
    let hours = u64::from(days) * 24 + u64::from(h);
    let sign = if negative { "-" } else { "" };
    if micros == 0 {
        format!("{sign}{hours:02}:{m:02}:{s:02}")
    } else {
        format!("{sign}{hours:02}:{m:02}:{s:02}.{micros:06}")
    }
}

fn big_endian(bytes: &[u8]) -> Result<u64, ValueError> {
    if bytes.len() > 8 {
        return Err(ValueError(format!("a BIT value of {} bytes", bytes.len())));
    }
    Ok(bytes.iter().fold(0u64, |n, b| n << 8 | u64::from(*b)))
}

/// Fits a decimal read from the server to the model type: MySQL prints the
/// column's scale; an override (`dmp:decimal(p,s)`) may ask for another
/// one, which must not cut digits, and an unconstrained decimal loses the
/// zeros the server padded it with.
fn decimal(text: &str, t: &DataType) -> Result<Value, ValueError> {
    let d: Decimal = text.parse().map_err(ValueError)?;
    let d = match t {
        DataType::Decimal {
            scale: Some(s),
            precision: Some(_),
        } => d
            .rescale(usize::from(*s))
            .ok_or_else(|| ValueError(format!("{text} does not fit type {t} without rounding")))?,
        DataType::Decimal { .. } if d.scale() > 0 => {
            let trimmed = d.as_str().trim_end_matches('0').trim_end_matches('.');
            trimmed.parse().map_err(ValueError)?
        }
        _ => d,
    };
    Ok(Value::Decimal(d))
}

/// A cell the column's type cannot hold: why, and the cell as it was.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) error: ValueError,
    pub(super) raw: serde_json::Value,
}

/// Decodes one cell of a binary-protocol row into the column's model type.
/// Strings are moved, not copied; a refused cell comes back as raw JSON.
pub(super) fn decode(cell: My, t: &DataType, wire: Wire) -> Result<Decoded, Refused> {
    match cell {
        My::Bytes(bytes) => decode_bytes(bytes, t, wire).map(Decoded::Value),
        other => decode_scalar(&other, t).map_err(|error| Refused {
            raw: raw_json(&other),
            error,
        }),
    }
}

fn hex_json(bytes: &[u8]) -> serde_json::Value {
    format!("\\x{}", dmp_model::encode_hex(bytes)).into()
}

fn decode_bytes(bytes: Vec<u8>, t: &DataType, wire: Wire) -> Result<Value, Refused> {
    let refuse = |error: ValueError, bytes: &[u8]| Refused {
        raw: std::str::from_utf8(bytes).map_or_else(|_| hex_json(bytes), |s| s.into()),
        error,
    };
    match t {
        DataType::Bytes => return Ok(Value::Bytes(bytes)),
        DataType::Bool if wire == Wire::Bit => {
            return match big_endian(&bytes) {
                Ok(0) => Ok(Value::Bool(false)),
                Ok(1) => Ok(Value::Bool(true)),
                Ok(n) => Err(refuse(
                    ValueError(format!("BIT value {n} is not a boolean")),
                    &bytes,
                )),
                Err(e) => Err(refuse(e, &bytes)),
            };
        }
        DataType::Int16 | DataType::Int32 | DataType::Int64 if wire == Wire::Bit => {
            let n = big_endian(&bytes).map_err(|e| refuse(e, &bytes))?;
            return i64::try_from(n)
                .map_err(|_| ValueError(format!("BIT value {n} does not fit type {t}")))
                .and_then(|i| Value::Int(i).checked(t))
                .map_err(|e| refuse(e, &bytes));
        }
        DataType::Uuid if bytes.len() == 16 => {
            return Uuid::from_slice(&bytes)
                .map(Value::Uuid)
                .map_err(|e| refuse(ValueError(format!("invalid uuid: {e}")), &bytes));
        }
        _ => {}
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let error = ValueError(format!(
            "invalid UTF-8 in text at byte {}",
            e.utf8_error().valid_up_to()
        ));
        Refused {
            raw: hex_json(e.as_bytes()),
            error,
        }
    })?;
    let parsed = match t {
        DataType::Text { .. } => return Ok(Value::Text(text)),
        DataType::Json if wire == Wire::TrustedJson => return Ok(Value::Json(text)),
        DataType::Decimal { .. } => decimal(&text, t),
        // Values of another type than the column's (a `dmp:` comment):
        // through their text form.
        _ => Value::parse_text(&text, t),
    };
    parsed.map_err(|error| Refused {
        raw: text.into(),
        error,
    })
}

/// Decodes a cell that is not a string (numbers, dates, times: no heap
/// data, so the clone below copies a few bytes).
fn decode_scalar(cell: &My, t: &DataType) -> Result<Decoded, ValueError> {
    let value = match (cell.clone(), t) {
        (My::NULL, _) => Value::Null,
        (My::Int(i), DataType::Bool) if i == 0 || i == 1 => Value::Bool(i == 1),
        (My::UInt(u), DataType::Bool) if u <= 1 => Value::Bool(u == 1),
        (My::Int(i), DataType::Bool) => {
            return Err(ValueError(format!("{i} is not a boolean (0 or 1)")));
        }
        (My::UInt(u), DataType::Bool) => {
            return Err(ValueError(format!("{u} is not a boolean (0 or 1)")));
        }
        (My::Int(i), DataType::Int16 | DataType::Int32 | DataType::Int64) => {
            Value::Int(i).checked(t)?
        }
        (My::UInt(u), DataType::Int16 | DataType::Int32 | DataType::Int64) => {
            let i =
                i64::try_from(u).map_err(|_| ValueError(format!("{u} does not fit type {t}")))?;
            Value::Int(i).checked(t)?
        }
        (My::Float(f), DataType::Float32 | DataType::Float64) => Value::Float(f64::from(f)),
        (My::Double(f), DataType::Float32 | DataType::Float64) => Value::Float(f),
        (My::Int(i), DataType::Decimal { .. }) => decimal(&i.to_string(), t)?,
        (My::UInt(u), DataType::Decimal { .. }) => decimal(&u.to_string(), t)?,
        (My::Date(y, m, d, ..), DataType::Date | DataType::Timestamp | DataType::TimestampTz)
            if y == 0 || m == 0 || d == 0 =>
        {
            return Ok(Decoded::ZeroDate);
        }
        (My::Date(y, m, d, hh, mm, ss, us), DataType::Date) => {
            if (hh, mm, ss, us) != (0, 0, 0, 0) {
                return Err(ValueError(format!(
                    "date {y:04}-{m:02}-{d:02} has a time of day"
                )));
            }
            Value::Date(date(y, m, d)?)
        }
        (My::Date(y, m, d, hh, mm, ss, us), DataType::Timestamp) => {
            Value::Timestamp(datetime(y, m, d, hh, mm, ss, us)?)
        }
        (My::Date(y, m, d, hh, mm, ss, us), DataType::TimestampTz) => {
            // The session's time_zone is UTC: the server converted already.
            Value::TimestampTz(datetime(y, m, d, hh, mm, ss, us)?.and_utc())
        }
        (My::Time(neg, days, h, m, s, us), DataType::Time) => {
            if neg || days > 0 {
                return Err(ValueError(format!(
                    "time {} is outside 00:00:00–23:59:59.999999",
                    time_text(neg, days, h, m, s, us)
                )));
            }
            Value::Time(
                NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(m), u32::from(s), us)
                    .ok_or_else(|| {
                        ValueError(format!(
                            "time {} is not valid",
                            time_text(neg, days, h, m, s, us)
                        ))
                    })?,
            )
        }
        (My::Int(i), t) => Value::parse_text(&i.to_string(), t)?,
        (My::UInt(u), t) => Value::parse_text(&u.to_string(), t)?,
        (My::Double(f), DataType::Text { .. }) => Value::Text(f.to_string()),
        (My::Float(f), DataType::Text { .. }) => Value::Text(f.to_string()),
        (My::Date(y, m, d, hh, mm, ss, us), DataType::Text { .. }) => Value::Text(
            datetime(y, m, d, hh, mm, ss, us)
                .map(|ts| Value::Timestamp(ts).to_text())
                .unwrap_or_else(|_| format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")),
        ),
        (My::Time(neg, days, h, m, s, us), DataType::Text { .. }) => {
            Value::Text(time_text(neg, days, h, m, s, us))
        }
        (cell, t) => {
            return Err(ValueError(format!(
                "a MySQL {} value cannot be read as {t}",
                kind(&cell)
            )));
        }
    };
    Ok(Decoded::Value(value))
}

fn kind(cell: &My) -> &'static str {
    match cell {
        My::NULL => "NULL",
        My::Bytes(_) => "string",
        My::Int(_) | My::UInt(_) => "integer",
        My::Float(_) | My::Double(_) => "floating point",
        My::Date(..) => "date",
        My::Time(..) => "time",
    }
}

fn date(y: u16, m: u8, d: u8) -> Result<NaiveDate, ValueError> {
    NaiveDate::from_ymd_opt(i32::from(y), u32::from(m), u32::from(d))
        .ok_or_else(|| ValueError(format!("date {y:04}-{m:02}-{d:02} does not exist")))
}

fn datetime(
    y: u16,
    m: u8,
    d: u8,
    hh: u8,
    mm: u8,
    ss: u8,
    us: u32,
) -> Result<NaiveDateTime, ValueError> {
    let time = NaiveTime::from_hms_micro_opt(u32::from(hh), u32::from(mm), u32::from(ss), us)
        .ok_or_else(|| ValueError(format!("time {hh:02}:{mm:02}:{ss:02} does not exist")))?;
    Ok(date(y, m, d)?.and_time(time))
}

/// A raw cell as JSON, for dead-lettering a row that did not decode.
pub(super) fn raw_json(cell: &My) -> serde_json::Value {
    match cell {
        My::NULL => serde_json::Value::Null,
        My::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => s.into(),
            Err(_) => hex_json(b),
        },
        My::Int(i) => (*i).into(),
        My::UInt(u) => (*u).into(),
        My::Float(f) => f64::from(*f).into(),
        My::Double(f) => (*f).into(),
        My::Date(y, m, d, hh, mm, ss, us) => {
            format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{us:06}").into()
        }
        My::Time(neg, days, h, m, s, us) => time_text(*neg, *days, *h, *m, *s, *us).into(),
    }
}

/// A model value as a statement parameter (chunk bounds, INSERTs).
pub(super) fn to_param(value: &Value) -> My {
    match value {
        Value::Null => My::NULL,
        Value::Bool(b) => My::Int(i64::from(*b)),
        Value::Int(i) => My::Int(*i),
        Value::Float(f) => My::Double(*f),
        Value::Decimal(d) => My::Bytes(d.as_str().as_bytes().to_vec()),
        Value::Text(s) | Value::Json(s) => My::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => My::Bytes(b.clone()),
        Value::Date(d) => date_param(*d, NaiveTime::MIN),
        Value::Time(t) => My::Time(
            false,
            0,
            narrow(t.hour()),
            narrow(t.minute()),
            narrow(t.second()),
            t.nanosecond() / 1000,
        ),
        Value::Timestamp(ts) => date_param(ts.date(), ts.time()),
        Value::TimestampTz(ts) => {
            let ts = ts.naive_utc();
            date_param(ts.date(), ts.time())
        }
        Value::Uuid(u) => My::Bytes(u.hyphenated().to_string().into_bytes()),
    }
}

fn narrow(n: u32) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

fn date_param(d: NaiveDate, t: NaiveTime) -> My {
    My::Date(
        u16::try_from(d.year()).unwrap_or(0),
        narrow(d.month()),
        narrow(d.day()),
        narrow(t.hour()),
        narrow(t.minute()),
        narrow(t.second()),
        t.nanosecond() / 1000,
    )
}

/// The column type the target creates for a model type. `key_chars` is set
/// for a column that is part of the primary key or an index: MySQL cannot
/// index LONGTEXT/LONGBLOB, so such columns get a bounded type of at most
/// that many characters.
pub(super) fn target_type(
    t: &DataType,
    enum_values: Option<&[String]>,
    key_chars: Option<u32>,
    server: Server,
) -> String {
    if let (DataType::Text { .. }, Some(labels)) = (t, enum_values)
        && !labels.is_empty()
    {
        let labels: Vec<String> = labels.iter().map(|l| super::sql::literal(l)).collect();
        return format!("enum({})", labels.join(","));
    }
    match *t {
        DataType::Bool => "tinyint(1)".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal {
            precision: Some(p),
            scale,
        } if p <= 65 && scale.unwrap_or(0) <= 30 => format!("decimal({p},{})", scale.unwrap_or(0)),
        DataType::Decimal { .. } => "decimal(65,30)".into(),
        DataType::Text { max_len } => match (max_len, key_chars) {
            (Some(n), Some(k)) => format!("varchar({})", n.min(k)),
            (None, Some(k)) => format!("varchar({k})"),
            (Some(n), None) if n <= 1024 => format!("varchar({n})"),
            _ => "longtext".into(),
        },
        DataType::Bytes => match key_chars {
            Some(k) => format!("varbinary({})", k.saturating_mul(4)),
            None => "longblob".into(),
        },
        DataType::Json => "json".into(),
        DataType::Date => "date".into(),
        DataType::Time => "time(6)".into(),
        DataType::Timestamp | DataType::TimestampTz => "datetime(6)".into(),
        DataType::Uuid if server.has_uuid_type() => "uuid".into(),
        DataType::Uuid => "char(36)".into(),
    }
}

/// The `dmp:<type>` comment a created column needs so that discovery
/// reads it back as `t`: set where the MySQL type alone says something
/// else (timestamptz as DATETIME, uuid as CHAR(36), wide decimals, long
/// bounded texts).
pub(super) fn type_comment(
    t: &DataType,
    enum_values: Option<&[String]>,
    created: &str,
) -> Option<String> {
    let base = created.split('(').next().unwrap_or(created);
    let mapped = model_type(base, created, base == "json");
    let same_enum = enum_values
        .filter(|v| !v.is_empty())
        .map(<[String]>::to_vec)
        == mapped.enum_values;
    if mapped.data_type == *t && (same_enum || mapped.enum_values.is_none()) {
        None
    } else {
        Some(format!("dmp:{t}"))
    }
}

/// A constant default from `COLUMN_DEFAULT`: MariaDB (10.2.7+) quotes
/// string defaults and writes NULL as the text `NULL`; MySQL gives string
/// defaults unquoted and marks expressions in `EXTRA`. Expressions
/// (`current_timestamp()`, `uuid()`) are not carried.
pub(super) fn parse_default(
    raw: Option<&str>,
    mariadb: bool,
    extra: &str,
    t: &DataType,
    wire: Wire,
) -> Option<Value> {
    let raw = raw?;
    if extra.to_ascii_uppercase().contains("DEFAULT_GENERATED") {
        return None;
    }
    let text = if let Some(bits) = raw.strip_prefix("b'").and_then(|r| r.strip_suffix('\'')) {
        // BIT defaults are shown as b'0101'.
        let n = u64::from_str_radix(bits, 2).ok()?;
        return match t {
            DataType::Bool if wire == Wire::Bit => Some(Value::Bool(n == 1)),
            _ => i64::try_from(n).ok().map(Value::Int).filter(|v| v.fits(t)),
        };
    } else if mariadb {
        if raw == "NULL" {
            return None;
        }
        match raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            Some(quoted) => unquote(quoted),
            None if looks_numeric(raw) => raw.to_string(),
            None => return None,
        }
    } else {
        let upper = raw.to_ascii_uppercase();
        if upper.starts_with("CURRENT_TIMESTAMP") || upper.starts_with("NOW(") {
            return None;
        }
        raw.to_string()
    };
    Value::parse_text(&text, t).ok()
}

fn looks_numeric(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
}

/// The text inside a MariaDB-quoted default: `''` and backslash escapes.
fn unquote(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('Z') => out.push('\u{1a}'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn t(name: &str) -> DataType {
        name.parse().unwrap()
    }

    fn mapped(data_type: &str, column_type: &str) -> DataType {
        model_type(data_type, column_type, false).data_type
    }

    #[test]
    fn mysql_types_map_to_the_model() {
        let cases = [
            ("tinyint", "tinyint(1)", "bool"),
            ("tinyint", "tinyint(4)", "int16"),
            ("tinyint", "tinyint(3) unsigned", "int16"),
            ("smallint", "smallint(6)", "int16"),
            ("smallint", "smallint(5) unsigned", "int32"),
            ("mediumint", "mediumint(8) unsigned", "int32"),
            ("int", "int(11)", "int32"),
            ("int", "int(10) unsigned", "int64"),
            ("bigint", "bigint(20)", "int64"),
            ("bigint", "bigint(20) unsigned", "decimal(20,0)"),
            ("decimal", "decimal(65,30)", "decimal(65,30)"),
            ("float", "float", "float32"),
            ("double", "double", "float64"),
            ("bit", "bit(1)", "bool"),
            ("bit", "bit(12)", "int64"),
            ("char", "char(5)", "text(5)"),
            ("varchar", "varchar(300)", "text(300)"),
            ("mediumtext", "mediumtext", "text"),
            ("varbinary", "varbinary(100)", "bytes"),
            ("longblob", "longblob", "bytes"),
            ("json", "json", "json"),
            ("date", "date", "date"),
            ("time", "time(6)", "time"),
            ("datetime", "datetime(6)", "timestamp"),
            ("timestamp", "timestamp(6)", "timestamptz"),
            ("year", "year(4)", "int16"),
            ("set", "set('a','b')", "text"),
            ("uuid", "uuid", "uuid"),
            ("inet6", "inet6", "text"),
            ("point", "point", "text"),
        ];
        for (data_type, column_type, model) in cases {
            assert_eq!(mapped(data_type, column_type), t(model), "{column_type}");
        }
        let json = model_type("longtext", "longtext", true);
        assert_eq!(json.data_type, DataType::Json);
        assert_eq!(json.wire, Wire::TrustedJson);
        let e = model_type("enum", "enum('small','it''s','a\\\\b')", false);
        assert_eq!(e.data_type, t("text(5)"));
        assert_eq!(
            e.enum_values,
            Some(vec!["small".into(), "it's".into(), "a\\b".into()])
        );
        assert_eq!(model_type("point", "point", false).read, ReadAs::Wkt);
        assert!(model_type("vector", "vector(3)", false).note.is_some());
    }

    #[test]
    fn model_types_map_to_mysql_and_back() {
        let mariadb = Server::for_tests(true, (10, 11, 0));
        let mysql = Server::for_tests(false, (8, 0, 36));
        let cases = [
            ("bool", "tinyint(1)", None),
            ("int16", "smallint", None),
            ("int32", "int", None),
            ("int64", "bigint", None),
            ("float32", "float", None),
            ("float64", "double", None),
            ("decimal(12,2)", "decimal(12,2)", None),
            ("decimal(20,0)", "decimal(20,0)", None),
            ("decimal", "decimal(65,30)", Some("dmp:decimal")),
            (
                "decimal(70,10)",
                "decimal(65,30)",
                Some("dmp:decimal(70,10)"),
            ),
            ("text(20)", "varchar(20)", None),
            ("text(1024)", "varchar(1024)", None),
            ("text(2000)", "longtext", Some("dmp:text(2000)")),
            ("text", "longtext", None),
            ("bytes", "longblob", None),
            ("json", "json", None),
            ("date", "date", None),
            ("time", "time(6)", None),
            ("timestamp", "datetime(6)", None),
            ("timestamptz", "datetime(6)", Some("dmp:timestamptz")),
            ("uuid", "uuid", None),
        ];
        for (model, ddl, comment) in cases {
            let created = target_type(&t(model), None, None, mariadb);
            assert_eq!(created, ddl, "{model}");
            assert_eq!(
                type_comment(&t(model), None, &created).as_deref(),
                comment,
                "{model}"
            );
        }
        let uuid = target_type(&t("uuid"), None, None, mysql);
        assert_eq!(uuid, "char(36)");
        assert_eq!(
            type_comment(&t("uuid"), None, &uuid).as_deref(),
            Some("dmp:uuid")
        );
        // Keys get bounded types, remembered by a comment when narrower.
        let key = target_type(&t("text"), None, Some(768), mariadb);
        assert_eq!(key, "varchar(768)");
        assert_eq!(
            type_comment(&t("text"), None, &key).as_deref(),
            Some("dmp:text")
        );
        assert_eq!(
            target_type(&t("bytes"), None, Some(768), mariadb),
            "varbinary(3072)"
        );
        assert_eq!(
            target_type(&t("text(10)"), None, Some(768), mariadb),
            "varchar(10)"
        );
        // Enums come back with their labels.
        let labels = vec!["a".to_string(), "it's".to_string()];
        let e = target_type(&t("text(4)"), Some(&labels), None, mariadb);
        assert_eq!(e, "enum('a','it''s')");
        assert_eq!(type_comment(&t("text(4)"), Some(&labels), &e), None);
        assert_eq!(
            type_comment(&t("text"), Some(&labels), &e).as_deref(),
            Some("dmp:text")
        );
    }

    fn ok(cell: My, ty: &str) -> Value {
        match decode(cell, &t(ty), Wire::Other).unwrap() {
            Decoded::Value(v) => v,
            Decoded::ZeroDate => panic!("zero date"),
        }
    }

    #[test]
    fn binary_values_decode_exactly() {
        assert_eq!(ok(My::Int(1), "bool"), Value::Bool(true));
        assert!(decode(My::Int(2), &t("bool"), Wire::Other).is_err());
        assert_eq!(ok(My::Int(-128), "int16"), Value::Int(-128));
        assert_eq!(
            ok(My::UInt(4_294_967_295), "int64"),
            Value::Int(4_294_967_295)
        );
        assert_eq!(
            ok(My::UInt(u64::MAX), "decimal(20,0)"),
            Value::Decimal("18446744073709551615".parse().unwrap())
        );
        assert_eq!(
            ok(
                My::Bytes(b"-0.000000000000000000000000000001".to_vec()),
                "decimal(65,30)"
            ),
            Value::Decimal("-0.000000000000000000000000000001".parse().unwrap())
        );
        assert_eq!(
            ok(
                My::Bytes(b"1.500000000000000000000000000000".to_vec()),
                "decimal"
            ),
            Value::Decimal("1.5".parse().unwrap())
        );
        assert_eq!(
            ok(My::Bytes(b"12.50".to_vec()), "decimal(70,2)"),
            Value::Decimal("12.50".parse().unwrap())
        );
        assert!(
            decode(
                My::Bytes(b"1.25".to_vec()),
                &t("decimal(70,1)"),
                Wire::Other
            )
            .is_err()
        );
        assert_eq!(
            ok(My::Float(3.402_82e38), "float32"),
            Value::Float(f64::from(3.402_82e38_f32))
        );
        let bits = |b: &[u8], ty: &str| decode(My::Bytes(b.to_vec()), &t(ty), Wire::Bit).unwrap();
        assert_eq!(
            bits(&[0x0f, 0xff], "int64"),
            Decoded::Value(Value::Int(4095))
        );
        assert_eq!(bits(&[1], "bool"), Decoded::Value(Value::Bool(true)));
        assert!(decode(My::Bytes(vec![0xff; 8]), &t("int64"), Wire::Bit).is_err());
        assert_eq!(
            ok(My::Bytes("😀𝄞".as_bytes().to_vec()), "text"),
            Value::Text("😀𝄞".into())
        );
        let bad = decode(My::Bytes(vec![b'a', 0xff]), &t("text"), Wire::Other).unwrap_err();
        assert!(bad.error.0.contains("UTF-8"), "{bad:?}");
        assert_eq!(bad.raw, serde_json::Value::from("\\x61ff"));
        assert_eq!(
            ok(My::Bytes(vec![0, 9, 10]), "bytes"),
            Value::Bytes(vec![0, 9, 10])
        );
        assert_eq!(
            ok(My::Date(2024, 2, 29, 0, 0, 0, 0), "date"),
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
        );
        assert_eq!(
            ok(My::Date(2038, 1, 19, 3, 14, 7, 999_999), "timestamptz"),
            Value::TimestampTz(
                "2038-01-19T03:14:07.999999Z"
                    .parse::<DateTime<Utc>>()
                    .unwrap()
            )
        );
        assert_eq!(
            decode(My::Date(0, 0, 0, 0, 0, 0, 0), &t("timestamp"), Wire::Other).unwrap(),
            Decoded::ZeroDate
        );
        assert_eq!(
            decode(My::Date(2024, 0, 1, 0, 0, 0, 0), &t("date"), Wire::Other).unwrap(),
            Decoded::ZeroDate
        );
        assert!(decode(My::Date(2024, 2, 30, 0, 0, 0, 0), &t("date"), Wire::Other).is_err());
        assert_eq!(
            ok(My::Time(false, 0, 23, 59, 59, 999_999), "time"),
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap())
        );
        let long = decode(My::Time(false, 34, 22, 59, 59, 0), &t("time"), Wire::Other).unwrap_err();
        assert!(long.error.0.contains("838:59:59"), "{long:?}");
        assert_eq!(long.raw, serde_json::Value::from("838:59:59"));
        let neg = decode(My::Time(true, 0, 1, 0, 0, 0), &t("time"), Wire::Other).unwrap_err();
        assert!(neg.error.0.contains("-01:00:00"), "{neg:?}");
        assert_eq!(
            ok(
                My::Bytes(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_vec()),
                "uuid"
            ),
            Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap())
        );
        assert_eq!(ok(My::Int(2155), "int16"), Value::Int(2155));
        assert_eq!(
            ok(My::Date(2024, 3, 10, 2, 30, 0, 123_456), "timestamp").to_text(),
            "2024-03-10 02:30:00.123456"
        );
    }

    #[test]
    fn params_carry_values_exactly() {
        let ts = Value::parse_text("2024-03-10 02:30:00.123456", &t("timestamp")).unwrap();
        assert_eq!(to_param(&ts), My::Date(2024, 3, 10, 2, 30, 0, 123_456));
        let tm = Value::parse_text("23:59:59.000001", &t("time")).unwrap();
        assert_eq!(to_param(&tm), My::Time(false, 0, 23, 59, 59, 1));
        assert_eq!(to_param(&Value::Bool(true)), My::Int(1));
        assert_eq!(
            to_param(&Value::Decimal("-1.50".parse().unwrap())),
            My::Bytes(b"-1.50".to_vec())
        );
    }

    #[test]
    fn defaults_keep_constants_only() {
        let text = t("text(20)");
        assert_eq!(
            parse_default(Some("'it''s \\\\ x'"), true, "", &text, Wire::Other),
            Some(Value::Text("it's \\ x".into()))
        );
        assert_eq!(
            parse_default(Some("NULL"), true, "", &text, Wire::Other),
            None
        );
        assert_eq!(
            parse_default(Some("NULL"), false, "", &text, Wire::Other),
            Some(Value::Text("NULL".into()))
        );
        assert_eq!(parse_default(None, true, "", &text, Wire::Other), None);
        assert_eq!(
            parse_default(
                Some("current_timestamp()"),
                true,
                "",
                &t("timestamp"),
                Wire::Other
            ),
            None
        );
        assert_eq!(
            parse_default(
                Some("CURRENT_TIMESTAMP"),
                false,
                "DEFAULT_GENERATED",
                &t("timestamp"),
                Wire::Other
            ),
            None
        );
        assert_eq!(
            parse_default(Some("1.50"), true, "", &t("decimal(5,2)"), Wire::Other),
            Some(Value::Decimal("1.50".parse().unwrap()))
        );
        assert_eq!(
            parse_default(Some("-7"), false, "", &t("int32"), Wire::Other),
            Some(Value::Int(-7))
        );
        assert_eq!(
            parse_default(Some("b'101'"), true, "", &t("int64"), Wire::Bit),
            Some(Value::Int(5))
        );
        assert_eq!(
            parse_default(Some("b'1'"), false, "", &t("bool"), Wire::Bit),
            Some(Value::Bool(true))
        );
        assert_eq!(
            parse_default(Some("1"), true, "", &t("bool"), Wire::Other),
            Some(Value::Bool(true))
        );
        // Zero dates are no value in the model.
        assert_eq!(
            parse_default(
                Some("'0000-00-00 00:00:00'"),
                true,
                "",
                &t("timestamp"),
                Wire::Other
            ),
            None
        );
        assert_eq!(
            parse_default(Some("2024-01-01"), false, "", &t("date"), Wire::Other),
            Some(Value::Date(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()))
        );
    }
}
