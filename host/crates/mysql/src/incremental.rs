//! Incremental reads of MySQL / MariaDB tables: keyset pages over
//! `(cursor, primary key)`, each `SELECT … WHERE … ORDER BY c, k… LIMIT n`
//! with the bound written out as nested comparisons (MariaDB does not
//! range-scan a row-value comparison) and bound as parameters of the
//! columns' types. Comparisons and `ORDER BY` use the same expressions, so
//! they agree in every collation. Pages are separate statements: each
//! starts after the last row handed on, so a stopped run loses nothing.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Pool, Value as My};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::catalog::ReadColumn;
use super::chunks::key_param;
use super::source::{cell_bytes, decode_cell, oversized_cell, select_list};
use super::sql::{Bound, key_predicate, quote};
use super::types::{Decoded, ReadAs, Wire, decode, raw_json, to_param};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::keyset::{Page, Pages, read_pages};
use dmp_contract::{BatchStream, ReadLimits};
use dmp_model::{
    Batch, Change, DataType, Decimal, Position, Reject, RejectStage, Row, TableSchema, Value,
};

/// How the columns of a table are read, by name (the source's discovery).
pub(super) type Reads = Arc<HashMap<String, ReadColumn>>;

/// Reads the rows of `table` after `after`; `connect` yields the source's
/// pool and how the table's columns are read.
pub(super) fn read(
    connect: impl Future<Output = Result<(Pool, Reads)>> + Send + 'static,
    table: Arc<TableSchema>,
    cursor: usize,
    after: Position,
    batch_rows: usize,
    limits: ReadLimits,
) -> BatchStream {
    BatchStream::spawn(move |tx| async move {
        let (pool, reads) = connect.await?;
        let reader = Reader::new(table, &reads, cursor, limits)?;
        reader.run(&pool, after, batch_rows.max(1), &tx).await
    })
}

/// The columns pages are ordered by: the cursor, then the primary key.
struct Keyset {
    /// Column positions, cursor first.
    columns: Vec<usize>,
    /// The expression each is ordered and compared by: ENUM and SET
    /// columns as text, as the chunk readers do.
    exprs: Vec<String>,
    /// The parameter text each is compared with.
    params: Vec<String>,
}

impl Keyset {
    fn of(
        table: &TableSchema,
        reads: &HashMap<String, ReadColumn>,
        cursor: usize,
    ) -> Result<Keyset> {
        let column = table.columns.get(cursor).ok_or_else(|| {
            Error::Config(format!(
                "table {}: cursor column number {cursor} does not exist",
                table.name
            ))
        })?;
        let read = reads.get(&column.name);
        if matches!(column.data_type, DataType::Json | DataType::Bytes)
            || read.is_some_and(|r| r.read == ReadAs::Wkt)
        {
            return Err(Error::Config(format!(
                "table {}: cursor column {} is of type {}, which has no useful order; choose a number, text, date or timestamp column",
                table.name, column.name, column.data_type
            )));
        }
        let keys = table.primary_key_indices();
        if keys.is_empty() {
            return Err(Error::Config(format!(
                "table {}: incremental mode needs a primary key (rows with equal cursor values are told apart by it)",
                table.name
            )));
        }
        let columns: Vec<usize> = std::iter::once(cursor).chain(keys).collect();
        let exprs = columns
            .iter()
            .map(|&i| {
                let name = &table.columns[i].name;
                match reads.get(name).map(|r| r.wire) {
                    Some(Wire::Ordinal) => format!("CAST({} AS CHAR)", quote(name)),
                    _ => quote(name),
                }
            })
            .collect();
        let params = columns
            .iter()
            .map(|&i| key_param(&table.columns[i].data_type))
            .collect();
        Ok(Keyset {
            columns,
            exprs,
            params,
        })
    }

    /// The page after `after` (cursor and key of the last row read), or
    /// the first page, with its parameters.
    fn page(
        &self,
        table: &TableSchema,
        reads: &HashMap<String, ReadColumn>,
        after: Option<&[Value]>,
        limit: usize,
    ) -> (String, Vec<My>) {
        let (filter, params) = match after {
            Some(values) => {
                let (sql, binds) = key_predicate(&self.exprs, &self.params, Bound::After);
                let params = binds
                    .into_iter()
                    .map(|i| values.get(i).map_or(My::NULL, to_param))
                    .collect();
                (sql, params)
            }
            // NULL sorts first: such rows are left out, not read on the
            // first run only.
            None => (
                format!(
                    "{} IS NOT NULL",
                    quote(&table.columns[self.columns[0]].name)
                ),
                Vec::new(),
            ),
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter} ORDER BY {} LIMIT {limit}",
            select_list(table, reads),
            quote(&table.name),
            self.exprs.join(", ")
        );
        (sql, params)
    }
}

struct Reader<'a> {
    table: Arc<TableSchema>,
    reads: &'a HashMap<String, ReadColumn>,
    keyset: Keyset,
    wires: Vec<Wire>,
    /// Whether each column is one of the keyset's.
    ordering: Vec<bool>,
    /// Pages end at `batch_bytes`; longer values refuse their row.
    limits: ReadLimits,
}

impl<'a> Reader<'a> {
    fn new(
        table: Arc<TableSchema>,
        reads: &'a HashMap<String, ReadColumn>,
        cursor: usize,
        limits: ReadLimits,
    ) -> Result<Self> {
        let keyset = Keyset::of(&table, reads, cursor)?;
        let mut ordering = vec![false; table.columns.len()];
        for &i in &keyset.columns {
            ordering[i] = true;
        }
        Ok(Reader {
            wires: table
                .columns
                .iter()
                .map(|c| reads.get(&c.name).map_or(Wire::Other, |r| r.wire))
                .collect(),
            table,
            reads,
            keyset,
            ordering,
            limits,
        })
    }

    fn ctx(&self) -> String {
        format!("reading table {} incrementally", self.table.name)
    }

    async fn run(
        &self,
        pool: &Pool,
        after: Position,
        batch_rows: usize,
        tx: &mpsc::Sender<Result<Batch>>,
    ) -> Result<()> {
        self.warn_null_cursors(pool).await?;
        let label = format!("table {}", self.table.name);
        let mut pages = MyPages {
            reader: self,
            pool,
            batch_rows,
            zero_dates: HashSet::new(),
        };
        read_pages(
            &self.table,
            &self.keyset.columns,
            &label,
            after,
            batch_rows,
            tx,
            &mut pages,
        )
        .await
    }

    async fn warn_null_cursors(&self, pool: &Pool) -> Result<()> {
        let cursor = &self.table.columns[self.keyset.columns[0]].name;
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NULL",
            quote(&self.table.name),
            quote(cursor)
        );
        let mut conn = pool.get_conn().await.context(|| self.ctx())?;
        let nulls: Option<u64> = conn.query_first(sql).await.context(|| self.ctx())?;
        if let Some(nulls) = nulls.filter(|n| *n > 0) {
            warn!(
                table = self.table.name,
                column = cursor,
                rows = nulls,
                "rows with a NULL cursor are never read incrementally"
            );
        }
        Ok(())
    }

    /// Reads one page whole (or up to `batch_bytes` of it), so the session
    /// goes back to the pool before the batch waits for the writer.
    async fn page(
        &self,
        pool: &Pool,
        sql: String,
        params: Vec<My>,
        limit: usize,
        zero_dates: &mut HashSet<usize>,
    ) -> std::result::Result<Page, mysql_async::Error> {
        let mut conn = pool.get_conn().await?;
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params)
        };
        let mut result = conn.exec_iter(sql, params).await?;
        let mut page = Page::with_capacity(limit);
        // Bytes of the page's rows as the server sent them.
        let mut bytes = 0usize;
        while let Some(row) = result.next().await? {
            let cells = row.unwrap_raw();
            bytes += cells.iter().map(cell_bytes).sum::<usize>();
            self.row(&mut page, cells, zero_dates);
            if page.rows < limit && self.limits.batch_full(page.rows, limit, bytes) {
                // The rest of the page is left to the pool to drain.
                page.cut = true;
                break;
            }
        }
        Ok(page)
    }

    /// Decodes one row into a change, or a reject naming the bad value.
    fn row(&self, page: &mut Page, cells: Vec<Option<My>>, zero_dates: &mut HashSet<usize>) {
        page.rows += 1;
        if let Some(oversized) = oversized_cell(&self.table, &cells, self.limits) {
            // Only the cursor and key are decoded, for the row's position.
            let order: Vec<Value> = self
                .keyset
                .columns
                .iter()
                .map(
                    |&c| match decode_cell(&cells[c], &self.table, &self.wires, c) {
                        Ok(Decoded::Value(v)) => v,
                        Ok(Decoded::ZeroDate) => {
                            stand_in(&raw_json(cells[c].as_ref().unwrap_or(&My::NULL)))
                        }
                        Err(refused) => stand_in(&refused.raw),
                    },
                )
                .collect();
            let place = format!("table {}", self.table.name);
            let position = Position::Cursor {
                cursor: order.first().cloned().unwrap_or_default(),
                key: order.get(1..).unwrap_or_default().to_vec(),
            };
            let reject = oversized.reject(&place, self.limits.max_value_bytes, position);
            page.rejects.push(reject);
            page.last = Some(order);
            return;
        }
        let mut values = Vec::with_capacity(cells.len());
        let mut failure: Option<(String, serde_json::Map<String, serde_json::Value>)> = None;
        // Keyset cells the model cannot hold, as the server sent them.
        let mut stand_ins: Vec<(usize, Value)> = Vec::new();
        for (i, cell) in cells.into_iter().enumerate() {
            let column = &self.table.columns[i];
            let cell = cell.unwrap_or(My::NULL);
            // Scalars are a few bytes: kept in case a key cell is a zero date.
            let scalar = (self.ordering[i] && !matches!(cell, My::Bytes(_))).then(|| cell.clone());
            match decode(cell, &column.data_type, self.wires[i]) {
                Ok(Decoded::Value(v)) => values.push(v),
                Ok(Decoded::ZeroDate) => {
                    if zero_dates.insert(i) {
                        warn!(
                            table = self.table.name,
                            column = column.name,
                            "zero dates read as NULL (documented policy)"
                        );
                    }
                    if let Some(raw) = scalar {
                        stand_ins.push((i, stand_in(&raw_json(&raw))));
                    }
                    values.push(Value::Null);
                }
                Err(refused) => {
                    if self.ordering[i] {
                        stand_ins.push((i, stand_in(&refused.raw)));
                    }
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
        let order = (!stand_ins.is_empty() || failure.is_some()).then(|| {
            self.keyset
                .columns
                .iter()
                .map(|&c| match stand_ins.iter().find(|(i, _)| *i == c) {
                    Some((_, v)) => v.clone(),
                    None => values[c].clone(),
                })
                .collect::<Vec<_>>()
        });
        let Some((error, raw)) = failure else {
            page.last = order;
            page.changes.push(Change::Insert(Row(values)));
            return;
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
        let order = order.unwrap_or_default();
        page.rejects.push(Reject {
            stage: RejectStage::Source,
            error,
            row: serde_json::Value::Object(json),
            position: Position::Cursor {
                cursor: order.first().cloned().unwrap_or_default(),
                key: order.get(1..).unwrap_or_default().to_vec(),
            },
        });
        page.last = Some(order);
    }
}

/// A keyset value for a cell the model cannot hold (a zero date, a time
/// past a day), from the cell as the server sent it: bound back as a
/// parameter, the server compares it with the column as the same value.
fn stand_in(raw: &serde_json::Value) -> Value {
    match raw {
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| {
                n.as_u64()
                    .and_then(|u| u.to_string().parse::<Decimal>().ok())
                    .map(Value::Decimal)
            })
            .or_else(|| n.as_f64().map(Value::Float))
            .unwrap_or_default(),
        _ => Value::Null,
    }
}

/// The pages of one incremental read.
struct MyPages<'r, 'a> {
    reader: &'r Reader<'a>,
    pool: &'r Pool,
    batch_rows: usize,
    /// Columns whose zero dates were warned about already.
    zero_dates: HashSet<usize>,
}

#[async_trait::async_trait]
impl Pages for MyPages<'_, '_> {
    async fn fetch(&mut self, mark: Option<&[Value]>) -> Result<Page> {
        let reader = self.reader;
        let (sql, params) = reader
            .keyset
            .page(&reader.table, reader.reads, mark, self.batch_rows);
        debug!(table = reader.table.name, sql, "reading page");
        reader
            .page(
                self.pool,
                sql,
                params,
                self.batch_rows,
                &mut self.zero_dates,
            )
            .await
            .context(|| reader.ctx())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::Column;

    fn table(keys: &[&str]) -> TableSchema {
        TableSchema {
            namespace: Some("db".into()),
            name: "Order Items".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("kind", DataType::TEXT),
                Column::new(
                    "price",
                    DataType::Decimal {
                        precision: Some(10),
                        scale: Some(2),
                    },
                ),
                Column::new("updated_at", DataType::Timestamp),
                Column::new("shape", DataType::TEXT),
                Column::new("doc", DataType::Json),
            ],
            primary_key: keys.iter().map(|k| k.to_string()).collect(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        }
    }

    fn reads() -> HashMap<String, ReadColumn> {
        let mut reads = HashMap::new();
        reads.insert(
            "kind".to_string(),
            ReadColumn {
                read: ReadAs::Plain,
                wire: Wire::Ordinal,
            },
        );
        reads.insert(
            "shape".to_string(),
            ReadColumn {
                read: ReadAs::Wkt,
                wire: Wire::Other,
            },
        );
        reads
    }

    const SELECT: &str =
        "SELECT `id`, `kind`, `price`, `updated_at`, ST_AsText(`shape`), `doc` FROM `Order Items`";

    fn ts(text: &str) -> Value {
        Value::parse_text(text, &DataType::Timestamp).unwrap()
    }

    #[test]
    fn pages_expand_the_keyset_bound() {
        let reads = reads();
        let t = table(&["id"]);
        let k = Keyset::of(&t, &reads, 3).unwrap();
        let (sql, params) = k.page(&t, &reads, None, 2);
        assert_eq!(
            sql,
            format!("{SELECT} WHERE `updated_at` IS NOT NULL ORDER BY `updated_at`, `id` LIMIT 2")
        );
        assert!(params.is_empty());
        let at = ts("2024-01-01 10:00:00.5");
        let (sql, params) = k.page(&t, &reads, Some(&[at.clone(), Value::Int(7)]), 2);
        assert_eq!(
            sql,
            format!(
                "{SELECT} WHERE `updated_at` >= ? AND (`updated_at` > ? OR (`updated_at` = ? AND `id` > ?)) \
                 ORDER BY `updated_at`, `id` LIMIT 2"
            )
        );
        let p = to_param(&at);
        assert_eq!(params, vec![p.clone(), p.clone(), p, My::Int(7)]);

        // Two key columns: an ENUM compares as text, a decimal as a decimal.
        let t = table(&["kind", "price"]);
        let k = Keyset::of(&t, &reads, 0).unwrap();
        let (sql, params) = k.page(
            &t,
            &reads,
            Some(&[
                Value::Int(5),
                Value::Text("a".into()),
                Value::Decimal("1.50".parse().unwrap()),
            ]),
            10,
        );
        assert_eq!(
            sql,
            format!(
                "{SELECT} WHERE `id` >= ? AND (`id` > ? OR (`id` = ? AND CAST(`kind` AS CHAR) >= ? \
                 AND (CAST(`kind` AS CHAR) > ? OR (CAST(`kind` AS CHAR) = ? AND `price` > CAST(? AS DECIMAL(10,2)))))) \
                 ORDER BY `id`, CAST(`kind` AS CHAR), `price` LIMIT 10"
            )
        );
        assert_eq!(params.len(), 7);
        assert_eq!(params[6], My::Bytes(b"1.50".to_vec()));

        // Three key columns.
        let t = table(&["id", "kind", "price"]);
        let k = Keyset::of(&t, &reads, 3).unwrap();
        let values = [
            at,
            Value::Int(1),
            Value::Text("b".into()),
            Value::Decimal("2".parse().unwrap()),
        ];
        let (sql, params) = k.page(&t, &reads, Some(&values), 10);
        assert!(
            sql.contains(
                "WHERE `updated_at` >= ? AND (`updated_at` > ? OR (`updated_at` = ? AND `id` >= ? AND (`id` > ? \
                 OR (`id` = ? AND CAST(`kind` AS CHAR) >= ? AND (CAST(`kind` AS CHAR) > ? OR (CAST(`kind` AS CHAR) = ? \
                 AND `price` > CAST(? AS DECIMAL(10,2)))))))) ORDER BY `updated_at`, `id`, CAST(`kind` AS CHAR), `price` LIMIT 10"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 10);
        assert_eq!(params[9], My::Bytes(b"2".to_vec()));
    }

    #[test]
    fn unusable_tables_are_refused() {
        let reads = reads();
        let err = Keyset::of(&table(&[]), &reads, 3).err().unwrap();
        assert!(matches!(err, Error::Config(_)));
        assert!(
            err.to_string()
                .contains("table Order Items: incremental mode needs a primary key"),
            "{err}"
        );
        for (cursor, name) in [(4, "shape"), (5, "doc")] {
            let err = Keyset::of(&table(&["id"]), &reads, cursor).err().unwrap();
            assert!(matches!(err, Error::Config(_)));
            assert!(
                err.to_string().contains(&format!("cursor column {name}")),
                "{err}"
            );
        }
    }

    #[test]
    fn stand_ins_keep_the_servers_text() {
        let zero = raw_json(&My::Date(0, 0, 0, 0, 0, 0, 0));
        assert_eq!(
            stand_in(&zero),
            Value::Text("0000-00-00 00:00:00.000000".into())
        );
        assert_eq!(stand_in(&raw_json(&My::Int(-3))), Value::Int(-3));
        assert_eq!(
            stand_in(&raw_json(&My::UInt(u64::MAX))),
            Value::Decimal("18446744073709551615".parse().unwrap())
        );
        assert_eq!(stand_in(&serde_json::Value::Null), Value::Null);
    }
}
