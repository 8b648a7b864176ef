//! `[source.options]` of a MySQL/MariaDB source: the server id its change
//! stream registers as a replica with, which `[cdc]` may give instead.

use serde::Deserialize;

use crate::error::Result;
use dmp_contract::{ChangeOptions, Endpoint};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MysqlSourceOptions {
    /// Default: derived from the pipeline name.
    server_id: Option<u32>,
}

impl MysqlSourceOptions {
    /// The stream's settings with these in.
    pub(crate) fn apply(&self, endpoint: &Endpoint, cdc: &ChangeOptions) -> Result<ChangeOptions> {
        let mut options = cdc.clone();
        options.server_id =
            ChangeOptions::either(endpoint, self.server_id, cdc.server_id, "server_id")?;
        Ok(options)
    }
}
