//! One consistent snapshot shared by every chunk reader. A dedicated
//! session opens a `REPEATABLE READ` transaction, exports its snapshot
//! (`pg_export_snapshot()`) and records the WAL position of that moment;
//! it holds the transaction open as long as the source lives, so readers
//! can adopt the snapshot with `SET TRANSACTION SNAPSHOT` at any time.

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tracing::info;

use super::config::PgConfig;
use super::sql::quote_literal;
use crate::error::{Result, ResultExt};

pub(super) struct Snapshot {
    /// The exported snapshot's name.
    pub(super) id: String,
    /// The WAL position when it was taken (`0/16B3748`), where change
    /// capture will start; `None` when the server cannot say.
    lsn: Option<String>,
    /// Keeps the exporting transaction, and so the snapshot, alive;
    /// closing it (dropping the source) ends both. `None` for a snapshot
    /// exported by someone else (a replication slot's), who keeps it.
    _holder: Option<tokio::sync::Mutex<PgConnection>>,
}

impl Snapshot {
    pub(super) async fn export(config: &PgConfig) -> Result<Snapshot> {
        let ctx = || format!("{}: exporting a snapshot", config.place);
        let mut conn = config.connect().await?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut conn)
            .await
            .context(ctx)?;
        let (id, lsn): (String, Option<String>) = sqlx::query_as(
            "SELECT pg_export_snapshot(), (CASE WHEN pg_is_in_recovery() \
             THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text",
        )
        .fetch_one(&mut conn)
        .await
        .context(ctx)?;
        info!(
            snapshot = id,
            lsn = lsn.as_deref().unwrap_or("unknown"),
            "snapshot exported"
        );
        Ok(Snapshot {
            id,
            lsn,
            _holder: Some(tokio::sync::Mutex::new(conn)),
        })
    }

    /// A snapshot exported elsewhere (by the change stream's slot, at WAL
    /// position `lsn`) and held there for as long as it is read.
    pub(super) fn imported(id: String, lsn: Option<String>) -> Snapshot {
        info!(
            snapshot = id,
            lsn = lsn.as_deref().unwrap_or("unknown"),
            "reading in the change stream's snapshot"
        );
        Snapshot {
            id,
            lsn,
            _holder: None,
        }
    }

    /// `lsn=0/16B3748 snapshot=00000003-0000001B-1`.
    pub(super) fn position(&self) -> String {
        match &self.lsn {
            Some(lsn) => format!("lsn={lsn} snapshot={}", self.id),
            None => format!("snapshot={}", self.id),
        }
    }

    /// Whether `adopt` failed because the snapshot no longer exists: its
    /// exporting transaction ended (the holder's connection was cut, the
    /// server restarted). PostgreSQL answers `invalid_parameter_value`,
    /// which `SET TRANSACTION SNAPSHOT` gives for nothing else once the
    /// identifier is well-formed, as ours always is.
    pub(super) fn is_lost(error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("22023"))
    }

    /// Starts a read-only transaction on `conn` that sees this snapshot.
    pub(super) async fn adopt<'c>(
        &self,
        conn: &'c mut PgConnection,
    ) -> std::result::Result<sqlx::Transaction<'c, sqlx::Postgres>, sqlx::Error> {
        conn.begin_with(AssertSqlSafe(format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(&self.id)
        )))
        .await
    }
}
