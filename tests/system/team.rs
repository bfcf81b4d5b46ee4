//! The engines a team already runs: MLflow on PostgreSQL with artifacts proxied to an S3
//! bucket (SeaweedFS), all started for real on 127.0.0.1.

use velo_io::datasets::{DatasetReader as _, ParquetReader};
use velo_io::registries;
use velo_mlflow::test_server::{ArtifactMode, BUCKET, TestServer};

use crate::jobs::{lifecycle, run_job, run_job_with, synthetic_data, training_snippet};

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
    let Some(mut server) = TestServer::on_postgres_and_s3_or_skip(
        "the lifecycle on PostgreSQL and S3",
        ArtifactMode::Proxied,
    ) else {
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

/// Runs `script` with the venv's Python, `args` after it and `env` set; its stdout. Fails the
/// test with the script's stderr when it fails.
fn python_with(script: &str, args: &[&std::ffi::OsStr], env: &[(&'static str, String)]) -> String {
    // Ends without the interpreter's finalization once the script got through: pyarrow's and
    // boto3's threads have aborted it there ("terminate called without an active exception")
    // after every line had run and printed.
    let script =
        format!("{script}\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n");
    let output = std::process::Command::new(std::env::var_os("VELO_PYTHON").unwrap())
        .args(["-c", &script])
        .args(args)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A TCP proxy on a free loopback port to `target`, which cuts every connection and refuses
/// new ones once more than `cut_after` bytes went from clients to the server: to a client, the
/// server stops in the middle of what it was sending. Its port.
fn cutting_proxy(target: u16, cut_after: usize) -> u16 {
    use std::{
        io::{Read as _, Write as _},
        net::{Shutdown, TcpListener, TcpStream},
        sync::{
            Arc, Mutex,
            atomic::{AtomicBool, AtomicUsize, Ordering},
        },
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            if cut.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            open.lock()
                .unwrap()
                .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
            // Client to server, counted; the cut closes every connection.
            let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (sent, cut_flag, open_all) =
                (Arc::clone(&sent), Arc::clone(&cut), Arc::clone(&open));
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 16 * 1024];
                while let Ok(read) = from.read(&mut buffer) {
                    if read == 0 || to.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                    if sent.fetch_add(read, Ordering::SeqCst) + read > cut_after
                        && !cut_flag.swap(true, Ordering::SeqCst)
                    {
                        for stream in open_all.lock().unwrap().iter() {
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
            let (mut from, mut to) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// The predictions of an inference output file.
fn predictions(path: &std::path::Path) -> Vec<f64> {
    let data = ParquetReader::new(path).read().unwrap().data;
    let column = arrow::compute::cast(
        data.column_by_name("prediction").unwrap(),
        &arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    column
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .values()
        .to_vec()
}

#[test]
fn velo_and_mlflows_client_share_artifacts_written_straight_to_s3() {
    let Some(mut server) = TestServer::on_postgres_and_s3_or_skip(
        "artifacts straight to S3 (--no-serve-artifacts)",
        ArtifactMode::Direct,
    ) else {
        return;
    };
    let env: Vec<(&'static str, String)> = server.s3().unwrap().env().to_vec();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let uri = server.uri();
    let trained = run_job_with("configs/training.yaml", uri, &training_snippet(&data), &env);
    assert_eq!(
        trained.code,
        0,
        "{}\n{}",
        trained.stderr,
        server.log_tail(2000)
    );
    assert!(
        trained.stdout.contains("registered bikes version 1"),
        "{}",
        trained.stdout
    );
    let promoted = run_job_with(
        "configs/promotion.yaml",
        uri,
        "thresholds: {r2_score: {threshold: -100.0, greater_is_better: true}}",
        &env,
    );
    assert_eq!(promoted.code, 0, "{}", promoted.stderr);
    let infer = |version: &str, out: &std::path::Path| {
        let inferred = run_job_with(
            "configs/inference.yaml",
            uri,
            &format!(
                "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}, alias_or_version: {version}",
                data.join("inputs_test.parquet").display(),
                out.display()
            ),
            &env,
        );
        assert_eq!(inferred.code, 0, "{}", inferred.stderr);
        predictions(out)
    };
    let by_velo = infer("Champion", &dir.path().join("champion.parquet"));
    assert!(!by_velo.is_empty());

    let Some(python) = std::env::var_os("VELO_PYTHON") else {
        assert!(std::env::var_os("VELO_IT").is_none() && std::env::var_os("CI").is_none());
        return;
    };
    // MLflow's client reads velo's model straight from the bucket, then uploads the same files
    // as a new run's model and registers them: version 2, written by Python.
    let script = "import os, sys, boto3, mlflow\n\
        mlflow.set_tracking_uri(sys.argv[1])\n\
        s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n\
        keys = [o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[2], Prefix='artifacts/')['Contents']]\n\
        assert any(k.endswith('/model/MLmodel') for k in keys), keys\n\
        path = mlflow.artifacts.download_artifacts('models:/bikes@Champion')\n\
        mlflow.set_experiment('bikes')\n\
        run = mlflow.start_run()\n\
        assert run.info.artifact_uri.startswith('s3://'), run.info.artifact_uri\n\
        mlflow.log_artifacts(path, 'model')\n\
        mlflow.end_run()\n\
        version = mlflow.register_model(f'runs:/{run.info.run_id}/model', 'bikes')\n\
        print(version.version)\n";
    let uploaded = std::process::Command::new(python)
        .args(["-c", script, uri, BUCKET])
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .output()
        .unwrap();
    assert!(
        uploaded.status.success(),
        "{}",
        String::from_utf8_lossy(&uploaded.stderr)
    );
    // MLflow prints links to the run after the version: the version is the last line.
    let stdout = String::from_utf8_lossy(&uploaded.stdout);
    assert_eq!(stdout.trim().lines().last(), Some("2"), "{stdout}");
    // velo loads the version Python wrote, and predicts exactly as with its own.
    let by_python = infer("2", &dir.path().join("python.parquet"));
    assert_eq!(by_python, by_velo);

    // Datasets in the bucket: inputs uploaded by Python, read by the job, and predictions
    // written there, which pandas reads back.
    python_with(
        "import os, sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n\
             s3.upload_file(sys.argv[1], sys.argv[2], 'data/inputs_test.parquet')\n",
        &[data.join("inputs_test.parquet").as_ref(), BUCKET.as_ref()],
        &env,
    );
    let in_bucket = run_job_with(
        "configs/inference.yaml",
        uri,
        &format!(
            "inputs: {{path: 's3://{BUCKET}/data/inputs_test.parquet'}}, outputs: {{path: 's3://{BUCKET}/outputs/predictions.parquet'}}"
        ),
        &env,
    );
    assert_eq!(in_bucket.code, 0, "{}", in_bucket.stderr);
    let read = python_with(
        "import io, os, sys, boto3, pandas\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n\
             body = s3.get_object(Bucket=sys.argv[1], Key='outputs/predictions.parquet')['Body'].read()\n\
             frame = pandas.read_parquet(io.BytesIO(body))\n\
             print(len(frame), round(float(frame['prediction'].sum()), 3))\n",
        &[BUCKET.as_ref()],
        &env,
    );
    let expected = format!(
        "{} {:.3}",
        by_velo.len(),
        (by_velo.iter().sum::<f64>() * 1000.0).round() / 1000.0
    );
    let seen: Vec<&str> = read.split_whitespace().collect();
    assert_eq!(seen[0], by_velo.len().to_string(), "{expected}");
    let total: f64 = seen[1].parse().unwrap();
    assert!(
        (total - by_velo.iter().sum::<f64>()).abs() < 0.01,
        "{expected} vs {seen:?}"
    );

    // A prefix of partitions in the bucket: each predicted into an object of the same name
    // under the outputs prefix, every row once.
    let script = "import io, os, sys, boto3, pandas\n\
         s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n\
         frame = pandas.read_parquet(sys.argv[1])\n\
         size = -(-len(frame) // 3)\n\
         for part in range(3):\n\
         \x20   body = io.BytesIO(); frame.iloc[part * size:(part + 1) * size].to_parquet(body)\n\
         \x20   s3.put_object(Bucket=sys.argv[2], Key=f'data/parts/part-{part}.parquet', Body=body.getvalue())\n";
    python_with(
        script,
        &[data.join("inputs_test.parquet").as_ref(), BUCKET.as_ref()],
        &env,
    );
    let partitioned = run_job_with(
        "configs/inference.yaml",
        uri,
        &format!(
            "inputs: {{path: 's3://{BUCKET}/data/parts/'}}, outputs: {{path: 's3://{BUCKET}/outputs/parts'}}"
        ),
        &env,
    );
    assert_eq!(partitioned.code, 0, "{}", partitioned.stderr);
    assert!(
        partitioned.stdout.contains("in 3 partitions"),
        "{}",
        partitioned.stdout
    );
    let read = python_with(
        "import io, os, sys, boto3, pandas\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n\
             keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1], Prefix='outputs/parts/')['Contents'])\n\
             frames = [pandas.read_parquet(io.BytesIO(s3.get_object(Bucket=sys.argv[1], Key=k)['Body'].read())) for k in keys]\n\
             frame = pandas.concat(frames)\n\
             print(','.join(k.rsplit('/', 1)[1] for k in keys), len(frame), round(float(frame['prediction'].sum()), 3))\n",
        &[BUCKET.as_ref()],
        &env,
    );
    let seen: Vec<&str> = read.split_whitespace().collect();
    assert_eq!(
        seen[..2],
        [
            "part-0.parquet,part-1.parquet,part-2.parquet",
            &by_velo.len().to_string()
        ]
    );
    let total: f64 = seen[2].parse().unwrap();
    assert!(
        (total - by_velo.iter().sum::<f64>()).abs() < 0.01,
        "{seen:?}"
    );

    // The object store stops in the middle of a multipart upload of a model (its second 5 MB
    // part; a forest of 300 deep trees is about 11 MB): the job fails, naming the location,
    // registers nothing, and the bucket shows no model file, whole or in part.
    let stores = registries::open(uri).unwrap();
    let before = stores.registry.list_model_versions("bikes").unwrap().len();
    let s3_port: u16 = server
        .s3()
        .unwrap()
        .endpoint()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = cutting_proxy(s3_port, 7 * 1024 * 1024);
    let mut cut_env: Vec<(&'static str, String)> = env
        .iter()
        .filter(|(key, _)| *key != "MLFLOW_S3_ENDPOINT_URL")
        .cloned()
        .collect();
    cut_env.extend([
        (
            "MLFLOW_S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{proxy}"),
        ),
        (
            "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE",
            "1048576".to_owned(),
        ),
        ("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", "5242880".to_owned()),
    ]);
    let keys_before = python_keys(&env);
    let cut = run_job_with(
        "configs/training.yaml",
        uri,
        &training_snippet(&data).replace(
            "model: {n_estimators: 8, max_depth: 6}",
            "model: {n_estimators: 300, max_depth: 30}",
        ),
        &cut_env,
    );
    assert_eq!(cut.code, 1, "{}\n{}", cut.stdout, cut.stderr);
    assert!(cut.stderr.contains("s3://"), "{}", cut.stderr);
    assert_eq!(
        stores.registry.list_model_versions("bikes").unwrap().len(),
        before
    );
    let new_keys: Vec<String> = python_keys(&env)
        .into_iter()
        .filter(|key| !keys_before.contains(key))
        .collect();
    println!(
        "cut mid-upload: {}; new objects: {new_keys:?}",
        cut.stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    // The model file never appears, nor the `MLmodel` that makes a directory a model (it is
    // uploaded last).
    assert!(
        !new_keys
            .iter()
            .any(|key| key.ends_with("/model.velo") || key.ends_with("/MLmodel")),
        "a part of the cut model is visible: {new_keys:?}"
    );

    // The object store dies: training fails, naming the artifact location, and registers
    // nothing (the registry on PostgreSQL still answers).
    let uri = uri.to_owned();
    server.s3_mut().unwrap().kill();
    let failed = run_job_with(
        "configs/training.yaml",
        &uri,
        &training_snippet(&data),
        &env,
    );
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(
        failed
            .stderr
            .contains("cannot use the artifact location s3://"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        stores.registry.list_model_versions("bikes").unwrap().len(),
        before
    );
}

/// Every key in the bucket, listed by boto3 (with `env`'s endpoint and keys).
fn python_keys(env: &[(&'static str, String)]) -> Vec<String> {
    let listed = python_with(
        "import os, sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n\
             for page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1]):\n\
             \x20   for o in page.get('Contents', []): print(o['Key'])\n",
        &[BUCKET.as_ref()],
        env,
    );
    listed.lines().map(ToOwned::to_owned).collect()
}
