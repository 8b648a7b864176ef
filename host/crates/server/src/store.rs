//! The service's own store (`service.db` in the home, a SQLite file
//! private to the user): pipelines (sealed), what each should be doing,
//! the service's run history, API tokens, users, browser sessions, plugin
//! versions and the append-only audit log. Runs' plans, chunks and dead
//! letters stay in the engine's state store; this one holds what only a
//! service has.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use crate::error::{Result, ServeError, StoreContext};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    key_id TEXT NOT NULL,
    -- stopped | running | paused: what the service brings back after a restart.
    desired TEXT NOT NULL DEFAULT 'stopped',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS service_runs (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS service_runs_by_pipeline ON service_runs (pipeline, id);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plugin_versions (
    pipeline TEXT NOT NULL,
    plugin TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploaded_at TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pipeline, plugin, version)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    addr TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL
);
-- Append-only: entries are never changed or removed through this file's
-- SQL (a user with the file can still replace it; ship the log elsewhere
-- for that).
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

pub struct ServiceStore {
    conn: Mutex<Connection>,
}

impl ServiceStore {
    pub fn open(path: &Path) -> Result<Self> {
        let what = format!("opening {}", path.display());
        dmp_state::create_private_file(path)
            .map_err(|e| ServeError::Home(format!("service store {}: {e}", path.display())))?;
        let conn = Connection::open(path).store(&what)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .store(&what)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .store(&what)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .store(&what)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .store(&what)?;
        conn.execute_batch(SCHEMA).store(&what)?;
        Ok(ServiceStore {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| ServeError::Home("service store connection poisoned by a panic".into()))
    }

    /// Whether the store answers (`/readyz`).
    pub fn ping(&self) -> Result<()> {
        self.conn()?
            .query_row("SELECT count(*) FROM pipelines", [], |r| r.get::<_, i64>(0))
            .store("reading")?;
        Ok(())
    }
}

/// Now, as stored.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A run as the service recorded it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RunEntry {
    pub run: i64,
    pub mode: String,
    /// running | done | failed | interrupted
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub rows: i64,
    pub rejected: i64,
    pub error: Option<String>,
}

/// A run from the columns `id, mode, status, started_at, finished_at,
/// rows, rejected, error` starting at column `first`.
fn run_entry(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RunEntry> {
    Ok(RunEntry {
        run: r.get(first)?,
        mode: r.get(first + 1)?,
        status: r.get(first + 2)?,
        started_at: r.get(first + 3)?,
        finished_at: r.get(first + 4)?,
        rows: r.get(first + 5)?,
        rejected: r.get(first + 6)?,
        error: r.get(first + 7)?,
    })
}

impl ServiceStore {
    pub fn begin_service_run(&self, pipeline: &str, mode: &str) -> Result<i64> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO service_runs (pipeline, mode, status, started_at) VALUES (?1, ?2, 'running', ?3)",
            rusqlite::params![pipeline, mode, now()],
        )
        .store("recording a run")?;
        Ok(conn.last_insert_rowid())
    }

    pub fn finish_service_run(
        &self,
        run: i64,
        status: &str,
        rows: u64,
        rejected: u64,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE service_runs SET status = ?2, finished_at = ?3, rows = ?4, rejected = ?5, error = ?6 WHERE id = ?1",
                rusqlite::params![
                    run,
                    status,
                    now(),
                    i64::try_from(rows).unwrap_or(i64::MAX),
                    i64::try_from(rejected).unwrap_or(i64::MAX),
                    error
                ],
            )
            .store("recording the end of a run")?;
        Ok(())
    }

    /// Runs that were under way when the service died: they did not end.
    pub fn close_dead_runs(&self) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE service_runs SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
                [now()],
            )
            .store("closing runs of a previous process")?;
        Ok(())
    }

    /// The last `limit` runs of `pipeline`, newest first.
    pub fn service_runs(&self, pipeline: &str, limit: usize) -> Result<Vec<RunEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT id, mode, status, started_at, finished_at, rows, rejected, error FROM service_runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .store("listing runs")?;
        let rows = stmt
            .query_map(
                rusqlite::params![pipeline, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| run_entry(r, 0),
            )
            .store("listing runs")?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .store("listing runs")
    }
}

impl ServiceStore {
    /// The latest run of every pipeline, by pipeline.
    pub fn last_runs(&self) -> Result<std::collections::HashMap<String, RunEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT pipeline, id, mode, status, started_at, finished_at, rows, rejected, error FROM service_runs
                 WHERE id IN (SELECT max(id) FROM service_runs GROUP BY pipeline)",
            )
            .store("listing runs")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, run_entry(r, 1)?)))
            .store("listing runs")?;
        rows.collect::<std::result::Result<_, _>>()
            .store("listing runs")
    }
}

impl ServiceStore {
    /// Whether any stored secret is sealed with key `key_id`.
    pub fn sealed_with(&self, key_id: &str) -> Result<bool> {
        self.conn()?
            .query_row(
                "SELECT count(*) FROM pipelines WHERE key_id = ?1",
                [key_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .store("reading key ids")
    }
}
