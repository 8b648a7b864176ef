//! Incremental reads of SQLite tables: keyset pages over `(cursor, primary
//! key)`, each `SELECT … WHERE (c, k…) > (?, ?…) ORDER BY c, k… LIMIT n`
//! in its own short statement, so writers are never held off for the
//! whole read. Positions hold the cursor and key cells as SQLite stored
//! them (not as decoded): bound back, they compare exactly as the rows do,
//! whatever text form a date or number was stored in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;
use tracing::warn;

use super::quote;
use super::source::{decode_row, stored};
use super::types::Bind;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::{BatchStream, Gathering};
use dmp_model::{Batch, DataType, Position, TableSchema, Value};

/// Reads the rows of `table` after `after` from the database at `path`.
pub(super) fn read(
    path: PathBuf,
    table: Arc<TableSchema>,
    cursor: usize,
    after: Position,
    gathering: Gathering,
) -> BatchStream {
    // The caller's span (the engine's, naming the table) goes with the
    // reader.
    BatchStream::spawn_blocking(move |tx| read_pages(&path, &table, cursor, after, gathering, tx))
}

/// The columns pages are ordered by: the cursor, then the primary key.
struct Keyset {
    /// Quoted names, cursor first.
    columns: Vec<String>,
}

impl Keyset {
    fn of(table: &TableSchema, cursor: usize) -> Result<Keyset> {
        let column = table.columns.get(cursor).ok_or_else(|| {
            Error::Config(format!(
                "table {}: cursor column number {cursor} does not exist",
                table.name
            ))
        })?;
        if matches!(column.data_type, DataType::Json | DataType::Bytes) {
            return Err(Error::Config(format!(
                "table {}: cursor column {} is of type {}, which has no useful order; choose a number, text, date or timestamp column",
                table.name, column.name, column.data_type
            )));
        }
        if table.primary_key.is_empty() {
            return Err(Error::Config(format!(
                "table {}: incremental mode needs a primary key (rows with equal cursor values are told apart by it)",
                table.name
            )));
        }
        let mut columns = vec![quote(&column.name)];
        columns.extend(table.primary_key.iter().map(|k| quote(k)));
        Ok(Keyset { columns })
    }

    /// The page after `after` (the stored cells of the last row read), or
    /// the first page.
    fn page_sql(&self, table: &TableSchema, after: bool, limit: usize) -> String {
        let list = self.columns.join(", ");
        let filter = if after {
            let params: Vec<String> = (1..=self.columns.len()).map(|i| format!("?{i}")).collect();
            format!("({list}) > ({})", params.join(", "))
        } else {
            // NULL sorts first in SQLite: such rows are left out, not read
            // on the first run only.
            format!("{} IS NOT NULL", self.columns[0])
        };
        let select: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
        format!(
            "SELECT {list}, {} FROM {} WHERE {filter} ORDER BY {list} LIMIT {limit}",
            select.join(", "),
            quote(&table.name)
        )
    }
}

fn read_pages(
    path: &Path,
    table: &Arc<TableSchema>,
    cursor: usize,
    after: Position,
    mut gathering: Gathering,
    tx: &mpsc::Sender<Result<Batch>>,
) -> Result<()> {
    let keyset = Keyset::of(table, cursor)?;
    let mut mark: Option<Vec<Value>> = match &after {
        Position::Start => None,
        Position::Cursor { cursor, key }
            if key.len() == table.primary_key.len() && !cursor.is_null() =>
        {
            Some(
                std::iter::once(cursor.clone())
                    .chain(key.iter().cloned())
                    .collect(),
            )
        }
        other => {
            return Err(Error::Data(format!(
                "table {}: an incremental read cannot start after {other:?}; if the table's cursor or key changed, run with --restart to read every row again",
                table.name
            )));
        }
    };
    let ctx = || format!("reading table {} incrementally", table.name);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .context(|| format!("opening SQLite database {}", path.display()))?;
    let nulls: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM {} WHERE {} IS NULL",
                quote(&table.name),
                keyset.columns[0]
            ),
            [],
            |r| r.get(0),
        )
        .context(ctx)?;
    if nulls > 0 {
        warn!(
            table = table.name,
            column = table.columns[cursor].name,
            rows = nulls,
            "rows with a NULL cursor are never read incrementally"
        );
    }
    let mut position = after;
    loop {
        let last =
            read_page(&conn, table, &keyset, mark.as_deref(), &mut gathering).context(ctx)?;
        // A page ends at batch_rows rows or at batch_bytes: either way more
        // may follow. A page that ends short of both was the last.
        let full = gathering.full();
        let (changes, rejects) = gathering.take();
        if let Some(last) = last {
            if mark.as_ref() == Some(&last) {
                return Err(Error::Data(format!(
                    "table {}: the read does not move past {last:?}",
                    table.name
                )));
            }
            position = Position::Cursor {
                cursor: last[0].clone(),
                key: last[1..].to_vec(),
            };
            mark = Some(last);
            let batch = Batch {
                table: table.clone(),
                chunk: 0,
                changes,
                rejects,
                wire: None,
                position: position.clone(),
                last: false,
            };
            if tx.blocking_send(Ok(batch)).is_err() {
                return Ok(());
            }
        }
        if !full {
            break;
        }
    }
    let _ = tx.blocking_send(Ok(Batch {
        table: table.clone(),
        chunk: 0,
        changes: Vec::new(),
        rejects: Vec::new(),
        wire: None,
        position,
        last: true,
    }));
    Ok(())
}

/// Reads the page after `after` into `gathering` until it is full (the
/// statement asks for `batch_rows` rows; `batch_bytes` may end the page
/// sooner). Returns the stored cursor and key cells of its last row.
fn read_page(
    conn: &Connection,
    table: &TableSchema,
    keyset: &Keyset,
    after: Option<&[Value]>,
    gathering: &mut Gathering,
) -> rusqlite::Result<Option<Vec<Value>>> {
    let sql = keyset.page_sql(table, after.is_some(), gathering.batch_rows());
    let mut stmt = conn.prepare_cached(&sql)?;
    let params = after.unwrap_or_default();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(Bind)))?;
    let nkey = keyset.columns.len();
    let mut last = None;
    while !gathering.full()
        && let Some(r) = rows.next()?
    {
        let order = (0..nkey)
            .map(|i| r.get_ref(i).map(stored))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let position = || Position::Cursor {
            cursor: order[0].clone(),
            key: order[1..].to_vec(),
        };
        match decode_row(r, nkey, table, gathering.limits(), position)? {
            Ok(row) => gathering.push_row(row),
            Err(reject) => gathering.push_reject(reject),
        }
        last = Some(order);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_contract::ReadLimits;
    use dmp_model::{Change, Column};

    fn rows_of(n: usize) -> Gathering {
        Gathering::new(n, ReadLimits::default())
    }

    fn table(keys: &[&str]) -> TableSchema {
        TableSchema {
            namespace: None,
            name: "Order".into(),
            columns: vec![
                Column::new("a", DataType::Int64),
                Column::new("b", DataType::TEXT),
                Column::new("c", DataType::Int64),
                Column::new("updated at", DataType::Timestamp),
                Column::new("doc", DataType::Json),
            ],
            primary_key: keys.iter().map(|k| k.to_string()).collect(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn pages_compare_cursor_then_key() {
        let cols = "\"a\", \"b\", \"c\", \"updated at\", \"doc\"";
        let t = table(&["a"]);
        let k = Keyset::of(&t, 3).unwrap();
        assert_eq!(
            k.page_sql(&t, false, 2),
            format!(
                "SELECT \"updated at\", \"a\", {cols} FROM \"Order\" WHERE \"updated at\" IS NOT NULL \
                 ORDER BY \"updated at\", \"a\" LIMIT 2"
            )
        );
        assert_eq!(
            k.page_sql(&t, true, 2),
            format!(
                "SELECT \"updated at\", \"a\", {cols} FROM \"Order\" WHERE (\"updated at\", \"a\") > (?1, ?2) \
                 ORDER BY \"updated at\", \"a\" LIMIT 2"
            )
        );
        let t = table(&["a", "b"]);
        assert!(
            Keyset::of(&t, 3)
                .unwrap()
                .page_sql(&t, true, 5)
                .contains("WHERE (\"updated at\", \"a\", \"b\") > (?1, ?2, ?3) ORDER BY \"updated at\", \"a\", \"b\" LIMIT 5")
        );
        let t = table(&["a", "b", "c"]);
        assert!(
            Keyset::of(&t, 3)
                .unwrap()
                .page_sql(&t, true, 5)
                .contains("WHERE (\"updated at\", \"a\", \"b\", \"c\") > (?1, ?2, ?3, ?4) ORDER BY \"updated at\", \"a\", \"b\", \"c\" LIMIT 5")
        );
    }

    #[test]
    fn unusable_tables_are_refused() {
        let err = Keyset::of(&table(&[]), 3).err().unwrap();
        assert!(matches!(err, Error::Config(_)));
        assert!(
            err.to_string()
                .contains("table Order: incremental mode needs a primary key")
        );
        let err = Keyset::of(&table(&["a"]), 4).err().unwrap();
        assert!(err.to_string().contains("cursor column doc"), "{err}");
        assert!(Keyset::of(&table(&["a"]), 9).is_err());
    }

    fn db(dir: &Path) -> PathBuf {
        let path = dir.join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TIMESTAMP, n INTEGER);
             INSERT INTO ev VALUES (1, '2024-01-01 10:00:00', 1), (2, '2024-01-01T09:00:00', 2),
               (3, '2024-01-01 10:00:00', 3), (4, NULL, 4), (5, '2024-01-01 10:00:00', 5),
               (6, '2024-01-02', 6), (7, 'not a time', 7);",
        )
        .unwrap();
        path
    }

    fn ev() -> Arc<TableSchema> {
        let mut id = Column::new("id", DataType::Int64);
        id.nullable = false;
        Arc::new(TableSchema {
            namespace: None,
            name: "ev".into(),
            columns: vec![
                id,
                Column::new("at", DataType::Timestamp),
                Column::new("n", DataType::Int64),
            ],
            primary_key: vec!["id".into()],
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        })
    }

    /// Ids read (rows and rejects) and the final position.
    async fn drain(mut rx: BatchStream) -> (Vec<i64>, Position) {
        let mut ids = Vec::new();
        while let Some(batch) = rx.recv().await {
            let batch = batch.unwrap();
            assert!(batch.rows_read() <= 2);
            for change in &batch.changes {
                assert!(matches!(change, Change::Insert(_)));
                if let Value::Int(id) = change.row().0[0] {
                    ids.push(id);
                }
            }
            for reject in &batch.rejects {
                ids.push(reject.row["id"].as_i64().unwrap());
            }
            if batch.last {
                return (ids, batch.position);
            }
        }
        panic!("no last batch");
    }

    #[tokio::test]
    async fn equal_cursors_across_pages_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        // Stored text order: '2024-01-01 10…' < '2024-01-01T09…' < '2024-01-02' < 'not…'.
        let (ids, position) = drain(read(path.clone(), ev(), 1, Position::Start, rows_of(2))).await;
        assert_eq!(ids, vec![1, 3, 5, 2, 6, 7]);
        assert_eq!(
            position,
            Position::Cursor {
                cursor: Value::Text("not a time".into()),
                key: vec![Value::Int(7)]
            }
        );
        // Resume in the middle of the equal cursors.
        let mid = Position::Cursor {
            cursor: Value::Text("2024-01-01 10:00:00".into()),
            key: vec![Value::Int(3)],
        };
        let (ids, _) = drain(read(path.clone(), ev(), 1, mid, rows_of(2))).await;
        assert_eq!(ids, vec![5, 2, 6, 7]);
        // Nothing new: the position stays.
        let (ids, same) = drain(read(path, ev(), 1, position.clone(), rows_of(2))).await;
        assert!(ids.is_empty());
        assert_eq!(same, position);
    }

    #[tokio::test]
    async fn pages_end_at_batch_bytes_and_an_oversized_value_is_a_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE doc (id INTEGER PRIMARY KEY, at INTEGER, body TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)
             INSERT INTO doc SELECT i, i, printf('%.300c', 'a') FROM n;
             UPDATE doc SET body = printf('%.5000c', 'b') WHERE id = 5;",
        )
        .unwrap();
        let mut id = Column::new("id", DataType::Int64);
        id.nullable = false;
        let table = Arc::new(TableSchema {
            name: "doc".into(),
            columns: vec![
                id,
                Column::new("at", DataType::Int64),
                Column::new("body", DataType::TEXT),
            ],
            primary_key: vec!["id".into()],
            ..Default::default()
        });
        let limits = ReadLimits {
            batch_bytes: 1000,
            max_value_bytes: 2000,
        };
        let read = read(path, table, 1, Position::Start, Gathering::new(100, limits));
        let (ids, sizes, rejects) = super::super::source::tests::read_all(read).await;
        // 300-byte rows: a batch ends at 1000 bytes, long before 100 rows.
        assert!(sizes.len() >= 4, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        let expected: Vec<Value> = (1..=12).filter(|&i| i != 5).map(Value::Int).collect();
        assert_eq!(ids, expected);
        let [reject] = rejects.as_slice() else {
            panic!("{rejects:?}")
        };
        assert!(
            reject.error.starts_with(
                "table doc, row with cursor 5 and key (5), column body: a value of 5000 bytes, longer than max_value_bytes (2000)"
            ),
            "{}",
            reject.error
        );
        let excerpt = reject.row.as_str().unwrap();
        assert!(excerpt.len() <= 1024 && excerpt.starts_with("bbb"));
        assert_eq!(
            reject.position,
            Position::Cursor {
                cursor: Value::Int(5),
                key: vec![Value::Int(5)]
            }
        );
    }
}
