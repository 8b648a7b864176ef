//! `sqlite://PATH`: a relative path is taken from the pipeline file's folder.

use std::path::PathBuf;

use crate::error::{Error, Result};
use dmp_contract::Endpoint;

pub(super) fn database_path(endpoint: &Endpoint) -> Result<PathBuf> {
    let (path, params) = endpoint.path_and_params()?;
    if let Some((key, _)) = params.first() {
        return Err(Error::Config(format!(
            "{}: unknown sqlite:// option `{key}` (sqlite URLs take no options)",
            endpoint.place()
        )));
    }
    if path.is_empty() {
        return Err(Error::Config(format!(
            "{}: sqlite:// URL has no file path (write sqlite://data/shop.db or sqlite:///abs/path.db)",
            endpoint.place()
        )));
    }
    Ok(dmp_contract::resolve_path(endpoint.base_dir(), path))
}
