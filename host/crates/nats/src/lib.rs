//! NATS JetStream as a target and a source (issue 16, under way): change
//! events on a durable bus, one message per row change in the Debezium
//! envelope, with message ids derived from source positions so that a
//! stream never holds a change twice.
//!
//! Built so far: the URL (`config.rs`), the envelope (`envelope.rs`), the
//! message ids (`message_id.rs`) and the JetStream side (`bus.rs`: the
//! stream, publishing with ids, the last message of a subject). The target
//! and the source, and the registry entry, come next.

mod bus;
mod config;
mod envelope;
pub mod error;
mod message_id;

pub use bus::{Bus, DUPLICATE_WINDOW, LastMessage};
pub use config::{EXAMPLE, Format, NatsConfig, subject_token};
pub use envelope::{Envelope, EnvelopeError, Op, SourceInfo, decode, encode, encode_truncate};
pub use message_id::{message_id, snapshot_message_id};
