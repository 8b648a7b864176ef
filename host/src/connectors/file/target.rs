//! Writes one file per table. Rows go to a hidden partial file; after each
//! batch the file is synced and a checkpoint manifest records its length and
//! the chunk positions, so a resumed run cuts the file back to the last
//! checkpoint and nothing is doubled. The finished file is renamed into
//! place: a file that looks complete is complete.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::change_log::ChangeLogs;
use super::options::{FileOptions, Format};
use super::{csv_format, jsonl_format, parquet_format, schema_file};
use crate::config::Endpoint;
use crate::connectors::{IfExists, RejectSink, Start, Target, TargetOptions};
use crate::error::{Error, Result, ResultExt};
use crate::model::{
    Batch, Change, ChangeBatch, Checkpoint, Column, Reject, RejectStage, Row, TableSchema,
    json::row_to_json,
};

/// Encodes rows of one table into its partial file.
pub(super) trait TableWriter: Send {
    /// Why the row cannot be written, checked before any of it is.
    fn check_row(&self, _table: &TableSchema, _row: &Row) -> std::result::Result<(), String> {
        Ok(())
    }
    fn write_rows(&mut self, table: &TableSchema, rows: &[&Row]) -> Result<()>;
    /// Makes what was written durable and returns the file's length, or
    /// `None` for formats that cannot be continued after a crash.
    fn sync(&mut self) -> Result<Option<u64>>;
    fn finish(self: Box<Self>) -> Result<()>;
}

/// What survives a crash for one table: the partial file's committed length
/// and each chunk's checkpoint.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    length: u64,
    done: bool,
    chunks: BTreeMap<u32, Checkpoint>,
}

struct OpenTable {
    writer: Option<Box<dyn TableWriter>>,
    manifest: Manifest,
}

pub(crate) struct FileTarget {
    options: FileOptions,
    target: TargetOptions,
    tables: Mutex<HashMap<String, Arc<Mutex<OpenTable>>>>,
    /// Incremental and CDC runs (`Start::Keep`): the tables' change logs.
    change_logs: Arc<Mutex<Option<ChangeLogs>>>,
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let ctx = || format!("writing {}", path.display());
    let tmp = path.with_extension("dmp-tmp");
    let mut file = File::create(&tmp).context(ctx)?;
    file.write_all(bytes).context(ctx)?;
    file.sync_all().context(ctx)?;
    std::fs::rename(&tmp, path).context(ctx)
}

impl FileTarget {
    pub(crate) fn open(endpoint: &Endpoint, target: TargetOptions) -> Result<Self> {
        let options = FileOptions::parse(endpoint)?;
        if target.if_exists == IfExists::Append {
            return Err(Error::Config(format!(
                "{}: if_exists = \"append\" is not supported for file targets (files are replaced whole)",
                endpoint.place()
            )));
        }
        Ok(FileTarget {
            options,
            target,
            tables: Mutex::new(HashMap::new()),
            change_logs: Arc::new(Mutex::new(None)),
        })
    }

    fn partial_path(&self, table: &str) -> PathBuf {
        self.options.dir.join(format!(
            ".{table}.{}.dmp-partial",
            self.options.format.extension()
        ))
    }

    fn manifest_dir(&self) -> PathBuf {
        self.options
            .dir
            .join(".dmp-checkpoints")
            .join(&self.target.pipeline)
    }

    fn manifest_path(&self, table: &str) -> PathBuf {
        self.manifest_dir().join(format!("{table}.json"))
    }

    fn read_manifest(&self, table: &str) -> Result<Option<Manifest>> {
        let path = self.manifest_path(table);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .context(|| format!("reading checkpoint {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(|| format!("reading checkpoint {}", path.display())),
        }
    }

    fn save_manifest(&self, table: &str, manifest: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec(manifest).context(|| "encoding a checkpoint".to_string())?;
        write_atomically(&self.manifest_path(table), &bytes)
    }

    /// Opens the partial file of `table` at `length` bytes (0: a new file).
    fn open_writer(&self, table: &TableSchema, length: u64) -> Result<Box<dyn TableWriter>> {
        let path = self.partial_path(&table.name);
        let ctx = || format!("opening {}", path.display());
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .context(ctx)?;
        file.set_len(length).context(ctx)?;
        let file = OpenOptions::new().append(true).open(&path).context(ctx)?;
        Ok(match self.options.format {
            Format::Csv => Box::new(csv_format::CsvWriter::new(
                file,
                table,
                &self.options,
                length == 0,
            )?),
            Format::Jsonl => Box::new(jsonl_format::JsonlWriter::new(file)),
            Format::Parquet => Box::new(parquet_format::ParquetWriter::new(file, table)?),
        })
    }

    fn open_table(&self, table: &TableSchema, start: Start) -> Result<OpenTable> {
        let previous = match start {
            Start::Resume | Start::Keep => self.read_manifest(&table.name)?,
            Start::Fresh => None,
        };
        let published = !self.partial_path(&table.name).exists()
            && self.options.data_path(&table.name).exists();
        let manifest = match previous {
            Some(m) if m.done => {
                return Ok(OpenTable {
                    writer: None,
                    manifest: m,
                });
            }
            // Renamed into place, then the crash came before the manifest
            // said so: the partial file only ever disappears by that rename.
            Some(mut m)
                if published && m.chunks.values().all(|c| c.done) && !m.chunks.is_empty() =>
            {
                m.done = true;
                self.save_manifest(&table.name, &m)?;
                return Ok(OpenTable {
                    writer: None,
                    manifest: m,
                });
            }
            // Only formats that report a length can continue a partial file.
            Some(m) if m.length > 0 => m,
            _ => Manifest::default(),
        };
        if start == Start::Fresh
            && self.options.data_path(&table.name).exists()
            && self.target.if_exists == IfExists::Fail
        {
            return Err(Error::Config(format!(
                "target file {} already exists (if_exists = \"fail\")",
                self.options.data_path(&table.name).display()
            )));
        }
        let writer = self.open_writer(table, manifest.length)?;
        self.save_manifest(&table.name, &manifest)?;
        Ok(OpenTable {
            writer: Some(writer),
            manifest,
        })
    }

    fn table(&self, name: &str) -> Result<Arc<Mutex<OpenTable>>> {
        self.tables
            .lock()
            .map_err(|_| poisoned())?
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Data(format!("table {name} was not prepared on the file target")))
    }
}

fn poisoned() -> Error {
    Error::Data("file target state poisoned by a panic".into())
}

#[async_trait]
impl Target for FileTarget {
    fn applies_in_place(&self) -> bool {
        false
    }

    fn column_type(&self, column: &Column) -> String {
        match self.options.format {
            Format::Parquet => {
                let schema = TableSchema {
                    namespace: None,
                    name: String::new(),
                    columns: vec![column.clone()],
                    primary_key: Vec::new(),
                    indexes: Vec::new(),
                    foreign_keys: Vec::new(),
                    ..Default::default()
                };
                parquet_format::arrow_schema(&schema)
                    .field(0)
                    .data_type()
                    .to_string()
            }
            Format::Csv | Format::Jsonl => column.data_type.to_string(),
        }
    }

    async fn prepare(&self, tables: &[Arc<TableSchema>], start: Start) -> Result<()> {
        let dir = &self.options.dir;
        std::fs::create_dir_all(self.manifest_dir())
            .context(|| format!("creating folder {}", dir.display()))?;
        if start == Start::Keep {
            // Changes go to append-only logs beside the table files.
            let logs = ChangeLogs::open(dir, &self.manifest_dir())?;
            *self.change_logs.lock().map_err(|_| poisoned())? = Some(logs);
            return Ok(());
        }
        if start == Start::Fresh {
            // A new copy: change logs of an earlier stream no longer apply.
            ChangeLogs::forget(dir, &self.manifest_dir(), tables)?;
        }
        let mut opened = HashMap::new();
        for table in tables {
            let open = self.open_table(table, start)?;
            opened.insert(table.name.clone(), Arc::new(Mutex::new(open)));
        }
        *self.tables.lock().map_err(|_| poisoned())? = opened;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let mut out = match &*self.change_logs.lock().map_err(|_| poisoned())? {
            Some(logs) => logs.checkpoints(),
            None => ChangeLogs::recorded(&self.manifest_dir())?,
        };
        let tables = self.tables.lock().map_err(|_| poisoned())?;
        for table in tables.values() {
            let table = table.lock().map_err(|_| poisoned())?;
            out.extend(table.manifest.chunks.values().cloned());
        }
        Ok(out)
    }

    async fn write(
        &self,
        batch: Batch,
        checkpoint: Checkpoint,
        rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let open = self.table(&batch.table.name)?;
        let manifest_path = self.manifest_path(&batch.table.name);
        tokio::task::spawn_blocking(move || {
            let mut open = open.lock().map_err(|_| poisoned())?;
            let table = &*batch.table;
            let writer = open
                .writer
                .as_mut()
                .ok_or_else(|| Error::Data(format!("table {} is already finished", table.name)))?;
            let mut rows = Vec::with_capacity(batch.changes.len());
            let mut refused = Vec::new();
            for change in &batch.changes {
                let Change::Insert(row) = change else {
                    return Err(Error::Unsupported(format!(
                        "table {}: file targets take inserts only, got an {}",
                        table.name,
                        change.op()
                    )));
                };
                match writer.check_row(table, row) {
                    Ok(()) => rows.push(row),
                    Err(error) => refused.push(Reject {
                        stage: RejectStage::Target,
                        error,
                        row: row_to_json(table, row),
                        position: batch.position.clone(),
                    }),
                }
            }
            writer.write_rows(table, &rows)?;
            let length = writer.sync()?;
            if !refused.is_empty() {
                rejects.reject(table, refused)?;
            }
            if let Some(length) = length {
                open.manifest.length = length;
                open.manifest.chunks.insert(checkpoint.chunk, checkpoint);
                let bytes = serde_json::to_vec(&open.manifest)
                    .context(|| "encoding a checkpoint".to_string())?;
                write_atomically(&manifest_path, &bytes)?;
            }
            Ok(rows.len() as u64)
        })
        .await
        .context(|| "file target task".to_string())?
    }

    async fn apply(
        &self,
        batch: ChangeBatch,
        checkpoint: Checkpoint,
        // A change log holds any row: nothing is refused here.
        _rejects: Arc<dyn RejectSink>,
    ) -> Result<u64> {
        let logs = self.change_logs.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = logs.lock().map_err(|_| poisoned())?;
            let logs = guard.as_mut().ok_or_else(|| {
                Error::Data("the file target was not prepared for changes".to_string())
            })?;
            logs.append(&batch, checkpoint)
        })
        .await
        .context(|| "file target task".to_string())?
    }

    async fn finish_table(&self, table: &TableSchema) -> Result<()> {
        if self.change_logs.lock().map_err(|_| poisoned())?.is_some() {
            // Change logs are complete after every batch.
            return Ok(());
        }
        let open = self.table(&table.name)?;
        let writer = {
            let mut open = open.lock().map_err(|_| poisoned())?;
            if open.manifest.done {
                return Ok(());
            }
            open.writer.take()
        };
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.finish())
                .await
                .context(|| "file target task".to_string())??;
        }
        // The schema first: once the data file is in place the table counts
        // as published.
        schema_file::write(&self.options.schema_path(&table.name), table)?;
        let final_path = self.options.data_path(&table.name);
        std::fs::rename(self.partial_path(&table.name), &final_path)
            .context(|| format!("publishing {}", final_path.display()))?;
        let mut open = open.lock().map_err(|_| poisoned())?;
        open.manifest.done = true;
        self.save_manifest(&table.name, &open.manifest)
    }
}
