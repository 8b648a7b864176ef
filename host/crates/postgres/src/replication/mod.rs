//! PostgreSQL change data capture: logical replication with the built-in
//! `pgoutput` plugin over the streaming replication protocol (a small
//! client of our own: sqlx has none), behind `ChangeSource`.
//!
//! A pipeline streams through one publication (its tables, all changes,
//! partitions as their root) and one logical slot, both named after the
//! pipeline unless `[cdc]` names them. `full+cdc` creates the slot with an
//! exported snapshot that every chunk reader imports, so the copy and the
//! stream meet exactly at the slot's consistent point. Positions are
//! `lsn=<WAL position>` at transaction boundaries; the server is told a
//! position is done only once the target holds it durably.
//!
//! # REPLICA IDENTITY
//! What a table's `REPLICA IDENTITY` gives the stream:
//! - `DEFAULT` (with a primary key): updates carry the old key only when
//!   the key changed (else `before` is `None`); deletes carry the old key,
//!   the other columns null. Updates and deletes apply by primary key.
//! - `FULL`: updates and deletes carry the whole old row.
//! - `USING INDEX`: like `DEFAULT` when the index's columns hold the
//!   primary key; otherwise updates and deletes cannot be matched to rows
//!   and are refused (source rejects naming the table).
//! - `NOTHING`, or `DEFAULT` on a table without a primary key: no old key
//!   at all. PostgreSQL itself refuses such UPDATE and DELETE statements
//!   while the table is in a publication that publishes them; any that
//!   still arrive are refused as source rejects naming the table.
//!
//! # Unchanged TOAST values
//! An update that leaves a large (TOASTed) value as it was does not send
//! it. It is taken from the old row image when that has it (`FULL`), else
//! read from the source's current row by primary key. That row may be
//! newer than the change; every later change of it follows in the stream,
//! so the target converges on the source. If the row is gone, the update
//! is applied as the delete of its old key, which the later changes that
//! removed it lead to anyway. A value is never guessed.

mod columns;
mod decode;
#[cfg(test)]
mod e2e;
mod error;
mod lookup;
mod lsn;
mod pgoutput;
mod protocol;
mod reshape;
mod slot;
mod socket;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, info, info_span, warn};

use self::lsn::Lsn;
use self::protocol::Connection;
use super::config::PgConfig;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{ChangeFeed, ChangeOptions, ChangeSource, SnapshotStart, StreamLag};
use dmp_model::{Position, TableSchema, TableSelection};

/// Events the reader may hold ready ahead of the engine.
const FEED_CAPACITY: usize = 1024;

/// The consistent points of the snapshots this process's slots exported,
/// by snapshot name: the source's readers record where the snapshot they
/// import stands.
#[derive(Default)]
pub(super) struct ExportedSnapshots(Mutex<HashMap<String, String>>);

impl ExportedSnapshots {
    fn record(&self, snapshot: &str, lsn: Lsn) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(snapshot.to_string(), lsn.to_string());
        }
    }

    /// `0/16B3748`: where the exported `snapshot` stands.
    pub(super) fn lsn(&self, snapshot: &str) -> Option<String> {
        self.0.lock().ok()?.get(snapshot).cloned()
    }
}

pub(super) struct PgChangeSource {
    config: PgConfig,
    pool: PgPool,
    slot: String,
    publication: String,
    heartbeat: Duration,
    /// The pipeline's tables (a table created while streaming joins when
    /// this selects it).
    selection: TableSelection,
    /// Two-way sync: transactions tagged with this sync id are DMP's own
    /// and dropped.
    origin: Option<String>,
    /// The replication session that created the slot and exported its
    /// snapshot, kept idle (so the snapshot stays valid) until `open`
    /// streams on it.
    held: tokio::sync::Mutex<Option<Connection>>,
    snapshots: Arc<ExportedSnapshots>,
}

/// The prefix of the logical decoding message that tags a transaction a
/// two-way sync applied; its content is the sync id.
pub(crate) const ORIGIN_PREFIX: &str = "dmp.origin";

/// The statement that tags the transaction it runs in with sync id
/// `origin` (a transactional logical decoding message): run first, it
/// tells the reader before any change of the transaction.
pub(crate) fn origin_tag(origin: &str) -> String {
    format!(
        "SELECT pg_logical_emit_message(true, '{ORIGIN_PREFIX}', {})",
        crate::sql::quote_literal(origin)
    )
}

impl PgChangeSource {
    pub(super) fn new(
        config: &PgConfig,
        options: &ChangeOptions,
        snapshots: Arc<ExportedSnapshots>,
    ) -> Result<Self> {
        let slot = slot::slot_name(options)?;
        let publication = slot::publication_name(options, &slot)?;
        Ok(PgChangeSource {
            pool: config.pool(2),
            config: config.clone(),
            slot,
            publication,
            heartbeat: options.heartbeat,
            selection: options.selection.clone(),
            origin: options.origin.clone(),
            held: tokio::sync::Mutex::new(None),
            snapshots,
        })
    }

    fn place(&self) -> &str {
        &self.config.place
    }

    async fn connect(&self) -> Result<Connection> {
        Connection::connect(&self.config.url)
            .await
            .context(|| format!("{}: opening a replication session", self.place()))
    }

    /// The slot if it exists, refusing one this connector cannot use.
    async fn slot_state(&self) -> Result<Option<slot::SlotState>> {
        let state = slot::state(&self.pool, self.place(), &self.slot).await?;
        if let Some(s) = &state {
            s.check(&self.slot, &self.config.url.database, self.place())?;
        }
        Ok(state)
    }

    /// The slot's confirmed point, creating the slot (without a snapshot)
    /// when it is missing.
    async fn existing_or_new_slot(&self) -> Result<Lsn> {
        if let Some(state) = self.slot_state().await? {
            return state.confirmed.ok_or_else(|| {
                Error::Data(format!(
                    "{}: replication slot {} has no confirmed position",
                    self.place(),
                    self.slot
                ))
            });
        }
        let mut conn = self.connect().await?;
        let (point, _) = slot::create(&mut conn, self.place(), &self.slot, false).await?;
        conn.terminate().await;
        Ok(point)
    }
}

#[async_trait]
impl ChangeSource for PgChangeSource {
    async fn begin_snapshot(
        &self,
        tables: &[Arc<TableSchema>],
        fresh: bool,
    ) -> Result<SnapshotStart> {
        slot::ensure_publication(
            &self.pool,
            self.place(),
            &self.publication,
            tables,
            &self.config.schema,
        )
        .await?;
        if !fresh {
            let point = self.existing_or_new_slot().await?;
            info!(slot = self.slot, position = %point, "resuming: the stream starts at the slot's confirmed position");
            return Ok(SnapshotStart {
                position: Some(point.position()),
                snapshot: None,
            });
        }
        let mut held = self.held.lock().await;
        if let Some(old) = held.take() {
            old.terminate().await;
        }
        if let Some(state) = self.slot_state().await? {
            info!(slot = self.slot, confirmed = ?state.confirmed, "a new run: the slot is created anew");
            slot::drop(&self.pool, self.place(), &self.slot).await?;
        }
        let mut conn = self.connect().await?;
        let (point, snapshot) = slot::create(&mut conn, self.place(), &self.slot, true).await?;
        let snapshot = snapshot.ok_or_else(|| {
            Error::Data(format!("{}: the slot exported no snapshot", self.place()))
        })?;
        self.snapshots.record(&snapshot, point);
        *held = Some(conn);
        Ok(SnapshotStart {
            position: Some(point.position()),
            snapshot: Some(snapshot),
        })
    }

    async fn current_position(&self, tables: &[Arc<TableSchema>]) -> Result<Position> {
        slot::ensure_publication(
            &self.pool,
            self.place(),
            &self.publication,
            tables,
            &self.config.schema,
        )
        .await?;
        Ok(self.existing_or_new_slot().await?.position())
    }

    async fn position_from_snapshot(&self, snapshot_position: &str) -> Result<Option<Position>> {
        let Some(lsn) = Lsn::from_position_text(snapshot_position) else {
            return Ok(None);
        };
        let state = slot::state(&self.pool, self.place(), &self.slot).await;
        let state = match state {
            Ok(Some(state)) => state,
            Ok(None) => return Ok(None),
            Err(e) => {
                warn!(error = %e, slot = self.slot, "cannot read the replication slot");
                return Ok(None);
            }
        };
        if state
            .check(&self.slot, &self.config.url.database, self.place())
            .is_err()
        {
            return Ok(None);
        }
        // Streaming from the slot's own confirmed point (at or before the
        // snapshot) replays what the snapshot may hold already, which
        // converges; from the snapshot's LSN, a transaction that committed
        // just before it was read could be missed.
        Ok(state
            .confirmed
            .filter(|confirmed| *confirmed <= lsn)
            .map(|confirmed| confirmed.position()))
    }

    async fn open(&self, tables: Vec<Arc<TableSchema>>, from: Position) -> Result<ChangeFeed> {
        let start = Lsn::from_position(&from).ok_or_else(|| {
            Error::Data(format!(
                "{}: the change stream cannot start at {from:?}: not a PostgreSQL position",
                self.place()
            ))
        })?;
        let plans = columns::plan(&self.pool, self.place(), &tables).await?;
        let Some(state) = self.slot_state().await? else {
            return Err(Error::Data(format!(
                "{}: replication slot {} does not exist, so the changes since {start} are lost; run with --restart",
                self.place(),
                self.slot
            )));
        };
        let mut start = start;
        if let Some(confirmed) = state.confirmed
            && start < confirmed
        {
            // A two-way sync's leg confirms the positions its stream
            // passed without a change to apply (its own writes, dropped)
            // to the slot only, never to its target, whose checkpoint
            // stays behind: what lies between carried nothing for it.
            if self.origin.is_some() {
                info!(slot = self.slot, checkpoint = %start, %confirmed, "resuming where the slot was confirmed: the changes between were DMP's own");
                start = confirmed;
            } else {
                return Err(Error::Data(format!(
                    "{}: replication slot {} has moved on to {confirmed}; the changes from {start} on are no longer kept; run with --restart",
                    self.place(),
                    self.slot
                )));
            }
        }
        let binary = plans.iter().all(columns::TablePlan::all_native);
        // The session that exported the snapshot streams too, unless it
        // was lost while the snapshot was copied.
        let held = match self.held.lock().await.take() {
            Some(conn) => match self.start(conn, start, binary).await {
                Ok(conn) => Some(conn),
                Err(e) => {
                    warn!(error = %e, "the session that created the slot cannot stream; opening another");
                    None
                }
            },
            None => None,
        };
        let conn = match held {
            Some(conn) => conn,
            None => {
                slot::wait_released(&self.pool, self.place(), &self.slot).await?;
                let conn = self.connect().await?;
                self.start(conn, start, binary).await?
            }
        };
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        let (confirmed_tx, confirmed_rx) = watch::channel(None);
        let reader = stream::Reader {
            conn,
            tx,
            confirmed: confirmed_rx,
            tables: plans,
            lookup: lookup::Lookup::new(self.pool.clone(), self.place().to_string()),
            place: self.place().to_string(),
            heartbeat: self.heartbeat,
            start,
            namespace: self.config.schema.clone(),
            selection: self.selection.clone(),
            binary,
            origin: self.origin.clone(),
        };
        let span = info_span!("pg_stream", slot = self.slot, from = %start);
        Ok(ChangeFeed::spawn(
            rx,
            confirmed_tx,
            reader.run().instrument(span),
        ))
    }

    async fn lag(&self) -> Result<StreamLag> {
        slot::lag(&self.pool, self.place(), &self.slot).await
    }

    async fn drop_stream(&self) -> Result<()> {
        if let Some(conn) = self.held.lock().await.take() {
            conn.terminate().await;
        }
        slot::drop(&self.pool, self.place(), &self.slot).await?;
        slot::drop_publication(&self.pool, self.place(), &self.publication).await
    }
}

impl PgChangeSource {
    /// Two-way sync: the conflict check on the other side compares its
    /// rows with the before-images of this side's updates and deletes,
    /// which only `REPLICA IDENTITY FULL` sends whole.
    async fn check_full_images(&self) -> Result<()> {
        let partial: Option<String> = sqlx::query_scalar(
            "SELECT string_agg(format('%I.%I', pt.schemaname, pt.tablename), ', ' ORDER BY 1) \
             FROM pg_publication_tables pt \
             JOIN pg_namespace n ON n.nspname = pt.schemaname \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename \
             WHERE pt.pubname = $1 AND c.relreplident <> 'f' AND left(pt.tablename, 5) <> '_dmp_'",
        )
        .bind(&self.publication)
        .fetch_one(&self.pool)
        .await
        .context(|| format!("{}: reading the tables' replica identity", self.place()))?;
        match partial {
            Some(tables) => Err(Error::Config(format!(
                "{}: a two-way sync compares whole before-images to find conflicts; \
                 set ALTER TABLE … REPLICA IDENTITY FULL on {tables}",
                self.place()
            ))),
            None => Ok(()),
        }
    }

    /// Starts streaming on `conn`; `binary` when every column's type has
    /// a binary decoder (PostgreSQL 14+).
    async fn start(&self, mut conn: Connection, start: Lsn, binary: bool) -> Result<Connection> {
        let binary = binary && conn.server_version() >= 140_000;
        let names = format!("\"{}\"", self.publication.replace('"', "\"\""));
        let mut command = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '1', publication_names '{}'",
            self.slot,
            names.replace('\'', "''")
        );
        if binary {
            command.push_str(", binary 'true'");
        }
        if self.origin.is_some() {
            // The tag of DMP's own transactions comes as a logical
            // decoding message, which pgoutput sends from version 14 on.
            if conn.server_version() < 140_000 {
                return Err(Error::Config(format!(
                    "{}: a two-way sync needs PostgreSQL 14 or later, whose change stream carries the tag of DMP's own transactions",
                    self.place()
                )));
            }
            command.push_str(", messages 'true'");
            self.check_full_images().await?;
        }
        command.push(')');
        conn.start_copy_both(&command).await.context(|| {
            format!(
                "{}: streaming from replication slot {}",
                self.place(),
                self.slot
            )
        })?;
        info!(slot = self.slot, from = %start, binary, pid = conn.pid(), "streaming changes");
        Ok(conn)
    }
}
