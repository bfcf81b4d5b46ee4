//! `cargo xtask bench --kafka [--runs N]`: the Kafka inference job against the broker's raw
//! produce+consume throughput, in one run (medians of at least 5 alternating runs;
//! `crates/velo-jobs/benches/kafka.rs` measures; this
//! task starts tansu with its memory storage on a free loopback port and registers the model
//! with velo's release build from `configs/training.yaml`).

use std::{
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::json_of;
use crate::{cargo_bin, root};

pub(crate) fn compare(data_dir: &Path, records: usize, runs: usize) -> Result<()> {
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("the data directory {} is missing", data_dir.display()))?;
    crate::install::ensure_tansu()?;
    let tansu = crate::install::tools_dir().join("bin").join("tansu");
    let velo = super::chain::build_velo()?;
    let scratch = std::env::temp_dir().join(format!("velo-kafka-bench-{}", std::process::id()));
    let project = scratch.join("project");
    std::fs::create_dir_all(&project)?;
    super::chain::link_dir(&data_dir, &project.join("data"))?;
    super::chain::copy_dir(&root().join("configs"), &project.join("configs"))?;
    for config in ["configs/training.yaml", "configs/promotion.yaml"] {
        let status = Command::new(&velo)
            .args(["run", config])
            .current_dir(&project)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI")
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("velo run {config} failed");
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = Command::new(&tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start tansu")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = broker.kill();
            bail!("tansu did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = json_of(
        Command::new(cargo_bin())
            .args([
                "bench",
                "--locked",
                "--quiet",
                "-p",
                "velo-jobs",
                "--features",
                "kafka",
                "--bench",
                "kafka",
                "--",
                "--brokers",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--store")
            .arg(project.join("mlruns"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--records", &records.to_string()])
            .args(["--runs", &runs.to_string()]),
    );
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = std::fs::remove_dir_all(&scratch);
    let result = result?;
    let figure = |key: &str| result[key].as_f64().unwrap_or(f64::NAN);
    let by_run = |key: &str, scale: f64, unit: &str| {
        result[key]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(Value::as_f64)
                    .map(|value| format!("{:.0}{unit}", value * scale))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let share = figure("job_share_of_ceiling");
    println!(
        "\nKafka inference job vs the broker alone ({records} records, tansu memory storage, \
         loopback; medians of {runs} alternating runs, each run's figure in brackets)\n\n\
         | figure | value |\n|---|---|\n\
         | broker produce+consume (records/s) | {:.0} ({}) |\n\
         | job draining a backlog, sustained after its first commit (records/s; max_batch {}) | {:.0} ({}) |\n\
         | job / broker | {:.0}% ({}; target >= 50%: {}) |\n\
         | job from its first record read, first commit after {:.2} s (records/s) | {:.0} |\n\
         | job while the records are produced and its predictions read (records/s) | {:.0} |\n\
         | end-to-end latency p50 / p99 at a paced rate (ms) | {:.1} / {:.1} |\n\
         | one worker draining a 4-partition backlog (records/s) | {:.0} ({}) |\n\
         | two workers in one group, same backlog (records/s) | {:.0} ({}; {:.2}x one) |",
        figure("ceiling_records_per_second"),
        by_run("ceiling_by_run", 1.0, ""),
        result["max_batch"],
        figure("job_records_per_second"),
        by_run("job_by_run", 1.0, ""),
        share * 100.0,
        by_run("job_share_by_run", 100.0, "%"),
        if share >= 0.5 { "met" } else { "NOT met" },
        figure("job_first_commit_seconds"),
        figure("job_records_per_second_from_first_record"),
        figure("live_records_per_second"),
        figure("latency_p50_ms"),
        figure("latency_p99_ms"),
        figure("group_one_worker_records_per_second"),
        by_run("group_one_worker_by_run", 1.0, ""),
        figure("group_two_workers_records_per_second"),
        by_run("group_two_workers_by_run", 1.0, ""),
        figure("group_speedup"),
    );
    Ok(())
}
