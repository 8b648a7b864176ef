//! Incremental reads of SQLite tables: keyset pages over `(cursor, primary
//! key)`, each `SELECT … WHERE (c, k…) > (?, ?…) ORDER BY c, k… LIMIT n`
//! in its own short statement, so writers are never held off for the
//! whole read. Positions hold the cursor and key cells as SQLite stored
//! them (not as decoded): bound back, they compare exactly as the rows do,
//! whatever text form a date or number was stored in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, types::ValueRef};
use tokio::sync::mpsc;
use tracing::warn;

use super::quote;
use super::types::{Bind, raw_json, read_value};
use crate::connectors::{BatchStream, READ_AHEAD_BATCHES};
use crate::error::{Error, Result, ResultExt};
use crate::model::{
    Batch, Change, DataType, Position, Reject, RejectStage, Row, TableSchema, Value,
};

/// Reads the rows of `table` after `after` from the database at `path`.
pub(super) fn read(
    path: PathBuf,
    table: Arc<TableSchema>,
    cursor: usize,
    after: Position,
    batch_rows: usize,
) -> BatchStream {
    let (tx, rx) = mpsc::channel(READ_AHEAD_BATCHES);
    // The caller's span (the engine's, naming the table) goes with the reader.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        if let Err(e) = read_pages(&path, &table, cursor, after, batch_rows.max(1), &tx) {
            // The receiver may be gone (shutdown): nothing left to tell.
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
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

/// A stored cell as the model value that binds back to it.
fn stored(cell: ValueRef<'_>) -> Value {
    match cell {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
}

fn read_pages(
    path: &Path,
    table: &Arc<TableSchema>,
    cursor: usize,
    after: Position,
    batch_rows: usize,
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
        let page = read_page(&conn, table, &keyset, mark.as_deref(), batch_rows).context(ctx)?;
        let full = page.rows == batch_rows;
        if let Some(last) = page.last {
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
                changes: page.changes,
                rejects: page.rejects,
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

/// One page of rows, decoded.
struct Page {
    changes: Vec<Change>,
    rejects: Vec<Reject>,
    rows: usize,
    /// The stored cursor and key cells of the page's last row.
    last: Option<Vec<Value>>,
}

fn read_page(
    conn: &Connection,
    table: &TableSchema,
    keyset: &Keyset,
    after: Option<&[Value]>,
    limit: usize,
) -> rusqlite::Result<Page> {
    let mut stmt = conn.prepare_cached(&keyset.page_sql(table, after.is_some(), limit))?;
    let params = after.unwrap_or_default();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(Bind)))?;
    let nkey = keyset.columns.len();
    let mut page = Page {
        changes: Vec::with_capacity(limit),
        rejects: Vec::new(),
        rows: 0,
        last: None,
    };
    while let Some(r) = rows.next()? {
        page.rows += 1;
        let mut order = Vec::with_capacity(nkey);
        for i in 0..nkey {
            order.push(stored(r.get_ref(i)?));
        }
        let mut values = Vec::with_capacity(table.columns.len());
        let mut failure = None;
        for (i, column) in table.columns.iter().enumerate() {
            match read_value(r.get_ref(nkey + i)?, &column.data_type) {
                Ok(v) => values.push(v),
                Err(e) => {
                    failure = Some(format!("column {}: {e}", column.name));
                    break;
                }
            }
        }
        match failure {
            None => page.changes.push(Change::Insert(Row(values))),
            Some(error) => {
                let mut raw = serde_json::Map::new();
                for (i, column) in table.columns.iter().enumerate() {
                    raw.insert(column.name.clone(), raw_json(r.get_ref(nkey + i)?));
                }
                page.rejects.push(Reject {
                    stage: RejectStage::Source,
                    error,
                    row: serde_json::Value::Object(raw),
                    position: Position::Cursor {
                        cursor: order[0].clone(),
                        key: order[1..].to_vec(),
                    },
                });
            }
        }
        page.last = Some(order);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Column;

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
        let (ids, position) = drain(read(path.clone(), ev(), 1, Position::Start, 2)).await;
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
        let (ids, _) = drain(read(path.clone(), ev(), 1, mid, 2)).await;
        assert_eq!(ids, vec![5, 2, 6, 7]);
        // Nothing new: the position stays.
        let (ids, same) = drain(read(path, ev(), 1, position.clone(), 2)).await;
        assert!(ids.is_empty());
        assert_eq!(same, position);
    }
}
