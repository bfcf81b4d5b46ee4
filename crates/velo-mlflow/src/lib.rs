//! velo-mlflow: a standalone MLflow REST client.
//!
//! An async client of an MLflow tracking server ([`Client`]), with a blocking face
//! ([`BlockingClient`]) for synchronous code. It covers experiments, runs (create, update,
//! batched logging within MLflow's limits, dataset inputs, search, metric history), artifacts
//! through the server's proxy, registered models, versions, aliases and tags. It depends on no
//! other velo crate, so any Rust project can use it on its own.
//!
//! - Credentials come from [`Auth`] (`MLFLOW_TRACKING_TOKEN`, or
//!   `MLFLOW_TRACKING_USERNAME`/`PASSWORD`) and are never printed.
//! - Errors keep MLflow's `error_code` ([`Error::Api`]).
//! - Transient failures (timeouts, 408/429/5xx) are retried with exponential backoff and jitter,
//!   honouring `Retry-After`, but only for calls that are safe to repeat; creating a run or a
//!   model version is never retried blindly.
//! - NaN and infinite metric values travel as MLflow's strings.
//!
//! ```no_run
//! use velo_mlflow::{Client, Metric, NewRun, RunStatus, Tag};
//!
//! # async fn demo() -> velo_mlflow::Result<()> {
//! let client = Client::new("http://127.0.0.1:5000")?;
//! let experiment = client.get_or_create_experiment("bikes").await?;
//! let run = client.create_run(&experiment, NewRun { run_name: Some("train".into()), ..NewRun::default() }).await?;
//! client
//!     .log_batch(&run.run_id, &[Metric::new("rmse", 4.8, velo_mlflow::now_ms(), 0)], &[Tag::new("max_depth", "20")], &[])
//!     .await?;
//! client.upload_artifact(&run.artifact_uri, "notes.txt", b"hello".to_vec()).await?;
//! client.update_run(&run.run_id, RunStatus::Finished, None).await?;
//! # Ok(()) }
//! ```
//!
//! **Layer:** standalone (used by velo-io's server registry).

mod artifacts;
mod blocking;
mod client;
mod error;
mod registry;
pub mod s3;
#[cfg(feature = "test-server")]
pub mod test_server;
mod tracking;
mod types;

pub use artifacts::{UPLOAD_CONCURRENCY, check_relative_path};
pub use blocking::BlockingClient;
pub use client::{Auth, Client, ClientBuilder, Idempotency};
pub use error::{Error, Result};
pub use registry::{ModelsPage, VersionSearch, VersionsPage, check_alias};
pub use tracking::{NewRun, RunSearch, limits, now_ms};
pub use types::{
    Alias, CONTEXT_TAG, Dataset, DatasetInput, Experiment, FileInfo, Metric, ModelVersion, Param,
    RegisteredModel, Run, RunData, RunInfo, RunInputs, RunStatus, RunsPage, Tag, ViewType,
};
