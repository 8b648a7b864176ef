//! NATS JetStream as a target and a source: change events on a durable
//! bus, one message per row change in the Debezium envelope (or as
//! CloudEvents), with message ids derived from source positions so that a
//! stream never holds a change twice, and each table's schema on a subject
//! of its own.

mod bucket;
mod bus;
mod changes;
mod checkpoint_store;
mod config;
mod connect_schema;
mod envelope;
pub mod error;
pub mod headers;
mod message_id;
mod messages;
mod publish;
mod scan;
mod schema_message;
mod source;
mod tail;
mod target;

pub use bucket::{BucketSpec, entries as bucket_entries, key_token, open_bucket};
pub use bus::{Bus, DUPLICATE_WINDOW, LastMessage};
pub use changes::NatsChangeSource;
pub use config::{EXAMPLE, Format, NatsConfig, subject_token};
pub use envelope::{
    Envelope, EnvelopeError, Op, SourceInfo, cloud_event, decode, encode, encode_truncate, op_of,
};
pub use message_id::{keyless_message_id, message_id, row_message_id, snapshot_message_id};
pub use schema_message::{SchemaMessage, version as schema_version};
pub use source::NatsSource;
pub use target::NatsTarget;
