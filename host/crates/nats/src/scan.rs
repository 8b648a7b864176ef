//! Reading stored messages once, in order, up to the stream's end as it
//! was when the reading began: an ordered consumer (ephemeral, flow
//! controlled by the server) that ends when nothing is pending.

use std::time::Duration;

use futures_util::StreamExt;

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::{self, stream};

use crate::bus::Bus;
use crate::error::{DriverError, Error, ErrorKind, Result, ResultExt};

/// How long one message may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

/// What to read.
pub(crate) struct Scan<'a> {
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
    bus: &Bus,
    stream: &stream::Stream,
    scan: Scan<'_>,
    mut visit: impl FnMut(&jetstream::Message, u64) -> Result<()>,
) -> Result<()> {
    let ctx = || scan.what.to_string();
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: bus.client.new_inbox(),
            filter_subject: scan.filter.clone(),
            headers_only: scan.headers_only,
            deliver_policy: scan.from,
            ..Default::default()
        })
        .await
        .context(ctx)?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.context(ctx)?;
    loop {
        let Ok(next) = tokio::time::timeout(WAIT, messages.next()).await else {
            let said = format!("no message arrived in {}s", WAIT.as_secs());
            let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, said.clone());
            return Err(Error::driver(
                ctx(),
                DriverError::new(ErrorKind::Transient, said, timeout),
            ));
        };
        let Some(message) = next else { break };
        let message = message.context(ctx)?;
        let (sequence, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(e) => return Err(Error::Data(format!("{}: {e}", ctx()))),
        };
        visit(&message, sequence)?;
        if pending == 0 {
            break;
        }
    }
    Ok(())
}
