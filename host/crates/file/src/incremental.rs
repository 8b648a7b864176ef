//! Incremental reads of a file. A file is not ordered by its cursor, so
//! every run reads it whole and passes on the rows ordered after the mark
//! in `(cursor, key)` order. Batches keep the mark unchanged; only the last
//! one moves it, to the greatest `(cursor, key)` seen. A run stopped half
//! way therefore reads the file again from the old mark, and the target's
//! upserts make the replay harmless.

use std::cmp::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::source::{RowRead, RowReader};
use crate::error::{Error, Result};
use dmp_contract::BatchStream;
use dmp_contract::Gathering;
use dmp_model::{Batch, Change, DataType, Position, Reject, RejectStage, TableSchema, Value};

/// Reads the rows of `table` after `after` from `rows` (the file opened
/// from its first record).
pub(super) fn read(
    rows: Result<Box<dyn RowReader>>,
    table: Arc<TableSchema>,
    cursor: usize,
    after: Position,
    gathering: Gathering,
) -> BatchStream {
    // The caller's span (the engine's, naming the table) goes with the
    // reader.
    BatchStream::spawn_blocking(move |tx| {
        let rows = rows?;
        let filter = Filter::new(&table, cursor, &after)?;
        pass_on(rows, &table, &filter, after, gathering, tx)
    })
}

/// Which rows come after the mark.
struct Filter {
    cursor: usize,
    /// The table's key columns. Without any (no schema file declaring a
    /// primary key), rows are ordered by cursor alone: a later run skips
    /// rows added with a cursor equal to the mark, so such files need a
    /// cursor that never repeats (an increasing id or a fine timestamp).
    keys: Vec<usize>,
    /// The mark: `None` on the first run (every row comes after it).
    mark: Option<(Value, Vec<Value>)>,
}

impl Filter {
    fn new(table: &TableSchema, cursor: usize, after: &Position) -> Result<Filter> {
        let column = table.columns.get(cursor).ok_or_else(|| {
            Error::Config(format!(
                "table {}: cursor column number {cursor} does not exist",
                table.name
            ))
        })?;
        if !orderable(&column.data_type) {
            return Err(Error::Config(format!(
                "table {}: cursor column {} is of type {}, which has no order; choose a number, text, date or timestamp column",
                table.name, column.name, column.data_type
            )));
        }
        let keys = table.primary_key_indices();
        if let Some(&k) = keys
            .iter()
            .find(|&&k| table.columns[k].data_type == DataType::Json)
        {
            return Err(Error::Config(format!(
                "table {}: key column {} holds JSON, which has no order to read rows in",
                table.name, table.columns[k].name
            )));
        }
        let mark = match after {
            Position::Start => None,
            Position::Cursor { cursor, key } if key.len() == keys.len() && !cursor.is_null() => {
                Some((cursor.clone(), key.clone()))
            }
            other => {
                return Err(Error::Data(format!(
                    "table {}: an incremental read cannot start after {other:?} (the table's key is {:?}); if the table's cursor or key changed, run with --restart to read every row again",
                    table.name, table.primary_key
                )));
            }
        };
        Ok(Filter { cursor, keys, mark })
    }

    /// `row`'s place in the order, or `None` when its cursor is NULL.
    fn place<'a>(&self, row: &'a [Value]) -> Option<(&'a Value, Vec<&'a Value>)> {
        let cursor = row.get(self.cursor).filter(|v| !v.is_null())?;
        Some((
            cursor,
            self.keys
                .iter()
                .map(|&k| row.get(k).unwrap_or(&Value::Null))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Types whose values have an order rows can be read in.
fn orderable(t: &DataType) -> bool {
    !matches!(t, DataType::Json | DataType::Bytes)
}

/// Streams the file, passing on the rows after the mark.
fn pass_on(
    mut rows: Box<dyn RowReader>,
    table: &Arc<TableSchema>,
    filter: &Filter,
    after: Position,
    mut gathering: Gathering,
    tx: &mpsc::Sender<Result<Batch>>,
) -> Result<()> {
    let batch =
        |changes: Vec<Change>, rejects: Vec<Reject>, position: Position, last: bool| Batch {
            table: table.clone(),
            chunk: 0,
            changes,
            rejects,
            wire: None,
            position,
            last,
        };
    let mut highest: Option<(Value, Vec<Value>)> = None;
    let mut index = 0u64;
    let mut null_cursors = 0u64;
    while let Some(read) = rows.next_row()? {
        index += 1;
        match read {
            RowRead::Row(row) => {
                let Some((cursor, key)) = filter.place(&row.0) else {
                    null_cursors += 1;
                    continue;
                };
                let order = |mark: &(Value, Vec<Value>)| {
                    compare((cursor, &key), (&mark.0, mark.1.iter())).map_err(|why| {
                        Error::Data(format!(
                            "table {}, record {index}: {why} (the stored mark is a value of another type); if the table's cursor or key changed, run with --restart to read every row again",
                            table.name
                        ))
                    })
                };
                if let Some(mark) = &filter.mark
                    && order(mark)? != Ordering::Greater
                {
                    continue;
                }
                if highest.as_ref().map(order).transpose()? != Some(Ordering::Less) {
                    highest = Some((cursor.clone(), key.into_iter().cloned().collect()));
                }
                gathering.push_row(row);
            }
            // Whether an undecodable record comes after the mark cannot
            // be told: it is refused on every run rather than never.
            RowRead::Reject { error, raw } => gathering.push_reject(Reject {
                stage: RejectStage::Source,
                error,
                row: raw,
                position: Position::Record { index },
            }),
        }
        if gathering.full() {
            let (changes, rejects) = gathering.take();
            let full = batch(changes, rejects, after.clone(), false);
            if tx.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if null_cursors > 0 {
        warn!(
            table = table.name,
            column = table.columns[filter.cursor].name,
            rows = null_cursors,
            "rows with a NULL cursor are never read incrementally"
        );
    }
    let position = match highest {
        Some((cursor, key)) => Position::Cursor { cursor, key },
        None => after,
    };
    // Every row was handed on by now: the rows left go with the new mark.
    let (changes, rejects) = gathering.take();
    let _ = tx.blocking_send(Ok(batch(changes, rejects, position, true)));
    Ok(())
}

/// The order of incremental positions: by cursor, then by the key columns
/// in key order. Fails on values that have no order between them.
fn compare<'a, 'b>(
    a: (&Value, &[&'a Value]),
    b: (&Value, impl Iterator<Item = &'b Value>),
) -> std::result::Result<Ordering, String> {
    let mut order = compare_values(a.0, b.0)?;
    for (x, y) in a.1.iter().zip(b.1) {
        if order != Ordering::Equal {
            break;
        }
        order = compare_values(x, y)?;
    }
    Ok(order)
}

/// The order of two values of the same kind. NULL (possible in the key
/// columns of a file) comes first.
fn compare_values(a: &Value, b: &Value) -> std::result::Result<Ordering, String> {
    Ok(match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.total_cmp(y),
        (Value::Decimal(x), Value::Decimal(y)) => compare_decimals(x.as_str(), y.as_str()),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Time(x), Value::Time(y)) => x.cmp(y),
        (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (Value::TimestampTz(x), Value::TimestampTz(y)) => x.cmp(y),
        (Value::Uuid(x), Value::Uuid(y)) => x.cmp(y),
        (Value::Json(_), Value::Json(_)) => return Err("JSON values have no order".into()),
        (x, y) => {
            return Err(format!(
                "a {} value cannot be ordered against a {} value",
                x.kind(),
                y.kind()
            ));
        }
    })
}

/// Compares two decimals in canonical form (`-`, integer digits without
/// leading zeros, fraction digits) by value: `1.50` equals `1.5`.
fn compare_decimals(a: &str, b: &str) -> Ordering {
    fn split(text: &str) -> (bool, &str, &str) {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        (negative, int, frac.trim_end_matches('0'))
    }
    let (a_neg, a_int, a_frac) = split(a);
    let (b_neg, b_int, b_frac) = split(b);
    if a_neg != b_neg {
        // Canonical text never writes a negative zero.
        return if a_neg {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // No leading zeros: a longer integer part is a larger magnitude, and
    // fraction digits line up from the point.
    let magnitude = a_int
        .len()
        .cmp(&b_int.len())
        .then_with(|| a_int.cmp(b_int))
        .then_with(|| a_frac.cmp(b_frac));
    if a_neg {
        magnitude.reverse()
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_model::{Column, Row};

    fn dec(text: &str) -> Value {
        Value::Decimal(text.parse().unwrap())
    }

    #[test]
    fn decimals_compare_by_value() {
        let cmp = |a: &str, b: &str| compare_values(&dec(a), &dec(b)).unwrap();
        assert_eq!(cmp("1.50", "1.5"), Ordering::Equal);
        assert_eq!(cmp("1.5", "1.51"), Ordering::Less);
        assert_eq!(cmp("10", "9.99"), Ordering::Greater);
        assert_eq!(cmp("-10", "-9.99"), Ordering::Less);
        assert_eq!(cmp("-0.5", "0"), Ordering::Less);
        assert_eq!(cmp("0.05", "0.5"), Ordering::Less);
        assert_eq!(cmp("-1.25", "-1.2"), Ordering::Less);
        assert_eq!(
            cmp("123456789012345678901234567890", "99"),
            Ordering::Greater
        );
    }

    #[test]
    fn values_order_within_their_kind_only() {
        let ts = |s: &str| Value::parse_text(s, &DataType::Timestamp).unwrap();
        assert_eq!(
            compare_values(
                &ts("2024-01-02 00:00:00"),
                &ts("2024-01-01 23:59:59.999999")
            ),
            Ok(Ordering::Greater)
        );
        assert_eq!(
            compare_values(&Value::Text("B".into()), &Value::Text("a".into())),
            Ok(Ordering::Less)
        );
        assert_eq!(
            compare_values(&Value::Float(-0.5), &Value::Float(2.0)),
            Ok(Ordering::Less)
        );
        assert_eq!(
            compare_values(&Value::Null, &Value::Int(i64::MIN)),
            Ok(Ordering::Less)
        );
        let mixed = compare_values(&Value::Int(1), &Value::Text("1".into())).unwrap_err();
        assert_eq!(mixed, "a int value cannot be ordered against a text value");
        assert!(compare_values(&Value::Json("1".into()), &Value::Json("2".into())).is_err());
    }

    #[test]
    fn the_key_breaks_cursor_ties() {
        let mark = (Value::Int(5), vec![Value::Text("b".into()), Value::Int(2)]);
        let at = |c: i64, k: &str, n: i64| {
            let key = [Value::Text(k.into()), Value::Int(n)];
            let key: Vec<&Value> = key.iter().collect();
            compare((&Value::Int(c), &key), (&mark.0, mark.1.iter())).unwrap()
        };
        assert_eq!(at(5, "b", 2), Ordering::Equal);
        assert_eq!(at(5, "b", 3), Ordering::Greater);
        assert_eq!(at(5, "a", 9), Ordering::Less);
        assert_eq!(at(5, "c", 0), Ordering::Greater);
        assert_eq!(at(4, "z", 9), Ordering::Less);
        assert_eq!(at(6, "a", 0), Ordering::Greater);
    }

    /// Records from memory, as a file reader would hand them out.
    struct Records(std::vec::IntoIter<RowRead>);

    impl RowReader for Records {
        fn next_row(&mut self) -> Result<Option<RowRead>> {
            Ok(self.0.next())
        }
    }

    fn table(keyed: bool) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            namespace: None,
            name: "events".into(),
            columns: vec![
                Column::new("id", DataType::Int64),
                Column::new("at", DataType::Int64),
                Column::new("doc", DataType::Json),
            ],
            primary_key: if keyed { vec!["id".into()] } else { Vec::new() },
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            ..Default::default()
        })
    }

    /// Batches of `n` rows, their bytes unbounded in effect.
    fn rows_of(n: usize) -> Gathering {
        Gathering::new(n, dmp_contract::ReadLimits::default())
    }

    fn records(rows: &[(i64, Option<i64>)]) -> Box<dyn RowReader> {
        let mut out: Vec<RowRead> = rows
            .iter()
            .map(|(id, at)| {
                RowRead::Row(Row(vec![
                    Value::Int(*id),
                    at.map_or(Value::Null, Value::Int),
                    Value::Null,
                ]))
            })
            .collect();
        out.push(RowRead::Reject {
            error: "bad".into(),
            raw: serde_json::Value::Null,
        });
        Box::new(Records(out.into_iter()))
    }

    async fn drain(mut rx: BatchStream) -> Result<(Vec<i64>, usize, Vec<Position>)> {
        let mut ids = Vec::new();
        let mut rejects = 0;
        let mut positions = Vec::new();
        while let Some(batch) = rx.recv().await {
            let batch = batch?;
            for change in &batch.changes {
                if let Value::Int(id) = change.row().0[0] {
                    ids.push(id);
                }
            }
            rejects += batch.rejects.len();
            positions.push(batch.position.clone());
            if batch.last {
                break;
            }
        }
        Ok((ids, rejects, positions))
    }

    fn mark(cursor: i64, key: &[i64]) -> Position {
        Position::Cursor {
            cursor: Value::Int(cursor),
            key: key.iter().map(|k| Value::Int(*k)).collect(),
        }
    }

    #[tokio::test]
    async fn rows_after_the_mark_pass_and_the_last_batch_moves_it() {
        let rows = [
            (1, Some(10)),
            (2, Some(20)),
            (3, Some(20)),
            (4, None),
            (5, Some(15)),
            (6, Some(20)),
        ];
        let (ids, rejects, positions) = drain(read(
            Ok(records(&rows)),
            table(true),
            1,
            mark(20, &[2]),
            rows_of(2),
        ))
        .await
        .unwrap();
        assert_eq!(ids, vec![3, 6]);
        assert_eq!(rejects, 1);
        // Batches keep the old mark; the last one carries the highest seen.
        assert_eq!(positions, vec![mark(20, &[2]), mark(20, &[6])]);
        // Nothing new: the mark stays.
        let (ids, _, positions) = drain(read(
            Ok(records(&rows)),
            table(true),
            1,
            mark(20, &[6]),
            rows_of(2),
        ))
        .await
        .unwrap();
        assert!(ids.is_empty());
        assert_eq!(positions.last(), Some(&mark(20, &[6])));
        // First run: everything but the NULL cursor.
        let (ids, _, positions) = drain(read(
            Ok(records(&rows)),
            table(true),
            1,
            Position::Start,
            rows_of(10),
        ))
        .await
        .unwrap();
        assert_eq!(ids, vec![1, 2, 3, 5, 6]);
        assert_eq!(positions.last(), Some(&mark(20, &[6])));
    }

    #[tokio::test]
    async fn without_a_key_the_cursor_alone_orders() {
        let rows = [(1, Some(10)), (2, Some(20)), (3, Some(30))];
        let (ids, _, positions) = drain(read(
            Ok(records(&rows)),
            table(false),
            1,
            mark(20, &[]),
            rows_of(10),
        ))
        .await
        .unwrap();
        assert_eq!(ids, vec![3]);
        assert_eq!(positions.last(), Some(&mark(30, &[])));
    }

    #[tokio::test]
    async fn bad_cursors_and_marks_are_refused() {
        let err = drain(read(
            Ok(records(&[])),
            table(true),
            2,
            Position::Start,
            rows_of(10),
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(err.to_string().contains("cursor column doc"), "{err}");
        let text_mark = Position::Cursor {
            cursor: Value::Text("20".into()),
            key: vec![Value::Int(1)],
        };
        let err = drain(read(
            Ok(records(&[(1, Some(10))])),
            table(true),
            1,
            text_mark,
            rows_of(10),
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Data(_)), "{err}");
        assert!(err.to_string().contains("record 1"), "{err}");
        let err = drain(read(
            Ok(records(&[])),
            table(true),
            1,
            Position::Record { index: 3 },
            rows_of(10),
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Data(_)), "{err}");
    }
}
