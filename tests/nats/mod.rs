//! NATS JetStream as a target and a source, on a private `nats-server -js`:
//! PostgreSQL → NATS → PostgreSQL / MariaDB, change streams through the
//! bus under SIGKILLs, a server restarted under load, a third-party
//! consumer and producer.

mod bad_messages;
mod crash;
mod crash_point;
mod restart;
mod round_trip;
mod third_party;
