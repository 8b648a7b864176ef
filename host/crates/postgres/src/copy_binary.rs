//! PostgreSQL's binary COPY format, both ways: an encoder that turns model
//! values into the bytes `COPY … FROM STDIN (FORMAT binary)` takes, and an
//! incremental decoder for what `COPY … TO STDOUT (FORMAT binary)` sends
//! (tuples may straddle network chunks). Each value travels in the binary
//! representation of its column's type (the types' `send`/`recv`), so no
//! text is parsed on either side.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use uuid::Uuid;

use dmp_model::{DataType, Decimal, Value};

/// `PGCOPY\n\377\r\n\0`, then flags and header extension length.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const HEADER_LEN: usize = 19;
/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01 UTC.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// Days from 0001-01-01 (chrono's day 1) to 2000-01-01.
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;
const MICROS_PER_DAY: i64 = 86_400_000_000;

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// Largest display scale a numeric value can carry.
const NUMERIC_DSCALE_MAX: usize = 0x3FFF;

/// The binary representation a column travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// text, varchar, name, citext, enum labels: UTF-8 bytes.
    Text,
    /// bpchar (`character(n)`): UTF-8 bytes padded with spaces, which are
    /// not part of the value (as `::text` reads it): read without them.
    Char,
    /// Text that is a JSON document (`to_json(array)::text`): decoded as
    /// a JSON value. Encodes like `Text`.
    JsonText,
    Bytea,
    Json,
    /// A version byte (1), then the JSON text.
    Jsonb,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
}

impl Wire {
    /// The model type whose values this wire carries without conversion.
    pub(super) fn model_type(self) -> DataType {
        match self {
            Wire::Bool => DataType::Bool,
            Wire::Int2 => DataType::Int16,
            Wire::Int4 => DataType::Int32,
            Wire::Int8 => DataType::Int64,
            Wire::Float4 => DataType::Float32,
            Wire::Float8 => DataType::Float64,
            Wire::Numeric => DataType::Decimal {
                precision: None,
                scale: None,
            },
            Wire::Text | Wire::Char => DataType::TEXT,
            Wire::JsonText | Wire::Json | Wire::Jsonb => DataType::Json,
            Wire::Bytea => DataType::Bytes,
            Wire::Date => DataType::Date,
            Wire::Time => DataType::Time,
            Wire::Timestamp => DataType::Timestamp,
            Wire::TimestampTz => DataType::TimestampTz,
            Wire::Uuid => DataType::Uuid,
        }
    }
}

/// What a target column accepts beyond its wire: limits the server would
/// otherwise enforce by rounding (numeric scale, time precision) or that
/// are cheaper to check here than to find by redoing a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Limits {
    /// `numeric(precision, scale)`; `None` when unconstrained.
    pub(super) numeric: Option<(u16, u16)>,
    /// `varchar(n)` / `char(n)`: characters.
    pub(super) max_chars: Option<u32>,
    /// `time(p)` / `timestamp(p)`: fractional digits kept (0–6).
    pub(super) fraction_digits: Option<u8>,
}

/// How one target column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Encoding {
    pub(super) wire: Wire,
    pub(super) limits: Limits,
}

impl Encoding {
    pub(super) fn plain(wire: Wire) -> Self {
        Encoding {
            wire,
            limits: Limits::default(),
        }
    }
}

/// Builds one COPY stream: the header, tuples, the trailer.
pub(super) struct CopyEncoder {
    buf: Vec<u8>,
}

impl CopyEncoder {
    pub(super) fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_LEN + 2));
        buf.extend_from_slice(&HEADER);
        CopyEncoder { buf }
    }

    /// Starts a tuple of `fields` fields; returns where it starts, for
    /// [`CopyEncoder::abandon_row`].
    pub(super) fn begin_row(&mut self, fields: i16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&fields.to_be_bytes());
        start
    }

    /// Drops a partly written tuple (a value did not fit its column).
    pub(super) fn abandon_row(&mut self, start: usize) {
        self.buf.truncate(start);
    }

    /// Appends one field.
    pub(super) fn field(&mut self, value: &Value, encoding: &Encoding) -> Result<(), String> {
        encode_field(&mut self.buf, value, encoding)
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The stream with its trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// The header and the trailer alone, for streams assembled from tuples
/// encoded earlier.
pub(super) fn header() -> &'static [u8] {
    &HEADER
}

pub(super) fn trailer() -> &'static [u8] {
    &[0xff, 0xff]
}

/// Appends a field: its length (or -1 for NULL) and its bytes.
pub(super) fn encode_field(out: &mut Vec<u8>, value: &Value, enc: &Encoding) -> Result<(), String> {
    if value.is_null() {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let written = encode_value(out, value, enc);
    if written.is_err() {
        out.truncate(at);
        return written;
    }
    let len =
        i32::try_from(out.len() - at - 4).map_err(|_| "value larger than 2 GiB".to_string())?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn encode_value(out: &mut Vec<u8>, value: &Value, enc: &Encoding) -> Result<(), String> {
    let value = coerce(value, enc.wire)?;
    write_native(out, &value, enc)
}

/// The value as the column's wire carries it: itself when its kind is the
/// wire's, else converted where that is exact (`'42'` or `42.00` into an
/// integer column, an integer into numeric, a date into a timestamp).
/// What does not convert is refused, never rounded.
pub(super) fn coerce(value: &Value, wire: Wire) -> Result<Cow<'_, Value>, String> {
    Ok(match (wire, value) {
        (_, Value::Null)
        | (Wire::Bool, Value::Bool(_))
        | (Wire::Int2 | Wire::Int4 | Wire::Int8, Value::Int(_))
        | (Wire::Float4 | Wire::Float8, Value::Float(_))
        | (Wire::Numeric, Value::Decimal(_))
        | (Wire::Text | Wire::Char | Wire::JsonText, Value::Text(_) | Value::Json(_))
        | (Wire::Json | Wire::Jsonb, Value::Json(_))
        | (Wire::Bytea, Value::Bytes(_))
        | (Wire::Date, Value::Date(_))
        | (Wire::Time, Value::Time(_))
        | (Wire::Timestamp, Value::Timestamp(_))
        | (Wire::TimestampTz, Value::TimestampTz(_))
        | (Wire::Uuid, Value::Uuid(_)) => Cow::Borrowed(value),
        (Wire::Float4 | Wire::Float8, Value::Int(i)) => {
            #[allow(clippy::cast_precision_loss)]
            let f = *i as f64;
            #[allow(clippy::cast_possible_truncation)]
            if f as i64 != *i || (wire == Wire::Float4 && f64::from(f as f32) != f) {
                return Err(format!(
                    "{i} cannot be stored exactly in a floating point column"
                ));
            }
            Cow::Owned(Value::Float(f))
        }
        (Wire::Numeric, Value::Int(i)) => Cow::Owned(Value::Decimal(i.to_string().parse()?)),
        // NaN and infinities are numeric values too (written specially).
        (Wire::Numeric, Value::Float(f)) if !f.is_finite() => Cow::Borrowed(value),
        // Display of an f64 is its shortest exact decimal, never in
        // exponent form.
        (Wire::Numeric, Value::Float(f)) => Cow::Owned(Value::Decimal(f.to_string().parse()?)),
        (Wire::Int2 | Wire::Int4 | Wire::Int8, Value::Decimal(d)) => {
            let whole = d
                .rescale(0)
                .ok_or_else(|| format!("{d} has a fraction: it does not fit an integer column"))?;
            Cow::Owned(Value::Int(whole.as_str().parse().map_err(|_| {
                format!("{d} is out of range for an integer column")
            })?))
        }
        (Wire::Float4 | Wire::Float8, Value::Decimal(d)) => Cow::Owned(Value::Float(
            d.as_str()
                .parse()
                .map_err(|_| format!("{d} is not a number"))?,
        )),
        (Wire::Json | Wire::Jsonb, Value::Text(s)) => {
            serde_json::from_str::<serde::de::IgnoredAny>(s)
                .map_err(|e| format!("not a JSON document: {e}"))?;
            Cow::Owned(Value::Json(s.clone()))
        }
        (Wire::Text | Wire::Char | Wire::JsonText, other) => {
            Cow::Owned(Value::Text(other.to_text()))
        }
        // Anything else goes through the value's text form, read as the
        // column's type. What does not read that way is refused.
        (wire, other) => {
            let converted = Value::parse_text(&other.to_text(), &wire.model_type())
                .map_err(|e| format!("a {} value does not fit: {e}", other.kind()))?;
            if converted.kind() == other.kind() {
                return Err(format!("a {} value does not fit", other.kind()));
            }
            return coerce(&converted, wire).map(|v| Cow::Owned(v.into_owned()));
        }
    })
}

/// Writes a value whose kind is its wire's (see [`coerce`]).
fn write_native(out: &mut Vec<u8>, value: &Value, enc: &Encoding) -> Result<(), String> {
    let limits = &enc.limits;
    match (enc.wire, value) {
        (Wire::Bool, Value::Bool(b)) => out.push(u8::from(*b)),
        (Wire::Int2, Value::Int(i)) => out.extend_from_slice(
            &i16::try_from(*i)
                .map_err(|_| format!("{i} is out of range for smallint"))?
                .to_be_bytes(),
        ),
        (Wire::Int4, Value::Int(i)) => out.extend_from_slice(
            &i32::try_from(*i)
                .map_err(|_| format!("{i} is out of range for integer"))?
                .to_be_bytes(),
        ),
        (Wire::Int8, Value::Int(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (Wire::Float8, Value::Float(f)) => out.extend_from_slice(&f.to_be_bytes()),
        (Wire::Float4, Value::Float(f)) => {
            #[allow(clippy::cast_possible_truncation)]
            let narrow = *f as f32;
            if f.is_finite() && !narrow.is_finite() {
                return Err(format!("{f} is out of range for real"));
            }
            out.extend_from_slice(&narrow.to_be_bytes());
        }
        (Wire::Numeric, Value::Decimal(d)) => encode_decimal(out, d, limits)?,
        (Wire::Numeric, Value::Float(f)) if f.is_nan() => write_numeric_special(out, NUMERIC_NAN),
        (Wire::Numeric, Value::Float(f)) if f.is_infinite() => {
            write_numeric_special(out, if *f > 0.0 { NUMERIC_PINF } else { NUMERIC_NINF })
        }
        (Wire::Text | Wire::Char | Wire::JsonText, Value::Text(s) | Value::Json(s)) => {
            encode_text(out, s, limits)?;
        }
        (Wire::Json, Value::Json(s)) => out.extend_from_slice(s.as_bytes()),
        (Wire::Jsonb, Value::Json(s)) => {
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
        (Wire::Bytea, Value::Bytes(b)) => out.extend_from_slice(b),
        (Wire::Date, Value::Date(d)) => out.extend_from_slice(&pg_days(*d).to_be_bytes()),
        (Wire::Time, Value::Time(t)) => {
            let micros = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                + i64::from(t.nanosecond() / 1000);
            check_fraction(micros, limits)?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (Wire::Timestamp, Value::Timestamp(ts)) => {
            let micros = pg_micros(ts.and_utc())?;
            check_fraction(micros, limits)?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (Wire::TimestampTz, Value::TimestampTz(ts)) => {
            let micros = pg_micros(*ts)?;
            check_fraction(micros, limits)?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (Wire::Uuid, Value::Uuid(u)) => out.extend_from_slice(u.as_bytes()),
        (_, other) => return Err(format!("a {} value does not fit", other.kind())),
    }
    Ok(())
}

fn encode_text(out: &mut Vec<u8>, s: &str, limits: &Limits) -> Result<(), String> {
    if s.as_bytes().contains(&0) {
        return Err("text contains a NUL character, which PostgreSQL cannot store".into());
    }
    if let Some(max) = limits.max_chars {
        // Characters never outnumber bytes: count only when it can matter.
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if s.len() > max {
            let chars = s.chars().count();
            if chars > max {
                return Err(format!(
                    "{chars} characters is too long for a column of {max}"
                ));
            }
        }
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn check_fraction(micros: i64, limits: &Limits) -> Result<(), String> {
    if let Some(p) = limits.fraction_digits.filter(|p| *p < 6) {
        let unit = 10i64.pow(6 - u32::from(p));
        if micros.rem_euclid(unit) != 0 {
            return Err(format!(
                "the column keeps {p} fractional second digits: the value would be rounded"
            ));
        }
    }
    Ok(())
}

fn pg_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE
}

fn pg_micros(ts: DateTime<Utc>) -> Result<i64, String> {
    ts.timestamp_micros()
        .checked_sub(PG_EPOCH_UNIX_MICROS)
        .ok_or_else(|| format!("{ts} is out of range"))
}

fn write_numeric_special(out: &mut Vec<u8>, sign: u16) {
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
}

fn encode_decimal(out: &mut Vec<u8>, d: &Decimal, limits: &Limits) -> Result<(), String> {
    let Some((precision, scale)) = limits.numeric else {
        return write_numeric(out, d.as_str());
    };
    let scale = usize::from(scale);
    let fitted;
    let d = if d.scale() > scale {
        fitted = d.rescale(scale).ok_or_else(|| {
            format!("{d} does not fit numeric({precision},{scale}) without rounding")
        })?;
        &fitted
    } else {
        d
    };
    if d.integer_digits() + scale > usize::from(precision) {
        return Err(format!("{d} is too large for numeric({precision},{scale})"));
    }
    write_numeric(out, d.as_str())
}

/// Writes canonical decimal text as a numeric: base-10000 digits, the
/// weight of the first one, the sign and the display scale.
fn write_numeric(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int = int.trim_start_matches('0');
    let dscale = frac.len();
    if dscale > NUMERIC_DSCALE_MAX {
        return Err(format!(
            "{dscale} fraction digits is more than PostgreSQL's numeric holds"
        ));
    }
    let digit = |s: &[u8]| {
        s.iter()
            .fold(0i16, |n, b| n * 10 + i16::from(b.wrapping_sub(b'0')))
    };
    let mut groups: Vec<i16> = Vec::with_capacity(int.len() / 4 + frac.len() / 4 + 2);
    let head = int.len() % 4;
    if head > 0 {
        groups.push(digit(&int.as_bytes()[..head]));
    }
    for chunk in int.as_bytes()[head..].chunks(4) {
        groups.push(digit(chunk));
    }
    let int_groups = groups.len();
    for chunk in frac.as_bytes().chunks(4) {
        let mut g = digit(chunk);
        for _ in chunk.len()..4 {
            g *= 10;
        }
        groups.push(g);
    }
    let mut weight = i64::try_from(int_groups).unwrap_or(i64::MAX) - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    weight -= i64::try_from(leading).unwrap_or(0);
    let trailing = groups[leading..]
        .iter()
        .rev()
        .take_while(|g| **g == 0)
        .count();
    let digits = &groups[leading..groups.len() - trailing];
    let (weight, sign) = if digits.is_empty() {
        (0, NUMERIC_POS)
    } else {
        (weight, if negative { NUMERIC_NEG } else { NUMERIC_POS })
    };
    let weight =
        i16::try_from(weight).map_err(|_| "the number is too large for numeric".to_string())?;
    let ndigits = i16::try_from(digits.len())
        .map_err(|_| "the number has too many digits for numeric".to_string())?;
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    #[allow(clippy::cast_possible_truncation)]
    out.extend_from_slice(&(dscale as u16).to_be_bytes());
    for g in digits {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

/// A value the model cannot hold (NaN numeric, infinite date, 24:00:00):
/// the row is refused, showing the value as PostgreSQL would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Undecodable {
    /// The value as text, for the dead-letter row.
    pub(super) value: String,
    pub(super) reason: String,
}

fn undecodable(value: impl Into<String>, reason: impl Into<String>) -> Undecodable {
    Undecodable {
        value: value.into(),
        reason: reason.into(),
    }
}

fn fixed<const N: usize>(data: &[u8], what: &str) -> Result<[u8; N], Undecodable> {
    data.try_into().map_err(|_| {
        undecodable(
            format!("\\x{}", dmp_model::encode_hex(data)),
            format!("{what} of {} bytes instead of {N}", data.len()),
        )
    })
}

/// Decodes one non-NULL field sent in `wire`'s binary representation.
pub(super) fn decode_value(wire: Wire, data: &[u8]) -> Result<Value, Undecodable> {
    Ok(match wire {
        Wire::Bool => Value::Bool(fixed::<1>(data, "boolean")?[0] != 0),
        Wire::Int2 => Value::Int(i64::from(i16::from_be_bytes(fixed(data, "smallint")?))),
        Wire::Int4 => Value::Int(i64::from(i32::from_be_bytes(fixed(data, "integer")?))),
        Wire::Int8 => Value::Int(i64::from_be_bytes(fixed(data, "bigint")?)),
        Wire::Float4 => Value::Float(f64::from(f32::from_be_bytes(fixed(data, "real")?))),
        Wire::Float8 => Value::Float(f64::from_be_bytes(fixed(data, "double")?)),
        Wire::Numeric => Value::Decimal(decode_numeric(data)?),
        Wire::Text => Value::Text(utf8(data)?),
        Wire::Char => Value::Text(utf8(data)?.trim_end_matches(' ').to_string()),
        Wire::JsonText | Wire::Json => Value::Json(utf8(data)?),
        Wire::Jsonb => match data.split_first() {
            Some((1, text)) => Value::Json(utf8(text)?),
            _ => {
                return Err(undecodable(
                    String::from_utf8_lossy(data),
                    "unknown jsonb binary version",
                ));
            }
        },
        Wire::Bytea => Value::Bytes(data.to_vec()),
        Wire::Date => Value::Date(decode_date(i32::from_be_bytes(fixed(data, "date")?))?),
        Wire::Time => Value::Time(decode_time(i64::from_be_bytes(fixed(data, "time")?))?),
        Wire::Timestamp => Value::Timestamp(
            decode_timestamp(i64::from_be_bytes(fixed(data, "timestamp")?))?.naive_utc(),
        ),
        Wire::TimestampTz => Value::TimestampTz(decode_timestamp(i64::from_be_bytes(fixed(
            data,
            "timestamptz",
        )?))?),
        Wire::Uuid => Value::Uuid(Uuid::from_bytes(fixed(data, "uuid")?)),
    })
}

fn utf8(data: &[u8]) -> Result<String, Undecodable> {
    match std::str::from_utf8(data) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(undecodable(
            String::from_utf8_lossy(data),
            format!("invalid UTF-8: {e}"),
        )),
    }
}

fn decode_date(days: i32) -> Result<NaiveDate, Undecodable> {
    match days {
        i32::MAX => Err(undecodable("infinity", "date infinity has no model value")),
        i32::MIN => Err(undecodable(
            "-infinity",
            "date -infinity has no model value",
        )),
        _ => days
            .checked_add(PG_EPOCH_DAYS_FROM_CE)
            .and_then(NaiveDate::from_num_days_from_ce_opt)
            .ok_or_else(|| {
                undecodable(
                    format!("{days} days from 2000-01-01"),
                    "date out of the model's range",
                )
            }),
    }
}

fn decode_time(micros: i64) -> Result<NaiveTime, Undecodable> {
    if micros == MICROS_PER_DAY {
        return Err(undecodable(
            "24:00:00",
            "time 24:00:00 has no model value (times of day end at 23:59:59.999999)",
        ));
    }
    let secs = u32::try_from(micros.div_euclid(1_000_000)).ok();
    let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1000).ok();
    secs.zip(nanos)
        .and_then(|(s, n)| NaiveTime::from_num_seconds_from_midnight_opt(s, n))
        .ok_or_else(|| undecodable(format!("{micros} microseconds"), "time out of range"))
}

fn decode_timestamp(micros: i64) -> Result<DateTime<Utc>, Undecodable> {
    match micros {
        i64::MAX => Err(undecodable(
            "infinity",
            "timestamp infinity has no model value",
        )),
        i64::MIN => Err(undecodable(
            "-infinity",
            "timestamp -infinity has no model value",
        )),
        _ => micros
            .checked_add(PG_EPOCH_UNIX_MICROS)
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(|| {
                undecodable(
                    format!("{micros} microseconds from 2000-01-01"),
                    "timestamp out of the model's range",
                )
            }),
    }
}

fn decode_numeric(data: &[u8]) -> Result<Decimal, Undecodable> {
    let bad = || {
        undecodable(
            format!("\\x{}", dmp_model::encode_hex(data)),
            "malformed numeric",
        )
    };
    let word = |i: usize| -> Option<[u8; 2]> { data.get(i..i + 2)?.try_into().ok() };
    let header = (|| {
        Some((
            i16::from_be_bytes(word(0)?),
            i16::from_be_bytes(word(2)?),
            u16::from_be_bytes(word(4)?),
            u16::from_be_bytes(word(6)?),
        ))
    })();
    let (ndigits, weight, sign, dscale) = header.ok_or_else(bad)?;
    let negative = match sign {
        NUMERIC_POS => false,
        NUMERIC_NEG => true,
        NUMERIC_NAN => return Err(undecodable("NaN", "numeric NaN has no model value")),
        NUMERIC_PINF => {
            return Err(undecodable(
                "Infinity",
                "numeric Infinity has no model value",
            ));
        }
        NUMERIC_NINF => {
            return Err(undecodable(
                "-Infinity",
                "numeric -Infinity has no model value",
            ));
        }
        _ => return Err(bad()),
    };
    let ndigits = usize::try_from(ndigits).map_err(|_| bad())?;
    if data.len() != 8 + 2 * ndigits {
        return Err(bad());
    }
    let digit = |k: i64| -> i16 {
        usize::try_from(k)
            .ok()
            .filter(|k| *k < ndigits)
            .and_then(|k| word(8 + 2 * k))
            .map_or(0, i16::from_be_bytes)
    };
    let weight = i64::from(weight);
    let mut text = String::with_capacity(ndigits * 4 + 4);
    if negative {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for k in 0..=weight {
            push_group(&mut text, digit(k), k > 0);
        }
    }
    let dscale = usize::from(dscale);
    if dscale > 0 {
        text.push('.');
        let start = text.len();
        let mut j = 1;
        while text.len() - start < dscale {
            push_group(&mut text, digit(weight + j), true);
            j += 1;
        }
        text.truncate(start + dscale);
    }
    text.parse().map_err(|_| bad())
}

/// Appends a base-10000 digit: four decimal digits, or without leading
/// zeros for the first one.
fn push_group(text: &mut String, group: i16, pad: bool) {
    let g = u16::try_from(group.clamp(0, 9999)).unwrap_or(0);
    let digits = [g / 1000, g / 100 % 10, g / 10 % 10, g % 10];
    let skip = if pad {
        0
    } else {
        digits.iter().take(3).take_while(|d| **d == 0).count()
    };
    for d in &digits[skip..] {
        text.push(char::from(b'0' + u8::try_from(*d).unwrap_or(0)));
    }
}

/// The stream broke the format: the reader stops (not a row problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProtocolError(pub(super) String);

/// Where a field's bytes are in the decoder's buffer; `None` is NULL.
pub(super) type FieldSpan = Option<(usize, usize)>;

/// Splits a binary COPY stream into tuples as its bytes arrive.
pub(super) struct CopyDecoder {
    buf: Vec<u8>,
    pos: usize,
    /// Where the tuple `next_row` found last starts in `buf`.
    tuple_start: usize,
    header_done: bool,
    finished: bool,
    fields: usize,
}

impl CopyDecoder {
    /// A decoder for tuples of `fields` fields.
    pub(super) fn new(fields: usize) -> Self {
        CopyDecoder {
            buf: Vec::new(),
            pos: 0,
            tuple_start: 0,
            header_done: false,
            finished: false,
            fields,
        }
    }

    /// Appends bytes received from the server.
    pub(super) fn feed(&mut self, chunk: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.tuple_start = self.pos;
        self.buf.extend_from_slice(chunk);
    }

    /// Whether the trailer was read.
    pub(super) fn finished(&self) -> bool {
        self.finished
    }

    /// The buffer the spans of [`CopyDecoder::next_row`] point into.
    pub(super) fn data(&self) -> &[u8] {
        &self.buf
    }

    /// The whole tuple [`CopyDecoder::next_row`] found last, as it came.
    pub(super) fn tuple(&self) -> &[u8] {
        &self.buf[self.tuple_start..self.pos]
    }

    /// Finds the next complete tuple: fills `spans` and returns true, or
    /// returns false when more bytes are needed (or the trailer was read).
    pub(super) fn next_row(&mut self, spans: &mut Vec<FieldSpan>) -> Result<bool, ProtocolError> {
        if self.finished {
            return Ok(false);
        }
        if !self.header_done {
            let rest = &self.buf[self.pos..];
            if rest.len() < HEADER_LEN {
                return Ok(false);
            }
            if &rest[..11] != SIGNATURE {
                return Err(ProtocolError("not a binary COPY stream".into()));
            }
            let ext = u32::from_be_bytes([rest[15], rest[16], rest[17], rest[18]]);
            let ext = usize::try_from(ext).unwrap_or(usize::MAX);
            if rest.len() - HEADER_LEN < ext {
                return Ok(false);
            }
            self.pos += HEADER_LEN + ext;
            self.header_done = true;
        }
        let rest = &self.buf[self.pos..];
        let Some(count) = rest.get(..2) else {
            return Ok(false);
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            self.pos += 2;
            self.finished = true;
            return Ok(false);
        }
        if usize::try_from(count).ok() != Some(self.fields) {
            return Err(ProtocolError(format!(
                "a tuple of {count} fields where {} were expected",
                self.fields
            )));
        }
        spans.clear();
        let mut at = 2;
        for _ in 0..self.fields {
            let Some(len) = rest.get(at..at + 4) else {
                return Ok(false);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            if len < 0 {
                spans.push(None);
                continue;
            }
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if rest.len() - at < len {
                return Ok(false);
            }
            spans.push(Some((self.pos + at, self.pos + at + len)));
            at += len;
        }
        self.tuple_start = self.pos;
        self.pos += at;
        Ok(true)
    }
}

/// PostgreSQL's text form of a chrono date (`0044-03-15 BC` for year -43).
pub(super) fn pg_date_text(d: NaiveDate) -> String {
    let year = d.year();
    if year > 0 {
        format!("{year:04}-{:02}-{:02}", d.month(), d.day())
    } else {
        format!("{:04}-{:02}-{:02} BC", 1 - year, d.month(), d.day())
    }
}

/// PostgreSQL's text form of a timestamp (UTC when `tz`).
pub(super) fn pg_timestamp_text(ts: NaiveDateTime, tz: bool) -> String {
    let date = ts.date();
    let year = date.year();
    let mut out = format!(
        "{:04}-{:02}-{:02} ",
        if year > 0 { year } else { 1 - year },
        date.month(),
        date.day()
    );
    write_time_text(&mut out, ts.time());
    if tz {
        out.push_str("+00");
    }
    if year <= 0 {
        out.push_str(" BC");
    }
    out
}

/// `HH:MM:SS[.ffffff]`.
pub(super) fn write_time_text(out: &mut String, t: NaiveTime) {
    let _ = write!(out, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    let micros = t.nanosecond() / 1000;
    if micros > 0 {
        let _ = write!(out, ".{micros:06}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(wire: Wire) -> Encoding {
        Encoding::plain(wire)
    }

    /// Encodes a one-column stream of `values`, decodes it back.
    fn round_trip(wire: Wire, values: &[Value]) -> Vec<Value> {
        let mut e = CopyEncoder::with_capacity(64);
        for v in values {
            e.begin_row(1);
            e.field(v, &enc(wire))
                .unwrap_or_else(|err| panic!("{v:?}: {err}"));
        }
        let bytes = e.finish();
        // Fed one byte at a time: every tuple straddles chunks.
        let mut d = CopyDecoder::new(1);
        let mut spans = Vec::new();
        let mut out = Vec::new();
        for b in &bytes {
            d.feed(std::slice::from_ref(b));
            while d.next_row(&mut spans).unwrap() {
                out.push(match spans[0] {
                    None => Value::Null,
                    Some((s, e)) => decode_value(wire, &d.data()[s..e]).unwrap(),
                });
            }
        }
        assert!(d.finished());
        out
    }

    fn same(wire: Wire, values: Vec<Value>) {
        assert_eq!(round_trip(wire, &values), values, "{wire:?}");
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(s.parse().unwrap())
    }

    #[test]
    fn scalars_round_trip() {
        same(
            Wire::Bool,
            vec![Value::Bool(true), Value::Bool(false), Value::Null],
        );
        same(
            Wire::Int2,
            vec![Value::Int(-32768), Value::Int(32767), Value::Int(0)],
        );
        same(
            Wire::Int4,
            vec![
                Value::Int(i64::from(i32::MIN)),
                Value::Int(i64::from(i32::MAX)),
            ],
        );
        same(
            Wire::Int8,
            vec![Value::Int(i64::MIN), Value::Int(i64::MAX), Value::Null],
        );
        same(
            Wire::Float8,
            vec![
                Value::Float(f64::INFINITY),
                Value::Float(f64::NEG_INFINITY),
                Value::Float(-0.0),
                Value::Float(f64::MIN_POSITIVE),
                Value::Float(1.797_693_134_862_315_7e308),
            ],
        );
        same(
            Wire::Float4,
            vec![
                Value::Float(f64::from(f32::MAX)),
                Value::Float(0.5),
                Value::Float(f64::from(-1.175_494_4e-38_f32)),
            ],
        );
        let nan = round_trip(Wire::Float8, &[Value::Float(f64::NAN)]);
        assert!(matches!(nan[0], Value::Float(f) if f.is_nan()));
        let nan = round_trip(Wire::Float4, &[Value::Float(f64::NAN)]);
        assert!(matches!(nan[0], Value::Float(f) if f.is_nan()));
        same(
            Wire::Uuid,
            vec![Value::Uuid(
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap(),
            )],
        );
    }

    #[test]
    fn text_bytes_and_json_round_trip() {
        same(
            Wire::Text,
            vec![
                Value::Text(String::new()),
                Value::Null,
                Value::Text("😀𝄞 naïve\ttab\nline \\ back".into()),
            ],
        );
        same(
            Wire::Bytea,
            vec![
                Value::Bytes(vec![]),
                Value::Bytes((0..=255).collect()),
                Value::Null,
            ],
        );
        same(Wire::Json, vec![Value::Json("{\"a\": [1, 2.50]}".into())]);
        same(Wire::Jsonb, vec![Value::Json("{\"k\": \"😀\"}".into())]);
        same(Wire::JsonText, vec![Value::Json("[1,2,null]".into())]);
        let big = Value::Bytes(vec![7; 16 * 1024 * 1024]);
        assert_eq!(
            round_trip(Wire::Bytea, std::slice::from_ref(&big)),
            vec![big]
        );
    }

    #[test]
    fn decimals_round_trip_exactly() {
        same(
            Wire::Numeric,
            [
                "0",
                "0.00",
                "0.0001",
                "-0.0001",
                "1",
                "-1",
                "10000",
                "9999",
                "12.50",
                "123456789.123456789",
                "99999999999999999999999999999999999999",
                "-9999999999999999999999999999.9999999999",
                "0.000000000000000000000000000001",
                "123456789012345678901234567890.123456789012345678901234567890",
                "100000000000000000000",
                "0.10000",
            ]
            .iter()
            .map(|s| dec(s))
            .collect(),
        );
        // Negative zero is zero, with its scale.
        assert_eq!(
            round_trip(Wire::Numeric, &[dec("-0.00")]),
            vec![dec("0.00")]
        );
        // Integers and floats into numeric.
        assert_eq!(
            round_trip(Wire::Numeric, &[Value::Int(i64::MIN), Value::Float(0.1)]),
            vec![dec("-9223372036854775808"), dec("0.1")]
        );
    }

    #[test]
    fn numeric_bytes_match_postgres() {
        // SELECT numeric_send(1234.5): ndigits 2, weight 0, +, dscale 1, 1234, 5000
        let mut out = Vec::new();
        write_numeric(&mut out, "1234.5").unwrap();
        assert_eq!(out, [0, 2, 0, 0, 0, 0, 0, 1, 0x04, 0xd2, 0x13, 0x88]);
        // 0.0001: one digit 1 at weight -1, dscale 4.
        out.clear();
        write_numeric(&mut out, "0.0001").unwrap();
        assert_eq!(out, [0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]);
        // 1e-30 as 0.0…01: weight -8, digit 100.
        out.clear();
        write_numeric(&mut out, "0.000000000000000000000000000001").unwrap();
        assert_eq!(out, [0, 1, 0xff, 0xf8, 0, 0, 0, 30, 0, 100]);
        out.clear();
        write_numeric_special(&mut out, NUMERIC_NAN);
        let err = decode_numeric(&out).unwrap_err();
        assert_eq!(err.value, "NaN");
        out.clear();
        write_numeric_special(&mut out, NUMERIC_NINF);
        assert_eq!(decode_numeric(&out).unwrap_err().value, "-Infinity");
    }

    #[test]
    fn temporal_values_round_trip() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        same(
            Wire::Date,
            vec![
                Value::Date(d(2000, 1, 1)),
                Value::Date(d(1999, 12, 31)),
                Value::Date(d(1, 1, 1)),
                Value::Date(d(-4712, 1, 1)),
                Value::Date(d(9999, 12, 31)),
                Value::Date(d(200_000, 6, 1)),
            ],
        );
        let t = |h, m, s, us| NaiveTime::from_hms_micro_opt(h, m, s, us).unwrap();
        same(
            Wire::Time,
            vec![
                Value::Time(t(0, 0, 0, 0)),
                Value::Time(t(23, 59, 59, 999_999)),
            ],
        );
        let ts = |text: &str| dmp_model::Value::parse_text(text, &DataType::Timestamp).unwrap();
        same(
            Wire::Timestamp,
            vec![
                ts("1999-12-31 23:59:59.999999"),
                ts("1000-01-01 00:00:00.000001"),
                ts("2000-01-01 00:00:00"),
                ts("9999-12-31 23:59:59.999999"),
                ts("0001-01-01 00:00:00"),
            ],
        );
        let tz = |text: &str| Value::parse_text(text, &DataType::TimestampTz).unwrap();
        same(
            Wire::TimestampTz,
            vec![
                tz("1969-07-20 20:17:40.000001+00:00"),
                tz("2024-03-10 02:30:00.123456+05:30"),
                tz("9999-12-31 23:59:59.999999Z"),
            ],
        );
        // Far future within PostgreSQL and chrono: year 200000.
        let far = NaiveDate::from_ymd_opt(200_000, 1, 1)
            .unwrap()
            .and_hms_micro_opt(1, 2, 3, 4)
            .unwrap();
        same(Wire::Timestamp, vec![Value::Timestamp(far)]);
    }

    #[test]
    fn values_without_a_model_form_are_named() {
        let e = decode_value(Wire::Date, &i32::MAX.to_be_bytes()).unwrap_err();
        assert_eq!(e.value, "infinity");
        let e = decode_value(Wire::Timestamp, &i64::MIN.to_be_bytes()).unwrap_err();
        assert_eq!(e.value, "-infinity");
        let e = decode_value(Wire::TimestampTz, &i64::MAX.to_be_bytes()).unwrap_err();
        assert_eq!(e.value, "infinity");
        let e = decode_value(Wire::Time, &MICROS_PER_DAY.to_be_bytes()).unwrap_err();
        assert_eq!(e.value, "24:00:00");
        let e = decode_value(Wire::Text, b"\xff").unwrap_err();
        assert!(e.reason.contains("UTF-8"));
        assert!(decode_value(Wire::Int4, &[0, 1]).is_err());
        // Beyond chrono's range (PostgreSQL goes to 294276 AD).
        let e = decode_value(Wire::Timestamp, &(i64::MAX - 1).to_be_bytes()).unwrap_err();
        assert!(e.reason.contains("range"));
    }

    #[test]
    fn values_are_checked_against_the_column() {
        let numeric = |p, s| Encoding {
            wire: Wire::Numeric,
            limits: Limits {
                numeric: Some((p, s)),
                ..Limits::default()
            },
        };
        let mut out = Vec::new();
        assert!(encode_field(&mut out, &dec("1.234"), &numeric(5, 2)).is_err());
        assert!(encode_field(&mut out, &dec("1.230"), &numeric(5, 2)).is_ok());
        assert!(encode_field(&mut out, &dec("1234.5"), &numeric(5, 2)).is_err());
        assert!(encode_field(&mut out, &dec("123.45"), &numeric(5, 2)).is_ok());
        let varchar = Encoding {
            wire: Wire::Text,
            limits: Limits {
                max_chars: Some(3),
                ..Limits::default()
            },
        };
        assert!(encode_field(&mut out, &Value::Text("😀😀😀".into()), &varchar).is_ok());
        assert!(encode_field(&mut out, &Value::Text("abcd".into()), &varchar).is_err());
        assert!(encode_field(&mut out, &Value::Text("a\0b".into()), &enc(Wire::Text)).is_err());
        assert!(encode_field(&mut out, &Value::Int(70_000), &enc(Wire::Int2)).is_err());
        assert!(encode_field(&mut out, &Value::Float(1e300), &enc(Wire::Float4)).is_err());
        let ts0 = Encoding {
            wire: Wire::Timestamp,
            limits: Limits {
                fraction_digits: Some(0),
                ..Limits::default()
            },
        };
        let v = Value::parse_text("2024-01-01 00:00:00.5", &DataType::Timestamp).unwrap();
        assert!(encode_field(&mut out, &v, &ts0).is_err());
        // A failed field leaves nothing behind.
        let before = out.len();
        assert!(encode_field(&mut out, &Value::Text("x".into()), &enc(Wire::Int8)).is_err());
        assert_eq!(out.len(), before);
    }

    #[test]
    fn values_convert_through_text_where_exact() {
        let conv = |v: Value, wire: Wire| round_trip(wire, &[v]).remove(0);
        assert_eq!(conv(Value::Text("42".into()), Wire::Int4), Value::Int(42));
        assert_eq!(conv(dec("42.000"), Wire::Int8), Value::Int(42));
        assert_eq!(conv(Value::Int(7), Wire::Text), Value::Text("7".into()));
        assert_eq!(
            conv(Value::Json("{\"a\":1}".into()), Wire::Text),
            Value::Text("{\"a\":1}".into())
        );
        assert_eq!(
            conv(Value::Text("[1]".into()), Wire::Jsonb),
            Value::Json("[1]".into())
        );
        let mut out = Vec::new();
        assert!(encode_field(&mut out, &dec("42.5"), &enc(Wire::Int8)).is_err());
        assert!(encode_field(&mut out, &Value::Text("{".into()), &enc(Wire::Json)).is_err());
        assert!(encode_field(&mut out, &Value::Bool(true), &enc(Wire::Uuid)).is_err());
    }

    #[test]
    fn header_and_trailer_are_postgres_ones() {
        let bytes = CopyEncoder::with_capacity(0).finish();
        assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(bytes.len(), 21);
        assert_eq!(&bytes[19..], &[0xff, 0xff]);
        let mut d = CopyDecoder::new(3);
        d.feed(&bytes);
        let mut spans = Vec::new();
        assert!(!d.next_row(&mut spans).unwrap());
        assert!(d.finished());
        let mut bad = CopyDecoder::new(1);
        bad.feed(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x02");
        assert!(bad.next_row(&mut spans).is_err());
    }

    #[test]
    fn dates_and_timestamps_print_as_postgres_reads_them() {
        let bc = NaiveDate::from_ymd_opt(-43, 3, 15).unwrap();
        assert_eq!(pg_date_text(bc), "0044-03-15 BC");
        let ts = bc.and_hms_micro_opt(12, 0, 0, 5).unwrap();
        assert_eq!(
            pg_timestamp_text(ts, true),
            "0044-03-15 12:00:00.000005+00 BC"
        );
    }
}
