//! Configuration pieces shared by several jobs.

use std::{fmt, path::PathBuf};

use arrow::{
    array::{Array as _, AsArray as _, UInt32Array},
    compute::{cast, take_record_batch},
    datatypes::{DataType, Float64Type},
    record_batch::RecordBatch,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use velo_core::schemas::Schema;
use velo_io::{
    datasets::{Reader, Writer},
    registries::mlmodel::ColSpec,
    services::{AlertsService, LoggerService, MlflowService, RunConfig, tracking::ActiveRun},
};

use crate::{JobContext, JobError, JobOutcome};

/// Runs `body` inside a tracking run: the job's whole configuration is logged first; the run
/// ends FINISHED when `body` succeeds and FAILED, with the error, when it fails.
pub(crate) fn run_tracked<C: Serialize>(
    context: &JobContext,
    run_config: &RunConfig,
    config: &C,
    body: impl FnOnce(&ActiveRun) -> Result<JobOutcome, JobError>,
) -> Result<JobOutcome, JobError> {
    let run = ActiveRun::start(
        context.tracking.clone(),
        &context.mlflow.experiment_name,
        run_config,
        &context.run,
    )?;
    context.set_active_run(Some(run.killer()));
    // Every line logged while the run is open carries its id.
    let span = tracing::info_span!("run", run_id = %run.id());
    let _entered = span.enter();
    let result = serde_json::to_value(config)
        .map_err(JobError::Encode)
        .and_then(|value| run.log_config(&value).map_err(JobError::from))
        .and_then(|()| body(&run));
    context.set_active_run(None);
    match result {
        Ok(outcome) => {
            run.finish()?;
            Ok(outcome)
        }
        Err(error) => {
            let ended = if matches!(error, JobError::Interrupted(_)) {
                run.kill()
            } else {
                run.fail(&error)
            };
            if let Err(end) = ended {
                tracing::warn!(%end, "cannot end the run");
            }
            Err(error)
        }
    }
}

/// Resolves a registered model by alias or version, downloads its files and loads the model.
pub(crate) fn load_registered(
    context: &JobContext,
    which: &AliasOrVersion,
) -> Result<
    (
        velo_io::registries::ModelVersion,
        Box<dyn velo_models::Model>,
    ),
    JobError,
> {
    let uri = which.uri(context.mlflow.registry_name.clone());
    load_model_uri(context.registry.as_ref(), &uri)
}

/// Resolves `uri` in `registry`, reads the model file its MLmodel names
/// ([`load_model_bytes`](velo_io::registries::mlmodel::load_model_bytes)) and loads the model
/// (every byte checked, see
/// [`Artifact::from_bytes`](velo_models::artifact::Artifact::from_bytes)).
///
/// # Errors
/// An unknown model, alias or version, a missing or damaged model file.
pub fn load_model_uri(
    registry: &dyn velo_io::registries::ModelRegistry,
    uri: &velo_io::registries::ModelUri,
) -> Result<
    (
        velo_io::registries::ModelVersion,
        Box<dyn velo_models::Model>,
    ),
    JobError,
> {
    let velo_io::registries::mlmodel::ModelBytes {
        version,
        bytes,
        location,
        ..
    } = velo_io::registries::mlmodel::load_model_bytes(registry, uri)?;
    let in_version = |source: velo_models::ModelError| JobError::LoadModel {
        uri: uri.to_string(),
        version: version.version.clone(),
        file: location.clone(),
        source: Box::new(source),
    };
    let artifact = velo_models::artifact::Artifact::from_bytes(&bytes).map_err(in_version)?;
    // The file's bytes, the decoded tensors and the model are each as large as the model:
    // hold at most two of them at a time.
    drop(bytes);
    let model = velo_models::load_model(&artifact).map_err(in_version)?;
    drop(artifact);
    tracing::info!(model = %uri, version = %version.version, kind = model.kind(), "model loaded");
    Ok((version, model))
}

/// Inputs and targets read, validated, aligned and logged as the run's lineage.
pub(crate) struct Labeled {
    /// The inputs schema.
    pub(crate) schema: Schema,
    /// The validated inputs.
    pub(crate) inputs: velo_io::datasets::Dataset,
    /// The targets' lineage (their rows are in `y`).
    pub(crate) targets_lineage: velo_io::datasets::Lineage,
    /// The target column's name.
    pub(crate) target_name: String,
    /// The target values, one per input row.
    pub(crate) y: Vec<f64>,
}

impl Labeled {
    /// Runs the leakage check on the inputs with the model's features: findings are logged and
    /// tagged on the run (`velo.leakage`), or fail the job when the options say so.
    pub(crate) fn check_leakage(
        &self,
        features: &velo_models::FeaturesConfig,
        options: &velo_models::leakage::LeakageOptions,
        run: &ActiveRun,
    ) -> Result<(), JobError> {
        let report = velo_models::leakage::check_inputs(
            &self.schema,
            features,
            &self.inputs.data,
            &self.y,
            options,
        )?;
        if !report.is_clean() {
            tracing::warn!(findings = %report, "the inputs may leak the target `{}`", self.target_name);
            run.set_tags(&[velo_io::registries::Tag::new(
                "velo.leakage",
                report.to_string(),
            )])?;
        }
        Ok(())
    }
}

/// Reads `inputs` and `targets` validated against `schemas` (whose `targets` names the target
/// column), logs both as datasets of the run (when there is one) with `role` (`training`, `evaluation`, …), and
/// checks that they align row by row; `kind` names the job in errors.
pub(crate) fn read_labeled(
    kind: &str,
    (inputs, targets): (&Reader, &Reader),
    schemas: &SchemaFiles,
    run: Option<&ActiveRun>,
    role: &str,
    progress: &dyn crate::progress::Progress,
) -> Result<Labeled, JobError> {
    let schema = velo_io::datasets::load_schema(&schemas.inputs)?;
    let targets_path = schemas.targets.as_deref().ok_or_else(|| {
        JobError::Config(format!(
            "a {kind} needs `schemas.targets` to find the target column"
        ))
    })?;
    let targets_schema = velo_io::datasets::load_schema(targets_path)?;
    let reading = progress.start("reading inputs and targets", None);
    let read_inputs = inputs.read_validated(&schema)?;
    let read_targets = targets.read_validated(&targets_schema)?;
    drop(reading);
    if let Some(run) = run {
        run.log_dataset(&read_inputs.lineage, role)?;
        run.log_dataset(&read_targets.lineage, role)?;
    }
    let (target_name, y) = target_values(&targets_schema, &read_targets.data, targets_path)?;
    let y = align_targets(
        (&schema, &read_inputs.data, inputs.path()),
        (&targets_schema, &read_targets.data, targets.path()),
        y,
    )?;
    Ok(Labeled {
        schema,
        inputs: read_inputs,
        targets_lineage: read_targets.lineage,
        target_name,
        y,
    })
}

/// A dataset side of [`align_targets`]: its schema, its rows and its file.
type Side<'a> = (&'a Schema, &'a RecordBatch, &'a std::path::Path);

/// The target values in the order of the input rows.
///
/// When both schemas name an index column, inputs and targets are joined on it: every input
/// row must find its target (the error says how many did not, with examples); targets without
/// an input are left out with a warning. Without an index on both sides, the rows must be as
/// many and are taken in order.
pub(crate) fn align_targets(
    (inputs_schema, inputs, inputs_path): Side<'_>,
    (targets_schema, targets, targets_path): Side<'_>,
    y: Vec<f64>,
) -> Result<Vec<f64>, JobError> {
    let (Some(input_index), Some(target_index)) = (
        inputs_schema.index.as_deref(),
        targets_schema.index.as_deref(),
    ) else {
        if y.len() != inputs.num_rows() {
            return Err(JobError::Data(format!(
                "{} has {} rows but {} has {}: without an index column in both schemas, inputs \
                 and targets must align row by row",
                inputs_path.display(),
                inputs.num_rows(),
                targets_path.display(),
                y.len()
            )));
        }
        return Ok(y);
    };
    let keys = |batch: &RecordBatch, column: &str, path: &std::path::Path| {
        let array = batch.column_by_name(column).ok_or_else(|| {
            JobError::Data(format!("{} has no index column `{column}`", path.display()))
        })?;
        // Keys compare as text, whatever the index's type on either side.
        cast(array, &DataType::Utf8).map_err(|source| JobError::Table {
            action: format!("read index column `{column}` of {}", path.display()),
            source,
        })
    };
    let input_keys = keys(inputs, input_index, inputs_path)?;
    let target_keys = keys(targets, target_index, targets_path)?;
    let input_keys = input_keys.as_string::<i32>();
    let target_keys = target_keys.as_string::<i32>();
    if input_keys == target_keys {
        return Ok(y);
    }
    let rows: std::collections::HashMap<&str, usize> = target_keys
        .iter()
        .enumerate()
        .filter_map(|(row, key)| key.map(|key| (key, row)))
        .collect();
    let mut aligned = Vec::with_capacity(input_keys.len());
    let mut missing = Vec::new();
    for key in input_keys.iter() {
        match key.and_then(|key| rows.get(key)) {
            Some(&row) => aligned.push(y[row]),
            None => missing.push(key.unwrap_or("null")),
        }
    }
    if !missing.is_empty() {
        let examples: Vec<&str> = missing.iter().take(5).copied().collect();
        return Err(JobError::Data(format!(
            "{} of the {} rows of {} have no target in {} with the same `{input_index}` \
             (for example {}); inputs and targets are joined on their schemas' index",
            missing.len(),
            input_keys.len(),
            inputs_path.display(),
            targets_path.display(),
            examples.join(", ")
        )));
    }
    let unused = target_keys.len().saturating_sub(aligned.len());
    if unused > 0 {
        tracing::warn!(
            targets = %targets_path.display(),
            unused,
            "targets without an input row are left out"
        );
    }
    Ok(aligned)
}

/// Late labels by key, to join to rows batch after batch.
pub(crate) struct LabelIndex<'a> {
    keys: &'a [String],
    by_key: std::collections::HashMap<String, f64>,
}

/// The key of `row` in `columns` (text), or `None` when a part is null.
fn row_key(columns: &[arrow::array::ArrayRef], row: usize) -> Option<String> {
    let mut key = String::new();
    for (position, column) in columns.iter().enumerate() {
        let column = column.as_string::<i32>();
        if column.is_null(row) {
            return None;
        }
        if position > 0 {
            key.push('\u{1f}');
        }
        key.push_str(column.value(row));
    }
    Some(key)
}

/// The `keys` columns of `batch` as text.
fn key_columns(
    batch: &RecordBatch,
    path: &std::path::Path,
    keys: &[String],
) -> Result<Vec<arrow::array::ArrayRef>, JobError> {
    keys.iter()
        .map(|column| {
            let array = batch.column_by_name(column).ok_or_else(|| {
                JobError::Data(format!(
                    "{} has no column `{column}` to join labels on (`join_on`: {})",
                    path.display(),
                    keys.join(", ")
                ))
            })?;
            cast(array, &DataType::Utf8).map_err(|source| JobError::Table {
                action: format!("read join column `{column}` of {}", path.display()),
                source,
            })
        })
        .collect()
}

impl<'a> LabelIndex<'a> {
    /// Indexes the labels `y` of the rows of `labels` by their `keys` columns.
    ///
    /// # Errors
    /// A key column missing, or one key labelled twice with different values.
    pub(crate) fn new(
        (labels, labels_path): (&RecordBatch, &std::path::Path),
        keys: &'a [String],
        y: &[f64],
    ) -> Result<Self, JobError> {
        let label_keys = key_columns(labels, labels_path, keys)?;
        let mut by_key: std::collections::HashMap<String, f64> =
            std::collections::HashMap::with_capacity(labels.num_rows());
        for (row, &value) in y.iter().enumerate() {
            let Some(key) = row_key(&label_keys, row) else {
                continue;
            };
            if let Some(previous) = by_key.insert(key.clone(), value)
                && previous.to_bits() != value.to_bits()
            {
                return Err(JobError::Data(format!(
                    "{} labels {} = {} twice, {previous} and then {value} (row {}): expected one \
                     label per key",
                    labels_path.display(),
                    keys.join(" + "),
                    key.replace('\u{1f}', " + "),
                    row + 1
                )));
            }
        }
        Ok(Self { keys, by_key })
    }

    /// For each row of `inputs`, its label, or `None` when none has arrived.
    ///
    /// # Errors
    /// A key column missing from `inputs`.
    pub(crate) fn labels_for(
        &self,
        (inputs, inputs_path): (&RecordBatch, &std::path::Path),
    ) -> Result<Vec<Option<f64>>, JobError> {
        let input_keys = key_columns(inputs, inputs_path, self.keys)?;
        Ok((0..inputs.num_rows())
            .map(|row| row_key(&input_keys, row).and_then(|key| self.by_key.get(&key).copied()))
            .collect())
    }
}

/// Joins late labels to rows on `keys` (columns of both tables, compared as text): for each row
/// of `inputs`, its label, or `None` when none has arrived.
///
/// # Errors
/// A key column missing from either side, or one key labelled twice with different values.
pub(crate) fn join_labels(
    (inputs, inputs_path): (&RecordBatch, &std::path::Path),
    (labels, labels_path): (&RecordBatch, &std::path::Path),
    keys: &[String],
    y: &[f64],
) -> Result<Vec<Option<f64>>, JobError> {
    LabelIndex::new((labels, labels_path), keys, y)?.labels_for((inputs, inputs_path))
}

/// The target column of a targets schema (its one non-index column) and its values as f64.
pub(crate) fn target_values(
    schema: &Schema,
    batch: &RecordBatch,
    schema_path: &std::path::Path,
) -> Result<(String, Vec<f64>), JobError> {
    let spec = single_value_column(schema, schema_path)?;
    let column = batch
        .column_by_name(&spec.name)
        .ok_or_else(|| JobError::Data(format!("the targets have no column `{}`", spec.name)))?;
    let values = cast(column, &DataType::Float64).map_err(|source| JobError::Table {
        action: format!("read target column `{}` as numbers", spec.name),
        source,
    })?;
    let values = values.as_primitive::<Float64Type>();
    if values.null_count() > 0 {
        return Err(JobError::Data(format!(
            "target column `{}` holds {} null values",
            spec.name,
            values.null_count()
        )));
    }
    Ok((spec.name.clone(), values.values().to_vec()))
}

fn single_value_column<'s>(
    schema: &'s Schema,
    schema_path: &std::path::Path,
) -> Result<&'s velo_core::schemas::ColumnSpec, JobError> {
    let mut columns = schema
        .columns
        .iter()
        .filter(|column| schema.index.as_deref() != Some(column.name.as_str()));
    match (columns.next(), columns.next()) {
        (Some(column), None) => Ok(column),
        _ => Err(JobError::Config(format!(
            "{} must describe exactly one column besides its index",
            schema_path.display()
        ))),
    }
}

/// The output column of an outputs schema, as a signature entry.
pub(crate) fn output_spec(schema: &Schema, path: &std::path::Path) -> Result<ColSpec, JobError> {
    let column = single_value_column(schema, path)?;
    Ok(ColSpec {
        kind: velo_io::datasets::mlflow_type(&column.arrow_type()).to_owned(),
        name: column.name.clone(),
        required: !column.nullable,
    })
}

/// The rows of `batch` at `rows`, in that order.
/// One fold's rows: train inputs and targets, test inputs and targets.
pub(crate) type FoldRows = (RecordBatch, Vec<f64>, RecordBatch, Vec<f64>);

/// The rows of each split of `inputs` and `y`, selected once for every candidate to share.
pub(crate) fn fold_rows(
    inputs: &RecordBatch,
    y: &[f64],
    splits: &[velo_core::splitters::Split],
) -> Result<Vec<FoldRows>, JobError> {
    splits
        .iter()
        .map(|split| {
            Ok((
                take_rows(inputs, &split.train)?,
                split.train.iter().map(|&row| y[row]).collect(),
                take_rows(inputs, &split.test)?,
                split.test.iter().map(|&row| y[row]).collect(),
            ))
        })
        .collect()
}

pub(crate) fn take_rows(batch: &RecordBatch, rows: &[usize]) -> Result<RecordBatch, JobError> {
    let indices: Vec<u32> = rows
        .iter()
        .map(|&row| u32::try_from(row))
        .collect::<Result<_, _>>()
        .map_err(|_| JobError::Data("more than 4 billion rows".to_owned()))?;
    take_record_batch(batch, &UInt32Array::from(indices)).map_err(|source| JobError::Table {
        action: "select rows".to_owned(),
        source,
    })
}

/// The services a job uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Logging.
    #[serde(default)]
    pub logger: LoggerService,
    /// Notifications when a job finishes or fails.
    #[serde(default)]
    pub alerts: AlertsService,
    /// Tracking and model registry.
    #[serde(default)]
    pub mlflow: MlflowService,
}

/// The schema files describing a job's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaFiles {
    /// Schema of the model inputs (YAML or JSON).
    pub inputs: PathBuf,
    /// Schema of the targets; the single non-index column is the target.
    #[serde(default)]
    pub targets: Option<PathBuf>,
    /// Schema of the model outputs; the single non-index column holds predictions.
    #[serde(default)]
    pub outputs: Option<PathBuf>,
}

impl SchemaFiles {
    /// The same files with absolute paths (for a queue's workers, which may start elsewhere).
    #[must_use]
    pub fn absolute(&self) -> Self {
        let absolute = |path: &std::path::Path| velo_io::datasets::absolute_path(path);
        Self {
            inputs: absolute(&self.inputs),
            targets: self.targets.as_deref().map(absolute),
            outputs: self.outputs.as_deref().map(absolute),
        }
    }
}

/// A registered model version, chosen by alias (`Champion`) or by number (`3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasOrVersion {
    /// An alias such as `Champion`.
    Alias(String),
    /// A version number.
    Version(u64),
}

impl AliasOrVersion {
    /// The URI of this alias or version of the registered model `name`.
    pub fn uri(&self, name: String) -> velo_io::registries::ModelUri {
        use velo_io::registries::ModelUri;
        match self {
            Self::Alias(alias) => ModelUri::Alias {
                name,
                alias: alias.clone(),
            },
            Self::Version(version) => ModelUri::Version {
                name,
                version: *version,
            },
        }
    }
}

impl Default for AliasOrVersion {
    fn default() -> Self {
        Self::Alias("Champion".to_owned())
    }
}

impl fmt::Display for AliasOrVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alias(alias) => write!(f, "@{alias}"),
            Self::Version(version) => write!(f, "version {version}"),
        }
    }
}

impl Serialize for AliasOrVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Alias(alias) => serializer.serialize_str(alias),
            Self::Version(version) => serializer.serialize_u64(*version),
        }
    }
}

impl<'de> Deserialize<'de> for AliasOrVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = AliasOrVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an alias (letters, digits, `_`, `-`) or a version number >= 1")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<AliasOrVersion, E> {
                let valid = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if valid {
                    Ok(AliasOrVersion::Alias(value.to_owned()))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(value), &self))
                }
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<AliasOrVersion, E> {
                if value == 0 {
                    Err(E::invalid_value(de::Unexpected::Unsigned(value), &self))
                } else {
                    Ok(AliasOrVersion::Version(value))
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<AliasOrVersion, E> {
                u64::try_from(value)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
                    .and_then(|value| self.visit_u64(value))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl schemars::JsonSchema for AliasOrVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AliasOrVersion".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An alias (letters, digits, `_`, `-`) or a version number >= 1",
            "anyOf": [
                {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                {"type": "integer", "minimum": 1}
            ]
        })
    }
}

/// One line describing where a reader reads.
pub(crate) fn describe_reader(reader: &Reader) -> String {
    format!("{} {}", reader_kind(reader), reader_path(reader).display())
}

/// One line describing where a writer writes.
pub(crate) fn describe_writer(writer: &Writer) -> String {
    format!("{} {}", writer_kind(writer), writer_path(writer).display())
}

fn reader_kind(reader: &Reader) -> &'static str {
    match reader {
        Reader::ParquetReader(_) => "Parquet",
        Reader::CsvReader(_) => "CSV",
    }
}

fn reader_path(reader: &Reader) -> &std::path::Path {
    match reader {
        Reader::ParquetReader(reader) => &reader.path,
        Reader::CsvReader(reader) => &reader.path,
    }
}

fn writer_kind(writer: &Writer) -> &'static str {
    match writer {
        Writer::ParquetWriter(_) => "Parquet",
        Writer::CsvWriter(_) => "CSV",
    }
}

fn writer_path(writer: &Writer) -> &std::path::Path {
    match writer {
        Writer::ParquetWriter(writer) => &writer.path,
        Writer::CsvWriter(writer) => &writer.path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_or_version_parses_both_forms() {
        let parse = |text: &str| serde_yaml::from_str::<AliasOrVersion>(text);
        assert_eq!(
            parse("Champion").expect("alias"),
            AliasOrVersion::Alias("Champion".into())
        );
        assert_eq!(parse("3").expect("version"), AliasOrVersion::Version(3));
        assert!(parse("0").is_err());
        assert!(parse("-2").is_err());
        assert!(parse("\"bad alias\"").is_err());
    }
}
