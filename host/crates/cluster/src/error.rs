//! What can go wrong coordinating through JetStream: the server could not
//! be asked (worth a retry), or it refused what was asked (a setting).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request did not get an answer (a connection lost, a timeout).
    #[error("{what}: {reason}")]
    Unreachable { what: String, reason: String },
    /// The server refused the request.
    #[error("{what}: {reason}")]
    Refused { what: String, reason: String },
}

impl Error {
    /// Whether asking again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
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
        ]
        .iter()
        .any(|s| lowered.contains(s))
        {
            Error::Unreachable { what, reason }
        } else {
            Error::Refused { what, reason }
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
