//! The page loop shared by the SQL sources' incremental reads: pages of
//! rows ordered by `(cursor, key…)`, each read past the last row of the
//! previous one, each handed on as a batch whose position is that row's
//! `Position::Cursor`, then a final empty `last` batch.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use dmp_model::{Batch, Change, Position, Reject, Row, TableSchema, Value};

/// One page as a source read it.
pub struct Page {
    pub changes: Vec<Change>,
    pub rejects: Vec<Reject>,
    /// Rows read, good and bad (a short page is the last one, unless cut).
    pub rows: usize,
    /// The source ended the page early, at `batch_bytes`: more rows may
    /// follow however few it holds.
    pub cut: bool,
    /// Cursor and key of the last row when it was refused (its values as
    /// the source holds them); taken from the last change otherwise (not
    /// cloned for every row).
    pub last: Option<Vec<Value>>,
}

impl Page {
    pub fn with_capacity(rows: usize) -> Self {
        Page {
            changes: Vec::with_capacity(rows),
            rejects: Vec::new(),
            rows: 0,
            cut: false,
            last: None,
        }
    }

    /// Cursor and key of the page's last row, if it has rows.
    fn last_order(&self, columns: &[usize]) -> Option<Vec<Value>> {
        if let Some(order) = &self.last {
            return Some(order.clone());
        }
        match self.changes.last() {
            Some(Change::Insert(Row(values))) => Some(
                columns
                    .iter()
                    .map(|&c| values.get(c).cloned().unwrap_or(Value::Null))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// The `(cursor, key…)` values a read resumes after, from its position.
/// `label` names the table in errors.
pub fn start_mark(after: &Position, keys: usize, label: &str) -> Result<Option<Vec<Value>>> {
    match after {
        Position::Start => Ok(None),
        Position::Cursor { cursor, key } if key.len() == keys && !cursor.is_null() => Ok(Some(
            std::iter::once(cursor.clone())
                .chain(key.iter().cloned())
                .collect(),
        )),
        other => Err(Error::Data(format!(
            "{label}: an incremental read cannot start after {other:?}; if the table's cursor or key changed, run with --restart to read every row again"
        ))),
    }
}

/// What reads one page of a source's table.
#[async_trait]
pub trait Pages: Send {
    /// The page of rows after `mark` (`None`: from the first row).
    async fn fetch(&mut self, mark: Option<&[Value]>) -> Result<Page>;
}

/// Reads pages until a short one, sending each as a batch. `order` are
/// the schema positions of the cursor then the key.
pub async fn read_pages(
    table: &Arc<TableSchema>,
    order: &[usize],
    label: &str,
    after: Position,
    batch_rows: usize,
    tx: &mpsc::Sender<Result<Batch>>,
    pages: &mut dyn Pages,
) -> Result<()> {
    let mut mark = start_mark(&after, order.len().saturating_sub(1), label)?;
    let mut position = after;
    loop {
        let page = pages.fetch(mark.as_deref()).await?;
        let full = page.cut || page.rows == batch_rows;
        if let Some(last) = page.last_order(order) {
            // A bound that does not move would read the same page forever.
            if last.iter().any(Value::is_null) || mark.as_ref() == Some(&last) {
                return Err(Error::Data(format!(
                    "{label}: cannot read past cursor and key {last:?}"
                )));
            }
            let Some((cursor, key)) = last.split_first() else {
                return Err(Error::Data(format!(
                    "{label}: a page row without its cursor"
                )));
            };
            position = Position::Cursor {
                cursor: cursor.clone(),
                key: key.to_vec(),
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
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
        }
        if !full {
            break;
        }
    }
    let _ = tx
        .send(Ok(Batch {
            table: table.clone(),
            chunk: 0,
            changes: Vec::new(),
            rejects: Vec::new(),
            wire: None,
            position,
            last: true,
        }))
        .await;
    Ok(())
}
