//! Splitting a table's snapshot into primary key ranges. The row count is
//! estimated from the table's size and a sample of row widths, not from
//! InnoDB's row estimate alone (stale right after a bulk load). A single
//! integer key is split evenly between its minimum and maximum; other keys
//! by stepping through the key in order; a table without a primary key is
//! one chunk.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value as My};
use tracing::debug;

use super::catalog::ReadColumn;
use super::server::Server;
use super::sql::{Bound, key_predicate, quote, quote_list};
use super::types::{Decoded, Wire, decode, to_param};
use crate::error::{Error, Result, ResultExt};
use dmp_model::{Chunk, Column, DataType, TableSchema, Value};

/// Rows sampled to measure the average row width.
const WIDTH_SAMPLE: u64 = 200;
/// What InnoDB stores per row besides the values (header, transaction id,
/// roll pointer, field offsets), roughly.
const ROW_OVERHEAD: u64 = 20;

/// The parameter text for a key column in a comparison. A decimal compared
/// with a string parameter is compared as a double (inexact past 15
/// digits), so its parameter is cast to the column's own type.
pub(super) fn key_param(t: &DataType) -> String {
    match t {
        DataType::Decimal {
            precision: Some(p),
            scale,
        } if *p <= 65 => format!("CAST(? AS DECIMAL({p},{}))", scale.unwrap_or(0)),
        DataType::Decimal { .. } => "CAST(? AS DECIMAL(65,30))".into(),
        _ => "?".into(),
    }
}

/// How rows are ordered and ranged by primary key. ENUM and SET columns
/// sort by declaration index but compare with a string as text: ordering
/// and comparing them as text keeps chunk bounds and resume points
/// consistent with the order rows are read in (at the cost of the index).
pub(super) struct KeyOrder {
    /// The SQL expression of each key column.
    exprs: Vec<String>,
    /// The parameter text of each key column.
    params: Vec<String>,
}

impl KeyOrder {
    pub(super) fn of(table: &TableSchema, reads: &HashMap<String, ReadColumn>) -> KeyOrder {
        let columns: Vec<&Column> = table
            .primary_key_indices()
            .into_iter()
            .map(|i| &table.columns[i])
            .collect();
        KeyOrder {
            exprs: columns
                .iter()
                .map(|c| {
                    let name = quote(&c.name);
                    match reads.get(&c.name).map(|r| r.wire) {
                        Some(Wire::Ordinal) => format!("CAST({name} AS CHAR)"),
                        _ => name,
                    }
                })
                .collect(),
            params: columns.iter().map(|c| key_param(&c.data_type)).collect(),
        }
    }

    /// `ORDER BY` list.
    pub(super) fn order_by(&self) -> String {
        self.exprs.join(", ")
    }

    /// `WHERE` conditions (joined with AND) and their parameters for keys
    /// after `lower` and up to `upper`.
    pub(super) fn range(
        &self,
        lower: Option<&[Value]>,
        upper: Option<&[Value]>,
    ) -> (Vec<String>, Vec<My>) {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        if self.exprs.is_empty() {
            return (conditions, params);
        }
        for (values, bound) in [(lower, Bound::After), (upper, Bound::UpTo)] {
            let Some(values) = values else { continue };
            let (sql, binds) = key_predicate(&self.exprs, &self.params, bound);
            conditions.push(sql);
            params.extend(
                binds
                    .into_iter()
                    .map(|i| values.get(i).map_or(My::NULL, to_param)),
            );
        }
        (conditions, params)
    }
}

fn params(values: Vec<My>) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values)
    }
}

/// Plans the chunks of `table`.
pub(super) async fn plan(
    conn: &mut Conn,
    server: Server,
    table: &TableSchema,
    order: &KeyOrder,
    chunk_rows: u64,
) -> Result<Vec<Chunk>> {
    let rows = estimate_rows(conn, server, table).await?;
    let chunk_rows = chunk_rows.max(1);
    if table.primary_key.is_empty() || rows <= chunk_rows {
        return Ok(vec![Chunk::whole(rows)]);
    }
    let count = rows.div_ceil(chunk_rows);
    let keys = table.primary_key_indices();
    let single_int = keys.len() == 1
        && matches!(
            table.columns[keys[0]].data_type,
            DataType::Int16 | DataType::Int32 | DataType::Int64
        );
    if single_int {
        let key = quote(&table.columns[keys[0]].name);
        let sql = format!("SELECT MIN({key}), MAX({key}) FROM {}", quote(&table.name));
        let bounds: Option<(Option<i64>, Option<i64>)> = conn
            .query_first(sql)
            .await
            .context(|| format!("planning chunks of table {}", table.name))?;
        let (min, max) = bounds.unwrap_or((None, None));
        return Ok(split_range(min, max, rows, count));
    }
    step_through_key(conn, table, order, rows, count).await
}

/// Rows of the table, estimated from its size on disk and the average width
/// of a sample of rows (exact for tables smaller than the sample).
async fn estimate_rows(conn: &mut Conn, server: Server, table: &TableSchema) -> Result<u64> {
    let ctx = || format!("estimating the size of table {}", table.name);
    if !server.mariadb && server.version >= (8, 0, 0) {
        // MySQL 8 caches these statistics for a day by default.
        conn.query_drop("SET SESSION information_schema_stats_expiry = 0")
            .await
            .context(ctx)?;
    }
    let size: Option<(Option<u64>, Option<u64>)> = conn
        .exec_first(
            "SELECT DATA_LENGTH, TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (table.name.as_str(),),
        )
        .await
        .context(ctx)?;
    let (data_length, table_rows) = size.unwrap_or((None, None));
    let widths: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("COALESCE(LENGTH({}), 0)", quote(&c.name)))
        .collect();
    let sample_sql = format!(
        "SELECT COUNT(*), COALESCE(AVG(w), 0) FROM (SELECT {} AS w FROM {} LIMIT {WIDTH_SAMPLE}) s",
        if widths.is_empty() {
            "0".to_string()
        } else {
            widths.join(" + ")
        },
        quote(&table.name)
    );
    let sample: Option<(u64, f64)> = conn.query_first(sample_sql).await.context(ctx)?;
    let (sampled, avg_width) = sample.unwrap_or((0, 0.0));
    if sampled < WIDTH_SAMPLE {
        return Ok(sampled);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let width = avg_width.max(0.0) as u64 + ROW_OVERHEAD;
    let from_size = data_length.unwrap_or(0) / width.max(1);
    let estimate = from_size.max(table_rows.unwrap_or(0));
    if estimate >= WIDTH_SAMPLE {
        debug!(
            table = table.name,
            data_length, width, estimate, "rows estimated from size"
        );
        return Ok(estimate);
    }
    // The statistics predate the rows (a table loaded moments ago): count.
    let count: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {}", quote(&table.name)))
        .await
        .context(ctx)?;
    Ok(count.unwrap_or(0))
}

/// Splits `[min, max]` into `count` ranges of equal width. The first and
/// last chunk are open-ended, so rows added past the ends are read too.
fn split_range(min: Option<i64>, max: Option<i64>, rows: u64, count: u64) -> Vec<Chunk> {
    let (Some(min), Some(max)) = (min, max) else {
        return vec![Chunk::whole(0)];
    };
    let span = u128::try_from(i128::from(max) - i128::from(min) + 1).unwrap_or(1);
    let count = u128::from(count).clamp(1, span);
    let width = span.div_ceil(count);
    let per_chunk = rows / u64::try_from(count).unwrap_or(1).max(1);
    let mut chunks = Vec::new();
    let mut lower: Option<i64> = None;
    let mut id = 0u32;
    loop {
        let upper =
            i128::from(min) + i128::try_from(width).unwrap_or(i128::MAX) * (i128::from(id) + 1) - 1;
        let last = upper >= i128::from(max);
        let upper = i64::try_from(upper).unwrap_or(i64::MAX);
        chunks.push(Chunk {
            id,
            lower: lower.map(|l| vec![Value::Int(l)]),
            upper: (!last).then(|| vec![Value::Int(upper)]),
            estimated_rows: per_chunk,
        });
        if last {
            return chunks;
        }
        lower = Some(upper);
        id += 1;
    }
}

/// Boundaries every `rows / count` keys, found by stepping with OFFSET on
/// the primary key (each step reads only its own range of the index).
async fn step_through_key(
    conn: &mut Conn,
    table: &TableSchema,
    order: &KeyOrder,
    rows: u64,
    count: u64,
) -> Result<Vec<Chunk>> {
    let ctx = || format!("planning chunks of table {}", table.name);
    let keys = table.primary_key_indices();
    let key_list = quote_list(&table.primary_key);
    let order_by = order.order_by();
    let step = (rows / count).max(1);
    let mut boundaries: Vec<Vec<Value>> = Vec::new();
    while (boundaries.len() as u64) + 1 < count {
        let (conditions, params_list) = order.range(boundaries.last().map(Vec::as_slice), None);
        let sql = format!(
            "SELECT {key_list} FROM {}{} ORDER BY {order_by} LIMIT 1 OFFSET {}",
            quote(&table.name),
            if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            },
            step - 1
        );
        let row: Option<Row> = conn
            .exec_first(sql, params(params_list))
            .await
            .context(ctx)?;
        let Some(row) = row else { break };
        let mut key = Vec::with_capacity(keys.len());
        for (cell, &i) in row.unwrap_raw().into_iter().zip(&keys) {
            let column = &table.columns[i];
            match decode(cell.unwrap_or(My::NULL), &column.data_type, Wire::Other) {
                Ok(Decoded::Value(v)) if !v.is_null() => key.push(v),
                Ok(_) => {
                    return Err(Error::Unsupported(format!(
                        "table {}: primary key column {} holds a zero date; such a key cannot bound a chunk",
                        table.name, column.name
                    )));
                }
                Err(e) => {
                    return Err(Error::Data(format!(
                        "table {}: primary key column {}: {}",
                        table.name, column.name, e.error
                    )));
                }
            }
        }
        boundaries.push(key);
    }
    let per_chunk = rows / (boundaries.len() as u64 + 1);
    let mut chunks = Vec::with_capacity(boundaries.len() + 1);
    let mut lower = None;
    for (id, upper) in boundaries
        .into_iter()
        .map(Some)
        .chain(std::iter::once(None))
        .enumerate()
    {
        chunks.push(Chunk {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            lower: lower.take(),
            upper: upper.clone(),
            estimated_rows: per_chunk,
        });
        lower = upper;
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ranges_split_evenly_without_gaps() {
        let chunks = split_range(Some(1), Some(1000), 1000, 4);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].lower, None);
        assert_eq!(chunks[0].upper, Some(vec![Value::Int(250)]));
        assert_eq!(chunks[1].lower, Some(vec![Value::Int(250)]));
        assert_eq!(chunks[1].upper, Some(vec![Value::Int(500)]));
        assert_eq!(chunks[3].lower, Some(vec![Value::Int(750)]));
        assert_eq!(chunks[3].upper, None);
        assert!(chunks.iter().all(|c| c.estimated_rows == 250));
        assert_eq!(split_range(None, None, 0, 3), vec![Chunk::whole(0)]);
        // More chunks than keys: one key per chunk at most.
        assert_eq!(split_range(Some(5), Some(6), 10, 8).len(), 2);
        let extremes = split_range(Some(i64::MIN), Some(i64::MAX), 100, 3);
        assert_eq!(extremes.len(), 3);
        assert_eq!(extremes[2].upper, None);
    }

    #[test]
    fn decimal_keys_compare_as_decimals() {
        assert_eq!(key_param(&DataType::Int64), "?");
        assert_eq!(
            key_param(&DataType::Decimal {
                precision: Some(20),
                scale: Some(0)
            }),
            "CAST(? AS DECIMAL(20,0))"
        );
        let mut table = TableSchema {
            namespace: None,
            name: "t".into(),
            columns: vec![
                dmp_model::Column::new("a", DataType::Int32),
                dmp_model::Column::new("b", DataType::TEXT),
            ],
            primary_key: vec!["a".into(), "b".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        };
        let lower = [Value::Int(1), Value::Text("x".into())];
        let reads = HashMap::new();
        let (conditions, params) = KeyOrder::of(&table, &reads).range(Some(&lower), None);
        assert_eq!(
            conditions,
            vec!["`a` >= ? AND (`a` > ? OR (`a` = ? AND `b` > ?))".to_string()]
        );
        assert_eq!(
            params,
            vec![My::Int(1), My::Int(1), My::Int(1), My::Bytes(b"x".to_vec())]
        );
        table.primary_key = vec!["a".into()];
        let (conditions, params) =
            KeyOrder::of(&table, &reads).range(Some(&lower[..1]), Some(&[Value::Int(9)]));
        assert_eq!(
            conditions,
            vec!["`a` > ?".to_string(), "`a` <= ?".to_string()]
        );
        assert_eq!(params, vec![My::Int(1), My::Int(9)]);
        // ENUM keys sort and compare as text.
        table.primary_key = vec!["b".into()];
        let mut reads = HashMap::new();
        reads.insert(
            "b".to_string(),
            ReadColumn {
                read: super::super::types::ReadAs::Plain,
                wire: Wire::Ordinal,
            },
        );
        let order = KeyOrder::of(&table, &reads);
        assert_eq!(order.order_by(), "CAST(`b` AS CHAR)");
        let (conditions, _) = order.range(Some(&[Value::Text("x".into())]), None);
        assert_eq!(conditions, vec!["CAST(`b` AS CHAR) > ?".to_string()]);
    }
}
