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

pub(crate) use velo_tests::{Output, output, root, velo};

/// A project directory with a copy of the shipped `configs/` and synthetic data in `data/`
/// (also as the 2012 split), and no store: what `velo run --dry-run` needs to find every input
/// file without a model reference to check. Made once per build, under cargo's target tmp dir,
/// by whichever test gets there first (the others wait for the rename).
pub(crate) fn project() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("velo-cli-project");
    if dir.join("ready").exists() {
        return dir;
    }
    let staging = tempfile::Builder::new()
        .prefix("velo-cli-project")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    copy_dir(&root().join("configs"), &staging.path().join("configs"));
    let made = output(
        velo()
            .current_dir(staging.path())
            .args(["data", "synth", "--rows", "3000", "--out", "data"]),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let made = output(velo().current_dir(staging.path()).args([
        "data",
        "synth",
        "--rows",
        "3000",
        "--out",
        "data/2012",
    ]));
    assert_eq!(made.code, 0, "{}", made.stderr);
    std::fs::write(staging.path().join("ready"), "").unwrap();
    let staged = staging.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        // Another test made it first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    dir
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}
