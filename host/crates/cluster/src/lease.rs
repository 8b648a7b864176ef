//! Leases for one-of-a-kind work — a run's coordinator, a pipeline's
//! change stream — held in a JetStream KV bucket. Taken with `create` (it
//! fails while someone holds the key), renewed with `update` on the
//! revision last seen (it fails once someone else has taken it), and let
//! go of by expiry: the bucket's `max_age` is the lease time, since
//! nats-server 2.9 has no per-key TTL. A holder renews at a third of it.
//!
//! The **epoch** of a lease is the revision it was taken at: a stream
//! sequence, so each new holder's is larger. Work done under a lease
//! carries it, and a target that records the epoch with its checkpoint
//! refuses a smaller one: a holder that was deposed without noticing
//! (paused, cut off) cannot commit after its successor.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use dmp_nats::{BucketSpec, open_bucket};

use crate::error::{Error, Result};

/// A bucket of leases.
pub struct Leases {
    kv: kv::Store,
    bucket: String,
    ttl: Duration,
}

/// A lease held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// The revision the lease was taken at: the fencing epoch.
    pub epoch: u64,
    /// The revision of the last renewal.
    revision: u64,
}

impl Leases {
    /// Opens bucket `bucket` (made when missing) whose leases last `ttl`.
    /// An existing bucket keeps the lease time it was made with, and the
    /// leases follow it: renewing by another member's time would let them
    /// expire.
    pub async fn open(
        jetstream: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self> {
        let spec = BucketSpec {
            name: bucket,
            description: "DMP leases",
            max_age: ttl,
            replicas,
        };
        let kv = open_bucket(jetstream, &spec, "leases").await?;
        let made_with = kv.stream.cached_info().config.max_age;
        if !made_with.is_zero() && made_with != ttl {
            tracing::info!(
                bucket,
                lease = ?made_with,
                asked = ?ttl,
                "the cluster's leases last as its bucket was made"
            );
        }
        Ok(Leases {
            kv,
            bucket: bucket.to_string(),
            ttl: if made_with.is_zero() { ttl } else { made_with },
        })
    }

    /// How often a holder renews: a third of the lease time.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Takes lease `name` for `holder`, or `None` while another holds it.
    pub async fn acquire(&self, name: &str, holder: &str) -> Result<Option<Lease>> {
        match self
            .kv
            .create(name, bytes::Bytes::from(holder.to_string()))
            .await
        {
            Ok(revision) => Ok(Some(Lease {
                name: name.to_string(),
                holder: holder.to_string(),
                epoch: revision,
                revision,
            })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(Error::from_nats(self.what(name), e)),
        }
    }

    /// Renews `lease`; `false` when it was lost (expired and taken, or
    /// let go): its holder must stop the work it guards.
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool> {
        match self
            .kv
            .update(
                &lease.name,
                bytes::Bytes::from(format!("{}@{}", lease.holder, lease.epoch)),
                lease.revision,
            )
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                Ok(true)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(Error::from_nats(self.what(&lease.name), e)),
        }
    }

    /// Who holds lease `name`, and the epoch they took it at.
    pub async fn holder(&self, name: &str) -> Result<Option<(String, u64)>> {
        let entry = self
            .kv
            .entry(name)
            .await
            .map_err(|e| Error::from_nats(self.what(name), e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| {
                let value = String::from_utf8_lossy(&e.value).into_owned();
                // Taken, the value is the holder; renewed, `holder@epoch`.
                match value.rsplit_once('@') {
                    Some((holder, epoch)) if epoch.parse::<u64>().is_ok() => {
                        (holder.to_string(), epoch.parse().unwrap_or(e.revision))
                    }
                    _ => (value, e.revision),
                }
            }))
    }

    /// Lets go of `lease` at once (a holder that stops cleanly), unless
    /// another took it meanwhile.
    pub async fn release(&self, lease: &Lease) -> Result<()> {
        match self
            .kv
            .delete_expect_revision(&lease.name, Some(lease.revision))
            .await
        {
            Ok(()) => Ok(()),
            Err(e)
                if e.to_string()
                    .to_ascii_lowercase()
                    .contains("wrong last sequence") =>
            {
                Ok(())
            }
            Err(e) => Err(Error::from_nats(self.what(&lease.name), e)),
        }
    }

    fn what(&self, name: &str) -> String {
        format!("lease {name} of bucket {}", self.bucket)
    }
}

/// Renews `lease` at a third of the lease time until `stop` fires, and
/// gives it back as last renewed (to let go of: a release needs its last
/// revision). Losing it fires `stop`: the work it guards must end, another
/// may hold it by now. So does `still_wanted` answering false, asked after
/// each renewal.
pub(crate) async fn keep<Wanted, Asking>(
    leases: &Leases,
    mut lease: Lease,
    stop: &dmp_engine::Shutdown,
    mut still_wanted: Wanted,
) -> Lease
where
    Wanted: FnMut() -> Asking,
    Asking: std::future::Future<Output = bool>,
{
    loop {
        tokio::select! {
            () = stop.wait() => return lease,
            () = tokio::time::sleep(leases.renew_every()) => {}
        }
        match leases.renew(&mut lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    lease = lease.name,
                    "the lease was lost; stopping what it guards"
                );
                stop.trigger();
                return lease;
            }
            Err(e) => {
                tracing::warn!(lease = lease.name, error = %e, "cannot renew the lease; trying again")
            }
        }
        if !still_wanted().await {
            stop.trigger();
            return lease;
        }
    }
}
