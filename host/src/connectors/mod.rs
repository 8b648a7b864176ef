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
mod registry;
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
pub(crate) use oversized::{EXCERPT_BYTES, Head, Oversized, excerpt};
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
    let open = registry::connector(endpoint.scheme()).and_then(|c| c.source);
    match open {
        Some(open) => open(endpoint, options),
        None => Err(not_available(endpoint, "source", |c| c.source.is_some())),
    }
}

/// The target connector for `endpoint`'s URL scheme.
pub fn open_target(endpoint: &Endpoint, options: TargetOptions) -> Result<Arc<dyn Target>> {
    let open = registry::connector(endpoint.scheme()).and_then(|c| c.target);
    match open {
        Some(open) => open(endpoint, options),
        None => Err(not_available(endpoint, "target", |c| c.target.is_some())),
    }
}

fn not_available(
    endpoint: &Endpoint,
    role: &str,
    can: impl Fn(&registry::Connector) -> bool,
) -> Error {
    Error::Config(format!(
        "{}: no connector for `{}://` as a {role}; this build has {}",
        endpoint.place(),
        endpoint.scheme(),
        registry::schemes(can)
    ))
}

/// The schemes whose sources have a change stream, for messages.
pub(crate) fn change_stream_schemes() -> String {
    registry::schemes(|c| c.changes)
}

/// Example URLs of every connector, for a message about a malformed one.
pub(crate) fn example_urls() -> String {
    registry::examples()
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
