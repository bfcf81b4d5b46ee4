//! Schema inference: a schema file proposed from the data, with the reason for each rule.
//!
//! [`infer_schema`] reads one batch and proposes, column by column, a type (the file's own,
//! or `date`/`datetime` for text that is all ISO dates), nullability (any missing value), and
//! the rules the values suggest:
//!
//! - integers and strings with at most [`InferOptions::max_categories`] distinct values get
//!   them as `allowed` values;
//! - numbers that are never negative get `min: 0`, and floats all within [0, 1] `max: 1` too
//!   (a fraction): bounds with a meaning, not the observed extremes, which new data would
//!   exceed for no fault of its own;
//! - the index is the column named in [`InferOptions::index`], and must be unique and never
//!   missing.
//!
//! Each column also gets a [`ColumnRole`]: whether it is a feature worth giving a model
//! (numeric or categorical) or one a model should not see (an identifier, a date, a constant,
//! free text, an empty column), with a note saying what was seen. [`InferredSchema::to_yaml`]
//! writes the schema file with those notes as comments.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, kernels::aggregate};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use super::{ColumnSpec, ColumnType, Schema, Value};

/// Options of [`infer_schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferOptions {
    /// The largest number of distinct values listed as `allowed` (and, for strings, encoded as
    /// categories).
    pub max_categories: usize,
    /// The index column, if any.
    pub index: Option<String>,
}

impl Default for InferOptions {
    fn default() -> Self {
        Self {
            max_categories: 24,
            index: None,
        }
    }
}

/// What a column is good for, as its values suggest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnRole {
    /// The index: a row's key, never a feature.
    Index,
    /// A number (or a boolean) a model can use as it is.
    Numeric,
    /// A few distinct strings, encoded as categories.
    Categorical,
    /// Every value distinct (integers forming a range, or strings): a row's identity.
    Identifier,
    /// A date or a timestamp.
    Time,
    /// One value only.
    Constant,
    /// Strings with too many distinct values to be categories.
    Text,
    /// No value at all.
    Empty,
}

impl ColumnRole {
    /// Whether a model should be given the column.
    pub fn is_feature(self) -> bool {
        matches!(self, Self::Numeric | Self::Categorical)
    }
}

/// One inferred column.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredColumn {
    /// The column's rules.
    pub spec: ColumnSpec,
    /// What it is good for.
    pub role: ColumnRole,
    /// What was seen, in words (`int64, 24 distinct values from 0 to 23, none missing`).
    pub note: String,
    /// The number of missing values (null, or NaN in floats).
    pub missing: usize,
    /// The number of distinct non-missing values, counted up to the number of rows.
    pub distinct: usize,
    /// The standard deviation of a numeric column's values (`None` for other columns).
    pub std: Option<f64>,
    /// The smallest and largest values of a numeric column.
    pub range: Option<(f64, f64)>,
}

/// A schema inferred from data, with what was seen in each column.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredSchema {
    /// The proposed schema.
    pub schema: Schema,
    /// The columns, in the data's order (the schema's order too).
    pub columns: Vec<InferredColumn>,
    /// The number of rows read.
    pub rows: usize,
}

impl InferredSchema {
    /// The inferred column named `name`.
    pub fn column(&self, name: &str) -> Option<&InferredColumn> {
        self.columns.iter().find(|column| column.spec.name == name)
    }

    /// The schema as a schema file: `header` lines first (each written as a comment), then the
    /// name, the index and one line per column, each after a comment with its note.
    pub fn to_yaml(&self, header: &str) -> String {
        let mut text = String::new();
        for line in header.lines() {
            let _ = writeln!(text, "# {line}");
        }
        if let Some(name) = &self.schema.name {
            let _ = writeln!(text, "name: {}", quote(name));
        }
        if let Some(index) = &self.schema.index {
            let _ = writeln!(text, "index: {}", quote(index));
        }
        text.push_str("columns:\n");
        for column in &self.columns {
            let _ = writeln!(text, "  # {}", column.note);
            let _ = writeln!(text, "  - {}", flow(&column.spec));
        }
        text
    }
}

/// Why a schema could not be inferred.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// The index named is not a column.
    #[error("the index column `{column}` is not in the data (its columns: {available})")]
    MissingIndex {
        /// The index asked for.
        column: String,
        /// The columns there are.
        available: String,
    },
    /// The index named has missing or repeated values.
    #[error("column `{column}` cannot be the index: {reason}")]
    BadIndex {
        /// The index asked for.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A column holds a type no schema can describe.
    #[error("column `{column}` has type {data_type}, which schema files cannot describe")]
    Unsupported {
        /// The column.
        column: String,
        /// Its Arrow type.
        data_type: String,
    },
}

/// Infers the schema named `name` of `batch`; see the module docs.
///
/// # Errors
/// [`InferError`] for a missing or non-unique index, or a column of a type schemas cannot hold
/// (lists, structs, binary).
pub fn infer_schema(
    name: &str,
    batch: &RecordBatch,
    options: &InferOptions,
) -> Result<InferredSchema, InferError> {
    if let Some(index) = &options.index
        && batch.schema().index_of(index).is_err()
    {
        return Err(InferError::MissingIndex {
            column: index.clone(),
            available: column_list(batch),
        });
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let is_index = options.index.as_deref() == Some(field.name().as_str());
        columns.push(infer_column(field.name(), array, options, is_index)?);
    }
    let mut schema = Schema::new(columns.iter().map(|column| column.spec.clone()).collect());
    schema.name = Some(name.to_owned());
    schema.index.clone_from(&options.index);
    Ok(InferredSchema {
        schema,
        columns,
        rows: batch.num_rows(),
    })
}

/// The names of a batch's columns, for messages.
pub fn column_list(batch: &RecordBatch) -> String {
    batch
        .schema()
        .fields()
        .iter()
        .map(|field| format!("`{}`", field.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn infer_column(
    name: &str,
    array: &ArrayRef,
    options: &InferOptions,
    is_index: bool,
) -> Result<InferredColumn, InferError> {
    let data_type = array.data_type();
    let unsupported = || InferError::Unsupported {
        column: name.to_owned(),
        data_type: data_type.to_string(),
    };
    let column = match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => integers(name, array, options, is_index),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => floats(name, array),
        DataType::Boolean => booleans(name, array),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            strings(name, array, options, is_index)
        }
        DataType::Dictionary(_, value) if value.is_integer() || is_text(value) => {
            let plain = cast(array, value).map_err(|_| unsupported())?;
            return infer_column(name, &plain, options, is_index);
        }
        DataType::Date32 | DataType::Date64 => time(name, array, ColumnType::Date, "a date"),
        DataType::Timestamp(..) => time(name, array, ColumnType::Datetime, "a timestamp"),
        DataType::Null => Ok(empty(name, ColumnType::Float64, array.len())),
        _ => return Err(unsupported()),
    }?;
    if is_index {
        if column.missing > 0 {
            return Err(InferError::BadIndex {
                column: name.to_owned(),
                reason: format!("{} values are missing", column.missing),
            });
        }
        if column.distinct < array.len() {
            return Err(InferError::BadIndex {
                column: name.to_owned(),
                reason: format!(
                    "{} of its {} values are repeats",
                    array.len() - column.distinct,
                    array.len()
                ),
            });
        }
    }
    Ok(column)
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// What every column's note starts with: its type in the data and its missing values.
fn seen(array: &ArrayRef, missing: usize) -> String {
    let missing = match missing {
        0 => "none missing".to_owned(),
        count => format!(
            "{count} missing ({:.1}%), so nullable",
            100.0 * count as f64 / array.len().max(1) as f64
        ),
    };
    format!("{} in the data, {missing}", plain_type(array.data_type()))
}

/// An Arrow type as users name it (`int64`, `text`, `timestamps`).
fn plain_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".to_owned(),
        DataType::Boolean => "booleans".to_owned(),
        DataType::Date32 | DataType::Date64 => "dates".to_owned(),
        DataType::Timestamp(_, None) => "timestamps".to_owned(),
        DataType::Timestamp(_, Some(zone)) => format!("timestamps ({zone})"),
        DataType::Dictionary(_, value) => plain_type(value),
        other => other.to_string().to_ascii_lowercase(),
    }
}

fn empty(name: &str, data_type: ColumnType, rows: usize) -> InferredColumn {
    let mut spec = ColumnSpec::new(name, data_type);
    spec.nullable = true;
    InferredColumn {
        spec,
        role: ColumnRole::Empty,
        note: format!("no value in {rows} rows: left out of the features"),
        missing: rows,
        distinct: 0,
        std: None,
        range: None,
    }
}

fn column_type(data_type: &DataType) -> ColumnType {
    match data_type {
        DataType::Int8 => ColumnType::Int8,
        DataType::Int16 => ColumnType::Int16,
        DataType::Int32 => ColumnType::Int32,
        DataType::UInt8 => ColumnType::UInt8,
        DataType::UInt16 => ColumnType::UInt16,
        DataType::UInt32 => ColumnType::UInt32,
        DataType::UInt64 => ColumnType::UInt64,
        DataType::Float16 | DataType::Float32 => ColumnType::Float32,
        DataType::Float64 => ColumnType::Float64,
        _ => ColumnType::Int64,
    }
}

/// The mean and population standard deviation of the finite values.
fn moments(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
    Some((mean, variance.sqrt()))
}

fn as_f64(array: &ArrayRef) -> Vec<f64> {
    cast(array, &DataType::Float64)
        .map(|values| {
            values
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .filter(|value| value.is_finite())
                .collect()
        })
        .unwrap_or_default()
}

fn integers(
    name: &str,
    array: &ArrayRef,
    options: &InferOptions,
    is_index: bool,
) -> Result<InferredColumn, InferError> {
    let mut spec = ColumnSpec::new(name, column_type(array.data_type()));
    let missing = array.null_count();
    spec.nullable = missing > 0;
    if missing == array.len() {
        return Ok(empty(name, spec.data_type, array.len()));
    }
    let floats = as_f64(array);
    let (low, high) = floats
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        });
    let mut distinct = HashSet::new();
    let ints = cast(array, &DataType::Int64).ok();
    let mut ascending = true;
    if let Some(ints) = &ints {
        let mut last = i64::MIN;
        for value in ints.as_primitive::<Int64Type>().iter().flatten() {
            ascending &= value > last;
            last = value;
            distinct.insert(value);
        }
    }
    let count = distinct.len();
    let std = moments(&floats).map(|(_, std)| std);
    let mut column = InferredColumn {
        note: String::new(),
        role: ColumnRole::Numeric,
        missing,
        distinct: count,
        std,
        range: Some((low, high)),
        spec,
    };
    let span = format!("{count} distinct values from {low} to {high}");
    let seen = seen(array, missing);
    if is_index {
        column.role = ColumnRole::Index;
        column.note = format!("{seen}, {span}: the index");
    } else if count == 1 {
        column.role = ColumnRole::Constant;
        column.note = format!("{seen}, always {low}: a constant, left out of the features");
    } else if count == array.len() - missing
        && count > options.max_categories
        && (ascending || (high - low + 1.0) as usize == count)
    {
        column.role = ColumnRole::Identifier;
        column.note = format!(
            "{seen}, {span}, every value distinct{}: an identifier, left out of the features",
            if ascending { " and ascending" } else { "" }
        );
    } else if count <= options.max_categories {
        let values: BTreeSet<i64> = distinct.into_iter().collect();
        column.spec.allowed = Some(values.into_iter().map(Value::Int).collect());
        column.note = format!(
            "{seen}, {count} distinct values, listed as allowed; a number to the model \
             (add it to `categoricals` if its order means nothing)"
        );
    } else if low >= 0.0 {
        column.spec.min = Some(Value::Int(0));
        column.note = format!("{seen}, {span}: never negative, so min 0");
    } else {
        column.note = format!("{seen}, {span}");
    }
    Ok(column)
}

fn floats(name: &str, array: &ArrayRef) -> Result<InferredColumn, InferError> {
    let mut spec = ColumnSpec::new(name, column_type(array.data_type()));
    let values = as_f64(array);
    let missing = array.len() - values.len();
    spec.nullable = missing > 0;
    if values.is_empty() {
        return Ok(empty(name, spec.data_type, array.len()));
    }
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        });
    let distinct: HashSet<u64> = values.iter().map(|value| value.to_bits()).collect();
    let std = moments(&values).map(|(_, std)| std);
    let seen = seen(array, missing);
    let span = format!("from {} to {}", short(low), short(high));
    let (role, note) = if distinct.len() == 1 {
        (
            ColumnRole::Constant,
            format!(
                "{seen}, always {}: a constant, left out of the features",
                short(low)
            ),
        )
    } else if low >= 0.0 && high <= 1.0 {
        spec.min = Some(Value::Int(0));
        spec.max = Some(Value::Int(1));
        (
            ColumnRole::Numeric,
            format!("{seen}, {span}: a fraction, so min 0 and max 1"),
        )
    } else if low >= 0.0 {
        spec.min = Some(Value::Int(0));
        (
            ColumnRole::Numeric,
            format!("{seen}, {span}: never negative, so min 0"),
        )
    } else {
        (ColumnRole::Numeric, format!("{seen}, {span}"))
    };
    Ok(InferredColumn {
        spec,
        role,
        note,
        missing,
        distinct: distinct.len(),
        std,
        range: Some((low, high)),
    })
}

fn booleans(name: &str, array: &ArrayRef) -> Result<InferredColumn, InferError> {
    let mut spec = ColumnSpec::new(name, ColumnType::Bool);
    let missing = array.null_count();
    spec.nullable = missing > 0;
    let values = array.as_boolean();
    let trues = aggregate::bool_or(values).unwrap_or(false);
    let falses = !aggregate::bool_and(values).unwrap_or(true);
    let distinct = usize::from(trues) + usize::from(falses);
    let seen = seen(array, missing);
    let (role, note) = match distinct {
        0 => return Ok(empty(name, ColumnType::Bool, array.len())),
        1 => (
            ColumnRole::Constant,
            format!("{seen}, always {trues}: a constant, left out of the features"),
        ),
        _ => (
            ColumnRole::Numeric,
            format!("{seen}: a flag, 1 for true to the model"),
        ),
    };
    let share = values.true_count() as f64 / (array.len() - missing).max(1) as f64;
    Ok(InferredColumn {
        spec,
        role,
        note,
        missing,
        distinct,
        std: Some((share * (1.0 - share)).sqrt()),
        range: Some((f64::from(u8::from(!falses)), f64::from(u8::from(trues)))),
    })
}

fn strings(
    name: &str,
    array: &ArrayRef,
    options: &InferOptions,
    is_index: bool,
) -> Result<InferredColumn, InferError> {
    let text = cast(array, &DataType::Utf8).map_err(|_| InferError::Unsupported {
        column: name.to_owned(),
        data_type: array.data_type().to_string(),
    })?;
    let missing = text.null_count();
    if missing == text.len() {
        return Ok(empty(name, ColumnType::String, text.len()));
    }
    let values: Vec<&str> = text.as_string::<i32>().iter().flatten().collect();
    if !is_index {
        for (column_type, what, parses) in [
            (ColumnType::Date, "ISO dates", is_date as fn(&str) -> bool),
            (ColumnType::Datetime, "ISO date-times", is_datetime),
        ] {
            if values.iter().all(|value| parses(value)) {
                let mut column = time(name, &text, column_type, what)?;
                column.note = format!(
                    "{} in the data, every value {what}, {}",
                    plain_type(array.data_type()),
                    column.note
                );
                return Ok(column);
            }
        }
    }
    let distinct: HashSet<&str> = values.iter().copied().collect();
    let count = distinct.len();
    let mut spec = ColumnSpec::new(name, ColumnType::String);
    spec.nullable = missing > 0;
    let seen = seen(array, missing);
    let (role, note) = if is_index {
        (
            ColumnRole::Index,
            format!("{seen}, {count} distinct values: the index"),
        )
    } else if count == 1 {
        (
            ColumnRole::Constant,
            format!(
                "{seen}, always {:?}: a constant, left out of the features",
                values[0]
            ),
        )
    } else if count <= options.max_categories {
        let sorted: BTreeSet<&str> = distinct.iter().copied().collect();
        spec.allowed = Some(
            sorted
                .into_iter()
                .map(|value| Value::String(value.to_owned()))
                .collect(),
        );
        (
            ColumnRole::Categorical,
            format!("{seen}, {count} distinct values: categories, listed as allowed"),
        )
    } else if count == values.len() {
        (
            ColumnRole::Identifier,
            format!("{seen}, every value distinct: an identifier, left out of the features"),
        )
    } else {
        (
            ColumnRole::Text,
            format!(
                "{seen}, {count} distinct values (more than {} categories): free text, left \
                 out of the features",
                options.max_categories
            ),
        )
    };
    Ok(InferredColumn {
        spec,
        role,
        note,
        missing,
        distinct: count,
        std: None,
        range: None,
    })
}

fn is_date(value: &str) -> bool {
    value.len() == 10 && chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok()
}

fn is_datetime(value: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(value).is_ok()
        || [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M:%S%.f",
        ]
        .iter()
        .any(|format| chrono::NaiveDateTime::parse_from_str(value, format).is_ok())
}

fn time(
    name: &str,
    array: &ArrayRef,
    column_type: ColumnType,
    what: &str,
) -> Result<InferredColumn, InferError> {
    let mut spec = ColumnSpec::new(name, column_type);
    let missing = array.null_count();
    spec.nullable = missing > 0;
    let note = if is_text(array.data_type()) {
        format!(
            "{}: typed {column_type}, left out of the features (derive calendar columns such \
             as the month or the weekday if they matter)",
            if missing == 0 {
                "none missing".to_owned()
            } else {
                format!("{missing} missing, so nullable")
            }
        )
    } else {
        format!(
            "{}: {what}, left out of the features (derive calendar columns such as the month \
             or the weekday if they matter)",
            seen(array, missing)
        )
    };
    Ok(InferredColumn {
        spec,
        role: ColumnRole::Time,
        note,
        missing,
        distinct: 0,
        std: None,
        range: None,
    })
}

/// A number as short as it reads well.
fn short(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{}", (value * 1e4).round() / 1e4)
    }
}

/// A YAML scalar for a name: bare when plain, else quoted as JSON (which YAML reads).
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(text) => serde_json::Value::String(text.clone()).to_string(),
        other => other.to_string(),
    }
}

/// One column as a YAML flow mapping (`{name: hr, type: uint8, min: 0}`).
fn flow(spec: &ColumnSpec) -> String {
    let mut parts = vec![
        format!("name: {}", quote(&spec.name)),
        format!("type: {}", spec.data_type),
    ];
    if spec.nullable {
        parts.push("nullable: true".to_owned());
    }
    if spec.unique {
        parts.push("unique: true".to_owned());
    }
    if let Some(min) = &spec.min {
        parts.push(format!("min: {}", literal(min)));
    }
    if let Some(max) = &spec.max {
        parts.push(format!("max: {}", literal(max)));
    }
    if let Some(allowed) = &spec.allowed {
        let values: Vec<String> = allowed.iter().map(literal).collect();
        parts.push(format!("allowed: [{}]", values.join(", ")));
    }
    if let Some(description) = &spec.description {
        parts.push(format!(
            "description: {}",
            serde_json::Value::String(description.clone())
        ));
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};

    use super::*;

    fn batch() -> RecordBatch {
        let rows = 100_i64;
        let id: ArrayRef = Arc::new(Int64Array::from_iter_values(1000..1000 + rows));
        let hour: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows).map(|r| r % 24)));
        let day: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows).map(|r| r % 7)));
        let share: ArrayRef = Arc::new(Float64Array::from_iter(
            (0..rows).map(|r| (r != 3).then_some(r as f64 / 200.0)),
        ));
        let temp: ArrayRef = Arc::new(Float64Array::from_iter_values(
            (0..rows).map(|r| r as f64 / 3.0 - 10.0),
        ));
        let city: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|r| ["Paris", "Lyon", "Nice"][r as usize % 3]),
        ));
        let note: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|r| format!("note {}", r / 2)),
        ));
        let date: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|r| format!("2024-01-{:02}", r % 28 + 1)),
        ));
        let flag: ArrayRef = Arc::new(BooleanArray::from_iter((0..rows).map(|r| Some(r % 2 == 0))));
        let same: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows).map(|_| 5)));
        RecordBatch::try_from_iter([
            ("id", id),
            ("hour", hour),
            ("day", day),
            ("share", share),
            ("temp", temp),
            ("city", city),
            ("note", note),
            ("date", date),
            ("flag", flag),
            ("same", same),
        ])
        .unwrap()
    }

    #[test]
    fn each_column_gets_a_type_rules_and_a_role() {
        let options = InferOptions {
            max_categories: 10,
            index: None,
        };
        let inferred = infer_schema("inputs", &batch(), &options).unwrap();
        let role = |name: &str| inferred.column(name).unwrap().role;
        let spec = |name: &str| &inferred.column(name).unwrap().spec;
        assert_eq!(role("id"), ColumnRole::Identifier);
        assert_eq!(role("hour"), ColumnRole::Numeric);
        assert_eq!(spec("hour").min, Some(Value::Int(0)));
        assert_eq!(spec("hour").allowed, None, "24 values > 10 categories");
        assert_eq!(
            spec("day").allowed,
            Some((0..7).map(Value::Int).collect::<Vec<_>>())
        );
        assert_eq!(role("share"), ColumnRole::Numeric);
        assert!(spec("share").nullable);
        assert_eq!(
            (spec("share").min.clone(), spec("share").max.clone()),
            (Some(Value::Int(0)), Some(Value::Int(1)))
        );
        assert_eq!(spec("temp").min, None, "negative values");
        assert_eq!(role("city"), ColumnRole::Categorical);
        assert_eq!(spec("city").allowed.as_ref().unwrap().len(), 3);
        assert_eq!(role("note"), ColumnRole::Text);
        assert_eq!(role("date"), ColumnRole::Time);
        assert_eq!(spec("date").data_type, ColumnType::Date);
        assert_eq!(role("flag"), ColumnRole::Numeric);
        assert_eq!(role("same"), ColumnRole::Constant);
        // The proposed schema accepts the data it came from.
        inferred.schema.validate(&batch()).unwrap();
    }

    #[test]
    fn the_yaml_file_reads_back_as_the_same_schema_with_a_comment_per_column() {
        let options = InferOptions {
            max_categories: 10,
            index: Some("id".to_owned()),
        };
        let inferred = infer_schema("inputs", &batch(), &options).unwrap();
        let text = inferred.to_yaml("Inferred from a test.\nSecond line.");
        let back: Schema = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, inferred.schema);
        assert_eq!(back.index.as_deref(), Some("id"));
        assert_eq!(text.matches("  # ").count(), inferred.columns.len());
        assert!(text.starts_with("# Inferred from a test.\n# Second line.\n"));
    }

    #[test]
    fn a_bad_index_is_refused_with_the_reason() {
        let options = |index: &str| InferOptions {
            max_categories: 10,
            index: Some(index.to_owned()),
        };
        let error = infer_schema("inputs", &batch(), &options("hour")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("76 of its 100 values are repeats")
        );
        let error = infer_schema("inputs", &batch(), &options("nope")).unwrap_err();
        assert!(
            error.to_string().contains("`nope` is not in the data"),
            "{error}"
        );
    }

    #[test]
    fn names_that_yaml_would_misread_are_quoted() {
        assert_eq!(quote("temp"), "temp");
        assert_eq!(quote("yes"), "\"yes\"");
        assert_eq!(quote("2nd floor"), "\"2nd floor\"");
        assert_eq!(quote("a: b"), "\"a: b\"");
    }
}
