//! Writes one file per table. Rows go to a hidden partial file; after each
//! batch the file is synced and a checkpoint manifest records its length and
//! the chunk positions, so a resumed run cuts the file back to the last
//! checkpoint and nothing is doubled. The finished file is renamed into
//! place: a file that looks complete is complete.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::change_log::ChangeLogs;
use super::options::{FileOptions, Format};
use super::{csv_format, folder, jsonl_format, parquet_format, schema_file};
use crate::error::{Error, Result, ResultExt};
use dmp_contract::Endpoint;
use dmp_contract::{IfExists, RejectSink, Start, Target, TargetOptions};
use dmp_model::{
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

pub struct FileTarget {
    options: FileOptions,
    target: TargetOptions,
    tables: Mutex<HashMap<String, Arc<Mutex<OpenTable>>>>,
    /// Incremental and CDC runs (`Start::Keep`): the tables' change logs.
    change_logs: Arc<Mutex<Option<ChangeLogs>>>,
}

/// Writes `bytes` to `path` through a synced temporary file and a rename;
/// neither is written through a link (see `folder`).
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let ctx = || format!("writing {}", path.display());
    let tmp = path.with_extension("dmp-tmp");
    let mut file = folder::create_fresh(&tmp).context(ctx)?;
    file.write_all(bytes).context(ctx)?;
    file.sync_all().context(ctx)?;
    folder::refuse_link(path)?;
    std::fs::rename(&tmp, path).context(ctx)
}

/// Where a target keeps its checkpoints, below its folder.
const CHECKPOINTS: &str = ".dmp-checkpoints";

impl FileTarget {
    pub fn open(endpoint: &Endpoint, target: TargetOptions) -> Result<Self> {
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

    fn partial_path(&self, table: &str) -> Result<PathBuf> {
        let suffix = format!(".{}.dmp-partial", self.options.format.extension());
        Ok(folder::entry(&self.options.dir, ".", table, &suffix)?)
    }

    /// `DIR/.dmp-checkpoints/PIPELINE`, the pipeline's name encoded as
    /// table names are.
    fn manifest_dir(&self) -> Result<PathBuf> {
        let checkpoints = self.options.dir.join(CHECKPOINTS);
        Ok(folder::entry(&checkpoints, "", &self.target.pipeline, "")?)
    }

    fn manifest_path(&self, table: &str) -> Result<PathBuf> {
        Ok(folder::entry(&self.manifest_dir()?, "", table, ".json")?)
    }

    fn read_manifest(&self, table: &str) -> Result<Option<Manifest>> {
        let path = self.manifest_path(table)?;
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
        write_atomically(&self.manifest_path(table)?, &bytes)
    }

    /// Opens the partial file of `table` at `length` bytes (0: a new file).
    fn open_writer(&self, table: &TableSchema, length: u64) -> Result<Box<dyn TableWriter>> {
        use std::io::{Seek, SeekFrom};
        let path = self.partial_path(&table.name)?;
        let ctx = || format!("opening {}", path.display());
        // Never through a link planted at the partial path: a new file
        // replaces whatever stood there; a continued one must be a file.
        let opened = if length == 0 {
            folder::create_fresh(&path)
        } else {
            folder::open_own(&path, true)
        };
        let mut file = opened.map_err(|e| folder::open_error(&path, "opening", e))?;
        file.set_len(length).context(ctx)?;
        file.seek(SeekFrom::End(0)).context(ctx)?;
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
        let data_path = self.options.data_path(&table.name)?;
        // Refused before any row is copied, and again when publishing.
        folder::refuse_link(&data_path)?;
        folder::refuse_link(&self.options.schema_path(&table.name)?)?;
        let published = !self.partial_path(&table.name)?.exists() && data_path.exists();
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
        if start == Start::Fresh && data_path.exists() && self.target.if_exists == IfExists::Fail {
            return Err(Error::Config(format!(
                "target file {} already exists (if_exists = \"fail\")",
                data_path.display()
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
        let manifest_dir = self.manifest_dir()?;
        let pipeline = manifest_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        folder::create_dirs(dir, &[CHECKPOINTS, &pipeline])?;
        if start == Start::Keep {
            // Changes go to append-only logs beside the table files.
            let logs = ChangeLogs::open(dir, &manifest_dir)?;
            *self.change_logs.lock().map_err(|_| poisoned())? = Some(logs);
            return Ok(());
        }
        if start == Start::Fresh {
            // A new copy: change logs of an earlier stream no longer apply.
            ChangeLogs::forget(dir, &manifest_dir, tables)?;
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
            None => ChangeLogs::recorded(&self.manifest_dir()?)?,
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
        let manifest_path = self.manifest_path(&batch.table.name)?;
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
        schema_file::write(&self.options.schema_path(&table.name)?, table)?;
        let final_path = self.options.data_path(&table.name)?;
        // A rename replaces a link rather than writing through it; a link
        // planted since the start is refused all the same, naming it.
        folder::refuse_link(&final_path)?;
        std::fs::rename(self.partial_path(&table.name)?, &final_path)
            .context(|| format!("publishing {}", final_path.display()))?;
        let mut open = open.lock().map_err(|_| poisoned())?;
        open.manifest.done = true;
        self.save_manifest(&table.name, &open.manifest)
    }
}
