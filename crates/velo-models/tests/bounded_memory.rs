//! A model predicts a batch of ten million rows with memory bounded by its output: the
//! features are encoded slice by slice, never for the whole batch at once. Alone in its test
//! binary, so that no other test's allocations count.
#![allow(missing_docs, reason = "a test binary")]

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Float64Array},
    datatypes::{DataType, Field, Schema as ArrowSchema},
    record_batch::RecordBatch,
};
use velo_core::schemas::Schema;
use velo_models::ModelConfig;

/// A figure of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`); `None` off Linux.
fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn batch(rows: usize) -> RecordBatch {
    let a: Vec<f64> = (0..rows).map(|i| (i % 1000) as f64 / 100.0).collect();
    let b: Vec<f64> = (0..rows).map(|i| (i % 7) as f64).collect();
    RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![
            Field::new("a", DataType::Float64, false),
            Field::new("b", DataType::Float64, false),
        ])),
        vec![
            Arc::new(Float64Array::from(a)) as ArrayRef,
            Arc::new(Float64Array::from(b)),
        ],
    )
    .expect("batch")
}

#[test]
fn ten_million_rows_are_predicted_with_memory_bounded_by_the_output() {
    let schema: Schema =
        serde_yaml::from_str("columns: [{name: a, type: float64}, {name: b, type: float64}]")
            .expect("schema");
    let config: ModelConfig =
        serde_yaml::from_str("{KIND: RandomForestModel, n_estimators: 4, max_depth: 4}")
            .expect("config");
    let mut model = config.build(&schema);
    let train = batch(2000);
    let y: Vec<f64> = (0..2000)
        .map(|i: i32| (f64::from(i % 1000) / 100.0) * 2.0)
        .collect();
    model.fit(&train, &y).expect("fit");

    let rows = 10_000_000;
    let inputs = batch(rows);
    let Some(before) = status_mb("VmRSS:") else {
        return;
    };
    let predictions = model
        .predict(&inputs)
        .expect("ten million rows are predicted");
    let peak = status_mb("VmHWM:").expect("the peak");
    assert_eq!(predictions.len(), rows);
    assert!(predictions.iter().all(|p| p.is_finite()));
    // The output alone is 76 MiB; encoding every row at once would add 76 MiB of f32 features.
    let output_mb = (rows * 8) as f64 / (1024.0 * 1024.0);
    let grown = peak - before;
    assert!(
        grown < output_mb + 30.0,
        "predicting grew the resident set by {grown:.0} MiB (output {output_mb:.0} MiB)"
    );
}
