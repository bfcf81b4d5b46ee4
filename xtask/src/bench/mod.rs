//! `cargo xtask bench`: velo side by side with its peers on the same machine in one run,
//! printed as ratios (medians over `--runs`), one module per comparison; without a comparison,
//! the criterion benches of the workspace.
//!
//! - `--reference`: [`reference`](mod@reference) (scikit-learn's harness), then [`tracking`] (MLflow's client);
//! - `--chain [--package PATH]`: [`chain`], the six jobs of the reference package;
//! - `--serve`, `--stress`: [`serve`], `velo serve` against `mlflow models serve`;
//! - `--kafka`: [`kafka`]; `--scenarios`: [`scenarios`]; `--leaderboard`: [`leaderboard`];
//!   `--monitoring`: [`monitoring`]; `--queue`: [`queue`]; `--fuzz SECONDS`: [`fuzz`].

mod chain;
mod fuzz;
mod kafka;
mod leaderboard;
mod monitoring;
mod queue;
mod reference;
mod scenarios;
mod serve;
mod tracking;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cargo_bin, flags, root, run};

pub(crate) use chain::copy_dir;

/// Runs the bench task.
pub(crate) fn bench(options: &flags::Bench) -> Result<()> {
    let runs = options.runs as usize;
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| root().join("../shared/data/bike-sharing"));
    let chain = options.package.clone().or_else(|| {
        options.chain.then(|| {
            std::env::var_os("VELO_REFERENCE_PACKAGE")
                .map_or_else(|| root().join("../mlops-python-package"), PathBuf::from)
        })
    });
    if let Some(seconds) = options.fuzz {
        fuzz::run_targets(seconds)?;
    }
    if options.serve {
        serve::compare(&data_dir, runs)
    } else if options.kafka {
        kafka::compare(&data_dir, 100_000, runs.max(5))
    } else if options.scenarios {
        scenarios::compare(&data_dir, runs.max(5))
    } else if options.stress {
        serve::stress(&data_dir)
    } else if options.leaderboard {
        leaderboard::compare(&data_dir)
    } else if options.monitoring {
        monitoring::compare(&data_dir, runs)
    } else if options.queue {
        queue::compare(runs)
    } else if let Some(package) = &chain {
        chain::compare(package, &data_dir, runs)
    } else if options.tracking {
        tracking::compare(runs, reference::TRACKING_REPEATS)
    } else if options.reference {
        reference::compare(&data_dir, runs)
    } else if options.fuzz.is_some() {
        Ok(())
    } else {
        run(Command::new(cargo_bin()).args(["bench", "--workspace", "--locked"]))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
