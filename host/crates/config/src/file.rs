//! The serde shape of the pipeline file, and its translation into a
//! [`Pipeline`](super::Pipeline).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::byte_size::ByteSize;
use super::interpolate::{Secrets, interpolate};
use super::{
    CdcSettings, DEFAULT_BATCH_ROWS, DEFAULT_CHUNK_ROWS, DEFAULT_HEARTBEAT, DEFAULT_STATE,
    Pipeline, RetryPolicy, Schedule, TableOptions,
};
use crate::error::{Error, Result};
use dmp_contract::IfExists;
use dmp_model::TableSelection;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct PipelineFile {
    #[serde(default)]
    pipeline: PipelineSection,
    source: SourceSection,
    target: TargetSection,
    #[serde(default)]
    tables: TablesSection,
    #[serde(default)]
    transform: Vec<Spanned<TransformSection>>,
    #[serde(default)]
    run: RunSection,
    /// `[table."GLOB"]`: per-table settings of incremental runs.
    #[serde(default)]
    table: BTreeMap<String, Spanned<TableSection>>,
    #[serde(default)]
    cdc: CdcSection,
    /// `[sync]`: two-way sync (`mode = "bidirectional"`).
    sync: Option<Spanned<crate::sync::SyncSection>>,
}

/// `[table."GLOB"]`: settings of the tables whose names match the glob (the
/// first matching entry, in file order, applies).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct TableSection {
    /// Incremental runs: the column whose value grows with every insert and
    /// update (`updated_at`, an increasing id). Required in incremental mode.
    cursor: Option<String>,
    /// Incremental runs: a column that marks a row deleted at the source
    /// (not NULL and not false/0); such rows are deleted in the target.
    /// Default: none.
    soft_delete: Option<String>,
}

/// `[cdc]`: the change stream of `cdc` and `full+cdc` runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct CdcSection {
    /// PostgreSQL replication slot. Default: `dmp_` + the pipeline name.
    slot: Option<Spanned<String>>,
    /// PostgreSQL publication. Default: the slot's name.
    publication: Option<Spanned<String>>,
    /// MySQL/MariaDB replica server id. Default: derived from the pipeline
    /// name.
    server_id: Option<u32>,
    /// How often an idle stream confirms the source's position (a
    /// duration: `10s`, `1m`). Default: `10s`.
    heartbeat: Option<Spanned<String>>,
    /// When a streamed table changes shape at the source: `additive` carries
    /// new columns, wider types and new tables and stops on the rest
    /// (drops, renames, narrower types), `apply` carries every change,
    /// `stop` stops on any. Default: `additive`.
    #[serde(default)]
    schema_changes: super::SchemaChanges,
}

/// `[pipeline]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct PipelineSection {
    /// Names runs, checkpoints and dead letters. Default: the file's name
    /// without `.toml`.
    name: Option<Spanned<String>>,
}

/// `[source]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct SourceSection {
    /// `sqlite://PATH`, `file://DIR?format=csv|jsonl|parquet`.
    url: Spanned<String>,
    /// The connector's own settings (its README section lists them; a
    /// connector refuses a key it does not know). Default: none.
    #[serde(default)]
    options: Option<Spanned<toml::Table>>,
}

/// `[target]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct TargetSection {
    /// Same forms as the source URL.
    url: Spanned<String>,
    /// As `[source.options]`. Default: none.
    #[serde(default)]
    options: Option<Spanned<toml::Table>>,
    /// `fail | truncate | append | replace` for tables that exist when a new
    /// full run starts. Default: `replace`.
    #[serde(default)]
    if_exists: IfExists,
}

/// `[tables]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct TablesSection {
    /// Globs over table names. Default: `["*"]`. A name without wildcards
    /// must exist in the source.
    #[serde(default)]
    include: Vec<Spanned<String>>,
    /// Globs of tables to leave out. Default: none.
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
}

/// `[[transform]]`: a WASM plugin applied to the rows of some tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TransformSection {
    /// Path of the plugin's `.wasm` component.
    pub plugin: String,
    /// Globs of the tables it applies to. Default: all.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Key/value settings handed to the plugin when it opens a table.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Memory one instance of the plugin may use, in MiB. Default: 64.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Time one batch may take in the plugin, in milliseconds. Default: 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The largest plugin file accepted, in MiB. Default: 64.
    #[serde(default = "default_max_plugin_mb")]
    pub max_plugin_mb: u64,
    /// Time compiling the plugin may take, in milliseconds (a cached
    /// compilation is not timed). Default: 60000.
    #[serde(default = "default_compile_timeout_ms")]
    pub compile_timeout_ms: u64,
    /// `file:line transform[i]`, for errors (not read from the file).
    #[serde(skip)]
    pub place: String,
}

const fn default_memory_mb() -> u64 {
    64
}

const fn default_timeout_ms() -> u64 {
    1000
}

const fn default_max_plugin_mb() -> u64 {
    crate::DEFAULT_MAX_PLUGIN_MB
}

const fn default_compile_timeout_ms() -> u64 {
    crate::DEFAULT_COMPILE_TIMEOUT_MS
}

/// How rows are selected for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum RunMode {
    /// A snapshot of whole tables.
    #[default]
    #[serde(rename = "full")]
    Full,
    #[serde(rename = "incremental")]
    Incremental,
    #[serde(rename = "cdc")]
    Cdc,
    #[serde(rename = "full+cdc")]
    FullCdc,
    /// Two-way sync: two change streams, source to target and back.
    #[serde(rename = "bidirectional")]
    Bidirectional,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Full => "full",
            RunMode::Incremental => "incremental",
            RunMode::Cdc => "cdc",
            RunMode::FullCdc => "full+cdc",
            RunMode::Bidirectional => "bidirectional",
        }
    }

    /// `cdc`, `full+cdc` and `bidirectional` read a change stream (the
    /// last one of each side).
    pub fn streams_changes(self) -> bool {
        matches!(
            self,
            RunMode::Cdc | RunMode::FullCdc | RunMode::Bidirectional
        )
    }
}

/// What happens to a row that cannot be moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Stop the run (the checkpoint stays valid).
    Fail,
    /// Leave the row out and count it.
    Skip,
    /// Keep the row with its error in the state store (default).
    #[default]
    DeadLetter,
}

/// `[run]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct RunSection {
    /// `full | incremental | cdc | full+cdc | bidirectional`. Default:
    /// `full`.
    #[serde(default = "default_mode")]
    mode: Spanned<RunMode>,
    /// Rows per batch (one target transaction); a batch also ends at
    /// `batch_bytes` of source rows. Default: 50000.
    #[serde(default = "default_batch_rows")]
    batch_rows: Spanned<usize>,
    /// Bytes of source rows a batch holds at most, whatever `batch_rows`
    /// says; it also bounds what readers hold ready ahead of the writer (two
    /// batches a chunk being copied). A number of bytes or a size such as
    /// `"64MiB"`. Default: `default_batch_bytes()`, 64 MiB.
    batch_bytes: Option<Spanned<ByteSize>>,
    /// The longest single record a file reader takes (a CSV record, a JSON
    /// Lines line); a longer one is dead-lettered with its file, line and
    /// first KiB, and the reader goes on with the next. A number of bytes or
    /// a size. Default: `default_max_value_bytes()`, 256 MiB.
    max_value_bytes: Option<Spanned<ByteSize>>,
    /// Rows per snapshot chunk (the unit of parallelism). Default: 250000.
    #[serde(default = "default_chunk_rows")]
    chunk_rows: Spanned<u64>,
    /// Chunks copied at the same time. Default: 4.
    #[serde(default = "default_parallelism")]
    parallelism: Spanned<usize>,
    /// `fail | skip | dead-letter`. Default: `dead-letter`.
    #[serde(default)]
    on_error: OnError,
    /// The embedded state store. Default: `.dmp/state.db` beside the file.
    #[serde(default = "default_state")]
    state: Spanned<String>,
    /// Swap in a plugin as soon as its file changes. With `false`, plugins
    /// are reloaded only on SIGHUP. Default: true.
    #[serde(default = "default_watch_plugins")]
    watch_plugins: bool,
    /// Repeat the (incremental) run on a schedule until stopped: a duration
    /// between run starts (`30s`, `5m`, `1h`) or a cron expression
    /// (`*/5 * * * *`, seconds optional). Default: run once.
    every: Option<Spanned<String>>,
    /// Retries of a transient failure (lost connection, server restart,
    /// deadlock, serialization failure, too many connections), each from
    /// the target's checkpoint; 0: none. Default: 8.
    retries: Option<u32>,
    /// The longest pause between retries (they double from 200 ms, with
    /// jitter). Default: `30s`.
    retry_max_delay: Option<Spanned<String>>,
    /// Refuse to start when any object of the selected source schema
    /// (column default, identity, check, view, trigger, routine…) would
    /// not be carried to the target; `dmp plan` lists them. Default:
    /// false (the run says how many, and goes on).
    #[serde(default)]
    strict_schema: bool,
    /// How long dead-letter rows are kept: older ones are deleted when a
    /// run starts (a duration: `7d`, `12h`, `90d`). Default: `30d`.
    dead_letter_retention: Option<Spanned<String>>,
    /// A key file (32 bytes, raw, hex or base64) that seals the rows and
    /// errors of dead letters in the state store; `dmp dlq` opens them with
    /// it. Relative to the pipeline file. Default: none (stored as JSON
    /// text, in a file only its owner may read).
    dead_letter_key: Option<Spanned<String>>,
}

const fn default_watch_plugins() -> bool {
    true
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            mode: default_mode(),
            batch_rows: default_batch_rows(),
            batch_bytes: None,
            max_value_bytes: None,
            chunk_rows: default_chunk_rows(),
            parallelism: default_parallelism(),
            on_error: OnError::default(),
            state: default_state(),
            watch_plugins: default_watch_plugins(),
            every: None,
            retries: None,
            retry_max_delay: None,
            strict_schema: false,
            dead_letter_retention: None,
            dead_letter_key: None,
        }
    }
}

fn default_mode() -> Spanned<RunMode> {
    Spanned::new(0..0, RunMode::Full)
}
fn default_batch_rows() -> Spanned<usize> {
    Spanned::new(0..0, DEFAULT_BATCH_ROWS)
}
fn default_chunk_rows() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_CHUNK_ROWS)
}
fn default_parallelism() -> Spanned<usize> {
    Spanned::new(0..0, super::default_parallelism())
}
fn default_state() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_STATE.to_string())
}

/// Turns byte spans into `file:line key` places.
pub(crate) struct Places<'a> {
    file: &'a Path,
    text: &'a str,
    /// The file's folder: relative secret files are read from there.
    base_dir: &'a Path,
    /// Where `${…}` references take their values.
    secrets: &'a dyn Secrets,
}

impl Places<'_> {
    /// `endpoint` with its connector's `[….options]` table, whose strings
    /// may name variables and files as URLs do.
    fn connector_options(
        &self,
        endpoint: dmp_contract::Endpoint,
        options: Option<&Spanned<toml::Table>>,
        key: &str,
    ) -> Result<dmp_contract::Endpoint> {
        let Some(options) = options else {
            return Ok(endpoint);
        };
        let place = self.at(options.span(), key);
        let mut table = serde_json::Map::new();
        for (name, value) in options.get_ref() {
            let mut value = serde_json::to_value(value)
                .map_err(|e| Error::Config(format!("{place}.{name}: {e}")))?;
            self.interpolate_strings(&mut value, &format!("{place}.{name}"))?;
            table.insert(name.clone(), value);
        }
        Ok(endpoint.with_options(table, place))
    }

    fn interpolate_strings(&self, value: &mut serde_json::Value, place: &str) -> Result<()> {
        match value {
            serde_json::Value::String(text) => {
                *text = interpolate(text, place, self.base_dir, self.secrets)?
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.interpolate_strings(item, place)?;
                }
            }
            serde_json::Value::Object(fields) => {
                for (name, field) in fields {
                    self.interpolate_strings(field, &format!("{place}.{name}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn at(&self, span: std::ops::Range<usize>, key: &str) -> String {
        if span.start == 0 && span.end == 0 {
            return format!("{} {key}", self.file.display());
        }
        let line = self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        format!("{}:{line} {key}", self.file.display())
    }

    fn string(&self, s: &Spanned<String>, key: &str) -> Result<(String, String)> {
        let place = self.at(s.span(), key);
        Ok((
            interpolate(s.get_ref(), &place, self.base_dir, self.secrets)?,
            place,
        ))
    }

    /// A duration longer than zero (`examples` for the error).
    /// A text setting, `${…}` interpolated.
    pub(crate) fn text(&self, s: &Spanned<String>, key: &str) -> Result<String> {
        Ok(self.string(s, key)?.0)
    }

    /// A file path setting, `${…}` interpolated and resolved against the
    /// pipeline file's folder.
    pub(crate) fn path(&self, s: &Spanned<String>, key: &str) -> Result<std::path::PathBuf> {
        let (text, _) = self.string(s, key)?;
        Ok(dmp_contract::resolve_path(self.base_dir, &text))
    }

    pub(crate) fn duration(
        &self,
        s: &Spanned<String>,
        key: &str,
        examples: &str,
    ) -> Result<std::time::Duration> {
        let (text, place) = self.string(s, key)?;
        humantime::parse_duration(&text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{place}: `{text}` is not a duration such as {examples}"
                ))
            })
    }
}

/// A TOML error as `file: line L, column C: message`, then the line. toml's
/// own display quotes the line as written, which may hold a password in
/// plain text: here URLs and secret keys' values are masked, in the line
/// and in the message (which may quote a value).
fn syntax_error(e: &toml::de::Error, text: &str, path: &Path) -> Error {
    let message = super::mask_secrets(e.message().trim_end());
    let Some(span) = e.span() else {
        return Error::Config(format!("{}: {message}", path.display()));
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let shown = text
        .lines()
        .nth(line - 1)
        .map_or_else(String::new, |written| {
            let masked = match written.split_once('=') {
                Some((key, _)) if dmp_contract::is_secret_key(key.trim()) => {
                    format!("{} = ***", key.trim_end())
                }
                _ => super::mask_secrets(written),
            };
            format!("\n  {line} | {masked}")
        });
    Error::Config(format!(
        "{}: line {line}, column {column}: {message}{shown}",
        path.display()
    ))
}

pub(super) fn parse(text: &str, path: &Path, secrets: &dyn Secrets) -> Result<Pipeline> {
    let file: PipelineFile = toml::from_str(text).map_err(|e| syntax_error(&e, text, path))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let base_dir = if base_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base_dir
    };
    let places = Places {
        file: path,
        text,
        base_dir,
        secrets,
    };

    let (source_url, place) = places.string(&file.source.url, "source.url")?;
    let source = super::endpoint(&source_url, base_dir, place)?;
    let source =
        places.connector_options(source, file.source.options.as_ref(), "source.options")?;
    let (target_url, place) = places.string(&file.target.url, "target.url")?;
    let target = super::endpoint(&target_url, base_dir, place)?;
    let target =
        places.connector_options(target, file.target.options.as_ref(), "target.options")?;

    let mut include = Vec::new();
    let mut table_places = BTreeMap::new();
    // Each glob checked on its own, so that a bad one is named by its line.
    let glob = |pattern: &str, place: &str| {
        TableSelection::new(&[pattern.to_string()], &[])
            .map(|_| ())
            .map_err(|e| Error::Config(format!("{place}: {e}")))
    };
    for pattern in &file.tables.include {
        let (pattern, place) = places.string(pattern, "tables.include")?;
        glob(&pattern, &place)?;
        table_places.insert(pattern.clone(), place);
        include.push(pattern);
    }
    let mut exclude = Vec::new();
    for pattern in &file.tables.exclude {
        let (pattern, place) = places.string(pattern, "tables.exclude")?;
        glob(&pattern, &place)?;
        exclude.push(pattern);
    }
    let selection = TableSelection::new(&include, &exclude)
        .map_err(|e| Error::Config(format!("{}: {e}", places.at(0..0, "tables"))))?;

    let mut transforms = Vec::new();
    for (i, spanned) in file.transform.iter().enumerate() {
        let place = places.at(spanned.span(), &format!("transform[{i}]"));
        let mut t = spanned.get_ref().clone();
        t.place.clone_from(&place);
        let plugin = interpolate(&t.plugin, &format!("{place}.plugin"), base_dir, secrets)?;
        t.plugin = dmp_contract::resolve_path(base_dir, &plugin)
            .to_string_lossy()
            .into_owned();
        if t.memory_mb == 0 || t.timeout_ms == 0 {
            return Err(Error::Config(format!(
                "{place}: memory_mb and timeout_ms must be at least 1"
            )));
        }
        if t.max_plugin_mb == 0 || t.compile_timeout_ms == 0 {
            return Err(Error::Config(format!(
                "{place}: max_plugin_mb and compile_timeout_ms must be at least 1"
            )));
        }
        for value in t.config.values_mut() {
            *value = interpolate(value, &format!("{place}.config"), base_dir, secrets)?;
        }
        TableSelection::new(&t.tables, &[])
            .map_err(|e| Error::Config(format!("{place}.tables: {e}")))?;
        transforms.push(t);
    }

    let run = &file.run;
    let positive = |value: u64, span: std::ops::Range<usize>, key: &str| {
        if value == 0 {
            Err(Error::Config(format!(
                "{}: must be at least 1",
                places.at(span, key)
            )))
        } else {
            Ok(())
        }
    };
    positive(
        *run.batch_rows.get_ref() as u64,
        run.batch_rows.span(),
        "run.batch_rows",
    )?;
    positive(
        *run.chunk_rows.get_ref(),
        run.chunk_rows.span(),
        "run.chunk_rows",
    )?;
    positive(
        *run.parallelism.get_ref() as u64,
        run.parallelism.span(),
        "run.parallelism",
    )?;
    let size = |value: &Option<Spanned<ByteSize>>, key: &str, default: usize| match value {
        Some(size) => size
            .get_ref()
            .bytes()
            .map_err(|e| Error::Config(format!("{}: {e}", places.at(size.span(), key)))),
        None => Ok(default),
    };
    let batch_bytes = size(
        &run.batch_bytes,
        "run.batch_bytes",
        super::default_batch_bytes(),
    )?;
    let max_value_bytes = size(
        &run.max_value_bytes,
        "run.max_value_bytes",
        super::default_max_value_bytes(),
    )?;
    let (state, _) = places.string(&run.state, "run.state")?;
    let name = match &file.pipeline.name {
        Some(name) => {
            let (name, place) = places.string(name, "pipeline.name")?;
            if name.trim().is_empty() {
                return Err(Error::Config(format!("{place}: must not be empty")));
            }
            name
        }
        None => path.file_stem().map_or_else(
            || "pipeline".to_string(),
            |s| s.to_string_lossy().into_owned(),
        ),
    };
    let mode = *run.mode.get_ref();
    let every = match &run.every {
        Some(every) => {
            let (text, place) = places.string(every, "run.every")?;
            if mode.streams_changes() {
                return Err(Error::Config(format!(
                    "{place}: a {} run streams until stopped and cannot be scheduled; use `mode = \"incremental\"`",
                    mode.as_str()
                )));
            }
            Some(Schedule::parse(&text).map_err(|e| Error::Config(format!("{place}: {e}")))?)
        }
        None => None,
    };
    let mut tables = Vec::new();
    for (pattern, section) in &file.table {
        let place = places.at(section.span(), &format!("table.\"{pattern}\""));
        let glob = TableSelection::new(std::slice::from_ref(pattern), &[])
            .map_err(|e| Error::Config(format!("{place}: {e}")))?;
        let section = section.get_ref();
        for (key, value) in [
            ("cursor", &section.cursor),
            ("soft_delete", &section.soft_delete),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(Error::Config(format!("{place}.{key}: must not be empty")));
            }
        }
        tables.push(TableOptions {
            pattern: pattern.clone(),
            glob,
            cursor: section.cursor.clone(),
            soft_delete: section.soft_delete.clone(),
            place,
        });
    }
    // File order: the first matching entry applies.
    tables.sort_by_key(|t| file.table.get(&t.pattern).map_or(0, |s| s.span().start));
    let cdc = &file.cdc;
    let name_setting = |value: &Option<Spanned<String>>, key: &str| -> Result<Option<String>> {
        match value {
            Some(v) => {
                let (text, place) = places.string(v, key)?;
                if text.is_empty()
                    || !text
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(Error::Config(format!(
                        "{place}: `{text}` must be lower-case letters, digits and `_`"
                    )));
                }
                Ok(Some(text))
            }
            None => Ok(None),
        }
    };
    let heartbeat = match &cdc.heartbeat {
        Some(h) => places.duration(h, "cdc.heartbeat", "`10s` or `1m`")?,
        None => DEFAULT_HEARTBEAT,
    };
    let mut retry = RetryPolicy::default();
    if let Some(attempts) = run.retries {
        retry.attempts = attempts;
    }
    if let Some(max) = &run.retry_max_delay {
        retry.max_delay = places.duration(max, "run.retry_max_delay", "`30s` or `2m`")?;
    }
    let dead_letter_retention = match &run.dead_letter_retention {
        Some(text) => places.duration(text, "run.dead_letter_retention", "`30d` or `12h`")?,
        None => super::default_dead_letter_retention(),
    };
    let dead_letter_key = match &run.dead_letter_key {
        Some(path) => {
            let (path, _) = places.string(path, "run.dead_letter_key")?;
            Some(dmp_contract::resolve_path(base_dir, &path))
        }
        None => None,
    };
    let sync = crate::sync::settings(file.sync.as_ref(), mode, &transforms, &places)?;
    let cdc = CdcSettings {
        slot: name_setting(&cdc.slot, "cdc.slot")?,
        publication: name_setting(&cdc.publication, "cdc.publication")?,
        server_id: cdc.server_id,
        heartbeat,
        schema_changes: cdc.schema_changes,
    };
    Ok(Pipeline::with_plugin_cache(Pipeline {
        name,
        source,
        target,
        if_exists: file.target.if_exists,
        selection,
        table_places,
        transforms,
        mode,
        batch_rows: *run.batch_rows.get_ref(),
        batch_bytes,
        max_value_bytes,
        chunk_rows: *run.chunk_rows.get_ref(),
        parallelism: *run.parallelism.get_ref(),
        on_error: run.on_error,
        state: dmp_contract::resolve_path(base_dir, &state),
        plugin_cache: std::path::PathBuf::new(),
        watch_plugins: run.watch_plugins,
        scope: super::Scope::default(),
        every,
        tables,
        cdc,
        retry,
        strict_schema: run.strict_schema,
        dead_letter_retention,
        dead_letter_key,
        epoch: None,
        sync,
        origin: None,
        conflicts: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse_str(text: &str) -> Result<Pipeline> {
        parse(text, Path::new("conf/p.toml"), &crate::ProcessSecrets)
    }

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let p = parse_str(
            "[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"file://out?format=jsonl\"\n",
        )
        .unwrap();
        assert_eq!(p.name, "p");
        assert_eq!(p.batch_rows, 50_000);
        assert_eq!(p.batch_bytes, 64 << 20);
        assert_eq!(p.max_value_bytes, 256 << 20);
        assert_eq!(p.parallelism, super::super::default_parallelism());
        assert!((2..=8).contains(&p.parallelism));
        assert_eq!(p.on_error, OnError::DeadLetter);
        assert_eq!(p.if_exists, IfExists::Replace);
        assert_eq!(p.state, Path::new("conf/.dmp/state.db"));
        assert_eq!(p.source.base_dir(), Path::new("conf"));
    }

    #[test]
    fn dead_letter_and_plugin_limits_have_defaults_and_are_checked() {
        let base = "[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b.db\"\n";
        let p = parse_str(&format!("{base}[[transform]]\nplugin = \"x.wasm\"\n")).unwrap();
        assert_eq!(p.dead_letter_retention, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(p.dead_letter_key, None);
        assert_eq!(p.transforms[0].max_plugin_mb, 64);
        assert_eq!(p.transforms[0].compile_timeout_ms, 60_000);

        let p = parse_str(&format!(
            "{base}[run]\ndead_letter_retention = \"12h\"\ndead_letter_key = \"keys/dlq.key\"\n"
        ))
        .unwrap();
        assert_eq!(p.dead_letter_retention, Duration::from_secs(12 * 3600));
        assert_eq!(
            p.dead_letter_key.as_deref(),
            Some(Path::new("conf/keys/dlq.key"))
        );

        let err = parse_str(&format!("{base}[run]\ndead_letter_retention = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("run.dead_letter_retention") && err.contains("`soon`"),
            "{err}"
        );
        let err = parse_str(&format!(
            "{base}[[transform]]\nplugin = \"x.wasm\"\ncompile_timeout_ms = 0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("compile_timeout_ms must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn full_example_parses() {
        let p = parse_str(
            r#"
[pipeline]
name = "shop"
[source]
url = "sqlite://data/shop.db"
[target]
url = "file://out?format=jsonl"
if_exists = "truncate"
[tables]
include = ["*"]
exclude = ["tmp_*"]
[run]
mode = "full"
batch_rows = 500
batch_bytes = "8MiB"
max_value_bytes = 4096
chunk_rows = 1000
parallelism = 2
on_error = "skip"
state = "/tmp/s.db"
"#,
        )
        .unwrap();
        assert_eq!(p.name, "shop");
        assert_eq!(p.if_exists, IfExists::Truncate);
        assert!(!p.selection.matches("tmp_x"));
        assert_eq!(p.on_error, OnError::Skip);
        assert_eq!((p.batch_bytes, p.max_value_bytes), (8 << 20, 4096));
        assert_eq!(p.state, Path::new("/tmp/s.db"));
    }

    #[test]
    fn mistakes_name_file_key_and_line() {
        let err =
            parse_str("[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"x\"\ncolour = 1\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("conf/p.toml") && err.contains("line 5") && err.contains("colour"),
            "{err}"
        );

        let err = parse_str("[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"nonsense\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("conf/p.toml:4 target.url:"), "{err}");

        let err = parse_str("[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b\"\n[run]\nbatch_bytes = \"64MB\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("conf/p.toml:6 run.batch_bytes: `64MB` is not a size"),
            "{err}"
        );
        let err = parse_str("[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b\"\n[run]\nbatch_rows = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("conf/p.toml:6 run.batch_rows: must be at least 1"),
            "{err}"
        );

        let err = parse_str("[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b\"\n[run]\non_error = \"ignore\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 6") && err.contains("dead-letter"),
            "{err}"
        );

        let err = parse_str("[source]\nurl = \"sqlite://${DMP_TEST_SURELY_UNSET}\"\n[target]\nurl = \"sqlite://b\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "conf/p.toml:2 source.url: environment variable DMP_TEST_SURELY_UNSET is not set"
        );

        let err = parse_str("[source]\nurl = \"sqlite://a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `target`"), "{err}");
    }

    #[test]
    fn sync_settings_parse_with_places() {
        let p = parse_str(
            r#"
[source]
url = "sqlite://a.db"
[target]
url = "sqlite://b.db"
[run]
mode = "incremental"
every = "5m"
[table."orders"]
cursor = "updated_at"
soft_delete = "deleted_at"
[table."*"]
cursor = "id"
[cdc]
slot = "my_slot"
heartbeat = "2s"
"#,
        )
        .unwrap();
        assert_eq!(p.mode, RunMode::Incremental);
        assert!(matches!(p.every, Some(super::super::Schedule::Every(d)) if d.as_secs() == 300));
        let orders = p.table_options("orders").unwrap();
        assert_eq!(orders.cursor.as_deref(), Some("updated_at"));
        assert_eq!(orders.soft_delete.as_deref(), Some("deleted_at"));
        // File order: `orders` first, then the catch-all.
        assert_eq!(
            p.table_options("items").unwrap().cursor.as_deref(),
            Some("id")
        );
        assert_eq!(p.cdc.slot.as_deref(), Some("my_slot"));
        assert_eq!(p.cdc.heartbeat.as_secs(), 2);
        let cron = parse_str(
            "[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b\"\n[run]\nmode = \"incremental\"\nevery = \"*/5 * * * *\"\n",
        )
        .unwrap();
        assert!(matches!(cron.every, Some(super::super::Schedule::Cron(_))));
    }

    #[test]
    fn sync_mistakes_name_their_place() {
        let base = "[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b\"\n";
        let err = parse_str(&format!("{base}[run]\nmode = \"cdc\"\nevery = \"5m\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("conf/p.toml:7 run.every:") && err.contains("cdc"),
            "{err}"
        );
        let err = parse_str(&format!("{base}[run]\nevery = \"sometimes\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("conf/p.toml:6 run.every:"), "{err}");
        let err = parse_str(&format!("{base}[cdc]\nslot = \"My-Slot\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("conf/p.toml:6 cdc.slot:"), "{err}");
        let err = parse_str(&format!("{base}[cdc]\nheartbeat = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("conf/p.toml:6 cdc.heartbeat:"), "{err}");
        let err = parse_str(&format!("{base}[table.items]\ncursor = \"\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("table.\"items\".cursor: must not be empty"),
            "{err}"
        );
        let err = parse_str(&format!("{base}[table.items]\ncursr = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cursr"), "{err}");
    }
}
