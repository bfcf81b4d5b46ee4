//! `cargo xtask bench --scenarios`: the shipped scenario suite on the bike test split and
//! perturbation throughput on 10 M synthetic rows, against the same perturbations in pandas.

use std::process::Command;

use anyhow::Result;

use serde_json::Value;

use super::{json_of, velo_bench_json};
use crate::{python, root};

/// Rows perturbed by each side of the scenarios comparison.
const SCENARIO_ROWS: u64 = 10_000_000;

/// The scenarios comparison: velo's bench (`crates/velo-jobs/benches/scenarios.rs`, built once)
/// and the pandas peer (`scenarios_peer.py`), printed side by side with the targets.
pub(super) fn compare(data_dir: &std::path::Path, runs: usize) -> Result<()> {
    python::ensure_venv(&root())?;
    let python = python::venv_python(&root());
    let velo = velo_bench_json(
        "scenarios",
        &[
            "--runs".into(),
            runs.to_string().into(),
            "--rows".into(),
            SCENARIO_ROWS.to_string().into(),
            "--data-dir".into(),
            data_dir.as_os_str().to_owned(),
        ],
    )?;
    let peer = json_of(
        Command::new(&python)
            .arg(root().join("xtask/assets/scenarios_peer.py"))
            .arg(SCENARIO_ROWS.to_string()),
    )?;
    let number =
        |value: &Value, key: &str| value.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let suite = number(&velo, "suite_median_seconds");
    let velo_rate = number(&velo, "perturb_rows_per_second");
    let peer_rate = number(&peer, "perturb_rows_per_second");
    println!("| scenario testing | velo | pandas peer | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| shipped suite on the bike test split ({} rows, {} scenarios, {} evaluations, {} checks), median of {runs} (s) | {suite:.3} | | | < 1 s ({}) |",
        velo["test_rows"],
        velo["scenarios"],
        velo["scenario_evaluations"],
        velo["checks"],
        if suite < 1.0 { "met" } else { "missed" }
    );
    println!(
        "| perturbation throughput, {SCENARIO_ROWS} rows × 4 perturbations (rows/s) | {velo_rate:.0} | {peer_rate:.0} | {:.2}x | > 1,000,000 rows/s ({}) |",
        velo_rate / peer_rate,
        if velo_rate > 1e6 { "met" } else { "missed" }
    );
    println!(
        "| peak resident set after 1 M rows / after {SCENARIO_ROWS} (MB) | {:.0} / {:.0} | | | flat |",
        number(&velo, "peak_rss_mb_after_1m_rows"),
        number(&velo, "peak_rss_mb_after_all_rows")
    );
    Ok(())
}
