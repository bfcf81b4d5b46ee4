//! velo's side of the reference comparison: the measurements of
//! `../shared/bench/sklearn_baseline.py`, taken on the same data, split and features, printed
//! as one JSON object with the same keys. `cargo xtask bench --reference` runs both and
//! prints the ratios.
//!
//! ```text
//! cargo bench -p velo-jobs --bench reference -- --data-dir ../shared/data/bike-sharing [--threads N]
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports to the terminal"
)]
#![allow(missing_docs, reason = "a benchmark binary")]

use std::{path::PathBuf, time::Instant};

use arrow::{array::AsArray, compute::cast, datatypes::DataType, record_batch::RecordBatch};
use velo_core::metrics::MetricName;
use velo_io::{
    datasets::{ParquetReader, Reader, load_schema},
    services::{MlflowService, tracking::RunContext},
};
use velo_jobs::{JobConfig, JobContext, Settings};
use velo_models::{
    FeaturesConfig, GradientBoostingModel, Model, ModelConfig, NeuralNetModel, RandomForestModel,
};

/// The reference's held-out test size: two months of hourly rows.
const TEST_SIZE: usize = 24 * 30 * 2;

mod support;

use support::peak_rss_mb;

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    data_dir: PathBuf,
    schemas: PathBuf,
    threads: Option<usize>,
}

fn parse_args() -> Result<Args, Failure> {
    // cargo runs benches from the package directory: default paths start at the workspace root.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = Args {
        data_dir: root.join("../shared/data/bike-sharing"),
        schemas: root.join("configs/schemas"),
        threads: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--data-dir" => args.data_dir = iter.next().ok_or("--data-dir needs a value")?.into(),
            "--schemas" => args.schemas = iter.next().ok_or("--schemas needs a value")?.into(),
            "--threads" => {
                args.threads = Some(iter.next().ok_or("--threads needs a value")?.parse()?);
            }
            // cargo bench passes --bench; anything else is a mistake.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(args)
}

fn targets(batch: &RecordBatch, column: &str) -> Result<Vec<f64>, Failure> {
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| format!("no column {column}"))?;
    let array = cast(array, &DataType::Float64)?;
    Ok(array
        .as_primitive::<arrow::datatypes::Float64Type>()
        .values()
        .to_vec())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn metrics(y_true: &[f64], y_pred: &[f64]) -> Result<serde_json::Value, Failure> {
    Ok(serde_json::json!({
        "rmse": MetricName::RootMeanSquaredError.compute(y_true, y_pred)?,
        "mae": MetricName::MeanAbsoluteError.compute(y_true, y_pred)?,
        "r2": MetricName::R2Score.compute(y_true, y_pred)?,
        "mape": MetricName::MeanAbsolutePercentageError.compute(y_true, y_pred)?,
    }))
}

fn run(args: &Args) -> Result<serde_json::Value, Failure> {
    let inputs_schema = load_schema(&args.schemas.join("inputs.yaml"))?;
    let targets_schema = load_schema(&args.schemas.join("targets.yaml"))?;
    let read = |name: &str, schema| {
        Reader::ParquetReader(ParquetReader::new(
            args.data_dir.join(format!("{name}.parquet")),
        ))
        .read_validated(schema)
    };
    let inputs = read("inputs_train", &inputs_schema)?.data;
    let y_all = targets(&read("targets_train", &targets_schema)?.data, "cnt")?;
    let holdout = read("inputs_test", &inputs_schema)?.data;
    let y_holdout = targets(&read("targets_test", &targets_schema)?.data, "cnt")?;
    let everything = arrow::compute::concat_batches(&inputs.schema(), [&inputs, &holdout])?;

    let n_train = inputs.num_rows() - TEST_SIZE;
    let (x_train, x_test) = (inputs.slice(0, n_train), inputs.slice(n_train, TEST_SIZE));
    let (y_train, y_test) = (&y_all[..n_train], &y_all[n_train..]);

    // The parity features: the reference's one-hot categoricals and twelve numericals
    // (casual and registered included, as the reference does).
    let config = ModelConfig::RandomForestModel(RandomForestModel {
        features: FeaturesConfig {
            categoricals: vec!["season".into(), "weathersit".into()],
            drop: vec!["dteday".into()],
            ..FeaturesConfig::default()
        },
        ..RandomForestModel::default()
    });
    let mut model: Box<dyn Model> = config.build(&inputs_schema);

    let start = Instant::now();
    model.fit(&x_train, y_train)?;
    let fit_seconds = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let y_pred = model.predict(&x_test)?;
    let predict_seconds = start.elapsed().as_secs_f64();

    let mut one_row = Vec::with_capacity(200);
    for row in 0..200 {
        let batch = x_test.slice(row, 1);
        let start = Instant::now();
        let prediction = model.predict(&batch)?;
        one_row.push(start.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(prediction);
    }

    let mut batch_seconds = Vec::new();
    let mut batch_predictions = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        batch_predictions = model.predict(&everything)?;
        batch_seconds.push(start.elapsed().as_secs_f64());
    }
    let batch_seconds = median(batch_seconds);
    let n_trees = model
        .params()
        .get("n_estimators")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(1.0);

    let samples = holdout.slice(0, 100.min(holdout.num_rows()));
    let start = Instant::now();
    let explanations = model.explain_samples(&samples)?;
    let shap_seconds = start.elapsed().as_secs_f64();
    let sample_predictions = model.predict(&samples)?;
    let additivity = (0..samples.num_rows())
        .filter_map(|row| {
            let sum: f64 = explanations.per_feature.row(row)?.iter().sum::<f64>()
                + explanations.per_feature.base_value();
            Some((sum - sample_predictions[row]).abs() / sample_predictions[row].abs().max(1e-12))
        })
        .fold(0.0, f64::max);
    let per_column = explanations.per_column.mean_abs();
    let shap_mean_abs: serde_json::Map<String, serde_json::Value> = explanations
        .per_column
        .names()
        .iter()
        .zip(per_column)
        .map(|(name, value)| (name.clone(), value.into()))
        .collect();
    let importances = model.explain_model()?;
    let feature_importances: serde_json::Map<String, serde_json::Value> = importances
        .features
        .iter()
        .zip(&importances.importances)
        .map(|(name, value)| (name.clone(), (*value).into()))
        .collect();

    let mut result = serde_json::json!({
        "n_train": n_train,
        "n_test": TEST_SIZE,
        "threads": rayon::current_num_threads(),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "predict_one_row_median_ms": median(one_row),
        "batch_rows": everything.num_rows(),
        "batch_predict_seconds": batch_seconds,
        "rows_per_second": everything.num_rows() as f64 / batch_seconds,
        "ns_per_tree_per_row": batch_seconds * 1e9 / (n_trees * everything.num_rows() as f64),
        "holdout": metrics(&y_holdout, &batch_predictions[inputs.num_rows()..])?,
        "shap_seconds": shap_seconds,
        "shap_samples": samples.num_rows(),
        "shap_additivity_max_relative_error": additivity,
        "shap_mean_abs": shap_mean_abs,
        "feature_importances": feature_importances,
    });
    if let (Some(object), serde_json::Value::Object(test_metrics)) =
        (result.as_object_mut(), metrics(y_test, &y_pred)?)
    {
        object.extend(test_metrics);
        object.insert("peak_rss_mb".into(), peak_rss_mb().into());
    }

    // The other model kinds on the same split and features (velo only: the reference trains
    // a forest), measured after the forest's peak memory.
    let network = ModelConfig::NeuralNetModel(NeuralNetModel {
        features: FeaturesConfig {
            categoricals: vec!["season".into(), "weathersit".into()],
            drop: vec!["dteday".into()],
            ..NeuralNetModel::default().features
        },
        ..NeuralNetModel::default()
    });
    let mut model = network.build(&inputs_schema);
    let start = Instant::now();
    model.fit(&x_train, y_train)?;
    let nn_fit_seconds = start.elapsed().as_secs_f64();
    let nn_metrics = metrics(y_test, &model.predict(&x_test)?)?;
    let boosting = ModelConfig::GradientBoostingModel(GradientBoostingModel {
        features: FeaturesConfig {
            categoricals: vec!["season".into(), "weathersit".into()],
            drop: vec!["dteday".into()],
            ..FeaturesConfig::default()
        },
        ..GradientBoostingModel::default()
    });
    let mut model = boosting.build(&inputs_schema);
    let start = Instant::now();
    model.fit(&x_train, y_train)?;
    let gbm_fit_seconds = start.elapsed().as_secs_f64();
    let gbm_metrics = metrics(y_test, &model.predict(&x_test)?)?;
    if let Some(object) = result.as_object_mut() {
        object.insert("nn_fit_seconds".into(), nn_fit_seconds.into());
        object.insert("gbm_fit_seconds".into(), gbm_fit_seconds.into());
        for key in ["rmse", "mae", "r2"] {
            object.insert(format!("nn_{key}"), nn_metrics[key].clone());
            object.insert(format!("gbm_{key}"), gbm_metrics[key].clone());
        }
        for (key, value) in tuning(args)? {
            object.insert(key, value);
        }
    }
    Ok(result)
}

/// The reference grid search as velo's TuningJob runs it from `configs/parity/tuning.yaml`
/// (max_depth 3, 5, 7; 200 trees; 4 time-series folds of 1440 rows; refit), data read from
/// `--data-dir`, into an embedded store in a temporary directory. The time covers the whole
/// job (reading, lineage, leakage check, cross-validation, refit, logging), which is more than
/// what GridSearchCV's `fit` is timed for.
fn tuning(args: &Args) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("configs/parity/tuning.yaml"))?;
    let mut settings: Settings = serde_yaml::from_str(&text)?;
    let JobConfig::TuningJob(job) = &mut settings.job else {
        return Err("configs/parity/tuning.yaml is not a TuningJob".into());
    };
    job.inputs = Reader::ParquetReader(ParquetReader::new(
        args.data_dir.join("inputs_train.parquet"),
    ));
    job.targets = Reader::ParquetReader(ParquetReader::new(
        args.data_dir.join("targets_train.parquet"),
    ));
    job.schemas.inputs = args.schemas.join("inputs.yaml");
    job.schemas.targets = Some(args.schemas.join("targets.yaml"));
    let store = tempfile::tempdir()?;
    let mlflow = MlflowService {
        tracking_uri: store.path().display().to_string(),
        registry_uri: store.path().display().to_string(),
        ..job.services.mlflow.clone()
    };
    let context = JobContext::open(&mlflow, RunContext::default())?;
    let start = Instant::now();
    let outcome = settings.job.run(&context)?;
    let tuning_seconds = start.elapsed().as_secs_f64();
    let run_id = outcome.run_id.ok_or("the tuning job opened no run")?;
    let run = context.tracking.get_run(&run_id)?;
    let best_depth = run
        .data
        .param("best.max_depth")
        .and_then(|depth| depth.parse::<u64>().ok())
        .ok_or("the tuning run logged no best max_depth")?;
    let mut result = serde_json::Map::new();
    result.insert("tuning_seconds".into(), tuning_seconds.into());
    result.insert("tuning_best_max_depth".into(), best_depth.into());
    result.insert(
        "tuning_best_mean_score".into(),
        (-outcome
            .metrics
            .get("best_mean_squared_error")
            .copied()
            .unwrap_or(f64::NAN))
        .into(),
    );
    Ok(result)
}

fn main() -> Result<(), Failure> {
    // Test runners (cargo nextest, `cargo test --all-targets`) list a bench's tests first:
    // this harness has none to list.
    if std::env::args().any(|arg| arg == "--list") {
        return Ok(());
    }
    let args = parse_args()?;
    let result = match args.threads {
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?
            .install(|| run(&args))?,
        None => run(&args)?,
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
