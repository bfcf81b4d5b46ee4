//! Distributed tuning through a PostgreSQL work queue: `velo worker` processes claim the
//! candidates × folds of a tuning job; one frozen mid-task loses its lease, another does its
//! task again, and the job's cv results are the single process's.

use std::{
    io::BufRead as _,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use velo_child::postgres::Postgres;

use crate::jobs::{synthetic_data, tune_with};

#[allow(clippy::print_stderr, reason = "a skipped test must be visible")]
fn postgres_or_skip(test: &str) -> Option<Postgres> {
    match velo_child::postgres::bin_dir() {
        Some(bin) => Some(
            Postgres::start(&bin)
                .unwrap_or_else(|error| panic!("cannot start PostgreSQL for {test}: {error}")),
        ),
        None if velo_mlflow::test_server::required() => {
            panic!("{test}: PostgreSQL is required (VELO_IT/CI); run `cargo xtask install`")
        }
        None => {
            eprintln!("SKIPPED {test}: install PostgreSQL (cargo xtask install does)");
            None
        }
    }
}

/// One row of `sql`'s answer, fields split on `|`.
fn psql(postgres: &Postgres, sql: &str) -> Vec<String> {
    let bin = velo_child::postgres::bin_dir().unwrap();
    let output = Command::new(bin.join("psql"))
        .args([&postgres.url("velo"), "-tAc", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .split('|')
        .map(ToOwned::to_owned)
        .collect()
}

/// Starts `velo worker` named `name`; its stderr lines go to `lines`.
fn worker(url: &str, name: &str, lines: &mpsc::Sender<String>) -> Child {
    let mut child = Command::new(crate::velo_binary())
        .args([
            "worker",
            "--queue",
            url,
            "--name",
            name,
            "--idle-exit-s",
            "5",
        ])
        .env("VELO_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    child
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

/// Freezes worker `w0` (SIGSTOP: no heartbeat, no answer, as a worker that hangs or dies)
/// once it holds a task; the task's id.
fn freeze_holding(first: &Child, seen: &mpsc::Receiver<String>, postgres: &Postgres) -> String {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first worker never held a task"
        );
        let Ok(line) = seen.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if !line.contains("task claimed") {
            continue;
        }
        signal(first, "-STOP");
        // Frozen between two tasks: let it go on to the next one.
        let held = psql(
            postgres,
            "SELECT id FROM velo.tasks WHERE worker = 'w0' AND state = 'running'",
        );
        match held.first().filter(|id| !id.is_empty()) {
            Some(id) => return id.clone(),
            None => signal(first, "-CONT"),
        }
    }
}

#[test]
fn two_workers_tune_as_one_process_does_and_a_frozen_workers_task_is_done_again() {
    let Some(postgres) = postgres_or_skip("distributed tuning") else {
        return;
    };
    postgres.create_database("velo").unwrap();
    let url = postgres.url("velo");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let store = dir.path().join("mlruns");
    let uri = store.to_str().unwrap().to_owned();
    let (local, _) = tune_with(&uri, &data, "", "");

    // The first worker alone: once it holds a task, it is frozen (SIGSTOP: no heartbeat, no
    // answer), as a worker that hangs or dies would be.
    let (lines, seen) = mpsc::channel();
    let mut first = worker(&url, "w0", &lines);
    let job = {
        let (uri, data, url) = (uri.clone(), data.clone(), url.clone());
        std::thread::spawn(move || {
            tune_with(
                &uri,
                &data,
                "",
                &format!("executor: {{KIND: Queue, url: '{url}', lease_s: 2, stall_s: 120}}"),
            )
        })
    };
    let frozen_task = freeze_holding(&first, &seen, &postgres);
    // The second worker does the rest, and the frozen one's task once its lease lapsed.
    let second = worker(&url, "w1", &lines);
    let (queued, run) = job.join().unwrap();
    first.kill().unwrap();
    let _ = first.wait();
    let second = second.wait_with_output().unwrap();
    assert!(second.status.success());
    let report = String::from_utf8_lossy(&second.stdout);
    assert!(report.contains("worker w1 finished"), "{report}");

    let redone = psql(
        &postgres,
        &format!("SELECT state, worker, attempts FROM velo.tasks WHERE id = {frozen_task}"),
    );
    assert_eq!(redone, ["done", "w1", "2"], "the frozen worker's task");
    let all = psql(
        &postgres,
        "SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM velo.tasks",
    );
    assert_eq!(all, ["18", "18"], "6 candidates × 3 folds, all done once");

    // The same table as one process computes (fit times aside), the best candidate refit, and
    // each candidate a child run of the tuning run.
    assert_eq!(queued.num_rows(), local.num_rows());
    for column in [
        "params",
        "split0_test_score",
        "split1_test_score",
        "split2_test_score",
        "mean_test_score",
        "std_test_score",
        "rank_test_score",
        "is_best",
    ] {
        assert_eq!(
            queued.column_by_name(column).unwrap().to_data(),
            local.column_by_name(column).unwrap().to_data(),
            "{column}"
        );
    }
    assert!(run.data.metric("refit_seconds").is_some());
    let stores = velo_io::registries::open(&uri).unwrap();
    let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
    let children = stores
        .tracking
        .list_runs(&experiment)
        .unwrap()
        .into_iter()
        .filter(|child| {
            child
                .data
                .tags
                .iter()
                .any(|tag| tag.key == "mlflow.parentRunId" && tag.value == run.info.run_id)
        })
        .count();
    assert_eq!(children, 6, "a child run per candidate");
}

/// Splits `file` into `parts` Parquet files `part-N.parquet` in `dir`; the rows in all.
fn partition(file: &std::path::Path, dir: &std::path::Path, parts: usize) -> usize {
    use velo_io::datasets::DatasetReader as _;
    let batch = velo_io::datasets::ParquetReader::new(file)
        .read()
        .unwrap()
        .data;
    std::fs::create_dir_all(dir).unwrap();
    let size = batch.num_rows().div_ceil(parts);
    for part in 0..parts {
        let start = part * size;
        let slice = batch.slice(start, size.min(batch.num_rows() - start));
        let bytes = velo_io::datasets::parquet_bytes(&slice, "part").unwrap();
        std::fs::write(dir.join(format!("part-{part}.parquet")), bytes).unwrap();
    }
    batch.num_rows()
}

#[test]
fn a_partitioned_inference_on_two_workers_writes_each_row_once_when_one_freezes_mid_partition() {
    let Some(postgres) = postgres_or_skip("distributed inference") else {
        return;
    };
    postgres.create_database("velo").unwrap();
    let url = postgres.url("velo");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let uri = dir.path().join("mlruns").display().to_string();
    let trained = crate::jobs::run_job(
        "configs/training.yaml",
        &uri,
        &crate::jobs::training_snippet(&data),
    );
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    let parts = dir.path().join("parts");
    let rows = partition(&data.join("inputs_test.parquet"), &parts, 6);
    let outputs = dir.path().join("predictions");

    let (lines, seen) = mpsc::channel();
    let mut first = worker(&url, "w0", &lines);
    let job = {
        let (uri, parts, outputs, url) = (uri.clone(), parts.clone(), outputs.clone(), url.clone());
        std::thread::spawn(move || {
            crate::jobs::run_job(
                "configs/inference.yaml",
                &uri,
                &format!(
                    "inputs: {{path: '{}'}}, outputs: {{path: '{}'}}, alias_or_version: 1, executor: {{KIND: Queue, url: '{url}', lease_s: 2, stall_s: 120}}",
                    parts.display(),
                    outputs.display()
                ),
            )
        })
    };
    let frozen_task = freeze_holding(&first, &seen, &postgres);
    let second = worker(&url, "w1", &lines);
    let inferred = job.join().unwrap();
    assert_eq!(inferred.code, 0, "{}", inferred.stderr);
    assert!(
        inferred
            .stdout
            .contains(&format!("wrote {rows} predictions")),
        "{}",
        inferred.stdout
    );
    first.kill().unwrap();
    let _ = first.wait();
    assert!(second.wait_with_output().unwrap().status.success());
    let redone = psql(
        &postgres,
        &format!("SELECT state, worker, attempts FROM velo.tasks WHERE id = {frozen_task}"),
    );
    assert_eq!(redone, ["done", "w1", "2"], "the frozen worker's partition");

    // One output partition per input partition, under its name, and every input row once.
    let mut names: Vec<String> = std::fs::read_dir(&outputs)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    assert_eq!(
        names,
        (0..6)
            .map(|part| format!("part-{part}.parquet"))
            .collect::<Vec<_>>()
    );
    let mut instants = Vec::new();
    for name in &names {
        use velo_io::datasets::DatasetReader as _;
        let batch = velo_io::datasets::ParquetReader::new(outputs.join(name))
            .read()
            .unwrap()
            .data;
        let column = arrow::compute::cast(
            batch.column_by_name("instant").unwrap(),
            &arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        instants.extend(
            column
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .values()
                .iter()
                .copied(),
        );
    }
    let total = instants.len();
    instants.sort_unstable();
    instants.dedup();
    assert_eq!(
        (total, instants.len()),
        (rows, rows),
        "one output row per input row"
    );
}
