//! The evaluations job: score a registered model on a dataset against thresholds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::metrics::{Metric, MetricName, Threshold};
use velo_io::{datasets::Reader, services::RunConfig};

use crate::{
    common::{AliasOrVersion, SchemaFiles, Services, describe_reader},
    training::default_metrics,
};

/// Predict a dataset with a registered model, compute metrics and check them against bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationsJob {
    /// The tracking run.
    #[serde(default = "EvaluationsJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the model inputs.
    pub inputs: Reader,
    /// Reads the targets.
    pub targets: Reader,
    /// Schemas of the inputs, targets and outputs.
    pub schemas: SchemaFiles,
    /// The kind of model evaluated.
    #[serde(default)]
    pub model_type: ModelType,
    /// The model version to load.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// Metrics to compute (every metric named in `thresholds` is computed too).
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    /// Metric name -> bound; any bound missed fails the job.
    #[serde(default = "EvaluationsJob::default_thresholds")]
    pub thresholds: BTreeMap<String, Threshold>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl EvaluationsJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Evaluations")
    }

    fn default_thresholds() -> BTreeMap<String, Threshold> {
        let name = MetricName::R2Score.to_string();
        BTreeMap::from([(
            name,
            Threshold {
                threshold: 0.5,
                greater_is_better: true,
            },
        )])
    }

    pub(crate) fn plan(&self) -> Vec<String> {
        let bounds: Vec<_> = self
            .thresholds
            .iter()
            .map(|(name, t)| {
                format!(
                    "{name} {} {}",
                    if t.greater_is_better { ">=" } else { "<=" },
                    t.threshold
                )
            })
            .collect();
        vec![
            format!(
                "load `{}` {}",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!("predict inputs from {}", describe_reader(&self.inputs)),
            format!(
                "compare with targets from {}",
                describe_reader(&self.targets)
            ),
            format!(
                "require {}",
                if bounds.is_empty() {
                    "nothing".to_owned()
                } else {
                    bounds.join(", ")
                }
            ),
        ]
    }
}

/// The kind of model an evaluation expects.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ModelType {
    /// A regression model.
    #[default]
    Regressor,
}
