//! Column values of the stream as model values, equal to what the
//! snapshot reader makes of the same data: binary values go through the
//! snapshot's own decoder; text values (the types' output functions, in a
//! session set to UTC, ISO dates, hex bytea and exact floats) are parsed
//! per type, arrays are rewritten as `to_json` prints them. What only the
//! server can print is left to it (`Decoded::Server`).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use uuid::Uuid;

use super::super::copy_binary::{Undecodable, Wire, decode_value};
use super::super::types::Read;
use super::columns::{ColumnPlan, JsonElement, TextForm};
use super::pgoutput::Datum;
use dmp_model::{Value, decode_hex, encode_hex};

/// A decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decoded {
    Value(Value),
    /// The model cannot hold it (the snapshot refuses it the same way).
    Bad(Undecodable),
    /// The server must convert this output text (see `TextForm`).
    Server(String),
}

/// Decodes a sent value (not `Datum::Unchanged`, which the caller fills).
pub(super) fn decode(column: &ColumnPlan, datum: &Datum) -> Decoded {
    match datum {
        Datum::Null | Datum::Unchanged => Decoded::Value(Value::Null),
        Datum::Binary(bytes) => match column.read {
            Read::Native(wire) => match decode_value(wire, bytes) {
                Ok(v) => Decoded::Value(v),
                Err(u) => Decoded::Bad(u),
            },
            _ => Decoded::Bad(bad(
                format!("\\x{}", encode_hex(bytes)),
                "a binary value for a column read as text",
            )),
        },
        Datum::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => decode_text(column.text, text),
            Err(e) => Decoded::Bad(bad(
                String::from_utf8_lossy(bytes),
                format!("invalid UTF-8: {e}"),
            )),
        },
    }
}

/// Decodes a type's output text.
pub(super) fn decode_text(form: TextForm, text: &str) -> Decoded {
    let result = match form {
        TextForm::Native(wire) => native(wire, text),
        TextForm::AsIs => Ok(Value::Text(text.to_string())),
        TextForm::Inet => Ok(Value::Text(inet_text(text))),
        TextForm::ServerText | TextForm::ServerJson => return Decoded::Server(text.to_string()),
        TextForm::ArrayJson { element, delimiter } => {
            match array_to_json(text, element, delimiter) {
                Some(json) => Ok(Value::Json(json)),
                // Not what array_out prints: let the server say.
                None => return Decoded::Server(text.to_string()),
            }
        }
    };
    match result {
        Ok(v) => Decoded::Value(v),
        Err(u) => Decoded::Bad(u),
    }
}

fn bad(value: impl Into<String>, reason: impl Into<String>) -> Undecodable {
    Undecodable {
        value: value.into(),
        reason: reason.into(),
    }
}

/// Parses the output text of a type the snapshot reads in binary as
/// `wire`, into the value the binary decoder gives.
fn native(wire: Wire, text: &str) -> Result<Value, Undecodable> {
    let malformed = |what: &str| bad(text, format!("malformed {what}"));
    Ok(match wire {
        Wire::Bool => match text {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => return Err(malformed("boolean")),
        },
        Wire::Int2 | Wire::Int4 | Wire::Int8 => {
            Value::Int(text.parse().map_err(|_| malformed("integer"))?)
        }
        Wire::Float4 => Value::Float(f64::from(
            text.parse::<f32>().map_err(|_| malformed("real"))?,
        )),
        Wire::Float8 => Value::Float(text.parse().map_err(|_| malformed("double"))?),
        Wire::Numeric => match text {
            "NaN" => return Err(bad("NaN", "numeric NaN has no model value")),
            "Infinity" => return Err(bad("Infinity", "numeric Infinity has no model value")),
            "-Infinity" => {
                return Err(bad("-Infinity", "numeric -Infinity has no model value"));
            }
            _ => Value::Decimal(text.parse().map_err(|_| malformed("numeric"))?),
        },
        Wire::Text => Value::Text(text.to_string()),
        Wire::Char => Value::Text(text.trim_end_matches(' ').to_string()),
        Wire::JsonText | Wire::Json | Wire::Jsonb => Value::Json(text.to_string()),
        Wire::Bytea => Value::Bytes(
            text.strip_prefix("\\x")
                .and_then(decode_hex)
                .ok_or_else(|| malformed("bytea (expected hex output)"))?,
        ),
        Wire::Date => Value::Date(date(text)?),
        Wire::Time => Value::Time(time(text)?),
        Wire::Timestamp => Value::Timestamp(timestamp(text)?),
        Wire::TimestampTz => Value::TimestampTz(timestamptz(text)?),
        Wire::Uuid => Value::Uuid(Uuid::parse_str(text).map_err(|_| malformed("uuid"))?),
    })
}

/// Splits PostgreSQL's ` BC` suffix off: the text before it and whether
/// it was there.
fn era(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

/// `YYYY-MM-DD` (more year digits after 9999), `YYYY-MM-DD BC`,
/// `±infinity`.
fn date(text: &str) -> Result<NaiveDate, Undecodable> {
    match text {
        "infinity" => return Err(bad("infinity", "date infinity has no model value")),
        "-infinity" => return Err(bad("-infinity", "date -infinity has no model value")),
        _ => {}
    }
    let (ymd, bc) = era(text);
    ymd_date(ymd, bc).ok_or_else(|| bad(text, "date out of the model's range"))
}

fn ymd_date(ymd: &str, bc: bool) -> Option<NaiveDate> {
    let mut parts = ymd.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    // 1 BC is year 0 of the proleptic calendar chrono counts in.
    let year = if bc { 1 - year } else { year };
    NaiveDate::from_ymd_opt(year, month, day)
}

fn time(text: &str) -> Result<NaiveTime, Undecodable> {
    if text.starts_with("24:00:00") {
        return Err(bad(
            text,
            "time 24:00:00 has no model value (times of day end at 23:59:59.999999)",
        ));
    }
    clock(text).ok_or_else(|| bad(text, "malformed time"))
}

fn timestamp(text: &str) -> Result<NaiveDateTime, Undecodable> {
    match text {
        "infinity" => return Err(bad("infinity", "timestamp infinity has no model value")),
        "-infinity" => {
            return Err(bad("-infinity", "timestamp -infinity has no model value"));
        }
        _ => {}
    }
    let (body, bc) = era(text);
    let parsed = body
        .split_once(' ')
        .and_then(|(d, t)| Some(NaiveDateTime::new(ymd_date(d, bc)?, clock(t)?)));
    parsed.ok_or_else(|| bad(text, "timestamp out of the model's range"))
}

/// Like `timestamp`, with the zone offset after the time: `+00`, `-03:30`,
/// `+00:09:21`.
fn timestamptz(text: &str) -> Result<DateTime<Utc>, Undecodable> {
    match text {
        "infinity" => return Err(bad("infinity", "timestamp infinity has no model value")),
        "-infinity" => {
            return Err(bad("-infinity", "timestamp -infinity has no model value"));
        }
        _ => {}
    }
    let (body, bc) = era(text);
    let parsed = (|| {
        let (d, rest) = body.split_once(' ')?;
        let at = rest.find(['+', '-'])?;
        let (t, offset) = rest.split_at(at);
        let local = NaiveDateTime::new(ymd_date(d, bc)?, clock(t)?);
        let seconds = offset_seconds(offset)?;
        let utc = local.checked_sub_signed(chrono::TimeDelta::seconds(seconds))?;
        Some(utc.and_utc())
    })();
    parsed.ok_or_else(|| bad(text, "timestamp out of the model's range"))
}

/// `HH:MM:SS[.ffffff]`, as PostgreSQL prints a time of day.
fn clock(text: &str) -> Option<NaiveTime> {
    let b = text.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let number = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let micros = match &b[8..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=6).contains(&fraction.len()) => {
            number(fraction)? * 10u32.pow(6 - u32::try_from(fraction.len()).ok()?)
        }
        _ => return None,
    };
    NaiveTime::from_hms_micro_opt(
        number(&b[..2])?,
        number(&b[3..5])?,
        number(&b[6..8])?,
        micros,
    )
}

/// `+hh`, `+hh:mm`, `+hh:mm:ss` (east of Greenwich positive).
fn offset_seconds(text: &str) -> Option<i64> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let mut seconds = 0i64;
    let mut unit = 3600;
    for part in rest.split(':') {
        if unit == 0 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        seconds += part.parse::<i64>().ok()? * unit;
        unit /= 60;
    }
    Some(sign * seconds)
}

/// `inet::text`: the output, with the netmask of a single host.
fn inet_text(output: &str) -> String {
    if output.contains('/') {
        output.to_string()
    } else if output.contains(':') {
        format!("{output}/128")
    } else {
        format!("{output}/32")
    }
}

/// One element of an `array_out` text.
enum Element {
    Null,
    Value(String),
    Array(Vec<Element>),
}

/// `to_json(array)::text` from `array_out`'s text; `None` when the text
/// is not shaped as expected.
pub(super) fn array_to_json(text: &str, element: JsonElement, delimiter: u8) -> Option<String> {
    // `[0:1]={…}`: explicit bounds, which to_json ignores.
    let body = if text.starts_with('[') {
        &text[text.find('=')? + 1..]
    } else {
        text
    };
    let mut parser = ArrayParser {
        bytes: body.as_bytes(),
        at: 0,
        delimiter,
    };
    let parsed = parser.array()?;
    if parser.at != parser.bytes.len() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 8);
    write_json(&mut out, &parsed, element)?;
    Some(out)
}

struct ArrayParser<'a> {
    bytes: &'a [u8],
    at: usize,
    delimiter: u8,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// `{e, e, …}`.
    fn array(&mut self) -> Option<Vec<Element>> {
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(items);
        }
        loop {
            items.push(match self.peek()? {
                b'{' => Element::Array(self.array()?),
                b'"' => Element::Value(self.quoted()?),
                _ => self.bare()?,
            });
            match self.peek()? {
                b'}' => {
                    self.at += 1;
                    return Some(items);
                }
                d if d == self.delimiter => self.at += 1,
                _ => return None,
            }
        }
    }

    /// `"…"` with `\` escaping the next character.
    fn quoted(&mut self) -> Option<String> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.bytes.get(self.at + 1)?);
                    self.at += 2;
                }
                b => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
    }

    /// An unquoted element: up to the delimiter or the closing brace;
    /// `NULL` is the null element (a text "NULL" comes quoted).
    fn bare(&mut self) -> Option<Element> {
        let start = self.at;
        while let Some(b) = self.peek() {
            if b == self.delimiter || b == b'}' {
                break;
            }
            if matches!(b, b'{' | b'"' | b'\\') {
                return None;
            }
            self.at += 1;
        }
        let token = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        if token.is_empty() {
            return None;
        }
        Some(if token.eq_ignore_ascii_case("NULL") {
            Element::Null
        } else {
            Element::Value(token.to_string())
        })
    }
}

fn write_json(out: &mut String, items: &[Element], kind: JsonElement) -> Option<()> {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Element::Null => out.push_str("null"),
            Element::Array(inner) => write_json(out, inner, kind)?,
            Element::Value(text) => write_element(out, text, kind)?,
        }
    }
    out.push(']');
    Some(())
}

fn write_element(out: &mut String, text: &str, kind: JsonElement) -> Option<()> {
    match kind {
        JsonElement::Number if is_json_number(text) => out.push_str(text),
        JsonElement::Number | JsonElement::Text => escape_json(out, text),
        JsonElement::Bool => out.push_str(match text {
            "t" => "true",
            "f" => "false",
            _ => return None,
        }),
        JsonElement::Json => out.push_str(text),
        JsonElement::Timestamp | JsonElement::TimestampTz => {
            escape_json(out, &xsd_timestamp(text, kind == JsonElement::TimestampTz)?);
        }
    }
    Some(())
}

/// The ISO output of a timestamp as JSON prints it (XSD style): `T`
/// between date and time, and a zone offset of at least hours and
/// minutes. `infinity` stays.
fn xsd_timestamp(text: &str, tz: bool) -> Option<String> {
    if text == "infinity" || text == "-infinity" {
        return Some(text.to_string());
    }
    let (body, bc) = era(text);
    let (date, time) = body.split_once(' ')?;
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str(date);
    out.push('T');
    if tz {
        let at = time.find(['+', '-'])?;
        let (clock, offset) = time.split_at(at);
        out.push_str(clock);
        out.push_str(offset);
        if offset.len() == 3 {
            out.push_str(":00");
        }
    } else {
        out.push_str(time);
    }
    if bc {
        out.push_str(" BC");
    }
    Some(out)
}

/// PostgreSQL's `escape_json`.
fn escape_json(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JSON's number grammar (PostgreSQL's `IsValidJsonNumber`).
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(wire: Wire, text: &str) -> Value {
        match decode_text(TextForm::Native(wire), text) {
            Decoded::Value(v) => v,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn refused(wire: Wire, text: &str) -> Undecodable {
        match decode_text(TextForm::Native(wire), text) {
            Decoded::Bad(u) => u,
            other => panic!("{text}: {other:?}"),
        }
    }

    /// The binary decoder's answer for the same value, as the snapshot
    /// reads it.
    fn binary(wire: Wire, bytes: &[u8]) -> Result<Value, Undecodable> {
        decode_value(wire, bytes)
    }

    #[test]
    fn numbers_as_the_binary_decoder_reads_them() {
        assert_eq!(value(Wire::Bool, "t"), Value::Bool(true));
        assert_eq!(value(Wire::Bool, "f"), Value::Bool(false));
        assert_eq!(
            value(Wire::Int8, "-9223372036854775808"),
            Value::Int(i64::MIN)
        );
        assert_eq!(value(Wire::Int2, "-32768"), Value::Int(-32768));
        assert_eq!(
            value(Wire::Float4, "0.1"),
            binary(Wire::Float4, &0.1f32.to_be_bytes()).unwrap()
        );
        assert_eq!(value(Wire::Float8, "0.1"), Value::Float(0.1));
        assert_eq!(value(Wire::Float8, "1e+300"), Value::Float(1e300));
        assert_eq!(value(Wire::Float8, "Infinity"), Value::Float(f64::INFINITY));
        assert_eq!(
            value(Wire::Float4, "-Infinity"),
            Value::Float(f64::NEG_INFINITY)
        );
        let Value::Float(nan) = value(Wire::Float8, "NaN") else {
            panic!()
        };
        assert!(nan.is_nan());
        assert_eq!(value(Wire::Float8, "-0"), Value::Float(-0.0));
        assert_eq!(
            value(Wire::Numeric, "-12.50"),
            Value::Decimal("-12.50".parse().unwrap())
        );
        assert_eq!(
            value(Wire::Numeric, "0.000001"),
            Value::Decimal("0.000001".parse().unwrap())
        );
        // numeric NaN is refused as the binary decoder refuses it.
        let nan_bytes = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(
            refused(Wire::Numeric, "NaN"),
            binary(Wire::Numeric, &nan_bytes).unwrap_err()
        );
        assert_eq!(
            refused(Wire::Numeric, "-Infinity").reason,
            "numeric -Infinity has no model value"
        );
        assert!(refused(Wire::Int4, "1.5").reason.contains("integer"));
    }

    #[test]
    fn text_bytes_json_and_uuid() {
        assert_eq!(value(Wire::Text, "a b  "), Value::Text("a b  ".into()));
        assert_eq!(
            value(Wire::Bytea, "\\x00ff10"),
            Value::Bytes(vec![0, 0xff, 0x10])
        );
        assert_eq!(value(Wire::Bytea, "\\x"), Value::Bytes(Vec::new()));
        assert!(refused(Wire::Bytea, "\\000").reason.contains("hex"));
        assert_eq!(
            value(Wire::Jsonb, "{\"a\": [1, 2]}"),
            Value::Json("{\"a\": [1, 2]}".into())
        );
        assert_eq!(
            value(Wire::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap())
        );
    }

    #[test]
    fn dates_and_times_as_the_binary_decoder_reads_them() {
        let days = |d: i32| d.to_be_bytes();
        let micros = |m: i64| m.to_be_bytes();
        assert_eq!(
            value(Wire::Date, "2000-01-01"),
            binary(Wire::Date, &days(0)).unwrap()
        );
        // 44 BC is year -43 of the proleptic calendar.
        assert_eq!(
            value(Wire::Date, "0044-03-15 BC"),
            Value::Date(NaiveDate::from_ymd_opt(-43, 3, 15).unwrap())
        );
        assert_eq!(
            value(Wire::Date, "0001-01-01 BC"),
            Value::Date(NaiveDate::from_ymd_opt(0, 1, 1).unwrap())
        );
        assert_eq!(
            value(Wire::Date, "12345-06-07"),
            Value::Date(NaiveDate::from_ymd_opt(12345, 6, 7).unwrap())
        );
        assert_eq!(
            refused(Wire::Date, "infinity"),
            binary(Wire::Date, &days(i32::MAX)).unwrap_err()
        );
        assert_eq!(
            refused(Wire::Date, "-infinity"),
            binary(Wire::Date, &days(i32::MIN)).unwrap_err()
        );
        assert_eq!(
            value(Wire::Time, "23:59:59.999999"),
            binary(Wire::Time, &micros(86_399_999_999)).unwrap()
        );
        assert_eq!(
            refused(Wire::Time, "24:00:00").reason,
            binary(Wire::Time, &micros(86_400_000_000))
                .unwrap_err()
                .reason
        );
        assert_eq!(
            value(Wire::Timestamp, "2000-01-01 00:00:01.5"),
            binary(Wire::Timestamp, &micros(1_500_000)).unwrap()
        );
        assert_eq!(
            value(Wire::Timestamp, "0044-03-15 10:00:00 BC"),
            Value::Timestamp(
                NaiveDate::from_ymd_opt(-43, 3, 15)
                    .unwrap()
                    .and_hms_opt(10, 0, 0)
                    .unwrap()
            )
        );
        assert_eq!(
            refused(Wire::Timestamp, "infinity"),
            binary(Wire::Timestamp, &micros(i64::MAX)).unwrap_err()
        );
        assert_eq!(
            value(Wire::TimestampTz, "1999-12-31 23:00:00.000001+00"),
            binary(Wire::TimestampTz, &micros(-3_599_999_999)).unwrap()
        );
        // Other zones than UTC (a session setting elsewhere) still read
        // right: 12:00-03:30 is 15:30 UTC.
        assert_eq!(
            value(Wire::TimestampTz, "2024-02-29 12:00:00-03:30"),
            value(Wire::TimestampTz, "2024-02-29 15:30:00+00")
        );
        assert_eq!(
            value(Wire::TimestampTz, "1900-01-01 00:00:00+00:09:21"),
            value(Wire::TimestampTz, "1899-12-31 23:50:39+00")
        );
        assert_eq!(
            value(Wire::TimestampTz, "0044-03-15 10:00:00+00 BC"),
            Value::TimestampTz(
                NaiveDate::from_ymd_opt(-43, 3, 15)
                    .unwrap()
                    .and_hms_opt(10, 0, 0)
                    .unwrap()
                    .and_utc()
            )
        );
        assert_eq!(
            refused(Wire::TimestampTz, "-infinity"),
            binary(Wire::TimestampTz, &micros(i64::MIN)).unwrap_err()
        );
    }

    #[test]
    fn text_read_columns() {
        assert_eq!(
            decode_text(TextForm::AsIs, "1 day 02:00:00"),
            Decoded::Value(Value::Text("1 day 02:00:00".into()))
        );
        assert_eq!(
            decode_text(TextForm::Inet, "10.0.0.1"),
            Decoded::Value(Value::Text("10.0.0.1/32".into()))
        );
        assert_eq!(
            decode_text(TextForm::Inet, "10.0.0.0/8"),
            Decoded::Value(Value::Text("10.0.0.0/8".into()))
        );
        assert_eq!(
            decode_text(TextForm::Inet, "::1"),
            Decoded::Value(Value::Text("::1/128".into()))
        );
        assert_eq!(
            decode_text(TextForm::ServerText, "x"),
            Decoded::Server("x".into())
        );
    }

    fn json(text: &str, element: JsonElement) -> String {
        array_to_json(text, element, b',').unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn arrays_print_as_to_json_does() {
        // Expected texts are what PostgreSQL 15's to_json printed.
        assert_eq!(json("{1,2,NULL}", JsonElement::Number), "[1,2,null]");
        assert_eq!(json("{}", JsonElement::Number), "[]");
        assert_eq!(json("{{1,2},{3,4}}", JsonElement::Number), "[[1,2],[3,4]]");
        assert_eq!(json("[0:1]={5,6}", JsonElement::Number), "[5,6]");
        assert_eq!(
            json("{NaN,1.50,1e+30,-Infinity}", JsonElement::Number),
            "[\"NaN\",1.50,1e+30,\"-Infinity\"]"
        );
        assert_eq!(json("{t,f}", JsonElement::Bool), "[true,false]");
        assert_eq!(
            json(
                "{a,\"b c\",\"\",\"NULL\",\"q\\\"uote\",\"back\\\\slash\",\"{x}\",é}",
                JsonElement::Text
            ),
            "[\"a\",\"b c\",\"\",\"NULL\",\"q\\\"uote\",\"back\\\\slash\",\"{x}\",\"é\"]"
        );
        assert_eq!(
            json("{\"line\nbreak\",\"\u{1}\"}", JsonElement::Text),
            "[\"line\\nbreak\",\"\\u0001\"]"
        );
        assert_eq!(
            json("{\"{\\\"a\\\": 1}\",NULL}", JsonElement::Json),
            "[{\"a\": 1},null]"
        );
        assert_eq!(
            json(
                "{\"2020-01-01 10:00:00+00\",infinity,\"0044-03-15 10:00:00.5+00 BC\",\"2020-01-01 10:00:00-03:30\"}",
                JsonElement::TimestampTz
            ),
            "[\"2020-01-01T10:00:00+00:00\",\"infinity\",\"0044-03-15T10:00:00.5+00:00 BC\",\"2020-01-01T10:00:00-03:30\"]"
        );
        assert_eq!(
            json("{\"2020-01-01 10:00:00.25\"}", JsonElement::Timestamp),
            "[\"2020-01-01T10:00:00.25\"]"
        );
        assert_eq!(
            json("{\"0044-03-15 BC\",2020-01-01}", JsonElement::Text),
            "[\"0044-03-15 BC\",\"2020-01-01\"]"
        );
        assert_eq!(
            array_to_json("{(1,1),(0,0);(2,2),(1,1)}", JsonElement::Text, b';').unwrap(),
            "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]"
        );
        for broken in ["", "{", "{1,2", "{1,,2}", "{1}x", "1,2", "{\"a}"] {
            assert_eq!(
                array_to_json(broken, JsonElement::Number, b','),
                None,
                "{broken}"
            );
            assert_eq!(
                decode_text(
                    TextForm::ArrayJson {
                        element: JsonElement::Number,
                        delimiter: b','
                    },
                    broken
                ),
                Decoded::Server(broken.into())
            );
        }
    }

    #[test]
    fn json_numbers() {
        for ok in ["0", "-0", "12", "1.5", "1e+30", "1E5", "-0.25e-3"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for no in [
            "", "-", "01", "1.", ".5", "NaN", "Infinity", "1e", "+1", "0x10",
        ] {
            assert!(!is_json_number(no), "{no}");
        }
    }

    #[test]
    fn binary_values_use_the_snapshot_decoder() {
        let column = ColumnPlan {
            name: "n".into(),
            type_oid: 23,
            attnum: 1,
            typmod: -1,
            read: Read::Native(Wire::Int4),
            sql_type: "integer".into(),
            text: TextForm::Native(Wire::Int4),
        };
        let b = |bytes: &'static [u8]| Datum::Binary(bytes::Bytes::from_static(bytes));
        assert_eq!(
            decode(&column, &b(&[0, 0, 1, 0])),
            Decoded::Value(Value::Int(256))
        );
        assert!(matches!(decode(&column, &b(&[0, 1])), Decoded::Bad(_)));
        assert_eq!(
            decode(&column, &Datum::Text(bytes::Bytes::from_static(b"-7"))),
            Decoded::Value(Value::Int(-7))
        );
        assert_eq!(decode(&column, &Datum::Null), Decoded::Value(Value::Null));
        let text_column = ColumnPlan {
            read: Read::AsText,
            text: TextForm::AsIs,
            ..column
        };
        assert!(matches!(
            decode(&text_column, &b(&[1])),
            Decoded::Bad(u) if u.reason.contains("binary")
        ));
    }
}
