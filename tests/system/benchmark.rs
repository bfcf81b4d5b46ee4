//! The benchmark job through the binary: velo's models, baselines, the registered Champion and
//! a peer's results on the same folds, ranked, with one child run per entry.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, AsArray as _, Float64Array, Int64Array, StringArray},
    datatypes::{DataType, Field, Float64Type, Schema},
    record_batch::RecordBatch,
};
use velo_io::{
    datasets::{DatasetReader as _, ParquetReader, Writer},
    registries::{self, RunStatus},
};

use crate::jobs::{model_store, run_job};

/// A peer's results on 3 folds and the holdout (fold -1), with an RMSE about `rmse`.
fn peers(path: &std::path::Path, rmse: f64, with_r2: bool) {
    let mut fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("fold", DataType::Int64, false),
        Field::new("root_mean_squared_error", DataType::Float64, false),
        Field::new("mean_absolute_error", DataType::Float64, false),
        Field::new("fit_seconds", DataType::Float64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["sklearn_forest"; 4])),
        Arc::new(Int64Array::from(vec![0, 1, 2, -1])),
        Arc::new(Float64Array::from(vec![
            rmse,
            rmse + 1.0,
            rmse - 1.0,
            rmse / 2.0,
        ])),
        Arc::new(Float64Array::from(vec![rmse / 2.0; 4])),
        Arc::new(Float64Array::from(vec![0.5; 4])),
    ];
    if with_r2 {
        fields.push(Field::new("r2_score", DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(vec![0.5; 4])));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let writer: Writer =
        serde_json::from_value(serde_json::json!({"KIND": "ParquetWriter", "path": path})).unwrap();
    writer.write(&batch).unwrap();
}

#[test]
fn the_benchmark_ranks_models_baselines_the_champion_and_peers_with_child_runs() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    let data = dir.path().join("data");
    let peer_file = dir.path().join("peers.parquet");
    peers(&peer_file, 1.0, true);
    let table = dir.path().join("leaderboard.parquet");
    let markdown = dir.path().join("leaderboard.md");
    let job = |peers: &std::path::Path| {
        format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, holdout: {{inputs: {{path: '{}'}}, targets: {{path: '{}'}}}}, splitter: {{n_splits: 3, test_size: 200}}, models: {{forest: {{n_estimators: 6, max_depth: 6}}, boosting: {{max_iter: 20}}, network: {{epochs: 3}}}}, peers: {{KIND: ParquetReader, path: '{}'}}, outputs: {{table: {{path: '{}'}}, markdown: '{}', html: '{}'}}",
            data.join("inputs_train.parquet").display(),
            data.join("targets_train.parquet").display(),
            data.join("inputs_test.parquet").display(),
            data.join("targets_test.parquet").display(),
            peers.display(),
            table.display(),
            markdown.display(),
            dir.path().join("leaderboard.html").display(),
        )
    };
    let result = run_job("configs/benchmark.yaml", &uri, &job(&peer_file));
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    // Ranked by the holdout: the peer's made-up holdout RMSE of 0.5 puts it first; on the
    // folds, its made-up RMSE of about 1 beats the second entry with folds.
    assert!(
        result.stdout.contains("sklearn_forest leads on the holdout (root_mean_squared_error = 0.5000); on the folds, sklearn_forest beats "),
        "{}",
        result.stdout
    );
    let board = ParquetReader::new(&table).read().unwrap().data;
    let entries: Vec<String> = board
        .column_by_name("entry")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_owned())
        .collect();
    assert_eq!(
        entries.len(),
        8,
        "3 models, 3 baselines, the Champion, a peer: {entries:?}"
    );
    assert_eq!(entries[0], "sklearn_forest");
    for expected in [
        "forest",
        "boosting",
        "network",
        "mean",
        "last_value",
        "linear",
        "bikes-v1",
    ] {
        assert!(
            entries.iter().any(|e| e == expected),
            "{expected}: {entries:?}"
        );
    }
    // Ranked by the holdout RMSE, ascending.
    let rmse = board
        .column_by_name("root_mean_squared_error_holdout")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!(rmse.values().windows(2).all(|w| w[0] <= w[1]), "{rmse:?}");
    let text = std::fs::read_to_string(&markdown).unwrap();
    assert!(text.starts_with("| rank | entry | kind |"), "{text}");

    // One child run per entry under the parent, each with one step per fold.
    let stores = registries::open(&uri).unwrap();
    let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
    let runs = stores.tracking.list_runs(&experiment).unwrap();
    let parent = runs
        .iter()
        .find(|run| run.info.run_name == "Benchmark")
        .expect("the parent run");
    assert_eq!(parent.info.status, RunStatus::Finished);
    let children: Vec<_> = runs
        .iter()
        .filter(|run| run.data.tag("mlflow.parentRunId") == Some(parent.info.run_id.as_str()))
        .collect();
    assert_eq!(children.len(), 8);
    let forest = children
        .iter()
        .find(|run| run.info.run_name == "forest")
        .expect("the forest's child run");
    let folds = stores
        .tracking
        .metric_history(&forest.info.run_id, "fold_root_mean_squared_error")
        .unwrap();
    assert_eq!(folds.iter().map(|m| m.step).collect::<Vec<_>>(), [0, 1, 2]);

    // A peers table without a metric column is refused, naming the file and the column.
    let broken = dir.path().join("broken.parquet");
    peers(&broken, 1.0, false);
    let refused = run_job("configs/benchmark.yaml", &uri, &job(&broken));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("has no column `r2_score`"),
        "{}",
        refused.stderr
    );
}
