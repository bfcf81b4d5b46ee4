//! `velo models`: the history of three trainings and two promotions with the alias log, which
//! version was Champion at a past time, a diff of two versions with different depths and
//! feature sets, a rollback that the running server follows, and a rollback to a damaged
//! version refused.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    jobs::{run_job, synthetic_data},
    output,
    serve::{Server, test_records},
    velo,
};

/// `velo models ARGS --store STORE`.
fn models(store: &Path, args: &[&str]) -> crate::Output {
    output(
        velo()
            .arg("models")
            .args(args)
            .arg("--store")
            .arg(store)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI"),
    )
}

fn train(uri: &str, data: &Path, model: &str) {
    let trained = run_job(
        "configs/training.yaml",
        uri,
        &format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, model: {model}, splitter: {{test_size: 240}}",
            data.join("inputs_train.parquet").display(),
            data.join("targets_train.parquet").display()
        ),
    );
    assert_eq!(trained.code, 0, "{}", trained.stderr);
}

fn json_of(out: &crate::Output) -> Value {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn history_diff_and_a_rollback_the_server_follows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let store = dir.path().join("mlruns");
    let uri = store.display().to_string();
    train(&uri, &data, "{n_estimators: 6, max_depth: 4}");
    assert_eq!(run_job("configs/promotion.yaml", &uri, "").code, 0);
    train(
        &uri,
        &data,
        "{n_estimators: 6, max_depth: 7, features: {drop: [dteday, casual, registered, atemp]}}",
    );
    assert_eq!(run_job("configs/promotion.yaml", &uri, "").code, 0);
    train(&uri, &data, "{n_estimators: 6, max_depth: 5}");

    // The history: three versions with their parameters, data and metrics; two moves logged.
    let history = json_of(&models(&store, &["history", "bikes", "--json"]));
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["params"]["model.max_depth"], "4");
    assert_eq!(versions[1]["params"]["model.max_depth"], "7");
    assert_eq!(versions[1]["aliases"], json!(["Champion"]));
    assert_eq!(versions[0]["kind"], "RandomForestModel");
    assert!(versions[2]["metrics"]["root_mean_squared_error"].is_f64());
    let training = versions[0]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "inputs_train")
        .unwrap();
    assert_eq!(training["context"], "training");
    assert!(training["rows"].as_u64().unwrap() > 1000);
    let log = history["log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (&log[0]["from"], &log[0]["to"]),
        (&Value::Null, &json!("1"))
    );
    assert_eq!((&log[1]["from"], &log[1]["to"]), (&json!("1"), &json!("2")));
    assert!(log[1]["by"].as_str().unwrap().starts_with("PromotionJob"));

    // Which version was Champion between the two promotions (MLflow issue #2169).
    let between = velo_io::registries::history::format_ms(log[1]["at"].as_i64().unwrap() - 1);
    let then = json_of(&models(
        &store,
        &[
            "history", "bikes", "--alias", "Champion", "--at", &between, "--json",
        ],
    ));
    assert_eq!(then["version"], "1");
    let before = models(
        &store,
        &[
            "history",
            "bikes",
            "--alias",
            "Champion",
            "--at",
            "2020-01-01",
        ],
    );
    assert_eq!(before.code, 2);
    assert!(before.stderr.contains("first set at"), "{}", before.stderr);

    // The diff names the depth, the dropped column, the fitted trees and the metrics.
    let diff = json_of(&models(&store, &["diff", "bikes", "1", "2", "--json"]));
    let row = |section: &str, item: &str| -> Value {
        diff["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["section"] == section && row["item"] == item)
            .cloned()
            .unwrap_or_else(|| panic!("no {section} {item} in {diff}"))
    };
    let depth = row("architecture", "max_depth");
    assert_eq!(
        (&depth["a"], &depth["b"], &depth["change"]),
        (&json!("4"), &json!("7"), &json!("changed"))
    );
    assert_eq!(row("architecture", "features.drop")["change"], "changed");
    assert_eq!(row("architecture", "fitted max_depth")["change"], "+3");
    assert_eq!(row("architecture", "fitted trees")["change"], "same");
    assert_eq!(row("importance", "atemp")["change"], "removed");
    let rmse = row("metrics", "root_mean_squared_error");
    let (a, b): (f64, f64) = (
        rmse["a"].as_str().unwrap().parse().unwrap(),
        rmse["b"].as_str().unwrap().parse().unwrap(),
    );
    let delta: f64 = rmse["change"].as_str().unwrap().parse().unwrap();
    assert!((b - a - delta).abs() < 1e-5, "{rmse}");
    let markdown = models(&store, &["diff", "bikes", "1", "2", "--md"]);
    assert!(
        markdown
            .stdout
            .starts_with("| section | item | version 1 | version 2 | change |"),
        "{}",
        markdown.stdout
    );

    // A rollback moves Champion back to version 1; the running server follows it.
    let mut server = Server::start(&store, &["--poll-interval", "1"]);
    let rows = test_records(&data, 3);
    let body = json!({ "dataframe_records": rows }).to_string();
    assert_eq!(
        server.post("application/json", body.clone()).2.as_deref(),
        Some("2")
    );
    let rolled = models(&store, &["rollback", "bikes", "--reason", "bad weekend"]);
    assert_eq!(rolled.code, 0, "{}", rolled.stderr);
    assert!(
        rolled.stdout.contains("version 2 -> version 1"),
        "{}",
        rolled.stdout
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer, version) = server.post("application/json", body.clone());
        assert_eq!(status, 200, "{answer}");
        if version.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server still serves {version:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.terminate().success());

    // A damaged version is refused and the alias stays.
    let damaged = store_file(&store, "3", "model.velo");
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let refused = models(&store, &["rollback", "bikes", "--to", "3"]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("stays at version 1")
            && refused.stderr.contains("cannot be loaded"),
        "{}",
        refused.stderr
    );
    let history = json_of(&models(&store, &["history", "bikes", "--json"]));
    let log = history["log"].as_array().unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[2]["reason"], "rollback from version 2: bad weekend");
    assert_eq!(history["versions"][0]["aliases"], json!(["Champion"]));

    // MLflow's own client reads the alias log from the registered model's tags.
    if let Some(python) = std::env::var_os("VELO_MLFLOW_PYTHON") {
        let script = "import sys, json; from mlflow import MlflowClient; \
            c = MlflowClient(sys.argv[1], sys.argv[1]); \
            tags = c.get_registered_model('bikes').tags; \
            events = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith('velo.alias_log.')]; \
            print([(e['from'], e['to']) for e in events])";
        assert_eq!(
            crate::mlflow_on_store(&python, script, &store),
            "[(None, '1'), ('1', '2'), ('2', '1')]"
        );
    }
}

/// A file of a version's model directory in the embedded store.
fn store_file(store: &Path, version: &str, name: &str) -> std::path::PathBuf {
    let stores = velo_io::registries::open(&store.display().to_string()).unwrap();
    let found = stores
        .registry
        .get_model_version("bikes", version)
        .unwrap()
        .unwrap();
    let source = found.source.strip_prefix("file://").unwrap();
    Path::new(source).join(name)
}

#[test]
fn an_exported_model_scores_the_same_in_onnxruntime_and_mlflow_pyfunc() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let store = dir.path().join("mlruns");
    let uri = store.display().to_string();
    let trained = run_job(
        "configs/training.yaml",
        &uri,
        &format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, model: {{n_estimators: 12, max_depth: 9}}, splitter: {{test_size: 240}}, saver: {{onnx: true}}",
            data.join("inputs_train.parquet").display(),
            data.join("targets_train.parquet").display()
        ),
    );
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    assert_eq!(run_job("configs/promotion.yaml", &uri, "").code, 0);
    let mlmodel = std::fs::read_to_string(store_file(&store, "1", "MLmodel")).unwrap();
    assert!(
        mlmodel.contains("loader_module: mlflow.onnx")
            && store_file(&store, "1", "model.onnx").is_file(),
        "{mlmodel}"
    );

    // The CLI exports a version to a file; velo's own predictions are the reference.
    let exported = dir.path().join("bikes.onnx");
    let export = models(
        &store,
        &[
            "export",
            "models:/bikes@Champion",
            "-o",
            &exported.display().to_string(),
        ],
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert!(export.stdout.contains("version 1"), "{}", export.stdout);
    let predictions = dir.path().join("predictions.parquet");
    let inferred = run_job(
        "configs/inference.yaml",
        &uri,
        &format!(
            "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}",
            data.join("inputs_test.parquet").display(),
            predictions.display()
        ),
    );
    assert_eq!(inferred.code, 0, "{}", inferred.stderr);

    let Some(python) = std::env::var_os("VELO_MLFLOW_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "VELO_MLFLOW_PYTHON is required in CI"
        );
        eprintln!("SKIPPED: onnxruntime and MLflow's pyfunc need VELO_MLFLOW_PYTHON");
        return;
    };
    // onnxruntime on the exported file, and MLflow's pyfunc on the registered version (its
    // onnx flavor), against velo's predictions.
    let script = r#"
import sys, numpy as np, pandas as pd, onnxruntime as ort, mlflow
onnx_file, inputs, predictions = sys.argv[1], sys.argv[2], sys.argv[3]
frame = pd.read_parquet(inputs)
if "instant" not in frame.columns:  # velo's Parquet keeps the index as pandas' index
    frame = frame.reset_index()
frame["dteday"] = pd.to_datetime(frame["dteday"])  # the signature's datetime
velo = pd.read_parquet(predictions)["prediction"].to_numpy()
session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
types = {"tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float)": np.float32,
         "tensor(double)": np.float64, "tensor(bool)": np.bool_}
feeds = {i.name: frame[i.name].to_numpy().astype(types[i.type]) for i in session.get_inputs()}
direct = session.run(["prediction"], feeds)[0]
model = mlflow.pyfunc.load_model("models:/bikes@Champion")
# MLflow's signature enforcement casts nothing narrower: the frame takes the signature's types.
signature = model.metadata.get_input_schema()
frame = frame.astype({c.name: c.type.to_numpy() for c in signature.inputs if c.name != "dteday"})
pyfunc = np.asarray(model.predict(frame)["prediction"])
def worst(values):
    return float(np.max(np.abs(values - velo) / np.maximum(np.abs(velo), 1.0)))
print(len(velo), worst(direct), worst(pyfunc))
"#;
    let seen = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&exported)
        .arg(data.join("inputs_test.parquet"))
        .arg(&predictions)
        .env("MLFLOW_TRACKING_URI", format!("file://{}", store.display()))
        .env("MLFLOW_REGISTRY_URI", format!("file://{}", store.display()))
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .output()
        .unwrap();
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let text = String::from_utf8_lossy(&seen.stdout);
    let figures: Vec<f64> = text
        .split_whitespace()
        .map(|value| value.parse().unwrap())
        .collect();
    assert!(figures[0] > 100.0, "{text}");
    assert!(
        figures[1] <= 1e-6 && figures[2] <= 1e-6,
        "relative differences: {text}"
    );
}
