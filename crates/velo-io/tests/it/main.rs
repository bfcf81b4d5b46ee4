//! Integration tests of velo-io: one test binary, one module per area.

mod datasets;
mod import;
mod interop;
mod queue;
mod registries;

use std::path::PathBuf;

/// The shared bike-sharing data folder (beside the repository), or `None` with a visible
/// message when it is absent; in CI (`CI` set) its absence is a failure.
#[allow(clippy::print_stderr, reason = "a skipped test says so visibly")]
pub(crate) fn shared_bike_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bike-sharing");
    if dir.join("hour.csv").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the shared bike-sharing data is missing at {} (required in CI)",
        dir.display()
    );
    eprintln!(
        "SKIPPED: the shared bike-sharing data is missing at {}",
        dir.display()
    );
    None
}

/// A Python with pandas, polars and pyarrow: `$VELO_PYTHON`, else `/tmp/pyv/bin/python`; `None`
/// with a visible message when there is none, a failure in CI (`CI` set).
#[allow(clippy::print_stderr, reason = "a skipped test says so visibly")]
pub(crate) fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("VELO_PYTHON")
        .map_or_else(|| PathBuf::from("/tmp/pyv/bin/python"), PathBuf::from);
    if candidate.is_file() {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Python with pandas and polars at {} (set VELO_PYTHON; required in CI)",
        candidate.display()
    );
    eprintln!(
        "SKIPPED: no Python with pandas and polars at {} (set VELO_PYTHON)",
        candidate.display()
    );
    None
}

/// An error and its causes, one per line, as the CLI prints them.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str("\n  caused by: ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
