//! Reading a NATS JetStream stream from a test, as a third party would:
//! every message with its sequence, subject, headers and JSON body.

use std::collections::BTreeMap;

/// One stored message.
#[derive(Debug, Clone)]
pub struct BusMessage {
    pub sequence: u64,
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
}

impl BusMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Whether it is a schema message (`PREFIX._schema.…`).
    pub fn is_schema(&self) -> bool {
        self.subject.split('.').nth(1) == Some("_schema")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every message of `stream` on the server at `url`, in order (read by an
/// ephemeral pull consumer, as a third party would), up to the last one
/// stored when the reading began (not "until none is pending": that count
/// is not always right on nats-server 2.9).
pub fn read_stream(url: &str, stream: &str) -> Vec<BusMessage> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures_util::StreamExt;
    runtime().block_on(async {
        let client = async_nats::connect(url).await.expect("connects to NATS");
        let js = async_nats::jetstream::new(client.clone());
        let mut stream = js.get_stream(stream).await.expect("the stream exists");
        let state = stream.info().await.expect("stream info").state.clone();
        let consumer = stream
            .create_consumer(pull::Config {
                ack_policy: AckPolicy::None,
                inactive_threshold: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        let mut messages = consumer.messages().await.expect("messages");
        while let Some(message) = messages.next().await {
            let message = message.expect("message");
            let info = message.info().expect("info");
            let sequence = info.stream_sequence;
            let headers = message
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(k, v)| {
                    let value = v
                        .first()
                        .map(|v| v.as_str().to_string())
                        .unwrap_or_default();
                    (k.to_string(), value)
                })
                .collect();
            out.push(BusMessage {
                sequence,
                subject: message.subject.to_string(),
                headers,
                body: serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null),
            });
            if sequence >= state.last_sequence {
                break;
            }
        }
        out
    })
}

/// The number of messages `stream` holds; 0 while the server or the
/// stream is not there.
pub fn message_count(url: &str, stream: &str) -> u64 {
    runtime().block_on(async {
        let Ok(client) = async_nats::connect(url).await else {
            return 0;
        };
        let js = async_nats::jetstream::new(client);
        match js.get_stream(stream).await {
            Ok(s) => s.get_info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    })
}

/// Publishes `body` on `subject` (no id): a third-party producer.
pub fn publish(url: &str, subject: &str, headers: &[(&str, &str)], body: &[u8]) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.expect("connects to NATS");
        let js = async_nats::jetstream::new(client);
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        js.publish_with_headers(subject.to_string(), map, body.to_vec().into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    });
}

/// Asserts no two messages share an id (the stream holds every change
/// once) and returns the data messages (schema messages left out).
pub fn changes_once(messages: &[BusMessage]) -> Vec<&BusMessage> {
    let mut seen = std::collections::HashMap::new();
    for m in messages {
        let id = m.header("Nats-Msg-Id").expect("every message has an id");
        if let Some(first) = seen.insert(id.to_string(), m) {
            panic!(
                "message id {id} is stored twice: sequences {} and {} on {}: {} / {}",
                first.sequence, m.sequence, m.subject, first.body, m.body
            );
        }
    }
    messages.iter().filter(|m| !m.is_schema()).collect()
}

/// Creates stream `name` taking `PREFIX.>` whose dedupe window is only
/// `window`: a restart then finds no help from JetStream's duplicate
/// check, and only DMP's own reading of the stream keeps changes single.
pub fn create_forgetful_stream(url: &str, name: &str, prefix: &str, window: std::time::Duration) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.expect("connects to NATS");
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: window,
            ..Default::default()
        })
        .await
        .expect("stream created");
    });
}
