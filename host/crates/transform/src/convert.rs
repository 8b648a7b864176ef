//! Between the host model (rows of values) and the WIT contract (typed
//! column lists). Results coming back from a plugin are untrusted: every
//! length, index and type is checked before a row is built from them.

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike};

use super::bindings::wit;
use dmp_model::{Change, Column, DataType, Decimal, Row, TableSchema, Value};

const MICROS_PER_SEC: i64 = 1_000_000;

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

pub(crate) fn data_type_to_wit(t: &DataType) -> wit::DataType {
    match *t {
        DataType::Bool => wit::DataType::Boolean,
        DataType::Int16 => wit::DataType::Int16,
        DataType::Int32 => wit::DataType::Int32,
        DataType::Int64 => wit::DataType::Int64,
        DataType::Float32 => wit::DataType::Float32,
        DataType::Float64 => wit::DataType::Float64,
        DataType::Decimal { precision, scale } => {
            wit::DataType::Decimal(wit::DecimalType { precision, scale })
        }
        DataType::Text { max_len } => wit::DataType::Text(max_len),
        DataType::Bytes => wit::DataType::Bytes,
        DataType::Json => wit::DataType::Json,
        DataType::Date => wit::DataType::Date,
        DataType::Time => wit::DataType::Time,
        DataType::Timestamp => wit::DataType::Timestamp,
        DataType::TimestampTz => wit::DataType::Timestamptz,
        DataType::Uuid => wit::DataType::Uuid,
    }
}

pub(crate) fn data_type_from_wit(t: &wit::DataType) -> DataType {
    match *t {
        wit::DataType::Boolean => DataType::Bool,
        wit::DataType::Int16 => DataType::Int16,
        wit::DataType::Int32 => DataType::Int32,
        wit::DataType::Int64 => DataType::Int64,
        wit::DataType::Float32 => DataType::Float32,
        wit::DataType::Float64 => DataType::Float64,
        wit::DataType::Decimal(d) => DataType::Decimal {
            precision: d.precision,
            scale: d.scale,
        },
        wit::DataType::Text(max_len) => DataType::Text { max_len },
        wit::DataType::Bytes => DataType::Bytes,
        wit::DataType::Json => DataType::Json,
        wit::DataType::Date => DataType::Date,
        wit::DataType::Time => DataType::Time,
        wit::DataType::Timestamp => DataType::Timestamp,
        wit::DataType::Timestamptz => DataType::TimestampTz,
        wit::DataType::Uuid => DataType::Uuid,
    }
}

fn days(d: NaiveDate) -> i32 {
    i32::try_from((d - epoch()).num_days()).unwrap_or(i32::MAX)
}

fn time_micros(t: NaiveTime) -> i64 {
    i64::from(t.num_seconds_from_midnight()) * MICROS_PER_SEC + i64::from(t.nanosecond() / 1000)
}

pub(crate) fn value_to_wit(v: &Value) -> wit::Value {
    match v {
        Value::Null => wit::Value::Null,
        Value::Bool(b) => wit::Value::Boolean(*b),
        Value::Int(i) => wit::Value::Int(*i),
        Value::Float(f) => wit::Value::Float(*f),
        Value::Decimal(d) => wit::Value::Decimal(d.to_string()),
        Value::Text(s) => wit::Value::Text(s.clone()),
        Value::Bytes(b) => wit::Value::Bytes(b.clone()),
        Value::Json(s) => wit::Value::Json(s.clone()),
        Value::Date(d) => wit::Value::Date(days(*d)),
        Value::Time(t) => wit::Value::Time(time_micros(*t)),
        Value::Timestamp(ts) => wit::Value::Timestamp(ts.and_utc().timestamp_micros()),
        Value::TimestampTz(ts) => wit::Value::Timestamptz(ts.timestamp_micros()),
        Value::Uuid(u) => wit::Value::Uuid(u.as_u64_pair()),
    }
}

pub(crate) fn schema_to_wit(schema: &TableSchema) -> wit::TableSchema {
    wit::TableSchema {
        namespace: schema.namespace.clone(),
        name: schema.name.clone(),
        columns: schema
            .columns
            .iter()
            .map(|c| wit::Column {
                name: c.name.clone(),
                data_type: data_type_to_wit(&c.data_type),
                nullable: c.nullable,
                default: c.default.as_ref().map(value_to_wit),
            })
            .collect(),
        primary_key: schema.primary_key.clone(),
    }
}

/// The model schema of a plugin's output. Indexes, foreign keys and enum
/// values of the input whose columns all survive are kept; a primary key naming a missing column is
/// an error.
pub(crate) fn schema_from_wit(
    output: &wit::TableSchema,
    input: &TableSchema,
) -> Result<TableSchema, String> {
    let mut columns = Vec::with_capacity(output.columns.len());
    for c in &output.columns {
        if c.name.is_empty() {
            return Err("the output schema has a column without a name".into());
        }
        if columns.iter().any(|seen: &Column| seen.name == c.name) {
            return Err(format!("the output schema has column `{}` twice", c.name));
        }
        let data_type = data_type_from_wit(&c.data_type);
        let default = match &c.default {
            Some(v) => Some(
                cell_value(wit_value_cell(v), &data_type)
                    .map_err(|e| format!("default of column `{}`: {e}", c.name))?,
            ),
            None => None,
        };
        // A column the plugin passes on keeps what the source said of it.
        let same = input
            .columns
            .iter()
            .find(|ic| ic.name == c.name && ic.data_type == data_type);
        let mut column = match same {
            Some(ic) => Column {
                default: None,
                ..ic.clone()
            },
            None => Column::new(c.name.clone(), data_type),
        };
        column.nullable = c.nullable;
        column.default = default.filter(|d| !d.is_null());
        if column.default.is_some() {
            column.default_expr = None;
        }
        columns.push(column);
    }
    if let Some(missing) = output
        .primary_key
        .iter()
        .find(|k| !columns.iter().any(|c| &c.name == *k))
    {
        return Err(format!(
            "the output primary key names column `{missing}`, which the output schema lacks"
        ));
    }
    let indexes = input
        .indexes
        .iter()
        .filter(|i| {
            i.columns
                .iter()
                .all(|ic| columns.iter().any(|c| &c.name == ic))
        })
        .cloned()
        .collect();
    let foreign_keys = input
        .foreign_keys
        .iter()
        .filter(|fk| {
            fk.columns
                .iter()
                .all(|fc| columns.iter().any(|c| &c.name == fc))
        })
        .cloned()
        .collect();
    // A check stays when every column it reads is still there with its
    // type (one DMP cannot read stays only if no column changed).
    let kept = |name: &str| {
        let before = input.columns.iter().find(|c| c.name == name);
        before.is_some_and(|b| {
            columns
                .iter()
                .any(|c| c.name == name && c.data_type == b.data_type)
        })
    };
    let checks = input
        .checks
        .iter()
        .filter(|check| match check.expr.columns() {
            Some(read) => read.iter().all(|c| kept(c)),
            None => input.columns.iter().all(|c| kept(&c.name)),
        })
        .cloned()
        .collect();
    let same_key = output.primary_key == input.primary_key;
    // The partition key is the source's SQL, not read: partitions stay
    // when no column changed.
    let partitioning = input
        .partitioning
        .clone()
        .filter(|_| input.columns.iter().all(|c| kept(&c.name)));
    Ok(TableSchema {
        namespace: input.namespace.clone(),
        name: input.name.clone(),
        columns,
        primary_key: output.primary_key.clone(),
        primary_key_name: input.primary_key_name.clone().filter(|_| same_key),
        indexes,
        foreign_keys,
        checks,
        comment: input.comment.clone(),
        partitioning,
        skipped: input.skipped.clone(),
    })
}

/// A value read from a WIT column or value, before the column's type gives
/// it a meaning.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Null,
    Boolean(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    Micros(i64),
    Uuid((u64, u64)),
}

fn wit_value_cell(v: &wit::Value) -> Cell<'_> {
    match v {
        wit::Value::Null => Cell::Null,
        wit::Value::Boolean(b) => Cell::Boolean(*b),
        wit::Value::Int(i) => Cell::Int(*i),
        wit::Value::Float(f) => Cell::Float(*f),
        wit::Value::Decimal(s) | wit::Value::Text(s) | wit::Value::Json(s) => Cell::Text(s),
        wit::Value::Bytes(b) => Cell::Bytes(b),
        wit::Value::Date(d) => Cell::Date(*d),
        wit::Value::Time(m) | wit::Value::Timestamp(m) | wit::Value::Timestamptz(m) => {
            Cell::Micros(*m)
        }
        wit::Value::Uuid(u) => Cell::Uuid(*u),
    }
}

/// The model value of a plugin's value for a column of type `t`, checked.
pub(crate) fn value_from_wit(v: &wit::Value, t: &DataType) -> Result<Value, String> {
    cell_value(wit_value_cell(v), t)
}

/// The model value of a cell in a column of type `t`, checked.
fn cell_value(cell: Cell<'_>, t: &DataType) -> Result<Value, String> {
    let value = match (cell, t) {
        (Cell::Null, _) => Value::Null,
        (Cell::Boolean(b), DataType::Bool) => Value::Bool(b),
        (Cell::Int(i), DataType::Int16 | DataType::Int32 | DataType::Int64) => Value::Int(i),
        (Cell::Float(f), DataType::Float32 | DataType::Float64) => Value::Float(f),
        (Cell::Text(s), DataType::Decimal { .. }) => Value::Decimal(s.parse::<Decimal>()?),
        (Cell::Text(s), DataType::Text { .. }) => Value::Text(s.to_string()),
        (Cell::Text(s), DataType::Json) => Value::parse_text(s, t).map_err(|e| e.0)?,
        (Cell::Bytes(b), DataType::Bytes) => Value::Bytes(b.to_vec()),
        (Cell::Date(d), DataType::Date) => Value::Date(
            epoch()
                .checked_add_signed(chrono::Duration::days(d.into()))
                .ok_or_else(|| format!("date {d} days after 1970-01-01 is out of range"))?,
        ),
        (Cell::Micros(m), DataType::Time) => {
            let secs = u32::try_from(m.div_euclid(MICROS_PER_SEC))
                .map_err(|_| format!("time {m} µs is out of range"))?;
            let nanos = u32::try_from(m.rem_euclid(MICROS_PER_SEC) * 1000).unwrap_or(0);
            Value::Time(
                NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                    .ok_or_else(|| format!("time {m} µs is out of range"))?,
            )
        }
        (Cell::Micros(m), DataType::Timestamp) => Value::Timestamp(
            DateTime::from_timestamp_micros(m)
                .ok_or_else(|| format!("timestamp {m} µs is out of range"))?
                .naive_utc(),
        ),
        (Cell::Micros(m), DataType::TimestampTz) => Value::TimestampTz(
            DateTime::from_timestamp_micros(m)
                .ok_or_else(|| format!("timestamp {m} µs is out of range"))?,
        ),
        (Cell::Uuid((hi, lo)), DataType::Uuid) => Value::Uuid(uuid::Uuid::from_u64_pair(hi, lo)),
        (cell, t) => return Err(format!("a {cell:?} value in a {t} column")),
    };
    value.checked(t).map_err(|e| e.0)
}

/// Builds one WIT column from model values.
struct ColumnBuilder {
    values: wit::ColumnValues,
    validity: Vec<u8>,
    nulls: bool,
    len: usize,
}

impl ColumnBuilder {
    fn new(t: &DataType, capacity: usize) -> Self {
        use wit::ColumnValues as V;
        let values = match t {
            DataType::Bool => V::Boolean(Vec::with_capacity(capacity)),
            DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                V::Int(Vec::with_capacity(capacity))
            }
            DataType::Float32 | DataType::Float64 => V::Float(Vec::with_capacity(capacity)),
            DataType::Decimal { .. } | DataType::Text { .. } | DataType::Json => {
                V::Text(wit::TextValues {
                    offsets: Vec::with_capacity(capacity + 1),
                    data: String::new(),
                })
            }
            DataType::Bytes => V::Bytes(wit::BytesValues {
                offsets: Vec::with_capacity(capacity + 1),
                data: Vec::new(),
            }),
            DataType::Date => V::Date(Vec::with_capacity(capacity)),
            DataType::Time | DataType::Timestamp | DataType::TimestampTz => {
                V::Micros(Vec::with_capacity(capacity))
            }
            DataType::Uuid => V::Uuid(Vec::with_capacity(capacity)),
        };
        let mut builder = ColumnBuilder {
            values,
            validity: Vec::with_capacity(capacity / 8 + 1),
            nulls: false,
            len: 0,
        };
        match &mut builder.values {
            wit::ColumnValues::Text(t) => t.offsets.push(0),
            wit::ColumnValues::Bytes(b) => b.offsets.push(0),
            _ => {}
        }
        builder
    }

    /// Appends a value; the value already fits the column (model rows are
    /// typed by their schema), anything else is stored as null.
    fn push(&mut self, value: &Value) {
        use wit::ColumnValues as V;
        let offset = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        let valid = match (&mut self.values, value) {
            (V::Boolean(v), Value::Bool(b)) => {
                v.push(*b);
                true
            }
            (V::Int(v), Value::Int(i)) => {
                v.push(*i);
                true
            }
            (V::Float(v), Value::Float(f)) => {
                v.push(*f);
                true
            }
            (V::Text(t), Value::Text(s) | Value::Json(s)) => {
                t.data.push_str(s);
                t.offsets.push(offset(t.data.len()));
                true
            }
            (V::Text(t), Value::Decimal(d)) => {
                t.data.push_str(d.as_str());
                t.offsets.push(offset(t.data.len()));
                true
            }
            (V::Bytes(b), Value::Bytes(x)) => {
                b.data.extend_from_slice(x);
                b.offsets.push(offset(b.data.len()));
                true
            }
            (V::Date(v), Value::Date(d)) => {
                v.push(days(*d));
                true
            }
            (V::Micros(v), Value::Time(t)) => {
                v.push(time_micros(*t));
                true
            }
            (V::Micros(v), Value::Timestamp(ts)) => {
                v.push(ts.and_utc().timestamp_micros());
                true
            }
            (V::Micros(v), Value::TimestampTz(ts)) => {
                v.push(ts.timestamp_micros());
                true
            }
            (V::Uuid(v), Value::Uuid(u)) => {
                v.push(u.as_u64_pair());
                true
            }
            (values, _) => {
                match values {
                    V::Boolean(v) => v.push(false),
                    V::Int(v) | V::Micros(v) => v.push(0),
                    V::Float(v) => v.push(0.0),
                    V::Text(t) => t.offsets.push(offset(t.data.len())),
                    V::Bytes(b) => b.offsets.push(offset(b.data.len())),
                    V::Date(v) => v.push(0),
                    V::Uuid(v) => v.push((0, 0)),
                }
                false
            }
        };
        if self.len.is_multiple_of(8) {
            self.validity.push(0);
        }
        if valid {
            if let Some(byte) = self.validity.last_mut() {
                *byte |= 1 << (self.len % 8);
            }
        } else {
            self.nulls = true;
        }
        self.len += 1;
    }

    fn finish(self) -> wit::ColumnData {
        wit::ColumnData {
            values: self.values,
            validity: self.nulls.then_some(self.validity),
        }
    }
}

fn encode_columns<'a>(
    schema: &TableSchema,
    rows: impl Iterator<Item = Option<&'a Row>> + Clone,
    len: usize,
) -> Vec<wit::ColumnData> {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let mut builder = ColumnBuilder::new(&column.data_type, len);
            for row in rows.clone() {
                builder.push(row.and_then(|r| r.0.get(i)).unwrap_or(&Value::Null));
            }
            builder.finish()
        })
        .collect()
}

/// The WIT batch of a list of changes. A delete carries its old image in
/// `columns`; an update's old image, where there is one, goes to `before`.
pub(crate) fn encode_batch(schema: &TableSchema, changes: &[Change]) -> wit::Batch {
    let len = changes.len();
    let columns = encode_columns(schema, changes.iter().map(|c| Some(c.row())), len);
    let all_inserts = changes.iter().all(|c| matches!(c, Change::Insert(_)));
    let ops = (!all_inserts).then(|| {
        changes
            .iter()
            .map(|c| match c {
                Change::Insert(_) => wit::Op::Insert,
                Change::Update { .. } => wit::Op::Update,
                Change::Delete(_) => wit::Op::Delete,
            })
            .collect()
    });
    let any_before = changes.iter().any(|c| {
        matches!(
            c,
            Change::Update {
                before: Some(_),
                ..
            }
        )
    });
    let before = any_before.then(|| {
        encode_columns(
            schema,
            changes.iter().map(|c| match c {
                Change::Update { before, .. } => before.as_ref(),
                _ => None,
            }),
            len,
        )
    });
    wit::Batch {
        len: u32::try_from(len).unwrap_or(u32::MAX),
        columns,
        ops,
        before,
    }
}

fn is_valid(column: &wit::ColumnData, row: usize) -> bool {
    column
        .validity
        .as_ref()
        .is_none_or(|bits| bits.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0))
}

fn column_len(column: &wit::ColumnData) -> usize {
    use wit::ColumnValues as V;
    match &column.values {
        V::Boolean(v) => v.len(),
        V::Int(v) | V::Micros(v) => v.len(),
        V::Float(v) => v.len(),
        V::Text(t) => t.offsets.len().saturating_sub(1),
        V::Bytes(b) => b.offsets.len().saturating_sub(1),
        V::Date(v) => v.len(),
        V::Uuid(v) => v.len(),
    }
}

fn read_cell(column: &wit::ColumnData, row: usize) -> Result<Cell<'_>, String> {
    use wit::ColumnValues as V;
    if !is_valid(column, row) {
        return Ok(Cell::Null);
    }
    let span = |offsets: &[u32]| -> Result<(usize, usize), String> {
        let start = offsets.get(row).copied().unwrap_or(0) as usize;
        let end = offsets.get(row + 1).copied().unwrap_or(0) as usize;
        if start > end {
            return Err(format!("offsets of row {row} go backwards"));
        }
        Ok((start, end))
    };
    Ok(match &column.values {
        V::Boolean(v) => Cell::Boolean(v[row]),
        V::Int(v) => Cell::Int(v[row]),
        V::Float(v) => Cell::Float(v[row]),
        V::Text(t) => {
            let (s, e) = span(&t.offsets)?;
            Cell::Text(t.data.get(s..e).ok_or_else(|| {
                format!("offsets of row {row} are outside the text or split a character")
            })?)
        }
        V::Bytes(b) => {
            let (s, e) = span(&b.offsets)?;
            Cell::Bytes(
                b.data
                    .get(s..e)
                    .ok_or_else(|| format!("offsets of row {row} are outside the bytes"))?,
            )
        }
        V::Date(v) => Cell::Date(v[row]),
        V::Micros(v) => Cell::Micros(v[row]),
        V::Uuid(v) => Cell::Uuid(v[row]),
    })
}

/// What a plugin made of a batch, as model changes in the output schema.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub changes: Vec<Change>,
    /// Input row index of each change.
    pub origins: Vec<usize>,
    /// Input row index and reason of each refused row.
    pub rejects: Vec<(usize, String)>,
}

/// Checks a plugin's result against its input and output schemas and
/// builds the output rows. Any inconsistency fails the whole batch.
/// The output change for an input change: same op, new row. The old image
/// of an update was in the input schema; the target finds the row by the
/// new image's key.
fn rebuilt(input: &Change, row: Row) -> Change {
    match input {
        Change::Insert(_) => Change::Insert(row),
        Change::Update { .. } => Change::Update {
            before: None,
            after: row,
        },
        Change::Delete(_) => Change::Delete(row),
    }
}

/// Passed-through values are moved out of `input` (only once everything
/// is checked); rows refused by the plugin are left as they were.
pub(crate) fn decode_result(
    result: &wit::BatchResult,
    input: &mut [Change],
    input_schema: &TableSchema,
    output_schema: &TableSchema,
) -> Result<Decoded, String> {
    let len = result.len as usize;
    if result.origin.len() != len {
        return Err(format!(
            "{} output rows but {} origins",
            len,
            result.origin.len()
        ));
    }
    if result.columns.len() != output_schema.columns.len() {
        return Err(format!(
            "{} output columns where the output schema has {}",
            result.columns.len(),
            output_schema.columns.len()
        ));
    }
    if let Some(w) = result.origin.windows(2).find(|w| w[0] > w[1]) {
        return Err(format!(
            "origins must ascend, found {} after {}",
            w[1], w[0]
        ));
    }
    if let Some(bad) = result
        .origin
        .iter()
        .chain(result.rejects.iter().map(|r| &r.row))
        .find(|o| **o as usize >= input.len())
    {
        return Err(format!(
            "row index {bad} is beyond the {} input rows",
            input.len()
        ));
    }
    for (column, out) in output_schema.columns.iter().zip(&result.columns) {
        match out {
            wit::OutputColumn::Values(data) => {
                if column_len(data) != len {
                    return Err(format!(
                        "output column {} has {} values for {len} rows",
                        column.name,
                        column_len(data)
                    ));
                }
                if data
                    .validity
                    .as_ref()
                    .is_some_and(|bits| bits.len() < len.div_ceil(8))
                {
                    return Err(format!(
                        "output column {} has a validity bitmap too short for {len} rows",
                        column.name
                    ));
                }
            }
            wit::OutputColumn::Unchanged(i) => match input_schema.columns.get(*i as usize) {
                None => {
                    return Err(format!(
                        "output column {} passes through input column {i}, which does not exist",
                        column.name
                    ));
                }
                Some(source) if source.data_type != column.data_type => {
                    return Err(format!(
                        "output column {} ({}) passes through input column {} of type {}",
                        column.name, column.data_type, source.name, source.data_type
                    ));
                }
                Some(_) => {}
            },
        }
    }
    // Every value the plugin produced is decoded and every passed-through
    // value checked before any input row is touched: a bad result fails the
    // batch and leaves its rows intact for the dead-letter store.
    let mut produced: Vec<Option<std::vec::IntoIter<Value>>> =
        Vec::with_capacity(result.columns.len());
    let mut pass_count = vec![0usize; input_schema.columns.len()];
    for (column, out) in output_schema.columns.iter().zip(&result.columns) {
        match out {
            wit::OutputColumn::Values(data) => {
                let mut values = Vec::with_capacity(len);
                for r in 0..len {
                    let value = cell_value(read_cell(data, r)?, &column.data_type)
                        .map_err(|e| format!("output column {} row {r}: {e}", column.name))?;
                    if value.is_null() && !column.nullable {
                        return Err(format!(
                            "output column {} row {r}: NULL in a NOT NULL column",
                            column.name
                        ));
                    }
                    values.push(value);
                }
                produced.push(Some(values.into_iter()));
            }
            wit::OutputColumn::Unchanged(i) => {
                let i = *i as usize;
                pass_count[i] += 1;
                if !column.nullable
                    && let Some(r) = result
                        .origin
                        .iter()
                        .position(|o| input[*o as usize].row().0.get(i).is_none_or(Value::is_null))
                {
                    return Err(format!(
                        "output column {} row {r}: NULL in a NOT NULL column",
                        column.name
                    ));
                }
                produced.push(None);
            }
        }
    }
    // A passed-through value moves from its input row unless the row is
    // emitted more than once, refused as well, or the column passed twice.
    let refused: std::collections::HashSet<u32> = result.rejects.iter().map(|r| r.row).collect();
    let in_place = result.columns.len() == input_schema.columns.len()
        && result.columns.iter().enumerate().all(|(c, out)| match out {
            wit::OutputColumn::Unchanged(i) => *i as usize == c,
            wit::OutputColumn::Values(_) => true,
        });
    let mut changes = Vec::with_capacity(len);
    for (r, origin) in result.origin.iter().enumerate() {
        let shared = (r > 0 && result.origin[r - 1] == *origin)
            || result.origin.get(r + 1) == Some(origin)
            || refused.contains(origin);
        let source = &mut input[*origin as usize];
        if in_place && !shared {
            // Same columns in the same places: reuse the input row and
            // overwrite only what the plugin produced.
            let mut values = std::mem::take(&mut source.row_mut().0);
            for (c, column) in produced.iter_mut().enumerate() {
                if let (Some(column), Some(slot)) = (column.as_mut(), values.get_mut(c)) {
                    *slot = column.next().unwrap_or(Value::Null);
                }
            }
            changes.push(rebuilt(source, Row(values)));
            continue;
        }
        let mut values = Vec::with_capacity(output_schema.columns.len());
        for (c, out) in result.columns.iter().enumerate() {
            values.push(match out {
                wit::OutputColumn::Values(_) => produced[c]
                    .as_mut()
                    .and_then(Iterator::next)
                    .unwrap_or(Value::Null),
                wit::OutputColumn::Unchanged(i) => {
                    let i = *i as usize;
                    match source.row_mut().0.get_mut(i) {
                        Some(slot) if !shared && pass_count[i] == 1 => std::mem::take(slot),
                        Some(slot) => slot.clone(),
                        None => Value::Null,
                    }
                }
            });
        }
        changes.push(rebuilt(source, Row(values)));
    }
    Ok(Decoded {
        changes,
        origins: result.origin.iter().map(|o| *o as usize).collect(),
        rejects: result
            .rejects
            .iter()
            .map(|r| (r.row as usize, r.reason.clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> TableSchema {
        let types = [
            "bool",
            "int16",
            "int64",
            "float64",
            "decimal(10,2)",
            "text",
            "bytes",
            "json",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "uuid",
        ];
        TableSchema {
            namespace: None,
            name: "t".into(),
            columns: types
                .iter()
                .enumerate()
                .map(|(i, t)| Column::new(format!("c{i}"), t.parse().unwrap()))
                .collect(),
            primary_key: vec![],
            indexes: vec![],
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    fn rows(schema: &TableSchema) -> Vec<Change> {
        let texts = [
            "true",
            "-32768",
            "9223372036854775807",
            "0.1",
            "12.50",
            "é✓",
            "\\x00ff",
            "{\"a\": 2.50}",
            "2024-02-29",
            "23:59:59.999999",
            "1900-01-01 00:00:00.000001",
            "2038-01-19 03:14:08+00:00",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ];
        let full = Row(schema
            .columns
            .iter()
            .zip(texts)
            .map(|(c, t)| Value::parse_text(t, &c.data_type).unwrap())
            .collect());
        let nulls = Row(vec![Value::Null; schema.columns.len()]);
        vec![Change::Insert(full), Change::Insert(nulls)]
    }

    /// What an identity plugin returns: every column as values.
    fn echo(batch: &wit::Batch) -> wit::BatchResult {
        wit::BatchResult {
            len: batch.len,
            columns: batch
                .columns
                .iter()
                .cloned()
                .map(wit::OutputColumn::Values)
                .collect(),
            origin: (0..batch.len).collect(),
            rejects: vec![],
        }
    }

    #[test]
    fn every_type_survives_the_boundary() {
        let schema = schema();
        let input = rows(&schema);
        let batch = encode_batch(&schema, &input);
        let decoded = decode_result(&echo(&batch), &mut input.clone(), &schema, &schema).unwrap();
        assert_eq!(decoded.changes, input);
        let round = schema_from_wit(&schema_to_wit(&schema), &schema).unwrap();
        assert_eq!(round, schema);
    }

    #[test]
    fn inconsistent_results_are_refused() {
        let schema = schema();
        let input = rows(&schema);
        let batch = encode_batch(&schema, &input);
        let mut bad = echo(&batch);
        bad.origin = vec![1, 0];
        assert!(
            decode_result(&bad, &mut input.clone(), &schema, &schema)
                .unwrap_err()
                .contains("ascend")
        );
        let mut bad = echo(&batch);
        bad.origin = vec![0, 7];
        assert!(
            decode_result(&bad, &mut input.clone(), &schema, &schema)
                .unwrap_err()
                .contains("beyond")
        );
        let mut bad = echo(&batch);
        bad.columns[1] = wit::OutputColumn::Values(batch.columns[5].clone());
        assert!(decode_result(&bad, &mut input.clone(), &schema, &schema).is_err());
        let mut bad = echo(&batch);
        if let wit::OutputColumn::Values(data) = &mut bad.columns[3] {
            data.validity = Some(vec![]);
        }
        assert!(
            decode_result(&bad, &mut input.clone(), &schema, &schema)
                .unwrap_err()
                .contains("too short")
        );
        let mut bad = echo(&batch);
        bad.columns.pop();
        assert!(
            decode_result(&bad, &mut input.clone(), &schema, &schema)
                .unwrap_err()
                .contains("output columns")
        );
        let mut bad = echo(&batch);
        bad.columns[0] = wit::OutputColumn::Unchanged(2);
        assert!(
            decode_result(&bad, &mut input.clone(), &schema, &schema)
                .unwrap_err()
                .contains("passes through")
        );
        let mut ok = echo(&batch);
        ok.columns = (0..13).map(wit::OutputColumn::Unchanged).collect();
        assert_eq!(
            decode_result(&ok, &mut input.clone(), &schema, &schema)
                .unwrap()
                .changes,
            input
        );
    }
}
