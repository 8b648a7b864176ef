//! Where a NATS target keeps its checkpoints: a KV bucket of the pipeline,
//! one key per table and chunk (and one for the change stream), written
//! only after JetStream acknowledged every message of the batch. Each
//! entry also holds the stream sequence the messages had reached, so that
//! a restarted target reads what was published after it (a batch cut by a
//! crash) instead of publishing it again.

use serde::{Deserialize, Serialize};

use async_nats::jetstream::kv;

use crate::bucket::{self, BucketSpec, key_token, open_bucket};
use crate::bus::Bus;
use crate::error::{Error, Result, ResultExt};
use dmp_model::Checkpoint;

/// The key of the change stream's checkpoint (no table name is empty).
const STREAM_KEY: &str = "_stream";
/// The key of the current full run's epoch.
const RUN_KEY: &str = "_run";

/// What tells one full run's messages from another's: snapshot rows keep
/// their ids within a run (a resumed run publishes the same ids), and a
/// new run's differ, or JetStream would drop them as duplicates of the
/// last run's for the length of its dedupe window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Epoch {
    pub(crate) epoch: u64,
}

/// A checkpoint and how far the stream had got when it was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) checkpoint: Checkpoint,
    /// The stream's last sequence once the batch was acknowledged (or,
    /// for an entry written before a chunk's first batch, before it).
    pub(crate) sequence: u64,
    /// The change stream's: the id of the last message it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_id: Option<String>,
}

pub(crate) struct CheckpointStore {
    kv: kv::Store,
    bucket: String,
    /// Keys are `<stream>.<table>.<chunk>`: one bucket serves a pipeline
    /// whatever streams it writes.
    prefix: String,
    place: String,
}

impl CheckpointStore {
    /// The pipeline's bucket, created when missing.
    pub(crate) async fn open(
        bus: &Bus,
        pipeline: &str,
        stream: &str,
        replicas: usize,
        place: &str,
    ) -> Result<Self> {
        let bucket = bucket_name(pipeline);
        let spec = BucketSpec {
            name: &bucket,
            description: "DMP checkpoints",
            max_age: std::time::Duration::ZERO,
            replicas,
        };
        let kv = open_bucket(&bus.jetstream, &spec, place).await?;
        Ok(CheckpointStore {
            kv,
            prefix: format!("{}.", key_token(stream)),
            bucket,
            place: place.to_string(),
        })
    }

    fn key(&self, checkpoint: &Checkpoint) -> String {
        if checkpoint.table == dmp_model::STREAM_CHECKPOINT {
            format!("{}{STREAM_KEY}", self.prefix)
        } else {
            format!(
                "{}{}.{}",
                self.prefix,
                key_token(&checkpoint.table),
                checkpoint.chunk
            )
        }
    }

    pub(crate) async fn put(&self, entry: &Entry) -> Result<()> {
        let key = self.key(&entry.checkpoint);
        let value = serde_json::to_vec(entry)
            .context(|| format!("{}: writing checkpoint {key}", self.place))?;
        self.kv.put(&key, value.into()).await.context(|| {
            format!(
                "{}: writing checkpoint {key} to bucket {}",
                self.place, self.bucket
            )
        })?;
        Ok(())
    }

    /// The epoch of the current full run (0 before any).
    pub(crate) async fn epoch(&self) -> Result<Epoch> {
        let key = format!("{}{RUN_KEY}", self.prefix);
        let ctx = || format!("{}: reading {key} of bucket {}", self.place, self.bucket);
        match self.kv.get(&key).await.context(ctx)? {
            None => Ok(Epoch::default()),
            Some(value) => serde_json::from_slice(&value).map_err(|e| {
                Error::Data(format!(
                    "{}: {key} of bucket {} is not one DMP wrote: {e}",
                    self.place, self.bucket
                ))
            }),
        }
    }

    pub(crate) async fn set_epoch(&self, epoch: Epoch) -> Result<()> {
        let key = format!("{}{RUN_KEY}", self.prefix);
        let value =
            serde_json::to_vec(&epoch).context(|| format!("{}: writing {key}", self.place))?;
        self.kv
            .put(&key, value.into())
            .await
            .context(|| format!("{}: writing {key} to bucket {}", self.place, self.bucket))?;
        Ok(())
    }

    /// Every entry of this stream.
    pub(crate) async fn entries(&self) -> Result<Vec<Entry>> {
        let what = format!(
            "{}: reading the checkpoints of bucket {}",
            self.place, self.bucket
        );
        let mut entries = Vec::new();
        for (key, value) in bucket::entries(&self.kv, &self.prefix, &what).await? {
            if key.ends_with(RUN_KEY) {
                continue;
            }
            let entry: Entry = serde_json::from_slice(&value).map_err(|e| {
                Error::Data(format!(
                    "{}: checkpoint {key} of bucket {} is not one DMP wrote: {e}",
                    self.place, self.bucket
                ))
            })?;
            entries.push(entry);
        }
        Ok(entries)
    }

    pub(crate) async fn forget(&self, table: Option<&str>) -> Result<()> {
        let subject = match table {
            Some(table) => format!("$KV.{}.{}{}.>", self.bucket, self.prefix, key_token(table)),
            None => format!("$KV.{}.{}{STREAM_KEY}", self.bucket, self.prefix),
        };
        self.kv
            .stream
            .purge()
            .filter(&subject)
            .await
            .context(|| format!("{}: forgetting the checkpoints {subject}", self.place))?;
        Ok(())
    }
}

/// The pipeline's bucket: `dmp_<pipeline>`, a name of other characters
/// than letters, digits, `_` and `-` (which bucket names allow) with them
/// as `_` and a hash of the whole name, so that two names never meet.
pub(crate) fn bucket_name(pipeline: &str) -> String {
    let plain: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if plain == pipeline && !pipeline.contains('_') {
        return format!("dmp_{plain}");
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(pipeline.as_bytes());
    format!("dmp_{plain}_{}", dmp_model::encode_hex(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_single_key_tokens() {
        assert_eq!(key_token("orders_2024-q1"), "orders_2024-q1");
        assert_eq!(key_token("public.order items"), "public=2Eorder=20items");
        assert_eq!(key_token("é"), "=C3=A9");
        assert_eq!(bucket_name("orders-sync"), "dmp_orders-sync");
        assert_ne!(bucket_name("a.b"), bucket_name("a_b"));
        assert!(bucket_name("a.b").starts_with("dmp_a_b_"));
    }
}
