//! Reading and building the columnar batches of the WIT contract.

use crate::bindings::dmp::transform::types::{
    BytesValues, ColumnData, ColumnValues, DataType, TextValues, Value,
};

/// A value read in place from a batch: text and bytes borrow the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// A boolean.
    Boolean(bool),
    /// An integer of any width.
    Int(i64),
    /// A float of either width.
    Float(f64),
    /// Text, decimal text or JSON text, per the column's type.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds (time of day, or since 1970-01-01 for timestamps).
    Micros(i64),
    /// A UUID as two halves, most significant first.
    Uuid((u64, u64)),
}

impl Cell<'_> {
    /// The owned value this cell stands for in a column of type `t`.
    pub fn to_value(self, t: &DataType) -> Value {
        match (self, t) {
            (Cell::Null, _) => Value::Null,
            (Cell::Boolean(b), _) => Value::Boolean(b),
            (Cell::Int(i), _) => Value::Int(i),
            (Cell::Float(f), _) => Value::Float(f),
            (Cell::Text(s), DataType::Decimal(_)) => Value::Decimal(s.to_string()),
            (Cell::Text(s), DataType::Json) => Value::Json(s.to_string()),
            (Cell::Text(s), _) => Value::Text(s.to_string()),
            (Cell::Bytes(b), _) => Value::Bytes(b.to_vec()),
            (Cell::Date(d), _) => Value::Date(d),
            (Cell::Micros(m), DataType::Time) => Value::Time(m),
            (Cell::Micros(m), DataType::Timestamptz) => Value::Timestamptz(m),
            (Cell::Micros(m), _) => Value::Timestamp(m),
            (Cell::Uuid(u), _) => Value::Uuid(u),
        }
    }
}

/// The cell a value reads as.
pub fn value_cell(value: &Value) -> Cell<'_> {
    match value {
        Value::Null => Cell::Null,
        Value::Boolean(b) => Cell::Boolean(*b),
        Value::Int(i) => Cell::Int(*i),
        Value::Float(f) => Cell::Float(*f),
        Value::Decimal(s) | Value::Text(s) | Value::Json(s) => Cell::Text(s),
        Value::Bytes(b) => Cell::Bytes(b),
        Value::Date(d) => Cell::Date(*d),
        Value::Time(m) | Value::Timestamp(m) | Value::Timestamptz(m) => Cell::Micros(*m),
        Value::Uuid(u) => Cell::Uuid(*u),
    }
}

fn is_valid(column: &ColumnData, row: usize) -> bool {
    column
        .validity
        .as_ref()
        .is_none_or(|bits| bits.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0))
}

fn slice(offsets: &[u32], row: usize) -> Option<(usize, usize)> {
    let start = usize::try_from(*offsets.get(row)?).ok()?;
    let end = usize::try_from(*offsets.get(row + 1)?).ok()?;
    (start <= end).then_some((start, end))
}

/// Row `row` of a column; `Null` for a null or a row past the end.
pub fn cell(column: &ColumnData, row: usize) -> Cell<'_> {
    if !is_valid(column, row) {
        return Cell::Null;
    }
    let found = match &column.values {
        ColumnValues::Boolean(v) => v.get(row).map(|b| Cell::Boolean(*b)),
        ColumnValues::Int(v) => v.get(row).map(|i| Cell::Int(*i)),
        ColumnValues::Float(v) => v.get(row).map(|f| Cell::Float(*f)),
        ColumnValues::Text(t) => slice(&t.offsets, row)
            .and_then(|(s, e)| t.data.get(s..e))
            .map(Cell::Text),
        ColumnValues::Bytes(b) => slice(&b.offsets, row)
            .and_then(|(s, e)| b.data.get(s..e))
            .map(Cell::Bytes),
        ColumnValues::Date(v) => v.get(row).map(|d| Cell::Date(*d)),
        ColumnValues::Micros(v) => v.get(row).map(|m| Cell::Micros(*m)),
        ColumnValues::Uuid(v) => v.get(row).map(|u| Cell::Uuid(*u)),
    };
    found.unwrap_or(Cell::Null)
}

/// Builds one output column of a given type, row by row.
pub struct ColumnBuilder {
    values: ColumnValues,
    validity: Vec<u8>,
    nulls: bool,
    len: usize,
}

impl ColumnBuilder {
    /// An empty column for values of type `t`.
    pub fn new(t: &DataType, capacity: usize) -> Self {
        let values = match t {
            DataType::Boolean => ColumnValues::Boolean(Vec::with_capacity(capacity)),
            DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                ColumnValues::Int(Vec::with_capacity(capacity))
            }
            DataType::Float32 | DataType::Float64 => {
                ColumnValues::Float(Vec::with_capacity(capacity))
            }
            DataType::Decimal(_) | DataType::Text(_) | DataType::Json => {
                ColumnValues::Text(TextValues {
                    offsets: vec![0],
                    data: String::new(),
                })
            }
            DataType::Bytes => ColumnValues::Bytes(BytesValues {
                offsets: vec![0],
                data: Vec::new(),
            }),
            DataType::Date => ColumnValues::Date(Vec::with_capacity(capacity)),
            DataType::Time | DataType::Timestamp | DataType::Timestamptz => {
                ColumnValues::Micros(Vec::with_capacity(capacity))
            }
            DataType::Uuid => ColumnValues::Uuid(Vec::with_capacity(capacity)),
        };
        ColumnBuilder {
            values,
            validity: Vec::with_capacity(capacity / 8 + 1),
            nulls: false,
            len: 0,
        }
    }

    /// Appends a cell; a cell of the wrong kind is an error naming both.
    pub fn push(&mut self, cell: Cell<'_>) -> Result<(), String> {
        let valid = !matches!(cell, Cell::Null);
        match (&mut self.values, cell) {
            (ColumnValues::Boolean(v), Cell::Boolean(b)) => v.push(b),
            (ColumnValues::Boolean(v), Cell::Null) => v.push(false),
            (ColumnValues::Int(v), Cell::Int(i)) => v.push(i),
            (ColumnValues::Int(v), Cell::Null) => v.push(0),
            (ColumnValues::Float(v), Cell::Float(f)) => v.push(f),
            #[allow(clippy::cast_precision_loss)]
            (ColumnValues::Float(v), Cell::Int(i)) => v.push(i as f64),
            (ColumnValues::Float(v), Cell::Null) => v.push(0.0),
            (ColumnValues::Text(t), Cell::Text(s)) => {
                t.data.push_str(s);
                t.offsets.push(offset(t.data.len())?);
            }
            (ColumnValues::Text(t), Cell::Null) => t.offsets.push(offset(t.data.len())?),
            (ColumnValues::Bytes(b), Cell::Bytes(x)) => {
                b.data.extend_from_slice(x);
                b.offsets.push(offset(b.data.len())?);
            }
            (ColumnValues::Bytes(b), Cell::Null) => b.offsets.push(offset(b.data.len())?),
            (ColumnValues::Date(v), Cell::Date(d)) => v.push(d),
            (ColumnValues::Date(v), Cell::Null) => v.push(0),
            (ColumnValues::Micros(v), Cell::Micros(m)) => v.push(m),
            (ColumnValues::Micros(v), Cell::Null) => v.push(0),
            (ColumnValues::Uuid(v), Cell::Uuid(u)) => v.push(u),
            (ColumnValues::Uuid(v), Cell::Null) => v.push((0, 0)),
            (_, cell) => {
                return Err(format!(
                    "a {} value does not fit this column",
                    cell_kind(&cell)
                ));
            }
        }
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
        Ok(())
    }

    /// The finished column.
    pub fn finish(self) -> ColumnData {
        ColumnData {
            values: self.values,
            validity: self.nulls.then_some(self.validity),
        }
    }
}

fn offset(len: usize) -> Result<u32, String> {
    u32::try_from(len).map_err(|_| "a column of this batch holds more than 4 GiB".to_string())
}

fn cell_kind(cell: &Cell<'_>) -> &'static str {
    match cell {
        Cell::Null => "null",
        Cell::Boolean(_) => "boolean",
        Cell::Int(_) => "integer",
        Cell::Float(_) => "float",
        Cell::Text(_) => "text",
        Cell::Bytes(_) => "bytes",
        Cell::Date(_) => "date",
        Cell::Micros(_) => "time or timestamp",
        Cell::Uuid(_) => "uuid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_columns_read_back() {
        let t = DataType::Text(None);
        let mut b = ColumnBuilder::new(&t, 4);
        for c in [
            Cell::Text("a"),
            Cell::Null,
            Cell::Text(""),
            Cell::Text("é✓"),
        ] {
            b.push(c).unwrap();
        }
        let col = b.finish();
        assert_eq!(cell(&col, 0), Cell::Text("a"));
        assert_eq!(cell(&col, 1), Cell::Null);
        assert_eq!(cell(&col, 2), Cell::Text(""));
        assert_eq!(cell(&col, 3), Cell::Text("é✓"));
        assert_eq!(cell(&col, 4), Cell::Null);

        let mut b = ColumnBuilder::new(&DataType::Int64, 9);
        for i in 0..9 {
            b.push(Cell::Int(i)).unwrap();
        }
        let col = b.finish();
        assert!(col.validity.is_none());
        assert_eq!(cell(&col, 8), Cell::Int(8));
        assert!(
            ColumnBuilder::new(&DataType::Int64, 1)
                .push(Cell::Text("x"))
                .is_err()
        );
    }
}
