//! `cargo xtask codegen`: files generated from the code (the configuration schema and the
//! README's configuration reference); `cargo xtask check` fails when they are stale.

use std::process::Command;

use anyhow::Result;

use crate::{cargo_bin, run};

/// Regenerates the configuration schema and reference.
pub(crate) fn codegen() -> Result<()> {
    run(Command::new(cargo_bin())
        .args(["test", "-p", "velo-cli", "--test", "it", "generated"])
        .env("UPDATE_SCHEMA", "1"))
}
