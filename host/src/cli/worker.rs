//! `dmp worker --cluster nats://…`: joins a cluster and does its work
//! until stopped (Ctrl-C, SIGTERM), handing back what is in flight.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::EXIT_OK;
use crate::connectors::Registry;
use crate::engine::Shutdown;
use crate::error::Result;
use dmp_cluster::{Cluster, ClusterOptions, WorkerOptions};

#[derive(Debug, Args)]
pub(super) struct WorkerArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// This worker's name, unique in the cluster (default: host name and
    /// process id).
    #[arg(long)]
    name: Option<String>,
    /// Pieces of work (chunks) done at once (default: the number of cores).
    #[arg(long)]
    slots: Option<usize>,
}

/// How to reach the cluster; shared by `dmp worker` and `dmp run`.
#[derive(Debug, Args)]
pub(super) struct ClusterArgs {
    /// The NATS server(s) of the cluster: `nats://host:4222`, several
    /// comma-separated. JetStream must be enabled.
    #[arg(long = "cluster", value_name = "URL")]
    pub(super) url: Option<String>,
    /// How long a worker may hold a chunk without a sign of life before
    /// it goes to another (it sends one every third of this).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    pub(super) ack_wait: Duration,
    /// Copies JetStream keeps of the coordination's streams (for a
    /// JetStream cluster of 3 servers, 3).
    #[arg(long, default_value_t = 1)]
    pub(super) replicas: usize,
    /// How long a lease (a worker's name, a change stream) lasts without
    /// renewal: a dead holder's stream moves to another worker within
    /// about this. Set by the member that first joins the cluster.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "15s")]
    pub(super) lease_time: Duration,
}

impl ClusterArgs {
    pub(super) async fn join(&self) -> Result<Option<Arc<Cluster>>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut options = ClusterOptions::new(url);
        options.ack_wait = self.ack_wait.max(Duration::from_secs(1));
        options.replicas = self.replicas;
        options.lease_time = self.lease_time.max(Duration::from_secs(1));
        Ok(Some(Arc::new(Cluster::join(options).await?)))
    }
}

pub(super) async fn worker(args: WorkerArgs) -> Result<u8> {
    let Some(cluster) = args.cluster.join().await? else {
        return Err(crate::Error::Config(
            "dmp worker needs --cluster nats://HOST:PORT".into(),
        ));
    };
    let name = args.name.unwrap_or_else(default_name);
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let stop = Shutdown::new();
    let signals = super::signals::stop_on_signals(stop.clone());
    let worked = dmp_cluster::work(
        cluster,
        WorkerOptions { name, slots },
        Arc::new(Registry),
        stop,
    )
    .await;
    signals.abort();
    worked?;
    Ok(EXIT_OK)
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".to_string());
    format!("{host}-{}", std::process::id())
}
