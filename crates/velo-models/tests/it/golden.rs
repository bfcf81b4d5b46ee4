//! Golden artifacts: a checked-in model file of each kind for every artifact format version
//! velo has written (`tests/fixtures/format-<n>/`), with the predictions it gave on checked-in
//! rows. Every later velo must load them and predict the same bits (trees; networks to f32
//! precision, as their matrix products differ by CPU), on every platform the CI matrix runs;
//! and writing a loaded model again must give back the very same bytes.
//!
//! `UPDATE_GOLDEN=1` writes the fixtures of the current format version when they are missing;
//! it never rewrites those of a format version that already has them.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use arrow::{
    array::{ArrayRef, Float64Array, Int64Array},
    datatypes::{DataType, Field, Schema as ArrowSchema},
    record_batch::RecordBatch,
};
use velo_core::schemas::Schema;
use velo_models::{
    FeaturesConfig, GradientBoostingModel, ModelConfig, NeuralNetModel, RandomForestModel,
    artifact::{Artifact, FORMAT_VERSION},
    load_model,
};

const KINDS: [&str; 3] = ["forest", "boosting", "neural"];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn schema() -> Schema {
    serde_yaml::from_str(
        "columns:\n  - {name: kind, type: int64}\n  - {name: x, type: float64}\n  - {name: z, type: float64}\n",
    )
    .expect("schema")
}

/// Rows as a batch: `kind` in 0..3, `x` in [0, 10), `z` in [0, 1).
fn batch(rows: &[(i64, f64, f64)]) -> RecordBatch {
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("kind", DataType::Int64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("z", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("batch")
}

/// Deterministic training rows (only used to write new fixtures).
fn training_rows(n: usize) -> (Vec<(i64, f64, f64)>, Vec<f64>) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let rows: Vec<(i64, f64, f64)> = (0..n)
        .map(|_| ((next() * 3.0) as i64, next() * 10.0, next()))
        .collect();
    let y = rows
        .iter()
        .map(|(kind, x, z)| 5.0 * *kind as f64 + x * x / 10.0 + z)
        .collect();
    (rows, y)
}

fn config(kind: &str) -> ModelConfig {
    let features = FeaturesConfig {
        categoricals: vec!["kind".into()],
        ..FeaturesConfig::default()
    };
    match kind {
        "forest" => ModelConfig::RandomForestModel(RandomForestModel {
            n_estimators: 5,
            max_depth: Some(5),
            seed: 7,
            features,
            ..RandomForestModel::default()
        }),
        "boosting" => ModelConfig::GradientBoostingModel(GradientBoostingModel {
            max_iter: 20,
            max_depth: Some(3),
            features,
            ..GradientBoostingModel::default()
        }),
        _ => ModelConfig::NeuralNetModel(NeuralNetModel {
            hidden_layers: vec![8],
            epochs: 20,
            seed: 7,
            features,
            ..NeuralNetModel::default()
        }),
    }
}

/// The fixture rows: every kind, the ends of the ranges, and values between.
fn fixture_rows() -> Vec<(i64, f64, f64)> {
    let mut rows = Vec::new();
    for kind in 0..3 {
        for step in 0..=10 {
            let x = f64::from(step);
            rows.push((kind, x, f64::from(step) / 10.0));
            rows.push((kind, x + 0.5, 0.25));
        }
    }
    rows
}

/// Writes the current format's fixtures where they are missing.
fn write_missing(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("fixture dir");
    let rows = fixture_rows();
    let inputs = batch(&rows);
    let (train, y) = training_rows(400);
    let mut predictions = BTreeMap::new();
    for kind in KINDS {
        let path = dir.join(format!("{kind}.velo"));
        if path.exists() {
            continue;
        }
        let mut model = config(kind).build(&schema());
        model.fit(&batch(&train), &y).expect("fit");
        let bytes = model
            .to_artifact()
            .expect("artifact")
            .to_bytes()
            .expect("bytes");
        std::fs::write(&path, bytes).expect("write");
        let bits: Vec<String> = model
            .predict(&inputs)
            .expect("predict")
            .iter()
            .map(|value| format!("{:016x}", value.to_bits()))
            .collect();
        predictions.insert(kind.to_owned(), bits);
    }
    if !predictions.is_empty() {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "rows": rows,
            "predictions": predictions,
        }))
        .expect("json");
        std::fs::write(dir.join("expected.json"), text).expect("write");
    }
}

#[test]
fn every_format_version_ever_written_loads_and_predicts_the_same_bits() {
    let current = fixtures().join(format!("format-{FORMAT_VERSION}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        write_missing(&current);
    }
    assert!(
        current.join("expected.json").is_file(),
        "no golden fixtures for format {FORMAT_VERSION}: run UPDATE_GOLDEN=1 cargo test -p velo-models --test it golden"
    );
    let mut checked = 0;
    for version in 1..=FORMAT_VERSION {
        let dir = fixtures().join(format!("format-{version}"));
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("expected.json")).expect("expected.json"),
        )
        .expect("json");
        let rows: Vec<(i64, f64, f64)> =
            serde_json::from_value(expected["rows"].clone()).expect("rows");
        let inputs = batch(&rows);
        for kind in KINDS {
            let bytes = std::fs::read(dir.join(format!("{kind}.velo"))).expect("fixture");
            let artifact = Artifact::from_bytes(&bytes).expect("a golden artifact loads");
            assert_eq!(artifact.format_version, version);
            let model = load_model(&artifact).expect("a golden model loads");
            let predicted = model.predict(&inputs).expect("predict");
            let wanted: Vec<String> =
                serde_json::from_value(expected["predictions"][kind].clone()).expect("bits");
            let wanted: Vec<f64> = wanted
                .iter()
                .map(|bits| f64::from_bits(u64::from_str_radix(bits, 16).expect("hex bits")))
                .collect();
            if kind == "neural" {
                // candle's f32 matrix products pick their kernel (FMA or not, the order of the
                // partial sums) by CPU: across machines a network agrees to f32 precision.
                for (got, want) in predicted.iter().zip(&wanted) {
                    assert!(
                        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "format {version} {kind}: {got} instead of {want}"
                    );
                }
                assert_eq!(predicted.len(), wanted.len());
            } else {
                let same = predicted
                    .iter()
                    .zip(&wanted)
                    .all(|(got, want)| got.to_bits() == want.to_bits());
                assert!(
                    same && predicted.len() == wanted.len(),
                    "format {version} {kind}: predictions changed: {predicted:?} instead of {wanted:?}"
                );
            }
            if version == FORMAT_VERSION {
                // Written again, the model is the same bytes (sorted header, little-endian data).
                let mut again = model.to_artifact().expect("artifact");
                again.velo_version.clone_from(&artifact.velo_version);
                assert_eq!(
                    again.to_bytes().expect("bytes"),
                    bytes,
                    "format {version} {kind}: written again, the bytes differ"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, KINDS.len() * FORMAT_VERSION as usize);
}
