//! Splits a table into primary-key ranges of about `chunk_rows` rows. The
//! row count is estimated from the table's size on disk and the average
//! width of a sample of rows (`reltuples` is 0 or -1 before the first
//! ANALYZE, so it is never used). A single integer key is split evenly
//! between its min and max; other keys take every k-th key of an ordered
//! scan. Tables without a primary key are one chunk, read in one stream.

use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, PgPool};

use super::catalog::SourceTable;
use super::copy_binary::{CopyDecoder, Wire, decode_value};
use super::sql::{ident_list, qualified, quote_ident};
use super::types::Read;
use crate::error::{Error, Result, ResultExt};
use dmp_model::{Chunk, Value};

/// A sample smaller than this is the whole table: its count is exact.
const SAMPLE_ROWS: i64 = 1000;
/// Per-row overhead on a heap page: tuple header and line pointer.
const ROW_OVERHEAD: f64 = 28.0;

pub(super) async fn plan(
    pool: &PgPool,
    table: &SourceTable,
    chunk_rows: u64,
    place: &str,
) -> Result<Vec<Chunk>> {
    let name = &table.schema.name;
    let ctx = || format!("{place}: planning chunks of table {name}");
    let chunk_rows = chunk_rows.max(1);
    let rows = estimate_rows(pool, table, place).await?;
    let chunks = rows.div_ceil(chunk_rows);
    let keys = table.schema.primary_key_indices();
    // A key with an array column has no literal form to bound a range
    // with: such a table is read whole.
    let unbounded = keys
        .iter()
        .any(|&k| table.columns[k].read == Read::ArrayAsJson);
    if keys.is_empty() || chunks <= 1 || unbounded {
        return Ok(vec![Chunk::whole(rows)]);
    }
    let from = qualified(table.schema.namespace.as_deref().unwrap_or("public"), name);
    if let [k] = keys[..]
        && matches!(
            table.columns[k].read,
            Read::Native(Wire::Int2 | Wire::Int4 | Wire::Int8)
        )
    {
        let col = quote_ident(&table.schema.columns[k].name);
        let (min, max): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT min({col})::int8, max({col})::int8 FROM {from}"
        )))
        .fetch_one(pool)
        .await
        .context(ctx)?;
        return Ok(integer_chunks(min, max, rows, chunks));
    }
    // Every chunk_rows-th key, in key order.
    let key_names: Vec<&str> = keys
        .iter()
        .map(|&k| table.schema.columns[k].name.as_str())
        .collect();
    let inner: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let col = quote_ident(&table.schema.columns[k].name);
            format!("{} AS k{i}", table.columns[k].read.select_expr(&col))
        })
        .collect();
    let outer: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
    let sql = format!(
        "COPY (SELECT {} FROM (SELECT {}, row_number() OVER (ORDER BY {}) AS dmp_rn FROM {from}) s \
         WHERE dmp_rn % {chunk_rows} = 0 ORDER BY dmp_rn) TO STDOUT (FORMAT binary)",
        outer.join(", "),
        inner.join(", "),
        ident_list(&key_names),
    );
    let wires: Vec<Wire> = keys.iter().map(|&k| table.columns[k].read.wire()).collect();
    let bounds = copy_keys(pool, &sql, &wires, &ctx()).await?;
    Ok(key_chunks(bounds, chunk_rows))
}

async fn estimate_rows(pool: &PgPool, table: &SourceTable, place: &str) -> Result<u64> {
    let name = &table.schema.name;
    let ctx = || format!("{place}: measuring table {name}");
    let from = qualified(table.schema.namespace.as_deref().unwrap_or("public"), name);
    let (width, sampled): (Option<f64>, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT avg(pg_column_size(s.*))::float8, count(*) FROM (SELECT * FROM {from} LIMIT {SAMPLE_ROWS}) s"
    )))
    .fetch_one(pool)
    .await
    .context(ctx)?;
    if sampled < SAMPLE_ROWS {
        return Ok(sampled.unsigned_abs());
    }
    let size_sql = if table.partitioned {
        "SELECT coalesce(sum(pg_table_size(relid)), 0)::int8 FROM pg_partition_tree($1)"
    } else {
        "SELECT pg_table_size($1)::int8"
    };
    let size: i64 = sqlx::query_scalar(size_sql)
        .bind(table.oid)
        .fetch_one(pool)
        .await
        .context(ctx)?;
    #[allow(clippy::cast_precision_loss)]
    let bytes = size as f64;
    let per_row = width.unwrap_or(100.0) + ROW_OVERHEAD;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rows = (bytes / per_row).ceil() as u64;
    Ok(rows.max(sampled.unsigned_abs()))
}

/// Splits `[min, max]` into `chunks` ranges of equal width. The first and
/// last are open-ended, so rows inserted outside the range are not lost.
fn integer_chunks(min: Option<i64>, max: Option<i64>, rows: u64, chunks: u64) -> Vec<Chunk> {
    let (Some(min), Some(max)) = (min, max) else {
        return vec![Chunk::whole(0)];
    };
    let span = u128::try_from(i128::from(max) - i128::from(min) + 1).unwrap_or(1);
    let chunks = chunks.clamp(1, u64::try_from(span).unwrap_or(u64::MAX));
    let width = i128::try_from(span.div_ceil(u128::from(chunks)).max(1)).unwrap_or(i128::MAX);
    let mut out = Vec::new();
    let mut lower: Option<i64> = None;
    let mut id = 0u32;
    loop {
        let start = lower.map_or(i128::from(min), |l| i128::from(l) + 1);
        let upper = i64::try_from(start + width - 1).unwrap_or(i64::MAX);
        let last = upper >= max;
        out.push(Chunk {
            id,
            lower: lower.map(|l| vec![Value::Int(l)]),
            upper: (!last).then(|| vec![Value::Int(upper)]),
            estimated_rows: rows / chunks,
        });
        if last {
            // Rounding the width up may give fewer chunks than asked for.
            let each = rows / u64::try_from(out.len()).unwrap_or(1).max(1);
            for chunk in &mut out {
                chunk.estimated_rows = each;
            }
            return out;
        }
        lower = Some(upper);
        id += 1;
    }
}

/// Chunks between consecutive boundary keys (each the last key of its
/// chunk); the last chunk is open-ended.
fn key_chunks(bounds: Vec<Vec<Value>>, chunk_rows: u64) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut lower: Option<Vec<Value>> = None;
    for (id, upper) in bounds.into_iter().enumerate() {
        out.push(Chunk {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            lower: lower.take(),
            upper: Some(upper.clone()),
            estimated_rows: chunk_rows,
        });
        lower = Some(upper);
    }
    out.push(Chunk {
        id: u32::try_from(out.len()).unwrap_or(u32::MAX),
        lower,
        upper: None,
        estimated_rows: chunk_rows,
    });
    out
}

/// Rows of a small binary COPY, decoded; rows with a value the model
/// cannot hold are left out (a boundary can be any key).
async fn copy_keys(
    pool: &PgPool,
    sql: &str,
    wires: &[Wire],
    what: &str,
) -> Result<Vec<Vec<Value>>> {
    let ctx = || what.to_string();
    let mut conn = pool.acquire().await.context(ctx)?;
    let mut stream = conn.copy_out_raw(sql).await.context(ctx)?;
    let mut decoder = CopyDecoder::new(wires.len());
    let mut spans = Vec::new();
    let mut out = Vec::new();
    while let Some(bytes) = stream.try_next().await.context(ctx)? {
        decoder.feed(&bytes);
        while decoder
            .next_row(&mut spans)
            .map_err(|e| Error::Data(format!("{}: {}", ctx(), e.0)))?
        {
            let data = decoder.data();
            let key: Option<Vec<Value>> = spans
                .iter()
                .zip(wires)
                .map(|(span, wire)| match span {
                    Some((s, e)) => decode_value(*wire, &data[*s..*e]).ok(),
                    None => Some(Value::Null),
                })
                .collect();
            out.extend(key);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ranges_cover_everything_once() {
        let chunks = integer_chunks(Some(1), Some(1000), 1000, 4);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks.iter().map(|c| c.estimated_rows).sum::<u64>(), 1000);
        // Width rounded up: 3334 chunks, not 4274, share the rows.
        let rounded = integer_chunks(Some(1), Some(10_000), 8547, 4274);
        assert_eq!(rounded.len(), 3334);
        assert_eq!(rounded[0].estimated_rows, 2);
        assert_eq!(chunks[0].lower, None);
        assert_eq!(chunks[0].upper, Some(vec![Value::Int(250)]));
        assert_eq!(chunks[1].lower, Some(vec![Value::Int(250)]));
        assert_eq!(chunks[3].upper, None);
        assert_eq!(integer_chunks(None, None, 0, 3), vec![Chunk::whole(0)]);
        // Extremes do not overflow.
        let wide = integer_chunks(Some(i64::MIN), Some(i64::MAX), 10, 3);
        assert_eq!(wide.len(), 3);
        assert_eq!(wide[2].upper, None);
        // More chunks than keys: one key each at most.
        assert_eq!(integer_chunks(Some(5), Some(6), 2, 10).len(), 2);
    }

    #[test]
    fn key_ranges_chain() {
        let k = |s: &str| vec![Value::Text(s.into()), Value::Int(1)];
        let chunks = key_chunks(vec![k("b"), k("d")], 10);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].lower, None);
        assert_eq!(chunks[0].upper, Some(k("b")));
        assert_eq!(chunks[1].lower, Some(k("b")));
        assert_eq!(chunks[2].lower, Some(k("d")));
        assert_eq!(chunks[2].upper, None);
        assert_eq!(chunks[2].id, 2);
        assert_eq!(key_chunks(Vec::new(), 10).len(), 1);
    }
}
