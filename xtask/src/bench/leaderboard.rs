//! `cargo xtask bench --leaderboard [--data-dir DIR]`: velo's `configs/benchmark.yaml` with
//! scikit-learn's forest and histogram boosting, LightGBM and XGBoost as peers on the same
//! folds (`leaderboard_peers.py`), in one run: prints the board and the targets.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{python, root};

/// One row of the printed board: the entry, its mean RMSE and its mean fit time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) entry: String,
    pub(crate) rmse: f64,
    pub(crate) fit_seconds: f64,
}

/// The rows of the job's Markdown board (`| rank | entry | kind | rmse ± std | … | fit (s) |`).
pub(crate) fn parse_board(text: &str) -> Vec<Row> {
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in text
        .lines()
        .filter(|line| line.trim_start().starts_with('|'))
    {
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect();
        if header.is_empty() {
            header = cells;
            continue;
        }
        let at = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .and_then(|i| cells.get(i))
        };
        let number = |cell: Option<&String>| {
            cell.and_then(|c| c.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        if let Some(entry) = at("entry") {
            if entry.starts_with("---") {
                continue;
            }
            rows.push(Row {
                entry: entry.clone(),
                rmse: number(at("root_mean_squared_error")),
                fit_seconds: number(at("fit (s)")),
            });
        }
    }
    rows
}

/// Runs the comparison and prints the board and the targets.
pub(crate) fn compare(data_dir: &Path) -> Result<()> {
    super::serve::in_scratch("leaderboard", data_dir, compare_in)
}

fn compare_in(velo: &Path, data_dir: &Path, scratch: &Path) -> Result<()> {
    let project = super::serve::velo_project(velo, data_dir, scratch, "configs/training.yaml")?;
    let velo_in = |args: &[&str]| -> Result<String> {
        let output = Command::new(velo)
            .args(args)
            .current_dir(&project)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI")
            .output()
            .with_context(|| format!("cannot run velo {args:?}"))?;
        if !output.status.success() {
            bail!(
                "velo {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let peers = scratch.join("peers.parquet");
    let status = Command::new(python::venv_python(&root()))
        .arg(root().join("xtask/assets/leaderboard_peers.py"))
        .arg(data_dir)
        .arg(&peers)
        .status()
        .context("cannot run the peers")?;
    if !status.success() {
        bail!("the peers failed with {status}");
    }
    let extras = format!(
        "job: {{peers: {{KIND: ParquetReader, path: '{}'}}}}",
        peers.display()
    );
    let board = velo_in(&["run", "configs/benchmark.yaml", "-e", &extras])?;
    print!("{board}");
    let rows = parse_board(&board);
    let find = |name: &str| rows.iter().find(|row| row.entry == name);
    let (Some(boosting), Some(lightgbm), Some(forest), Some(sklearn)) = (
        find("boosting"),
        find("lightgbm"),
        find("forest"),
        find("sklearn_forest"),
    ) else {
        bail!("the board lacks an entry the targets compare:\n{board}");
    };
    let verdict = |met: bool| if met { "met" } else { "missed" };
    println!();
    println!("| target | velo | peer | ratio | |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| boosting RMSE <= LightGBM's | {:.4} | {:.4} | {:.3}x | {} |",
        boosting.rmse,
        lightgbm.rmse,
        boosting.rmse / lightgbm.rmse,
        verdict(boosting.rmse <= lightgbm.rmse)
    );
    println!(
        "| boosting fits faster than LightGBM (s) | {:.3} | {:.3} | {:.2}x faster | {} |",
        boosting.fit_seconds,
        lightgbm.fit_seconds,
        lightgbm.fit_seconds / boosting.fit_seconds,
        verdict(boosting.fit_seconds < lightgbm.fit_seconds)
    );
    println!(
        "| forest RMSE as scikit-learn's (within 2%) | {:.4} | {:.4} | {:.3}x | {} |",
        forest.rmse,
        sklearn.rmse,
        forest.rmse / sklearn.rmse,
        verdict(forest.rmse <= sklearn.rmse * 1.02)
    );
    println!(
        "| forest fits >= 10x faster than scikit-learn's, n_jobs=-1 (s) | {:.3} | {:.3} | {:.1}x faster | {} |",
        forest.fit_seconds,
        sklearn.fit_seconds,
        sklearn.fit_seconds / forest.fit_seconds,
        verdict(sklearn.fit_seconds >= 10.0 * forest.fit_seconds)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markdown_board_is_read_by_column_name() {
        let text = "BenchmarkJob finished\n| rank | entry | kind | root_mean_squared_error | wins | fit (s) |\n|---:|---|---|---:|---:|---:|\n| 1 | boosting | GradientBoostingModel | 40.9720 ± 10.6042 | 2/3 | 3.305 |\n| 2 | mean | baseline | 92.6 ± 19.3 | 0/3 | – |\n";
        let rows = parse_board(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].entry, "boosting");
        assert!((rows[0].rmse - 40.972).abs() < 1e-9);
        assert!((rows[0].fit_seconds - 3.305).abs() < 1e-9);
        assert!(rows[1].fit_seconds.is_nan());
    }
}
