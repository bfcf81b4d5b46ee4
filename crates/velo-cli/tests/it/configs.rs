//! Loading, validating and explaining configurations from the command line.

use std::path::Path;

use crate::{Output, output, root, velo};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writes the config");
    path.display().to_string()
}

fn assert_usage_error(result: &Output, needles: &[&str]) {
    assert_eq!(
        result.code, 2,
        "stdout: {}\nstderr: {}",
        result.stdout, result.stderr
    );
    for needle in needles {
        assert!(
            result.stderr.contains(needle),
            "`{needle}` missing from:\n{}",
            result.stderr
        );
    }
}

#[test]
fn every_shipped_job_config_validates() {
    let mut kinds = std::collections::BTreeSet::new();
    // Top-level job configs, and those of `configs/feedback/`.
    let mut names = Vec::new();
    for dir in ["", "feedback/"] {
        for entry in std::fs::read_dir(root().join("configs").join(dir)).expect("configs/ exists") {
            let path = entry.expect("entry").path();
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if path.extension().is_some_and(|e| e == "yaml") && file != "data.yaml" {
                names.push(format!("{dir}{file}"));
            }
        }
    }
    for name in names {
        let result = output(velo().current_dir(crate::project()).args([
            "run",
            "--dry-run",
            &format!("configs/{name}"),
        ]));
        assert_eq!(result.code, 0, "{name}: {}", result.stderr);
        let kind = result
            .stdout
            .split_once(" is valid")
            .map(|(kind, _)| kind.trim().to_owned())
            .unwrap_or_else(|| panic!("{name}: {}", result.stdout));
        kinds.insert(kind);
    }
    let registered: std::collections::BTreeSet<String> = velo_jobs::JobConfig::KINDS
        .iter()
        .map(|kind| (*kind).to_owned())
        .collect();
    assert_eq!(
        kinds, registered,
        "configs/ ships one config per registered job"
    );
    for parity in ["configs/parity/tuning.yaml", "configs/parity/training.yaml"] {
        let result =
            output(
                velo()
                    .current_dir(crate::project())
                    .args(["run", "--dry-run", parity]),
            );
        assert_eq!(result.code, 0, "{parity}: {}", result.stderr);
    }
}

#[test]
fn a_dry_run_says_what_the_job_would_do() {
    let result = output(velo().current_dir(crate::project()).args([
        "run",
        "--dry-run",
        "configs/training.yaml",
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stdout.contains("TrainingJob is valid"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("fit RandomForestModel"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("data/inputs_train.parquet"),
        "{}",
        result.stdout
    );
}

#[test]
fn malformed_yaml_names_the_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "broken.yaml",
        "job:\n  KIND: TrainingJob\n  inputs: [unclosed\n",
    );
    let result = output(velo().args(["run", &file]));
    assert_usage_error(&result, &["broken.yaml", "line"]);
}

#[test]
fn unknown_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "unknown.yaml",
        "job:\n  KIND: PromotionJob\n  alais: Champion\n", // spellchecker:disable-line
    );
    let result = output(velo().args(["run", &file]));
    assert_usage_error(&result, &["alais", "unknown.yaml"]); // spellchecker:disable-line
}

#[test]
fn wrong_type_names_the_key_the_expected_type_and_the_source() {
    let result = output(velo().args([
        "run",
        "configs/training.yaml",
        "-e",
        "job: {model: {max_depth: deep}}",
    ]));
    assert_usage_error(&result, &["max_depth", "--extras #1", "deep"]);

    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "wrong.yaml",
        "job:\n  KIND: PromotionJob\n  version: latest\n",
    );
    let result = output(velo().args(["run", &file]));
    assert_usage_error(&result, &["version", "wrong.yaml", "latest"]);
}

#[test]
fn missing_field_and_unknown_kind_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "missing.yaml", "job:\n  KIND: InferenceJob\n");
    let result = output(velo().args(["run", &file]));
    assert_usage_error(&result, &["missing field `inputs`", "job"]);

    let file = write(dir.path(), "kind.yaml", "job:\n  KIND: TrainJob\n");
    let result = output(velo().args(["run", &file]));
    assert_usage_error(&result, &["TrainJob", "TrainingJob"]);
}

#[test]
fn missing_config_and_schema_files_are_named() {
    let result = output(velo().args(["run", "configs/absent.yaml"]));
    assert_usage_error(&result, &["configs/absent.yaml"]);

    let result = output(velo().args([
        "run",
        "configs/inference.yaml",
        "-e",
        "job: {schemas: {inputs: configs/schemas/absent.yaml}}",
    ]));
    assert_usage_error(&result, &["configs/schemas/absent.yaml"]);
}

#[test]
fn config_show_names_the_source_of_every_value() {
    let result = output(
        velo()
            .args([
                "config",
                "show",
                "configs/training.yaml",
                "-e",
                "job: {model: {max_depth: 7}}",
            ])
            .env("VELO_JOB__MODEL__MIN_SAMPLES_LEAF", "3"),
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    let line = |key: &str| shown_line(&result, key);
    assert!(line("job.model.max_depth").contains("= 7  # --extras #1"));
    assert!(line("job.model.min_samples_leaf").contains("= 3  # environment"));
    assert!(line("job.inputs.path").contains("# configs/training.yaml"));
    assert!(line("job.model.bootstrap").contains("# default"));
    // Array elements are attributed to the source of their array.
    assert!(line("job.metrics.0.name").contains("# configs/training.yaml"));
}

/// The line `velo config show` printed for `key`.
fn shown_line(result: &Output, key: &str) -> String {
    result
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{}", result.stdout))
        .to_owned()
}

#[test]
fn config_show_names_the_mlflow_variable_a_value_came_from() {
    let result = output(
        velo()
            .args(["config", "show", "configs/training.yaml"])
            .env("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
            .env("MLFLOW_EXPERIMENT_NAME", "from-env"),
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    let line = |key: &str| shown_line(&result, key);
    for key in [
        "job.services.mlflow.tracking_uri",
        "job.services.mlflow.registry_uri",
    ] {
        assert!(
            line(key).ends_with(
                "= \"http://127.0.0.1:5999\"  # environment variable MLFLOW_TRACKING_URI"
            ),
            "{}",
            line(key)
        );
    }
    assert!(
        line("job.services.mlflow.experiment_name")
            .ends_with("# environment variable MLFLOW_EXPERIMENT_NAME")
    );
}

#[test]
fn profiles_come_from_the_flag_or_the_environment() {
    let n_estimators = |result: &Output| {
        assert_eq!(result.code, 0, "{}", result.stderr);
        result
            .stdout
            .lines()
            .find(|line| line.starts_with("job.model.n_estimators "))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let default = output(velo().args(["config", "show", "configs/training.yaml"]));
    assert!(n_estimators(&default).contains("= 200"));
    let flag = output(velo().args([
        "config",
        "show",
        "configs/training.yaml",
        "--profile",
        "dev",
    ]));
    assert!(n_estimators(&flag).contains("= 20 "));
    let env = output(
        velo()
            .args(["config", "show", "configs/training.yaml"])
            .env("VELO_PROFILE", "dev"),
    );
    assert!(n_estimators(&env).contains("= 20 "));
}

#[test]
fn an_unknown_profile_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("mlruns");
    let extras = format!(
        "job: {{services: {{mlflow: {{tracking_uri: '{0}', registry_uri: '{0}'}}}}}}",
        store.display()
    );
    let by_flag = output(velo().args([
        "run",
        "configs/promotion.yaml",
        "-e",
        &extras,
        "--profile",
        "nope",
    ]));
    let by_env = output(
        velo()
            .args(["run", "configs/training.yaml", "-e", &extras])
            .env("VELO_PROFILE", "nope"),
    );
    let shown = output(velo().args([
        "config",
        "show",
        "configs/training.yaml",
        "--profile",
        "nope",
    ]));
    for result in [&by_flag, &by_env, &shown] {
        assert_eq!(result.code, 2, "{}", result.stderr);
        assert!(
            result
                .stderr
                .contains("profile `nope` is defined by no configuration file"),
            "{}",
            result.stderr
        );
    }
    assert!(
        by_env.stderr.contains("(defined: dev, prod)"),
        "{}",
        by_env.stderr
    );
    assert!(
        by_flag.stderr.contains("the files define no profile"),
        "{}",
        by_flag.stderr
    );
    assert!(!store.exists(), "nothing was written");
}

#[test]
fn a_duplicate_key_names_both_lines_and_moves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("promotion.yaml");
    std::fs::write(
        &config,
        "job:\n  KIND: PromotionJob\n  alias: Champion\n  alias: Other\n",
    )
    .expect("write");
    let result = output(velo().args(["run", &config.display().to_string()]));
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("duplicate key `alias` at lines 3 and 4"),
        "{}",
        result.stderr
    );
}

#[test]
fn the_schema_describes_every_job() {
    let result = output(velo().arg("--schema"));
    assert_eq!(result.code, 0, "{}", result.stderr);
    let schema: serde_json::Value = serde_json::from_str(&result.stdout).expect("JSON");
    let text = schema.to_string();
    for kind in [
        "TuningJob",
        "TrainingJob",
        "PromotionJob",
        "InferenceJob",
        "EvaluationsJob",
        "ExplanationsJob",
    ] {
        assert!(text.contains(kind), "{kind} missing from the schema");
    }
}

#[test]
fn bad_usage_exits_with_two() {
    assert_eq!(output(velo().args(["run"])).code, 2);
    assert_eq!(output(velo().args(["frobnicate"])).code, 2);
}

#[test]
fn the_logger_service_sets_level_format_and_sink() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("logs").join("velo.jsonl");
    let extras = format!(
        "job: {{services: {{logger: {{format: json, sink: '{}'}}}}}}",
        log.display()
    );
    let result = output(velo().current_dir(crate::project()).args([
        "run",
        "configs/training.yaml",
        "--dry-run",
        "-e",
        &extras,
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    let text = std::fs::read_to_string(&log).expect("the log file is written");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("a JSON line");
    assert_eq!(line["fields"]["message"], "configuration loaded");
    assert_eq!(line["fields"]["kind"], "TrainingJob");
    assert_eq!(line["level"], "INFO");

    // A level that says nothing is refused, naming the key.
    let result = output(velo().args([
        "run",
        "configs/training.yaml",
        "--dry-run",
        "-e",
        "job: {services: {logger: {level: 'loud[['}}}",
    ]));
    assert_usage_error(&result, &["services.logger.level", "loud[["]);

    // The warn level hides the info line.
    let quiet = dir.path().join("quiet.log");
    let extras = format!(
        "job: {{services: {{logger: {{level: warn, sink: '{}'}}}}}}",
        quiet.display()
    );
    let result = output(velo().current_dir(crate::project()).args([
        "run",
        "configs/training.yaml",
        "--dry-run",
        "-e",
        &extras,
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(std::fs::read_to_string(&quiet).unwrap_or_default(), "");
}

#[test]
fn a_dry_run_names_missing_inputs_and_unknown_models_with_what_exists() {
    // An input file that does not exist: exit 2, the key and the path named.
    let result = output(velo().current_dir(crate::project()).args([
        "run",
        "--dry-run",
        "configs/inference.yaml",
        "-e",
        "job: {inputs: {path: data/nope.parquet}}",
    ]));
    assert_usage_error(
        &result,
        &["job.inputs.path = data/nope.parquet: no such file"],
    );

    // A store holding `bikes` version 1 as Champion: a misspelt alias lists what exists.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("mlruns");
    let in_store = |args: &[&str]| {
        output(
            velo()
                .current_dir(crate::project())
                .env("MLFLOW_TRACKING_URI", &store)
                .env("MLFLOW_REGISTRY_URI", &store)
                .args(args),
        )
    };
    let train = in_store(&["run", "configs/training.yaml", "--profile", "dev"]);
    assert_eq!(train.code, 0, "{}", train.stderr);
    let promote = in_store(&["run", "configs/promotion.yaml"]);
    assert_eq!(promote.code, 0, "{}", promote.stderr);
    let result = in_store(&[
        "run",
        "--dry-run",
        "configs/inference.yaml",
        "-e",
        "job: {alias_or_version: Champoin}",
    ]);
    assert_usage_error(
        &result,
        &[
            "models:/bikes@Champoin",
            "`bikes` has aliases Champion (version 1) and versions 1",
        ],
    );
    let result = in_store(&[
        "run",
        "--dry-run",
        "configs/inference.yaml",
        "-e",
        "job: {services: {mlflow: {registry_name: bike}}}",
    ]);
    assert_usage_error(
        &result,
        &["no model `bike`: the registered models are bikes"],
    );
    assert!(
        !crate::project().join("mlruns").exists(),
        "the shared project keeps no store"
    );

    // A typo in a key gets the nearest valid one.
    let result = output(velo().current_dir(crate::project()).args([
        "run",
        "--dry-run",
        "configs/training.yaml",
        "-e",
        "job: {model: {n_estimator: 5}}",
    ]));
    assert_usage_error(&result, &["did you mean `n_estimators`?"]);
}

#[test]
fn a_kafka_batch_of_zero_records_is_refused_by_a_dry_run() {
    let result = output(velo().args([
        "run",
        "--dry-run",
        "configs/kafka_inference.yaml",
        "-e",
        "job: {max_batch: 0}",
    ]));
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(
        result.stderr.contains("key `job.max_batch`") && result.stderr.contains("--extras #1"),
        "{}",
        result.stderr
    );
}

#[test]
fn serving_a_missing_store_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("does/not/exist");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("create");
    for (registry, code) in [(&missing, 2), (&empty, 1)] {
        let result = output(velo().args([
            "serve",
            "-m",
            "models:/bikes@Champion",
            "-p",
            "0",
            "--registry-uri",
            &registry.display().to_string(),
        ]));
        assert_eq!(result.code, code, "{}", result.stderr);
        assert!(
            result.stderr.contains(&registry.display().to_string()),
            "{}",
            result.stderr
        );
    }
    assert!(!missing.exists(), "no store was created");
    assert_eq!(
        std::fs::read_dir(&empty).expect("read").count(),
        0,
        "nothing was added to an existing directory"
    );
}
