//! Checksums a database computes over its own rows, for `dmp verify`: the
//! rows are hashed where they live and only per-bucket sums cross the
//! network.
//!
//! Every row has a key digest (MD5 of its key columns' canonical parts,
//! see [`dmp_model::canonical`]) and a row digest (MD5 of all its
//! compared columns' parts, key first). Rows are grouped into buckets by
//! the first hex digits of their key digest, and a bucket's checksum is its
//! row count and the sum of the first 60 bits of its rows' digests: an
//! order-independent aggregate, so two systems that hold the same rows
//! agree whatever their storage order, collation or key type. Buckets, not
//! key ranges, because two databases need not sort the same keys alike
//! (MariaDB's case-insensitive collations against PostgreSQL's), and a
//! range that held different rows on each side would read as a difference.

use async_trait::async_trait;

use crate::error::Result;
use dmp_model::DataType;

/// One compared column, with its type on the side that computes.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareColumn {
    pub name: String,
    pub data_type: DataType,
    /// Whether its part is length-prefixed (`canonical::length_prefixed`
    /// of the source's type, so both sides frame it alike).
    pub prefixed: bool,
}

/// What to hash: a table's compared columns, key columns first.
#[derive(Debug, Clone)]
pub struct ChecksumQuery {
    pub table: String,
    pub columns: Vec<CompareColumn>,
    /// How many of `columns`, from the first, form the key.
    pub key_columns: usize,
    /// Group by this many leading hex digits of the key digest.
    pub group: usize,
    /// Only rows whose key digest starts with one of these prefixes (all of
    /// one length, sorted); `None` for every row.
    pub within: Option<Vec<String>>,
    /// Only rows whose key digest's first three hex digits sort below this
    /// (a sample of the key space); `None` for every row.
    pub below: Option<String>,
    /// Range mode, for a key of one integer column (which every system
    /// sorts alike): a bucket per range of key values (both ends included;
    /// disjoint), named by its first value; the digest filters and `group`
    /// do not apply.
    pub ranges: Option<Vec<KeyRange>>,
}

/// Integer key values from the first to the last, both included.
pub type KeyRange = (i64, i64);

/// `(k BETWEEN a AND b OR …)` for `query`'s key ranges on column `key`.
pub fn range_condition(ranges: &[KeyRange], key: &str) -> String {
    let list: Vec<String> = ranges
        .iter()
        .map(|(first, last)| format!("{key} BETWEEN {first} AND {last}"))
        .collect();
    format!("({})", list.join(" OR "))
}

impl ChecksumQuery {
    /// Whether a row with key digest `key` (lowercase hex) passes the
    /// query's filters.
    pub fn selects(&self, key: &str) -> bool {
        if let Some(below) = &self.below
            && key.get(..below.len()).is_none_or(|p| p >= below.as_str())
        {
            return false;
        }
        match &self.within {
            None => true,
            Some(prefixes) => prefixes
                .first()
                .and_then(|p| key.get(..p.len()))
                .is_some_and(|p| prefixes.binary_search_by(|x| x.as_str().cmp(p)).is_ok()),
        }
    }
}

/// The `WHERE …` clause (or nothing) of `query`'s filters: on the key
/// digest expression `k`, in SQL where `substr` takes a string's first
/// characters and `collate` makes `<` compare bytes; or on the quoted key
/// column `key` in range mode.
pub fn digest_filters(
    query: &ChecksumQuery,
    k: &str,
    key: &str,
    substr: &str,
    collate: &str,
) -> String {
    let mut conds = Vec::new();
    if let Some(ranges) = &query.ranges {
        conds.push(range_condition(ranges, key));
    } else {
        if let Some(below) = &query.below {
            conds.push(format!(
                "{substr}({k}, 1, {}) < '{below}'{collate}",
                below.len()
            ));
        }
        if let Some(prefixes) = &query.within
            && let Some(first) = prefixes.first()
        {
            // Hex digits only: safe as literals.
            let list: Vec<String> = prefixes.iter().map(|p| format!("'{p}'")).collect();
            conds.push(format!(
                "{substr}({k}, 1, {}) IN ({})",
                first.len(),
                list.join(", ")
            ));
        }
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// One bucket's checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketSum {
    pub rows: u64,
    pub sum: u128,
}

impl BucketSum {
    pub fn add(&mut self, digest: u64) {
        self.rows += 1;
        self.sum += u128::from(digest);
    }
}

/// A database that hashes its rows itself.
#[async_trait]
pub trait Checksums: Send + Sync {
    /// Whether this database can spell every column of `query` canonically
    /// in SQL; if not, the caller reads the rows and hashes them itself.
    fn can_hash(&self, query: &ChecksumQuery) -> bool;

    /// The non-empty buckets the query selects, with their checksums.
    async fn buckets(&self, query: &ChecksumQuery) -> Result<Vec<(String, BucketSum)>>;

    /// The smallest and largest value of the integer key column `column`
    /// (range mode); `None` for an empty table.
    async fn key_span(&self, table: &str, column: &str) -> Result<Option<KeyRange>>;

    /// The rows the query selects, each column's canonical text (`None` for
    /// NULL) in the query's column order.
    async fn rows(&self, query: &ChecksumQuery) -> Result<Vec<Vec<Option<String>>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_by_key_prefix() {
        let mut query = ChecksumQuery {
            table: "t".into(),
            columns: Vec::new(),
            key_columns: 0,
            group: 6,
            within: Some(vec!["0ab".into(), "f00".into()]),
            below: None,
            ranges: None,
        };
        assert!(query.selects("0ab123"));
        assert!(query.selects("f00fff"));
        assert!(!query.selects("0ac000"));
        query.below = Some("800".into());
        assert!(query.selects("0ab123"));
        assert!(!query.selects("f00fff"));
        query.within = None;
        assert!(query.selects("7ff000"));
        assert!(!query.selects("800000"));
    }
}
