//! One side of a comparison: a source or target table whose buckets and
//! rows are computed inside its database when it can hash them there, and
//! otherwise by reading its rows (through the pipeline's transforms, for a
//! transformed source) and hashing them here, in the same canonical form.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use crate::error::{Error, Result};
use dmp_contract::checksum::KeyRange;
use dmp_contract::{BucketSum, ChecksumQuery, CompareColumn, Source};
use dmp_model::canonical::{canonical_text, push_part, row_digests};
use dmp_model::{DataType, Position, TableSchema, Value};
use dmp_transform::TransformChain;

/// Rows of a table as canonical texts, in the compared columns' order.
pub(super) type CanonRow = Vec<Option<String>>;

#[derive(Clone)]
pub(super) struct Side {
    /// `source` or `target`, for messages.
    pub(super) role: &'static str,
    pub(super) source: Arc<dyn Source>,
    /// The table as this side's reader sees it.
    pub(super) schema: Arc<TableSchema>,
    /// The compared columns under this side's names and types, key first.
    pub(super) columns: Vec<CompareColumn>,
    pub(super) key_columns: usize,
    /// The types values are spelled as: the source's (after transforms),
    /// so a value this side holds in another type still compares.
    pub(super) reference: Vec<DataType>,
    /// Where each compared column sits in the rows this side reads (after
    /// `chain`).
    pub(super) positions: Vec<usize>,
    /// The pipeline's transforms, on a source that has them.
    pub(super) chain: Option<TransformChain>,
    pub(super) batch_rows: usize,
    pub(super) chunk_rows: u64,
    /// Whether the database computes this side's checksums (set by `new`).
    in_database: bool,
}

impl Side {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        role: &'static str,
        source: Arc<dyn Source>,
        schema: Arc<TableSchema>,
        columns: Vec<CompareColumn>,
        key_columns: usize,
        reference: Vec<DataType>,
        positions: Vec<usize>,
        chain: Option<TransformChain>,
        batch_rows: usize,
        chunk_rows: u64,
    ) -> Self {
        let mut side = Side {
            role,
            source,
            schema,
            columns,
            key_columns,
            reference,
            positions,
            chain,
            batch_rows,
            chunk_rows,
            in_database: false,
        };
        side.in_database = side.database_can_hash();
        side
    }

    fn query(&self, group: usize, within: Option<&[String]>, below: Option<&str>) -> ChecksumQuery {
        ChecksumQuery {
            table: self.schema.name.clone(),
            columns: self.columns.clone(),
            key_columns: self.key_columns,
            group,
            within: within.map(<[String]>::to_vec),
            below: below.map(str::to_string),
            ranges: None,
        }
    }

    /// Whether the key is one integer column, which every system sorts
    /// alike: then both databases can checksum key ranges.
    pub(super) fn integer_key(&self) -> bool {
        self.key_columns == 1
            && matches!(
                self.reference.first(),
                Some(DataType::Int16 | DataType::Int32 | DataType::Int64)
            )
    }

    fn database(&self) -> Result<&dyn dmp_contract::Checksums> {
        self.source
            .checksums()
            .filter(|_| self.in_database())
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "table {}: the {} cannot checksum key ranges",
                    self.schema.name, self.role
                ))
            })
    }

    /// The smallest and largest key (range mode).
    pub(super) async fn key_span(&self) -> Result<Option<KeyRange>> {
        let key = self.columns.first().map_or("", |c| c.name.as_str());
        self.database()?.key_span(&self.schema.name, key).await
    }

    fn ranged(&self, ranges: &[KeyRange]) -> ChecksumQuery {
        ChecksumQuery {
            ranges: Some(ranges.to_vec()),
            ..self.query(0, None, None)
        }
    }

    /// The checksums of key ranges, by their first key (range mode).
    pub(super) async fn range_sums(
        &self,
        ranges: &[KeyRange],
    ) -> Result<BTreeMap<String, BucketSum>> {
        let query = self.ranged(ranges);
        Ok(self
            .database()?
            .buckets(&query)
            .await?
            .into_iter()
            .collect())
    }

    /// The rows of key ranges (range mode).
    pub(super) async fn range_rows(&self, ranges: &[KeyRange]) -> Result<Vec<CanonRow>> {
        self.database()?.rows(&self.ranged(ranges)).await
    }

    /// Whether the database computes this side's checksums.
    /// This side read through another reader of the same system.
    pub(super) fn reading_from(&self, source: Arc<dyn Source>) -> Self {
        Side {
            source,
            ..self.clone()
        }
    }

    pub(super) fn in_database(&self) -> bool {
        self.in_database
    }

    /// Whether the database can spell every compared column in SQL (and
    /// no transform stands between its rows and the comparison).
    fn database_can_hash(&self) -> bool {
        self.chain.is_none()
            && self
                .source
                .checksums()
                .is_some_and(|c| c.can_hash(&self.query(3, None, None)))
    }

    /// The checksums of the buckets of `group` key-digest digits, among the
    /// rows the filters select, and how many rows could not be read (a
    /// value dmp's reader or a transform refused: never compared).
    pub(super) async fn buckets(
        &self,
        group: usize,
        within: Option<&[String]>,
        below: Option<&str>,
    ) -> Result<(BTreeMap<String, BucketSum>, u64)> {
        let query = self.query(group, within, below);
        if self.in_database()
            && let Some(db) = self.source.checksums()
        {
            return Ok((db.buckets(&query).await?.into_iter().collect(), 0));
        }
        let mut buckets: BTreeMap<String, BucketSum> = BTreeMap::new();
        let refused = self
            .scan(&query, |key, digest, _| {
                let prefix = key.get(..group).unwrap_or(key);
                buckets.entry(prefix.to_string()).or_default().add(digest);
            })
            .await?;
        Ok((buckets, refused))
    }

    /// The rows the filters select.
    pub(super) async fn rows(
        &self,
        within: &[String],
        below: Option<&str>,
    ) -> Result<Vec<CanonRow>> {
        let query = self.query(0, Some(within), below);
        if self.in_database()
            && let Some(db) = self.source.checksums()
        {
            return db.rows(&query).await;
        }
        let mut rows = Vec::new();
        self.scan(&query, |_, _, row| rows.push(row)).await?;
        Ok(rows)
    }

    /// Reads the whole table, hands on the rows the query's filters select
    /// with their key digest and row digest; gives the number of rows that
    /// could not be read.
    async fn scan(
        &self,
        query: &ChecksumQuery,
        mut found: impl FnMut(&str, u64, CanonRow),
    ) -> Result<u64> {
        let chunks = self
            .source
            .plan_snapshot(&self.schema, self.chunk_rows)
            .await?;
        let mut refused = 0u64;
        for chunk in chunks {
            let mut stream = self.source.read_chunk(
                self.schema.clone(),
                chunk,
                Position::Start,
                self.batch_rows,
            );
            while let Some(batch) = stream.recv().await {
                let mut batch = batch?;
                if let Some(chain) = &self.chain {
                    batch = match chain.apply(batch).await? {
                        Ok((batch, _)) => batch,
                        Err((batch, reason)) => {
                            refused += batch.changes.len() as u64;
                            warn!(table = %self.schema.name, %reason, "a transform failed on rows being verified");
                            continue;
                        }
                    };
                }
                refused += batch.rejects.len() as u64;
                for change in &batch.changes {
                    let values = &change.row().0;
                    let row: CanonRow = self
                        .positions
                        .iter()
                        .zip(&self.columns)
                        .zip(&self.reference)
                        .map(|((&i, c), reference)| {
                            spell(
                                values.get(i).unwrap_or(&Value::Null),
                                &c.data_type,
                                reference,
                            )
                        })
                        .collect();
                    let (key, digest) = digests(&row, &self.columns, self.key_columns);
                    if query.selects(&key) {
                        found(&key, digest, row);
                    }
                }
                if batch.last {
                    break;
                }
            }
        }
        if refused > 0 {
            warn!(
                table = %self.schema.name,
                side = self.role,
                rows = refused,
                "rows the reader or a transform refused are not compared"
            );
        }
        Ok(refused)
    }
}

/// The canonical text of a value this side holds as `own`, spelled as the
/// `reference` type when the two differ (a text column holding the
/// timestamps the source had, a float column for a source's float32).
fn spell(value: &Value, own: &DataType, reference: &DataType) -> Option<String> {
    if own == reference {
        return canonical_text(value, own);
    }
    match value {
        Value::Text(text) | Value::Json(text) if !matches!(reference, DataType::Text { .. }) => {
            Value::parse_text(text, reference).map_or_else(
                |_| canonical_text(value, own),
                |v| canonical_text(&v, reference),
            )
        }
        _ => canonical_text(value, reference),
    }
}

/// The key digest (hex) and the row digest's 60 bits of a canonical row.
pub(super) fn digests(
    row: &[Option<String>],
    columns: &[CompareColumn],
    key_columns: usize,
) -> (String, u64) {
    let (mut kp, mut rp) = (String::new(), String::new());
    for (i, (text, column)) in row.iter().zip(columns).enumerate() {
        let part = if i < key_columns { &mut kp } else { &mut rp };
        push_part(part, text.as_deref(), column.prefixed);
    }
    row_digests(&kp, &rp)
}

/// The identity of a row within its table: its key parts.
pub(super) fn key_of(row: &[Option<String>], key_columns: usize) -> String {
    let mut out = String::new();
    for text in &row[..key_columns.min(row.len())] {
        // Length-prefixed whatever the type: unambiguous in any case.
        push_part(&mut out, text.as_deref(), true);
    }
    out
}
