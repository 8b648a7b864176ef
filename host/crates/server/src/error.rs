//! The service's errors and how each reaches an HTTP client: always as
//! JSON `{"error": …}`, with secrets masked, the status telling the kind.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dmp_contract::{ErrorKind, mask_secrets};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that are not (or no longer) valid.
    #[error("not signed in: send `Authorization: Bearer TOKEN` or sign in")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The service's own store failed.
    #[error("service store: {what}: {source}")]
    Store {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// An error of the engine, a connector, a plugin or the state store.
    #[error("{}", .0.report())]
    Engine(#[from] dmp_contract::Error),
    /// The service's home or key cannot be used.
    #[error("{0}")]
    Home(String),
}

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

impl ServeError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServeError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::Conflict(_) => StatusCode::CONFLICT,
            ServeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::Engine(e) => match e.kind() {
                ErrorKind::Config | ErrorKind::Data | ErrorKind::SourceChanged => {
                    StatusCode::BAD_REQUEST
                }
                // A database that cannot be reached behind this service.
                ErrorKind::Transient => StatusCode::BAD_GATEWAY,
                ErrorKind::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Deposed => StatusCode::CONFLICT,
                ErrorKind::Fatal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ServeError::Store { .. } | ServeError::Home(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text a client reads: masked, as it may quote a URL.
    pub fn message(&self) -> String {
        mask_secrets(&self.to_string())
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self.message(), "request failed");
        }
        (status, Json(serde_json::json!({ "error": self.message() }))).into_response()
    }
}

/// A conflict request the engine refused: the status says why (the
/// pipeline is no two-way sync, no such entry, nothing waits to be
/// resolved); a side that failed keeps its error's kind.
impl From<dmp_engine::ConflictError> for ServeError {
    fn from(e: dmp_engine::ConflictError) -> Self {
        use dmp_engine::ConflictError as C;
        match e {
            C::Engine(inner) => ServeError::Engine(inner),
            C::NotTwoWay { .. } => ServeError::BadRequest(e.to_string()),
            C::NoEntry { .. } => ServeError::NotFound(e.to_string()),
            C::NotParked { .. } | C::Resolved { .. } => ServeError::Conflict(e.to_string()),
        }
    }
}

/// `context` on the service store's results.
pub(crate) trait StoreContext<T> {
    fn store(self, what: &str) -> Result<T>;
}

impl<T> StoreContext<T> for std::result::Result<T, rusqlite::Error> {
    fn store(self, what: &str) -> Result<T> {
        self.map_err(|source| ServeError::Store {
            what: what.to_string(),
            source,
        })
    }
}

/// For the command line: the error with the kind that decides its exit
/// code (a setting or a request is wrong: configuration; the store: fatal).
impl From<ServeError> for dmp_contract::Error {
    fn from(e: ServeError) -> Self {
        let kind = match e {
            ServeError::Engine(inner) => return inner,
            ServeError::Store { .. } => ErrorKind::Fatal,
            _ => ErrorKind::Config,
        };
        dmp_contract::Error::Layer {
            kind,
            source: Box::new(e),
        }
    }
}
