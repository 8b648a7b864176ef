//! Compares one table: bucket checksums on both sides, then only the
//! buckets that differ are split into finer buckets (the next hex digits of
//! the key digest) until each holds few rows, and those rows are fetched
//! from both sides and matched by key, naming each difference.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use tracing::{Instrument, debug, info_span};

use super::side::{CanonRow, Side, key_of};
use crate::error::Result;
use dmp_contract::BucketSum;
use dmp_contract::checksum::KeyRange;

/// Key-digest digits of the first level: 4096 buckets.
const FIRST_GROUP: usize = 3;
/// Digits added per level of splitting.
const STEP: usize = 3;
/// A bucket with at most this many rows on either side is fetched whole.
const LEAF_ROWS: u64 = 2_000;
/// Rows fetched from each side per query, about.
const FETCH_ROWS: u64 = 50_000;
/// Bucket prefixes (or key ranges) per query.
const PREFIXES_PER_QUERY: usize = 1_000;
/// Key ranges of the first level (range mode); a differing range is split
/// into `SPLIT_RANGES`.
const FIRST_RANGES: usize = 64;
const SPLIT_RANGES: usize = 16;
/// Key ranges per row fetch (each is an `OR`ed condition).
const RANGES_PER_FETCH: usize = 200;
/// The key digest has 32 hex digits.
const DIGEST_DIGITS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// In the source, not in the target.
    MissingInTarget,
    /// In the target, not in the source.
    ExtraInTarget,
    /// In both, with different values.
    Differs,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnDifference {
    pub column: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

/// One row that differs, named by its key (canonical texts).
#[derive(Debug, Clone, Serialize)]
pub struct RowDifference {
    pub kind: DifferenceKind,
    pub key: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDifference>,
}

/// A difference with the whole rows, for repair.
pub(super) enum Diff {
    Missing(CanonRow),
    Extra(CanonRow),
    Differs { source: CanonRow, target: CanonRow },
}

/// What comparing one table found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub source_rows: u64,
    pub target_rows: u64,
    /// First-level buckets compared (all 4096 unless sampled or small).
    pub buckets: usize,
    pub differing_buckets: usize,
    pub missing_in_target: u64,
    pub extra_in_target: u64,
    pub differing_rows: u64,
    /// Rows dmp could not read on a side it hashes itself (a value its
    /// reader or a transform refused, as a run would have): never
    /// compared, so the table is not proven equal.
    pub unreadable_source_rows: u64,
    pub unreadable_target_rows: u64,
    /// The first differences, in key-digest order.
    pub differences: Vec<RowDifference>,
}

impl Findings {
    /// Rows found different or left uncompared.
    pub fn total(&self) -> u64 {
        self.missing_in_target
            + self.extra_in_target
            + self.differing_rows
            + self.unreadable_source_rows
            + self.unreadable_target_rows
    }
}

/// Compares `source` and `target`; `names` are the compared columns'
/// names (source names, key first). Hands each group of differences to
/// `fix` as it is found (repair), so memory stays bounded whatever their
/// number.
pub(super) async fn compare<F, Fut>(
    source: &Side,
    target: &Side,
    names: &[String],
    sample_percent: Option<f64>,
    max_listed: usize,
    fix: F,
) -> Result<Findings>
where
    F: FnMut(Vec<Diff>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut findings = Findings::default();
    let leaves = if source.integer_key() && source.in_database() && target.in_database() {
        differing_ranges(source, target, sample_percent, &mut findings).await?
    } else {
        differing_digests(source, target, sample_percent, &mut findings).await?
    };
    settle(
        source,
        target,
        leaves,
        names,
        max_listed,
        &mut findings,
        fix,
    )
    .await?;
    Ok(findings)
}

/// What to fetch from both sides: rows of key-digest buckets, or of key
/// ranges.
enum Fetch {
    Buckets(Vec<String>),
    Ranges(Vec<KeyRange>),
}

/// Digest mode: buckets of the key digest, split by further digits.
async fn differing_digests(
    source: &Side,
    target: &Side,
    sample_percent: Option<f64>,
    findings: &mut Findings,
) -> Result<Vec<Fetch>> {
    let below = sample_percent.and_then(sample_prefix);
    let below = below.as_deref();
    let ((s, s_refused), (t, t_refused)) = tokio::try_join!(
        source.buckets(FIRST_GROUP, None, below),
        target.buckets(FIRST_GROUP, None, below)
    )?;
    findings.unreadable_source_rows = s_refused;
    findings.unreadable_target_rows = t_refused;
    findings.source_rows = s.values().map(|b| b.rows).sum();
    findings.target_rows = t.values().map(|b| b.rows).sum();
    findings.buckets = s.keys().chain(t.keys()).collect::<BTreeSet<_>>().len();
    let mut differing = differing_buckets(&s, &t);
    findings.differing_buckets = differing.len();
    let mut group = FIRST_GROUP;
    let mut leaves: Vec<(String, u64)> = Vec::new();
    while !differing.is_empty() {
        let (leaf, split): (Vec<_>, Vec<_>) = differing
            .into_iter()
            .partition(|(_, rows)| *rows <= LEAF_ROWS || group >= DIGEST_DIGITS);
        leaves.extend(leaf);
        if split.is_empty() {
            break;
        }
        let next = (group + STEP).min(DIGEST_DIGITS);
        debug!(
            buckets = split.len(),
            digits = next,
            "splitting differing buckets"
        );
        differing = Vec::new();
        for part in split.chunks(PREFIXES_PER_QUERY) {
            let mut within: Vec<String> = part.iter().map(|(p, _)| p.clone()).collect();
            within.sort();
            let ((s, _), (t, _)) = tokio::try_join!(
                source.buckets(next, Some(&within), None),
                target.buckets(next, Some(&within), None)
            )?;
            differing.extend(differing_buckets(&s, &t));
        }
        group = next;
    }
    Ok(fetch_batches(leaves)
        .into_iter()
        .map(Fetch::Buckets)
        .collect())
}

/// Range mode (a key of one integer column, hashed in both databases):
/// checksums per key range, differing ranges split into narrower ones.
async fn differing_ranges(
    source: &Side,
    target: &Side,
    sample_percent: Option<f64>,
    findings: &mut Findings,
) -> Result<Vec<Fetch>> {
    let (s_span, t_span) = tokio::try_join!(source.key_span(), target.key_span())?;
    let (first, last) = match (s_span, t_span) {
        (None, None) => return Ok(Vec::new()),
        (Some(a), None) | (None, Some(a)) => a,
        (Some(a), Some(b)) => (a.0.min(b.0), a.1.max(b.1)),
    };
    let mut ranges = split_range(first, last, FIRST_RANGES);
    if let Some(percent) = sample_percent {
        ranges = sample_ranges(ranges, percent);
    }
    findings.buckets = ranges.len();
    let mut differing = Vec::new();
    let mut level = ranges;
    let mut leaves: Vec<(KeyRange, u64)> = Vec::new();
    let mut first_level = true;
    while !level.is_empty() {
        for part in level.chunks(PREFIXES_PER_QUERY) {
            let (s, t) = tokio::try_join!(source.range_sums(part), target.range_sums(part))?;
            if first_level {
                findings.source_rows += s.values().map(|b| b.rows).sum::<u64>();
                findings.target_rows += t.values().map(|b| b.rows).sum::<u64>();
            }
            let by_first: HashMap<String, KeyRange> =
                part.iter().map(|r| (r.0.to_string(), *r)).collect();
            for (id, rows) in differing_buckets(&s, &t) {
                if let Some(range) = by_first.get(&id) {
                    differing.push((*range, rows));
                }
            }
        }
        if first_level {
            findings.differing_buckets = differing.len();
            first_level = false;
        }
        let (leaf, split): (Vec<_>, Vec<_>) = std::mem::take(&mut differing)
            .into_iter()
            .partition(|((a, b), rows)| *rows <= LEAF_ROWS || a == b);
        leaves.extend(leaf);
        debug!(ranges = split.len(), "splitting differing key ranges");
        level = split
            .into_iter()
            .flat_map(|((a, b), _)| split_range(a, b, SPLIT_RANGES))
            .collect();
    }
    leaves.sort();
    let mut out = Vec::new();
    let (mut batch, mut rows) = (Vec::new(), 0);
    for (range, n) in leaves {
        if !batch.is_empty() && (rows + n > FETCH_ROWS || batch.len() >= RANGES_PER_FETCH) {
            out.push(Fetch::Ranges(std::mem::take(&mut batch)));
            rows = 0;
        }
        batch.push(range);
        rows += n;
    }
    if !batch.is_empty() {
        out.push(Fetch::Ranges(batch));
    }
    Ok(out)
}

/// Fetches the rows of the differing leaves from both sides, pairs them
/// and counts, lists and hands on the differences.
async fn settle<F, Fut>(
    source: &Side,
    target: &Side,
    fetches: Vec<Fetch>,
    names: &[String],
    max_listed: usize,
    findings: &mut Findings,
    mut fix: F,
) -> Result<()>
where
    F: FnMut(Vec<Diff>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for fetch in fetches {
        let (s, t) = match &fetch {
            Fetch::Buckets(prefixes) => {
                async { tokio::try_join!(source.rows(prefixes, None), target.rows(prefixes, None)) }
                    .instrument(info_span!("fetch", buckets = prefixes.len()))
                    .await?
            }
            Fetch::Ranges(ranges) => {
                async { tokio::try_join!(source.range_rows(ranges), target.range_rows(ranges)) }
                    .instrument(info_span!("fetch", ranges = ranges.len()))
                    .await?
            }
        };
        let diffs = match_rows(s, t, source.key_columns);
        for diff in &diffs {
            match diff {
                Diff::Missing(_) => findings.missing_in_target += 1,
                Diff::Extra(_) => findings.extra_in_target += 1,
                Diff::Differs { .. } => findings.differing_rows += 1,
            }
            if findings.differences.len() < max_listed {
                findings
                    .differences
                    .push(describe(diff, names, source.key_columns));
            }
        }
        if !diffs.is_empty() {
            fix(diffs).await?;
        }
    }
    Ok(())
}

/// Splits `first..=last` into at most `parts` ranges of about equal width.
fn split_range(first: i64, last: i64, parts: usize) -> Vec<KeyRange> {
    let width = (i128::from(last) - i128::from(first) + 1).max(1);
    let parts = i128::try_from(parts.max(1)).unwrap_or(1).min(width);
    (0..parts)
        .map(|i| {
            let lo = i128::from(first) + width * i / parts;
            let hi = i128::from(first) + width * (i + 1) / parts - 1;
            (
                i64::try_from(lo).unwrap_or(i64::MAX),
                i64::try_from(hi).unwrap_or(i64::MAX),
            )
        })
        .collect()
}

/// About `percent` of the ranges, spread over the key space.
fn sample_ranges(ranges: Vec<KeyRange>, percent: f64) -> Vec<KeyRange> {
    let n = ranges.len();
    let keep = ((n as f64) * percent / 100.0).ceil().clamp(1.0, n as f64) as usize;
    ranges
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i * keep / n != (i + 1) * keep / n)
        .map(|(_, r)| r)
        .collect()
}

/// The first three key-digest digits below which a `percent` sample lies.
pub(super) fn sample_prefix(percent: f64) -> Option<String> {
    let buckets = (4096.0 * percent / 100.0).ceil().clamp(1.0, 4096.0) as u32;
    (buckets < 4096).then(|| format!("{buckets:03x}"))
}

/// Buckets whose checksums differ, with the larger of their row counts.
fn differing_buckets(
    s: &BTreeMap<String, BucketSum>,
    t: &BTreeMap<String, BucketSum>,
) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (prefix, a) in s {
        match t.get(prefix) {
            Some(b) if a == b => {}
            Some(b) => out.push((prefix.clone(), a.rows.max(b.rows))),
            None => out.push((prefix.clone(), a.rows)),
        }
    }
    for (prefix, b) in t {
        if !s.contains_key(prefix) {
            out.push((prefix.clone(), b.rows));
        }
    }
    out
}

/// Groups leaf prefixes into fetches of about `FETCH_ROWS` rows, each of
/// one prefix length (a query filters on one length).
fn fetch_batches(leaves: Vec<(String, u64)>) -> Vec<Vec<String>> {
    let mut by_len: BTreeMap<usize, Vec<(String, u64)>> = BTreeMap::new();
    for leaf in leaves {
        by_len.entry(leaf.0.len()).or_default().push(leaf);
    }
    let mut out = Vec::new();
    for (_, mut leaves) in by_len {
        leaves.sort();
        let mut batch = Vec::new();
        let mut rows = 0;
        for (prefix, n) in leaves {
            if !batch.is_empty() && (rows + n > FETCH_ROWS || batch.len() >= PREFIXES_PER_QUERY) {
                out.push(std::mem::take(&mut batch));
                rows = 0;
            }
            batch.push(prefix);
            rows += n;
        }
        if !batch.is_empty() {
            out.push(batch);
        }
    }
    out
}

/// Pairs the rows of both sides by key: unmatched source rows are missing
/// in the target, unmatched target rows extra, pairs that differ differ.
/// Rows with equal keys pair off one by one (a table without primary key
/// is keyed by all its columns, and may hold duplicates).
pub(super) fn match_rows(
    source: Vec<CanonRow>,
    target: Vec<CanonRow>,
    key_columns: usize,
) -> Vec<Diff> {
    let mut by_key: HashMap<String, Vec<CanonRow>> = HashMap::new();
    for row in target {
        by_key
            .entry(key_of(&row, key_columns))
            .or_default()
            .push(row);
    }
    let mut diffs = Vec::new();
    for row in source {
        match by_key
            .get_mut(&key_of(&row, key_columns))
            .and_then(Vec::pop)
        {
            None => diffs.push(Diff::Missing(row)),
            Some(other) if other == row => {}
            Some(other) => diffs.push(Diff::Differs {
                source: row,
                target: other,
            }),
        }
    }
    let mut extra: Vec<CanonRow> = by_key.into_values().flatten().collect();
    extra.sort();
    diffs.extend(extra.into_iter().map(Diff::Extra));
    diffs
}

fn describe(diff: &Diff, names: &[String], key_columns: usize) -> RowDifference {
    let key = |row: &CanonRow| {
        names
            .iter()
            .zip(row)
            .take(key_columns)
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    match diff {
        Diff::Missing(row) => RowDifference {
            kind: DifferenceKind::MissingInTarget,
            key: key(row),
            columns: Vec::new(),
        },
        Diff::Extra(row) => RowDifference {
            kind: DifferenceKind::ExtraInTarget,
            key: key(row),
            columns: Vec::new(),
        },
        Diff::Differs { source, target } => RowDifference {
            kind: DifferenceKind::Differs,
            key: key(source),
            columns: names
                .iter()
                .zip(source.iter().zip(target))
                .filter(|(_, (a, b))| a != b)
                .map(|(n, (a, b))| ColumnDifference {
                    column: n.clone(),
                    source: a.clone(),
                    target: b.clone(),
                })
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[Option<&str>]) -> CanonRow {
        cells.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn rows_pair_by_key() {
        let source = vec![
            row(&[Some("1"), Some("a")]),
            row(&[Some("2"), Some("b")]),
            row(&[Some("3"), None]),
        ];
        let target = vec![
            row(&[Some("2"), Some("b")]),
            row(&[Some("3"), Some("")]),
            row(&[Some("4"), Some("d")]),
        ];
        let diffs = match_rows(source, target, 1);
        let names = ["id".to_string(), "v".to_string()];
        let described: Vec<RowDifference> = diffs.iter().map(|d| describe(d, &names, 1)).collect();
        assert_eq!(described.len(), 3);
        assert_eq!(described[0].kind, DifferenceKind::MissingInTarget);
        assert_eq!(described[0].key["id"].as_deref(), Some("1"));
        assert_eq!(described[1].kind, DifferenceKind::Differs);
        assert_eq!(described[1].columns.len(), 1);
        assert_eq!(described[1].columns[0].source, None);
        assert_eq!(described[1].columns[0].target.as_deref(), Some(""));
        assert_eq!(described[2].kind, DifferenceKind::ExtraInTarget);
    }

    #[test]
    fn duplicates_of_keyless_rows_pair_one_by_one() {
        let a = row(&[Some("x")]);
        let diffs = match_rows(vec![a.clone(), a.clone()], vec![a], 1);
        assert_eq!(diffs.len(), 1);
        assert!(matches!(diffs[0], Diff::Missing(_)));
    }

    #[test]
    fn buckets_differ_by_count_or_sum_or_presence() {
        let b = |rows, sum| BucketSum { rows, sum };
        let s: BTreeMap<String, BucketSum> = [
            ("aaa".into(), b(2, 10)),
            ("bbb".into(), b(1, 5)),
            ("ccc".into(), b(1, 1)),
        ]
        .into();
        let t: BTreeMap<String, BucketSum> = [
            ("aaa".into(), b(2, 10)),
            ("bbb".into(), b(1, 6)),
            ("ddd".into(), b(3, 1)),
        ]
        .into();
        let mut d = differing_buckets(&s, &t);
        d.sort();
        assert_eq!(
            d,
            vec![("bbb".into(), 1), ("ccc".into(), 1), ("ddd".into(), 3)]
        );
    }

    #[test]
    fn key_ranges_split_evenly_and_cover_all() {
        assert_eq!(split_range(1, 10, 2), vec![(1, 5), (6, 10)]);
        assert_eq!(split_range(1, 1, 4), vec![(1, 1)]);
        assert_eq!(split_range(-5, 4, 3), vec![(-5, -3), (-2, 0), (1, 4)]);
        let wide = split_range(i64::MIN, i64::MAX, 2);
        assert_eq!(wide, vec![(i64::MIN, -1), (0, i64::MAX)]);
    }

    #[test]
    fn samples_take_a_share_of_the_key_space() {
        assert_eq!(sample_prefix(100.0), None);
        assert_eq!(sample_prefix(50.0).as_deref(), Some("800"));
        assert_eq!(sample_prefix(0.001).as_deref(), Some("001"));
        assert_eq!(sample_prefix(10.0).as_deref(), Some("19a"));
        let ranges = split_range(1, 64, 64);
        assert_eq!(sample_ranges(ranges.clone(), 50.0).len(), 32);
        assert_eq!(sample_ranges(ranges.clone(), 100.0), ranges);
        assert_eq!(sample_ranges(ranges, 0.1).len(), 1);
    }

    #[test]
    fn fetches_group_by_prefix_length_and_size() {
        let leaves = vec![
            ("abc".to_string(), 30_000),
            ("abd".to_string(), 30_000),
            ("abe".to_string(), 10),
            ("abcdef".to_string(), 5),
        ];
        let batches = fetch_batches(leaves);
        assert_eq!(
            batches,
            vec![
                vec!["abc".to_string()],
                vec!["abd".into(), "abe".into()],
                vec!["abcdef".into()]
            ]
        );
    }
}
