//! Whole-system tests: the `velo` binary carried through the model lifecycle, against the
//! embedded store and a live MLflow server, read back by MLflow's Python client, pandas and
//! polars, fed by a Python Kafka client, serving MLflow's scoring protocol, and notifying a
//! real desktop. Each crate's own behaviour is tested in that crate's `tests/it/`.
//!
//! Tests that need a real service start it on 127.0.0.1 and skip, visibly, when `VELO_IT` and
//! `CI` are both unset and the service is missing.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers; a failed unwrap is a failed test"
)]

mod alerts;
mod benchmark;
mod containers;
mod crash;
mod deploy;
mod hostile;
mod init;
mod jobs;
mod kafka;
mod models;
mod monitoring;
mod queue;
mod sandbox;
mod scenarios;
mod serve;
mod stress;
mod team;

pub(crate) use velo_tests::{Output, output, root, velo, velo_binary, workspace_binary};

/// Runs `script` in `python` with MLflow's client on the embedded store `store` (its
/// `file://` URI as `sys.argv[1]`); its standard output, trimmed. Fails the test with the
/// script's stderr when it fails.
pub(crate) fn mlflow_on_store(
    python: &std::ffi::OsStr,
    script: &str,
    store: &std::path::Path,
) -> String {
    let uri = format!("file://{}", store.display());
    let seen = std::process::Command::new(python)
        .args(["-c", script, &uri])
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .output()
        .unwrap();
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    String::from_utf8_lossy(&seen.stdout).trim().to_owned()
}
