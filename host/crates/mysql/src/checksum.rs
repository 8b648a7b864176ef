//! `dmp verify` checksums computed by MySQL / MariaDB: each column spelled
//! in its canonical text (`model::canonical`) by SQL, the digests by
//! `MD5()`, the bucket sums by one aggregate query. Sessions run in UTC
//! (see `config`), so `TIMESTAMP` columns read as the instants they hold.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use mysql_async::prelude::Queryable;

use super::catalog::ReadColumn;
use super::source::MysqlSource;
use super::sql::{literal, quote};
use super::types::{ReadAs, Wire};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::checksum::{
    BucketSum, ChecksumQuery, Checksums, CompareColumn, KeyRange, digest_filters,
};
use dmp_model::DataType;
use dmp_model::canonical::PLAIN_FLOATS;

/// The canonical text of column `quoted` of type `t` read as `read`, NULL
/// for NULL; `None` where SQL cannot match the canonical spelling (floats
/// and JSON: dmp hashes such tables itself).
fn canonical_expr(quoted: &str, t: &DataType, read: Option<ReadColumn>) -> Option<String> {
    let read_as = read.map_or(ReadAs::Plain, |r| r.read);
    let wire = read.map_or(Wire::Other, |r| r.wire);
    match read_as {
        ReadAs::Wkt => return Some(format!("ST_AsText({quoted})")),
        ReadAs::Text => return Some(format!("CAST({quoted} AS CHAR)")),
        ReadAs::Plain => {}
    }
    Some(match t {
        DataType::Bool => {
            format!("CASE WHEN {quoted} <> 0 THEN '1' WHEN {quoted} = 0 THEN '0' END")
        }
        DataType::Int16 | DataType::Int32 | DataType::Int64 if wire == Wire::Bit => {
            format!("CAST({quoted} + 0 AS CHAR)")
        }
        DataType::Int16 | DataType::Int32 | DataType::Int64 => format!("CAST({quoted} AS CHAR)"),
        // MySQL writes every fraction digit of the column's scale.
        DataType::Decimal { scale: Some(0), .. } => format!("CAST({quoted} AS CHAR)"),
        DataType::Decimal { scale: Some(_), .. } => {
            format!("TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({quoted} AS CHAR)))")
        }
        // Scale unknown (read through a type comment): trim only fractions.
        DataType::Decimal { scale: None, .. } => format!(
            "IF(LOCATE('.', {quoted}) > 0, \
             TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({quoted} AS CHAR))), \
             CAST({quoted} AS CHAR))"
        ),
        DataType::Text { .. } => format!("CONVERT({quoted} USING utf8mb4)"),
        DataType::Uuid => format!("LOWER(CAST({quoted} AS CHAR))"),
        DataType::Bytes => format!("CONCAT({}, LOWER(HEX({quoted})))", literal("\\x")),
        // Zero dates read as NULL (the reader's documented policy).
        DataType::Date => zero_date_null(quoted, "%Y-%m-%d"),
        DataType::Time => format!("TIME_FORMAT({quoted}, '%H:%i:%s.%f')"),
        DataType::Timestamp | DataType::TimestampTz => {
            zero_date_null(quoted, "%Y-%m-%d %H:%i:%s.%f")
        }
        // Shortest digits held exactly by a DECIMAL(65,30) in the plain
        // range; beyond, MySQL's own text, which is in exponent form except
        // for tiny numbers it writes out (`0.000000000000015`): those are
        // turned into exponent form here.
        DataType::Float64 => {
            let tiny = format!("TRIM(LEADING '0' FROM SUBSTRING(CAST(ABS({quoted}) AS CHAR), 3))");
            format!(
                "CASE WHEN {quoted} = 0 THEN '0' \
                 WHEN ABS({quoted}) >= {low:e} AND ABS({quoted}) < {high:e} THEN \
                 TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({quoted} AS DECIMAL(65,30)))) \
                 WHEN CAST({quoted} AS CHAR) LIKE '%e%' THEN CAST({quoted} AS CHAR) \
                 ELSE CONCAT(IF({quoted} < 0, '-', ''), LEFT({tiny}, 1), \
                   IF(CHAR_LENGTH({tiny}) > 1, CONCAT('.', SUBSTRING({tiny}, 2)), ''), 'e-', \
                   CHAR_LENGTH(SUBSTRING(CAST(ABS({quoted}) AS CHAR), 3)) - CHAR_LENGTH({tiny}) + 1) END",
                low = PLAIN_FLOATS.start,
                high = PLAIN_FLOATS.end,
            )
        }
        // A FLOAT reads into a DECIMAL with its double's digits, not its
        // own shortest ones: dmp hashes those; so it does JSON, whose
        // normal form differs between systems.
        DataType::Float32 | DataType::Json => return None,
    })
}

fn zero_date_null(quoted: &str, format: &str) -> String {
    format!(
        "CASE WHEN MONTH({quoted}) = 0 OR DAYOFMONTH({quoted}) = 0 THEN NULL \
         ELSE DATE_FORMAT({quoted}, '{format}') END"
    )
}

fn expr(c: &CompareColumn, reads: &HashMap<String, ReadColumn>) -> Option<String> {
    canonical_expr(&quote(&c.name), &c.data_type, reads.get(&c.name).copied())
}

/// The digest input of `columns`: each one's part, concatenated.
fn parts(columns: &[CompareColumn], reads: &HashMap<String, ReadColumn>) -> Option<String> {
    if columns.is_empty() {
        return Some("''".into());
    }
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        let text = expr(c, reads)?;
        out.push(if c.prefixed {
            format!("COALESCE(CONCAT(CHAR_LENGTH({text}), ':', {text}), '~')")
        } else {
            format!("COALESCE(CONCAT({text}, ','), '~')")
        });
    }
    Some(format!("CONCAT({})", out.join(", ")))
}

/// `WHERE …` on the key digest `k` for the query's filters.
fn filters(query: &ChecksumQuery, k: &str) -> String {
    let key = query
        .columns
        .first()
        .map(|c| quote(&c.name))
        .unwrap_or_default();
    digest_filters(query, k, &key, "SUBSTRING", "")
}

/// Digest mode: one row per bucket, without a derived table (MariaDB
/// would materialize one, a million rows of digests, before grouping).
/// Range mode: the one row of the query's (single) range, named by its
/// first key value.
fn buckets_sql(query: &ChecksumQuery, reads: &HashMap<String, ReadColumn>) -> Option<String> {
    let (key, rest) = query.columns.split_at(query.key_columns);
    let (kp, rp) = (parts(key, reads)?, parts(rest, reads)?);
    let k = format!("MD5({kp})");
    let sum = format!(
        "CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(MD5(CONCAT({kp}, {rp})), 1, 15), 16, 10) \
         AS UNSIGNED)), 0) AS CHAR)"
    );
    let table = quote(&query.table);
    let filters = filters(query, &k);
    Some(match &query.ranges {
        Some(ranges) => format!(
            "SELECT '{}', COUNT(*), {sum} FROM {table}{filters}",
            ranges.first()?.0
        ),
        None => format!(
            "SELECT SUBSTRING({k}, 1, {group}) AS b, COUNT(*), {sum} FROM {table}{filters} GROUP BY b",
            group = query.group,
        ),
    })
}

fn rows_sql(query: &ChecksumQuery, reads: &HashMap<String, ReadColumn>) -> Option<String> {
    let (key, _) = query.columns.split_at(query.key_columns);
    let kp = parts(key, reads)?;
    let mut select = Vec::with_capacity(query.columns.len());
    for c in &query.columns {
        select.push(expr(c, reads)?);
    }
    Some(format!(
        "SELECT {} FROM {}{}",
        select.join(", "),
        quote(&query.table),
        filters(query, &format!("MD5({kp})")),
    ))
}

fn unhashable(query: &ChecksumQuery) -> Error {
    Error::Unsupported(format!(
        "table {}: a column type MySQL cannot hash canonically",
        query.table
    ))
}

impl MysqlSource {
    /// Runs a checksum query, every cell as text.
    async fn text_rows(
        &self,
        table: &str,
        sql: String,
        what: &str,
    ) -> Result<Vec<Vec<Option<String>>>> {
        let (mut conn, place) = self.checksum_conn().await?;
        let ctx = || format!("{place}: {what} of table {table}");
        let rows: Vec<mysql_async::Row> = conn.query(sql).await.context(ctx)?;
        rows.into_iter()
            .map(|row| {
                row.unwrap()
                    .into_iter()
                    .map(|cell| {
                        mysql_async::from_value_opt::<Option<String>>(cell)
                            .map_err(|e| Error::Data(format!("{}: {e}", ctx())))
                    })
                    .collect()
            })
            .collect()
    }
}

#[async_trait]
impl Checksums for MysqlSource {
    fn can_hash(&self, query: &ChecksumQuery) -> bool {
        // Read columns only change geometry and unknown types to text,
        // which are always hashable: the model types decide.
        buckets_sql(query, &HashMap::new()).is_some()
    }

    async fn buckets(&self, query: &ChecksumQuery) -> Result<Vec<(String, BucketSum)>> {
        let reads = self.read_columns(&query.table).await?;
        // MySQL runs a query on one core: in range mode, one query per
        // range, as many at once as this source has readers.
        let queries: Vec<ChecksumQuery> = match &query.ranges {
            Some(ranges) => ranges
                .iter()
                .map(|r| ChecksumQuery {
                    ranges: Some(vec![*r]),
                    ..query.clone()
                })
                .collect(),
            None => vec![query.clone()],
        };
        let mut sqls = Vec::with_capacity(queries.len());
        for q in &queries {
            sqls.push(buckets_sql(q, &reads).ok_or_else(|| unhashable(query))?);
        }
        let results: Vec<Vec<Vec<Option<String>>>> = futures_util::stream::iter(sqls)
            .map(|sql| self.text_rows(&query.table, sql, "checksums"))
            .buffer_unordered(self.readers())
            .try_collect()
            .await?;
        let bad = |what: &str| {
            Error::Data(format!(
                "table {}: the server returned checksum {what}",
                query.table
            ))
        };
        let mut buckets = Vec::new();
        for cells in results.into_iter().flatten() {
            match cells.as_slice() {
                [Some(bucket), Some(rows), Some(sum)] => {
                    let rows = rows.parse::<u64>().map_err(|_| bad(rows))?;
                    let sum = sum.parse::<u128>().map_err(|_| bad(sum))?;
                    if rows > 0 {
                        buckets.push((bucket.clone(), BucketSum { rows, sum }));
                    }
                }
                _ => return Err(bad("NULL")),
            }
        }
        Ok(buckets)
    }

    async fn key_span(&self, table: &str, column: &str) -> Result<Option<KeyRange>> {
        let column = quote(column);
        let sql = format!(
            "SELECT CAST(MIN({column}) AS CHAR), CAST(MAX({column}) AS CHAR) FROM {}",
            quote(table)
        );
        let rows = self.text_rows(table, sql, "key range").await?;
        let bound = |i: usize| {
            rows.first()
                .and_then(|r| r.get(i).cloned().flatten())
                .and_then(|v| v.parse::<i64>().ok())
        };
        Ok(bound(0).zip(bound(1)))
    }

    async fn rows(&self, query: &ChecksumQuery) -> Result<Vec<Vec<Option<String>>>> {
        let reads = self.read_columns(&query.table).await?;
        let sql = rows_sql(query, &reads).ok_or_else(|| unhashable(query))?;
        self.text_rows(&query.table, sql, "rows to compare").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> ChecksumQuery {
        ChecksumQuery {
            table: "t".into(),
            columns: vec![
                CompareColumn {
                    name: "id".into(),
                    data_type: DataType::Int64,
                    prefixed: false,
                },
                CompareColumn {
                    name: "price".into(),
                    data_type: DataType::Decimal {
                        precision: Some(12),
                        scale: Some(2),
                    },
                    prefixed: false,
                },
            ],
            key_columns: 1,
            group: 3,
            within: None,
            below: Some("400".into()),
            ranges: None,
        }
    }

    #[test]
    fn bucket_queries_hash_key_and_row() {
        let sql = buckets_sql(&query(), &HashMap::new()).expect("hashable");
        assert!(
            sql.contains("MD5(CONCAT(CONCAT(COALESCE(CONCAT(CAST(`id` AS CHAR), ','), '~')),"),
            "{sql}"
        );
        assert!(
            sql.contains("TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST(`price` AS CHAR)))"),
            "{sql}"
        );
        assert!(
            sql.contains(
                "SUBSTRING(MD5(CONCAT(COALESCE(CONCAT(CAST(`id` AS CHAR), ','), '~'))), 1, 3) < '400'"
            ),
            "{sql}"
        );
    }

    #[test]
    fn range_queries_sum_one_key_range() {
        let mut q = query();
        q.ranges = Some(vec![(10, 19)]);
        let sql = buckets_sql(&q, &HashMap::new()).expect("hashable");
        assert!(sql.starts_with("SELECT '10', COUNT(*)"), "{sql}");
        assert!(
            sql.ends_with("FROM `t` WHERE (`id` BETWEEN 10 AND 19)"),
            "{sql}"
        );
    }

    #[test]
    fn floats_and_json_are_left_to_dmp() {
        let mut q = query();
        q.columns[1].data_type = DataType::Float32;
        assert!(buckets_sql(&q, &HashMap::new()).is_none());
        assert!(rows_sql(&q, &HashMap::new()).is_none());
    }
}
