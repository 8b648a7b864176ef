//! What a target published after its last checkpoint: a run stopped in
//! the middle of a batch leaves its first messages in the stream. A
//! restarted target reads their headers (nothing else) so that it does not
//! publish them again, even after JetStream's dedupe window has passed,
//! and so that its change stream resumes after the last one. Changes are
//! chained (each names the one published before it): the stream resumes
//! after the last message of an unbroken chain, and messages stored past
//! a break (a message lost in between) are published again after it.

use std::collections::{HashMap, HashSet};

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
    /// Ids of those that are where they should be: not published again.
    pub(crate) ids: HashSet<String>,
    /// Changes stored past a break of the chain, by the id of the change
    /// (a copy's `~` suffix cut), with their sequences: published again
    /// (under new ids) after the missing one, then removed.
    pub(crate) unchained: HashMap<String, Vec<u64>>,
    /// Sequences of such changes whose copy is in the chain already (a
    /// run stopped before it removed them): removed now.
    pub(crate) superseded: Vec<u64>,
    /// The position after the last change of the chain, its sequence.
    pub(crate) position: Option<(u64, Position)>,
    /// The id of the chain's last message.
    pub(crate) chain_end: Option<String>,
}

/// Where the chain of changes stands at the checkpoint.
pub(crate) struct ChainStart {
    /// The checkpoint's stream sequence: chained messages up to it are
    /// behind the checkpoint.
    pub(crate) after: u64,
    /// The id of the last message it covers.
    pub(crate) last_id: Option<String>,
}

/// Reads the headers of the messages of `pipeline` after sequence `after`;
/// `chain` says where the change stream's chain stands.
pub(crate) async fn read(
    bus: &Bus,
    stream: &stream::Stream,
    config: &NatsConfig,
    pipeline: &str,
    after: u64,
    chain: ChainStart,
) -> Result<Tail> {
    let mut tail = Tail {
        chain_end: chain.last_id.clone(),
        ..Tail::default()
    };
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
    scan(stream, read, |message, sequence| {
        let Some(headers) = message.headers.as_ref() else {
            return Ok(());
        };
        if headers.get(headers::PIPELINE).map(|p| p.as_str()) != Some(pipeline) {
            return Ok(());
        }
        let Some(id) = headers
            .get(headers::MESSAGE_ID)
            .map(|v| v.as_str().to_string())
        else {
            return Ok(());
        };
        let previous = headers.get(headers::PREVIOUS).map(|v| v.as_str());
        if previous.is_none() || sequence <= chain.after {
            // A snapshot row, or a change the checkpoint covers.
            tail.ids.insert(id);
            return Ok(());
        }
        let previous = previous.filter(|p| !p.is_empty());
        if previous != tail.chain_end.as_deref() {
            tail.unchained
                .entry(original_id(&id).to_string())
                .or_default()
                .push(sequence);
            return Ok(());
        }
        tail.chain_end = Some(id.clone());
        tail.ids.insert(id);
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
    let copied: HashSet<&str> = tail.ids.iter().map(|id| original_id(id)).collect();
    let superseded: Vec<String> = tail
        .unchained
        .keys()
        .filter(|id| copied.contains(id.as_str()))
        .cloned()
        .collect();
    for id in superseded {
        if let Some(sequences) = tail.unchained.remove(&id) {
            tail.superseded.extend(sequences);
        }
    }
    Ok(tail)
}

/// The id of the change a message carries: a copy published again after
/// a break is named `<id>~<suffix>` (see `Chain::link` in target.rs).
pub(crate) fn original_id(id: &str) -> &str {
    id.split_once('~').map_or(id, |(original, _)| original)
}

#[cfg(test)]
mod tests {
    use super::original_id;

    #[test]
    fn copies_carry_the_id_of_their_change() {
        assert_eq!(original_id("p:lsn=0/1:3"), "p:lsn=0/1:3");
        assert_eq!(original_id("p:lsn=0/1:3~17f0a"), "p:lsn=0/1:3");
        assert_eq!(original_id("p:lsn=0/1:3.1~17f0a"), "p:lsn=0/1:3.1");
    }
}
