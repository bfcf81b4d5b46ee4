//! `cargo xtask docs`: the API documentation (rustdoc, warnings are errors).

use std::process::Command;

use anyhow::Result;

use crate::{cargo_bin, run};

/// Builds the API documentation, warnings as errors.
pub(crate) fn docs() -> Result<()> {
    run(Command::new(cargo_bin())
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings"))
}
