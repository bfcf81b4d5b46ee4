//! Sandboxed stores: read production, write elsewhere.
//!
//! A [`Sandbox`] is both a [`Tracking`] and a [`ModelRegistry`] over two stores: the production
//! stores it is opened on, which it only ever reads, and an embedded store of its own under
//! `<dir>` (`.velo/sandboxes/<name>` for `velo run --sandbox <name>`), which takes every write:
//! experiments, runs, metrics, artifacts, model versions, aliases, tags. Reads see both, the
//! sandbox over production:
//!
//! - a run, its metrics and artifacts are looked up in the sandbox, then in production;
//! - model versions are production's and the sandbox's; a version the sandbox registers is
//!   numbered after production's latest, so that `bikes/3` means one version wherever it is;
//! - an alias set in the sandbox (`<dir>/overlay/aliases/<model>/<alias>`) hides production's,
//!   a removed one hides it too; tags set on production versions, and registered-model tags
//!   (the alias log), are kept in the sandbox and merged on reading.
//!
//! Nothing is ever written to production; `velo sandbox promote` copies a sandbox version into
//! it deliberately.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    FileStore, ModelRegistry, ModelVersion, RegisteredModel, RegistryError, Result, Stores,
    Tracking,
};
use velo_mlflow::{
    Alias, DatasetInput, FileInfo, Metric, NewRun, Param, Run, RunInfo, RunStatus, Tag,
};

/// Production stores seen through a sandbox that takes every write.
#[derive(Debug, Clone)]
pub struct Sandbox {
    name: String,
    dir: PathBuf,
    production: Stores,
    store: Arc<FileStore>,
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A name that can be a directory: letters, digits, `_`, `-` and `.`, not starting with `.`.
fn check_segment(kind: &str, name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if fine {
        Ok(())
    } else {
        Err(RegistryError::InvalidArgument(format!(
            "{kind} {name:?}: use letters, digits, `_`, `-` and `.` (not first), at most 200 \
             characters"
        )))
    }
}

/// Checks a sandbox name: it becomes a directory name.
///
/// # Errors
/// Anything but letters, digits, `_`, `-` and `.` (not first), or more than 200 characters.
pub fn check_name(name: &str) -> Result<()> {
    check_segment("sandbox name", name)
}

/// The names of the sandboxes in `dir` (the directories holding a sandbox store), sorted.
///
/// # Errors
/// A directory that exists but cannot be listed.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io("list", dir)(error)),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.path().join("mlruns").is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| check_name(name).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Removes the sandbox in `dir` and everything it wrote.
///
/// # Errors
/// No sandbox there, or a directory that cannot be removed.
pub fn remove(dir: &Path) -> Result<()> {
    if !dir.join("mlruns").is_dir() {
        return Err(RegistryError::NotFound {
            what: format!("a sandbox at {}", dir.display()),
        });
    }
    fs::remove_dir_all(dir).map_err(io("remove", dir))
}

impl Sandbox {
    /// How many runs the sandbox holds, in all its experiments.
    ///
    /// # Errors
    /// A store that cannot be read.
    pub fn run_count(&self) -> Result<usize> {
        let root = self.store.root();
        let mut runs = 0;
        for entry in fs::read_dir(root).map_err(io("list", root))?.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.chars().all(|c| c.is_ascii_digit()) && entry.path().join("meta.yaml").is_file() {
                runs += self.store.list_runs(&id)?.len();
            }
        }
        Ok(runs)
    }

    /// The sandbox `name` in `dir` over `production` (the sandbox store is created when
    /// missing).
    ///
    /// # Errors
    /// A bad name, or a directory that cannot be created.
    pub fn open(name: &str, dir: impl Into<PathBuf>, production: Stores) -> Result<Self> {
        check_segment("sandbox name", name)?;
        let dir = dir.into();
        let store = Arc::new(FileStore::open(dir.join("mlruns"))?);
        Ok(Self {
            name: name.to_owned(),
            dir,
            production,
            store,
        })
    }

    /// The sandbox's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sandbox's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sandbox's own store (what it wrote).
    pub fn store(&self) -> &FileStore {
        &self.store
    }

    /// The production stores it reads.
    pub fn production(&self) -> &Stores {
        &self.production
    }

    /// These stores as a job receives them.
    pub fn stores(self) -> Stores {
        let shared = Arc::new(self);
        Stores {
            tracking: shared.clone(),
            registry: shared,
        }
    }

    fn alias_path(&self, name: &str, alias: &str) -> Result<PathBuf> {
        check_segment("model name", name)?;
        velo_mlflow::check_alias(alias)
            .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
        Ok(self.dir.join("overlay/aliases").join(name).join(alias))
    }

    /// The sandbox's own setting of an alias: `Some(Some(v))` set, `Some(None)` removed,
    /// `None` untouched (production's holds).
    fn overlay_alias(&self, name: &str, alias: &str) -> Result<Option<Option<String>>> {
        let path = self.alias_path(name, alias)?;
        match fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Ok(Some(None)),
            Ok(text) => Ok(Some(Some(text.trim().to_owned()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io("read", &path)(error)),
        }
    }

    fn write_overlay(path: &Path, value: &str) -> Result<()> {
        crate::datasets::write_file(path, value.as_bytes()).map_err(|error| {
            RegistryError::InvalidArgument(format!("cannot write {}: {error}", path.display()))
        })?;
        Ok(())
    }

    /// Every alias of `name` as the sandbox sees it.
    fn aliases(&self, name: &str) -> Result<Vec<Alias>> {
        let mut aliases: Vec<Alias> = match self.production.registry.get_registered_model(name) {
            Ok(Some(model)) => model.aliases,
            Ok(None) => Vec::new(),
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => return Err(error),
        };
        check_segment("model name", name)?;
        let dir = self.dir.join("overlay/aliases").join(name);
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let alias = entry.file_name().to_string_lossy().into_owned();
                if alias.starts_with('.') {
                    continue;
                }
                aliases.retain(|existing| existing.alias != alias);
                if let Some(Some(version)) = self.overlay_alias(name, &alias)? {
                    aliases.push(Alias { alias, version });
                }
            }
        }
        aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
        Ok(aliases)
    }

    /// A version with the sandbox's aliases and tags.
    fn present(&self, mut version: ModelVersion) -> Result<ModelVersion> {
        version.aliases = self
            .aliases(&version.name)?
            .into_iter()
            .filter(|alias| alias.version == version.version)
            .map(|alias| alias.alias)
            .collect();
        let dir = self
            .dir
            .join("overlay/version_tags")
            .join(&version.name)
            .join(&version.version);
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let key = entry.file_name().to_string_lossy().into_owned();
                if key.starts_with('.') {
                    continue;
                }
                let value = fs::read_to_string(entry.path()).map_err(io("read", &entry.path()))?;
                version.tags.retain(|tag| tag.key != key);
                version.tags.push(Tag::new(key, value));
            }
        }
        Ok(version)
    }

    /// Whether the sandbox itself holds version `version` of `name`.
    fn holds(&self, name: &str, version: &str) -> Result<bool> {
        Ok(self.store.get_model_version(name, version)?.is_some())
    }

    fn production_latest(&self, name: &str) -> Result<u64> {
        match self.production.registry.latest_model_version(name) {
            Ok(Some(version)) => Ok(version.version.parse().unwrap_or(0)),
            Ok(None) => Ok(0),
            Err(error) if error.is_not_found() => Ok(0),
            Err(error) => Err(error),
        }
    }
}

/// `Ok(None)` for a missing record, so that a lookup can fall through to production.
fn found<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

impl Tracking for Sandbox {
    fn location(&self) -> String {
        format!(
            "sandbox {} ({}) over {}",
            self.name,
            self.dir.display(),
            self.production.tracking.location()
        )
    }

    fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        self.store.get_or_create_experiment(name)
    }

    fn create_run(&self, experiment_id: &str, new: NewRun) -> Result<RunInfo> {
        self.store.create_run(experiment_id, new)
    }

    fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        self.store.log_batch(run_id, metrics, params, tags)
    }

    fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()> {
        self.store.log_inputs(run_id, datasets)
    }

    fn log_artifact(&self, run_id: &str, path: &str, bytes: &[u8]) -> Result<()> {
        self.store.log_artifact(run_id, path, bytes)
    }

    fn log_artifact_dir(&self, run_id: &str, path: &str, local: &Path) -> Result<()> {
        self.store.log_artifact_dir(run_id, path, local)
    }

    fn log_artifact_files(&self, run_id: &str, path: &str, files: &[(&str, &[u8])]) -> Result<()> {
        self.store.log_artifact_files(run_id, path, files)
    }

    fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>> {
        match found(self.store.get_run(run_id))? {
            Some(_) => self.store.list_artifacts(run_id, path),
            None => self.production.tracking.list_artifacts(run_id, path),
        }
    }

    fn read_artifact(&self, run_id: &str, path: &str) -> Result<Vec<u8>> {
        match found(self.store.get_run(run_id))? {
            Some(_) => self.store.read_artifact(run_id, path),
            None => self.production.tracking.read_artifact(run_id, path),
        }
    }

    fn record_logged_model(&self, run_id: &str, mlmodel: &serde_json::Value) -> Result<()> {
        self.store.record_logged_model(run_id, mlmodel)
    }

    fn end_run(&self, run_id: &str, status: RunStatus) -> Result<()> {
        self.store.end_run(run_id, status)
    }

    fn get_run(&self, run_id: &str) -> Result<Run> {
        match found(self.store.get_run(run_id))? {
            Some(run) => Ok(run),
            None => self.production.tracking.get_run(run_id),
        }
    }

    fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        match found(self.store.get_run(run_id))? {
            Some(_) => self.store.metric_history(run_id, key),
            None => self.production.tracking.metric_history(run_id, key),
        }
    }

    fn list_runs(&self, experiment_id: &str) -> Result<Vec<Run>> {
        self.store.list_runs(experiment_id)
    }
}

impl ModelRegistry for Sandbox {
    fn location(&self) -> String {
        format!(
            "sandbox {} ({}) over {}",
            self.name,
            self.dir.display(),
            self.production.registry.location()
        )
    }

    fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion> {
        let floor = self.production_latest(name)?;
        let version = self
            .store
            .create_model_version_after(name, source, run_id, tags, floor)?;
        self.present(version)
    }

    fn get_model_version(&self, name: &str, version: &str) -> Result<Option<ModelVersion>> {
        let found = match self.store.get_model_version(name, version)? {
            Some(version) => Some(version),
            None => match self.production.registry.get_model_version(name, version) {
                Ok(version) => version,
                Err(error) if error.is_not_found() => None,
                Err(error) => return Err(error),
            },
        };
        found.map(|version| self.present(version)).transpose()
    }

    fn latest_model_version(&self, name: &str) -> Result<Option<ModelVersion>> {
        Ok(self.list_model_versions(name)?.pop())
    }

    fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let mut versions = match self.production.registry.list_model_versions(name) {
            Ok(versions) => versions,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => return Err(error),
        };
        versions.extend(self.store.list_model_versions(name).or_else(|error| {
            if error.is_not_found() {
                Ok(Vec::new())
            } else {
                Err(error)
            }
        })?);
        versions.sort_by_key(|version| version.version.parse::<u64>().unwrap_or(0));
        versions
            .into_iter()
            .map(|version| self.present(version))
            .collect()
    }

    fn list_registered_models(&self) -> Result<Vec<String>> {
        let mut names = self.production.registry.list_registered_models()?;
        names.extend(self.store.list_registered_models()?);
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn get_registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        let production = match self.production.registry.get_registered_model(name) {
            Ok(model) => model,
            Err(error) if error.is_not_found() => None,
            Err(error) => return Err(error),
        };
        let own = self.store.get_registered_model(name)?;
        let mut model = match (production, own) {
            (None, None) => return Ok(None),
            (Some(model), None) | (None, Some(model)) => model,
            (Some(mut model), Some(own)) => {
                for tag in own.tags {
                    model.tags.retain(|existing| existing.key != tag.key);
                    model.tags.push(tag);
                }
                model
            }
        };
        model.aliases = self.aliases(name)?;
        Ok(Some(model))
    }

    fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        if self.get_registered_model(name)?.is_none() {
            return Err(RegistryError::NotFound {
                what: format!(
                    "registered model {name} in {}",
                    ModelRegistry::location(self)
                ),
            });
        }
        self.store.ensure_model(name)?;
        self.store.set_registered_model_tag(name, key, value)
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        let path = self.alias_path(name, alias)?;
        if self.get_model_version(name, version)?.is_none() {
            return Err(RegistryError::NotFound {
                what: format!(
                    "model version {name}/{version} in {}",
                    ModelRegistry::location(self)
                ),
            });
        }
        Self::write_overlay(&path, version)
    }

    fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let path = self.alias_path(name, alias)?;
        Self::write_overlay(&path, "")
    }

    fn get_model_version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        match self.overlay_alias(name, alias)? {
            Some(Some(version)) => self.get_model_version(name, &version),
            Some(None) => Ok(None),
            None => match self
                .production
                .registry
                .get_model_version_by_alias(name, alias)
            {
                Ok(Some(version)) => self.present(version).map(Some),
                Ok(None) => Ok(None),
                Err(error) if error.is_not_found() => Ok(None),
                Err(error) => Err(error),
            },
        }
    }

    fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        if self.holds(name, version)? {
            return self.store.set_model_version_tag(name, version, key, value);
        }
        if self.get_model_version(name, version)?.is_none() {
            return Err(RegistryError::NotFound {
                what: format!("model version {name}/{version}"),
            });
        }
        check_segment("model name", name)?;
        check_segment("version", version)?;
        check_segment("tag key", key)?;
        let path = self
            .dir
            .join("overlay/version_tags")
            .join(name)
            .join(version)
            .join(key);
        Self::write_overlay(&path, value)
    }

    fn download_model(&self, version: &ModelVersion, into: &Path) -> Result<()> {
        if self.holds(&version.name, &version.version)? {
            self.store.download_model(version, into)
        } else {
            self.production.registry.download_model(version, into)
        }
    }

    fn read_model_file(&self, version: &ModelVersion, relative: &str) -> Result<Vec<u8>> {
        if self.holds(&version.name, &version.version)? {
            self.store.read_model_file(version, relative)
        } else {
            self.production.registry.read_model_file(version, relative)
        }
    }
}
