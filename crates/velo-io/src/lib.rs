//! velo-io: velo's contact with the outside world.
//!
//! - [`configs`]: layered configuration with figment (files, `VELO_…` environment variables,
//!   `--extras` snippets, profiles) with the source of every value;
//! - [`datasets`]: Parquet and CSV readers and writers on Arrow, lineage with content digests,
//!   schema files, the CSV importer and the synthetic data generator;
//! - [`registries`]: tracking and model registry behind one interface, on an embedded store
//!   laid out as MLflow's file store (the default) or a real MLflow server;
//! - [`services`]: the logging, alerts and tracking services jobs are given;
//! - [`queue`]: a work queue in PostgreSQL, through which jobs spread work over `velo worker`
//!   processes.
//!
//! **Layer:** depends on velo-core and velo-mlflow. **Invariant:** io owns paths, URLs, credentials,
//! retries, timeouts and wire formats; the types it exchanges with velo-core are core types.

pub mod configs;
pub mod datasets;
mod error;
mod files;
pub mod prediction_logs;
pub mod queue;
pub mod registries;
pub mod services;

pub use error::{Error, Result};
