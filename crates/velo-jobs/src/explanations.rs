//! The explanations job: explain a registered model globally and per sample.

use serde::{Deserialize, Serialize};
use velo_io::datasets::{Reader, Writer};

use crate::common::{AliasOrVersion, SchemaFiles, Services, describe_reader, describe_writer};

/// Write a model's global feature importances and per-sample contributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplanationsJob {
    /// Reads the samples to explain.
    pub inputs_samples: Reader,
    /// Writes the global importances (one row per feature).
    pub models_explanations: Writer,
    /// Writes the per-sample contributions (one row per sample, one column per feature).
    pub samples_explanations: Writer,
    /// Schemas of the inputs.
    pub schemas: SchemaFiles,
    /// The model version to load.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl ExplanationsJob {
    pub(crate) fn plan(&self) -> Vec<String> {
        vec![
            format!(
                "load `{}` {}",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!(
                "explain samples from {}",
                describe_reader(&self.inputs_samples)
            ),
            format!(
                "write importances to {}",
                describe_writer(&self.models_explanations)
            ),
            format!(
                "write contributions to {}",
                describe_writer(&self.samples_explanations)
            ),
        ]
    }
}
