//! Integration tests of the `velo` binary's own commands: configuration, data, generated files
//! (one test binary, several modules). Whole-system tests (the lifecycle, interop with MLflow,
//! pandas and Kafka clients, serving) live in the workspace's `tests/` package.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers; a failed unwrap is a failed test"
)]

mod configs;
mod data;
mod generated;

use std::path::PathBuf;

/// The workspace root: configs and schemas are referenced relative to it.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `velo` binary, run from the workspace root with no `VELO_` configuration inherited.
pub(crate) fn velo() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("velo").expect("the velo binary is built");
    command.current_dir(root());
    for (key, _) in std::env::vars() {
        let velo = key.starts_with("VELO_") && key != "VELO_PYTHON" && key != "VELO_IT";
        if velo || key.starts_with("MLFLOW_") {
            command.env_remove(key);
        }
    }
    command
}

/// The output of a finished command, as text.
pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs a command to completion.
pub(crate) fn output(command: &mut assert_cmd::Command) -> Output {
    let output = command.output().expect("velo runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
