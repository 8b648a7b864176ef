//! The text `LOAD DATA LOCAL INFILE … FIELDS TERMINATED BY '\t' ESCAPED BY
//! '\\' LINES TERMINATED BY '\n'` reads, encoded from model rows in memory.
//! NULL is `\N`; backslash, tab, newline, carriage return and NUL are
//! escaped; everything else (blobs included) goes as raw bytes under
//! `CHARACTER SET binary`. Numbers, dates and times are written in the
//! exact text MySQL parses back to the same value; a value MySQL cannot
//! store (NaN, a decimal needing rounding, a year past 9999) refuses its
//! row before anything is sent.

use std::io::Write as _;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

use dmp_model::{DataType, Decimal, Row, Value};

/// How a column's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Float32,
    Float64,
    /// A decimal column of the given (MySQL) precision and scale.
    Decimal {
        precision: u16,
        scale: u16,
    },
    Other,
}

/// Encodes rows of one table.
pub(super) struct Encoder {
    fields: Vec<Field>,
    /// The server's `max_allowed_packet`: no value may be longer.
    max_value: usize,
}

/// Bytes that must be escaped, and their escape letter.
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    table[0] = b'0';
    table[b'\t' as usize] = b't';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `bytes` with the special bytes escaped, copying runs of plain
/// bytes at once.
pub(super) fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPES[usize::from(b)];
        if escape != 0 {
            out.extend_from_slice(&bytes[start..i]);
            out.push(b'\\');
            out.push(escape);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

fn push_digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut n = n;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

fn push_date(out: &mut Vec<u8>, d: NaiveDate) -> Result<(), String> {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return Err(format!("date {d} is outside MySQL's years 0000–9999"));
    }
    push_digits(out, year.unsigned_abs(), 4);
    out.push(b'-');
    push_digits(out, d.month(), 2);
    out.push(b'-');
    push_digits(out, d.day(), 2);
    Ok(())
}

fn push_time(out: &mut Vec<u8>, t: NaiveTime) {
    push_digits(out, t.hour(), 2);
    out.push(b':');
    push_digits(out, t.minute(), 2);
    out.push(b':');
    push_digits(out, t.second(), 2);
    let micros = t.nanosecond() / 1000;
    if micros != 0 {
        out.push(b'.');
        push_digits(out, micros.min(999_999), 6);
    }
}

/// The digits of `d` fitted to `decimal(precision, scale)`: fraction padded
/// with zeros, never rounded, and no more integer digits than fit.
pub(super) fn push_decimal(
    out: &mut Vec<u8>,
    d: &Decimal,
    precision: u16,
    scale: u16,
) -> Result<(), String> {
    let scale = usize::from(scale);
    let integer_room = usize::from(precision).saturating_sub(scale);
    if d.integer_digits() > integer_room {
        return Err(format!(
            "{d} does not fit decimal({precision},{scale}): more than {integer_room} integer digits"
        ));
    }
    let text = d.as_str();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > scale && !frac.as_bytes()[scale..].iter().all(|&b| b == b'0') {
        return Err(format!(
            "{d} does not fit decimal({precision},{scale}) without rounding"
        ));
    }
    out.extend_from_slice(int.as_bytes());
    if scale > 0 {
        out.push(b'.');
        let kept = &frac[..frac.len().min(scale)];
        out.extend_from_slice(kept.as_bytes());
        out.resize(out.len() + scale - kept.len(), b'0');
    }
    Ok(())
}

fn push_float(out: &mut Vec<u8>, f: f64, single: bool) -> Result<(), String> {
    if !f.is_finite() {
        return Err(format!(
            "{f} is not storable in MySQL (no NaN or Infinity in FLOAT/DOUBLE)"
        ));
    }
    // Debug prints the shortest text that reads back as the same number.
    #[allow(clippy::cast_possible_truncation)]
    let written = if single {
        write!(out, "{:?}", f as f32)
    } else {
        write!(out, "{f:?}")
    };
    written.map_err(|e| e.to_string())
}

/// Why a value cannot reach the server at all.
pub(super) fn too_long(len: usize, max: usize) -> String {
    format!(
        "a value of {len} bytes is longer than the server's max_allowed_packet ({max} bytes); raise it to copy this row"
    )
}

impl Encoder {
    /// An encoder for columns of the given model types.
    pub(super) fn new(types: &[DataType], max_value: usize) -> Self {
        Encoder {
            max_value,
            fields: types
                .iter()
                .map(|t| match *t {
                    DataType::Float32 => Field::Float32,
                    DataType::Float64 => Field::Float64,
                    DataType::Decimal {
                        precision: Some(p),
                        scale,
                    } if p <= 65 && scale.unwrap_or(0) <= 30 => Field::Decimal {
                        precision: p,
                        scale: scale.unwrap_or(0),
                    },
                    DataType::Decimal { .. } => Field::Decimal {
                        precision: 65,
                        scale: 30,
                    },
                    _ => Field::Other,
                })
                .collect(),
        }
    }

    /// Appends one line for `row`. On a value MySQL cannot store, `out` is
    /// left as it was and the reason is returned.
    pub(super) fn encode_row(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let result = self.encode_fields(row, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_fields(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), String> {
        for (i, value) in row.0.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            let field = self.fields.get(i).copied().unwrap_or(Field::Other);
            self.encode_value(value, field, out)?;
        }
        out.push(b'\n');
        Ok(())
    }

    fn push_long(&self, out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > self.max_value {
            return Err(too_long(bytes.len(), self.max_value));
        }
        escape_into(out, bytes);
        Ok(())
    }

    fn encode_value(&self, value: &Value, field: Field, out: &mut Vec<u8>) -> Result<(), String> {
        match value {
            Value::Null => out.extend_from_slice(b"\\N"),
            Value::Bool(b) => out.push(if *b { b'1' } else { b'0' }),
            Value::Int(i) => write!(out, "{i}").map_err(|e| e.to_string())?,
            Value::Float(f) => push_float(out, *f, field == Field::Float32)?,
            Value::Decimal(d) => match field {
                Field::Decimal { precision, scale } => push_decimal(out, d, precision, scale)?,
                _ => out.extend_from_slice(d.as_str().as_bytes()),
            },
            Value::Text(s) | Value::Json(s) => self.push_long(out, s.as_bytes())?,
            Value::Bytes(b) => self.push_long(out, b)?,
            Value::Date(d) => push_date(out, *d)?,
            Value::Time(t) => push_time(out, *t),
            Value::Timestamp(ts) => {
                push_date(out, ts.date())?;
                out.push(b' ');
                push_time(out, ts.time());
            }
            Value::TimestampTz(ts) => {
                let ts = ts.naive_utc();
                push_date(out, ts.date())?;
                out.push(b' ');
                push_time(out, ts.time());
            }
            Value::Uuid(u) => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                out.extend_from_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(types: &[DataType]) -> Encoder {
        Encoder::new(types, 1 << 20)
    }

    fn encode(types: &[&str], values: Vec<Value>) -> Result<String, String> {
        let types: Vec<DataType> = types.iter().map(|t| t.parse().unwrap()).collect();
        let mut out = Vec::new();
        encoder(&types).encode_row(&Row(values), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn every_special_byte_is_escaped() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a\\b\tc\nd\re\0f\x1ag");
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re\\0f\x1ag".to_vec());
        let mut out = Vec::new();
        escape_into(&mut out, b"\\N");
        assert_eq!(out, b"\\\\N".to_vec(), "the text \\N is not NULL");
    }

    #[test]
    fn null_and_empty_string_differ() {
        assert_eq!(
            encode(
                &["text", "text", "bytes"],
                vec![
                    Value::Null,
                    Value::Text(String::new()),
                    Value::Bytes(Vec::new())
                ]
            )
            .unwrap(),
            "\\N\t\t\n"
        );
    }

    #[test]
    fn unicode_and_blobs_go_as_raw_bytes() {
        assert_eq!(
            encode(&["text"], vec![Value::Text("😀𝄞 naïve".into())]).unwrap(),
            "😀𝄞 naïve\n"
        );
        let types: Vec<DataType> = vec![DataType::Bytes];
        let mut out = Vec::new();
        encoder(&types)
            .encode_row(
                &Row(vec![Value::Bytes(vec![0, b'\t', b'\n', b'\\', 0xff, b'N'])]),
                &mut out,
            )
            .unwrap();
        assert_eq!(out, b"\\0\\t\\n\\\\\xffN\n".to_vec());
    }

    #[test]
    fn numbers_and_times_are_exact() {
        let row = vec![
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(f64::from(3.402_823_5e38_f32)),
            Value::Float(0.1),
            Value::Float(1e300),
            Value::Decimal("1.5".parse().unwrap()),
            Value::Decimal(
                "-99999999999999999999999999999999999.999999999999999999999999999999"
                    .parse()
                    .unwrap(),
            ),
            Value::Decimal("18446744073709551615".parse().unwrap()),
            Value::parse_text("2024-02-29", &DataType::Date).unwrap(),
            Value::parse_text("23:59:59.000001", &DataType::Time).unwrap(),
            Value::parse_text("1000-01-01 00:00:00", &DataType::Timestamp).unwrap(),
            Value::parse_text("2024-03-10 02:30:00.5+05:30", &DataType::TimestampTz).unwrap(),
            Value::Uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".parse().unwrap()),
        ];
        let types = [
            "bool",
            "int64",
            "float32",
            "float64",
            "float64",
            "decimal(5,3)",
            "decimal",
            "decimal(20,0)",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "uuid",
        ];
        assert_eq!(
            encode(&types, row).unwrap(),
            "1\t-9223372036854775808\t3.4028235e38\t0.1\t1e300\t1.500\t\
             -99999999999999999999999999999999999.999999999999999999999999999999\t18446744073709551615\t\
             2024-02-29\t23:59:59.000001\t1000-01-01 00:00:00\t2024-03-09 21:00:00.500000\t\
             a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\n"
        );
    }

    #[test]
    fn unstorable_values_refuse_the_row() {
        let err = encode(
            &["int32", "float64"],
            vec![Value::Int(1), Value::Float(f64::NAN)],
        )
        .unwrap_err();
        assert!(err.contains("NaN"), "{err}");
        let err = encode(&["float32"], vec![Value::Float(f64::INFINITY)]).unwrap_err();
        assert!(err.contains("inf"), "{err}");
        let err = encode(
            &["decimal(5,1)"],
            vec![Value::Decimal("1.25".parse().unwrap())],
        )
        .unwrap_err();
        assert!(err.contains("without rounding"), "{err}");
        let err = encode(
            &["decimal(3,1)"],
            vec![Value::Decimal("123.0".parse().unwrap())],
        )
        .unwrap_err();
        assert!(err.contains("integer digits"), "{err}");
        assert_eq!(
            encode(
                &["decimal(5,1)"],
                vec![Value::Decimal("1.20".parse().unwrap())]
            )
            .unwrap(),
            "1.2\n"
        );
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
        assert!(
            encode(&["date"], vec![Value::Date(far)])
                .unwrap_err()
                .contains("9999")
        );
        // A refused row leaves nothing behind.
        let types = [DataType::Int32, DataType::Float64];
        let mut out = b"before\n".to_vec();
        assert!(
            encoder(&types)
                .encode_row(&Row(vec![Value::Int(7), Value::Float(f64::NAN)]), &mut out)
                .is_err()
        );
        assert_eq!(out, b"before\n".to_vec());
        let err = encode(&["bytes"], vec![Value::Bytes(vec![1; (1 << 20) + 1])]).unwrap_err();
        assert!(err.contains("max_allowed_packet"), "{err}");
    }
}
