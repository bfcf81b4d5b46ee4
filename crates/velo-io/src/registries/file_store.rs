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

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use md5::Digest as _;
use serde::{Deserialize, Serialize};

use super::{
    Dataset, DatasetInput, FileInfo, Metric, ModelRegistry, ModelVersion, NewRun, Param,
    RegisteredModel, RegistryError, Result, Run, RunData, RunInfo, RunInputs, RunStatus, Tag,
    Tracking,
};

const STAGING: &str = ".velo-staging.trash";
const RESERVED_IN_EXPERIMENT: &[&str] = &["tags", "datasets", "traces", "models"];

/// How hard a write holds on: every write survives a killed process (it lands by rename);
/// registry records (models, versions, aliases) are also flushed to disk, with their directory,
/// so that they survive a power loss. Tracking records (runs, params, metrics, artifacts) are
/// left to the page cache, as MLflow's own file store leaves all of them: flushing each of
/// them would make a run's logging ten times slower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Synced,
    Cached,
}

/// Runs `operation` on `path`; when its parent directory is missing, creates it and tries once
/// more (creating directories up front would cost a system call per write).
fn with_parents<T>(
    path: &Path,
    mut operation: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    match operation() {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            operation()
        }
        other => other,
    }
}

/// Flushes the directory holding `path`, so that a rename into it is on disk.
fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io("flush", parent))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The embedded tracking store and model registry (see the module docs).
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    writes: AtomicU64,
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

/// MLflow's integer run statuses in `meta.yaml`.
fn status_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Running => 1,
        RunStatus::Scheduled => 2,
        RunStatus::Finished => 3,
        RunStatus::Failed => 4,
        RunStatus::Killed => 5,
    }
}

fn status_from_code(code: u8) -> RunStatus {
    match code {
        2 => RunStatus::Scheduled,
        3 => RunStatus::Finished,
        4 => RunStatus::Failed,
        5 => RunStatus::Killed,
        _ => RunStatus::Running,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ExperimentMeta {
    artifact_location: String,
    creation_time: i64,
    experiment_id: String,
    last_update_time: i64,
    lifecycle_stage: String,
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunMeta {
    artifact_uri: String,
    end_time: Option<i64>,
    #[serde(default)]
    entry_point_name: String,
    experiment_id: String,
    lifecycle_stage: String,
    run_id: String,
    #[serde(default)]
    run_name: String,
    #[serde(default)]
    source_name: String,
    #[serde(default = "local_source")]
    source_type: u8,
    #[serde(default)]
    source_version: String,
    start_time: i64,
    status: u8,
    #[serde(default)]
    tags: Vec<serde_yaml::Value>,
    #[serde(default)]
    user_id: String,
}

fn local_source() -> u8 {
    4
}

#[derive(Debug, Serialize, Deserialize)]
struct InputMeta {
    destination_id: String,
    destination_type: String,
    source_id: String,
    source_type: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModelMeta {
    creation_timestamp: i64,
    description: Option<String>,
    last_updated_timestamp: i64,
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct VersionMeta {
    creation_timestamp: i64,
    current_stage: String,
    description: Option<String>,
    last_updated_timestamp: i64,
    name: String,
    run_id: String,
    run_link: Option<String>,
    source: String,
    status: String,
    status_message: Option<String>,
    storage_location: String,
    user_id: Option<String>,
    version: u64,
}

fn to_yaml<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_yaml::to_string(value)
        .map(String::into_bytes)
        .map_err(|error| invalid(format!("cannot encode store record: {error}")))
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    serde_yaml::from_str(&text).map_err(|error| RegistryError::Corrupt {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// Checks a metric, param or tag key as MLflow does; `/` makes subdirectories.
fn check_key(kind: &str, key: &str) -> Result<()> {
    let allowed = |c: char| c.is_alphanumeric() || "_-. :/".contains(c);
    let segments_ok = key
        .split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    if key.is_empty() || key.len() > 250 || !key.chars().all(allowed) || !segments_ok {
        return Err(invalid(format!(
            "{kind} key {key:?}: use letters, digits, `_ - . : /` and spaces, at most 250 characters, no empty or `..` segments"
        )));
    }
    Ok(())
}

/// Checks a registered model name: it becomes a directory name.
fn check_model_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 256
        || name.starts_with('.')
        || name.contains(['/', '\\', '%', ':'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(invalid(format!(
            "registered model name {name:?}: no `/ \\ % :`, no leading `.`, at most 256 characters"
        )));
    }
    Ok(())
}

/// Checks a run id: 32 lowercase hex digits, as MLflow makes them.
fn check_run_id(run_id: &str) -> Result<()> {
    if run_id.len() == 32 && run_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid(format!("run id {run_id:?} is not 32 hex digits")))
    }
}

fn check_version(version: &str) -> Result<u64> {
    version
        .parse::<u64>()
        .ok()
        .filter(|number| *number > 0)
        .ok_or_else(|| {
            invalid(format!(
                "model version {version:?} is not a positive number"
            ))
        })
}

/// Appends segments to `base`, refusing symlinks at every step: nothing may lead out of `base`.
fn confined(base: &Path, segments: &[&str]) -> Result<PathBuf> {
    let mut path = base.to_path_buf();
    for segment in segments {
        path.push(segment);
        if fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            return Err(invalid(format!(
                "artifact path {} goes through a symbolic link",
                path.display()
            )));
        }
    }
    Ok(path)
}

fn artifact_segments(path: &str) -> Result<Vec<&str>> {
    velo_mlflow::check_relative_path(path).map_err(|error| invalid(error.to_string()))
}

fn file_uri(path: &Path) -> Result<String> {
    url::Url::from_file_path(path)
        .map(String::from)
        .map_err(|()| invalid(format!("{} is not an absolute path", path.display())))
}

/// Whether a rename failed because its target exists with content (another writer won).
fn is_taken(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::DirectoryNotEmpty
    )
}

impl FileStore {
    /// Opens the store at `root`, creating it (with MLflow's `Default` experiment) when missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(io("create the store directory", root))?;
        let root = fs::canonicalize(root).map_err(io("resolve", root))?;
        let store = Self {
            root,
            writes: AtomicU64::new(0),
            crash_after: None,
            run_dirs: std::sync::Mutex::default(),
        };
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

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// For crash tests: abort the process (as a kill would) at the `n`-th write step.
    #[doc(hidden)]
    #[must_use]
    pub fn crash_after_writes(mut self, n: u64) -> Self {
        self.crash_after = Some(n);
        self
    }

    /// Counts one durable step; the crash tests abort here.
    fn step(&self) {
        let done = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_after.is_some_and(|limit| done >= limit) {
            std::process::abort();
        }
    }

    /// Removes what killed processes left in the staging area (entries untouched for a day;
    /// a live writer never keeps one that long). Best effort: failures are ignored.
    fn sweep_staging(&self) {
        let Ok(entries) = fs::read_dir(self.root.join(STAGING)) else {
            return;
        };
        let day = std::time::Duration::from_secs(24 * 3600);
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > day);
            if stale {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }

    /// A fresh directory in the staging area.
    fn staging_dir(&self) -> Result<PathBuf> {
        let dir = self
            .root
            .join(STAGING)
            .join(format!("{}-{}", std::process::id(), random_hex(8)));
        with_parents(&dir, || fs::create_dir(&dir)).map_err(io("create", &dir))?;
        Ok(dir)
    }

    /// Writes `bytes` to a new file (flushed to disk when `durability` asks).
    fn write_new(&self, path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
        let mut file = with_parents(path, || fs::File::create(path)).map_err(io("create", path))?;
        file.write_all(bytes).map_err(io("write", path))?;
        if durability == Durability::Synced {
            file.sync_all().map_err(io("flush", path))?;
        }
        self.step();
        Ok(())
    }

    /// Replaces `target` with `bytes` atomically: staged, flushed, renamed.
    fn write_atomic(&self, target: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
        let staged =
            self.root
                .join(STAGING)
                .join(format!("{}-{}.file", std::process::id(), random_hex(8)));
        self.write_new(&staged, bytes, durability)?;
        with_parents(target, || fs::rename(&staged, target))
            .map_err(io("move into place", target))?;
        if durability == Durability::Synced {
            sync_parent(target)?;
        }
        self.step();
        Ok(())
    }

    /// Moves a complete staged directory to `target`. Returns false, leaving `target` alone,
    /// when `target` exists already with content.
    fn publish_dir(&self, staged: &Path, target: &Path, durability: Durability) -> Result<bool> {
        match with_parents(target, || fs::rename(staged, target)) {
            Ok(()) => {
                if durability == Durability::Synced {
                    sync_parent(target)?;
                }
                self.step();
                Ok(true)
            }
            Err(error) if is_taken(&error) => {
                let _ = fs::remove_dir_all(staged);
                Ok(false)
            }
            Err(error) => {
                let _ = fs::remove_dir_all(staged);
                Err(RegistryError::io("move into place", target, error))
            }
        }
    }

    fn create_experiment_with_id(&self, id: &str, name: &str) -> Result<bool> {
        let staged = self.staging_dir()?;
        let now = now_ms();
        let meta = ExperimentMeta {
            artifact_location: file_uri(&self.root.join(id))?,
            creation_time: now,
            experiment_id: id.to_owned(),
            last_update_time: now,
            lifecycle_stage: "active".to_owned(),
            name: name.to_owned(),
        };
        self.write_new(
            &staged.join("meta.yaml"),
            &to_yaml(&meta)?,
            Durability::Cached,
        )?;
        self.publish_dir(&staged, &self.root.join(id), Durability::Cached)
    }

    fn experiments(&self) -> Result<Vec<ExperimentMeta>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io("list", &self.root))? {
            let entry = entry.map_err(io("list", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".trash") || name == "models" || !entry.path().is_dir() {
                continue;
            }
            let meta_path = entry.path().join("meta.yaml");
            if meta_path.exists() {
                found.push(read_yaml::<ExperimentMeta>(&meta_path)?);
            }
        }
        Ok(found)
    }

    /// The directory of a run, found by scanning the experiments.
    fn run_dir(&self, run_id: &str) -> Result<PathBuf> {
        check_run_id(run_id)?;
        let cached = self
            .run_dirs
            .lock()
            .ok()
            .and_then(|dirs| dirs.get(run_id).cloned());
        if let Some(dir) = cached.filter(|dir| dir.join("meta.yaml").is_file()) {
            return Ok(dir);
        }
        for experiment in self.experiments()? {
            let dir = self.root.join(&experiment.experiment_id).join(run_id);
            if dir.join("meta.yaml").is_file() {
                self.remember_run(run_id, &dir);
                return Ok(dir);
            }
        }
        Err(RegistryError::NotFound {
            what: format!("run {run_id} in {}", self.root.display()),
        })
    }

    fn remember_run(&self, run_id: &str, dir: &Path) {
        if let Ok(mut dirs) = self.run_dirs.lock() {
            dirs.insert(run_id.to_owned(), dir.to_path_buf());
        }
    }

    fn run_meta(&self, run_dir: &Path) -> Result<RunMeta> {
        read_yaml(&run_dir.join("meta.yaml"))
    }

    fn active_run(&self, run_id: &str) -> Result<(PathBuf, RunMeta)> {
        let dir = self.run_dir(run_id)?;
        let meta = self.run_meta(&dir)?;
        if meta.lifecycle_stage != "active" {
            return Err(invalid(format!("run {run_id} is deleted")));
        }
        Ok((dir, meta))
    }

    /// Files under `dir`, recursively, as `/`-joined keys (params, tags, metrics).
    fn keyed_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        let mut found = Vec::new();
        let mut pending = vec![(String::new(), dir.to_path_buf())];
        while let Some((prefix, directory)) = pending.pop() {
            let entries = match fs::read_dir(&directory) {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(RegistryError::io("list", &directory, error)),
            };
            for entry in entries {
                let entry = entry.map_err(io("list", &directory))?;
                let kind = entry.file_type().map_err(io("inspect", &directory))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                if kind.is_dir() {
                    pending.push((key, entry.path()));
                } else if kind.is_file() {
                    found.push((key, entry.path()));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn read_metric_lines(path: &Path, key: &str) -> Result<Vec<Metric>> {
        let text = fs::read_to_string(path).map_err(io("read", path))?;
        let mut metrics = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let corrupt = || RegistryError::Corrupt {
                path: path.to_path_buf(),
                message: format!("line {}: expected `timestamp value step`", number + 1),
            };
            let [timestamp, value, rest @ ..] = fields.as_slice() else {
                return Err(corrupt());
            };
            let value = match value.to_ascii_lowercase().as_str() {
                "nan" => f64::NAN,
                "inf" | "infinity" => f64::INFINITY,
                "-inf" | "-infinity" => f64::NEG_INFINITY,
                other => other.parse().map_err(|_| corrupt())?,
            };
            metrics.push(Metric {
                key: key.to_owned(),
                value,
                timestamp: timestamp.parse().map_err(|_| corrupt())?,
                step: rest
                    .first()
                    .map_or(Ok(0), |s| s.parse())
                    .map_err(|_| corrupt())?,
            });
        }
        Ok(metrics)
    }

    fn read_values(dir: &Path) -> Result<Vec<Tag>> {
        Self::keyed_files(dir)?
            .into_iter()
            .map(|(key, path)| {
                let value = fs::read_to_string(&path).map_err(io("read", &path))?;
                Ok(Tag { key, value })
            })
            .collect()
    }

    fn run_from_dir(&self, dir: &Path) -> Result<Run> {
        let meta = self.run_meta(dir)?;
        let mut metrics = Vec::new();
        for (key, path) in Self::keyed_files(&dir.join("metrics"))? {
            let latest = Self::read_metric_lines(&path, &key)?
                .into_iter()
                .max_by(|a, b| {
                    (a.step, a.timestamp)
                        .cmp(&(b.step, b.timestamp))
                        .then(a.value.total_cmp(&b.value))
                });
            metrics.extend(latest);
        }
        let params = Self::read_values(&dir.join("params"))?;
        let tags = Self::read_values(&dir.join("tags"))?;
        let mut dataset_inputs = Vec::new();
        let inputs_dir = dir.join("inputs");
        if inputs_dir.is_dir() {
            let experiment_dir = self.root.join(&meta.experiment_id);
            let mut entries: Vec<_> = fs::read_dir(&inputs_dir)
                .map_err(io("list", &inputs_dir))?
                .filter_map(std::result::Result::ok)
                .map(|entry| entry.path())
                .collect();
            entries.sort();
            for input_dir in entries {
                let input: InputMeta = read_yaml(&input_dir.join("meta.yaml"))?;
                if input.source_type != "DATASET" {
                    continue;
                }
                let dataset: Dataset = read_yaml(
                    &experiment_dir
                        .join("datasets")
                        .join(&input.source_id)
                        .join("meta.yaml"),
                )?;
                dataset_inputs.push(DatasetInput {
                    tags: input
                        .tags
                        .into_iter()
                        .map(|(key, value)| Tag { key, value })
                        .collect(),
                    dataset,
                });
            }
        }
        let run_name = if meta.run_name.is_empty() {
            tags.iter()
                .find(|tag| tag.key == "mlflow.runName")
                .map(|tag| tag.value.clone())
                .unwrap_or_default()
        } else {
            meta.run_name.clone()
        };
        let mut run = Run::default();
        run.info = run_info(meta, run_name);
        run.data = RunData {
            metrics,
            params,
            tags,
        };
        run.inputs = RunInputs { dataset_inputs };
        Ok(run)
    }

    fn model_dir(&self, name: &str) -> Result<PathBuf> {
        check_model_name(name)?;
        Ok(self.root.join("models").join(name))
    }

    fn ensure_registered_model(&self, name: &str) -> Result<PathBuf> {
        let dir = self.model_dir(name)?;
        if dir.join("meta.yaml").is_file() {
            return Ok(dir);
        }
        let staged = self.staging_dir()?;
        let now = now_ms();
        let meta = ModelMeta {
            creation_timestamp: now,
            description: None,
            last_updated_timestamp: now,
            name: name.to_owned(),
        };
        self.write_new(
            &staged.join("meta.yaml"),
            &to_yaml(&meta)?,
            Durability::Synced,
        )?;
        // Losing the race to another process is fine: the model exists either way.
        self.publish_dir(&staged, &dir, Durability::Synced)?;
        Ok(dir)
    }

    fn version_numbers(model_dir: &Path) -> Result<Vec<u64>> {
        let mut numbers = Vec::new();
        let entries = match fs::read_dir(model_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(numbers),
            Err(error) => return Err(RegistryError::io("list", model_dir, error)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", model_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(number) = name
                .strip_prefix("version-")
                .and_then(|n| n.parse::<u64>().ok())
                && entry.path().join("meta.yaml").is_file()
            {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn aliases(model_dir: &Path) -> Result<Vec<(String, String)>> {
        Ok(Self::read_values(&model_dir.join("aliases"))?
            .into_iter()
            .map(|tag| (tag.key, tag.value.trim().to_owned()))
            .collect())
    }

    fn version_from_dir(model_dir: &Path, number: u64) -> Result<ModelVersion> {
        let dir = model_dir.join(format!("version-{number}"));
        let meta: VersionMeta = read_yaml(&dir.join("meta.yaml"))?;
        let version = meta.version.to_string();
        let mut found = ModelVersion::default();
        found.aliases = Self::aliases(model_dir)?
            .into_iter()
            .filter(|(_, points_at)| *points_at == version)
            .map(|(alias, _)| alias)
            .collect();
        found.tags = Self::read_values(&dir.join("tags"))?;
        found.name = meta.name;
        found.version = version;
        found.creation_timestamp = meta.creation_timestamp;
        found.last_updated_timestamp = meta.last_updated_timestamp;
        found.source = meta.source;
        found.run_id = meta.run_id;
        found.status = meta.status;
        found.description = meta.description.unwrap_or_default();
        Ok(found)
    }

    /// Copies a local directory (regular files only; symlinks refused) under `into`.
    fn copy_tree(&self, from: &Path, into: &Path) -> Result<()> {
        for (relative, file) in Self::keyed_files_strict(from)? {
            let target = relative
                .split('/')
                .fold(into.to_path_buf(), |path, segment| path.join(segment));
            // `fs::copy` lets the kernel copy (and reflink where the filesystem can).
            with_parents(&target, || fs::copy(&file, &target)).map_err(io("copy", &target))?;
            self.step();
        }
        Ok(())
    }

    /// Like [`keyed_files`](Self::keyed_files) but refusing symbolic links.
    fn keyed_files_strict(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        let mut pending = vec![dir.to_path_buf()];
        while let Some(directory) = pending.pop() {
            for entry in fs::read_dir(&directory).map_err(io("list", &directory))? {
                let entry = entry.map_err(io("list", &directory))?;
                let kind = entry.file_type().map_err(io("inspect", &directory))?;
                if kind.is_symlink() {
                    return Err(invalid(format!(
                        "{} is a symbolic link; artifacts must be regular files",
                        entry.path().display()
                    )));
                }
                if kind.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
        Self::keyed_files(dir)
    }
}

fn run_info(meta: RunMeta, run_name: String) -> RunInfo {
    let mut info = RunInfo::default();
    info.run_id = meta.run_id;
    info.run_name = run_name;
    info.experiment_id = meta.experiment_id;
    info.user_id = meta.user_id;
    info.status = status_from_code(meta.status);
    info.start_time = meta.start_time;
    info.end_time = meta.end_time;
    info.artifact_uri = meta.artifact_uri;
    info.lifecycle_stage = meta.lifecycle_stage;
    info
}

impl Tracking for FileStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if name.trim().is_empty() {
            return Err(invalid("an experiment needs a name".to_owned()));
        }
        if let Some(found) = self
            .experiments()?
            .into_iter()
            .find(|experiment| experiment.name == name && experiment.lifecycle_stage == "active")
        {
            return Ok(found.experiment_id);
        }
        // The id derives from the name, so processes creating the same experiment at once
        // race for one directory and agree on the winner.
        let digest = blake3::hash(name.as_bytes());
        let mut seed = [0_u8; 8];
        seed.copy_from_slice(&digest.as_bytes()[..8]);
        let mut id = (u64::from_le_bytes(seed) % 900_000_000_000_000_000 + 100_000_000_000_000_000)
            .to_string();
        for _ in 0..16 {
            if self.create_experiment_with_id(&id, name)? {
                return Ok(id);
            }
            let meta: ExperimentMeta = read_yaml(&self.root.join(&id).join("meta.yaml"))?;
            if meta.name == name && meta.lifecycle_stage == "active" {
                return Ok(id);
            }
            id = (u64::from_str_radix(&random_hex(7), 16).unwrap_or(1) + 100_000_000_000_000_000)
                .to_string();
        }
        Err(invalid(format!(
            "cannot allocate an id for experiment {name:?}"
        )))
    }

    fn create_run(&self, experiment_id: &str, new: NewRun) -> Result<RunInfo> {
        if experiment_id.is_empty() || !experiment_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!(
                "experiment id {experiment_id:?} is not a number"
            )));
        }
        let experiment_dir = self.root.join(experiment_id);
        let experiment: ExperimentMeta =
            read_yaml(&experiment_dir.join("meta.yaml")).map_err(|_| RegistryError::NotFound {
                what: format!("experiment {experiment_id} in {}", self.root.display()),
            })?;
        if experiment.lifecycle_stage != "active" {
            return Err(invalid(format!("experiment {experiment_id} is deleted")));
        }
        let run_id = random_hex(16);
        let run_name = new
            .run_name
            .clone()
            .unwrap_or_else(|| format!("run-{}", &run_id[..8]));
        let user = new.user_id.clone().unwrap_or_else(|| "unknown".to_owned());
        let start_time = new.start_time.unwrap_or_else(now_ms);
        let meta = RunMeta {
            artifact_uri: file_uri(&experiment_dir.join(&run_id).join("artifacts"))?,
            end_time: None,
            entry_point_name: String::new(),
            experiment_id: experiment_id.to_owned(),
            lifecycle_stage: "active".to_owned(),
            run_id: run_id.clone(),
            run_name: run_name.clone(),
            source_name: String::new(),
            source_type: local_source(),
            source_version: String::new(),
            start_time,
            status: status_code(RunStatus::Running),
            tags: Vec::new(),
            user_id: user.clone(),
        };
        let staged = self.staging_dir()?;
        for sub in ["metrics", "params", "artifacts", "tags"] {
            fs::create_dir_all(staged.join(sub)).map_err(io("create", &staged))?;
        }
        let mut tags = new.tags.clone();
        tags.retain(|tag| tag.key != "mlflow.runName");
        tags.push(Tag::new("mlflow.runName", run_name.clone()));
        if !tags.iter().any(|tag| tag.key == "mlflow.user") {
            tags.push(Tag::new("mlflow.user", user));
        }
        for tag in &tags {
            check_key("tag", &tag.key)?;
            let path = tag
                .key
                .split('/')
                .fold(staged.join("tags"), |p, s| p.join(s));
            self.write_new(&path, tag.value.as_bytes(), Durability::Cached)?;
        }
        self.write_new(
            &staged.join("meta.yaml"),
            &to_yaml(&meta)?,
            Durability::Cached,
        )?;
        if !self.publish_dir(&staged, &experiment_dir.join(&run_id), Durability::Cached)? {
            return Err(invalid(format!("run id {run_id} collided; try again")));
        }
        self.remember_run(&run_id, &experiment_dir.join(&run_id));
        Ok(run_info(meta, run_name))
    }

    fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        let (dir, _) = self.active_run(run_id)?;
        for param in params {
            check_key("param", &param.key)?;
            let path = param
                .key
                .split('/')
                .fold(dir.join("params"), |p, s| p.join(s));
            match fs::read_to_string(&path) {
                Ok(existing) if existing == param.value => continue,
                Ok(existing) => {
                    return Err(invalid(format!(
                        "param {:?} of run {run_id} is already {existing:?}; a run holds one value per param (new value {:?})",
                        param.key, param.value
                    )));
                }
                Err(_) => self.write_atomic(&path, param.value.as_bytes(), Durability::Cached)?,
            }
        }
        for tag in tags {
            check_key("tag", &tag.key)?;
            let path = tag.key.split('/').fold(dir.join("tags"), |p, s| p.join(s));
            self.write_atomic(&path, tag.value.as_bytes(), Durability::Cached)?;
        }
        let mut by_key: BTreeMap<&str, String> = BTreeMap::new();
        for metric in metrics {
            check_key("metric", &metric.key)?;
            let line = by_key.entry(&metric.key).or_default();
            line.push_str(&format!(
                "{} {:?} {}\n",
                metric.timestamp, metric.value, metric.step
            ));
        }
        for (key, lines) in by_key {
            let path = key.split('/').fold(dir.join("metrics"), |p, s| p.join(s));
            let mut file = with_parents(&path, || {
                fs::OpenOptions::new().create(true).append(true).open(&path)
            })
            .map_err(io("open", &path))?;
            // One write per line: a killed process leaves whole lines only.
            for line in lines.split_inclusive('\n') {
                file.write_all(line.as_bytes())
                    .map_err(io("append to", &path))?;
                self.step();
            }
        }
        Ok(())
    }

    fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()> {
        let (dir, meta) = self.active_run(run_id)?;
        for input in datasets {
            let dataset_id = md5_hex(&[&input.dataset.name, &input.dataset.digest]);
            let dataset_dir = self
                .root
                .join(&meta.experiment_id)
                .join("datasets")
                .join(&dataset_id);
            if !dataset_dir.join("meta.yaml").is_file() {
                let staged = self.staging_dir()?;
                self.write_new(
                    &staged.join("meta.yaml"),
                    &to_yaml(&input.dataset)?,
                    Durability::Cached,
                )?;
                self.publish_dir(&staged, &dataset_dir, Durability::Cached)?;
            }
            let input_id = md5_hex(&[&dataset_id, run_id]);
            let input_dir = dir.join("inputs").join(input_id);
            if !input_dir.join("meta.yaml").is_file() {
                let link = InputMeta {
                    destination_id: run_id.to_owned(),
                    destination_type: "RUN".to_owned(),
                    source_id: dataset_id,
                    source_type: "DATASET".to_owned(),
                    tags: input
                        .tags
                        .iter()
                        .map(|tag| (tag.key.clone(), tag.value.clone()))
                        .collect(),
                };
                let staged = self.staging_dir()?;
                self.write_new(
                    &staged.join("meta.yaml"),
                    &to_yaml(&link)?,
                    Durability::Cached,
                )?;
                self.publish_dir(&staged, &input_dir, Durability::Cached)?;
            }
        }
        Ok(())
    }

    fn log_artifact(&self, run_id: &str, path: &str, bytes: &[u8]) -> Result<()> {
        let segments = artifact_segments(path)?;
        if segments.is_empty() {
            return Err(invalid("an artifact needs a file name".to_owned()));
        }
        let (dir, _) = self.active_run(run_id)?;
        let target = confined(&dir.join("artifacts"), &segments)?;
        self.write_atomic(&target, bytes, Durability::Cached)
    }

    fn log_artifact_dir(&self, run_id: &str, path: &str, local: &Path) -> Result<()> {
        let segments = artifact_segments(path)?;
        let (dir, _) = self.active_run(run_id)?;
        let target = confined(&dir.join("artifacts"), &segments)?;
        if !segments.is_empty() && !target.exists() {
            // A new directory appears whole: staged, then renamed.
            let staged = self.staging_dir()?;
            self.copy_tree(local, &staged)?;
            if self.publish_dir(&staged, &target, Durability::Cached)? {
                return Ok(());
            }
        }
        for (relative, file) in Self::keyed_files_strict(local)? {
            let bytes = fs::read(&file).map_err(io("read", &file))?;
            let relative_segments: Vec<&str> = relative.split('/').collect();
            self.write_atomic(
                &confined(&target, &relative_segments)?,
                &bytes,
                Durability::Cached,
            )?;
        }
        Ok(())
    }

    fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>> {
        let segments = artifact_segments(path)?;
        let dir = self.run_dir(run_id)?;
        let target = confined(&dir.join("artifacts"), &segments)?;
        let prefix = segments.join("/");
        let mut files = Vec::new();
        let entries = match fs::read_dir(&target) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(error) => return Err(RegistryError::io("list", &target, error)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &target))?;
            let kind = entry.file_type().map_err(io("inspect", &target))?;
            if kind.is_symlink() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            files.push(FileInfo {
                path: if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                },
                is_dir: kind.is_dir(),
                file_size: (!kind.is_dir()).then(|| i64::try_from(size).unwrap_or(i64::MAX)),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    fn read_artifact(&self, run_id: &str, path: &str) -> Result<Vec<u8>> {
        let segments = artifact_segments(path)?;
        let dir = self.run_dir(run_id)?;
        let target = confined(&dir.join("artifacts"), &segments)?;
        fs::read(&target).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => RegistryError::NotFound {
                what: format!("artifact {path} of run {run_id}"),
            },
            _ => RegistryError::io("read", &target, error),
        })
    }

    fn record_logged_model(&self, run_id: &str, mlmodel: &serde_json::Value) -> Result<()> {
        let (dir, _) = self.active_run(run_id)?;
        let path = dir.join("tags").join("mlflow.log-model.history");
        let mut history: Vec<serde_json::Value> = fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        history.push(mlmodel.clone());
        let text = serde_json::to_string(&history)
            .map_err(|error| invalid(format!("cannot encode the model history: {error}")))?;
        self.write_atomic(&path, text.as_bytes(), Durability::Cached)
    }

    fn end_run(&self, run_id: &str, status: RunStatus) -> Result<()> {
        if !status.is_terminal() {
            return Err(invalid(format!("{} is not an end status", status.as_str())));
        }
        let dir = self.run_dir(run_id)?;
        let mut meta = self.run_meta(&dir)?;
        meta.status = status_code(status);
        meta.end_time = Some(now_ms());
        self.write_atomic(&dir.join("meta.yaml"), &to_yaml(&meta)?, Durability::Cached)
    }

    fn get_run(&self, run_id: &str) -> Result<Run> {
        let dir = self.run_dir(run_id)?;
        self.run_from_dir(&dir)
    }

    fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        check_key("metric", key)?;
        let dir = self.run_dir(run_id)?;
        let path = key.split('/').fold(dir.join("metrics"), |p, s| p.join(s));
        if !path.is_file() {
            return Ok(Vec::new());
        }
        Self::read_metric_lines(&path, key)
    }

    fn list_runs(&self, experiment_id: &str) -> Result<Vec<Run>> {
        let experiment_dir = self.root.join(experiment_id);
        if experiment_id.is_empty()
            || !experiment_id.bytes().all(|b| b.is_ascii_digit())
            || !experiment_dir.is_dir()
        {
            return Err(RegistryError::NotFound {
                what: format!("experiment {experiment_id:?} in {}", self.root.display()),
            });
        }
        let mut runs = Vec::new();
        for entry in fs::read_dir(&experiment_dir).map_err(io("list", &experiment_dir))? {
            let entry = entry.map_err(io("list", &experiment_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if RESERVED_IN_EXPERIMENT.contains(&name.as_str())
                || !entry.path().join("meta.yaml").is_file()
            {
                continue;
            }
            runs.push(self.run_from_dir(&entry.path())?);
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.info.start_time));
        Ok(runs)
    }
}

impl ModelRegistry for FileStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion> {
        let model_dir = self.ensure_registered_model(name)?;
        for tag in tags {
            check_key("tag", &tag.key)?;
        }
        // Claim the next free number with a rename of a complete directory; a process that
        // loses a number to another one tries the next.
        for _ in 0..10_000 {
            let number = Self::version_numbers(&model_dir)?
                .last()
                .copied()
                .unwrap_or(0)
                + 1;
            let now = now_ms();
            let meta = VersionMeta {
                creation_timestamp: now,
                current_stage: "None".to_owned(),
                description: None,
                last_updated_timestamp: now,
                name: name.to_owned(),
                run_id: run_id.to_owned(),
                run_link: None,
                source: source.to_owned(),
                status: "READY".to_owned(),
                status_message: None,
                storage_location: source.to_owned(),
                user_id: None,
                version: number,
            };
            let staged = self.staging_dir()?;
            for tag in tags {
                let path = tag
                    .key
                    .split('/')
                    .fold(staged.join("tags"), |p, s| p.join(s));
                self.write_new(&path, tag.value.as_bytes(), Durability::Synced)?;
            }
            self.write_new(
                &staged.join("meta.yaml"),
                &to_yaml(&meta)?,
                Durability::Synced,
            )?;
            if self.publish_dir(
                &staged,
                &model_dir.join(format!("version-{number}")),
                Durability::Synced,
            )? {
                return Self::version_from_dir(&model_dir, number);
            }
        }
        Err(invalid(format!(
            "cannot allocate a version of model {name:?}"
        )))
    }

    fn get_model_version(&self, name: &str, version: &str) -> Result<Option<ModelVersion>> {
        let number = check_version(version)?;
        let model_dir = self.model_dir(name)?;
        if !model_dir
            .join(format!("version-{number}"))
            .join("meta.yaml")
            .is_file()
        {
            return Ok(None);
        }
        Self::version_from_dir(&model_dir, number).map(Some)
    }

    fn latest_model_version(&self, name: &str) -> Result<Option<ModelVersion>> {
        let model_dir = self.model_dir(name)?;
        match Self::version_numbers(&model_dir)?.last() {
            Some(number) => Self::version_from_dir(&model_dir, *number).map(Some),
            None => Ok(None),
        }
    }

    fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let model_dir = self.model_dir(name)?;
        Self::version_numbers(&model_dir)?
            .into_iter()
            .map(|number| Self::version_from_dir(&model_dir, number))
            .collect()
    }

    fn get_registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        let model_dir = self.model_dir(name)?;
        let meta_path = model_dir.join("meta.yaml");
        if !meta_path.is_file() {
            return Ok(None);
        }
        let meta: ModelMeta = read_yaml(&meta_path)?;
        let mut model = RegisteredModel::default();
        model.name = meta.name;
        model.creation_timestamp = meta.creation_timestamp;
        model.last_updated_timestamp = meta.last_updated_timestamp;
        model.description = meta.description.unwrap_or_default();
        model.tags = Self::read_values(&model_dir.join("tags"))?;
        model.aliases = Self::aliases(&model_dir)?
            .into_iter()
            .map(|(alias, version)| super::Alias { alias, version })
            .collect();
        Ok(Some(model))
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        velo_mlflow::check_alias(alias).map_err(|error| invalid(error.to_string()))?;
        if self.get_model_version(name, version)?.is_none() {
            return Err(RegistryError::NotFound {
                what: format!("model version {name}/{version} in {}", self.root.display()),
            });
        }
        let model_dir = self.model_dir(name)?;
        self.write_atomic(
            &model_dir.join("aliases").join(alias),
            version.as_bytes(),
            Durability::Synced,
        )
    }

    fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        velo_mlflow::check_alias(alias).map_err(|error| invalid(error.to_string()))?;
        let path = self.model_dir(name)?.join("aliases").join(alias);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(RegistryError::io("remove", &path, error)),
        }
    }

    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        velo_mlflow::check_alias(alias).map_err(|error| invalid(error.to_string()))?;
        let path = self.model_dir(name)?.join("aliases").join(alias);
        match fs::read_to_string(&path) {
            Ok(version) => self.get_model_version(name, version.trim()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(RegistryError::io("read", &path, error)),
        }
    }

    fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        check_key("tag", key)?;
        let number = check_version(version)?;
        let dir = self.model_dir(name)?.join(format!("version-{number}"));
        if !dir.join("meta.yaml").is_file() {
            return Err(RegistryError::NotFound {
                what: format!("model version {name}/{version}"),
            });
        }
        let path = key.split('/').fold(dir.join("tags"), |p, s| p.join(s));
        self.write_atomic(&path, value.as_bytes(), Durability::Synced)
    }

    fn download_model(&self, version: &ModelVersion, into: &Path) -> Result<()> {
        super::server::copy_local_source(&version.source, into)
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
}
