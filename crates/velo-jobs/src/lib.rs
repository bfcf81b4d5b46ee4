//! velo-jobs: the model lifecycle as configurable jobs.
//!
//! Each job is one module holding a `KIND`-tagged config struct: [`tuning::TuningJob`],
//! [`training::TrainingJob`], [`promotion::PromotionJob`], [`inference::InferenceJob`],
//! [`evaluations::EvaluationsJob`] and [`explanations::ExplanationsJob`]. A configuration file
//! holds one [`Settings`], whose `job` is a [`JobConfig`]:
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
//! **Layer:** depends on velo-io and velo-core. **Invariant:** a job receives everything it
//! uses (config, services) explicitly; it never reads the environment or global state.

pub mod common;
mod context;
mod error;
pub mod evaluations;
pub mod explanations;
pub mod inference;
pub mod kafka;
pub mod plots;
pub mod progress;
pub mod promotion;
#[cfg(feature = "serve")]
pub mod serving;
pub mod training;
pub mod tuning;

use serde::{Deserialize, Serialize};

use crate::common::Services;

pub use crate::{
    context::JobContext, error::JobError, evaluations::EvaluationsJob,
    explanations::ExplanationsJob, inference::InferenceJob, kafka::KafkaInferenceJob,
    promotion::PromotionJob, training::TrainingJob, tuning::TuningJob,
};

/// The top level of a velo configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The job to run, selected by its `KIND`.
    pub job: JobConfig,
}

/// A job, selected by `KIND`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum JobConfig {
    /// Search model parameters with cross-validation.
    TuningJob(TuningJob),
    /// Train, evaluate and register a model.
    TrainingJob(TrainingJob),
    /// Point an alias at a registered model version.
    PromotionJob(PromotionJob),
    /// Predict a dataset in batches with a registered model.
    InferenceJob(InferenceJob),
    /// Score a registered model on a dataset against thresholds.
    EvaluationsJob(EvaluationsJob),
    /// Explain a registered model globally and per sample.
    ExplanationsJob(ExplanationsJob),
    /// Score a Kafka topic record by record, at least once.
    KafkaInferenceJob(KafkaInferenceJob),
}

velo_core::impl_kind_deserialize!(JobConfig {
    TuningJob,
    TrainingJob,
    PromotionJob,
    InferenceJob,
    EvaluationsJob,
    ExplanationsJob,
    KafkaInferenceJob
});

impl JobConfig {
    /// The `KIND` of this job.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TuningJob(_) => "TuningJob",
            Self::TrainingJob(_) => "TrainingJob",
            Self::PromotionJob(_) => "PromotionJob",
            Self::InferenceJob(_) => "InferenceJob",
            Self::EvaluationsJob(_) => "EvaluationsJob",
            Self::ExplanationsJob(_) => "ExplanationsJob",
            Self::KafkaInferenceJob(_) => "KafkaInferenceJob",
        }
    }

    /// The job's services (logging, alerts, tracking).
    pub fn services(&self) -> &Services {
        match self {
            Self::TuningJob(job) => &job.services,
            Self::TrainingJob(job) => &job.services,
            Self::PromotionJob(job) => &job.services,
            Self::InferenceJob(job) => &job.services,
            Self::EvaluationsJob(job) => &job.services,
            Self::ExplanationsJob(job) => &job.services,
            Self::KafkaInferenceJob(job) => &job.services,
        }
    }

    /// A human description of what this job would do, one step per line.
    pub fn plan(&self) -> Vec<String> {
        match self {
            Self::TuningJob(job) => job.plan(),
            Self::TrainingJob(job) => job.plan(),
            Self::PromotionJob(job) => job.plan(),
            Self::InferenceJob(job) => job.plan(),
            Self::EvaluationsJob(job) => job.plan(),
            Self::ExplanationsJob(job) => job.plan(),
            Self::KafkaInferenceJob(job) => job.plan(),
        }
    }
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

impl JobConfig {
    /// Runs the job with the given services.
    pub fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        match self {
            Self::TrainingJob(job) => job.run(context),
            Self::PromotionJob(job) => job.run(context),
            Self::InferenceJob(job) => job.run(context),
            Self::EvaluationsJob(job) => job.run(context),
            Self::ExplanationsJob(job) => job.run(context),
            Self::TuningJob(job) => job.run(context),
            Self::KafkaInferenceJob(job) => job.run(context),
        }
    }
}

/// The JSON Schema of [`Settings`]: every job and every field, with their documentation.
pub fn settings_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Settings)).unwrap_or_default()
}

/// The schema files a job refers to, for validation before it runs.
pub fn schema_paths(job: &JobConfig) -> Vec<&std::path::Path> {
    let files = match job {
        JobConfig::TuningJob(job) => &job.schemas,
        JobConfig::TrainingJob(job) => &job.schemas,
        JobConfig::PromotionJob(_) | JobConfig::KafkaInferenceJob(_) => return Vec::new(),
        JobConfig::InferenceJob(job) => &job.schemas,
        JobConfig::EvaluationsJob(job) => &job.schemas,
        JobConfig::ExplanationsJob(job) => &job.schemas,
    };
    std::iter::once(files.inputs.as_path())
        .chain(files.targets.as_deref())
        .chain(files.outputs.as_deref())
        .collect()
}
