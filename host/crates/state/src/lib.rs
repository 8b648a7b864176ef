//! The embedded state store (a SQLite file): runs, their chunk plans and
//! progress, and dead-letter rows. The target holds the authoritative
//! checkpoints (written with the rows); this store keeps the plan a resumed
//! run must follow, a progress mirror for people, and the rows that failed.
//! Those rows are personal data as often as not: the store's folder and
//! files are private to the user, deleted rows are overwritten, and the
//! rows may be sealed with a key (`[run] dead_letter_key`).

mod dead_letter;
pub mod error;
mod private;
mod redact;
mod runs;
mod sealing;

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use dead_letter::{
    DeadLetter, DeadLetterGroup, DeadLetterSink, Settled, StoredLetter, dead_letter_groups,
};
pub use private::PrivateFileError;
pub use private::{
    create_private_file, create_private_once, private_dir, private_file, read_private_file,
    write_private_file,
};
pub use redact::without_row_values;
pub use runs::{RunRecord, RunStatus};
pub use sealing::{DeadLetterKey, SealError};

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
    error_id INTEGER,
    UNIQUE (pipeline, table_name, stage, position, seq)
);
-- One error text shared by the rows of a batch that failed as a whole
-- (`dead_letters.error_id`; `error` is then empty).
CREATE TABLE IF NOT EXISTS dead_letter_errors (
    id INTEGER PRIMARY KEY,
    error TEXT NOT NULL
);
";

pub struct StateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Seals dead-letter rows and errors when set.
    key: Option<DeadLetterKey>,
}

/// A pipeline's right to run, held for as long as a run, a replay or a
/// purge of it goes on: two runs of one pipeline would resume the same
/// chunks twice. Other pipelines of the store, and readers (`dmp dlq list`,
/// `dmp cdc status`, `dmp verify`), go on meanwhile. Released when dropped,
/// and by the system when the process dies, however it dies.
#[derive(Debug)]
pub struct PipelineLease {
    _file: File,
}

impl StateStore {
    /// Opens (creating if needed) the store at `path`. Several processes
    /// and tasks may have it open at once (SQLite's WAL: readers never wait
    /// for the writer); a run also takes its pipeline's [`PipelineLease`].
    pub fn open(path: &Path) -> Result<Self> {
        let ctx = || format!("opening state store {}", path.display());
        make_private(path)?;
        let conn = Connection::open(path).context(ctx)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context(ctx)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context(ctx)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .context(ctx)?;
        // Deleted dead letters are overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .context(ctx)?;
        // One opener at a time sets the schema up (another process may be
        // adding the same columns).
        conn.execute_batch("BEGIN IMMEDIATE").context(ctx)?;
        conn.execute_batch(SCHEMA).context(ctx)?;
        // Columns added since the first stores were made.
        for (table, column, ty) in [
            ("chunks", "plugins", "TEXT"),
            ("runs", "snapshot_position", "TEXT"),
            ("run_tables", "phase", "TEXT"),
            ("dead_letters", "plugins", "TEXT"),
            ("dead_letters", "error_id", "INTEGER"),
        ] {
            let present: bool = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )
                .context(ctx)?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .context(ctx)?;
            }
        }
        conn.execute_batch("COMMIT").context(ctx)?;
        Ok(StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            key: None,
        })
    }

    /// Takes `pipeline`'s lease, or says that another process holds it.
    pub fn lease(&self, pipeline: &str) -> Result<PipelineLease> {
        let dir = self.path.with_extension("leases");
        private_dir(&dir, true)?;
        // Hex: any pipeline name makes a plain, unique file name.
        let name = dmp_model::encode_hex(pipeline.as_bytes());
        let path = dir.join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .context(|| {
                format!(
                    "state store {}: taking the lease of pipeline {} ({})",
                    self.path.display(),
                    dmp_model::printable(pipeline),
                    path.display()
                )
            })?;
        file.try_lock().map_err(|_| {
            Error::Config(format!(
                "pipeline {} is running in another dmp process (state store {})",
                dmp_model::printable(pipeline),
                self.path.display()
            ))
        })?;
        Ok(PipelineLease { _file: file })
    }

    /// Opens a pipeline's store with its dead-letter key, if it has one.
    pub fn for_pipeline(pipeline: &dmp_config::Pipeline) -> Result<Self> {
        let store = Self::open(&pipeline.state)?;
        match &pipeline.dead_letter_key {
            Some(path) => Ok(store.with_dead_letter_key(DeadLetterKey::load(path)?)),
            None => Ok(store),
        }
    }

    /// Seals the dead-letter rows and errors stored from now on, and opens
    /// sealed ones read.
    pub fn with_dead_letter_key(mut self, key: DeadLetterKey) -> Self {
        self.key = Some(key);
        self
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

/// Makes the store's folder and files private to the user before SQLite
/// opens them (it gives its `-wal` and `-shm` files the database file's
/// mode). The folder is created 0700; an existing one is tightened only
/// when it is dmp's own (`.dmp`, the default): a store put in some other
/// folder leaves that folder as it is.
fn make_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let own = dir.file_name().is_some_and(|n| n == ".dmp");
        private_dir(dir, own)?;
    }
    private::create_private_file(path)?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        private::private_file(Path::new(&companion))?;
    }
    Ok(())
}

/// How the store writes times: as text that sorts as time does.
const TIMESTAMP: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

fn now() -> String {
    chrono::Utc::now().format(TIMESTAMP).to_string()
}
