//! The explanations job: explain a registered model globally and per sample.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Float64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema as ArrowSchema},
};
use serde::{Deserialize, Serialize};
use velo_core::explainers::Contributions;
use velo_io::datasets::{Reader, Writer, load_schema};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, SchemaFiles, Services, describe_reader, describe_writer, load_registered,
    },
};

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

    /// Loads the model and writes its global importances (one row per encoded feature) and
    /// the per-sample contributions of the samples read (one row per sample, the input index
    /// kept, one column per encoded feature).
    pub fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        let (version, model) = load_registered(context, &self.alias_or_version)?;
        let schema = load_schema(&self.schemas.inputs)?;
        let samples = self.inputs_samples.read_validated(&schema)?;
        let importances = model.explain_model()?;
        let global = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![
                Field::new("feature", DataType::Utf8, false),
                Field::new("importance", DataType::Float64, false),
            ])),
            vec![
                Arc::new(StringArray::from(importances.features.clone())) as ArrayRef,
                Arc::new(Float64Array::from(importances.importances.clone())),
            ],
        )
        .map_err(|error| JobError::Invalid(format!("cannot build the importances: {error}")))?;
        self.models_explanations.write(&global)?;
        let explained = model.explain_samples(&samples.data)?;
        let index = schema.index.as_deref().and_then(|name| {
            samples
                .data
                .column_by_name(name)
                .map(|column| (name, column.clone()))
        });
        let per_sample = contributions_batch(&explained.per_feature, index)?;
        self.samples_explanations.write(&per_sample)?;
        let mut outcome = JobOutcome::new("Explanations".to_owned());
        outcome.lines.push(format!(
            "explained {} version {}: {} importances to {}, {} samples to {}",
            version.name,
            version.version,
            global.num_rows(),
            self.models_explanations.path().display(),
            per_sample.num_rows(),
            self.samples_explanations.path().display()
        ));
        outcome.model_version = Some(version);
        Ok(outcome)
    }
}

/// One row per sample: the index column when there is one, then one column per feature.
fn contributions_batch(
    contributions: &Contributions,
    index: Option<(&str, ArrayRef)>,
) -> Result<RecordBatch, JobError> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    if let Some((name, column)) = index {
        fields.push(Field::new(name, column.data_type().clone(), false));
        columns.push(column);
    }
    let width = contributions.n_features();
    for (feature, name) in contributions.names().iter().enumerate() {
        let values: Vec<f64> = contributions
            .values()
            .iter()
            .skip(feature)
            .step_by(width.max(1))
            .copied()
            .collect();
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(values)));
    }
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
        .map_err(|error| JobError::Invalid(format!("cannot build the contributions: {error}")))
}
