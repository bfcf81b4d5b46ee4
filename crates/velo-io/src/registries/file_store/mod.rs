//! The embedded store: MLflow's file-store layout, written crash-safely.
//!
//! Layout (as MLflow 3.17's `FileStore` reads it):
//! `<root>/<exp>/meta.yaml`; `<root>/<exp>/<run>/{meta.yaml, metrics/, params/, tags/,
//! artifacts/, inputs/<id>/meta.yaml}`; `<root>/<exp>/datasets/<id>/meta.yaml`;
//! `<root>/models/<name>/{meta.yaml, aliases/<alias>, version-<n>/{meta.yaml, tags/}}`.
//!
//! Crash safety: every record is prepared in a staging directory inside the store and moved
//! into place with one `rename`, so readers see it complete or not at all. A new run, a new
//! version or a logged model directory appears whole. Version numbers are claimed by renaming a
//! complete version directory onto `version-<n>`: the rename fails when another process got
//! there first (the target is not empty), and the loser tries the next number, so concurrent
//! registrations get consecutive numbers, none reused or lost. Metric values are appended one
//! line per `write` call with `O_APPEND`.
//!
//! Staging lives in `<root>/.velo-staging.trash`: MLflow skips root folders whose name ends in
//! `.trash`, so nothing half-made is ever listed as an experiment.

#[cfg(feature = "crash-points")]
use std::sync::atomic::AtomicU64;
use std::{
    fs,
    path::{Path, PathBuf},
};

use md5::Digest as _;

use super::{RegistryError, Result};

mod layout;
mod registry;
mod staging;
mod tracking;

use layout::*;
use staging::*;

/// The embedded tracking store and model registry (see the module docs).
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    /// Write steps taken, and the step at which to abort (feature `crash-points`).
    #[cfg(feature = "crash-points")]
    writes: AtomicU64,
    #[cfg(feature = "crash-points")]
    crash_after: Option<u64>,
    /// Where runs seen by this handle live, so that logging does not scan the experiments.
    run_dirs: std::sync::Mutex<std::collections::HashMap<String, PathBuf>>,
}

fn now_ms() -> i64 {
    velo_mlflow::now_ms()
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    let mut buffer = vec![0_u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn md5_hex(parts: &[&str]) -> String {
    let mut hasher = md5::Md5::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |source| RegistryError::io(action, path, source)
}

fn invalid(message: String) -> RegistryError {
    RegistryError::InvalidArgument(message)
}

impl FileStore {
    /// Opens the store at `root`, creating it (with MLflow's `Default` experiment) when missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(io("create the store directory", root))?;
        #[cfg_attr(
            not(feature = "crash-points"),
            expect(unused_mut, reason = "set below only for crash tests")
        )]
        let mut store = Self::handle(root)?;
        // Crash tests of whole jobs run the binary with this variable (test-only feature).
        #[cfg(feature = "crash-points")]
        if let Some(limit) = std::env::var("VELO_CRASH_AFTER_WRITES")
            .ok()
            .and_then(|text| text.parse().ok())
        {
            store.crash_after = Some(limit);
        }
        for dir in [
            store.root.join(STAGING),
            store.root.join(".trash"),
            store.root.join("models"),
        ] {
            fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        }
        if !store.root.join("0").join("meta.yaml").exists() {
            store.create_experiment_with_id("0", "Default")?;
        }
        store.sweep_staging();
        Ok(store)
    }

    /// Opens the existing store at `root` for reading, writing nothing: no directory, default
    /// experiment or staging sweep (what [`open`](Self::open) does for writers).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when `root` is not a directory.
    pub fn open_existing(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(RegistryError::NotFound {
                what: format!("a store at {}", root.display()),
            });
        }
        Self::handle(root)
    }

    /// A handle on the existing directory `root`, resolved to its canonical path.
    fn handle(root: &Path) -> Result<Self> {
        let root = fs::canonicalize(root).map_err(io("resolve", root))?;
        Ok(Self {
            root,
            #[cfg(feature = "crash-points")]
            writes: AtomicU64::new(0),
            #[cfg(feature = "crash-points")]
            crash_after: None,
            run_dirs: std::sync::Mutex::default(),
        })
    }

    /// For crash tests: abort the process (as a kill would) at the `n`-th write step. Only with
    /// the test-only feature `crash-points`, never in a build users run.
    #[cfg(feature = "crash-points")]
    #[must_use]
    pub fn crash_after_writes(mut self, n: u64) -> Self {
        self.crash_after = Some(n);
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names_that_could_escape_are_refused() {
        for key in ["../x", "a/../b", "/abs", "a//b", "", "a\\b", "a\0b"] {
            assert!(check_key("param", key).is_err(), "{key:?}");
        }
        assert!(check_key("metric", "system/cpu_utilization_percentage").is_ok());
        for name in ["..", ".hidden", "a/b", "a\\b", "50%", "C:x", ""] {
            assert!(check_model_name(name).is_err(), "{name:?}");
        }
        for id in ["../../etc", "abc", "0123456789abcdef0123456789abcdeg"] {
            assert!(check_run_id(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn opening_sweeps_what_ended_processes_left_in_staging() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let staging = store.root().join(STAGING);
        // pid_max is at most 4,194,304: these processes never ran.
        let dead_dir = staging.join("999999999-00aa");
        let dead_file = staging.join("file.999999999.00000000000000ab.tmp");
        let live_dir = staging.join(format!("{}-00bb", std::process::id()));
        fs::create_dir_all(dead_dir.join("model")).unwrap();
        fs::write(&dead_file, b"partial").unwrap();
        fs::create_dir_all(&live_dir).unwrap();
        drop(store);
        FileStore::open(dir.path()).unwrap();
        if Path::new("/proc/self").exists() {
            assert!(!dead_dir.exists() && !dead_file.exists());
        }
        assert!(live_dir.exists(), "a running writer's staging stays");
    }
}
