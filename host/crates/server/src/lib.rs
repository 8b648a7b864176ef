//! `dmp serve`: the control plane. One process runs many pipeline
//! sessions and offers them through an HTTP API (`/api/v1`, OpenAPI at
//! `/api/v1/openapi.json`), server-sent events, Prometheus metrics and an
//! embedded dashboard, behind roles (viewer, operator, admin), API tokens
//! and browser sessions, with secrets sealed at rest, files confined to a
//! data root and an audit log of every change.

pub mod api;
mod audit;
pub mod auth;
mod dashboard;
pub mod definitions;
pub mod error;
pub mod listen;
pub mod logs;
mod metrics;
mod plugins;
pub mod secrets;
pub mod service;
pub mod store;
mod supervisor;
mod verify_jobs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use api::{Access, Route, route_table};
pub use auth::Role;
pub use error::{Result, ServeError};
pub use service::Home;

use dmp_contract::Connectors;
use dmp_engine::{Launcher, Shutdown};

/// How `dmp serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// `--home` (else `$DMP_HOME`, else `~/.local/share/dmp`).
    pub home: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Listen beyond loopback without TLS.
    pub insecure_listen: bool,
    /// The service's settings (`[serve]`); default `serve.toml` in the home.
    pub config: Option<PathBuf>,
}

/// Runs the service until `stop` fires; then stops every pipeline at a
/// batch boundary (their checkpoints valid) and returns. Prints the
/// address it listens on (`listening on http://…`) to stdout.
///
/// With a `launcher` (`--cluster`), the pipelines it runs run there: the
/// service submits and follows them, and stopping the service leaves them
/// running (a stop or pause through the API ends them).
pub async fn serve(
    options: ServeOptions,
    connectors: Arc<dyn Connectors>,
    launcher: Option<Arc<dyn Launcher>>,
    stop: Shutdown,
) -> Result<()> {
    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => Some(listen::acceptor(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(ServeError::Home(
                "--tls-cert and --tls-key go together".into(),
            ));
        }
    };
    if !options.listen.ip().is_loopback() && tls.is_none() && !options.insecure_listen {
        return Err(ServeError::Home(format!(
            "--listen {}: not a loopback address, and without TLS tokens and passwords would cross the network in clear; give --tls-cert and --tls-key (or --insecure-listen)",
            options.listen
        )));
    }
    let home = Home::resolve(options.home.clone())?;
    let _only_one = home.lock("dmp serve")?;
    let settings = home.settings(options.config.as_deref())?.serve;
    let rules = home.rules(&settings)?;
    let store = home.store()?;
    let key = secrets::recover_rotation(&home, &store)?;
    store.close_dead_runs()?;
    let service = Arc::new(service::Service {
        store,
        key,
        rules,
        connectors,
        supervisor: supervisor::Supervisor::default(),
        metrics: metrics::Metrics::new(),
        secure_cookies: tls.is_some(),
        max_body: usize::try_from(
            settings
                .max_body_kb
                .unwrap_or(service::DEFAULT_MAX_BODY_KB)
                .saturating_mul(1024),
        )
        .unwrap_or(usize::MAX),
        verify_jobs: Mutex::new(std::collections::HashMap::new()),
        plugin_lock: tokio::sync::Mutex::new(()),
        stop: stop.clone(),
        launcher,
        home,
    });
    supervisor::restore(&service)?;
    let tcp = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| ServeError::Home(format!("--listen {}: {e}", options.listen)))?;
    let local = tcp
        .local_addr()
        .map_err(|e| ServeError::Home(format!("--listen {}: {e}", options.listen)))?;
    let app =
        api::router(service.clone()).into_make_service_with_connect_info::<listen::PeerAddr>();
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{local}");
    tracing::info!(address = %local, tls = tls.is_some(), "dmp serve listening");
    let http_stop = stop.clone();
    let server = async move {
        let graceful = async move { http_stop.wait().await };
        match tls {
            Some(acceptor) => {
                let listener = listen::TlsListener::new(tcp, acceptor)
                    .map_err(|e| ServeError::Home(format!("--listen {local}: {e}")))?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
            }
            None => axum::serve(tcp, app).with_graceful_shutdown(graceful).await,
        }
        .map_err(|e| ServeError::Home(format!("serving on {local}: {e}")))
    };
    let served = tokio::spawn(server);
    stop.wait().await;
    tracing::info!("stopping: every pipeline stops at its next batch boundary");
    supervisor::stop_all(&service).await;
    // Event streams end with the service; give requests in flight a moment.
    match tokio::time::timeout(std::time::Duration::from_secs(5), served).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Err(ServeError::Home(format!("the HTTP server's task: {e}"))),
        Err(_) => Ok(()),
    }
}
