//! Reads MySQL / MariaDB tables. Chunks are primary key ranges read with
//! the binary protocol (a prepared statement with the bounds as
//! parameters), streamed row by row and cut into batches, all inside one
//! consistent snapshot opened at the first read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Pool, Value as My};
use tokio::sync::{OnceCell, mpsc};
use tracing::warn;

use super::catalog::{self, ReadColumn};
use super::chunks;
use super::config::{MysqlConfig, Role};
use super::server::Server;
use super::snapshot::Snapshot;
use super::sql::quote;
use super::types::{Decoded, ReadAs, Wire, decode};
use crate::error::{Error, Result, ResultExt};
use crate::options::MysqlSourceOptions;
use dmp_contract::Endpoint;
use dmp_contract::{BatchStream, Head, Oversized, ReadLimits, Source, SourceOptions};
use dmp_model::{
    Batch, Change, Chunk, Position, Reject, RejectStage, Row, SchemaObjects, TableSchema,
    TableSelection, Value,
};

pub struct MysqlSource {
    inner: Arc<Inner>,
}

struct Inner {
    config: MysqlConfig,
    readers: usize,
    /// Opened at first use: `dmp plan` and config errors need no server.
    pool: OnceCell<(Pool, Server)>,
    snapshot: OnceCell<Arc<Snapshot>>,
    /// How each discovered table's columns are read, by table name.
    reads: Mutex<HashMap<String, Arc<HashMap<String, ReadColumn>>>>,
    /// (table, column) pairs already warned about zero dates.
    zero_dates: Mutex<HashSet<(String, String)>>,
    /// `[run] batch_bytes`: where batches end besides their row count.
    limits: ReadLimits,
    /// `[source.options]`, and the endpoint its mistakes name.
    own: MysqlSourceOptions,
    endpoint: Endpoint,
}

impl MysqlSource {
    pub fn open(endpoint: &Endpoint, options: SourceOptions, limits: ReadLimits) -> Result<Self> {
        Ok(MysqlSource {
            inner: Arc::new(Inner {
                config: MysqlConfig::parse(endpoint)?,
                own: endpoint.options()?,
                endpoint: endpoint.clone(),
                readers: options.readers.max(1),
                pool: OnceCell::new(),
                snapshot: OnceCell::new(),
                reads: Mutex::new(HashMap::new()),
                zero_dates: Mutex::new(HashSet::new()),
                limits,
            }),
        })
    }
}

impl Inner {
    async fn pool(&self) -> Result<&(Pool, Server)> {
        self.pool
            // The snapshot's readers plus one session for the catalog.
            .get_or_try_init(|| self.config.connect(Role::Source, self.readers + 1))
            .await
    }

    async fn snapshot(&self) -> Result<&Arc<Snapshot>> {
        self.snapshot
            .get_or_try_init(|| async {
                let (pool, server) = self.pool().await?;
                Ok(Arc::new(
                    Snapshot::open(pool, *server, self.readers, &self.config.place).await?,
                ))
            })
            .await
    }

    /// How `table`'s columns are read; discovered again if this source did
    /// not discover it (a resumed plan).
    async fn reads(&self, table: &str) -> Result<Arc<HashMap<String, ReadColumn>>> {
        if let Some(known) = self.reads.lock().ok().and_then(|r| r.get(table).cloned()) {
            return Ok(known);
        }
        let (pool, server) = self.pool().await?;
        let mut conn = pool.get_conn().await.context(|| self.config.connecting())?;
        let found =
            catalog::discover(&mut conn, *server, &self.config.database, None, Some(table)).await?;
        let reads = Arc::new(
            found
                .into_iter()
                .next()
                .map(|d| d.reads)
                .unwrap_or_default(),
        );
        if let Ok(mut known) = self.reads.lock() {
            known.insert(table.to_string(), reads.clone());
        }
        Ok(reads)
    }

    fn warn_zero_date(&self, table: &str, column: &str) {
        let first = self
            .zero_dates
            .lock()
            .is_ok_and(|mut seen| seen.insert((table.to_string(), column.to_string())));
        if first {
            warn!(table, column, "zero dates read as NULL (documented policy)");
        }
    }
}

impl MysqlSource {
    /// How `table`'s columns are read (`dmp verify` spells them alike).
    pub(super) async fn read_columns(
        &self,
        table: &str,
    ) -> Result<Arc<HashMap<String, ReadColumn>>> {
        self.inner.reads(table).await
    }

    /// Sessions this source may hold at once for reading.
    pub(super) fn readers(&self) -> usize {
        self.inner.readers
    }

    /// A session for `dmp verify`'s checksum queries, and the place to
    /// name in errors.
    pub(super) async fn checksum_conn(&self) -> Result<(Conn, &str)> {
        let inner = &self.inner;
        let (pool, _) = inner.pool().await?;
        let place = inner.config.place.as_str();
        let conn = pool
            .get_conn()
            .await
            .context(|| format!("connecting to {place}"))?;
        Ok((conn, place))
    }
}

#[async_trait]
impl Source for MysqlSource {
    async fn server_time(&self) -> Result<Option<i64>> {
        let inner = &self.inner;
        let (pool, _) = inner.pool().await?;
        let mut conn = pool
            .get_conn()
            .await
            .context(|| inner.config.connecting())?;
        let micros: Option<i64> = conn
            .query_first("SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)")
            .await
            .context(|| format!("{}: reading the server's clock", inner.config.place))?;
        Ok(micros)
    }

    async fn discover(&self, selection: &TableSelection) -> Result<Vec<TableSchema>> {
        let inner = &self.inner;
        let (pool, server) = inner.pool().await?;
        let mut conn = pool
            .get_conn()
            .await
            .context(|| inner.config.connecting())?;
        let found = catalog::discover(
            &mut conn,
            *server,
            &inner.config.database,
            Some(selection),
            None,
        )
        .await?;
        let mut reads = inner
            .reads
            .lock()
            .map_err(|_| Error::Data("MySQL source state poisoned by a panic".into()))?;
        Ok(found
            .into_iter()
            .map(|d| {
                reads.insert(d.schema.name.clone(), Arc::new(d.reads));
                d.schema
            })
            .collect())
    }

    async fn objects(
        &self,
        selection: &TableSelection,
        _tables: &[TableSchema],
    ) -> Result<SchemaObjects> {
        let inner = &self.inner;
        let (pool, server) = inner.pool().await?;
        let mut conn = pool
            .get_conn()
            .await
            .context(|| inner.config.connecting())?;
        catalog::objects(&mut conn, *server, &inner.config.database, selection).await
    }

    async fn plan_snapshot(&self, table: &TableSchema, chunk_rows: u64) -> Result<Vec<Chunk>> {
        let (pool, server) = self.inner.pool().await?;
        let reads = self.inner.reads(&table.name).await?;
        let order = chunks::KeyOrder::of(table, &reads);
        let mut conn = pool
            .get_conn()
            .await
            .context(|| self.inner.config.connecting())?;
        chunks::plan(&mut conn, *server, table, &order, chunk_rows).await
    }

    fn read_chunk(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let inner = self.inner.clone();
        let span = tracing::debug_span!("mysql read", table = %dmp_model::printable(&table.name), chunk = chunk.id);
        let _reading = span.enter();
        BatchStream::spawn(move |tx| async move {
            read_chunk(&inner, &table, &chunk, resume, batch_rows.max(1), &tx).await
        })
    }

    fn read_incremental(
        &self,
        table: Arc<TableSchema>,
        cursor: usize,
        after: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let inner = self.inner.clone();
        let schema = table.clone();
        let connect = async move {
            let (pool, _) = inner.pool().await?;
            Ok((pool.clone(), inner.reads(&schema.name).await?))
        };
        super::incremental::read(connect, table, cursor, after, batch_rows, self.inner.limits)
    }

    async fn end_snapshot(&self) {
        if let Some(snapshot) = self.inner.snapshot.get() {
            snapshot.release().await;
        }
    }

    fn snapshot_position(&self) -> Option<String> {
        self.inner.snapshot.get().and_then(|s| s.position.clone())
    }

    fn checksums(&self) -> Option<&dyn dmp_contract::Checksums> {
        Some(self)
    }

    fn changes(
        &self,
        options: &dmp_contract::ChangeOptions,
    ) -> Result<Option<Arc<dyn dmp_contract::ChangeSource>>> {
        let options = self.inner.own.apply(&self.inner.endpoint, options)?;
        Ok(Some(Arc::new(super::binlog::MysqlChanges::new(
            self.inner.config.clone(),
            options,
        ))))
    }
}

/// How a chunk's rows are selected, and where its reading starts.
struct ChunkQuery {
    sql: String,
    params: Vec<My>,
    /// Rows already consumed of a table without key (resumed by count).
    skipped: u64,
}

/// The columns as the readers select them: geometry as WKT, the types
/// read as text cast to it.
pub(super) fn select_list(table: &TableSchema, reads: &HashMap<String, ReadColumn>) -> String {
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let name = quote(&c.name);
            match reads.get(&c.name).map_or(ReadAs::Plain, |r| r.read) {
                ReadAs::Plain => name,
                ReadAs::Wkt => format!("ST_AsText({name})"),
                ReadAs::Text => format!("CAST({name} AS CHAR)"),
            }
        })
        .collect();
    select.join(", ")
}

fn chunk_query(
    table: &TableSchema,
    reads: &HashMap<String, ReadColumn>,
    chunk: &Chunk,
    resume: &Position,
) -> ChunkQuery {
    let mut sql = format!(
        "SELECT {} FROM {}",
        select_list(table, reads),
        quote(&table.name)
    );
    if table.primary_key.is_empty() {
        let skipped = match resume {
            Position::Record { index } => *index,
            _ => 0,
        };
        if skipped > 0 {
            sql.push_str(&format!(" LIMIT 18446744073709551615 OFFSET {skipped}"));
        }
        return ChunkQuery {
            sql,
            params: Vec::new(),
            skipped,
        };
    }
    let lower = match resume {
        Position::Key { key } => Some(key.as_slice()),
        _ => chunk.lower.as_deref(),
    };
    let order = chunks::KeyOrder::of(table, reads);
    let (conditions, params) = order.range(lower, chunk.upper.as_deref());
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(&order.order_by());
    ChunkQuery {
        sql,
        params,
        skipped: 0,
    }
}

/// Per-column decoding settings, in select order.
struct Decoder<'a> {
    inner: &'a Inner,
    table: &'a TableSchema,
    wires: Vec<Wire>,
    keys: Vec<usize>,
}

/// A row decoded, or refused with the reason and what it held.
enum Outcome {
    Row(Vec<Value>),
    Refused(Reject),
}

impl Decoder<'_> {
    /// Decodes row number `index` of the table's read (counting from 1).
    fn row(&self, cells: Vec<Option<My>>, index: u64) -> Outcome {
        if let Some(oversized) = oversized_cell(self.table, &cells, self.inner.limits) {
            // Only the key is decoded, for the row's position.
            let position = if self.keys.is_empty() {
                Position::Record { index }
            } else {
                Position::Key {
                    key: self
                        .keys
                        .iter()
                        .map(
                            |&k| match decode_cell(&cells[k], self.table, &self.wires, k) {
                                Ok(Decoded::Value(v)) => v,
                                Ok(Decoded::ZeroDate) | Err(_) => Value::Null,
                            },
                        )
                        .collect(),
                }
            };
            let place = format!("{}: table {}", self.inner.config.place, self.table.name);
            return Outcome::Refused(oversized.reject(
                &place,
                self.inner.limits.max_value_bytes,
                position,
            ));
        }
        let mut values = Vec::with_capacity(cells.len());
        let mut failure: Option<(String, serde_json::Map<String, serde_json::Value>)> = None;
        for (i, cell) in cells.into_iter().enumerate() {
            let column = &self.table.columns[i];
            let cell = cell.unwrap_or(My::NULL);
            match decode(cell, &column.data_type, self.wires[i]) {
                Ok(Decoded::Value(v)) => values.push(v),
                Ok(Decoded::ZeroDate) => {
                    self.inner.warn_zero_date(&self.table.name, &column.name);
                    values.push(Value::Null);
                }
                Err(refused) => {
                    let entry = failure.get_or_insert_with(|| {
                        (
                            format!("column {}: {}", column.name, refused.error),
                            serde_json::Map::new(),
                        )
                    });
                    entry.1.insert(column.name.clone(), refused.raw);
                    values.push(Value::Null);
                }
            }
        }
        let Some((error, raw)) = failure else {
            return Outcome::Row(values);
        };
        // The row as far as it decoded, the refused cells as they were.
        let mut json = serde_json::Map::new();
        for (column, value) in self.table.columns.iter().zip(&values) {
            let cell = raw
                .get(&column.name)
                .cloned()
                .unwrap_or_else(|| dmp_model::json::value_to_json(value));
            json.insert(column.name.clone(), cell);
        }
        Outcome::Refused(Reject {
            stage: RejectStage::Source,
            error,
            row: serde_json::Value::Object(json),
            position: if self.keys.is_empty() {
                Position::Record { index }
            } else {
                Position::Key {
                    key: self.keys.iter().map(|&i| values[i].clone()).collect(),
                }
            },
        })
    }
}

async fn read_chunk(
    inner: &Inner,
    table: &Arc<TableSchema>,
    chunk: &Chunk,
    resume: Position,
    batch_rows: usize,
    tx: &mpsc::Sender<Result<Batch>>,
) -> Result<()> {
    let ctx = || format!("reading table {} chunk {}", table.name, chunk.id);
    let reads = inner.reads(&table.name).await?;
    let query = chunk_query(table, &reads, chunk, &resume);
    let decoder = Decoder {
        inner,
        table,
        wires: table
            .columns
            .iter()
            .map(|c| reads.get(&c.name).map_or(Wire::Other, |r| r.wire))
            .collect(),
        keys: table.primary_key_indices(),
    };
    let start = match (&resume, decoder.keys.is_empty()) {
        (Position::Key { .. }, false) => resume,
        (_, false) => chunk
            .lower
            .clone()
            .map_or(Position::Start, |key| Position::Key { key }),
        (_, true) => Position::Record {
            index: query.skipped,
        },
    };
    let out = BatchOut {
        table,
        chunk: chunk.id,
        batch_rows,
        limits: inner.limits,
        tx,
    };
    let snapshot = inner.snapshot().await?;
    let mut lease = snapshot.lease().await?;
    let outcome = stream_rows(lease.conn()?, &decoder, query, start, &out)
        .await
        .context(ctx);
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => {
            lease.discard();
            Ok(())
        }
        Err(e) => {
            lease.discard();
            Err(e)
        }
    }
}

/// Where a chunk's batches go.
struct BatchOut<'a> {
    table: &'a Arc<TableSchema>,
    chunk: u32,
    batch_rows: usize,
    limits: ReadLimits,
    tx: &'a mpsc::Sender<Result<Batch>>,
}

impl BatchOut<'_> {
    /// Hands a batch on; false when the receiver is gone.
    async fn send(
        &self,
        changes: Vec<Change>,
        rejects: Vec<Reject>,
        position: Position,
        last: bool,
    ) -> bool {
        let batch = Batch {
            table: self.table.clone(),
            chunk: self.chunk,
            changes,
            rejects,
            wire: None,
            position,
            last,
        };
        self.tx.send(Ok(batch)).await.is_ok()
    }
}

/// Streams the chunk into batches, starting at `position`. Returns false
/// when the receiver went away before the end (the session then holds an
/// unread result).
async fn stream_rows(
    conn: &mut Conn,
    decoder: &Decoder<'_>,
    query: ChunkQuery,
    mut position: Position,
    out: &BatchOut<'_>,
) -> std::result::Result<bool, mysql_async::Error> {
    let params = if query.params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(query.params)
    };
    let mut result = conn.exec_iter(query.sql.as_str(), params).await?;
    let keyed = !decoder.keys.is_empty();
    let batch_rows = out.batch_rows;
    let mut consumed = query.skipped;
    let mut changes: Vec<Change> = Vec::with_capacity(batch_rows);
    let mut rejects: Vec<Reject> = Vec::new();
    // Whether the last row taken decoded: its key is then taken from it
    // when the batch is cut, not cloned for every row.
    let mut last_was_change = false;
    // Bytes of the batch's rows as the server sent them.
    let mut bytes = 0usize;
    let key_of_last = |changes: &[Change]| match changes.last() {
        Some(Change::Insert(Row(values))) => Some(Position::Key {
            key: decoder.keys.iter().map(|&i| values[i].clone()).collect(),
        }),
        _ => None,
    };
    while let Some(row) = result.next().await? {
        consumed += 1;
        let cells = row.unwrap_raw();
        bytes += cells.iter().map(cell_bytes).sum::<usize>();
        match decoder.row(cells, consumed) {
            Outcome::Row(values) => {
                changes.push(Change::Insert(Row(values)));
                last_was_change = true;
            }
            Outcome::Refused(reject) => {
                if keyed {
                    position = reject.position.clone();
                }
                rejects.push(reject);
                last_was_change = false;
            }
        }
        if out
            .limits
            .batch_full(changes.len() + rejects.len(), batch_rows, bytes)
        {
            bytes = 0;
            if !keyed {
                position = Position::Record { index: consumed };
            } else if last_was_change && let Some(p) = key_of_last(&changes) {
                position = p;
            }
            last_was_change = false;
            let sent = out
                .send(
                    std::mem::replace(&mut changes, Vec::with_capacity(batch_rows)),
                    std::mem::take(&mut rejects),
                    position.clone(),
                    false,
                )
                .await;
            if !sent {
                return Ok(false);
            }
        }
    }
    if !keyed {
        position = Position::Record { index: consumed };
    } else if last_was_change && let Some(p) = key_of_last(&changes) {
        position = p;
    }
    // The receiver may be gone: the chunk was read to its end all the same.
    out.send(changes, rejects, position, true).await;
    Ok(true)
}

/// The first cell of a row longer than `max_value_bytes`, seen before it
/// is decoded or copied.
pub(super) fn oversized_cell<'a>(
    table: &'a TableSchema,
    cells: &'a [Option<My>],
    limits: ReadLimits,
) -> Option<Oversized<'a>> {
    cells.iter().enumerate().find_map(|(i, cell)| {
        let Some(My::Bytes(bytes)) = cell else {
            return None;
        };
        if !limits.too_long(bytes.len()) {
            return None;
        }
        let column = table.columns.get(i);
        Some(Oversized {
            column: column.map_or("?", |c| c.name.as_str()),
            bytes: bytes.len(),
            head: match column.map(|c| &c.data_type) {
                Some(dmp_model::DataType::Bytes) => Head::Binary(bytes),
                _ => Head::Text(bytes),
            },
        })
    })
}

/// Decodes a copy of cell `i` (a key or cursor cell: a few bytes).
pub(super) fn decode_cell(
    cell: &Option<My>,
    table: &TableSchema,
    wires: &[Wire],
    i: usize,
) -> std::result::Result<Decoded, super::types::Refused> {
    let wire = wires.get(i).copied().unwrap_or(Wire::Other);
    let data_type = table
        .columns
        .get(i)
        .map_or(&dmp_model::DataType::TEXT, |c| &c.data_type);
    decode(cell.clone().unwrap_or(My::NULL), data_type, wire)
}

/// About the bytes a cell took on the wire.
pub(super) fn cell_bytes(cell: &Option<mysql_async::Value>) -> usize {
    match cell {
        Some(mysql_async::Value::Bytes(b)) => b.len(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Column, DataType};

    fn table(keys: &[&str]) -> TableSchema {
        TableSchema {
            namespace: Some("db".into()),
            name: "Order Items".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("shape", DataType::TEXT),
            ],
            primary_key: keys.iter().map(|k| k.to_string()).collect(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn chunk_queries_read_their_key_range_in_order() {
        let mut reads = HashMap::new();
        reads.insert(
            "shape".to_string(),
            ReadColumn {
                read: ReadAs::Wkt,
                wire: Wire::Other,
            },
        );
        let chunk = Chunk {
            id: 1,
            lower: Some(vec![Value::Int(10)]),
            upper: Some(vec![Value::Int(20)]),
            estimated_rows: 10,
        };
        let q = chunk_query(&table(&["id"]), &reads, &chunk, &Position::Start);
        assert_eq!(
            q.sql,
            "SELECT `id`, ST_AsText(`shape`) FROM `Order Items` WHERE `id` > ? AND `id` <= ? ORDER BY `id`"
        );
        assert_eq!(q.params, vec![My::Int(10), My::Int(20)]);
        let resumed = Position::Key {
            key: vec![Value::Int(15)],
        };
        let q = chunk_query(&table(&["id"]), &reads, &chunk, &resumed);
        assert_eq!(q.params, vec![My::Int(15), My::Int(20)]);
        let q = chunk_query(
            &table(&[]),
            &reads,
            &Chunk::whole(5),
            &Position::Record { index: 3 },
        );
        assert_eq!(
            q.sql,
            "SELECT `id`, ST_AsText(`shape`) FROM `Order Items` LIMIT 18446744073709551615 OFFSET 3"
        );
        assert_eq!(q.skipped, 3);
    }
}
