//! The error type of jobs.

use velo_io::{datasets::DatasetError, registries::RegistryError};

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A dataset could not be read, validated or written.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The tracking store or the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A model could not be fitted, used, saved or loaded.
    #[error("model: {0}")]
    Model(#[from] velo_core::models::ModelError),
    /// A metric could not be computed.
    #[error(transparent)]
    Metric(#[from] velo_core::metrics::MetricError),
    /// The data cannot be split as configured.
    #[error(transparent)]
    Split(#[from] velo_core::splitters::SplitError),
    /// The configuration and the data disagree (a missing column, an empty dataset, …).
    #[error("{0}")]
    Invalid(String),
    /// A file around the job (a temporary model directory) could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
