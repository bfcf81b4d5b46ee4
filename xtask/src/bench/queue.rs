//! `cargo xtask bench --queue [--runs N]`: velo's PostgreSQL work queue against Optuna's
//! `RDBStorage`, on the same private PostgreSQL cluster in one run: tasks (trials) claimed and
//! completed per second by two workers with a trivial objective (`crates/velo-io/benches/
//! queue.rs`, threads with a connection each; `xtask/assets/optuna_queue.py`, two processes
//! on one study with the random sampler). Medians of `--runs` (at least 3), alternating.

use std::process::Command;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{json_of, median_of};
use crate::{cargo_bin, python, root};

/// Optuna and its PostgreSQL driver, in a venv of their own.
const OPTUNA_REQUIREMENTS: &[&str] = &["optuna==4.6.0", "psycopg[binary]==3.3.9"];

/// Tasks (trials) per run, and workers.
const TASKS: usize = 1_000;
const WORKERS: usize = 2;

pub(crate) fn compare(runs: usize) -> Result<()> {
    let runs = runs.max(3);
    let python = python::ensure_side_venv(&root(), "optuna", OPTUNA_REQUIREMENTS)?;
    let bin = velo_child::postgres::bin_dir()
        .context("PostgreSQL is not installed (`cargo xtask install` installs it)")?;
    let postgres =
        velo_child::postgres::Postgres::start(&bin).context("cannot start a PostgreSQL cluster")?;
    let mut velo_runs = Vec::new();
    let mut optuna_runs = Vec::new();
    for run in 0..runs {
        // A fresh database per run and side: neither inherits the other's rows.
        let (velo_db, optuna_db) = (format!("velo{run}"), format!("optuna{run}"));
        postgres.create_database(&velo_db)?;
        postgres.create_database(&optuna_db)?;
        velo_runs.push(json_of(
            Command::new(cargo_bin())
                .args([
                    "bench",
                    "--locked",
                    "--quiet",
                    "-p",
                    "velo-io",
                    "--bench",
                    "queue",
                    "--",
                    "--url",
                    &postgres.url(&velo_db),
                    "--tasks",
                    &TASKS.to_string(),
                    "--workers",
                    &WORKERS.to_string(),
                ])
                .current_dir(root()),
        )?);
        // SQLAlchemy's URL names its driver (psycopg 3).
        let optuna_url =
            postgres
                .url(&optuna_db)
                .replacen("postgresql://", "postgresql+psycopg://", 1);
        optuna_runs.push(json_of(Command::new(&python).args([
            root().join("xtask/assets/optuna_queue.py").as_os_str(),
            "--url".as_ref(),
            optuna_url.as_ref(),
            "--trials".as_ref(),
            TASKS.to_string().as_ref(),
            "--workers".as_ref(),
            WORKERS.to_string().as_ref(),
        ]))?);
    }
    let (velo, optuna) = (median_of(&velo_runs), median_of(&optuna_runs));
    let rate = |value: &Value, key: &str| value[key].as_f64().unwrap_or(f64::NAN);
    let (velo_rate, optuna_rate) = (
        rate(&velo, "tasks_per_second"),
        rate(&optuna, "trials_per_second"),
    );
    println!("work queue on PostgreSQL, {TASKS} tasks, {WORKERS} workers, medians of {runs} runs:");
    println!("  velo   (velo_io::queue)        {velo_rate:>10.0} tasks/s");
    println!(
        "  Optuna {} (RDBStorage)  {optuna_rate:>10.0} trials/s",
        optuna["optuna"].as_str().unwrap_or("?")
    );
    println!("  velo / Optuna: {:.1}x", velo_rate / optuna_rate);
    println!(
        "{}",
        serde_json::json!({"velo": velo, "optuna": optuna, "ratio": velo_rate / optuna_rate})
    );
    Ok(())
}
