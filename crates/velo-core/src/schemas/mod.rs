//! Schemas: declarative column specifications checked (and losslessly coerced) on Arrow data.
//!
//! A schema is data, not code. It is written in YAML or JSON (velo-io reads the files) and lists
//! columns with a type, nullability, bounds and allowed values, plus an optional index column:
//!
//! ```yaml
//! name: inputs
//! index: instant      # must be one of the columns; it is non-null and unique
//! strict: true        # default: columns not listed are violations
//! coerce: true        # default: convert compatible physical types when lossless
//! columns:
//!   - {name: instant, type: uint32, min: 0}
//!   - {name: dteday, type: date}
//!   - {name: season, type: uint8, allowed: [1, 2, 3, 4]}
//!   - {name: temp, type: float32, min: 0, max: 1, description: normalized temperature}
//!   - {name: weathersit, type: categorical, allowed: [1, 2, 3, 4]}
//!   - {name: note, type: string, nullable: true}
//! ```
//!
//! [`Schema::validate`] checks one record batch; [`Schema::validator`] checks a stream of them.
//! Both return batches holding exactly the schema's columns, in schema order, converted to the
//! types of [`Schema::arrow_schema`], or a [`SchemaError::Violations`] listing *every* violation
//! (column, [`Rule`], row count, and the first offending rows and values), never just the first.
//!
//! # Types
//!
//! | schema type | Arrow type |
//! |---|---|
//! | `int8` … `int64`, `uint8` … `uint64` | the integer type of that width |
//! | `float32`, `float64` | `Float32`, `Float64` |
//! | `bool` | `Boolean` |
//! | `string` | `Utf8` |
//! | `date` | `Date32` |
//! | `datetime` | `Timestamp(Microsecond, None)` (time-zone naive, UTC) |
//! | `categorical` | `Int64` when its allowed values are integers, `Utf8` when they are strings |
//!
//! A categorical column needs `allowed` (its categories); velo keeps categories as plain
//! values, not dictionary-encoded, so downstream code sees ordinary integers or strings.
//!
//! # Coercion
//!
//! With `coerce: true` (the default), these conversions are applied, as pandera's `coerce=True`
//! would, but only where nothing is lost; a value that does not convert is a
//! [`Rule::Coerce`] violation naming its rows, and any other pair of types is a [`Rule::Type`]
//! violation. With `coerce: false` only the exact Arrow type passes.
//!
//! - any integer to any integer, when every value is in range;
//! - integers 0 and 1 to `bool` (other values are violations), `bool` to any integer;
//! - integers to `float64` always (as pandas does, even above 2^53), to `float32` when exact;
//! - floats to integers when every value is integral and in range;
//! - `float64` to `float32` with rounding to nearest (what pandera's coerce does, so that
//!   doubles written by pandas fit a `float32` schema); only finite values too large for
//!   `float32` are violations;
//! - `float16`/`float32` to `float64`, `float16` to `float32`;
//! - strings (`Utf8`, `LargeUtf8`, `Utf8View`, or dictionary-encoded) to `string` and to
//!   string categories; dictionary-encoded integers to integers and integer categories;
//! - strings to `date` (exactly `%Y-%m-%d`) and to `datetime` (RFC 3339 or
//!   `%Y-%m-%d %H:%M:%S`, optional fraction and offset; offsets are converted to UTC);
//! - `Date32`, `Date64` and `Timestamp` (any unit, any time zone) to `date` and `datetime`,
//!   when exact: a timestamp becomes a date only at midnight, and a nanosecond timestamp a
//!   `datetime` only on whole microseconds. Time-zone-aware timestamps are taken in UTC (pandas'
//!   `tz_convert("UTC").tz_localize(None)`), so no time-zone database is needed;
//! - Arrow's `Null` type (a column with no value at all) to any type, as all nulls.
//!
//! # Values
//!
//! As in pandas, NaN in a float column means "missing": it counts as null for `nullable`,
//! is skipped by the other checks, and comes out as null. Bounds are inclusive and compared in
//! the column's type after coercion, with IEEE semantics for floats (`-0.0 >= 0`). Checks run on
//! whole arrays with Arrow's kernels; only uniqueness (the index) is tracked row by row, in a set
//! that stores ascending runs of integers compactly, so a sorted index costs almost nothing.
//!
//! # Columns not in the schema
//!
//! With `strict: true` (the default) they are violations. With `strict: false` they are dropped
//! from the output, unless `extra_columns` names a type: then they are kept after the schema's
//! columns (in their input order), converted to that type, and must not be null. This describes
//! frames whose columns are not known in advance, such as per-feature SHAP values.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Int64Array, RecordBatch};
//! use velo_core::schemas::{ColumnSpec, ColumnType, Schema, Value};
//!
//! let mut season = ColumnSpec::new("season", ColumnType::UInt8);
//! season.allowed = Some(vec![Value::Int(1), Value::Int(2), Value::Int(3), Value::Int(4)]);
//! let schema = Schema::new(vec![season]);
//!
//! let good: ArrayRef = Arc::new(Int64Array::from(vec![1, 4]));
//! let batch = RecordBatch::try_from_iter([("season", good)])?;
//! let validated = schema.validate(&batch)?;
//! assert_eq!(validated.schema(), schema.arrow_schema());
//!
//! let bad: ArrayRef = Arc::new(Int64Array::from(vec![1, 0, 4, 7]));
//! let error = schema.validate(&RecordBatch::try_from_iter([("season", bad)])?).unwrap_err();
//! assert!(error.to_string().contains(
//!     "column 'season': 2 rows not in allowed values [1, 2, 3, 4] (rows 1, 3; values 0, 7)"
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod coerce;
pub mod infer;
mod report;
mod validator;
mod value;

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

pub use report::{MAX_EXAMPLES, Rule, ValidationSummary, Violation, ViolationReport};
pub use validator::Validator;
pub use value::Value;

/// A schema: the columns a table must have, their types and the rules their values follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// A name for messages (`data does not match schema 'inputs'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The index column: one of `columns`, never null and unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Whether columns not listed are violations (`true`) or are dropped from the output.
    #[serde(default = "default_true")]
    pub strict: bool,
    /// Whether compatible physical types are converted losslessly (`true`) or must match exactly.
    #[serde(default = "default_true")]
    pub coerce: bool,
    /// With `strict: false`, the type of the columns not listed: they are then kept (after the
    /// listed columns), converted to this type and must not be null, instead of being dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_columns: Option<ColumnType>,
    /// The columns, in output order.
    pub columns: Vec<ColumnSpec>,
}

fn default_true() -> bool {
    true
}

/// The specification of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// The column's name, as in the data (case-sensitive).
    pub name: String,
    /// The column's type.
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// Whether missing values (null, or NaN in floats) are allowed.
    #[serde(default)]
    pub nullable: bool,
    /// Whether every value must be distinct (the index column always is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// Inclusive lower bound, for numeric, date (`"YYYY-MM-DD"`) and datetime columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// Inclusive upper bound, for numeric, date and datetime columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// The values allowed; required for categorical columns (their categories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// What the column means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ColumnSpec {
    /// A non-nullable column of `data_type` with no other rule.
    pub fn new(name: impl Into<String>, data_type: ColumnType) -> Self {
        Self {
            name: name.into(),
            data_type,
            nullable: false,
            unique: false,
            min: None,
            max: None,
            allowed: None,
            description: None,
        }
    }

    /// The Arrow type validated data has in this column.
    ///
    /// A categorical column is `Int64` when all its allowed values are integers and `Utf8`
    /// otherwise (a categorical column without integer categories is a definition error anyway).
    pub fn arrow_type(&self) -> DataType {
        match self.data_type.arrow_type() {
            Some(data_type) => data_type,
            None => {
                let integers = self.allowed.as_ref().is_some_and(|allowed| {
                    !allowed.is_empty()
                        && allowed
                            .iter()
                            .all(|value| matches!(value, Value::Int(_) | Value::UInt(_)))
                });
                if integers {
                    DataType::Int64
                } else {
                    DataType::Utf8
                }
            }
        }
    }
}

/// The type of a column, written in lowercase in schema files (`uint8`, `datetime`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ColumnType {
    /// 8-bit signed integer.
    Int8,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 8-bit unsigned integer.
    UInt8,
    /// 16-bit unsigned integer.
    UInt16,
    /// 32-bit unsigned integer.
    UInt32,
    /// 64-bit unsigned integer.
    UInt64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
    /// Calendar date (`Date32`).
    Date,
    /// Date and time, time-zone naive, microsecond precision.
    Datetime,
    /// A value among the column's `allowed` values (integers or strings).
    Categorical,
}

impl ColumnType {
    /// The Arrow type of this column type; `None` for categorical, which depends on its values.
    pub fn arrow_type(self) -> Option<DataType> {
        let data_type = match self {
            Self::Int8 => DataType::Int8,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::UInt8 => DataType::UInt8,
            Self::UInt16 => DataType::UInt16,
            Self::UInt32 => DataType::UInt32,
            Self::UInt64 => DataType::UInt64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::String => DataType::Utf8,
            Self::Date => DataType::Date32,
            Self::Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::Categorical => return None,
        };
        Some(data_type)
    }

    /// Whether values of this type are ordered, so that `min` and `max` apply.
    pub fn is_ordered(self) -> bool {
        !matches!(self, Self::Bool | Self::String | Self::Categorical)
    }

    /// The name used in schema files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Int16 => "int16",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::UInt8 => "uint8",
            Self::UInt16 => "uint16",
            Self::UInt32 => "uint32",
            Self::UInt64 => "uint64",
            Self::Float32 => "float32",
            Self::Float64 => "float64",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Categorical => "categorical",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error raised by schemas: an invalid schema, data that does not match, or a failing kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema itself is not valid; every problem is listed.
    #[error("invalid schema{}:{}", schema_label(.schema), problem_lines(.problems))]
    Definition {
        /// The schema's name, if it has one.
        schema: Option<String>,
        /// What is wrong, one sentence per problem.
        problems: Vec<String>,
    },
    /// The data does not match the schema; every violation is listed.
    #[error("{0}")]
    Violations(ViolationReport),
    /// An Arrow kernel failed while checking the data.
    #[error("cannot {action}")]
    Arrow {
        /// What was being done (`check column 'temp'`).
        action: String,
        /// The kernel's error.
        #[source]
        source: ArrowError,
    },
}

impl SchemaError {
    /// The violations, when the data did not match.
    pub fn violations(&self) -> Option<&ViolationReport> {
        match self {
            Self::Violations(report) => Some(report),
            _ => None,
        }
    }
}

fn schema_label(schema: &Option<String>) -> String {
    schema
        .as_ref()
        .map_or_else(String::new, |name| format!(" '{name}'"))
}

fn problem_lines(problems: &[String]) -> String {
    problems
        .iter()
        .map(|problem| format!("\n  {problem}"))
        .collect()
}

impl Schema {
    /// A strict, coercing schema of `columns`, with no name and no index.
    pub fn new(columns: Vec<ColumnSpec>) -> Self {
        Self {
            name: None,
            index: None,
            strict: true,
            coerce: true,
            extra_columns: None,
            columns,
        }
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// Checks that the schema itself is sane: unique column names, an index that is a
    /// non-nullable column, bounds and allowed values that fit their column's type, `min <= max`,
    /// categories for categorical columns. Every problem is listed.
    pub fn check_definition(&self) -> Result<(), SchemaError> {
        validator::Plan::compile(self).map(|_| ())
    }

    /// The Arrow schema of validated data (the schema's columns only: `extra_columns` are
    /// appended to it by validation). Field nullability follows `nullable`.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|column| Field::new(&column.name, column.arrow_type(), column.nullable))
            .collect();
        Arc::new(arrow::datatypes::Schema::new(fields))
    }

    /// Validates one batch: the same batch with exactly the schema's columns, in schema order,
    /// converted to their types, or every violation found.
    pub fn validate(&self, batch: &RecordBatch) -> Result<RecordBatch, SchemaError> {
        let mut validator = self.validator();
        let validated = validator.push(batch)?;
        validator.finish()?;
        Ok(validated)
    }

    /// A validator for a stream of batches, which counts rows across them.
    pub fn validator(&self) -> Validator<'_> {
        Validator::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Schema {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        match parse(yaml).check_definition() {
            Ok(()) => Vec::new(),
            Err(SchemaError::Definition { problems, .. }) => problems,
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn defaults_are_strict_and_coercing() {
        let schema = parse("columns: [{name: a, type: uint8}]");
        assert_eq!(
            schema,
            Schema::new(vec![ColumnSpec::new("a", ColumnType::UInt8)])
        );
    }

    #[test]
    fn unknown_keys_and_types_are_rejected() {
        let error = serde_yaml::from_str::<Schema>("columns: [{name: a, type: uint8, maxx: 1}]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `maxx`"), "{error}");
        let error = serde_yaml::from_str::<Schema>("columns: [{name: a, type: u8}]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown variant `u8`"), "{error}");
        let error = serde_yaml::from_str::<Schema>("colums: []") // spellchecker:disable-line
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `colums`"), "{error}"); // spellchecker:disable-line
    }

    #[test]
    fn schemas_round_trip_through_yaml() {
        let yaml = "name: s\nindex: id\nextra_columns: float64\nstrict: false\ncolumns:\n\
                    - {name: id, type: uint32, min: 0, description: the id}\n\
                    - {name: day, type: date, min: 2011-01-01, max: '2012-12-31'}\n\
                    - {name: c, type: categorical, allowed: [a, b], nullable: true}\n";
        let schema = parse(yaml);
        let again = parse(&serde_yaml::to_string(&schema).unwrap());
        assert_eq!(schema, again);
        assert_eq!(schema.extra_columns, Some(ColumnType::Float64));
        assert_eq!(schema.columns[1].min, Some(Value::from("2011-01-01")));
    }

    #[test]
    fn arrow_types_follow_the_table() {
        let schema = parse(
            "columns:\n- {name: a, type: datetime}\n- {name: b, type: categorical, allowed: [1, 2]}\n\
             - {name: c, type: categorical, allowed: [x]}\n- {name: d, type: bool, nullable: true}",
        );
        let arrow = schema.arrow_schema();
        let types: Vec<&DataType> = arrow
            .fields()
            .iter()
            .map(|field| field.data_type())
            .collect();
        assert_eq!(
            types,
            [
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &DataType::Int64,
                &DataType::Utf8,
                &DataType::Boolean
            ]
        );
        assert!(!arrow.field(0).is_nullable());
        assert!(arrow.field(3).is_nullable());
    }

    #[test]
    fn a_sane_schema_has_no_problems() {
        let yaml = "index: id\ncolumns:\n- {name: id, type: uint32, min: 0}\n\
                    - {name: t, type: float32, min: 0, max: 1}\n\
                    - {name: d, type: date, min: 2011-01-01, max: 2012-12-31}\n\
                    - {name: ts, type: datetime, min: '2011-01-01 00:00:00'}\n\
                    - {name: s, type: string, allowed: [a, b]}\n\
                    - {name: b, type: bool, allowed: [true]}";
        assert_eq!(problems(yaml), Vec::<String>::new());
    }

    #[test]
    fn every_definition_problem_is_listed() {
        let yaml = "index: nope\ncolumns:\n- {name: a, type: uint8, min: -1, max: 300}\n\
                    - {name: a, type: int8}\n- {name: b, type: int32, min: 5, max: 1}\n\
                    - {name: c, type: string, min: a}\n- {name: d, type: categorical}\n\
                    - {name: e, type: categorical, allowed: [1, x]}\n\
                    - {name: f, type: date, min: 2011-02-30}\n- {name: g, type: int8, allowed: []}\n\
                    - {name: h, type: float64, max: .nan}\n- {name: i, type: int64, min: 0.5}";
        let found = problems(yaml);
        let expected = [
            "column 'a' is listed more than once",
            "index 'nope' is not one of the columns",
            "column 'a': min -1 does not fit uint8",
            "column 'a': max 300 does not fit uint8",
            "column 'b': min 5 is greater than max 1",
            "column 'c': min and max apply to numeric, date and datetime columns, not string",
            "column 'd': a categorical column needs its allowed values (its categories)",
            "column 'e': categories must be all integers or all strings",
            "column 'f': min 2011-02-30 does not fit date",
            "column 'g': allowed values are empty",
            "column 'h': max NaN is not a value",
            "column 'i': min 0.5 does not fit int64",
        ];
        for problem in expected {
            assert!(
                found.iter().any(|found| found == problem),
                "{problem} not in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn index_and_extra_columns_rules() {
        let found = problems("index: a\ncolumns: [{name: a, type: int8, nullable: true}]");
        assert_eq!(found, ["index 'a' cannot be nullable"]);
        let found = problems("extra_columns: float64\ncolumns: []");
        assert_eq!(
            found,
            ["extra_columns needs strict: false (a strict schema accepts no other column)"]
        );
        let found = problems("strict: false\nextra_columns: categorical\ncolumns: []");
        assert_eq!(
            found,
            ["extra_columns cannot be categorical (it has no categories)"]
        );
        let found = problems("columns: [{name: a, type: string, allowed: [1]}]");
        assert_eq!(
            found,
            ["column 'a': allowed value 1 cannot be converted to string"]
        );
    }

    #[test]
    fn definition_errors_name_the_schema() {
        let error = parse("name: s\ncolumns: [{name: '', type: int8}]")
            .check_definition()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid schema 's':\n  a column has an empty name"
        );
    }
}
