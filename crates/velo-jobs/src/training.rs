//! The training job: fit, evaluate, save and register a model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::{
    metrics::Metric,
    models::{
        ModelConfig,
        leakage::{LeakageAction, LeakageOptions},
    },
    splitters::{Splitter, TrainTestSplitter},
};
use velo_io::{datasets::Reader, services::RunConfig};

use crate::common::{SchemaFiles, Services, describe_reader};

/// Train a model on a split of the data, score the held-out part and register the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingJob {
    /// The tracking run.
    #[serde(default = "TrainingJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the model inputs.
    pub inputs: Reader,
    /// Reads the targets.
    pub targets: Reader,
    /// Schemas of the inputs, targets and outputs.
    pub schemas: SchemaFiles,
    /// The model to train.
    #[serde(default)]
    pub model: ModelConfig,
    /// Metrics computed on the held-out split.
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    /// Splits the rows into train and test.
    #[serde(default = "TrainingJob::default_splitter")]
    pub splitter: Splitter,
    /// The data leakage check run on the inputs before fitting (warns by default).
    #[serde(default)]
    pub leakage: LeakageOptions,
    /// How the model is saved with its run.
    #[serde(default)]
    pub saver: Saver,
    /// How the saved model is registered.
    #[serde(default)]
    pub registry: Register,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl TrainingJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Training")
    }

    fn default_splitter() -> Splitter {
        Splitter::TrainTestSplitter(TrainTestSplitter::default())
    }

    pub(crate) fn plan(&self) -> Vec<String> {
        let metrics: Vec<_> = self.metrics.iter().map(|m| m.name().to_string()).collect();
        vec![
            format!("read inputs from {}", describe_reader(&self.inputs)),
            format!("read targets from {}", describe_reader(&self.targets)),
            match self.leakage.action {
                LeakageAction::Off => "skip the target leakage check".to_owned(),
                LeakageAction::Warn => "check the inputs for target leakage (warn)".to_owned(),
                _ => "check the inputs for target leakage (fail on findings)".to_owned(),
            },
            format!("fit {} on the train split", self.model.kind()),
            format!("score the test split with {}", metrics.join(", ")),
            format!(
                "save the model as `{}` and register it as `{}`",
                self.saver.path, self.services.mlflow.registry_name
            ),
        ]
    }
}

/// The metrics every job computes unless told otherwise.
pub(crate) fn default_metrics() -> Vec<Metric> {
    vec![Metric::default()]
}

/// How a trained model is saved with its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Saver {
    /// Artifact path of the model directory inside the run.
    #[serde(default = "Saver::default_path")]
    pub path: String,
    /// Rows of the inputs kept as the model's input example.
    #[serde(default = "Saver::default_example_rows")]
    pub input_example_rows: usize,
}

impl Saver {
    fn default_path() -> String {
        "model".to_owned()
    }

    fn default_example_rows() -> usize {
        5
    }
}

impl Default for Saver {
    fn default() -> Self {
        Self {
            path: Self::default_path(),
            input_example_rows: Self::default_example_rows(),
        }
    }
}

/// How a saved model is registered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Tags set on the new model version.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}
