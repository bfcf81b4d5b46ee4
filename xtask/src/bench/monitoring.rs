//! `cargo xtask bench --monitoring [--runs N]`: the monitoring job over a day of logged
//! predictions, next to Evidently's data drift preset on the same rows and windows.
//!
//! The day is 240,000 rows of `velo data synth` (10,000 an hour), scored by `velo serve` in
//! requests of 1,000 rows with `--log-predictions`, so the monitor reads a real prediction log.
//! velo's figure is the whole `velo run configs/monitoring.yaml` process over 24 windows of
//! that log (reading, 14 input columns and the predictions against the Champion's training
//! profile, the loss estimate, the run's metrics, charts and report); Evidently's is reading
//! the same log and running `Report([DataDriftPreset()])` on each window against the training
//! inputs, over the same 14 columns (`monitoring_peer.py`, in a venv of its own: Evidently
//! needs pandas below 3). Medians of `--runs` (at least 3).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    json_of,
    serve::{free_port, in_dir, in_scratch, start, velo_project},
};
use crate::{python, root};

/// Rows of the drift measurement.
const DRIFT_ROWS: u64 = 10_000_000;

/// Rows of the day, and of each hour.
const DAY_ROWS: usize = 240_000;
const WINDOWS: usize = 24;

/// Runs the comparison and prints the table.
pub(crate) fn compare(data_dir: &Path, runs: usize) -> Result<()> {
    if !cfg!(unix) {
        bail!("the monitoring benchmark runs on Unix only");
    }
    let evidently = python::ensure_side_venv(&root(), "evidently", python::EVIDENTLY_REQUIREMENTS)?;
    let runs = runs.max(3);
    in_scratch("monitoring-bench", data_dir, |velo, data_dir, scratch| {
        let project = velo_project(velo, data_dir, scratch, "configs/training.yaml")?;
        // The day: synth rows with the bike schema (the train split of 300,000 is 240,000).
        let day = scratch.join("day");
        in_dir(
            Command::new(velo)
                .args([
                    "data",
                    "synth",
                    "--rows",
                    &(DAY_ROWS * 5 / 4).to_string(),
                    "--out",
                ])
                .arg(&day),
            &project,
        )?;
        let logs = scratch.join("logs");
        let port = free_port()?;
        let server = start(
            Command::new(velo)
                .args([
                    "serve",
                    "-m",
                    "models:/bikes@Champion",
                    "-p",
                    &port.to_string(),
                ])
                .arg("--log-predictions")
                .arg(&logs)
                .current_dir(&project)
                .env_remove("MLFLOW_TRACKING_URI")
                .env_remove("MLFLOW_REGISTRY_URI"),
            port,
            &scratch.join("velo-serve.log"),
        )?;
        let peer = root().join("xtask/assets/monitoring_peer.py");
        json_of(
            Command::new(python::venv_python(&root()))
                .arg(&peer)
                .arg("feed")
                .arg(format!("http://127.0.0.1:{port}/invocations"))
                .arg(day.join("inputs_train.parquet"))
                .arg("1000"),
        )?;
        // SIGTERM: the server writes what it holds and exits.
        drop(server);

        let job = format!(
            "job: {{inputs: null, targets: null, logs: '{}', window: {{rows: {}}}, skip: [], \
             outputs: {{}}}}",
            logs.display(),
            DAY_ROWS / WINDOWS
        );
        let mut seconds = Vec::with_capacity(runs);
        let mut last = String::new();
        for _ in 0..runs {
            let started = Instant::now();
            let output = Command::new(velo)
                .args(["run", "configs/monitoring.yaml", "-e", &job])
                .current_dir(&project)
                .env_remove("MLFLOW_TRACKING_URI")
                .env_remove("MLFLOW_REGISTRY_URI")
                .output()
                .context("cannot start velo run")?;
            seconds.push(started.elapsed());
            if !output.status.success() {
                bail!(
                    "the monitoring job failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            last = String::from_utf8_lossy(&output.stdout).into_owned();
        }
        let velo_seconds = median(&mut seconds).as_secs_f64();
        let windows_line = last
            .lines()
            .find(|line| line.contains("window(s)"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let velo_drifted: usize = last
            .lines()
            .find_map(|line| line.trim().strip_prefix("windows_drifted = "))
            .and_then(|value| value.parse::<f64>().ok())
            .map_or(0, |value| value as usize);
        let peer = json_of(
            Command::new(&evidently)
                .arg(&peer)
                .arg("evidently")
                .arg(project.join("data/inputs_train.parquet"))
                .arg(&logs)
                .arg(WINDOWS.to_string())
                .arg(runs.to_string()),
        )?;
        let peer_seconds = peer["median_seconds"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| monitoring a day of logged predictions | velo | Evidently 0.7.23 | ratio | target |"
        );
        println!("|---|---:|---:|---:|---|");
        println!(
            "| {DAY_ROWS} rows, {WINDOWS} windows, 14 columns (velo also the predictions, read from the log, and the loss estimate), median of {runs} (s) | {velo_seconds:.3} | {peer_seconds:.3} | {:.1}x faster | < 1 s ({}) |",
            peer_seconds / velo_seconds,
            if velo_seconds < 1.0 { "met" } else { "missed" }
        );
        println!(
            "| windows drifted (dataset share >= 0.5) | {velo_drifted} | {} | | |",
            peer["drifted_windows"]
        );
        eprintln!("xtask: velo: {windows_line}");
        Ok(())
    })?;
    // Drift over 10 M rows, streamed: velo's bench binary, built once.
    let drift = super::velo_bench_json(
        "drift",
        &[
            "--rows".into(),
            DRIFT_ROWS.to_string().into(),
            "--data-dir".into(),
            data_dir.as_os_str().to_owned(),
        ],
    )?;
    let number = |key: &str| drift[key].as_f64().unwrap_or(f64::NAN);
    let seconds = number("drift_seconds");
    println!(
        "| drift over {DRIFT_ROWS} streamed rows, {} columns ({} drifted) against the training profile (s) | {seconds:.2} | not run (about 77 µs a row on the day above: some 13 minutes) | | < 5 s ({}) |",
        drift["columns"],
        drift["drifted_columns"],
        if seconds < 5.0 { "met" } else { "missed" }
    );
    println!(
        "| peak resident set after 1 M rows / after {DRIFT_ROWS} (MB) | {:.0} / {:.0} | | | flat |",
        number("peak_rss_mb_after_1m_rows"),
        number("peak_rss_mb_after_all_rows")
    );
    Ok(())
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}
