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
mod jobs;
mod kafka;
mod serve;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The workspace root: configs and schemas are referenced relative to it.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `velo` binary of this build (`target/<profile>/velo`, beside this test's `deps/`),
/// built once with cargo when the workspace build has not made it yet.
pub(crate) fn velo_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps");
        let binary = profile_dir.join(format!("velo{}", std::env::consts::EXE_SUFFIX));
        if !binary.is_file() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = std::process::Command::new(cargo);
            build
                .current_dir(root())
                .args(["build", "-p", "velo-cli", "--bin", "velo"]);
            if profile_dir
                .file_name()
                .is_some_and(|name| name == "release")
            {
                build.arg("--release");
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "cannot build the velo binary");
        }
        binary
    })
}

/// The `velo` binary, run from the workspace root with no `VELO_` or `MLFLOW_` configuration
/// inherited.
pub(crate) fn velo() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(velo_binary());
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
