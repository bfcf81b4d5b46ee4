//! Crash points of a whole job: a training run through the binary is aborted at each of its
//! write steps in turn (velo-io's test-only `crash-points` feature, `VELO_CRASH_AFTER_WRITES`),
//! and after each the store reads back whole: every run readable, no half-written model
//! directory, versions consecutive with their model files complete; the next full run leaves
//! nothing behind in the staging area.

use std::path::Path;

use velo_io::registries::{FileStore, ModelRegistry as _, Tracking as _, mlmodel};

use crate::{
    jobs::{synthetic_data, training_snippet},
    velo,
};

/// Runs the small training job into `store`, aborted at write step `crash_after` if given;
/// returns the exit code (`None` for a signal).
fn train(store: &Path, data: &Path, crash_after: Option<u64>) -> Option<i32> {
    let uri = store.display().to_string();
    let snippet = format!(
        "job: {{{}, services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}'}}}}}}",
        training_snippet(data)
    );
    let mut command = velo();
    command.args(["run", "configs/training.yaml", "-e", &snippet]);
    if let Some(limit) = crash_after {
        command.env("VELO_CRASH_AFTER_WRITES", limit.to_string());
    }
    command.output().expect("velo runs").status.code()
}

/// Everything the store shows is whole.
fn check_whole(root: &Path, step: u64) {
    let store = FileStore::open(root).unwrap();
    let experiment = store.get_or_create_experiment("bikes").unwrap();
    for run in store.list_runs(&experiment).unwrap() {
        store.get_run(&run.info.run_id).unwrap();
        let files = store.list_artifacts(&run.info.run_id, "model").unwrap();
        // A whole model directory: MLmodel, the model file, the two examples, profile.json and
        // the loss estimator.
        assert!(
            files.is_empty() || files.len() == 6,
            "step {step}: partial model directory {files:?}"
        );
    }
    let versions = store.list_model_versions("bikes").unwrap_or_default();
    for (index, version) in versions.iter().enumerate() {
        assert_eq!(version.version, (index + 1).to_string(), "step {step}");
        let uri = format!("models:/bikes/{}", version.version)
            .parse()
            .unwrap();
        let model = mlmodel::load_model_bytes(&store, &uri)
            .unwrap_or_else(|error| panic!("step {step}: version {}: {error}", version.version));
        assert!(!model.bytes.is_empty(), "step {step}");
    }
}

#[test]
fn a_training_job_killed_at_any_write_step_leaves_the_store_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let store = dir.path().join("mlruns");
    let mut crashed = 0;
    for step in 1..=400 {
        match train(&store, &data, Some(step)) {
            // Past the last write step: the run completed.
            Some(0) => break,
            code => {
                assert!(
                    code.is_none() || code == Some(134),
                    "step {step}: exit {code:?}"
                );
                crashed += 1;
            }
        }
        check_whole(&store, step);
    }
    if crashed == 0 {
        eprintln!(
            "skipped: this velo binary was built without velo-io's crash-points feature (cargo xtask test enables it)"
        );
        return;
    }
    eprintln!("crash points: a training job aborted at each of its {crashed} write steps");
    // A full run after the crashes succeeds and leaves nothing staged behind.
    assert_eq!(train(&store, &data, None), Some(0));
    check_whole(&store, 0);
    let staging: Vec<_> = std::fs::read_dir(store.join(".velo-staging.trash"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
}
