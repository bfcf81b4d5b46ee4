//! The stress job through the binary: velo's server started in the job's process and a
//! `velo serve` given by URL, loaded side by side with the same short steps, in one run.

use velo_io::registries::{self, RunStatus};

use crate::{
    jobs::{model_store, run_job},
    serve::Server,
};

#[test]
fn the_stress_job_loads_servers_side_by_side_and_logs_their_curves() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    let external = Server::start(std::path::Path::new(&uri), &[]);
    let data = dir.path().join("data");
    let table = dir.path().join("stress.parquet");
    let job = format!(
        "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}, servers: [{{name: here}}, {{name: there, url: '{}', pid: {}}}], closed_loop: {{clients: [1, 4]}}, open_loop: {{rates: [50, 200]}}, batches: {{rows: [1, 50], clients: 2}}, step: {{warmup_s: 0.1, seconds: 0.4, max_requests: 2000}}",
        data.join("inputs_test.parquet").display(),
        table.display(),
        external.url(""),
        external.pid(),
    );
    let result = run_job("configs/stress.yaml", &uri, &job);
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    for server in ["here", "there"] {
        for sweep in ["closed loop", "open loop", "batch sweep"] {
            assert!(
                result.stdout.contains(&format!("{server} {sweep}: ")),
                "{server} {sweep}: {}",
                result.stdout
            );
        }
    }

    // Every step is a row: 6 per server, with latencies, throughput and the server's memory.
    let steps = velo_io::datasets::ParquetReader::new(&table);
    let steps = velo_io::datasets::DatasetReader::read(&steps).unwrap().data;
    assert_eq!(steps.num_rows(), 12);
    let rps = steps.column_by_name("requests_per_s").unwrap();
    let rps = arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(rps);
    assert!(rps.values().iter().all(|value| *value > 0.0), "{rps:?}");
    let rss = steps.column_by_name("rss_mb").unwrap();
    assert_eq!(rss.null_count(), 0, "both servers report memory");

    // The curves are metrics with one step per load level, beside the charts and the table.
    let stores = registries::open(&uri).unwrap();
    let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
    let run = stores
        .tracking
        .list_runs(&experiment)
        .unwrap()
        .into_iter()
        .find(|run| run.info.run_name == "Stress")
        .expect("a Stress run");
    assert_eq!(run.info.status, RunStatus::Finished);
    let history = stores
        .tracking
        .metric_history(&run.info.run_id, "stress.there.closed.p99_ms")
        .unwrap();
    assert_eq!(history.iter().map(|m| m.step).collect::<Vec<_>>(), [0, 1]);
    let charts: Vec<String> = stores
        .tracking
        .list_artifacts(&run.info.run_id, "plots")
        .unwrap()
        .into_iter()
        .map(|file| file.path)
        .collect();
    assert!(
        charts.contains(&"plots/stress_closed_loop.png".to_owned()),
        "{charts:?}"
    );

    // A server that does not answer fails the job, naming it.
    let gone = run_job(
        "configs/stress.yaml",
        &uri,
        &format!(
            "inputs: {{path: '{}'}}, servers: [{{name: nobody, url: 'http://127.0.0.1:9'}}]",
            data.join("inputs_test.parquet").display()
        ),
    );
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    assert!(
        gone.stderr.contains("server `nobody` cannot be loaded"),
        "{}",
        gone.stderr
    );
}

#[test]
fn the_stress_job_finds_the_rate_the_kafka_job_cannot_sustain() {
    let Some(broker) = crate::kafka::Broker::start_or_skip("the Kafka stress test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    let table = dir.path().join("stress.parquet");
    // No HTTP server: the Kafka job alone, at a rate it sustains and one far beyond.
    let job = format!(
        "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}, servers: [], closed_loop: null, open_loop: null, batches: null, kafka: {{brokers: '{}', rates: [100, 200000]}}, step: {{warmup_s: 0.5, seconds: 1.5, max_requests: 400000}}",
        dir.path().join("data/inputs_test.parquet").display(),
        table.display(),
        broker.address,
    );
    let result = run_job("configs/stress.yaml", &uri, &job);
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    assert!(
        result.stdout.contains("kafka stream: ")
            && result
                .stdout
                .contains("its backlog grows without bound from 200000 records/s offered"),
        "{}",
        result.stdout
    );
    let steps = velo_io::datasets::ParquetReader::new(&table);
    let steps = velo_io::datasets::DatasetReader::read(&steps).unwrap().data;
    assert_eq!(steps.num_rows(), 2);
    let number = |name: &str| {
        let column = steps.column_by_name(name).unwrap();
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(column)
            .values()
            .to_vec()
    };
    let answered = number("requests_per_s");
    let backlog = number("backlog");
    let growth = number("backlog_growth_per_s");
    // At 100 records/s, less than a second of records waits (those in flight); far beyond,
    // the backlog grows by most of the offered rate.
    assert!(
        answered[0] > 50.0 && backlog[0] <= 100.0,
        "{answered:?} {backlog:?}"
    );
    assert!(
        growth[1] > 10_000.0 && answered[1] < 200_000.0,
        "{growth:?} {answered:?}"
    );
}
