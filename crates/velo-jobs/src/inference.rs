//! The inference job: predict a dataset in batches with a registered model.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Float64Array, RecordBatch},
    datatypes::{DataType, Field, Schema as ArrowSchema},
};
use serde::{Deserialize, Serialize};
use velo_io::datasets::{Reader, Writer, load_schema};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, SchemaFiles, Services, describe_reader, describe_writer, load_registered,
        output_spec,
    },
};

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

impl crate::Job for InferenceJob {
    const KIND: &'static str = "InferenceJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        vec![
            format!(
                "load `{}` {}",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!("predict inputs from {}", describe_reader(&self.inputs)),
            format!("write predictions to {}", describe_writer(&self.outputs)),
        ]
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(self.alias_or_version.clone())
    }

    /// Loads the model, then reads, validates and predicts the inputs batch by batch (memory
    /// stays bounded by one batch), writing one output row per input row with the input's
    /// index. The output file appears only once complete.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        let (version, model) = load_registered(context, &self.alias_or_version)?;
        let inputs_schema = load_schema(&self.schemas.inputs)?;
        let (outputs_schema, prediction_name) = match &self.schemas.outputs {
            Some(path) => {
                let schema = load_schema(path)?;
                let name = output_spec(&schema, path)?.name;
                (Some(schema), name)
            }
            None => (None, "prediction".to_owned()),
        };
        let index = inputs_schema.index.clone();
        let stream = self.inputs.stream_validated(&inputs_schema)?;
        let predicting = context
            .progress
            .start("predicting", stream.expected_rows().map(|rows| rows as u64));
        let mut sink = None;
        let mut rows = 0_usize;
        for batch in stream {
            let batch = batch?;
            let predictions = model.predict(&batch)?;
            let mut fields = Vec::new();
            let mut columns: Vec<ArrayRef> = Vec::new();
            if let Some(index) = &index
                && let Some(column) = batch.column_by_name(index)
            {
                fields.push(Field::new(index, column.data_type().clone(), false));
                columns.push(column.clone());
            }
            fields.push(Field::new(&prediction_name, DataType::Float64, false));
            columns.push(Arc::new(Float64Array::from(predictions)));
            let mut output = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
                .map_err(|source| JobError::Table {
                    action: "build the outputs".to_owned(),
                    source,
                })?;
            if let Some(schema) = &outputs_schema {
                output = schema.validate(&output).map_err(JobError::Outputs)?;
            }
            if sink.is_none() {
                sink = Some(self.outputs.open(output.schema())?);
            }
            if let Some(sink) = sink.as_mut() {
                sink.push(&output)?;
            }
            rows += output.num_rows();
            predicting.advance(output.num_rows() as u64);
        }
        let sink = sink.ok_or_else(|| {
            JobError::Data(format!(
                "{} holds no rows to predict",
                self.inputs.path().display()
            ))
        })?;
        sink.finish()?;
        let mut outcome = JobOutcome::new("Inference".to_owned());
        outcome.lines.push(format!(
            "wrote {rows} predictions of {} version {} to {}",
            version.name,
            version.version,
            self.outputs.path().display()
        ));
        outcome.model_version = Some(version);
        Ok(outcome)
    }
}

