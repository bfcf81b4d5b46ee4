//! Sandboxed runs: a job reads production's models, aliases and runs, and writes only to a
//! sandbox (`.velo/sandboxes/<name>`: its store, see [`velo_io::registries::sandbox`], and its
//! output files); and what `velo sandbox list|diff|promote|drop` does with one.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use velo_io::registries::{
    self, ModelRegistry, ModelVersion, Stores, Tag, Tracking, mlmodel, sandbox::Sandbox,
};

use crate::{JobConfig, JobError};

/// Where sandboxes live, under the working directory.
pub const SANDBOXES: &str = ".velo/sandboxes";

/// The tag a promoted version carries: the sandbox it came from.
pub const SANDBOX_TAG: &str = "velo.sandbox.name";
/// The tag a promoted version carries: the sandbox run that produced it.
pub const SANDBOX_RUN_TAG: &str = "velo.sandbox.run_id";
/// The tag a promoted version carries: its version number in the sandbox.
pub const SANDBOX_VERSION_TAG: &str = "velo.sandbox.version";

/// The directory of sandbox `name` under `root` (the working directory).
pub fn sandbox_dir(root: &Path, name: &str) -> PathBuf {
    // Names are checked where a sandbox is opened or dropped; this only joins.
    root.join(SANDBOXES).join(name)
}

/// Opens sandbox `name` under `root` over the production stores.
///
/// # Errors
/// A bad name or a sandbox directory that cannot be created.
pub fn open(root: &Path, name: &str, production: Stores) -> Result<Sandbox, JobError> {
    Ok(Sandbox::open(name, sandbox_dir(root, name), production)?)
}

/// The prefix of a sandbox's Kafka topics and consumer groups: `sandbox.<name>.`.
pub fn topic_prefix(name: &str) -> String {
    format!("sandbox.{name}.")
}

/// Where an output path goes in a sandbox: under `<sandbox>/outputs`, keeping a relative path's
/// shape (an absolute path keeps its components below the root).
fn redirected(dir: &Path, path: &str) -> String {
    let kept: PathBuf = Path::new(path)
        .components()
        .filter(|component| matches!(component, Component::Normal(_)))
        .collect();
    dir.join("outputs").join(kept).display().to_string()
}

/// Rewrites every file path under `value` (the job's `outputs`): strings under the keys files
/// are named by (`path`, `report`, `html`, `markdown`, `junit`) and a bare string.
fn rewrite(value: &mut serde_json::Value, dir: &Path, key: Option<&str>) {
    match value {
        serde_json::Value::String(text) => {
            let is_path = match key {
                None => true,
                Some(key) => ["path", "report", "html", "markdown", "junit"].contains(&key),
            };
            if is_path {
                *text = redirected(dir, text);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                rewrite(value, dir, Some(key.as_str()));
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                rewrite(item, dir, key);
            }
        }
        _ => {}
    }
}

/// The job as it runs in sandbox `name` (directory `dir`): its store is the sandbox over the
/// configured one (`services.mlflow.sandbox`), the files of its `outputs` (and a stream's
/// prediction log) go under `<dir>/outputs`, and a stream's output and dead-letter topics and
/// consumer group take the prefix `sandbox.<name>.` (it reads production's input topic under
/// its own group, so production's offsets never move).
///
/// # Errors
/// A job whose configuration does not survive the rewrite (a bug, named).
pub fn sandboxed(job: &JobConfig, name: &str, dir: &Path) -> Result<JobConfig, JobError> {
    let mut value = serde_json::to_value(job)
        .map_err(|error| JobError::Config(format!("cannot sandbox the job: {error}")))?;
    if let serde_json::Value::Object(map) = &mut value {
        if let Some(outputs) = map.get_mut("outputs") {
            let top = if outputs.is_string() {
                None
            } else {
                Some("outputs")
            };
            rewrite(outputs, dir, top);
        }
        // A stream reads production's input with a consumer group of its own (production's
        // offsets do not move) and writes to the sandbox's topics only.
        for key in ["output_topic", "dead_letter_topic", "prediction_log_topic"] {
            if let Some(serde_json::Value::String(topic)) = map.get_mut(key) {
                *topic = format!("{}{topic}", topic_prefix(name));
            }
        }
        if let Some(serde_json::Value::String(group)) = map.get_mut("group_id") {
            *group = format!("{}{group}", topic_prefix(name));
        }
        if let Some(log) = map.get_mut("prediction_log")
            && log.is_string()
        {
            rewrite(log, dir, None);
        }
        let services = map
            .entry("services")
            .or_insert_with(|| serde_json::json!({}));
        if let serde_json::Value::Object(services) = services {
            let mlflow = services
                .entry("mlflow")
                .or_insert_with(|| serde_json::json!({}));
            if let serde_json::Value::Object(mlflow) = mlflow {
                mlflow.insert("sandbox".to_owned(), name.into());
            }
        }
    }
    serde_json::from_value(value)
        .map_err(|error| JobError::Config(format!("cannot sandbox the job: {error}")))
}

/// What a sandbox holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// Its name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The versions it registered, by model: `(model, version, run)`.
    pub versions: Vec<(String, String, String)>,
    /// Aliases it set that differ from production: `(model, alias, production's, sandbox's)`.
    pub aliases: Vec<(String, String, Option<String>, Option<String>)>,
    /// Its runs.
    pub runs: usize,
}

/// The sandboxes under `root`, by name.
///
/// # Errors
/// A directory that cannot be listed.
pub fn list(root: &Path) -> Result<Vec<String>, JobError> {
    Ok(velo_io::registries::sandbox::list(&root.join(SANDBOXES))?)
}

/// What sandbox `name` holds against production.
///
/// # Errors
/// An unknown sandbox, or a store that cannot be read.
pub fn summary(root: &Path, name: &str, production: Stores) -> Result<Summary, JobError> {
    velo_io::registries::sandbox::check_name(name)?;
    let dir = sandbox_dir(root, name);
    if !dir.join("mlruns").is_dir() {
        return Err(JobError::Config(format!(
            "there is no sandbox {name:?} in {}",
            root.join(SANDBOXES).display()
        )));
    }
    let sandbox = open(root, name, production.clone())?;
    let own = sandbox.store();
    let mut versions = Vec::new();
    let mut aliases = Vec::new();
    for model in own
        .list_registered_models()?
        .into_iter()
        .chain(production.registry.list_registered_models()?)
        .collect::<std::collections::BTreeSet<_>>()
    {
        for version in own.list_model_versions(&model).unwrap_or_default() {
            versions.push((model.clone(), version.version, version.run_id));
        }
        let seen = |model_view: Option<registries::RegisteredModel>| {
            model_view
                .map(|m| {
                    m.aliases
                        .into_iter()
                        .map(|a| (a.alias, a.version))
                        .collect::<std::collections::BTreeMap<_, _>>()
                })
                .unwrap_or_default()
        };
        let before = seen(
            production
                .registry
                .get_registered_model(&model)
                .ok()
                .flatten(),
        );
        let after = seen(sandbox.get_registered_model(&model)?);
        for alias in before
            .keys()
            .chain(after.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (was, is) = (before.get(alias).cloned(), after.get(alias).cloned());
            if was != is {
                aliases.push((model.clone(), alias.clone(), was, is));
            }
        }
    }
    let runs = sandbox.run_count()?;
    Ok(Summary {
        name: name.to_owned(),
        dir,
        versions,
        aliases,
        runs,
    })
}

/// Copies version `version` of model `model` from sandbox `name` into production: its model
/// files logged on a new production run (`Sandbox promotion`) and registered as production's
/// next version, tagged with the sandbox, run and version it came from; `alias`, if given,
/// then points at it (logged in the alias log).
///
/// # Errors
/// An unknown sandbox or version, or a production store that refuses a write.
pub fn promote(
    root: &Path,
    name: &str,
    (model, version): (&str, &str),
    (experiment, alias, by): (&str, Option<&str>, &str),
    production: Stores,
) -> Result<ModelVersion, JobError> {
    let sandbox = open(root, name, production.clone())?;
    let own = sandbox.store();
    let found = own.get_model_version(model, version)?.ok_or_else(|| {
        JobError::Config(format!(
            "sandbox {name:?} holds no version {version} of {model}"
        ))
    })?;
    // The whole model directory, read from the sandbox's run (never through a temp dir).
    let parse = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        mlmodel::ModelFile::parse(&text, Path::new(mlmodel::MLMODEL_FILE))
            .ok()
            .map(|file| file.document)
    };
    let artifact_path = own
        .read_model_file(&found, mlmodel::MLMODEL_FILE)
        .ok()
        .and_then(|bytes| parse(&bytes))
        .and_then(|document| document["artifact_path"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "model".to_owned());
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pending = vec![artifact_path.clone()];
    while let Some(dir) = pending.pop() {
        for info in own.list_artifacts(&found.run_id, &dir)? {
            if info.is_dir {
                pending.push(info.path);
            } else {
                let bytes = own.read_artifact(&found.run_id, &info.path)?;
                let relative = info
                    .path
                    .strip_prefix(&format!("{artifact_path}/"))
                    .unwrap_or(&info.path)
                    .to_owned();
                files.push((relative, bytes));
            }
        }
    }
    let mlmodel_document = files
        .iter()
        .find(|(path, _)| path == mlmodel::MLMODEL_FILE)
        .and_then(|(_, bytes)| parse(bytes));
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
        .collect();
    let tracking = production.tracking.as_ref();
    let experiment_id = tracking.get_or_create_experiment(experiment)?;
    let mut new = registries::NewRun::default();
    new.run_name = Some("Sandbox promotion".to_owned());
    new.tags = vec![
        Tag::new(SANDBOX_TAG, name),
        Tag::new(SANDBOX_RUN_TAG, found.run_id.clone()),
        Tag::new(SANDBOX_VERSION_TAG, found.version.clone()),
    ];
    let run = tracking.create_run(&experiment_id, new)?;
    tracking.log_artifact_files(&run.run_id, "model", &borrowed)?;
    if let Some(mut document) = mlmodel_document {
        document["run_id"] = run.run_id.clone().into();
        tracking.record_logged_model(&run.run_id, &document)?;
    }
    tracking.end_run(&run.run_id, registries::RunStatus::Finished)?;
    let source = format!("{}/model", tracking.get_run(&run.run_id)?.info.artifact_uri);
    let registered = production.registry.create_model_version(
        model,
        &source,
        &run.run_id,
        &[
            Tag::new(SANDBOX_TAG, name),
            Tag::new(SANDBOX_RUN_TAG, found.run_id.clone()),
            Tag::new(SANDBOX_VERSION_TAG, found.version.clone()),
        ],
    )?;
    if let Some(alias) = alias {
        registries::history::move_alias(
            production.registry.as_ref(),
            model,
            alias,
            &registered.version,
            by,
            &format!(
                "promoted from sandbox {name} (its version {})",
                found.version
            ),
        )?;
    }
    Ok(registered)
}

/// Removes sandbox `name` and everything it wrote.
///
/// # Errors
/// An unknown sandbox or a directory that cannot be removed.
pub fn drop_sandbox(root: &Path, name: &str) -> Result<PathBuf, JobError> {
    velo_io::registries::sandbox::check_name(name)?;
    let dir = sandbox_dir(root, name);
    if !dir.join("mlruns").is_dir() {
        return Err(JobError::Config(format!(
            "there is no sandbox {name:?} in {}",
            root.join(SANDBOXES).display()
        )));
    }
    velo_io::registries::sandbox::remove(&dir)?;
    Ok(dir)
}
