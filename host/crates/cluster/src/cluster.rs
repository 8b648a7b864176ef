//! The cluster as its members see it: a connection to JetStream and the
//! stream, consumer and buckets the coordination lives in, made on first
//! use by whichever member comes first.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;

use crate::error::{Error, Result, retrying};
use crate::lease::Leases;
use crate::records::{
    LEASES_BUCKET, PROGRESS_BUCKET, RUNS_BUCKET, RunRecord, WORK_STREAM, WORKERS_CONSUMER, Work,
    run_key, work_subject,
};
use dmp_nats::{BucketSpec, open_bucket};

/// How long a worker may hold a piece of work without a sign of life
/// (`+WPI`, sent at a third of it) before JetStream gives it to another.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a lease lasts without renewal (renewed at a third of it).
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(15);
/// How long a member waits out a JetStream cluster that answers nothing
/// (electing leaders) before it gives up.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// Progress records outlive their run by this long.
const PROGRESS_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a member joins.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `nats://host:port` (several, comma-separated, for a cluster).
    pub url: String,
    pub ack_wait: Duration,
    pub lease_time: Duration,
    /// Copies of each stream in a JetStream cluster (1 on one server).
    pub replicas: usize,
}

impl ClusterOptions {
    pub fn new(url: &str) -> Self {
        ClusterOptions {
            url: url.to_string(),
            ack_wait: DEFAULT_ACK_WAIT,
            lease_time: DEFAULT_LEASE_TIME,
            replicas: 1,
        }
    }
}

pub struct Cluster {
    pub(crate) options: ClusterOptions,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) work: stream::Stream,
    pub(crate) runs: kv::Store,
    pub(crate) progress: kv::Store,
    pub(crate) leases: Leases,
}

impl Cluster {
    /// Connects and makes what is missing of the coordination's streams,
    /// waiting out a JetStream cluster that is still electing its leaders.
    pub async fn join(options: ClusterOptions) -> Result<Self> {
        retrying("joining the cluster", SETTLE_LIMIT, || {
            Self::try_join(options.clone())
        })
        .await
    }

    async fn try_join(options: ClusterOptions) -> Result<Self> {
        let place = format!("cluster {}", options.url);
        let servers = options
            .url
            .split(',')
            .map(|url| url.trim().parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::refused(place.clone(), e))?;
        let client = async_nats::ConnectOptions::new()
            .name("dmp")
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .map_err(|e| Error::from_nats(place.clone(), e))?;
        // Requests wait for a JetStream cluster to elect a leader.
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client);
        let work = jetstream
            .get_or_create_stream(stream::Config {
                name: WORK_STREAM.to_string(),
                description: Some("DMP work queue: chunks and finish steps of runs".into()),
                subjects: vec!["dmp.work.>".to_string()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: options.replicas.max(1),
                duplicate_window: dmp_nats::DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::from_nats(format!("{place}: stream {WORK_STREAM}"), e))?;
        let bucket = |name, description, max_age| BucketSpec {
            name,
            description,
            max_age,
            replicas: options.replicas,
        };
        let runs = open_bucket(
            &jetstream,
            &bucket(
                RUNS_BUCKET,
                "DMP runs submitted to the cluster",
                Duration::ZERO,
            ),
            &place,
        )
        .await?;
        let progress = open_bucket(
            &jetstream,
            &bucket(
                PROGRESS_BUCKET,
                "DMP progress of cluster runs",
                PROGRESS_AGE,
            ),
            &place,
        )
        .await?;
        let leases = Leases::open(
            &jetstream,
            LEASES_BUCKET,
            options.lease_time,
            options.replicas,
        )
        .await?;
        Ok(Cluster {
            options,
            jetstream,
            work,
            runs,
            progress,
            leases,
        })
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// The consumer every worker pulls from, made on first use. Deliveries
    /// are not limited by the server: a worker counts them and ends a
    /// chunk that used its `max_deliver` as failed, even when the workers
    /// that took it died without a word (a chunk that kills its worker).
    pub(crate) async fn consumer(&self) -> Result<consumer::Consumer<consumer::pull::Config>> {
        let consumer = self
            .work
            .get_or_create_consumer(
                WORKERS_CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(WORKERS_CONSUMER.to_string()),
                    description: Some("DMP workers".to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.options.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::from_nats(format!("consumer {WORKERS_CONSUMER}"), e))?;
        let made_with = consumer.cached_info().config.ack_wait;
        if made_with != self.options.ack_wait {
            tracing::info!(
                ack_wait = ?made_with,
                asked = ?self.options.ack_wait,
                "the cluster's consumer keeps the ack wait it was made with"
            );
        }
        Ok(consumer)
    }

    /// Puts `work` on the queue; the same work published again (same
    /// `retry`) within the dedupe window is stored once.
    pub(crate) async fn publish(&self, work: &Work, retry: u32) -> Result<()> {
        retrying("publishing work", SETTLE_LIMIT, || {
            self.try_publish(work, retry)
        })
        .await
    }

    async fn try_publish(&self, work: &Work, retry: u32) -> Result<()> {
        let what = || format!("publishing {} of run {}", work.describe(None), work.run());
        let body = serde_json::to_vec(work).map_err(|e| Error::refused(what(), e))?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(body))
            .message_id(work.message_id(retry));
        self.jetstream
            .send_publish(work_subject(work.pipeline()), publish)
            .await
            .map_err(|e| Error::from_nats(what(), e))?
            .await
            .map_err(|e| Error::from_nats(what(), e))?;
        Ok(())
    }

    /// The run the cluster works on for `pipeline`, if any. Waited for
    /// through a JetStream cluster electing the bucket's leader, as its
    /// write is.
    pub async fn run_record(&self, pipeline: &str) -> Result<Option<RunRecord>> {
        retrying("reading the run's record", SETTLE_LIMIT, || {
            self.try_run_record(pipeline)
        })
        .await
    }

    async fn try_run_record(&self, pipeline: &str) -> Result<Option<RunRecord>> {
        let key = run_key(pipeline);
        let what = || format!("reading {key} of bucket {RUNS_BUCKET}");
        match self
            .runs
            .get(&key)
            .await
            .map_err(|e| Error::from_nats(what(), e))?
        {
            None => Ok(None),
            Some(value) => serde_json::from_slice(&value)
                .map(Some)
                .map_err(|e| Error::refused(what(), e)),
        }
    }

    pub(crate) async fn put_run_record(&self, record: &RunRecord) -> Result<()> {
        retrying("writing the run's record", SETTLE_LIMIT, || {
            self.try_put_run_record(record)
        })
        .await
    }

    async fn try_put_run_record(&self, record: &RunRecord) -> Result<()> {
        let key = run_key(&record.pipeline);
        let what = || format!("writing {key} of bucket {RUNS_BUCKET}");
        let value = serde_json::to_vec(record).map_err(|e| Error::refused(what(), e))?;
        self.runs
            .put(&key, Bytes::from(value))
            .await
            .map_err(|e| Error::from_nats(what(), e))?;
        Ok(())
    }

    /// Progress record `key`, with its revision.
    pub(crate) async fn record<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>> {
        let what = || format!("reading {key} of bucket {PROGRESS_BUCKET}");
        let entry = self
            .progress
            .entry(key)
            .await
            .map_err(|e| Error::from_nats(what(), e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let value =
                    serde_json::from_slice(&entry.value).map_err(|e| Error::refused(what(), e))?;
                Ok(Some((value, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Writes progress record `key`: over revision `revision` (`Some(0)`:
    /// only when missing; `None`: whatever is there). `false` when the
    /// record moved on meanwhile.
    pub(crate) async fn put_record<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        revision: Option<u64>,
    ) -> Result<bool> {
        let what = || format!("writing {key} of bucket {PROGRESS_BUCKET}");
        let body = Bytes::from(serde_json::to_vec(value).map_err(|e| Error::refused(what(), e))?);
        match revision {
            None => {
                self.progress
                    .put(key, body)
                    .await
                    .map_err(|e| Error::from_nats(what(), e))?;
                Ok(true)
            }
            Some(0) => match self.progress.create(key, body).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::from_nats(what(), e)),
            },
            Some(revision) => match self.progress.update(key, body, revision).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(Error::from_nats(what(), e)),
            },
        }
    }

    /// Forgets progress record `key`.
    pub(crate) async fn forget_record(&self, key: &str) -> Result<()> {
        self.progress
            .delete(key)
            .await
            .map_err(|e| Error::from_nats(format!("deleting {key} of bucket {PROGRESS_BUCKET}"), e))
    }

    /// Every progress record of a run (`prefix` from `run_prefix`).
    pub(crate) async fn records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        let what = format!("reading the progress of {prefix}* in bucket {PROGRESS_BUCKET}");
        Ok(dmp_nats::bucket_entries(&self.progress, prefix, &what).await?)
    }
}
