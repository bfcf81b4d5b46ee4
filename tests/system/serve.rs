//! `velo serve`: MLflow's scoring protocol over HTTP, answering what the inference job writes,
//! refusing bad requests as MLflow does, following a moved alias and stopping on SIGTERM.

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use arrow::array::{Array as _, AsArray as _, RecordBatch};
use arrow::datatypes::Float64Type;
use serde_json::{Value, json};
use velo_io::datasets::Reader;

use crate::jobs::{model_store, run_job, training_snippet};

/// A running `velo serve` on a free loopback port, ended on drop.
pub(crate) struct Server {
    server: velo_child::ChildServer,
    // Holds the server's log; dropped after the server.
    _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start(store: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = velo_child::free_port().unwrap();
        let mut command = Command::new(crate::velo_binary());
        command
            .args(["serve", "-m", "models:/bikes@Champion", "-p"])
            .arg(port.to_string())
            .arg("--registry-uri")
            .arg(store)
            .args(extra)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI");
        let server = velo_child::ChildServer::start_within(
            "velo serve",
            &mut command,
            port,
            &dir.path().join("serve.log"),
            velo_child::Ready::Http("/ping"),
            Duration::from_secs(60),
        )
        .unwrap();
        Self { server, _dir: dir }
    }

    /// Sends SIGTERM and waits for the server to exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.server
            .stop(Duration::from_secs(60))
            .expect("velo serve exits on SIGTERM")
    }

    /// What the server has written to its standard output and error so far, line by line.
    pub(crate) fn said(&self) -> Vec<String> {
        self.server
            .log_tail(usize::MAX)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The server's Prometheus exposition (`GET /metrics`).
    pub(crate) fn metrics(&self) -> String {
        reqwest::blocking::get(self.url("/metrics"))
            .and_then(reqwest::blocking::Response::text)
            .unwrap()
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn address(&self) -> String {
        self.server.address()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub(crate) fn post(
        &self,
        content_type: &str,
        body: impl Into<reqwest::blocking::Body>,
    ) -> (u16, String, Option<String>) {
        let response = reqwest::blocking::Client::new()
            .post(self.url("/invocations"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let version = response
            .headers()
            .get("x-velo-model-version")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        (status, response.text().unwrap(), version)
    }
}

fn predictions(body: &str) -> Vec<f64> {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    value["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions in {body}"))
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect()
}

/// The rows of a Parquet file as JSON records (dates as `YYYY-MM-DD`), without `drop`.
fn records(batch: &RecordBatch, drop: &str) -> Vec<serde_json::Map<String, Value>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    let rows: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&writer.into_inner()).unwrap();
    rows.into_iter()
        .map(|mut row| {
            row.remove(drop);
            row
        })
        .collect()
}

/// The first `n` test rows of `data` as JSON records, without the index.
pub(crate) fn test_records(data: &Path, n: usize) -> Vec<serde_json::Map<String, Value>> {
    let mut rows = records(&read(&data.join("inputs_test.parquet")), "instant");
    rows.truncate(n);
    rows
}

fn read(path: &Path) -> RecordBatch {
    let reader: Reader =
        serde_json::from_value(json!({"KIND": "ParquetReader", "path": path})).unwrap();
    reader.read().unwrap().data
}

#[test]
fn velo_serve_speaks_mlflows_scoring_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    let (data, store) = (dir.path().join("data"), dir.path().join("mlruns"));
    // The inference job's predictions are the reference answers.
    let outputs = dir.path().join("predictions.parquet");
    let inferred = run_job(
        "configs/inference.yaml",
        &uri,
        &format!(
            "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}",
            data.join("inputs_test.parquet").display(),
            outputs.display()
        ),
    );
    assert_eq!(inferred.code, 0, "{}", inferred.stderr);
    let expected: Vec<f64> = read(&outputs)
        .column_by_name("prediction")
        .unwrap()
        .as_primitive::<Float64Type>()
        .values()
        .to_vec();

    let server = Server::start(&store, &["--poll-interval", "1", "--max-body-mb", "1"]);
    let inputs = read(&data.join("inputs_test.parquet"));
    // Clients send the frame without its index (pandas keeps it apart).
    let rows = records(&inputs, "instant");
    let columns: Vec<String> = rows[0].keys().cloned().collect();
    let split = json!({"dataframe_split": {
        "columns": columns,
        "data": rows.iter().map(|row| columns.iter().map(|c| row[c].clone()).collect::<Vec<_>>()).collect::<Vec<_>>(),
    }});
    let by_column: serde_json::Map<String, Value> = columns
        .iter()
        .map(|c| {
            (
                c.clone(),
                Value::Array(rows.iter().map(|row| row[c].clone()).collect()),
            )
        })
        .collect();
    let payloads = [
        split,
        json!({ "dataframe_records": rows }),
        json!({ "instances": rows }),
        json!({ "inputs": by_column, "params": {} }),
    ];
    for payload in &payloads {
        let (status, body, version) = server.post("application/json", payload.to_string());
        assert_eq!(status, 200, "{body}");
        assert_eq!(predictions(&body), expected);
        assert_eq!(version.as_deref(), Some("1"));
    }
    let mut csv = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut csv);
        let index = inputs.schema().index_of("instant").unwrap();
        writer
            .write(
                &inputs
                    .project(
                        &(0..inputs.num_columns())
                            .filter(|i| *i != index)
                            .collect::<Vec<_>>(),
                    )
                    .unwrap(),
            )
            .unwrap();
    }
    let (status, body, _) = server.post("text/csv; charset=utf-8", csv);
    assert_eq!(status, 200, "{body}");
    assert_eq!(predictions(&body), expected);

    // A schema violation names the column and the row; MLflow's error body.
    let mut bad = rows[..3].to_vec();
    bad[1].insert("hr".to_owned(), json!(30));
    let (status, body, _) = server.post(
        "application/json",
        json!({"dataframe_records": bad}).to_string(),
    );
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error_code"], "BAD_REQUEST");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("column 'hr'") && message.contains("row 1"),
        "{message}"
    );
    let mut missing = rows[..2].to_vec();
    missing[0].remove("temp");
    missing[1].remove("temp");
    let (status, body, _) = server.post(
        "application/json",
        json!({"dataframe_records": missing}).to_string(),
    );
    assert_eq!(status, 400);
    assert!(body.contains("column 'temp'"), "{body}");
    let (status, body, _) = server.post("application/json", "{\"dataframe_split\": ");
    assert_eq!(status, 400);
    assert!(body.contains("not valid JSON"), "{body}");
    let (status, _, _) = server.post("application/xml", "<rows/>");
    assert_eq!(status, 415);
    let (status, _, _) = server.post("application/json", vec![b' '; 2 * 1024 * 1024]);
    assert_eq!(status, 413, "the body limit holds");

    let client = reqwest::blocking::Client::new();
    for path in ["/ping", "/health", "/version", "/ready"] {
        let response = client.get(server.url(path)).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    // Readiness says which model answers.
    let ready: serde_json::Value = client
        .get(server.url("/ready"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["version"], "1", "{ready}");
    let metrics = server.metrics();
    assert!(
        metrics.contains("velo_serve_requests_total{status=\"200\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("velo_serve_requests_total{status=\"400\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("velo_serve_model_version 1"), "{metrics}");

    // MLflow's own scoring client, with the frame pandas reads from the same file.
    if let Some(python) = std::env::var_os("VELO_MLFLOW_PYTHON") {
        let script = "import sys, json, pandas as pd; \
            from mlflow.pyfunc.scoring_server.client import ScoringServerClient; \
            host, port = sys.argv[1].rsplit(':', 1); \
            answer = ScoringServerClient(host, int(port)).invoke(pd.read_parquet(sys.argv[2])); \
            print(json.dumps(list(answer['predictions'])))";
        let seen = Command::new(python)
            .args(["-c", script])
            .arg(server.address())
            .arg(data.join("inputs_test.parquet"))
            .output()
            .unwrap();
        assert!(
            seen.status.success(),
            "{}",
            String::from_utf8_lossy(&seen.stderr)
        );
        let got: Vec<f64> = serde_json::from_slice(&seen.stdout).unwrap();
        assert_eq!(got, expected, "MLflow's client gets the same predictions");
    }

    // A moved alias is followed without a restart.
    let retrained = run_job(
        "configs/training.yaml",
        &uri,
        &training_snippet(&data).replace("n_estimators: 8", "n_estimators: 3"),
    );
    assert_eq!(retrained.code, 0, "{}", retrained.stderr);
    assert_eq!(run_job("configs/promotion.yaml", &uri, "").code, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, version) = server.post("application/json", payloads[1].to_string());
        assert_eq!(status, 200, "{body}");
        if version.as_deref() == Some("2") {
            assert_ne!(predictions(&body), expected, "the new model answers");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never swapped to version 2"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM stops it cleanly.
    let mut server = server;
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let said = server.said();
    assert!(said.iter().any(|line| line == "stopped"), "{said:?}");
}

/// Reads from `stream` until the server closes it or answers; `None` when it does neither
/// within a minute (a guard against the hang under test, not a speed check).
fn closed_or_answered(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&answer).into_owned());
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn stalled_clients_are_timed_out_and_connections_bounded() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    model_store(dir.path());
    let store = dir.path().join("mlruns");
    let server = Server::start(
        &store,
        &[
            "--header-timeout-s",
            "1",
            "--body-timeout-s",
            "1",
            "--max-connections",
            "4",
        ],
    );
    let address = server.address();
    // Eight clients announce a body and send 8 bytes of it; four more never finish their
    // headers. Only four are served at a time, and each is ended by a timeout.
    let mut stalled: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream
                .write_all(
                    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs",
                )
                .unwrap();
            stream
        })
        .collect();
    stalled.extend((0..4).map(|_| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .write_all(b"POST /invocations HTTP/1.1\r\nHo")
            .unwrap();
        stream
    }));
    for (number, stream) in stalled.iter_mut().enumerate() {
        let answer = closed_or_answered(stream)
            .unwrap_or_else(|| panic!("connection {number} was kept open"));
        if number < 8 && !answer.is_empty() {
            assert!(answer.starts_with("HTTP/1.1 408"), "{number}: {answer}");
        }
    }
    // The server still answers once the stalled clients are gone.
    let ping = reqwest::blocking::get(server.url("/ping")).unwrap();
    assert_eq!(ping.status().as_u16(), 200);
}

/// A figure of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`), on Linux.
fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn four_concurrent_maximal_bodies_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    model_store(dir.path());
    let (data, store) = (dir.path().join("data"), dir.path().join("mlruns"));
    let server = Server::start(&store, &["--max-body-mb", "16", "--max-parsing", "2"]);
    let pid = server.pid();
    let Some(idle) = status_bytes(pid, "VmRSS") else {
        eprintln!("skipped: no /proc to read the server's memory from");
        return;
    };
    // A records body just under the 16 MiB limit, from the test rows.
    let inputs = read(&data.join("inputs_test.parquet"));
    let rows = records(&inputs, "instant");
    let mut body = String::from("{\"dataframe_records\": [");
    let mut count = 0;
    while body.len() < 15 << 20 {
        if count > 0 {
            body.push(',');
        }
        body.push_str(&serde_json::to_string(&rows[count % rows.len()]).unwrap());
        count += 1;
    }
    body.push_str("]}");
    let body = Arc::new(body);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let body = Arc::clone(&body);
            let url = server.url("/invocations");
            std::thread::spawn(move || {
                let response = reqwest::blocking::Client::new()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.as_bytes().to_vec())
                    .send()
                    .unwrap();
                let status = response.status().as_u16();
                let predictions = predictions(&response.text().unwrap());
                (status, predictions.len())
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), (200, count));
    }
    let peak = status_bytes(pid, "VmHWM").unwrap();
    // The allocator returns freed pages lazily: look again, with a little traffic, for a while.
    let mut after = status_bytes(pid, "VmRSS").unwrap();
    for _ in 0..20 {
        if after < idle + 8 * body.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        let _ = reqwest::blocking::get(server.url("/ping"));
        after = status_bytes(pid, "VmRSS").unwrap();
    }
    let body_bytes = body.len() as u64;
    eprintln!(
        "serving memory: idle {} MB, peak {} MB, after {} MB, for 4 concurrent bodies of {} MB",
        idle >> 20,
        peak >> 20,
        after >> 20,
        body_bytes >> 20
    );
    // Four bodies buffered, two parsed at a time, each held a few times over (its cells, the
    // batch, the features): under 16 bodies' worth at the peak (before the records were read
    // straight into columns and large bodies took turns, the same requests peaked at about
    // 70), and under 8 held once they are answered.
    assert!(
        peak - idle < 16 * body_bytes,
        "peak {peak} from {idle} for bodies of {body_bytes} bytes"
    );
    assert!(
        after < idle + 8 * body_bytes,
        "memory held after the requests: {after} from {idle}"
    );
}

/// Every Parquet file under the date partitions of `logs`.
fn log_files(logs: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for partition in std::fs::read_dir(logs).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(partition.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Writes late labels keyed by `request_id` and `request_row` (the target `cnt`) to `path`.
fn write_labels(path: &Path, ids: Vec<String>, rows: Vec<u32>, values: Vec<f64>) {
    let labels = RecordBatch::try_from_iter([
        (
            "request_id",
            Arc::new(arrow::array::StringArray::from(ids)) as arrow::array::ArrayRef,
        ),
        (
            "request_row",
            Arc::new(arrow::array::UInt32Array::from(rows)),
        ),
        ("cnt", Arc::new(arrow::array::Float64Array::from(values))),
    ])
    .unwrap();
    velo_io::datasets::Writer::ParquetWriter(velo_io::datasets::ParquetWriter::new(path))
        .write(&labels)
        .unwrap();
}

#[test]
fn scored_requests_are_logged_for_monitoring() {
    let dir = tempfile::tempdir().unwrap();
    model_store(dir.path());
    let (data, store, logs) = (
        dir.path().join("data"),
        dir.path().join("mlruns"),
        dir.path().join("logs"),
    );
    let log_dir = logs.display().to_string();
    let mut server = Server::start(
        &store,
        &[
            "--log-predictions",
            &log_dir,
            "--log-flush-s",
            "1",
            "--drift-rows",
            "1000",
        ],
    );
    let rows = records(&read(&data.join("inputs_test.parquet")), "instant");
    let client = reqwest::blocking::Client::new();
    let mut answered_ids = Vec::new();
    for (request, chunk) in rows.chunks(10).take(5).enumerate() {
        let mut post = client
            .post(server.url("/invocations"))
            .header("content-type", "application/json")
            .body(json!({ "dataframe_records": chunk }).to_string());
        if request == 0 {
            post = post.header("x-request-id", "client-7");
        }
        let response = post.send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        answered_ids.push(id);
    }
    assert_eq!(answered_ids[0], "client-7", "a client's own id is kept");
    assert_ne!(answered_ids[1], answered_ids[2], "others get distinct ids");

    // Within the flush interval the rows are on disk, whole, while the server runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_files(&logs).is_empty() {
        assert!(Instant::now() < deadline, "no log file was written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let early: usize = log_files(&logs).iter().map(|f| read(f).num_rows()).sum();
    assert!(early > 0);
    let metrics = server.metrics();
    assert!(
        metrics.contains("velo_serve_prediction_log_dropped_rows 0"),
        "{metrics}"
    );
    // Live drift of the 50 rows scored, against the version's training profile.
    for expected in [
        "velo_serve_drift_rows 50",
        "velo_serve_feature_drift{column=\"temp\"}",
        "velo_serve_feature_drifted{column=\"hum\"}",
        "velo_serve_drift_share ",
        "velo_serve_prediction_drift ",
        "velo_serve_estimated_error ",
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }

    // SIGTERM writes what waits: every scored row is logged once, with its request's id.
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let batches: Vec<RecordBatch> = log_files(&logs).iter().map(|f| read(f)).collect();
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(total, 50);
    let mut ids: Vec<String> = batches
        .iter()
        .flat_map(|batch| {
            let column = batch
                .column_by_name("request_id")
                .unwrap()
                .as_string::<i32>();
            (0..column.len())
                .map(|row| column.value(row).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids, answered_ids);
    let schema = batches[0].schema();
    for column in [
        "temp",
        "prediction",
        "model_name",
        "model_version",
        "logged_at",
    ] {
        assert!(schema.column_with_name(column).is_some(), "{column}");
    }

    // The monitoring job reads the log directly, cut into hours of `logged_at`.
    let monitored = run_job(
        "configs/monitoring.yaml",
        &store.display().to_string(),
        &format!(
            "inputs: null, targets: null, logs: '{log_dir}', window: {{column: logged_at, every: hour}}, min_rows: 10, outputs: {{}}"
        ),
    );
    assert_eq!(
        monitored.code, 0,
        "{}\n{}",
        monitored.stdout, monitored.stderr
    );
    assert!(
        monitored.stdout.contains("window(s)"),
        "{}",
        monitored.stdout
    );

    // Labels arrive later for the first three requests only, keyed by request id and row:
    // the monitor joins them and scores the labelled rows alone, from the logged predictions.
    let targets = read(&data.join("targets_test.parquet"));
    let counts = arrow::compute::cast(
        targets.column_by_name("cnt").unwrap(),
        &arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    let counts = counts.as_primitive::<Float64Type>();
    let (mut label_ids, mut label_rows, mut label_values) = (Vec::new(), Vec::new(), Vec::new());
    for (request, id) in answered_ids.iter().enumerate().take(3) {
        for row in 0..10 {
            label_ids.push(id.clone());
            label_rows.push(row as u32);
            label_values.push(counts.value(request * 10 + row));
        }
    }
    let labels_path = dir.path().join("labels.parquet");
    write_labels(&labels_path, label_ids, label_rows, label_values.clone());
    let logged_predictions: Vec<f64> = batches
        .iter()
        .flat_map(|batch| {
            batch
                .column_by_name("prediction")
                .unwrap()
                .as_primitive::<Float64Type>()
                .values()
                .to_vec()
        })
        .take(30)
        .collect();
    let expected_rmse = (label_values
        .iter()
        .zip(&logged_predictions)
        .map(|(y, p)| (y - p).powi(2))
        .sum::<f64>()
        / 30.0)
        .sqrt();
    let joined = run_job(
        "configs/monitoring.yaml",
        &store.display().to_string(),
        &format!(
            "inputs: null, logs: '{log_dir}', targets: {{path: '{}'}}, join_on: [request_id, request_row], window: {{column: logged_at, every: hour}}, min_rows: 10, outputs: {{}}",
            labels_path.display()
        ),
    );
    assert_eq!(joined.code, 0, "{}\n{}", joined.stdout, joined.stderr);
    assert!(
        joined.stdout.contains("labelled_rows = 30"),
        "{}",
        joined.stdout
    );
    let reported: f64 = joined
        .stdout
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("overall_root_mean_squared_error = ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (reported - expected_rmse).abs() < 1e-6 * expected_rmse.max(1.0),
        "{reported} vs {expected_rmse}"
    );

    // A key labelled twice with different values is refused, naming the file and the key.
    write_labels(
        &labels_path,
        vec!["client-7".to_owned(), "client-7".to_owned()],
        vec![0, 0],
        vec![1.0, 2.0],
    );
    let refused = run_job(
        "configs/monitoring.yaml",
        &store.display().to_string(),
        &format!(
            "inputs: null, logs: '{log_dir}', targets: {{path: '{}'}}, join_on: [request_id, request_row], window: {{rows: 25}}, outputs: {{}}",
            labels_path.display()
        ),
    );
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("labels.parquet") && refused.stderr.contains("client-7 + 0 twice"),
        "{}",
        refused.stderr
    );

    // pandas reads the log directory as one frame, its date partition as a column.
    if let Some(python) = std::env::var_os("VELO_PYTHON") {
        let script = "import sys, pandas as pd; frame = pd.read_parquet(sys.argv[1]); \
            print(len(frame), frame['model_version'].iloc[0], 'date' in frame.columns)";
        let seen = Command::new(python)
            .args(["-c", script])
            .arg(&logs)
            .output()
            .unwrap();
        assert!(
            seen.status.success(),
            "{}",
            String::from_utf8_lossy(&seen.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "50 1 True");
    }
}

#[test]
fn a_shadow_model_scores_every_request_without_answering() {
    let dir = tempfile::tempdir().unwrap();
    model_store(dir.path());
    let logs = dir.path().join("logs");
    let log_dir = logs.display().to_string();
    let mut server = Server::start(
        &dir.path().join("mlruns"),
        &["--shadow", "models:/bikes/1", "--log-predictions", &log_dir],
    );
    let rows = test_records(&dir.path().join("data"), 10);
    for _ in 0..2 {
        let (status, body, version) = server.post(
            "application/json",
            json!({ "dataframe_records": rows }).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(version.as_deref(), Some("1"), "the served model answers");
        assert_eq!(predictions(&body).len(), 10);
    }
    let metrics = server.metrics();
    assert!(
        metrics.contains("velo_serve_shadow_rows_total 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("velo_serve_shadow_errors_total 0"),
        "{metrics}"
    );
    // The same version in the shadow: it agrees to the bit.
    assert!(
        metrics.contains("velo_serve_shadow_absolute_difference_count 20"),
        "{metrics}"
    );
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let logged = velo_io::prediction_logs::read_logs(&logs).unwrap().unwrap();
    assert_eq!(logged.num_rows(), 20);
    let served = logged
        .column_by_name("prediction")
        .unwrap()
        .as_primitive::<Float64Type>();
    let shadow = logged
        .column_by_name("shadow_prediction")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(shadow.null_count(), 0);
    assert_eq!(served.values(), shadow.values());
    let versions = logged
        .column_by_name("shadow_version")
        .unwrap()
        .as_string::<i32>();
    assert!(versions.iter().all(|version| version == Some("1")));
}

#[test]
fn the_gate_decides_on_shadow_traffic_with_the_predictions_logged() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    let data = dir.path().join("data");
    // A shallow challenger, version 2, scores in the shadow of the Champion (version 1).
    let trained = run_job(
        "configs/training.yaml",
        &uri,
        &format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, model: {{n_estimators: 4, max_depth: 2}}, splitter: {{test_size: 240}}",
            data.join("inputs_train.parquet").display(),
            data.join("targets_train.parquet").display()
        ),
    );
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    let stores = velo_io::registries::open(&uri).unwrap();
    stores
        .registry
        .set_alias("bikes", "Challenger", "2")
        .unwrap();
    let logs = dir.path().join("logs");
    let log_dir = logs.display().to_string();
    let mut server = Server::start(
        &dir.path().join("mlruns"),
        &[
            "--shadow",
            "models:/bikes@Challenger",
            "--log-predictions",
            &log_dir,
        ],
    );
    let rows = test_records(&data, 120);
    for chunk in rows.chunks(12) {
        let (status, body, version) = server.post(
            "application/json",
            json!({ "dataframe_records": chunk }).to_string(),
        );
        assert_eq!((status, version.as_deref()), (200, Some("1")), "{body}");
    }
    assert!(server.terminate().success());

    // Labels for the first 100 rows arrive, keyed by request id and row.
    let logged = velo_io::prediction_logs::read_logs(&logs).unwrap().unwrap();
    let targets = read(&data.join("targets_test.parquet"));
    let counts = arrow::compute::cast(
        targets.column_by_name("cnt").unwrap(),
        &arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    let counts = counts.as_primitive::<Float64Type>();
    let labelled = 100;
    let ids = logged
        .column_by_name("request_id")
        .unwrap()
        .as_string::<i32>();
    let request_rows = logged
        .column_by_name("request_row")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>();
    let labels_path = dir.path().join("labels.parquet");
    write_labels(
        &labels_path,
        (0..labelled).map(|row| ids.value(row).to_owned()).collect(),
        (0..labelled).map(|row| request_rows.value(row)).collect(),
        (0..labelled).map(|row| counts.value(row)).collect(),
    );
    let gate = run_job(
        "configs/gate.yaml",
        &uri,
        &format!(
            "inputs: null, logs: '{log_dir}', targets: {{path: '{}'}}",
            labels_path.display()
        ),
    );
    assert_eq!(gate.code, 0, "{}\n{}", gate.stdout, gate.stderr);
    assert!(
        gate.stdout.contains("kept bikes version 1 as Champion"),
        "{}",
        gate.stdout
    );
    // The evidence is the logged predictions' own RMSEs over the labelled rows.
    let rmse = |column: &str| {
        let values = logged
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Float64Type>();
        ((0..labelled)
            .map(|row| (values.value(row) - counts.value(row)).powi(2))
            .sum::<f64>()
            / labelled as f64)
            .sqrt()
    };
    let version = stores
        .registry
        .get_model_version("bikes", "2")
        .unwrap()
        .unwrap();
    let evidence: Value = serde_json::from_str(
        &version
            .tags
            .iter()
            .find(|tag| tag.key == "velo.gate.evidence")
            .unwrap()
            .value,
    )
    .unwrap();
    assert_eq!(evidence["rows"], labelled);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(
        close(evidence["champion"].as_f64().unwrap(), rmse("prediction")),
        "{evidence}"
    );
    assert!(
        close(
            evidence["challenger"].as_f64().unwrap(),
            rmse("shadow_prediction")
        ),
        "{evidence}"
    );
}
