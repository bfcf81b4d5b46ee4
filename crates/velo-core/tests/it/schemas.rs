//! Schemas: the shipped bike-sharing schema files against batches shaped like pandas' Parquet.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions unwrap like the tests do"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the tests read the schema files in configs/ and the shared data; the library does not"
)]

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Date32Type, Float32Type, UInt8Type, UInt32Type};
use proptest::prelude::*;
use velo_core::schemas::{
    ColumnSpec, ColumnType, Rule, Schema, SchemaError, Value, ViolationReport,
};

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Loads a schema shipped in `configs/schemas/`.
fn load(name: &str) -> Schema {
    let path = repo_path(&format!("configs/schemas/{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{path:?}: {error}"))
}

fn violations(result: Result<RecordBatch, SchemaError>) -> ViolationReport {
    match result {
        Err(SchemaError::Violations(report)) => report,
        Err(other) => panic!("expected violations, got {other}"),
        Ok(_) => panic!("expected violations, the batch passed"),
    }
}

fn lines(report: &ViolationReport) -> Vec<String> {
    report.violations.iter().map(ToString::to_string).collect()
}

/// A frame of bike inputs with the physical types pandas writes to Parquet: int64 integers
/// (0/1 for the booleans), doubles, dteday as a string, and the `instant` index last.
struct Frame {
    columns: Vec<(String, ArrayRef)>,
}

impl Frame {
    /// `rows` valid rows whose instants start at `first_instant`.
    fn inputs(rows: usize, first_instant: i64) -> Self {
        let ints = |f: &dyn Fn(i64) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                (first_instant..first_instant + rows as i64).map(f),
            ))
        };
        let floats = |f: &dyn Fn(i64) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                (first_instant..first_instant + rows as i64).map(f),
            ))
        };
        let dates: StringArray = (first_instant..first_instant + rows as i64)
            .map(|instant| {
                let day = chrono::NaiveDate::from_ymd_opt(2011, 1, 1).unwrap()
                    + chrono::Duration::days(instant / 24);
                Some(day.format("%Y-%m-%d").to_string())
            })
            .collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("dteday", Arc::new(dates)),
            ("season", ints(&|i| 1 + i % 4)),
            ("yr", ints(&|i| i % 2)),
            ("mnth", ints(&|i| 1 + i % 12)),
            ("hr", ints(&|i| i % 24)),
            ("holiday", ints(&|i| i64::from(i % 7 == 0))),
            ("weekday", ints(&|i| i % 7)),
            ("workingday", ints(&|i| i64::from(i % 7 > 1))),
            ("weathersit", ints(&|i| 1 + i % 4)),
            ("temp", floats(&|i| (i % 100) as f64 / 100.0)),
            ("atemp", floats(&|i| (i % 51) as f64 / 50.0)),
            ("hum", floats(&|i| (i % 101) as f64 / 100.0)),
            ("windspeed", floats(&|i| (i % 68) as f64 / 67.0)),
            ("casual", ints(&|i| i * 3 % 50)),
            ("registered", ints(&|i| i * 7 % 300)),
            ("instant", ints(&|i| i)),
        ];
        Self {
            columns: columns
                .into_iter()
                .map(|(name, array)| (name.to_owned(), array))
                .collect(),
        }
    }

    fn set(mut self, name: &str, array: ArrayRef) -> Self {
        let slot = self.columns.iter_mut().find(|(column, _)| column == name);
        match slot {
            Some((_, column)) => *column = array,
            None => self.columns.push((name.to_owned(), array)),
        }
        self
    }

    fn remove(mut self, name: &str) -> Self {
        self.columns.retain(|(column, _)| column != name);
        self
    }

    fn batch(&self) -> RecordBatch {
        RecordBatch::try_from_iter(
            self.columns
                .iter()
                .map(|(name, array)| (name, array.clone())),
        )
        .unwrap()
    }
}

/// `values` at the given rows of a 30-row int64 column, 1 elsewhere.
fn ints_with(changes: &[(usize, Option<i64>)]) -> ArrayRef {
    let mut values: Vec<Option<i64>> = vec![Some(1); 30];
    for &(row, value) in changes {
        values[row] = value;
    }
    Arc::new(Int64Array::from(values))
}

/// Validates a 30-row inputs frame changed by `change` and compares the report's lines.
fn check(change: impl FnOnce(Frame) -> Frame, expected: &[&str]) {
    let batch = change(Frame::inputs(30, 1)).batch();
    let result = load("inputs").validate(&batch);
    if expected.is_empty() {
        result.unwrap();
    } else {
        let report = violations(result);
        assert_eq!(lines(&report), expected, "{report}");
    }
}

#[test]
fn the_shipped_schemas_are_sane() {
    for name in [
        "inputs",
        "targets",
        "outputs",
        "feature_importances",
        "shap_values",
    ] {
        let schema = load(name);
        schema
            .check_definition()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(schema.name.as_deref(), Some(name));
    }
    let inputs = load("inputs");
    assert_eq!(inputs.index.as_deref(), Some("instant"));
    assert_eq!(inputs.columns.len(), 16);
    assert_eq!(load("shap_values").extra_columns, Some(ColumnType::Float64));
}

#[test]
fn pandas_parquet_types_coerce_into_the_inputs_schema() {
    let schema = load("inputs");
    let validated = schema.validate(&Frame::inputs(50, 1).batch()).unwrap();
    assert_eq!(validated.schema(), schema.arrow_schema());
    assert_eq!(validated.num_rows(), 50);
    let names: Vec<&str> = validated
        .schema_ref()
        .fields()
        .iter()
        .map(|field| field.name().as_str())
        .collect();
    assert_eq!(names[..3], ["instant", "dteday", "season"]);
    let instant = validated.column(0).as_primitive::<UInt32Type>();
    assert_eq!(instant.values()[..3], [1, 2, 3]);
    let dteday = validated.column(1).as_primitive::<Date32Type>();
    assert_eq!(
        dteday.value(0),
        14_975,
        "2011-01-01 is day 14975 of the Unix epoch"
    );
    assert_eq!(dteday.value(24), 14_976);
    let season = validated
        .column_by_name("season")
        .unwrap()
        .as_primitive::<UInt8Type>();
    assert_eq!(season.values()[..4], [2, 3, 4, 1]);
    let holiday = validated.column_by_name("holiday").unwrap().as_boolean();
    assert_eq!(holiday.true_count(), 7, "instants 7, 14, ..., 49");
    let temp = validated
        .column_by_name("temp")
        .unwrap()
        .as_primitive::<Float32Type>();
    assert_eq!(temp.value(9), 0.1_f32);
}

#[test]
fn the_shared_hourly_data_matches_the_inputs_and_targets_schemas() {
    let path = repo_path("../shared/data/bike-sharing/hour.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {path:?} is absent");
        return;
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    let column = |name: &str| -> ArrayRef {
        let position = header.iter().position(|column| *column == name).unwrap();
        let cells = rows.iter().map(|row| row[position]);
        match name {
            "dteday" => Arc::new(StringArray::from_iter_values(cells)),
            "temp" | "atemp" | "hum" | "windspeed" => Arc::new(Float64Array::from_iter_values(
                cells.map(|cell| cell.parse::<f64>().unwrap()),
            )),
            _ => Arc::new(Int64Array::from_iter_values(
                cells.map(|cell| cell.parse::<i64>().unwrap()),
            )),
        }
    };
    let inputs = load("inputs");
    let names: Vec<&str> = inputs
        .columns
        .iter()
        .map(|column| column.name.as_str())
        .collect();
    let batch = RecordBatch::try_from_iter(names.iter().map(|name| (*name, column(name)))).unwrap();
    let mut validator = inputs.validator();
    let third = batch.num_rows() / 3 + 1;
    for start in (0..batch.num_rows()).step_by(third) {
        let length = third.min(batch.num_rows() - start);
        validator.push(&batch.slice(start, length)).unwrap();
    }
    let summary = validator.finish().unwrap();
    assert_eq!((summary.rows, summary.batches), (17_379, 3));
    let targets =
        RecordBatch::try_from_iter([("cnt", column("cnt")), ("instant", column("instant"))])
            .unwrap();
    load("targets").validate(&targets).unwrap();
}

#[test]
fn each_rule_is_reported_with_its_count_rows_and_values() {
    check(|frame| frame, &[]);
    check(
        |frame| {
            frame.set(
                "season",
                ints_with(&[(5, Some(0)), (17, Some(7)), (20, Some(9))]),
            )
        },
        &[
            "column 'season': 3 rows not in allowed values [1, 2, 3, 4] (rows 5, 17, 20; instant 6, 18, 21; values 0, 7, 9)",
        ],
    );
    check(
        |frame| frame.set("hr", ints_with(&[(2, Some(24)), (3, Some(99))])),
        &["column 'hr': 2 rows above the maximum 23 (rows 2, 3; instant 3, 4; values 24, 99)"],
    );
    check(
        |frame| frame.set("mnth", ints_with(&[(0, Some(0))])),
        &["column 'mnth': 1 row below the minimum 1 (row 0; instant 1; values 0)"],
    );
    check(
        |frame| frame.set("casual", ints_with(&[(4, None), (8, None)])),
        &[
            "column 'casual': 2 rows missing (null or NaN), but not nullable (rows 4, 8; instant 5, 9; values null, null)",
        ],
    );
    let mut temp = vec![0.5; 30];
    temp[11] = f64::NAN;
    temp[12] = 1.5;
    check(
        |frame| frame.set("temp", Arc::new(Float64Array::from(temp))),
        &[
            "column 'temp': 1 row missing (null or NaN), but not nullable (row 11; instant 12; values NaN)",
            "column 'temp': 1 row above the maximum 1 (row 12; instant 13; values 1.5)",
        ],
    );
    check(
        |frame| frame.set("instant", ints_with(&[])),
        &[
            "column 'instant': 29 rows with a duplicate value in a unique column \
           (first rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10; values 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)",
        ],
    );
    check(
        |frame| frame.remove("hum"),
        &["column 'hum': missing from the data"],
    );
    check(
        |frame| frame.set("cnt", ints_with(&[])),
        &["column 'cnt': not in the schema, which is strict"],
    );
    check(
        |frame| frame.set("temp", Arc::new(StringArray::from(vec!["0.5"; 30]))),
        &["column 'temp': expected type float32, found Arrow type Utf8"],
    );
    // Cells that are not numbers are named by row, as a person typing a CSV would need.
    let mut temps = vec!["0.5"; 30];
    temps[7] = "abc";
    temps[12] = "n/a";
    check(
        |frame| frame.set("temp", Arc::new(StringArray::from(temps))),
        &[
            "column 'temp': expected type float32, found Arrow type Utf8; 2 rows not a number \
           (rows 7, 12; instant 8, 13; values \"abc\", \"n/a\")",
        ],
    );
}

#[test]
fn lossless_coercions_and_their_failures() {
    check(
        |frame| frame.set("holiday", ints_with(&[(3, Some(2)), (9, Some(-1))])),
        &[
            "column 'holiday': 2 rows cannot be converted losslessly from Int64 to bool \
           (rows 3, 9; instant 4, 10; values 2, -1)",
        ],
    );
    check(
        |frame| frame.set("weekday", ints_with(&[(6, Some(256)), (7, Some(-3))])),
        &[
            "column 'weekday': 2 rows cannot be converted losslessly from Int64 to uint8 \
           (rows 6, 7; instant 7, 8; values 256, -3)",
        ],
    );
    let mut days: Vec<&str> = vec!["2011-01-01"; 30];
    days[13] = "2011-02-29";
    days[14] = "01/01/2011";
    check(
        |frame| frame.set("dteday", Arc::new(StringArray::from(days))),
        &[
            "column 'dteday': 2 rows cannot be converted losslessly from Utf8 to date \
           (rows 13, 14; instant 14, 15; values \"2011-02-29\", \"01/01/2011\")",
        ],
    );
    let mut casual = vec![1.0; 30];
    casual[1] = 2.5;
    check(
        |frame| frame.set("casual", Arc::new(Float64Array::from(casual))),
        &[
            "column 'casual': 1 row cannot be converted losslessly from Float64 to uint32 \
           (row 1; instant 2; values 2.5)",
        ],
    );
    // Already-converted types pass through, and booleans may arrive as booleans.
    check(
        |frame| {
            frame
                .set("holiday", Arc::new(BooleanArray::from(vec![false; 30])))
                .set("dteday", Arc::new(Date32Array::from(vec![14_975; 30])))
                .set("temp", Arc::new(Float32Array::from(vec![0.25_f32; 30])))
        },
        &[],
    );
}

#[test]
fn without_coercion_only_exact_types_pass() {
    let mut schema = load("targets");
    schema.coerce = false;
    let batch = RecordBatch::try_from_iter([
        (
            "instant",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        ),
        ("cnt", Arc::new(Int64Array::from(vec![3, 4])) as ArrayRef),
    ])
    .unwrap();
    assert_eq!(
        lines(&violations(schema.validate(&batch))),
        [
            "column 'instant': expected type uint32, found Arrow type Int64",
            "column 'cnt': expected type uint32, found Arrow type Int64",
        ]
    );
}

#[test]
fn every_violation_is_returned_at_once() {
    let batch = Frame::inputs(30, 1)
        .set("season", ints_with(&[(5, Some(0))]))
        .set("holiday", ints_with(&[(2, Some(3))]))
        .set("temp", Arc::new(Float64Array::from(vec![-0.5; 30])))
        .set("extra", ints_with(&[]))
        .remove("registered")
        .batch();
    let report = violations(load("inputs").validate(&batch));
    assert_eq!(report.schema.as_deref(), Some("inputs"));
    let found: Vec<(&str, &Rule, usize)> = report
        .violations
        .iter()
        .map(|violation| (violation.column.as_str(), &violation.rule, violation.count))
        .collect();
    assert_eq!(
        found,
        [
            (
                "season",
                &Rule::Allowed((1..=4).map(Value::Int).collect()),
                1
            ),
            (
                "holiday",
                &Rule::Coerce {
                    expected: ColumnType::Bool,
                    found: DataType::Int64
                },
                1
            ),
            ("temp", &Rule::Min(Value::Int(0)), 30),
            ("registered", &Rule::MissingColumn, 0),
            ("extra", &Rule::UnexpectedColumn, 0),
        ]
    );
    let text = report.to_string();
    assert!(
        text.starts_with("data does not match schema 'inputs' (5 violations):\n  column 'season'")
    );
    assert_eq!(text.lines().count(), 6, "{text}");
}

#[test]
fn streaming_counts_rows_across_batches() {
    let schema = load("inputs");
    let mut validator = schema.validator();
    let first = Frame::inputs(10, 1);
    let second = Frame::inputs(10, 11).set("season", {
        let mut season: Vec<i64> = vec![1; 10];
        season[3] = 5;
        Arc::new(Int64Array::from(season))
    });
    // The third batch repeats instant 2 (row 1 of the stream) at its row 4 (row 24).
    let mut instants: Vec<i64> = (21..31).collect();
    instants[4] = 2;
    let third = Frame::inputs(10, 21).set("instant", Arc::new(Int64Array::from(instants)));
    for frame in [&first, &second, &third] {
        let validated = validator.push(&frame.batch()).unwrap();
        assert_eq!(validated.num_rows(), 10);
    }
    assert_eq!(validator.violations().violations.len(), 2);
    let report = match validator.finish() {
        Err(SchemaError::Violations(report)) => report,
        other => panic!("expected violations, got {other:?}"),
    };
    assert_eq!(
        lines(&report),
        [
            "column 'instant': 1 row with a duplicate value in a unique column (row 24; values 2)",
            "column 'season': 1 row not in allowed values [1, 2, 3, 4] (row 13; instant 14; values 5)",
        ]
    );

    // A structural violation fails the push at once, listing what was seen before it too.
    let mut validator = schema.validator();
    validator.push(&second.batch()).unwrap();
    let report = violations(validator.push(&first.remove("hr").batch()));
    assert_eq!(
        lines(&report),
        [
            "column 'season': 1 row not in allowed values [1, 2, 3, 4] (row 3; instant 14; values 5)",
            "column 'hr': missing from the data",
        ]
    );
    assert_eq!(schema.validator().finish().unwrap().rows, 0);
}

#[test]
fn targets_outputs_and_feature_importances() {
    let outputs = RecordBatch::try_from_iter([
        (
            "instant",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
        (
            "prediction",
            Arc::new(Float64Array::from(vec![10.5, -0.25, f64::NAN])) as ArrayRef,
        ),
    ])
    .unwrap();
    assert_eq!(
        lines(&violations(load("outputs").validate(&outputs))),
        [
            "column 'prediction': 1 row missing (null or NaN), but not nullable (row 2; instant 3; values NaN)"
        ]
    );
    let validated = load("outputs").validate(&outputs.slice(0, 2)).unwrap();
    assert_eq!(
        validated
            .column(1)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(0),
        10.5
    );

    let importances = RecordBatch::try_from_iter([
        (
            "feature",
            Arc::new(StringArray::from(vec!["temp", "hr", "temp"])) as ArrayRef,
        ),
        (
            "importance",
            Arc::new(Float32Array::from(vec![0.5_f32, 0.25, 0.25])) as ArrayRef,
        ),
    ])
    .unwrap();
    assert_eq!(
        lines(&violations(
            load("feature_importances").validate(&importances)
        )),
        [
            "column 'feature': 1 row with a duplicate value in a unique column (row 2; values \"temp\")"
        ]
    );
    let validated = load("feature_importances")
        .validate(&importances.slice(0, 2))
        .unwrap();
    assert_eq!(validated.column(1).data_type(), &DataType::Float64);
}

#[test]
fn shap_values_accept_any_float_column() {
    let schema = load("shap_values");
    let batch = RecordBatch::try_from_iter([
        (
            "temp",
            Arc::new(Float32Array::from(vec![0.5_f32, -0.25])) as ArrayRef,
        ),
        (
            "hr",
            Arc::new(Float64Array::from(vec![1.5, 2.0])) as ArrayRef,
        ),
        ("season", Arc::new(Int64Array::from(vec![0, 1])) as ArrayRef),
    ])
    .unwrap();
    let validated = schema.validate(&batch).unwrap();
    let names: Vec<(&str, &DataType)> = validated
        .schema_ref()
        .fields()
        .iter()
        .map(|field| (field.name().as_str(), field.data_type()))
        .collect();
    assert_eq!(
        names,
        [
            ("temp", &DataType::Float64),
            ("hr", &DataType::Float64),
            ("season", &DataType::Float64)
        ]
    );
    let bad = RecordBatch::try_from_iter([
        ("temp", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        (
            "hr",
            Arc::new(Float64Array::from(vec![f64::NAN])) as ArrayRef,
        ),
    ])
    .unwrap();
    assert_eq!(
        lines(&violations(schema.validate(&bad))),
        [
            "column 'temp': expected type float64, found Arrow type Utf8; 1 row not a number \
             (row 0; values \"x\")",
            "column 'hr': 1 row missing (null or NaN), but not nullable (row 0; values NaN)",
        ]
    );
    // A non-strict schema without extra_columns drops the columns it does not list.
    let mut dropping = schema.clone();
    dropping.extra_columns = None;
    dropping
        .columns
        .push(ColumnSpec::new("hr", ColumnType::Float32));
    let validated = dropping.validate(&batch).unwrap();
    assert_eq!(validated.num_columns(), 1);
    assert_eq!(validated.schema().field(0).name(), "hr");
}

/// A numeric or date column with inclusive bounds `low..=high` (days from 2011-01-01 for
/// dates) and a fraction of nulls when nullable.
#[derive(Debug, Clone)]
struct RandomColumn {
    column_type: ColumnType,
    low: i64,
    high: i64,
    nullable: bool,
}

fn random_column() -> impl Strategy<Value = RandomColumn> {
    let types = prop::sample::select(vec![
        ColumnType::Int8,
        ColumnType::Int16,
        ColumnType::Int32,
        ColumnType::Int64,
        ColumnType::UInt8,
        ColumnType::UInt16,
        ColumnType::UInt32,
        ColumnType::UInt64,
        ColumnType::Float32,
        ColumnType::Float64,
        ColumnType::Date,
    ]);
    (types, -50_i64..50, 0_i64..50, any::<bool>()).prop_map(|(column_type, low, span, nullable)| {
        let unsigned = matches!(
            column_type,
            ColumnType::UInt8 | ColumnType::UInt16 | ColumnType::UInt32 | ColumnType::UInt64
        );
        let low = if unsigned { low.abs() } else { low };
        RandomColumn {
            column_type,
            low,
            high: low + span,
            nullable,
        }
    })
}

fn date(days: i64) -> String {
    (chrono::NaiveDate::from_ymd_opt(2011, 1, 1).unwrap() + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

impl RandomColumn {
    fn spec(&self, name: String) -> ColumnSpec {
        let bound = |value: i64| match self.column_type {
            ColumnType::Date => Value::String(date(value)),
            ColumnType::Float32 | ColumnType::Float64 => Value::Float(value as f64),
            _ => Value::Int(value),
        };
        let mut spec = ColumnSpec::new(name, self.column_type);
        spec.min = Some(bound(self.low));
        spec.max = Some(bound(self.high));
        spec.nullable = self.nullable;
        spec
    }

    /// The column as pandas would store it (int64, double, dates as strings).
    fn array(&self, values: &[Option<i64>]) -> ArrayRef {
        match self.column_type {
            ColumnType::Date => Arc::new(StringArray::from_iter(
                values.iter().map(|value| value.map(date)),
            )),
            // Halves keep float values off the integers without leaving the bounds.
            ColumnType::Float32 | ColumnType::Float64 => {
                Arc::new(Float64Array::from_iter(values.iter().map(|value| {
                    value.map(|value| value as f64 + if value < self.high { 0.5 } else { 0.0 })
                })))
            }
            _ => Arc::new(Int64Array::from_iter(values.iter().copied())),
        }
    }
}

/// A random schema, a valid frame for it (as rows of integer "levels"), and a cell to break.
fn random_case() -> impl Strategy<Value = (Vec<RandomColumn>, Vec<Vec<Option<i64>>>, usize, usize)>
{
    (prop::collection::vec(random_column(), 1..6), 1_usize..40).prop_flat_map(|(columns, rows)| {
        let data: Vec<_> = columns
            .iter()
            .map(|column| {
                let value = column.low..=column.high;
                let cell = if column.nullable {
                    prop::option::weighted(0.8, value).boxed()
                } else {
                    value.prop_map(Some).boxed()
                };
                prop::collection::vec(cell, rows)
            })
            .collect();
        let count = columns.len();
        (Just(columns), data, 0..count, 0..rows)
    })
}

proptest! {
    #[test]
    fn valid_frames_pass_and_a_broken_cell_is_named(
        (columns, data, broken_column, broken_row) in random_case(),
    ) {
        let mut schema = Schema::new(
            columns.iter().enumerate().map(|(i, column)| column.spec(format!("c{i}"))).collect(),
        );
        schema.name = Some("random".into());
        prop_assert!(schema.check_definition().is_ok());
        let yaml = serde_yaml::to_string(&schema).unwrap();
        prop_assert_eq!(&serde_yaml::from_str::<Schema>(&yaml).unwrap(), &schema);

        let batch = |data: &[Vec<Option<i64>>]| {
            RecordBatch::try_from_iter(columns.iter().zip(data).enumerate().map(
                |(i, (column, values))| (format!("c{i}"), column.array(values)),
            ))
            .unwrap()
        };
        let validated = schema.validate(&batch(&data));
        prop_assert!(validated.is_ok(), "{:?}", validated.err().map(|e| e.to_string()));
        prop_assert_eq!(validated.unwrap().schema(), schema.arrow_schema());

        let mut broken = data.clone();
        let column = &columns[broken_column];
        broken[broken_column][broken_row] = Some(column.high + 1);
        let report = violations(schema.validate(&batch(&broken)));
        prop_assert_eq!(report.violations.len(), 1, "{}", report);
        let violation = &report.violations[0];
        prop_assert_eq!(&violation.column, &format!("c{broken_column}"));
        prop_assert!(matches!(violation.rule, Rule::Max(_)), "{}", violation);
        prop_assert_eq!(&violation.first_rows, &vec![broken_row]);
        prop_assert_eq!(violation.count, 1);
    }
}
