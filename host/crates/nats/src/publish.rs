//! Publishing a batch's messages with at most `WINDOW` of them awaiting
//! JetStream's acknowledgement (flow control: a slow server slows the
//! pipeline, memory stays bounded). Should one message fail, those after
//! it may still be stored (a client resends what it held once it has
//! reconnected): the failure says which, so that a change stream publishes
//! them again after the missing one (deleting them would not do: their
//! ids stay in the dedupe window and the second publish would be dropped).

use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;

use crate::bus::Bus;
use crate::error::Error;

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

/// An acknowledgement awaited: its message's subject and id.
type Awaited = Pin<Box<dyn Future<Output = (String, String, AckResult)> + Send>>;
type AckResult = std::result::Result<PublishAck, PublishError>;

/// A batch that did not all reach the stream.
pub(crate) struct Failed {
    pub(crate) error: Error,
    /// The id of the last message acknowledged before the first failure.
    pub(crate) before: Option<String>,
    /// Messages after the first failure that were stored anyway: id and
    /// stream sequence.
    pub(crate) stored_after: Vec<(String, u64)>,
}

/// Publishes `messages` in order and waits for every acknowledgement.
/// The acknowledgements are awaited together (each has its own timeout,
/// counted from when it is first awaited), and taken in order.
pub(crate) async fn publish_all(
    bus: &Bus,
    messages: impl IntoIterator<Item = Outgoing>,
    place: &str,
) -> std::result::Result<Published, Failed> {
    let mut waiting: FuturesOrdered<Awaited> = FuturesOrdered::new();
    let mut settled = Settled::default();
    for message in messages {
        if waiting.len() >= WINDOW
            && let Some((subject, id, ack)) = waiting.next().await
        {
            settled.settle(subject, id, ack, place);
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
            Ok(ack) => waiting.push_back(Box::pin(async move { (subject, id, ack.await) })),
            Err(e) => {
                settled.failure = Some(crate::error::Contextual::with_context(
                    e,
                    format!("{place}: publishing to {subject}"),
                ));
                break;
            }
        }
    }
    while let Some((subject, id, ack)) = waiting.next().await {
        settled.settle(subject, id, ack, place);
    }
    match settled.failure {
        None => Ok(settled.published),
        Some(error) => Err(Failed {
            error,
            before: settled.last_id,
            stored_after: settled.stored_after_failure,
        }),
    }
}

#[derive(Default)]
struct Settled {
    published: Published,
    /// The last message acknowledged (before any failure).
    last_id: Option<String>,
    failure: Option<Error>,
    /// Ids stored after a message that failed.
    stored_after_failure: Vec<(String, u64)>,
}

impl Settled {
    fn settle(&mut self, subject: String, id: String, ack: AckResult, place: &str) {
        match ack {
            Ok(ack) if self.failure.is_some() => {
                if !ack.duplicate {
                    self.stored_after_failure.push((id, ack.sequence));
                }
            }
            Ok(ack) => {
                if !ack.duplicate {
                    self.published.stored += 1;
                }
                self.published.last_sequence =
                    Some(self.published.last_sequence.unwrap_or(0).max(ack.sequence));
                self.last_id = Some(id);
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
