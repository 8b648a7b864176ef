//! NATS JetStream as a target: each row change becomes one message on its
//! table's subject, published with an id derived from where it was read,
//! so that the stream never holds a change twice. A checkpoint is written
//! only once JetStream acknowledged every message before it; the change
//! stream is confirmed to the source only then (the engine confirms what
//! `apply` returned). A restarted target reads what it published after
//! its last checkpoint and goes on after it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use async_nats::jetstream::stream;

use crate::bus::Bus;
use crate::checkpoint_store::{CheckpointStore, Entry, Epoch};
use crate::config::NatsConfig;
use crate::error::{Error, Result, ResultExt};
use crate::headers;
use crate::message_id::truncate_message_id;
use crate::messages::{Event, Outbox, Publisher, position_fields, resume_after};
use crate::publish::{Outgoing, Published, publish_all};
use crate::schema_message;
use crate::tail::{ChainStart, original_id};
use dmp_contract::{
    Endpoint, IfExists, RejectSink, SchemaItem, Start, Target, TargetOptions, crash_point,
    dead_letter,
};
use dmp_model::{
    Batch, Carry, ChangeBatch, Checkpoint, Column, Position, STREAM_CHECKPOINT, TableChanges,
    TableSchema,
};

/// The rows a batch holds at most (see `Target::batch_rows`).
const MAX_BATCH_ROWS: usize = 5_000;
/// The change stream's checkpoint is written at most this often: between
/// two, the chain of messages itself says where the stream stands (a
/// restart follows it from the last checkpoint), and a write per batch
/// would cost a round trip to the server on every batch.
const STREAM_RECORD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct NatsTarget {
    config: NatsConfig,
    options: TargetOptions,
    connected: OnceCell<Connected>,
}

/// What the target holds once it has reached the server.
struct Connected {
    bus: Bus,
    stream: stream::Stream,
    checkpoints: CheckpointStore,
    max_payload: usize,
    /// Ids of the messages published after the checkpoints by a run that
    /// stopped: not published again.
    published: Mutex<Arc<HashSet<String>>>,
    /// Chunks that have a checkpoint entry (written before a chunk's first
    /// message, so that a restart knows where to look for it).
    started: Mutex<HashSet<(String, u32)>>,
    /// Schema versions known to be on the stream: (`SCHEMA.TABLE`, version).
    announced: Mutex<HashSet<(String, String)>>,
    /// The current full run's epoch, in its snapshot rows' ids.
    epoch: Mutex<Epoch>,
    /// Where the change stream's chain of messages stands.
    chain: Mutex<Chain>,
    /// When the change stream's checkpoint was last written.
    stream_recorded: Mutex<Option<std::time::Instant>>,
}

/// The change stream's messages form a chain, each naming the one before
/// (see `tail.rs`).
#[derive(Default)]
struct Chain {
    /// The id of its last message in place.
    last_id: Option<String>,
    /// Messages stored past a break, by the id of their change, with
    /// their sequences (an earlier copy stored past a second break too):
    /// published again, after the missing ones, under new ids (their own
    /// are in the dedupe window); the out-of-order ones are removed once
    /// the copy is acknowledged, so that the stream holds each change
    /// once, in order.
    republish: HashMap<String, Vec<u64>>,
}

impl Chain {
    /// Links `messages` after the chain's end, renaming those to publish
    /// again; returns the id of the last, and the sequences of the
    /// originals the renamed ones replace.
    fn link(&mut self, messages: &mut [Outgoing]) -> (Option<String>, Vec<u64>) {
        let mut previous = self.last_id.clone();
        let mut replaced = Vec::new();
        for message in messages {
            if let Some(sequences) = self.republish.remove(&message.id) {
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
                message.id = format!("{}~{now:x}", message.id);
                replaced.extend(sequences);
            }
            message
                .headers
                .insert(headers::PREVIOUS, previous.as_deref().unwrap_or(""));
            previous = Some(message.id.clone());
        }
        (previous, replaced)
    }
}

impl NatsTarget {
    pub fn open(endpoint: &Endpoint, options: TargetOptions) -> Result<Self> {
        Ok(NatsTarget {
            config: NatsConfig::parse(endpoint)?,
            options,
            connected: OnceCell::new(),
        })
    }

    async fn connected(&self) -> Result<&Connected> {
        self.connected
            .get_or_try_init(|| async {
                let bus = Bus::connect(&self.config).await?;
                let stream = bus.stream().await?;
                let checkpoints = CheckpointStore::open(
                    &bus,
                    &self.options.pipeline,
                    &self.config.stream,
                    self.config.replicas,
                    &self.config.place,
                )
                .await?;
                let max_payload = bus.client.server_info().max_payload;
                let epoch = checkpoints.epoch().await?;
                Ok(Connected {
                    bus,
                    stream,
                    checkpoints,
                    max_payload,
                    published: Mutex::default(),
                    started: Mutex::default(),
                    announced: Mutex::default(),
                    epoch: Mutex::new(epoch),
                    chain: Mutex::default(),
                    stream_recorded: Mutex::default(),
                })
            })
            .await
    }

    fn publisher<'a>(
        &'a self,
        connected: &Connected,
        published: &'a HashSet<String>,
    ) -> Publisher<'a> {
        Publisher {
            config: &self.config,
            pipeline: &self.options.pipeline,
            database: self.options.source_database.as_deref().unwrap_or(""),
            epoch: lock(&connected.epoch).epoch,
            published,
            max_payload: connected.max_payload,
            now_ms: chrono::Utc::now().timestamp_millis(),
            connect_schemas: Mutex::default(),
            source_texts: Mutex::default(),
        }
    }

    /// The schema version of `table`'s messages; its schema message goes
    /// first into `messages` unless the stream has it already.
    async fn announce(
        &self,
        connected: &Connected,
        table: &TableSchema,
        messages: &mut Vec<Outgoing>,
    ) -> Result<String> {
        let version = schema_message::version(table);
        let known = (table.qualified_name(), version.clone());
        if lock(&connected.announced).contains(&known) {
            return Ok(version);
        }
        let latest = schema_message::latest(
            &connected.bus,
            &connected.stream,
            &self.config,
            table.namespace.as_deref(),
            &table.name,
        )
        .await?;
        if latest.is_none_or(|m| m.version != version) {
            messages.push(schema_message::outgoing(
                &self.config,
                &self.options.pipeline,
                table,
                &version,
            )?);
        }
        lock(&connected.announced).insert(known);
        Ok(version)
    }

    /// Publishes a batch of changes (their refused rows kept already),
    /// then records `checkpoint`: in this order, so that a crash in
    /// between publishes again rather than loses anything. The change
    /// stream's messages are chained (see `Chain`).
    async fn commit(
        &self,
        connected: &Connected,
        mut messages: Vec<Outgoing>,
        checkpoint: Checkpoint,
    ) -> Result<u64> {
        let chained = checkpoint.table == STREAM_CHECKPOINT;
        let mut last_id = None;
        let mut replaced = Vec::new();
        if chained {
            let mut chain = lock(&connected.chain);
            let (last, originals) = chain.link(&mut messages);
            last_id = last.or(chain.last_id.clone());
            replaced = originals;
        }
        let started = std::time::Instant::now();
        let count = messages.len();
        let published = match publish_all(&connected.bus, messages, &self.config.place).await {
            Ok(published) => published,
            Err(failed) => {
                if chained {
                    // The chain ends before the first message lost; what
                    // was stored past it goes out again after it.
                    let mut chain = lock(&connected.chain);
                    if let Some(before) = failed.before {
                        chain.last_id = Some(before);
                    }
                    for (id, sequence) in failed.stored_after {
                        chain
                            .republish
                            .entry(original_id(&id).to_string())
                            .or_default()
                            .push(sequence);
                    }
                }
                return Err(failed.error);
            }
        };
        if chained {
            lock(&connected.chain).last_id = last_id.clone();
        }
        connected.bus.remove(&connected.stream, &replaced).await;
        if published.stored > 0 {
            // Tests: the messages are out, their checkpoint is not.
            crash_point("apply");
        }
        let acknowledged = started.elapsed();
        let recorded = !chained || due(&connected.stream_recorded);
        if recorded {
            self.record(connected, checkpoint, published, last_id)
                .await?;
        }
        tracing::debug!(
            messages = count,
            stored = published.stored,
            acknowledged_ms = acknowledged.as_secs_f64() * 1000.0,
            total_ms = started.elapsed().as_secs_f64() * 1000.0,
            recorded,
            "changes published"
        );
        Ok(published.stored)
    }

    /// Records `checkpoint`, whose messages are all acknowledged.
    async fn record(
        &self,
        connected: &Connected,
        checkpoint: Checkpoint,
        published: Published,
        last_id: Option<String>,
    ) -> Result<()> {
        let sequence = match published.last_sequence {
            Some(sequence) => sequence,
            None => connected.bus.last_sequence(&connected.stream).await?,
        };
        connected
            .checkpoints
            .put(&Entry {
                checkpoint,
                sequence,
                last_id,
            })
            .await
    }

    /// Before a chunk's first message: an entry saying where in the stream
    /// its messages begin.
    async fn start_chunk(&self, connected: &Connected, checkpoint: &Checkpoint) -> Result<()> {
        let chunk = (checkpoint.table.clone(), checkpoint.chunk);
        if lock(&connected.started).contains(&chunk) {
            return Ok(());
        }
        let sequence = connected.bus.last_sequence(&connected.stream).await?;
        let start = Checkpoint {
            position: Position::Start,
            rows: 0,
            done: false,
            ..checkpoint.clone()
        };
        connected
            .checkpoints
            .put(&Entry {
                checkpoint: start,
                sequence,
                last_id: None,
            })
            .await?;
        lock(&connected.started).insert(chunk);
        Ok(())
    }

    /// Empties or refuses a table's subject as `if_exists` says, for a
    /// fresh run. An emptied subject that held messages gets a truncate
    /// event: consumers that took rows from it before drop them, and the
    /// new copy's rows replace them.
    async fn make_fresh(
        &self,
        connected: &Connected,
        table: &TableSchema,
    ) -> Result<Option<Outgoing>> {
        let subject = self.config.subject(table.namespace.as_deref(), &table.name);
        let held = connected
            .bus
            .last_message(&connected.stream, &subject)
            .await?
            .is_some();
        let mut truncate = None;
        match self.options.if_exists {
            IfExists::Append => {}
            IfExists::Fail if held => {
                return Err(Error::Config(format!(
                    "{}: subject {subject} (table {}) holds messages already, and if_exists = \"fail\"",
                    self.config.place,
                    table.qualified_name()
                )));
            }
            IfExists::Fail => {}
            IfExists::Replace | IfExists::Truncate => {
                connected
                    .stream
                    .purge()
                    .filter(&subject)
                    .await
                    .context(|| format!("{}: emptying subject {subject}", self.config.place))?;
                if held {
                    truncate = self.truncate_event(connected, table)?;
                }
            }
        }
        connected.checkpoints.forget(Some(&table.name)).await?;
        Ok(truncate)
    }

    /// The truncate event of a fresh run's `table`.
    fn truncate_event(
        &self,
        connected: &Connected,
        table: &TableSchema,
    ) -> Result<Option<Outgoing>> {
        let none = HashSet::new();
        let publisher = self.publisher(connected, &none);
        let version = schema_message::version(table);
        let mut refused = Vec::new();
        let event = Event {
            table,
            version: &version,
            change: None,
            snapshot: false,
            id: truncate_message_id(
                &format!("{}@{}", self.options.pipeline, publisher.epoch),
                &table.qualified_name(),
            ),
            resume: None,
            source_position: Vec::new(),
            commit_ms: None,
            at: &Position::Start,
        };
        Ok(publisher.message(event, &mut refused))
    }
}

/// Whether the change stream's checkpoint is to be written now (the
/// first of a run always is); if so, notes the time.
fn due(recorded: &Mutex<Option<std::time::Instant>>) -> bool {
    let mut recorded = lock(recorded);
    if recorded.is_some_and(|at| at.elapsed() < STREAM_RECORD_EVERY) {
        return false;
    }
    *recorded = Some(std::time::Instant::now());
    true
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these sets half-changed.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl Target for NatsTarget {
    fn column_type(&self, column: &Column) -> String {
        column.data_type.to_string()
    }

    fn assess(&self, table: Option<&TableSchema>, item: SchemaItem<'_>) -> Carry<String> {
        match (table, item) {
            (_, SchemaItem::Column(column)) => Carry::Carried(self.column_type(column)),
            // The table's whole model travels in its schema message.
            (Some(_), _) => Carry::Carried("in the table's schema message".to_string()),
            (None, other) => {
                Carry::NotCarried(format!("a message stream keeps no {}", other.kind()))
            }
        }
    }

    async fn describe(&self, table: &str) -> Result<Option<TableSchema>> {
        let connected = self.connected().await?;
        // A name as `SCHEMA.TABLE`, or a table of no schema.
        let mut places = vec![(None, table)];
        if let Some((namespace, name)) = table.split_once('.') {
            places.insert(0, (Some(namespace), name));
        }
        for (namespace, name) in places {
            let latest = schema_message::latest(
                &connected.bus,
                &connected.stream,
                &self.config,
                namespace,
                name,
            )
            .await?;
            if let Some(message) = latest {
                return Ok(Some(message.table));
            }
        }
        Ok(None)
    }

    async fn prepare(&self, tables: &[Arc<TableSchema>], start: Start) -> Result<()> {
        let connected = self.connected().await?;
        if start == Start::Fresh {
            let epoch = Epoch {
                epoch: connected.bus.last_sequence(&connected.stream).await?,
            };
            connected.checkpoints.set_epoch(epoch).await?;
            *lock(&connected.epoch) = epoch;
        }
        let mut truncates = Vec::new();
        if start == Start::Fresh && !self.options.data_only {
            for table in tables {
                truncates.extend(self.make_fresh(connected, table).await?);
            }
            connected.checkpoints.forget(None).await?;
            lock(&connected.started).clear();
        } else if start == Start::Fresh {
            for table in tables {
                connected.checkpoints.forget(Some(&table.name)).await?;
            }
            connected.checkpoints.forget(None).await?;
            lock(&connected.started).clear();
        }
        let mut schemas = Vec::new();
        for table in tables {
            self.announce(connected, table, &mut schemas).await?;
        }
        schemas.extend(truncates);
        publish_all(&connected.bus, schemas, &self.config.place)
            .await
            .map_err(|failed| failed.error)?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let connected = self.connected().await?;
        let entries = connected.checkpoints.entries().await?;
        // What may have been published after a checkpoint: from the oldest
        // point a chunk or the stream was still going on at.
        let from = entries
            .iter()
            .filter(|e| !e.checkpoint.done || e.checkpoint.table == STREAM_CHECKPOINT)
            .map(|e| e.sequence)
            .min();
        let stream_entry = entries
            .iter()
            .find(|e| e.checkpoint.table == STREAM_CHECKPOINT);
        let chain = ChainStart {
            after: stream_entry.map_or(0, |e| e.sequence),
            last_id: stream_entry.and_then(|e| e.last_id.clone()),
        };
        let tail = match from {
            Some(after) => {
                crate::tail::read(
                    &connected.bus,
                    &connected.stream,
                    &self.config,
                    &self.options.pipeline,
                    after,
                    chain,
                )
                .await?
            }
            None => crate::tail::Tail::default(),
        };
        tracing::debug!(
            entries = ?entries
                .iter()
                .map(|e| format!("{}.{}@{}{}", e.checkpoint.table, e.checkpoint.chunk, e.sequence, if e.checkpoint.done { " done" } else { "" }))
                .collect::<Vec<_>>(),
            from,
            published = tail.ids.len(),
            unchained = tail.unchained.len(),
            "checkpoints read"
        );
        // Copied already by a run that stopped before removing them.
        connected
            .bus
            .remove(&connected.stream, &tail.superseded)
            .await;
        *lock(&connected.published) = Arc::new(tail.ids);
        *lock(&connected.chain) = Chain {
            last_id: tail.chain_end,
            republish: tail.unchained,
        };
        {
            let mut started = lock(&connected.started);
            started.clear();
            started.extend(
                entries
                    .iter()
                    .map(|e| (e.checkpoint.table.clone(), e.checkpoint.chunk)),
            );
        }
        let mut checkpoints = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut checkpoint = entry.checkpoint;
            // A mark of where a chunk began, not a place reached.
            if checkpoint.position == Position::Start && !checkpoint.done {
                if checkpoint.table == STREAM_CHECKPOINT
                    && let Some((_, position)) = &tail.position
                {
                    checkpoint.position = position.clone();
                    checkpoint.done = true;
                    checkpoints.push(checkpoint);
                }
                continue;
            }
            // The stream's changes published after its checkpoint: it
            // resumes after the last of them.
            if checkpoint.table == STREAM_CHECKPOINT
                && let Some((sequence, position)) = &tail.position
                && *sequence > entry.sequence
            {
                checkpoint.position = position.clone();
            }
            checkpoints.push(checkpoint);
        }
        if !checkpoints.iter().any(|c| c.table == STREAM_CHECKPOINT)
            && let Some((_, position)) = tail.position
        {
            checkpoints.push(Checkpoint {
                table: STREAM_CHECKPOINT.to_string(),
                chunk: 0,
                position,
                rows: 0,
                done: true,
                fence: None,
            });
        }
        Ok(checkpoints)
    }

    async fn write(
        &self,
        batch: Batch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let connected = self.connected().await?;
        self.start_chunk(connected, &checkpoint).await?;
        let Batch {
            table,
            changes,
            rejects: mut refused,
            position,
            ..
        } = batch;
        let mut schemas = Vec::new();
        let version = self.announce(connected, &table, &mut schemas).await?;
        let published = lock(&connected.published).clone();
        let publisher = self.publisher(connected, &published);
        let key = table.primary_key_indices();
        let read = (changes.len() + refused.len()) as u64;
        let before = checkpoint.rows.saturating_sub(read);
        let mut rows = 0u64;
        // Encoded as the window takes them: a batch's messages are never
        // all in memory at once.
        // (`from_fn`: a closure over `(index, &change)` is not seen as
        // `Send` across the awaits below.)
        let mut index = 0;
        let encoded = std::iter::from_fn(|| {
            while let Some(change) = changes.get(index) {
                let row = change.row();
                let id = publisher.snapshot_id(&table, &key, checkpoint.chunk, before, index, row);
                index += 1;
                let event = Event {
                    table: &table,
                    version: &version,
                    change: Some(change),
                    snapshot: true,
                    id,
                    resume: None,
                    source_position: Vec::new(),
                    commit_ms: None,
                    at: &position,
                };
                if let Some(message) = publisher.message(event, &mut refused) {
                    rows += 1;
                    return Some(message);
                }
            }
            None
        });
        let published = publish_all(
            &connected.bus,
            schemas.into_iter().chain(encoded),
            &self.config.place,
        )
        .await
        .map_err(|failed| failed.error)?;
        tracing::debug!(
            table = %table.name,
            chunk = checkpoint.chunk,
            rows,
            stored = published.stored,
            last_sequence = ?published.last_sequence,
            position = ?checkpoint.position,
            "snapshot batch published"
        );
        if published.stored > 0 {
            // Tests: the messages are out, their checkpoint is not.
            crash_point("write");
        }
        dead_letter(&rejects, &table, refused).await?;
        self.record(connected, checkpoint, published, None).await?;
        Ok(rows)
    }

    async fn apply(
        &self,
        batch: ChangeBatch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let connected = self.connected().await?;
        self.start_chunk(connected, &checkpoint).await?;
        let published = lock(&connected.published).clone();
        let publisher = self.publisher(connected, &published);
        let mut outbox = Outbox::default();
        let mut changes = 0u64;
        let mut refused_of: Vec<(Arc<TableSchema>, usize)> = Vec::new();
        for segment in &batch.segments {
            let table = segment.table();
            let version = self
                .announce(connected, table, &mut outbox.messages)
                .await?;
            let refused_before = outbox.refused.len();
            match segment {
                TableChanges::Rows {
                    table,
                    changes: rows,
                    origins,
                } => {
                    let traced = origins.len() == rows.len();
                    for (i, change) in rows.iter().enumerate() {
                        let origin = origins.get(i).filter(|_| traced);
                        let last_part = origins.get(i + 1).is_none_or(|next| {
                            origin.is_none_or(|o| next.log != o.log || next.index != o.index)
                        });
                        let event = Event {
                            table,
                            version: &version,
                            change: Some(change),
                            snapshot: false,
                            id: publisher.change_id(table, origin, Some(change)),
                            resume: origin.map(|o| resume_after(o, last_part)),
                            source_position: origin
                                .map(|o| position_fields(&o.log))
                                .unwrap_or_default(),
                            commit_ms: origin.and_then(|o| o.commit_time).map(|us| us / 1000),
                            at: &checkpoint.position,
                        };
                        publisher.push(&mut outbox, event);
                        changes += 1;
                    }
                }
                TableChanges::Truncate { table, origin } => {
                    let event = Event {
                        table,
                        version: &version,
                        change: None,
                        snapshot: false,
                        id: publisher.change_id(table, origin.as_ref(), None),
                        resume: origin.as_ref().map(|o| resume_after(o, true)),
                        source_position: origin
                            .as_ref()
                            .map(|o| position_fields(&o.log))
                            .unwrap_or_default(),
                        commit_ms: origin
                            .as_ref()
                            .and_then(|o| o.commit_time)
                            .map(|us| us / 1000),
                        at: &checkpoint.position,
                    };
                    publisher.push(&mut outbox, event);
                    changes += 1;
                }
                // The new shape's schema message went out above.
                TableChanges::Evolve { .. } => {}
            }
            if outbox.refused.len() > refused_before {
                refused_of.push((table.clone(), outbox.refused.len() - refused_before));
            }
        }
        // Rows too large for a message, by table, before the checkpoint.
        let mut refused = std::mem::take(&mut outbox.refused).into_iter();
        for (table, count) in refused_of {
            dead_letter(&rejects, &table, refused.by_ref().take(count).collect()).await?;
        }
        self.commit(connected, outbox.messages, checkpoint).await?;
        Ok(changes)
    }

    async fn finish_table(&self, _table: &TableSchema) -> Result<()> {
        Ok(())
    }

    /// Each row is a message of its own: batches larger than this only
    /// hold memory (rows and their encoded messages) without saving work.
    fn batch_rows(&self, asked: usize) -> usize {
        asked.min(MAX_BATCH_ROWS)
    }

    /// Changes are appended to the stream as events, not made to rows.
    fn applies_in_place(&self) -> bool {
        false
    }
}
