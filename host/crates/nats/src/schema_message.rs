//! Each table's schema travels with its data, on
//! `PREFIX._schema[.SCHEMA].TABLE`: DMP's model of the table (column
//! types, nullability, primary key, indexes) and a version, a hash of it.
//! Row messages name the version they follow, so a reader of the stream
//! creates its target tables exactly and follows their changes of shape.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use async_nats::HeaderMap;
use async_nats::jetstream::stream;

use crate::bus::Bus;
use crate::config::NatsConfig;
use crate::error::{Error, Result};
use crate::headers;
use crate::publish::Outgoing;
use dmp_model::TableSchema;

/// A schema message's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaMessage {
    pub version: String,
    pub table: TableSchema,
}

/// The version of a table's shape: the first 64 bits of the SHA-256 of
/// its model, in hex. Equal shapes have equal versions.
pub fn version(schema: &TableSchema) -> String {
    let text = serde_json::to_string(schema).unwrap_or_default();
    dmp_model::encode_hex(&Sha256::digest(text.as_bytes())[..8])
}

/// The message announcing `schema` (version `version`).
pub(crate) fn outgoing(
    config: &NatsConfig,
    pipeline: &str,
    schema: &TableSchema,
    version: &str,
) -> Result<Outgoing> {
    let body = serde_json::to_vec(&SchemaMessage {
        version: version.to_string(),
        table: schema.clone(),
    })
    .map_err(|e| Error::Data(format!("table {}: its schema as JSON: {e}", schema.name)))?;
    let mut headers = HeaderMap::new();
    headers.insert(headers::PIPELINE, pipeline);
    headers.insert(headers::TABLE, schema.qualified_name().as_str());
    headers.insert(headers::SCHEMA_VERSION, version);
    Ok(Outgoing {
        subject: config.schema_subject(schema.namespace.as_deref(), &schema.name),
        id: format!("{pipeline}:schema:{}:{version}", schema.qualified_name()),
        headers,
        body: body.into(),
    })
}

/// The last schema message of a table, if any.
pub(crate) async fn latest(
    bus: &Bus,
    stream: &stream::Stream,
    config: &NatsConfig,
    namespace: Option<&str>,
    table: &str,
) -> Result<Option<SchemaMessage>> {
    let subject = config.schema_subject(namespace, table);
    let Some(message) = bus.last_raw(stream, &subject).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&message.payload)
        .map(Some)
        .map_err(|e| {
            Error::Data(format!(
                "{}: message {} on {subject} is not a DMP schema message: {e}",
                config.place, message.sequence
            ))
        })
}
