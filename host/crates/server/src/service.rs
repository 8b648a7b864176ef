//! The service's shared state: its home (store, key, state store, plugin
//! versions, compiled-plugin cache, data root), the rules posted pipelines
//! live under, the connectors of this build, the running pipelines and the
//! metrics. Every request handler gets it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::definitions::Rules;
use crate::error::{Result, ServeError};
use crate::metrics::Metrics;
use crate::secrets::SecretKey;
use crate::store::ServiceStore;
use crate::supervisor::Supervisor;
use crate::verify_jobs::VerifyJob;
use dmp_contract::Connectors;

/// `serve.toml` in the home (or `--config`): the service's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeFile {
    #[serde(default)]
    pub serve: ServeSection,
}

/// `[serve]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeSection {
    /// The folder every file a posted pipeline names must be in (SQLite
    /// databases, file:// folders, plugins, certificates). Default:
    /// `data` in the home.
    pub data_root: Option<PathBuf>,
    /// Globs of the environment variables that pipelines may reference
    /// as `${env:VAR}` (say `["PG*", "DMP_*"]`). Default: none.
    #[serde(default)]
    pub secret_env: Vec<String>,
    /// The largest request body (TOML or JSON), in KiB. Default: 1024.
    pub max_body_kb: Option<u64>,
}

/// Request bodies are capped at this by default (plugin uploads at their
/// transform's `max_plugin_mb`).
pub const DEFAULT_MAX_BODY_KB: u64 = 1024;

pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    /// `--home`, else `$DMP_HOME`, else `~/.local/share/dmp`.
    pub fn resolve(given: Option<PathBuf>) -> Result<Home> {
        let dir = given
            .or_else(|| {
                std::env::var_os("DMP_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/dmp")))
            .ok_or_else(|| {
                ServeError::Home("no --home given and neither DMP_HOME nor HOME is set".into())
            })?;
        dmp_state::private_dir(&dir, true)
            .map_err(|e| ServeError::Home(format!("home {}: {e}", dir.display())))?;
        Ok(Home { dir })
    }

    /// The home's lock, held by the one `dmp serve` that uses it (and
    /// by a key rotation): released when dropped or when the process dies.
    pub fn lock(&self, what: &str) -> Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("service.lock");
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ServeError::Home(format!("{}: {e}", path.display())))?;
        file.try_lock().map_err(|_| {
            ServeError::Home(format!(
                "{what}: a dmp serve (or a key rotation) is using the home {} now",
                self.dir.display()
            ))
        })?;
        Ok(file)
    }

    pub fn store(&self) -> Result<ServiceStore> {
        ServiceStore::open(&self.dir.join("service.db"))
    }

    pub fn key(&self) -> Result<SecretKey> {
        SecretKey::load(&self.key_file())
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("secret.key")
    }

    /// Where uploaded plugin versions are kept.
    pub fn plugin_versions(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// `serve.toml` of the home, or the file given.
    pub fn settings(&self, file: Option<&Path>) -> Result<ServeFile> {
        let path = file.map_or_else(|| self.dir.join("serve.toml"), Path::to_path_buf);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => {
                return Ok(ServeFile::default());
            }
            Err(e) => return Err(ServeError::Home(format!("{}: {e}", path.display()))),
        };
        toml::from_str(&text).map_err(|e| ServeError::Home(format!("{}: {e}", path.display())))
    }

    /// The rules for posted pipelines under `settings`.
    pub fn rules(&self, settings: &ServeSection) -> Result<Rules> {
        let data_root = settings
            .data_root
            .clone()
            .unwrap_or_else(|| self.dir.join("data"));
        std::fs::create_dir_all(&data_root)
            .map_err(|e| ServeError::Home(format!("data root {}: {e}", data_root.display())))?;
        let mut globs = globset::GlobSetBuilder::new();
        for pattern in &settings.secret_env {
            globs.add(
                globset::Glob::new(pattern).map_err(|e| {
                    ServeError::Home(format!("[serve] secret_env `{pattern}`: {e}"))
                })?,
            );
        }
        Ok(Rules {
            data_root: data_root
                .canonicalize()
                .map_err(|e| ServeError::Home(format!("data root {}: {e}", data_root.display())))?,
            secret_env: globs
                .build()
                .map_err(|e| ServeError::Home(format!("[serve] secret_env: {e}")))?,
            secret_env_text: settings.secret_env.clone(),
            state: self.dir.join("state.db"),
            plugin_cache: self.dir.join("plugin-cache"),
        })
    }
}

pub struct Service {
    pub home: Home,
    pub store: ServiceStore,
    pub key: SecretKey,
    pub rules: Rules,
    pub connectors: Arc<dyn Connectors>,
    pub supervisor: Supervisor,
    pub metrics: Metrics,
    /// Cookies carry `Secure` (the service listens with TLS).
    pub secure_cookies: bool,
    pub max_body: usize,
    /// The last verify of each pipeline.
    pub verify_jobs: Mutex<HashMap<String, VerifyJob>>,
    /// Plugin uploads and roll-backs of a pipeline go one at a time.
    pub plugin_lock: tokio::sync::Mutex<()>,
    /// Fires when the service stops: event streams end with it.
    pub stop: dmp_engine::Shutdown,
    /// Runs the pipelines it can elsewhere (`dmp serve --cluster`).
    pub launcher: Option<Arc<dyn dmp_engine::Launcher>>,
}
