//! The example program runs the lifecycle, a scenario suite, a leaderboard and a stress test
//! on its own dataset and leaves a promoted model, predictions and reports behind.

use std::process::Command;

use velo_io::registries;

#[test]
fn the_example_trains_promotes_predicts_and_evaluates_a_non_bike_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_energy-demand"))
        .arg(dir.path())
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let kinds: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split(':').next())
        .collect();
    assert_eq!(
        kinds,
        [
            "TrainingJob",
            "PromotionJob",
            "InferenceJob",
            "EvaluationsJob",
            "ScenariosJob",
            "BenchmarkJob",
            "StressJob"
        ]
    );
    // The scenario report, the leaderboard and the stress curves need nothing bike-specific.
    let report =
        std::fs::read_to_string(dir.path().join("outputs/scenarios.html")).expect("the report");
    assert!(report.contains("Scenario tests: energy version 1"));
    let board =
        std::fs::read_to_string(dir.path().join("outputs/leaderboard.md")).expect("the board");
    for entry in ["forest", "boosting", "linear", "energy-v1"] {
        assert!(board.contains(&format!(" {entry} |")), "{entry}: {board}");
    }

    // The Champion alias points at the version training registered.
    let store = dir.path().join("mlruns");
    let store = store.to_str().expect("utf-8 temp path");
    let stores = registries::open_pair(store, store).expect("the store opens");
    let champion = stores
        .registry
        .get_model_version_by_alias("energy", "Champion")
        .expect("the registry reads")
        .expect("Champion is set");
    assert_eq!(champion.version, "1");

    // One prediction per test hour, keyed by the input index.
    let predictions = std::fs::File::open(dir.path().join("outputs/predictions.parquet"))
        .expect("predictions written");
    let reader = parquet::file::reader::SerializedFileReader::new(predictions).expect("parquet");
    let rows = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .num_rows();
    assert_eq!(rows, 24 * 7 * 2);
}
