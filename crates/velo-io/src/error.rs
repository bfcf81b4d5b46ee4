//! The crate-wide error type of velo-io.

use crate::{configs::ConfigError, datasets::DatasetError, registries::RegistryError};

/// Any error raised by velo-io.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration could not be loaded, merged or validated.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A dataset could not be read, written, validated or generated.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The tracking store or the model registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An error from velo-core.
    #[error(transparent)]
    Core(#[from] velo_core::Error),
}

/// The result type of velo-io.
pub type Result<T, E = Error> = std::result::Result<T, E>;
