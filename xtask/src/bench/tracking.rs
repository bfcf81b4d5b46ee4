//! The tracking and registry comparison of `cargo xtask bench --reference` (or `--tracking`):
//! velo's registries against MLflow's Python client doing the same steps, in one run, on the
//! same local MLflow server, and velo's embedded store against MLflow's file store.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;
use serde_json::Value;

use super::{json_of, median_of};
use crate::{cargo_bin, python, root, run};

/// The steps both sides time, with the targets the registry issue sets.
const STEPS: &[(&str, &str)] = &[
    ("run_log_ms", "create run + 20 params + 100 metrics + end"),
    ("log_model_ms", "log a model (2 MB file, MLmodel, example)"),
    ("register_alias_ms", "register a version + set an alias"),
    ("load_by_alias_ms", "load the model back by alias"),
];

/// Bytes of the stand-in model file.
const MODEL_BYTES: &str = "2000000";

/// A `mlflow server` (SQLite, proxied artifacts in `dir`) on a free loopback port, stopped on
/// drop.
fn start_server(dir: &Path) -> Result<velo_child::ChildServer> {
    let port = velo_child::free_port()?;
    let mut command = Command::new(python::venv_script(&root(), "mlflow"));
    command
        .args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"));
    Ok(velo_child::ChildServer::start(
        "mlflow server",
        &mut command,
        port,
        &dir.join("server.log"),
        velo_child::Ready::Http("/health"),
    )?)
}

fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf> {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Runs the comparison `runs` times (each side `repeats` timed iterations per run) and prints
/// the table.
pub(crate) fn compare(runs: usize, repeats: usize) -> Result<()> {
    python::ensure_venv(&root())?;
    run(Command::new(cargo_bin()).args([
        "bench", "--locked", "-p", "velo-io", "--bench", "tracking", "--no-run",
    ]))?;
    let base = std::env::temp_dir().join(format!("velo-tracking-bench-{}", std::process::id()));
    let server_dir = fresh_dir(&base, "server")?;
    let server = start_server(&server_dir)?;
    let uri = server.url();
    let python = python::venv_python(&root());
    let script = root().join("xtask/assets/mlflow_tracking_bench.py");
    let repeats = repeats.to_string();
    let (mut python_server, mut velo_server, mut python_files, mut velo_files) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for index in 1..=runs {
        eprintln!("xtask: tracking run {index} of {runs}");
        let mlflow = |uri: &str| {
            json_of(
                Command::new(&python)
                    .arg(&script)
                    .args([uri, &repeats, MODEL_BYTES])
                    .env("MLFLOW_ALLOW_FILE_STORE", "true")
                    .env("MLFLOW_ENABLE_ASYNC_LOGGING", "false"),
            )
        };
        let velo = |uri: &str| {
            json_of(Command::new(cargo_bin()).args([
                "bench",
                "--locked",
                "--quiet",
                "-p",
                "velo-io",
                "--bench",
                "tracking",
                "--",
                uri,
                &repeats,
                MODEL_BYTES,
            ]))
        };
        python_server.push(mlflow(&uri)?);
        velo_server.push(velo(&uri)?);
        python_files.push(mlflow(&file_uri(&fresh_dir(
            &base,
            &format!("mlflow-files-{index}"),
        )?))?);
        velo_files.push(velo(
            &fresh_dir(&base, &format!("velo-files-{index}"))?
                .display()
                .to_string(),
        )?);
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&base);
    print!(
        "{}",
        table(
            &[
                (
                    "MLflow server (SQLite, proxied artifacts)",
                    median_of(&velo_server),
                    median_of(&python_server),
                    5.0
                ),
                (
                    "embedded store vs MLflow's file store",
                    median_of(&velo_files),
                    median_of(&python_files),
                    50.0
                ),
            ],
            runs,
        )
    );
    Ok(())
}

fn table(sections: &[(&str, Value, Value, f64)], runs: usize) -> String {
    let mut out = format!(
        "\nvelo vs MLflow's Python client, tracking and registry (medians of {runs} run(s), ms; ratio > 1 means velo is faster)\n\n\
         | store | step | velo | MLflow Python | ratio | target |\n|---|---|---|---|---|---|\n"
    );
    for (store, velo, mlflow, target) in sections {
        for (key, label) in STEPS {
            let (Some(v), Some(m)) = (velo[key].as_f64(), mlflow[key].as_f64()) else {
                continue;
            };
            let ratio = m / v;
            let verdict = if ratio >= *target { "met" } else { "NOT met" };
            out.push_str(&format!(
                "| {store} | {label} | {v:.2} | {m:.2} | {ratio:.1}x | >= {target}x ({verdict}) |\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reports_ratios_against_each_target() {
        let velo = serde_json::json!({"run_log_ms": 2.0, "log_model_ms": 1.0, "register_alias_ms": 1.0, "load_by_alias_ms": 1.0});
        let mlflow = serde_json::json!({"run_log_ms": 20.0, "log_model_ms": 100.0, "register_alias_ms": 3.0, "load_by_alias_ms": 5.0});
        let text = table(&[("server", velo, mlflow, 5.0)], 1);
        assert!(
            text.contains("| 2.00 | 20.00 | 10.0x | >= 5x (met) |"),
            "{text}"
        );
        assert!(
            text.contains("| 1.00 | 3.00 | 3.0x | >= 5x (NOT met) |"),
            "{text}"
        );
    }
}
