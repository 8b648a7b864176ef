//! The canonical text of a value, which `dmp verify` hashes: one spelling
//! per value whatever system holds it, so that a PostgreSQL `numeric(12,2)`
//! `1.50`, a MariaDB `decimal(65,30)` `1.500…0` and a SQLite `1.5` hash
//! alike, and so do a `boolean` and a `tinyint(1)`, or a `timestamptz` and
//! the UTC `datetime(6)` it was copied to.
//!
//! The SQL connectors compute the same text inside their database (see
//! `connectors::checksum`); the two must stay in step, which their tests
//! against real servers check. A row's digest is the MD5 of its columns'
//! parts (see [`push_part`]), framed so that no two different rows (NULL and
//! empty text included) concatenate to the same string.

use chrono::{NaiveDateTime, TimeZone, Utc};
use md5::{Digest, Md5};

use super::{DataType, Decimal, Value, ValueError, encode_hex};

/// The canonical text of `value` held in a column of type `t`; `None` for
/// NULL.
///
/// - booleans are `1` / `0`, integers their decimal digits;
/// - decimals drop trailing fraction zeros (`1.50` → `1.5`, `2.00` → `2`),
///   so they also equal integers of the same value;
/// - floats are the shortest digits that read back to the same number,
///   written out in full between 1e-13 and 1e35 (`0.00000015`, `1e20` as
///   `100000000000000000000`), in exponent form beyond (`1.5e-14`, `1e300`);
///   a `float32` column's shortest single-precision digits; zero is `0`;
/// - bytes are `\x` and lowercase hex;
/// - JSON is re-serialized compactly with object keys sorted;
/// - dates `YYYY-MM-DD`, times `HH:MM:SS.ffffff`, timestamps
///   `YYYY-MM-DD HH:MM:SS.ffffff`, instants the same in UTC;
/// - UUIDs lowercase with hyphens; text as it is.
pub fn canonical_text(value: &Value, t: &DataType) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if *t == DataType::Float32 => float_text(f64::from(*f as f32), true),
        Value::Float(f) => float_text(*f, false),
        Value::Decimal(d) => decimal_text(d.as_str()),
        Value::Text(s) => s.clone(),
        Value::Bytes(b) => format!("\\x{}", encode_hex(b)),
        Value::Json(s) => json_text(s),
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Time(t) => t.format("%H:%M:%S%.6f").to_string(),
        Value::Timestamp(ts) => timestamp_text(*ts),
        Value::TimestampTz(ts) => timestamp_text(ts.naive_utc()),
        Value::Uuid(u) => u.hyphenated().to_string(),
    })
}

fn timestamp_text(ts: NaiveDateTime) -> String {
    ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Floats between these magnitudes are written out in full (what an exact
/// `DECIMAL(65,30)` holds of their shortest digits), others in exponent
/// form; the SQL connectors draw the same line.
pub const PLAIN_FLOATS: std::ops::Range<f64> = 1e-13..1e35;

fn float_text(f: f64, single: bool) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f == 0.0 {
        "0".into()
    } else {
        let plain = PLAIN_FLOATS.contains(&f.abs());
        match (single, plain) {
            (true, true) => format!("{}", f as f32),
            (true, false) => format!("{:e}", f as f32),
            (false, true) => format!("{f}"),
            (false, false) => format!("{f:e}"),
        }
    }
}

/// A decimal's digits without trailing fraction zeros; `-0` is `0`.
pub fn decimal_text(text: &str) -> String {
    let trimmed = match text.split_once('.') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                int.to_string()
            } else {
                format!("{int}.{frac}")
            }
        }
        None => text.to_string(),
    };
    if trimmed == "-0" { "0".into() } else { trimmed }
}

/// Compact JSON with sorted keys (serde_json's map is ordered by key);
/// text that does not parse is compared as it is.
fn json_text(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(doc) => doc.to_string(),
        Err(_) => text.to_string(),
    }
}

/// Reads a canonical text back into a value of type `t` (to write a
/// repaired row).
pub fn parse_canonical(text: &str, t: &DataType) -> Result<Value, ValueError> {
    match t {
        DataType::TimestampTz => {
            let naive = super::value::parse_timestamp(text)
                .ok_or_else(|| ValueError(format!("`{text}` is not a timestamp")))?;
            Ok(Value::TimestampTz(Utc.from_utc_datetime(&naive)))
        }
        DataType::Decimal { .. } => {
            Ok(Value::Decimal(text.parse::<Decimal>().map_err(ValueError)?))
        }
        _ => Value::parse_text(text, t),
    }
}

/// Whether a column's part carries its length: text and JSON, whose
/// canonical text may hold any character. Every other canonical text is
/// made of digits, letters, `.:-+ \\` and never starts with `~`, so a
/// terminating `,` delimits it, which SQL spells for half the cost (the
/// length needs the text computed twice).
pub fn length_prefixed(t: &DataType) -> bool {
    matches!(t, DataType::Text { .. } | DataType::Json)
}

/// Appends one column's part of a row's digest input: `~` for NULL, else
/// `<characters>:<text>` (length-prefixed) or `<text>,`.
pub fn push_part(out: &mut String, text: Option<&str>, prefixed: bool) {
    match text {
        None => out.push('~'),
        Some(text) if prefixed => {
            out.push_str(&text.chars().count().to_string());
            out.push(':');
            out.push_str(text);
        }
        Some(text) => {
            out.push_str(text);
            out.push(',');
        }
    }
}

/// The digests of one row: of its key columns' parts (which bucket it
/// falls in, as 32 lowercase hex digits) and of all its parts, key first
/// (its contribution to the bucket's sum: the first 60 bits).
pub fn row_digests(key_parts: &str, rest_parts: &str) -> (String, u64) {
    let key = Md5::digest(key_parts.as_bytes());
    let mut row = Md5::new();
    row.update(key_parts.as_bytes());
    row.update(rest_parts.as_bytes());
    let row = row.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&row[..8]);
    (encode_hex(&key), u64::from_be_bytes(first) >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime};

    fn text(v: Value, t: DataType) -> String {
        canonical_text(&v, &t).expect("not null")
    }

    #[test]
    fn equal_values_have_one_spelling() {
        let dec = |s: &str| Value::Decimal(s.parse().expect("decimal"));
        let any_dec = DataType::Decimal {
            precision: None,
            scale: None,
        };
        assert_eq!(text(dec("1.500"), any_dec), "1.5");
        assert_eq!(text(dec("100"), any_dec), "100");
        assert_eq!(text(dec("2.00"), any_dec), "2");
        assert_eq!(text(dec("-0.00"), any_dec), "0");
        assert_eq!(text(Value::Int(2), DataType::Int32), "2");
        assert_eq!(text(Value::Bool(true), DataType::Bool), "1");
        // As PostgreSQL's and MariaDB's shortest digits read into numerics.
        assert_eq!(text(Value::Float(1.5e-7), DataType::Float64), "0.00000015");
        assert_eq!(
            text(Value::Float(1e20), DataType::Float64),
            "100000000000000000000"
        );
        assert_eq!(text(Value::Float(0.1), DataType::Float64), "0.1");
        assert_eq!(text(Value::Float(100.0), DataType::Float64), "100");
        assert_eq!(text(Value::Float(-0.0), DataType::Float64), "0");
        assert_eq!(text(Value::Float(1.5e-14), DataType::Float64), "1.5e-14");
        assert_eq!(text(Value::Float(1e300), DataType::Float64), "1e300");
        assert_eq!(
            text(Value::Float(f64::from(0.1f32)), DataType::Float32),
            "0.1"
        );
        assert_eq!(text(Value::Float(f64::NAN), DataType::Float64), "NaN");
        assert_eq!(
            text(Value::Bytes(vec![0, 0xab]), DataType::Bytes),
            "\\x00ab"
        );
        assert_eq!(
            text(
                Value::Json(r#"{"b": [1, 2], "a": null}"#.into()),
                DataType::Json
            ),
            r#"{"a":null,"b":[1,2]}"#
        );
        let day = NaiveDate::from_ymd_opt(44, 3, 15).expect("date");
        assert_eq!(text(Value::Date(day), DataType::Date), "0044-03-15");
        let noon = NaiveTime::from_hms_micro_opt(12, 34, 56, 500_000).expect("time");
        assert_eq!(text(Value::Time(noon), DataType::Time), "12:34:56.500000");
        let ts = day.and_time(noon);
        assert_eq!(
            text(Value::Timestamp(ts), DataType::Timestamp),
            "0044-03-15 12:34:56.500000"
        );
        assert_eq!(
            text(
                Value::TimestampTz(Utc.from_utc_datetime(&ts)),
                DataType::TimestampTz
            ),
            "0044-03-15 12:34:56.500000"
        );
        assert_eq!(canonical_text(&Value::Null, &DataType::TEXT), None);
    }

    #[test]
    fn canonical_text_reads_back() {
        let types = [
            (Value::Bool(false), DataType::Bool),
            (Value::Int(-7), DataType::Int64),
            (Value::Float(1.5e-7), DataType::Float64),
            (
                Value::Decimal("12.5".parse().expect("dec")),
                DataType::Decimal {
                    precision: Some(12),
                    scale: Some(2),
                },
            ),
            (Value::Bytes(vec![1, 2, 255]), DataType::Bytes),
            (Value::Text("~ 3:x".into()), DataType::TEXT),
            (
                Value::TimestampTz(
                    Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
                        .single()
                        .expect("ts"),
                ),
                DataType::TimestampTz,
            ),
        ];
        for (value, t) in types {
            let canon = canonical_text(&value, &t).expect("not null");
            let back = parse_canonical(&canon, &t).expect("parses");
            assert_eq!(
                canonical_text(&back, &t).as_deref(),
                Some(canon.as_str()),
                "{value:?}"
            );
        }
    }

    #[test]
    fn parts_keep_null_and_empty_apart() {
        let part = |cells: &[(Option<&str>, bool)]| {
            let mut out = String::new();
            for (text, prefixed) in cells {
                push_part(&mut out, *text, *prefixed);
            }
            out
        };
        assert_ne!(part(&[(None, true)]), part(&[(Some(""), true)]));
        assert_ne!(
            part(&[(Some("a"), true), (Some("b"), true)]),
            part(&[(Some("a1:b"), true)])
        );
        assert_eq!(part(&[(Some("é"), true)]), "1:é");
        assert_eq!(
            part(&[(Some("1.5"), false), (None, false), (Some("2"), false)]),
            "1.5,~2,"
        );
        assert_ne!(
            part(&[(Some("1"), false), (Some("2"), false)]),
            part(&[(Some("1,2"), true)])
        );
    }

    #[test]
    fn digests_match_the_databases() {
        // md5('a') = 0cc175b9c0f1b6a831c399e269772661; its first 15 hex
        // digits as an integer, as PostgreSQL and MariaDB compute it.
        let (key, sum) = row_digests("a", "");
        assert_eq!(key, "0cc175b9c0f1b6a831c399e269772661");
        assert_eq!(sum, 57_446_577_476_672_362);
    }
}
