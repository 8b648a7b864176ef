//! `dmp plugin new NAME --lang rust|python|js`: a plugin project with the
//! WIT contract, a sample table and a working template transform. The Rust
//! SDK is copied in, so the project builds without this repository.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::EXIT_OK;
use crate::error::{Error, Result, ResultExt};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Debug, Args)]
pub(super) struct NewArgs {
    /// The plugin's name (letters, digits, `_` and `-`).
    name: String,
    /// The language of the plugin.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create it. Default: a folder named after the plugin.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const WIT: &str = include_str!("../../../wit/transform.wit");
const SAMPLE_SCHEMA: &str = r#"{
  "name": "customers",
  "columns": [
    { "name": "id", "type": "int64", "nullable": false },
    { "name": "name", "type": "text" }
  ],
  "primary_key": ["id"]
}
"#;
const SAMPLE_ROWS: &str =
    "{\"id\": 1, \"name\": \"Zoë\"}\n{\"id\": 2, \"name\": \"\"}\n{\"id\": 3, \"name\": null}\n";

/// The files of a Rust plugin: its own, and the SDK it builds against.
const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    ("src/lib.rs", include_str!("../../templates/rust/lib.rs")),
    ("README.md", include_str!("../../templates/rust/README.md")),
    (
        "dmp-sdk/Cargo.toml",
        include_str!("../../templates/rust/sdk-Cargo.toml"),
    ),
    (
        "dmp-sdk/src/lib.rs",
        include_str!("../../../sdk/src/lib.rs"),
    ),
    (
        "dmp-sdk/src/adapter.rs",
        include_str!("../../../sdk/src/adapter.rs"),
    ),
    (
        "dmp-sdk/src/bindings.rs",
        include_str!("../../../sdk/src/bindings.rs"),
    ),
    (
        "dmp-sdk/src/cell.rs",
        include_str!("../../../sdk/src/cell.rs"),
    ),
    (
        "dmp-sdk/src/resolver.rs",
        include_str!("../../../sdk/src/resolver.rs"),
    ),
    (
        "dmp-sdk/src/resolver_bindings.rs",
        include_str!("../../../sdk/src/resolver_bindings.rs"),
    ),
    (
        "dmp-sdk/src/row.rs",
        include_str!("../../../sdk/src/row.rs"),
    ),
    (
        "dmp-sdk/src/schema.rs",
        include_str!("../../../sdk/src/schema.rs"),
    ),
];
const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    (
        "transform.py",
        include_str!("../../templates/python/transform.py"),
    ),
    (
        "README.md",
        include_str!("../../templates/python/README.md"),
    ),
];
const JS: &[(&str, &str)] = &[
    ("plugin.js", include_str!("../../templates/js/plugin.js")),
    ("build.mjs", include_str!("../../templates/js/build.mjs")),
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    ("README.md", include_str!("../../templates/js/README.md")),
];

pub(super) fn new_plugin(args: &NewArgs) -> Result<u8> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(Error::Config(format!(
            "plugin name `{name}`: use letters, digits, `_` and `-`, starting with a letter"
        )));
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        return Err(Error::Config(format!("{} already exists", dir.display())));
    }
    let crate_name = name.to_ascii_lowercase().replace('-', "_");
    let files = match args.lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    let write = |path: &str, text: &str| -> Result<()> {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name);
        std::fs::write(&path, text).context(|| format!("writing {}", path.display()))
    };
    for (path, text) in files {
        write(path, text)?;
    }
    write("wit/transform.wit", WIT)?;
    write("sample/schema.json", SAMPLE_SCHEMA)?;
    write("sample/rows.jsonl", SAMPLE_ROWS)?;
    println!(
        "created {} ({:?} plugin); see {}",
        dir.display(),
        args.lang,
        Path::new(&dir).join("README.md").display()
    );
    Ok(EXIT_OK)
}
