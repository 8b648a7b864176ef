//! Reads PostgreSQL tables: each chunk is one `COPY (SELECT … ORDER BY pk)
//! TO STDOUT (FORMAT binary)` inside a read-only transaction that adopts
//! the source's exported snapshot, so all chunks see the same data. The
//! stream is decoded as it arrives straight into model values; a value the
//! model cannot hold refuses its row (a source reject), never the chunk.
//!
//! The snapshot is exported lazily, by the first `read_chunk`, so that
//! discovery and planning (and `dmp plan`) hold no transaction open; it
//! lives as long as the source, or as the session holding it: when a cut
//! connection takes it along, the chunks not started yet read a fresh one
//! (as a resumed run does), and the position reported for a change stream
//! stays the first one's, at or before everything read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::catalog::{self, SourceTable};
use super::chunks;
use super::config::PgConfig;
use super::copy_binary::{CopyDecoder, FieldSpan, Undecodable, Wire, decode_value};
use super::snapshot::Snapshot;
use super::sql::{qualified, quote_ident, typed_literal};
use super::wire::TupleDecoder;
use crate::error::{Error, Result, ResultExt};
use crate::options::PgSourceOptions;
use dmp_contract::Endpoint;
use dmp_contract::{BatchStream, Head, Oversized, ReadLimits, Source, SourceOptions};
use dmp_model::{
    Batch, Change, Chunk, Position, Reject, RejectStage, Row, SchemaObjects, TableSchema,
    TableSelection, Value, WireFormat, WireRows, json::row_to_json,
};

pub struct PostgresSource {
    inner: Arc<Inner>,
}

struct Inner {
    config: PgConfig,
    pool: PgPool,
    /// Read plans of the tables discovered by this process.
    tables: Mutex<HashMap<String, Arc<SourceTable>>>,
    /// The snapshot chunks adopt now; `None` until the first read.
    snapshot: tokio::sync::Mutex<Option<Arc<Snapshot>>>,
    /// The position of the first snapshot read from.
    first_position: std::sync::OnceLock<String>,
    /// Where the snapshots exported by this source's change stream stand.
    exported: Arc<super::replication::ExportedSnapshots>,
    /// `[run] batch_bytes`: where batches end besides their row count.
    limits: ReadLimits,
    /// `[source.options]`, and the endpoint its mistakes name.
    own: PgSourceOptions,
    endpoint: Endpoint,
}

impl PostgresSource {
    pub fn open(endpoint: &Endpoint, options: SourceOptions, limits: ReadLimits) -> Result<Self> {
        let config = PgConfig::parse(endpoint)?;
        // One session per reader, and one for discovery and planning.
        let pool = config.pool(options.readers.max(1) + 1);
        Ok(PostgresSource {
            inner: Arc::new(Inner {
                config,
                pool,
                own: endpoint.options()?,
                endpoint: endpoint.clone(),
                tables: Mutex::new(HashMap::new()),
                snapshot: tokio::sync::Mutex::new(None),
                first_position: std::sync::OnceLock::new(),
                exported: Arc::default(),
                limits,
            }),
        })
    }
}

impl PostgresSource {
    /// Reads a chunk on its own task; `wire`: rows left as tuples.
    fn spawn_read(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
        wire: bool,
    ) -> BatchStream {
        let inner = self.inner.clone();
        BatchStream::spawn(move |tx| async move {
            let read = ChunkRead {
                resume,
                batch_rows: batch_rows.max(1),
                wire,
            };
            read_chunk(&inner, table, &chunk, read, &tx).await
        })
    }

    /// What `dmp verify`'s checksum queries run on: the pool, the schema
    /// and the place to name in errors.
    pub(super) fn checksum_session(&self) -> (&PgPool, &str, &str) {
        let inner = &self.inner;
        (&inner.pool, &inner.config.schema, inner.place())
    }
}

impl Inner {
    fn place(&self) -> &str {
        &self.config.place
    }

    /// The read plan of `name`, from this process's discovery or the
    /// catalog.
    async fn table(&self, name: &str) -> Result<Arc<SourceTable>> {
        if let Some(t) = self.cached(name) {
            return Ok(t);
        }
        let found = catalog::discover(
            &self.pool,
            &self.config.schema,
            self.place(),
            None,
            Some(name),
        )
        .await?;
        let table = found.into_iter().next().map(Arc::new).ok_or_else(|| {
            Error::Config(format!(
                "{}: table {}.{name} no longer exists",
                self.place(),
                self.config.schema
            ))
        })?;
        self.remember(&table);
        Ok(table)
    }

    fn cached(&self, name: &str) -> Option<Arc<SourceTable>> {
        self.tables.lock().ok()?.get(name).cloned()
    }

    fn remember(&self, table: &Arc<SourceTable>) {
        if let Ok(mut tables) = self.tables.lock() {
            tables.insert(table.schema.name.clone(), table.clone());
        }
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let mut current = self.snapshot.lock().await;
        if let Some(snapshot) = &*current {
            return Ok(snapshot.clone());
        }
        let snapshot = Arc::new(Snapshot::export(&self.config).await?);
        let _ = self.first_position.set(snapshot.position());
        *current = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// A fresh snapshot in place of `lost`, whose holding session is gone,
    /// unless another reader replaced it already.
    async fn renew_snapshot(&self, lost: &Arc<Snapshot>) -> Result<Arc<Snapshot>> {
        let mut current = self.snapshot.lock().await;
        if let Some(snapshot) = &*current
            && !Arc::ptr_eq(snapshot, lost)
        {
            return Ok(snapshot.clone());
        }
        warn!(
            lost = lost.id,
            "the source's snapshot ended with its session; chunks not started yet read a new one"
        );
        let snapshot = Arc::new(Snapshot::export(&self.config).await?);
        *current = Some(snapshot.clone());
        Ok(snapshot)
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn server_time(&self) -> Result<Option<i64>> {
        let inner = &self.inner;
        let micros: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
                .fetch_one(&inner.pool)
                .await
                .context(|| format!("{}: reading the server's clock", inner.place()))?;
        Ok(Some(micros))
    }

    async fn discover(&self, selection: &TableSelection) -> Result<Vec<TableSchema>> {
        let inner = &self.inner;
        inner.config.check_reachable().await?;
        let tables = catalog::discover(
            &inner.pool,
            &inner.config.schema,
            inner.place(),
            Some(selection),
            None,
        )
        .await?;
        Ok(tables
            .into_iter()
            .map(|t| {
                let t = Arc::new(t);
                inner.remember(&t);
                t.schema.clone()
            })
            .collect())
    }

    async fn objects(
        &self,
        selection: &TableSelection,
        tables: &[TableSchema],
    ) -> Result<SchemaObjects> {
        let inner = &self.inner;
        catalog::objects(
            &inner.pool,
            &inner.config.schema,
            inner.place(),
            selection,
            tables,
        )
        .await
    }

    async fn plan_snapshot(&self, table: &TableSchema, chunk_rows: u64) -> Result<Vec<Chunk>> {
        let source = self.inner.table(&table.name).await?;
        chunks::plan(&self.inner.pool, &source, chunk_rows, self.inner.place()).await
    }

    fn read_chunk(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream {
        self.spawn_read(table, chunk, resume, batch_rows, false)
    }

    async fn wire_format(&self, table: &TableSchema) -> Result<Option<WireFormat>> {
        Ok(super::wire::format(&*self.inner.table(&table.name).await?))
    }

    fn read_chunk_wire(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream {
        self.spawn_read(table, chunk, resume, batch_rows, true)
    }

    fn read_incremental(
        &self,
        table: Arc<TableSchema>,
        cursor: usize,
        after: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let inner = self.inner.clone();
        let name = table.name.clone();
        let plan = async move { inner.table(&name).await };
        super::incremental::read(
            self.inner.pool.clone(),
            self.inner.place().to_string(),
            plan,
            table,
            cursor,
            after,
            batch_rows,
            self.inner.limits,
        )
    }

    fn snapshot_position(&self) -> Option<String> {
        self.inner.first_position.get().cloned()
    }

    async fn share_snapshot(&self) -> Result<Option<String>> {
        Ok(Some(self.inner.snapshot().await?.id.clone()))
    }

    fn use_snapshot(&self, snapshot: String) -> Result<()> {
        let taken = || {
            Error::Data(format!(
                "{}: the snapshot was taken already; the change stream's cannot replace it",
                self.inner.place()
            ))
        };
        let mut current = self.inner.snapshot.try_lock().map_err(|_| taken())?;
        if current.is_some() {
            return Err(taken());
        }
        let lsn = self.inner.exported.lsn(&snapshot);
        let snapshot = Arc::new(Snapshot::imported(snapshot, lsn));
        let _ = self.inner.first_position.set(snapshot.position());
        *current = Some(snapshot);
        Ok(())
    }

    fn checksums(&self) -> Option<&dyn dmp_contract::Checksums> {
        Some(self)
    }

    fn changes(
        &self,
        options: &dmp_contract::ChangeOptions,
    ) -> Result<Option<Arc<dyn dmp_contract::ChangeSource>>> {
        let options = self.inner.own.apply(&self.inner.endpoint, options)?;
        Ok(Some(Arc::new(super::replication::PgChangeSource::new(
            &self.inner.config,
            &options,
            self.inner.exported.clone(),
        )?)))
    }
}

/// How a chunk read ended.
enum Outcome {
    /// The whole chunk was read and the last batch handed on.
    Finished,
    /// The consumer went away: the session is closed rather than drained.
    Abandoned,
}

/// How a chunk is read: after where, in batches of how many rows, and
/// whether rows stay in wire form.
struct ChunkRead {
    resume: Position,
    batch_rows: usize,
    wire: bool,
}

async fn read_chunk(
    inner: &Inner,
    schema: Arc<TableSchema>,
    chunk: &Chunk,
    read: ChunkRead,
    tx: &mpsc::Sender<Result<Batch>>,
) -> Result<()> {
    let ChunkRead {
        resume,
        batch_rows,
        wire,
    } = read;
    let table = inner.table(&schema.name).await?;
    let planned: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let current: Vec<&str> = table
        .schema
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    if planned != current {
        return Err(Error::Config(format!(
            "{}: the columns of table {} changed since the run was planned ({} → {}); run with --restart",
            inner.place(),
            schema.name,
            planned.join(", "),
            current.join(", ")
        )));
    }
    let lower = match resume {
        Position::Start => chunk.lower.clone(),
        Position::Key { key } => Some(key),
        Position::Record { index } => {
            return Err(Error::Data(format!(
                "{}: table {} has no primary key and cannot resume after row {index}; run with --restart",
                inner.place(),
                schema.name
            )));
        }
        other @ (Position::Cursor { .. } | Position::Log { .. }) => {
            return Err(Error::Data(format!(
                "{}: table {}: a snapshot chunk cannot resume at {other:?}; run with --restart",
                inner.place(),
                schema.name
            )));
        }
    };
    let sql = chunk_query(&table, lower.as_deref(), chunk.upper.as_deref())?;
    debug!(table = schema.name, chunk = chunk.id, sql, "reading chunk");
    let snapshot = inner.snapshot().await?;
    let ctx = || {
        format!(
            "{}: reading table {} chunk {}",
            inner.place(),
            schema.name,
            chunk.id
        )
    };
    let mut conn = inner.pool.acquire().await.context(ctx)?;
    let wire = wire
        .then(|| super::wire::format(&table))
        .flatten()
        .map(|format| WireBuffer {
            format: Arc::new(format),
            decoder: TupleDecoder::new(&table, &schema),
            bytes: Vec::new(),
            rows: 0,
            last: 0,
        });
    let mut reader = ChunkReader {
        schema: schema.clone(),
        table: &table,
        chunk: chunk.id,
        batch_rows,
        limits: inner.limits,
        changes: Vec::with_capacity(if wire.is_some() { 0 } else { batch_rows }),
        rejects: Vec::new(),
        wire,
        last_key: lower,
        rows: 0,
        bytes: 0,
        refused_last: false,
    };
    let mut outcome = reader.run(&mut conn, &snapshot, &sql, tx).await;
    if matches!(outcome, Err(ReadError::SnapshotLost(_))) {
        // Nothing was read: start over on a fresh session and snapshot.
        conn.close_on_drop();
        drop(conn);
        let fresh = inner.renew_snapshot(&snapshot).await?;
        conn = inner.pool.acquire().await.context(ctx)?;
        outcome = reader.run(&mut conn, &fresh, &sql, tx).await;
    }
    if !matches!(outcome, Ok(Outcome::Finished)) {
        // A COPY stopped half way leaves rows in flight: close the session
        // rather than hand it back to be drained.
        conn.close_on_drop();
    }
    outcome.map(|_| ()).context_chunk(ctx)
}

/// Adds the chunk to the context of a database error.
trait ChunkContext<T> {
    fn context_chunk(self, ctx: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ChunkContext<T> for std::result::Result<T, ReadError> {
    fn context_chunk(self, ctx: impl FnOnce() -> String) -> Result<T> {
        match self {
            Ok(v) => Ok(v),
            Err(ReadError::Db(e) | ReadError::SnapshotLost(e)) => Err(e).context(ctx),
            Err(ReadError::Other(e)) => Err(e),
        }
    }
}

enum ReadError {
    Db(sqlx::Error),
    /// The snapshot could not be adopted: its holder is gone.
    SnapshotLost(sqlx::Error),
    Other(Error),
}

impl From<sqlx::Error> for ReadError {
    fn from(e: sqlx::Error) -> Self {
        ReadError::Db(e)
    }
}

/// `COPY (SELECT … WHERE (pk) > (lower) AND (pk) <= (upper) ORDER BY pk)`.
fn chunk_query(
    table: &SourceTable,
    lower: Option<&[Value]>,
    upper: Option<&[Value]>,
) -> Result<String> {
    let schema = &table.schema;
    let from = qualified(
        schema.namespace.as_deref().unwrap_or("public"),
        &schema.name,
    );
    let keys = schema.primary_key_indices();
    let key_list = keys
        .iter()
        .map(|&k| quote_ident(&schema.columns[k].name))
        .collect::<Vec<_>>()
        .join(", ");
    let bound = |values: &[Value]| -> Result<String> {
        if values.len() != keys.len() {
            return Err(Error::Data(format!(
                "table {}: a chunk bound of {} values for a key of {} columns",
                schema.name,
                values.len(),
                keys.len()
            )));
        }
        let literals: Result<Vec<String>> = keys
            .iter()
            .zip(values)
            .map(|(&k, v)| {
                let column = &table.columns[k];
                if column.read == super::types::Read::ArrayAsJson {
                    return Err(Error::Unsupported(format!(
                        "table {}: primary key column {} is an array: the table is read whole and cannot resume half way; run with --restart",
                        schema.name, schema.columns[k].name
                    )));
                }
                Ok(typed_literal(v, &column.sql_type))
            })
            .collect();
        Ok(format!("({})", literals?.join(", ")))
    };
    let mut conditions = Vec::new();
    if let Some(lower) = lower {
        conditions.push(format!("({key_list}) > {}", bound(lower)?));
    }
    if let Some(upper) = upper {
        conditions.push(format!("({key_list}) <= {}", bound(upper)?));
    }
    let mut sql = format!("COPY (SELECT {} FROM {from}", table.select_list());
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    if !keys.is_empty() {
        sql.push_str(" ORDER BY ");
        sql.push_str(&key_list);
    }
    sql.push_str(") TO STDOUT (FORMAT binary)");
    Ok(sql)
}

/// Decodes one chunk's COPY stream into batches.
struct ChunkReader<'a> {
    schema: Arc<TableSchema>,
    table: &'a SourceTable,
    chunk: u32,
    batch_rows: usize,
    limits: ReadLimits,
    changes: Vec<Change>,
    rejects: Vec<Reject>,
    /// Rows kept as the server sent them (the target takes them so).
    wire: Option<WireBuffer>,
    /// Key of the last row read (or the bound the read started after).
    last_key: Option<Vec<Value>>,
    /// Rows read by this reader, for tables without a key.
    rows: u64,
    /// Bytes of the rows read and not yet handed on, as the server sent them.
    bytes: usize,
    /// The last row read was refused for a value over `max_value_bytes`:
    /// `last_key` is its key, past the last tuple kept in `wire`.
    refused_last: bool,
}

impl ChunkReader<'_> {
    async fn run(
        &mut self,
        conn: &mut PgConnection,
        snapshot: &Snapshot,
        sql: &str,
        tx: &mpsc::Sender<Result<Batch>>,
    ) -> std::result::Result<Outcome, ReadError> {
        let mut txn = snapshot.adopt(conn).await.map_err(|e| {
            if Snapshot::is_lost(&e) {
                ReadError::SnapshotLost(e)
            } else {
                ReadError::Db(e)
            }
        })?;
        let wires: Vec<Wire> = self.table.columns.iter().map(|c| c.read.wire()).collect();
        let keys = self.schema.primary_key_indices();
        let schema = self.schema.clone();
        let mut decoder = CopyDecoder::new(wires.len());
        let mut spans: Vec<FieldSpan> = Vec::with_capacity(wires.len());
        {
            let mut stream = txn.copy_out_raw(sql).await?;
            while let Some(bytes) = stream.try_next().await? {
                decoder.feed(&bytes);
                while decoder.next_row(&mut spans).map_err(|e| {
                    ReadError::Other(Error::Data(format!(
                        "table {} chunk {}: broken COPY stream: {}",
                        self.schema.name, self.chunk, e.0
                    )))
                })? {
                    self.bytes += decoder.tuple().len();
                    let data = decoder.data();
                    if let Some(oversized) =
                        oversized_field(&schema, data, &spans, &wires, self.limits)
                    {
                        self.refuse(&oversized, data, &spans, &wires);
                    } else if let Some(wire) = &mut self.wire {
                        wire.push(decoder.tuple());
                        self.rows += 1;
                        self.refused_last = false;
                    } else {
                        self.row(data, &spans, &wires, &keys);
                    }
                    let full = self
                        .limits
                        .batch_full(self.pending(), self.batch_rows, self.bytes);
                    if full && !self.send(tx, false).await {
                        return Ok(Outcome::Abandoned);
                    }
                }
            }
        }
        if !decoder.finished() {
            return Err(ReadError::Other(Error::Data(format!(
                "table {} chunk {}: the COPY stream ended without its trailer",
                self.schema.name, self.chunk
            ))));
        }
        txn.commit().await?;
        if self.send(tx, true).await {
            Ok(Outcome::Finished)
        } else {
            Ok(Outcome::Abandoned)
        }
    }

    /// Decodes one tuple into a row, or a reject naming the bad values.
    fn row(&mut self, data: &[u8], spans: &[FieldSpan], wires: &[Wire], keys: &[usize]) {
        let (values, bad) = decode_tuple(data, spans, wires);
        self.rows += 1;
        let key_ok = keys.iter().all(|k| !bad.iter().any(|(i, _)| i == k));
        if key_ok && !keys.is_empty() {
            self.last_key = Some(keys.iter().map(|&k| values[k].clone()).collect());
        }
        if bad.is_empty() {
            self.changes.push(Change::Insert(Row(values)));
            return;
        }
        let position = self.position();
        self.rejects
            .push(undecodable_row(&self.schema, values, bad, position));
    }

    /// Refuses a row for a value over `max_value_bytes`, decoding only its
    /// key (for its position).
    fn refuse(
        &mut self,
        oversized: &Oversized<'_>,
        data: &[u8],
        spans: &[FieldSpan],
        wires: &[Wire],
    ) {
        self.rows += 1;
        let keys = self.schema.primary_key_indices();
        if !keys.is_empty()
            && let Ok(key) = decode_fields(data, spans, wires, &keys)
                .into_iter()
                .collect::<std::result::Result<Vec<_>, _>>()
        {
            self.last_key = Some(key);
        }
        self.refused_last = true;
        let place = format!("table {} chunk {}", self.schema.name, self.chunk);
        let reject = oversized.reject(&place, self.limits.max_value_bytes, self.position());
        self.rejects.push(reject);
    }

    fn position(&self) -> Position {
        if self.schema.primary_key.is_empty() {
            return Position::Record { index: self.rows };
        }
        match &self.last_key {
            Some(key) => Position::Key { key: key.clone() },
            None => Position::Start,
        }
    }

    /// Rows read and not yet handed on.
    fn pending(&self) -> usize {
        let wire = self.wire.as_ref().map_or(0, |w| w.rows);
        self.changes.len() + self.rejects.len() + usize::try_from(wire).unwrap_or(usize::MAX)
    }

    /// Hands the batch read so far on; false when nobody listens any more.
    async fn send(&mut self, tx: &mpsc::Sender<Result<Batch>>, last: bool) -> bool {
        self.bytes = 0;
        let wire = self.take_wire();
        let capacity = if self.wire.is_some() {
            0
        } else {
            self.batch_rows
        };
        let batch = Batch {
            table: self.schema.clone(),
            chunk: self.chunk,
            changes: std::mem::replace(&mut self.changes, Vec::with_capacity(capacity)),
            rejects: std::mem::take(&mut self.rejects),
            wire,
            position: self.position(),
            last,
        };
        tx.send(Ok(batch)).await.is_ok()
    }

    /// The tuples read so far, the last key taken from the last of them. A
    /// key that does not decode (the row goes to the dead letters, as it
    /// would read as values) has every tuple decoded instead.
    fn take_wire(&mut self) -> Option<WireRows> {
        let wire = self.wire.as_mut().filter(|w| w.rows > 0)?;
        let bytes = std::mem::take(&mut wire.bytes);
        let rows = std::mem::take(&mut wire.rows);
        let format = wire.format.clone();
        let decoder = wire.decoder.clone();
        // A row refused after the last tuple kept holds the later key.
        if !self.schema.primary_key.is_empty() && !self.refused_last {
            match decoder.key(&bytes[wire.last..]) {
                Some(key) => self.last_key = Some(key),
                None => {
                    self.rows -= rows;
                    self.decode_tuples(&decoder, &bytes);
                    return None;
                }
            }
        }
        Some(WireRows {
            format,
            bytes,
            rows,
            decoder,
        })
    }

    /// Reads `tuples` as values, as if they had come so.
    fn decode_tuples(&mut self, decoder: &TupleDecoder, tuples: &[u8]) {
        let mut stream = CopyDecoder::new(decoder.wires.len());
        stream.feed(super::copy_binary::header());
        stream.feed(tuples);
        let mut spans = Vec::with_capacity(decoder.wires.len());
        while let Ok(true) = stream.next_row(&mut spans) {
            self.row(stream.data(), &spans, &decoder.wires, &decoder.keys);
        }
    }
}

/// Tuples kept as the server sent them, for one batch.
struct WireBuffer {
    format: Arc<WireFormat>,
    decoder: Arc<TupleDecoder>,
    bytes: Vec<u8>,
    rows: u64,
    /// Where the last tuple starts in `bytes`.
    last: usize,
}

impl WireBuffer {
    fn push(&mut self, tuple: &[u8]) {
        self.last = self.bytes.len();
        self.bytes.extend_from_slice(tuple);
        self.rows += 1;
    }
}

/// The first value of a COPY tuple longer than `max_value_bytes`, seen by
/// its length before anything of the tuple is decoded.
pub(super) fn oversized_field<'a>(
    schema: &'a TableSchema,
    data: &'a [u8],
    spans: &[FieldSpan],
    wires: &[Wire],
    limits: ReadLimits,
) -> Option<Oversized<'a>> {
    spans.iter().enumerate().find_map(|(i, span)| {
        let (s, e) = (*span)?;
        let field = data.get(s..e).filter(|f| limits.too_long(f.len()))?;
        Some(Oversized {
            column: schema.columns.get(i).map_or("?", |c| c.name.as_str()),
            bytes: field.len(),
            head: match wires.get(i) {
                Some(Wire::Bytea) => Head::Binary(field),
                // A version byte, then the JSON text.
                Some(Wire::Jsonb) => Head::Text(field.get(1..).unwrap_or_default()),
                _ => Head::Text(field),
            },
        })
    })
}

/// The values of `columns` of a COPY tuple alone (a key, a cursor).
pub(super) fn decode_fields(
    data: &[u8],
    spans: &[FieldSpan],
    wires: &[Wire],
    columns: &[usize],
) -> Vec<std::result::Result<Value, Undecodable>> {
    columns
        .iter()
        .map(|&c| match spans.get(c).copied().flatten() {
            None => Ok(Value::Null),
            Some((s, e)) => match (data.get(s..e), wires.get(c)) {
                (Some(field), Some(wire)) => decode_value(*wire, field),
                _ => Err(Undecodable {
                    value: String::new(),
                    reason: "a field past the end of its tuple".to_string(),
                }),
            },
        })
        .collect()
}

/// Decodes one COPY tuple: its values (NULL where a value did not decode)
/// and the values that did not, by column.
pub(super) fn decode_tuple(
    data: &[u8],
    spans: &[FieldSpan],
    wires: &[Wire],
) -> (Vec<Value>, Vec<(usize, Undecodable)>) {
    let mut values = Vec::with_capacity(wires.len());
    let mut bad = Vec::new();
    for (i, (span, wire)) in spans.iter().zip(wires).enumerate() {
        match span {
            None => values.push(Value::Null),
            Some((s, e)) => match data.get(*s..*e).map(|field| decode_value(*wire, field)) {
                Some(Ok(v)) => values.push(v),
                Some(Err(u)) => {
                    values.push(Value::Null);
                    bad.push((i, u));
                }
                None => {
                    values.push(Value::Null);
                    bad.push((
                        i,
                        Undecodable {
                            value: String::new(),
                            reason: "a field past the end of its tuple".to_string(),
                        },
                    ));
                }
            },
        }
    }
    (values, bad)
}

/// The reject of a row some of whose values did not decode: the error
/// names each column, the row keeps the server's text for those values.
pub(super) fn undecodable_row(
    schema: &TableSchema,
    values: Vec<Value>,
    bad: Vec<(usize, Undecodable)>,
    position: Position,
) -> Reject {
    let name = |i: usize| schema.columns.get(i).map_or("?", |c| c.name.as_str());
    let error = bad
        .iter()
        .map(|(i, u)| format!("column {}: {}", name(*i), u.reason))
        .collect::<Vec<_>>()
        .join("; ");
    let mut row = row_to_json(schema, &Row(values));
    if let serde_json::Value::Object(map) = &mut row {
        for (i, u) in bad {
            map.insert(name(i).to_string(), serde_json::Value::String(u.value));
        }
    }
    Reject {
        stage: RejectStage::Source,
        error,
        row,
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::SourceColumn;
    use super::super::types::Read;
    use super::*;
    use dmp_model::{Column, DataType};

    fn table(keys: &[&str]) -> SourceTable {
        let columns = vec![
            Column::new("Id", DataType::Int64),
            Column::new("select", DataType::TEXT),
            Column::new("tags", DataType::Json),
        ];
        SourceTable {
            oid: sqlx::postgres::types::Oid(1),
            schema: TableSchema {
                namespace: Some("public".into()),
                name: "Order".into(),
                columns,
                primary_key: keys.iter().map(|k| k.to_string()).collect(),
                indexes: Vec::new(),
                foreign_keys: Vec::new(),
                ..Default::default()
            },
            columns: vec![
                SourceColumn {
                    read: Read::Native(Wire::Int8),
                    sql_type: "bigint".into(),
                },
                SourceColumn {
                    read: Read::AsText,
                    sql_type: "public.mood".into(),
                },
                SourceColumn {
                    read: Read::ArrayAsJson,
                    sql_type: "text[]".into(),
                },
            ],
            partitioned: false,
        }
    }

    #[test]
    fn chunk_queries_bound_the_key() {
        let t = table(&["Id", "select"]);
        let sql = chunk_query(
            &t,
            Some(&[Value::Int(5), Value::Text("it's".into())]),
            Some(&[Value::Int(9), Value::Text("z".into())]),
        )
        .unwrap();
        assert_eq!(
            sql,
            "COPY (SELECT \"Id\", \"select\"::text, to_json(\"tags\")::text FROM \"public\".\"Order\" \
             WHERE (\"Id\", \"select\") > ('5'::bigint, 'it''s'::public.mood) \
             AND (\"Id\", \"select\") <= ('9'::bigint, 'z'::public.mood) ORDER BY \"Id\", \"select\") \
             TO STDOUT (FORMAT binary)"
        );
        let whole = chunk_query(&table(&[]), None, None).unwrap();
        assert_eq!(
            whole,
            "COPY (SELECT \"Id\", \"select\"::text, to_json(\"tags\")::text FROM \"public\".\"Order\") TO STDOUT (FORMAT binary)"
        );
        assert!(chunk_query(&table(&["tags"]), Some(&[Value::Json("[]".into())]), None).is_err());
        assert!(chunk_query(&t, Some(&[Value::Int(1)]), None).is_err());
    }
}
