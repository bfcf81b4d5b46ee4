//! The inference job: predict a dataset in batches with a registered model.

use serde::{Deserialize, Serialize};
use velo_io::datasets::{Reader, Writer};

use crate::common::{AliasOrVersion, SchemaFiles, Services, describe_reader, describe_writer};

/// Load a registered model and write its predictions for a dataset, batch by batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InferenceJob {
    /// Reads the model inputs.
    pub inputs: Reader,
    /// Writes the predictions (the input index is kept).
    pub outputs: Writer,
    /// Schemas of the inputs and outputs.
    pub schemas: SchemaFiles,
    /// The model version to load.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl InferenceJob {
    pub(crate) fn plan(&self) -> Vec<String> {
        vec![
            format!(
                "load `{}` {}",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!("predict inputs from {}", describe_reader(&self.inputs)),
            format!("write predictions to {}", describe_writer(&self.outputs)),
        ]
    }
}
