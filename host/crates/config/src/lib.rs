//! The pipeline file (TOML): what to move, from where, to where, and how.
//! Every string may hold `${VAR}` (or `${VAR:-default}`), read from the
//! environment; errors name the file, the key and the line.

// The shared error: this crate meets no driver's.
use dmp_contract::error;

mod byte_size;
mod file;
mod interpolate;
mod retry;
mod schedule;
mod sync;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use dmp_contract::{Endpoint, mask_secrets, mask_url};
pub use file::{OnError, RunMode, TransformSection};
pub use interpolate::{ProcessSecrets, Secrets, read_secret_file, references};
pub use retry::RetryPolicy;

pub use schedule::Schedule;
pub use sync::{DEFAULT_MAX_CLOCK_SKEW, Leg, SyncInitial, SyncSettings};

use crate::error::{Error, Result};
use dmp_contract::IfExists;
use dmp_model::TableSelection;

/// Defaults of `[run]`, documented in the README's config reference.
pub const DEFAULT_BATCH_ROWS: usize = 50_000;
pub const DEFAULT_CHUNK_ROWS: u64 = 250_000;
pub use dmp_contract::{default_batch_bytes, default_max_value_bytes};
/// `[[transform]] max_plugin_mb` by default.
pub const DEFAULT_MAX_PLUGIN_MB: u64 = 64;
/// `[[transform]] compile_timeout_ms` by default.
pub const DEFAULT_COMPILE_TIMEOUT_MS: u64 = 60_000;
/// Chunks copied at once by default: one per core, at least 2, at most 8.
/// More than the cores oversubscribes them (measured on 2 cores: 4 chunks
/// were 15% slower than 2 on a PostgreSQL full load).
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism()
        .map_or(DEFAULT_MIN_PARALLELISM, std::num::NonZero::get)
        .clamp(DEFAULT_MIN_PARALLELISM, 8)
}
const DEFAULT_MIN_PARALLELISM: usize = 2;
pub const DEFAULT_STATE: &str = ".dmp/state.db";
pub const DEFAULT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// A pipeline ready to run: the file's content, validated and resolved.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Names this pipeline's runs, checkpoints and dead letters.
    pub name: String,
    pub source: Endpoint,
    pub target: Endpoint,
    pub if_exists: IfExists,
    pub selection: TableSelection,
    /// Where each literally named table was written, for "missing table" errors.
    pub table_places: BTreeMap<String, String>,
    pub transforms: Vec<TransformSection>,
    pub mode: RunMode,
    pub batch_rows: usize,
    /// A batch also ends at this many bytes of source rows.
    pub batch_bytes: usize,
    /// File readers refuse a record (CSV record, JSON line) longer than this.
    pub max_value_bytes: usize,
    pub chunk_rows: u64,
    pub parallelism: usize,
    pub on_error: OnError,
    pub state: PathBuf,
    /// Compiled plugins, by content hash (see `default_plugin_cache`).
    pub plugin_cache: PathBuf,
    /// Reload a plugin when its file changes (else only on SIGHUP).
    pub watch_plugins: bool,
    /// Whether the run creates tables, copies rows, or both (set from the
    /// command line: `--schema-only`, `--data-only`).
    pub scope: Scope,
    /// `[run] every`: repeat the run on this schedule until stopped.
    pub every: Option<Schedule>,
    /// `[table."GLOB"]` entries in file order.
    pub tables: Vec<TableOptions>,
    pub cdc: CdcSettings,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Refuse to start while any source schema object would not be
    /// carried (`[run] strict_schema`, `--strict-schema`).
    pub strict_schema: bool,
    /// Dead-letter rows older than this are deleted when a run starts.
    pub dead_letter_retention: std::time::Duration,
    /// The key file that seals dead-letter rows, if any.
    pub dead_letter_key: Option<PathBuf>,
    /// Set by a cluster worker holding the pipeline's change stream: the
    /// epoch of its lease, which every checkpoint of the stream carries
    /// (`Fence::Epoch`). Not from the file.
    pub epoch: Option<u64>,
    /// `[sync]`: a two-way sync's settings.
    pub sync: SyncSettings,
    /// Set on each leg of a two-way sync (see [`Pipeline::leg`]): the sync
    /// id its applied transactions carry and its change stream drops. Not
    /// from the file.
    pub origin: Option<String>,
    /// Set on each leg of a two-way sync: how its target settles
    /// conflicts. Not from the file.
    pub conflicts: Option<dmp_contract::conflict::ConflictRules>,
}

/// `[run] dead_letter_retention` by default: 30 days.
pub const fn default_dead_letter_retention() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 24 * 60 * 60)
}

/// Per-table settings (`[table."GLOB"]`).
#[derive(Debug, Clone)]
pub struct TableOptions {
    pub pattern: String,
    pub glob: TableSelection,
    /// Incremental cursor column.
    pub cursor: Option<String>,
    /// Column marking rows deleted at the source.
    pub soft_delete: Option<String>,
    /// `file:line table."GLOB"`, for errors.
    pub place: String,
}

/// `[cdc]` settings.
#[derive(Debug, Clone)]
pub struct CdcSettings {
    pub slot: Option<String>,
    pub publication: Option<String>,
    pub server_id: Option<u32>,
    pub heartbeat: std::time::Duration,
    pub schema_changes: SchemaChanges,
}

impl Default for CdcSettings {
    fn default() -> Self {
        CdcSettings {
            slot: None,
            publication: None,
            server_id: None,
            heartbeat: DEFAULT_HEARTBEAT,
            schema_changes: SchemaChanges::default(),
        }
    }
}

/// What a change stream does when a streamed table changes shape at the
/// source (`[cdc] schema_changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaChanges {
    /// Carry what loses nothing (a new column, a wider type, a new table of
    /// the selection, a column made nullable); stop on the rest (a dropped
    /// or renamed column or table, a narrower type), naming it (the
    /// default).
    #[default]
    Additive,
    /// Carry every change to the target, drops and renames included.
    Apply,
    /// Stop on any change.
    Stop,
}

impl SchemaChanges {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaChanges::Additive => "additive",
            SchemaChanges::Apply => "apply",
            SchemaChanges::Stop => "stop",
        }
    }
}

impl Pipeline {
    /// The settings of table `name`: the first `[table."GLOB"]` that matches.
    pub fn table_options(&self, name: &str) -> Option<&TableOptions> {
        self.tables.iter().find(|t| t.glob.matches(name))
    }

    /// What a reader may hold at once (`[run] batch_bytes`, `max_value_bytes`).
    pub fn read_limits(&self) -> dmp_contract::ReadLimits {
        dmp_contract::ReadLimits {
            batch_bytes: self.batch_bytes,
            max_value_bytes: self.max_value_bytes,
        }
    }

    /// What the source connector gets besides its URL.
    pub fn source_options(&self) -> dmp_contract::SourceOptions {
        dmp_contract::SourceOptions {
            readers: self.parallelism,
            limits: self.read_limits(),
        }
    }

    /// What the target connector gets besides its URL.
    pub fn target_options(&self) -> dmp_contract::TargetOptions {
        dmp_contract::TargetOptions {
            pipeline: self.name.clone(),
            if_exists: self.if_exists,
            writers: self.parallelism,
            data_only: self.scope == Scope::DataOnly,
            source_database: self.source.database_name(),
            origin: self.origin.clone(),
            conflicts: self.conflicts.clone(),
        }
    }

    /// The change stream settings handed to a source.
    pub fn change_options(&self) -> dmp_contract::ChangeOptions {
        dmp_contract::ChangeOptions {
            pipeline: self.name.clone(),
            slot: self.cdc.slot.clone(),
            publication: self.cdc.publication.clone(),
            server_id: self.cdc.server_id,
            heartbeat: self.cdc.heartbeat,
            selection: self.selection.clone(),
            origin: self.origin.clone(),
        }
    }
}

/// A source or target URL as written at `place`; text that is no URL is
/// refused here, where the place is known (the connector registry, which
/// names each connector's example URL, refuses the scheme it lacks).
fn endpoint(url: &str, base_dir: &std::path::Path, place: impl Into<String>) -> Result<Endpoint> {
    let endpoint = Endpoint::new(url, base_dir, place);
    if endpoint.is_url() {
        return Ok(endpoint);
    }
    Err(Error::Config(format!(
        "{}: `{}` is not a URL (expected SCHEME://…, such as sqlite://PATH)",
        endpoint.place(),
        endpoint.masked()
    )))
}

/// What a full run does to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Create the tables, copy the rows, then build indexes and foreign keys.
    #[default]
    SchemaAndData,
    /// Create tables, indexes and foreign keys; copy no row.
    SchemaOnly,
    /// Copy rows into tables that exist already; no DDL at all.
    DataOnly,
}

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &std::path::Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read pipeline file {}: {e}", path.display()))
        })?;
        file::parse(&text, path, &ProcessSecrets)
    }

    /// Reads pipeline `text` as if it were the file at `path` (which names
    /// places and is the base of relative paths), taking `${…}` references
    /// from `secrets`.
    pub fn parse(text: &str, path: &std::path::Path, secrets: &dyn Secrets) -> Result<Pipeline> {
        file::parse(text, path, secrets)
    }

    /// A pipeline given on the command line: `dmp run --source URL --target URL`.
    pub fn from_urls(source: &str, target: &str, tables: &[String]) -> Result<Pipeline> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::Config(format!("cannot read the current folder: {e}")))?;
        let source = interpolate::interpolate(source, "--source", &cwd, &ProcessSecrets)?;
        let target = interpolate::interpolate(target, "--target", &cwd, &ProcessSecrets)?;
        let source = endpoint(&source, &cwd, "--source")?;
        let target = endpoint(&target, &cwd, "--target")?;
        // Named from the URLs without their secrets: the name is shown and
        // stored, and a hash of a password can be reversed offline.
        let name = format!(
            "cli-{:016x}",
            fnv1a(format!("{source}\n{target}").as_bytes())
        );
        Ok(Pipeline {
            name,
            selection: TableSelection::new(tables, &[])
                .map_err(|e| Error::Config(format!("--tables: {e}")))?,
            table_places: tables
                .iter()
                .map(|t| (t.clone(), "--tables".to_string()))
                .collect(),
            source,
            target,
            if_exists: IfExists::default(),
            transforms: Vec::new(),
            mode: RunMode::Full,
            batch_rows: DEFAULT_BATCH_ROWS,
            batch_bytes: default_batch_bytes(),
            max_value_bytes: default_max_value_bytes(),
            chunk_rows: DEFAULT_CHUNK_ROWS,
            parallelism: default_parallelism(),
            on_error: OnError::default(),
            state: cwd.join(DEFAULT_STATE),
            plugin_cache: PathBuf::new(),
            watch_plugins: true,
            scope: Scope::default(),
            every: None,
            tables: Vec::new(),
            cdc: CdcSettings::default(),
            retry: RetryPolicy::default(),
            strict_schema: false,
            dead_letter_retention: default_dead_letter_retention(),
            dead_letter_key: None,
            epoch: None,
            sync: SyncSettings::default(),
            origin: None,
            conflicts: None,
        }
        .with_plugin_cache())
    }

    /// Compiled plugins are cached per user, so that every pipeline and
    /// every restart shares them: `$DMP_PLUGIN_CACHE`, else
    /// `$XDG_CACHE_HOME/dmp/plugins`, else `~/.cache/dmp/plugins`, else
    /// `plugins/` beside the state store.
    fn with_plugin_cache(mut self) -> Self {
        self.plugin_cache = default_plugin_cache().unwrap_or_else(|| {
            self.state
                .parent()
                .map_or_else(|| PathBuf::from("plugins"), |dir| dir.join("plugins"))
        });
        self
    }
}

/// The per-user cache of compiled plugins (see `Pipeline::plugin_cache`).
pub fn default_plugin_cache() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("DMP_PLUGIN_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("dmp/plugins")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/dmp/plugins")))
}

/// A stable hash (unlike std's), so a command line names the same pipeline
/// in every dmp version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
