//! `velo run` carrying out jobs: training registers versions, promotion moves the alias, and
//! failures leave the registry as it was, on the embedded store and on a live MLflow server.

use std::path::Path;

use velo_io::registries::{self, RunStatus};
use velo_mlflow::test_server::TestServer;

use crate::{output, velo};

/// `velo run FILE -e SNIPPET` against the store at `uri`, with no MLflow variables inherited.
pub(crate) fn run_job(file: &str, uri: &str, job: &str) -> crate::Output {
    run_job_with(file, uri, job, &[])
}

/// [`run_job`] with `env` set for the process (an object store's settings, say).
pub(crate) fn run_job_with(
    file: &str,
    uri: &str,
    job: &str,
    env: &[(&'static str, String)],
) -> crate::Output {
    let snippet = format!(
        "job: {{{job}{}services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}'}}}}}}",
        if job.is_empty() { "" } else { ", " }
    );
    output(
        velo()
            .args(["run", file, "-e", &snippet])
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI")
            .env_remove("MLFLOW_EXPERIMENT_NAME")
            .envs(env.iter().map(|(key, value)| (*key, value.as_str()))),
    )
}

pub(crate) fn training_snippet(data: &Path) -> String {
    format!(
        "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, model: {{n_estimators: 8, max_depth: 6}}, splitter: {{test_size: 240}}",
        data.join("inputs_train.parquet").display(),
        data.join("targets_train.parquet").display()
    )
}

/// Tunes a small grid with `threads` workers and returns the run's cv results table.
fn tune(uri: &str, data: &Path, threads: usize) -> arrow::record_batch::RecordBatch {
    let (table, run) = tune_with(uri, data, &format!("n_jobs: {threads}"), "");
    assert_eq!(
        run.data.param("searcher.n_jobs"),
        Some(threads.to_string().as_str())
    );
    table
}

/// Tunes a grid of six candidates on three folds, with `searcher` and `job` added to the
/// searcher's and the job's settings; the run's cv results table and the run.
pub(crate) fn tune_with(
    uri: &str,
    data: &Path,
    searcher: &str,
    job: &str,
) -> (arrow::record_batch::RecordBatch, registries::Run) {
    let tuned = run_job(
        "configs/tuning.yaml",
        uri,
        &format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, model: {{n_estimators: 6}}, splitter: {{n_splits: 3, test_size: 200}}, searcher: {{param_grid: {{max_depth: [2, 4, 6], min_samples_leaf: [1, 3]}}, {searcher}}}{}{job}",
            data.join("inputs_train.parquet").display(),
            data.join("targets_train.parquet").display(),
            if job.is_empty() { "" } else { ", " }
        ),
    );
    assert_eq!(tuned.code, 0, "{}", tuned.stderr);
    assert!(
        tuned.stdout.contains("best of 6 candidates over 3 folds"),
        "{}",
        tuned.stdout
    );
    let run_id = tuned
        .stdout
        .split("(run ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no run id in {}", tuned.stdout))
        .to_owned();
    let stores = registries::open(uri).unwrap();
    let run = stores.tracking.get_run(&run_id).unwrap();
    assert!(run.data.param("best.max_depth").is_some());
    assert!(
        run.data
            .metric("best_mean_squared_error")
            .is_some_and(f64::is_finite)
    );
    let bytes = stores
        .tracking
        .read_artifact(&run.info.run_id, "cv_results.parquet")
        .unwrap();
    let file = tempfile::NamedTempFile::with_suffix(".parquet").unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let table = velo_io::datasets::Reader::ParquetReader(velo_io::datasets::ParquetReader::new(
        file.path(),
    ))
    .read()
    .unwrap()
    .data;
    (table, run)
}

pub(crate) fn lifecycle(uri: &str, data: &Path) {
    // Tuning: the same cv results, bit for bit, on one thread and on two.
    let (one, two) = (tune(uri, data, 1), tune(uri, data, 2));
    assert_eq!(plots_of(uri, "Tuning"), ["plots/cv_results.png"]);
    assert_eq!(one.num_rows(), 6);
    for column in [
        "params",
        "split0_test_score",
        "split2_test_score",
        "mean_test_score",
        "rank_test_score",
        "is_best",
    ] {
        assert_eq!(
            one.column_by_name(column).unwrap().to_data(),
            two.column_by_name(column).unwrap().to_data(),
            "{column}"
        );
    }
    let trained = run_job("configs/training.yaml", uri, &training_snippet(data));
    assert_eq!(trained.code, 0, "{}\n{}", trained.stdout, trained.stderr);
    assert!(
        trained.stdout.contains("registered bikes version 1"),
        "{}",
        trained.stdout
    );
    assert!(trained.stdout.contains("r2_score = "), "{}", trained.stdout);
    let again = run_job("configs/training.yaml", uri, &training_snippet(data));
    assert!(
        again.stdout.contains("registered bikes version 2"),
        "{}",
        again.stderr
    );

    let stores = registries::open(uri).unwrap();
    let registry = stores.registry.as_ref();

    // A missed threshold refuses the promotion and leaves the alias where it was.
    let refused = run_job(
        "configs/promotion.yaml",
        uri,
        "thresholds: {r2_score: {threshold: 2.0, greater_is_better: true}, mean_absolute_error: {threshold: 0.0, greater_is_better: false}}",
    );
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    for expected in [
        "r2_score = ",
        "needs >= 2",
        "mean_absolute_error = ",
        "needs <= 0",
        "not moved",
    ] {
        assert!(
            refused.stderr.contains(expected),
            "{expected}: {}",
            refused.stderr
        );
    }
    assert!(
        registry
            .get_model_version_by_alias("bikes", "Champion")
            .unwrap()
            .is_none()
    );
    // With no webhook or desktop, the failure is said once, by the error itself: no alert line
    // repeats it.
    assert!(
        !refused.stderr.contains("[velo] PromotionJob failed"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        refused.stderr.matches("not moved").count(),
        1,
        "{}",
        refused.stderr
    );

    let promoted = run_job(
        "configs/promotion.yaml",
        uri,
        "thresholds: {r2_score: {threshold: -100.0, greater_is_better: true}}",
    );
    assert_eq!(promoted.code, 0, "{}", promoted.stderr);
    assert!(
        promoted.stdout.contains("bikes@Champion -> version 2"),
        "{}",
        promoted.stdout
    );
    let champion = registry
        .get_model_version_by_alias("bikes", "Champion")
        .unwrap()
        .unwrap();
    assert_eq!(champion.version, "2");

    // The version's run holds what training logged.
    let run = stores.tracking.get_run(&champion.run_id).unwrap();
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.data.tag("mlflow.runName"), Some("Training"));
    assert!(
        run.data
            .tag("mlflow.source.name")
            .unwrap()
            .starts_with("velo run configs/training.yaml")
    );
    assert_eq!(run.data.param("model.n_estimators"), Some("8"));
    assert!(
        run.data
            .metric("root_mean_squared_error")
            .is_some_and(f64::is_finite)
    );
    let mut names: Vec<_> = run
        .inputs
        .dataset_inputs
        .iter()
        .map(|input| input.dataset.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["inputs_train", "targets_train"]);
    let into = tempfile::tempdir().unwrap();
    registry.download_model(&champion, into.path()).unwrap();
    let mlmodel = registries::mlmodel::read(into.path()).unwrap();
    assert_eq!(
        mlmodel.velo_flavor().unwrap().model_kind.as_deref(),
        Some("RandomForestModel")
    );
    assert!(
        mlmodel
            .outputs
            .iter()
            .any(|column| column.name == "prediction")
    );
    assert!(into.path().join("input_example.json").is_file());

    // Inference with the Champion: one prediction per input row, the index kept.
    let predictions = data.join(format!("predictions-{}.parquet", uri.len()));
    let inferred = run_job(
        "configs/inference.yaml",
        uri,
        &format!(
            "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}",
            data.join("inputs_test.parquet").display(),
            predictions.display()
        ),
    );
    assert_eq!(inferred.code, 0, "{}", inferred.stderr);
    assert!(
        inferred.stdout.contains("of bikes version 2"),
        "{}",
        inferred.stdout
    );
    let read = |path: &Path| {
        velo_io::datasets::Reader::ParquetReader(velo_io::datasets::ParquetReader::new(path))
            .read()
            .unwrap()
            .data
    };
    let (inputs, outputs) = (read(&data.join("inputs_test.parquet")), read(&predictions));
    assert_eq!(outputs.num_rows(), inputs.num_rows());
    let as_i64 = |batch: &arrow::record_batch::RecordBatch| {
        arrow::compute::cast(
            batch.column_by_name("instant").unwrap(),
            &arrow::datatypes::DataType::Int64,
        )
        .unwrap()
    };
    assert_eq!(
        as_i64(&outputs).to_data(),
        as_i64(&inputs).to_data(),
        "the input index is kept, row for row"
    );
    assert!(outputs.column_by_name("prediction").is_some());
    let unknown_alias = run_job(
        "configs/inference.yaml",
        uri,
        &format!(
            "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}, alias_or_version: Challenger",
            data.join("inputs_test.parquet").display(),
            data.join("never.parquet").display()
        ),
    );
    // Checked before any run opens: a usage error.
    assert_eq!(unknown_alias.code, 2);
    assert!(
        unknown_alias.stderr.contains("models:/bikes@Challenger"),
        "{}",
        unknown_alias.stderr
    );
    assert!(!data.join("never.parquet").exists());

    // Evaluations: metrics logged with the evaluation lineage; a missed threshold fails the job
    // with every metric, value and bound named.
    let data_paths = format!(
        "inputs: {{path: '{}'}}, targets: {{path: '{}'}}",
        data.join("inputs_test.parquet").display(),
        data.join("targets_test.parquet").display()
    );
    let evaluated = run_job(
        "configs/evaluations.yaml",
        uri,
        &format!(
            "{data_paths}, thresholds: {{r2_score: {{threshold: -1000.0, greater_is_better: true}}}}"
        ),
    );
    assert_eq!(evaluated.code, 0, "{}", evaluated.stderr);
    assert_eq!(
        plots_of(uri, "Evaluations"),
        ["plots/predicted_vs_actual.png", "plots/residuals.png"]
    );
    assert!(
        evaluated.stdout.contains("mean_squared_error = "),
        "{}",
        evaluated.stdout
    );
    let missed = run_job(
        "configs/evaluations.yaml",
        uri,
        &format!(
            "{data_paths}, thresholds: {{r2_score: {{threshold: 2.0, greater_is_better: true}}, max_error: {{threshold: 0.0, greater_is_better: false}}}}"
        ),
    );
    assert_eq!(missed.code, 1, "{}", missed.stdout);
    for expected in [
        "misses 2 threshold(s)",
        "r2_score = ",
        "needs >= 2",
        "max_error = ",
        "needs <= 0",
    ] {
        assert!(
            missed.stderr.contains(expected),
            "{expected}: {}",
            missed.stderr
        );
    }

    // Explanations: global importances and per-sample contributions, the index kept.
    let (global, samples) = (
        data.join(format!("global-{}.parquet", uri.len())),
        data.join(format!("samples-{}.parquet", uri.len())),
    );
    let explained = run_job(
        "configs/explanations.yaml",
        uri,
        &format!(
            "inputs_samples: {{path: '{}', limit: 50}}, models_explanations: {{path: '{}'}}, samples_explanations: {{path: '{}'}}",
            data.join("inputs_test.parquet").display(),
            global.display(),
            samples.display()
        ),
    );
    assert_eq!(explained.code, 0, "{}", explained.stderr);
    assert_eq!(plots_of(uri, "Explanations"), ["plots/contributions.png"]);
    let (global, samples) = (read(&global), read(&samples));
    assert!(global.num_rows() > 5, "one row per encoded feature");
    assert_eq!(global.schema().field(0).name(), "feature");
    assert_eq!(samples.num_rows(), 50);
    assert_eq!(samples.schema().field(0).name(), "instant");
    assert_eq!(
        samples.num_columns(),
        global.num_rows() + 2,
        "the index, one column per feature, the base value"
    );
    // pandas checks that each row's contributions and the base value add up to the prediction
    // the inference job made for the same row.
    if let Some(python) = std::env::var_os("VELO_PYTHON") {
        let script = r#"
import sys
import pandas as pd
def by_instant(path):
    # `instant` is a column, or the frame's index when the writer made it one.
    frame = pd.read_parquet(path)
    return frame.set_index("instant") if "instant" in frame.columns else frame
explained = by_instant(sys.argv[1])
predicted = by_instant(sys.argv[2])["prediction"]
features = [c for c in explained.columns if c != "base_value"]
total = explained[features].sum(axis=1) + explained["base_value"]
print((total - predicted.loc[explained.index]).abs().max())
"#;
        let checked = std::process::Command::new(python)
            .args(["-c", script])
            .arg(data.join(format!("samples-{}.parquet", uri.len())))
            .arg(&predictions)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let gap: f64 = String::from_utf8_lossy(&checked.stdout)
            .trim()
            .parse()
            .unwrap();
        assert!(
            gap < 1e-6,
            "base + contributions is off the prediction by {gap}"
        );
    }

    // A reader path that does not exist fails the job, names the file, and registers nothing.
    let missing = run_job(
        "configs/training.yaml",
        uri,
        "inputs: {path: 'no/such/inputs.parquet'}, model: {n_estimators: 2}",
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no/such/inputs.parquet"),
        "{}",
        missing.stderr
    );
    // Inputs that break the schema (targets given as inputs) fail the same way.
    let broken = run_job(
        "configs/training.yaml",
        uri,
        &format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}",
            data.join("targets_train.parquet").display(),
            data.join("targets_train.parquet").display()
        ),
    );
    assert_eq!(broken.code, 1);
    assert!(
        broken.stderr.contains("targets_train.parquet"),
        "{}",
        broken.stderr
    );
    // Feeding casual and registered (which sum to the target) with `leakage: fail` is refused.
    let leaking = run_job(
        "configs/training.yaml",
        uri,
        &format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, leakage: {{action: fail}}, model: {{n_estimators: 4, features: {{drop: [dteday]}}}}",
            data.join("inputs_train.parquet").display(),
            data.join("targets_train.parquet").display()
        ),
    );
    assert_eq!(leaking.code, 1, "{}", leaking.stdout);
    assert!(
        leaking.stderr.contains("the inputs leak the target")
            && leaking.stderr.contains("'registered'"),
        "{}",
        leaking.stderr
    );
    // An alias that does not exist is a clear failure too.
    let latest: Vec<_> = registry
        .list_model_versions("bikes")
        .unwrap()
        .iter()
        .map(|v| v.version.clone())
        .collect();
    assert_eq!(latest, ["1", "2"], "failed jobs registered nothing");
    let unknown = run_job("configs/promotion.yaml", uri, "version: 9");
    assert_eq!(unknown.code, 2, "checked before the job runs");
    assert!(unknown.stderr.contains("bikes/9"), "{}", unknown.stderr);

    // The failed training run is on record as FAILED with its error.
    let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
    let runs = stores.tracking.list_runs(&experiment).unwrap();
    let failed: Vec<_> = runs
        .iter()
        .filter(|run| run.info.status == RunStatus::Failed)
        .collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().any(|run| {
        run.data
            .tag("velo.error")
            .is_some_and(|error| error.contains("no/such/inputs.parquet"))
    }));
}

/// The artifacts under `plots/` of the newest FINISHED run called `name`.
fn plots_of(uri: &str, name: &str) -> Vec<String> {
    let stores = registries::open(uri).unwrap();
    let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
    let run = stores
        .tracking
        .list_runs(&experiment)
        .unwrap()
        .into_iter()
        .find(|run| run.info.run_name == name && run.info.status == RunStatus::Finished)
        .unwrap_or_else(|| panic!("a finished {name} run"));
    let files = stores
        .tracking
        .list_artifacts(&run.info.run_id, "plots")
        .unwrap();
    for file in &files {
        let png = stores
            .tracking
            .read_artifact(&run.info.run_id, &file.path)
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", file.path);
    }
    files.into_iter().map(|file| file.path).collect()
}

/// Synthetic data in `dir/data` and a registered, promoted small model in `dir/mlruns`;
/// returns the store's URI.
pub(crate) fn model_store(dir: &Path) -> String {
    let data = dir.join("data");
    synthetic_data(&data);
    let uri = dir.join("mlruns").display().to_string();
    let trained = run_job("configs/training.yaml", &uri, &training_snippet(&data));
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    assert_eq!(run_job("configs/promotion.yaml", &uri, "").code, 0);
    uri
}

pub(crate) fn synthetic_data(dir: &Path) {
    let synth = output(
        velo()
            .args(["data", "synth", "--rows", "3000", "--out"])
            .arg(dir),
    );
    assert_eq!(synth.code, 0, "{}", synth.stderr);
}

#[test]
fn training_and_promotion_run_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_data(&dir.path().join("data"));
    lifecycle(
        &dir.path().join("mlruns").display().to_string(),
        &dir.path().join("data"),
    );
}

#[test]
fn the_same_configs_run_against_a_live_mlflow_server() {
    let Some(server) = TestServer::start_or_skip("velo run against a live server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    synthetic_data(&dir.path().join("data"));
    lifecycle(server.uri(), &dir.path().join("data"));
    // `velo models` reads the server's registry and the alias log kept in its tags.
    let history = output(
        velo()
            .args([
                "models",
                "history",
                "bikes",
                "--json",
                "--store",
                server.uri(),
            ])
            .env_remove("MLFLOW_TRACKING_URI"),
    );
    assert_eq!(history.code, 0, "{}", history.stderr);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let log = history["log"].as_array().unwrap();
    assert!(!log.is_empty(), "{history}");
    let last = log.last().unwrap();
    let champion = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "Champion")
        })
        .unwrap();
    assert_eq!(last["to"], champion["version"], "{history}");
    assert!(champion["metrics"]["root_mean_squared_error"].is_f64());
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_the_open_run_as_killed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let store = dir.path().join("mlruns");
    let uri = store.display().to_string();
    let snippet = format!(
        "job: {{inputs: {{path: '{}'}}, targets: {{path: '{}'}}, model: {{n_estimators: 5000, max_depth: 30}}, splitter: {{test_size: 240}}, services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}'}}}}}}",
        data.join("inputs_train.parquet").display(),
        data.join("targets_train.parquet").display()
    );
    let mut command = std::process::Command::new(crate::velo_binary());
    command
        .current_dir(crate::root())
        .args(["run", "configs/training.yaml", "-e", &snippet])
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    // Wait for the run to open, then interrupt the fit.
    let stores = registries::open(&uri).unwrap();
    let started = std::time::Instant::now();
    let run_id = loop {
        assert!(started.elapsed().as_secs() < 60, "the run never opened");
        if let Ok(experiment) = stores.tracking.get_or_create_experiment("bikes")
            && let Some(run) = stores
                .tracking
                .list_runs(&experiment)
                .unwrap()
                .into_iter()
                .next()
        {
            break run.info.run_id;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = stores.tracking.get_run(&run_id).unwrap();
    assert_eq!(run.info.status, RunStatus::Killed);
    assert!(run.info.end_time.is_some());
    assert!(
        stores
            .registry
            .list_model_versions("bikes")
            .unwrap()
            .is_empty(),
        "nothing registered"
    );
}

/// Copies `configs/` into `dir`, with small forests so that a debug build runs the lifecycle
/// in seconds.
pub(crate) fn small_project(dir: &Path) {
    let mut pending = vec![(crate::root().join("configs"), dir.join("configs"))];
    while let Some((from, to)) = pending.pop() {
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push((entry.path(), to.join(entry.file_name())));
            } else {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                let text = text
                    .replace("n_estimators: 200", "n_estimators: 4")
                    .replace(
                        "    KIND: RandomForestModel\n    features:",
                        "    KIND: RandomForestModel\n    n_estimators: 4\n    features:",
                    );
                std::fs::write(to.join(entry.file_name()), text).unwrap();
            }
        }
    }
}

#[test]
fn velo_project_runs_the_six_jobs_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    small_project(dir.path());
    let result = output(
        velo()
            .current_dir(dir.path())
            .arg("project")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI")
            .env_remove("MLFLOW_EXPERIMENT_NAME"),
    );
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    for job in [
        "TuningJob",
        "TrainingJob",
        "PromotionJob",
        "InferenceJob",
        "EvaluationsJob",
        "ExplanationsJob",
    ] {
        assert!(
            result.stdout.contains(&format!("{job} finished")),
            "{job}: {}",
            result.stdout
        );
    }
    assert!(
        result.stdout.contains("generated 17379 synthetic rows"),
        "{}",
        result.stdout
    );
    let stores = registries::open(&dir.path().join("mlruns").display().to_string()).unwrap();
    let champion = stores
        .registry
        .get_model_version_by_alias("bikes", "Champion")
        .unwrap()
        .unwrap();
    assert_eq!(champion.version, "1");
    for file in [
        "predictions_test.parquet",
        "models_explanations.parquet",
        "samples_explanations.parquet",
    ] {
        assert!(dir.path().join("outputs").join(file).is_file(), "{file}");
    }
    // Every run is visible to MLflow's own client (when the test environment has one).
    if let Some(python) = std::env::var_os("VELO_MLFLOW_PYTHON") {
        let script = "import sys; from mlflow import MlflowClient; c = MlflowClient(sys.argv[1], sys.argv[1]); \
            e = c.get_experiment_by_name('bikes'); \
            runs = sorted((r.info.run_name, r.info.status) for r in c.search_runs([e.experiment_id])); \
            plots = sorted(f.path for r in c.search_runs([e.experiment_id]) for f in c.list_artifacts(r.info.run_id, 'plots')); \
            print(runs, c.get_model_version_by_alias('bikes', 'Champion').version, plots)";
        assert_eq!(
            crate::mlflow_on_store(&python, script, &dir.path().join("mlruns")),
            "[('Evaluations', 'FINISHED'), ('Explanations', 'FINISHED'), ('Training', 'FINISHED'), ('Tuning', 'FINISHED'), ('candidate-0', 'FINISHED'), ('candidate-1', 'FINISHED'), ('candidate-2', 'FINISHED')] 1 \
             ['plots/contributions.png', 'plots/cv_results.png', 'plots/predicted_vs_actual.png', 'plots/predicted_vs_actual.png', 'plots/residuals.png', 'plots/residuals.png']"
        );
    }
    // A second run reuses the data and registers version 2.
    let again = output(
        velo()
            .current_dir(dir.path())
            .arg("project")
            .env_remove("MLFLOW_TRACKING_URI"),
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("using the dataset in data"),
        "{}",
        again.stdout
    );
    assert_eq!(
        stores
            .registry
            .get_model_version_by_alias("bikes", "Champion")
            .unwrap()
            .unwrap()
            .version,
        "2"
    );
}
