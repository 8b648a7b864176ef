//! Hot swap: the host watches the plugin files (publish a new version by
//! writing a temporary file and renaming it over the old one) and reloads
//! them on SIGHUP. A new version is compiled off the hot path, opened
//! against every table it serves, and installed at the next batch boundary;
//! if it fails to open or changes the output schema, the running version
//! stays and the reason is logged.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::runtime::PluginRuntime;
use super::stage::{TransformChain, WasmTransform};
use crate::error::{Error, Result};

/// Events of one publish arrive in bursts (write, rename, metadata): wait
/// this long for quiet before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Stops watching when dropped.
pub struct HotSwap {
    task: JoinHandle<()>,
}

impl Drop for HotSwap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn canonical(path: &std::path::Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Starts reloading the plugins of `chains` on SIGHUP and, with
/// `watch_files`, whenever their files change.
pub fn watch(
    runtime: Arc<PluginRuntime>,
    chains: &HashMap<String, TransformChain>,
    watch_files: bool,
) -> Result<HotSwap> {
    let mut by_path: HashMap<PathBuf, Vec<Arc<WasmTransform>>> = HashMap::new();
    for chain in chains.values() {
        for stage in chain.stages() {
            by_path
                .entry(canonical(&stage.plugin_path()))
                .or_default()
                .push(stage.clone());
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .map_err(|e| Error::Plugin(format!("cannot watch plugin files: {e}")))?;
    let dirs: HashSet<PathBuf> = by_path
        .keys()
        .filter_map(|p| p.parent().map(std::path::Path::to_path_buf))
        .collect();
    for dir in dirs.iter().filter(|_| watch_files) {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Plugin(format!("cannot watch {}: {e}", dir.display())))?;
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Error::Plugin(format!("cannot listen for SIGHUP: {e}")))?;
    tracing::debug!(files = ?by_path.keys().collect::<Vec<_>>(), "watching plugin files");
    // In the caller's span: its swaps are logged as the pipeline's.
    let span = tracing::Span::current();
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _watcher = watcher;
            let mut pending: HashSet<PathBuf> = HashSet::new();
            // Reload once the plugin files have been quiet for DEBOUNCE; other
            // files of the folder (a target database, logs) do not count.
            let mut deadline: Option<tokio::time::Instant> = None;
            loop {
                let quiet =
                    tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now));
                tokio::select! {
                    path = rx.recv() => match path {
                        Some(path) => {
                            // A rename reports the new name; a temporary file is
                            // not one of ours and is ignored.
                            let path = canonical(&path);
                            if by_path.contains_key(&path) {
                                tracing::debug!(path = %path.display(), "plugin file changed");
                                pending.insert(path);
                                deadline = Some(tokio::time::Instant::now() + DEBOUNCE);
                            }
                            continue;
                        }
                        None => return,
                    },
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading every plugin");
                        pending.extend(by_path.keys().cloned());
                    }
                    () = quiet, if deadline.is_some() => {}
                }
                deadline = None;
                for path in pending.drain() {
                    let Some(stages) = by_path.get(&path).cloned() else {
                        continue;
                    };
                    let runtime = runtime.clone();
                    let span = tracing::Span::current();
                    // Compiling takes a while: never on the async threads.
                    let _ = tokio::task::spawn_blocking(move || {
                        span.in_scope(|| reload(&runtime, &path, &stages));
                    })
                    .await;
                }
            }
        },
        span,
    ));
    Ok(HotSwap { task })
}

fn reload(runtime: &PluginRuntime, path: &std::path::Path, stages: &[Arc<WasmTransform>]) {
    let Some(limits) = stages.first().map(|s| s.load_limits()) else {
        return;
    };
    let plugin = match runtime.load(path, limits) {
        Ok(plugin) => plugin,
        Err(e) => {
            tracing::warn!(plugin = %path.display(), error = %e, "hot swap refused: the running version stays");
            return;
        }
    };
    for stage in stages {
        let before = stage.version();
        match stage.swap(plugin.clone()) {
            Ok(true) => tracing::info!(from = before, to = stage.version(), "plugin swapped"),
            Ok(false) => tracing::debug!(plugin = before, "plugin unchanged"),
            Err(reason) => tracing::warn!(
                plugin = before,
                error = reason,
                "hot swap refused: the running version stays"
            ),
        }
    }
}
