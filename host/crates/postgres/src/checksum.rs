//! `dmp verify` checksums computed by PostgreSQL: each column spelled in
//! its canonical text (`model::canonical`) by SQL, the digests by `md5()`,
//! the bucket sums by one aggregate query, which the planner may run with
//! parallel workers on a large table.

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::{AssertSqlSafe, Row as _};

use super::source::PostgresSource;
use super::sql::{qualified, quote_ident, quote_literal};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::checksum::{
    BucketSum, ChecksumQuery, Checksums, CompareColumn, KeyRange, digest_filters,
};
use dmp_model::DataType;
use dmp_model::canonical::PLAIN_FLOATS;

/// The canonical text of column `quoted` of type `t`, NULL for NULL;
/// `None` where SQL cannot match the canonical spelling (JSON, whose
/// normal form differs between systems): such tables are hashed by dmp.
fn canonical_expr(quoted: &str, t: &DataType) -> Option<String> {
    Some(match t {
        DataType::Bool => format!("CASE {quoted} WHEN true THEN '1' WHEN false THEN '0' END"),
        DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Text { .. } => {
            format!("{quoted}::text")
        }
        DataType::Uuid => format!("lower({quoted}::text)"),
        DataType::Decimal { .. } => format!("trim_scale({quoted})::text"),
        DataType::Bytes => format!("{} || encode({quoted}, 'hex')", quote_literal("\\x")),
        DataType::Date => format!("to_char({quoted}, 'YYYY-MM-DD')"),
        DataType::Time => format!("to_char({quoted}, 'HH24:MI:SS.US')"),
        DataType::Timestamp => format!("to_char({quoted}, 'YYYY-MM-DD HH24:MI:SS.US')"),
        DataType::TimestampTz => {
            format!("to_char({quoted} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
        }
        // Shortest digits, read into a numeric to write them out in full,
        // or PostgreSQL's exponent form without `+` and leading zeros.
        DataType::Float32 | DataType::Float64 => format!(
            "CASE WHEN {quoted} = 0 THEN '0' \
             WHEN {quoted} IN ('NaN', 'Infinity', '-Infinity') THEN {quoted}::text \
             WHEN abs({quoted}) >= {low:e}::float8 AND abs({quoted}) < {high:e}::float8 \
             THEN trim_scale({quoted}::text::numeric)::text \
             ELSE regexp_replace(replace({quoted}::text, 'e+', 'e'), 'e(-?)0+', {back}) END",
            low = PLAIN_FLOATS.start,
            high = PLAIN_FLOATS.end,
            back = quote_literal("e\\1"),
        ),
        DataType::Json => return None,
    })
}

/// The digest input of `columns`: each one's part, concatenated.
fn parts(columns: &[CompareColumn]) -> Option<String> {
    if columns.is_empty() {
        return Some("''".into());
    }
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        let text = canonical_expr(&quote_ident(&c.name), &c.data_type)?;
        out.push(if c.prefixed {
            format!("COALESCE(length({text})::text || ':' || {text}, '~')")
        } else {
            format!("COALESCE({text} || ',', '~')")
        });
    }
    Some(out.join(" || "))
}

/// `WHERE …` on the key digest `k` (or the key column, in range mode).
fn filters(query: &ChecksumQuery, k: &str) -> String {
    let key = query
        .columns
        .first()
        .map(|c| quote_ident(&c.name))
        .unwrap_or_default();
    digest_filters(query, k, &key, "substr", " COLLATE \"C\"")
}

/// Digest mode: one row per bucket. Range mode: the one row of the
/// query's (single) range, named by its first key value.
pub(super) fn buckets_sql(schema: &str, query: &ChecksumQuery) -> Option<String> {
    let (key, rest) = query.columns.split_at(query.key_columns);
    let (kp, rp) = (parts(key)?, parts(rest)?);
    let table = qualified(schema, &query.table);
    let sum = "COALESCE(sum(('x' || substr(r, 1, 15))::bit(60)::int8), 0)::text";
    if let Some(ranges) = &query.ranges {
        let first = ranges.first()?.0;
        return Some(format!(
            "SELECT '{first}', count(*)::int8, {sum} \
             FROM (SELECT md5({kp} || {rp}) AS r FROM {table}{filters}) AS d",
            filters = filters(query, ""),
        ));
    }
    Some(format!(
        "SELECT substr(k, 1, {group}), count(*)::int8, {sum} \
         FROM (SELECT md5(kp) AS k, md5(kp || rp) AS r \
               FROM (SELECT {kp} AS kp, {rp} AS rp FROM {table}) AS p) AS d{filters} \
         GROUP BY 1",
        group = query.group,
        filters = filters(query, "k"),
    ))
}

pub(super) fn rows_sql(schema: &str, query: &ChecksumQuery) -> Option<String> {
    let (key, _) = query.columns.split_at(query.key_columns);
    let kp = parts(key)?;
    let mut select = Vec::with_capacity(query.columns.len());
    for c in &query.columns {
        select.push(canonical_expr(&quote_ident(&c.name), &c.data_type)?);
    }
    Some(format!(
        "SELECT {} FROM {}{}",
        select.join(", "),
        qualified(schema, &query.table),
        filters(query, &format!("md5({kp})")),
    ))
}

impl PostgresSource {
    async fn bucket_query(&self, query: &ChecksumQuery) -> Result<Vec<(String, BucketSum)>> {
        let (pool, schema, place) = self.checksum_session();
        let sql = buckets_sql(schema, query).ok_or_else(|| unhashable(query))?;
        let ctx = || format!("{place}: checksums of table {}", query.table);
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .context(ctx)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let bucket: String = row.try_get(0).context(ctx)?;
            let count: i64 = row.try_get(1).context(ctx)?;
            let sum: String = row.try_get(2).context(ctx)?;
            let sum = sum
                .parse::<u128>()
                .map_err(|e| Error::Data(format!("{}: checksum `{sum}`: {e}", ctx())))?;
            out.push((
                bucket,
                BucketSum {
                    rows: u64::try_from(count).unwrap_or(0),
                    sum,
                },
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl Checksums for PostgresSource {
    fn can_hash(&self, query: &ChecksumQuery) -> bool {
        buckets_sql("", query).is_some()
    }

    async fn buckets(&self, query: &ChecksumQuery) -> Result<Vec<(String, BucketSum)>> {
        let Some(ranges) = &query.ranges else {
            return self.bucket_query(query).await;
        };
        // One query per range, as many at once as the pool has readers.
        let (pool, _, _) = self.checksum_session();
        let at_once = usize::try_from(pool.options().get_max_connections())
            .unwrap_or(1)
            .saturating_sub(1)
            .max(1);
        let queries: Vec<ChecksumQuery> = ranges
            .iter()
            .map(|r| ChecksumQuery {
                ranges: Some(vec![*r]),
                ..query.clone()
            })
            .collect();
        let results: Vec<Vec<(String, BucketSum)>> = futures_util::stream::iter(queries)
            .map(|q| async move { self.bucket_query(&q).await })
            .buffer_unordered(at_once)
            .try_collect()
            .await?;
        Ok(results
            .into_iter()
            .flatten()
            .filter(|(_, b)| b.rows > 0)
            .collect())
    }

    async fn key_span(&self, table: &str, column: &str) -> Result<Option<KeyRange>> {
        let (pool, schema, place) = self.checksum_session();
        let column = quote_ident(column);
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT min({column})::int8, max({column})::int8 FROM {}",
            qualified(schema, table)
        )))
        .fetch_one(pool)
        .await
        .context(|| format!("{place}: key range of table {table}"))?;
        Ok(first.zip(last))
    }

    async fn rows(&self, query: &ChecksumQuery) -> Result<Vec<Vec<Option<String>>>> {
        let (pool, schema, place) = self.checksum_session();
        let sql = rows_sql(schema, query).ok_or_else(|| unhashable(query))?;
        let ctx = || format!("{place}: rows of table {} to compare", query.table);
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .context(ctx)?;
        rows.iter()
            .map(|row| {
                (0..query.columns.len())
                    .map(|i| row.try_get::<Option<String>, _>(i).context(ctx))
                    .collect()
            })
            .collect()
    }
}

fn unhashable(query: &ChecksumQuery) -> Error {
    Error::Unsupported(format!(
        "table {}: a column type PostgreSQL cannot hash canonically",
        query.table
    ))
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
                    name: "at".into(),
                    data_type: DataType::TimestampTz,
                    prefixed: false,
                },
            ],
            key_columns: 1,
            group: 3,
            within: Some(vec!["0ab".into(), "f00".into()]),
            below: Some("800".into()),
            ranges: None,
        }
    }

    #[test]
    fn bucket_queries_hash_key_and_row() {
        let sql = buckets_sql("public", &query()).expect("hashable");
        assert!(sql.contains("md5(kp || rp)"), "{sql}");
        assert!(
            sql.contains(
                "COALESCE(to_char(\"at\" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ',', '~')"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("substr(k, 1, 3) < '800' COLLATE \"C\""),
            "{sql}"
        );
        assert!(sql.contains("substr(k, 1, 3) IN ('0ab', 'f00')"), "{sql}");
        assert!(sql.contains("FROM \"public\".\"t\""), "{sql}");
    }

    #[test]
    fn range_queries_sum_one_key_range() {
        let mut q = query();
        q.ranges = Some(vec![(10, 19)]);
        let sql = buckets_sql("public", &q).expect("hashable");
        assert!(sql.starts_with("SELECT '10', count(*)::int8"), "{sql}");
        assert!(sql.contains("WHERE (\"id\" BETWEEN 10 AND 19)"), "{sql}");
        assert!(!sql.contains("GROUP BY"), "{sql}");
    }

    #[test]
    fn json_is_left_to_dmp() {
        let mut q = query();
        q.columns[1].data_type = DataType::Float64;
        assert!(buckets_sql("public", &q).is_some());
        q.columns[1].data_type = DataType::Json;
        assert!(rows_sql("public", &q).is_none());
    }
}
