//! The monitoring job through the binary: the shipped config on a small synthetic model's test
//! period, its report rendered in headless Chromium, and drifted inputs failing the job with
//! an alert posted to a webhook on loopback.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::Path,
    sync::Arc,
};

use arrow::{
    array::{Array, ArrayRef, AsArray as _, Float64Array, RecordBatch},
    compute::cast,
    datatypes::{DataType, Float64Type},
};
use velo_io::datasets::{DatasetReader as _, ParquetReader, ParquetWriter, Writer};

use crate::{
    jobs::{model_store, run_job},
    scenarios::{chromium, image_size, render},
};

/// A one-request HTTP endpoint on loopback (a chat webhook); returns its URL and a handle
/// yielding the body it received.
fn webhook() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/velo", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
        String::from_utf8(body).unwrap()
    });
    (url, handle)
}

/// The shipped config's data and outputs redirected into `dir`, reading `inputs`.
fn paths(dir: &Path, inputs: &str) -> String {
    let data = dir.join("data");
    let out = dir.join("outputs");
    format!(
        "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, outputs: {{table: {{path: '{}'}}, report: '{}'}}",
        data.join(inputs).display(),
        data.join("targets_test.parquet").display(),
        out.join("monitoring.parquet").display(),
        out.join("monitoring.html").display(),
    )
}

/// Writes `inputs_test.parquet` with its temperatures halved and its humidity reversed.
fn write_drifted(data: &Path) {
    let batch = ParquetReader::new(data.join("inputs_test.parquet"))
        .read()
        .unwrap()
        .data;
    let mut columns = batch.columns().to_vec();
    for (name, change) in [
        ("temp", (|v: f64| v / 2.0) as fn(f64) -> f64),
        ("atemp", |v| v / 2.0),
        ("hum", |v| 1.0 - v),
    ] {
        let position = batch.schema().index_of(name).unwrap();
        let original = &columns[position];
        let wide = cast(original, &DataType::Float64).unwrap();
        let changed: Float64Array = wide
            .as_primitive::<Float64Type>()
            .iter()
            .map(|value| value.map(change))
            .collect();
        columns[position] = cast(&(Arc::new(changed) as ArrayRef), original.data_type()).unwrap();
    }
    let drifted = RecordBatch::try_new(batch.schema(), columns).unwrap();
    assert_eq!(drifted.column(0).len(), batch.num_rows());
    Writer::ParquetWriter(ParquetWriter::new(data.join("inputs_drifted.parquet")))
        .write(&drifted)
        .unwrap();
}

#[test]
fn monitoring_reports_windows_and_alerts_on_drift() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());

    let watched = run_job(
        "configs/monitoring.yaml",
        &uri,
        &paths(dir.path(), "inputs_test.parquet"),
    );
    assert_eq!(watched.code, 0, "{}\n{}", watched.stdout, watched.stderr);
    assert!(watched.stdout.contains("window(s)"), "{}", watched.stdout);
    let html = dir.path().join("outputs/monitoring.html");
    let size = std::fs::metadata(&html).unwrap().len();
    assert!(size < 2 * 1024 * 1024, "the report is {size} bytes");
    let report = dir.path().join("watched.html");
    std::fs::copy(&html, &report).unwrap();
    // Without labels the inputs are streamed batch by batch: the same drift, window by window.
    let watched_table = ParquetReader::new(dir.path().join("outputs/monitoring.parquet"))
        .read()
        .unwrap()
        .data;
    let streamed = run_job(
        "configs/monitoring.yaml",
        &uri,
        &paths(dir.path(), "inputs_test.parquet").replace(
            &format!(
                "targets: {{path: '{}'}}",
                dir.path().join("data/targets_test.parquet").display()
            ),
            "targets: null",
        ),
    );
    assert_eq!(streamed.code, 0, "{}", streamed.stderr);
    let streamed_table = ParquetReader::new(dir.path().join("outputs/monitoring.parquet"))
        .read()
        .unwrap()
        .data;
    assert_eq!(streamed_table, watched_table);

    // Weather that never was: every window drifts; the job fails naming the columns, and the
    // alert reaches the webhook.
    write_drifted(&dir.path().join("data"));
    let (url, received) = webhook();
    let job = format!(
        "{}, fail_on_drift: true, dataset_threshold: 0.3",
        paths(dir.path(), "inputs_drifted.parquet")
    );
    let drifted = crate::output(
        crate::velo()
            .args(["run", "configs/monitoring.yaml", "-e"])
            .arg(format!(
                "job: {{{job}, services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}'}}}}}}"
            ))
            .arg("-e")
            .arg(format!("job: {{services: {{alerts: {{webhook_url: '{url}'}}}}}}"))
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI"),
    );
    assert_eq!(drifted.code, 1, "{}\n{}", drifted.stdout, drifted.stderr);
    assert!(
        drifted.stderr.contains("the data drifted in") && drifted.stderr.contains("temp"),
        "{}",
        drifted.stderr
    );
    let alert: serde_json::Value = serde_json::from_str(&received.join().unwrap()).unwrap();
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.starts_with("[velo] MonitoringJob failed: ") && text.contains("drifted"),
        "{text}"
    );

    // The report opens in a browser with its verdicts, tables and charts.
    let Some(chromium) = chromium() else {
        return;
    };
    let png = dir.path().join("report.png");
    let dom = render(&chromium, &report, &png);
    for expected in [
        "Monitoring: bikes version 1",
        "windows drifted",
        "Drift over time",
        "Windows",
        "Columns",
        "temp",
        "training's held-out split",
    ] {
        assert!(
            dom.contains(expected),
            "{expected} is not in the rendered page"
        );
    }
    assert!(dom.matches("<img").count() >= 2, "charts are embedded");
    assert_eq!(image_size(&png), (1400, 2400));
}
