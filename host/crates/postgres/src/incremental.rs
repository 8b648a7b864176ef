//! Incremental reads of PostgreSQL tables: keyset pages over `(cursor,
//! primary key)`, each one `COPY (SELECT … WHERE (c, k…) > (…) ORDER BY
//! c, k… LIMIT n) TO STDOUT (FORMAT binary)` decoded like the snapshot's
//! chunks. Bounds are literals cast to each column's own type, so they
//! compare in its order and collation, the same as `ORDER BY`. Pages are
//! separate statements outside any snapshot: each starts after the last row
//! handed on, so a run that is stopped loses nothing.

use std::future::Future;
use std::sync::Arc;

use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::catalog::SourceTable;
use super::copy_binary::{CopyDecoder, FieldSpan, Wire};
use super::source::{decode_fields, decode_tuple, oversized_field, undecodable_row};
use super::sql::{qualified, quote_ident, typed_literal};
use super::types::Read;
use crate::error::{Error, Result, ResultExt};
use dmp_contract::keyset::{Page, Pages, read_pages};
use dmp_contract::{BatchStream, ReadLimits};
use dmp_model::{Batch, Change, DataType, Position, Row, TableSchema, Value};

/// Reads the rows of `schema` after `after`; `plan` resolves how the
/// table's columns are read (the source's discovery).
// What the source holds (pool, place, limits) and what the read asks for
// (table, cursor, position, rows), each plainly: a struct for the call
// alone would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) fn read(
    pool: PgPool,
    place: String,
    plan: impl Future<Output = Result<Arc<SourceTable>>> + Send + 'static,
    schema: Arc<TableSchema>,
    cursor: usize,
    after: Position,
    batch_rows: usize,
    limits: ReadLimits,
) -> BatchStream {
    BatchStream::spawn(move |tx| async move {
        let table = plan.await?;
        let reader = Reader::new(&place, &table, schema, cursor, limits)?;
        reader.run(&pool, after, batch_rows.max(1), &tx).await
    })
}

/// The columns pages are ordered by: the cursor, then the primary key.
struct Keyset {
    /// Column positions, cursor first.
    columns: Vec<usize>,
}

impl Keyset {
    fn of(table: &SourceTable, cursor: usize, place: &str) -> Result<Keyset> {
        let schema = &table.schema;
        let column = schema.columns.get(cursor).ok_or_else(|| {
            Error::Config(format!(
                "{place}: table {}: cursor column number {cursor} does not exist",
                schema.name
            ))
        })?;
        let read = table.columns.get(cursor).map(|c| c.read);
        if matches!(column.data_type, DataType::Json | DataType::Bytes)
            || read == Some(Read::ArrayAsJson)
        {
            return Err(Error::Config(format!(
                "{place}: table {}: cursor column {} is of type {}, which has no useful order; choose a number, text, date or timestamp column",
                schema.name, column.name, column.data_type
            )));
        }
        let keys = schema.primary_key_indices();
        if keys.is_empty() {
            return Err(Error::Config(format!(
                "{place}: table {}: incremental mode needs a primary key (rows with equal cursor values are told apart by it)",
                schema.name
            )));
        }
        if let Some(&k) = keys
            .iter()
            .find(|&&k| table.columns[k].read == Read::ArrayAsJson)
        {
            return Err(Error::Unsupported(format!(
                "{place}: table {}: primary key column {} is an array, which cannot bound an incremental read",
                schema.name, schema.columns[k].name
            )));
        }
        let mut columns = vec![cursor];
        columns.extend(keys);
        Ok(Keyset { columns })
    }

    /// The page after `after` (cursor and key of the last row read), or
    /// the first page.
    fn page_sql(&self, table: &SourceTable, after: Option<&[Value]>, limit: usize) -> String {
        let schema = &table.schema;
        let from = qualified(
            schema.namespace.as_deref().unwrap_or("public"),
            &schema.name,
        );
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|&i| quote_ident(&schema.columns[i].name))
            .collect();
        let list = names.join(", ");
        let filter = match after {
            Some(values) => {
                let literals: Vec<String> = self
                    .columns
                    .iter()
                    .zip(values)
                    .map(|(&i, v)| typed_literal(v, &table.columns[i].sql_type))
                    .collect();
                format!("({list}) > ({})", literals.join(", "))
            }
            // NULL sorts last: such rows are left out, not read on the
            // first run only.
            None => format!("{} IS NOT NULL", names[0]),
        };
        format!(
            "COPY (SELECT {} FROM {from} WHERE {filter} ORDER BY {list} LIMIT {limit}) TO STDOUT (FORMAT binary)",
            table.select_list()
        )
    }
}

struct Reader<'a> {
    place: &'a str,
    table: &'a SourceTable,
    schema: Arc<TableSchema>,
    keyset: Keyset,
    wires: Vec<Wire>,
    /// Pages end at `batch_bytes`; longer values refuse their row.
    limits: ReadLimits,
}

impl<'a> Reader<'a> {
    fn new(
        place: &'a str,
        table: &'a SourceTable,
        schema: Arc<TableSchema>,
        cursor: usize,
        limits: ReadLimits,
    ) -> Result<Self> {
        let planned: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        let current: Vec<&str> = table
            .schema
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        if planned != current {
            return Err(Error::Config(format!(
                "{place}: the columns of table {} changed since discovery ({} → {})",
                schema.name,
                planned.join(", "),
                current.join(", ")
            )));
        }
        Ok(Reader {
            place,
            table,
            keyset: Keyset::of(table, cursor, place)?,
            wires: table.columns.iter().map(|c| c.read.wire()).collect(),
            schema,
            limits,
        })
    }

    fn ctx(&self) -> String {
        format!(
            "{}: reading table {} incrementally",
            self.place, self.schema.name
        )
    }

    async fn run(
        &self,
        pool: &PgPool,
        after: Position,
        batch_rows: usize,
        tx: &mpsc::Sender<Result<Batch>>,
    ) -> Result<()> {
        self.warn_null_cursors(pool).await?;
        let label = format!("{}: table {}", self.place, self.schema.name);
        let mut pages = PgPages {
            reader: self,
            pool,
            batch_rows,
        };
        read_pages(
            &self.schema,
            &self.keyset.columns,
            &label,
            after,
            batch_rows,
            tx,
            &mut pages,
        )
        .await
    }

    async fn warn_null_cursors(&self, pool: &PgPool) -> Result<()> {
        let schema = &self.schema;
        let cursor = &schema.columns[self.keyset.columns[0]].name;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} IS NULL",
            qualified(
                schema.namespace.as_deref().unwrap_or("public"),
                &schema.name
            ),
            quote_ident(cursor)
        );
        let nulls: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .context(|| self.ctx())?;
        if nulls > 0 {
            warn!(
                table = schema.name,
                column = cursor,
                rows = nulls,
                "rows with a NULL cursor are never read incrementally"
            );
        }
        Ok(())
    }

    /// Reads one page whole (or up to `batch_bytes` of it), so the session
    /// goes back to the pool before the batch waits for the writer.
    async fn page(&self, pool: &PgPool, sql: &str, limit: usize) -> Result<Page> {
        let mut conn = pool.acquire().await.context(|| self.ctx())?;
        let mut page = Page::with_capacity(limit);
        let read = async {
            let mut decoder = CopyDecoder::new(self.wires.len());
            let mut spans: Vec<FieldSpan> = Vec::with_capacity(self.wires.len());
            let mut stream = conn.copy_out_raw(sql).await.context(|| self.ctx())?;
            // Bytes of the page's rows as the server sent them.
            let mut bytes = 0usize;
            while let Some(chunk) = stream.try_next().await.context(|| self.ctx())? {
                decoder.feed(&chunk);
                while decoder.next_row(&mut spans).map_err(|e| {
                    Error::Data(format!("{}: broken COPY stream: {}", self.ctx(), e.0))
                })? {
                    bytes += decoder.tuple().len();
                    self.row(&mut page, decoder.data(), &spans);
                    if page.rows < limit && self.limits.batch_full(page.rows, limit, bytes) {
                        page.cut = true;
                        return Ok(());
                    }
                }
            }
            if decoder.finished() {
                Ok(())
            } else {
                Err(Error::Data(format!(
                    "{}: the COPY stream ended without its trailer",
                    self.ctx()
                )))
            }
        }
        .await;
        if read.is_err() || page.cut {
            // A COPY stopped half way leaves rows in flight: close the
            // session rather than hand it back to be drained.
            conn.close_on_drop();
        }
        read.map(|()| page)
    }

    /// Decodes one tuple into a row, or a reject naming the bad values.
    fn row(&self, page: &mut Page, data: &[u8], spans: &[FieldSpan]) {
        page.rows += 1;
        if let Some(oversized) =
            oversized_field(&self.schema, data, spans, &self.wires, self.limits)
        {
            // Only the cursor and key are decoded, for the row's position.
            let order: Vec<Value> = decode_fields(data, spans, &self.wires, &self.keyset.columns)
                .into_iter()
                .map(|v| v.unwrap_or_else(|u| Value::Text(u.value)))
                .collect();
            let place = format!("{}: table {}", self.place, self.schema.name);
            let reject = oversized.reject(&place, self.limits.max_value_bytes, position_of(&order));
            page.rejects.push(reject);
            page.last = Some(order);
            return;
        }
        let (values, bad) = decode_tuple(data, spans, &self.wires);
        if bad.is_empty() {
            page.last = None;
            page.changes.push(Change::Insert(Row(values)));
            return;
        }
        // A cursor or key the model cannot hold (timestamp infinity, numeric
        // NaN) is kept as PostgreSQL's text for it, which the typed literal
        // of the next bound casts back to the same value.
        let order: Vec<Value> = self
            .keyset
            .columns
            .iter()
            .map(|&c| match bad.iter().find(|(i, _)| *i == c) {
                Some((_, u)) => Value::Text(u.value.clone()),
                None => values.get(c).cloned().unwrap_or(Value::Null),
            })
            .collect();
        page.rejects.push(undecodable_row(
            &self.schema,
            values,
            bad,
            position_of(&order),
        ));
        page.last = Some(order);
    }
}

/// The position of a row by its cursor and key values.
fn position_of(order: &[Value]) -> Position {
    match order.split_first() {
        Some((cursor, key)) => Position::Cursor {
            cursor: cursor.clone(),
            key: key.to_vec(),
        },
        None => Position::Start,
    }
}

/// The pages of one incremental read.
struct PgPages<'r, 'a> {
    reader: &'r Reader<'a>,
    pool: &'r PgPool,
    batch_rows: usize,
}

#[async_trait::async_trait]
impl Pages for PgPages<'_, '_> {
    async fn fetch(&mut self, mark: Option<&[Value]>) -> Result<Page> {
        let reader = self.reader;
        let sql = reader.keyset.page_sql(reader.table, mark, self.batch_rows);
        debug!(table = reader.schema.name, sql, "reading page");
        reader.page(self.pool, &sql, self.batch_rows).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::SourceColumn;
    use super::*;
    use dmp_model::Column;

    fn table(keys: &[&str]) -> SourceTable {
        let column = |name: &str, t: DataType, read: Read, sql: &str| {
            (
                Column::new(name, t),
                SourceColumn {
                    read,
                    sql_type: sql.into(),
                },
            )
        };
        let (columns, reads): (Vec<_>, Vec<_>) = [
            column("Id", DataType::Int64, Read::Native(Wire::Int8), "bigint"),
            column("region", DataType::TEXT, Read::Native(Wire::Text), "text"),
            column("n", DataType::Int32, Read::Native(Wire::Int4), "integer"),
            column(
                "updated at",
                DataType::TimestampTz,
                Read::Native(Wire::TimestampTz),
                "timestamp with time zone",
            ),
            column("tags", DataType::Json, Read::ArrayAsJson, "text[]"),
            column("mood", DataType::TEXT, Read::AsText, "public.mood"),
        ]
        .into_iter()
        .unzip();
        SourceTable {
            oid: sqlx::postgres::types::Oid(1),
            schema: TableSchema {
                namespace: Some("app".into()),
                name: "Order".into(),
                columns,
                primary_key: keys.iter().map(|k| k.to_string()).collect(),
                indexes: Vec::new(),
                foreign_keys: Vec::new(),
                ..Default::default()
            },
            columns: reads,
            partitioned: false,
        }
    }

    const SELECT: &str = "SELECT \"Id\", \"region\", \"n\", \"updated at\", to_json(\"tags\")::text, \"mood\"::text FROM \"app\".\"Order\"";

    fn ts(text: &str) -> Value {
        Value::parse_text(text, &DataType::TimestampTz).unwrap()
    }

    #[test]
    fn pages_bound_cursor_then_key_with_typed_literals() {
        let t = table(&["Id"]);
        let k = Keyset::of(&t, 3, "src").unwrap();
        assert_eq!(
            k.page_sql(&t, None, 2),
            format!(
                "COPY ({SELECT} WHERE \"updated at\" IS NOT NULL ORDER BY \"updated at\", \"Id\" LIMIT 2) TO STDOUT (FORMAT binary)"
            )
        );
        assert_eq!(
            k.page_sql(&t, Some(&[ts("2024-01-01 10:00:00Z"), Value::Int(7)]), 2),
            format!(
                "COPY ({SELECT} WHERE (\"updated at\", \"Id\") > ('2024-01-01 10:00:00+00'::timestamp with time zone, '7'::bigint) \
                 ORDER BY \"updated at\", \"Id\" LIMIT 2) TO STDOUT (FORMAT binary)"
            )
        );
        let t = table(&["region", "Id"]);
        let sql = Keyset::of(&t, 2, "src").unwrap().page_sql(
            &t,
            Some(&[Value::Int(3), Value::Text("it's".into()), Value::Int(7)]),
            100,
        );
        assert!(
            sql.contains(
                "WHERE (\"n\", \"region\", \"Id\") > ('3'::integer, 'it''s'::text, '7'::bigint) \
                 ORDER BY \"n\", \"region\", \"Id\" LIMIT 100)"
            ),
            "{sql}"
        );
        // A key read as text compares as its own type; a cursor the model
        // cannot hold travels as PostgreSQL's text for it.
        let t = table(&["region", "mood", "Id"]);
        let sql = Keyset::of(&t, 3, "src").unwrap().page_sql(
            &t,
            Some(&[
                Value::Text("infinity".into()),
                Value::Text("eu".into()),
                Value::Text("ok".into()),
                Value::Int(1),
            ]),
            10,
        );
        assert!(
            sql.contains(
                "WHERE (\"updated at\", \"region\", \"mood\", \"Id\") > ('infinity'::timestamp with time zone, 'eu'::text, 'ok'::public.mood, '1'::bigint) \
                 ORDER BY \"updated at\", \"region\", \"mood\", \"Id\" LIMIT 10)"
            ),
            "{sql}"
        );
    }

    #[test]
    fn unusable_tables_are_refused() {
        let err = Keyset::of(&table(&[]), 3, "src").err().unwrap();
        assert!(matches!(err, Error::Config(_)));
        assert!(
            err.to_string()
                .contains("src: table Order: incremental mode needs a primary key"),
            "{err}"
        );
        let err = Keyset::of(&table(&["Id"]), 4, "src").err().unwrap();
        assert!(matches!(err, Error::Config(_)));
        assert!(err.to_string().contains("cursor column tags"), "{err}");
        assert!(Keyset::of(&table(&["tags"]), 3, "src").is_err());
        assert!(Keyset::of(&table(&["Id"]), 17, "src").is_err());
    }
}
