//! `cargo xtask test`: the whole test suite, with the real services it needs installed first.

use std::process::Command;

use anyhow::Result;

use crate::{cargo_bin, python, root, run};

/// Features the tests need on top of the defaults: the harness that starts a real MLflow server
/// and the file store's crash points.
pub(crate) const TEST_FEATURES: &str = "velo-mlflow/test-server,velo-io/crash-points";

/// Installs what is missing, then runs the doc tests and every other test with nextest.
pub(crate) fn test() -> Result<()> {
    crate::install::install()?;
    let python = python::venv_python(&root());
    let run_with_env = |command: &mut Command| {
        command
            .env("VELO_IT", "1")
            .env("VELO_PYTHON", &python)
            .env("VELO_MLFLOW_PYTHON", &python)
            .env("VELO_MLFLOW", python::venv_script(&root(), "mlflow"))
            .env("VELO_WEED", python::venv_script(&root(), "weed"));
        command.env("VELO_TOOLS", crate::install::tools_dir());
        // Installed, so the tests that need them must run, not skip.
        if crate::install::DESKTOP.ready() {
            command.env("VELO_DESKTOP_IT", "1");
        }
        if crate::install::BROWSER.ready() {
            command.env("VELO_BROWSER_IT", "1");
        }
        if crate::install::CONTAINERS.ready() {
            command.env("VELO_CONTAINERS_IT", "1");
        }
        if crate::install::PROMETHEUS.ready() {
            command.env("VELO_PROMTOOL_IT", "1");
        }
        run(command)
    };
    // Doc tests first, so that the run ends on nextest's summary of every other test.
    run_with_env(Command::new(cargo_bin()).args(["test", "--workspace", "--doc", "--locked"]))?;
    // Benchmarks are left out: clippy type-checks them, and `cargo xtask bench` runs them.
    run_with_env(Command::new(cargo_bin()).args([
        "nextest",
        "run",
        "--workspace",
        "--lib",
        "--bins",
        "--tests",
        "--features",
        TEST_FEATURES,
        "--locked",
        "--no-fail-fast",
    ]))?;
    Ok(())
}
