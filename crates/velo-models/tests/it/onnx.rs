//! ONNX export against onnxruntime (the PyPI wheel in the test venv): each model kind, with
//! one-hot and ordinal categories, scaled and raw numbers, predicts the same as velo within
//! 1e-6 relative, on ordinary rows and on rows placed exactly on the trees' thresholds.

use std::{path::PathBuf, process::Command, sync::Arc};

use arrow::{
    array::{ArrayRef, Float32Array, Float64Array, Int64Array, UInt8Array},
    datatypes::{DataType, Field, Schema as ArrowSchema},
    record_batch::RecordBatch,
};
use velo_core::schemas::Schema;
use velo_models::{
    FeaturesConfig, GradientBoostingModel, ModelConfig, NeuralNetModel, RandomForestModel,
    config::{CategoricalEncoding, Scaling},
    load_model,
    onnx::{MlOpset, Options},
};

/// The venv's Python with onnxruntime: `$VELO_PYTHON`; `None` with a visible message when
/// absent, a failure in CI.
#[allow(clippy::print_stderr, reason = "a skipped test says so visibly")]
fn python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VELO_PYTHON").map(PathBuf::from)
        && path.is_file()
    {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none() && std::env::var_os("VELO_IT").is_none(),
        "no Python with onnxruntime (set VELO_PYTHON; required in CI)"
    );
    eprintln!("SKIPPED: no Python with onnxruntime (set VELO_PYTHON)");
    None
}

fn schema() -> Schema {
    serde_yaml::from_str(
        "columns:\n  - {name: season, type: uint8}\n  - {name: count, type: int64}\n  - {name: temp, type: float32}\n  - {name: x, type: float64}\n",
    )
    .expect("schema")
}

fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("season", DataType::UInt8, false),
        Field::new("count", DataType::Int64, false),
        Field::new("temp", DataType::Float32, false),
        Field::new("x", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt8Array::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )),
        Arc::new(Float32Array::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("batch")
}

/// One row: `season`, `count`, `temp`, `x`.
type Row = (u8, i64, f32, f64);

fn rows(n: usize, seed: u64) -> (Vec<Row>, Vec<f64>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let rows: Vec<Row> = (0..n)
        .map(|_| {
            (
                1 + (next() * 4.0) as u8,
                (next() * 50.0) as i64,
                next() as f32,
                next() * 100.0 - 50.0,
            )
        })
        .collect();
    let y = rows
        .iter()
        .map(|(season, count, temp, x)| {
            20.0 * f64::from(*season) + *count as f64 + 300.0 * f64::from(*temp) + x.abs()
        })
        .collect();
    (rows, y)
}

/// `[kind, encoding, scaling]` combinations exported and compared.
fn configs() -> Vec<(&'static str, ModelConfig)> {
    let features = |encoding, scaling| FeaturesConfig {
        categoricals: vec!["season".into()],
        encoding,
        scaling,
        ..FeaturesConfig::default()
    };
    vec![
        (
            "forest, one-hot",
            ModelConfig::RandomForestModel(RandomForestModel {
                n_estimators: 30,
                max_depth: Some(12),
                seed: 3,
                features: features(CategoricalEncoding::OneHot, Scaling::None),
                ..RandomForestModel::default()
            }),
        ),
        (
            "forest, ordinal, scaled",
            ModelConfig::RandomForestModel(RandomForestModel {
                n_estimators: 10,
                max_depth: Some(8),
                seed: 4,
                features: features(CategoricalEncoding::Ordinal, Scaling::Standard),
                ..RandomForestModel::default()
            }),
        ),
        (
            "boosting, one-hot",
            ModelConfig::GradientBoostingModel(GradientBoostingModel {
                max_iter: 60,
                features: features(CategoricalEncoding::OneHot, Scaling::None),
                ..GradientBoostingModel::default()
            }),
        ),
        (
            "neural, one-hot, scaled",
            ModelConfig::NeuralNetModel(NeuralNetModel {
                hidden_layers: vec![16, 8],
                epochs: 30,
                seed: 5,
                features: features(CategoricalEncoding::OneHot, Scaling::Standard),
                ..NeuralNetModel::default()
            }),
        ),
    ]
}

/// Runs `model.onnx` in onnxruntime on the rows of `inputs.json`; returns its predictions.
fn onnxruntime(python: &PathBuf, dir: &std::path::Path) -> Vec<f64> {
    let script = r#"
import json, sys
import numpy as np, onnxruntime as ort
folder = sys.argv[1]
import onnx
onnx.checker.check_model(onnx.load(folder + "/model.onnx"), full_check=True)
session = ort.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
columns = json.load(open(folder + "/inputs.json"))
types = {"tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float)": np.float32,
         "tensor(double)": np.float64, "tensor(bool)": np.bool_}
feeds = {i.name: np.asarray(columns[i.name], dtype=types[i.type]) for i in session.get_inputs()}
out = session.run(["prediction"], feeds)[0]
print(json.dumps([float(v) for v in out.reshape(-1)]))
"#;
    let output = Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("predictions")
}

#[test]
fn every_model_kind_scores_the_same_in_onnxruntime() {
    let Some(python) = python() else {
        return;
    };
    let (train, y) = rows(1500, 1);
    let (mut test, _) = rows(300, 2);
    for (name, config) in configs() {
        let mut model = config.build(&schema());
        model.fit(&batch(&train), &y).expect("fit");
        // A loaded model is what gets exported.
        let model = load_model(&model.to_artifact().expect("artifact")).expect("load");
        if name.starts_with("forest, one-hot") {
            // Rows exactly on split thresholds of `temp` and `x` (f32 thresholds, exact in
            // both input types): a rounding in the export would send them the other way.
            let artifact = model.to_artifact().expect("artifact");
            let features = artifact.u32s("feature").expect("features");
            let thresholds = artifact.f32s("threshold").expect("thresholds");
            // Features: season_1..season_4, then count, temp, x.
            let on = |feature: u32| -> Vec<f32> {
                features
                    .iter()
                    .zip(thresholds)
                    .filter(|(f, _)| **f == feature)
                    .map(|(_, t)| *t)
                    .take(150)
                    .collect()
            };
            let (temps, xs) = (on(5), on(6));
            assert!(!temps.is_empty() && !xs.is_empty());
            for (k, threshold) in temps.iter().enumerate() {
                let base = test[k % 300];
                test.push((base.0, base.1, *threshold, base.3));
            }
            for (k, threshold) in xs.iter().enumerate() {
                let base = test[k % 300];
                test.push((base.0, base.1, base.2, f64::from(*threshold)));
            }
        }
        let inputs = batch(&test);
        let expected = model.predict(&inputs).expect("predict");
        let columns = serde_json::json!({
            "season": test.iter().map(|r| r.0).collect::<Vec<_>>(),
            "count": test.iter().map(|r| r.1).collect::<Vec<_>>(),
            "temp": test.iter().map(|r| r.2).collect::<Vec<_>>(),
            "x": test.iter().map(|r| r.3).collect::<Vec<_>>(),
        });
        for (opset, options) in [
            ("ml opset 3", Options::default()),
            ("ml opset 5", Options::with_ml_opset(MlOpset::V5)),
        ] {
            let neural = name.starts_with("neural");
            if neural && opset == "ml opset 5" {
                continue;
            }
            let bytes = model.to_onnx(&options).expect("export");
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("model.onnx"), &bytes).expect("write");
            std::fs::write(dir.path().join("inputs.json"), columns.to_string()).expect("write");
            let scored = onnxruntime(&python, dir.path());
            assert_eq!(scored.len(), expected.len(), "{name}, {opset}");
            let worst = expected
                .iter()
                .zip(&scored)
                .map(|(want, got)| (want - got).abs() / want.abs().max(1.0))
                .fold(0.0, f64::max);
            // ml opset 5 is double in and out: only the order of the sums differs from velo's.
            let bound = if opset == "ml opset 5" { 1e-12 } else { 1e-6 };
            assert!(
                worst <= bound,
                "{name}, {opset}: largest relative difference {worst:e}"
            );
            eprintln!(
                "{name}, {opset}: {} rows, largest relative difference {worst:e}",
                expected.len()
            );
        }
    }
}
