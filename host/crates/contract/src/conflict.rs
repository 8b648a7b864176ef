//! Conflicts of a two-way sync, judged the same way by every SQL target.
//! A leg's target reads, inside its apply transaction, what each key of a
//! batch holds now and compares it with what the remote side had before
//! its changes (the before-image) and after them: a row that is neither
//! was written on this side meanwhile — a conflict. The leg's
//! [`ConflictRules`] decide who wins; the two legs decide alike, so the
//! sides converge. Connectors only run the comparison (in SQL, with the
//! values encoded as their writes encode them) and write the log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use dmp_model::json::{row_to_json, value_from_json};
use dmp_model::{Change, ChangeBatch, ChangeOrigin, Row, TableChanges, TableSchema, Value};
use tracing::warn;

use crate::net_effect::key_text;

/// A side of a two-way sync: A is the pipeline's `[source]`, B its
/// `[target]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// Who wins a conflict (`[sync] conflict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Side A's change wins, on both legs.
    AWins,
    BWins,
    /// The row whose `column` holds the greater value wins (an
    /// `updated_at`, a `version`); equal values: side A. A delete counts
    /// with the value of the row it deleted, kept in a tombstone on the
    /// deleting side (see [`tombstone_table`]), and wins a tie with an
    /// update.
    LastWriterWins {
        column: String,
    },
    /// `last_writer_wins` without a column: the write of the later commit
    /// wins; equal times: side A. A delete counts with its own commit
    /// time (kept in a tombstone on the deleting side), a row DMP applied
    /// with the remote write's (see [`versions_table`]). Needs each
    /// side's commit time per row: PostgreSQL's `track_commit_timestamp`.
    LastCommitWins,
    /// Neither: the change is parked, listed, and resolved by hand.
    Manual,
    /// A WASM plugin of the `resolver` world decides.
    Resolver(ResolverSlot),
}

/// Decides a conflict the fixed policies cannot: a resolver plugin, which
/// the engine loads (the contract knows no plugin runtime). It must be
/// deterministic: both legs ask it about the same conflict.
pub trait Arbiter: Send + Sync {
    /// The decision on `case`; an error (the plugin refused, trapped, ran
    /// out of time) parks the change.
    fn decide(&self, case: &Case<'_>) -> std::result::Result<Decision, String>;
}

/// A conflict as an [`Arbiter`] sees it.
#[derive(Debug)]
pub struct Case<'a> {
    pub table: &'a TableSchema,
    /// The primary key's values, in key order.
    pub key: Vec<Value>,
    pub kind: ConflictKind,
    /// The side whose change it is.
    pub remote: Side,
    /// This side's row.
    pub local: Option<Row>,
    pub remote_old: Option<&'a Row>,
    pub remote_new: Option<&'a Row>,
    /// The remote change's commit time, µs since the epoch.
    pub commit_time: Option<i64>,
}

/// The resolver plugin a pipeline names (`[sync] resolver`), and the
/// [`Arbiter`] the engine loads from it, shared by both legs.
#[derive(Clone)]
pub struct ResolverSlot {
    pub plugin: PathBuf,
    /// The settings the plugin opens with (`[sync.resolver_config]`).
    pub config: Vec<(String, String)>,
    arbiter: Arc<OnceLock<Arc<dyn Arbiter>>>,
}

impl ResolverSlot {
    pub fn new(plugin: PathBuf, config: Vec<(String, String)>) -> Self {
        ResolverSlot {
            plugin,
            config,
            arbiter: Arc::new(OnceLock::new()),
        }
    }

    /// Hands the loaded plugin to every leg holding this slot; the first
    /// one set stays.
    pub fn set(&self, arbiter: Arc<dyn Arbiter>) {
        let _ = self.arbiter.set(arbiter);
    }

    pub fn arbiter(&self) -> Option<&Arc<dyn Arbiter>> {
        self.arbiter.get()
    }
}

impl std::fmt::Debug for ResolverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResolverSlot({})", self.plugin.display())
    }
}

impl PartialEq for ResolverSlot {
    fn eq(&self, other: &Self) -> bool {
        self.plugin == other.plugin && self.config == other.config
    }
}

impl Eq for ResolverSlot {}

impl Policy {
    /// The column a conflict's rows are compared by, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            Policy::LastWriterWins { column } => Some(column),
            _ => None,
        }
    }
}

/// How one leg settles conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRules {
    /// The side whose changes the leg applies (A on the A→B leg).
    pub remote: Side,
    pub policy: Policy,
    /// Per table (by its source name), overriding `policy`.
    pub tables: BTreeMap<String, Policy>,
    /// How long a tombstone of a deleted row is kept after the remote
    /// changes of its time have been applied (`[sync] tombstone_retention`).
    pub tombstone_retention: std::time::Duration,
}

impl ConflictRules {
    pub fn policy(&self, table: &str) -> &Policy {
        self.tables.get(table).unwrap_or(&self.policy)
    }

    /// The column `table`'s deletes are remembered by, when its policy
    /// orders writes by one: a target keeps a tombstone of each deleted
    /// row's key and value of it (see [`tombstone_table`]).
    pub fn tombstone_column(&self, table: &str) -> Option<&str> {
        self.policy(table).column()
    }

    /// Whether any table keeps tombstones (its policy orders writes).
    pub fn keeps_tombstones(&self) -> bool {
        std::iter::once(&self.policy)
            .chain(self.tables.values())
            .any(|p| matches!(p, Policy::LastWriterWins { .. } | Policy::LastCommitWins))
    }

    /// Whether `table`'s policy orders writes by their commit times: a
    /// target keeps the times of what it deleted and of what DMP wrote.
    pub fn by_commit_time(&self, table: &str) -> bool {
        *self.policy(table) == Policy::LastCommitWins
    }

    /// The position in `table` of the column its policy orders writes by,
    /// if any; an error when the table has no such column.
    pub fn order_column(&self, table: &TableSchema) -> crate::Result<Option<usize>> {
        let Some(name) = self.policy(&table.name).column() else {
            return Ok(None);
        };
        table.column_index(name).map(Some).ok_or_else(|| {
            crate::Error::Config(format!(
                "table {}: no column {name} to order conflicting writes by ([sync] conflict_column)",
                table.name
            ))
        })
    }
}

/// What happened to a key on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// The remote side inserted a key this side has (with another row).
    InsertExists,
    /// The remote side updated a row this side deleted.
    UpdateMissing,
    /// The remote side updated a row this side changed meanwhile.
    UpdateDiffers,
    /// Both sides deleted the row.
    DeleteMissing,
    /// The remote side deleted a row this side changed meanwhile.
    DeleteDiffers,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::InsertExists => "insert_exists",
            ConflictKind::UpdateMissing => "update_missing",
            ConflictKind::UpdateDiffers => "update_differs",
            ConflictKind::DeleteMissing => "delete_missing",
            ConflictKind::DeleteDiffers => "delete_differs",
        }
    }

    /// The kind the other leg meets: a row updated on one side and deleted
    /// on the other is an update of a missing row where the delete
    /// happened, a delete of a changed row where the update did.
    pub fn mirrored(self) -> Self {
        match self {
            ConflictKind::UpdateMissing => ConflictKind::DeleteDiffers,
            ConflictKind::DeleteDiffers => ConflictKind::UpdateMissing,
            same => same,
        }
    }
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the leg does with a conflicting change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The remote change is applied over this side's row.
    ApplyRemote,
    /// This side's row stays; the remote change is dropped.
    KeepLocal,
    /// Not applied; kept in the conflict log until resolved.
    Park,
    /// A resolver's row is written instead (same key).
    Merged(Row),
    /// The row is deleted on this side.
    Delete,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::ApplyRemote => "apply_remote",
            Decision::KeepLocal => "keep_local",
            Decision::Park => "parked",
            Decision::Merged(_) => "merged",
            Decision::Delete => "deleted",
        }
    }
}

/// What the remote side held at a key before a batch's changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expected<'a> {
    /// No row: the first change at the key inserted it.
    Absent,
    Row(&'a Row),
    /// A row whose old image the change did not carry (an update without
    /// its before-image): only its absence can be told.
    Present,
}

/// One key of a table's changes in a batch: what the remote side held
/// there before and after them.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCheck<'a> {
    /// A row carrying the key's values.
    pub key_row: &'a Row,
    /// The key as [`key_text`] writes it.
    pub key: String,
    pub expected: Expected<'a>,
    /// The row after the changes; `None`: deleted.
    pub last: Option<&'a Row>,
    /// The first change's old image and the last change's new one, for the
    /// log.
    pub remote_old: Option<&'a Row>,
    /// When the changes end in a delete: the row it deleted, whose value
    /// of a `last_writer_wins` column is the delete's.
    pub deleted: Option<&'a Row>,
    /// The remote commit time of the key's last change (µs since the
    /// epoch), when the stream knew it.
    pub commit_time: Option<i64>,
}

/// The keys of one table's `changes` (source order; `origins` the same
/// length, or empty), each with what it held before and after.
///
/// A key's expectation is the old image of the first change of its last
/// unbroken run: where a change's old image is not the row the one before
/// it left, something the stream does not carry came in between — this
/// side's own rows, which DMP wrote there (dropped as its own) — and the
/// changes from there on start from them.
pub fn key_checks<'a>(
    key: &[usize],
    changes: &'a [Change],
    origins: &[ChangeOrigin],
) -> Vec<KeyCheck<'a>> {
    let mut checks: Vec<KeyCheck<'a>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut touch = |row: &'a Row, expected: Expected<'a>, last: Option<&'a Row>, time| {
        let remote_old = match expected {
            Expected::Row(old) => Some(old),
            _ => None,
        };
        // A change that leaves no row deleted the one it expected.
        let deleted = if last.is_none() { remote_old } else { None };
        let text = key_text(key, row);
        match index.get(&text) {
            Some(&slot) => {
                let check = &mut checks[slot];
                if !follows(expected, check.last) {
                    check.expected = expected;
                    check.remote_old = remote_old;
                }
                check.last = last;
                check.deleted = deleted;
                check.commit_time = time;
            }
            None => {
                index.insert(text.clone(), checks.len());
                checks.push(KeyCheck {
                    key_row: row,
                    key: text,
                    expected,
                    last,
                    remote_old,
                    deleted,
                    commit_time: time,
                });
            }
        }
    };
    for (i, change) in changes.iter().enumerate() {
        let time = origins.get(i).and_then(|o| o.commit_time);
        match change {
            Change::Insert(row) => touch(row, Expected::Absent, Some(row), time),
            Change::Update {
                before: Some(before),
                after,
            } if key_text(key, before) != key_text(key, after) => {
                touch(before, Expected::Row(before), None, time);
                touch(after, Expected::Absent, Some(after), time);
            }
            Change::Update { before, after } => {
                let expected = before.as_ref().map_or(Expected::Present, Expected::Row);
                touch(after, expected, Some(after), time);
            }
            Change::Delete(row) => touch(row, Expected::Row(row), None, time),
        }
    }
    checks
}

/// Whether a change expecting `expected` starts from the row the changes
/// before it left (`None`: none).
fn follows(expected: Expected<'_>, left: Option<&Row>) -> bool {
    match (expected, left) {
        (Expected::Absent, None) | (Expected::Present, Some(_)) => true,
        (Expected::Row(old), Some(left)) => old == left,
        _ => false,
    }
}

/// What this side holds at a checked key, as the target's comparison
/// found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub present: bool,
    /// The row equals the remote side's before-image.
    pub same_as_expected: bool,
    /// The row equals the remote side's row after the changes, or there
    /// is none and the changes deleted it: nothing to write.
    pub same_as_last: bool,
    /// The policy's column of the remote side's write against this side's:
    /// 1 the remote one is later, -1 earlier, 0 equal; `None` when either
    /// is null or unknown. A delete's value is that of the row it deleted
    /// (this side's from its tombstone), and it is later than an update
    /// of the same value (see [`write_order_sql`]).
    pub order: Option<i8>,
    /// This side's row as JSON text, for the log.
    pub local: Option<String>,
}

/// The conflict at a key, if any.
pub fn judge(check: &KeyCheck<'_>, found: &Found) -> Option<ConflictKind> {
    if found.same_as_last {
        // Both gone after the remote side deleted a row this side deleted
        // too: the sides agree, but both wrote.
        let both_deleted = !found.present && !matches!(check.expected, Expected::Absent);
        return both_deleted.then_some(ConflictKind::DeleteMissing);
    }
    match (check.expected, found.present) {
        (Expected::Absent, false) | (Expected::Present, true) => None,
        (Expected::Absent, true) => Some(ConflictKind::InsertExists),
        (_, false) => Some(ConflictKind::UpdateMissing),
        (Expected::Row(_), true) if found.same_as_expected => None,
        (Expected::Row(_), true) if check.last.is_none() => Some(ConflictKind::DeleteDiffers),
        (Expected::Row(_), true) => Some(ConflictKind::UpdateDiffers),
    }
}

/// The leg's decision on a conflict of `kind` under `policy`.
pub fn decide(remote: Side, policy: &Policy, kind: ConflictKind, found: &Found) -> Decision {
    let wins = |side: Side| {
        if side == remote {
            Decision::ApplyRemote
        } else {
            Decision::KeepLocal
        }
    };
    if kind == ConflictKind::DeleteMissing {
        // Both sides hold nothing: there is nothing to choose.
        return Decision::ApplyRemote;
    }
    match policy {
        Policy::AWins => wins(Side::A),
        Policy::BWins => wins(Side::B),
        // A resolver is asked with the rows (see `settle`).
        Policy::Manual | Policy::Resolver(_) => Decision::Park,
        Policy::LastWriterWins { .. } | Policy::LastCommitWins => match (found.order, kind) {
            (Some(1), _) => Decision::ApplyRemote,
            (Some(-1), _) => Decision::KeepLocal,
            // A delete of unknown value (its tombstone expired, or the row
            // was deleted before the sync kept them) beats a concurrent
            // update: "update wins" diverges when the row the update lost
            // to is deleted later.
            (None, ConflictKind::UpdateMissing) => Decision::KeepLocal,
            (None, ConflictKind::DeleteDiffers) => Decision::ApplyRemote,
            _ => wins(Side::A),
        },
    }
}

/// One conflict as the log records it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictEntry {
    pub table: String,
    /// The key's columns and values, as a JSON object.
    pub key: serde_json::Value,
    pub kind: ConflictKind,
    pub decision: Decision,
    /// The side whose change it was.
    pub remote: Side,
    pub remote_old: Option<serde_json::Value>,
    pub remote_new: Option<serde_json::Value>,
    /// This side's row, as JSON text.
    pub local: Option<String>,
    /// The remote change's commit time, µs since the epoch.
    pub commit_time: Option<i64>,
}

/// A table's conflicts in a batch: the keys whose remote change is not
/// written (kept local, parked, or replaced by a resolver's decision), by
/// [`key_text`], the resolvers' rows to write and keys to delete instead,
/// and the log entries.
#[derive(Debug, Default)]
pub struct Settled {
    pub skip: HashSet<String>,
    pub writes: Vec<Row>,
    pub deletes: Vec<Row>,
    pub entries: Vec<ConflictEntry>,
}

/// Judges and decides each key of `checks` (`found` the same length).
pub fn settle(
    rules: &ConflictRules,
    table: &TableSchema,
    key: &[usize],
    checks: &[KeyCheck<'_>],
    found: &[Found],
) -> Settled {
    let policy = rules.policy(&table.name);
    let mut settled = Settled::default();
    for (check, found) in checks.iter().zip(found) {
        let Some(kind) = judge(check, found) else {
            continue;
        };
        let decision = match policy {
            Policy::Resolver(slot) if kind != ConflictKind::DeleteMissing => {
                arbitrate(slot, rules.remote, table, key, check, found, kind)
            }
            _ => decide(rules.remote, policy, kind, found),
        };
        if decision != Decision::ApplyRemote {
            settled.skip.insert(check.key.clone());
        }
        match &decision {
            Decision::Merged(row) => settled.writes.push(row.clone()),
            Decision::Delete => settled.deletes.push(check.key_row.clone()),
            _ => {}
        }
        settled.entries.push(ConflictEntry {
            table: table.name.clone(),
            key: key_json(table, key, check.key_row),
            kind,
            decision,
            remote: rules.remote,
            remote_old: check.remote_old.map(|r| row_to_json(table, r)),
            remote_new: check.last.map(|r| row_to_json(table, r)),
            local: found.local.clone(),
            commit_time: check.commit_time,
        });
    }
    settled
}

/// Asks the resolver plugin; a plugin that fails, or a merged row that
/// does not keep the key, parks the change (logged): nothing is lost.
fn arbitrate(
    slot: &ResolverSlot,
    remote: Side,
    table: &TableSchema,
    key: &[usize],
    check: &KeyCheck<'_>,
    found: &Found,
    kind: ConflictKind,
) -> Decision {
    let place = || format!("resolver {} on table {}", slot.plugin.display(), table.name);
    let Some(arbiter) = slot.arbiter() else {
        warn!(resolver = %place(), "the resolver is not loaded: the change is parked");
        return Decision::Park;
    };
    let local = match found
        .local
        .as_deref()
        .map(|json| row_from_json(table, json))
    {
        None => None,
        Some(Ok(row)) => Some(row),
        Some(Err(e)) => {
            warn!(resolver = %place(), error = %e, "this side's row cannot be read: the change is parked");
            return Decision::Park;
        }
    };
    let case = Case {
        table,
        key: key
            .iter()
            .map(|&k| check.key_row.0.get(k).cloned().unwrap_or(Value::Null))
            .collect(),
        kind,
        remote,
        local,
        remote_old: check.remote_old,
        remote_new: check.last,
        commit_time: check.commit_time,
    };
    match arbiter.decide(&case) {
        Ok(Decision::Merged(row)) if key_text(key, &row) != check.key => {
            warn!(resolver = %place(), kind = %kind, "the merged row changes the key: the change is parked");
            Decision::Park
        }
        Ok(decision) => decision,
        Err(e) => {
            warn!(resolver = %place(), kind = %kind, error = %e, "the resolver failed: the change is parked");
            Decision::Park
        }
    }
}

/// The longest table name both PostgreSQL (63 bytes) and MySQL (64
/// characters) take.
const NAME_BYTES: usize = 63;

/// The table that keeps the tombstones of `table`'s deleted rows on a
/// side of a two-way sync under `last_writer_wins`: its key columns, the
/// policy's column (both of the table's types) and `deleted_at`. Its
/// name starts with `_dmp_` (change streams skip it); a long one is cut
/// and ends with a hash of the whole, so that two tables never share one.
pub fn tombstone_table(table: &str) -> String {
    shadow_table("tomb", table)
}

/// Under `last_writer_wins` by commit time: the table that keeps, per key
/// of `table` that DMP wrote, the remote write's commit time (µs) and the
/// transaction that wrote it here — a row still of that transaction
/// carries that time, any other the commit time of its own.
pub fn versions_table(table: &str) -> String {
    shadow_table("ver", table)
}

/// `_dmp_KIND_TABLE`, cut to fit (see [`tombstone_table`]).
fn shadow_table(kind: &str, table: &str) -> String {
    let name = format!("_dmp_{kind}_{table}");
    if name.len() <= NAME_BYTES {
        return name;
    }
    let mut cut = NAME_BYTES - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    // FNV-1a: stable across builds, unlike the std hasher.
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_{:08x}", &name[..cut], hash as u32)
}

/// The order of two writes of a `last_writer_wins` column as SQL, for
/// [`Found::order`]: `remote` and `local` are the two values (SQL
/// expressions of the column's type), `remote_deletes` / `local_deleted`
/// whether each is a delete's (the deleted row's value). Equal values: a
/// delete is later than an update (it removed that very row), two alike
/// are equal. Both targets' SQL has `CASE` and the comparisons.
pub fn write_order_sql(
    remote: &str,
    local: &str,
    remote_deletes: bool,
    local_deleted: bool,
) -> String {
    let tie = i8::from(remote_deletes) - i8::from(local_deleted);
    format!(
        "CASE WHEN {remote} > {local} THEN 1 WHEN {remote} < {local} THEN -1 \
         WHEN {remote} = {local} THEN {tie} END"
    )
}

/// When a target last forgot expired tombstones: after a batch, once a
/// minute at most, or once per retention when that is shorter.
#[derive(Debug, Default)]
pub struct PurgeClock(std::sync::Mutex<Option<std::time::Instant>>);

impl PurgeClock {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    /// Whether a purge of tombstones kept for `retention` is due now (and,
    /// if so, counted as done).
    pub fn due(&self, retention: std::time::Duration) -> bool {
        let Ok(mut last) = self.0.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        match *last {
            Some(at) if now.duration_since(at) < Self::EVERY.min(retention) => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// The primary key of `table`, which its tombstones are kept by; an
/// error naming the table when it has none.
pub fn tombstone_key(table: &TableSchema) -> std::result::Result<&[String], String> {
    if table.primary_key.is_empty() {
        return Err(format!(
            "table {}: last_writer_wins needs a primary key to keep the tombstones of deleted rows",
            table.name
        ));
    }
    Ok(&table.primary_key)
}

/// The tables of `batch` that keep tombstones under `rules`, with the
/// batch's latest remote commit time (µs since the epoch): what a purge
/// after it may forget, or `None` when the stream gave no time.
pub fn tombstone_tables(rules: &ConflictRules, batch: &ChangeBatch) -> Option<(Vec<String>, i64)> {
    let mut tables: Vec<String> = Vec::new();
    let mut latest = None;
    for segment in &batch.segments {
        if let TableChanges::Rows { table, origins, .. } = segment {
            latest = origins
                .iter()
                .filter_map(|o| o.commit_time)
                .chain(latest)
                .max();
            let keeps =
                rules.tombstone_column(&table.name).is_some() || rules.by_commit_time(&table.name);
            if keeps && !tables.contains(&table.name) {
                tables.push(table.name.clone());
            }
        }
    }
    Some((tables, latest?)).filter(|(tables, _)| !tables.is_empty())
}

/// A row read back as a JSON object (`{"column": value}`), in `table`'s
/// column order; a column it lacks is NULL.
pub fn row_from_json(table: &TableSchema, json: &str) -> std::result::Result<Row, String> {
    let object: HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
    table
        .columns
        .iter()
        .map(|c| match object.get(&c.name) {
            None => Ok(Value::Null),
            Some(raw) => {
                value_from_json(raw, &c.data_type).map_err(|e| format!("column {}: {e}", c.name))
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Row)
}

/// `{"id": 7}`: the key columns of `row`.
fn key_json(table: &TableSchema, key: &[usize], row: &Row) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for &k in key {
        if let (Some(column), Some(value)) = (table.columns.get(k), row.0.get(k)) {
            object.insert(column.name.clone(), dmp_model::json::value_to_json(value));
        }
    }
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests;
