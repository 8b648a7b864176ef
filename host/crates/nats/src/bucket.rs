//! KV buckets as DMP makes and reads them: the checkpoints of a NATS
//! target, and the cluster's runs, progress and leases. A bucket's stream
//! is made by hand, since async-nats 0.52's `create_key_value` first reads
//! account details that nats-server 2.9 does not send, and fails there;
//! and a bucket is listed by one pass over its stream (see `scan`), not
//! the client's `keys()`, which uses a push consumer.

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;

use crate::bus::DUPLICATE_WINDOW;
use crate::error::{Contextual, Result, ResultExt};
use crate::scan::{Scan, scan};

/// How a bucket is made when missing.
#[derive(Debug, Clone)]
pub struct BucketSpec<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// How long a value lives (`ZERO`: for ever). nats-server 2.9 has no
    /// per-key TTL: this is the bucket's.
    pub max_age: Duration,
    /// Copies kept in a JetStream cluster.
    pub replicas: usize,
}

/// Opens bucket `spec.name`, made as `spec` says when missing (an existing
/// bucket keeps the settings it was made with). `place` names the bucket's
/// use, for errors.
pub async fn open_bucket(
    jetstream: &jetstream::Context,
    spec: &BucketSpec<'_>,
    place: &str,
) -> Result<kv::Store> {
    let ctx = || format!("{place}: bucket {}", spec.name);
    match jetstream.get_key_value(spec.name).await {
        Ok(kv) => return Ok(kv),
        Err(e) if matches!(e.kind(), jetstream::context::KeyValueErrorKind::GetBucket) => {}
        Err(e) => return Err(e.with_context(ctx())),
    }
    let window = if spec.max_age.is_zero() {
        DUPLICATE_WINDOW
    } else {
        // The dedupe window may not exceed the age limit.
        spec.max_age.min(DUPLICATE_WINDOW)
    };
    jetstream
        .get_or_create_stream(stream::Config {
            name: format!("KV_{}", spec.name),
            description: Some(spec.description.to_string()),
            subjects: vec![format!("$KV.{}.>", spec.name)],
            max_messages_per_subject: 1,
            max_age: spec.max_age,
            storage: stream::StorageType::File,
            num_replicas: spec.replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            duplicate_window: window,
            ..Default::default()
        })
        .await
        .context(ctx)?;
    jetstream.get_key_value(spec.name).await.context(ctx)
}

/// The current value of every key of `kv` under `prefix` (`""`: all), in
/// one pass over the bucket as it was when the pass began; deleted keys
/// are left out.
pub async fn entries(kv: &kv::Store, prefix: &str, what: &str) -> Result<Vec<(String, Bytes)>> {
    let subjects = format!("$KV.{}.", kv.name);
    let read = Scan {
        filter: format!("{subjects}{prefix}>"),
        from: DeliverPolicy::LastPerSubject,
        headers_only: false,
        what,
    };
    let mut found = Vec::new();
    scan(&kv.stream, read, |message, _| {
        let removed = message
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| op.as_str() != "PUT");
        if !removed {
            let key = message
                .subject
                .as_str()
                .trim_start_matches(subjects.as_str());
            found.push((key.to_string(), message.payload.clone()));
        }
        Ok(())
    })
    .await?;
    Ok(found)
}

/// A name as one KV key token: letters, digits, `_` and `-` as they are,
/// any other byte as `=XX` (keys allow `[-/_=.a-zA-Z0-9]`; the dot
/// separates tokens). Two names never give the same token.
pub fn key_token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}
