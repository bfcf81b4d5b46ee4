//! `cargo xtask bench --chain --package PATH [--runs N] [--data-dir DIR]`: the six lifecycle
//! jobs of the reference package (a checkout of fmind/mlops-python-package at `PATH`) and of
//! velo, side by side in one run: wall time and peak memory of each job and of the chain.
//!
//! Each side runs as its users run it, one process per job, in a fresh work directory whose
//! `data/` links to the shared data and whose tracking store is the embedded default
//! (`./mlruns`: MLflow's file store for the reference, velo's store for velo). The reference runs
//! its own `confs/*.yaml` with `python -m bikes` from its own virtual environment; velo runs
//! `configs/*.yaml` with the release binary, with the evaluations pointed at the training split
//! as the reference's `confs/evaluations.yaml` does, so that both do the same work.
//! `xtask/assets/measure.py` times each process and reads its peak resident set from
//! `getrusage`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{root, run};

/// The reference package's Python module.
const MODULE: &str = "bikes";

/// The jobs in lifecycle order, as both projects name their config files.
const JOBS: &[&str] = &[
    "tuning",
    "training",
    "promotion",
    "inference",
    "evaluations",
    "explanations",
];

/// The data files both projects' configs read from `data/`.
const DATA_FILES: &[&str] = &[
    "inputs_train.parquet",
    "targets_train.parquet",
    "inputs_test.parquet",
    "targets_test.parquet",
];

/// velo's evaluations score the test split by default; the reference's score the training split.
const VELO_EVALUATIONS_AS_REFERENCE: &str =
    "job: {inputs: {path: data/inputs_train.parquet}, targets: {path: data/targets_train.parquet}}";

/// One measured process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Measure {
    pub(crate) seconds: f64,
    pub(crate) peak_rss_mb: f64,
}

/// Runs the comparison and prints the table.
pub(crate) fn compare(package: &Path, data_dir: &Path, runs: usize) -> Result<()> {
    let package = package.canonicalize().with_context(|| {
        format!(
            "the reference package {} is missing: clone https://github.com/fmind/mlops-python-package there, or pass --package PATH",
            package.display()
        )
    })?;
    for required in [
        "pyproject.toml",
        "src/bikes/__main__.py",
        "confs/tuning.yaml",
    ] {
        if !package.join(required).exists() {
            bail!(
                "{} is not a checkout of fmind/mlops-python-package: {required} is missing",
                package.display()
            );
        }
    }
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("the data directory {} is missing", data_dir.display()))?;
    for file in DATA_FILES {
        if !data_dir.join(file).exists() {
            bail!("{} has no {file}", data_dir.display());
        }
    }
    let reference_python = ensure_reference_venv(&package)?;
    let velo = build_velo()?;
    let measure_script = root().join("xtask/assets/measure.py");

    // Warm both sides once, untimed: the interpreter's imports and velo's binary in the page cache.
    run(Command::new(&reference_python).args(["-c", &format!("import {MODULE}.scripts")]))?;
    run(Command::new(&velo).arg("--version"))?;

    let scratch = env::temp_dir().join(format!("velo-chain-bench-{}", std::process::id()));
    let mut reference_runs = Vec::new();
    let mut velo_runs = Vec::new();
    for run_index in 1..=runs {
        eprintln!("xtask: chain run {run_index} of {runs}");
        let dir = scratch.join(format!("run-{run_index}"));
        let reference_dir = work_dir(&dir.join("reference"), &data_dir)?;
        copy_dir(&package.join("confs"), &reference_dir.join("confs"))?;
        let velo_dir = work_dir(&dir.join("velo"), &data_dir)?;
        copy_dir(&root().join("configs"), &velo_dir.join("configs"))?;

        let mut reference = Vec::new();
        let mut ours = Vec::new();
        for job in JOBS {
            let config = format!("confs/{job}.yaml");
            let mut command = measured(&reference_python, &measure_script, &reference_dir, job);
            command
                .args([reference_python.as_os_str(), "-m".as_ref(), MODULE.as_ref()])
                .arg(&config)
                .env("MLFLOW_ALLOW_FILE_STORE", "true");
            reference.push(measure(&mut command, &reference_dir, job)?);

            let config = format!("configs/{job}.yaml");
            let mut command = measured(&reference_python, &measure_script, &velo_dir, job);
            command.arg(&velo).args(["run", &config]);
            if *job == "evaluations" {
                command.args(["--extras", VELO_EVALUATIONS_AS_REFERENCE]);
            }
            ours.push(measure(&mut command, &velo_dir, job)?);
        }
        check_outputs(&reference_dir, &velo_dir)?;
        reference_runs.push(reference);
        velo_runs.push(ours);
    }
    let (reference, ours) = (medians(&reference_runs), medians(&velo_runs));
    print!("{}", table(&reference, &ours, runs));
    if let Err(error) = std::fs::remove_dir_all(&scratch) {
        eprintln!("xtask: cannot remove {}: {error}", scratch.display());
    }
    Ok(())
}

/// The reference package's virtual environment: `$VELO_REFERENCE_VENV`, else
/// `.venv-reference`, created with `$VELO_REFERENCE_PYTHON` (else the newest `python3.X`
/// found) and the package installed into it with pip, once per version of its `pyproject.toml`.
fn ensure_reference_venv(package: &Path) -> Result<PathBuf> {
    let dir = env::var_os("VELO_REFERENCE_VENV")
        .map_or_else(|| root().join(".venv-reference"), PathBuf::from);
    let python = dir.join("bin").join("python");
    let pyproject = std::fs::read_to_string(package.join("pyproject.toml"))
        .with_context(|| format!("cannot read {}/pyproject.toml", package.display()))?;
    let stamp = dir.join("velo-reference-pyproject.toml");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|done| done == pyproject) {
        eprintln!("xtask: reference venv {} is up to date", dir.display());
        return Ok(python);
    }
    if !python.exists() {
        let base = env::var("VELO_REFERENCE_PYTHON").ok().or_else(|| {
            ["python3.14", "python3.13", "python3.12", "python3"]
                .into_iter()
                .find(|candidate| crate::has(candidate, None))
                .map(str::to_owned)
        });
        let base = base.context("no Python 3 found; set VELO_REFERENCE_PYTHON")?;
        run(Command::new(base).arg("-m").arg("venv").arg(&dir))?;
    }
    // The package may ask for a newer Python than the machine has (5.0 asks for 3.14, and the
    // registries this machine reaches offer 3.13 at most); pip is told not to refuse it for that
    // alone.
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--ignore-requires-python",
        ])
        .arg(package))?;
    // On a Python older than 3.14, defer the package's annotations as 3.14 does (PEP 649);
    // the script leaves a 3.14 alone and changes nothing else.
    run(Command::new(&python)
        .arg(root().join("xtask/assets/defer_annotations.py"))
        .arg(MODULE))?;
    std::fs::write(&stamp, pyproject)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(python)
}

/// Builds velo's release binary once, outside the measured runs, and returns its path.
pub(crate) fn build_velo() -> Result<PathBuf> {
    crate::build::release_velo()
}

/// A fresh work directory with `data/` linked to the shared data and an empty `outputs/`.
fn work_dir(dir: &Path, data_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("outputs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    link_dir(data_dir, &dir.join("data"))?;
    Ok(dir.to_path_buf())
}

#[cfg(unix)]
pub(crate) fn link_dir(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))
}

#[cfg(not(unix))]
pub(crate) fn link_dir(_target: &Path, _link: &Path) -> Result<()> {
    bail!("the chain benchmark links the shared data and runs on Unix only")
}

/// Copies the files of `from` (and its subdirectories) into `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let entries =
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).with_context(|| {
                format!("cannot copy {} to {}", source.display(), target.display())
            })?;
        }
    }
    Ok(())
}

/// `python measure.py LOG --`, to be followed by the measured command.
fn measured(python: &Path, script: &Path, dir: &Path, job: &str) -> Command {
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(dir.join(format!("{job}.log")))
        .arg("--")
        .current_dir(dir);
    // Both sides use their embedded default store, whatever the caller's environment says.
    for variable in [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "VELO_PROFILE",
    ] {
        command.env_remove(variable);
    }
    command
}

/// Runs one measured job; a job that fails stops the benchmark with the end of its log.
fn measure(command: &mut Command, dir: &Path, job: &str) -> Result<Measure> {
    let shown = format!("{command:?}");
    eprintln!("xtask: $ {shown}");
    let output = command
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let value: Value = text
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .with_context(|| {
            format!(
                "measure.py printed no figures for {job}: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let status = value["status"].as_i64().unwrap_or(-1);
    if status != 0 {
        let log = dir.join(format!("{job}.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the {job} job in {} exited with {status}; the end of {}:\n{}",
            dir.display(),
            log.display(),
            tail.join("\n")
        );
    }
    let (Some(seconds), Some(peak_rss_mb)) =
        (value["seconds"].as_f64(), value["peak_rss_mb"].as_f64())
    else {
        bail!("measure.py printed no figures for {job}: {value}");
    };
    Ok(Measure {
        seconds,
        peak_rss_mb,
    })
}

/// Both chains must have written what their inference and explanation jobs promise.
fn check_outputs(reference_dir: &Path, velo_dir: &Path) -> Result<()> {
    for dir in [reference_dir, velo_dir] {
        for file in [
            "predictions_test.parquet",
            "models_explanations.parquet",
            "samples_explanations.parquet",
        ] {
            let path = dir.join("outputs").join(file);
            if !path.is_file() {
                bail!(
                    "the chain in {} did not write {}",
                    dir.display(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Job by job, the median of each figure over the runs.
pub(crate) fn medians(runs: &[Vec<Measure>]) -> Vec<Measure> {
    let jobs = runs.first().map_or(0, Vec::len);
    (0..jobs)
        .map(|job| {
            let median = |figure: fn(&Measure) -> f64| {
                let mut values: Vec<f64> = runs.iter().map(|run| figure(&run[job])).collect();
                values.sort_by(f64::total_cmp);
                values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
            };
            Measure {
                seconds: median(|m| m.seconds),
                peak_rss_mb: median(|m| m.peak_rss_mb),
            }
        })
        .collect()
}

/// The chain as a whole: the jobs' times added up, the largest of their peaks.
pub(crate) fn chain(jobs: &[Measure]) -> Measure {
    Measure {
        seconds: jobs.iter().map(|m| m.seconds).sum(),
        peak_rss_mb: jobs.iter().map(|m| m.peak_rss_mb).fold(0.0, f64::max),
    }
}

fn table(reference: &[Measure], velo: &[Measure], runs: usize) -> String {
    let mut out = format!(
        "\nvelo vs the reference package's six jobs (medians of {runs} run(s); ratio = reference / velo, > 1 means velo is better)\n\n\
         | job | reference (s) | velo (s) | time ratio | reference peak RSS (MB) | velo peak RSS (MB) | memory ratio |\n\
         |---|---|---|---|---|---|---|\n"
    );
    let mut row = |name: &str, r: &Measure, v: &Measure| {
        out.push_str(&format!(
            "| {name} | {:.2} | {:.3} | {:.1}x | {:.0} | {:.0} | {:.1}x |\n",
            r.seconds,
            v.seconds,
            r.seconds / v.seconds,
            r.peak_rss_mb,
            v.peak_rss_mb,
            r.peak_rss_mb / v.peak_rss_mb,
        ));
    };
    for ((job, r), v) in JOBS.iter().zip(reference).zip(velo) {
        row(job, r, v);
    }
    let (r, v) = (chain(reference), chain(velo));
    row("**whole chain**", &r, &v);
    let slower: Vec<&str> = JOBS
        .iter()
        .zip(reference.iter().zip(velo))
        .filter(|(_, (r, v))| v.seconds >= r.seconds)
        .map(|(job, _)| *job)
        .collect();
    let chain_ok = if r.seconds / v.seconds >= 10.0 {
        "met"
    } else {
        "NOT met"
    };
    let each_ok = if slower.is_empty() {
        "met".to_owned()
    } else {
        format!("NOT met ({})", slower.join(", "))
    };
    out.push_str(&format!(
        "\ntargets: whole chain >= 10x faster: {chain_ok}; each job faster: {each_ok}\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seconds: f64, peak_rss_mb: f64) -> Measure {
        Measure {
            seconds,
            peak_rss_mb,
        }
    }

    #[test]
    fn medians_are_taken_job_by_job_and_figure_by_figure() {
        let runs = vec![
            vec![m(3.0, 10.0), m(1.0, 50.0)],
            vec![m(1.0, 30.0), m(2.0, 40.0)],
            vec![m(2.0, 20.0), m(3.0, 60.0)],
        ];
        assert_eq!(medians(&runs), vec![m(2.0, 20.0), m(2.0, 50.0)]);
    }

    #[test]
    fn the_chain_adds_times_and_keeps_the_largest_peak() {
        let total = chain(&[m(1.5, 100.0), m(2.5, 300.0), m(1.0, 200.0)]);
        assert_eq!(total, m(5.0, 300.0));
    }

    #[test]
    fn the_table_names_the_jobs_that_are_not_faster() {
        let reference: Vec<Measure> = JOBS.iter().map(|_| m(10.0, 500.0)).collect();
        let mut velo: Vec<Measure> = JOBS.iter().map(|_| m(0.5, 50.0)).collect();
        velo[2] = m(12.0, 50.0);
        let text = table(&reference, &velo, 1);
        assert!(
            text.contains("each job faster: NOT met (promotion)"),
            "{text}"
        );
        // 60 s against 14.5 s: about 4x, under the 10x target.
        assert!(
            text.contains("whole chain >= 10x faster: NOT met"),
            "{text}"
        );
        assert!(
            text.contains("| tuning | 10.00 | 0.500 | 20.0x | 500 | 50 | 10.0x |"),
            "{text}"
        );
    }
}
