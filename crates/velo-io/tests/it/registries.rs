//! Tracking and registry: the same checks against the embedded store and a live MLflow server,
//! MLflow's Python client reading what velo wrote, concurrency, crashes and path traversal.
#![allow(
    clippy::unwrap_used,
    reason = "the shared checks below are test code; a failed unwrap is a failed test"
)]

use std::{path::Path, process::Command, sync::Arc};

use arrow::{
    array::{Float64Array, Int64Array, RecordBatch},
    datatypes::{DataType, Field, Schema},
};
use velo_io::registries::{
    self, Dataset, DatasetInput, FileStore, Metric, ModelRegistry, ModelUri, NewRun, RunStatus,
    Tag, Tracking,
    mlmodel::{self, MlModel},
};
use velo_mlflow::test_server::TestServer;

fn example_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("hr", DataType::Int64, false),
        Field::new("temp", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![0, 1, 2])),
            Arc::new(Float64Array::from(vec![0.2, 0.3, 0.4])),
        ],
    )
    .unwrap()
}

/// The MLmodel of a training job's model, logged by `run_id`.
fn description(run_id: &str) -> MlModel {
    let batch = example_batch();
    MlModel {
        artifact_path: "model".into(),
        run_id: run_id.into(),
        model_file: "model.velo".into(),
        model_kind: "RandomForestModel".into(),
        inputs: mlmodel::signature_of(&batch.schema()),
        outputs: vec![mlmodel::ColSpec {
            kind: "double".into(),
            name: "cnt".into(),
            required: true,
        }],
        input_example: Some(mlmodel::example_of(&batch, 2).unwrap()),
        extra_files: Vec::new(),
    }
}

/// A model directory as a training job writes it: MLmodel, examples and the model file.
fn model_dir(run_id: &str, payload: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    description(run_id).write_into(dir.path()).unwrap();
    std::fs::write(dir.path().join("model.velo"), payload).unwrap();
    dir
}

fn dataset(name: &str, context: &str) -> DatasetInput {
    DatasetInput {
        tags: vec![Tag::new(velo_mlflow::CONTEXT_TAG, context)],
        dataset: Dataset {
            name: name.into(),
            digest: format!("{name}-digest"),
            source_type: "local".into(),
            source: format!(r#"{{"uri": "/data/{name}.parquet"}}"#),
            schema: Some(
                r#"{"mlflow_colspec": [{"type": "long", "name": "hr", "required": true}]}"#.into(),
            ),
            profile: Some(r#"{"num_rows": 3, "num_elements": 6}"#.into()),
        },
    }
}

/// Everything a job does with a store, checked the same way on either backend.
fn exercise(tracking: &dyn Tracking, registry: &dyn ModelRegistry) {
    let experiment = tracking.get_or_create_experiment("bikes").unwrap();
    assert_eq!(
        tracking.get_or_create_experiment("bikes").unwrap(),
        experiment
    );
    let run = tracking
        .create_run(
            &experiment,
            NewRun {
                run_name: Some("training".into()),
                user_id: Some("ann".into()),
                tags: vec![Tag::new("mlflow.source.type", "LOCAL")],
                ..NewRun::default()
            },
        )
        .unwrap();
    assert_eq!(run.status, RunStatus::Running);
    let params: Vec<Tag> = (0..120)
        .map(|i| Tag::new(format!("p{i:03}"), i.to_string()))
        .collect();
    let metrics: Vec<Metric> = (0..1_200)
        .map(|step| Metric::new("loss", 1.0 / (step as f64 + 1.0), 1_000 + step, step))
        .chain([
            Metric::new("rmse", 4.8, 2_000, 0),
            Metric::new("system/cpu_utilization_percentage", 12.5, 2_000, 0),
            Metric::new("nan_metric", f64::NAN, 2_000, 0),
        ])
        .collect();
    tracking
        .log_batch(
            &run.run_id,
            &metrics,
            &params,
            &[Tag::new("job", "TrainingJob")],
        )
        .unwrap();
    // The same param again is accepted; another value is refused, as in MLflow.
    tracking
        .log_batch(&run.run_id, &[], &params[..1], &[])
        .unwrap();
    assert!(
        tracking
            .log_batch(&run.run_id, &[], &[Tag::new("p000", "changed")], &[])
            .is_err()
    );
    tracking
        .log_inputs(
            &run.run_id,
            &[
                dataset("inputs_train", "training"),
                dataset("inputs_test", "testing"),
            ],
        )
        .unwrap();
    tracking
        .log_artifact(&run.run_id, "config.yaml", b"KIND: TrainingJob\n")
        .unwrap();
    let source = mlmodel::log_model(tracking, &run, &description(&run.run_id), b"weights").unwrap();
    assert!(source.ends_with("/model"), "{source}");
    tracking.end_run(&run.run_id, RunStatus::Finished).unwrap();

    let read = tracking.get_run(&run.run_id).unwrap();
    assert_eq!(read.info.status, RunStatus::Finished);
    assert!(read.info.end_time.is_some());
    assert_eq!(read.info.run_name, "training");
    assert_eq!(read.data.tag("mlflow.runName"), Some("training"));
    assert_eq!(read.data.tag("mlflow.user"), Some("ann"));
    assert_eq!(read.data.tag("job"), Some("TrainingJob"));
    assert!(
        read.data
            .tag("mlflow.log-model.history")
            .unwrap()
            .contains("RandomForestModel")
    );
    assert_eq!(read.data.params.len(), 120);
    assert_eq!(read.data.param("p042"), Some("42"));
    assert_eq!(read.data.metric("loss"), Some(1.0 / 1_200.0));
    assert_eq!(read.data.metric("rmse"), Some(4.8));
    assert_eq!(
        read.data.metric("system/cpu_utilization_percentage"),
        Some(12.5)
    );
    assert!(read.data.metric("nan_metric").unwrap().is_nan());
    assert_eq!(
        tracking.metric_history(&run.run_id, "loss").unwrap().len(),
        1_200
    );
    let mut contexts: Vec<_> = read
        .inputs
        .dataset_inputs
        .iter()
        .map(|input| {
            (
                input.dataset.name.as_str(),
                input.context().unwrap_or_default(),
            )
        })
        .collect();
    contexts.sort_unstable();
    assert_eq!(
        contexts,
        [("inputs_test", "testing"), ("inputs_train", "training")]
    );
    let root: Vec<_> = tracking
        .list_artifacts(&run.run_id, "")
        .unwrap()
        .into_iter()
        .map(|file| (file.path, file.is_dir))
        .collect();
    assert_eq!(
        root,
        [
            ("config.yaml".to_owned(), false),
            ("model".to_owned(), true)
        ]
    );
    let mut model_files: Vec<_> = tracking
        .list_artifacts(&run.run_id, "model")
        .unwrap()
        .into_iter()
        .map(|file| file.path)
        .collect();
    model_files.sort();
    assert_eq!(
        model_files,
        [
            "model/MLmodel",
            "model/input_example.json",
            "model/model.velo",
            "model/serving_input_example.json"
        ]
    );
    assert_eq!(
        tracking
            .read_artifact(&run.run_id, "model/model.velo")
            .unwrap(),
        b"weights"
    );
    assert!(
        tracking
            .list_runs(&experiment)
            .unwrap()
            .iter()
            .any(|r| r.info.run_id == run.run_id)
    );

    // Registry: versions, aliases, URIs, download.
    let first = registry
        .create_model_version("bikes", &source, &run.run_id, &[Tag::new("kind", "forest")])
        .unwrap();
    let second = registry
        .create_model_version("bikes", &source, &run.run_id, &[])
        .unwrap();
    assert_eq!(
        (first.version.as_str(), second.version.as_str()),
        ("1", "2")
    );
    assert_eq!(first.run_id, run.run_id);
    assert_eq!(first.source, source);
    assert!(first.tags.contains(&Tag::new("kind", "forest")));
    assert!(
        registry
            .list_registered_models()
            .unwrap()
            .contains(&"bikes".to_owned())
    );

    // The alias log: concurrent moves all recorded, none rewritten, the last one holding.
    std::thread::scope(|scope| {
        for writer in 0..4 {
            scope.spawn(move || {
                for step in 0..5 {
                    let to = if (writer + step) % 2 == 0 { "1" } else { "2" };
                    registries::history::move_alias(
                        registry,
                        "bikes",
                        "Staged",
                        to,
                        &format!("writer {writer}"),
                        &format!("step {step}"),
                    )
                    .unwrap();
                }
            });
        }
    });
    let log = registries::history::alias_log(registry, "bikes").unwrap();
    assert_eq!(log.len(), 20);
    for writer in 0..4 {
        let steps: Vec<&str> = log
            .iter()
            .filter(|event| event.by == format!("writer {writer}"))
            .map(|event| event.reason.as_str())
            .collect();
        assert_eq!(steps, ["step 0", "step 1", "step 2", "step 3", "step 4"]);
    }
    let holder = registry
        .get_model_version_by_alias("bikes", "Staged")
        .unwrap()
        .unwrap();
    assert!(
        log.iter()
            .any(|event| event.to.as_deref() == Some(holder.version.as_str()))
    );
    let removed = registries::history::remove_alias(registry, "bikes", "Staged", "test", "done")
        .unwrap()
        .unwrap();
    assert_eq!(removed.to, None);
    let log = registries::history::alias_log(registry, "bikes").unwrap();
    assert_eq!(
        registries::history::holder_at(&log, "Staged", i64::MAX),
        None,
        "removed"
    );
    assert!(
        registry
            .get_model_version_by_alias("bikes", "Staged")
            .unwrap()
            .is_none()
    );
    registry.set_alias("bikes", "Champion", "1").unwrap();
    let champion: ModelUri = "models:/bikes@Champion".parse().unwrap();
    assert_eq!(champion.resolve(registry).unwrap().version, "1");
    registry.set_alias("bikes", "Champion", "2").unwrap();
    let resolved = champion.resolve(registry).unwrap();
    assert_eq!(resolved.version, "2");
    assert_eq!(resolved.aliases, ["Champion"]);
    assert_eq!(
        "models:/bikes/1"
            .parse::<ModelUri>()
            .unwrap()
            .resolve(registry)
            .unwrap()
            .version,
        "1"
    );
    assert_eq!(
        "models:/bikes/latest"
            .parse::<ModelUri>()
            .unwrap()
            .resolve(registry)
            .unwrap()
            .version,
        "2"
    );
    let missing = "models:/bikes@Challenger"
        .parse::<ModelUri>()
        .unwrap()
        .resolve(registry)
        .unwrap_err();
    assert!(
        missing.is_not_found() && missing.to_string().contains("models:/bikes@Challenger"),
        "{missing}"
    );
    assert!(
        registry.set_alias("bikes", "Champion", "9").is_err(),
        "an alias needs an existing version"
    );
    assert!(
        registry.set_alias("bikes", "latest", "1").is_err(),
        "reserved alias"
    );
    registry
        .set_model_version_tag("bikes", "2", "validated", "true")
        .unwrap();
    assert!(
        registry
            .get_model_version("bikes", "2")
            .unwrap()
            .unwrap()
            .tags
            .contains(&Tag::new("validated", "true"))
    );
    assert_eq!(registry.list_model_versions("bikes").unwrap().len(), 2);
    let model = registry.get_registered_model("bikes").unwrap().unwrap();
    assert_eq!(model.aliases.len(), 1);
    let into = tempfile::tempdir().unwrap();
    registry.download_model(&resolved, into.path()).unwrap();
    assert_eq!(
        std::fs::read(into.path().join("model.velo")).unwrap(),
        b"weights"
    );
    let mlmodel = mlmodel::read(into.path()).unwrap();
    assert_eq!(
        mlmodel.velo_flavor().unwrap().model_kind.as_deref(),
        Some("RandomForestModel")
    );
    assert!(mlmodel.inputs.iter().any(|column| column.name == "hr"));
    let loaded = mlmodel::load_model_bytes(registry, &champion).unwrap();
    assert_eq!(loaded.bytes, b"weights");
    assert_eq!(loaded.version.version, resolved.version);
    assert_eq!(loaded.mlmodel, mlmodel);
    registry.delete_alias("bikes", "Champion").unwrap();
    registry.delete_alias("bikes", "Champion").unwrap();
    assert!(
        registry
            .get_model_version_by_alias("bikes", "Champion")
            .unwrap()
            .is_none()
    );

    // A failed run ends FAILED with its error as a tag.
    let failed = tracking.create_run(&experiment, NewRun::default()).unwrap();
    tracking
        .log_batch(&failed.run_id, &[], &[], &[Tag::new("velo.error", "boom")])
        .unwrap();
    tracking.end_run(&failed.run_id, RunStatus::Failed).unwrap();
    let failed = tracking.get_run(&failed.run_id).unwrap();
    assert_eq!(failed.info.status, RunStatus::Failed);
    assert_eq!(failed.data.tag("velo.error"), Some("boom"));
}

#[test]
fn the_embedded_store_does_everything_a_job_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("mlruns")).unwrap();
    exercise(&store, &store);
    // Reopening sees the same records.
    let again = FileStore::open(dir.path().join("mlruns")).unwrap();
    assert_eq!(again.list_model_versions("bikes").unwrap().len(), 2);
}

#[test]
fn a_live_mlflow_server_does_everything_a_job_needs() {
    let Some(server) = TestServer::start_or_skip("registries on a live server") else {
        return;
    };
    let stores = registries::open(server.uri()).unwrap();
    exercise(stores.tracking.as_ref(), stores.registry.as_ref());
}

#[test]
fn a_model_version_that_cannot_be_read_back_is_named_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("mlruns")).unwrap();
    let experiment = store.get_or_create_experiment("bikes").unwrap();
    let register = |model: &MlModel, payload: &[u8]| {
        let run = store.create_run(&experiment, NewRun::default()).unwrap();
        let mut model = model.clone();
        model.run_id.clone_from(&run.run_id);
        let source = mlmodel::log_model(&store, &run, &model, payload).unwrap();
        store
            .create_model_version("bikes", &source, &run.run_id, &[])
            .unwrap()
    };
    let chain = |uri: &str| {
        let error = mlmodel::load_model_bytes(&store, &uri.parse().unwrap()).unwrap_err();
        let mut lines = vec![error.to_string()];
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            lines.push(cause.to_string());
            source = cause.source();
        }
        lines.join(" / ")
    };

    // A model file in a folder of the model directory is written and read back there.
    let mut nested = description("");
    nested.model_file = "weights/forest.velo".into();
    let version = register(&nested, b"nested");
    let loaded = mlmodel::load_model_bytes(&store, &"models:/bikes/1".parse().unwrap()).unwrap();
    assert_eq!(
        (version.version.as_str(), loaded.bytes.as_slice()),
        ("1", &b"nested"[..])
    );

    // The file the flavor names is gone: the version and the file are named.
    let version = register(&description(""), b"weights");
    let artifacts = dir
        .path()
        .join("mlruns")
        .join(&experiment)
        .join(&version.run_id)
        .join("artifacts/model/model.velo");
    std::fs::remove_file(&artifacts).unwrap();
    let error = chain("models:/bikes/2");
    assert!(
        error.contains("model version bikes/2") && error.contains("model.velo"),
        "{error}"
    );

    // A model written by another tool, without velo's flavor, says which flavors it has.
    std::fs::write(
        artifacts.with_file_name("MLmodel"),
        "flavors: {sklearn: {pickled_model: model.pkl}}\n",
    )
    .unwrap();
    let error = chain("models:/bikes/2");
    assert!(
        error.contains("model version bikes/2") && error.contains("sklearn"),
        "{error}"
    );

    // A model file that could not be written refuses to log anything.
    let mut escaping = description("");
    escaping.model_file = "../outside.velo".into();
    let run = store.create_run(&experiment, NewRun::default()).unwrap();
    let refused = mlmodel::log_model(&store, &run, &escaping, b"x").unwrap_err();
    assert!(refused.to_string().contains("../outside.velo"), "{refused}");
    assert!(store.list_artifacts(&run.run_id, "").unwrap().is_empty());
}

/// MLflow's own Python client, when the test environment has one.
fn mlflow_python() -> Option<std::path::PathBuf> {
    let python = std::env::var_os("VELO_MLFLOW_PYTHON").map(std::path::PathBuf::from);
    match python {
        Some(path) if path.is_file() => Some(path),
        _ => {
            assert!(
                !velo_mlflow::test_server::required(),
                "VELO_MLFLOW_PYTHON is not set but integration tests are required; run `cargo xtask test`"
            );
            #[allow(clippy::print_stderr, reason = "a skipped test says so visibly")]
            {
                eprintln!("SKIPPED: set VELO_MLFLOW_PYTHON to a Python with mlflow");
            }
            None
        }
    }
}

const PYTHON_READER: &str = r#"
import json, math, sys
from mlflow import MlflowClient
uri = sys.argv[1]
client = MlflowClient(tracking_uri=uri, registry_uri=uri)
exp = client.get_experiment_by_name("bikes")
runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
run = [r for r in runs if r.info.run_name == "training"][0]
history = client.get_metric_history(run.info.run_id, "loss")
files = sorted(f.path for f in client.list_artifacts(run.info.run_id, "model"))
local = client.download_artifacts(run.info.run_id, "model/model.velo")
mv = client.get_model_version("bikes", "2")
champion = client.get_model_version_by_alias("bikes", "Champion") if "Champion" in client.get_registered_model("bikes").aliases else None
from mlflow.models import Model
model = Model.load(client.download_artifacts(run.info.run_id, "model"))
print(json.dumps({
    "experiment": exp.name,
    "runs": len(runs),
    "status": run.info.status,
    "params": len(run.data.params),
    "p042": run.data.params["p042"],
    "rmse": run.data.metrics["rmse"],
    "cpu": run.data.metrics["system/cpu_utilization_percentage"],
    "nan": math.isnan(run.data.metrics["nan_metric"]),
    "tags": {k: v for k, v in run.data.tags.items() if k in ("job", "mlflow.runName", "mlflow.user")},
    "history": len(history),
    "datasets": sorted((d.dataset.name, d.dataset.digest, [t.value for t in d.tags][0]) for d in run.inputs.dataset_inputs),
    "files": files,
    "payload": open(local, "rb").read().decode(),
    "versions": sorted(int(v.version) for v in client.search_model_versions("name = 'bikes'")),
    "v2_tags": mv.tags,
    "v2_run": mv.run_id == run.info.run_id,
    "champion": int(champion.version) if champion else None,
    "flavor": sorted(model.flavors),
    "signature": [c["name"] for c in model.signature.inputs.to_dict()],
    "example": model.saved_input_example_info["artifact_path"],
}))
"#;

#[test]
fn mlflow_python_client_reads_every_record_of_the_embedded_store() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mlruns");
    let store = FileStore::open(&root).unwrap();
    exercise(&store, &store);
    store.set_alias("bikes", "Champion", "2").unwrap();
    let output = Command::new(&python)
        .args(["-c", PYTHON_READER])
        .arg(url::Url::from_file_path(&root).unwrap().as_str())
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let expected = serde_json::json!({
        "experiment": "bikes",
        "runs": 2,
        "status": "FINISHED",
        "params": 120,
        "p042": "42",
        "rmse": 4.8,
        "cpu": 12.5,
        "nan": true,
        "tags": {"job": "TrainingJob", "mlflow.runName": "training", "mlflow.user": "ann"},
        "history": 1200,
        "datasets": [["inputs_test", "inputs_test-digest", "testing"], ["inputs_train", "inputs_train-digest", "training"]],
        "files": ["model/MLmodel", "model/input_example.json", "model/model.velo", "model/serving_input_example.json"],
        "payload": "weights",
        "versions": [1, 2],
        "v2_tags": {"validated": "true"},
        "v2_run": true,
        "champion": 2,
        "flavor": ["velo"],
        "signature": ["hr", "temp"],
        "example": "input_example.json",
    });
    assert_eq!(seen, expected);

    // `mlflow migrate-filestore` moves the store into a database a server can use.
    let mlflow = python.with_file_name("mlflow");
    let database = dir.path().join("migrated.db");
    let migrated = Command::new(&mlflow)
        .args(["migrate-filestore", "--source"])
        .arg(&root)
        .arg("--target")
        .arg(format!("sqlite:///{}", database.display()))
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "migrate-filestore failed: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let check = Command::new(&python)
        .args([
            "-c",
            "import sys; from mlflow import MlflowClient; c = MlflowClient(sys.argv[1], sys.argv[1]); \
             e = c.get_experiment_by_name('bikes'); r = c.search_runs([e.experiment_id]); \
             print(len(r), sorted(int(v.version) for v in c.search_model_versions(\"name = 'bikes'\")), \
             c.get_model_version_by_alias('bikes', 'Champion').version)",
        ])
        .arg(format!("sqlite:///{}", database.display()))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "2 [1, 2] 2");
}

/// Runs one test of this binary in a child process with extra environment variables.
fn child(test: &str, vars: &[(&str, &str)]) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", test, "--nocapture", "--test-threads", "1"]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// Registers one version of `bikes` in the store named by `VELO_REGISTER_INTO` (a child of the
/// concurrency test), or in a fresh store when run on its own.
#[test]
fn register_one_version() {
    let own = tempfile::tempdir().unwrap();
    let root =
        std::env::var_os("VELO_REGISTER_INTO").map_or_else(|| own.path().to_path_buf(), Into::into);
    let store = FileStore::open(&root).unwrap();
    let experiment = store.get_or_create_experiment("concurrent").unwrap();
    let run = store.create_run(&experiment, NewRun::default()).unwrap();
    let local = model_dir(&run.run_id, run.run_id.as_bytes());
    let source = mlmodel::log_model_dir(&store, &run, "model", local.path()).unwrap();
    let version = store
        .create_model_version("bikes", &source, &run.run_id, &[])
        .unwrap();
    store.end_run(&run.run_id, RunStatus::Finished).unwrap();
    println!("VERSION {} {}", version.version, run.run_id);
    if std::env::var_os("VELO_REGISTER_INTO").is_none() {
        assert_eq!(version.version, "1");
    }
}

#[test]
fn eight_processes_registering_at_once_get_versions_one_to_eight() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mlruns");
    FileStore::open(&root).unwrap();
    let root_text = root.to_string_lossy().into_owned();
    let children: Vec<_> = (0..8)
        .map(|_| {
            child(
                "registries::register_one_version",
                &[("VELO_REGISTER_INTO", &root_text)],
            )
        })
        .collect();
    let mut claimed = Vec::new();
    for process in children {
        let output = process.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // libtest prints the test's name on the same line as its output.
        let line = stdout
            .lines()
            .find_map(|line| line.split_once("VERSION "))
            .unwrap()
            .1
            .to_owned();
        let mut parts = line.split_whitespace();
        claimed.push((
            parts.next().unwrap().parse::<u64>().unwrap(),
            parts.next().unwrap().to_owned(),
        ));
    }
    claimed.sort();
    let numbers: Vec<u64> = claimed.iter().map(|(number, _)| *number).collect();
    assert_eq!(
        numbers,
        (1..=8).collect::<Vec<_>>(),
        "no number reused or lost"
    );
    let store = FileStore::open(&root).unwrap();
    let experiment = store.get_or_create_experiment("concurrent").unwrap();
    assert_eq!(
        store.list_runs(&experiment).unwrap().len(),
        8,
        "one experiment, eight runs"
    );
    for (number, run_id) in claimed {
        let version = store
            .get_model_version("bikes", &number.to_string())
            .unwrap()
            .unwrap();
        assert_eq!(
            version.run_id, run_id,
            "version {number} points at the run that made it"
        );
        let into = tempfile::tempdir().unwrap();
        store.download_model(&version, into.path()).unwrap();
        assert_eq!(
            std::fs::read(into.path().join("model.velo")).unwrap(),
            run_id.as_bytes()
        );
    }
}

/// Saves a model the way training does (run, params, metrics, model directory, version, alias,
/// end) into `VELO_CRASH_INTO`, aborting at write step `VELO_CRASH_AFTER` (a child of the crash
/// test), or completely into a fresh store when run on its own.
#[test]
fn save_a_model() {
    let own = tempfile::tempdir().unwrap();
    let root =
        std::env::var_os("VELO_CRASH_INTO").map_or_else(|| own.path().to_path_buf(), Into::into);
    let store = FileStore::open(&root).unwrap();
    #[cfg(feature = "crash-points")]
    let store = match std::env::var("VELO_CRASH_AFTER")
        .ok()
        .and_then(|text| text.parse().ok())
    {
        Some(limit) => store.crash_after_writes(limit),
        None => store,
    };
    let experiment = store.get_or_create_experiment("crash").unwrap();
    let run = store
        .create_run(
            &experiment,
            NewRun {
                run_name: Some("train".into()),
                ..NewRun::default()
            },
        )
        .unwrap();
    store
        .log_batch(
            &run.run_id,
            &[
                Metric::new("rmse", 4.8, 1, 0),
                Metric::new("mae", 2.1, 1, 0),
            ],
            &[Tag::new("max_depth", "20")],
            &[Tag::new("job", "TrainingJob")],
        )
        .unwrap();
    store
        .log_inputs(&run.run_id, &[dataset("inputs_train", "training")])
        .unwrap();
    let local = model_dir(&run.run_id, b"weights");
    let source = mlmodel::log_model_dir(&store, &run, "model", local.path()).unwrap();
    let version = store
        .create_model_version("bikes", &source, &run.run_id, &[Tag::new("k", "v")])
        .unwrap();
    store
        .set_alias("bikes", "Champion", &version.version)
        .unwrap();
    store.end_run(&run.run_id, RunStatus::Finished).unwrap();
    println!("SAVED {}", version.version);
    assert!(!version.version.is_empty());
}

/// Everything in the store reads back whole: runs, their records, versions and aliases.
fn check_readable(root: &Path) -> (usize, usize) {
    let store = FileStore::open(root).unwrap();
    let experiment = store.get_or_create_experiment("crash").unwrap();
    let runs = store.list_runs(&experiment).unwrap();
    for run in &runs {
        let read = store.get_run(&run.info.run_id).unwrap();
        // A logged model directory is there whole or not at all.
        let files = store.list_artifacts(&run.info.run_id, "model").unwrap();
        assert!(
            files.is_empty() || files.len() == 4,
            "partial model directory: {files:?}"
        );
        assert!(
            read.data
                .param("max_depth")
                .is_none_or(|value| value == "20")
        );
    }
    let versions = store.list_model_versions("bikes").unwrap_or_default();
    for (index, version) in versions.iter().enumerate() {
        assert_eq!(
            version.version,
            (index + 1).to_string(),
            "versions are consecutive"
        );
        assert_eq!(version.status, "READY");
        let into = tempfile::tempdir().unwrap();
        store.download_model(version, into.path()).unwrap();
        assert_eq!(
            std::fs::read(into.path().join("model.velo")).unwrap(),
            b"weights"
        );
    }
    if let Some(champion) = store
        .get_model_version_by_alias("bikes", "Champion")
        .unwrap()
    {
        assert!(
            versions
                .iter()
                .any(|version| version.version == champion.version)
        );
    }
    (runs.len(), versions.len())
}

#[test]
fn a_process_killed_at_any_write_leaves_the_store_readable() {
    if !cfg!(feature = "crash-points") {
        eprintln!(
            "skipped: the crash points need velo-io's `crash-points` feature (cargo xtask test)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mlruns");
    FileStore::open(&root).unwrap();
    let root_text = root.to_string_lossy().into_owned();
    let mut crashes = 0;
    for limit in 1..500_u64 {
        let output = child(
            "registries::save_a_model",
            &[
                ("VELO_CRASH_INTO", &root_text),
                ("VELO_CRASH_AFTER", &limit.to_string()),
            ],
        )
        .wait_with_output()
        .unwrap();
        check_readable(&root);
        if output.status.success() {
            assert!(String::from_utf8_lossy(&output.stdout).contains("SAVED"));
            break;
        }
        crashes += 1;
    }
    assert!(
        crashes > 20,
        "the save path has {crashes} write steps; every one was tried"
    );
    let (runs, versions) = check_readable(&root);
    // Runs appear whole: those killed before their directory was moved into place are absent.
    assert!(
        (1..=crashes + 1).contains(&runs),
        "{runs} runs after {crashes} crashes"
    );
    assert!(versions >= 1);
    // MLflow's own client reads the store after all those crashes.
    if let Some(python) = mlflow_python() {
        let output = Command::new(&python)
            .args(["-c", "import sys; from mlflow import MlflowClient; c = MlflowClient(sys.argv[1], sys.argv[1]); e = c.get_experiment_by_name('crash'); print(len(c.search_runs([e.experiment_id])), len(c.search_model_versions(\"name = 'bikes'\")))"])
            .arg(url::Url::from_file_path(&root).unwrap().as_str())
            .env("MLFLOW_ALLOW_FILE_STORE", "true")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{runs} {versions}")
        );
    }
}

#[test]
fn artifact_paths_cannot_leave_their_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("mlruns")).unwrap();
    let experiment = store.get_or_create_experiment("safety").unwrap();
    let run = store.create_run(&experiment, NewRun::default()).unwrap();
    for payload in [
        "../escape.txt",
        "../../../../etc/passwd",
        "model/../../escape.txt",
        "/etc/passwd",
        "..\\..\\escape.txt",
        "C:/Windows/win.ini",
        "..",
        "",
    ] {
        let error = store.log_artifact(&run.run_id, payload, b"x").unwrap_err();
        assert!(
            error.to_string().contains("artifact"),
            "{payload:?}: {error}"
        );
        assert!(
            store.read_artifact(&run.run_id, payload).is_err(),
            "{payload:?}"
        );
    }
    // Percent-encoded dots are a plain file name, kept inside the run.
    store
        .log_artifact(&run.run_id, "%2e%2e/x.txt", b"x")
        .unwrap();
    let run_dir = dir
        .path()
        .join("mlruns")
        .join(&experiment)
        .join(&run.run_id);
    assert!(run_dir.join("artifacts/%2e%2e/x.txt").is_file());
    // A symlink planted in the artifacts pointing outside is never followed.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, run_dir.join("artifacts/link")).unwrap();
        assert!(
            store
                .log_artifact(&run.run_id, "link/planted.txt", b"x")
                .is_err()
        );
        assert!(!outside.join("planted.txt").exists());
        assert!(store.read_artifact(&run.run_id, "link/secret.txt").is_err());
        assert!(store.list_artifacts(&run.run_id, "link").is_err());
        let listed = store.list_artifacts(&run.run_id, "").unwrap();
        assert!(listed.iter().all(|file| file.path != "link"), "{listed:?}");
        // A local directory holding a symlink is refused as a model directory.
        let local = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), local.path().join("stolen"))
            .unwrap();
        assert!(
            store
                .log_artifact_dir(&run.run_id, "model", local.path())
                .is_err()
        );
    }
    // Ids and names that would become paths are checked.
    for run_id in ["../../../etc", "0123456789abcdef0123456789abcde/", ""] {
        assert!(store.get_run(run_id).is_err(), "{run_id:?}");
    }
    for name in ["../models", "a/b", ".hidden"] {
        assert!(
            store
                .create_model_version(name, "file:///tmp", &run.run_id, &[])
                .is_err(),
            "{name:?}"
        );
    }
    assert!(store.get_model_version_by_alias("bikes", "../x").is_err());
    assert!(
        store
            .log_batch(&run.run_id, &[Metric::new("../m", 1.0, 1, 0)], &[], &[])
            .is_err()
    );
    assert!(
        !dir.path()
            .join("mlruns")
            .join(&experiment)
            .join("m")
            .exists()
    );
}

/// Every kind of record the store writes refuses a symbolic link planted on its way, and
/// nothing lands outside the store.
#[cfg(unix)]
#[test]
fn symbolic_links_on_the_way_of_any_record_are_refused() {
    type Plant = fn(&Path, &str, &str);
    type Write = fn(&FileStore, &str, &str) -> Result<(), String>;
    // Each case: where the link is planted (relative to the store root, given the experiment
    // and run), and the write that must refuse it.
    let cases: [(&str, Plant, Write); 6] = [
        (
            "aliases",
            |root, _, _| link(root, "models/bikes/aliases"),
            |store, _, _| {
                store
                    .set_alias("bikes", "Champion", "1")
                    .map_err(|e| e.to_string())
            },
        ),
        (
            "model",
            |root, _, _| link(root, "models/bikes"),
            |store, _, run| {
                store
                    .create_model_version("bikes", "/nowhere", run, &[])
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        ),
        (
            "version tags",
            |root, _, _| link(root, "models/bikes/version-1/tags"),
            |store, _, _| {
                store
                    .set_model_version_tag("bikes", "1", "k", "v")
                    .map_err(|e| e.to_string())
            },
        ),
        (
            "metrics",
            |root, experiment, run| link(root, &format!("{experiment}/{run}/metrics")),
            |store, _, run| {
                store
                    .log_batch(run, &[Metric::new("rmse", 1.0, 0, 0)], &[], &[])
                    .map_err(|e| e.to_string())
            },
        ),
        (
            "run",
            |root, experiment, _| link(root, experiment),
            |store, experiment, _| {
                store
                    .create_run(experiment, NewRun::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        ),
        (
            "staging",
            |root, _, _| link(root, ".velo-staging.trash"),
            |store, _, run| {
                store
                    .log_artifact(run, "notes.txt", b"x")
                    .map_err(|e| e.to_string())
            },
        ),
    ];
    for (what, plant, write) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mlruns");
        let store = FileStore::open(&root).unwrap();
        let experiment = store.get_or_create_experiment("bikes").unwrap();
        let run = store
            .create_run(&experiment, NewRun::default())
            .unwrap()
            .run_id;
        store
            .create_model_version("bikes", "/nowhere", &run, &[])
            .unwrap();
        plant(&root, &experiment, &run);
        let outside = dir.path().join("outside");
        let before = files_below(&outside);
        let error = write(&store, &experiment, &run).expect_err(what);
        assert!(error.contains("symbolic link"), "{what}: {error}");
        assert_eq!(
            files_below(&outside),
            before,
            "{what}: something was written outside the store"
        );
    }
}

/// Every file below `dir`, relative, sorted.
#[cfg(unix)]
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

/// Moves `relative` (created when missing) with what it holds out of the store to
/// `../outside`, and leaves a symbolic link to it in its place.
#[cfg(unix)]
fn link(root: &Path, relative: &str) {
    let inside = root.join(relative);
    let outside = root.parent().unwrap().join("outside");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::rename(&inside, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &inside).unwrap();
}
