//! The command line of `cargo xtask`: every task and its options, declared once (clap derive).
//!
//! `main.rs` only dispatches on [`Task`]; each task lives in a module of its own. The first line
//! of each variant's documentation is the one-line summary `cargo xtask --help` prints, and the
//! README's task list is checked against it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// velo's development automation: every task is idempotent and runs from the workspace root,
/// whatever the current directory.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    disable_version_flag = true
)]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
pub(crate) enum Task {
    /// Install what the tests need, once (nextest, cargo-deny, the venv, tansu, apt packages)
    ///
    /// rustup components, cargo-nextest and cargo-deny when missing, the Python venv (`.venv`,
    /// or `$VELO_VENV`) with the pinned interop packages, the tansu Kafka broker (built once
    /// into `.tools`, or `$VELO_TOOLS`), and, as root with apt-get: Xvfb, dbus, dunst and
    /// libnotify-bin (desktop alerts), Chromium (report rendering), promtool (alerting rules),
    /// podman and runc (containers).
    Install,
    /// Check formatting, clippy, cargo deny, the layering, commits, docs and generated files
    Check,
    /// Install what is missing, then run the whole test suite
    Test,
    /// Check, then test (what `.ci/run` runs)
    Ci,
    /// Format the workspace
    Fmt,
    /// Regenerate docs/config.schema.json and the guide's configuration reference
    Codegen,
    /// Build the API documentation and the user guide (warnings and broken links are errors)
    Docs,
    /// Remove build outputs and local run artefacts (target, mlruns, outputs)
    Clean,
    /// Run the whole lifecycle on the embedded default (tuning .. explanations)
    ///
    /// Creates `data/` when it holds no dataset (`velo data synth`, or the UCI-style CSV given
    /// with `--csv`), then runs each job config in order with the release binary.
    Project {
        /// Import this UCI-style CSV into `data/` first.
        #[arg(long, value_name = "PATH")]
        csv: Option<PathBuf>,
    },
    /// Check that crate dependencies point one way (core <- io, models <- jobs <- cli)
    Layering,
    /// Conventional Commits: check the history, write the changelog, bump the version
    #[command(subcommand)]
    Commits(Commits),
    /// Build and check the OCI image of velo (docker or podman)
    #[command(subcommand)]
    Containers(Containers),
    /// Dependency health: a map of the graph, advisories, unused and outdated dependencies
    #[command(subcommand)]
    Deps(Deps),
    /// MLflow's UI or tracking server on the project's store, or a check that it reads it
    #[command(subcommand)]
    Mlflow(Mlflow),
    /// Package the crates, archive the release binary with its SHA-256, write SBOMs (target/dist)
    Packages {
        /// Package uncommitted changes too (a release should come from a clean checkout).
        #[arg(long)]
        allow_dirty: bool,
    },
    /// Benchmarks side by side with the peers, printed as ratios (or the criterion benches)
    Bench(Bench),
}

/// `cargo xtask commits`.
#[derive(Debug, Subcommand)]
pub(crate) enum Commits {
    /// Fail on every commit since BASE that is not a Conventional Commit, naming each
    Check {
        /// The base revision (default: the merge base with main, or the root).
        base: Option<String>,
    },
    /// Write CHANGELOG.md from the history, grouped by type and scope (git-cliff)
    Changelog,
    /// Set the next workspace version from the commits since the last tag, and say why
    Bump {
        /// Say what the next version would be and why; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `cargo xtask deps`.
#[derive(Debug, Subcommand)]
pub(crate) enum Deps {
    /// Per crate: direct and total dependencies, duplicates, licences, build times; a graph
    Map {
        /// Build the workspace afresh (debug, in target/deps/timings) to measure build times.
        #[arg(long)]
        timings: bool,
    },
    /// cargo deny with advisories (RustSec, or its bundled copy), unused and outdated deps
    Check,
    /// Update dependencies in a scratch worktree, kept only if the gate (check, tests) passes
    Update {
        /// Only this crate (default: every compatible update).
        krate: Option<String>,
        /// Move the crate's requirement to its newest release (a breaking update).
        #[arg(long, requires = "krate")]
        breaking: bool,
        /// Commit a kept update as `chore(deps): …` with the report.
        #[arg(long)]
        commit: bool,
        /// The gate, a shell command run in the worktree.
        #[arg(long, default_value = crate::deps_update::DEFAULT_GATE)]
        gate: String,
    },
}

/// `cargo xtask mlflow`.
#[derive(Debug, Subcommand)]
pub(crate) enum Mlflow {
    /// Start MLflow's UI on the store (127.0.0.1; prints the URL; Ctrl-C stops it)
    Ui(MlflowServe),
    /// Start an MLflow tracking server on the store (127.0.0.1; prints the URL)
    Serve(MlflowServe),
    /// Print MLflow's and velo's versions and the store; check MLflow's client reads it
    Doctor {
        /// The store: a directory, `file://`, a database or server URI (default:
        /// `MLFLOW_TRACKING_URI`, else ./mlruns).
        #[arg(long)]
        store: Option<String>,
    },
}

/// Where and on what MLflow's UI or server listens.
#[derive(Debug, Args)]
pub(crate) struct MlflowServe {
    /// The store: a directory, `file://` or a database URI (default: `MLFLOW_TRACKING_URI`,
    /// else ./mlruns).
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// The port on 127.0.0.1 (default: a free one).
    #[arg(long)]
    pub(crate) port: Option<u16>,
}

/// `cargo xtask containers`.
#[derive(Debug, Subcommand)]
pub(crate) enum Containers {
    /// Build the image `localhost/velo:VERSION` from the Containerfile and print its size
    Build {
        /// Put this velo binary in the image instead of the release build.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// Run velo in the image: `cargo xtask containers run -- serve -m ...`
    Run {
        /// Arguments passed to `velo` in the container.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the image, serve a mounted model store from it, and train in it on mounted data
    Check {
        /// Put this velo binary in the image instead of the release build.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
}

/// `cargo xtask bench`: at most one comparison per run.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").multiple(false).args([
    "reference", "tracking", "chain", "package", "serve", "kafka", "scenarios", "stress",
    "leaderboard", "monitoring", "queue",
])))]
pub(crate) struct Bench {
    /// velo against ../shared/bench/sklearn_baseline.py (as shipped and with --n-jobs -1),
    /// then the tracking comparison.
    #[arg(long)]
    pub(crate) reference: bool,
    /// Tracking and registry steps against MLflow's Python client only.
    #[arg(long)]
    pub(crate) tracking: bool,
    /// The six jobs of the reference package against velo's, job by job (the package at
    /// $VELO_REFERENCE_PACKAGE or ../mlops-python-package).
    #[arg(long)]
    pub(crate) chain: bool,
    /// The chain against the reference package checked out at this path.
    #[arg(long, value_name = "PATH")]
    pub(crate) package: Option<PathBuf>,
    /// `velo serve` against `mlflow models serve` under wrk.
    #[arg(long)]
    pub(crate) serve: bool,
    /// The Kafka job against the tansu broker's own produce+consume rate.
    #[arg(long)]
    pub(crate) kafka: bool,
    /// The shipped scenario suite and perturbation throughput, against pandas.
    #[arg(long)]
    pub(crate) scenarios: bool,
    /// The stress job against velo's server and `mlflow models serve` side by side.
    #[arg(long)]
    pub(crate) stress: bool,
    /// configs/benchmark.yaml with scikit-learn, LightGBM and XGBoost on the same folds.
    #[arg(long)]
    pub(crate) leaderboard: bool,
    /// The monitoring job over a day of logged predictions, beside Evidently.
    #[arg(long)]
    pub(crate) monitoring: bool,
    /// The PostgreSQL work queue's tasks per second, beside Optuna's RDBStorage.
    #[arg(long)]
    pub(crate) queue: bool,
    /// Runs of each side (medians are reported; some comparisons take at least 5).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) runs: u32,
    /// The bike-sharing data (default: ../shared/data/bike-sharing).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Run each fuzz target of fuzz/ for this many seconds (cargo fuzz) first.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) fuzz: Option<u64>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn bench_takes_one_comparison_at_a_time() {
        let parsed = Xtask::try_parse_from(["xtask", "bench", "--serve", "--runs", "3"]).unwrap();
        let Task::Bench(bench) = parsed.task else {
            panic!("not bench");
        };
        assert!(bench.serve);
        assert_eq!(bench.runs, 3);
        assert!(Xtask::try_parse_from(["xtask", "bench", "--serve", "--kafka"]).is_err());
        assert!(Xtask::try_parse_from(["xtask", "bench", "--runs", "0"]).is_err());
    }

    #[test]
    fn the_readme_lists_every_task() {
        let readme = std::fs::read_to_string(crate::root().join("README.md")).unwrap();
        let start = readme
            .find("<!-- xtask tasks -->")
            .expect("README marks its task list");
        let end = readme[start..]
            .find("<!-- /xtask tasks -->")
            .expect("README ends its task list")
            + start;
        let listed = &readme[start..end];
        let command = Xtask::command();
        for task in command.get_subcommands() {
            let name = task.get_name();
            if name == "help" {
                continue;
            }
            let about = task
                .get_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            let line = format!("| `{name}` | {about} |");
            assert!(
                listed.contains(&line),
                "README's task list lacks `{line}` (the first line of the task's doc comment)"
            );
        }
        let rows = listed
            .lines()
            .filter(|line| line.starts_with("| `"))
            .count();
        assert_eq!(
            rows,
            command
                .get_subcommands()
                .filter(|task| task.get_name() != "help")
                .count(),
            "README lists a task `cargo xtask --help` does not"
        );
    }
}
