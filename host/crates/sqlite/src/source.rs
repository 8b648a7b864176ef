//! Reads SQLite tables. Rowid tables are chunked by rowid range; tables
//! `WITHOUT ROWID` are read whole in primary key order. Each chunk is read
//! in its own read transaction on its own connection.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, types::ValueRef};
use tokio::sync::mpsc;

use super::quote;
use super::types::{Bind, data_type_from_declared, raw_json, read_value};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::{BatchStream, Gathering, Head, Oversized, ReadLimits, Source};
use dmp_model::{
    Batch, Chunk, Column, Dialect, ForeignKey, Identity, Index, ObjectKind, Position, Reject,
    RejectStage, Row, SchemaObjects, Skipped, SqlExpr, TableSchema, TableSelection, Value,
};

pub struct SqliteSource {
    path: PathBuf,
    /// `[run] batch_bytes` and `max_value_bytes`.
    limits: ReadLimits,
}

impl SqliteSource {
    pub fn open(endpoint: &Endpoint, limits: ReadLimits) -> Result<Self> {
        let path = super::config::database_path(endpoint)?;
        if !path.is_file() {
            return Err(Error::Config(format!(
                "{}: SQLite database {} does not exist",
                endpoint.place(),
                path.display()
            )));
        }
        Ok(SqliteSource { path, limits })
    }

    fn connect(path: &std::path::Path) -> Result<Connection> {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .context(|| format!("opening SQLite database {}", path.display()))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || work(&Self::connect(&path)?))
            .await
            .context(|| "SQLite source task".to_string())?
    }
}

/// How a table's rows are ordered and chunked.
enum Key {
    Rowid,
    /// `WITHOUT ROWID`: its primary key columns.
    PrimaryKey(Vec<String>),
}

impl Key {
    fn of(conn: &Connection, table: &TableSchema) -> Result<Key> {
        let without_rowid: bool = conn
            .query_row(
                "SELECT wr FROM pragma_table_list WHERE name = ?1 AND schema = 'main'",
                [&table.name],
                |r| r.get(0),
            )
            .context(|| format!("inspecting table {}", table.name))?;
        Ok(if without_rowid {
            Key::PrimaryKey(table.primary_key.clone())
        } else {
            Key::Rowid
        })
    }

    fn columns(&self) -> Vec<String> {
        match self {
            Key::Rowid => vec!["rowid".into()],
            Key::PrimaryKey(cols) => cols.iter().map(|c| quote(c)).collect(),
        }
    }
}

pub(super) fn discover_table(conn: &Connection, name: &str) -> Result<TableSchema> {
    let ctx = || format!("reading the schema of table {name}");
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")
        .context(ctx)?;
    let mut columns = Vec::new();
    let mut keys: Vec<(i64, String)> = Vec::new();
    let mut rows = stmt.query([name]).context(ctx)?;
    while let Some(r) = rows.next().context(ctx)? {
        let col_name: String = r.get(0).context(ctx)?;
        let declared: String = r.get(1).context(ctx)?;
        let not_null: bool = r.get(2).context(ctx)?;
        let default: Option<String> = r.get(3).context(ctx)?;
        let pk: i64 = r.get(4).context(ctx)?;
        let data_type = data_type_from_declared(&declared);
        if pk > 0 {
            keys.push((pk, col_name.clone()));
        }
        let mut column = Column::new(col_name, data_type);
        column.nullable = !not_null && pk == 0;
        column.default = default
            .as_deref()
            .and_then(|d| constant_default(d, &column.data_type));
        if column.default.is_none() {
            column.default_expr = default
                .filter(|d| !d.trim().eq_ignore_ascii_case("null"))
                .map(|d| SqlExpr::new(Dialect::Sqlite, d));
        }
        column.source_type = Some(declared);
        columns.push(column);
    }
    keys.sort();
    let create_sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .context(ctx)?;
    // An INTEGER PRIMARY KEY is the rowid: SQLite numbers the rows that
    // come without it (AUTOINCREMENT never hands a number out twice).
    if let [(_, key)] = keys.as_slice()
        && let Some(column) = columns.iter_mut().find(|c| &c.name == key)
        && column
            .source_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("INTEGER"))
    {
        let autoincrement = create_sql.to_ascii_uppercase().contains("AUTOINCREMENT");
        let next = if autoincrement {
            last_sequence(conn, name).context(ctx)?.map(|seq| seq + 1)
        } else {
            None
        };
        column.identity = Some(Identity {
            always: false,
            next,
            sequence: None,
        });
    }
    let mut skipped = Vec::new();
    // SQLite keeps CHECK constraints only in the table's SQL text.
    if create_sql.to_ascii_uppercase().contains("CHECK") {
        skipped.push(Skipped {
            kind: ObjectKind::Check,
            name: name.to_string(),
            reason: "CHECK constraints of SQLite tables are not read (they live only in its CREATE TABLE text)"
                .into(),
        });
    }
    skipped.extend(triggers(conn, name).context(ctx)?);
    let mut indexes = Vec::new();
    let mut stmt = conn
        .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1) ORDER BY name")
        .context(ctx)?;
    let list: Vec<(String, bool, String)> = stmt
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .context(ctx)?
        .collect::<rusqlite::Result<_>>()
        .context(ctx)?;
    for (index_name, unique, origin) in list {
        if origin == "pk" {
            continue;
        }
        let cols: Vec<Option<String>> = conn
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
            .and_then(|mut s| s.query_map([&index_name], |r| r.get(0))?.collect())
            .context(ctx)?;
        match cols.into_iter().collect::<Option<Vec<String>>>() {
            Some(columns) => indexes.push(Index {
                name: index_name,
                columns,
                unique,
                source_name: None,
            }),
            None => skipped.push(Skipped {
                kind: ObjectKind::Index,
                name: index_name,
                reason: "an expression index: only plain column indexes are carried".into(),
            }),
        }
    }
    let foreign_keys = foreign_keys(conn, name).context(ctx)?;
    Ok(TableSchema {
        namespace: None,
        name: name.to_string(),
        columns,
        primary_key: keys.into_iter().map(|(_, c)| c).collect(),
        indexes,
        foreign_keys,
        skipped,
        ..Default::default()
    })
}

/// The last number an AUTOINCREMENT table handed out.
fn last_sequence(conn: &Connection, table: &str) -> rusqlite::Result<Option<i64>> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE name = 'sqlite_sequence'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row(
        "SELECT max(seq) FROM sqlite_sequence WHERE name = ?1",
        [table],
        |r| r.get(0),
    )
}

/// The table's triggers, which are not carried.
fn triggers(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Skipped>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 ORDER BY name",
    )?;
    let names: Vec<String> = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(names
        .into_iter()
        .map(|name| Skipped {
            kind: ObjectKind::Trigger,
            name,
            reason: "triggers are code and are not carried".into(),
        })
        .collect())
}

/// Foreign keys, one per `id` of `pragma_foreign_key_list`. SQLite names
/// none, so they get `fk_<table>_<id>`. A key that references the parent's
/// primary key implicitly (no `to` column) is skipped: the parent's key
/// columns are not known here.
fn foreign_keys(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ForeignKey>> {
    let mut stmt = conn.prepare(
        "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
    )?;
    type FkRow = (i64, String, String, Option<String>, String, String);
    let rows: Vec<FkRow> = stmt
        .query_map([table], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut keys: Vec<(i64, Option<ForeignKey>)> = Vec::new();
    for (id, parent, from, to, on_update, on_delete) in rows {
        if keys.last().is_none_or(|(last, _)| *last != id) {
            keys.push((
                id,
                Some(ForeignKey {
                    name: format!("fk_{table}_{id}"),
                    columns: Vec::new(),
                    references: parent,
                    referenced_columns: Vec::new(),
                    on_delete,
                    on_update,
                    source_name: None,
                }),
            ));
        }
        let Some((_, slot)) = keys.last_mut() else {
            continue;
        };
        match (slot.as_mut(), to) {
            (Some(fk), Some(to)) => {
                fk.columns.push(from);
                fk.referenced_columns.push(to);
            }
            (Some(fk), None) => {
                tracing::warn!(
                    table,
                    references = fk.references,
                    "foreign key without referenced columns skipped"
                );
                *slot = None;
            }
            (None, _) => {}
        }
    }
    Ok(keys.into_iter().filter_map(|(_, fk)| fk).collect())
}

/// A default that is a literal (`0`, `'new'`, `NULL`); expressions are dropped.
fn constant_default(sql: &str, t: &dmp_model::DataType) -> Option<Value> {
    let text = sql.trim();
    let text = match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        Some(quoted) => quoted.replace("''", "'"),
        None if text.eq_ignore_ascii_case("null") => return None,
        None if text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') => {
            text.to_string()
        }
        None => return None,
    };
    Value::parse_text(&text, t).ok()
}

#[async_trait]
impl Source for SqliteSource {
    async fn discover(&self, selection: &TableSelection) -> Result<Vec<TableSchema>> {
        let selection = selection.clone();
        self.blocking(move |conn| {
            let names: Vec<String> = conn
                .prepare(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                     AND name NOT LIKE '\\_dmp\\_%' ESCAPE '\\' ORDER BY name",
                )
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .context(|| "listing SQLite tables".to_string())?;
            names
                .iter()
                .filter(|n| selection.matches(n))
                .map(|n| discover_table(conn, n))
                .collect()
        })
        .await
    }

    async fn objects(
        &self,
        selection: &TableSelection,
        _tables: &[TableSchema],
    ) -> Result<SchemaObjects> {
        let selection = selection.clone();
        self.blocking(move |conn| {
            let views: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_schema WHERE type = 'view' ORDER BY name")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .context(|| "listing SQLite views".to_string())?;
            Ok(SchemaObjects {
                skipped: views
                    .into_iter()
                    .filter(|v| selection.matches(v))
                    .map(|name| Skipped {
                        kind: ObjectKind::View,
                        name,
                        reason: "views of SQLite databases are not carried".into(),
                    })
                    .collect(),
                ..SchemaObjects::default()
            })
        })
        .await
    }

    async fn plan_snapshot(&self, table: &TableSchema, chunk_rows: u64) -> Result<Vec<Chunk>> {
        let table = table.clone();
        self.blocking(move |conn| {
            let ctx = || format!("planning chunks of table {}", table.name);
            let key = Key::of(conn, &table)?;
            let sql = format!(
                "SELECT min(rowid), max(rowid), count(*) FROM {}",
                quote(&table.name)
            );
            if let Key::PrimaryKey(_) = key {
                let count: i64 = conn
                    .query_row(
                        &format!("SELECT count(*) FROM {}", quote(&table.name)),
                        [],
                        |r| r.get(0),
                    )
                    .context(ctx)?;
                return Ok(vec![Chunk::whole(count.unsigned_abs())]);
            }
            let (min, max, count): (Option<i64>, Option<i64>, i64) = conn
                .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .context(ctx)?;
            Ok(rowid_chunks(min, max, count.unsigned_abs(), chunk_rows))
        })
        .await
    }

    fn read_chunk(
        &self,
        table: Arc<TableSchema>,
        chunk: Chunk,
        resume: Position,
        batch_rows: usize,
    ) -> BatchStream {
        let path = self.path.clone();
        let gathering = Gathering::new(batch_rows, self.limits);
        BatchStream::spawn_blocking(move |tx| {
            read_chunk(&path, &table, &chunk, resume, gathering, tx)
        })
    }

    fn read_incremental(
        &self,
        table: Arc<TableSchema>,
        cursor: usize,
        after: Position,
        batch_rows: usize,
    ) -> BatchStream {
        super::incremental::read(
            self.path.clone(),
            table,
            cursor,
            after,
            Gathering::new(batch_rows, self.limits),
        )
    }
}

/// Splits `[min, max]` into ranges of about `chunk_rows` rows, assuming
/// rowids are roughly dense. The first and last chunk are open-ended.
fn rowid_chunks(min: Option<i64>, max: Option<i64>, count: u64, chunk_rows: u64) -> Vec<Chunk> {
    let (Some(min), Some(max)) = (min, max) else {
        return vec![Chunk::whole(0)];
    };
    let chunks = count.div_ceil(chunk_rows.max(1)).max(1);
    let span = u64::try_from(i128::from(max) - i128::from(min) + 1).unwrap_or(u64::MAX);
    let width = span.div_ceil(chunks).max(1);
    let mut out = Vec::new();
    let mut lower: Option<i64> = None;
    let mut id = 0u32;
    loop {
        let start = lower.map_or(min, |l| l + 1);
        let upper = i64::try_from(i128::from(start) + i128::from(width) - 1).unwrap_or(i64::MAX);
        let last = upper >= max;
        out.push(Chunk {
            id,
            lower: lower.map(|l| vec![Value::Int(l)]),
            upper: (!last).then(|| vec![Value::Int(upper)]),
            estimated_rows: count / chunks,
        });
        if last {
            return out;
        }
        lower = Some(upper);
        id += 1;
    }
}

/// `SELECT key…, columns… FROM table WHERE (key) > (lower) AND (key) <=
/// (upper) ORDER BY key` and its parameters.
fn chunk_query(
    table: &TableSchema,
    key_columns: &[String],
    lower: Option<&[Value]>,
    upper: Option<&[Value]>,
) -> (String, Vec<Value>) {
    let tuple = |cols: &[String]| format!("({})", cols.join(", "));
    let placeholders = |n: usize, from: usize| {
        format!(
            "({})",
            (from..from + n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut conditions = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(lower) = lower {
        conditions.push(format!(
            "{} > {}",
            tuple(key_columns),
            placeholders(lower.len(), params.len() + 1)
        ));
        params.extend(lower.iter().cloned());
    }
    if let Some(upper) = upper {
        conditions.push(format!(
            "{} <= {}",
            tuple(key_columns),
            placeholders(upper.len(), params.len() + 1)
        ));
        params.extend(upper.iter().cloned());
    }
    let select: Vec<String> = key_columns
        .iter()
        .cloned()
        .chain(table.columns.iter().map(|c| quote(&c.name)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {}{} ORDER BY {}",
        select.join(", "),
        quote(&table.name),
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        },
        key_columns.join(", ")
    );
    (sql, params)
}

fn read_chunk(
    path: &std::path::Path,
    table: &Arc<TableSchema>,
    chunk: &Chunk,
    resume: Position,
    mut gathering: Gathering,
    tx: &mpsc::Sender<Result<Batch>>,
) -> Result<()> {
    let ctx = || format!("reading table {} chunk {}", table.name, chunk.id);
    let mut conn = SqliteSource::connect(path)?;
    let key = Key::of(&conn, table)?;
    let key_columns = key.columns();
    let lower = match resume {
        Position::Key { key } => Some(key),
        _ => chunk.lower.clone(),
    };
    let (sql, params) = chunk_query(
        table,
        &key_columns,
        lower.as_deref(),
        chunk.upper.as_deref(),
    );
    // One read transaction: the chunk is read from a single snapshot.
    let txn = conn.transaction().context(ctx)?;
    let mut stmt = txn.prepare(&sql).context(ctx)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter().map(Bind)))
        .context(ctx)?;
    let nkey = key_columns.len();
    let mut last_key: Option<Vec<Value>> = lower;
    while let Some(r) = rows.next().context(ctx)? {
        let key_values = (0..nkey)
            .map(|i| r.get_ref(i).map(stored))
            .collect::<rusqlite::Result<Vec<_>>>()
            .context(ctx)?;
        let position = || Position::Key {
            key: key_values.clone(),
        };
        match decode_row(r, nkey, table, gathering.limits(), position).context(ctx)? {
            Ok(row) => gathering.push_row(row),
            Err(reject) => gathering.push_reject(reject),
        }
        last_key = Some(key_values);
        if gathering.full() {
            let (changes, rejects) = gathering.take();
            let batch = Batch {
                table: table.clone(),
                chunk: chunk.id,
                changes,
                rejects,
                wire: None,
                position: position_of(&last_key),
                last: false,
            };
            if tx.blocking_send(Ok(batch)).is_err() {
                return Ok(());
            }
        }
    }
    let (changes, rejects) = gathering.take();
    let batch = Batch {
        table: table.clone(),
        chunk: chunk.id,
        changes,
        rejects,
        wire: None,
        position: position_of(&last_key),
        last: true,
    };
    let _ = tx.blocking_send(Ok(batch));
    Ok(())
}

/// A stored cell as the model value that binds back to it (keys and
/// cursors, kept as SQLite holds them).
pub(super) fn stored(cell: ValueRef<'_>) -> Value {
    match cell {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
}

/// Decodes the table's columns of a result row, the first at `offset`:
/// the row, or its reject at `position`. A value longer than
/// `max_value_bytes` refuses the row before anything is copied out of
/// SQLite but its excerpt.
pub(super) fn decode_row(
    r: &rusqlite::Row<'_>,
    offset: usize,
    table: &TableSchema,
    limits: ReadLimits,
    position: impl FnOnce() -> Position,
) -> rusqlite::Result<std::result::Result<Row, Reject>> {
    for (i, column) in table.columns.iter().enumerate() {
        let (bytes, head) = match r.get_ref(offset + i)? {
            ValueRef::Text(t) => (t.len(), Head::Text(t)),
            ValueRef::Blob(b) => (b.len(), Head::Binary(b)),
            _ => continue,
        };
        if limits.too_long(bytes) {
            let oversized = Oversized {
                column: &column.name,
                bytes,
                head,
            };
            let place = format!("table {}", table.name);
            return Ok(Err(oversized.reject(
                &place,
                limits.max_value_bytes,
                position(),
            )));
        }
    }
    let mut values = Vec::with_capacity(table.columns.len());
    for (i, column) in table.columns.iter().enumerate() {
        match read_value(r.get_ref(offset + i)?, &column.data_type) {
            Ok(v) => values.push(v),
            Err(e) => {
                let mut raw = serde_json::Map::new();
                for (i, column) in table.columns.iter().enumerate() {
                    raw.insert(column.name.clone(), raw_json(r.get_ref(offset + i)?));
                }
                return Ok(Err(Reject {
                    stage: RejectStage::Source,
                    error: format!("column {}: {e}", column.name),
                    row: serde_json::Value::Object(raw),
                    position: position(),
                }));
            }
        }
    }
    Ok(Ok(Row(values)))
}

fn position_of(key: &Option<Vec<Value>>) -> Position {
    match key {
        Some(key) => Position::Key { key: key.clone() },
        None => Position::Start,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A read's rows (by their first value), rows per batch, and rejects.
    pub(in super::super) async fn read_all(
        mut rx: BatchStream,
    ) -> (Vec<Value>, Vec<u64>, Vec<Reject>) {
        let (mut ids, mut sizes, mut rejects) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(batch) = rx.recv().await {
            let batch = batch.unwrap();
            sizes.push(batch.rows_read());
            for change in &batch.changes {
                ids.push(change.row().0[0].clone());
            }
            rejects.extend(batch.rejects);
            if batch.last {
                break;
            }
        }
        (ids, sizes, rejects)
    }

    #[test]
    fn rowid_chunks_cover_the_range_without_overlap() {
        let chunks = rowid_chunks(Some(1), Some(1000), 1000, 300);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].lower, None);
        assert_eq!(chunks[0].upper, Some(vec![Value::Int(250)]));
        assert_eq!(chunks[1].lower, Some(vec![Value::Int(250)]));
        assert_eq!(chunks[3].upper, None);
        assert_eq!(rowid_chunks(None, None, 0, 10), vec![Chunk::whole(0)]);
        assert_eq!(rowid_chunks(Some(5), Some(5), 1, 10).len(), 1);
    }

    #[tokio::test]
    async fn chunks_end_at_batch_bytes_and_an_oversized_value_is_a_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE doc (id INTEGER PRIMARY KEY, body BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
             INSERT INTO doc SELECT i, zeroblob(300) FROM n;
             UPDATE doc SET body = zeroblob(5000) WHERE id = 7;",
        )
        .unwrap();
        let source = SqliteSource {
            path,
            limits: ReadLimits {
                batch_bytes: 1000,
                max_value_bytes: 2000,
            },
        };
        let table = Arc::new(
            source
                .blocking(|conn| discover_table(conn, "doc"))
                .await
                .unwrap(),
        );
        let (ids, sizes, rejects) =
            read_all(source.read_chunk(table, Chunk::whole(10), Position::Start, 100)).await;
        assert!(sizes.len() >= 3, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        assert_eq!(
            ids,
            (1..=10)
                .filter(|&i| i != 7)
                .map(Value::Int)
                .collect::<Vec<_>>()
        );
        let [reject] = rejects.as_slice() else {
            panic!("{rejects:?}")
        };
        assert!(
            reject.error.starts_with(
                "table doc, row with key (7), column body: a value of 5000 bytes, longer than max_value_bytes (2000)"
            ),
            "{}",
            reject.error
        );
        assert!(reject.row.as_str().unwrap().starts_with("\\x0000"));
        assert_eq!(
            reject.position,
            Position::Key {
                key: vec![Value::Int(7)]
            }
        );
    }
}
