//! The monitoring job: production data against the reference its model was trained on, window
//! by window.
//!
//! Each window of the inputs (by row count or calendar period) is profiled and compared with
//! the reference profile the training job stored beside the model
//! ([`velo_core::drift::ReferenceProfile`]): per column drift with Evidently's methods and
//! defaults (or the config's), the share of drifted columns, the drift of the model's
//! predictions, and, when labels are given, the window's realised metrics beside the training
//! job's held-out ones. Results go to a table, the run's metrics (one step per window, so
//! MLflow's UI draws drift over time), charts and an HTML report; `fail_on_drift` makes a
//! drifted window fail the job, which the alerts service then reports.

mod report;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use arrow::{
    array::{ArrayRef, BooleanArray, Float64Array, StringArray, UInt64Array},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};
use serde::{Deserialize, Serialize};
use velo_core::{
    drift::{
        ColumnDrift, ColumnSettings, DataProfile, DatasetDrift,
        ReferenceProfile, Window, WindowSpec,
    },
    metrics::MetricName,
};
use velo_io::{
    datasets::{Reader, Writer},
    registries::{Tag, mlmodel},
    services::{RunConfig, tracking::ActiveRun},
};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, SchemaFiles, Services, describe_reader, load_registered, run_tracked,
        take_rows,
    },
    plots,
};

/// The name standing for the model's predictions in the table and the settings.
pub const PREDICTION: &str = "prediction";

/// The metric of the error the loss estimator expects before labels.
pub const ESTIMATED: &str = "estimated_root_mean_squared_error";

/// Compare windows of production inputs (and, given labels, performance) with the reference
/// profile the model version keeps of its training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringJob {
    /// The tracking run.
    #[serde(default = "MonitoringJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the production inputs (or give `logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Reader>,
    /// A prediction log directory (`velo serve --log-predictions`) to read the inputs from,
    /// instead of `inputs`; its `logged_at` column can cut the windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<PathBuf>,
    /// Reads their labels, when they have arrived: joined on the schemas' index (every row
    /// labelled), or on `join_on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Reader>,
    /// Instead of `targets`: a Kafka topic the labels arrive on (JSON objects with the
    /// `join_on` columns and the target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_topic: Option<crate::kafka::LabelTopic>,
    /// Columns present in both the inputs (or the log: `[request_id, request_row]`) and the
    /// labels that identify a row. Labels joined this way may cover only some rows (they
    /// arrive late): each window's metrics are computed over its labelled rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join_on: Vec<String>,
    /// Schemas of the inputs (and of the targets, with `targets`).
    pub schemas: SchemaFiles,
    /// The model version whose reference the data is compared with.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// How rows are grouped into windows: `{rows: 1000}` or `{column: dteday, every: month}`
    /// (`hour`, `day`, `week`, `month`).
    #[serde(default)]
    pub window: WindowSpec,
    /// Per column (or `prediction`), a method (`ks`, `wasserstein`, `chi_square`,
    /// `jensen_shannon`, `psi`) and threshold other than the defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnSettings>,
    /// Windows with fewer rows are reported but not judged (too few rows to tell drift from
    /// noise: a day of hourly data differs from a year of it in every column).
    #[serde(default = "MonitoringJob::default_min_rows")]
    pub min_rows: usize,
    /// Input columns left out of the comparison.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
    /// The share of drifted columns at which a window's dataset drifts (Evidently: 0.5).
    #[serde(default = "MonitoringJob::default_dataset_threshold")]
    pub dataset_threshold: f64,
    /// Metrics computed per window when labels are given (beside the training job's
    /// held-out value of the same metric, when it computed it).
    #[serde(default = "MonitoringJob::default_metrics")]
    pub metrics: Vec<MetricName>,
    /// Fail the job (so that `services.alerts` reports it) when a window's dataset drifts.
    #[serde(default)]
    pub fail_on_drift: bool,
    /// Files written besides the run's artifacts.
    #[serde(default)]
    pub outputs: MonitoringOutputs,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

/// Files a [`MonitoringJob`] writes (each also logged on the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringOutputs {
    /// One row per window and column (and the predictions): method, score, threshold, drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Writer>,
    /// The self-contained HTML report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
}

impl crate::Job for MonitoringJob {
    const KIND: &'static str = "MonitoringJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        let window = match &self.window {
            WindowSpec::Rows { rows } => format!("windows of {rows} rows"),
            WindowSpec::Period { column, every } => {
                format!("windows of one {every:?} of `{column}`").to_lowercase()
            }
        };
        let mut plan = vec![
            format!(
                "load `{}` {} and the profile of its training data",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!(
                "read inputs from {}{}, in {window}",
                self.source(),
                self.targets
                    .as_ref()
                    .map(|t| {
                        let on = if self.join_on.is_empty() {
                            "the index".to_owned()
                        } else {
                            self.join_on.join(" + ")
                        };
                        format!(" with labels from {} joined on {on}", describe_reader(t))
                    })
                    .unwrap_or_default()
            ),
            format!(
                "compare each window's columns and predictions with the reference; a window \
                 drifts when {}% of its columns do",
                self.dataset_threshold * 100.0
            ),
        ];
        let files: Vec<String> = [
            self.outputs
                .table
                .as_ref()
                .map(|w| w.path().display().to_string()),
            self.outputs.report.as_ref().map(|p| p.display().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        plan.push(format!(
            "log the results on the run{}{}",
            if files.is_empty() {
                String::new()
            } else {
                format!(" and write {}", files.join(", "))
            },
            if self.fail_on_drift {
                "; fail when a window drifts"
            } else {
                ""
            }
        ));
        plan
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(self.alias_or_version.clone())
    }

    fn check(&self) -> Result<(), JobError> {
        if !(self.dataset_threshold > 0.0 && self.dataset_threshold <= 1.0) {
            return Err(JobError::Config(format!(
                "`dataset_threshold` is {}, expected a share in (0, 1]",
                self.dataset_threshold
            )));
        }
        if let WindowSpec::Rows { rows: 0 } = self.window {
            return Err(JobError::Config("`window.rows` must be positive".to_owned()));
        }
        if self.inputs.is_some() == self.logs.is_some() {
            return Err(JobError::Config(
                "give either `inputs` (a dataset) or `logs` (a prediction log directory)"
                    .to_owned(),
            ));
        }
        if !self.join_on.is_empty() && self.targets.is_none() && self.label_topic.is_none() {
            return Err(JobError::Config(
                "`join_on` names the columns joining `targets` (or `label_topic`) to the \
                 inputs: give one"
                    .to_owned(),
            ));
        }
        if self.label_topic.is_some() && (self.targets.is_some() || self.join_on.is_empty()) {
            return Err(JobError::Config(
                "`label_topic` replaces `targets` and needs `join_on`".to_owned(),
            ));
        }
        if self.label_topic.is_some() && self.schemas.targets.is_none() {
            return Err(JobError::Config(
                "`label_topic` needs `schemas.targets` to find the target column".to_owned(),
            ));
        }
        if self.targets.is_some() && self.schemas.targets.is_none() {
            return Err(JobError::Config(
                "`targets` needs `schemas.targets` to find the target column".to_owned(),
            ));
        }
        let schema = velo_io::datasets::load_schema(&self.schemas.inputs)?;
        for name in self.columns.keys().chain(&self.skip) {
            if name != PREDICTION && !schema.columns.iter().any(|c| &c.name == name) {
                return Err(JobError::Config(format!(
                    "column {name:?} of `columns`/`skip` is not in the inputs schema {} \
                     (nor `{PREDICTION}`)",
                    self.schemas.inputs.display()
                )));
            }
        }
        Ok(())
    }

    /// Loads the model and its reference profile, reads the inputs (and labels), compares
    /// every window, logs and writes the results, then fails on drift when told to.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| {
            self.monitor(context, run)
        })
    }
}

/// A window's labelled rows: their labels and predictions.
type Labelled = (Vec<f64>, Vec<f64>);

/// One window's comparison.
#[derive(Debug, Clone)]
pub(crate) struct WindowReport {
    /// The window's bounds and size.
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) rows: usize,
    /// Per input column, its drift or why it could not be measured.
    pub(crate) columns: Vec<(String, Result<ColumnDrift, String>)>,
    /// The drift of the predictions.
    pub(crate) prediction: Option<Result<ColumnDrift, String>>,
    /// The share of drifted input columns.
    pub(crate) dataset: DatasetDrift,
    /// The rows with a label.
    pub(crate) labelled: usize,
    /// Realised metrics over the labelled rows.
    pub(crate) scores: BTreeMap<String, f64>,
    /// The RMSE the loss estimator expects, before labels.
    pub(crate) estimated: Option<f64>,
}

impl WindowReport {
    fn drifted_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, drift)| drift.as_ref().is_ok_and(|d| d.drifted))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

impl MonitoringJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Monitoring")
    }

    fn default_min_rows() -> usize {
        100
    }

    fn default_dataset_threshold() -> f64 {
        DatasetDrift::DEFAULT_THRESHOLD
    }

    fn monitor(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let (version, model) = load_registered(context, &self.alias_or_version)?;
        let reference = mlmodel::load_profile(context.registry.as_ref(), &version)?;
        let estimator = match &reference.loss_estimator {
            Some(file) => {
                let bytes = context.registry.read_model_file(&version, file)?;
                let artifact = velo_models::artifact::Artifact::from_bytes(&bytes)?;
                Some(velo_models::load_model(&artifact)?)
            }
            None => None,
        };
        run.set_tags(&[
            Tag::new("velo.model.name", version.name.clone()),
            Tag::new("velo.model.version", version.version.clone()),
        ])?;
        let mut schema = velo_io::datasets::load_schema(&self.schemas.inputs)?;
        // A dataset is streamed batch by batch (memory bounded whatever its rows), unless its
        // labels join on the index, which needs every row at once.
        let source = match (&self.inputs, &self.logs) {
            (Some(reader), _) => Some(Source::Dataset(reader)),
            (None, Some(dir)) => Some(Source::Logs(dir)),
            (None, None) => None,
        };
        if let Some(source) = source
            && (self.targets.is_none() || !self.join_on.is_empty())
        {
            let (reports, labelled, (all_y, all_predictions)) = self.stream_windows(
                (context, run),
                (source, &schema),
                (&reference, &version, model.as_ref(), estimator.as_deref()),
            )?;
            return self.present(
                run,
                (version, &reference),
                (&reports, labelled),
                (&all_y, &all_predictions),
            );
        }
        let reading = context.progress.start("reading inputs", None);
        let (raw, place) = match (&self.inputs, &self.logs) {
            (Some(reader), _) => {
                let read = reader.read()?;
                run.log_dataset(&read.lineage, "monitoring")?;
                (read.data, reader.path().to_path_buf())
            }
            (None, Some(dir)) => {
                let batch = velo_io::prediction_logs::read_logs(dir)?.ok_or_else(|| {
                    JobError::Data(format!(
                        "the prediction log {} holds no file yet",
                        dir.display()
                    ))
                })?;
                run.set_tags(&[Tag::new("velo.monitoring.logs", dir.display().to_string())])?;
                (batch, dir.clone())
            }
            (None, None) => {
                return Err(JobError::Config(
                    "give either `inputs` or `logs`".to_owned(),
                ));
            }
        };
        drop(reading);
        if self.logs.is_some() {
            // A log holds the inputs as the model read them, beside the log's own columns,
            // and the index only when clients sent it: the schema is relaxed as serving
            // relaxes it.
            schema.strict = false;
            schema.extra_columns = None;
            if let Some(index) = schema.index.clone()
                && raw.column_by_name(&index).is_none()
            {
                schema.columns.retain(|column| column.name != index);
                schema.index = None;
            }
        }
        let data = self.validated(&schema, &raw, &place)?;
        // Validation keeps the rows one for one: a schema column cuts windows in its schema
        // type (a date read as text becomes a date), another (a log's `logged_at`) as read.
        let cut_on = match &self.window {
            WindowSpec::Period { column, .. } if data.column_by_name(column).is_none() => &raw,
            _ => &data,
        };
        let windows = velo_core::drift::windows(cut_on, &self.window)
            .map_err(|message| JobError::Data(format!("{}: {message}", place.display())))?;
        let labels: Option<Vec<Option<f64>>> = match &self.targets {
            Some(targets) => {
                let targets_path = self.schemas.targets.as_deref().ok_or_else(|| {
                    JobError::Config("`targets` needs `schemas.targets`".to_owned())
                })?;
                let targets_schema = velo_io::datasets::load_schema(targets_path)?;
                if self.join_on.is_empty() {
                    let read = targets.read_validated(&targets_schema)?;
                    run.log_dataset(&read.lineage, "monitoring")?;
                    let (_, y) =
                        crate::common::target_values(&targets_schema, &read.data, targets_path)?;
                    let y = crate::common::align_targets(
                        (&schema, &data, &place),
                        (&targets_schema, &read.data, targets.path()),
                        y,
                    )?;
                    Some(y.into_iter().map(Some).collect())
                } else {
                    // Late labels carry the join key and the target, not the whole schema.
                    let read = targets.read()?;
                    run.log_dataset(&read.lineage, "monitoring")?;
                    let (_, y) =
                        crate::common::target_values(&targets_schema, &read.data, targets_path)?;
                    Some(crate::common::join_labels(
                        (&raw, &place),
                        (&read.data, targets.path()),
                        &self.join_on,
                        &y,
                    )?)
                }
            }
            None => match &self.label_topic {
                Some(topic) => {
                    let targets_path = self.schemas.targets.as_deref().ok_or_else(|| {
                        JobError::Config("`label_topic` needs `schemas.targets`".to_owned())
                    })?;
                    let targets_schema = velo_io::datasets::load_schema(targets_path)?;
                    let reading = context.progress.start("reading the label topic", None);
                    let labels = topic.read()?;
                    drop(reading);
                    run.set_tags(&[Tag::new(
                        "velo.monitoring.label_topic",
                        format!("{}/{}", topic.brokers, topic.topic),
                    )])?;
                    let (_, y) =
                        crate::common::target_values(&targets_schema, &labels, targets_path)?;
                    let place = PathBuf::from(format!("kafka topic {}", topic.topic));
                    Some(crate::common::join_labels(
                        (&raw, &place),
                        (&labels, &place),
                        &self.join_on,
                        &y,
                    )?)
                }
                None => None,
            },
        };
        // A log of this very version already holds its predictions: they are not recomputed.
        let logged = if self.logs.is_some() {
            logged_predictions(&raw, &version.name, &version.version)
        } else {
            None
        };
        if logged.is_some() {
            run.set_tags(&[Tag::new("velo.monitoring.predictions", "logged")])?;
        }
        let (options, reference_inputs) = self.window_setup(&reference, &schema);
        let comparing = context
            .progress
            .start("comparing windows", Some(windows.len() as u64));
        let mut reports = Vec::with_capacity(windows.len());
        let (mut all_y, mut all_predictions) = (Vec::new(), Vec::new());
        for window in &windows {
            let batch = take_rows(&data, &window.rows)?;
            let y: Option<Vec<Option<f64>>> = labels
                .as_ref()
                .map(|labels| window.rows.iter().map(|&row| labels[row]).collect());
            let logged: Option<Vec<f64>> = logged
                .as_ref()
                .map(|logged| window.rows.iter().map(|&row| logged[row]).collect());
            let (report, (labelled_y, labelled_predictions)) = self.compare_window(
                window,
                (&batch, logged),
                y.as_deref(),
                (&reference, &reference_inputs),
                (model.as_ref(), estimator.as_deref(), &options),
            )?;
            reports.push(report);
            all_y.extend(labelled_y);
            all_predictions.extend(labelled_predictions);
            comparing.advance(1);
        }
        drop(comparing);

        self.present(
            run,
            (version, &reference),
            (&reports, labels.is_some()),
            (&all_y, &all_predictions),
        )
    }

    /// The windows of a dataset read batch by batch: each batch validated, scored, labelled
    /// (labels joined on `join_on`) and its rows added to their windows' accumulators; the
    /// windows judged at the end. Returns the reports, whether labels were given, and every
    /// labelled row's label and prediction.
    fn stream_windows(
        &self,
        (context, run): (&JobContext, &ActiveRun),
        (source, schema): (Source<'_>, &velo_core::schemas::Schema),
        (reference, version, model, estimator): (
            &ReferenceProfile,
            &velo_io::registries::ModelVersion,
            &dyn velo_models::Model,
            Option<&dyn velo_models::Model>,
        ),
    ) -> Result<(Vec<WindowReport>, bool, Labelled), JobError> {
        let label_table: Option<(RecordBatch, PathBuf, Vec<f64>)> =
            match (&self.targets, &self.label_topic) {
                (None, None) => None,
                (targets, topic) => {
                    let targets_path = self.schemas.targets.as_deref().ok_or_else(|| {
                        JobError::Config("labels need `schemas.targets`".to_owned())
                    })?;
                    let targets_schema = velo_io::datasets::load_schema(targets_path)?;
                    let (table, place) = match (targets, topic) {
                        (Some(targets), _) => {
                            let read = targets.read()?;
                            run.log_dataset(&read.lineage, "monitoring")?;
                            (read.data, targets.path().to_path_buf())
                        }
                        (None, Some(topic)) => {
                            run.set_tags(&[Tag::new(
                                "velo.monitoring.label_topic",
                                format!("{}/{}", topic.brokers, topic.topic),
                            )])?;
                            (topic.read()?, PathBuf::from(format!("kafka topic {}", topic.topic)))
                        }
                        (None, None) => unreachable!("matched above"),
                    };
                    let (_, y) =
                        crate::common::target_values(&targets_schema, &table, targets_path)?;
                    Some((table, place, y))
                }
            };
        let index = match &label_table {
            Some((table, place, y)) => Some(crate::common::LabelIndex::new(
                (table, place),
                &self.join_on,
                y,
            )?),
            None => None,
        };
        let (options, reference_inputs) = self.window_setup(reference, schema);
        // The raw batches: a dataset's, with its lineage, or a prediction log's, file by file
        // (its schema relaxed as serving relaxes it; its own predictions reused when the
        // monitored version made them).
        let (place, batches, mut lineage, expected): Opened = match source {
            Source::Dataset(reader) => {
                let place = reader.path().to_path_buf();
                let stream = reader.stream()?;
                let name = place.file_stem().map_or_else(
                    || "inputs".to_owned(),
                    |stem| stem.to_string_lossy().into_owned(),
                );
                let lineage = velo_io::datasets::LineageBuilder::new(
                    name,
                    reader.source_uri(),
                    stream.schema(),
                )?;
                let expected = stream.expected_rows();
                (
                    place,
                    Box::new(stream.map(|batch| batch.map_err(JobError::from))),
                    Some(lineage),
                    expected,
                )
            }
            Source::Logs(dir) => {
                let files = velo_io::prediction_logs::log_files(dir).map_err(|error| {
                    JobError::Data(format!("cannot list the prediction log {}: {error}", dir.display()))
                })?;
                if files.is_empty() {
                    return Err(JobError::Data(format!(
                        "the prediction log {} holds no file yet",
                        dir.display()
                    )));
                }
                run.set_tags(&[Tag::new("velo.monitoring.logs", dir.display().to_string())])?;
                let batches = files.into_iter().map(|file| {
                    use velo_io::datasets::DatasetReader as _;
                    Ok(velo_io::datasets::ParquetReader::new(file).read()?.data)
                });
                (dir.to_path_buf(), Box::new(batches), None, None)
            }
        };
        let mut schema = schema.clone();
        if matches!(source, Source::Logs(_)) {
            schema.strict = false;
            schema.extra_columns = None;
        }
        let progress = context
            .progress
            .start("monitoring", expected.map(|rows| rows as u64));
        // Windows by their order: a row window's number, or a period's first instant.
        let mut windows: BTreeMap<(u64, String), Accumulator> = BTreeMap::new();
        let mut offset = 0_usize;
        let mut all_logged = matches!(source, Source::Logs(_));
        for raw in batches {
            let raw = raw?;
            if let Some(lineage) = lineage.as_mut() {
                lineage.push(&raw)?;
            }
            if let Some(index) = schema.index.clone()
                && raw.column_by_name(&index).is_none()
            {
                // A log holds the index only when clients sent it.
                schema.columns.retain(|column| column.name != index);
                schema.index = None;
            }
            let data = self.validated(&schema, &raw, &place)?;
            let logged = match source {
                Source::Logs(_) => logged_predictions(&raw, &version.name, &version.version),
                Source::Dataset(_) => None,
            };
            all_logged &= logged.is_some();
            let predictions = match logged {
                Some(logged) => logged,
                None => model.predict(&data)?,
            };
            let labels = index
                .as_ref()
                .map(|index| index.labels_for((&raw, &place)))
                .transpose()?;
            match &self.window {
                WindowSpec::Rows { rows: size } => {
                    let size = (*size).max(1);
                    let mut row = 0;
                    while row < data.num_rows() {
                        let number = (offset + row) / size;
                        let take = ((number + 1) * size - (offset + row)).min(data.num_rows() - row);
                        let rows: Vec<usize> = (row..row + take).collect();
                        let accumulator = windows
                            .entry((number as u64, String::new()))
                            .or_insert_with(|| {
                                Accumulator::new(
                                    &format!("row {}", number * size),
                                    &format!("row {}", (number + 1) * size),
                                    &options,
                                )
                            });
                        accumulator.add(
                            &data,
                            Some(&rows),
                            &predictions,
                            labels.as_deref(),
                            estimator,
                        )?;
                        row += take;
                    }
                }
                WindowSpec::Period { column, .. } => {
                    let cut_on = if data.column_by_name(column).is_none() {
                        &raw
                    } else {
                        &data
                    };
                    let found = velo_core::drift::windows(cut_on, &self.window).map_err(
                        |message| JobError::Data(format!("{}: {message}", place.display())),
                    )?;
                    for window in found {
                        let accumulator = windows
                            .entry((0, window.start.clone()))
                            .or_insert_with(|| {
                                Accumulator::new(&window.start, &window.end, &options)
                            });
                        accumulator.add(
                            &data,
                            Some(&window.rows),
                            &predictions,
                            labels.as_deref(),
                            estimator,
                        )?;
                    }
                }
            }
            offset += data.num_rows();
            progress.advance(data.num_rows() as u64);
        }
        drop(progress);
        if offset == 0 {
            return Err(JobError::Data(format!("{} holds no rows", place.display())));
        }
        if let Some(lineage) = lineage {
            run.log_dataset(&lineage.finish(), "monitoring")?;
        }
        if all_logged {
            run.set_tags(&[Tag::new("velo.monitoring.predictions", "logged")])?;
        }
        let comparing = context
            .progress
            .start("comparing windows", Some(windows.len() as u64));
        let mut reports = Vec::with_capacity(windows.len());
        let (mut all_y, mut all_predictions) = (Vec::new(), Vec::new());
        for (_, mut accumulator) in windows {
            if let WindowSpec::Rows { .. } = self.window
                && let Some(end) = accumulator
                    .end
                    .strip_prefix("row ")
                    .and_then(|end| end.parse::<usize>().ok())
                && end > offset
            {
                accumulator.end = format!("row {offset}");
            }
            let (report, (y, predictions)) =
                self.judge(accumulator, (reference, &reference_inputs))?;
            reports.push(report);
            all_y.extend(y);
            all_predictions.extend(predictions);
            comparing.advance(1);
        }
        Ok((reports, label_table.is_some(), (all_y, all_predictions)))
    }

    /// `raw` validated by `schema`, or an error naming `place` and the schema file.
    fn validated(
        &self,
        schema: &velo_core::schemas::Schema,
        raw: &RecordBatch,
        place: &std::path::Path,
    ) -> Result<RecordBatch, JobError> {
        schema.validate(raw).map_err(|source| {
            JobError::Data(format!(
                "{} does not match the inputs schema {}: {source}",
                place.display(),
                self.schemas.inputs.display()
            ))
        })
    }

    /// How windows are profiled (the reference's options, the index and `skip` left out), and
    /// the reference's inputs without the skipped columns.
    fn window_setup(
        &self,
        reference: &ReferenceProfile,
        schema: &velo_core::schemas::Schema,
    ) -> (velo_core::drift::ProfileOptions, DataProfile) {
        let mut options = reference.window_options();
        options.skip.extend(schema.index.clone());
        options.skip.extend(self.skip.iter().cloned());
        let mut reference_inputs = reference.inputs.clone();
        reference_inputs
            .columns
            .retain(|(name, _)| !self.skip.contains(name));
        (options, reference_inputs)
    }

    /// Logs, writes and sums up the windows' reports; fails on drift when told to.
    fn present(
        &self,
        run: &ActiveRun,
        (version, reference): (velo_io::registries::ModelVersion, &ReferenceProfile),
        (reports, labelled): (&[WindowReport], bool),
        (all_y, all_predictions): (&[f64], &[f64]),
    ) -> Result<JobOutcome, JobError> {
        let title = format!("{} version {}", version.name, version.version);
        let results = Results {
            title: &title,
            reference,
            windows: reports,
            metrics: self.metric_names(),
        };
        results.log(run)?;
        let table = results.table()?;
        let html = report::html(&results)?;
        let artifacts: [(&str, Vec<u8>); 2] = [
            (
                "monitoring/drift.parquet",
                velo_io::datasets::parquet_bytes(&table, "monitoring/drift.parquet")?,
            ),
            ("monitoring/report.html", html.clone().into_bytes()),
        ];
        for (path, bytes) in &artifacts {
            run.tracking().log_artifact(run.id(), path, bytes)?;
        }
        if let Some(writer) = &self.outputs.table {
            writer.write(&table)?;
        }
        if let Some(path) = &self.outputs.report {
            velo_io::datasets::write_file(path, html.as_bytes())?;
        }

        let drifted: Vec<String> = reports
            .iter()
            .filter(|w| w.dataset.drifted)
            .map(|w| {
                format!(
                    "{} to {} ({} of {} columns: {})",
                    w.start,
                    w.end,
                    w.dataset.drifted_columns,
                    w.dataset.columns,
                    w.drifted_columns().join(", ")
                )
            })
            .collect();
        if self.fail_on_drift && !drifted.is_empty() {
            return Err(JobError::Drift {
                name: version.name.clone(),
                version: version.version.clone(),
                windows: reports.len(),
                drifted,
            });
        }
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        let shares: Vec<f64> = reports.iter().map(|w| w.dataset.share).collect();
        outcome.metrics.insert(
            "drift_share_max".to_owned(),
            shares.iter().copied().fold(0.0, f64::max),
        );
        outcome
            .metrics
            .insert("windows_drifted".to_owned(), drifted.len() as f64);
        if labelled {
            // Over every labelled row, whatever its window.
            outcome
                .metrics
                .insert("labelled_rows".to_owned(), all_y.len() as f64);
            if !all_y.is_empty() {
                for name in self.metric_names() {
                    let value = name.compute(all_y, all_predictions)?;
                    let key = format!("overall_{}", name.as_str());
                    run.log_metrics(&[(key.as_str(), value)], 0)?;
                    outcome.metrics.insert(key, value);
                }
            }
        }
        // The estimate against the realised error, where both are known.
        let gaps: Vec<f64> = reports
            .iter()
            .filter_map(|w| {
                let realised = w.scores.get(MetricName::RootMeanSquaredError.as_str())?;
                let estimated = w.estimated?;
                (*realised > 0.0).then(|| (estimated - realised).abs() / realised)
            })
            .collect();
        if !gaps.is_empty() {
            let gap = gaps.iter().sum::<f64>() / gaps.len() as f64;
            outcome.metrics.insert("estimate_relative_error".to_owned(), gap);
            run.log_metrics(&[("estimate_relative_error", gap)], 0)?;
        }
        outcome.lines.push(format!(
            "{title}: {} window(s), {} drifted{}",
            reports.len(),
            drifted.len(),
            if drifted.is_empty() {
                String::new()
            } else {
                format!(": {}", drifted.join("; "))
            }
        ));
        outcome.model_version = Some(version);
        Ok(outcome)
    }

    /// Where the inputs come from, in words.
    fn source(&self) -> String {
        match (&self.inputs, &self.logs) {
            (Some(reader), _) => describe_reader(reader),
            (None, Some(dir)) => format!("the prediction log {}", dir.display()),
            (None, None) => "nowhere (give `inputs` or `logs`)".to_owned(),
        }
    }

    fn metric_names(&self) -> Vec<MetricName> {
        self.metrics.clone()
    }

    fn default_metrics() -> Vec<MetricName> {
        vec![
            MetricName::RootMeanSquaredError,
            MetricName::MeanAbsoluteError,
        ]
    }

    fn compare_window(
        &self,
        window: &Window,
        (batch, logged): (&RecordBatch, Option<Vec<f64>>),
        y: Option<&[Option<f64>]>,
        (reference, reference_inputs): (&ReferenceProfile, &DataProfile),
        (model, estimator, options): (
            &dyn velo_models::Model,
            Option<&dyn velo_models::Model>,
            &velo_core::drift::ProfileOptions,
        ),
    ) -> Result<(WindowReport, Labelled), JobError> {
        let mut accumulator = Accumulator::new(&window.start, &window.end, options);
        let predictions = match logged {
            Some(logged) => logged,
            None => model.predict(batch)?,
        };
        accumulator.add(batch, None, &predictions, y, estimator)?;
        self.judge(accumulator, (reference, reference_inputs))
    }

    /// A window's verdicts from what was accumulated of its rows.
    fn judge(
        &self,
        accumulator: Accumulator,
        (reference, reference_inputs): (&ReferenceProfile, &DataProfile),
    ) -> Result<(WindowReport, Labelled), JobError> {
        let Accumulator {
            start,
            end,
            rows,
            inputs,
            predictions,
            losses,
            labelled: (labelled_y, labelled_predictions),
        } = accumulator;
        let too_few = (rows < self.min_rows).then(|| {
            format!(
                "{rows} rows, under `min_rows` ({}): not judged",
                self.min_rows
            )
        });
        let current = inputs.finish();
        let columns: Vec<(String, Result<ColumnDrift, String>)> =
            velo_core::drift::compare(reference_inputs, &current, &self.columns)
                .into_iter()
                .map(|(name, drift)| {
                    let drift = match &too_few {
                        Some(note) => Err(note.clone()),
                        None => drift.map_err(|error| error.to_string()),
                    };
                    (name, drift)
                })
                .collect();
        let dataset = DatasetDrift::of(
            columns.iter().filter_map(|(_, drift)| drift.as_ref().ok()),
            self.dataset_threshold,
        );
        let predicted = predictions.finish();
        let prediction = reference.prediction.as_ref().map(|expected| {
            let settings = self.columns.get(PREDICTION).copied().unwrap_or_default();
            match (&too_few, predicted.column(PREDICTION)) {
                (Some(note), _) => Err(note.clone()),
                (None, None) => Err("no prediction".to_owned()),
                (None, Some(current)) => velo_core::drift::column_drift(
                    expected,
                    current,
                    settings.method,
                    settings.threshold,
                )
                .map_err(|error| error.to_string()),
            }
        });
        let estimated = losses.map(|(sum, count)| (sum / count.max(1) as f64).sqrt());
        let mut scores = BTreeMap::new();
        if !labelled_y.is_empty() {
            for name in self.metric_names() {
                scores.insert(
                    name.as_str().to_owned(),
                    name.compute(&labelled_y, &labelled_predictions)?,
                );
            }
        }
        let report = WindowReport {
            start,
            end,
            rows,
            labelled: labelled_y.len(),
            columns,
            prediction,
            dataset,
            scores,
            estimated,
        };
        Ok((report, (labelled_y, labelled_predictions)))
    }
}

/// A source opened: where it is, its raw batches, a dataset's lineage, and its rows when known.
type Opened = (
    PathBuf,
    Box<dyn Iterator<Item = Result<RecordBatch, JobError>>>,
    Option<velo_io::datasets::LineageBuilder>,
    Option<usize>,
);

/// Where a streamed monitoring reads its rows.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A dataset, batch by batch.
    Dataset(&'a Reader),
    /// A prediction log directory, file by file.
    Logs(&'a std::path::Path),
}

/// What a window gathers of its rows as they stream by: profiles of its inputs and
/// predictions (bounded: see [`velo_core::drift::ProfileBuilder`]), the estimated losses'
/// sum, and its labelled rows.
struct Accumulator {
    start: String,
    end: String,
    rows: usize,
    inputs: velo_core::drift::ProfileBuilder,
    predictions: velo_core::drift::ProfileBuilder,
    /// The estimator's predicted squared errors: their sum and count.
    losses: Option<(f64, usize)>,
    labelled: Labelled,
}

impl Accumulator {
    fn new(start: &str, end: &str, options: &velo_core::drift::ProfileOptions) -> Self {
        let mut prediction_options = velo_core::drift::ProfileOptions::default();
        prediction_options.keep_up_to = options.keep_up_to;
        Self {
            start: start.to_owned(),
            end: end.to_owned(),
            rows: 0,
            inputs: velo_core::drift::ProfileBuilder::new(options.clone()),
            predictions: velo_core::drift::ProfileBuilder::new(prediction_options),
            losses: None,
            labelled: (Vec::new(), Vec::new()),
        }
    }

    /// Adds the rows `rows` of `batch` (all when `None`), with the predictions, labels and
    /// estimator's losses of those rows (`predictions` and `y` are the batch's, by row).
    fn add(
        &mut self,
        batch: &RecordBatch,
        rows: Option<&[usize]>,
        predictions: &[f64],
        y: Option<&[Option<f64>]>,
        estimator: Option<&dyn velo_models::Model>,
    ) -> Result<(), JobError> {
        let all: Vec<usize>;
        let rows = match rows {
            Some(rows) => rows,
            None => {
                all = (0..batch.num_rows()).collect();
                &all
            }
        };
        if rows.is_empty() {
            return Ok(());
        }
        self.rows += rows.len();
        self.inputs.push_rows(batch, Some(rows));
        let picked: Vec<f64> = rows.iter().map(|&row| predictions[row]).collect();
        let column = RecordBatch::try_from_iter([(
            PREDICTION,
            Arc::new(Float64Array::from(picked.clone())) as ArrayRef,
        )])
        .map_err(|source| JobError::Table {
            action: "profile the predictions".to_owned(),
            source,
        })?;
        self.predictions.push(&column);
        if let Some(estimator) = estimator {
            let subset = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                crate::common::take_rows(batch, rows)?
            };
            let losses = crate::training::estimated_losses(estimator, &subset, &picked)?;
            let (sum, count) = self.losses.get_or_insert((0.0, 0));
            *sum += losses.iter().sum::<f64>();
            *count += losses.len();
        }
        if let Some(y) = y {
            for (&row, prediction) in rows.iter().zip(picked) {
                if let Some(label) = y[row] {
                    self.labelled.0.push(label);
                    self.labelled.1.push(prediction);
                }
            }
        }
        Ok(())
    }
}

/// The predictions of a prediction log, when every row was scored by `name` version `version`
/// (a log of another version, or of several, is scored afresh by the monitored one).
fn logged_predictions(log: &RecordBatch, name: &str, version: &str) -> Option<Vec<f64>> {
    use arrow::array::{Array as _, AsArray as _};
    let all_equal = |column: &str, expected: &str| {
        log.column_by_name(column)
            .and_then(|array| array.as_string_opt::<i32>())
            .is_some_and(|values| {
                values.null_count() == 0 && values.iter().all(|value| value == Some(expected))
            })
    };
    if !all_equal("model_name", name) || !all_equal("model_version", version) {
        return None;
    }
    let predictions = log
        .column_by_name(PREDICTION)?
        .as_primitive_opt::<arrow::datatypes::Float64Type>()?;
    (predictions.null_count() == 0).then(|| predictions.values().to_vec())
}

/// The results of a monitoring run, with what the outputs need to present them.
pub(crate) struct Results<'a> {
    /// The model, in words.
    pub(crate) title: &'a str,
    /// Its reference.
    pub(crate) reference: &'a ReferenceProfile,
    /// The windows, in order.
    pub(crate) windows: &'a [WindowReport],
    /// The metrics computed per window (with labels).
    pub(crate) metrics: Vec<MetricName>,
}

/// A metric key MLflow accepts (letters, digits, `_-./ `) for a column name.
fn metric_key(prefix: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}.{clean}")
}

impl Results<'_> {
    /// Logs one step per window: the drift share and drifted columns, each column's score,
    /// the predictions' score, the realised metrics; and the charts.
    fn log(&self, run: &ActiveRun) -> Result<(), JobError> {
        for (step, window) in self.windows.iter().enumerate() {
            let mut metrics: Vec<(String, f64)> = vec![
                ("drift_share".to_owned(), window.dataset.share),
                (
                    "drifted_columns".to_owned(),
                    window.dataset.drifted_columns as f64,
                ),
                ("rows".to_owned(), window.rows as f64),
            ];
            if !window.scores.is_empty() {
                metrics.push(("labelled_rows".to_owned(), window.labelled as f64));
            }
            for (name, drift) in &window.columns {
                if let Ok(drift) = drift
                    && drift.score.is_finite()
                {
                    metrics.push((metric_key("drift", name), drift.score));
                }
            }
            if let Some(Ok(drift)) = &window.prediction {
                metrics.push(("prediction_drift".to_owned(), drift.score));
            }
            for (name, value) in &window.scores {
                metrics.push((name.clone(), *value));
            }
            if let Some(estimated) = window.estimated {
                metrics.push((ESTIMATED.to_owned(), estimated));
            }
            let logged: Vec<(&str, f64)> = metrics
                .iter()
                .filter(|(_, value)| value.is_finite())
                .map(|(name, value)| (name.as_str(), *value))
                .collect();
            run.log_metrics(&logged, step as i64)?;
        }
        for (path, png) in self.charts()? {
            run.tracking().log_artifact(run.id(), &path, &png)?;
        }
        Ok(())
    }

    /// The charts: the drift share per window (red where the window drifted, the threshold
    /// dashed) and, with labels, each metric per window against the training job's held-out
    /// value.
    pub(crate) fn charts(&self) -> Result<Vec<(String, Vec<u8>)>, JobError> {
        let labels: Vec<String> = self.windows.iter().map(|w| w.start.clone()).collect();
        let flagged: Vec<bool> = self.windows.iter().map(|w| w.dataset.drifted).collect();
        let threshold = self.windows.first().map(|w| w.dataset.threshold);
        let shares = vec![(
            "drifted columns".to_owned(),
            self.windows.iter().map(|w| w.dataset.share).collect(),
        )];
        let mut charts = vec![(
            "plots/drift_share.png".to_owned(),
            plots::windows(
                &format!("Share of drifted columns: {}", self.title),
                "share of columns",
                &labels,
                &shares,
                &flagged,
                threshold,
            )?,
        )];
        if self.windows.iter().any(|w| w.estimated.is_some()) {
            let mut series = vec![(
                "estimated before labels".to_owned(),
                self.windows
                    .iter()
                    .map(|w| w.estimated.unwrap_or(f64::NAN))
                    .collect::<Vec<f64>>(),
            )];
            let realised: Vec<f64> = self
                .windows
                .iter()
                .map(|w| {
                    w.scores
                        .get(MetricName::RootMeanSquaredError.as_str())
                        .copied()
                        .unwrap_or(f64::NAN)
                })
                .collect();
            if realised.iter().any(|value| value.is_finite()) {
                series.push(("realised".to_owned(), realised));
            }
            if let Some(baseline) = self
                .reference
                .metrics
                .get(MetricName::RootMeanSquaredError.as_str())
            {
                series.push((
                    "training's held-out split".to_owned(),
                    vec![*baseline; self.windows.len()],
                ));
            }
            charts.push((
                "plots/estimated_error.png".to_owned(),
                plots::windows(
                    &format!("Root mean squared error, estimated and realised: {}", self.title),
                    "root_mean_squared_error",
                    &labels,
                    &series,
                    &[],
                    None,
                )?,
            ));
        }
        for name in &self.metrics {
            let realised: Vec<f64> = self
                .windows
                .iter()
                .map(|w| w.scores.get(name.as_str()).copied().unwrap_or(f64::NAN))
                .collect();
            if realised.iter().all(|value| value.is_nan()) {
                continue;
            }
            let mut series = vec![("each window".to_owned(), realised)];
            if let Some(baseline) = self.reference.metrics.get(name.as_str()) {
                series.push((
                    "training's held-out split".to_owned(),
                    vec![*baseline; self.windows.len()],
                ));
            }
            charts.push((
                format!("plots/{}.png", name.as_str()),
                plots::windows(
                    &format!("{} per window: {}", name.as_str(), self.title),
                    name.as_str(),
                    &labels,
                    &series,
                    &[],
                    None,
                )?,
            ));
        }
        Ok(charts)
    }

    /// One row per window and column (the predictions as `prediction`).
    fn table(&self) -> Result<RecordBatch, JobError> {
        let mut window = Vec::new();
        let (mut start, mut end, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        let (mut column, mut method, mut score) = (Vec::new(), Vec::new(), Vec::new());
        let (mut threshold, mut drifted, mut note) = (Vec::new(), Vec::new(), Vec::new());
        for (index, report) in self.windows.iter().enumerate() {
            let prediction = report
                .prediction
                .as_ref()
                .map(|drift| (PREDICTION.to_owned(), drift.clone()));
            for (name, drift) in report.columns.iter().cloned().chain(prediction) {
                window.push(index as u64);
                start.push(report.start.clone());
                end.push(report.end.clone());
                rows.push(report.rows as u64);
                column.push(name);
                match drift {
                    Ok(drift) => {
                        method.push(Some(drift.method.name()));
                        score.push(Some(drift.score));
                        threshold.push(Some(drift.threshold));
                        drifted.push(Some(drift.drifted));
                        note.push(None);
                    }
                    Err(message) => {
                        method.push(None);
                        score.push(None);
                        threshold.push(None);
                        drifted.push(None);
                        note.push(Some(message));
                    }
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("window", DataType::UInt64, false),
            Field::new("start", DataType::Utf8, false),
            Field::new("end", DataType::Utf8, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("column", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("threshold", DataType::Float64, true),
            Field::new("drifted", DataType::Boolean, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(window)),
            Arc::new(StringArray::from(start)),
            Arc::new(StringArray::from(end)),
            Arc::new(UInt64Array::from(rows)),
            Arc::new(StringArray::from(column)),
            Arc::new(StringArray::from(method)),
            Arc::new(Float64Array::from(score)),
            Arc::new(Float64Array::from(threshold)),
            Arc::new(BooleanArray::from(drifted)),
            Arc::new(StringArray::from(note)),
        ];
        RecordBatch::try_new(schema, columns).map_err(|source| JobError::Table {
            action: "build the drift table".to_owned(),
            source,
        })
    }
}
