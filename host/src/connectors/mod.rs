//! Connectors, one folder per system, and the one place that maps a URL
//! scheme to the connector that serves it.

mod assess;
mod changes;
pub mod checksum;
mod file;
mod keyset;
mod mysql;
mod names;
mod net_effect;
mod oversized;
mod postgres;
mod prepare;
mod source;
mod sql_url;
mod sqlite;
mod target;
mod tls;

use std::path::Path;
use std::sync::Arc;

pub use assess::SchemaItem;
pub use changes::{
    ChangeFeed, ChangeOptions, ChangeSource, SchemaChange, SnapshotStart, StreamEvent, StreamLag,
    TableEvent,
};
pub use checksum::{BucketSum, ChecksumQuery, Checksums, CompareColumn};
pub use file::UnsafePath;
pub use names::{CONSTRAINTS, NameRules, NameScope, RELATIONS, TakenName};
pub(crate) use oversized::{Head, Oversized};
pub(crate) use source::Gathering;
pub use source::{BatchStream, READ_AHEAD_BATCHES, ReadLimits, Source};
pub use target::{IfExists, RejectSink, Start, Target};

use crate::config::{Endpoint, Pipeline, Scope};
use crate::error::{Error, Result};

/// Settings every source gets besides its URL.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Chunks read at the same time: sources that hold one snapshot open
    /// per reader size their connection pool by it.
    pub readers: usize,
    /// How large a batch and a single value may grow.
    pub limits: ReadLimits,
}

impl SourceOptions {
    /// `readers` readers within the default limits (tools and tests that
    /// have no pipeline).
    pub fn readers(readers: usize) -> Self {
        SourceOptions {
            readers,
            limits: ReadLimits::default(),
        }
    }
}

/// Settings every target gets besides its URL.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Names this pipeline's checkpoints on the target.
    pub pipeline: String,
    pub if_exists: IfExists,
    /// Chunks written at the same time (connection pool size).
    pub writers: usize,
    /// The tables exist already: create, drop or alter nothing, and build no
    /// index or foreign key (`dmp run --data-only`).
    pub data_only: bool,
}

/// The source and target of a pipeline.
pub fn open_pipeline(pipeline: &Pipeline) -> Result<(Arc<dyn Source>, Arc<dyn Target>)> {
    let source = open_source(
        &pipeline.source,
        SourceOptions {
            readers: pipeline.parallelism,
            limits: pipeline.read_limits(),
        },
    )?;
    let target = open_target(
        &pipeline.target,
        TargetOptions {
            pipeline: pipeline.name.clone(),
            if_exists: pipeline.if_exists,
            writers: pipeline.parallelism,
            data_only: pipeline.scope == Scope::DataOnly,
        },
    )?;
    Ok((source, target))
}

/// The source connector for `endpoint`'s URL scheme.
pub fn open_source(endpoint: &Endpoint, options: SourceOptions) -> Result<Arc<dyn Source>> {
    let limits = options.limits;
    match endpoint.scheme() {
        "sqlite" => Ok(Arc::new(sqlite::SqliteSource::open(endpoint, limits)?)),
        "file" => Ok(Arc::new(file::FileSource::open(endpoint, limits)?)),
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PostgresSource::open(
            endpoint, options, limits,
        )?)),
        "mysql" | "mariadb" => Ok(Arc::new(mysql::MysqlSource::open(
            endpoint, options, limits,
        )?)),
        other => Err(not_available(other, endpoint)),
    }
}

/// The target connector for `endpoint`'s URL scheme.
pub fn open_target(endpoint: &Endpoint, options: TargetOptions) -> Result<Arc<dyn Target>> {
    match endpoint.scheme() {
        "sqlite" => Ok(Arc::new(sqlite::SqliteTarget::open(endpoint, options)?)),
        "file" => Ok(Arc::new(file::FileTarget::open(endpoint, options)?)),
        "postgres" | "postgresql" => {
            Ok(Arc::new(postgres::PostgresTarget::open(endpoint, options)?))
        }
        "mysql" | "mariadb" => Ok(Arc::new(mysql::MysqlTarget::open(endpoint, options)?)),
        other => Err(not_available(other, endpoint)),
    }
}

fn not_available(scheme: &str, endpoint: &Endpoint) -> Error {
    Error::Config(format!(
        "{}: no connector for `{scheme}://`; this build knows sqlite://, file://, postgres://, mysql:// (or mariadb://)",
        endpoint.place()
    ))
}

/// Makes `path` absolute against `base` (the pipeline file's folder).
pub(crate) fn resolve_path(base: &Path, path: &str) -> std::path::PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
