//! Parquet through arrow. Every field carries its model type in the field
//! metadata (`dmp:type`), so a round trip keeps `text(40)` or `json`;
//! files without it are mapped from their arrow types. Decimals up to 38
//! digits are Parquet DECIMAL, wider ones text.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveTime, Timelike};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::source::{RowRead, RowReader};
use super::target::TableWriter;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{Head, Oversized};
use dmp_model::{Column, DataType, Index, Position, Row, TableSchema, Value};

const TYPE_KEY: &str = "dmp:type";
const PRIMARY_KEY_KEY: &str = "dmp:primary_key";
const INDEXES_KEY: &str = "dmp:indexes";
/// Rows per row group: bounds the writer's memory.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows Arrow decodes at once when reading (Arrow's own default).
const ARROW_BATCH_ROWS: usize = 1024;
const MAX_DECIMAL128_DIGITS: u16 = 38;

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn arrow_type(t: &DataType) -> ArrowType {
    match *t {
        DataType::Bool => ArrowType::Boolean,
        DataType::Int16 => ArrowType::Int16,
        DataType::Int32 => ArrowType::Int32,
        DataType::Int64 => ArrowType::Int64,
        DataType::Float32 => ArrowType::Float32,
        DataType::Float64 => ArrowType::Float64,
        DataType::Decimal {
            precision: Some(p),
            scale,
        } if p <= MAX_DECIMAL128_DIGITS && p > 0 => ArrowType::Decimal128(
            u8::try_from(p).unwrap_or(38),
            i8::try_from(scale.unwrap_or(0)).unwrap_or(0),
        ),
        DataType::Decimal { .. } | DataType::Text { .. } | DataType::Json => ArrowType::Utf8,
        DataType::Bytes => ArrowType::Binary,
        DataType::Date => ArrowType::Date32,
        DataType::Time => ArrowType::Time64(TimeUnit::Microsecond),
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        DataType::TimestampTz => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Uuid => ArrowType::FixedSizeBinary(16),
    }
}

pub(super) fn arrow_schema(schema: &TableSchema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .columns
        .iter()
        .map(|c| {
            Field::new(&c.name, arrow_type(&c.data_type), c.nullable).with_metadata(HashMap::from(
                [(TYPE_KEY.to_string(), c.data_type.to_string())],
            ))
        })
        .collect();
    let mut metadata = HashMap::new();
    if let Ok(pk) = serde_json::to_string(&schema.primary_key) {
        metadata.insert(PRIMARY_KEY_KEY.to_string(), pk);
    }
    if let Ok(indexes) = serde_json::to_string(&schema.indexes) {
        metadata.insert(INDEXES_KEY.to_string(), indexes);
    }
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

fn model_type(field: &Field) -> std::result::Result<DataType, String> {
    if let Some(declared) = field.metadata().get(TYPE_KEY) {
        return declared.parse();
    }
    Ok(match field.data_type() {
        ArrowType::Boolean => DataType::Bool,
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::UInt8 => DataType::Int16,
        ArrowType::Int32 | ArrowType::UInt16 => DataType::Int32,
        ArrowType::Int64 | ArrowType::UInt32 => DataType::Int64,
        ArrowType::UInt64 => DataType::Decimal {
            precision: Some(20),
            scale: Some(0),
        },
        ArrowType::Float16 | ArrowType::Float32 => DataType::Float32,
        ArrowType::Float64 => DataType::Float64,
        ArrowType::Decimal128(p, s) if *s >= 0 => DataType::Decimal {
            precision: Some(u16::from(*p)),
            scale: Some(s.unsigned_abs().into()),
        },
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::TEXT,
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => DataType::Bytes,
        ArrowType::FixedSizeBinary(16) if field.extension_type_name() == Some("arrow.uuid") => {
            DataType::Uuid
        }
        ArrowType::FixedSizeBinary(_) => DataType::Bytes,
        ArrowType::Date32 | ArrowType::Date64 => DataType::Date,
        ArrowType::Time32(_) | ArrowType::Time64(_) => DataType::Time,
        ArrowType::Timestamp(_, None) => DataType::Timestamp,
        ArrowType::Timestamp(_, Some(_)) => DataType::TimestampTz,
        other => return Err(format!("arrow type {other} is not supported")),
    })
}

pub(super) fn read_schema(path: &Path, table: &str) -> Result<(TableSchema, u64)> {
    let ctx = || format!("reading Parquet file {}", path.display());
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).context(ctx)?).context(ctx)?;
    let arrow = builder.schema();
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mut columns = Vec::new();
    for field in arrow.fields() {
        let data_type = model_type(field).map_err(|e| {
            Error::Unsupported(format!("{}: column {}: {e}", path.display(), field.name()))
        })?;
        columns.push(Column {
            name: field.name().clone(),
            data_type,
            nullable: field.is_nullable(),
            default: None,
            enum_values: None,
            fixed_length: false,
            default_expr: None,
            identity: None,
            on_update: None,
            comment: None,
            collation: None,
            source_type: None,
        });
    }
    let meta = arrow.metadata();
    let primary_key: Vec<String> = meta
        .get(PRIMARY_KEY_KEY)
        .and_then(|pk| serde_json::from_str(pk).ok())
        .unwrap_or_default();
    let indexes: Vec<Index> = meta
        .get(INDEXES_KEY)
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_default();
    Ok((
        TableSchema {
            namespace: None,
            name: table.to_string(),
            columns,
            primary_key,
            indexes,
            foreign_keys: Vec::new(),
            ..Default::default()
        },
        rows,
    ))
}

pub(super) struct ParquetRows {
    reader: ParquetRecordBatchReader,
    schema: Arc<TableSchema>,
    batch: Option<RecordBatch>,
    row: usize,
    /// Rows of the file read so far (skipped ones included).
    index: u64,
    path: String,
    /// `[run] max_value_bytes`: a longer text or binary value refuses its row.
    max_value_bytes: usize,
}

impl ParquetRows {
    /// Opens the file, skipping the first `skip` rows.
    pub(super) fn open(
        path: &Path,
        schema: Arc<TableSchema>,
        batch_rows: usize,
        skip: u64,
        max_value_bytes: usize,
    ) -> Result<Self> {
        let ctx = || format!("reading Parquet file {}", path.display());
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).context(ctx)?)
            .context(ctx)?
            // Arrow holds its batch decoded besides the rows gathered from
            // it: a small one keeps that within reach of batch_bytes.
            .with_batch_size(batch_rows.clamp(1, ARROW_BATCH_ROWS))
            .with_offset(usize::try_from(skip).unwrap_or(usize::MAX))
            .build()
            .context(ctx)?;
        Ok(ParquetRows {
            reader,
            schema,
            batch: None,
            row: 0,
            index: skip,
            path: path.display().to_string(),
            max_value_bytes,
        })
    }
}

impl RowReader for ParquetRows {
    fn next_row(&mut self) -> Result<Option<RowRead>> {
        loop {
            if let Some(batch) = &self.batch
                && self.row < batch.num_rows()
            {
                let row = self.row;
                self.row += 1;
                self.index += 1;
                if let Some(reject) = self.oversized(batch, row) {
                    return Ok(Some(reject));
                }
                let mut values = Vec::with_capacity(batch.num_columns());
                for (column, array) in self.schema.columns.iter().zip(batch.columns()) {
                    match read_cell(array, row, &column.data_type) {
                        Ok(v) => values.push(v),
                        Err(e) => {
                            return Ok(Some(RowRead::Reject {
                                error: format!("{}: column {}: {e}", self.path, column.name),
                                raw: serde_json::Value::Null,
                            }));
                        }
                    }
                }
                return Ok(Some(RowRead::Row(Row(values))));
            }
            match self.reader.next() {
                None => return Ok(None),
                Some(batch) => {
                    self.batch =
                        Some(batch.context(|| format!("reading Parquet file {}", self.path))?);
                    self.row = 0;
                }
            }
        }
    }
}

impl ParquetRows {
    /// The refusal of row `row` of `batch` if it holds a value longer than
    /// `max_value_bytes`, seen in Arrow's buffer before it is copied.
    fn oversized(&self, batch: &RecordBatch, row: usize) -> Option<RowRead> {
        let (column, head) =
            self.schema
                .columns
                .iter()
                .zip(batch.columns())
                .find_map(|(column, array)| {
                    let head = variable_cell(array, row)?;
                    (head.bytes().len() > self.max_value_bytes).then_some((column, head))
                })?;
        let oversized = Oversized {
            column: &column.name,
            bytes: head.bytes().len(),
            head,
        };
        let position = Position::Record { index: self.index };
        let reject = oversized.reject(&self.path, self.max_value_bytes, position);
        Some(RowRead::Reject {
            error: reject.error,
            raw: reject.row,
        })
    }
}

/// A text or binary cell as Arrow holds it; `None` for other types and NULL.
fn variable_cell(array: &ArrayRef, i: usize) -> Option<Head<'_>> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        ArrowType::Utf8 => Head::Text(array.as_string::<i32>().value(i).as_bytes()),
        ArrowType::LargeUtf8 => Head::Text(array.as_string::<i64>().value(i).as_bytes()),
        ArrowType::Utf8View => Head::Text(array.as_string_view().value(i).as_bytes()),
        ArrowType::Binary => Head::Binary(array.as_binary::<i32>().value(i)),
        ArrowType::LargeBinary => Head::Binary(array.as_binary::<i64>().value(i)),
        ArrowType::BinaryView => Head::Binary(array.as_binary_view().value(i)),
        _ => return None,
    })
}

fn read_cell(array: &ArrayRef, i: usize, t: &DataType) -> std::result::Result<Value, String> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    let micros_time = |micros: i64| {
        let secs = u32::try_from(micros.div_euclid(1_000_000))
            .map_err(|_| "time out of range".to_string())?;
        let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0);
        NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
            .ok_or_else(|| "time out of range".to_string())
    };
    let instant = |micros: i64| {
        DateTime::from_timestamp_micros(micros).ok_or_else(|| "timestamp out of range".to_string())
    };
    let value = match array.data_type() {
        ArrowType::Boolean => Value::Bool(array.as_boolean().value(i)),
        ArrowType::Int8 => Value::Int(array.as_primitive::<Int8Type>().value(i).into()),
        ArrowType::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(i).into()),
        ArrowType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(i).into()),
        ArrowType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(i)),
        ArrowType::UInt8 => Value::Int(array.as_primitive::<UInt8Type>().value(i).into()),
        ArrowType::UInt16 => Value::Int(array.as_primitive::<UInt16Type>().value(i).into()),
        ArrowType::UInt32 => Value::Int(array.as_primitive::<UInt32Type>().value(i).into()),
        ArrowType::UInt64 => Value::Decimal(
            array
                .as_primitive::<UInt64Type>()
                .value(i)
                .to_string()
                .parse()?,
        ),
        ArrowType::Float16 => Value::Float(array.as_primitive::<Float16Type>().value(i).to_f64()),
        ArrowType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(i).into()),
        ArrowType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(i)),
        ArrowType::Decimal128(_, scale) => {
            let raw = array.as_primitive::<Decimal128Type>().value(i);
            Value::Decimal(decimal_text(raw, *scale).parse()?)
        }
        ArrowType::Utf8 => {
            return Value::parse_text(array.as_string::<i32>().value(i), t).map_err(|e| e.0);
        }
        ArrowType::LargeUtf8 => {
            return Value::parse_text(array.as_string::<i64>().value(i), t).map_err(|e| e.0);
        }
        ArrowType::Utf8View => {
            return Value::parse_text(array.as_string_view().value(i), t).map_err(|e| e.0);
        }
        ArrowType::Binary => Value::Bytes(array.as_binary::<i32>().value(i).to_vec()),
        ArrowType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(i).to_vec()),
        ArrowType::BinaryView => Value::Bytes(array.as_binary_view().value(i).to_vec()),
        ArrowType::FixedSizeBinary(_) => {
            let bytes = array.as_fixed_size_binary().value(i);
            match t {
                DataType::Uuid => {
                    Value::Uuid(uuid::Uuid::from_slice(bytes).map_err(|e| e.to_string())?)
                }
                _ => Value::Bytes(bytes.to_vec()),
            }
        }
        ArrowType::Date32 => Value::Date(
            epoch()
                .checked_add_signed(chrono::Duration::days(
                    array.as_primitive::<Date32Type>().value(i).into(),
                ))
                .ok_or("date out of range")?,
        ),
        ArrowType::Date64 => {
            Value::Date(instant(array.as_primitive::<Date64Type>().value(i) * 1000)?.date_naive())
        }
        ArrowType::Time32(TimeUnit::Second) => Value::Time(micros_time(
            i64::from(array.as_primitive::<Time32SecondType>().value(i)) * 1_000_000,
        )?),
        ArrowType::Time32(_) => Value::Time(micros_time(
            i64::from(array.as_primitive::<Time32MillisecondType>().value(i)) * 1000,
        )?),
        ArrowType::Time64(TimeUnit::Nanosecond) => Value::Time(micros_time(
            array.as_primitive::<Time64NanosecondType>().value(i) / 1000,
        )?),
        ArrowType::Time64(_) => Value::Time(micros_time(
            array.as_primitive::<Time64MicrosecondType>().value(i),
        )?),
        ArrowType::Timestamp(unit, zone) => {
            let micros = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(i)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(i)
                    .saturating_mul(1000),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(i) / 1000
                }
            };
            let ts = instant(micros)?;
            if zone.is_some() {
                Value::TimestampTz(ts)
            } else {
                Value::Timestamp(ts.naive_utc())
            }
        }
        other => return Err(format!("arrow type {other} is not supported")),
    };
    value.checked(t).map_err(|e| e.0)
}

fn decimal_text(raw: i128, scale: i8) -> String {
    let digits = raw.unsigned_abs().to_string();
    let sign = if raw < 0 { "-" } else { "" };
    let scale = usize::try_from(scale).unwrap_or(0);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The i128 of a decimal at a fixed scale, or why it does not fit.
fn decimal_raw(
    value: &dmp_model::Decimal,
    precision: u8,
    scale: i8,
) -> std::result::Result<i128, String> {
    let scale = usize::try_from(scale).unwrap_or(0);
    let fitted = value
        .rescale(scale)
        .ok_or_else(|| format!("{value} has more than {scale} fraction digits"))?;
    let digits: String = fitted.as_str().chars().filter(|c| *c != '.').collect();
    if fitted.integer_digits() + scale > usize::from(precision) {
        return Err(format!("{value} does not fit decimal({precision},{scale})"));
    }
    digits
        .parse()
        .map_err(|_| format!("{value} does not fit decimal({precision},{scale})"))
}

pub(super) struct ParquetWriter {
    writer: Option<ArrowWriter<File>>,
    schema: SchemaRef,
}

impl ParquetWriter {
    pub(super) fn new(file: File, table: &TableSchema) -> Result<Self> {
        let schema = arrow_schema(table);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .context(|| format!("creating Parquet file for table {}", table.name))?;
        Ok(ParquetWriter {
            writer: Some(writer),
            schema,
        })
    }

    fn record_batch(&self, table: &TableSchema, rows: &[&Row]) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
        for (index, field) in self.schema.fields().iter().enumerate() {
            let values = rows.iter().map(|r| &r.0[index]);
            let place = || format!("table {} column {}", table.name, field.name());
            let wrong = |v: &Value| {
                Error::Data(format!(
                    "{}: a {} value in a {} column",
                    place(),
                    v.kind(),
                    field.data_type()
                ))
            };
            let array: ArrayRef = match field.data_type() {
                ArrowType::Boolean => {
                    let mut b = BooleanBuilder::with_capacity(rows.len());
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Bool(x) => b.append_value(*x),
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::Int16 => ints(
                    values,
                    Int16Builder::with_capacity(rows.len()),
                    |i| i16::try_from(i).ok(),
                    &wrong,
                )?,
                ArrowType::Int32 => ints(
                    values,
                    Int32Builder::with_capacity(rows.len()),
                    |i| i32::try_from(i).ok(),
                    &wrong,
                )?,
                ArrowType::Int64 => ints(
                    values,
                    Int64Builder::with_capacity(rows.len()),
                    Some,
                    &wrong,
                )?,
                ArrowType::Float32 => {
                    let mut b = Float32Builder::with_capacity(rows.len());
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            #[allow(clippy::cast_possible_truncation)]
                            Value::Float(x) => b.append_value(*x as f32),
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::Float64 => {
                    let mut b = Float64Builder::with_capacity(rows.len());
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Float(x) => b.append_value(*x),
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::Decimal128(p, s) => {
                    let mut b = Decimal128Builder::with_capacity(rows.len());
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Decimal(d) => b.append_value(
                                decimal_raw(d, *p, *s)
                                    .map_err(|e| Error::Data(format!("{}: {e}", place())))?,
                            ),
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish().with_precision_and_scale(*p, *s).context(place)?)
                }
                ArrowType::Utf8 => {
                    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Text(s) | Value::Json(s) => b.append_value(s),
                            Value::Decimal(d) => b.append_value(d.as_str()),
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::Binary => {
                    let mut b = BinaryBuilder::with_capacity(rows.len(), rows.len() * 16);
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Bytes(x) => b.append_value(x),
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::FixedSizeBinary(16) => {
                    let mut b = FixedSizeBinaryBuilder::with_capacity(rows.len(), 16);
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Uuid(u) => b.append_value(u.as_bytes()).context(place)?,
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::Date32 => {
                    let mut b = Date32Builder::with_capacity(rows.len());
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Date(d) => {
                                b.append_value(i32::try_from((*d - epoch()).num_days()).map_err(
                                    |_| Error::Data(format!("{}: date out of range", place())),
                                )?)
                            }
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::Time64(_) => {
                    let mut b = Time64MicrosecondBuilder::with_capacity(rows.len());
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Time(t) => b.append_value(
                                i64::from(t.num_seconds_from_midnight()) * 1_000_000
                                    + i64::from(t.nanosecond() / 1000),
                            ),
                            other => return Err(wrong(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                ArrowType::Timestamp(_, zone) => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                    for v in values {
                        match v {
                            Value::Null => b.append_null(),
                            Value::Timestamp(ts) => b.append_value(ts.and_utc().timestamp_micros()),
                            Value::TimestampTz(ts) => b.append_value(ts.timestamp_micros()),
                            other => return Err(wrong(other)),
                        }
                    }
                    let array = b.finish();
                    Arc::new(match zone {
                        Some(z) => array.with_timezone(z.clone()),
                        None => array,
                    })
                }
                other => {
                    return Err(Error::Unsupported(format!(
                        "{}: arrow type {other}",
                        place()
                    )));
                }
            };
            columns.push(array);
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .context(|| format!("building a Parquet batch of table {}", table.name))
    }
}

fn ints<'a, B, T>(
    values: impl Iterator<Item = &'a Value>,
    mut builder: B,
    narrow: impl Fn(i64) -> Option<T>,
    wrong: &dyn Fn(&Value) -> Error,
) -> Result<ArrayRef>
where
    B: ArrayBuilder + IntBuilder<T>,
{
    for v in values {
        match v {
            Value::Null => builder.null(),
            Value::Int(i) => builder.value(narrow(*i).ok_or_else(|| wrong(v))?),
            other => return Err(wrong(other)),
        }
    }
    Ok(builder.finish_array())
}

/// The few calls `ints` needs from the primitive integer builders.
trait IntBuilder<T> {
    fn null(&mut self);
    fn value(&mut self, v: T);
    fn finish_array(&mut self) -> ArrayRef;
}

macro_rules! int_builder {
    ($builder:ty, $t:ty) => {
        impl IntBuilder<$t> for $builder {
            fn null(&mut self) {
                self.append_null();
            }
            fn value(&mut self, v: $t) {
                self.append_value(v);
            }
            fn finish_array(&mut self) -> ArrayRef {
                Arc::new(self.finish())
            }
        }
    };
}
int_builder!(Int16Builder, i16);
int_builder!(Int32Builder, i32);
int_builder!(Int64Builder, i64);

impl TableWriter for ParquetWriter {
    fn check_row(&self, _table: &TableSchema, row: &Row) -> std::result::Result<(), String> {
        for (value, field) in row.0.iter().zip(self.schema.fields()) {
            match (value, field.data_type()) {
                (Value::Decimal(d), ArrowType::Decimal128(p, s)) => {
                    decimal_raw(d, *p, *s).map_err(|e| format!("column {}: {e}", field.name()))?;
                }
                (Value::Int(i), ArrowType::Int16) if i16::try_from(*i).is_err() => {
                    return Err(format!("column {}: {i} does not fit int16", field.name()));
                }
                (Value::Int(i), ArrowType::Int32) if i32::try_from(*i).is_err() => {
                    return Err(format!("column {}: {i} does not fit int32", field.name()));
                }
                (Value::Null, _) if !field.is_nullable() => {
                    return Err(format!(
                        "column {}: NULL in a NOT NULL column",
                        field.name()
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn write_rows(&mut self, table: &TableSchema, rows: &[&Row]) -> Result<()> {
        let batch = self.record_batch(table, rows)?;
        let writer = self.writer.as_mut().ok_or_else(|| {
            Error::Data(format!(
                "Parquet file of table {} already closed",
                table.name
            ))
        })?;
        writer
            .write(&batch)
            .context(|| format!("writing Parquet for table {}", table.name))
    }

    /// Parquet files end with a footer, so a half-written one cannot be
    /// continued: the table restarts after a crash.
    fn sync(&mut self) -> Result<Option<u64>> {
        Ok(None)
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if let Some(writer) = self.writer.take() {
            let file = writer
                .into_inner()
                .context(|| "closing Parquet file".to_string())?;
            file.sync_all()
                .context(|| "syncing Parquet file".to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_convert_exactly() {
        assert_eq!(decimal_text(-12345, 2), "-123.45");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(7, 0), "7");
        let d: dmp_model::Decimal = "-0.05".parse().unwrap();
        assert_eq!(decimal_raw(&d, 5, 2), Ok(-5));
        let d: dmp_model::Decimal = "1234.5".parse().unwrap();
        assert!(decimal_raw(&d, 5, 2).is_err());
    }

    #[test]
    fn a_value_over_max_value_bytes_refuses_its_row_with_an_excerpt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs.parquet");
        let table = Arc::new(TableSchema {
            name: "docs".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("body", DataType::TEXT),
                Column::new("blob", DataType::Bytes),
            ],
            ..Default::default()
        });
        let rows: Vec<Row> = [
            ("short", vec![1u8; 10]),
            (&*"x".repeat(3000), vec![2; 10]),
            ("short", vec![3; 4000]),
            ("short", vec![4; 10]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (body, blob))| {
            Row(vec![
                Value::Int(i64::try_from(i).unwrap() + 1),
                Value::Text(body.to_string()),
                Value::Bytes(blob),
            ])
        })
        .collect();
        let mut writer =
            Box::new(ParquetWriter::new(File::create(&path).unwrap(), &table).unwrap());
        writer
            .write_rows(&table, &rows.iter().collect::<Vec<_>>())
            .unwrap();
        writer.finish().unwrap();
        let mut read = ParquetRows::open(&path, table, 100, 0, 2000).unwrap();
        let mut outcomes = Vec::new();
        while let Some(outcome) = read.next_row().unwrap() {
            outcomes.push(match outcome {
                RowRead::Row(row) => format!("row {:?}", row.0[0]),
                RowRead::Reject { error, raw } => {
                    assert!(raw.as_str().unwrap().len() <= 1024);
                    error
                }
            });
        }
        let name = path.display().to_string();
        assert_eq!(outcomes.len(), 4);
        assert_eq!(outcomes[0], "row Int(1)");
        assert!(
            outcomes[1].starts_with(&format!(
                "{name}, row 2, column body: a value of 3000 bytes, longer than max_value_bytes (2000)"
            )),
            "{}",
            outcomes[1]
        );
        assert!(
            outcomes[2].starts_with(&format!(
                "{name}, row 3, column blob: a value of 4000 bytes"
            )),
            "{}",
            outcomes[2]
        );
        assert_eq!(outcomes[3], "row Int(4)");
    }
}
