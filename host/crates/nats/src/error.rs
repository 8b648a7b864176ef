//! This connector's errors: async-nats's said once, with the kind (worth a
//! retry or not) decided here.

use async_nats::error::Error as NatsError;

dmp_contract::driver_errors! {
    async_nats::ConnectError => connect_error,
    async_nats::jetstream::context::GetStreamError => nats_error,
    async_nats::jetstream::context::CreateStreamError => nats_error,
    async_nats::jetstream::context::PublishError => publish_error,
    async_nats::jetstream::context::RequestError => nats_error,
    async_nats::jetstream::stream::LastRawMessageError => nats_error,
    async_nats::jetstream::stream::PurgeError => nats_error,
    async_nats::jetstream::stream::DeleteMessageError => nats_error,
    async_nats::jetstream::stream::ConsumerError => nats_error,
    async_nats::jetstream::consumer::StreamError => nats_error,
    async_nats::jetstream::consumer::pull::MessagesError => nats_error,
    async_nats::jetstream::context::ConsumerInfoError => nats_error,
    async_nats::jetstream::context::KeyValueError => nats_error,
    async_nats::jetstream::kv::PutError => nats_error,
    async_nats::jetstream::kv::EntryError => nats_error,
    async_nats::jetstream::kv::WatchError => nats_error,
    async_nats::jetstream::kv::WatcherError => nats_error,
}

/// A refused login or a TLS mismatch is a setting to change; the rest of
/// connecting (refused, timed out, DNS) may pass.
fn connect_error(e: async_nats::ConnectError) -> DriverError {
    use async_nats::ConnectErrorKind as K;
    let kind = match e.kind() {
        K::Authentication | K::AuthorizationViolation | K::ServerParse | K::Tls => {
            ErrorKind::Config
        }
        _ => ErrorKind::Transient,
    };
    DriverError::new(kind, e.to_string(), e)
}

/// A publish that timed out or lost its connection is retried from the
/// checkpoint (the message id makes a second copy harmless). "No stream
/// found" is what the client makes of "no responders": after a server
/// restart JetStream answers only once it has loaded its streams again,
/// and the target checked that its stream exists when it connected.
fn publish_error(e: async_nats::jetstream::context::PublishError) -> DriverError {
    use async_nats::jetstream::context::PublishErrorKind as K;
    let kind = match e.kind() {
        K::TimedOut | K::BrokenPipe | K::MaxAckPending | K::StreamNotFound => ErrorKind::Transient,
        _ => ErrorKind::Fatal,
    };
    DriverError::new(kind, e.to_string(), e)
}

/// Requests to JetStream: a timeout or a lost connection may pass; what
/// the server refuses does not.
fn nats_error<K>(e: NatsError<K>) -> DriverError
where
    K: Clone + std::fmt::Debug + std::fmt::Display + PartialEq + Send + Sync + 'static,
{
    let said = e.to_string();
    let lowered = said.to_ascii_lowercase();
    let kind = if lowered.contains("timed out")
        || lowered.contains("timeout")
        || lowered.contains("request error")
        // JetStream not ready yet (a server restarting).
        || lowered.contains("no responders")
    {
        ErrorKind::Transient
    } else {
        ErrorKind::Fatal
    };
    DriverError::new(kind, said, e)
}
