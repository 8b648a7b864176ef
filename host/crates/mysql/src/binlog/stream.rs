//! The reader task: registers as a replica on its own connection, reads
//! the binlog from a position and hands on the row changes of the streamed
//! tables, grouped in their transactions, with the position after each
//! commit. Transactions that touch no streamed table are not handed on;
//! the position they reach is, in a heartbeat, once the stream is idle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::EventType;
use mysql_async::binlog::events::{
    Event, EventData, GtidEvent, QueryEvent, RotateEvent, RowsEventData, TableMapEvent,
};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::super::server::Server;
use super::alter;
use super::columns::{self, SourceColumn};
use super::ddl::{Statement, TableName, alter_renames, classify};
use super::gtid::Gtid;
use super::position::LogPosition;
use super::rows::{RowsKind, TableRows, map_shape};
use super::setup::PRIVILEGES;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{SchemaChange, StreamEvent, TableEvent};
use dmp_model::{Position, Reject, RejectStage, TableSchema, TableSelection};

/// MariaDB event types mysql_async does not know.
const MARIA_GTID: u8 = 162;
/// MariaDB's compressed query and row events (`log_bin_compress`).
const MARIA_COMPRESSED: std::ops::RangeInclusive<u8> = 165..=171;
/// MySQL 8.0.26+ heartbeat.
const HEARTBEAT_V2: u8 = 41;
/// MariaDB GTID flag: a group of one statement, without COMMIT.
const FL_STANDALONE: u8 = 1;
/// Events the server makes up for the stream (not in the file).
const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
/// MariaDB: written by a session with `skip_replication` on — a two-way
/// sync's own apply (mysql_common's flags do not name it).
const LOG_EVENT_SKIP_REPLICATION_F: u16 = 0x8000;

/// What the reader needs, gathered by `open`.
pub(super) struct Setup {
    /// The settings of the source's sessions, for a connection of its own.
    pub(super) opts: Opts,
    pub(super) server: Server,
    pub(super) server_id: u32,
    pub(super) place: String,
    pub(super) database: String,
    pub(super) tables: Vec<Arc<TableSchema>>,
    pub(super) columns: HashMap<String, Vec<SourceColumn>>,
    pub(super) from: LogPosition,
    pub(super) heartbeat: Duration,
    /// A table created while streaming joins when this selects it.
    pub(super) selection: TableSelection,
    /// Two-way sync: drop the statements written with `skip_replication`
    /// (DMP's own changes of shape).
    pub(super) skip_flagged: bool,
    /// Two-way sync: the sync id whose transactions are dropped, told by
    /// their first row, this sync's in `_dmp_origin` (see
    /// `crate::origin`); another sync's writes through the same server
    /// are carried.
    pub(super) origin: Option<String>,
}

/// What `connect` learnt besides the stream.
struct Opened {
    stream: BinlogStream,
    /// The server writes a CRC32 after each event.
    checksum: bool,
}

/// Reads until the receiver goes away or an error, which it hands on.
pub(super) async fn run(setup: Setup, tx: mpsc::Sender<Result<StreamEvent>>) {
    let mut reader = Reader::new(&setup, tx.clone());
    let outcome = tokio::select! {
        () = tx.closed() => Ok(()),
        outcome = reader.read(&setup) => outcome,
    };
    match outcome {
        Ok(()) | Err(Error::Interrupted) => debug!("binlog reader stopped"),
        Err(e) => {
            // The receiver may be gone too: nothing left to tell.
            let _ = tx.send(Err(e)).await;
        }
    }
}

/// An event group (a transaction, or one DDL statement) being read.
struct Group {
    /// Where a restart reads the whole group again.
    start: LogPosition,
    /// The GTID state once it commits.
    gtid_after: Option<Gtid>,
    /// Ends with its next statement (DDL), not with a COMMIT or XID.
    standalone: bool,
    /// `Begin` was handed on: it changes a streamed table.
    begun: bool,
    /// Changes handed on so far (the position of a refused row).
    changes: u64,
    /// MySQL's commit time in µs, from its GTID event.
    commit_time: Option<i64>,
    /// Written by this sync (its `_dmp_origin` row came first): its rows
    /// are not handed on.
    ours: bool,
}

/// What a table id stands for: database, table and column count. Every
/// transaction announces its tables again, mostly with the same ids.
type MapKey = (String, String, u64);

fn map_key(tme: &TableMapEvent<'_>) -> MapKey {
    (
        tme.database_name().into_owned(),
        tme.table_name().into_owned(),
        tme.columns_count(),
    )
}

struct Reader {
    tx: mpsc::Sender<Result<StreamEvent>>,
    /// See [`Setup::skip_flagged`].
    skip_flagged: bool,
    /// See [`Setup::origin`].
    origin: Option<String>,
    tables: Vec<Arc<TableSchema>>,
    database: String,
    columns: HashMap<String, Vec<SourceColumn>>,
    mariadb: bool,
    /// Decoders of the table ids seen (`None` for tables not streamed),
    /// with the table each was made for.
    maps: HashMap<u64, (MapKey, Option<TableRows>)>,
    /// After the last event read; the GTID state of the last whole group.
    at: LogPosition,
    group: Option<Group>,
    /// Inside a MySQL compressed transaction: its end in the file (the
    /// events inside carry no positions of their own).
    payload_end: Option<u64>,
    /// The last position handed on, and when anything was.
    last_sent: Option<Position>,
    last_emit: Instant,
    heartbeat: Duration,
    /// The events carry checksums, and whether the stream's format
    /// description (which tells the parser so) has come yet.
    checksum: bool,
    described: bool,
    /// For the catalog, after a statement changes a table's shape.
    server: Server,
    opts: Opts,
    catalog: Option<Conn>,
    selection: TableSelection,
    /// Tables whose shape was handed on (each is, at its first rows: the
    /// target may not have it).
    announced: HashSet<usize>,
}

impl Reader {
    fn new(setup: &Setup, tx: mpsc::Sender<Result<StreamEvent>>) -> Reader {
        Reader {
            tx,
            skip_flagged: setup.skip_flagged,
            origin: setup.origin.clone(),
            tables: setup.tables.clone(),
            database: setup.database.clone(),
            columns: setup.columns.clone(),
            mariadb: setup.server.mariadb,
            maps: HashMap::new(),
            at: setup.from.clone(),
            group: None,
            payload_end: None,
            last_sent: Some(setup.from.to_position()),
            last_emit: Instant::now(),
            heartbeat: setup.heartbeat.max(Duration::from_millis(100)),
            checksum: false,
            described: false,
            server: setup.server,
            opts: setup.opts.clone(),
            catalog: None,
            selection: setup.selection.clone(),
            announced: HashSet::new(),
        }
    }

    async fn read(&mut self, setup: &Setup) -> Result<()> {
        let mut stream = self.start(setup, &setup.from, false).await?;
        let mut first = true;
        // A server that sends not even heartbeats for this long is gone.
        let silence = self.heartbeat * 3 + Duration::from_secs(30);
        let mut last_heard = Instant::now();
        loop {
            let heartbeat_at = self.last_emit + self.heartbeat;
            let wake = heartbeat_at.min(last_heard + silence);
            let next = tokio::time::timeout_at(wake, stream.next()).await;
            let event = match next {
                Err(_) => {
                    let now = Instant::now();
                    if now >= last_heard + silence {
                        return Err(silent(setup, silence));
                    }
                    if now >= heartbeat_at {
                        self.heartbeat().await?;
                    }
                    continue;
                }
                Ok(None) => {
                    return Err(Error::driver(
                        format!("{}: the binlog stream ended", setup.place),
                        crate::error::driver_error(mysql_async::Error::Driver(
                            mysql_async::DriverError::ConnectionClosed,
                        )),
                    ));
                }
                Ok(Some(Err(mysql_async::Error::Server(e))))
                    if first && e.code == 1236 && self.at.gtid.is_some() =>
                {
                    // The file is gone (purged, or another server after a
                    // failover): ask by GTID state instead.
                    warn!(
                        position = %self.at,
                        error = e.message,
                        "binlog position not available; resuming from its GTID state"
                    );
                    let from = self.at.clone();
                    stream = self.start(setup, &from, true).await?;
                    first = false;
                    continue;
                }
                Ok(Some(Err(e))) => return Err(dump_error(e, setup, &self.at)),
                Ok(Some(Ok(event))) => event,
            };
            first = false;
            last_heard = Instant::now();
            self.event(&event, &stream).await?;
        }
    }

    async fn start(
        &mut self,
        setup: &Setup,
        from: &LogPosition,
        by_gtid: bool,
    ) -> Result<BinlogStream> {
        let opened = connect(setup, from, by_gtid).await?;
        self.checksum = opened.checksum;
        self.described = false;
        Ok(opened.stream)
    }

    /// Hands an event on; the receiver gone stops the reader.
    async fn send(&mut self, event: StreamEvent) -> Result<()> {
        self.last_emit = Instant::now();
        self.tx
            .send(Ok(event))
            .await
            .map_err(|_| Error::Interrupted)
    }

    async fn heartbeat(&mut self) -> Result<()> {
        self.last_emit = Instant::now();
        let position = match &self.group {
            Some(g) if g.begun => return Ok(()),
            Some(g) => g.start.to_position(),
            None => self.at.to_position(),
        };
        if self.last_sent.as_ref() == Some(&position) {
            return Ok(());
        }
        self.last_sent = Some(position.clone());
        self.send(StreamEvent::Heartbeat { position }).await
    }

    async fn event(&mut self, event: &Event, stream: &BinlogStream) -> Result<()> {
        let header = event.header();
        let kind = header.event_type_raw();
        let log_pos = u64::from(header.log_pos());
        let size = u64::from(header.event_size());
        let artificial = header.flags_raw() & LOG_EVENT_ARTIFICIAL_F != 0 || log_pos == 0;
        // Where this event starts in its file (groups restart there).
        let start = (!artificial && log_pos >= size).then(|| log_pos - size);
        let ctx = || format!("binlog event at {}", self.at);
        let is = |t: EventType| kind == t as u8;
        if is(EventType::ROTATE_EVENT) {
            let rotate: RotateEvent<'_> = event.read_event().context(ctx)?;
            let mut name = rotate.name_raw();
            if self.checksum && !self.described {
                // Before the format description the parser does not know
                // that a checksum ends the event: it is read as the name's.
                name = &name[..name.len().saturating_sub(4)];
            }
            self.at.file = String::from_utf8_lossy(name).into_owned();
            self.at.pos = rotate.position();
            if !artificial {
                // Table ids are only valid within their file.
                self.maps.clear();
            }
            return Ok(());
        }
        if is(EventType::FORMAT_DESCRIPTION_EVENT) {
            self.described = true;
        }
        if is(EventType::HEARTBEAT_EVENT) || kind == HEARTBEAT_V2 {
            return Ok(());
        }
        if MARIA_COMPRESSED.contains(&kind) {
            return Err(Error::Unsupported(format!(
                "compressed binlog event (type {kind}) at {}: turn log_bin_compress off",
                self.at
            )));
        }
        if is(EventType::TRANSACTION_PAYLOAD_EVENT) {
            self.payload_end = Some(log_pos);
            return Ok(());
        }
        if is(EventType::GTID_EVENT)
            || is(EventType::ANONYMOUS_GTID_EVENT)
            || is(EventType::GTID_TAGGED_LOG_EVENT)
        {
            let gtid: GtidEvent = event.read_event().context(ctx)?;
            let mut after = self.at.gtid.clone();
            if !is(EventType::ANONYMOUS_GTID_EVENT) {
                let tag = gtid
                    .tag()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default();
                after
                    .get_or_insert_with(|| Gtid::Mysql(Default::default()))
                    .add_mysql(Uuid::from_bytes(gtid.sid()), &tag, gtid.gno());
            }
            let micros = i64::try_from(gtid.immediate_commit_timestamp()).unwrap_or(0);
            // MySQL: a DDL until a BEGIN says it is a transaction.
            self.open_group(start, after, true, (micros > 0).then_some(micros));
        } else if kind == MARIA_GTID {
            let data = event.data();
            let (Some(seq), Some(domain), Some(flags)) = (
                data.get(0..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes),
                data.get(8..12)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes),
                data.get(12).copied(),
            ) else {
                return Err(Error::Data(format!(
                    "MariaDB GTID event at {} is too short",
                    self.at
                )));
            };
            let mut after = self.at.gtid.clone();
            after
                .get_or_insert_with(|| Gtid::Maria(Default::default()))
                .add_maria(domain, header.server_id(), seq);
            self.open_group(start, after, flags & FL_STANDALONE != 0, None);
        } else if is(EventType::QUERY_EVENT) {
            let query: QueryEvent<'_> = event.read_event().context(ctx)?;
            let ours = self.skip_flagged && header.flags_raw() & LOG_EVENT_SKIP_REPLICATION_F != 0;
            self.query(&query, start, log_pos, header.timestamp(), ours)
                .await?;
        } else if is(EventType::XID_EVENT) {
            self.commit(log_pos, header.timestamp()).await?;
        } else if is(EventType::XA_PREPARE_LOG_EVENT) {
            if self.group.as_ref().is_some_and(|g| g.begun) {
                return Err(Error::SourceChanged(format!(
                    "an XA transaction changes streamed tables at {}: XA transactions are \
                     not streamed",
                    self.at
                )));
            }
            self.commit(log_pos, header.timestamp()).await?;
        } else if is(EventType::TABLE_MAP_EVENT) {
            let data = event.read_data().context(ctx)?;
            if let Some(EventData::TableMapEvent(tme)) = data
                && self
                    .maps
                    .get(&tme.table_id())
                    .is_some_and(|(key, _)| *key != map_key(&tme))
            {
                // The id now stands for another table.
                self.maps.remove(&tme.table_id());
            }
        } else if let Some(rows_kind) = rows_kind(kind) {
            let data = event.read_data().context(ctx)?;
            let Some(EventData::RowsEvent(rows)) = data else {
                return Err(Error::Data(format!(
                    "row event at {} could not be read",
                    self.at
                )));
            };
            self.rows(&rows, rows_kind, start, stream).await?;
        }
        if !artificial && self.payload_end.is_none() {
            self.at.pos = log_pos;
        }
        Ok(())
    }

    fn open_group(
        &mut self,
        start: Option<u64>,
        gtid_after: Option<Gtid>,
        standalone: bool,
        commit_time: Option<i64>,
    ) {
        let mut at = self.at.clone();
        if let Some(start) = start {
            at.pos = start;
        }
        self.group = Some(Group {
            start: at,
            gtid_after,
            standalone,
            begun: false,
            changes: 0,
            commit_time,
            ours: false,
        });
    }

    /// The group being read, opened here if its start was not seen.
    fn group(&mut self, start: Option<u64>) -> &mut Group {
        let at = &self.at;
        self.group.get_or_insert_with(|| {
            let mut begin = at.clone();
            if let Some(start) = start {
                begin.pos = start;
            }
            Group {
                gtid_after: at.gtid.clone(),
                start: begin,
                standalone: false,
                begun: false,
                changes: 0,
                commit_time: None,
                ours: false,
            }
        })
    }

    /// Hands on `Begin` before the group's first change.
    async fn begin(&mut self, start: Option<u64>) -> Result<()> {
        let group = self.group(start);
        if group.begun {
            return Ok(());
        }
        group.begun = true;
        let log = group.start.to_string();
        self.send(StreamEvent::Begin { log }).await
    }

    /// The group ends after the event ending at `log_pos`.
    async fn commit(&mut self, log_pos: u64, timestamp: u32) -> Result<()> {
        let end = self.payload_end.take().unwrap_or(log_pos);
        let Some(group) = self.group.take() else {
            if end > 0 {
                self.at.pos = end;
            }
            return Ok(());
        };
        if end > 0 {
            self.at.pos = end;
        }
        if group.gtid_after.is_some() {
            self.at.gtid = group.gtid_after;
        }
        if !group.begun {
            return Ok(());
        }
        let position = self.at.to_position();
        self.last_sent = Some(position.clone());
        let commit_time = group
            .commit_time
            .or_else(|| Some(i64::from(timestamp) * 1_000_000));
        self.send(StreamEvent::Commit {
            position,
            commit_time,
        })
        .await
    }

    /// The index of a streamed table named in a statement.
    fn streamed(&self, name: &TableName, default_db: &str) -> Option<usize> {
        let database = name.database.as_deref().unwrap_or(default_db);
        self.tables.iter().position(|t| {
            t.namespace
                .as_deref()
                .unwrap_or(&self.database)
                .eq_ignore_ascii_case(database)
                && t.name.eq_ignore_ascii_case(&name.name)
        })
    }

    async fn query(
        &mut self,
        query: &QueryEvent<'_>,
        start: Option<u64>,
        log_pos: u64,
        timestamp: u32,
        ours: bool,
    ) -> Result<()> {
        let sql = query.query();
        let schema = query.schema();
        let statement = classify(&sql);
        match statement {
            Statement::Begin => {
                let group = self.group(start);
                group.standalone = false;
                return Ok(());
            }
            Statement::Commit | Statement::Rollback => {
                return self.commit(log_pos, timestamp).await;
            }
            // A two-way sync's own truncate (of its first load's
            // preparation, or carried from the other side): not a change
            // of this side's. Its DDL still tells this stream the tables'
            // new shapes.
            Statement::Truncate(_) | Statement::Dml(_) if ours => {}
            Statement::Truncate(name) => {
                if let Some(table) = self.streamed(&name, &schema) {
                    self.begin(start).await?;
                    if let Some(group) = &mut self.group {
                        group.changes += 1;
                    }
                    self.send(StreamEvent::Truncate {
                        tables: vec![table],
                    })
                    .await?;
                }
            }
            Statement::Ddl { verb, tables } => {
                self.ddl(verb, &tables, &schema, &sql, start).await?;
            }
            Statement::Dml(name) => {
                if let Some(table) = self.streamed(&name, &schema) {
                    return Err(Error::SourceChanged(format!(
                        "a change to streamed table {} was logged as a statement at {} \
                         (`{}`): change data capture needs binlog_format=ROW for every session",
                        self.tables[table].name,
                        self.at,
                        sql.trim()
                    )));
                }
            }
            Statement::Other => {}
        }
        if self.group.as_ref().is_none_or(|g| g.standalone) {
            self.commit(log_pos, timestamp).await?;
        }
        Ok(())
    }

    /// A statement that changes tables' shapes: each streamed table it
    /// names (and a new one the selection takes) is read again from the
    /// catalog and handed on as a change of shape, in the statement's own
    /// group (so that the stream resumes at it, or after it).
    async fn ddl(
        &mut self,
        verb: &str,
        tables: &[TableName],
        default_db: &str,
        sql: &str,
        start: Option<u64>,
    ) -> Result<()> {
        let here = |name: &TableName| {
            name.database
                .as_deref()
                .unwrap_or(default_db)
                .eq_ignore_ascii_case(&self.database)
        };
        match verb {
            "ALTER TABLE" => {
                let Some(index) = tables.first().and_then(|t| self.streamed(t, default_db)) else {
                    return Ok(());
                };
                let name = self.tables[index].name.clone();
                let mut schema = (*self.tables[index]).clone();
                let mut columns = self.columns.get(&name).cloned().unwrap_or_default();
                match alter::apply(sql, self.server, &mut schema, &mut columns) {
                    Ok(altered) => {
                        let event = match &altered.table {
                            Some(_) => TableEvent::Renamed(name.clone()),
                            None => TableEvent::Altered,
                        };
                        let change = SchemaChange {
                            schema: Arc::new(schema),
                            event,
                            statement: Some(sql.trim().to_string()),
                            renamed: altered.renamed,
                            dropped: altered.dropped,
                        };
                        self.announce(index, &name, change, Some(columns), start)
                            .await
                    }
                    Err(why) => {
                        // The catalog then: right unless the source changed
                        // the table again since.
                        warn!(
                            table = name,
                            statement = sql.trim(),
                            why,
                            "statement not read; the table's shape is taken from the catalog"
                        );
                        let renames = alter_renames(sql);
                        let (event, new_name) = match &renames.table {
                            Some(to) => (TableEvent::Renamed(name.clone()), to.name.clone()),
                            None => (TableEvent::Altered, name.clone()),
                        };
                        self.reshape(Some(index), &new_name, event, sql, renames.columns, start)
                            .await
                    }
                }
            }
            "CREATE TABLE" => match tables.first() {
                Some(t)
                    if here(t)
                        && self.streamed(t, default_db).is_none()
                        && self.selection.matches(&t.name)
                        && !dmp_model::is_dmp_table(&t.name) =>
                {
                    self.reshape(None, &t.name, TableEvent::Created, sql, Vec::new(), start)
                        .await
                }
                _ => Ok(()),
            },
            "DROP TABLE" => {
                for t in tables {
                    if let Some(index) = self.streamed(t, default_db) {
                        let name = self.tables[index].name.clone();
                        self.reshape(
                            Some(index),
                            &name,
                            TableEvent::Dropped,
                            sql,
                            Vec::new(),
                            start,
                        )
                        .await?;
                    }
                }
                Ok(())
            }
            // `a TO b, c TO d`
            _ => {
                for pair in tables.chunks(2) {
                    if let [from, to] = pair
                        && let Some(index) = self.streamed(from, default_db)
                    {
                        let event = TableEvent::Renamed(self.tables[index].name.clone());
                        self.reshape(Some(index), &to.name, event, sql, Vec::new(), start)
                            .await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Reads table `name` from the catalog and hands its shape on as
    /// streamed table `index` (a new one when `None`).
    async fn reshape(
        &mut self,
        index: Option<usize>,
        name: &str,
        event: TableEvent,
        sql: &str,
        renamed: Vec<(String, String)>,
        start: Option<u64>,
    ) -> Result<()> {
        let schema = if event == TableEvent::Dropped {
            index.map(|i| (*self.tables[i]).clone())
        } else {
            self.catalog_table(name).await?
        };
        let Some(schema) = schema else {
            // Gone again since (a later statement): its rows can only come
            // in a shape the catalog no longer tells.
            return Err(Error::SourceChanged(format!(
                "table {name} changed at {} (`{}`) and is gone from the catalog since: the \
                 stream cannot read it from here; copy it again (run with --restart)",
                self.at,
                sql.trim()
            )));
        };
        let dropped = index.map_or_else(Vec::new, |i| {
            self.tables[i]
                .columns
                .iter()
                .filter(|c| {
                    schema.column_index(&c.name).is_none()
                        && !renamed.iter().any(|(from, _)| *from == c.name)
                })
                .map(|c| c.name.clone())
                .collect()
        });
        let columns = if event == TableEvent::Dropped {
            None
        } else {
            let database = self.database.clone();
            let conn = self.catalog().await?;
            columns::load(conn, &database, &[name]).await?.remove(name)
        };
        let old = index.map_or_else(|| name.to_string(), |i| self.tables[i].name.clone());
        let change = SchemaChange {
            schema: Arc::new(schema),
            event,
            statement: Some(sql.trim().to_string()),
            renamed,
            dropped,
        };
        match index {
            Some(i) => self.announce(i, &old, change, columns, start).await,
            None => {
                self.tables.push(change.schema.clone());
                let i = self.tables.len() - 1;
                self.announce(i, &old, change, columns, start).await
            }
        }
    }

    /// Takes `change` as streamed table `index`'s shape (known as `old`
    /// until now) and hands it on, in the group of the statement.
    async fn announce(
        &mut self,
        index: usize,
        old: &str,
        change: SchemaChange,
        columns: Option<Vec<SourceColumn>>,
        start: Option<u64>,
    ) -> Result<()> {
        let name = change.schema.name.clone();
        self.columns.remove(old);
        if let Some(columns) = columns {
            self.columns.insert(name.clone(), columns);
        }
        self.tables[index] = change.schema.clone();
        // Decoders of the table's old shape go; its next table map makes one.
        self.maps
            .retain(|_, (_, decoder)| decoder.as_ref().is_none_or(|d| d.table != index));
        self.announced.insert(index);
        info!(
            table = name,
            statement = change.statement.as_deref().unwrap_or(""),
            "a streamed table changed shape at the source"
        );
        self.begin(start).await?;
        self.send(StreamEvent::Schema {
            table: index,
            change,
        })
        .await
    }

    /// The session the catalog is read on, opened at first need.
    async fn catalog(&mut self) -> Result<&mut Conn> {
        if self.catalog.is_none() {
            let conn = Conn::new(self.opts.clone())
                .await
                .context(|| format!("connecting to read the catalog of {}", self.database))?;
            self.catalog = Some(conn);
        }
        self.catalog
            .as_mut()
            .ok_or_else(|| Error::Data("the catalog session is missing".into()))
    }

    async fn catalog_table(&mut self, name: &str) -> Result<Option<TableSchema>> {
        let (server, database) = (self.server, self.database.clone());
        let conn = self.catalog().await?;
        let found =
            super::super::catalog::discover(conn, server, &database, None, Some(name)).await?;
        Ok(found.into_iter().next().map(|d| d.schema))
    }

    async fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        kind: RowsKind,
        start: Option<u64>,
        stream: &BinlogStream,
    ) -> Result<()> {
        let table_id = rows.table_id();
        let Some(tme) = stream.get_tme(table_id) else {
            return Err(Error::Data(format!(
                "row event at {} names table id {table_id}, which no table map announced",
                self.at
            )));
        };
        if let Some(origin) = &self.origin
            && tme.table_name() == crate::origin::ORIGIN_TABLE
            && tme.database_name() == self.database
        {
            // A transaction's first row: whose write it is.
            if crate::origin::names(rows, tme, origin) {
                self.group(start).ours = true;
            }
            return Ok(());
        }
        if self.group.as_ref().is_some_and(|g| g.ours) {
            return Ok(());
        }
        if !self.maps.contains_key(&table_id) {
            let database = tme.database_name();
            let name = tme.table_name();
            let found = self.tables.iter().position(|t| {
                t.namespace.as_deref().unwrap_or(&self.database) == database && t.name == name
            });
            let decoder = match found {
                Some(index) => {
                    // The rows' own shape, which may be older than the
                    // catalog the stream started with.
                    let known = self
                        .columns
                        .get(&self.tables[index].name)
                        .map_or(&[][..], Vec::as_slice);
                    let (shape, source) = map_shape(&self.tables[index], known, tme)?;
                    let shape = Arc::new(shape);
                    if *shape != *self.tables[index] {
                        self.tables[index] = shape.clone();
                        self.announced.remove(&index);
                    }
                    let decoder = TableRows::new(index, shape.clone(), &source, tme, self.mariadb)?;
                    self.columns.insert(shape.name.clone(), source);
                    Some(decoder)
                }
                None => None,
            };
            self.maps.insert(table_id, (map_key(tme), decoder));
        }
        let Some((_, Some(decoder))) = self.maps.get(&table_id) else {
            return Ok(());
        };
        let index = decoder.table;
        self.begin(start).await?;
        if self.announced.insert(index) {
            // The stream's first word on the table: its shape, which the
            // target may not have yet (changed while the stream stopped).
            let change = SchemaChange {
                schema: self.tables[index].clone(),
                event: TableEvent::Altered,
                statement: None,
                renamed: Vec::new(),
                dropped: Vec::new(),
            };
            self.send(StreamEvent::Schema {
                table: index,
                change,
            })
            .await?;
        }
        let before: Vec<usize> = rows
            .columns_before_image()
            .map(|b| b.iter_ones().collect())
            .unwrap_or_default();
        let after: Vec<usize> = rows
            .columns_after_image()
            .map(|b| b.iter_ones().collect())
            .unwrap_or_default();
        let begin_log = self
            .group
            .as_ref()
            .map_or_else(|| self.at.to_string(), |g| g.start.to_string());
        for row in rows.rows(tme) {
            let skip = self.group.as_ref().map_or(0, |g| g.changes);
            if let Some(group) = &mut self.group {
                group.changes += 1;
            }
            let Some((_, Some(decoder))) = self.maps.get_mut(&table_id) else {
                return Ok(());
            };
            let table = decoder.table;
            let event = match row {
                Ok((old, new)) => match decoder.change(
                    kind,
                    old.map(|r| (r, before.as_slice())),
                    new.map(|r| (r, after.as_slice())),
                ) {
                    Ok(change) => StreamEvent::Change { table, change },
                    Err(refusal) => StreamEvent::Reject {
                        table,
                        reject: Reject {
                            stage: RejectStage::Source,
                            error: format!("table {}: {}", decoder.schema.name, refusal.error),
                            row: refusal.row,
                            position: Position::Log {
                                log: begin_log.clone(),
                                skip,
                            },
                        },
                    },
                },
                Err(e) => {
                    // The rest of the event cannot be found after a row
                    // that does not parse: one reject stands for them.
                    let reject = Reject {
                        stage: RejectStage::Source,
                        error: format!(
                            "table {}: a row event that does not parse: {e}",
                            decoder.schema.name
                        ),
                        row: serde_json::Value::Null,
                        position: Position::Log {
                            log: begin_log.clone(),
                            skip,
                        },
                    };
                    self.send(StreamEvent::Reject { table, reject }).await?;
                    break;
                }
            };
            self.send(event).await?;
        }
        Ok(())
    }
}

fn rows_kind(kind: u8) -> Option<RowsKind> {
    let is = |t: EventType| kind == t as u8;
    if is(EventType::WRITE_ROWS_EVENT) || is(EventType::WRITE_ROWS_EVENT_V1) {
        Some(RowsKind::Insert)
    } else if is(EventType::UPDATE_ROWS_EVENT)
        || is(EventType::UPDATE_ROWS_EVENT_V1)
        || is(EventType::PARTIAL_UPDATE_ROWS_EVENT)
    {
        Some(RowsKind::Update)
    } else if is(EventType::DELETE_ROWS_EVENT) || is(EventType::DELETE_ROWS_EVENT_V1) {
        Some(RowsKind::Delete)
    } else {
        None
    }
}

/// A connection of its own, registered as replica `server_id`, dumping
/// from `from` (by file and offset, or by its GTID state).
async fn connect(setup: &Setup, from: &LogPosition, by_gtid: bool) -> Result<Opened> {
    let place = &setup.place;
    let ctx = || format!("{place}: opening the binlog stream at {from}");
    let mut conn = Conn::new(setup.opts.clone()).await.context(ctx)?;
    let checksum: Option<String> = conn
        .query_first("SELECT @@GLOBAL.binlog_checksum")
        .await
        .context(ctx)?;
    let checksum = checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
    let nanos = u64::try_from(setup.heartbeat.as_nanos()).unwrap_or(u64::MAX);
    conn.query_drop(format!("SET @master_heartbeat_period = {nanos}"))
        .await
        .context(ctx)?;
    if setup.server.mariadb {
        // 4 = MARIA_SLAVE_CAPABILITY_GTID: GTID events as they are.
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .context(ctx)?;
    }
    let file = from.file.clone().into_bytes();
    let mut request = BinlogStreamRequest::new(setup.server_id);
    match (&from.gtid, by_gtid) {
        (Some(gtid @ Gtid::Maria(_)), true) => {
            conn.exec_drop("SET @slave_connect_state = ?", (gtid.to_string(),))
                .await
                .context(ctx)?;
            conn.query_drop("SET @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0")
                .await
                .context(ctx)?;
        }
        (Some(gtid @ Gtid::Mysql(_)), true) => {
            let (sids, tagged) = gtid.mysql_sids();
            if tagged > 0 {
                warn!(
                    tagged,
                    "tagged GTID sets cannot be sent: their transactions are streamed again \
                     (applying is idempotent)"
                );
            }
            request = request.with_gtid().with_gtid_set(sids);
        }
        _ => {
            request = request.with_filename(&file).with_pos(from.pos);
        }
    }
    info!(
        server_id = setup.server_id,
        position = %from,
        by_gtid,
        "binlog stream opening"
    );
    let stream = conn
        .get_binlog_stream(request)
        .await
        .map_err(|e| dump_error(e, setup, from))?;
    Ok(Opened { stream, checksum })
}

/// A dump refused for missing privileges says which; a missing file says
/// what to do.
fn dump_error(e: mysql_async::Error, setup: &Setup, at: &LogPosition) -> Error {
    match &e {
        mysql_async::Error::Server(s) if matches!(s.code, 1045 | 1227 | 1044) => {
            Error::Config(format!(
                "{}: the server refused the binlog stream ({}): the user needs {PRIVILEGES}",
                setup.place, s.message
            ))
        }
        mysql_async::Error::Server(s) if s.code == 1236 => Error::Config(format!(
            "{}: the server cannot send its binlog from {at} ({}); if the file was purged, \
             copy the tables again (mode = \"full+cdc\" with --restart)",
            setup.place, s.message
        )),
        _ => Error::driver(
            format!("{}: reading the binlog at {at}", setup.place),
            crate::error::driver_error(e),
        ),
    }
}

fn silent(setup: &Setup, silence: Duration) -> Error {
    Error::driver(
        format!(
            "{}: nothing came from the binlog stream for {}s, heartbeats included",
            setup.place,
            silence.as_secs()
        ),
        crate::error::driver_error(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "binlog stream silent"),
        ))),
    )
}
