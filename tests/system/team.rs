//! The engines a team already runs: MLflow on PostgreSQL with artifacts proxied to an S3
//! bucket (SeaweedFS), all started for real on 127.0.0.1.

use velo_io::registries;
use velo_mlflow::test_server::{BUCKET, TestServer};

use crate::jobs::{lifecycle, run_job, synthetic_data, training_snippet};

/// Runs `script` with the venv's Python and the S3 server's environment; its stdout, trimmed.
fn python(server: &TestServer, script: &str) -> Option<String> {
    let python = std::env::var_os("VELO_PYTHON")?;
    let s3 = server.s3()?;
    let output = std::process::Command::new(python)
        .args(["-c", script, server.uri(), BUCKET])
        .envs(s3.env())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[test]
fn the_lifecycle_runs_on_mlflow_with_postgresql_and_s3_artifacts() {
    let Some(mut server) =
        TestServer::on_postgres_and_s3_or_skip("the lifecycle on PostgreSQL and S3")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    lifecycle(server.uri(), &data);

    // The model files are objects in the bucket, and MLflow's own client reads the Champion
    // back through the server's proxy.
    let listed = python(
        &server,
        "import os, sys, boto3\n\
         s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n\
         keys = [o['Key'] for p in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[2], Prefix='artifacts/') for o in p.get('Contents', [])]\n\
         print(sum(k.endswith('/MLmodel') for k in keys), len(keys))\n",
    );
    if let Some(listed) = listed {
        let counts: Vec<usize> = listed
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(
            counts[0] >= 2,
            "two registered models' MLmodel files: {listed}"
        );
        assert!(counts[1] > counts[0], "{listed}");
        let read = python(
            &server,
            "import os, sys, mlflow\n\
             mlflow.set_tracking_uri(sys.argv[1])\n\
             path = mlflow.artifacts.download_artifacts('models:/bikes@Champion')\n\
             print(' '.join(sorted(os.listdir(path))))\n",
        )
        .unwrap();
        assert!(read.contains("MLmodel"), "{read}");
    }

    // PostgreSQL restarted between two jobs: the registry lost nothing, and the next job
    // registers the next version.
    let stores = registries::open(server.uri()).unwrap();
    let before = stores.registry.list_model_versions("bikes").unwrap().len();
    server
        .postgres_mut()
        .unwrap()
        .restart()
        .unwrap_or_else(|error| panic!("{error}"));
    let trained = run_job(
        "configs/training.yaml",
        server.uri(),
        &training_snippet(&data),
    );
    assert_eq!(
        trained.code,
        0,
        "{}\n{}\n{}",
        trained.stdout,
        trained.stderr,
        server.log_tail(3000)
    );
    let after = stores.registry.list_model_versions("bikes").unwrap();
    assert_eq!(after.len(), before + 1);
    assert!(
        trained
            .stdout
            .contains(&format!("registered bikes version {}", before + 1)),
        "{}",
        trained.stdout
    );
}
