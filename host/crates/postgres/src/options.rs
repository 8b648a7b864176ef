//! `[source.options]` of a PostgreSQL source: its change stream's names,
//! which `[cdc]` may give instead.

use serde::Deserialize;

use crate::error::Result;
use dmp_contract::{ChangeOptions, Endpoint};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PgSourceOptions {
    /// The replication slot. Default: `dmp_` + the pipeline name.
    slot: Option<String>,
    /// The publication. Default: the slot's name.
    publication: Option<String>,
}

impl PgSourceOptions {
    /// The stream's settings with these in.
    pub(crate) fn apply(&self, endpoint: &Endpoint, cdc: &ChangeOptions) -> Result<ChangeOptions> {
        let mut options = cdc.clone();
        options.slot =
            ChangeOptions::either(endpoint, self.slot.clone(), cdc.slot.clone(), "slot")?;
        options.publication = ChangeOptions::either(
            endpoint,
            self.publication.clone(),
            cdc.publication.clone(),
            "publication",
        )?;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdc() -> ChangeOptions {
        ChangeOptions {
            pipeline: "p".into(),
            slot: None,
            publication: Some("from_cdc".into()),
            server_id: None,
            heartbeat: std::time::Duration::from_secs(10),
            selection: dmp_model::TableSelection::new(&[], &[]).expect("all tables"),
            origin: None,
        }
    }

    #[test]
    fn the_slot_comes_from_the_sources_options_or_from_cdc_not_both() {
        let mut table = serde_json::Map::new();
        table.insert("slot".into(), "mine".into());
        let endpoint = Endpoint::new("postgres://h/db", std::path::Path::new("."), "p.toml:2")
            .with_options(table, "p.toml:3 source.options");
        let own: PgSourceOptions = endpoint.options().expect("options");
        let options = own.apply(&endpoint, &cdc()).expect("no conflict");
        assert_eq!(options.slot.as_deref(), Some("mine"));
        assert_eq!(options.publication.as_deref(), Some("from_cdc"));
        let mut both = cdc();
        both.slot = Some("theirs".into());
        let err = own.apply(&endpoint, &both).expect_err("given twice");
        assert_eq!(
            err.to_string(),
            "p.toml:3 source.options: `slot` is given both here and in [cdc]"
        );
        let mut typo = serde_json::Map::new();
        typo.insert("slots".into(), "x".into());
        let endpoint = endpoint.with_options(typo, "p.toml:3 source.options");
        let err = endpoint
            .options::<PgSourceOptions>()
            .expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `slots`"), "{err}");
    }
}
