//! Experiments, runs, metrics, params, tags, dataset inputs and artifacts.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::registries::{
    Dataset, DatasetInput, FileInfo, Metric, NewRun, Param, RegistryError, Result, Run, RunData,
    RunInfo, RunInputs, RunStatus, Tag, Tracking,
};

// The store and its shared helpers (io, invalid, now_ms, …).
use super::*;

impl FileStore {
    pub(super) fn create_experiment_with_id(&self, id: &str, name: &str) -> Result<bool> {
        let staged = self.staging_dir()?;
        let now = now_ms();
        let meta = ExperimentMeta {
            artifact_location: crate::files::file_uri(&self.root.join(id)),
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

    pub(super) fn experiments(&self) -> Result<Vec<ExperimentMeta>> {
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
    pub(super) fn run_dir(&self, run_id: &str) -> Result<PathBuf> {
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

    pub(super) fn remember_run(&self, run_id: &str, dir: &Path) {
        if let Ok(mut dirs) = self.run_dirs.lock() {
            dirs.insert(run_id.to_owned(), dir.to_path_buf());
        }
    }

    pub(super) fn run_meta(&self, run_dir: &Path) -> Result<RunMeta> {
        read_yaml(&run_dir.join("meta.yaml"))
    }

    pub(super) fn active_run(&self, run_id: &str) -> Result<(PathBuf, RunMeta)> {
        let dir = self.run_dir(run_id)?;
        let meta = self.run_meta(&dir)?;
        if meta.lifecycle_stage != "active" {
            return Err(invalid(format!("run {run_id} is deleted")));
        }
        Ok((dir, meta))
    }

    /// Files under `dir`, recursively, as `/`-joined keys (params, tags, metrics).
    pub(super) fn keyed_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
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

    pub(super) fn read_metric_lines(path: &Path, key: &str) -> Result<Vec<Metric>> {
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

    pub(super) fn read_values(dir: &Path) -> Result<Vec<Tag>> {
        Self::keyed_files(dir)?
            .into_iter()
            .map(|(key, path)| {
                let value = fs::read_to_string(&path).map_err(io("read", &path))?;
                Ok(Tag { key, value })
            })
            .collect()
    }

    pub(super) fn run_from_dir(&self, dir: &Path) -> Result<Run> {
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

    /// Like [`keyed_files`](Self::keyed_files) but refusing symbolic links.
    pub(super) fn keyed_files_strict(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
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
            artifact_uri: crate::files::file_uri(&experiment_dir.join(&run_id).join("artifacts")),
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
            self.inside(&path)?;
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

    fn log_artifact_files(&self, run_id: &str, path: &str, files: &[(&str, &[u8])]) -> Result<()> {
        let segments = artifact_segments(path)?;
        let (dir, _) = self.active_run(run_id)?;
        let target = confined(&dir.join("artifacts"), &segments)?;
        if !segments.is_empty() && !target.exists() {
            // A new directory appears whole: written in the staging area, then renamed.
            let staged = self.staging_dir()?;
            for (name, bytes) in files {
                let file = confined(&staged, &artifact_segments(name)?)?;
                self.write_new(&file, bytes, Durability::Cached)?;
            }
            if self.publish_dir(&staged, &target, Durability::Cached)? {
                return Ok(());
            }
        }
        for (name, bytes) in files {
            let file = confined(&target, &artifact_segments(name)?)?;
            self.write_atomic(&file, bytes, Durability::Cached)?;
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
