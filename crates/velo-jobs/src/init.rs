//! `velo init`: a project for a new dataset, planned from its data.
//!
//! [`plan`] takes the data as read (inputs and targets, or one table and the target's name)
//! and decides everything a project needs, without touching a file:
//!
//! - the **schemas** of the inputs, the targets and the outputs, inferred by velo-core's
//!   [`infer_schema`] with a comment on each column saying what was seen;
//! - the **features**: string columns with few values become categories; identifiers, dates,
//!   constants, free text and empty columns are left out; then velo-models' leakage check runs
//!   on the training rows, and the columns that (nearly) determine the target are left out too,
//!   each with the finding that condemned it;
//! - the **split**: by time when a time column is named (the last rows are the test set, and
//!   validation and tuning folds respect time), else a seeded shuffle;
//! - the **job configs** of the lifecycle (tuning, training, promotion, inference, evaluations,
//!   explanations) and of the scenario suite and monitoring, all in the layout `velo project`
//!   runs.
//!
//! The caller writes [`ProjectPlan::files`] and the four [`ProjectPlan::data`] batches.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{SortOptions, take_record_batch};
use arrow::datatypes::DataType;
use velo_core::schemas::infer::{
    ColumnRole, InferOptions, InferredSchema, column_list, infer_schema,
};
use velo_core::schemas::{ColumnSpec, ColumnType, Schema};
use velo_core::splitters::{TestSize, TrainTestSplitter};
use velo_models::FeaturesConfig;
use velo_models::leakage::{LeakageFinding, LeakageOptions, check_inputs};

use crate::JobError;

/// One table as read, and where it came from (for messages and comments).
#[derive(Debug, Clone)]
pub struct Table {
    /// The rows.
    pub data: RecordBatch,
    /// Where they came from, as the user named it.
    pub source: String,
    /// The index the file itself declares (pandas metadata), if any.
    pub index: Option<String>,
}

/// What [`plan`] is told besides the data.
#[derive(Debug, Clone, PartialEq)]
pub struct InitOptions {
    /// The project's name: its MLflow experiment and registered model.
    pub name: String,
    /// The target column: required when the inputs hold it, optional with a targets table of
    /// one column besides the index.
    pub target: Option<String>,
    /// The index column (else the one the inputs file declares, if any).
    pub index: Option<String>,
    /// The column rows are ordered by in time: the split follows it.
    pub time: Option<String>,
    /// The share of rows, at the end (or drawn at random), held out as the test set.
    pub test_ratio: f64,
    /// The most distinct values listed as allowed or encoded as categories.
    pub max_categories: usize,
    /// The seed of the shuffled split (without a time column).
    pub seed: u64,
}

impl InitOptions {
    /// Options for a project named `name`, with the defaults: no target, index or time column
    /// named, 20% held out, up to 24 categories, seed 42.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            target: None,
            index: None,
            time: None,
            test_ratio: 0.2,
            max_categories: 24,
            seed: 42,
        }
    }
}

/// A file of the project: its path relative to the project's directory and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFile {
    /// The path, relative (`configs/training.yaml`).
    pub path: String,
    /// The contents.
    pub text: String,
}

/// The four datasets of a project, as `data/*.parquet` holds them.
#[derive(Debug, Clone)]
pub struct ProjectData {
    /// Inputs of the training rows.
    pub inputs_train: RecordBatch,
    /// Targets of the training rows.
    pub targets_train: RecordBatch,
    /// Inputs of the test rows.
    pub inputs_test: RecordBatch,
    /// Targets of the test rows.
    pub targets_test: RecordBatch,
}

/// Everything `velo init` writes, and why.
#[derive(Debug, Clone)]
pub struct ProjectPlan {
    /// The schema, config and text files.
    pub files: Vec<ProjectFile>,
    /// The datasets.
    pub data: ProjectData,
    /// The index column, if any (the data files keep it as a column).
    pub index: Option<String>,
    /// The target column.
    pub target: String,
    /// What was decided, one sentence each, for the terminal.
    pub notes: Vec<String>,
}

/// The job configs a plan writes, as `configs/<name>.yaml`.
pub const CONFIGS: [&str; 8] = [
    "tuning",
    "training",
    "promotion",
    "inference",
    "evaluations",
    "explanations",
    "scenarios",
    "monitoring",
];

/// The paths of the data files, relative to the project.
pub const DATA_FILES: [&str; 4] = [
    "data/inputs_train.parquet",
    "data/targets_train.parquet",
    "data/inputs_test.parquet",
    "data/targets_test.parquet",
];

/// Plans a project for `inputs` and `targets` (or `inputs` alone, holding the target named
/// in the options); see the module docs.
///
/// # Errors
/// [`JobError::Config`] for options that do not fit the data (a missing column, no target,
/// a non-numeric target, a time column that cannot order rows, too few rows); [`JobError::Data`]
/// for inputs and targets that do not line up.
pub fn plan(
    inputs: &Table,
    targets: Option<&Table>,
    options: &InitOptions,
) -> Result<ProjectPlan, JobError> {
    let mut notes = Vec::new();
    let index = choose_index(inputs, options, &mut notes)?;
    let (features, labels, target) = separate(inputs, targets, index.as_deref(), options)?;
    check_target(&labels, &target, targets.unwrap_or(inputs))?;
    let rows = features.num_rows();
    if rows < 20 {
        return Err(JobError::Config(format!(
            "{} has {rows} rows: at least 20 are needed to train, validate and test a model",
            inputs.source
        )));
    }
    // Order the rows, then hold out the last ones (by time) or a seeded draw.
    let (features, labels) = match &options.time {
        Some(time) => {
            let order = time_order(&features, time, &inputs.source)?;
            notes.push(format!(
                "rows are ordered by `{time}`: the last {:.0}% are the test set, and validation \
                 and tuning folds come after their training rows",
                options.test_ratio * 100.0
            ));
            (take(&features, &order)?, take(&labels, &order)?)
        }
        None => {
            notes.push(format!(
                "no time column (--time): the test set is {:.0}% of the rows drawn at random \
                 (seed {}); name one if rows are ordered in time, or the scores will flatter",
                options.test_ratio * 100.0,
                options.seed
            ));
            (features, labels)
        }
    };
    let split = TrainTestSplitter {
        shuffle: options.time.is_none(),
        test_size: TestSize::Ratio(options.test_ratio),
        random_state: options.seed,
    }
    .split(rows)?;
    let positions = |rows: &[usize]| {
        UInt32Array::from_iter_values(rows.iter().map(|&row| u32::try_from(row).unwrap_or(0)))
    };
    let (train, test) = (positions(&split.train), positions(&split.test));
    let data = ProjectData {
        inputs_train: take(&features, &train)?,
        targets_train: take(&labels, &train)?,
        inputs_test: take(&features, &test)?,
        targets_test: take(&labels, &test)?,
    };

    let infer = InferOptions {
        max_categories: options.max_categories,
        index: index.clone(),
    };
    let schema_error = |what: &str, error: velo_core::schemas::infer::InferError| {
        JobError::Config(format!("cannot infer the {what} schema: {error}"))
    };
    let inputs_schema =
        infer_schema("inputs", &features, &infer).map_err(|e| schema_error("inputs", e))?;
    let targets_schema =
        infer_schema("targets", &labels, &infer).map_err(|e| schema_error("targets", e))?;

    // Features: what the values say, then what the leakage check says.
    let mut categoricals = Vec::new();
    let mut drop = Vec::new();
    for column in &inputs_schema.columns {
        match column.role {
            ColumnRole::Categorical => categoricals.push(column.spec.name.clone()),
            ColumnRole::Numeric | ColumnRole::Index => {}
            _ => drop.push(column.spec.name.clone()),
        }
    }
    let mut leaks: BTreeMap<String, String> = BTreeMap::new();
    find_leaks(
        &inputs_schema.schema,
        &data.inputs_train,
        &data.targets_train,
        &target,
        &mut categoricals,
        &mut drop,
        &mut leaks,
    )?;
    for (finding, columns) in by_finding(&leaks) {
        notes.push(format!(
            "leakage: {} left out of the features, because {finding}: {} would not be known \
             when predicting",
            columns.join(" and "),
            if columns.len() == 1 { "it" } else { "they" }
        ));
    }
    let model_features: Vec<&str> = inputs_schema
        .columns
        .iter()
        .map(|column| column.spec.name.as_str())
        .filter(|name| Some(*name) != index.as_deref() && !drop.iter().any(|d| d == name))
        .collect();
    if model_features.is_empty() {
        return Err(JobError::Config(format!(
            "no column of {} is left for the model to learn from (left out: {})",
            inputs.source,
            drop.join(", ")
        )));
    }
    notes.push(format!(
        "{} features: {}{}",
        model_features.len(),
        model_features.join(", "),
        if categoricals.is_empty() {
            String::new()
        } else {
            format!(" ({} as categories)", categoricals.join(", "))
        }
    ));
    let left_out: Vec<String> = drop
        .iter()
        .filter(|column| !leaks.contains_key(*column))
        .cloned()
        .collect();
    if !left_out.is_empty() {
        notes.push(format!(
            "left out of the features (see the schema's comments): {}",
            left_out.join(", ")
        ));
    }

    let layout = Layout {
        options,
        index: index.as_deref(),
        target: &target,
        inputs: &inputs_schema,
        categoricals: &categoricals,
        drop: &drop,
        leaks: &leaks,
        rows_test: data.inputs_test.num_rows(),
        rows_train: data.inputs_train.num_rows(),
        time_span_days: options
            .time
            .as_deref()
            .and_then(|time| span_days(&data.inputs_test, time)),
    };
    let files = layout.files(inputs, targets, &targets_schema);
    Ok(ProjectPlan {
        files,
        data,
        index,
        target,
        notes,
    })
}

fn choose_index(
    inputs: &Table,
    options: &InitOptions,
    notes: &mut Vec<String>,
) -> Result<Option<String>, JobError> {
    if let Some(index) = &options.index {
        if inputs.data.schema().index_of(index).is_err() {
            return Err(JobError::Config(format!(
                "--index {index}: {} has no column `{index}` (its columns: {})",
                inputs.source,
                column_list(&inputs.data)
            )));
        }
        return Ok(Some(index.clone()));
    }
    match &inputs.index {
        Some(index) if inputs.data.schema().index_of(index).is_ok() => {
            notes.push(format!(
                "the index is `{index}`, as the file's pandas metadata says"
            ));
            Ok(Some(index.clone()))
        }
        _ => {
            notes.push(
                "no index (--index, or a named pandas index in the file): rows of inputs, \
                 targets and predictions line up by position"
                    .to_owned(),
            );
            Ok(None)
        }
    }
}

/// The features table and the targets table (index and target column), lined up row by row.
fn separate(
    inputs: &Table,
    targets: Option<&Table>,
    index: Option<&str>,
    options: &InitOptions,
) -> Result<(RecordBatch, RecordBatch, String), JobError> {
    let select = |batch: &RecordBatch, names: &[&str]| -> Result<RecordBatch, JobError> {
        let positions: Vec<usize> = names
            .iter()
            .filter_map(|name| batch.schema().index_of(name).ok())
            .collect();
        batch
            .project(&positions)
            .map_err(|error| JobError::Data(format!("cannot select columns: {error}")))
    };
    let Some(targets) = targets else {
        let Some(target) = &options.target else {
            return Err(JobError::Config(format!(
                "no targets: give --targets FILE, or --target COLUMN to take the target from {} \
                 (its columns: {})",
                inputs.source,
                column_list(&inputs.data)
            )));
        };
        if inputs.data.schema().index_of(target).is_err() {
            return Err(JobError::Config(format!(
                "--target {target}: {} has no column `{target}` (its columns: {})",
                inputs.source,
                column_list(&inputs.data)
            )));
        }
        let schema = inputs.data.schema();
        let features: Vec<&str> = schema
            .fields()
            .iter()
            .map(|field| field.name().as_str())
            .filter(|name| name != target)
            .collect();
        let labels: Vec<&str> = index.into_iter().chain([target.as_str()]).collect();
        return Ok((
            select(&inputs.data, &features)?,
            select(&inputs.data, &labels)?,
            target.clone(),
        ));
    };
    let schema = targets.data.schema();
    let candidates: Vec<&str> = schema
        .fields()
        .iter()
        .map(|field| field.name().as_str())
        .filter(|name| Some(*name) != index)
        .collect();
    let target = match &options.target {
        Some(target) if candidates.contains(&target.as_str()) => target.clone(),
        Some(target) => {
            return Err(JobError::Config(format!(
                "--target {target}: {} has no column `{target}` (its columns: {})",
                targets.source,
                column_list(&targets.data)
            )));
        }
        None => match candidates.as_slice() {
            [one] => (*one).to_owned(),
            _ => {
                return Err(JobError::Config(format!(
                    "{} has {} columns besides the index: name the target with --target (its \
                     columns: {})",
                    targets.source,
                    candidates.len(),
                    column_list(&targets.data)
                )));
            }
        },
    };
    let features = match inputs.data.schema().index_of(&target) {
        Ok(_) => {
            let schema = inputs.data.schema();
            let names: Vec<&str> = schema
                .fields()
                .iter()
                .map(|field| field.name().as_str())
                .filter(|name| *name != target)
                .collect();
            select(&inputs.data, &names)?
        }
        Err(_) => inputs.data.clone(),
    };
    let keyed = index.filter(|index| targets.data.schema().index_of(index).is_ok());
    let labels: Vec<&str> = keyed.into_iter().chain([target.as_str()]).collect();
    let labels = select(&targets.data, &labels)?;
    let labels = match (index, keyed) {
        (Some(index), Some(_)) => align(&features, &labels, index, inputs, targets)?,
        _ if labels.num_rows() == features.num_rows() => match index {
            // Targets without the index take the inputs' index, row by row.
            Some(index) => {
                let column =
                    features.column(features.schema().index_of(index).map_err(|error| {
                        JobError::Data(format!("cannot read the index: {error}"))
                    })?);
                let mut columns = vec![column.clone()];
                columns.extend(labels.columns().iter().cloned());
                RecordBatch::try_from_iter(
                    [index.to_owned(), target.clone()].into_iter().zip(columns),
                )
                .map_err(|error| JobError::Data(format!("cannot build the targets: {error}")))?
            }
            None => labels,
        },
        _ => {
            return Err(JobError::Data(format!(
                "{} has {} rows and {} has {}: without an index in both, rows line up by \
                 position, so the counts must match (name the index with --index)",
                inputs.source,
                features.num_rows(),
                targets.source,
                labels.num_rows()
            )));
        }
    };
    Ok((features, labels, target))
}

/// The targets reordered to follow the inputs' index; every input row must have a target.
fn align(
    features: &RecordBatch,
    labels: &RecordBatch,
    index: &str,
    inputs: &Table,
    targets: &Table,
) -> Result<RecordBatch, JobError> {
    let key = |batch: &RecordBatch| -> Result<Vec<String>, JobError> {
        let column = batch
            .column_by_name(index)
            .ok_or_else(|| JobError::Data(format!("no index column `{index}`")))?;
        let text = arrow::compute::cast(column, &DataType::Utf8)
            .map_err(|error| JobError::Data(format!("cannot read the index: {error}")))?;
        let text = text
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| JobError::Data("cannot read the index as text".to_owned()))?;
        Ok(text
            .iter()
            .map(|v| v.unwrap_or_default().to_owned())
            .collect())
    };
    let input_keys = key(features)?;
    let target_keys = key(labels)?;
    if input_keys == target_keys {
        return Ok(labels.clone());
    }
    let positions: BTreeMap<&str, usize> = target_keys
        .iter()
        .enumerate()
        .map(|(row, key)| (key.as_str(), row))
        .collect();
    let mut order = Vec::with_capacity(input_keys.len());
    let mut missing = Vec::new();
    for key in &input_keys {
        match positions.get(key.as_str()) {
            Some(&row) => order.push(u32::try_from(row).unwrap_or(0)),
            None => missing.push(key.as_str()),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).copied().collect();
        return Err(JobError::Data(format!(
            "{} rows of {} have no target in {} ({index} {}{})",
            missing.len(),
            inputs.source,
            targets.source,
            shown.join(", "),
            if missing.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        )));
    }
    take(labels, &UInt32Array::from(order))
}

fn check_target(labels: &RecordBatch, target: &str, source: &Table) -> Result<(), JobError> {
    let column = labels
        .column_by_name(target)
        .ok_or_else(|| JobError::Config(format!("no target column `{target}`")))?;
    let numeric = column.data_type().is_numeric() || column.data_type() == &DataType::Boolean;
    if !numeric {
        return Err(JobError::Config(format!(
            "the target `{target}` of {} holds {}, not numbers: velo trains regression models",
            source.source,
            column.data_type()
        )));
    }
    if column.null_count() > 0 {
        return Err(JobError::Data(format!(
            "the target `{target}` of {} is missing in {} rows: drop them or fill them first",
            source.source,
            column.null_count()
        )));
    }
    Ok(())
}

/// Row positions sorting `batch` by `time` (stable, missing values last).
fn time_order(batch: &RecordBatch, time: &str, source: &str) -> Result<UInt32Array, JobError> {
    let column = batch.column_by_name(time).ok_or_else(|| {
        JobError::Config(format!(
            "--time {time}: {source} has no column `{time}` (its columns: {})",
            column_list(batch)
        ))
    })?;
    let sortable = column.data_type().is_numeric()
        || column.data_type().is_temporal()
        || matches!(column.data_type(), DataType::Utf8 | DataType::LargeUtf8);
    if !sortable {
        return Err(JobError::Config(format!(
            "--time {time}: column `{time}` holds {}, which cannot order rows in time",
            column.data_type()
        )));
    }
    if column.null_count() > 0 {
        return Err(JobError::Data(format!(
            "--time {time}: column `{time}` is missing in {} rows, which cannot be placed in time",
            column.null_count()
        )));
    }
    // Stable: rows at the same time keep the file's order.
    let positions: ArrayRef = std::sync::Arc::new(UInt32Array::from_iter_values(
        0..u32::try_from(batch.num_rows()).unwrap_or(u32::MAX),
    ));
    let keyed = RecordBatch::try_from_iter([("time", column.clone()), ("row", positions)])
        .map_err(|error| JobError::Data(format!("cannot sort by `{time}`: {error}")))?;
    let columns = [
        arrow::compute::SortColumn {
            values: keyed.column(0).clone(),
            options: Some(SortOptions::default()),
        },
        arrow::compute::SortColumn {
            values: keyed.column(1).clone(),
            options: Some(SortOptions::default()),
        },
    ];
    arrow::compute::lexsort_to_indices(&columns, None)
        .map_err(|error| JobError::Data(format!("cannot sort by `{time}`: {error}")))
}

fn take(batch: &RecordBatch, rows: &UInt32Array) -> Result<RecordBatch, JobError> {
    take_record_batch(batch, rows)
        .map_err(|error| JobError::Data(format!("cannot reorder rows: {error}")))
}

/// The days the `time` column spans in `batch`, when it is a date or timestamp (or ISO text).
fn span_days(batch: &RecordBatch, time: &str) -> Option<f64> {
    let column = batch.column_by_name(time)?;
    let spec = ColumnSpec::new(time, ColumnType::Datetime);
    let micros = Schema::new(vec![spec])
        .validate(&RecordBatch::try_from_iter([(time, column.clone())]).ok()?)
        .ok()?;
    let values = micros
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()?;
    let low = arrow::compute::min(values)?;
    let high = arrow::compute::max(values)?;
    Some((high - low) as f64 / 86_400e6)
}

/// Runs velo-models' leakage check on the training rows, leaving out the columns it condemns
/// until it finds nothing (three rounds at most).
fn find_leaks(
    schema: &Schema,
    inputs: &RecordBatch,
    targets: &RecordBatch,
    target: &str,
    categoricals: &mut Vec<String>,
    drop: &mut Vec<String>,
    leaks: &mut BTreeMap<String, String>,
) -> Result<(), JobError> {
    let validated = schema.validate(inputs).map_err(|error| {
        JobError::Data(format!(
            "the inferred inputs schema rejects its own data: {error}"
        ))
    })?;
    let values = targets
        .column_by_name(target)
        .map(|column| arrow::compute::cast(column, &DataType::Float64))
        .transpose()
        .map_err(|error| JobError::Data(format!("cannot read the target: {error}")))?
        .ok_or_else(|| JobError::Data(format!("no target column `{target}`")))?;
    let values: Vec<f64> = values
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .map(|values| values.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
        .unwrap_or_default();
    let columns: BTreeSet<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
    for _round in 0..3 {
        let features = FeaturesConfig {
            categoricals: categoricals.clone(),
            drop: drop.clone(),
            ..FeaturesConfig::default()
        };
        let report = check_inputs(
            schema,
            &features,
            &validated,
            &values,
            &LeakageOptions::default(),
        )?;
        if report.is_clean() {
            return Ok(());
        }
        for finding in &report.findings {
            let names: Vec<&String> = match finding {
                LeakageFinding::Correlation { feature, .. } => vec![feature],
                LeakageFinding::Linear { features, .. } => features.iter().collect(),
                _ => Vec::new(),
            };
            for name in names {
                // A one-hot feature is `{column}_{category}`: condemn its column.
                let column = if columns.contains(name) {
                    Some(name.clone())
                } else {
                    categoricals
                        .iter()
                        .find(|column| name.starts_with(&format!("{column}_")))
                        .cloned()
                };
                if let Some(column) = column
                    && !drop.contains(&column)
                {
                    categoricals.retain(|c| *c != column);
                    drop.push(column.clone());
                    leaks.insert(column, finding.to_string());
                }
            }
        }
    }
    Ok(())
}

/// The columns each leakage finding condemned, quoted, by finding.
fn by_finding(leaks: &BTreeMap<String, String>) -> BTreeMap<&str, Vec<String>> {
    let mut grouped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (column, finding) in leaks {
        grouped
            .entry(finding.as_str())
            .or_default()
            .push(format!("`{column}`"));
    }
    grouped
}

/// What the config files are written from.
struct Layout<'a> {
    options: &'a InitOptions,
    index: Option<&'a str>,
    target: &'a str,
    inputs: &'a InferredSchema,
    categoricals: &'a [String],
    drop: &'a [String],
    leaks: &'a BTreeMap<String, String>,
    rows_train: usize,
    rows_test: usize,
    time_span_days: Option<f64>,
}

/// A YAML flow list of names, quoted as JSON strings where needed.
fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| yaml_name(name)).collect();
    format!("[{}]", quoted.join(", "))
}

fn yaml_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        name.to_owned()
    } else {
        serde_json::Value::String(name.to_owned()).to_string()
    }
}

/// A number for a config: a few significant digits.
fn number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return "0.0".to_owned();
    }
    let digits = (3 - value.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

impl Layout<'_> {
    fn files(
        &self,
        inputs: &Table,
        targets: Option<&Table>,
        targets_schema: &InferredSchema,
    ) -> Vec<ProjectFile> {
        let from = match targets {
            Some(targets) => format!("{} and {}", inputs.source, targets.source),
            None => inputs.source.clone(),
        };
        let header = |what: &str| {
            format!(
                "The {what}, inferred by `velo init` from {from}.\nEach comment says what was \
                 seen in the column and why the rule follows; edit freely: every dataset is \
                 validated against this file."
            )
        };
        let file = |path: &str, text: String| ProjectFile {
            path: path.to_owned(),
            text,
        };
        vec![
            file(
                "configs/schemas/inputs.yaml",
                self.inputs.to_yaml(&header("model's inputs")),
            ),
            file(
                "configs/schemas/targets.yaml",
                targets_schema.to_yaml(&header("regression target")),
            ),
            file("configs/schemas/outputs.yaml", self.outputs_schema()),
            file("configs/data.yaml", self.data_spec()),
            file("configs/tuning.yaml", self.tuning()),
            file("configs/training.yaml", self.training()),
            file("configs/promotion.yaml", self.promotion()),
            file("configs/inference.yaml", self.inference()),
            file("configs/evaluations.yaml", self.evaluations()),
            file("configs/explanations.yaml", self.explanations()),
            file("configs/scenarios.yaml", self.scenarios()),
            file("configs/monitoring.yaml", self.monitoring()),
            file(".gitignore", "mlruns/\noutputs/\n.velo/\n".to_owned()),
            file("README.md", self.readme(&from)),
        ]
    }

    fn services(&self) -> String {
        let name = yaml_name(&self.options.name);
        format!("  services:\n    mlflow: {{experiment_name: {name}, registry_name: {name}}}\n")
    }

    fn outputs_schema(&self) -> String {
        let mut text = String::from(
            "# The model's predictions, one row per input row (written by `velo init`).\n\
             name: outputs\n",
        );
        if let Some(index) = self.index {
            let spec = self.inputs.column(index).map(|column| &column.spec);
            let _ = writeln!(text, "index: {}", yaml_name(index));
            text.push_str("columns:\n");
            let data_type = spec.map_or(ColumnType::Int64, |spec| spec.data_type);
            let _ = writeln!(
                text,
                "  - {{name: {}, type: {data_type}, description: the inputs' index}}",
                yaml_name(index)
            );
        } else {
            text.push_str("columns:\n");
        }
        let _ = writeln!(
            text,
            "  - {{name: prediction, type: float64, description: {}}}",
            serde_json::Value::String(format!("predicted {}", self.target))
        );
        text
    }

    fn data_spec(&self) -> String {
        format!(
            "# The data layout of the project (velo-io's `DataSpec`); schema paths are relative \
             to this file.\n# `velo init` wrote data/ already: {} training rows, {} test rows.\n\
             inputs_schema: schemas/inputs.yaml\ntargets_schema: schemas/targets.yaml\n\
             test_ratio: {}\n",
            self.rows_train, self.rows_test, self.options.test_ratio
        )
    }

    fn features(&self) -> String {
        let mut text = String::from("    features:\n");
        if !self.categoricals.is_empty() {
            let _ = writeln!(text, "      categoricals: {}", list(self.categoricals));
        }
        for (finding, columns) in by_finding(self.leaks) {
            let _ = writeln!(
                text,
                "      # leakage: {} dropped, because {finding}",
                columns.join(" and ")
            );
        }
        if self.drop.is_empty() {
            text.push_str("      drop: []\n");
        } else {
            let _ = writeln!(text, "      drop: {}", list(self.drop));
        }
        text
    }

    fn readers(&self, split: &str, targets: bool) -> String {
        let mut text =
            format!("  inputs: {{KIND: ParquetReader, path: ../data/inputs_{split}.parquet}}\n");
        if targets {
            let _ = writeln!(
                text,
                "  targets: {{KIND: ParquetReader, path: ../data/targets_{split}.parquet}}"
            );
        }
        text
    }

    fn validation_splitter(&self) -> String {
        format!(
            "{{KIND: TrainTestSplitter, shuffle: {}, test_size: 0.1}}",
            self.options.time.is_none()
        )
    }

    fn tuning(&self) -> String {
        let splitter = if self.options.time.is_some() {
            format!(
                "{{KIND: TimeSeriesSplitter, n_splits: 3, test_size: {}}}",
                (self.rows_train / 4).max(1)
            )
        } else {
            "{KIND: TrainTestSplitter, shuffle: true, test_size: 0.2}".to_owned()
        };
        format!(
            "# Search the forest's depth on the training split.\n# Run: velo run \
             configs/tuning.yaml\njob:\n  KIND: TuningJob\n{}  schemas: {{inputs: \
             schemas/inputs.yaml, targets: schemas/targets.yaml}}\n  model:\n    \
             KIND: RandomForestModel\n    n_estimators: 50\n{}  metric: {{KIND: \
             RegressionMetric, name: mean_squared_error}}\n  splitter: {splitter}\n  searcher:\n    \
             KIND: GridCVSearcher\n    param_grid: {{max_depth: [6, 12, 18]}}\n{}",
            self.readers("train", true),
            self.features(),
            self.services()
        )
    }

    fn training(&self) -> String {
        format!(
            "# Train a random forest, score it on the last tenth of the training split{}, \
             register it.\n# Run: velo run configs/training.yaml\njob:\n  KIND: TrainingJob\n{}  \
             schemas:\n    inputs: schemas/inputs.yaml\n    targets: \
             schemas/targets.yaml\n    outputs: schemas/outputs.yaml\n  model:\n    \
             KIND: RandomForestModel\n    n_estimators: 100\n    max_depth: 16\n    seed: 42\n{}  \
             metrics:\n    - {{KIND: RegressionMetric, name: root_mean_squared_error}}\n    - \
             {{KIND: RegressionMetric, name: mean_absolute_error}}\n    - {{KIND: \
             RegressionMetric, name: r2_score}}\n  splitter: {}\n{}# Profiles adapt the job: velo \
             run configs/training.yaml --profile dev\nprofiles:\n  dev:\n    job:\n      model: \
             {{n_estimators: 20}}\n",
            if self.options.time.is_some() {
                " (in time)"
            } else {
                " (drawn at random)"
            },
            self.readers("train", true),
            self.features(),
            self.validation_splitter(),
            self.services()
        )
    }

    fn promotion(&self) -> String {
        format!(
            "# Point the Champion alias at the latest registered version.\n# Run: velo run \
             configs/promotion.yaml\njob:\n  KIND: PromotionJob\n  alias: Champion\n{}",
            self.services()
        )
    }

    fn inference(&self) -> String {
        let index = self
            .index
            .map(|index| format!(", index: {}", yaml_name(index)))
            .unwrap_or_default();
        format!(
            "# Predict the test inputs with the Champion model.\n# Run: velo run \
             configs/inference.yaml\njob:\n  KIND: InferenceJob\n{}  outputs: {{KIND: \
             ParquetWriter, path: ../outputs/predictions_test.parquet{index}}}\n  schemas: {{inputs: \
             schemas/inputs.yaml, outputs: schemas/outputs.yaml}}\n  \
             alias_or_version: Champion\n{}",
            self.readers("test", false),
            self.services()
        )
    }

    fn evaluations(&self) -> String {
        format!(
            "# Score the Champion model on the test split; fail when it does no better than \
             predicting the mean\n# (R² <= 0): raise the threshold to the quality you need.\n# \
             Run: velo run configs/evaluations.yaml\njob:\n  KIND: EvaluationsJob\n{}  schemas:\n    \
             inputs: schemas/inputs.yaml\n    targets: schemas/targets.yaml\n    \
             outputs: schemas/outputs.yaml\n  alias_or_version: Champion\n  metrics:\n    \
             - {{KIND: RegressionMetric, name: root_mean_squared_error}}\n    - {{KIND: \
             RegressionMetric, name: mean_absolute_error}}\n    - {{KIND: RegressionMetric, \
             name: r2_score}}\n  thresholds:\n    r2_score: {{threshold: 0.0, \
             greater_is_better: true}}\n{}",
            self.readers("test", true),
            self.services()
        )
    }

    fn explanations(&self) -> String {
        format!(
            "# Explain the Champion model: global importances and per-sample contributions.\n# \
             Run: velo run configs/explanations.yaml\njob:\n  KIND: ExplanationsJob\n  \
             inputs_samples: {{KIND: ParquetReader, path: ../data/inputs_test.parquet, limit: \
             100}}\n  models_explanations: {{KIND: ParquetWriter, path: \
             ../outputs/models_explanations.parquet}}\n  samples_explanations: {{KIND: \
             ParquetWriter, path: ../outputs/samples_explanations.parquet}}\n  schemas: {{inputs: \
             schemas/inputs.yaml}}\n  alias_or_version: Champion\n{}",
            self.services()
        )
    }

    /// The numeric features with the widest spread first (at most `count`).
    fn measured(&self, count: usize) -> Vec<(&str, f64)> {
        let mut columns: Vec<(&str, f64)> = self
            .inputs
            .columns
            .iter()
            .filter(|column| {
                column.role == ColumnRole::Numeric
                    && matches!(
                        column.spec.data_type,
                        ColumnType::Float32 | ColumnType::Float64
                    )
                    && !self.drop.contains(&column.spec.name)
            })
            .filter_map(|column| {
                column
                    .std
                    .filter(|std| *std > 0.0)
                    .map(|std| (column.spec.name.as_str(), std))
            })
            .collect();
        columns.truncate(count);
        columns
    }

    fn scenarios(&self) -> String {
        let mut excluded: Vec<String> = self.index.map(str::to_owned).into_iter().collect();
        excluded.extend(self.drop.iter().cloned());
        let mut text = format!(
            "# Test the Champion model before shipping it: the whole test split, noise on the \
             measured\n# columns (sweeps find how much breaks it), missing values, unseen \
             categories, duplicated rows\n# and a missing column. Written by `velo init`: add \
             slices, directional expectations and\n# hand-written cases that say what the \
             model must get right.\n# Run: velo run configs/scenarios.yaml   (exit 1 names \
             each failed scenario)\njob:\n  KIND: ScenariosJob\n{}  schemas:\n    inputs: \
             schemas/inputs.yaml\n    targets: schemas/targets.yaml\n  \
             alias_or_version: Champion\n  suite:\n    metrics: [root_mean_squared_error, \
             mean_absolute_error, r2_score]\n    auto_slices: {{count: 3, max_depth: 2, exclude: \
             {}}}\n    scenarios:\n      - name: quality\n        description: the whole test \
             split does better than predicting the mean\n        expect: [{{KIND: MetricBound, \
             metric: r2_score, min: 0.0}}]\n",
            self.readers("test", true),
            list(&excluded)
        );
        let measured = self.measured(5);
        for (column, std) in &measured {
            let _ = write!(
                text,
                "      - name: {name}\n        description: {description}\n        perturb: \
                 {{KIND: Noise, columns: [{column_name}], std: {std_small}}}\n        expect: \
                 [{{KIND: Degradation, metric: r2_score, max_absolute: 0.05}}]\n        sweep: \
                 {{from: 0.0, to: {std_wide}, steps: 5, precision: {precision}}}\n",
                name = yaml_name(&format!("{column}_noise")),
                description = serde_json::Value::String(format!(
                    "{column} read with noise of a tenth of its standard deviation ({})",
                    number(*std)
                )),
                column_name = yaml_name(column),
                std_small = number(std / 10.0),
                std_wide = number(std * 2.0),
                precision = number(std / 100.0),
            );
        }
        if let Some((column, _)) = measured.first() {
            let _ = write!(
                text,
                "      - name: {name}\n        perturb: {{KIND: SetMissing, columns: \
                 [{column_name}], rate: 0.1}}\n        expect: [{{KIND: Finite}}]\n",
                name = yaml_name(&format!("{column}_missing")),
                column_name = yaml_name(column),
            );
        }
        for column in self.categoricals.iter().take(3) {
            let _ = write!(
                text,
                "      - name: {name}\n        perturb: {{KIND: UnseenCategory, columns: \
                 [{column_name}], value: \"never seen\", rate: 0.05}}\n        expect: [{{KIND: \
                 Finite}}]\n",
                name = yaml_name(&format!("{column}_unseen")),
                column_name = yaml_name(column),
            );
        }
        text.push_str(
            "      - name: duplicated_rows\n        perturb: {KIND: DuplicateRows, rate: 0.2}\n        \
             expect: [{KIND: Degradation, metric: r2_score, max_absolute: 0.05}]\n",
        );
        let feature = self
            .inputs
            .columns
            .iter()
            .find(|column| column.role.is_feature() && !self.drop.contains(&column.spec.name));
        if let Some(column) = feature {
            let _ = write!(
                text,
                "      - name: {name}\n        description: a feed without `{column}` is \
                 refused, not guessed\n        perturb: {{KIND: DropColumn, columns: \
                 [{column_name}]}}\n        expect: [{{KIND: Refusal}}]\n",
                name = yaml_name(&format!("{}_dropped", column.spec.name)),
                column = column.spec.name,
                column_name = yaml_name(&column.spec.name),
            );
        }
        let _ = write!(
            text,
            "  outputs:\n    table: {{KIND: ParquetWriter, path: ../outputs/scenarios.parquet}}\n    \
             junit: ../outputs/scenarios.xml\n    report: ../outputs/scenarios.html\n{}",
            self.services()
        );
        text
    }

    fn monitoring(&self) -> String {
        let time_column = self.options.time.as_deref().filter(|time| {
            self.inputs
                .column(time)
                .is_some_and(|column| column.role == ColumnRole::Time)
        });
        let window = match (time_column, self.time_span_days) {
            (Some(time), Some(days)) => {
                let every = if days > 120.0 {
                    "month"
                } else if days > 21.0 {
                    "week"
                } else if days > 3.0 {
                    "day"
                } else {
                    "hour"
                };
                format!("{{column: {}, every: {every}}}", yaml_name(time))
            }
            _ => format!("{{rows: {}}}", self.rows_test.div_ceil(4).max(1)),
        };
        let mut skip: Vec<String> = self.drop.to_vec();
        skip.retain(|column| Some(column.as_str()) != self.index);
        format!(
            "# Watch production: windows of new data against the profile of the data the \
             Champion was trained\n# on (stored with the model version), with the labels that \
             arrived. Here the test split stands in\n# for production.\n# Run: velo run \
             configs/monitoring.yaml   (add `fail_on_drift: true` to fail, and alert, on \
             drift)\njob:\n  KIND: MonitoringJob\n{}  schemas:\n    inputs: \
             schemas/inputs.yaml\n    targets: schemas/targets.yaml\n  \
             alias_or_version: Champion\n  window: {window}\n  # Columns the model does not \
             see.\n  skip: {}\n  metrics: [root_mean_squared_error, mean_absolute_error]\n  \
             outputs:\n    table: {{KIND: ParquetWriter, path: ../outputs/monitoring.parquet}}\n    \
             report: ../outputs/monitoring.html\n{}",
            self.readers("test", true),
            list(&skip),
            self.services()
        )
    }

    fn readme(&self, from: &str) -> String {
        format!(
            "# {name}\n\nA velo project for {from}, written by `velo init`.\n\n```sh\nvelo \
             project                          # tuning, training, promotion, inference, \
             evaluations, explanations\nvelo run configs/scenarios.yaml    # scenario tests of \
             the Champion\nvelo run configs/monitoring.yaml   # drift and decay, window by \
             window\nvelo serve --model-uri models:/{name}@Champion\n```\n\n- \
             `schemas/*.yaml`: the inferred schemas; each comment says why a rule was \
             chosen.\n- `configs/*.yaml`: one job each; paths in a config are relative to its file.\n- \
             `data/`: {train} training rows and {test} test rows ({split}).\n- Target: `{target}`; \
             index: {index}.\n",
            name = self.options.name,
            train = self.rows_train,
            test = self.rows_test,
            split = if self.options.time.is_some() {
                "the last rows in time are the test set"
            } else {
                "drawn at random"
            },
            target = self.target,
            index = self.index.map_or_else(
                || "none (rows line up by position)".to_owned(),
                |index| { format!("`{index}`") }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::Settings;

    const ROWS: i64 = 400;

    /// Rows in a scrambled order: an identifier, a day, a city, a temperature, two parts that
    /// add up to the target, free text, a constant, and the target.
    fn table() -> RecordBatch {
        let order: Vec<i64> = (0..ROWS).map(|r| (r * 37) % ROWS).collect();
        let column = |f: &dyn Fn(i64) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(order.iter().map(|&r| f(r))))
        };
        let part_a = |r: i64| ((r * 7) % 50) as f64;
        let part_b = |r: i64| ((r * 13) % 31) as f64 + (r % 5) as f64;
        RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(order.iter().map(|&r| r + 1))) as ArrayRef,
            ),
            (
                "day",
                Arc::new(StringArray::from_iter_values(order.iter().map(|&r| {
                    format!("2024-{:02}-{:02}", r / 28 % 12 + 1, r % 28 + 1)
                }))),
            ),
            (
                "city",
                Arc::new(StringArray::from_iter_values(
                    order
                        .iter()
                        .map(|&r| ["Paris", "Lyon", "Nice"][(r % 3) as usize]),
                )),
            ),
            ("temp", column(&|r| ((r * 3) % 40) as f64 - 5.0)),
            ("part_a", column(&part_a)),
            ("part_b", column(&part_b)),
            (
                "note",
                Arc::new(StringArray::from_iter_values(
                    order.iter().map(|&r| format!("note {}", r / 2)),
                )),
            ),
            ("same", column(&|_| 1.5)),
            ("demand", column(&|r| part_a(r) + part_b(r))),
        ])
        .unwrap()
    }

    fn options() -> InitOptions {
        InitOptions {
            target: Some("demand".to_owned()),
            index: Some("id".to_owned()),
            ..InitOptions::new("demo")
        }
    }

    fn one_table() -> Table {
        Table {
            data: table(),
            source: "demo.csv".to_owned(),
            index: None,
        }
    }

    /// A config's settings, as the loader reads them (profiles apart).
    fn settings(text: &str) -> Result<Settings, serde_yaml::Error> {
        let mut value: serde_yaml::Value = serde_yaml::from_str(text)?;
        if let Some(mapping) = value.as_mapping_mut() {
            mapping.remove("profiles");
        }
        serde_yaml::from_value(value)
    }

    fn file<'p>(plan: &'p ProjectPlan, path: &str) -> &'p str {
        &plan
            .files
            .iter()
            .find(|file| file.path == path)
            .unwrap()
            .text
    }

    #[test]
    fn features_leave_out_identifiers_dates_text_constants_and_leaks() {
        let plan = plan(&one_table(), None, &options()).unwrap();
        let training = settings(file(&plan, "configs/training.yaml")).unwrap();
        let crate::JobConfig::TrainingJob(job) = training.job else {
            panic!("a training job");
        };
        let features = job.model.features();
        assert_eq!(features.categoricals, ["city"]);
        let mut drop = features.drop.clone();
        drop.sort();
        assert_eq!(drop, ["day", "note", "part_a", "part_b", "same"]);
        let leak = plan
            .notes
            .iter()
            .find(|note| note.starts_with("leakage"))
            .unwrap();
        assert!(leak.contains("`part_a` and `part_b`"), "{leak}");
        // Every config is a valid job, and the schemas accept the data written.
        for config in CONFIGS {
            let text = file(&plan, &format!("configs/{config}.yaml"));
            settings(text).unwrap_or_else(|error| panic!("{config}: {error}\n{text}"));
        }
        let inputs: Schema =
            serde_yaml::from_str(file(&plan, "configs/schemas/inputs.yaml")).unwrap();
        let targets: Schema =
            serde_yaml::from_str(file(&plan, "configs/schemas/targets.yaml")).unwrap();
        inputs.validate(&plan.data.inputs_test).unwrap();
        targets.validate(&plan.data.targets_train).unwrap();
        assert_eq!(
            plan.data.inputs_train.num_rows() + plan.data.inputs_test.num_rows(),
            ROWS as usize
        );
        assert_eq!(plan.data.inputs_test.num_rows(), 80);
    }

    fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
        let values =
            arrow::compute::cast(batch.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
        values
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_time_column_puts_the_latest_rows_in_the_test_set() {
        let options = InitOptions {
            time: Some("day".to_owned()),
            ..options()
        };
        let plan = plan(&one_table(), None, &options).unwrap();
        let train = strings(&plan.data.inputs_train, "day");
        let test = strings(&plan.data.inputs_test, "day");
        assert!(train.iter().max() <= test.iter().min());
        assert!(
            train.windows(2).all(|pair| pair[0] <= pair[1]),
            "in time order"
        );
        assert!(file(&plan, "configs/tuning.yaml").contains("TimeSeriesSplitter"));
        assert!(file(&plan, "configs/training.yaml").contains("shuffle: false"));
        assert!(file(&plan, "configs/monitoring.yaml").contains("{column: day, every: "));
        // Targets follow their inputs through the reordering.
        assert_eq!(
            strings(&plan.data.inputs_test, "id"),
            strings(&plan.data.targets_test, "id")
        );
    }

    #[test]
    fn targets_in_another_table_are_joined_on_the_index_in_any_order() {
        let data = table();
        let reversed = UInt32Array::from_iter_values((0..ROWS as u32).rev());
        let targets = take(&data.project(&[8, 0]).unwrap(), &reversed).unwrap();
        let inputs = Table {
            data: data.project(&[0, 2, 3]).unwrap(),
            source: "inputs.parquet".to_owned(),
            index: Some("id".to_owned()),
        };
        let targets = Table {
            data: targets,
            source: "targets.parquet".to_owned(),
            index: None,
        };
        let options = InitOptions::new("demo");
        let plan = plan(&inputs, Some(&targets), &options).unwrap();
        assert_eq!(plan.target, "demand");
        assert_eq!(
            plan.index.as_deref(),
            Some("id"),
            "from the pandas metadata"
        );
        assert_eq!(
            strings(&plan.data.inputs_train, "id"),
            strings(&plan.data.targets_train, "id")
        );
        let joined = take(&targets.data, &reversed).unwrap();
        let demand = |batch: &RecordBatch| strings(batch, "demand");
        let ids = strings(&plan.data.targets_train, "id");
        let all_ids = strings(&joined, "id");
        let all_demand = demand(&joined);
        for (id, value) in ids.iter().zip(demand(&plan.data.targets_train)) {
            let row = all_ids.iter().position(|other| other == id).unwrap();
            assert_eq!(all_demand[row], value, "id {id}");
        }
    }

    #[test]
    fn what_does_not_fit_the_data_is_refused_with_the_reason() {
        let error = |table: &Table, targets: Option<&Table>, options: &InitOptions| {
            plan(table, targets, options).unwrap_err().to_string()
        };
        let no_target = InitOptions {
            target: None,
            ..options()
        };
        assert!(error(&one_table(), None, &no_target).contains("give --targets FILE"));
        let text_target = InitOptions {
            target: Some("city".to_owned()),
            ..options()
        };
        assert!(error(&one_table(), None, &text_target).contains("not numbers"));
        let wrong_time = InitOptions {
            time: Some("when".to_owned()),
            ..options()
        };
        assert!(error(&one_table(), None, &wrong_time).contains("no column `when`"));
        let short = Table {
            data: table().slice(0, 10),
            ..one_table()
        };
        let targets = Table {
            data: table().project(&[8]).unwrap(),
            source: "targets.csv".to_owned(),
            index: None,
        };
        let positional = InitOptions {
            index: None,
            ..InitOptions::new("demo")
        };
        let message = error(&short, Some(&targets), &positional);
        assert!(
            message.contains("has 10 rows and targets.csv has 400"),
            "{message}"
        );
    }
}
