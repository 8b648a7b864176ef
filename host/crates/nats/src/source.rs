//! NATS JetStream as a source: a stream of change events in DMP's
//! envelope (written by DMP or by any producer that follows it), with each
//! table's schema on its `_schema` subject. The stream is the change log
//! itself, snapshot rows included (as `r` events), so it is read as a
//! change stream (`mode = "cdc"`) from its first message.

use std::sync::Arc;

use async_trait::async_trait;

use futures_util::StreamExt;

use crate::bus::Bus;
use crate::changes::NatsChangeSource;
use crate::config::NatsConfig;
use crate::error::{Error, Result, ResultExt};
use crate::schema_message::SchemaMessage;
use dmp_contract::{BatchStream, ChangeOptions, ChangeSource, Endpoint, Source};
use dmp_model::{Chunk, Position, TableSchema, TableSelection};

pub struct NatsSource {
    config: NatsConfig,
}

impl NatsSource {
    pub fn open(endpoint: &Endpoint) -> Result<Self> {
        Ok(NatsSource {
            config: NatsConfig::parse(endpoint)?,
        })
    }

    fn stream_only(&self) -> Error {
        Error::Config(format!(
            "{}: a NATS stream is a change log, read from its first message as a change stream: use mode = \"cdc\" (snapshot rows are in the stream as `r` events)",
            self.config.place
        ))
    }
}

/// The latest schema of every table of the stream (the last message of
/// each `_schema` subject), sorted by name: the subjects as the stream
/// lists them, then the last message of each.
pub(crate) async fn schemas(bus: &Bus, config: &NatsConfig) -> Result<Vec<SchemaMessage>> {
    let stream = bus.existing_stream().await?;
    let filter = format!("{}._schema.>", config.subject_prefix);
    let what = || format!("{}: listing the table schemas on {filter}", config.place);
    let mut listed = stream.info_with_subjects(&filter).await.context(what)?;
    let mut subjects = Vec::new();
    while let Some(subject) = listed.next().await {
        subjects.push(subject.context(what)?.0);
    }
    let mut found = Vec::new();
    for subject in subjects {
        let Some(message) = bus.last_raw(&stream, &subject).await? else {
            continue;
        };
        let schema: SchemaMessage = serde_json::from_slice(&message.payload).map_err(|e| {
            Error::Data(format!(
                "{}: message {} on {subject} is not a DMP schema message: {e}",
                config.place, message.sequence
            ))
        })?;
        found.push(schema);
    }
    found.sort_by_key(|m| m.table.qualified_name());
    Ok(found)
}

#[async_trait]
impl Source for NatsSource {
    async fn discover(&self, selection: &TableSelection) -> Result<Vec<TableSchema>> {
        let bus = Bus::connect(&self.config).await?;
        Ok(schemas(&bus, &self.config)
            .await?
            .into_iter()
            .map(|m| m.table)
            .filter(|t| selection.matches(&t.name) || selection.matches(&t.qualified_name()))
            .collect())
    }

    async fn plan_snapshot(&self, _table: &TableSchema, _chunk_rows: u64) -> Result<Vec<Chunk>> {
        Err(self.stream_only())
    }

    fn read_chunk(
        &self,
        _table: Arc<TableSchema>,
        _chunk: Chunk,
        _resume: Position,
        _batch_rows: usize,
    ) -> BatchStream {
        BatchStream::ready(vec![Err(self.stream_only())])
    }

    fn changes(&self, options: &ChangeOptions) -> Result<Option<Arc<dyn ChangeSource>>> {
        Ok(Some(Arc::new(NatsChangeSource::new(
            self.config.clone(),
            options,
        ))))
    }
}
