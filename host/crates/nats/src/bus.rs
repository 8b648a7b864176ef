//! The JetStream side: a connection with the URL's credentials, the stream
//! (created when missing with the URL's limits, or an existing one checked
//! to cover our subjects), publishing with message ids, and the last
//! message of a subject (where a restarted target stands).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use secrecy::ExposeSecret;

use crate::config::NatsConfig;
use crate::error::{Contextual, Error, Result, ResultExt};

/// JetStream drops a second message with the same id within this window;
/// past it, a restarted target skips what the stream holds by reading it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

pub struct Bus {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    config: NatsConfig,
}

/// The last message of a subject: its stream sequence and message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastMessage {
    pub sequence: u64,
    pub id: Option<String>,
}

impl Bus {
    /// Connects to the URL's server.
    pub async fn connect(config: &NatsConfig) -> Result<Bus> {
        let place = || format!("{}: connecting to NATS {}", config.place, config.server);
        let mut options = async_nats::ConnectOptions::new()
            .name("dmp")
            .require_tls(config.tls)
            .connection_timeout(Duration::from_secs(10));
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.expose_secret().to_string());
        }
        if let Some(token) = &config.token {
            options = options.token(token.expose_secret().to_string());
        }
        if let Some(creds) = &config.creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| Error::Io {
                    context: format!(
                        "{}: reading the credentials file {}",
                        config.place,
                        creds.display()
                    ),
                    source: e,
                })?;
        }
        let client = options
            .connect(config.server.as_str())
            .await
            .context(place)?;
        Ok(Bus {
            jetstream: jetstream::new(client.clone()),
            client,
            config: config.clone(),
        })
    }

    /// The URL's stream: created when missing (file storage, the URL's
    /// replicas and limits), else checked to take every subject of ours.
    pub async fn stream(&self) -> Result<stream::Stream> {
        let name = &self.config.stream;
        let ctx = || format!("{}: JetStream stream {name}", self.config.place);
        match self.jetstream.get_stream(name).await {
            Ok(mut stream) => {
                let info = stream.info().await.context(ctx)?;
                let ours = self.config.subjects();
                if !info.config.subjects.iter().any(|s| covers(s, &ours)) {
                    return Err(Error::Config(format!(
                        "{}: stream {name} exists and takes {:?}, which do not cover {ours}; set ?subject_prefix= to one of its subjects, or name another stream",
                        self.config.place, info.config.subjects
                    )));
                }
                Ok(stream)
            }
            Err(e) if not_found(&e) => {
                let config = stream::Config {
                    name: name.clone(),
                    subjects: vec![self.config.subjects()],
                    storage: stream::StorageType::File,
                    num_replicas: self.config.replicas,
                    max_age: self.config.max_age.unwrap_or_default(),
                    max_bytes: self.config.max_bytes.unwrap_or(-1),
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                };
                tracing::info!(stream = %name, subjects = %self.config.subjects(), "creating the JetStream stream");
                self.jetstream.create_stream(config).await.context(ctx)
            }
            Err(e) => Err(e.with_context(ctx())),
        }
    }

    /// The URL's stream, which must exist (a source reads it).
    pub async fn existing_stream(&self) -> Result<stream::Stream> {
        let name = &self.config.stream;
        match self.jetstream.get_stream(name).await {
            Ok(stream) => Ok(stream),
            Err(e) if not_found(&e) => Err(Error::Config(format!(
                "{}: there is no JetStream stream {name} on {}",
                self.config.place, self.config.server
            ))),
            Err(e) => {
                Err(e.with_context(format!("{}: JetStream stream {name}", self.config.place)))
            }
        }
    }

    /// Publishes `body` on `subject` with message id `id` and waits for
    /// JetStream's acknowledgement: the message is stored (or was already,
    /// under that id). Returns whether this publish stored it.
    pub async fn publish(
        &self,
        subject: &str,
        id: &str,
        mut headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Result<bool> {
        headers.insert("Nats-Msg-Id", id);
        let ctx = || format!("{}: publishing to {subject}", self.config.place);
        let ack = self
            .jetstream
            .publish_with_headers(subject.to_string(), headers, body)
            .await
            .context(ctx)?
            .await
            .context(ctx)?;
        Ok(!ack.duplicate)
    }

    /// The last message on `subject` of `stream`, if there is one.
    pub async fn last_message(
        &self,
        stream: &stream::Stream,
        subject: &str,
    ) -> Result<Option<LastMessage>> {
        Ok(self
            .last_raw(stream, subject)
            .await?
            .map(|message| LastMessage {
                sequence: message.sequence,
                id: message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|v| v.as_str().to_string()),
            }))
    }

    /// Removes the messages at `sequences` from `stream`. Best effort: a
    /// stream that denies deletes keeps them (a consumer then sees those
    /// changes twice, the copy after the original), which is said.
    pub async fn remove(&self, stream: &stream::Stream, sequences: &[u64]) {
        for &sequence in sequences {
            if let Err(e) = stream.delete_message(sequence).await {
                tracing::warn!(
                    stream = self.config.stream,
                    sequence,
                    error = %e,
                    "a change stored out of order, and published again in order, could not be removed"
                );
            }
        }
        if !sequences.is_empty() {
            tracing::info!(
                stream = self.config.stream,
                removed = sequences.len(),
                "changes stored past a lost one removed: their copies follow it in order"
            );
        }
    }

    /// The last message on `subject` of `stream`, whole.
    pub async fn last_raw(
        &self,
        stream: &stream::Stream,
        subject: &str,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(e) if matches!(e.kind(), K::NoMessageFound) => Ok(None),
            Err(e) => Err(e.with_context(format!(
                "{}: reading the last message of {subject}",
                self.config.place
            ))),
        }
    }

    /// The stream's last sequence (0 when it is empty).
    pub async fn last_sequence(&self, stream: &stream::Stream) -> Result<u64> {
        let info = stream.get_info().await.context(|| {
            format!(
                "{}: JetStream stream {}",
                self.config.place, self.config.stream
            )
        })?;
        Ok(info.state.last_sequence)
    }
}

fn not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind as K;
    matches!(e.kind(), K::JetStream(j) if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Whether subject filter `pattern` takes every subject `ours` takes
/// (NATS wildcards: `*` one token, `>` the rest).
pub(crate) fn covers(pattern: &str, ours: &str) -> bool {
    let mut theirs = pattern.split('.');
    for token in ours.split('.') {
        match theirs.next() {
            Some(">") => return true,
            Some("*") if token != ">" => {}
            Some(t) if t == token => {}
            _ => return false,
        }
    }
    theirs.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_contract::Endpoint;

    fn config(url: &str) -> NatsConfig {
        NatsConfig::parse(&Endpoint::new(
            url,
            std::path::Path::new("."),
            "p.toml:2 target.url",
        ))
        .expect("URL")
    }

    #[tokio::test]
    async fn the_stream_is_made_once_and_a_message_id_stored_once() {
        let server = dmp_test_servers::nats();
        let c = config(&format!("{}/BUS_ONCE?subject_prefix=once", server.url()));
        let bus = Bus::connect(&c).await.expect("connects");
        let stream = bus.stream().await.expect("created");
        let subject = c.subject(Some("public"), "items");
        assert_eq!(
            bus.last_message(&stream, &subject).await.expect("reads"),
            None
        );
        let body = bytes::Bytes::from_static(b"{}");
        assert!(
            bus.publish(&subject, "p:lsn=0/1:0", HeaderMap::new(), body.clone())
                .await
                .expect("stored")
        );
        // Again, as after a lost acknowledgement: not stored twice.
        assert!(
            !bus.publish(&subject, "p:lsn=0/1:0", HeaderMap::new(), body.clone())
                .await
                .expect("acknowledged")
        );
        assert!(
            bus.publish(&subject, "p:lsn=0/1:1", HeaderMap::new(), body)
                .await
                .expect("stored")
        );
        let mut again = Bus::connect(&c)
            .await
            .expect("connects")
            .stream()
            .await
            .expect("found");
        assert_eq!(again.info().await.expect("info").state.messages, 2);
        let last = bus.last_message(&again, &subject).await.expect("reads");
        assert_eq!(
            last,
            Some(LastMessage {
                sequence: 2,
                id: Some("p:lsn=0/1:1".into())
            })
        );
    }

    #[tokio::test]
    async fn a_stream_that_does_not_take_our_subjects_is_refused_and_no_server_named() {
        let server = dmp_test_servers::nats();
        let mine = config(&format!("{}/BUS_OTHER?subject_prefix=mine", server.url()));
        Bus::connect(&mine)
            .await
            .expect("connects")
            .stream()
            .await
            .expect("created");
        let other = config(&format!("{}/BUS_OTHER?subject_prefix=theirs", server.url()));
        let err = Bus::connect(&other)
            .await
            .expect("connects")
            .stream()
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("do not cover theirs.>"), "{err}");
        let nowhere = config("nats://127.0.0.1:1/S");
        let err = Bus::connect(&nowhere).await.err().expect("refused");
        assert_eq!(err.kind(), dmp_contract::ErrorKind::Transient);
        assert!(
            err.report()
                .starts_with("p.toml:2 target.url: connecting to NATS 127.0.0.1:1"),
            "{}",
            err.report()
        );
    }

    #[test]
    fn stream_subjects_cover_ours_by_nats_wildcards() {
        assert!(covers("shop.>", "shop.>"));
        assert!(covers(">", "shop.cdc.>"));
        assert!(covers("shop.>", "shop.cdc.>"));
        assert!(!covers("shop.cdc.>", "shop.>"));
        assert!(!covers("shop.*", "shop.>"));
        assert!(!covers("other.>", "shop.>"));
        assert!(!covers("shop", "shop.>"));
    }
}
