//! The client's error type: MLflow's own error codes are kept, never flattened into strings.

use std::time::Duration;

/// Any error the client returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status.
    #[error("mlflow {endpoint} answered {status} {error_code}: {message}")]
    Api {
        /// The endpoint called, such as `runs/create`.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, …), or `HTTP_<status>` when the body
        /// was not MLflow's JSON (a proxy page, say).
        error_code: String,
        /// MLflow's message, or the start of the body.
        message: String,
        /// How long the server asked to wait before a retry (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer (connection refused, timeout, TLS, …).
    #[error("cannot reach mlflow at {url}")]
    Transport {
        /// The URL requested (never carrying credentials).
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered 2xx with a body this client could not read.
    #[error("unexpected answer from mlflow {endpoint}: {body}")]
    Decode {
        /// The endpoint called.
        endpoint: String,
        /// The start of the body.
        body: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An argument was refused before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An artifact URI this client cannot serve (a cloud store, or a local path on a remote
    /// server).
    #[error("unsupported artifact location {uri}: {reason}")]
    UnsupportedArtifactUri {
        /// The URI.
        uri: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// An object store (an `s3://` artifact location) refused or failed a request, after its
    /// retries.
    #[error("cannot use the artifact location {uri}")]
    ObjectStore {
        /// The artifact URI.
        uri: String,
        /// The cause (`object_store`'s error, boxed).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local file could not be read or written while moving artifacts.
    #[error("cannot access {path}")]
    Io {
        /// The local path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// MLflow's error code, when the server sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Api { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.error_code() == Some("RESOURCE_DOES_NOT_EXIST") || self.status() == Some(404)
    }

    /// Whether the server said the resource exists already.
    pub fn is_already_exists(&self) -> bool {
        self.error_code() == Some("RESOURCE_ALREADY_EXISTS")
    }

    /// Whether the failure is transient: a timeout, a refused connection, or one of the statuses
    /// MLflow's own client retries (408, 429, 500, 502, 503, 504). Whether a call may be repeated
    /// is a separate question the caller answers (see [`crate::Idempotency`]).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            Self::Transport { source, .. } => {
                source.is_timeout() || source.is_connect() || source.is_request()
            }
            _ => false,
        }
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
