//! `cargo xtask bench --fuzz SECONDS`: every fuzz target of `fuzz/` with cargo fuzz.

use std::process::Command;

use anyhow::Result;

use crate::{cargo_bin, root, run};

/// The fuzz targets of `fuzz/`, each fed the loaders for `seconds`.
const FUZZ_TARGETS: &[&str] = &[
    "artifact_bytes",
    "forest_artifact",
    "request_body",
    "kafka_record",
];

/// Runs every fuzz target for `seconds` with cargo fuzz (installed on first use). libFuzzer
/// needs sanitizer flags that only nightly accepts; `RUSTC_BOOTSTRAP=1` lets the pinned stable
/// toolchain take them, for this command only. A crash stops the run with the fuzzer's report
/// and the crashing input saved under `fuzz/artifacts/`.
pub(super) fn run_targets(seconds: u64) -> Result<()> {
    if !crate::has(&cargo_bin(), Some("fuzz")) {
        run(Command::new(cargo_bin()).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let dir = root().join("fuzz");
    for target in FUZZ_TARGETS {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        run(Command::new(cargo_bin())
            .current_dir(&dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target, "--", "-rss_limit_mb=2048"])
            .arg(format!("-max_total_time={seconds}")))?;
    }
    Ok(())
}
