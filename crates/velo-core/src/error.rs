//! The crate-wide error type of velo-core.

use crate::{metrics::MetricError, schemas::SchemaError, splitters::SplitError};

/// Any error raised by velo-core.
///
/// Each module owns a precise error enum; this one folds them together for callers that do not
/// need to tell them apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Data did not satisfy a schema, or a schema is itself invalid.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A metric could not be computed.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// A splitter could not split the data.
    #[error(transparent)]
    Split(#[from] SplitError),
}

/// The result type of velo-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
