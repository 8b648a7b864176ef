//! One cell. Values are exact: decimals are text, timestamps keep
//! microseconds, JSON keeps its text, bytes are bytes.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DataType, Decimal, temporal};

/// A single value. Integer widths and float precision live in the column's
/// [`DataType`]; the value carries the widest representation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    /// NaN and ±Infinity are stored as the strings `"NaN"`, `"Infinity"`,
    /// `"-Infinity"` (JSON has no such numbers), so stored plans and
    /// positions keep them.
    #[serde(with = "float_repr")]
    Float(f64),
    Decimal(Decimal),
    Text(String),
    Bytes(Vec<u8>),
    /// Valid JSON, kept as the exact text it arrived as.
    Json(String),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Uuid(Uuid),
}

/// Why a value does not fit a type. The caller adds table, column and row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

const DATE_FORMAT: &str = "%Y-%m-%d";
const TIME_FORMAT: &str = "%H:%M:%S%.f";

/// Drops sub-microsecond digits: the model's resolution is one microsecond.
fn micros<T: Timelike>(t: T) -> T {
    let nanos = t.nanosecond();
    t.with_nanosecond(nanos - nanos % 1000).unwrap_or(t)
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether the value can be stored in a column of type `t` as it is.
    pub fn fits(&self, t: &DataType) -> bool {
        match (self, t) {
            (Value::Null, _) => true,
            (Value::Bool(_), DataType::Bool) => true,
            (Value::Int(i), DataType::Int16) => i16::try_from(*i).is_ok(),
            (Value::Int(i), DataType::Int32) => i32::try_from(*i).is_ok(),
            (Value::Int(_), DataType::Int64) => true,
            (Value::Float(_), DataType::Float32 | DataType::Float64) => true,
            (Value::Decimal(_), DataType::Decimal { .. }) => true,
            (Value::Text(_), DataType::Text { .. }) => true,
            (Value::Bytes(_), DataType::Bytes) => true,
            (Value::Json(_), DataType::Json) => true,
            (Value::Date(_), DataType::Date) => true,
            (Value::Time(_), DataType::Time) => true,
            (Value::Timestamp(_), DataType::Timestamp) => true,
            (Value::TimestampTz(_), DataType::TimestampTz) => true,
            (Value::Uuid(_), DataType::Uuid) => true,
            _ => false,
        }
    }

    /// Parses the text form of a value of type `t` (as found in CSV files,
    /// SQLite text cells and JSON strings).
    pub fn parse_text(text: &str, t: &DataType) -> Result<Value, ValueError> {
        let bad = |what: &str| ValueError(format!("`{}` is not a valid {what}", shorten(text)));
        let trimmed = text.trim();
        Ok(match t {
            DataType::Bool => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" => Value::Bool(true),
                "false" | "f" | "0" | "no" | "n" => Value::Bool(false),
                _ => return Err(bad("boolean")),
            },
            DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                let i: i64 = trimmed.parse().map_err(|_| bad(&t.to_string()))?;
                Value::Int(i).checked(t)?
            }
            DataType::Float32 | DataType::Float64 => {
                Value::Float(trimmed.parse().map_err(|_| bad("floating point number"))?)
            }
            DataType::Decimal { .. } => Value::Decimal(trimmed.parse().map_err(ValueError)?),
            DataType::Text { .. } => Value::Text(text.to_string()),
            DataType::Bytes => match text.strip_prefix("\\x") {
                Some(hex) => Value::Bytes(decode_hex(hex).ok_or_else(|| bad("hex byte string"))?),
                None => Value::Bytes(text.as_bytes().to_vec()),
            },
            DataType::Json => {
                serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .map_err(|e| ValueError(format!("invalid JSON: {e}")))?;
                Value::Json(text.to_string())
            }
            DataType::Date => Value::Date(
                temporal::parse_date(trimmed)
                    .or_else(|| NaiveDate::parse_from_str(trimmed, DATE_FORMAT).ok())
                    .ok_or_else(|| bad("date"))?,
            ),
            DataType::Time => Value::Time(micros(
                temporal::parse_time(trimmed)
                    .or_else(|| NaiveTime::parse_from_str(trimmed, TIME_FORMAT).ok())
                    .ok_or_else(|| bad("time"))?,
            )),
            DataType::Timestamp => Value::Timestamp(micros(
                parse_timestamp(trimmed).ok_or_else(|| bad("timestamp"))?,
            )),
            DataType::TimestampTz => Value::TimestampTz(micros(
                parse_timestamptz(trimmed).ok_or_else(|| bad("timestamp with time zone"))?,
            )),
            DataType::Uuid => Value::Uuid(Uuid::parse_str(trimmed).map_err(|_| bad("uuid"))?),
        })
    }

    /// Returns the value if it fits `t`, else an error naming the type.
    pub fn checked(self, t: &DataType) -> Result<Value, ValueError> {
        if self.fits(t) {
            Ok(self)
        } else {
            Err(ValueError(format!(
                "{} does not fit type {t}",
                shorten(&self.to_text())
            )))
        }
    }

    /// The canonical text form: what CSV files and SQLite text cells hold.
    /// `parse_text(v.to_text(), t) == v` for every value of type `t`.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Decimal(d) => d.to_string(),
            Value::Text(s) | Value::Json(s) => s.clone(),
            Value::Bytes(b) => format!("\\x{}", encode_hex(b)),
            Value::Date(d) => {
                let mut out = String::with_capacity(10);
                temporal::write_date(&mut out, *d);
                out
            }
            Value::Time(t) => {
                let mut out = String::with_capacity(15);
                temporal::write_time(&mut out, *t);
                out
            }
            Value::Timestamp(ts) => {
                let mut out = String::with_capacity(26);
                temporal::write_datetime(&mut out, *ts, ' ');
                out
            }
            Value::TimestampTz(ts) => {
                let mut out = String::with_capacity(32);
                temporal::write_datetime(&mut out, ts.naive_utc(), ' ');
                out.push_str("+00:00");
                out
            }
            Value::Uuid(u) => u.to_string(),
        }
    }

    /// Name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Json(_) => "json",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Uuid(_) => "uuid",
        }
    }
}

/// Accepts `2024-01-02 03:04:05[.ffffff]`, with `T` instead of the space, or
/// a date alone (midnight).
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    if let Some(ts) = temporal::parse_datetime(text) {
        return Some(ts);
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, DATE_FORMAT)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// Accepts RFC 3339 and the SQL form with a space; an offset (`+02:00`,
/// `+0200`, `+02` or `Z`) is required, since guessing a zone corrupts data.
pub fn parse_timestamptz(text: &str) -> Option<DateTime<Utc>> {
    // The canonical form: UTC written as `+00:00` or `Z`.
    let utc = text
        .strip_suffix("+00:00")
        .or_else(|| text.strip_suffix('Z'));
    if let Some(ts) = utc.and_then(temporal::parse_datetime) {
        return Some(ts.and_utc());
    }
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Some(ts.with_timezone(&Utc));
    }
    let normalized = text.replacen(' ', "T", 1);
    let normalized = match normalized.strip_suffix('Z') {
        Some(rest) => format!("{rest}+00:00"),
        None => normalized,
    };
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(ts) = DateTime::parse_from_str(&normalized, format) {
            return Some(ts.with_timezone(&Utc));
        }
    }
    None
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str, t: &str) -> String {
        let t: DataType = t.parse().unwrap();
        let v = Value::parse_text(text, &t).expect(text);
        let back = v.to_text();
        assert_eq!(Value::parse_text(&back, &t).unwrap(), v, "{text} as {t}");
        back
    }

    #[test]
    fn text_forms_round_trip_exactly() {
        assert_eq!(
            round_trip("2024-02-29 23:59:59.123456", "timestamp"),
            "2024-02-29 23:59:59.123456"
        );
        assert_eq!(
            round_trip("2024-02-29T23:59:59", "timestamp"),
            "2024-02-29 23:59:59"
        );
        assert_eq!(
            round_trip("2024-02-29T23:59:59.5+02:00", "timestamptz"),
            "2024-02-29 21:59:59.500+00:00"
        );
        assert_eq!(
            round_trip("2024-01-01 00:00:00Z", "timestamptz"),
            "2024-01-01 00:00:00+00:00"
        );
        assert_eq!(round_trip("07:08:09.000001", "time"), "07:08:09.000001");
        assert_eq!(round_trip("-32768", "int16"), "-32768");
        assert_eq!(round_trip("0.1", "float64"), "0.1");
        assert_eq!(round_trip("\\x00ff10", "bytes"), "\\x00ff10");
        assert_eq!(
            round_trip("{\"a\": [1, 2.50]}", "json"),
            "{\"a\": [1, 2.50]}"
        );
        assert_eq!(round_trip("t", "bool"), "true");
        assert_eq!(round_trip("  héllo ", "text"), "  héllo ");
    }

    #[test]
    fn bad_text_is_explained() {
        let err = Value::parse_text("70000", &DataType::Int16).unwrap_err();
        assert_eq!(err.to_string(), "70000 does not fit type int16");
        let err = Value::parse_text("2024-13-01", &DataType::Date).unwrap_err();
        assert!(err.to_string().contains("not a valid date"));
        assert!(Value::parse_text("2024-01-01 10:00:00", &DataType::TimestampTz).is_err());
        assert!(Value::parse_text("{", &DataType::Json).is_err());
    }

    #[test]
    fn nanoseconds_are_cut_to_microseconds() {
        let v = Value::parse_text("2024-01-01 00:00:00.123456789", &DataType::Timestamp).unwrap();
        assert_eq!(v.to_text(), "2024-01-01 00:00:00.123456");
    }
}

/// Serde form of a float cell that survives JSON: finite values as numbers,
/// the others as their names.
mod float_repr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if value.is_infinite() {
            serializer.serialize_str(if *value > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            })
        } else {
            serializer.serialize_f64(*value)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Name(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => Ok(n),
            Repr::Name(name) => match name.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not a float (expected a number, NaN, Infinity or -Infinity)"
                ))),
            },
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::Value;

        #[test]
        fn non_finite_floats_survive_json() {
            for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1.5] {
                let json = serde_json::to_string(&Value::Float(v)).unwrap();
                let back: Value = serde_json::from_str(&json).unwrap();
                match back {
                    Value::Float(b) => assert!(
                        b.to_bits() == v.to_bits() || (b.is_nan() && v.is_nan()),
                        "{json}"
                    ),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}
