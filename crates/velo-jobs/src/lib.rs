//! velo-jobs: the model lifecycle as configurable jobs.
//!
//! Each job is one module holding a `KIND`-tagged config struct that implements [`Job`]:
//! [`TuningJob`], [`TrainingJob`], [`PromotionJob`], [`InferenceJob`], [`EvaluationsJob`],
//! [`ExplanationsJob`] and [`KafkaInferenceJob`]. The crate root registers each in one line of
//! `register_jobs!`, which generates [`JobConfig`] (the `KIND`-tagged enum) and its dispatch. A
//! configuration file holds one [`Settings`], whose `job` is a [`JobConfig`]:
//!
//! ```
//! let yaml = "
//! job:
//!   KIND: PromotionJob
//!   alias: Champion
//! ";
//! let settings: velo_jobs::Settings = serde_yaml::from_str(yaml)?;
//! assert_eq!(settings.job.kind(), "PromotionJob");
//! # Ok::<(), serde_yaml::Error>(())
//! ```
//!
//! [`JobConfig::run`] runs a job with the services of a [`JobContext`] (its stores, run
//! context and progress reporting) and returns a [`JobOutcome`]; [`JobConfig::plan`] describes
//! what it would do without running it. `examples/energy-demand` in the repository runs four
//! jobs from Rust on a dataset of its own.
//!
//! With the `serve` feature, `scoring` (the model, validation and payload parsing) is shared
//! by `serving` (the HTTP server of `velo serve`) and the Kafka job.
//!
//! **Layer:** depends on velo-io, velo-models and velo-core.
//! **Invariant:** a job receives everything it uses (config, services) explicitly; it never
//! reads the environment or global state, and never touches a file or a temporary directory
//! itself (velo-io does; clippy's `disallowed_methods` checks it).
#![deny(clippy::disallowed_methods)]

pub mod common;
mod context;
mod error;
pub mod executors;
mod html;
pub mod init;
mod job;
pub mod models;
pub mod plots;
pub mod progress;
pub mod sandbox;
#[cfg(feature = "serve")]
pub mod scoring;
#[cfg(feature = "serve")]
pub mod serving;

use serde::{Deserialize, Serialize};

pub use crate::{
    context::{JobContext, RUN_STATUS_TAG},
    error::{Cause, JobError},
    job::Job,
};

// Every job: its module, its config struct (the `KIND`) and what it does. Adding a job is one
// line here and one module implementing [`Job`].
job::register_jobs! {
    tuning::TuningJob: "Search model parameters with cross-validation.",
    training::TrainingJob: "Train, evaluate and register a model.",
    promotion::PromotionJob: "Point an alias at a registered model version.",
    inference::InferenceJob: "Predict a dataset in batches with a registered model.",
    evaluations::EvaluationsJob: "Score a registered model on a dataset against thresholds.",
    explanations::ExplanationsJob: "Explain a registered model globally and per sample.",
    scenarios::ScenariosJob: "Test a registered model on slices, perturbations, cases and extreme inputs.",
    stress::StressJob: "Load scoring servers step by step to find where they break.",
    benchmark::BenchmarkJob: "Rank models, baselines, the Champion and peers on the same folds.",
    monitoring::MonitoringJob: "Compare windows of production data with the model's training profile.",
    retraining::RetrainingJob: "Retrain a challenger when the latest labelled window drifted or degraded.",
    gate::GateJob: "Promote a challenger only if it beats the champion on labelled rows, by a margin.",
    feedback::FeedbackLoopJob: "Replay production window by window: monitor, retrain by policy, gate, compare with a static model.",
    kafka::KafkaInferenceJob: "Score a Kafka topic record by record, at least once.",
}

/// The top level of a velo configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The job to run, selected by its `KIND`.
    pub job: JobConfig,
}

/// What a job did: its run, the metrics it logged, the model version it touched, and lines
/// for the user.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct JobOutcome {
    /// The tracking run's name.
    pub run_name: String,
    /// The tracking run, if the job opened one.
    pub run_id: Option<String>,
    /// Metrics the job computed, by name.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// The model version the job registered or promoted.
    pub model_version: Option<velo_io::registries::ModelVersion>,
    /// What happened, one line each, for the user.
    pub lines: Vec<String>,
}

impl JobOutcome {
    pub(crate) fn new(run_name: String) -> Self {
        Self {
            run_name,
            ..Self::default()
        }
    }
}

/// The JSON Schema of [`Settings`]: every job and every field, with their documentation.
pub fn settings_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Settings)).unwrap_or_default()
}
