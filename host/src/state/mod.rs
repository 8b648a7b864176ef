//! The embedded state store (a SQLite file): runs, their chunk plans and
//! progress, and dead-letter rows. The target holds the authoritative
//! checkpoints (written with the rows); this store keeps the plan a resumed
//! run must follow, a progress mirror for people, and the rows that failed.

mod dead_letter;
mod runs;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use dead_letter::{DeadLetter, DeadLetterSink, Settled, StoredLetter};
pub use runs::{RunRecord, RunStatus};

use crate::error::{Error, Result, ResultExt};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    prepared INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, id);
CREATE TABLE IF NOT EXISTS run_tables (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    table_name TEXT NOT NULL,
    source_schema TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, table_name)
);
CREATE TABLE IF NOT EXISTS chunks (
    run_id INTEGER NOT NULL,
    table_name TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    spec TEXT NOT NULL,
    position TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    plugins TEXT,
    PRIMARY KEY (run_id, table_name, chunk)
);
CREATE TABLE IF NOT EXISTS stream_starts (
    pipeline TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    table_name TEXT NOT NULL,
    stage TEXT NOT NULL,
    position TEXT NOT NULL,
    seq INTEGER NOT NULL,
    error TEXT NOT NULL,
    row TEXT NOT NULL,
    created_at TEXT NOT NULL,
    plugins TEXT,
    UNIQUE (pipeline, table_name, stage, position, seq)
);
";

pub struct StateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Held while the store is open: two `dmp run` of one state store would
    /// resume the same chunks twice.
    _lock: File,
}

impl StateStore {
    /// Opens (creating if needed) the store at `path` and takes its lock.
    pub fn open(path: &Path) -> Result<Self> {
        let ctx = || format!("opening state store {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).context(ctx)?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context(ctx)?;
        lock.try_lock().map_err(|_| {
            Error::Config(format!(
                "state store {} is in use by another dmp process",
                path.display()
            ))
        })?;
        let conn = Connection::open(path).context(ctx)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context(ctx)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context(ctx)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .context(ctx)?;
        conn.execute_batch(SCHEMA).context(ctx)?;
        // Columns added since the first stores were made.
        for (table, column) in [
            ("chunks", "plugins"),
            ("runs", "snapshot_position"),
            ("dead_letters", "plugins"),
        ] {
            let present: bool = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )
                .context(ctx)?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))
                    .context(ctx)?;
            }
        }
        Ok(StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::Data("state store connection poisoned by a panic".into()))
    }

    fn ctx(&self, what: &str) -> String {
        format!("{what} in state store {}", self.path.display())
    }
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
