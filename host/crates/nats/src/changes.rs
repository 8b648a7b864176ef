//! A NATS stream read as a change stream: a durable pull consumer of the
//! pipeline delivers the messages after the target's checkpoint (a stream
//! sequence, `seq=N`); each message is one source transaction of one
//! change. Acknowledgements go only once the target has committed
//! (`ChangeFeed::confirmed`); a message redelivered at or below the
//! committed sequence is acknowledged and skipped. Schema messages turn
//! into changes of shape, and a message that does not decode into a
//! refused row naming its sequence and subject.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};

use crate::bus::Bus;
use crate::checkpoint_store::bucket_name;
use crate::config::NatsConfig;
use crate::envelope::decode;
use crate::error::{Error, Result, ResultExt};
use crate::schema_message::SchemaMessage;
use dmp_contract::{
    ChangeFeed, ChangeOptions, ChangeSource, SchemaChange, SnapshotStart, StreamEvent, StreamLag,
    TableEvent,
};
use dmp_model::{Position, Reject, RejectStage, TableSchema, TableSelection};

/// Events the reader may hold ready ahead of the applier.
const READ_AHEAD: usize = 4096;
/// Messages delivered and not yet acknowledged at most.
const MAX_ACK_PENDING: i64 = 20_000;
/// How long the server waits for an acknowledgement before delivering a
/// message again (the applier acknowledges after each commit).
const ACK_WAIT: Duration = Duration::from_secs(60);

pub struct NatsChangeSource {
    config: NatsConfig,
    /// The pipeline's durable consumer.
    consumer: String,
    selection: TableSelection,
}

impl NatsChangeSource {
    pub(crate) fn new(config: NatsConfig, options: &ChangeOptions) -> Self {
        NatsChangeSource {
            consumer: bucket_name(&options.pipeline),
            selection: options.selection.clone(),
            config,
        }
    }

    fn not_snapshot(&self) -> Error {
        Error::Config(format!(
            "{}: a NATS stream is read as a change stream from its first message: use mode = \"cdc\"",
            self.config.place
        ))
    }

    /// The pipeline's consumer made anew to deliver from after `after`:
    /// the target's checkpoint, not the consumer's own state, says where
    /// reading resumes.
    async fn consumer(
        &self,
        stream: &stream::Stream,
        after: u64,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>> {
        let ctx = || {
            format!(
                "{}: consumer {} of stream {}",
                self.config.place, self.consumer, self.config.stream
            )
        };
        // Absent is fine: nothing to delete.
        if stream.consumer_info(&self.consumer).await.is_ok() {
            stream.delete_consumer(&self.consumer).await.context(ctx)?;
        }
        let deliver_policy = if after == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        };
        stream
            .create_consumer(pull::Config {
                durable_name: Some(self.consumer.clone()),
                description: Some("DMP change stream".to_string()),
                filter_subject: self.config.subjects(),
                deliver_policy,
                ack_policy: AckPolicy::All,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            })
            .await
            .context(ctx)
    }
}

/// `seq=N` as N.
pub(crate) fn sequence_of(position: &Position) -> Option<u64> {
    match position {
        Position::Log { log, .. } => log.strip_prefix("seq=")?.parse().ok(),
        _ => None,
    }
}

fn at(sequence: u64) -> Position {
    Position::Log {
        log: format!("seq={sequence}"),
        skip: 0,
    }
}

#[async_trait]
impl ChangeSource for NatsChangeSource {
    async fn begin_snapshot(
        &self,
        _tables: &[Arc<TableSchema>],
        _fresh: bool,
    ) -> Result<SnapshotStart> {
        Err(self.not_snapshot())
    }

    /// The stream's first message: a stream holds its snapshot rows.
    async fn current_position(&self, _tables: &[Arc<TableSchema>]) -> Result<Position> {
        Ok(at(0))
    }

    async fn position_from_snapshot(&self, _snapshot_position: &str) -> Result<Option<Position>> {
        Ok(None)
    }

    async fn open(&self, tables: Vec<Arc<TableSchema>>, from: Position) -> Result<ChangeFeed> {
        let after = sequence_of(&from).ok_or_else(|| {
            Error::Data(format!(
                "{}: {from:?} is not a NATS stream position (seq=N)",
                self.config.place
            ))
        })?;
        let bus = Bus::connect(&self.config).await?;
        let stream = bus.existing_stream().await?;
        // Subjects of tables outside the selection are passed over; others
        // that no schema message describes are refused.
        let described = crate::source::schemas(&bus, &self.config)
            .await?
            .iter()
            .map(|m| {
                self.config
                    .subject(m.table.namespace.as_deref(), &m.table.name)
            })
            .collect();
        let consumer = self.consumer(&stream, after).await?;
        let ctx = || {
            format!(
                "{}: reading stream {}",
                self.config.place, self.config.stream
            )
        };
        let messages = consumer.messages().await.context(ctx)?;
        let (events, receiver) = mpsc::channel(READ_AHEAD);
        let (confirmed, confirmations) = watch::channel(None);
        let reader = Reader {
            config: self.config.clone(),
            selection: self.selection.clone(),
            subjects: HashMap::new(),
            described,
            tables: Vec::new(),
            after,
            unacked: VecDeque::new(),
        };
        let reader = reader.with_tables(tables);
        Ok(ChangeFeed::spawn(
            receiver,
            confirmed,
            reader.run(bus, messages, events, confirmations),
        ))
    }

    async fn lag(&self) -> Result<StreamLag> {
        let bus = Bus::connect(&self.config).await?;
        let stream = bus.existing_stream().await?;
        let state = stream
            .get_info()
            .await
            .context(|| format!("{}: stream {}", self.config.place, self.config.stream))?
            .state;
        let info = stream
            .consumer_info(&self.consumer)
            .await
            .context(|| format!("{}: consumer {}", self.config.place, self.consumer))?;
        Ok(StreamLag {
            retained_bytes: None,
            current: Some(format!(
                "seq={} (stream {}: {} messages, {} bytes)",
                state.last_sequence, self.config.stream, state.messages, state.bytes
            )),
            confirmed: Some(format!(
                "seq={} (pending {}, awaiting ack {}, redelivered {})",
                info.ack_floor.stream_sequence,
                info.num_pending,
                info.num_ack_pending,
                info.num_redelivered
            )),
        })
    }

    /// The stream carries snapshot rows as `r` events.
    fn holds_everything(&self) -> bool {
        true
    }

    async fn drop_stream(&self) -> Result<()> {
        let bus = Bus::connect(&self.config).await?;
        let stream = bus.existing_stream().await?;
        if stream.consumer_info(&self.consumer).await.is_ok() {
            stream.delete_consumer(&self.consumer).await.context(|| {
                format!("{}: deleting consumer {}", self.config.place, self.consumer)
            })?;
        }
        Ok(())
    }
}

/// The reading task's state.
struct Reader {
    config: NatsConfig,
    selection: TableSelection,
    /// Row subject → table index.
    subjects: HashMap<String, usize>,
    /// Row subjects some schema message describes.
    described: HashSet<String>,
    /// The tables as the stream knows them now (index = the feed's).
    tables: Vec<Arc<TableSchema>>,
    /// The target's checkpoint: messages at or before it are skipped.
    after: u64,
    /// Delivered messages not yet acknowledged, in order.
    unacked: VecDeque<(u64, jetstream::Message)>,
}

impl Reader {
    fn with_tables(mut self, tables: Vec<Arc<TableSchema>>) -> Self {
        for table in tables {
            self.add(table);
        }
        self
    }

    fn add(&mut self, table: Arc<TableSchema>) -> usize {
        let index = self.tables.len();
        self.subjects.insert(
            self.config.subject(table.namespace.as_deref(), &table.name),
            index,
        );
        self.tables.push(table);
        index
    }

    async fn run(
        mut self,
        // Held for the reader's life: its connection ends with it.
        _bus: Bus,
        mut messages: pull::Stream,
        events: mpsc::Sender<Result<StreamEvent>>,
        mut confirmations: watch::Receiver<Option<Position>>,
    ) {
        loop {
            tokio::select! {
                changed = confirmations.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let confirmed = confirmations.borrow_and_update().clone();
                    self.acknowledge(confirmed.as_ref().and_then(sequence_of)).await;
                }
                next = messages.next() => {
                    let sent = match next {
                        None => events.send(Err(Error::Data(format!("{}: the stream's consumer ended", self.config.place)))).await,
                        Some(Err(e)) => {
                            let e = crate::error::Contextual::with_context(e, format!("{}: reading stream {}", self.config.place, self.config.stream));
                            events.send(Err(e)).await
                        }
                        Some(Ok(message)) => self.receive(message, &events).await,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                () = events.closed() => break,
            }
        }
        // The feed is closed: acknowledge what the target holds.
        let confirmed = confirmations.borrow().clone();
        self.acknowledge(confirmed.as_ref().and_then(sequence_of))
            .await;
    }

    /// Acknowledges every delivered message up to `sequence` (one
    /// acknowledgement: the consumer acknowledges all before it).
    async fn acknowledge(&mut self, sequence: Option<u64>) {
        let Some(sequence) = sequence else { return };
        let mut last = None;
        while self.unacked.front().is_some_and(|(s, _)| *s <= sequence) {
            last = self.unacked.pop_front();
        }
        if let Some((sequence, message)) = last
            && let Err(e) = message.ack().await
        {
            // Redelivered later, and skipped then: the checkpoint holds.
            tracing::debug!(sequence, error = %e, "acknowledgement not sent");
        }
    }

    /// Turns one message into events.
    async fn receive(
        &mut self,
        message: jetstream::Message,
        events: &mpsc::Sender<Result<StreamEvent>>,
    ) -> std::result::Result<(), mpsc::error::SendError<Result<StreamEvent>>> {
        let sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                return events
                    .send(Err(Error::Data(format!(
                        "{}: a message without its place: {e}",
                        self.config.place
                    ))))
                    .await;
            }
        };
        if sequence <= self.after {
            // Applied before a restart: acknowledged at once.
            if let Err(e) = message.ack().await {
                tracing::debug!(sequence, error = %e, "acknowledgement not sent");
            }
            return Ok(());
        }
        let subject = message.subject.to_string();
        let schema_prefix = format!("{}._schema.", self.config.subject_prefix);
        let decoded = if subject.starts_with(&schema_prefix) {
            self.schema_events(&message, sequence)
        } else {
            self.change_events(&message, &subject, sequence)
        };
        self.unacked.push_back((sequence, message));
        for event in decoded {
            events.send(Ok(event)).await?;
        }
        Ok(())
    }

    /// A schema message: a change of shape (or a new table of the
    /// selection), then the stream's position past it.
    fn schema_events(&mut self, message: &jetstream::Message, sequence: u64) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        match serde_json::from_slice::<SchemaMessage>(&message.payload) {
            Ok(schema) => {
                let table = Arc::new(schema.table);
                let subject = self.config.subject(table.namespace.as_deref(), &table.name);
                self.described.insert(subject.clone());
                match self.subjects.get(&subject).copied() {
                    Some(index) if *self.tables[index] != *table => {
                        let dropped = self.tables[index]
                            .columns
                            .iter()
                            .filter(|c| table.column_index(&c.name).is_none())
                            .map(|c| c.name.clone())
                            .collect();
                        self.tables[index] = table.clone();
                        out.push(StreamEvent::Schema {
                            table: index,
                            change: SchemaChange {
                                schema: table,
                                event: TableEvent::Altered,
                                statement: None,
                                renamed: Vec::new(),
                                dropped,
                            },
                        });
                    }
                    Some(_) => {}
                    None if self.selection.matches(&table.name)
                        || self.selection.matches(&table.qualified_name()) =>
                    {
                        let index = self.add(table.clone());
                        out.push(StreamEvent::Schema {
                            table: index,
                            change: SchemaChange {
                                schema: table,
                                event: TableEvent::Created,
                                statement: None,
                                renamed: Vec::new(),
                                dropped: Vec::new(),
                            },
                        });
                    }
                    None => {}
                }
            }
            Err(e) => {
                tracing::warn!(sequence, subject = %message.subject, error = %e, "not a DMP schema message; skipped")
            }
        }
        out.push(StreamEvent::Heartbeat {
            position: at(sequence),
        });
        out
    }

    /// A change event: one transaction of one change (or a refused row).
    fn change_events(
        &mut self,
        message: &jetstream::Message,
        subject: &str,
        sequence: u64,
    ) -> Vec<StreamEvent> {
        let Some(&index) = self.subjects.get(subject) else {
            if self.described.contains(subject) {
                // A table outside the selection.
                return vec![StreamEvent::Heartbeat {
                    position: at(sequence),
                }];
            }
            return vec![
                StreamEvent::Begin {
                    log: format!("seq={}", sequence - 1),
                },
                StreamEvent::Unrouted {
                    table: subject.to_string(),
                    reject: Reject {
                        stage: RejectStage::Source,
                        error: format!(
                            "{}: message {sequence} on {subject}: no schema message describes this subject's table",
                            self.config.place
                        ),
                        row: serde_json::Value::String(
                            dmp_contract::excerpt(dmp_contract::Head::Text(&message.payload)).0,
                        ),
                        position: at(sequence),
                    },
                },
                StreamEvent::Commit {
                    position: at(sequence),
                    commit_time: None,
                },
            ];
        };
        let table = &self.tables[index];
        let mut out = vec![StreamEvent::Begin {
            log: format!("seq={}", sequence - 1),
        }];
        let mut commit_time = None;
        match decode(&message.payload, table) {
            Ok(envelope) => {
                commit_time = envelope.source_ts_ms.map(|ms| ms * 1000);
                match envelope.change() {
                    Some(change) => out.push(StreamEvent::Change {
                        table: index,
                        change,
                    }),
                    None => out.push(StreamEvent::Truncate {
                        tables: vec![index],
                    }),
                }
            }
            Err(e) => out.push(StreamEvent::Reject {
                table: index,
                reject: Reject {
                    stage: RejectStage::Source,
                    error: format!(
                        "{}: message {sequence} on {subject}: {e}",
                        self.config.place
                    ),
                    row: serde_json::Value::String(
                        dmp_contract::excerpt(dmp_contract::Head::Text(&message.payload)).0,
                    ),
                    position: at(sequence),
                },
            }),
        }
        out.push(StreamEvent::Commit {
            position: at(sequence),
            commit_time,
        });
        out
    }
}
