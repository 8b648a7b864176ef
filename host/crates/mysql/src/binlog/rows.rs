//! Row images of binlog row events turned into the same model values the
//! snapshot reader produces for each column's type: the binlog carries
//! storage forms (ENUM indexes, SET bitmasks, TIMESTAMP seconds, MariaDB's
//! reordered UUID bytes, WKB geometries, JSONB), which are brought to what
//! the server prints, and then decoded by the snapshot's own `decode`.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike};
use mysql_async::Value as My;
use mysql_async::binlog::events::{OptionalMetaExtractor, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use tracing::warn;

use super::super::types::{Decoded, Refused, Wire, decode, raw_json};
use super::columns::SourceColumn;
use super::{jsonb, wkt};
use crate::error::{Error, Result};
use dmp_model::{Change, DataType, Row, TableSchema, Value, ValueError};

/// How the row events of one streamed table (one table map) are decoded.
pub(super) struct TableRows {
    /// Index of the table in the stream's tables.
    pub(super) table: usize,
    pub(super) schema: Arc<TableSchema>,
    /// Per binlog column: the schema column it fills and how it is read.
    slots: Vec<Option<(usize, SourceColumn)>>,
    mariadb: bool,
    /// Schema columns already warned about zero dates.
    zero_dates: HashSet<usize>,
}

/// A row image: the values it holds, by schema column.
struct Image {
    values: Vec<Value>,
    present: Vec<bool>,
    /// The first refused cell's reason, and every refused cell as it was.
    failure: Option<(String, serde_json::Map<String, serde_json::Value>)>,
}

/// A row event's row that could not become a change: why, and the row as
/// JSON (decoded cells as values, refused ones as they were).
pub(super) struct Refusal {
    pub(super) error: String,
    pub(super) row: serde_json::Value,
}

/// What a row event does to its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowsKind {
    Insert,
    Update,
    Delete,
}

/// The names the server logs for a table map's columns
/// (`binlog_row_metadata=FULL`), if it does.
fn column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
    let names: Vec<String> = OptionalMetaExtractor::new(tme.iter_optional_meta())
        .map(|meta| {
            meta.iter_column_name()
                .filter_map(|n| n.ok().map(|n| n.name().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    (names.len() == count).then_some(names)
}

/// The shape of the rows a table map announces, and their binlog columns:
/// the columns it names (`binlog_row_metadata=FULL`), or, without names,
/// the first as many as it has (a column added later comes last). Right
/// after a restart the stream knows the table as the catalog has it now,
/// which may be past these rows: a column the map names and the stream
/// does not know is the one at its place, under its name then (renamed
/// since); one that has no place is an error, never dropped.
pub(super) fn map_shape(
    schema: &TableSchema,
    source: &[SourceColumn],
    tme: &TableMapEvent<'_>,
) -> Result<(TableSchema, Vec<SourceColumn>)> {
    let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
    let named = column_names(tme);
    if named.is_none() && count > schema.columns.len() {
        return Err(Error::SourceChanged(format!(
            "table {}: its row events have {count} columns and the stream knows {}, and the \
             server logs no column names (binlog_row_metadata=MINIMAL): the table changed \
             shape in a way the stream did not see; copy it again (run with --restart) or \
             set binlog_row_metadata=FULL",
            schema.name,
            schema.columns.len()
        )));
    }
    let names = named.unwrap_or_else(|| {
        schema.columns[..count]
            .iter()
            .map(|c| c.name.clone())
            .collect()
    });
    // Where each of the map's columns is in the stream's picture.
    let mut places = Vec::with_capacity(names.len());
    for (at, name) in names.iter().enumerate() {
        let place = schema.column_index(name).or_else(|| {
            (at < schema.columns.len() && !names.contains(&schema.columns[at].name)).then_some(at)
        });
        let Some(place) = place else {
            return Err(Error::SourceChanged(format!(
                "table {}: its row events have column {name}, which the stream does not know: \
                 the table changed shape in a way the stream did not see; copy it again (run \
                 with --restart)",
                schema.name
            )));
        };
        places.push(place);
    }
    let mut columns = Vec::with_capacity(names.len());
    let mut binlog = Vec::with_capacity(names.len());
    for (name, &place) in names.iter().zip(&places) {
        let mut column = schema.columns[place].clone();
        let mut read = source
            .iter()
            .find(|c| c.name == column.name)
            .cloned()
            .unwrap_or_else(|| SourceColumn::new(name, "", ""));
        column.name.clone_from(name);
        read.name.clone_from(name);
        columns.push(column);
        binlog.push(read);
    }
    let primary_key = schema
        .primary_key
        .iter()
        .filter_map(|k| {
            let place = schema.column_index(k)?;
            let at = places.iter().position(|p| *p == place)?;
            Some(names[at].clone())
        })
        .collect();
    let shape = TableSchema {
        columns,
        primary_key,
        ..schema.clone()
    };
    Ok((shape, binlog))
}

impl TableRows {
    /// Maps the table map's columns to the schema: by the names the server
    /// logs with `binlog_row_metadata=FULL`, else by position.
    pub(super) fn new(
        table: usize,
        schema: Arc<TableSchema>,
        source: &[SourceColumn],
        tme: &TableMapEvent<'_>,
        mariadb: bool,
    ) -> Result<TableRows> {
        let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
        let names = column_names(tme).unwrap_or_default();
        let by_name = names.len() == count;
        if !by_name && source.len() < count {
            return Err(Error::SourceChanged(format!(
                "table {}: its row events have {count} columns and the table has {}, and the \
                 server logs no column names (binlog_row_metadata=MINIMAL); copy it again \
                 (run with --restart) or set binlog_row_metadata=FULL",
                schema.name,
                source.len()
            )));
        }
        let slots = (0..count)
            .map(|i| {
                let column = if by_name {
                    let name = &names[i];
                    source
                        .iter()
                        .find(|c| c.name == *name)
                        .cloned()
                        .unwrap_or_else(|| SourceColumn::new(name, "", ""))
                } else {
                    source[i].clone()
                };
                schema
                    .column_index(&column.name)
                    .map(|target| (target, column))
            })
            .collect();
        Ok(TableRows {
            table,
            schema,
            slots,
            mariadb,
            zero_dates: HashSet::new(),
        })
    }

    /// Decodes one image; `present` lists the binlog columns it holds, in
    /// order (the row's values come in that order).
    fn image(&mut self, mut row: BinlogRow, present: &[usize]) -> Image {
        let width = self.schema.columns.len();
        let mut image = Image {
            values: vec![Value::Null; width],
            present: vec![false; width],
            failure: None,
        };
        for (k, &offset) in present.iter().enumerate() {
            let Some(Some((target, source))) = self.slots.get(offset) else {
                continue;
            };
            let target = *target;
            let column = &self.schema.columns[target];
            image.present[target] = true;
            let Some(cell) = row.take(k).map(BinlogValue::into_owned) else {
                continue;
            };
            match convert(cell, source, &column.data_type, self.mariadb) {
                Ok(Decoded::Value(v)) => image.values[target] = v,
                Ok(Decoded::ZeroDate) => {
                    if self.zero_dates.insert(target) {
                        warn!(
                            table = self.schema.name,
                            column = column.name,
                            "zero dates read as NULL (documented policy)"
                        );
                    }
                }
                Err(refused) => {
                    let entry = image.failure.get_or_insert_with(|| {
                        (
                            format!("column {}: {}", column.name, refused.error),
                            serde_json::Map::new(),
                        )
                    });
                    entry.1.insert(column.name.clone(), refused.raw);
                }
            }
        }
        image
    }

    /// One row of a row event as a change, or why it cannot be one.
    /// `before`/`after` come with the binlog columns each holds.
    pub(super) fn change(
        &mut self,
        kind: RowsKind,
        before: Option<(BinlogRow, &[usize])>,
        after: Option<(BinlogRow, &[usize])>,
    ) -> std::result::Result<Change, Refusal> {
        let before = before.map(|(row, present)| self.image(row, present));
        let after = after.map(|(row, present)| self.image(row, present));
        for image in before.iter().chain(after.iter()) {
            if let Some((error, raw)) = &image.failure {
                return Err(self.refusal(error.clone(), image, raw));
            }
        }
        match (kind, before, after) {
            (RowsKind::Insert, _, Some(after)) => {
                self.complete(&after)?;
                Ok(Change::Insert(Row(after.values)))
            }
            (RowsKind::Update, before, Some(after)) => {
                self.complete(&after)?;
                Ok(Change::Update {
                    before: before.map(|b| Row(b.values)),
                    after: Row(after.values),
                })
            }
            (RowsKind::Delete, Some(before), _) => {
                let keys = self.schema.primary_key_indices();
                if let Some(&missing) = keys.iter().find(|&&i| !before.present[i]) {
                    let error = format!(
                        "the deleted row's image lacks key column {}",
                        self.schema.columns[missing].name
                    );
                    return Err(self.refusal(error, &before, &serde_json::Map::new()));
                }
                Ok(Change::Delete(Row(before.values)))
            }
            _ => Err(Refusal {
                error: format!("a {kind:?} row event without the row image it needs"),
                row: serde_json::Value::Null,
            }),
        }
    }

    /// A new row image must hold every column: with
    /// `binlog_row_image=MINIMAL` or `NOBLOB` the server leaves out the
    /// unchanged ones, and writing NULL there would lose data.
    fn complete(&self, image: &Image) -> std::result::Result<(), Refusal> {
        match image.present.iter().position(|p| !p) {
            None => Ok(()),
            Some(missing) => Err(self.refusal(
                format!(
                    "the row image lacks column {} (binlog_row_image must be FULL)",
                    self.schema.columns[missing].name
                ),
                image,
                &serde_json::Map::new(),
            )),
        }
    }

    fn refusal(
        &self,
        error: String,
        image: &Image,
        raw: &serde_json::Map<String, serde_json::Value>,
    ) -> Refusal {
        let mut json = serde_json::Map::new();
        for (i, column) in self.schema.columns.iter().enumerate() {
            if !image.present[i] {
                continue;
            }
            let cell = raw
                .get(&column.name)
                .cloned()
                .unwrap_or_else(|| dmp_model::json::value_to_json(&image.values[i]));
            json.insert(column.name.clone(), cell);
        }
        Refusal {
            error,
            row: serde_json::Value::Object(json),
        }
    }
}

fn refuse(error: impl Into<String>, raw: serde_json::Value) -> Refused {
    Refused {
        error: ValueError(error.into()),
        raw,
    }
}

/// One binlog cell as the model value of type `t`.
pub(super) fn convert(
    cell: BinlogValue<'_>,
    column: &SourceColumn,
    t: &DataType,
    mariadb: bool,
) -> std::result::Result<Decoded, Refused> {
    let wire = match column.data_type.as_str() {
        "bit" => Wire::Bit,
        "json" => Wire::TrustedJson,
        _ => Wire::Other,
    };
    let cell = match cell {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => My::Bytes(
            jsonb::to_text(j)
                .map_err(|e| refuse(e, serde_json::Value::Null))?
                .into_bytes(),
        ),
        BinlogValue::JsonDiff(_) => {
            return Err(refuse(
                "a partial JSON update cannot be rebuilt from the binlog \
                 (set binlog_row_value_options to '')",
                serde_json::Value::Null,
            ));
        }
    };
    if cell == My::NULL {
        return Ok(Decoded::Value(Value::Null));
    }
    let cell = match column.data_type.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" if column.unsigned => {
            unsigned(cell, &column.data_type)
        }
        "year" => year(cell),
        "timestamp" => match timestamp(&cell)? {
            Some(date) => date,
            None => return Ok(Decoded::ZeroDate),
        },
        "enum" => enum_label(cell, column)?,
        "set" => set_labels(cell, column)?,
        "uuid" => bytes(cell, column, |b| Ok(maria_uuid(b)))?,
        "inet4" => bytes(cell, column, |b| {
            <[u8; 4]>::try_from(b)
                .map(|a| Ipv4Addr::from(a).to_string().into_bytes())
                .map_err(|_| format!("an INET4 value of {} bytes", b.len()))
        })?,
        "inet6" => bytes(cell, column, |b| {
            <[u8; 16]>::try_from(b)
                .map(|a| inet6_text(Ipv6Addr::from(a)).into_bytes())
                .map_err(|_| format!("an INET6 value of {} bytes", b.len()))
        })?,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => bytes(cell, column, |b| {
            wkt::to_wkt(b, mariadb).map(String::into_bytes)
        })?,
        "binary" => bytes(cell, column, |b| Ok(b.to_vec()))?,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => text(cell, column)?,
        _ => cell,
    };
    decode(cell, t, wire)
}

/// Without signedness in the table map, unsigned values come out signed.
fn unsigned(cell: My, data_type: &str) -> My {
    let bits = match data_type {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" | "integer" => 32,
        _ => 64,
    };
    match cell {
        My::Int(i) if i < 0 && bits == 64 => My::UInt(u64::from_ne_bytes(i.to_ne_bytes())),
        My::Int(i) if i < 0 => My::Int(i + (1i64 << bits)),
        other => other,
    }
}

/// The binlog writes YEAR as 1900 + its stored byte, which is 0 for the
/// year 0000.
fn year(cell: My) -> My {
    match &cell {
        My::Bytes(b) => match std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(1900) => My::Int(0),
            Some(y) => My::Int(y),
            None => cell,
        },
        _ => cell,
    }
}

/// TIMESTAMP: seconds since the epoch (`secs[.micros]` as text for the
/// fractional form). Zero is the zero date. The value becomes the UTC
/// date-time the snapshot's UTC session reads.
fn timestamp(cell: &My) -> std::result::Result<Option<My>, Refused> {
    let (secs, micros) = match cell {
        My::Int(i) => (*i, 0),
        My::UInt(u) => (i64::try_from(*u).unwrap_or(i64::MAX), 0),
        My::Bytes(b) => {
            let text = String::from_utf8_lossy(b);
            let (s, us) = text.split_once('.').unwrap_or((&text, "0"));
            match (s.parse::<i64>(), us.parse::<u32>()) {
                (Ok(s), Ok(us)) => (s, us),
                _ => {
                    return Err(refuse(
                        format!("TIMESTAMP `{text}` is not seconds"),
                        raw_json(cell),
                    ));
                }
            }
        }
        other => return Ok(Some(other.clone())),
    };
    if secs == 0 && micros == 0 {
        return Ok(None);
    }
    let ts = DateTime::from_timestamp(secs, micros.saturating_mul(1000))
        .ok_or_else(|| refuse(format!("TIMESTAMP {secs} is out of range"), raw_json(cell)))?
        .naive_utc();
    let narrow = |n: u32| u8::try_from(n).unwrap_or(u8::MAX);
    Ok(Some(My::Date(
        u16::try_from(ts.year()).unwrap_or(0),
        narrow(ts.month()),
        narrow(ts.day()),
        narrow(ts.hour()),
        narrow(ts.minute()),
        narrow(ts.second()),
        ts.nanosecond() / 1000,
    )))
}

/// ENUM: the 1-based index of the label; 0 is the empty string MySQL
/// stores for an invalid value.
fn enum_label(cell: My, column: &SourceColumn) -> std::result::Result<My, Refused> {
    let index = match &cell {
        My::Int(i) => *i,
        My::UInt(u) => i64::try_from(*u).unwrap_or(i64::MAX),
        _ => return Ok(cell),
    };
    if index == 0 {
        return Ok(My::Bytes(Vec::new()));
    }
    usize::try_from(index - 1)
        .ok()
        .and_then(|i| column.labels.get(i))
        .map(|label| My::Bytes(label.as_bytes().to_vec()))
        .ok_or_else(|| {
            refuse(
                format!(
                    "ENUM index {index} is beyond the column's {} labels",
                    column.labels.len()
                ),
                raw_json(&cell),
            )
        })
}

/// SET: a little-endian bitmask over the labels; the server prints the
/// chosen labels in declaration order, comma separated.
fn set_labels(cell: My, column: &SourceColumn) -> std::result::Result<My, Refused> {
    let My::Bytes(mask) = &cell else {
        return Ok(cell);
    };
    let mut chosen: Vec<&str> = Vec::new();
    for (byte, bits) in mask.iter().enumerate() {
        for bit in 0..8 {
            if bits & (1 << bit) == 0 {
                continue;
            }
            let label = column.labels.get(byte * 8 + bit).ok_or_else(|| {
                refuse(
                    format!(
                        "SET member {} is beyond the column's {} labels",
                        byte * 8 + bit + 1,
                        column.labels.len()
                    ),
                    raw_json(&cell),
                )
            })?;
            chosen.push(label);
        }
    }
    Ok(My::Bytes(chosen.join(",").into_bytes()))
}

/// Applies `f` to a binary cell, padded back to its fixed length first
/// (the binlog drops the trailing zero bytes of BINARY(n) values).
fn bytes(
    cell: My,
    column: &SourceColumn,
    f: impl FnOnce(&[u8]) -> std::result::Result<Vec<u8>, String>,
) -> std::result::Result<My, Refused> {
    let My::Bytes(mut b) = cell else {
        return Ok(cell);
    };
    if let Some(n) = column.fixed_bytes
        && b.len() < n
    {
        b.resize(n, 0);
    }
    match f(&b) {
        Ok(out) => Ok(My::Bytes(out)),
        Err(e) => Err(refuse(e, raw_json(&My::Bytes(b)))),
    }
}

/// MariaDB stores an RFC 4122 UUID (variant 1, versions 1 to 5) with its
/// groups in reverse order so that time-based values sort by time; other
/// values as they are. The binlog carries the stored form.
fn maria_uuid(rec: &[u8]) -> Vec<u8> {
    let swapped = rec.len() == 16 && rec[6] & 0xC0 == 0x80 && (1..=5).contains(&(rec[8] >> 4));
    if !swapped {
        return rec.to_vec();
    }
    // Stored: node(6) clock_seq(2) time_hi(2) time_mid(2) time_low(4).
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&rec[12..16]);
    out.extend_from_slice(&rec[10..12]);
    out.extend_from_slice(&rec[8..10]);
    out.extend_from_slice(&rec[6..8]);
    out.extend_from_slice(&rec[0..6]);
    out
}

/// INET6 as the server prints it: IPv4-compatible and IPv4-mapped
/// addresses end in dotted quads.
fn inet6_text(addr: Ipv6Addr) -> String {
    let o = addr.octets();
    if o[..12].iter().all(|b| *b == 0) && o[12..].iter().any(|b| *b != 0) && o[12..14] != [0, 0] {
        return format!("::{}", Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    addr.to_string()
}

/// Text in the column's character set, as UTF-8 (the snapshot's session
/// reads utf8mb4, so the server converted there).
fn text(cell: My, column: &SourceColumn) -> std::result::Result<My, Refused> {
    let My::Bytes(b) = cell else {
        return Ok(cell);
    };
    match column.charset.as_deref() {
        None | Some("utf8mb4" | "utf8mb3" | "utf8" | "ascii" | "binary") => Ok(My::Bytes(b)),
        Some("latin1") => Ok(My::Bytes(latin1_to_utf8(&b).into_bytes())),
        Some(other) => Err(refuse(
            format!(
                "text in character set {other} is not decoded from the binlog \
                 (convert the column to utf8mb4)"
            ),
            raw_json(&My::Bytes(b)),
        )),
    }
}

/// MySQL's latin1 is Windows-1252 (its five unassigned bytes kept as the
/// C1 controls of the same number).
fn latin1_to_utf8(bytes: &[u8]) -> String {
    const HIGH: [u16; 32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ];
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => {
                char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('\u{FFFD}')
            }
            _ => char::from(b),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime, Utc};
    use uuid::Uuid;

    fn col(data_type: &str, column_type: &str) -> SourceColumn {
        SourceColumn::new("c", data_type, column_type)
    }

    fn t(name: &str) -> DataType {
        name.parse().unwrap()
    }

    fn value(cell: My, column: &SourceColumn, to: &str) -> Value {
        match convert(BinlogValue::Value(cell), column, &t(to), true) {
            Ok(Decoded::Value(v)) => v,
            Ok(Decoded::ZeroDate) => panic!("zero date"),
            Err(e) => panic!("refused: {}", e.error),
        }
    }

    #[test]
    fn integers_take_their_sign_from_the_column() {
        let c = col("tinyint", "tinyint(3) unsigned");
        assert_eq!(value(My::Int(-56), &c, "int16"), Value::Int(200));
        let c = col("int", "int(10) unsigned");
        assert_eq!(value(My::Int(-1), &c, "int64"), Value::Int(4_294_967_295));
        let c = col("bigint", "bigint(20) unsigned");
        assert_eq!(
            value(My::Int(-1), &c, "decimal(20,0)"),
            Value::Decimal("18446744073709551615".parse().unwrap())
        );
        let c = col("int", "int(11)");
        assert_eq!(value(My::Int(-1), &c, "int32"), Value::Int(-1));
        let c = col("tinyint", "tinyint(1)");
        assert_eq!(value(My::Int(1), &c, "bool"), Value::Bool(true));
    }

    #[test]
    fn years_timestamps_and_dates() {
        let c = col("year", "year(4)");
        assert_eq!(
            value(My::Bytes(b"1900".to_vec()), &c, "int16"),
            Value::Int(0)
        );
        assert_eq!(
            value(My::Bytes(b"2024".to_vec()), &c, "int16"),
            Value::Int(2024)
        );
        let c = col("timestamp", "timestamp(6)");
        let expected = NaiveDate::from_ymd_opt(2024, 5, 6)
            .unwrap()
            .and_time(NaiveTime::from_hms_micro_opt(7, 8, 9, 123_456).unwrap())
            .and_utc();
        let secs = expected.timestamp();
        assert_eq!(
            value(
                My::Bytes(format!("{secs}.123456").into_bytes()),
                &c,
                "timestamptz"
            ),
            Value::TimestampTz(expected)
        );
        assert_eq!(
            value(My::Int(secs), &c, "timestamptz"),
            Value::TimestampTz(expected.with_nanosecond(0).unwrap())
        );
        assert!(matches!(
            convert(
                BinlogValue::Value(My::Bytes(b"0".to_vec())),
                &c,
                &t("timestamptz"),
                true
            ),
            Ok(Decoded::ZeroDate)
        ));
        let c = col("datetime", "datetime");
        assert!(matches!(
            convert(
                BinlogValue::Value(My::Date(0, 0, 0, 0, 0, 0, 0)),
                &c,
                &t("timestamp"),
                true
            ),
            Ok(Decoded::ZeroDate)
        ));
        let _ = Utc::now();
    }

    #[test]
    fn enums_and_sets_become_their_labels() {
        let c = col("enum", "enum('small','large')");
        assert_eq!(
            value(My::Int(2), &c, "text(5)"),
            Value::Text("large".into())
        );
        assert_eq!(value(My::Int(0), &c, "text(5)"), Value::Text(String::new()));
        assert!(convert(BinlogValue::Value(My::Int(3)), &c, &t("text"), true).is_err());
        let c = col("set", "set('a','b','c')");
        assert_eq!(
            value(My::Bytes(vec![0b101]), &c, "text"),
            Value::Text("a,c".into())
        );
        assert_eq!(
            value(My::Bytes(vec![0]), &c, "text"),
            Value::Text(String::new())
        );
        assert!(
            convert(
                BinlogValue::Value(My::Bytes(vec![0b1000])),
                &c,
                &t("text"),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn mariadb_binary_types_become_their_text() {
        let v1 = Uuid::parse_str("6ccd780c-baba-1026-9564-5b8c656024db").unwrap();
        let b = v1.as_bytes();
        let mut stored = Vec::new();
        stored.extend_from_slice(&b[10..16]);
        stored.extend_from_slice(&b[8..10]);
        stored.extend_from_slice(&b[6..8]);
        stored.extend_from_slice(&b[4..6]);
        stored.extend_from_slice(&b[0..4]);
        let c = col("uuid", "uuid");
        assert_eq!(value(My::Bytes(stored), &c, "uuid"), Value::Uuid(v1));
        let odd = Uuid::parse_str("ffffffff-ffff-ffff-ffff-ffffffffffff").unwrap();
        assert_eq!(
            value(My::Bytes(odd.as_bytes().to_vec()), &c, "uuid"),
            Value::Uuid(odd)
        );
        let c = col("inet6", "inet6");
        let mapped: Ipv6Addr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(
            value(My::Bytes(mapped.octets().to_vec()), &c, "text"),
            Value::Text("::ffff:1.2.3.4".into())
        );
        let short = vec![0x20, 0x01, 0x0d, 0xb8];
        assert_eq!(
            value(My::Bytes(short), &c, "text"),
            Value::Text("2001:db8::".into())
        );
        let c = col("inet4", "inet4");
        assert_eq!(
            value(My::Bytes(vec![10, 0, 0, 1]), &c, "text"),
            Value::Text("10.0.0.1".into())
        );
        let c = col("binary", "binary(4)");
        assert_eq!(
            value(My::Bytes(vec![0x41]), &c, "bytes"),
            Value::Bytes(vec![0x41, 0, 0, 0])
        );
    }

    #[test]
    fn text_is_read_in_its_character_set() {
        let mut c = col("varchar", "varchar(10)");
        c.charset = Some("latin1".into());
        assert_eq!(
            value(My::Bytes(vec![0x63, 0x61, 0x66, 0xE9, 0x80]), &c, "text"),
            Value::Text("café€".into())
        );
        c.charset = Some("utf8mb4".into());
        assert!(
            convert(
                BinlogValue::Value(My::Bytes(vec![0xE9])),
                &c,
                &t("text"),
                true
            )
            .is_err()
        );
        c.charset = Some("ucs2".into());
        assert!(
            convert(
                BinlogValue::Value(My::Bytes(vec![0, 0x41])),
                &c,
                &t("text"),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn other_values_decode_as_the_snapshot_does() {
        let c = col("decimal", "decimal(10,2)");
        assert_eq!(
            value(My::Bytes(b"12.50".to_vec()), &c, "decimal(10,2)"),
            Value::Decimal("12.50".parse().unwrap())
        );
        let c = col("bit", "bit(12)");
        assert_eq!(
            value(My::Bytes(vec![0x01, 0x02]), &c, "int64"),
            Value::Int(258)
        );
        let c = col("time", "time(6)");
        assert!(
            convert(
                BinlogValue::Value(My::Time(true, 0, 1, 0, 0, 0)),
                &c,
                &t("time"),
                true
            )
            .is_err()
        );
        assert_eq!(value(My::NULL, &c, "time"), Value::Null);
    }
}
