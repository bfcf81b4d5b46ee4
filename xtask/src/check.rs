//! `cargo xtask check`: formatting, clippy, cargo deny, the layering, Conventional Commits, the
//! documentation (rustdoc and the guide's links) and the freshness of generated files.

use std::process::Command;

use anyhow::Result;

use crate::{cargo, cargo_bin, has, root, run};

/// typos-cli, pinned.
const TYPOS: (&str, &str) = ("typos-cli", "1.52.0");

/// Runs every static check.
pub(crate) fn check() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        crate::suite::TEST_FEATURES,
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    if !has(&cargo_bin(), Some("deny")) {
        cargo(&["install", "--locked", "cargo-deny"])?;
    }
    // cargo deny with advisories, unused and outdated dependencies.
    crate::deps::check()?;
    crate::layering::check(&root())?;
    // Spelling of code and docs (`_typos.toml` lists the words that are right).
    let (name, version) = TYPOS;
    run(Command::new(crate::install::cargo_tool(name, version, &[])?).arg("--format=brief"))?;
    crate::commits::check(&root(), None)?;
    // The API documentation and the guide build without warnings or broken links.
    crate::docs::docs()?;
    // Generated files must match the code that generates them.
    run(Command::new(cargo_bin())
        .args([
            "test",
            "--locked",
            "-p",
            "velo-cli",
            "--test",
            "it",
            "generated",
        ])
        .env("UPDATE_SCHEMA", "0"))?;
    Ok(())
}
