//! velo's side of the tracking comparison run by `cargo xtask bench --reference`: the steps
//! `xtask/assets/mlflow_tracking_bench.py` times with MLflow's Python client, through velo's
//! registries against the same store (an MLflow server, or the embedded store beside MLflow's
//! file store). Prints one JSON object of medians in milliseconds.
//!
//! `cargo bench -p velo-io --bench tracking -- URI REPEATS BYTES`

#![allow(clippy::print_stdout, reason = "the harness prints its JSON result")]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use arrow::{
    array::{Float64Array, Int64Array, RecordBatch},
    datatypes::{DataType, Field, Schema},
};
use rand::RngCore as _;
use velo_io::{
    registries::{
        self, ModelUri, Tag,
        mlmodel::{self, ColSpec, MlModel},
    },
    services::{
        RunConfig,
        tracking::{ActiveRun, RunContext},
    },
};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--bench")
        .collect();
    let [uri, repeats, size] = args.as_slice() else {
        return Err("usage: tracking URI REPEATS BYTES".into());
    };
    let repeats: usize = repeats.parse()?;
    let size: usize = size.parse()?;
    let stores = registries::open(uri)?;
    let mut payload = vec![0_u8; size];
    rand::rng().fill_bytes(&mut payload);
    let schema = Arc::new(Schema::new(vec![
        Field::new("hr", DataType::Int64, false),
        Field::new("temp", DataType::Float64, false),
    ]));
    let example = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![0, 1])),
            Arc::new(Float64Array::from(vec![0.2, 0.3])),
        ],
    )?;
    let context = RunContext {
        source_name: "velo bench".into(),
        ..RunContext::default()
    };
    let params: Vec<Tag> = (0..20)
        .map(|i| Tag::new(format!("param_{i}"), i.to_string()))
        .collect();
    let metric_names: Vec<String> = (0..100).map(|i| format!("metric_{i}")).collect();
    let (mut run_log, mut log_model, mut register, mut load) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for index in 0..=repeats {
        let mut config = RunConfig::named(&format!("bench-{index}"));
        config.log_system_metrics = false;
        let started = Instant::now();
        let run = ActiveRun::start(stores.tracking.clone(), "bench", &config, &context)?;
        // Params and metrics travel together: one request to a server.
        let now = velo_mlflow::now_ms();
        let metrics: Vec<registries::Metric> = metric_names
            .iter()
            .enumerate()
            .map(|(i, name)| registries::Metric::new(name.clone(), i as f64, now, 0))
            .collect();
        stores
            .tracking
            .log_batch(run.id(), &metrics, &params, &[])?;
        run.finish()?;
        let run_log_time = started.elapsed();

        config.name = format!("model-{index}");
        let run = ActiveRun::start(stores.tracking.clone(), "bench", &config, &context)?;
        let started = Instant::now();
        let local = tempfile::tempdir()?;
        let model = MlModel {
            artifact_path: "model".into(),
            run_id: run.id().to_owned(),
            model_file: "model.velo".into(),
            model_kind: "Payload".into(),
            inputs: mlmodel::signature_of(&schema),
            outputs: vec![ColSpec {
                kind: "double".into(),
                name: "cnt".into(),
                required: true,
            }],
            input_example: Some(mlmodel::example_of(&example, 2)?),
            extra_files: Vec::new(),
        };
        model.write_into(local.path())?;
        std::fs::write(local.path().join("model.velo"), &payload)?;
        let source =
            mlmodel::log_model_dir(stores.tracking.as_ref(), run.info(), "model", local.path())?;
        let log_model_time = started.elapsed();
        let run_id = run.id().to_owned();
        run.finish()?;

        let started = Instant::now();
        let version = stores
            .registry
            .create_model_version("bench-model", &source, &run_id, &[])?;
        stores
            .registry
            .set_alias("bench-model", "Champion", &version.version)?;
        let register_time = started.elapsed();

        let started = Instant::now();
        let into = tempfile::tempdir()?;
        let uri: ModelUri = "models:/bench-model@Champion".parse()?;
        let resolved = uri.resolve(stores.registry.as_ref())?;
        stores.registry.download_model(&resolved, into.path())?;
        let loaded = std::fs::read(into.path().join("model.velo"))?;
        let _ = mlmodel::read(into.path())?;
        if loaded.len() != size {
            return Err("the loaded model has the wrong size".into());
        }
        let load_time = started.elapsed();

        if index == 0 {
            continue;
        }
        run_log.push(millis(run_log_time));
        log_model.push(millis(log_model_time));
        register.push(millis(register_time));
        load.push(millis(load_time));
    }
    println!(
        "{}",
        serde_json::json!({
            "run_log_ms": median(run_log),
            "log_model_ms": median(log_model),
            "register_alias_ms": median(register),
            "load_by_alias_ms": median(load),
        })
    );
    Ok(())
}
