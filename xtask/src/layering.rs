//! The crate layering: dependencies between workspace crates point one way.
//!
//! core <- io <- jobs <- cli, with models beside io: models depends on core, jobs on models and
//! io, and io never on models (it does not compile candle). io also uses velo-mlflow, which
//! (like xtask) depends on no workspace crate.

use std::{collections::BTreeSet, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

/// The allowed edges (from, to) between workspace packages, normal and build dependencies.
const ALLOWED: &[(&str, &str)] = &[
    ("velo-models", "velo-core"),
    ("velo-io", "velo-core"),
    ("velo-io", "velo-mlflow"),
    // The `test-server` harness starts `mlflow server` as a child process group.
    ("velo-mlflow", "velo-child"),
    // Benches and dev tasks start servers the same way.
    ("xtask", "velo-child"),
    ("velo-jobs", "velo-io"),
    ("velo-jobs", "velo-core"),
    ("velo-jobs", "velo-models"),
    ("velo-cli", "velo-jobs"),
    ("velo-cli", "velo-io"),
    ("velo-cli", "velo-core"),
    ("velo-cli", "velo-models"),
    // Examples embed the crates the way another project would, from the top.
    ("velo-example-energy-demand", "velo-jobs"),
    ("velo-example-energy-demand", "velo-io"),
];

/// Edges allowed for dev-dependencies only: tests above io start a real MLflow server with
/// velo-mlflow's `test-server` harness.
const DEV_ONLY: &[(&str, &str)] = &[
    ("velo-cli", "velo-mlflow"),
    ("velo-jobs", "velo-mlflow"),
    // The whole-system tests (`tests/`) read stores and data through io, beside the binary.
    ("velo-tests", "velo-io"),
    ("velo-tests", "velo-mlflow"),
    ("velo-tests", "velo-child"),
    // velo-io's queue tests start a private PostgreSQL cluster.
    ("velo-io", "velo-child"),
    // velo-cli's tests run its binary with the helpers of the tests package.
    ("velo-cli", "velo-tests"),
];

/// Reads `cargo metadata` and fails on any edge between workspace crates not in [`ALLOWED`].
pub(crate) fn check(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cannot parse cargo metadata")?;
    let violations = violations(&metadata);
    if violations.is_empty() {
        eprintln!("xtask: layering ok");
        Ok(())
    } else {
        bail!(
            "dependencies that break the layering (core <- io, models <- jobs <- cli):\n{}",
            violations.join("\n")
        )
    }
}

/// Every forbidden edge in `metadata`, as `from -> to` lines.
fn violations(metadata: &serde_json::Value) -> Vec<String> {
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str())
        .map(str::to_owned)
        .collect();
    let mut found = Vec::new();
    for package in &packages {
        let from = package["name"].as_str().unwrap_or_default();
        // Normal, build and dev dependencies all obey the same table, but for the test
        // harness edges of `DEV_ONLY`.
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let to = dependency["name"].as_str().unwrap_or_default();
            let dev = dependency["kind"].as_str() == Some("dev");
            let allowed = ALLOWED.contains(&(from, to)) || (dev && DEV_ONLY.contains(&(from, to)));
            if members.contains(to) && !allowed {
                found.push(format!("{from} -> {to}"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(edges: &[(&str, &str)]) -> serde_json::Value {
        let names: BTreeSet<&str> = edges.iter().flat_map(|(a, b)| [*a, *b]).collect();
        let packages: Vec<_> = names
            .iter()
            .map(|name| {
                let dependencies: Vec<_> = edges
                    .iter()
                    .filter(|(from, _)| from == name)
                    .map(|(_, to)| serde_json::json!({"name": to, "kind": null}))
                    .collect();
                serde_json::json!({"name": name, "dependencies": dependencies})
            })
            .collect();
        serde_json::json!({ "packages": packages })
    }

    #[test]
    fn allowed_edges_pass_and_others_fail() {
        assert!(violations(&metadata(ALLOWED)).is_empty());
        let upward = metadata(&[("velo-core", "velo-io"), ("velo-io", "velo-core")]);
        assert_eq!(violations(&upward), vec!["velo-core -> velo-io".to_owned()]);
        let mlflow = metadata(&[("velo-mlflow", "velo-core")]);
        assert_eq!(
            violations(&mlflow),
            vec!["velo-mlflow -> velo-core".to_owned()]
        );
        // The test harness edge is allowed as a dev-dependency only.
        let mut harness = metadata(&[("velo-cli", "velo-mlflow")]);
        assert_eq!(
            violations(&harness),
            vec!["velo-cli -> velo-mlflow".to_owned()]
        );
        harness["packages"][0]["dependencies"][0]["kind"] = "dev".into();
        assert!(violations(&harness).is_empty());
        // Models sit beside io: jobs may use both, io and core never use models.
        let models = metadata(&[
            ("velo-jobs", "velo-models"),
            ("velo-models", "velo-core"),
            ("velo-io", "velo-models"),
            ("velo-core", "velo-models"),
            ("velo-models", "velo-io"),
        ]);
        assert_eq!(
            violations(&models),
            vec![
                "velo-core -> velo-models".to_owned(),
                "velo-io -> velo-models".to_owned(),
                "velo-models -> velo-io".to_owned(),
            ]
        );
    }

    #[test]
    fn the_workspace_respects_the_layering() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        if let Err(error) = check(root) {
            panic!("layering: {error:#}");
        }
    }
}
