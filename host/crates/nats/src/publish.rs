//! Publishing a batch's messages with at most `WINDOW` of them awaiting
//! JetStream's acknowledgement (flow control: a slow server slows the
//! pipeline, memory stays bounded). What the stream holds stays a prefix
//! of what was sent: should one message fail, those after it that were
//! stored are deleted again, so that nothing before the stream's last
//! message of a pipeline is ever missing (a restart resumes after it).

use std::collections::VecDeque;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream;

use crate::bus::Bus;
use crate::error::{Error, Result, ResultExt};

/// Messages awaiting their acknowledgement at most.
pub(crate) const WINDOW: usize = 256;

/// One message to publish.
pub(crate) struct Outgoing {
    pub(crate) subject: String,
    /// `Nats-Msg-Id`.
    pub(crate) id: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
}

/// What a batch's publishing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    /// Messages stored by this publish (not already there under their id).
    pub(crate) stored: u64,
    /// The highest stream sequence acknowledged (stored now or before).
    pub(crate) last_sequence: Option<u64>,
}

/// Publishes `messages` in order and waits for every acknowledgement.
pub(crate) async fn publish_all(
    bus: &Bus,
    stream: &stream::Stream,
    messages: impl IntoIterator<Item = Outgoing>,
    place: &str,
) -> Result<Published> {
    let mut waiting: VecDeque<(String, PublishAckFuture)> = VecDeque::with_capacity(WINDOW);
    let mut settled = Settled::default();
    for message in messages {
        if waiting.len() >= WINDOW
            && let Some((subject, ack)) = waiting.pop_front()
        {
            settled.settle(subject, ack, place).await;
        }
        if settled.failure.is_some() {
            break;
        }
        let Outgoing {
            subject,
            id,
            mut headers,
            body,
        } = message;
        headers.insert("Nats-Msg-Id", id.as_str());
        match bus
            .jetstream
            .publish_with_headers(subject.clone(), headers, body)
            .await
        {
            Ok(ack) => waiting.push_back((subject, ack)),
            Err(e) => {
                settled.failure = Some(crate::error::Contextual::with_context(
                    e,
                    format!("{place}: publishing to {subject}"),
                ));
                break;
            }
        }
    }
    while let Some((subject, ack)) = waiting.pop_front() {
        settled.settle(subject, ack, place).await;
    }
    match settled.failure {
        None => Ok(settled.published),
        Some(failure) => {
            unstore(stream, &settled.stored_after_failure, place).await?;
            Err(failure)
        }
    }
}

#[derive(Default)]
struct Settled {
    published: Published,
    failure: Option<Error>,
    /// Sequences stored after a message that failed.
    stored_after_failure: Vec<u64>,
}

impl Settled {
    async fn settle(&mut self, subject: String, ack: PublishAckFuture, place: &str) {
        match ack.await {
            Ok(ack) if self.failure.is_some() => {
                if !ack.duplicate {
                    self.stored_after_failure.push(ack.sequence);
                }
            }
            Ok(ack) => {
                if !ack.duplicate {
                    self.published.stored += 1;
                }
                self.published.last_sequence =
                    Some(self.published.last_sequence.unwrap_or(0).max(ack.sequence));
            }
            Err(e) => {
                if self.failure.is_none() {
                    self.failure = Some(crate::error::Contextual::with_context(
                        e,
                        format!("{place}: publishing to {subject}"),
                    ));
                }
            }
        }
    }
}

/// Deletes messages stored after one that failed: published again with
/// the rest on the retry, in order.
async fn unstore(stream: &stream::Stream, sequences: &[u64], place: &str) -> Result<()> {
    for &sequence in sequences {
        tracing::warn!(
            sequence,
            "a message after one that failed was stored; deleting it, to be published again in order"
        );
        stream.delete_message(sequence).await.context(|| {
            format!("{place}: deleting message {sequence}, stored after one that failed")
        })?;
    }
    Ok(())
}
