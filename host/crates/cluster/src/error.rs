//! What can go wrong coordinating through JetStream: the server could not
//! be asked (worth a retry), it refused what was asked (a setting), or the
//! engine or a connector failed doing the work (with its own kind).

use dmp_contract::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request did not get an answer (a connection lost, a timeout).
    #[error("{what}: {reason}")]
    Unreachable { what: String, reason: String },
    /// The server refused the request, or sent what DMP did not write.
    #[error("{what}: {reason}")]
    Refused { what: String, reason: String },
    #[error(transparent)]
    Engine(#[from] dmp_contract::Error),
}

impl Error {
    /// Whether asking again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Refused { .. } => false,
            Error::Engine(e) => e.kind() == ErrorKind::Transient,
        }
    }

    pub(crate) fn from_nats(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        let reason = e.to_string();
        let lowered = reason.to_ascii_lowercase();
        let what = what.into();
        if [
            "timed out",
            "timeout",
            "no responders",
            "broken pipe",
            "disconnected",
            "connection",
            // A JetStream cluster still forming, or electing a leader (a
            // stream without a leader yet answers a publish with no one,
            // which the client reports as no stream found).
            "no stream found",
            "no suitable peers",
            "insufficient resources",
            "temporarily unavailable",
        ]
        .iter()
        .any(|s| lowered.contains(s))
        {
            Error::Unreachable { what, reason }
        } else {
            Error::Refused { what, reason }
        }
    }

    pub(crate) fn refused(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Refused {
            what: what.into(),
            reason: e.to_string(),
        }
    }
}

impl From<Error> for dmp_contract::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Engine(e) => e,
            Error::Unreachable { .. } => dmp_contract::Error::layer(ErrorKind::Transient, e),
            Error::Refused { .. } => dmp_contract::Error::layer(ErrorKind::Fatal, e),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Does `step` until it succeeds, again after each transient failure (a
/// JetStream cluster electing a leader answers nothing for seconds), for at
/// most `limit`; then, or on any other failure, gives its error.
pub(crate) async fn retrying<T, F, Fut>(
    what: &str,
    limit: std::time::Duration,
    mut step: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        match step().await {
            Err(e) if e.is_transient() && started.elapsed() < limit => {
                tracing::warn!(error = %e, "{what}: trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(3));
            }
            outcome => return outcome,
        }
    }
}
