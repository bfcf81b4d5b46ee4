//! Helpers for tests that run the `velo` binary: the workspace root, the binary of this build,
//! a command with no inherited velo or MLflow configuration, and its output as text.
//!
//! Used by this package's whole-system tests (`tests/system/`) and by velo-cli's own tests.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "test support: a failed step is a failed test"
)]

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The workspace root: configs and schemas are referenced relative to it.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `velo` binary of this build (`target/<profile>/velo`, beside this test's `deps/`),
/// built once with cargo when the workspace build has not made it yet.
pub fn velo_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("velo-cli", "velo"))
}

/// The binary `bin` of workspace package `package` in this build's profile directory, built
/// with cargo when the workspace build has not made it yet.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let binary = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .current_dir(root())
            .args(["build", "-p", package, "--bin", bin]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "cannot build the {bin} binary");
    }
    binary
}

/// The `velo` binary, run from the workspace root with no `VELO_` or `MLFLOW_` configuration
/// inherited.
pub fn velo() -> assert_cmd::Command {
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
pub struct Output {
    /// The exit code (-1 when a signal ended the process).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a command to completion.
pub fn output(command: &mut assert_cmd::Command) -> Output {
    let output = command.output().expect("velo runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
