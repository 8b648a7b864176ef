//! Plugin versions uploaded through the service. A pipeline's transform
//! is named by its plugin file (`plugins/mask_pii.wasm` is `mask_pii`).
//! An upload is kept as a new version in the home, compiled and opened
//! against the pipeline's tables with the transform's limits, and only
//! then published over the plugin file (a rename): a running session's
//! hot swap installs it at its next batch boundary. A roll back publishes
//! an earlier version the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::params;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Result, ServeError, StoreContext};
use crate::service::Service;
use crate::store::{ServiceStore, now};
use dmp_config::Pipeline;

/// The name of the plugin at `path`: its file name without `.wasm`.
pub fn plugin_name(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginVersion {
    pub version: i64,
    pub sha256: String,
    pub size: i64,
    pub uploaded_at: String,
    pub uploaded_by: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    /// The transform's plugin file, as the pipeline names it.
    pub file: String,
    /// The published version (none until one is uploaded).
    pub active: Option<i64>,
    pub versions: Vec<PluginVersion>,
}

impl ServiceStore {
    fn plugin_versions(
        &self,
        pipeline: &str,
        plugin: &str,
    ) -> Result<(Vec<PluginVersion>, Option<i64>)> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT version, sha256, size, uploaded_at, uploaded_by, active FROM plugin_versions WHERE pipeline = ?1 AND plugin = ?2 ORDER BY version")
            .store("listing plugin versions")?;
        let rows = stmt
            .query_map(params![pipeline, plugin], |r| {
                Ok((
                    PluginVersion {
                        version: r.get(0)?,
                        sha256: r.get(1)?,
                        size: r.get(2)?,
                        uploaded_at: r.get(3)?,
                        uploaded_by: r.get(4)?,
                    },
                    r.get::<_, bool>(5)?,
                ))
            })
            .store("listing plugin versions")?;
        let mut versions = Vec::new();
        let mut active = None;
        for row in rows {
            let (version, is_active) = row.store("listing plugin versions")?;
            if is_active {
                active = Some(version.version);
            }
            versions.push(version);
        }
        Ok((versions, active))
    }

    fn add_plugin_version(
        &self,
        pipeline: &str,
        plugin: &str,
        sha256: &str,
        size: usize,
        by: &str,
    ) -> Result<i64> {
        let conn = self.conn()?;
        let next: i64 = conn
            .query_row(
                "SELECT coalesce(max(version), 0) + 1 FROM plugin_versions WHERE pipeline = ?1 AND plugin = ?2",
                params![pipeline, plugin],
                |r| r.get(0),
            )
            .store("numbering a plugin version")?;
        conn.execute(
            "INSERT INTO plugin_versions (pipeline, plugin, version, sha256, size, uploaded_at, uploaded_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![pipeline, plugin, next, sha256, i64::try_from(size).unwrap_or(i64::MAX), now(), by],
        )
        .store("recording a plugin version")?;
        Ok(next)
    }

    fn forget_plugin_version(&self, pipeline: &str, plugin: &str, version: i64) -> Result<()> {
        self.conn()?
            .execute(
                "DELETE FROM plugin_versions WHERE pipeline = ?1 AND plugin = ?2 AND version = ?3",
                params![pipeline, plugin, version],
            )
            .store("forgetting a refused plugin version")?;
        Ok(())
    }

    fn activate_plugin_version(&self, pipeline: &str, plugin: &str, version: i64) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE plugin_versions SET active = (version = ?3) WHERE pipeline = ?1 AND plugin = ?2",
                params![pipeline, plugin, version],
            )
            .store("publishing a plugin version")?;
        Ok(())
    }
}

/// The plugins of `pipeline` with their versions.
pub fn list(service: &Service, pipeline: &Pipeline) -> Result<Vec<PluginView>> {
    let mut out: Vec<PluginView> = Vec::new();
    for t in &pipeline.transforms {
        let name = plugin_name(&t.plugin);
        if out.iter().any(|p| p.name == name) {
            continue;
        }
        let (versions, active) = service.store.plugin_versions(&pipeline.name, &name)?;
        out.push(PluginView {
            file: t.plugin.clone(),
            name,
            active,
            versions,
        });
    }
    Ok(out)
}

/// The index of the transform whose plugin is `plugin`.
fn transform_of(pipeline: &Pipeline, plugin: &str) -> Result<usize> {
    pipeline
        .transforms
        .iter()
        .position(|t| plugin_name(&t.plugin) == plugin)
        .ok_or_else(|| {
            ServeError::NotFound(format!(
                "pipeline {} has no transform with plugin {} (its plugins: {})",
                pipeline.name,
                dmp_model::printable(plugin),
                pipeline
                    .transforms
                    .iter()
                    .map(|t| plugin_name(&t.plugin))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The largest upload transform `plugin` of `pipeline` accepts, in bytes.
pub fn max_upload(pipeline: &Pipeline, plugin: &str) -> Result<usize> {
    let t = &pipeline.transforms[transform_of(pipeline, plugin)?];
    Ok(usize::try_from(t.max_plugin_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX))
}

fn version_file(service: &Service, pipeline: &str, plugin: &str, version: i64) -> PathBuf {
    service
        .home
        .plugin_versions()
        .join(pipeline)
        .join(plugin)
        .join(format!("v{version}.wasm"))
}

/// Keeps `bytes` as a new version of `plugin`, checks it against the
/// pipeline's tables, and publishes it. Refused with the reason when it
/// does not compile or open.
pub async fn upload(
    service: &Arc<Service>,
    pipeline: &Pipeline,
    plugin: &str,
    bytes: &[u8],
    by: &str,
) -> Result<i64> {
    let index = transform_of(pipeline, plugin)?;
    let sha = dmp_model::encode_hex(&Sha256::digest(bytes));
    let version =
        service
            .store
            .add_plugin_version(&pipeline.name, plugin, &sha, bytes.len(), by)?;
    let file = version_file(service, &pipeline.name, plugin, version);
    let kept = keep(&file, bytes);
    let checked = match kept {
        Ok(()) => check(service, pipeline, index, &file).await,
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&file);
        service
            .store
            .forget_plugin_version(&pipeline.name, plugin, version)?;
        return Err(e);
    }
    publish(service, pipeline, index, plugin, version)?;
    Ok(version)
}

/// Publishes an earlier version of `plugin` again.
pub fn roll_back(service: &Service, pipeline: &Pipeline, plugin: &str, version: i64) -> Result<()> {
    let index = transform_of(pipeline, plugin)?;
    let (versions, _) = service.store.plugin_versions(&pipeline.name, plugin)?;
    if !versions.iter().any(|v| v.version == version) {
        return Err(ServeError::NotFound(format!(
            "plugin {plugin} of {} has no version {version}",
            pipeline.name
        )));
    }
    publish(service, pipeline, index, plugin, version)
}

fn keep(file: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ServeError::Home(format!("{}: {e}", dir.display())))?;
    }
    dmp_state::write_private_file(file, bytes)
        .map_err(|e| ServeError::Home(format!("{}: {e}", file.display())))
}

/// Compiles the version at `file` with transform `index`'s limits and
/// opens it against every table the transform serves.
async fn check(service: &Service, pipeline: &Pipeline, index: usize, file: &Path) -> Result<()> {
    let mut trial = pipeline.clone();
    trial.transforms[index].plugin = file.to_string_lossy().into_owned();
    let source = service
        .connectors
        .open_source(&trial.source, trial.source_options())?;
    let tables: Vec<Arc<dmp_model::TableSchema>> = dmp_engine::discover(&trial, &*source)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    dmp_engine::Transforms::open(&trial, &tables)
        .await
        .map(|_| ())
        .map_err(|e| ServeError::BadRequest(format!("plugin refused: {}", e.report())))
}

/// Puts version `version` in place of the transform's plugin file: a
/// temporary file in the same folder renamed over it, so that readers
/// and the hot swap see the old or the new file, never half of one.
fn publish(
    service: &Service,
    pipeline: &Pipeline,
    index: usize,
    plugin: &str,
    version: i64,
) -> Result<()> {
    let live = PathBuf::from(&pipeline.transforms[index].plugin);
    let bytes = std::fs::read(version_file(service, &pipeline.name, plugin, version))
        .map_err(|e| ServeError::Home(format!("plugin {plugin} version {version}: {e}")))?;
    let dir = live
        .parent()
        .ok_or_else(|| ServeError::BadRequest(format!("{}: no folder", live.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| ServeError::Home(format!("{}: {e}", dir.display())))?;
    let temporary = dir.join(format!(".{plugin}.uploading"));
    std::fs::write(&temporary, &bytes)
        .map_err(|e| ServeError::Home(format!("{}: {e}", temporary.display())))?;
    std::fs::rename(&temporary, &live)
        .map_err(|e| ServeError::Home(format!("{}: {e}", live.display())))?;
    service
        .store
        .activate_plugin_version(&pipeline.name, plugin, version)?;
    tracing::info!(pipeline = %pipeline.name, plugin, version, "plugin version published");
    Ok(())
}
