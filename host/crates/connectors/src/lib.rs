//! The connectors of this build, listed once ([`registry`]), opened by
//! scheme. Only the binary depends on this crate:
//! the engine, verify and the state store know connectors through the
//! contract traits alone, so touching a connector rebuilds that connector,
//! this list and the binary.

mod registry;

use std::sync::Arc;

use dmp_contract::Endpoint;
use dmp_contract::{Connectors, Error, Result, Source, SourceOptions, Target, TargetOptions};

/// This build's connectors, as the layers that open endpoints see them.
pub struct Registry;

/// The registry, for `&dyn Connectors` parameters.
pub static REGISTRY: Registry = Registry;

impl Connectors for Registry {
    fn open_source(&self, endpoint: &Endpoint, options: SourceOptions) -> Result<Arc<dyn Source>> {
        open_source(endpoint, options)
    }

    fn open_target(&self, endpoint: &Endpoint, options: TargetOptions) -> Result<Arc<dyn Target>> {
        open_target(endpoint, options)
    }

    fn has_change_stream(&self, endpoint: &Endpoint) -> Option<bool> {
        registry::connector(endpoint.scheme()).map(|c| c.changes)
    }

    fn change_stream_schemes(&self) -> String {
        change_stream_schemes()
    }

    fn local_files(&self, endpoint: &Endpoint) -> Result<Vec<std::path::PathBuf>> {
        refuse_non_url(endpoint)?;
        match registry::connector(endpoint.scheme()) {
            Some(connector) => (connector.files)(endpoint),
            None => Err(not_available(endpoint, "source or target", |_| true)),
        }
    }
}

/// The source connector for `endpoint`'s URL scheme.
pub fn open_source(endpoint: &Endpoint, options: SourceOptions) -> Result<Arc<dyn Source>> {
    refuse_non_url(endpoint)?;
    let open = registry::connector(endpoint.scheme()).and_then(|c| c.source);
    match open {
        Some(open) => read_options(endpoint, "source", open(endpoint, options)?),
        None => Err(not_available(endpoint, "source", |c| c.source.is_some())),
    }
}

/// The target connector for `endpoint`'s URL scheme.
pub fn open_target(endpoint: &Endpoint, options: TargetOptions) -> Result<Arc<dyn Target>> {
    refuse_non_url(endpoint)?;
    let open = registry::connector(endpoint.scheme()).and_then(|c| c.target);
    match open {
        Some(open) => read_options(endpoint, "target", open(endpoint, options)?),
        None => Err(not_available(endpoint, "target", |c| c.target.is_some())),
    }
}

/// `opened`, unless `[source.options]` (or `[target.options]`) were given
/// to a connector that takes none: they would be silently ignored.
fn read_options<T: ?Sized>(endpoint: &Endpoint, role: &str, opened: Arc<T>) -> Result<Arc<T>> {
    match endpoint.unread_options() {
        None => Ok(opened),
        Some(place) => Err(Error::Config(format!(
            "{place}: `{}://` as a {role} takes no options",
            endpoint.scheme()
        ))),
    }
}

/// Text that is not a URL, refused with an example of each connector's.
fn refuse_non_url(endpoint: &Endpoint) -> Result<()> {
    if endpoint.is_url() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{}: `{}` is not a URL (expected one like {})",
        endpoint.place(),
        endpoint.masked(),
        registry::examples()
    )))
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
pub fn change_stream_schemes() -> String {
    registry::schemes(|c| c.changes)
}
