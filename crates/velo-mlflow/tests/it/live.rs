//! Every call of the client against a live MLflow server started for the test.

use velo_mlflow::{
    BlockingClient, Client, ClientBuilder, Dataset, DatasetInput, Metric, NewRun, RunSearch,
    RunStatus, Tag, VersionSearch, limits, now_ms, test_server::TestServer,
};

fn client(server: &TestServer) -> BlockingClient {
    BlockingClient::new(Client::new(server.uri()).expect("a valid uri")).expect("a runtime")
}

#[test]
fn tracking_artifacts_and_registry_round_trip_through_a_live_server() {
    let Some(server) = TestServer::start_or_skip("velo-mlflow live") else {
        return;
    };
    let mlflow = client(&server);
    mlflow.run(async |client| {
        // Experiments: created once, found by name, a race-safe get-or-create.
        assert!(
            client
                .get_experiment_by_name("bikes")
                .await
                .unwrap()
                .is_none()
        );
        let experiment = client.get_or_create_experiment("bikes").await.unwrap();
        assert_eq!(
            client.get_or_create_experiment("bikes").await.unwrap(),
            experiment
        );
        let again = client.create_experiment("bikes", &[]).await.unwrap_err();
        assert!(again.is_already_exists(), "{again}");
        assert_eq!(
            client.get_experiment(&experiment).await.unwrap().name,
            "bikes"
        );

        // Runs: create with tags, log past every batch limit, read back.
        let start = now_ms();
        let run = client
            .create_run(
                &experiment,
                NewRun {
                    run_name: Some("train".into()),
                    start_time: Some(start),
                    user_id: Some("ann".into()),
                    tags: vec![Tag::new("mlflow.source.type", "LOCAL")],
                },
            )
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.start_time, start);
        assert!(
            run.artifact_uri.starts_with("mlflow-artifacts:/"),
            "{}",
            run.artifact_uri
        );
        let metrics: Vec<Metric> = (0..2_500)
            .map(|step| Metric::new("loss", 1.0 / (step as f64 + 1.0), start + step, step))
            .chain([
                Metric::new("nan_metric", f64::NAN, start, 0),
                Metric::new("inf_metric", f64::INFINITY, start, 0),
            ])
            .collect();
        let params: Vec<Tag> = (0..250)
            .map(|i| Tag::new(format!("p{i:03}"), "v".repeat(i % 7 + 1)))
            .collect();
        let tags: Vec<Tag> = (0..130)
            .map(|i| Tag::new(format!("t{i:03}"), format!("{i}")))
            .collect();
        assert!(
            metrics.len() > limits::METRICS
                && params.len() > limits::PARAMS
                && tags.len() > limits::TAGS
        );
        client
            .log_batch(&run.run_id, &metrics, &params, &tags)
            .await
            .unwrap();
        // Sending the same batch again is harmless (safe to retry).
        client
            .log_batch(&run.run_id, &metrics[..10], &params[..10], &tags[..10])
            .await
            .unwrap();
        let duplicate = client
            .log_batch(
                &run.run_id,
                &[],
                &[Tag::new("a", "1"), Tag::new("a", "2")],
                &[],
            )
            .await
            .unwrap_err();
        assert!(duplicate.to_string().contains("twice"), "{duplicate}");

        let dataset = DatasetInput {
            tags: vec![Tag::new(velo_mlflow::CONTEXT_TAG, "training")],
            dataset: Dataset {
                name: "inputs_train".into(),
                digest: "0123456789abcdef".into(),
                source_type: "local".into(),
                source: r#"{"uri": "/data/inputs_train.parquet"}"#.into(),
                schema: Some(
                    r#"{"mlflow_colspec": [{"type": "long", "name": "hr", "required": true}]}"#
                        .into(),
                ),
                profile: Some(r#"{"num_rows": 10, "num_elements": 10}"#.into()),
            },
        };
        client
            .log_inputs(&run.run_id, std::slice::from_ref(&dataset))
            .await
            .unwrap();
        client.set_tag(&run.run_id, "note", "hello").await.unwrap();
        client.delete_tag(&run.run_id, "t000").await.unwrap();

        let read = client.get_run(&run.run_id).await.unwrap();
        assert_eq!(read.info.run_name, "train");
        assert_eq!(read.data.params.len(), 250);
        assert_eq!(read.data.param("p006"), Some("vvvvvvv"));
        assert_eq!(read.data.tag("mlflow.runName"), Some("train"));
        assert_eq!(read.data.tag("mlflow.user"), Some("ann"));
        assert_eq!(read.data.tag("note"), Some("hello"));
        assert_eq!(read.data.tag("t000"), None);
        assert_eq!(read.data.tag("t129"), Some("129"));
        assert_eq!(read.data.metric("loss"), Some(1.0 / 2_500.0));
        assert!(read.data.metric("nan_metric").unwrap().is_nan());
        assert!(read.data.metric("inf_metric").unwrap() > 1e300);
        assert_eq!(read.inputs.dataset_inputs.len(), 1);
        assert_eq!(read.inputs.dataset_inputs[0].dataset, dataset.dataset);
        assert_eq!(read.inputs.dataset_inputs[0].context(), Some("training"));
        let history = client
            .get_metric_history(&run.run_id, "loss")
            .await
            .unwrap();
        assert_eq!(
            history.len(),
            2_500,
            "one entry per step, the repeated batch deduplicated"
        );

        // Artifacts through the proxy.
        client
            .upload_artifact(
                &run.artifact_uri,
                "model/MLmodel",
                b"flavors: {}\n".to_vec(),
            )
            .await
            .unwrap();
        client
            .upload_artifact(&run.artifact_uri, "model/data/a b%.bin", vec![0, 1, 2, 255])
            .await
            .unwrap();
        let local = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(local.path().join("plots/deep")).unwrap();
        std::fs::write(local.path().join("plots/deep/residuals.png"), b"png").unwrap();
        client
            .upload_dir(&run.artifact_uri, "evaluation", local.path())
            .await
            .unwrap();
        let root = client.list_artifacts(&run.artifact_uri, "").await.unwrap();
        let mut names: Vec<_> = root
            .iter()
            .map(|file| (file.path.as_str(), file.is_dir))
            .collect();
        names.sort_unstable();
        assert_eq!(names, [("evaluation", true), ("model", true)]);
        let model = client
            .list_artifacts(&run.artifact_uri, "model")
            .await
            .unwrap();
        assert!(
            model
                .iter()
                .any(|file| file.path == "model/MLmodel" && file.file_size == Some(12)),
            "{model:?}"
        );
        assert_eq!(
            client
                .download_artifact(&run.artifact_uri, "model/data/a b%.bin")
                .await
                .unwrap(),
            [0, 1, 2, 255]
        );
        let into = tempfile::tempdir().unwrap();
        let written = client
            .download_dir(&run.artifact_uri, "model", into.path())
            .await
            .unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(
            std::fs::read(into.path().join("data/a b%.bin")).unwrap(),
            [0, 1, 2, 255]
        );
        assert!(
            server
                .artifacts_dir()
                .join(&experiment)
                .join(&run.run_id)
                .join("artifacts/evaluation/plots/deep/residuals.png")
                .exists()
        );
        let missing = client
            .download_artifact(&run.artifact_uri, "nope.txt")
            .await
            .unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(
            client
                .upload_artifact(&run.artifact_uri, "../escape", vec![1])
                .await
                .is_err()
        );

        // The model shows on its run.
        let mlmodel = serde_json::json!({
            "artifact_path": "model", "run_id": run.run_id,
            "utc_time_created": "2026-11-30 12:00:00.000000",
            "flavors": {"velo": {"model_file": "model.velo"}},
        });
        client.log_model(&run.run_id, &mlmodel).await.unwrap();
        let tagged = client.get_run(&run.run_id).await.unwrap();
        assert!(
            tagged
                .data
                .tag("mlflow.log-model.history")
                .unwrap()
                .contains("velo")
        );

        let ended = client
            .update_run(&run.run_id, RunStatus::Finished, None)
            .await
            .unwrap();
        assert_eq!(ended.status, RunStatus::Finished);
        assert!(ended.end_time.unwrap() >= start);

        // Search.
        let failed = client
            .create_run(&experiment, NewRun::default())
            .await
            .unwrap();
        client
            .update_run(&failed.run_id, RunStatus::Failed, None)
            .await
            .unwrap();
        let page = client
            .search_runs(
                std::slice::from_ref(&experiment),
                &RunSearch {
                    filter: Some("attributes.status = 'FINISHED' and params.p001 = 'vv'".into()),
                    ..RunSearch::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.runs.len(), 1);
        assert_eq!(page.runs[0].info.run_id, run.run_id);
        let all = client
            .search_runs(std::slice::from_ref(&experiment), &RunSearch::default())
            .await
            .unwrap();
        assert_eq!(all.runs.len(), 2);

        // Registry: versions numbered in order, aliases set, moved, read and removed.
        let source = format!("{}/model", run.artifact_uri);
        assert!(
            client
                .get_registered_model("bikes-model")
                .await
                .unwrap()
                .is_none()
        );
        client
            .get_or_create_registered_model("bikes-model")
            .await
            .unwrap();
        client
            .get_or_create_registered_model("bikes-model")
            .await
            .unwrap();
        let mut versions = Vec::new();
        for _ in 0..3 {
            let version = client
                .create_model_version(
                    "bikes-model",
                    &source,
                    Some(&run.run_id),
                    &[Tag::new("stage", "test")],
                    None,
                )
                .await
                .unwrap();
            versions.push(version.version);
        }
        assert_eq!(versions, ["1", "2", "3"]);
        let latest = client
            .latest_model_version("bikes-model")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (latest.version.as_str(), latest.run_id.as_str()),
            ("3", run.run_id.as_str())
        );
        assert_eq!(latest.source, source);
        client
            .set_alias("bikes-model", "Champion", "2")
            .await
            .unwrap();
        let champion = client
            .get_model_version_by_alias("bikes-model", "Champion")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(champion.version, "2");
        assert_eq!(champion.aliases, ["Champion"]);
        client
            .set_alias("bikes-model", "Champion", "3")
            .await
            .unwrap();
        assert_eq!(
            client
                .get_model_version_by_alias("bikes-model", "Champion")
                .await
                .unwrap()
                .unwrap()
                .version,
            "3"
        );
        assert!(
            client
                .get_model_version_by_alias("bikes-model", "Challenger")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            client
                .set_alias("bikes-model", "latest", "1")
                .await
                .is_err()
        );
        client
            .set_model_version_tag("bikes-model", "3", "validated", "true")
            .await
            .unwrap();
        client
            .set_registered_model_tag("bikes-model", "team", "ml")
            .await
            .unwrap();
        let three = client
            .get_model_version("bikes-model", "3")
            .await
            .unwrap()
            .unwrap();
        assert!(three.tags.contains(&Tag::new("validated", "true")));
        client
            .delete_model_version_tag("bikes-model", "3", "validated")
            .await
            .unwrap();
        assert!(
            client
                .get_model_version("bikes-model", "9")
                .await
                .unwrap()
                .is_none()
        );
        let page = client
            .search_model_versions(&VersionSearch {
                filter: Some(format!("run_id = '{}'", run.run_id)),
                order_by: vec!["version_number ASC".into()],
                ..VersionSearch::default()
            })
            .await
            .unwrap();
        let numbers: Vec<_> = page
            .model_versions
            .iter()
            .map(|version| version.version.as_str())
            .collect();
        assert_eq!(numbers, ["1", "2", "3"]);
        client
            .delete_alias("bikes-model", "Champion")
            .await
            .unwrap();
        assert!(
            client
                .get_model_version_by_alias("bikes-model", "Champion")
                .await
                .unwrap()
                .is_none()
        );
        let model = client
            .get_registered_model("bikes-model")
            .await
            .unwrap()
            .unwrap();
        assert!(model.aliases.is_empty() && model.tags.contains(&Tag::new("team", "ml")));
        let listed = client
            .search_registered_models(Some("name = 'bikes-model'"), None, None)
            .await
            .unwrap();
        assert_eq!(listed.registered_models.len(), 1);

        // Typed errors carry MLflow's code.
        let error = client
            .get_run("0123456789abcdef0123456789abcdef")
            .await
            .unwrap_err();
        assert_eq!(
            error.error_code(),
            Some("RESOURCE_DOES_NOT_EXIST"),
            "{error}"
        );
    });
}

#[test]
fn unreachable_servers_fail_after_bounded_retries() {
    // A port nobody listens on: the safe call is retried, then reported with the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = ClientBuilder::new(format!("http://127.0.0.1:{port}"))
        .max_retries(2)
        .backoff(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(5),
        )
        .build()
        .unwrap();
    let mlflow = BlockingClient::new(client).unwrap();
    let error = mlflow
        .run(async |client| client.get_run("x").await)
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}
