//! `file://DIR?format=csv|jsonl|parquet[&null=\N][&delimiter=,][&header=true]`

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use dmp_contract::Endpoint;

/// `[source.options]` / `[target.options]` of a folder: the URL's options,
/// typed, for those who would rather not write them in the URL.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderOptions {
    format: Option<String>,
    null: Option<String>,
    delimiter: Option<String>,
    header: Option<bool>,
}

impl FolderOptions {
    /// The options as URL pairs, after those of the URL; one given both
    /// ways is refused rather than one silently winning.
    fn append_to(self, params: &mut Vec<(String, String)>, place: &str) -> Result<()> {
        let given = [
            ("format", self.format),
            ("null", self.null),
            ("delimiter", self.delimiter),
            ("header", self.header.map(|h| h.to_string())),
        ];
        for (key, value) in given {
            let Some(value) = value else { continue };
            if params.iter().any(|(k, _)| k == key) {
                return Err(Error::Config(format!(
                    "{place}: `{key}` is given both in the URL and in its options"
                )));
            }
            params.push((key.to_string(), value));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    pub(super) fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// Whether a file name belongs to this format.
    pub(super) fn matches(self, file_name: &str) -> Option<&str> {
        let extensions: &[&str] = match self {
            Format::Csv => &[".csv"],
            Format::Jsonl => &[".jsonl", ".ndjson"],
            Format::Parquet => &[".parquet"],
        };
        extensions
            .iter()
            .find_map(|ext| file_name.strip_suffix(ext))
    }
}

#[derive(Debug, Clone)]
pub(super) struct FileOptions {
    pub dir: PathBuf,
    pub format: Format,
    /// CSV: the text that stands for NULL. Default `\N`; an empty field is
    /// NULL too, except in text columns, where it is the empty string.
    pub null: String,
    /// CSV: field delimiter. Default `,`.
    pub delimiter: u8,
    /// CSV: whether the first line names the columns. Default true.
    pub header: bool,
}

impl FileOptions {
    pub(super) fn parse(endpoint: &Endpoint) -> Result<Self> {
        let place = endpoint.place();
        let (path, mut params) = endpoint.path_and_params()?;
        endpoint
            .options::<FolderOptions>()?
            .append_to(&mut params, endpoint.options_place().unwrap_or(place))?;
        if path.is_empty() {
            return Err(Error::Config(format!(
                "{place}: file:// URL has no folder (write file://out?format=jsonl)"
            )));
        }
        let mut format = None;
        let mut options = FileOptions {
            dir: dmp_contract::resolve_path(endpoint.base_dir(), path),
            format: Format::Csv,
            null: "\\N".into(),
            delimiter: b',',
            header: true,
        };
        for (key, value) in params {
            match key.as_str() {
                "format" => {
                    format = Some(match value.as_str() {
                        "csv" => Format::Csv,
                        "jsonl" | "ndjson" => Format::Jsonl,
                        "parquet" => Format::Parquet,
                        other => {
                            return Err(Error::Config(format!(
                                "{place}: unknown file format `{other}` (expected csv, jsonl or parquet)"
                            )));
                        }
                    });
                }
                "null" => options.null = value,
                "delimiter" => {
                    let value = if value == "\\t" {
                        "\t".to_string()
                    } else {
                        value
                    };
                    match value.as_bytes() {
                        [b] => options.delimiter = *b,
                        _ => {
                            return Err(Error::Config(format!(
                                "{place}: delimiter must be one character"
                            )));
                        }
                    }
                }
                "header" => {
                    options.header = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(Error::Config(format!(
                                "{place}: header must be true or false"
                            )));
                        }
                    }
                }
                other => {
                    return Err(Error::Config(format!(
                        "{place}: unknown file:// option `{other}` (known: format, null, delimiter, header)"
                    )));
                }
            }
        }
        options.format = format.ok_or_else(|| {
            Error::Config(format!(
                "{place}: file:// URL needs ?format=csv, ?format=jsonl or ?format=parquet"
            ))
        })?;
        Ok(options)
    }

    /// The table's data file (`orders.jsonl`), its name encoded by
    /// `table_file::encode`.
    pub(super) fn data_path(&self, table: &str) -> Result<PathBuf> {
        let suffix = format!(".{}", self.format.extension());
        Ok(super::folder::entry(&self.dir, "", table, &suffix)?)
    }

    /// The table's declared schema (`orders.schema.json`).
    pub(super) fn schema_path(&self, table: &str) -> Result<PathBuf> {
        Ok(super::folder::entry(&self.dir, "", table, ".schema.json")?)
    }
}
