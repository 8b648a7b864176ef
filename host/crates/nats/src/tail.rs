//! What a target published after its last checkpoint: a run stopped in
//! the middle of a batch leaves its first messages in the stream. A
//! restarted target reads their headers (nothing else) so that it does not
//! publish them again, even after JetStream's dedupe window has passed,
//! and so that its change stream resumes after the last one.

use std::collections::HashSet;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream;

use crate::bus::Bus;
use crate::config::NatsConfig;
use crate::error::{Error, Result};
use crate::headers;
use crate::scan::{Scan, scan};
use dmp_model::Position;

/// The messages of a pipeline after a point of the stream.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Their ids.
    pub(crate) ids: HashSet<String>,
    /// The position after the last change among them, and its sequence.
    pub(crate) position: Option<(u64, Position)>,
}

/// Reads the headers of the messages of `pipeline` after sequence `after`.
pub(crate) async fn read(
    bus: &Bus,
    stream: &stream::Stream,
    config: &NatsConfig,
    pipeline: &str,
    after: u64,
) -> Result<Tail> {
    let mut tail = Tail::default();
    let last = bus.last_sequence(stream).await?;
    if last <= after {
        return Ok(tail);
    }
    let what = format!(
        "{}: reading what was published after message {after}",
        config.place
    );
    let from = DeliverPolicy::ByStartSequence {
        start_sequence: after + 1,
    };
    let read = Scan {
        filter: config.subjects(),
        from,
        headers_only: true,
        what: &what,
    };
    scan(bus, stream, read, |message, sequence| {
        let Some(headers) = message.headers.as_ref() else {
            return Ok(());
        };
        if headers.get(headers::PIPELINE).map(|p| p.as_str()) != Some(pipeline) {
            return Ok(());
        }
        if let Some(id) = headers.get(headers::MESSAGE_ID) {
            tail.ids.insert(id.as_str().to_string());
        }
        if let Some(position) = headers.get(headers::POSITION) {
            let position = serde_json::from_str(position.as_str()).map_err(|e| {
                Error::Data(format!(
                    "{}: message {sequence} has a {} header DMP did not write: {e}",
                    config.place,
                    headers::POSITION
                ))
            })?;
            tail.position = Some((sequence, position));
        }
        Ok(())
    })
    .await?;
    Ok(tail)
}
