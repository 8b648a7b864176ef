//! Scale-out over NATS JetStream: `dmp worker` processes on several
//! machines share a run's work, coordinated through JetStream's own
//! durable primitives rather than a protocol of DMP's — a work queue of
//! chunks and finish steps, KV buckets of runs and progress records, and
//! leases for what must have one holder. The target's checkpoints, never
//! an acknowledgement, say what is done.

mod cluster;
mod error;
mod launcher;
mod lease;
mod records;
mod run_view;
mod run_work;
mod stream_holder;
mod submit;
mod submit_stream;
mod worker;
mod written;

pub use cluster::{Cluster, ClusterOptions, DEFAULT_ACK_WAIT, DEFAULT_LEASE_TIME};
pub use error::{Error, Result};
pub use launcher::{ClusterLauncher, cluster_runs};
pub use lease::{Lease, Leases};
pub use records::{RunRecord, StreamRecord, Work, WorkRecord, WorkState, WorkerRecord};
pub use submit::DEFAULT_MAX_DELIVER;
pub use submit_stream::stop_run;
pub use worker::{WorkerOptions, work};
