//! The one release build of the `velo` binary that `project`, `containers`, `packages` and the
//! benches share (same profile and features, so a later task compiles only what changed).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cargo_bin, root};

/// Builds `velo` in the release profile, with cargo's progress on the terminal, and returns the
/// executable's path.
pub(crate) fn release_velo() -> Result<PathBuf> {
    let mut command = Command::new(cargo_bin());
    command.current_dir(root()).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "velo-cli",
        "--bin",
        "velo",
        "--message-format",
        "json-render-diagnostics",
    ]);
    eprintln!(
        "xtask: building velo (release); from a cold cache this takes about 20 minutes on 2 cores, \
         after that only what changed is rebuilt"
    );
    eprintln!("xtask: $ {command:?}");
    let started = Instant::now();
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start cargo build")?;
    if !output.status.success() {
        bail!("cargo build of velo failed with {}", output.status);
    }
    let binary = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .next_back()
        .context("cargo build did not name velo's executable")?;
    eprintln!(
        "xtask: velo built in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        binary.display()
    );
    Ok(binary)
}
