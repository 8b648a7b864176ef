//! Pipelines as the service keeps them: the TOML a user posted (the same
//! form the CLI reads), sealed in the service store, shown with literal
//! secrets masked and `${…}` references as written. Before a pipeline is
//! saved, tested or run it is read under the service's rules: references
//! only to the allowed variables, and every file it names inside the data
//! root.

use std::path::{Component, Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::error::{Result, ServeError, StoreContext};
use crate::secrets::SecretKey;
use crate::store::{ServiceStore, now};
use dmp_config::{Pipeline, Secrets};
use dmp_contract::{Connectors, is_secret_key, mask_url};

/// What the service allows a posted pipeline to reach.
pub struct Rules {
    /// Files a pipeline names must be in here.
    pub data_root: PathBuf,
    /// `${env:VAR}` is allowed for these variable globs only.
    pub secret_env: globset::GlobSet,
    /// Written as configured, for messages.
    pub secret_env_text: Vec<String>,
    /// The state store of pipelines that name none.
    pub state: PathBuf,
    pub plugin_cache: PathBuf,
}

/// A pipeline's name: it becomes part of paths, URLs and metric labels.
pub fn check_pipeline_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ServeError::BadRequest(format!(
            "pipeline name `{}` must be 1 to 64 letters, digits, `_`, `-` or `.` (set [pipeline] name)",
            dmp_model::printable(name)
        )))
    }
}

/// The `[pipeline] name` of a pipeline text.
pub fn name_of(text: &str) -> Result<String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| ServeError::BadRequest(syntax(&e)))?;
    let name = table
        .get("pipeline")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| {
            ServeError::BadRequest("the pipeline has no name: set [pipeline] name".into())
        })?;
    check_pipeline_name(name)?;
    Ok(name.to_string())
}

fn syntax(e: &toml::de::Error) -> String {
    dmp_contract::mask_secrets(&format!("pipeline TOML: {e}"))
}

/// A secret-bearing string of a pipeline text, as written.
struct SecretItem {
    place: String,
    /// Where it is in the document, for an edit that keeps the rest.
    path: Vec<Seg>,
    raw: String,
}

/// A step into a TOML document: a key or an array index.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    At(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// The strings that may hold a secret: URLs, and secret-named settings
/// of connector options and transforms.
fn secret_items(table: &toml::Table) -> Vec<SecretItem> {
    let mut items = Vec::new();
    for end in ["source", "target"] {
        let Some(section) = table.get(end) else {
            continue;
        };
        if let Some(url) = section.get("url").and_then(toml::Value::as_str) {
            items.push(SecretItem {
                place: format!("{end}.url"),
                path: vec![key(end), key("url")],
                raw: url.to_string(),
            });
        }
        if let Some(options) = section.get("options").and_then(toml::Value::as_table) {
            let at = vec![key(end), key("options")];
            secret_settings(options, &format!("{end}.options"), &at, &mut items);
        }
    }
    if let Some(transforms) = table.get("transform").and_then(toml::Value::as_array) {
        for (i, t) in transforms.iter().enumerate() {
            if let Some(config) = t.get("config").and_then(toml::Value::as_table) {
                let at = vec![key("transform"), Seg::At(i), key("config")];
                secret_settings(config, &format!("transform[{i}].config"), &at, &mut items);
            }
        }
    }
    items
}

fn secret_settings(table: &toml::Table, place: &str, at: &[Seg], items: &mut Vec<SecretItem>) {
    for (name, value) in table {
        if let Some(text) = value.as_str().filter(|_| is_secret_key(name)) {
            let mut path = at.to_vec();
            path.push(key(name));
            items.push(SecretItem {
                place: format!("{place}.{name}"),
                path,
                raw: text.to_string(),
            });
        }
    }
}

/// Whether `text` is nothing but one `${…}` reference.
fn is_reference(text: &str) -> bool {
    text.starts_with("${") && text.ends_with('}') && text[2..].find('}') == Some(text.len() - 3)
}

/// How a secret-bearing string is shown: references as written, literal
/// secrets as `***`.
fn shown(item: &SecretItem) -> String {
    if item.place.ends_with(".url") {
        let masked = mask_url(&item.raw);
        if masked == item.raw || url_secrets_are_references(&item.raw) {
            return item.raw.clone();
        }
        return masked;
    }
    if is_reference(&item.raw) {
        item.raw.clone()
    } else {
        "***".into()
    }
}

/// `scheme://user:${env:PASS}@host/db?password=${file:x}` keeps its form.
fn url_secrets_are_references(url: &str) -> bool {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let password_ok = match (base.find("://"), base.rfind('@')) {
        (Some(start), Some(at)) if at > start => match base[start + 3..at].split_once(':') {
            Some((_, password)) => is_reference(password),
            None => true,
        },
        _ => true,
    };
    password_ok
        && query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(k, _)| is_secret_key(k))
            .all(|(_, v)| is_reference(v))
}

/// Whether a URL carries a password (literal or referenced).
pub fn password_set(url: &str) -> bool {
    mask_url(url) != url
}

/// `text` with every literal secret masked: what the API and the
/// dashboard show, and what export gives.
pub fn masked_text(text: &str) -> String {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return dmp_contract::mask_secrets(text);
    };
    let mut out = text.to_string();
    for item in secret_items(&table) {
        let show = shown(&item);
        if show != item.raw {
            out = replace_string(&out, &item.raw, &show);
        }
    }
    out
}

/// Replaces the TOML string `from` (in any of its quoted forms) by `to`.
fn replace_string(text: &str, from: &str, to: &str) -> String {
    let quoted_to = toml::Value::String(to.to_string()).to_string();
    let mut out = text.to_string();
    for quoted in [
        toml::Value::String(from.to_string()).to_string(),
        format!("\"{from}\""),
        format!("'{from}'"),
    ] {
        out = out.replace(&quoted, &quoted_to);
    }
    out
}

/// A posted text in which masked secrets stand for the stored ones (an
/// edit of an exported pipeline): each is put back from `stored`, at its
/// own place only, the rest of the text as posted. A `***` that does not
/// stand for a stored secret at that place (the URL around it changed, or
/// nothing is stored there) is refused rather than saved as a password.
pub fn unmask(posted: &str, stored: &str) -> Result<String> {
    let posted_table: toml::Table =
        toml::from_str(posted).map_err(|e| ServeError::BadRequest(syntax(&e)))?;
    let old = toml::from_str::<toml::Table>(stored)
        .map(|t| secret_items(&t))
        .unwrap_or_default();
    let mut doc: toml_edit::DocumentMut = posted.parse().map_err(|e: toml_edit::TomlError| {
        ServeError::BadRequest(dmp_contract::mask_secrets(&format!("pipeline TOML: {e}")))
    })?;
    let mut changed = false;
    for item in secret_items(&posted_table) {
        let before = old.iter().find(|o| o.place == item.place);
        match before {
            Some(before) if shown(before) == item.raw && before.raw != item.raw => {
                changed |= set_string(&mut doc, &item.path, &before.raw);
            }
            _ if still_masked(&item) => {
                return Err(ServeError::BadRequest(format!(
                    "{}: `***` keeps a stored secret only where it was and with the rest of the value unchanged; write the secret (or a ${{env:…}} reference)",
                    item.place
                )));
            }
            _ => {}
        }
    }
    Ok(if changed {
        doc.to_string()
    } else {
        posted.to_string()
    })
}

/// Whether a posted secret is still the mask.
fn still_masked(item: &SecretItem) -> bool {
    if item.place.ends_with(".url") {
        mask_url(&item.raw) == item.raw && item.raw.contains(":***@")
            || item
                .raw
                .split(['?', '&'])
                .any(|pair| pair.ends_with("=***"))
    } else {
        item.raw == "***"
    }
}

/// Sets the string at `path` of `doc`, keeping its decoration (spaces,
/// comments); false when there is no such value.
fn set_string(doc: &mut toml_edit::DocumentMut, path: &[Seg], to: &str) -> bool {
    let mut item = doc.as_item_mut();
    for seg in path {
        let next = match seg {
            Seg::Key(k) => item.get_mut(k.as_str()),
            Seg::At(i) => item.get_mut(*i),
        };
        let Some(next) = next else { return false };
        item = next;
    }
    let Some(value) = item.as_value_mut() else {
        return false;
    };
    let decor = value.decor().clone();
    *value = toml_edit::Value::from(to);
    *value.decor_mut() = decor;
    true
}

/// `${…}` references of a service pipeline: only the allowed variables,
/// only files in the data root.
struct ServiceSecrets<'a> {
    rules: &'a Rules,
}

impl Secrets for ServiceSecrets<'_> {
    fn env(&self, name: &str, place: &str) -> dmp_contract::Result<Option<String>> {
        if !self.rules.secret_env.is_match(name) {
            return Err(dmp_contract::Error::Config(format!(
                "{place}: `${{env:{name}}}` is not allowed: the service reads only variables matching [serve] secret_env ({})",
                if self.rules.secret_env_text.is_empty() {
                    "none configured".to_string()
                } else {
                    self.rules.secret_env_text.join(", ")
                }
            )));
        }
        Ok(std::env::var(name).ok())
    }

    fn file(&self, path: &Path, place: &str) -> dmp_contract::Result<String> {
        confine(&self.rules.data_root, path, place)
            .map_err(|e| dmp_contract::Error::Config(e.to_string()))?;
        dmp_config::read_secret_file(path, place)
    }
}

/// Refuses a path outside `root`, by its written form (`..`) and by where
/// its existing part really leads (links).
pub fn confine(root: &Path, path: &Path, place: &str) -> Result<PathBuf> {
    let outside = || {
        ServeError::BadRequest(format!(
            "{place}: {} is outside the service's data root {}",
            path.display(),
            root.display()
        ))
    };
    if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(outside());
    }
    let root = root
        .canonicalize()
        .map_err(|e| ServeError::Home(format!("data root {}: {e}", root.display())))?;
    // The deepest part that exists, resolved; the rest is plain names.
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return Err(outside()),
        }
    }
    let mut real = existing.canonicalize().map_err(|_| outside())?;
    for name in rest.iter().rev() {
        real.push(name);
    }
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(outside())
    }
}

/// Reads pipeline `text` under the service's rules, ready to run: every
/// file it names is in the data root, references are allowed ones.
pub fn read_pipeline(text: &str, rules: &Rules, connectors: &dyn Connectors) -> Result<Pipeline> {
    let name = name_of(text)?;
    let table: toml::Table =
        toml::from_str(text).map_err(|e| ServeError::BadRequest(syntax(&e)))?;
    let file = rules.data_root.join(format!("{name}.toml"));
    // Places name the pipeline (`NAME.toml:3 source.url`), not where the
    // service keeps its data.
    let root = format!("{}/", rules.data_root.display());
    let mut pipeline =
        Pipeline::parse(text, &file, &ServiceSecrets { rules }).map_err(|e| match e {
            dmp_contract::Error::Config(message) => {
                ServeError::BadRequest(message.replace(&root, ""))
            }
            other => ServeError::Engine(other),
        })?;
    let place = |key: &str| format!("{name}.toml {key}");
    for (endpoint, key) in [
        (&pipeline.source, "source.url"),
        (&pipeline.target, "target.url"),
    ] {
        for path in connectors.local_files(endpoint)? {
            confine(&rules.data_root, &path, &place(key))?;
        }
    }
    for t in &pipeline.transforms {
        confine(&rules.data_root, Path::new(&t.plugin), &t.place)?;
    }
    if let Some(key) = &pipeline.dead_letter_key {
        confine(&rules.data_root, key, &place("run.dead_letter_key"))?;
    }
    let names_state = table.get("run").and_then(|r| r.get("state")).is_some();
    if names_state {
        confine(&rules.data_root, &pipeline.state, &place("run.state"))?;
    } else {
        pipeline.state.clone_from(&rules.state);
    }
    pipeline.plugin_cache.clone_from(&rules.plugin_cache);
    pipeline.watch_plugins = true;
    Ok(pipeline)
}

/// What a stored pipeline should be doing, brought back after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Stopped,
    Running,
    Paused,
}

impl Desired {
    fn as_str(self) -> &'static str {
        match self {
            Desired::Stopped => "stopped",
            Desired::Running => "running",
            Desired::Paused => "paused",
        }
    }

    fn parse(text: &str) -> Desired {
        match text {
            "running" => Desired::Running,
            "paused" => Desired::Paused,
            _ => Desired::Stopped,
        }
    }
}

impl ServiceStore {
    /// Saves a pipeline's text sealed; `create` refuses an existing name,
    /// otherwise the pipeline must exist.
    pub fn save_pipeline(
        &self,
        name: &str,
        text: &str,
        key: &SecretKey,
        create: bool,
    ) -> Result<()> {
        let sealed = key.seal(text.as_bytes())?;
        let conn = self.conn()?;
        let changed = if create {
            conn.execute(
                "INSERT INTO pipelines (name, sealed, key_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING",
                params![name, sealed, key.id, now()],
            )
        } else {
            conn.execute(
                "UPDATE pipelines SET sealed = ?2, key_id = ?3, updated_at = ?4 WHERE name = ?1",
                params![name, sealed, key.id, now()],
            )
        }
        .store("saving a pipeline")?;
        match (changed, create) {
            (0, true) => Err(ServeError::Conflict(format!(
                "pipeline {name} exists already (PUT changes it)"
            ))),
            (0, false) => Err(ServeError::NotFound(format!("no pipeline {name}"))),
            _ => Ok(()),
        }
    }

    /// The text of pipeline `name`, opened.
    pub fn pipeline_text(&self, name: &str, key: &SecretKey) -> Result<String> {
        let sealed: Option<Vec<u8>> = self
            .conn()?
            .query_row(
                "SELECT sealed FROM pipelines WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .store("reading a pipeline")?;
        let sealed = sealed.ok_or_else(|| {
            ServeError::NotFound(format!("no pipeline {}", dmp_model::printable(name)))
        })?;
        String::from_utf8(key.open(&sealed)?)
            .map_err(|_| ServeError::Home(format!("pipeline {name}: stored text is not UTF-8")))
    }

    /// Every pipeline's name and what it should be doing, by name.
    pub fn pipeline_names(&self) -> Result<Vec<(String, Desired)>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT name, desired FROM pipelines ORDER BY name")
            .store("listing pipelines")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .store("listing pipelines")?;
        let mut out = Vec::new();
        for row in rows {
            let (name, desired) = row.store("listing pipelines")?;
            out.push((name, Desired::parse(&desired)));
        }
        Ok(out)
    }

    pub fn set_desired(&self, name: &str, desired: Desired) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE pipelines SET desired = ?2 WHERE name = ?1",
                params![name, desired.as_str()],
            )
            .store("recording a pipeline's state")?;
        Ok(())
    }

    pub fn delete_pipeline(&self, name: &str) -> Result<()> {
        let changed = self
            .conn()?
            .execute("DELETE FROM pipelines WHERE name = ?1", [name])
            .store("deleting a pipeline")?;
        if changed == 0 {
            return Err(ServeError::NotFound(format!("no pipeline {name}")));
        }
        Ok(())
    }

    /// Seals every pipeline again with `new` (after opening it with `old`).
    pub fn reseal(&self, old: &SecretKey, new: &SecretKey) -> Result<usize> {
        let mut conn = self.conn()?;
        let txn = conn.transaction().store("re-sealing")?;
        let rows: Vec<(String, Vec<u8>)> = {
            let mut stmt = txn
                .prepare("SELECT name, sealed FROM pipelines")
                .store("re-sealing")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .store("re-sealing")?;
            rows.collect::<Result<_, _>>().store("re-sealing")?
        };
        for (name, sealed) in &rows {
            let resealed = new.seal(&old.open(sealed)?)?;
            txn.execute(
                "UPDATE pipelines SET sealed = ?2, key_id = ?3 WHERE name = ?1",
                params![name, resealed, new.id],
            )
            .store("re-sealing")?;
        }
        txn.commit().store("re-sealing")?;
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[pipeline]
name = "p"

[source]
url = "postgres://app:hunter2@db:5432/shop"

[target]
url = "mysql://w:${env:PG_TARGET_PASS}@t/shop"
"#;

    #[test]
    fn literal_secrets_are_masked_and_references_kept() {
        let shown = masked_text(TEXT);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/shop"), "{shown}");
        assert!(shown.contains("${env:PG_TARGET_PASS}"), "{shown}");
        assert_eq!(unmask(&shown, TEXT).expect("unmasks"), TEXT);
        let changed = shown.replace("app:***", "app:new");
        assert!(
            unmask(&changed, TEXT)
                .expect("unmasks")
                .contains("app:new@")
        );
        // The mask stands for the stored secret at its own place only.
        let elsewhere = format!(
            "{shown}\n[[transform]]\nplugin = \"p.wasm\"\nconfig = {{ note = \"postgres://app:***@db:5432/shop\" }}\n"
        );
        let kept = unmask(&elsewhere, TEXT).expect("unmasks");
        assert_eq!(kept.matches("hunter2").count(), 1, "{kept}");
        // A mask in a changed URL is no password.
        let moved = shown.replace("@db:5432", "@other:5432");
        let err = unmask(&moved, TEXT).expect_err("refused");
        assert!(err.to_string().starts_with("source.url: `***`"), "{err}");
        // Comments and layout stay as posted.
        let commented = shown.replace("[source]", "# where from\n[source]");
        assert!(
            unmask(&commented, TEXT)
                .expect("unmasks")
                .contains("# where from\n[source]\nurl = \"postgres://app:hunter2@db:5432/shop\"")
        );
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let inside = root.path().join("a/b.db");
        assert!(confine(root.path(), &inside, "k").is_ok());
        assert!(confine(root.path(), &root.path().join("../x"), "k").is_err());
        assert!(confine(root.path(), Path::new("/etc/passwd"), "k").is_err());
        std::os::unix::fs::symlink("/etc", root.path().join("link")).expect("link");
        let err = confine(root.path(), &root.path().join("link/passwd"), "source.url")
            .expect_err("outside");
        assert!(err.to_string().contains("source.url"), "{err}");
    }

    #[test]
    fn names_are_plain() {
        assert_eq!(name_of(TEXT).expect("named"), "p");
        assert!(name_of("[pipeline]\nname = \"../x\"\n[source]\nurl=\"a\"").is_err());
        assert!(name_of("[source]\nurl=\"a\"").is_err());
    }
}
