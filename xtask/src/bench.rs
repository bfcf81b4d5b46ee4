//! `cargo xtask bench [--reference] [--tracking] [--chain [--package PATH]] [--scenarios] [--stress] [--leaderboard] [--monitoring] [--runs N]
//! [--data-dir DIR] [--fuzz SECONDS]`: criterion benches; the side-by-side comparison with the
//! reference harness `../shared/bench/sklearn_baseline.py` (as shipped, one core, and at its
//! best with `--n-jobs -1`) and, after it, the tracking and registry comparison with MLflow's
//! Python client (`--tracking` runs only that one, see `tracking_bench`), printed as ratios; the
//! six lifecycle jobs against the reference package's own (`--chain`, see `chain_bench`);
//! `velo serve` against `mlflow models serve` under wrk (`--serve`, see `serve_bench`); scenario
//! testing's speed against a pandas peer (`--scenarios`); the stress job against velo's server and
//! `mlflow models serve` side by side (`--stress`); velo's leaderboard with scikit-learn, LightGBM
//! and XGBoost as peers on the same folds (`--leaderboard`); the monitoring job over a day of
//! logged predictions against Evidently (`--monitoring`, see `monitoring_bench`); and
//! the loader fuzz targets in `fuzz/` (cargo fuzz).

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cargo_bin, python, root, run};

/// Options of the bench task.
struct Options {
    reference: bool,
    /// Only the tracking and registry comparison.
    tracking: bool,
    /// Only the six-job chain against the reference package checked out at this path.
    chain: Option<PathBuf>,
    /// Only `velo serve` against `mlflow models serve`.
    serve: bool,
    /// Only the Kafka job against the broker's ceiling.
    kafka: bool,
    /// Only scenario testing: the shipped suite and perturbation throughput, against pandas.
    scenarios: bool,
    /// Only the stress job: velo's server and `mlflow models serve` side by side.
    stress: bool,
    /// Only the leaderboard: velo's models and the Python peers on the same folds.
    leaderboard: bool,
    /// Only the monitoring job over a day of logged predictions, against Evidently.
    monitoring: bool,
    /// Seconds each fuzz target runs, when fuzzing was asked for.
    fuzz: Option<u64>,
    runs: usize,
    data_dir: PathBuf,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        reference: false,
        tracking: false,
        chain: None,
        serve: false,
        kafka: false,
        scenarios: false,
        stress: false,
        leaderboard: false,
        monitoring: false,
        fuzz: None,
        runs: 1,
        data_dir: root().join("../shared/data/bike-sharing"),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--reference" => options.reference = true,
            "--tracking" => options.tracking = true,
            "--serve" => options.serve = true,
            "--kafka" => options.kafka = true,
            "--scenarios" => options.scenarios = true,
            "--stress" => options.stress = true,
            "--leaderboard" => options.leaderboard = true,
            "--monitoring" => options.monitoring = true,
            "--chain" => {
                options.chain = Some(
                    std::env::var_os("VELO_REFERENCE_PACKAGE")
                        .map_or_else(|| root().join("../mlops-python-package"), PathBuf::from),
                );
            }
            "--package" => {
                options.chain = Some(iter.next().context("--package needs a path")?.into());
            }
            "--runs" => options.runs = iter.next().context("--runs needs a number")?.parse()?,
            "--fuzz" => {
                let seconds = iter.next().context("--fuzz needs a number of seconds")?;
                options.fuzz = Some(
                    seconds
                        .parse()
                        .context("--fuzz needs a number of seconds")?,
                );
            }
            "--data-dir" => {
                options.data_dir = iter.next().context("--data-dir needs a path")?.into();
            }
            other => bail!(
                "unknown bench option `{other}` (expected --reference, --tracking, --chain, --package PATH, --serve, --kafka, --scenarios, --stress, --leaderboard, --monitoring, --runs N, --data-dir DIR, --fuzz SECONDS)"
            ),
        }
    }
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(options)
}

/// The fuzz targets of `fuzz/`, each fed the loaders for `seconds`.
const FUZZ_TARGETS: &[&str] = &[
    "artifact_bytes",
    "forest_artifact",
    "request_body",
    "kafka_record",
];

/// Runs every fuzz target for `seconds` with cargo fuzz (installed on first use). libFuzzer
/// needs sanitizer flags that only nightly accepts; `RUSTC_BOOTSTRAP=1` lets the pinned stable
/// toolchain take them, for this command only. A crash stops the run with the fuzzer's report
/// and the crashing input saved under `fuzz/artifacts/`.
fn fuzz(seconds: u64) -> Result<()> {
    if !crate::has(&cargo_bin(), Some("fuzz")) {
        run(Command::new(cargo_bin()).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let dir = root().join("fuzz");
    for target in FUZZ_TARGETS {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        run(Command::new(cargo_bin())
            .current_dir(&dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target, "--", "-rss_limit_mb=2048"])
            .arg(format!("-max_total_time={seconds}")))?;
    }
    Ok(())
}

/// Runs a command and parses its standard output as one JSON object.
pub(crate) fn json_of(command: &mut Command) -> Result<Value> {
    command.current_dir(root());
    let shown = format!("{command:?}");
    eprintln!("xtask: $ {shown}");
    let output = command
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // The result is the last line holding a JSON object, or else everything from the first `{`
    // (libraries may print lines of their own before it).
    if let Some(line) = text
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with('{'))
        && let Ok(value) = serde_json::from_str(line)
    {
        return Ok(value);
    }
    let start = text.find('{').context("no JSON object in the output")?;
    serde_json::from_str(&text[start..])
        .with_context(|| format!("cannot parse the output of {shown}"))
}

/// The median, key by key, of numeric fields over several runs (other fields from the first).
pub(crate) fn median_of(runs: &[Value]) -> Value {
    let Some(first) = runs.first() else {
        return Value::Null;
    };
    match first {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, _)| {
                    let values: Vec<Value> = runs
                        .iter()
                        .filter_map(|run| run.get(key).cloned())
                        .collect();
                    (key.clone(), median_of(&values))
                })
                .collect(),
        ),
        Value::Number(_) => {
            let mut numbers: Vec<f64> = runs.iter().filter_map(Value::as_f64).collect();
            numbers.sort_by(f64::total_cmp);
            numbers
                .get(numbers.len() / 2)
                .copied()
                .map_or(Value::Null, Value::from)
        }
        other => other.clone(),
    }
}

/// Runs the bench task.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    if let Some(seconds) = options.fuzz {
        fuzz(seconds)?;
        if !options.reference
            && !options.tracking
            && options.chain.is_none()
            && !options.serve
            && !options.kafka
            && !options.scenarios
            && !options.stress
            && !options.leaderboard
            && !options.monitoring
        {
            return Ok(());
        }
    }
    if options.serve {
        return crate::serve_bench::compare(&options.data_dir, options.runs);
    }
    if options.kafka {
        return crate::kafka_bench::compare(&options.data_dir, 100_000, options.runs.max(5));
    }
    if options.scenarios {
        return scenarios(&options.data_dir, options.runs.max(5));
    }
    if options.stress {
        return crate::serve_bench::stress(&options.data_dir);
    }
    if options.leaderboard {
        return crate::leaderboard_bench::compare(&options.data_dir);
    }
    if options.monitoring {
        return crate::monitoring_bench::compare(&options.data_dir, options.runs);
    }
    if let Some(package) = &options.chain {
        return crate::chain_bench::compare(package, &options.data_dir, options.runs);
    }
    if options.tracking {
        return crate::tracking_bench::compare(options.runs, TRACKING_REPEATS);
    }
    if !options.reference {
        return run(Command::new(cargo_bin()).args(["bench", "--workspace", "--locked"]));
    }
    let data_dir = options.data_dir.canonicalize().with_context(|| {
        format!(
            "the reference data {} is missing",
            options.data_dir.display()
        )
    })?;
    let script = root().join("../shared/bench/sklearn_baseline.py");
    if !script.exists() {
        bail!("the reference harness {} is missing", script.display());
    }
    python::ensure_venv(&root())?;
    python::ensure_packages(&root(), python::BENCH_REQUIREMENTS)?;
    let python = python::venv_python(&root());
    // Build velo's harness once, outside the measured runs.
    run(Command::new(cargo_bin()).args([
        "bench",
        "--locked",
        "-p",
        "velo-jobs",
        "--bench",
        "reference",
        "--no-run",
    ]))?;

    let mut shipped = Vec::new();
    let mut best = Vec::new();
    let mut velo = Vec::new();
    for run_index in 1..=options.runs {
        eprintln!("xtask: run {run_index} of {}", options.runs);
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
        velo.push(json_of(
            Command::new(cargo_bin())
                .args([
                    "bench",
                    "--locked",
                    "--quiet",
                    "-p",
                    "velo-jobs",
                    "--bench",
                    "reference",
                    "--",
                    "--data-dir",
                ])
                .arg(&data_dir),
        )?);
    }
    let (shipped, best, velo) = (median_of(&shipped), median_of(&best), median_of(&velo));
    print!("{}", table(&velo, &shipped, &best, options.runs));
    crate::tracking_bench::compare(options.runs, TRACKING_REPEATS)
}

/// Builds velo-jobs' bench binary `name` (outside any measurement), runs it with `args` and
/// reads the one JSON object it prints.
pub(crate) fn velo_bench_json(name: &str, args: &[std::ffi::OsString]) -> Result<Value> {
    run(Command::new(cargo_bin()).args([
        "bench",
        "--locked",
        "-p",
        "velo-jobs",
        "--bench",
        name,
        "--no-run",
    ]))?;
    json_of(
        Command::new(cargo_bin())
            .args([
                "bench",
                "--locked",
                "--quiet",
                "-p",
                "velo-jobs",
                "--bench",
                name,
                "--",
            ])
            .args(args),
    )
}

/// Rows perturbed by each side of the scenarios comparison.
const SCENARIO_ROWS: u64 = 10_000_000;

/// The scenarios comparison: velo's bench (`crates/velo-jobs/benches/scenarios.rs`, built once)
/// and the pandas peer (`scenarios_peer.py`), printed side by side with the targets.
fn scenarios(data_dir: &std::path::Path, runs: usize) -> Result<()> {
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
            .arg(root().join("xtask/src/scenarios_peer.py"))
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

/// Timed iterations of each tracking step per run (after one untimed warm-up).
const TRACKING_REPEATS: usize = 10;

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
    fn medians_are_taken_key_by_key() {
        let runs = [
            serde_json::json!({"a": 1.0, "b": {"c": 5.0}, "s": "x"}),
            serde_json::json!({"a": 3.0, "b": {"c": 4.0}, "s": "y"}),
            serde_json::json!({"a": 2.0, "b": {"c": 6.0}, "s": "z"}),
        ];
        let median = median_of(&runs);
        assert_eq!(median["a"], 2.0);
        assert_eq!(median["b"]["c"], 5.0);
        assert_eq!(median["s"], "x");
    }

    #[test]
    fn ratios_favour_velo_above_one() {
        let fit = &ROWS[0];
        assert!((advantage(fit, 1.0, 10.0) - 10.0).abs() < 1e-12);
        let throughput = &ROWS[2];
        assert!((advantage(throughput, 40.0, 10.0) - 4.0).abs() < 1e-12);
    }
}
