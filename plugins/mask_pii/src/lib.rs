//! Masks or hashes personal data in configured text columns.
//!
//! Settings:
//! - `columns` (required): comma-separated text columns, e.g. `email,phone`.
//! - `mode`: `mask` (default) keeps the first character and, for e-mail
//!   addresses, the domain (`j***@example.com`); other text keeps its last
//!   two characters (`*******89`). `hash` replaces the same parts by a
//!   salted SHA-256 (16 hex digits), so equal inputs stay equal.
//! - `salt`: mixed into hashes (default empty).

use dmp_sdk::{Config, DataType, Outcome, Row, SchemaExt, TableSchema, Transform};
use sha2::{Digest, Sha256};

pub struct MaskPii {
    columns: Vec<String>,
    hash: bool,
    salt: String,
}

impl MaskPii {
    fn hide(&self, secret: &str) -> String {
        if self.hash {
            let digest = Sha256::new()
                .chain_update(self.salt.as_bytes())
                .chain_update(secret.as_bytes())
                .finalize();
            digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
        } else {
            let first: String = secret.chars().take(1).collect();
            format!("{first}***")
        }
    }

    fn mask(&self, text: &str) -> String {
        if let Some((local, domain)) = text.rsplit_once('@') {
            return format!("{}@{domain}", self.hide(local));
        }
        if self.hash {
            return self.hide(text);
        }
        let count = text.chars().count();
        let keep: String = text.chars().skip(count.saturating_sub(2)).collect();
        format!("{}{keep}", "*".repeat(count.saturating_sub(2).max(1)))
    }
}

impl Transform for MaskPii {
    fn open(config: &Config, input: &TableSchema) -> Result<Self, String> {
        let columns = config.list("columns");
        if columns.is_empty() {
            return Err("setting `columns` must name at least one column".into());
        }
        for name in &columns {
            match input.column(name) {
                None => return Err(format!("table {} has no column `{name}`", input.name)),
                Some(c) if !matches!(c.data_type, DataType::Text(_)) => {
                    return Err(format!(
                        "column `{name}` of table {} is not text",
                        input.name
                    ));
                }
                Some(_) => {}
            }
        }
        let hash = match config.get("mode").unwrap_or("mask") {
            "mask" => false,
            "hash" => true,
            other => {
                return Err(format!(
                    "setting `mode` must be mask or hash, not `{other}`"
                ));
            }
        };
        Ok(MaskPii {
            columns,
            hash,
            salt: config.get("salt").unwrap_or_default().to_string(),
        })
    }

    fn process(&mut self, row: &mut Row<'_>) -> Outcome {
        for column in &self.columns {
            if let Some(text) = row.get::<&str>(column) {
                let masked = self.mask(text);
                row.set(column, masked);
            }
        }
        Outcome::Keep
    }
}

dmp_sdk::export_transform!(MaskPii);
