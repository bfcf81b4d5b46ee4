//! Models end to end through the `Model` trait: fit, predict, explain, save and load.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Float64Array, Int64Array},
    datatypes::{DataType, Field, Schema as ArrowSchema},
    record_batch::RecordBatch,
};
use proptest::prelude::*;
use velo_core::schemas::Schema;
use velo_models::{
    FeaturesConfig, GradientBoostingModel, ModelConfig, NeuralNetModel, Params, RandomForestModel,
    artifact::{Artifact, Tensor, TensorData},
    boosting::EarlyStopping,
    load_model,
};

fn schema() -> Schema {
    serde_yaml::from_str(
        "index: id\ncolumns:\n  - {name: id, type: int64}\n  - {name: kind, type: int64}\n  - {name: x, type: float64}\n  - {name: z, type: float64}\n",
    )
    .expect("schema")
}

/// Rows where the target depends on a category and on `x`, with `z` as noise.
fn data(rows: usize, seed: u64) -> (RecordBatch, Vec<f64>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let ids: Vec<i64> = (0..rows as i64).collect();
    let kinds: Vec<i64> = (0..rows).map(|_| (next() * 3.0) as i64).collect();
    let xs: Vec<f64> = (0..rows).map(|_| next() * 10.0).collect();
    let zs: Vec<f64> = (0..rows).map(|_| next()).collect();
    let targets = kinds
        .iter()
        .zip(&xs)
        .map(|(k, x)| 5.0 * *k as f64 + x * x / 10.0)
        .collect();
    let arrow_schema = Arc::new(ArrowSchema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("kind", DataType::Int64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("z", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(Int64Array::from(kinds)),
        Arc::new(Float64Array::from(xs)),
        Arc::new(Float64Array::from(zs)),
    ];
    (
        RecordBatch::try_new(arrow_schema, columns).expect("batch"),
        targets,
    )
}

fn config(trees: usize, seed: u64) -> ModelConfig {
    ModelConfig::RandomForestModel(RandomForestModel {
        n_estimators: trees,
        max_depth: Some(8),
        seed,
        features: FeaturesConfig {
            categoricals: vec!["kind".into()],
            ..FeaturesConfig::default()
        },
        ..RandomForestModel::default()
    })
}

#[test]
fn a_forest_learns_explains_and_survives_a_round_trip() {
    let (train, y_train) = data(600, 1);
    let (test, y_test) = data(200, 2);
    let mut model = config(30, 7).build(&schema());
    assert!(
        model.predict(&test).is_err(),
        "an unfitted model refuses to predict"
    );
    model.fit(&train, &y_train).expect("fits");
    let predictions = model.predict(&test).expect("predicts");
    let mse = predictions
        .iter()
        .zip(&y_test)
        .map(|(p, y)| (p - y).powi(2))
        .sum::<f64>()
        / 200.0;
    let variance = {
        let mean = y_test.iter().sum::<f64>() / 200.0;
        y_test.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / 200.0
    };
    assert!(mse < 0.1 * variance, "mse {mse} vs variance {variance}");

    let importances = model.explain_model().expect("importances");
    assert_eq!(
        importances.features,
        ["kind_0", "kind_1", "kind_2", "x", "z"]
    );
    let total: f64 = importances.importances.iter().sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(
        importances.importances[4] < importances.importances[3],
        "noise below signal"
    );

    let explanations = model.explain_samples(&test).expect("explains");
    assert_eq!(explanations.per_column.names(), ["kind", "x", "z"]);
    for (row, prediction) in predictions.iter().enumerate() {
        for contributions in [&explanations.per_feature, &explanations.per_column] {
            let sum: f64 = contributions.row(row).expect("row").iter().sum::<f64>()
                + contributions.base_value();
            assert!(
                (sum - prediction).abs() <= 1e-6 * prediction.abs().max(1.0),
                "row {row}: {sum} vs {prediction}"
            );
        }
    }

    let bytes = model
        .to_artifact()
        .expect("artifact")
        .to_bytes()
        .expect("bytes");
    let loaded = load_model(&Artifact::from_bytes(&bytes).expect("reads")).expect("loads");
    assert_eq!(loaded.predict(&test).expect("predicts"), predictions);
    assert_eq!(loaded.params(), model.params());
}

#[test]
fn params_can_be_read_and_changed_by_name() {
    let mut model = config(5, 1).build(&schema());
    let params = model.params();
    assert_eq!(params["n_estimators"], 5);
    model
        .set_params(&Params::from([("max_depth".to_owned(), 3.into())]))
        .expect("sets");
    assert_eq!(model.params()["max_depth"], 3);
    let unknown = model.set_params(&Params::from([("depth".to_owned(), 3.into())]));
    assert!(unknown.expect_err("unknown").to_string().contains("depth"));
    let wrong = model.set_params(&Params::from([("max_depth".to_owned(), "deep".into())]));
    assert!(wrong.is_err());
}

#[test]
fn crafted_artifacts_are_rejected_before_use() {
    let (train, y_train) = data(100, 3);
    let mut model = config(3, 1).build(&schema());
    model.fit(&train, &y_train).expect("fits");
    let artifact = model.to_artifact().expect("artifact");
    let tamper = |name: &str, data: TensorData| {
        let mut crafted = artifact.clone();
        crafted
            .tensors
            .insert(name.to_owned(), Tensor::vector(data));
        // A crafted file has a valid hash: only structural validation can catch it.
        let bytes = crafted.to_bytes().expect("bytes");
        load_model(&Artifact::from_bytes(&bytes).expect("hash is valid"))
            .expect_err("must be rejected")
            .to_string()
    };
    let n_nodes = artifact.u32s("feature").expect("feature").len();
    let mut left = artifact.u32s("left").expect("left").to_vec();
    let split = artifact
        .u32s("feature")
        .expect("feature")
        .iter()
        .position(|&f| f != u32::MAX)
        .expect("a split");
    left[split] = u32::MAX - 1;
    assert!(tamper("left", TensorData::U32(left)).contains("child"));
    let mut feature = artifact.u32s("feature").expect("feature").to_vec();
    feature[split] = 99;
    assert!(tamper("feature", TensorData::U32(feature)).contains("feature"));
    assert!(tamper("value", TensorData::F64(vec![0.0; n_nodes - 1])).contains("length"));
    let mut offsets = artifact.u64s("tree_offsets").expect("offsets").to_vec();
    offsets[1] = u64::MAX;
    assert!(tamper("tree_offsets", TensorData::U64(offsets)).contains("offsets"));
    let mut unknown = artifact.clone();
    unknown.kind = "Mystery".into();
    let error =
        load_model(&Artifact::from_bytes(&unknown.to_bytes().expect("bytes")).expect("reads"));
    assert!(
        error
            .expect_err("unknown kind")
            .to_string()
            .contains("Mystery")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn predictions_are_identical_after_save_and_load(seed in 0_u64..1_000, rows in 20_usize..120) {
        let (train, y_train) = data(rows, seed);
        let (test, _) = data(50, seed + 1);
        let mut model = config(4, seed).build(&schema());
        model.fit(&train, &y_train).expect("fits");
        let bytes = model.to_artifact().expect("artifact").to_bytes().expect("bytes");
        let loaded = load_model(&Artifact::from_bytes(&bytes).expect("reads")).expect("loads");
        prop_assert_eq!(loaded.predict(&test).expect("predicts"), model.predict(&test).expect("predicts"));
    }
}

fn network(seed: u64) -> ModelConfig {
    ModelConfig::NeuralNetModel(NeuralNetModel {
        hidden_layers: vec![32, 16],
        learning_rate: 5e-3,
        batch_size: 32,
        epochs: 150,
        patience: 8,
        seed,
        features: FeaturesConfig {
            categoricals: vec!["kind".into()],
            ..NeuralNetModel::default().features
        },
        ..NeuralNetModel::default()
    })
}

fn mse(predictions: &[f64], targets: &[f64]) -> f64 {
    predictions
        .iter()
        .zip(targets)
        .map(|(p, y)| (p - y).powi(2))
        .sum::<f64>()
        / targets.len() as f64
}

#[test]
fn a_network_learns_explains_and_survives_a_round_trip() {
    let (train, y_train) = data(600, 1);
    let (test, y_test) = data(200, 2);
    let mut model = network(7).build(&schema());
    assert_eq!(model.kind(), "NeuralNetModel");
    model.fit(&train, &y_train).expect("fits");
    let predictions = model.predict(&test).expect("predicts");
    let mean = y_test.iter().sum::<f64>() / y_test.len() as f64;
    let variance = mse(&vec![mean; y_test.len()], &y_test);
    let error = mse(&predictions, &y_test);
    assert!(error < 0.1 * variance, "mse {error} vs variance {variance}");

    // The same seed gives the same bits; another seed another network.
    let mut again = network(7).build(&schema());
    again.fit(&train, &y_train).expect("fits");
    assert_eq!(again.predict(&test).expect("predicts"), predictions);
    let mut other = network(8).build(&schema());
    other.fit(&train, &y_train).expect("fits");
    assert_ne!(other.predict(&test).expect("predicts"), predictions);

    // Permutation importances: the signal matters more than the noise.
    let importances = model.explain_model().expect("importances");
    assert_eq!(
        importances.features,
        ["kind_0", "kind_1", "kind_2", "x", "z"]
    );
    assert!(
        importances.importances[3] > importances.importances[4],
        "{importances:?}"
    );

    let sample = test.slice(0, 20);
    let explanations = model.explain_samples(&sample).expect("explains");
    assert_eq!(explanations.per_column.names(), ["kind", "x", "z"]);
    for (row, prediction) in predictions.iter().take(20).enumerate() {
        for contributions in [&explanations.per_feature, &explanations.per_column] {
            let sum: f64 = contributions.row(row).expect("row").iter().sum::<f64>()
                + contributions.base_value();
            assert!(
                (sum - prediction).abs() <= 1e-6 * prediction.abs().max(1.0),
                "row {row}: {sum} vs {prediction}"
            );
        }
    }

    let artifact = model.to_artifact().expect("artifact");
    let bytes = artifact.to_bytes().expect("bytes");
    let loaded = load_model(&Artifact::from_bytes(&bytes).expect("reads")).expect("loads");
    assert_eq!(loaded.predict(&test).expect("predicts"), predictions);
    assert_eq!(loaded.params(), model.params());
    assert_eq!(loaded.explain_model().expect("importances"), importances);

    // Crafted weights are refused before use.
    let tamper = |name: &str, tensor: Tensor| {
        let mut crafted = artifact.clone();
        crafted.tensors.insert(name.to_owned(), tensor);
        let bytes = crafted.to_bytes().expect("bytes");
        load_model(&Artifact::from_bytes(&bytes).expect("hash is valid"))
            .expect_err("must be rejected")
            .to_string()
    };
    let wrong_shape = Tensor {
        shape: vec![4, 32],
        data: TensorData::F32(vec![0.0; 128]),
    };
    let message = tamper("layer0.weight", wrong_shape);
    assert!(
        message.contains("layer0.weight") && message.contains("[5, 32]"),
        "{message}"
    );
    let message = tamper(
        "layer1.bias",
        Tensor::vector(TensorData::F32(vec![f32::NAN; 16])),
    );
    assert!(message.contains("non-finite"), "{message}");
    let message = tamper("layer9.weight", Tensor::vector(TensorData::F32(vec![1.0])));
    assert!(message.contains("layer9.weight"), "{message}");
    let mut missing = artifact.clone();
    missing.tensors.remove("layer2.bias");
    let error =
        load_model(&Artifact::from_bytes(&missing.to_bytes().expect("bytes")).expect("reads"))
            .expect_err("missing");
    assert!(error.to_string().contains("layer2.bias"), "{error}");
}

#[test]
fn network_params_are_checked_by_name() {
    let mut model = network(1).build(&schema());
    assert_eq!(model.params()["hidden_layers"], serde_json::json!([32, 16]));
    model
        .set_params(&Params::from([("dropout".to_owned(), 0.2.into())]))
        .expect("sets");
    assert_eq!(model.params()["dropout"], 0.2);
    let unknown = model.set_params(&Params::from([("layers".to_owned(), 3.into())]));
    assert!(unknown.expect_err("unknown").to_string().contains("layers"));
    let invalid = model.set_params(&Params::from([("dropout".to_owned(), 1.5.into())]));
    assert!(
        invalid
            .expect_err("out of range")
            .to_string()
            .contains("dropout")
    );
    // Dropout trains too, and stays deterministic.
    let (train, y_train) = data(200, 4);
    model.fit(&train, &y_train).expect("fits with dropout");
    let first = model.predict(&train).expect("predicts");
    model.fit(&train, &y_train).expect("fits again");
    assert_eq!(model.predict(&train).expect("predicts"), first);
}

fn boosting(early_stopping: EarlyStopping) -> ModelConfig {
    ModelConfig::GradientBoostingModel(GradientBoostingModel {
        max_iter: 300,
        min_samples_leaf: 5,
        early_stopping,
        features: FeaturesConfig {
            categoricals: vec!["kind".into()],
            ..FeaturesConfig::default()
        },
        ..GradientBoostingModel::default()
    })
}

#[test]
fn boosted_trees_learn_stop_early_explain_exactly_and_round_trip() {
    let (train, y_train) = data(800, 1);
    let (test, y_test) = data(200, 2);
    let mut model = boosting(EarlyStopping::On).build(&schema());
    assert_eq!(model.kind(), "GradientBoostingModel");
    model.fit(&train, &y_train).expect("fits");
    let predictions = model.predict(&test).expect("predicts");
    let mean = y_test.iter().sum::<f64>() / y_test.len() as f64;
    let variance = mse(&vec![mean; y_test.len()], &y_test);
    let error = mse(&predictions, &y_test);
    assert!(
        error < 0.02 * variance,
        "mse {error} vs variance {variance}"
    );

    // Early stopping kept fewer trees than the budget; without it, every iteration is a tree.
    let mut full = boosting(EarlyStopping::Off).build(&schema());
    full.fit(&train, &y_train).expect("fits");
    let kept = |artifact: &Artifact| artifact.u64s("tree_offsets").expect("offsets").len() - 1;
    let stopped = kept(&model.to_artifact().expect("artifact"));
    assert!(stopped < 300, "early stopping kept {stopped} trees");
    assert_eq!(kept(&full.to_artifact().expect("artifact")), 300);

    // The same trees whatever the thread count.
    let fit_with = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            let mut model = boosting(EarlyStopping::On).build(&schema());
            model.fit(&train, &y_train).expect("fits");
            model.predict(&test).expect("predicts")
        })
    };
    assert_eq!(fit_with(1), predictions);
    assert_eq!(fit_with(3), predictions);

    let importances = model.explain_model().expect("importances");
    let total: f64 = importances.importances.iter().sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(importances.importances[4] < importances.importances[3]);

    let explanations = model.explain_samples(&test).expect("explains");
    for (row, prediction) in predictions.iter().enumerate() {
        for contributions in [&explanations.per_feature, &explanations.per_column] {
            let sum: f64 = contributions.row(row).expect("row").iter().sum::<f64>()
                + contributions.base_value();
            assert!(
                (sum - prediction).abs() <= 1e-6 * prediction.abs().max(1.0),
                "row {row}: {sum} vs {prediction}"
            );
        }
    }

    let artifact = model.to_artifact().expect("artifact");
    let loaded =
        load_model(&Artifact::from_bytes(&artifact.to_bytes().expect("bytes")).expect("reads"))
            .expect("loads");
    assert_eq!(loaded.predict(&test).expect("predicts"), predictions);
    // A crafted child index is refused before use.
    let mut crafted = artifact.clone();
    let mut left = artifact.u32s("left").expect("left").to_vec();
    let split = artifact
        .u32s("feature")
        .expect("feature")
        .iter()
        .position(|&f| f != u32::MAX)
        .expect("a split");
    left[split] = u32::MAX - 1;
    crafted
        .tensors
        .insert("left".to_owned(), Tensor::vector(TensorData::U32(left)));
    let error =
        load_model(&Artifact::from_bytes(&crafted.to_bytes().expect("bytes")).expect("reads"))
            .expect_err("crafted");
    assert!(error.to_string().contains("child"), "{error}");

    let mut model = boosting(EarlyStopping::Auto).build(&schema());
    let bad = model.set_params(&Params::from([("max_bins".to_owned(), 300.into())]));
    assert!(
        bad.expect_err("out of range")
            .to_string()
            .contains("max_bins")
    );
    let unknown = model.set_params(&Params::from([("n_estimators".to_owned(), 3.into())]));
    assert!(unknown.is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn boosted_tree_shap_is_additive(seed in 0_u64..1_000, rows in 40_usize..160) {
        let (train, y_train) = data(rows, seed);
        let mut model = boosting(EarlyStopping::Off).build(&schema());
        model
            .set_params(&Params::from([
                ("max_iter".to_owned(), 20.into()),
                ("min_samples_leaf".to_owned(), 2.into()),
            ]))
            .expect("sets");
        model.fit(&train, &y_train).expect("fits");
        let predictions = model.predict(&train).expect("predicts");
        let explanations = model.explain_samples(&train).expect("explains");
        for (row, prediction) in predictions.iter().enumerate() {
            let sum: f64 = explanations.per_feature.row(row).expect("row").iter().sum::<f64>()
                + explanations.per_feature.base_value();
            prop_assert!((sum - prediction).abs() <= 1e-6 * prediction.abs().max(1.0));
        }
    }
}

#[test]
fn every_model_kind_names_bad_targets_before_fitting() {
    let (train, mut y_train) = data(60, 9);
    for config in [config(3, 1), boosting(EarlyStopping::Off), network(1)] {
        let kind = config.kind();
        let mut model = config.build(&schema());
        let short = model
            .fit(&train, &y_train[..59])
            .expect_err("one target short");
        assert!(
            short.to_string().contains("60 rows but targets have 59"),
            "{kind}: {short}"
        );
        y_train[17] = f64::NAN;
        let nan = model.fit(&train, &y_train).expect_err("a NaN target");
        assert!(nan.to_string().contains("row 17"), "{kind}: {nan}");
        y_train[17] = 1.0;
        assert!(model.predict(&train).is_err(), "{kind}: nothing was fitted");
    }
}
