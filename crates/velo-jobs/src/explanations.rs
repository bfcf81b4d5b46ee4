//! The explanations job: explain a registered model globally and per sample.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Float64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema as ArrowSchema},
};
use serde::{Deserialize, Serialize};
use velo_models::explainers::Contributions;
use velo_io::{
    datasets::{Reader, Writer, load_schema},
    registries::Tag,
    services::{RunConfig, tracking::ActiveRun},
};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, SchemaFiles, Services, describe_reader, describe_writer, load_registered,
        run_tracked,
    },
    plots,
};

/// Write a model's global feature importances and per-sample contributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplanationsJob {
    /// The tracking run.
    #[serde(default = "ExplanationsJob::default_run_config")]
    pub run_config: RunConfig,
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

impl crate::Job for ExplanationsJob {
    const KIND: &'static str = "ExplanationsJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
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

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(self.alias_or_version.clone())
    }

    /// Loads the model and writes its global importances (one row per encoded feature) and
    /// the per-sample contributions of the samples read (one row per sample, the input index
    /// kept, one column per encoded feature).
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| {
            self.explain(context, run)
        })
    }
}

impl ExplanationsJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Explanations")
    }



    fn explain(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let (version, model) = load_registered(context, &self.alias_or_version)?;
        run.set_tags(&[
            Tag::new("velo.model.name", version.name.clone()),
            Tag::new("velo.model.version", version.version.clone()),
        ])?;
        let schema = load_schema(&self.schemas.inputs)?;
        let samples = self.inputs_samples.read_validated(&schema)?;
        run.log_dataset(&samples.lineage, "explanation")?;
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
        .map_err(|source| JobError::Table {
            action: "build the importances".to_owned(),
            source,
        })?;
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
        // prediction = base_value + the sum of a row's contributions: both files and the run
        // carry the base value, so anyone can check it.
        run.log_metrics(&[("base_value", explained.per_feature.base_value())], 0)?;
        // The summary: mean |contribution| per input column, largest first (at most 20).
        let means = explained.per_column.mean_abs();
        let mut order: Vec<usize> = (0..means.len()).collect();
        order.sort_by(|a, b| means[*b].total_cmp(&means[*a]));
        order.truncate(20);
        let names: Vec<String> = order
            .iter()
            .map(|&i| explained.per_column.names()[i].clone())
            .collect();
        let values: Vec<f64> = order.iter().map(|&i| means[i]).collect();
        let chart = plots::bars(
            &format!(
                "Mean |contribution| over {} samples: {} version {}",
                per_sample.num_rows(),
                version.name,
                version.version
            ),
            "mean |contribution| to the prediction",
            &names,
            &values,
            None,
        )?;
        run.tracking()
            .log_artifact(run.id(), "plots/contributions.png", &chart)?;
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
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

/// The column of the per-sample file holding the base value (the expected prediction).
const BASE_VALUE: &str = "base_value";

/// One row per sample: its index, a column per feature, and `base_value`, so that a row's
/// contributions plus its base value give the model's prediction.
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
    if contributions.names().iter().any(|name| name == BASE_VALUE) {
        return Err(JobError::Config(format!(
            "samples_explanations: a feature is named `{BASE_VALUE}`, the column that holds the explanations' base value"
        )));
    }
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
    fields.push(Field::new(BASE_VALUE, DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from(vec![
        contributions.base_value();
        contributions.n_rows()
    ])));
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
        .map_err(|source| JobError::Table {
            action: "build the contributions".to_owned(),
            source,
        })
}
