//! Connectors, one folder per system, and the one place that maps a URL
//! scheme to the connector that serves it.

mod file;
mod source;
mod sqlite;
mod target;

use std::path::Path;
use std::sync::Arc;

pub use source::{BatchStream, READ_AHEAD_BATCHES, Source};
pub use target::{IfExists, RejectSink, Start, Target};

use crate::config::{Endpoint, Pipeline};
use crate::error::{Error, Result};

/// Settings every target gets besides its URL.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Names this pipeline's checkpoints on the target.
    pub pipeline: String,
    pub if_exists: IfExists,
}

/// The source and target of a pipeline.
pub fn open_pipeline(pipeline: &Pipeline) -> Result<(Arc<dyn Source>, Arc<dyn Target>)> {
    let source = open_source(&pipeline.source)?;
    let target = open_target(
        &pipeline.target,
        TargetOptions {
            pipeline: pipeline.name.clone(),
            if_exists: pipeline.if_exists,
        },
    )?;
    Ok((source, target))
}

/// The source connector for `endpoint`'s URL scheme.
pub fn open_source(endpoint: &Endpoint) -> Result<Arc<dyn Source>> {
    match endpoint.scheme() {
        "sqlite" => Ok(Arc::new(sqlite::SqliteSource::open(endpoint)?)),
        "file" => Ok(Arc::new(file::FileSource::open(endpoint)?)),
        other => Err(not_available(other, endpoint)),
    }
}

/// The target connector for `endpoint`'s URL scheme.
pub fn open_target(endpoint: &Endpoint, options: TargetOptions) -> Result<Arc<dyn Target>> {
    match endpoint.scheme() {
        "sqlite" => Ok(Arc::new(sqlite::SqliteTarget::open(endpoint, options)?)),
        "file" => Ok(Arc::new(file::FileTarget::open(endpoint, options)?)),
        other => Err(not_available(other, endpoint)),
    }
}

fn not_available(scheme: &str, endpoint: &Endpoint) -> Error {
    let known = "sqlite://, file://";
    let hint = match scheme {
        "postgres" | "postgresql" | "mysql" | "mariadb" => {
            " (the PostgreSQL and MySQL/MariaDB connectors are not part of this build yet)"
        }
        _ => "",
    };
    Error::Config(format!(
        "{}: no connector for `{scheme}://`{hint}; this build knows {known}",
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
