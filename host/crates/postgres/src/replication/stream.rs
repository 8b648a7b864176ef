//! The reader task of a change stream: decodes the walsender's pgoutput
//! messages into `StreamEvent`s for the engine, and acknowledges to the
//! server only what the engine reports as durably applied.
//!
//! - A transaction is handed on only once it carries a change of a
//!   streamed table (`Begin` is held back until then), so the empty
//!   transactions older servers send cost nothing.
//! - `Begin.log` is the end of the previous commit seen (or the start
//!   position): streaming from there yields this transaction again.
//! - Status updates go out at least every second and whenever the server
//!   asks; write, flush and apply are all the last position the engine
//!   confirmed, never more, so the slot keeps every change not yet applied.
//! - When no transaction is open and nothing was handed on for the
//!   heartbeat interval, the server's current position is asked for and
//!   handed on as a `Heartbeat`: confirming it lets an idle database free
//!   its WAL.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::super::copy_binary::Undecodable;
use super::columns::TablePlan;
use super::decode::{Decoded, decode};
use super::error::protocol;
use super::lookup::Lookup;
use super::lsn::Lsn;
use super::pgoutput::{
    self, Datum, Identity, Message, OldTuple, PG_EPOCH_UNIX_MICROS, Relation, Tuple, WalMessage,
};
use super::protocol::Connection;
use super::reshape;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{SchemaChange, StreamEvent, TableEvent};
use dmp_model::json::row_to_json;
use dmp_model::{Change, Position, Reject, RejectStage, Row, TableSelection, Value};

/// Status updates go out at least this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// A streamed table as the current Relation message of its oid describes it.
struct Mapping {
    table: usize,
    /// Relation column → schema column.
    columns: Vec<Option<usize>>,
    /// Why its updates and deletes cannot be applied, if so.
    unusable_identity: Option<String>,
}

/// The source transaction being received.
struct Txn {
    /// `lsn=…` the transaction streams again from.
    log: String,
    /// Whether `Begin` was handed on.
    begun: bool,
    /// Changes handed on.
    seen: u64,
    /// Tagged with the sync id: DMP applied it; its changes are dropped.
    ours: bool,
}

/// What woke the reader.
enum Wake {
    Closed,
    Tick,
    Data(std::result::Result<Option<bytes::Bytes>, sqlx::Error>),
}

/// A row decoded from a tuple: values in schema order, the columns that
/// could not be decoded, and those left out as unchanged.
struct Decoding {
    values: Vec<Value>,
    bad: Vec<(usize, Undecodable)>,
    unchanged: Vec<usize>,
}

pub(super) struct Reader {
    pub(super) conn: Connection,
    pub(super) tx: mpsc::Sender<Result<StreamEvent>>,
    pub(super) confirmed: watch::Receiver<Option<Position>>,
    pub(super) tables: Vec<TablePlan>,
    pub(super) lookup: Lookup,
    pub(super) place: String,
    pub(super) heartbeat: Duration,
    pub(super) start: Lsn,
    /// The source's schema, and which of its tables the pipeline streams:
    /// a table created there while streaming joins when selected.
    pub(super) namespace: String,
    pub(super) selection: TableSelection,
    /// Values come in binary (every column had a binary decoder).
    pub(super) binary: bool,
    /// Two-way sync: the sync id whose tagged transactions (DMP's own
    /// applies) are dropped.
    pub(super) origin: Option<String>,
}

/// Tables whose shape this stream has handed on (each is, at its first
/// Relation message: the target may not have it).
type Announced = std::collections::HashSet<usize>;

struct State {
    relations: HashMap<u32, Option<Mapping>>,
    announced: Announced,
    /// End of the last commit seen, or the start.
    last_end: Lsn,
    /// Position of the last Commit or Heartbeat handed on.
    last_emitted: Lsn,
    /// The server's WAL position, from keepalives and XLogData.
    wal_end: Lsn,
    /// The position acknowledged to the server.
    flushed: Lsn,
    txn: Option<Txn>,
    /// When an event was last handed on.
    idle_since: Instant,
    /// A keepalive was asked for, to hand its position on as a heartbeat.
    heartbeat_asked: bool,
    tick: Interval,
}

impl Reader {
    /// Streams until the feed is dropped or the stream fails; a failure is
    /// the last event handed on.
    pub(super) async fn run(self) {
        let mut tick = tokio::time::interval(STATUS_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut state = State {
            relations: HashMap::new(),
            announced: Announced::new(),
            last_end: self.start,
            last_emitted: self.start,
            wal_end: self.start,
            flushed: Lsn(0),
            txn: None,
            idle_since: Instant::now(),
            heartbeat_asked: false,
            tick,
        };
        let mut reader = self;
        let outcome = reader.stream(&mut state).await;
        match outcome {
            Ok(()) => {
                // The last confirmation may be younger than the last status.
                let _ = reader.send_status(&mut state, false).await;
                debug!("change stream closed by its consumer");
                reader.conn.terminate().await;
            }
            Err(e) => {
                warn!(error = %e, "change stream failed");
                let _ = reader.tx.send(Err(e)).await;
            }
        }
    }

    async fn stream(&mut self, state: &mut State) -> Result<()> {
        loop {
            let wake = tokio::select! {
                biased;
                () = self.tx.closed() => Wake::Closed,
                _ = state.tick.tick() => Wake::Tick,
                data = self.conn.recv_copy() => Wake::Data(data),
            };
            match wake {
                Wake::Closed => return Ok(()),
                Wake::Tick => self.on_tick(state).await?,
                Wake::Data(data) => {
                    let data = data.context(|| format!("{}: receiving changes", self.place))?;
                    let Some(data) = data else {
                        return Err(Error::Data(format!(
                            "{}: the server ended the replication stream",
                            self.place
                        )));
                    };
                    if !self.on_data(state, data).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The periodic status update; once idle for the heartbeat interval,
    /// it asks for a keepalive, whose position becomes the heartbeat.
    async fn on_tick(&mut self, state: &mut State) -> Result<()> {
        let idle = state.txn.is_none() && state.idle_since.elapsed() >= self.heartbeat;
        let ask = idle && !state.heartbeat_asked;
        self.send_status(state, ask).await?;
        state.heartbeat_asked |= ask;
        Ok(())
    }

    async fn on_data(&mut self, state: &mut State, data: bytes::Bytes) -> Result<bool> {
        let message = pgoutput::parse_wal_message(data).map_err(|e| self.broken(e))?;
        match message {
            WalMessage::Keepalive { wal_end, reply } => {
                state.wal_end = state.wal_end.max(wal_end);
                if reply {
                    self.send_status(state, false).await?;
                }
                if state.heartbeat_asked && state.txn.is_none() {
                    state.heartbeat_asked = false;
                    if state.wal_end > state.last_emitted {
                        let position = state.wal_end;
                        if !self
                            .emit(
                                state,
                                StreamEvent::Heartbeat {
                                    position: position.position(),
                                },
                            )
                            .await?
                        {
                            return Ok(false);
                        }
                        state.last_emitted = position;
                    } else {
                        // Nothing moved: ask again after another interval.
                        state.idle_since = Instant::now();
                    }
                }
                Ok(true)
            }
            WalMessage::XLogData { wal_end, data, .. } => {
                state.wal_end = state.wal_end.max(wal_end);
                let message = pgoutput::parse_message(data).map_err(|e| self.broken(e))?;
                self.on_message(state, message).await
            }
        }
    }

    fn broken(&self, what: String) -> Error {
        Error::driver(
            format!("{}: reading the replication stream", self.place),
            crate::error::driver_error(protocol(what)),
        )
    }

    async fn on_message(&mut self, state: &mut State, message: Message) -> Result<bool> {
        match message {
            Message::Begin { .. } => {
                if state.txn.is_some() {
                    return Err(self.broken("a transaction began inside another".into()));
                }
                state.txn = Some(Txn {
                    log: state.last_end.log_text(),
                    begun: false,
                    seen: 0,
                    ours: false,
                });
                Ok(true)
            }
            Message::Commit {
                end_lsn,
                commit_time,
                ..
            } => {
                let txn = state
                    .txn
                    .take()
                    .ok_or_else(|| self.broken("a commit outside a transaction".into()))?;
                state.last_end = end_lsn;
                if !txn.begun {
                    return Ok(true);
                }
                let event = StreamEvent::Commit {
                    position: end_lsn.position(),
                    commit_time: pgoutput::unix_micros(commit_time),
                };
                let open = self.emit(state, event).await?;
                state.last_emitted = end_lsn;
                Ok(open)
            }
            Message::Relation(relation) => self.relation(state, relation).await,
            Message::Logical {
                transactional: true,
                prefix,
                content,
            } if prefix == super::ORIGIN_PREFIX => {
                if let Some(txn) = &mut state.txn
                    && self.origin.as_deref().map(str::as_bytes) == Some(&content[..])
                {
                    // The tag is the transaction's first write, so no
                    // change of it was handed on.
                    txn.ours = true;
                }
                Ok(true)
            }
            Message::Logical { .. } => Ok(true),
            _ if state.txn.as_ref().is_some_and(|t| t.ours) => Ok(true),
            Message::Insert { relation, new } => {
                let Some(table) = self.mapped(state, relation)? else {
                    return Ok(true);
                };
                let event = self.insert(state, relation, table, &new).await?;
                self.emit_change(state, event).await
            }
            Message::Update { relation, old, new } => {
                let Some(table) = self.mapped(state, relation)? else {
                    return Ok(true);
                };
                let event = self
                    .update(state, relation, table, old.as_ref(), &new)
                    .await?;
                self.emit_change(state, event).await
            }
            Message::Delete { relation, old } => {
                let Some(table) = self.mapped(state, relation)? else {
                    return Ok(true);
                };
                let event = self.delete(state, relation, table, &old).await?;
                self.emit_change(state, event).await
            }
            Message::Truncate { relations } => {
                let mut tables = Vec::new();
                for relation in relations {
                    if let Some(table) = self.mapped(state, relation)?
                        && !tables.contains(&table)
                    {
                        tables.push(table);
                    }
                }
                if tables.is_empty() {
                    return Ok(true);
                }
                self.emit_change(state, StreamEvent::Truncate { tables })
                    .await
            }
            Message::Other(_) => Ok(true),
        }
    }

    /// Maps a Relation message to a streamed table (by schema and name, or
    /// by oid when it was renamed). A table whose rows now have other
    /// columns than the stream reads by, or a new table of the selection,
    /// is handed on as a change of shape first (see `reshape`).
    async fn relation(&mut self, state: &mut State, relation: Relation) -> Result<bool> {
        let namespace = if relation.namespace.is_empty() {
            "pg_catalog".to_string()
        } else {
            relation.namespace.clone()
        };
        let by_name = self
            .tables
            .iter()
            .position(|t| t.namespace() == namespace && t.schema.name == relation.name);
        let known = by_name.or_else(|| self.tables.iter().position(|t| t.oid == relation.oid));
        let selected = namespace == self.namespace
            && self.selection.matches(&relation.name)
            && !dmp_model::is_dmp_table(&relation.name);
        if known.is_none() && !selected {
            debug!(
                relation = relation.name,
                namespace, "changes of a table that is not streamed are skipped"
            );
            state.relations.insert(relation.oid, None);
            return Ok(true);
        }
        let unchanged = known.is_some_and(|i| {
            let plan = &self.tables[i];
            plan.schema.name == relation.name && reshape::same_shape(plan, &relation)
        });
        let index = match known {
            Some(index) if unchanged => {
                // The stream's first word on the table: its shape here,
                // which the target may not have yet (the source changed
                // while the stream was stopped).
                if state.announced.insert(index) {
                    let change = SchemaChange {
                        schema: self.tables[index].schema.clone(),
                        event: TableEvent::Altered,
                        statement: None,
                        renamed: Vec::new(),
                        dropped: Vec::new(),
                    };
                    let event = StreamEvent::Schema {
                        table: index,
                        change,
                    };
                    if !self.emit_in_transaction(state, event).await? {
                        return Ok(false);
                    }
                }
                index
            }
            _ => match self.reshape(state, known, &namespace, &relation).await? {
                Some(index) => index,
                None => return Ok(false),
            },
        };
        let plan = &self.tables[index];
        if plan.oid != relation.oid {
            warn!(
                table = plan.schema.name,
                "the table was created anew at the source while streaming"
            );
        }
        let columns: Vec<Option<usize>> = (0..relation.columns.len()).map(Some).collect();
        let unusable_identity = identity_problem(plan, &relation, &columns);
        if let Some(problem) = &unusable_identity {
            warn!(table = %format!("{}.{}", plan.namespace(), plan.schema.name), "{problem}");
        }
        state.relations.insert(
            relation.oid,
            Some(Mapping {
                table: index,
                columns,
                unusable_identity,
            }),
        );
        Ok(true)
    }

    /// Reads the table's new shape and hands it on; returns its index, or
    /// `None` when the consumer is gone.
    async fn reshape(
        &mut self,
        state: &mut State,
        known: Option<usize>,
        namespace: &str,
        relation: &Relation,
    ) -> Result<Option<usize>> {
        let old = known.map(|i| &self.tables[i]);
        let (plan, change) =
            reshape::reshape(self.lookup.pool(), &self.place, old, namespace, relation).await?;
        if self.binary && !plan.all_native() {
            return Err(Error::SourceChanged(format!(
                "{}: table {namespace}.{} now has a column of a type this stream cannot read in \
                 binary; run the same command again (the stream restarts where the target \
                 stands, in text)",
                self.place, relation.name
            )));
        }
        let index = match known {
            Some(index) => {
                self.tables[index] = plan;
                index
            }
            None => {
                self.tables.push(plan);
                self.tables.len() - 1
            }
        };
        info!(table = %relation.name, "the table's shape changed at the source");
        state.announced.insert(index);
        let open = self
            .emit_in_transaction(
                state,
                StreamEvent::Schema {
                    table: index,
                    change,
                },
            )
            .await?;
        Ok(open.then_some(index))
    }

    /// The streamed table a change of relation `oid` belongs to.
    fn mapped(&self, state: &State, oid: u32) -> Result<Option<usize>> {
        match state.relations.get(&oid) {
            Some(mapping) => Ok(mapping.as_ref().map(|m| m.table)),
            None => Err(self.broken(format!(
                "a change of relation {oid} before its Relation message"
            ))),
        }
    }

    fn mapping<'s>(&self, state: &'s State, oid: u32) -> Result<&'s Mapping> {
        state
            .relations
            .get(&oid)
            .and_then(Option::as_ref)
            .ok_or_else(|| self.broken(format!("relation {oid} is not mapped")))
    }

    async fn insert(
        &self,
        state: &State,
        oid: u32,
        table: usize,
        new: &Tuple,
    ) -> Result<StreamEvent> {
        let mapping = self.mapping(state, oid)?;
        let row = self.decode_tuple(table, mapping, new).await?;
        if !row.unchanged.is_empty() {
            return Ok(self.reject(state, table, row, "an inserted row without all its values"));
        }
        if !row.bad.is_empty() {
            return Ok(self.reject(state, table, row, ""));
        }
        Ok(StreamEvent::Change {
            table,
            change: Change::Insert(Row(row.values)),
        })
    }

    async fn update(
        &self,
        state: &State,
        oid: u32,
        table: usize,
        old: Option<&OldTuple>,
        new: &Tuple,
    ) -> Result<StreamEvent> {
        let mapping = self.mapping(state, oid)?;
        let mut after = self.decode_tuple(table, mapping, new).await?;
        if let Some(problem) = &mapping.unusable_identity {
            return Ok(self.reject(state, table, after, problem));
        }
        let before = match old {
            Some(old) => Some(self.decode_tuple(table, mapping, &old.tuple).await?),
            None => None,
        };
        if let Some(before) = &before
            && !before.bad.is_empty()
        {
            // The old image cannot say which row changed.
            let reason = before
                .bad
                .iter()
                .map(|(c, u)| {
                    format!(
                        "old value of column {}: {}",
                        self.column(table, *c),
                        u.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(self.reject(state, table, after, &reason));
        }
        // An unchanged TOASTed value: the old image has it when it is a
        // full one (or the column is part of the identity).
        if let (Some(old), Some(before)) = (old, &before) {
            after.unchanged.retain(|&c| {
                let sent = mapping
                    .columns
                    .iter()
                    .position(|m| *m == Some(c))
                    .and_then(|ri| old.tuple.0.get(ri))
                    .is_some_and(|d| matches!(d, Datum::Text(_) | Datum::Binary(_)));
                if sent {
                    after.values[c] = before.values[c].clone();
                }
                !sent
            });
        }
        if !after.bad.is_empty() {
            return Ok(self.reject(state, table, after, ""));
        }
        if !after.unchanged.is_empty() {
            match self.fill_unchanged(table, &mut after).await? {
                Fill::Filled => {}
                Fill::Refused(reason) => return Ok(self.reject(state, table, after, &reason)),
                Fill::Gone => {
                    // The row no longer exists at the source: a later change
                    // of the stream deleted it (or moved its key), and no
                    // value for it would be right. Its old key goes away
                    // now, which is where the stream converges anyway.
                    let plan = &self.tables[table];
                    let mut gone = vec![Value::Null; plan.columns.len()];
                    let key_source = before.as_ref().map_or(&after.values, |b| &b.values);
                    for &k in &plan.keys {
                        gone[k] = key_source[k].clone();
                    }
                    debug!(
                        table = plan.schema.name,
                        "an updated row with an unchanged TOASTed value no longer exists: applied as its delete"
                    );
                    return Ok(StreamEvent::Change {
                        table,
                        change: Change::Delete(Row(gone)),
                    });
                }
            }
        }
        Ok(StreamEvent::Change {
            table,
            change: Change::Update {
                before: before.map(|b| Row(b.values)),
                after: Row(after.values),
            },
        })
    }

    async fn delete(
        &self,
        state: &State,
        oid: u32,
        table: usize,
        old: &OldTuple,
    ) -> Result<StreamEvent> {
        let mapping = self.mapping(state, oid)?;
        let row = self.decode_tuple(table, mapping, &old.tuple).await?;
        if let Some(problem) = &mapping.unusable_identity {
            return Ok(self.reject(state, table, row, problem));
        }
        let plan = &self.tables[table];
        if let Some(&k) = plan.keys.iter().find(|&&k| row.values[k].is_null()) {
            let reason = format!(
                "the deleted row's old image has no value for key column {}",
                plan.columns[k].name
            );
            return Ok(self.reject(state, table, row, &reason));
        }
        if !row.bad.is_empty() {
            return Ok(self.reject(state, table, row, ""));
        }
        Ok(StreamEvent::Change {
            table,
            change: Change::Delete(Row(row.values)),
        })
    }

    /// Decodes a tuple into schema order; columns the relation lacks (none,
    /// once mapped) stay null. Values only the server can print are
    /// converted by it here.
    async fn decode_tuple(
        &self,
        table: usize,
        mapping: &Mapping,
        tuple: &Tuple,
    ) -> Result<Decoding> {
        let plan = &self.tables[table];
        let mut row = Decoding {
            values: vec![Value::Null; plan.columns.len()],
            bad: Vec::new(),
            unchanged: Vec::new(),
        };
        for (ri, datum) in tuple.0.iter().enumerate() {
            let Some(Some(si)) = mapping.columns.get(ri) else {
                continue;
            };
            let si = *si;
            let column = &plan.columns[si];
            match datum {
                Datum::Unchanged => row.unchanged.push(si),
                datum => match decode(column, datum) {
                    Decoded::Value(v) => row.values[si] = v,
                    Decoded::Bad(u) => row.bad.push((si, u)),
                    Decoded::Server(text) => {
                        row.values[si] = self.lookup.convert(column, &text).await?;
                    }
                },
            }
        }
        Ok(row)
    }

    /// Fills the values an update left out (unchanged TOASTed values) from
    /// the source's current row.
    ///
    /// The current row may be newer than this change: the stream carries
    /// every later change of it too, so the target converges on the
    /// source's state. A value that is not known is never made up.
    async fn fill_unchanged(&self, table: usize, row: &mut Decoding) -> Result<Fill> {
        let plan = &self.tables[table];
        if plan.keys.is_empty() {
            return Ok(Fill::Refused(
                "an unchanged TOASTed value cannot be read back for a table without a primary key; set REPLICA IDENTITY FULL".into(),
            ));
        }
        let mut key = Vec::with_capacity(plan.keys.len());
        for &k in &plan.keys {
            if row.unchanged.contains(&k) || row.values[k].is_null() {
                return Ok(Fill::Refused(format!(
                    "the value of key column {} was not sent",
                    plan.columns[k].name
                )));
            }
            key.push(row.values[k].clone());
        }
        let Some(current) = self.lookup.current(plan, &key, &row.unchanged).await? else {
            return Ok(Fill::Gone);
        };
        for (&c, value) in row.unchanged.iter().zip(current) {
            match value {
                Decoded::Value(v) => row.values[c] = v,
                Decoded::Bad(u) => row.bad.push((c, u)),
                Decoded::Server(_) => {}
            }
        }
        row.unchanged.clear();
        if row.bad.is_empty() {
            Ok(Fill::Filled)
        } else {
            Ok(Fill::Refused(String::new()))
        }
    }

    fn column(&self, table: usize, column: usize) -> &str {
        &self.tables[table].columns[column].name
    }

    /// A source reject of a row, with the values that did not decode shown
    /// as the server printed them.
    fn reject(&self, state: &State, table: usize, row: Decoding, reason: &str) -> StreamEvent {
        let plan = &self.tables[table];
        let mut reasons: Vec<String> = row
            .bad
            .iter()
            .map(|(c, u)| format!("column {}: {}", self.column(table, *c), u.reason))
            .collect();
        if !reason.is_empty() {
            reasons.insert(0, reason.to_string());
        }
        let mut json = row_to_json(&plan.schema, &Row(row.values));
        if let serde_json::Value::Object(map) = &mut json {
            for (c, u) in row.bad {
                map.insert(
                    self.column(table, c).to_string(),
                    serde_json::Value::String(u.value),
                );
            }
        }
        let (log, seen) = state
            .txn
            .as_ref()
            .map_or((state.last_end.log_text(), 0), |t| (t.log.clone(), t.seen));
        StreamEvent::Reject {
            table,
            reject: Reject {
                stage: RejectStage::Source,
                error: format!(
                    "table {}.{}: {}",
                    plan.namespace(),
                    plan.schema.name,
                    reasons.join("; ")
                ),
                row: json,
                position: Position::Log {
                    log,
                    skip: seen + 1,
                },
            },
        }
    }

    /// Hands on a change of the open transaction, after its `Begin`.
    async fn emit_change(&mut self, state: &mut State, event: StreamEvent) -> Result<bool> {
        if let Some(txn) = state.txn.as_mut() {
            txn.seen += 1;
        }
        self.emit_in_transaction(state, event).await
    }

    /// Hands on an event of the open transaction (a change, or a change of
    /// shape, which does not count as one), after its `Begin`.
    async fn emit_in_transaction(&mut self, state: &mut State, event: StreamEvent) -> Result<bool> {
        let Some(txn) = state.txn.as_mut() else {
            return Err(self.broken("a change outside a transaction".into()));
        };
        let begin = (!txn.begun).then(|| txn.log.clone());
        txn.begun = true;
        if let Some(log) = begin
            && !self.emit(state, StreamEvent::Begin { log }).await?
        {
            return Ok(false);
        }
        self.emit(state, event).await
    }

    /// Hands an event on, sending status updates while the consumer lags.
    /// Returns false when the consumer is gone.
    async fn emit(&mut self, state: &mut State, event: StreamEvent) -> Result<bool> {
        let mut event = Some(Ok(event));
        loop {
            let sent = tokio::select! {
                biased;
                permit = self.tx.reserve() => match permit {
                    Ok(permit) => {
                        if let Some(event) = event.take() {
                            permit.send(event);
                        }
                        true
                    }
                    Err(_) => return Ok(false),
                },
                _ = state.tick.tick() => false,
            };
            if sent {
                state.idle_since = Instant::now();
                return Ok(true);
            }
            self.send_status(state, false).await?;
        }
    }

    /// Acknowledges the last position the engine confirmed.
    async fn send_status(&mut self, state: &mut State, reply: bool) -> Result<()> {
        let confirmed = self
            .confirmed
            .borrow()
            .as_ref()
            .and_then(Lsn::from_position);
        if let Some(lsn) = confirmed {
            state.flushed = state.flushed.max(lsn);
        }
        let now = chrono::Utc::now().timestamp_micros() - PG_EPOCH_UNIX_MICROS;
        let message = pgoutput::status_update(state.flushed, now, reply);
        self.conn
            .send_copy(&message)
            .await
            .context(|| format!("{}: acknowledging position {}", self.place, state.flushed))
    }
}

enum Fill {
    Filled,
    /// The values cannot be read back; the reason for the reject.
    Refused(String),
    /// The row no longer exists at the source.
    Gone,
}

/// Why updates and deletes of a table cannot be applied by primary key:
/// the old key they carry does not hold it.
fn identity_problem(
    plan: &TablePlan,
    relation: &Relation,
    columns: &[Option<usize>],
) -> Option<String> {
    let which = match relation.identity {
        Identity::Full => return None,
        Identity::Nothing => "REPLICA IDENTITY NOTHING: updates and deletes carry no old key",
        Identity::Default | Identity::Index => {
            let flagged = |k: usize| {
                columns
                    .iter()
                    .zip(&relation.columns)
                    .any(|(m, c)| *m == Some(k) && c.key)
            };
            if !plan.keys.is_empty() && plan.keys.iter().all(|&k| flagged(k)) {
                return None;
            }
            if relation.identity == Identity::Index {
                "REPLICA IDENTITY USING INDEX on columns without the primary key: updates and deletes carry no primary key"
            } else {
                "no primary key (REPLICA IDENTITY DEFAULT): updates and deletes carry no old key"
            }
        }
    };
    Some(format!(
        "{which}, so they cannot be applied; give the table a primary key with REPLICA IDENTITY DEFAULT, or set REPLICA IDENTITY FULL"
    ))
}
