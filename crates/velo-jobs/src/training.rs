//! The training job: fit, evaluate, save and register a model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::{
    drift::{
        ColumnProfile, DataProfile, EXACT_UP_TO, NumericalProfile, ProfileOptions,
        ReferenceProfile,
    },
    metrics::Metric,
    splitters::{Splitter, TrainTestSplitter},
};
use velo_models::{
        ModelConfig,
        leakage::{LeakageAction, LeakageOptions},
    };
use velo_io::{
    datasets::{Reader, load_schema},
    registries::{
        ModelVersion, Tag,
        mlmodel::{self, ColSpec, MlModel},
    },
    services::{RunConfig, tracking::ActiveRun},
};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        Labeled, SchemaFiles, Services, describe_reader, output_spec, read_labeled, run_tracked,
        take_rows,
    },
};

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

impl crate::Job for TrainingJob {
    const KIND: &'static str = "TrainingJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
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

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    /// Reads and validates the data, fits the model on the train split, scores the test split,
    /// and logs and registers the model, all in one tracking run (FAILED with the error when a
    /// step fails; nothing is registered then).
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| {
            self.train(context, run)
        })
    }
}

impl TrainingJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Training")
    }

    fn default_splitter() -> Splitter {
        Splitter::TrainTestSplitter(TrainTestSplitter::default())
    }

}

impl TrainingJob {

    fn train(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let labeled = read_labeled(
            "TrainingJob",
            (&self.inputs, &self.targets),
            &self.schemas,
            Some(run),
            "training",
            context.progress.as_ref(),
        )?;
        self.train_on(context, run, labeled)
    }

    /// Fits, scores, logs and registers the model on `labeled` rows already read (the
    /// retraining job's gathered data), in `run`.
    pub(crate) fn train_on(
        &self,
        context: &JobContext,
        run: &ActiveRun,
        labeled: Labeled,
    ) -> Result<JobOutcome, JobError> {
        labeled.check_leakage(self.model.features(), &self.leakage, run)?;
        let Labeled {
            schema: inputs_schema,
            inputs,
            target_name,
            y,
            ..
        } = labeled;
        let splits = self.splitter.split(inputs.data.num_rows())?;
        let split = splits
            .last()
            .ok_or_else(|| JobError::Data("the splitter produced no split".to_owned()))?;
        let x_train = take_rows(&inputs.data, &split.train)?;
        let x_test = take_rows(&inputs.data, &split.test)?;
        let y_train: Vec<f64> = split.train.iter().map(|&row| y[row]).collect();
        let y_test: Vec<f64> = split.test.iter().map(|&row| y[row]).collect();
        tracing::info!(
            model = self.model.kind(),
            train = x_train.num_rows(),
            test = x_test.num_rows(),
            "fitting"
        );
        let mut model = self.model.build(&inputs_schema);
        let fitting = context
            .progress
            .start(&format!("fitting {}", self.model.kind()), None);
        model.fit(&x_train, &y_train)?;
        drop(fitting);
        let predicting = context
            .progress
            .start("predicting the test split", Some(x_test.num_rows() as u64));
        let predictions = model.predict(&x_test)?;
        predicting.advance(x_test.num_rows() as u64);
        drop(predicting);
        let mut scores = BTreeMap::new();
        for metric in &self.metrics {
            let value = metric.score(&y_test, &predictions)?;
            scores.insert(metric.name().as_str().to_owned(), value);
        }
        let logged: Vec<(&str, f64)> = scores
            .iter()
            .map(|(name, value)| (name.as_str(), *value))
            .collect();
        run.log_metrics(&logged, 0)?;
        crate::plots::log_fit_charts(
            run,
            &format!("{} on the test split", self.model.kind()),
            &y_test,
            &predictions,
        )?;

        let mut profile = reference_profile(
            &inputs_schema,
            self.model.features(),
            (&x_train, &y_train),
            model.as_ref(),
            &scores,
        )?;
        let estimator = loss_estimator(
            &inputs_schema,
            self.model.features(),
            (&x_test, &y_test),
            &predictions,
        )?;
        if estimator.is_some() {
            profile.loss_estimator = Some(mlmodel::ESTIMATOR_FILE.to_owned());
        }
        let version = self.save_and_register(
            context,
            run,
            (model.as_ref(), &profile, estimator.as_deref()),
            &inputs.data,
            &target_name,
        )?;
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome.metrics = scores;
        outcome.lines.push(format!(
            "registered {} version {} from run {}",
            version.name, version.version, version.run_id
        ));
        outcome.model_version = Some(version);
        Ok(outcome)
    }

    fn save_and_register(
        &self,
        context: &JobContext,
        run: &ActiveRun,
        (model, profile, estimator): (&dyn velo_models::Model, &ReferenceProfile, Option<&[u8]>),
        inputs: &arrow::record_batch::RecordBatch,
        target_name: &str,
    ) -> Result<ModelVersion, JobError> {
        let bytes = model.to_artifact()?.to_bytes()?;
        let onnx = if self.saver.onnx {
            Some(model.to_onnx(&velo_models::onnx::Options::default())?)
        } else {
            None
        };
        let outputs = match &self.schemas.outputs {
            Some(path) => vec![output_spec(&load_schema(path)?, path)?],
            None => vec![ColSpec {
                kind: "double".to_owned(),
                name: target_name.to_owned(),
                required: true,
            }],
        };
        let description = MlModel {
            artifact_path: self.saver.path.clone(),
            run_id: run.id().to_owned(),
            model_file: mlmodel::MODEL_FILE.to_owned(),
            model_kind: model.kind().to_owned(),
            inputs: mlmodel::signature_of(&inputs.schema()),
            outputs,
            input_example: (self.saver.input_example_rows > 0)
                .then(|| mlmodel::example_of(inputs, self.saver.input_example_rows))
                .transpose()?,
            extra_files: std::iter::once((mlmodel::PROFILE_FILE.to_owned(), profile.to_json()))
                .chain(estimator.map(|bytes| (mlmodel::ESTIMATOR_FILE.to_owned(), bytes.to_vec())))
                .chain(onnx.map(|bytes| (mlmodel::ONNX_FILE.to_owned(), bytes)))
                .collect(),
        };
        let source = mlmodel::log_model(run.tracking(), run.info(), &description, &bytes)?;
        drop(bytes);
        // A stop asked for while the model was fitted or logged: the run ends KILLED and
        // nothing is registered (a later promotion of the latest version cannot pick it).
        if context.stop_requested() {
            return Err(JobError::Interrupted("the model was not registered"));
        }
        let tags: Vec<Tag> = self
            .registry
            .tags
            .iter()
            .map(|(key, value)| Tag::new(key.clone(), value.clone()))
            .collect();
        Ok(context.registry.create_model_version(
            &context.mlflow.registry_name,
            &source,
            run.id(),
            &tags,
        )?)
    }
}

/// What the model version keeps of its training data for monitoring: profiles of the training
/// inputs (the schema's index left out; the features' and schema's categorical columns as
/// categories), of the model's predictions and of the targets on them, and the held-out
/// metrics.
fn reference_profile(
    schema: &velo_core::schemas::Schema,
    features: &velo_models::FeaturesConfig,
    (x_train, y_train): (&arrow::record_batch::RecordBatch, &[f64]),
    model: &dyn velo_models::Model,
    scores: &BTreeMap<String, f64>,
) -> Result<ReferenceProfile, JobError> {
    let mut categorical = features.categoricals.clone();
    for column in &schema.columns {
        if column.data_type == velo_core::schemas::ColumnType::Categorical
            && !categorical.contains(&column.name)
        {
            categorical.push(column.name.clone());
        }
    }
    let mut options = ProfileOptions::with_categorical(categorical.clone());
    options.skip.extend(schema.index.clone());
    let inputs = DataProfile::from_batches(std::slice::from_ref(x_train), &options);
    let mut profile = ReferenceProfile::new(inputs, categorical);
    let predictions = model.predict(x_train)?;
    profile.prediction = Some(ColumnProfile::Numerical(NumericalProfile::from_values(
        predictions,
        0,
        EXACT_UP_TO,
    )));
    profile.target = Some(ColumnProfile::Numerical(NumericalProfile::from_values(
        y_train.to_vec(),
        0,
        EXACT_UP_TO,
    )));
    profile.metrics = scores.clone();
    Ok(profile)
}

/// The depth of the loss estimator's trees, and their number.
const ESTIMATOR_MAX_DEPTH: usize = 5;
const ESTIMATOR_TREES: usize = 100;

/// Held-out rows under which no loss estimator is fitted.
const ESTIMATOR_MIN_ROWS: usize = 100;

/// A gradient-boosting model of the squared error on the held-out rows, from their inputs and
/// the model's prediction (NannyML's direct loss estimation): the artifact bytes, or `None`
/// with fewer than [`ESTIMATOR_MIN_ROWS`] held-out rows.
pub(crate) fn loss_estimator(
    schema: &velo_core::schemas::Schema,
    features: &velo_models::FeaturesConfig,
    (x_test, y_test): (&arrow::record_batch::RecordBatch, &[f64]),
    predictions: &[f64],
) -> Result<Option<Vec<u8>>, JobError> {
    if x_test.num_rows() < ESTIMATOR_MIN_ROWS {
        return Ok(None);
    }
    let (schema, inputs) = with_prediction(schema, x_test, predictions)?;
    let losses: Vec<f64> = y_test
        .iter()
        .zip(predictions)
        .map(|(y, p)| (y - p) * (y - p))
        .collect();
    let config = velo_models::ModelConfig::GradientBoostingModel(
        velo_models::boosting::GradientBoostingModel {
            features: features.clone(),
            // Monitoring walks every logged row through it: shallow trees keep that cheap
            // (a row walks each tree to its depth), and a few thousand held-out rows support
            // no deeper ones.
            max_depth: Some(ESTIMATOR_MAX_DEPTH),
            // Boosting's default (1,000 iterations, early stopping only above 10,000 rows)
            // would walk every row through 1,000 trees; NannyML's estimator has 100.
            max_iter: ESTIMATOR_TREES,
            ..Default::default()
        },
    );
    let mut estimator = config.build(&schema);
    estimator.fit(&inputs, &losses)?;
    Ok(Some(estimator.to_artifact()?.to_bytes()?))
}

/// The squared errors a loss estimator expects for `inputs` scored `predictions` (each at
/// least 0): what monitoring and retraining sum into an estimated RMSE before labels.
pub(crate) fn estimated_losses(
    estimator: &dyn velo_models::Model,
    inputs: &arrow::record_batch::RecordBatch,
    predictions: &[f64],
) -> Result<Vec<f64>, JobError> {
    let schema = estimator.inputs_schema().clone();
    let (_, with) = with_prediction(&schema, inputs, predictions)?;
    Ok(estimator
        .predict(&with)?
        .into_iter()
        .map(|loss| loss.max(0.0))
        .collect())
}

/// `schema` and `inputs` with the model's `predictions` as one more numerical column
/// ([`velo_core::drift::ESTIMATOR_PREDICTION`]): what a loss estimator reads.
pub(crate) fn with_prediction(
    schema: &velo_core::schemas::Schema,
    inputs: &arrow::record_batch::RecordBatch,
    predictions: &[f64],
) -> Result<(velo_core::schemas::Schema, arrow::record_batch::RecordBatch), JobError> {
    let name = velo_core::drift::ESTIMATOR_PREDICTION;
    let mut schema = schema.clone();
    let column: velo_core::schemas::ColumnSpec =
        serde_json::from_value(serde_json::json!({"name": name, "type": "float64"}))
            .map_err(JobError::Encode)?;
    schema.columns.retain(|existing| existing.name != name);
    schema.columns.push(column);
    let mut fields: Vec<arrow::datatypes::Field> = inputs
        .schema()
        .fields()
        .iter()
        .filter(|field| field.name() != name)
        .map(|field| field.as_ref().clone())
        .collect();
    let mut columns: Vec<arrow::array::ArrayRef> = inputs
        .schema()
        .fields()
        .iter()
        .zip(inputs.columns())
        .filter(|(field, _)| field.name() != name)
        .map(|(_, column)| std::sync::Arc::clone(column))
        .collect();
    fields.push(arrow::datatypes::Field::new(
        name,
        arrow::datatypes::DataType::Float64,
        false,
    ));
    columns.push(std::sync::Arc::new(arrow::array::Float64Array::from(
        predictions.to_vec(),
    )));
    let batch = arrow::record_batch::RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )
    .map_err(|source| JobError::Table {
        action: "add the predictions to the inputs".to_owned(),
        source,
    })?;
    Ok((schema, batch))
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
    /// Also store the model and its feature pipeline as one ONNX graph (`model.onnx`), with
    /// MLflow's `onnx` and `python_function` flavors: `mlflow.pyfunc.load_model` then scores
    /// the version in Python through onnxruntime.
    #[serde(default)]
    pub onnx: bool,
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
            onnx: false,
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
