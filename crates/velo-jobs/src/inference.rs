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
    /// Where the partitions of a partitioned input (a directory of Parquet files) are
    /// predicted: in this process (`KIND: Local`, the default) or on `velo worker` processes
    /// through a PostgreSQL queue (`KIND: Queue`, `url: postgres://…`), a partition per task.
    #[serde(default)]
    pub executor: crate::executors::Executor,
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
            format!(
                "predict inputs from {} {}",
                describe_reader(&self.inputs),
                self.executor.describe()
            ),
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
    /// index. The output file appears only once complete. A directory of Parquet files is read
    /// partition by partition, each written whole to the outputs directory under its own name
    /// (so a partition done again replaces its output, never adds to it), here or on a queue's
    /// workers.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        let (version, model) = load_registered(context, &self.alias_or_version)?;
        let prepared = Prepared::new(self.clone(), model)?;
        let partitions = velo_io::datasets::partitions(self.inputs.path())?;
        let mut outcome = JobOutcome::new("Inference".to_owned());
        match partitions {
            None => {
                let rows = prepared.predict(&self.inputs, &self.outputs, context.progress.as_ref())?;
                outcome.lines.push(format!(
                    "wrote {rows} predictions of {} version {} to {}",
                    version.name,
                    version.version,
                    self.outputs.path().display()
                ));
            }
            Some(parts) => {
                let outputs: Vec<std::path::PathBuf> = parts
                    .iter()
                    .map(|part| {
                        self.outputs
                            .path()
                            .join(part.file_name().unwrap_or(part.as_os_str()))
                    })
                    .collect();
                let rows: usize = match &self.executor {
                    crate::executors::Executor::Queue(queue) => {
                        // Every worker loads the version resolved here, whatever the alias
                        // points at by then.
                        let mut pinned = self.clone();
                        pinned.alias_or_version =
                            AliasOrVersion::Version(version.version.parse().map_err(|_| {
                                JobError::Data(format!(
                                    "the registry gave version `{}` of {}, not a number",
                                    version.version, version.name
                                ))
                            })?);
                        pinned.executor = crate::executors::Executor::default();
                        pinned.inputs = self.inputs.absolute();
                        pinned.outputs = self
                            .outputs
                            .with_path(&velo_io::datasets::absolute_path(self.outputs.path()));
                        pinned.schemas = self.schemas.absolute();
                        let payloads: Vec<serde_json::Value> = parts
                            .iter()
                            .zip(&outputs)
                            .map(|(input, output)| {
                                serde_json::json!({
                                    "input": velo_io::datasets::absolute_path(input),
                                    "output": velo_io::datasets::absolute_path(output),
                                })
                            })
                            .collect();
                        let results = queue.run(
                            &format!("inference-{}-{}", version.name, unique_suffix()),
                            TASK_KIND,
                            &serde_json::json!({ "job": pinned }),
                            &payloads,
                            context.progress.as_ref(),
                        )?;
                        results
                            .iter()
                            .map(|result| {
                                result["rows"].as_u64().map(|rows| rows as usize).ok_or_else(
                                    || JobError::Data(format!("an inference task's result has no rows: {result}")),
                                )
                            })
                            .sum::<Result<usize, JobError>>()?
                    }
                    _ => {
                        let mut rows = 0;
                        for (input, output) in parts.iter().zip(&outputs) {
                            rows += prepared.predict(
                                &self.inputs.with_path(input),
                                &self.outputs.with_path(output),
                                context.progress.as_ref(),
                            )?;
                        }
                        rows
                    }
                };
                outcome.lines.push(format!(
                    "wrote {rows} predictions of {} version {} in {} partitions to {}",
                    version.name,
                    version.version,
                    parts.len(),
                    self.outputs.path().display()
                ));
            }
        }
        outcome.model_version = Some(version);
        Ok(outcome)
    }
}

/// A suffix that tells apart batches opened by the same job (the time, in nanoseconds).
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

/// The kind of the tasks an inference job puts on a queue: one input partition.
pub const TASK_KIND: &str = "inference";

/// An inference job's model and schemas, loaded once (in the job, or once per batch on a
/// queue's worker).
pub(crate) struct Prepared {
    model: Box<dyn velo_models::Model>,
    inputs_schema: velo_core::schemas::Schema,
    outputs_schema: Option<velo_core::schemas::Schema>,
    prediction_name: String,
    job: InferenceJob,
}

impl Prepared {
    fn new(job: InferenceJob, model: Box<dyn velo_models::Model>) -> Result<Self, JobError> {
        let inputs_schema = load_schema(&job.schemas.inputs)?;
        let (outputs_schema, prediction_name) = match &job.schemas.outputs {
            Some(path) => {
                let schema = load_schema(path)?;
                let name = output_spec(&schema, path)?.name;
                (Some(schema), name)
            }
            None => (None, "prediction".to_owned()),
        };
        Ok(Self {
            model,
            inputs_schema,
            outputs_schema,
            prediction_name,
            job,
        })
    }

    /// On a worker: loads the batch's pinned model version from the job's registry.
    pub(crate) fn from_context(context: &serde_json::Value) -> Result<Self, JobError> {
        let job: InferenceJob = serde_json::from_value(context["job"].clone()).map_err(|error| {
            JobError::Config(format!("the batch's inference job cannot be read: {error}"))
        })?;
        let stores = JobContext::open(
            &job.services.mlflow,
            velo_io::services::tracking::RunContext::default(),
        )?;
        let (_, model) = load_registered(&stores, &job.alias_or_version)?;
        Self::new(job, model)
    }

    /// Runs one task (`{input, output}`): predicts one partition into its output file.
    pub(crate) fn run_task(&self, payload: &serde_json::Value) -> Result<serde_json::Value, JobError> {
        let path = |key: &str| {
            payload[key]
                .as_str()
                .map(std::path::PathBuf::from)
                .ok_or_else(|| JobError::Config(format!("an inference task names no {key}: {payload}")))
        };
        let (input, output) = (path("input")?, path("output")?);
        let rows = self.predict(
            &self.job.inputs.with_path(&input),
            &self.job.outputs.with_path(&output),
            &crate::progress::NoProgress,
        )?;
        Ok(serde_json::json!({ "rows": rows }))
    }

    /// Predicts what `reader` reads into `writer`'s file; the rows written.
    fn predict(
        &self,
        reader: &Reader,
        writer: &Writer,
        progress: &dyn crate::progress::Progress,
    ) -> Result<usize, JobError> {
        let index = self.inputs_schema.index.clone();
        let stream = reader.stream_validated(&self.inputs_schema)?;
        let predicting =
            progress.start("predicting", stream.expected_rows().map(|rows| rows as u64));
        let mut sink = None;
        let mut rows = 0_usize;
        for batch in stream {
            let batch = batch?;
            let predictions = self.model.predict(&batch)?;
            let mut fields = Vec::new();
            let mut columns: Vec<ArrayRef> = Vec::new();
            if let Some(index) = &index
                && let Some(column) = batch.column_by_name(index)
            {
                fields.push(Field::new(index, column.data_type().clone(), false));
                columns.push(column.clone());
            }
            fields.push(Field::new(&self.prediction_name, DataType::Float64, false));
            columns.push(Arc::new(Float64Array::from(predictions)));
            let mut output = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
                .map_err(|source| JobError::Table {
                    action: "build the outputs".to_owned(),
                    source,
                })?;
            if let Some(schema) = &self.outputs_schema {
                output = schema.validate(&output).map_err(JobError::Outputs)?;
            }
            if sink.is_none() {
                sink = Some(writer.open(output.schema())?);
            }
            if let Some(sink) = sink.as_mut() {
                sink.push(&output)?;
            }
            rows += output.num_rows();
            predicting.advance(output.num_rows() as u64);
        }
        let sink = sink.ok_or_else(|| {
            JobError::Data(format!("{} holds no rows to predict", reader.path().display()))
        })?;
        sink.finish()?;
        Ok(rows)
    }
}
