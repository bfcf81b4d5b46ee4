//! `cargo xtask bench --reference [--runs N] [--data-dir DIR]`: velo's harness
//! (`crates/velo-jobs/benches/reference.rs`) and `../shared/bench/sklearn_baseline.py` (as
//! shipped, one core, and at its best with `--n-jobs -1`) on the same data, split and parity
//! features, printed as ratios against the targets; then the tracking comparison.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{json_of, median_of};
use crate::{python, root};

/// Runs the comparison `runs` times and prints the medians' ratios.
pub(super) fn compare(data_dir_arg: &Path, runs: usize) -> Result<()> {
    let data_dir = data_dir_arg
        .canonicalize()
        .with_context(|| format!("the reference data {} is missing", data_dir_arg.display()))?;
    let script = root().join("../shared/bench/sklearn_baseline.py");
    if !script.exists() {
        bail!("the reference harness {} is missing", script.display());
    }
    python::ensure_venv(&root())?;
    python::ensure_packages(&root(), python::BENCH_REQUIREMENTS)?;
    let python = python::venv_python(&root());

    let mut shipped = Vec::new();
    let mut best = Vec::new();
    let mut velo = Vec::new();
    for run_index in 1..=runs {
        eprintln!("xtask: run {run_index} of {}", runs);
        let reference = |extra: &[&str]| {
            json_of(
                Command::new(&python)
                    .arg(&script)
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .args(extra),
            )
        };
        shipped.push(reference(&[])?);
        best.push(reference(&["--n-jobs", "-1"])?);
        velo.push(super::velo_bench_json(
            "reference",
            &["--data-dir".into(), data_dir.clone().into_os_string()],
        )?);
    }
    let (shipped, best, velo) = (median_of(&shipped), median_of(&best), median_of(&velo));
    print!("{}", table(&velo, &shipped, &best, runs));
    super::tracking::compare(runs, TRACKING_REPEATS)
}

/// Timed iterations of each tracking step per run (after one untimed warm-up).
pub(super) const TRACKING_REPEATS: usize = 10;

/// One row of the comparison: how to read a figure and which way is better.
struct Row {
    label: &'static str,
    key: &'static str,
    /// The reference's figure compared with velo's `key` (the same key when `None`).
    reference_key: Option<&'static str>,
    /// True when a larger figure is better (throughput, R2).
    larger_is_better: bool,
    /// The target ratio against the reference as shipped, if the issue sets one.
    target: Option<f64>,
}

const ROWS: &[Row] = &[
    Row {
        label: "fit (s)",
        key: "fit_seconds",
        reference_key: None,
        larger_is_better: false,
        target: Some(10.0),
    },
    Row {
        label: "1-row predict (ms)",
        key: "predict_one_row_median_ms",
        reference_key: None,
        larger_is_better: false,
        target: Some(500.0),
    },
    Row {
        label: "batch predict (rows/s)",
        key: "rows_per_second",
        reference_key: None,
        larger_is_better: true,
        target: Some(4.0),
    },
    Row {
        label: "SHAP, 100 samples (s)",
        key: "shap_seconds",
        reference_key: None,
        larger_is_better: false,
        target: Some(5.0),
    },
    Row {
        label: "peak RSS (MB)",
        key: "peak_rss_mb",
        reference_key: None,
        larger_is_better: false,
        target: Some(4.0),
    },
    Row {
        label: "test RMSE",
        key: "rmse",
        reference_key: None,
        larger_is_better: false,
        target: Some(1.0),
    },
    Row {
        label: "test MAE",
        key: "mae",
        reference_key: None,
        larger_is_better: false,
        target: None,
    },
    Row {
        label: "test R2",
        key: "r2",
        reference_key: None,
        larger_is_better: true,
        target: None,
    },
    Row {
        label: "tuning: grid max_depth 3/5/7, 4 folds, refit (s)",
        key: "tuning_seconds",
        reference_key: None,
        larger_is_better: false,
        target: Some(10.0),
    },
    Row {
        label: "gradient boosting fit (s), vs the reference forest",
        key: "gbm_fit_seconds",
        reference_key: Some("fit_seconds"),
        larger_is_better: false,
        target: None,
    },
    Row {
        label: "gradient boosting test RMSE, vs the reference forest",
        key: "gbm_rmse",
        reference_key: Some("rmse"),
        larger_is_better: false,
        target: None,
    },
    Row {
        label: "neural net fit (s), vs the reference forest",
        key: "nn_fit_seconds",
        reference_key: Some("fit_seconds"),
        larger_is_better: false,
        target: None,
    },
    Row {
        label: "neural net test RMSE, vs the reference forest",
        key: "nn_rmse",
        reference_key: Some("rmse"),
        larger_is_better: false,
        target: None,
    },
];

/// How many times better velo is (>1 means velo wins).
fn advantage(row: &Row, velo: f64, reference: f64) -> f64 {
    if row.larger_is_better {
        velo / reference
    } else {
        reference / velo
    }
}

fn table(velo: &Value, shipped: &Value, best: &Value, runs: usize) -> String {
    let mut out = format!(
        "\nvelo vs scikit-learn reference (medians of {runs} run(s); ratio > 1 means velo is better)\n\n\
         | figure | velo | sklearn as shipped | ratio | target | sklearn --n-jobs -1 | ratio |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for row in ROWS {
        let reference_key = row.reference_key.unwrap_or(row.key);
        let (Some(v), Some(s), Some(b)) = (
            velo[row.key].as_f64(),
            shipped[reference_key].as_f64(),
            best[reference_key].as_f64(),
        ) else {
            continue;
        };
        let target = row.target.map_or_else(String::new, |t| {
            let ok = if advantage(row, v, s) >= t {
                "met"
            } else {
                "NOT met"
            };
            format!(">= {t}x ({ok})")
        });
        out.push_str(&format!(
            "| {} | {v:.4} | {s:.4} | {:.2}x | {target} | {b:.4} | {:.2}x |\n",
            row.label,
            advantage(row, v, s),
            advantage(row, v, b),
        ));
    }
    // Medians turn every number into a float.
    if let (Some(v), Some(s)) = (
        velo["tuning_best_max_depth"].as_f64(),
        shipped["tuning_best_max_depth"].as_f64(),
    ) {
        let same = if v == s { "same" } else { "DIFFERENT" };
        out.push_str(&format!(
            "\ntuning best max_depth: velo {v}, scikit-learn {s} ({same}); best mean MSE velo {:.2}, scikit-learn {:.2}\n",
            -velo["tuning_best_mean_score"].as_f64().unwrap_or(f64::NAN),
            -shipped["tuning_best_mean_score"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    if let Some(ns) = velo["ns_per_tree_per_row"].as_f64() {
        out.push_str(&format!(
            "\nvelo batch prediction: {ns:.2} ns per tree per row\n"
        ));
    }
    if let Some(error) = velo["shap_additivity_max_relative_error"].as_f64() {
        out.push_str(&format!(
            "velo SHAP additivity: max relative error {error:.2e}\n"
        ));
    }
    if let Some(rho) = spearman_per_column(&velo["shap_mean_abs"], &shipped["shap_mean_abs"]) {
        out.push_str(&format!(
            "rank agreement (Spearman) of mean |SHAP| per column, velo vs reference: {rho:.3}\n"
        ));
    }
    out
}

/// Sums scikit-learn's encoded names (`categoricals__season_1`, `numericals__hr`) per original
/// column, given velo's original column names.
fn per_column(reference: &serde_json::Map<String, Value>, columns: &[&String]) -> Vec<f64> {
    columns
        .iter()
        .map(|column| {
            reference
                .iter()
                .filter(|(name, _)| {
                    let bare = name
                        .split_once("__")
                        .map_or(name.as_str(), |(_, bare)| bare);
                    bare == column.as_str()
                        || bare
                            .strip_prefix(column.as_str())
                            .is_some_and(|rest| rest.starts_with('_'))
                })
                .filter_map(|(_, value)| value.as_f64())
                .sum()
        })
        .collect()
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0 + 1.0;
        for &index in &order[start..=end] {
            ranks[index] = rank;
        }
        start = end + 1;
    }
    ranks
}

/// Spearman's rank correlation of velo's and the reference's mean |SHAP| per column.
fn spearman_per_column(velo: &Value, reference: &Value) -> Option<f64> {
    let velo = velo.as_object()?;
    let reference = reference.as_object()?;
    let columns: Vec<&String> = velo.keys().collect();
    let ours: Vec<f64> = columns.iter().filter_map(|c| velo[*c].as_f64()).collect();
    let theirs = per_column(reference, &columns);
    if ours.len() != theirs.len() || ours.len() < 2 {
        return None;
    }
    let (a, b) = (ranks(&ours), ranks(&theirs));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let covariance: f64 = a.iter().zip(&b).map(|(x, y)| (x - mean) * (y - mean)).sum();
    let spread = |r: &[f64]| r.iter().map(|x| (x - mean).powi(2)).sum::<f64>().sqrt();
    Some(covariance / (spread(&a) * spread(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_is_one_for_the_same_order_and_handles_encoded_names() {
        let velo = serde_json::json!({"season": 1.0, "hr": 3.0, "temp": 2.0});
        let reference = serde_json::json!({
            "categoricals__season_1": 0.5, "categoricals__season_2": 0.6,
            "numericals__hr": 30.0, "numericals__temp": 2.0
        });
        let rho = spearman_per_column(&velo, &reference).expect("rho");
        assert!((rho - 1.0).abs() < 1e-12, "{rho}");
        let reversed = serde_json::json!({"season": 3.0, "hr": 1.0, "temp": 2.0});
        let rho = spearman_per_column(&reversed, &reference).expect("rho");
        assert!((rho + 1.0).abs() < 1e-12, "{rho}");
    }

    #[test]
    fn ratios_favour_velo_above_one() {
        let fit = &ROWS[0];
        assert!((advantage(fit, 1.0, 10.0) - 10.0).abs() < 1e-12);
        let throughput = &ROWS[2];
        assert!((advantage(throughput, 40.0, 10.0) - 4.0).abs() < 1e-12);
    }
}
