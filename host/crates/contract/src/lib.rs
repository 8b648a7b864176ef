//! The connector contract: what the engine asks of a source, a change
//! stream and a target ([`Source`], [`ChangeSource`], [`Target`]), the
//! error every layer returns, the endpoint a connector opens, and the
//! helpers the connectors share (TLS, SQL URLs, keyset pages, the prepare
//! decision). It knows no system: connectors live in their own crates and
//! are listed once, in `dmp-connectors`.

mod assess;
mod changes;
pub mod checksum;
pub mod conflict;
pub mod conflict_log;
mod crash;
mod endpoint;
pub mod error;
pub mod keyset;
mod names;
pub mod net_effect;
mod oversized;
pub mod prepare;
mod source;
pub mod sql_url;
mod target;
pub mod tls;

use std::path::Path;
use std::sync::Arc;

pub use assess::SchemaItem;
pub use changes::{
    ChangeFeed, ChangeOptions, ChangeSource, SchemaChange, SnapshotStart, StreamEvent, StreamLag,
    TableEvent,
};
pub use checksum::{BucketSum, ChecksumQuery, Checksums, CompareColumn};
pub use conflict_log::{EntryId, LoggedConflict, Resolution, RowWrite};
pub use crash::{CRASH_AT, crash_point};
pub use endpoint::{Endpoint, is_secret_key, mask_secrets, mask_url};
pub use error::{Error, ErrorKind, Result};
pub use names::{CONSTRAINTS, NameRules, NameScope, RELATIONS, TakenName};
pub use oversized::{EXCERPT_BYTES, Head, Oversized, excerpt};
pub use source::{
    BatchStream, Gathering, READ_AHEAD_BATCHES, ReadLimits, Source, default_batch_bytes,
    default_max_value_bytes,
};
pub use target::{IfExists, RejectSink, Start, Target, dead_letter, deposed};

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
    /// The source's database (or file) name, for targets that say where
    /// rows come from (a message envelope's `source.db`).
    pub source_database: Option<String>,
    /// Two-way sync: tag every transaction a change stream applies with
    /// this sync id, so that the stream reading this database back drops
    /// it (PostgreSQL: a transactional logical message `dmp.origin`;
    /// MariaDB: the session's `skip_replication`). `None`: no tag.
    pub origin: Option<String>,
    /// Two-way sync: compare each changed key with this side's row inside
    /// the apply transaction, settle conflicts by these rules and log them
    /// (`_dmp_conflicts`). `None`: changes apply as they come.
    pub conflicts: Option<conflict::ConflictRules>,
}

/// Opens endpoints: the build's connector registry (`dmp-connectors`),
/// handed to the layers that open more than a pipeline's two ends (verify
/// reads the target back and repairs it), so that they know no connector.
pub trait Connectors: Send + Sync {
    fn open_source(&self, endpoint: &Endpoint, options: SourceOptions) -> Result<Arc<dyn Source>>;
    fn open_target(&self, endpoint: &Endpoint, options: TargetOptions) -> Result<Arc<dyn Target>>;
    /// Whether the source connector of `endpoint` has a change stream
    /// (`None`: no connector serves its scheme).
    fn has_change_stream(&self, endpoint: &Endpoint) -> Option<bool>;
    /// The schemes of the sources that have one, for messages.
    fn change_stream_schemes(&self) -> String;
    /// The files and folders on this machine that the connector of
    /// `endpoint` would read or write (a database file, an output folder,
    /// certificate files): a service confines them to its data root.
    fn local_files(&self, endpoint: &Endpoint) -> Result<Vec<std::path::PathBuf>>;
}

/// The values of the query parameters `keys` of `endpoint`'s URL, as paths
/// resolved against its base folder (`system` and empty values, which
/// name no file, are left out).
pub fn file_parameters(endpoint: &Endpoint, keys: &[&str]) -> Vec<std::path::PathBuf> {
    let Some((_, query)) = endpoint.expose_url().split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, v)| {
            keys.contains(&k.to_ascii_lowercase().as_str()) && !v.is_empty() && *v != "system"
        })
        .map(|(_, v)| resolve_path(endpoint.base_dir(), v))
        .collect()
}

/// Makes `path` absolute against `base` (the pipeline file's folder).
pub fn resolve_path(base: &Path, path: &str) -> std::path::PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
