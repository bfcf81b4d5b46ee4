//! Criterion benchmarks of velo's models on the shared bike-sharing data (parity features):
//! fit, predict (1 row through the whole model, 1 row on encoded features, 1k and 100k rows)
//! and exact TreeSHAP for 100 samples.
//!
//! ```text
//! cargo bench -p velo-jobs --bench models [-- FILTER]
//! ```
//!
//! `VELO_BENCH_DATA` points at another folder holding `inputs_train.parquet` and
//! `targets_train.parquet`.
#![allow(missing_docs, reason = "a benchmark binary")]
#![allow(clippy::expect_used, reason = "a benchmark stops on missing data")]

use std::{hint::black_box, path::PathBuf, time::Duration};

use arrow::{array::AsArray, compute::cast, datatypes::DataType, record_batch::RecordBatch};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use velo_core::schemas::Schema;
use velo_io::datasets::{ParquetReader, Reader, load_schema};
use velo_models::{FeaturesConfig, ForestModel, Model, RandomForestModel};

struct Data {
    schema: Schema,
    inputs: RecordBatch,
    targets: Vec<f64>,
}

fn data() -> Data {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::var_os("VELO_BENCH_DATA")
        .map_or_else(|| root.join("../shared/data/bike-sharing"), PathBuf::from);
    let schema = load_schema(&root.join("configs/schemas/inputs.yaml")).expect("inputs schema");
    let targets_schema =
        load_schema(&root.join("configs/schemas/targets.yaml")).expect("targets schema");
    let read = |name: &str, schema: &Schema| {
        Reader::ParquetReader(ParquetReader::new(dir.join(format!("{name}.parquet"))))
            .read_validated(schema)
            .unwrap_or_else(|e| panic!("cannot read {name} in {}: {e}", dir.display()))
            .data
    };
    let inputs = read("inputs_train", &schema);
    let targets = read("targets_train", &targets_schema);
    let column = targets.column_by_name("cnt").expect("a cnt column");
    let column = cast(column, &DataType::Float64).expect("numeric targets");
    let targets = column
        .as_primitive::<arrow::datatypes::Float64Type>()
        .values()
        .to_vec();
    Data {
        schema,
        inputs,
        targets,
    }
}

fn parity_forest(n_estimators: usize) -> RandomForestModel {
    RandomForestModel {
        n_estimators,
        features: FeaturesConfig {
            categoricals: vec!["season".into(), "weathersit".into()],
            drop: vec!["dteday".into()],
            ..FeaturesConfig::default()
        },
        ..RandomForestModel::default()
    }
}

/// `rows` rows made by repeating `batch`.
fn repeated(batch: &RecordBatch, rows: usize) -> RecordBatch {
    let copies = vec![batch; rows.div_ceil(batch.num_rows())];
    let all = arrow::compute::concat_batches(&batch.schema(), copies).expect("same schema");
    all.slice(0, rows)
}

fn benches(c: &mut Criterion) {
    let data = data();
    let mut fit = c.benchmark_group("fit");
    fit.sample_size(10)
        .measurement_time(Duration::from_secs(15));
    for n_estimators in [20, 200] {
        fit.bench_with_input(
            BenchmarkId::new("random_forest_depth20", n_estimators),
            &n_estimators,
            |b, &n| {
                b.iter(|| {
                    let mut model = ForestModel::new(parity_forest(n), data.schema.clone());
                    model.fit(&data.inputs, &data.targets).expect("fit");
                    model
                });
            },
        );
    }
    fit.finish();

    let mut model = ForestModel::new(parity_forest(200), data.schema.clone());
    model.fit(&data.inputs, &data.targets).expect("fit");
    let (pipeline, forest) = model.fitted().expect("a fitted model");

    let mut predict = c.benchmark_group("predict_200_trees");
    let one = data.inputs.slice(data.inputs.num_rows() / 2, 1);
    predict.throughput(Throughput::Elements(1));
    predict.bench_function("1_row", |b| {
        b.iter(|| model.predict(black_box(&one)).expect("predict"));
    });
    let encoded = pipeline.transform(&one).expect("transform");
    let mut row = Vec::new();
    encoded.row_into(0, &mut row);
    predict.bench_function("1_row_encoded", |b| {
        b.iter(|| forest.predict_row(black_box(&row)));
    });
    predict.bench_function("1_row_encode_only", |b| {
        b.iter(|| pipeline.transform(black_box(&one)).expect("transform"));
    });
    for rows in [1_000, 100_000] {
        let batch = repeated(&data.inputs, rows);
        predict.throughput(Throughput::Elements(rows as u64));
        predict.bench_with_input(BenchmarkId::new("rows", rows), &batch, |b, batch| {
            b.iter(|| model.predict(batch).expect("predict"));
        });
    }
    predict.finish();

    let mut shap = c.benchmark_group("shap_200_trees");
    shap.sample_size(10);
    let samples = data.inputs.slice(0, 100);
    shap.throughput(Throughput::Elements(100));
    shap.bench_function("tree_shap_100_samples", |b| {
        b.iter(|| model.explain_samples(&samples).expect("explain"));
    });
    shap.finish();
}

criterion_group!(models, benches);
criterion_main!(models);
