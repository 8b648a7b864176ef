//! Reading stored messages once, in order, up to the stream's end as it
//! was when the reading began. Two things of the server are not trusted
//! here, having been seen to fail on nats-server 2.9: a push consumer
//! delivers from the moment it is made, and what it sends before the
//! client has subscribed is lost until a heartbeat tells; and a consumer's
//! count of pending messages can be wrong, so that reading "until none is
//! pending" stops early. So an ephemeral pull consumer reads every message
//! (no server-side filter) until the one that was the stream's last when
//! the scan began, and the subject filter is applied here.

use std::time::Duration;

use futures_util::StreamExt;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};

use crate::bus::covers;
use crate::error::{DriverError, Error, ErrorKind, Result, ResultExt};

/// How long one message may take to arrive.
const WAIT: Duration = Duration::from_secs(10);
/// Messages asked for at once.
const PULL_BATCH: usize = 1_000;
/// The server forgets a consumer a scan left behind (a process killed
/// in the middle) after this long.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(60);

/// What to read.
pub(crate) struct Scan<'a> {
    /// Subjects visited (NATS wildcards); others are passed over.
    pub(crate) filter: String,
    pub(crate) from: DeliverPolicy,
    /// Headers only, no bodies.
    pub(crate) headers_only: bool,
    /// What is read, for messages.
    pub(crate) what: &'a str,
}

/// Calls `visit` with each message matching `scan` and its stream
/// sequence, until the last one stored when the scan began.
pub(crate) async fn scan(
    stream: &stream::Stream,
    scan: Scan<'_>,
    mut visit: impl FnMut(&jetstream::Message, u64) -> Result<()>,
) -> Result<()> {
    let ctx = || scan.what.to_string();
    let info = stream.get_info().await.context(ctx)?;
    let state = &info.state;
    let first = match scan.from {
        DeliverPolicy::ByStartSequence { start_sequence } => start_sequence,
        _ => 0,
    };
    let until = state.last_sequence;
    if state.messages == 0 || first > until {
        return Ok(());
    }
    // The server takes the last message per subject only with a filter:
    // the stream's own subject (the stream's last message is under it).
    let filter_subject = match (&scan.from, info.config.subjects.as_slice()) {
        (DeliverPolicy::LastPerSubject, [subject]) => subject.clone(),
        (DeliverPolicy::LastPerSubject, _) => {
            return Err(Error::Unsupported(format!(
                "{}: the last message of each subject is read only from a stream of one subject pattern",
                ctx()
            )));
        }
        _ => String::new(),
    };
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject,
            headers_only: scan.headers_only,
            deliver_policy: scan.from,
            ack_policy: AckPolicy::None,
            inactive_threshold: FORGOTTEN_AFTER,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .context(ctx)?;
    let name = consumer.cached_info().name.clone();
    let read = read_until(&consumer, &scan, until, &mut visit).await;
    // Left behind, the server drops it after FORGOTTEN_AFTER anyway.
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(consumer = name, error = %e, "scan consumer not deleted");
    }
    read
}

/// Reads `consumer` until the message at sequence `until` (the stream's
/// last when the scan began: always delivered, as the last message of
/// its subject too).
async fn read_until(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    scan: &Scan<'_>,
    until: u64,
    visit: &mut impl FnMut(&jetstream::Message, u64) -> Result<()>,
) -> Result<()> {
    let ctx = || scan.what.to_string();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await
        .context(ctx)?;
    let mut last = 0u64;
    let mut visited = 0u64;
    while last < until {
        let Ok(next) = tokio::time::timeout(WAIT, messages.next()).await else {
            let said = format!(
                "no message arrived in {}s (read up to {last} of {until})",
                WAIT.as_secs()
            );
            let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, said.clone());
            return Err(Error::driver(
                ctx(),
                DriverError::new(ErrorKind::Transient, said, timeout),
            ));
        };
        let Some(message) = next else {
            return Err(Error::Data(format!(
                "{}: the stream's messages ended at {last}, before {until}",
                ctx()
            )));
        };
        let message = message.context(ctx)?;
        let sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => return Err(Error::Data(format!("{}: {e}", ctx()))),
        };
        // In order, each once.
        if sequence <= last {
            continue;
        }
        last = sequence;
        if covers(&scan.filter, message.subject.as_str()) {
            visited += 1;
            visit(&message, sequence)?;
        }
    }
    tracing::debug!(what = scan.what, until, visited, "scanned");
    Ok(())
}
