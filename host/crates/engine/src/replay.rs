//! `dmp dlq replay`: sends a pipeline's dead-letter rows through the
//! current transforms and the target again (after the plugin or the target
//! schema was fixed) and removes from the store exactly the rows that
//! arrived. Rows the reader or a transform refused go through the whole
//! transform chain; rows the target refused were transformed already and
//! go to the target as they are. Writing uses the target's apply path
//! (idempotent upserts and deletes by key with a checkpoint in the same
//! transaction), and the store is updated only after that commit: a replay
//! stopped in between is run again and writes the same rows once more.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::{Instrument, info, info_span, warn};

use super::letter::{SoftDelete, letter_change};
use super::plan::discover;
use super::setup::Transforms;
use super::shutdown::Shutdown;
use crate::error::{Error, Result};
use dmp_config::Pipeline;
use dmp_contract::{RejectSink, Source, Start, Target};
use dmp_model::json::{row_to_json, write_value};
use dmp_model::{
    Batch, Change, ChangeBatch, Checkpoint, Position, REPLAY_CHUNK, Reject, RejectStage,
    TableChanges, TableSchema,
};
use dmp_state::{Settled, StateStore, StoredLetter, without_row_values};
use dmp_transform::TransformChain;

/// Which dead-letter rows to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Only this table's rows.
    pub table: Option<String>,
    /// Only the rows with these numbers (as `dmp dlq show` gives them).
    pub ids: Vec<i64>,
}

/// What a replay did to one table's rows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReplay {
    pub table: String,
    /// Rows that reached the target (or that the current transforms drop)
    /// and left the store.
    pub replayed: u64,
    /// Rows that failed again; they stay in the store with the new error.
    pub still_failing: u64,
    /// The distinct new errors, the most frequent first (at most five).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub pipeline: String,
    pub tables: Vec<TableReplay>,
    pub replayed: u64,
    pub still_failing: u64,
}

/// Replays the selected dead-letter rows of `pipeline`, table by table, in
/// the order they were stored. Stops between groups when `stop` fires.
pub async fn replay(
    pipeline: &Pipeline,
    state: &StateStore,
    source: Arc<dyn Source>,
    target: Arc<dyn Target>,
    options: &ReplayOptions,
    stop: &Shutdown,
) -> Result<ReplaySummary> {
    let span = info_span!("replay", pipeline = %pipeline.name);
    async move {
        let tables =
            state.tables_to_replay(&pipeline.name, options.table.as_deref(), &options.ids)?;
        let mut summary = ReplaySummary {
            pipeline: pipeline.name.clone(),
            tables: Vec::new(),
            replayed: 0,
            still_failing: 0,
        };
        if tables.is_empty() {
            return Ok(summary);
        }
        // The tables as a run sees them now: discovered from the source,
        // through the pipeline's current transforms.
        let schemas: Vec<Arc<TableSchema>> = discover(pipeline, &*source)
            .await?
            .into_iter()
            .filter(|s| tables.contains(&s.name))
            .map(Arc::new)
            .collect();
        let transforms = Transforms::open(pipeline, &schemas).await?;
        let outputs = transforms.outputs(&schemas);
        target.prepare(&outputs, Start::Keep).await?;

        for name in tables {
            let mut outcomes = Outcomes::new(&name);
            let pages = Pages {
                state,
                pipeline: &pipeline.name,
                table: &name,
                ids: &options.ids,
                after: 0,
                size: pipeline.batch_rows,
            };
            match schemas.iter().zip(&outputs).find(|(s, _)| s.name == name) {
                None => {
                    let error = format!(
                        "table {name} is no longer read by the pipeline (not in the source or \
                         not selected)"
                    );
                    let mut pages = pages;
                    while let Some(page) = pages.next()? {
                        for letter in &page {
                            outcomes.failed(letter, error.clone(), letter.plugins.clone());
                        }
                        state.settle_dead_letters(&pipeline.name, &outcomes.take())?;
                    }
                }
                Some((schema, output)) => {
                    let soft_delete = pipeline
                        .table_options(&name)
                        .and_then(|o| o.soft_delete.as_deref());
                    let table = TableContext {
                        pipeline,
                        state,
                        target: &*target,
                        schema: schema.clone(),
                        output: output.clone(),
                        chain: transforms.chain(&name),
                        source_soft_delete: SoftDelete::find(soft_delete, schema),
                        output_soft_delete: SoftDelete::find(soft_delete, output),
                        stop,
                    };
                    replay_table(&table, pages, &mut outcomes)
                        .instrument(info_span!("table", table = %dmp_model::printable(&name)))
                        .await?;
                }
            }
            let table = outcomes.summary();
            info!(
                table = table.table,
                replayed = table.replayed,
                still_failing = table.still_failing,
                "dead-letter rows replayed"
            );
            summary.replayed += table.replayed;
            summary.still_failing += table.still_failing;
            summary.tables.push(table);
        }
        Ok(summary)
    }
    .instrument(span)
    .await
}

/// What replaying one table needs.
struct TableContext<'a> {
    pipeline: &'a Pipeline,
    state: &'a StateStore,
    target: &'a dyn Target,
    /// The source's schema, and the transforms' output (what the target has).
    schema: Arc<TableSchema>,
    output: Arc<TableSchema>,
    chain: TransformChain,
    /// The table's soft-delete column in each of the two schemas.
    source_soft_delete: SoftDelete<'a>,
    output_soft_delete: SoftDelete<'a>,
    stop: &'a Shutdown,
}

/// A table's dead-letter rows to replay, a page at a time, oldest first.
struct Pages<'a> {
    state: &'a StateStore,
    pipeline: &'a str,
    table: &'a str,
    ids: &'a [i64],
    after: i64,
    size: usize,
}

impl Pages<'_> {
    fn next(&mut self) -> Result<Option<Vec<StoredLetter>>> {
        let page = self.state.letters_to_replay(
            self.pipeline,
            self.table,
            self.ids,
            self.after,
            self.size,
        )?;
        Ok(page.last().map(|last| last.id).map(|last| {
            self.after = last;
            page
        }))
    }
}

async fn replay_table(
    table: &TableContext<'_>,
    mut pages: Pages<'_>,
    outcomes: &mut Outcomes,
) -> Result<()> {
    let mut group = Group::new(&table.output);
    while let Some(page) = pages.next()? {
        for letter in &page {
            if table.stop.is_triggered() {
                return Err(Error::Interrupted);
            }
            match changes_now(table, letter).await? {
                Err((error, plugins)) => outcomes.failed(letter, error, plugins),
                Ok((changes, plugins)) => {
                    // One key per group: a later row of the same key must
                    // land after an earlier one, not be merged with it.
                    if group.holds_any_key_of(&changes) || group.len() >= table.pipeline.batch_rows
                    {
                        let full = std::mem::replace(&mut group, Group::new(&table.output));
                        write_group(table, full, outcomes).await?;
                    }
                    group.push(letter, changes, plugins);
                }
            }
        }
        // Rows that failed before reaching the target are recorded page by
        // page (or with the group written meanwhile).
        let failed = outcomes.take();
        if !failed.is_empty() {
            table
                .state
                .settle_dead_letters(&table.pipeline.name, &failed)?;
        }
    }
    write_group(table, group, outcomes).await
}

/// The changes a letter makes now, with the plugin versions that made
/// them; or why it fails again, with the versions that refused it.
async fn changes_now(
    table: &TableContext<'_>,
    letter: &StoredLetter,
) -> Result<std::result::Result<(Vec<Change>, String), (String, String)>> {
    Ok(match letter.stage {
        // Already transformed when the target refused it.
        RejectStage::Target => letter_change(letter, &table.output, table.output_soft_delete)
            .map(|change| (vec![change], letter.plugins.clone()))
            .map_err(|error| (error, letter.plugins.clone())),
        RejectStage::Source | RejectStage::Transform => {
            let running = || table.chain.plugins().join(",");
            match letter_change(letter, &table.schema, table.source_soft_delete) {
                Ok(change) => transform(table, letter, change)
                    .await?
                    .map(|changes| (changes, running()))
                    .map_err(|error| (error, running())),
                Err(error) => Err((error, running())),
            }
        }
    })
}

/// Runs a source-shaped row through the table's current transforms; the
/// rows they make, or why they refused it.
async fn transform(
    table: &TableContext<'_>,
    letter: &StoredLetter,
    change: Change,
) -> Result<std::result::Result<Vec<Change>, String>> {
    let batch = Batch {
        table: table.schema.clone(),
        chunk: REPLAY_CHUNK,
        changes: vec![change],
        rejects: Vec::new(),
        wire: None,
        position: letter.position.clone(),
        last: false,
    };
    Ok(match table.chain.apply(batch).await? {
        Ok((batch, _)) => match batch.rejects.first() {
            Some(reject) => Err(reject.error.clone()),
            None => Ok(batch.changes),
        },
        Err((_, reason)) => Err(reason),
    })
}

/// Letters whose rows are written together, in one target transaction.
struct Group {
    output: Arc<TableSchema>,
    key: Vec<usize>,
    keys: HashSet<String>,
    /// Each letter with the changes it produced (none: the transforms
    /// drop the row now) and the plugin versions that produced them.
    letters: Vec<(i64, String, Vec<Change>)>,
}

impl Group {
    fn new(output: &Arc<TableSchema>) -> Self {
        Group {
            output: output.clone(),
            key: output
                .primary_key
                .iter()
                .filter_map(|k| output.column_index(k))
                .collect(),
            keys: HashSet::new(),
            letters: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.letters.len()
    }

    fn key_of(&self, change: &Change) -> Option<String> {
        if self.key.is_empty() {
            return None;
        }
        let mut text = String::new();
        for &i in &self.key {
            if let Some(value) = change.row().0.get(i) {
                write_value(&mut text, value);
            }
            text.push('\u{1f}');
        }
        Some(text)
    }

    fn holds_any_key_of(&self, changes: &[Change]) -> bool {
        changes
            .iter()
            .filter_map(|c| self.key_of(c))
            .any(|k| self.keys.contains(&k))
    }

    fn push(&mut self, letter: &StoredLetter, changes: Vec<Change>, plugins: String) {
        for change in &changes {
            if let Some(key) = self.key_of(change) {
                self.keys.insert(key);
            }
        }
        self.letters.push((letter.id, plugins, changes));
    }
}

/// Collects what the target refuses during a replay.
#[derive(Default)]
struct Refusals(Mutex<Vec<Reject>>);

impl RejectSink for Refusals {
    fn reject(&self, _table: &TableSchema, rejects: Vec<Reject>) -> Result<()> {
        self.0
            .lock()
            .map_err(|_| Error::Data("replay bookkeeping poisoned by a panic".into()))?
            .extend(rejects);
        Ok(())
    }
}

/// Writes a group's rows in one apply (retried on transient failures: it is
/// idempotent), then settles its letters in the store: a letter is replayed
/// when none of its rows was refused.
async fn write_group(
    table: &TableContext<'_>,
    group: Group,
    outcomes: &mut Outcomes,
) -> Result<()> {
    if group.letters.is_empty() {
        let pending = outcomes.take();
        if !pending.is_empty() {
            table
                .state
                .settle_dead_letters(&table.pipeline.name, &pending)?;
        }
        return Ok(());
    }
    let changes: Vec<Change> = group
        .letters
        .iter()
        .flat_map(|(_, _, changes)| changes.iter().cloned())
        .collect();
    let refused = if changes.is_empty() {
        Vec::new()
    } else {
        let what = format!("replaying dead-letter rows of table {}", table.output.name);
        let rows = changes.len() as u64;
        let changes = &changes;
        let output = &group.output;
        super::retry::retrying(
            &table.pipeline.retry,
            table.stop,
            &what,
            (),
            |()| async move {
                let sink = Arc::new(Refusals::default());
                let batch = ChangeBatch {
                    segments: vec![TableChanges::Rows {
                        table: output.clone(),
                        changes: changes.clone(),
                        origins: Vec::new(),
                    }],
                };
                let checkpoint = Checkpoint {
                    table: table.output.name.clone(),
                    chunk: REPLAY_CHUNK,
                    position: Position::Start,
                    rows,
                    done: true,
                    fence: None,
                };
                table.target.apply(batch, checkpoint, sink.clone()).await?;
                let refused = sink
                    .0
                    .lock()
                    .map_err(|_| Error::Data("replay bookkeeping poisoned by a panic".into()))?
                    .clone();
                Ok(refused)
            },
            || async { Ok(()) },
        )
        .await?
    };
    // Each refusal names its row as JSON: it is matched to one row of the
    // group with that content (identical rows share their fate anyway).
    let mut unmatched: HashMap<String, Vec<Reject>> = HashMap::new();
    for reject in refused {
        unmatched
            .entry(reject.row.to_string())
            .or_default()
            .push(reject);
    }
    let mut verdicts = Vec::with_capacity(group.letters.len());
    for (id, plugins, changes) in &group.letters {
        let mut error = None;
        if !unmatched.is_empty() {
            for change in changes {
                let json = row_to_json(&group.output, change.row()).to_string();
                if let Some(reject) = unmatched.get_mut(&json).and_then(Vec::pop) {
                    error.get_or_insert(reject.error);
                }
            }
        }
        verdicts.push((*id, plugins.clone(), error));
    }
    // A refusal that matches no row cannot be placed: every letter of the
    // group stays (a later replay writes the arrived ones again, harmlessly).
    let stray = unmatched.into_values().flatten().next();
    if let Some(stray) = &stray {
        tracing::debug!(table = %table.output.name, error = %stray.error, "unplaced refusal");
        warn!(
            table = %table.output.name,
            error = %without_row_values(&stray.error),
            "a refused row matches no replayed row; the group's rows stay in the store"
        );
    }
    let mut settled: Vec<Settled> = verdicts
        .into_iter()
        .map(|(id, plugins, error)| {
            match error.or_else(|| stray.as_ref().map(|r| r.error.clone())) {
                None => Settled::Replayed(id),
                Some(error) => Settled::Failed { id, error, plugins },
            }
        })
        .collect();
    outcomes.record(&settled);
    settled.extend(outcomes.take());
    table
        .state
        .settle_dead_letters(&table.pipeline.name, &settled)
        .inspect_err(|e| {
            // The rows are on the target already; a later replay rewrites
            // them (idempotent) and then settles them.
            warn!(error = %e, "the replayed rows arrived but the store could not record it");
        })
}

/// A table's outcomes: counts and errors for the summary, and the failures
/// found before any write, settled with the next group.
struct Outcomes {
    table: String,
    replayed: u64,
    still_failing: u64,
    errors: HashMap<String, u64>,
    pending: Vec<Settled>,
}

impl Outcomes {
    fn new(table: &str) -> Self {
        Outcomes {
            table: table.to_string(),
            replayed: 0,
            still_failing: 0,
            errors: HashMap::new(),
            pending: Vec::new(),
        }
    }

    fn failed(&mut self, letter: &StoredLetter, error: String, plugins: String) {
        let settled = Settled::Failed {
            id: letter.id,
            error,
            plugins,
        };
        self.record(std::slice::from_ref(&settled));
        self.pending.push(settled);
    }

    fn record(&mut self, settled: &[Settled]) {
        for s in settled {
            match s {
                Settled::Replayed(_) => self.replayed += 1,
                Settled::Failed { error, .. } => {
                    self.still_failing += 1;
                    *self.errors.entry(error.clone()).or_default() += 1;
                }
            }
        }
    }

    fn take(&mut self) -> Vec<Settled> {
        std::mem::take(&mut self.pending)
    }

    fn summary(&self) -> TableReplay {
        let mut errors: Vec<(&String, &u64)> = self.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        TableReplay {
            table: self.table.clone(),
            replayed: self.replayed,
            still_failing: self.still_failing,
            errors: errors.into_iter().take(5).map(|(e, _)| e.clone()).collect(),
        }
    }
}
