//! Tracking and model registry: one interface, two backends.
//!
//! - [`FileStore`], the embedded default (`tracking_uri: ./mlruns`): a local store laid out as
//!   MLflow's file store, so that MLflow's own client and UI read it (MLflow 3 opens a file store
//!   only with `MLFLOW_ALLOW_FILE_STORE=true`) and `mlflow migrate-filestore` moves it into a
//!   server's database. Every write lands by an atomic rename, so a killed process never leaves
//!   a half-written record visible.
//! - [`MlflowServer`], a real MLflow server (`tracking_uri: http://…`) through velo-mlflow.
//!
//! Both implement [`Tracking`] (experiments, runs, metrics, params, tags, dataset inputs,
//! artifacts) and [`ModelRegistry`] (registered models, versions, aliases, tags). Records are
//! velo-mlflow's wire types, so that what a job logs reads the same from either backend.
//! [`mlmodel`] writes MLflow model directories; [`ModelUri`] parses `models:/NAME@ALIAS` and
//! `models:/NAME/VERSION`.

use std::{fmt, path::Path, str::FromStr, sync::Arc};

pub use velo_mlflow::{
    Alias, Dataset, DatasetInput, Experiment, FileInfo, Metric, ModelVersion, NewRun, Param,
    RegisteredModel, Run, RunData, RunInfo, RunInputs, RunStatus, Tag,
};

mod file_store;
pub mod history;
pub mod mlmodel;
pub mod sandbox;
mod server;

pub use file_store::FileStore;
pub use server::MlflowServer;

/// An error of the tracking store or model registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The MLflow server refused a call or could not be reached.
    #[error(transparent)]
    Mlflow(#[from] velo_mlflow::Error),
    /// A file of the embedded store could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A store file holds something unreadable.
    #[error("corrupt store file {path}: {message}")]
    Corrupt {
        /// The path.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A run, experiment, model, version or alias does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What was looked for, such as `model version bikes/3`.
        what: String,
    },
    /// An argument was refused before anything was written.
    #[error("{0}")]
    InvalidArgument(String),
    /// The alias log could not be written or read (see [`history`]).
    #[error("{0}")]
    AliasLog(String),
    /// A registered model version could not be read back.
    #[error("model version {name}/{version}")]
    Model {
        /// The registered model.
        name: String,
        /// The version.
        version: String,
        /// What went wrong.
        #[source]
        source: Box<RegistryError>,
    },
}

impl RegistryError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the error says something does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound { .. } => true,
            Self::Mlflow(error) => error.is_not_found(),
            Self::Model { source, .. } => source.is_not_found(),
            _ => false,
        }
    }
}

impl From<crate::files::FileError> for RegistryError {
    fn from(error: crate::files::FileError) -> Self {
        Self::Io {
            action: error.action,
            path: error.path,
            source: error.source,
        }
    }
}

/// The result type of this module.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Experiments and runs: what a job logs while it works.
pub trait Tracking: fmt::Debug + Send + Sync {
    /// Where the store is (a directory or a server URL), for messages.
    fn location(&self) -> String;

    /// The id of the experiment called `name`, created when missing.
    fn get_or_create_experiment(&self, name: &str) -> Result<String>;

    /// Opens a run.
    fn create_run(&self, experiment_id: &str, new: NewRun) -> Result<RunInfo>;

    /// Logs metrics, params and tags (any number; backends split them as they must). A param
    /// already set to another value is refused, as in MLflow.
    fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()>;

    /// Links datasets to the run (lineage).
    fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()>;

    /// Writes one artifact file at `path` (relative, `/`-separated) under the run's artifacts.
    fn log_artifact(&self, run_id: &str, path: &str, bytes: &[u8]) -> Result<()>;

    /// Copies a local directory, recursively, to the artifact directory `path`. On the embedded
    /// store the directory appears at once, complete, or not at all.
    fn log_artifact_dir(&self, run_id: &str, path: &str, local: &Path) -> Result<()>;

    /// Logs the files of a directory given in memory (`(relative name, bytes)`) as the
    /// directory `path` under the run's artifacts, appearing whole where the backend can.
    /// The default writes them into a temporary directory for
    /// [`log_artifact_dir`](Self::log_artifact_dir); velo's backends write them directly.
    fn log_artifact_files(&self, run_id: &str, path: &str, files: &[(&str, &[u8])]) -> Result<()> {
        let local = tempfile::tempdir().map_err(|e| {
            RegistryError::io("create a temporary directory in", &std::env::temp_dir(), e)
        })?;
        for (name, bytes) in files {
            let segments = velo_mlflow::check_relative_path(name)?;
            let file = segments
                .iter()
                .fold(local.path().to_path_buf(), |path, segment| {
                    path.join(segment)
                });
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| RegistryError::io("create", parent, e))?;
            }
            std::fs::write(&file, bytes).map_err(|e| RegistryError::io("write", &file, e))?;
        }
        self.log_artifact_dir(run_id, path, local.path())
    }

    /// The files and directories directly under the artifact directory `path`.
    fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>>;

    /// The bytes of the artifact file `path`.
    fn read_artifact(&self, run_id: &str, path: &str) -> Result<Vec<u8>>;

    /// Records a model logged under the run (`mlflow.log-model.history`), from its MLmodel as JSON.
    fn record_logged_model(&self, run_id: &str, mlmodel: &serde_json::Value) -> Result<()>;

    /// Ends the run with a terminal status.
    fn end_run(&self, run_id: &str, status: RunStatus) -> Result<()>;

    /// A run with its latest metrics, params, tags and datasets.
    fn get_run(&self, run_id: &str) -> Result<Run>;

    /// Every value logged for one metric.
    fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>>;

    /// The runs of an experiment, newest first.
    fn list_runs(&self, experiment_id: &str) -> Result<Vec<Run>>;
}

/// Registered models, versions and aliases.
pub trait ModelRegistry: fmt::Debug + Send + Sync {
    /// Where the registry is, for messages.
    fn location(&self) -> String;

    /// Registers a new version of `name` (creating the model if needed) from model files at
    /// `source` produced by `run_id`. Concurrent registrations get distinct, consecutive numbers.
    fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion>;

    /// A version with its aliases, if it exists.
    fn get_model_version(&self, name: &str, version: &str) -> Result<Option<ModelVersion>>;

    /// The newest version, if any.
    fn latest_model_version(&self, name: &str) -> Result<Option<ModelVersion>>;

    /// Every version, oldest first.
    fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>>;

    /// The names of every registered model, sorted.
    fn list_registered_models(&self) -> Result<Vec<String>>;

    /// A registered model, if it exists.
    fn get_registered_model(&self, name: &str) -> Result<Option<RegisteredModel>>;

    /// Points an alias at an existing version.
    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()>;

    /// Removes an alias (no error when it is absent).
    fn delete_alias(&self, name: &str, alias: &str) -> Result<()>;

    /// The version an alias points at, if the alias exists.
    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>>;

    /// Sets a tag of a registered model (creating nothing: the model must exist).
    fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()>;

    /// Sets a tag of a version.
    fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()>;

    /// Copies the files of a version (its `source`) into the local directory `into`.
    fn download_model(&self, version: &ModelVersion, into: &Path) -> Result<()>;

    /// Reads one file of a version's model directory (`relative`, `/`-separated, checked to
    /// stay inside it). The default downloads the directory into a temporary one; velo's
    /// backends read the one file directly.
    fn read_model_file(&self, version: &ModelVersion, relative: &str) -> Result<Vec<u8>> {
        let segments = velo_mlflow::check_relative_path(relative)?;
        let local = tempfile::tempdir().map_err(|e| {
            RegistryError::io("create a temporary directory in", &std::env::temp_dir(), e)
        })?;
        self.download_model(version, local.path())?;
        let file = segments
            .iter()
            .fold(local.path().to_path_buf(), |path, segment| {
                path.join(segment)
            });
        std::fs::read(&file).map_err(|e| RegistryError::io("read", Path::new(relative), e))
    }
}

/// A reference to a registered model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/NAME@ALIAS`.
    Alias {
        /// The registered model.
        name: String,
        /// The alias.
        alias: String,
    },
    /// `models:/NAME/VERSION`.
    Version {
        /// The registered model.
        name: String,
        /// The version number.
        version: u64,
    },
    /// `models:/NAME/latest`.
    Latest {
        /// The registered model.
        name: String,
    },
}

impl ModelUri {
    /// The registered model's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Alias { name, .. } | Self::Version { name, .. } | Self::Latest { name } => name,
        }
    }

    /// The version this URI names in `registry`.
    pub fn resolve(&self, registry: &dyn ModelRegistry) -> Result<ModelVersion> {
        let found = match self {
            Self::Alias { name, alias } => registry.get_model_version_by_alias(name, alias)?,
            Self::Version { name, version } => {
                registry.get_model_version(name, &version.to_string())?
            }
            Self::Latest { name } => registry.latest_model_version(name)?,
        };
        found.ok_or_else(|| RegistryError::NotFound {
            what: format!("{self} in {}", registry.location()),
        })
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alias { name, alias } => write!(formatter, "models:/{name}@{alias}"),
            Self::Version { name, version } => write!(formatter, "models:/{name}/{version}"),
            Self::Latest { name } => write!(formatter, "models:/{name}/latest"),
        }
    }
}

impl FromStr for ModelUri {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            RegistryError::InvalidArgument(format!(
                "model uri {text:?}: expected models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME/latest"
            ))
        };
        let rest = text.strip_prefix("models:/").ok_or_else(invalid)?;
        if let Some((name, alias)) = rest.split_once('@') {
            if name.is_empty() || name.contains('/') {
                return Err(invalid());
            }
            velo_mlflow::check_alias(alias).map_err(|_| invalid())?;
            return Ok(Self::Alias {
                name: name.to_owned(),
                alias: alias.to_owned(),
            });
        }
        let (name, version) = rest.rsplit_once('/').ok_or_else(invalid)?;
        if name.is_empty() || name.contains('/') {
            return Err(invalid());
        }
        if version.eq_ignore_ascii_case("latest") {
            return Ok(Self::Latest {
                name: name.to_owned(),
            });
        }
        let version = version
            .parse::<u64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(invalid)?;
        Ok(Self::Version {
            name: name.to_owned(),
            version,
        })
    }
}

/// Both sides of a store, as a job receives them.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Where runs are logged.
    pub tracking: Arc<dyn Tracking>,
    /// Where models are registered.
    pub registry: Arc<dyn ModelRegistry>,
}

/// Opens the store at `uri`: an `http(s)://` MLflow server, or else a local directory (a
/// `file://` URI or a path) holding the embedded store, created when missing.
pub fn open(uri: &str) -> Result<Stores> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let server = Arc::new(MlflowServer::connect(uri)?);
        return Ok(Stores {
            tracking: server.clone(),
            registry: server,
        });
    }
    let store = Arc::new(FileStore::open(local_path(uri)?)?);
    Ok(Stores {
        tracking: store.clone(),
        registry: store,
    })
}

/// Opens the store at `uri` for reading only (a scoring server): an MLflow server as
/// [`open`] does, or an existing embedded store, with nothing created or written
/// ([`FileStore::open_existing`]).
///
/// # Errors
/// An unreachable server's URI, or a local path that is not a directory.
pub fn open_existing(uri: &str) -> Result<Stores> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return open(uri);
    }
    let store = Arc::new(FileStore::open_existing(local_path(uri)?)?);
    Ok(Stores {
        tracking: store.clone(),
        registry: store,
    })
}

/// Opens tracking at `tracking_uri` and the registry at `registry_uri` (each as [`open`]).
pub fn open_pair(tracking_uri: &str, registry_uri: &str) -> Result<Stores> {
    let tracking = open(tracking_uri)?;
    if registry_uri == tracking_uri {
        return Ok(tracking);
    }
    Ok(Stores {
        tracking: tracking.tracking,
        registry: open(registry_uri)?.registry,
    })
}

/// The local path of a `file://` URI or a plain path.
fn local_path(uri: &str) -> Result<std::path::PathBuf> {
    if let Some(rest) = uri.strip_prefix("file://") {
        let url = url::Url::parse(&format!("file://{rest}"))
            .map_err(|error| RegistryError::InvalidArgument(format!("uri {uri:?}: {error}")))?;
        return url.to_file_path().map_err(|()| {
            RegistryError::InvalidArgument(format!("uri {uri:?} is not a local path"))
        });
    }
    if uri.contains("://") || uri.starts_with("databricks") {
        return Err(RegistryError::InvalidArgument(format!(
            "tracking uri {uri:?}: velo supports a local directory or an http(s):// MLflow server"
        )));
    }
    Ok(std::path::PathBuf::from(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_uris_parse_and_print_back() {
        for text in [
            "models:/bikes@Champion",
            "models:/bikes/3",
            "models:/bikes/latest",
        ] {
            let uri: ModelUri = text.parse().unwrap();
            assert_eq!(uri.to_string(), text);
            assert_eq!(uri.name(), "bikes");
        }
        for bad in [
            "bikes",
            "models:/",
            "models:/bikes",
            "models:/bikes/0",
            "models:/bikes/x",
            "models:/@Champion",
            "models:/bikes@",
            "models:/a/b/3",
            "runs:/abc/model",
        ] {
            let error = bad.parse::<ModelUri>().unwrap_err();
            assert!(
                error.to_string().contains("models:/NAME@ALIAS"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn uris_pick_the_backend() {
        assert_eq!(local_path("./store").unwrap(), Path::new("./store"));
        assert_eq!(
            local_path("file:///tmp/mlruns").unwrap(),
            Path::new("/tmp/mlruns")
        );
        assert!(local_path("databricks").is_err());
        assert!(local_path("s3://bucket/x").is_err());
    }
}
