//! The tracking service: a run opened for a job, with MLflow's standard tags, the job's
//! configuration, dataset lineage and system metrics sampled in the background, ended as
//! FINISHED, FAILED (with the error as a tag) or KILLED.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    datasets::Lineage,
    registries::{
        Dataset, DatasetInput, Metric, NewRun, RegistryError, Result, RunInfo, RunStatus, Tag,
        Tracking,
    },
    services::{RunConfig, system::SystemMonitor},
};

/// The tag holding a failed run's error.
pub const ERROR_TAG: &str = "velo.error";
/// MLflow's limit on a param value; longer values are cut (MLflow would cut them silently).
const PARAM_VALUE_LIMIT: usize = 6000;

/// Where and how a run is started, besides its [`RunConfig`].
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The program or job that runs (`mlflow.source.name`), such as `velo run configs/training.yaml`.
    pub source_name: String,
    /// A directory inside the project's git checkout, for `mlflow.source.git.commit`.
    pub project_dir: Option<PathBuf>,
    /// The user (`mlflow.user`); the `USER` of the process when absent.
    pub user: Option<String>,
    /// How often system metrics are sampled.
    pub system_interval: Duration,
    /// How many samples are averaged into one logged step.
    pub samples_before_logging: usize,
}

impl RunContext {
    /// The user: [`RunContext::user`], else the process's `USER`, `LOGNAME` or `USERNAME`,
    /// else `unknown`.
    pub fn user_name(&self) -> String {
        self.user.clone().unwrap_or_else(process_user)
    }
}

/// The user running the process (`USER`, `LOGNAME` or `USERNAME`), else `unknown`.
pub fn process_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Default for RunContext {
    fn default() -> Self {
        Self {
            source_name: "velo".to_owned(),
            project_dir: None,
            user: None,
            system_interval: Duration::from_secs(10),
            samples_before_logging: 1,
        }
    }
}

/// An open run. End it with [`finish`](Self::finish), [`fail`](Self::fail) or
/// [`kill`](Self::kill); a run dropped without ending (a panic) ends FAILED.
#[derive(Debug)]
pub struct ActiveRun {
    tracking: Arc<dyn Tracking>,
    info: RunInfo,
    monitor: Option<SystemMonitor>,
    ended: Arc<AtomicBool>,
}

/// A handle that ends a run as KILLED from elsewhere (the CLI's Ctrl-C handler).
#[derive(Debug, Clone)]
pub struct RunKiller {
    tracking: Arc<dyn Tracking>,
    run_id: String,
    ended: Arc<AtomicBool>,
}

impl RunKiller {
    /// The run this handle ends.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Ends the run as KILLED unless it has ended already.
    pub fn kill(&self) -> Result<()> {
        if self.ended.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.tracking.end_run(&self.run_id, RunStatus::Killed)
    }
}

impl ActiveRun {
    /// Opens a run in `experiment_name` with the standard tags, and starts sampling system
    /// metrics when the configuration asks for them.
    pub fn start(
        tracking: Arc<dyn Tracking>,
        experiment_name: &str,
        config: &RunConfig,
        context: &RunContext,
    ) -> Result<Self> {
        let experiment = tracking.get_or_create_experiment(experiment_name)?;
        let user = context.user_name();
        let mut tags = vec![
            // MLflow's UI shows "Created by" from this tag (its clients set it beside user_id).
            Tag::new("mlflow.user", user.clone()),
            Tag::new("mlflow.source.name", context.source_name.clone()),
            Tag::new("mlflow.source.type", "LOCAL"),
            Tag::new("velo.version", env!("CARGO_PKG_VERSION")),
        ];
        if let Some(commit) = context.project_dir.as_deref().and_then(git_commit) {
            tags.push(Tag::new("mlflow.source.git.commit", commit));
        }
        if let Some(description) = &config.description {
            tags.push(Tag::new("mlflow.note.content", description.clone()));
        }
        tags.extend(
            config
                .tags
                .iter()
                .map(|(key, value)| Tag::new(key.clone(), value.clone())),
        );
        let info = tracking.create_run(
            &experiment,
            NewRun {
                run_name: Some(config.name.clone()),
                start_time: None,
                user_id: Some(user),
                tags,
            },
        )?;
        let ended = Arc::new(AtomicBool::new(false));
        let monitor = if config.log_system_metrics {
            let sink_tracking = Arc::clone(&tracking);
            let run_id = info.run_id.clone();
            let started = velo_mlflow::now_ms();
            let monitor = SystemMonitor::start(
                context.system_interval,
                context.samples_before_logging,
                context.project_dir.as_deref().unwrap_or(Path::new("/")),
                move |step, sample| {
                    let now = velo_mlflow::now_ms().max(started);
                    let step = i64::try_from(step).unwrap_or(i64::MAX);
                    let metrics: Vec<Metric> = sample
                        .into_iter()
                        .map(|(key, value)| Metric::new(key, value, now, step))
                        .collect();
                    if let Err(error) = sink_tracking.log_batch(&run_id, &metrics, &[], &[]) {
                        tracing::warn!(%error, "cannot log system metrics");
                    }
                },
            )
            .map_err(|source| RegistryError::Io {
                action: "start the system metrics thread for",
                path: PathBuf::from(&info.run_id),
                source,
            })?;
            Some(monitor)
        } else {
            None
        };
        tracing::info!(run_id = %info.run_id, run_name = %info.run_name, experiment = %experiment_name, "run started");
        Ok(Self {
            tracking,
            info,
            monitor,
            ended,
        })
    }

    /// Starts a run nested under this one, as MLflow's nested runs (`mlflow.parentRunId`, so
    /// its UI groups them), in the same experiment and without system metrics. The child ends
    /// on its own ([`ActiveRun::finish`]); dropped unended, it ends FAILED.
    ///
    /// # Errors
    /// The store refuses the run.
    pub fn start_child(&self, name: &str) -> Result<Self> {
        let info = self.tracking.create_run(
            &self.info.experiment_id,
            NewRun {
                run_name: Some(name.to_owned()),
                start_time: None,
                user_id: Some(self.info.user_id.clone()),
                tags: vec![
                    Tag::new("mlflow.parentRunId", self.info.run_id.clone()),
                    Tag::new("mlflow.source.type", "LOCAL"),
                    Tag::new("velo.version", env!("CARGO_PKG_VERSION")),
                ],
            },
        )?;
        Ok(Self {
            tracking: Arc::clone(&self.tracking),
            info,
            monitor: None,
            ended: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The run's identity and artifact location.
    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.info.run_id
    }

    /// The store the run is in.
    pub fn tracking(&self) -> &dyn Tracking {
        self.tracking.as_ref()
    }

    /// A handle that ends this run as KILLED (for a signal handler).
    pub fn killer(&self) -> RunKiller {
        RunKiller {
            tracking: Arc::clone(&self.tracking),
            run_id: self.info.run_id.clone(),
            ended: Arc::clone(&self.ended),
        }
    }

    /// Logs a job's whole effective configuration as the artifact `config.json`, and every set
    /// leaf that describes the model and the data as a param (dotted keys, such as
    /// `model.max_depth`), leaving out `services` and `run_config`.
    pub fn log_config(&self, config: &serde_json::Value) -> Result<()> {
        let mut params = BTreeMap::new();
        // Parameters describe the model and the data; how the run is logged and alerted
        // (`services`, `run_config`) is in `config.json` only, as are unset values.
        let described = match config {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .filter(|(key, _)| !NOT_PARAMS.contains(&key.as_str()))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        flatten("", &described, &mut params);
        let params: Vec<Tag> = params
            .into_iter()
            .map(|(key, mut value)| {
                if value.len() > PARAM_VALUE_LIMIT {
                    let mut end = PARAM_VALUE_LIMIT;
                    while !value.is_char_boundary(end) {
                        end -= 1;
                    }
                    value.truncate(end);
                }
                Tag::new(key, value)
            })
            .collect();
        self.tracking
            .log_batch(&self.info.run_id, &[], &params, &[])?;
        let text = serde_json::to_vec_pretty(config).map_err(|error| {
            RegistryError::InvalidArgument(format!("cannot encode the configuration: {error}"))
        })?;
        self.tracking
            .log_artifact(&self.info.run_id, "config.json", &text)
    }

    /// Logs metrics at one step, timestamped now.
    pub fn log_metrics(&self, metrics: &[(&str, f64)], step: i64) -> Result<()> {
        let now = velo_mlflow::now_ms();
        let metrics: Vec<Metric> = metrics
            .iter()
            .map(|(key, value)| Metric::new(*key, *value, now, step))
            .collect();
        self.tracking
            .log_batch(&self.info.run_id, &metrics, &[], &[])
    }

    /// Sets tags.
    pub fn set_tags(&self, tags: &[Tag]) -> Result<()> {
        self.tracking.log_batch(&self.info.run_id, &[], &[], tags)
    }

    /// Links a dataset to the run with its role (`training`, `evaluation`, …).
    pub fn log_dataset(&self, lineage: &Lineage, context: &str) -> Result<()> {
        let input = dataset_input(lineage, context);
        self.tracking.log_inputs(&self.info.run_id, &[input])
    }

    /// Ends the run as FINISHED.
    pub fn finish(mut self) -> Result<()> {
        self.end(RunStatus::Finished, None)
    }

    /// Ends the run as FAILED, with the error and its causes as the [`ERROR_TAG`] tag.
    pub fn fail(mut self, error: &(dyn std::error::Error + 'static)) -> Result<()> {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.end(RunStatus::Failed, Some(text))
    }

    /// Ends the run as KILLED.
    pub fn kill(mut self) -> Result<()> {
        self.end(RunStatus::Killed, None)
    }

    fn end(&mut self, status: RunStatus, error: Option<String>) -> Result<()> {
        if let Some(monitor) = self.monitor.take() {
            monitor.stop();
        }
        if self.ended.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(error) = error {
            let mut value = error;
            value.truncate(
                value
                    .char_indices()
                    .nth(7_900)
                    .map_or(value.len(), |(at, _)| at),
            );
            self.tracking
                .log_batch(&self.info.run_id, &[], &[], &[Tag::new(ERROR_TAG, value)])?;
        }
        tracing::info!(run_id = %self.info.run_id, status = status.as_str(), "run ended");
        self.tracking.end_run(&self.info.run_id, status)
    }
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        if !self.ended.load(Ordering::SeqCst) {
            let reason = if std::thread::panicking() {
                "the job panicked"
            } else {
                "the run was dropped without being ended"
            };
            if let Err(error) = self.end(RunStatus::Failed, Some(reason.to_owned())) {
                tracing::warn!(%error, "cannot end run {}", self.info.run_id);
            }
        }
    }
}

/// MLflow's dataset input for a lineage record.
pub fn dataset_input(lineage: &Lineage, context: &str) -> DatasetInput {
    let elements = lineage.rows.saturating_mul(lineage.columns);
    DatasetInput {
        tags: vec![Tag::new(velo_mlflow::CONTEXT_TAG, context)],
        dataset: Dataset {
            name: lineage.name.clone(),
            digest: lineage.digest.chars().take(36).collect(),
            source_type: if lineage.source_uri.starts_with("http") {
                "http".to_owned()
            } else {
                "local".to_owned()
            },
            source: serde_json::json!({ "uri": lineage.source_uri }).to_string(),
            schema: Some(lineage.mlflow_colspec()),
            profile: Some(
                serde_json::json!({ "num_rows": lineage.rows, "num_elements": elements })
                    .to_string(),
            ),
        },
    }
}

/// Top-level keys of a job's configuration that are not logged as parameters.
const NOT_PARAMS: &[&str] = &["services", "run_config"];

fn flatten(prefix: &str, value: &serde_json::Value, into: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, inner, into);
            }
        }
        serde_json::Value::String(text) => {
            into.insert(prefix.to_owned(), text.clone());
        }
        serde_json::Value::Null => {}
        other => {
            into.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The commit checked out in the git repository holding `dir`, read from `.git` (no git
/// process): a detached `HEAD`, a loose ref or a packed ref.
pub fn git_commit(dir: &Path) -> Option<String> {
    let mut current = Some(dir);
    let git_dir = loop {
        let candidate = current?.join(".git");
        if candidate.is_dir() {
            break candidate;
        }
        if candidate.is_file() {
            // A worktree or submodule: `gitdir: <path>`.
            let text = std::fs::read_to_string(&candidate).ok()?;
            let pointed = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
            break if pointed.is_absolute() {
                pointed
            } else {
                current?.join(pointed)
            };
        }
        current = current?.parent();
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let is_hash = |text: &str| text.len() >= 40 && text.bytes().all(|b| b.is_ascii_hexdigit());
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return is_hash(head).then(|| head.to_owned());
    };
    if reference.split('/').any(|segment| segment == "..") {
        return None;
    }
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map_or_else(|| git_dir.clone(), |common| git_dir.join(common.trim()));
    for base in [&git_dir, &common] {
        if let Ok(text) = std::fs::read_to_string(base.join(reference)) {
            let hash = text.trim();
            if is_hash(hash) {
                return Some(hash.to_owned());
            }
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (hash, name) = line.split_once(' ')?;
        (name.trim() == reference && is_hash(hash)).then(|| hash.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registries::FileStore;

    fn store() -> (tempfile::TempDir, Arc<FileStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::open(dir.path().join("mlruns")).unwrap());
        (dir, store)
    }

    fn context() -> RunContext {
        RunContext {
            source_name: "velo run configs/training.yaml".into(),
            project_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
            user: Some("ann".into()),
            system_interval: Duration::from_millis(20),
            samples_before_logging: 1,
        }
    }

    #[test]
    fn a_run_carries_standard_tags_config_and_system_metrics() {
        let (_dir, store) = store();
        let mut config = RunConfig::named("training");
        config.description = Some("nightly".into());
        config.tags.insert("team".into(), "ml".into());
        let run = ActiveRun::start(store.clone(), "bikes", &config, &context()).unwrap();
        run.log_config(&serde_json::json!({
            "KIND": "TrainingJob",
            "model": {"max_depth": 20, "features": ["hr"]},
            "x": null,
            "services": {"alerts": {"enable": true}},
            "run_config": {"description": null}
        }))
        .unwrap();
        run.log_metrics(&[("rmse", 4.8)], 0).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let id = run.id().to_owned();
        run.finish().unwrap();
        let read = store.get_run(&id).unwrap();
        assert_eq!(read.info.status, RunStatus::Finished);
        assert_eq!(read.data.tag("mlflow.runName"), Some("training"));
        assert_eq!(read.data.tag("mlflow.user"), Some("ann"));
        assert_eq!(
            read.data.tag("mlflow.source.name"),
            Some("velo run configs/training.yaml")
        );
        assert_eq!(read.data.tag("mlflow.note.content"), Some("nightly"));
        assert_eq!(read.data.tag("team"), Some("ml"));
        let commit = read
            .data
            .tag("mlflow.source.git.commit")
            .expect("the project is a git checkout");
        assert_eq!(commit.len(), 40);
        assert_eq!(read.data.param("model.max_depth"), Some("20"));
        assert_eq!(read.data.param("model.features"), Some(r#"["hr"]"#));
        assert_eq!(read.data.param("KIND"), Some("TrainingJob"));
        // Unset values and how the run is logged are not parameters (config.json has them).
        assert_eq!(read.data.param("x"), None);
        assert_eq!(read.data.param("services.alerts.enable"), None);
        assert_eq!(read.data.param("run_config.description"), None);
        assert!(
            store
                .read_artifact(&id, "config.json")
                .unwrap()
                .starts_with(b"{")
        );
        assert_eq!(read.data.metric("rmse"), Some(4.8));
        let cpu = store
            .metric_history(&id, "system/cpu_utilization_percentage")
            .unwrap();
        assert!(
            !cpu.is_empty(),
            "system metrics were sampled while the run was open"
        );
        let steps: Vec<i64> = cpu.iter().map(|metric| metric.step).collect();
        assert_eq!(steps, (0..steps.len() as i64).collect::<Vec<_>>());
        // Nothing is logged after the end.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            store
                .metric_history(&id, "system/cpu_utilization_percentage")
                .unwrap()
                .len(),
            cpu.len()
        );
    }

    #[test]
    fn failed_killed_and_dropped_runs_end_with_the_right_status() {
        let (_dir, store) = store();
        let mut config = RunConfig::named("job");
        config.log_system_metrics = false;
        let failing = ActiveRun::start(store.clone(), "bikes", &config, &context()).unwrap();
        let failed_id = failing.id().to_owned();
        let error = std::io::Error::other("disk full");
        failing.fail(&error).unwrap();
        let failed = store.get_run(&failed_id).unwrap();
        assert_eq!(failed.info.status, RunStatus::Failed);
        assert_eq!(failed.data.tag(ERROR_TAG), Some("disk full"));

        let killed = ActiveRun::start(store.clone(), "bikes", &config, &context()).unwrap();
        let killer = killed.killer();
        let killed_id = killed.id().to_owned();
        killer.kill().unwrap();
        killer.kill().unwrap();
        drop(killed);
        assert_eq!(
            store.get_run(&killed_id).unwrap().info.status,
            RunStatus::Killed,
            "a kill is final"
        );

        let dropped = ActiveRun::start(store.clone(), "bikes", &config, &context()).unwrap();
        let dropped_id = dropped.id().to_owned();
        drop(dropped);
        let dropped = store.get_run(&dropped_id).unwrap();
        assert_eq!(dropped.info.status, RunStatus::Failed);
        assert!(dropped.data.tag(ERROR_TAG).unwrap().contains("dropped"));
    }

    #[test]
    fn git_commits_are_read_from_loose_and_packed_refs() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        let hash = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(
            git.join("packed-refs"),
            format!("# pack-refs\n{hash} refs/heads/main\n"),
        )
        .unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(git_commit(&nested).as_deref(), Some(hash));
        let loose = "fedcba9876543210fedcba9876543210fedcba98";
        std::fs::write(git.join("refs/heads/main"), format!("{loose}\n")).unwrap();
        assert_eq!(git_commit(&nested).as_deref(), Some(loose));
        std::fs::write(git.join("HEAD"), format!("{hash}\n")).unwrap();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(hash));
        std::fs::write(git.join("HEAD"), "ref: ../../etc/passwd\n").unwrap();
        assert_eq!(git_commit(dir.path()), None);
    }
}
