//! `cargo xtask project`: the whole lifecycle on the embedded default, with the release binary.

use std::{path::Path, process::Command};

use anyhow::Result;

use crate::run;

/// Builds velo (progress shown), then runs `velo project`, which creates `data/` when it holds
/// no dataset and runs the six jobs.
pub(crate) fn project(csv: Option<&Path>) -> Result<()> {
    let velo = crate::build::release_velo()?;
    let mut command = Command::new(velo);
    command.arg("project");
    if let Some(csv) = csv {
        command.arg("--csv").arg(csv);
    }
    run(&mut command)
}
