//! Two-way sync: how the binlog tells DMP's own writes, per sync. Each
//! transaction a sync writes into MySQL/MariaDB begins by touching its row
//! of `_dmp_origin` (one row per sync and session, so that parallel
//! writers do not wait on one another); the reader of the way back drops
//! a transaction whose first row is its own sync's, and carries the
//! others' — a server two syncs write through (a hub) passes each one's
//! changes on to the other. MariaDB's `skip_replication` flag says only
//! "some DMP", so it is left to statements (a change of shape), which
//! carry no row.

use mysql_async::Transaction;
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;

/// The table of the marks; `_dmp_`: no stream carries it as data.
pub(crate) const ORIGIN_TABLE: &str = "_dmp_origin";

pub(super) const ORIGIN_DDL: &str = "CREATE TABLE IF NOT EXISTS _dmp_origin (
    sync_id VARCHAR(255) NOT NULL, session BIGINT NOT NULL, writes BIGINT NOT NULL,
    PRIMARY KEY (sync_id, session))
    ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// Marks the transaction as sync `sync_id`'s: its first statement.
pub(super) async fn mark(
    tx: &mut Transaction<'_>,
    sync_id: &str,
) -> std::result::Result<(), mysql_async::Error> {
    tx.exec_drop(
        "INSERT INTO _dmp_origin (sync_id, session, writes) VALUES (?, CONNECTION_ID(), 1) \
         ON DUPLICATE KEY UPDATE writes = writes + 1",
        (sync_id,),
    )
    .await
}

/// Whether a row event of `_dmp_origin` names sync `origin` (its first
/// column, in the row's new image).
pub(crate) fn names(rows: &RowsEventData<'_>, tme: &TableMapEvent<'_>, origin: &str) -> bool {
    rows.rows(tme).any(|row| {
        let Ok((_, Some(after))) = row else {
            return false;
        };
        matches!(
            after.as_ref(0),
            Some(BinlogValue::Value(mysql_async::Value::Bytes(id))) if id == origin.as_bytes()
        )
    })
}
