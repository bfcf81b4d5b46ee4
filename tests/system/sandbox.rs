//! `velo run --sandbox`: a training, a promotion and an inference that read production but
//! leave its store byte for byte as it was, a sandbox that says what it holds, one of its
//! versions promoted into production deliberately, and the sandbox dropped.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};
use velo_io::registries;

use crate::{
    jobs::{small_project, synthetic_data},
    output, velo,
};

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    files
}

/// `velo ARGS` in the project `dir`, on its own store.
fn in_project(dir: &Path, args: &[&str]) -> crate::Output {
    output(
        velo()
            .current_dir(dir)
            .args(args)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI"),
    )
}

#[test]
fn a_sandboxed_lifecycle_leaves_production_untouched_until_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    small_project(project);
    synthetic_data(&project.join("data"));
    let small = "job: {splitter: {test_size: 240}}";
    let trained = in_project(project, &["run", "configs/training.yaml", "-e", small]);
    assert_eq!(trained.code, 0, "{}\n{}", trained.stdout, trained.stderr);
    let promoted = in_project(project, &["run", "configs/promotion.yaml"]);
    assert_eq!(promoted.code, 0, "{}\n{}", promoted.stdout, promoted.stderr);
    let store = project.join("mlruns");
    let before = tree(&store);

    // Training, promotion and inference in a sandbox.
    let trained = in_project(
        project,
        &[
            "run",
            "configs/training.yaml",
            "--sandbox",
            "deeper",
            "-e",
            small,
            "-e",
            "job: {model: {max_depth: 12}}",
        ],
    );
    assert_eq!(trained.code, 0, "{}\n{}", trained.stdout, trained.stderr);
    assert!(
        trained.stdout.contains("sandbox deeper"),
        "{}",
        trained.stdout
    );
    let promoted = in_project(
        project,
        &["run", "configs/promotion.yaml", "--sandbox", "deeper"],
    );
    assert_eq!(promoted.code, 0, "{}", promoted.stderr);
    assert!(
        promoted.stdout.contains("bikes@Champion -> version 2"),
        "{}",
        promoted.stdout
    );
    let inferred = in_project(
        project,
        &["run", "configs/inference.yaml", "--sandbox", "deeper"],
    );
    assert_eq!(inferred.code, 0, "{}", inferred.stderr);
    let sandbox = project.join(".velo/sandboxes/deeper");
    assert!(
        sandbox
            .join("outputs/outputs/predictions_test.parquet")
            .is_file(),
        "the inference's output goes to the sandbox"
    );
    assert!(!project.join("outputs/predictions_test.parquet").exists());

    // Production: the same bytes, the same versions and aliases.
    assert_eq!(tree(&store), before, "the production store changed");
    let production = registries::open_existing(&store.display().to_string()).unwrap();
    assert_eq!(
        production
            .registry
            .list_model_versions("bikes")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        production
            .registry
            .get_model_version_by_alias("bikes", "Champion")
            .unwrap()
            .unwrap()
            .version,
        "1"
    );

    // The sandbox says what it holds against production.
    let diff = in_project(project, &["sandbox", "diff", "deeper", "--json"]);
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    let summary: Value = serde_json::from_str(&diff.stdout).unwrap();
    assert_eq!(summary["versions"].as_array().unwrap().len(), 1);
    assert_eq!(summary["versions"][0][1], "2");
    assert_eq!(summary["aliases"], json!([["bikes", "Champion", "1", "2"]]));
    assert!(summary["runs"].as_u64().unwrap() >= 1, "{summary}");
    let listed = in_project(project, &["sandbox", "list"]);
    assert!(listed.stdout.starts_with("deeper"), "{}", listed.stdout);

    // Promoting the sandbox's version writes production deliberately: a new version, tagged
    // with where it came from, that loads and serves.
    let copied = in_project(
        project,
        &[
            "sandbox",
            "promote",
            "deeper",
            "--version",
            "2",
            "--alias",
            "Challenger",
        ],
    );
    assert_eq!(copied.code, 0, "{}\n{}", copied.stdout, copied.stderr);
    let production = registries::open_existing(&store.display().to_string()).unwrap();
    let challenger = production
        .registry
        .get_model_version_by_alias("bikes", "Challenger")
        .unwrap()
        .unwrap();
    assert_eq!(challenger.version, "2");
    let tag = |key: &str| {
        challenger
            .tags
            .iter()
            .find(|tag| tag.key == key)
            .map(|tag| tag.value.clone())
    };
    assert_eq!(tag("velo.sandbox.name").as_deref(), Some("deeper"));
    assert_eq!(tag("velo.sandbox.version").as_deref(), Some("2"));
    let scored = in_project(
        project,
        &[
            "run",
            "configs/inference.yaml",
            "-e",
            "job: {alias_or_version: Challenger}",
        ],
    );
    assert_eq!(scored.code, 0, "{}", scored.stderr);
    assert!(project.join("outputs/predictions_test.parquet").is_file());

    // Dropping the sandbox removes it.
    let dropped = in_project(project, &["sandbox", "drop", "deeper"]);
    assert_eq!(dropped.code, 0, "{}", dropped.stderr);
    assert!(!sandbox.exists());
    let unknown = in_project(project, &["sandbox", "diff", "deeper"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stdout);
    assert!(unknown.stderr.contains("no sandbox"), "{}", unknown.stderr);
}

#[test]
fn a_sandbox_over_a_live_mlflow_server_writes_nothing_to_it() {
    let Some(server) =
        velo_mlflow::test_server::TestServer::start_or_skip("a sandbox over a live server")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    small_project(project);
    synthetic_data(&project.join("data"));
    let uri = server.uri();
    let on_server =
        format!("job: {{services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}'}}}}}}");
    let trained = in_project(
        project,
        &[
            "run",
            "configs/training.yaml",
            "-e",
            "job: {splitter: {test_size: 240}}",
            "-e",
            &on_server,
        ],
    );
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    assert_eq!(
        in_project(
            project,
            &["run", "configs/promotion.yaml", "-e", &on_server]
        )
        .code,
        0
    );
    let stores = registries::open(uri).unwrap();
    let listing = || {
        let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
        let mut runs: Vec<(String, String)> = stores
            .tracking
            .list_runs(&experiment)
            .unwrap()
            .into_iter()
            .map(|run| (run.info.run_id, format!("{:?}", run.info.status)))
            .collect();
        runs.sort();
        let versions: Vec<String> = stores
            .registry
            .list_model_versions("bikes")
            .unwrap()
            .into_iter()
            .map(|version| version.version)
            .collect();
        let model = stores
            .registry
            .get_registered_model("bikes")
            .unwrap()
            .unwrap();
        let mut tags: Vec<(String, String)> = model
            .tags
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect();
        tags.sort();
        (runs, versions, format!("{:?}", model.aliases), tags)
    };
    let before = listing();
    let trained = in_project(
        project,
        &[
            "run",
            "configs/training.yaml",
            "--sandbox",
            "remote",
            "-e",
            "job: {splitter: {test_size: 240}}",
            "-e",
            &on_server,
        ],
    );
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    let promoted = in_project(
        project,
        &[
            "run",
            "configs/promotion.yaml",
            "--sandbox",
            "remote",
            "-e",
            &on_server,
        ],
    );
    assert_eq!(promoted.code, 0, "{}", promoted.stderr);
    assert_eq!(
        listing(),
        before,
        "the server's runs, versions, aliases or tags changed"
    );
    let summary = in_project(
        project,
        &["sandbox", "diff", "remote", "--json", "--store", uri],
    );
    assert_eq!(summary.code, 0, "{}", summary.stderr);
    let summary: Value = serde_json::from_str(&summary.stdout).unwrap();
    assert_eq!(summary["versions"][0][1], "2", "{summary}");
    assert_eq!(summary["aliases"], json!([["bikes", "Champion", "1", "2"]]));
}
