//! Row-at-a-time access on top of columnar batches.

use crate::bindings::dmp::transform::types::{Batch, DataType, Op, TableSchema, Value};
use crate::cell::{Cell, cell, value_cell};

/// The input batch with its schema.
pub(crate) struct Input<'a> {
    pub schema: &'a TableSchema,
    pub batch: &'a Batch,
}

impl Input<'_> {
    fn column(&self, name: &str) -> Option<usize> {
        self.schema.columns.iter().position(|c| c.name == name)
    }
}

/// The output schema and, per output column, the input column it passes
/// through unchanged unless a row sets it (same name, same type).
pub(crate) struct Layout {
    pub schema: TableSchema,
    pub source: Vec<Option<usize>>,
}

impl Layout {
    pub(crate) fn new(input: &TableSchema, output: TableSchema) -> Self {
        let source = output
            .columns
            .iter()
            .map(|out| {
                input
                    .columns
                    .iter()
                    .position(|c| c.name == out.name && c.data_type == out.data_type)
            })
            .collect();
        Layout {
            schema: output,
            source,
        }
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.schema.columns.iter().position(|c| c.name == name)
    }
}

/// One input row as a transform sees it: read any input or output column by
/// name, set output columns. Columns a transform does not set pass through.
pub struct Row<'a> {
    input: &'a Input<'a>,
    layout: &'a Layout,
    index: usize,
    pub(crate) values: Vec<Option<Value>>,
    /// Copies made by `emit`, for `Outcome::Many`.
    pub(crate) copies: Vec<Vec<Option<Value>>>,
    pub(crate) error: Option<String>,
}

impl<'a> Row<'a> {
    pub(crate) fn new(input: &'a Input<'a>, layout: &'a Layout, index: usize) -> Self {
        Row {
            input,
            layout,
            index,
            // Filled on the first `set`: rows that change nothing cost no
            // allocation.
            values: Vec::new(),
            copies: Vec::new(),
            error: None,
        }
    }

    /// What happened to the row at the source (insert for snapshots).
    pub fn op(&self) -> Op {
        self.input
            .batch
            .ops
            .as_ref()
            .and_then(|ops| ops.get(self.index).copied())
            .unwrap_or(Op::Insert)
    }

    /// Position of the row in its input batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The current value of a column as a cell: what this row set, else the
    /// input's value. `None` when there is no such column.
    pub fn cell(&self, name: &str) -> Option<Cell<'_>> {
        if let Some(out) = self.layout.column(name) {
            if let Some(value) = self.values.get(out).and_then(Option::as_ref) {
                return Some(value_cell(value));
            }
            if let Some(input) = self.layout.source[out] {
                return Some(cell(&self.input.batch.columns[input], self.index));
            }
        }
        let input = self.input.column(name)?;
        Some(cell(&self.input.batch.columns[input], self.index))
    }

    /// The value of a column as `T` (`&str`, `String`, `i64`, `f64`,
    /// `bool`, `&[u8]`...); `None` if it is null, missing or of another kind.
    ///
    /// ```
    /// # fn f(row: &dmp_sdk::Row<'_>) {
    /// let email: Option<&str> = row.get("email");
    /// let amount = row.get::<i64>("amount").unwrap_or(0);
    /// # }
    /// ```
    pub fn get<'r, T: FromCell<'r>>(&'r self, name: &str) -> Option<T> {
        self.cell(name).and_then(T::from_cell)
    }

    /// Whether a column is null (or missing).
    pub fn is_null(&self, name: &str) -> bool {
        matches!(self.cell(name), None | Some(Cell::Null))
    }

    /// Sets an output column. Text set into a decimal or JSON column, or an
    /// integer into a float or decimal column, is converted. A value that
    /// does not fit, or a column the output schema lacks, makes the row a
    /// reject naming the column.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        let Some(out) = self.layout.column(name) else {
            self.fail(format!(
                "set(\"{name}\"): the output schema has no such column"
            ));
            return;
        };
        let column = &self.layout.schema.columns[out];
        match coerce(value.into(), &column.data_type) {
            Ok(value) => {
                if self.values.is_empty() {
                    self.values.resize(self.layout.schema.columns.len(), None);
                }
                self.values[out] = Some(value);
            }
            Err(kind) => self.fail(format!(
                "set(\"{name}\"): a {kind} value does not fit a {:?} column",
                column.data_type
            )),
        }
    }

    /// Records a copy of the row as it is now; return [`Outcome::Many`] to
    /// emit all copies (fan-out).
    pub fn emit(&mut self) {
        self.copies.push(self.values.clone());
    }

    /// Sets an output column to null.
    pub fn set_null(&mut self, name: &str) {
        self.set(name, Value::Null);
    }

    fn fail(&mut self, error: String) {
        self.error.get_or_insert(error);
    }
}

/// Converts a value to the representation of a column type, or names the
/// value's kind when it cannot.
fn coerce(value: Value, t: &DataType) -> Result<Value, &'static str> {
    Ok(match (value, t) {
        (Value::Null, _) => Value::Null,
        (Value::Text(s), DataType::Decimal(_)) => Value::Decimal(s),
        (Value::Text(s), DataType::Json) => Value::Json(s),
        #[allow(clippy::cast_precision_loss)]
        (Value::Int(i), DataType::Float32 | DataType::Float64) => Value::Float(i as f64),
        (Value::Int(i), DataType::Decimal(_)) => Value::Decimal(i.to_string()),
        (v @ Value::Boolean(_), DataType::Boolean)
        | (v @ Value::Int(_), DataType::Int16 | DataType::Int32 | DataType::Int64)
        | (v @ Value::Float(_), DataType::Float32 | DataType::Float64)
        | (v @ Value::Decimal(_), DataType::Decimal(_))
        | (v @ Value::Text(_), DataType::Text(_))
        | (v @ Value::Bytes(_), DataType::Bytes)
        | (v @ Value::Json(_), DataType::Json)
        | (v @ Value::Date(_), DataType::Date)
        | (v @ Value::Time(_), DataType::Time)
        | (v @ Value::Timestamp(_), DataType::Timestamp)
        | (v @ Value::Timestamptz(_), DataType::Timestamptz)
        | (v @ Value::Uuid(_), DataType::Uuid) => v,
        (v, _) => return Err(value_kind(&v)),
    })
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Float(_) => "float",
        Value::Decimal(_) => "decimal",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::Timestamptz(_) => "timestamptz",
        Value::Uuid(_) => "uuid",
    }
}

/// Types a cell can be read as with [`Row::get`].
pub trait FromCell<'a>: Sized {
    /// The value, if the cell holds one of this kind.
    fn from_cell(cell: Cell<'a>) -> Option<Self>;
}

impl<'a> FromCell<'a> for &'a str {
    fn from_cell(cell: Cell<'a>) -> Option<Self> {
        match cell {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl FromCell<'_> for String {
    fn from_cell(cell: Cell<'_>) -> Option<Self> {
        <&str>::from_cell(cell).map(str::to_string)
    }
}

impl FromCell<'_> for i64 {
    fn from_cell(cell: Cell<'_>) -> Option<Self> {
        match cell {
            Cell::Int(i) => Some(i),
            _ => None,
        }
    }
}

impl FromCell<'_> for f64 {
    fn from_cell(cell: Cell<'_>) -> Option<Self> {
        match cell {
            Cell::Float(f) => Some(f),
            #[allow(clippy::cast_precision_loss)]
            Cell::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl FromCell<'_> for bool {
    fn from_cell(cell: Cell<'_>) -> Option<Self> {
        match cell {
            Cell::Boolean(b) => Some(b),
            _ => None,
        }
    }
}

impl<'a> FromCell<'a> for &'a [u8] {
    fn from_cell(cell: Cell<'a>) -> Option<Self> {
        match cell {
            Cell::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

impl<'a> FromCell<'a> for Cell<'a> {
    fn from_cell(cell: Cell<'a>) -> Option<Self> {
        (!matches!(cell, Cell::Null)).then_some(cell)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i.into())
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
