//! `cargo xtask mlflow ui|serve|doctor`: MLflow's own tools, from the project's venv, on the
//! project's store.
//!
//! The store is `--store`, else `MLFLOW_TRACKING_URI`, else `./mlruns` (velo's embedded store,
//! laid out as MLflow's file store, which MLflow 3 opens only with `MLFLOW_ALLOW_FILE_STORE`).
//! `ui` and `serve` listen on 127.0.0.1 (a free port unless `--port`), print the URL once MLflow
//! answers, and stop it with its workers on Ctrl-C. `doctor` prints the versions and the store,
//! then checks that MLflow's client and velo list the same experiments and registered models.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{python, root};

/// Where the runs and models are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Store {
    /// A directory laid out as MLflow's file store (velo's embedded store).
    Files(PathBuf),
    /// An MLflow tracking server.
    Server(String),
    /// A database URI MLflow opens itself (`sqlite:///…`, `postgresql://…`).
    Database(String),
}

impl Store {
    /// `given`, else `MLFLOW_TRACKING_URI`, else `./mlruns` of the workspace.
    pub(crate) fn resolve(given: Option<&str>) -> Self {
        let uri = given
            .map(str::to_owned)
            .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
            .filter(|uri| !uri.trim().is_empty());
        match uri {
            None => Self::Files(root().join("mlruns")),
            Some(uri) => Self::parse(&uri),
        }
    }

    fn parse(uri: &str) -> Self {
        if uri.starts_with("http://") || uri.starts_with("https://") {
            Self::Server(uri.trim_end_matches('/').to_owned())
        } else if let Some(path) = uri.strip_prefix("file://") {
            Self::Files(PathBuf::from(path))
        } else if uri.contains("://") {
            Self::Database(uri.to_owned())
        } else {
            let path = PathBuf::from(uri);
            Self::Files(if path.is_absolute() {
                path
            } else {
                root().join(path)
            })
        }
    }

    /// The URI MLflow's tools take.
    fn uri(&self) -> String {
        match self {
            Self::Files(path) => format!("file://{}", path.display()),
            Self::Server(uri) | Self::Database(uri) => uri.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Files(path) => format!(
                "{} (velo's embedded store, MLflow's file-store layout{})",
                path.display(),
                if path.is_dir() {
                    ""
                } else {
                    "; not created yet"
                }
            ),
            Self::Server(uri) => format!("{uri} (an MLflow tracking server, REST)"),
            Self::Database(uri) => format!("{uri} (a database MLflow opens itself)"),
        }
    }
}

/// Starts `mlflow ui` (`server` false) or `mlflow server` on the store and waits for Ctrl-C.
pub(crate) fn serve(store: Option<&str>, port: Option<u16>, server: bool) -> Result<()> {
    let store = Store::resolve(store);
    if let Store::Server(uri) = &store {
        bail!("the store is already an MLflow server ({uri}): open it in a browser");
    }
    if let Store::Files(path) = &store {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    python::ensure_venv(&root())?;
    let port = match port {
        Some(port) => port,
        None => velo_child::free_port()?,
    };
    let mut command = Command::new(python::venv_script(&root(), "mlflow"));
    command
        .arg(if server { "server" } else { "ui" })
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--backend-store-uri")
        // MLflow's server takes a file store as a plain path.
        .arg(match &store {
            Store::Files(path) => path.display().to_string(),
            other => other.uri(),
        })
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .env_remove("MLFLOW_TRACKING_URI");
    if server {
        command.args(["--workers", "1"]);
    }
    let log = std::env::temp_dir().join(format!("velo-mlflow-{port}.log"));
    let what = if server { "mlflow server" } else { "mlflow ui" };
    let mut child = velo_child::ChildServer::start(
        what,
        &mut command,
        port,
        &log,
        velo_child::Ready::Http("/health"),
    )?;
    println!("{what} on {}: {}", store.describe(), child.url());
    println!("(log: {}; Ctrl-C stops it)", log.display());
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot catch Ctrl-C")?;
    let status = child.wait_until(|| interrupted.load(Ordering::SeqCst))?;
    if !interrupted.load(Ordering::SeqCst) {
        bail!(
            "{what} exited with {}; the end of its log:\n{}",
            status.map_or_else(
                || "an unknown status".to_owned(),
                |status| status.to_string()
            ),
            child.log_tail(2000)
        );
    }
    println!("stopped {what}");
    Ok(())
}

/// Prints the versions and the store, and checks MLflow's client and velo see the same things.
pub(crate) fn doctor(store: Option<&str>) -> Result<()> {
    let store = Store::resolve(store);
    python::ensure_venv(&root())?;
    let python = python::venv_python(&root());
    let velo = crate::build::release_velo()?;
    let velo_version = text_of(Command::new(&velo).arg("--version"))?;
    println!("velo:   {velo_version} ({})", velo.display());
    println!("store:  {}", store.describe());
    if let Store::Files(path) = &store
        && !path.is_dir()
    {
        bail!(
            "no store at {}: run `cargo xtask project` (or a job) first, or pass --store",
            path.display()
        );
    }
    let mlflow_seen: Value = serde_json::from_str(&text_of(
        Command::new(&python)
            .arg(root().join("xtask/assets/mlflow_doctor.py"))
            .arg(store.uri())
            .env("MLFLOW_ALLOW_FILE_STORE", "true"),
    )?)
    .context("the MLflow client's report is not JSON")?;
    println!(
        "mlflow: {} ({})",
        mlflow_seen["version"].as_str().unwrap_or("?"),
        python.display()
    );
    let velo_seen: Value = serde_json::from_str(&text_of(
        Command::new(&velo)
            .args(["models", "list", "--json", "--store"])
            .arg(match &store {
                Store::Files(path) => path.display().to_string(),
                Store::Server(uri) | Store::Database(uri) => uri.clone(),
            }),
    )?)
    .context("`velo models list --json` is not JSON")?;
    let mlflow_models = names(&mlflow_seen["registered_models"]);
    let velo_models = velo_model_names(&velo_seen);
    println!(
        "MLflow's client sees {} experiment(s) ({}) and {} registered model(s) ({})",
        mlflow_seen["experiments"].as_array().map_or(0, Vec::len),
        names(&mlflow_seen["experiments"]).join(", "),
        mlflow_models.len(),
        mlflow_models.join(", ")
    );
    for (name, aliases) in mlflow_seen["aliases"].as_object().into_iter().flatten() {
        println!("  {name}: aliases {aliases}");
    }
    if mlflow_models != velo_models {
        bail!(
            "MLflow's client and velo disagree on the registered models: MLflow {mlflow_models:?}, velo {velo_models:?}"
        );
    }
    println!("ok: MLflow's client and velo list the same registered models");
    Ok(())
}

/// The sorted strings of a JSON array.
fn names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// The registered model names in `velo models list --json`'s output (an array of models with a
/// `name`, or an object holding one).
fn velo_model_names(value: &Value) -> Vec<String> {
    let list = value
        .as_array()
        .or_else(|| value["models"].as_array())
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = list
        .iter()
        .filter_map(|model| model["name"].as_str())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Runs `command` and returns its trimmed standard output, failing with its standard error.
fn text_of(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The directory of a `Store::Files`, for tests.
    fn files(store: &Store) -> Option<&Path> {
        match store {
            Store::Files(path) => Some(path),
            _ => None,
        }
    }

    #[test]
    fn stores_are_told_apart_by_their_uri() {
        assert_eq!(
            Store::parse("http://127.0.0.1:5000/"),
            Store::Server("http://127.0.0.1:5000".to_owned())
        );
        assert_eq!(
            Store::parse("postgresql://u@127.0.0.1/db"),
            Store::Database("postgresql://u@127.0.0.1/db".to_owned())
        );
        assert_eq!(
            files(&Store::parse("file:///tmp/runs")),
            Some(Path::new("/tmp/runs"))
        );
        assert_eq!(
            files(&Store::parse("/tmp/runs")),
            Some(Path::new("/tmp/runs"))
        );
        assert_eq!(
            files(&Store::parse("mlruns")),
            Some(root().join("mlruns").as_path())
        );
        assert_eq!(Store::parse("/tmp/runs").uri(), "file:///tmp/runs");
    }

    #[test]
    fn velo_and_mlflow_listings_are_read_by_name() {
        let velo = serde_json::json!([{"name": "b"}, {"name": "a"}]);
        assert_eq!(velo_model_names(&velo), ["a", "b"]);
        assert_eq!(names(&serde_json::json!(["z", "y"])), ["y", "z"]);
    }
}
