//! Registered versions as people inspect them: each version described (creation, source run,
//! kind, parameters, training data, metrics, aliases), the history of a model with its alias
//! log, the differences between two versions, and rolling an alias back. What
//! `velo models list|history|diff|rollback` prints, on the embedded store and an MLflow server
//! alike.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use velo_io::registries::{
    ModelRegistry, ModelVersion, RegistryError, Tracking,
    history::{self, AliasEvent},
    mlmodel,
};

use crate::JobError;

pub use velo_models::onnx::{
    ML_OPSET as ONNX_ML_OPSET, ML_OPSET_V5 as ONNX_ML_OPSET_V5, MlOpset as OnnxMlOpset,
    OPSET as ONNX_OPSET, Options as OnnxOptions,
};

/// A dataset a version was trained or evaluated on, as its run recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Lineage {
    /// The dataset's name.
    pub name: String,
    /// Its content digest.
    pub digest: String,
    /// Where it was read from.
    pub source: String,
    /// Its rows, when recorded.
    pub rows: Option<u64>,
    /// What the run used it for (`training`, …).
    pub context: Option<String>,
}

/// One registered version, described.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VersionInfo {
    /// The registered model.
    pub name: String,
    /// The version number.
    pub version: String,
    /// When it was registered (RFC 3339, UTC).
    pub created: String,
    /// The run that produced it.
    pub run_id: String,
    /// That run's status (`FINISHED`, `KILLED`…), when the run is readable.
    pub run_status: Option<String>,
    /// The model kind, from its `MLmodel` file.
    pub kind: Option<String>,
    /// The run's parameters of the model (`model.*`: kind, hyperparameters, features).
    pub params: BTreeMap<String, String>,
    /// Input columns of the signature: name and MLflow type.
    pub inputs: Vec<(String, String)>,
    /// Output columns of the signature.
    pub outputs: Vec<(String, String)>,
    /// The datasets of its run.
    pub datasets: Vec<Lineage>,
    /// The run's metrics (latest values).
    pub metrics: BTreeMap<String, f64>,
    /// Aliases pointing at it now.
    pub aliases: Vec<String>,
    /// Tags of the version.
    pub tags: BTreeMap<String, String>,
}

/// Describes `version`: its run (parameters, datasets, metrics) and its `MLmodel` file
/// (kind, signature). A run or file that cannot be read leaves those parts empty.
pub fn describe(
    tracking: &dyn Tracking,
    registry: &dyn ModelRegistry,
    version: &ModelVersion,
) -> VersionInfo {
    let run = tracking.get_run(&version.run_id).ok();
    let model_file = registry
        .read_model_file(version, mlmodel::MLMODEL_FILE)
        .ok()
        .and_then(|bytes| {
            let text = String::from_utf8(bytes).ok()?;
            mlmodel::ModelFile::parse(&text, std::path::Path::new(mlmodel::MLMODEL_FILE)).ok()
        });
    let columns = |specs: &[mlmodel::ColSpec]| {
        specs
            .iter()
            .map(|spec| (spec.name.clone(), spec.kind.clone()))
            .collect::<Vec<_>>()
    };
    let (kind, inputs, outputs) = match &model_file {
        Some(file) => (
            file.velo.as_ref().and_then(|velo| velo.model_kind.clone()),
            columns(&file.inputs),
            columns(&file.outputs),
        ),
        None => (None, Vec::new(), Vec::new()),
    };
    let mut info = VersionInfo {
        name: version.name.clone(),
        version: version.version.clone(),
        created: history::format_ms(version.creation_timestamp),
        run_id: version.run_id.clone(),
        run_status: None,
        kind,
        params: BTreeMap::new(),
        inputs,
        outputs,
        datasets: Vec::new(),
        metrics: BTreeMap::new(),
        aliases: version.aliases.clone(),
        tags: version
            .tags
            .iter()
            .map(|tag| (tag.key.clone(), tag.value.clone()))
            .collect(),
    };
    if let Some(run) = run {
        info.run_status = Some(format!("{:?}", run.info.status).to_uppercase());
        info.params = run
            .data
            .params
            .iter()
            .filter(|param| param.key.starts_with("model."))
            .map(|param| (param.key.clone(), param.value.clone()))
            .collect();
        for metric in &run.data.metrics {
            info.metrics.insert(metric.key.clone(), metric.value);
        }
        info.datasets = run
            .inputs
            .dataset_inputs
            .iter()
            .map(|input| Lineage {
                name: input.dataset.name.clone(),
                digest: input.dataset.digest.clone(),
                source: serde_json::from_str::<serde_json::Value>(&input.dataset.source)
                    .ok()
                    .and_then(|source| source["uri"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| input.dataset.source.clone()),
                rows: input
                    .dataset
                    .profile
                    .as_deref()
                    .and_then(|profile| serde_json::from_str::<serde_json::Value>(profile).ok())
                    .and_then(|profile| profile["num_rows"].as_u64()),
                context: input.context().map(str::to_owned),
            })
            .collect();
    }
    info
}

/// A model's versions and its alias log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct History {
    /// The registered model.
    pub name: String,
    /// Every version, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Every recorded move of its aliases, oldest first.
    pub log: Vec<AliasEvent>,
}

/// The history of model `name`.
///
/// # Errors
/// An unknown model, or a store that cannot be read.
pub fn history(
    tracking: &dyn Tracking,
    registry: &dyn ModelRegistry,
    name: &str,
) -> Result<History, JobError> {
    let Some(model) = registry.get_registered_model(name)? else {
        return Err(RegistryError::NotFound {
            what: format!("registered model {name} in {}", registry.location()),
        }
        .into());
    };
    // MLflow's version search leaves aliases out: they come from the registered model.
    let versions = registry
        .list_model_versions(name)?
        .into_iter()
        .map(|mut version| {
            version.aliases = model
                .aliases
                .iter()
                .filter(|alias| alias.version == version.version)
                .map(|alias| alias.alias.clone())
                .collect();
            describe(tracking, registry, &version)
        })
        .collect();
    let log = history::alias_log(registry, name)?;
    Ok(History {
        name: name.to_owned(),
        versions,
        log,
    })
}

/// Which version held `alias` of model `name` at `at` (ms since the epoch), by its alias log:
/// the version and the event that put it there.
///
/// # Errors
/// An unknown model, or a time before the log records any move of the alias (naming its
/// first move).
pub fn holder_at(
    registry: &dyn ModelRegistry,
    name: &str,
    alias: &str,
    at: i64,
) -> Result<Option<AliasEvent>, JobError> {
    let log = history::alias_log(registry, name)?;
    let moves: Vec<&AliasEvent> = log.iter().filter(|event| event.alias == alias).collect();
    let Some(first) = moves.first() else {
        return Err(JobError::Config(format!(
            "the alias log of {name} records no move of `{alias}`"
        )));
    };
    if at < first.at {
        return Err(JobError::Config(format!(
            "{name}@{alias} was first set at {} (to version {}); the log knows nothing before",
            first.time(),
            first.to.as_deref().unwrap_or("none")
        )));
    }
    Ok(moves
        .into_iter()
        .rfind(|event| event.at <= at)
        .filter(|event| event.to.is_some())
        .cloned())
}

/// Moves `alias` of model `name` back: to `to`, or else to the version it pointed at before
/// its current holder (by the alias log). The target's model file is loaded first: a version
/// that cannot be loaded is refused and the alias stays. `by` and `why` go to the alias log.
///
/// # Errors
/// No current holder, no previous one in the log (give `to`), an unknown target, a target
/// whose artifact fails to load, or a store failure.
pub fn rollback(
    registry: &dyn ModelRegistry,
    name: &str,
    alias: &str,
    to: Option<&str>,
    (by, why): (&str, Option<&str>),
) -> Result<AliasEvent, JobError> {
    let current = registry
        .get_model_version_by_alias(name, alias)?
        .map(|version| version.version);
    let target = match to {
        Some(version) => version.to_owned(),
        None => {
            let current = current.as_deref().ok_or_else(|| {
                JobError::Config(format!(
                    "{name}@{alias} points at no version: give the version to roll back to"
                ))
            })?;
            let log = history::alias_log(registry, name)?;
            history::previous_holder(&log, alias, current)
                .map(str::to_owned)
                .ok_or_else(|| {
                    JobError::Config(format!(
                        "the alias log of {name} records no version of `{alias}` before version \
                         {current}: give the version to roll back to"
                    ))
                })?
        }
    };
    if current.as_deref() == Some(target.as_str()) {
        return Err(JobError::Config(format!(
            "{name}@{alias} already points at version {target}"
        )));
    }
    let version =
        registry
            .get_model_version(name, &target)?
            .ok_or_else(|| RegistryError::NotFound {
                what: format!("model version {name}/{target} in {}", registry.location()),
            })?;
    // Refuse a version that would not serve.
    let uri = velo_io::registries::ModelUri::Version {
        name: name.to_owned(),
        version: version_number(&target)?,
    };
    crate::common::load_model_uri(registry, &uri).map_err(|error| {
        JobError::Config(format!(
            "{name}@{alias} stays at version {}: version {} cannot be loaded: {error}",
            current.as_deref().unwrap_or("none"),
            version.version
        ))
    })?;
    let reason = format!(
        "rollback from version {}{}",
        current.as_deref().unwrap_or("none"),
        why.map(|why| format!(": {why}")).unwrap_or_default()
    );
    Ok(history::move_alias(
        registry, name, alias, &target, by, &reason,
    )?)
}

/// A version number as typed.
fn version_number(text: &str) -> Result<u64, JobError> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&number| number > 0)
        .ok_or_else(|| JobError::Config(format!("version {text:?}: expected a number >= 1")))
}

/// One line of a diff: what differs (or not) between the two versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DiffRow {
    /// `architecture`, `signature`, `data`, `metrics` or `importance`.
    pub section: String,
    /// The item (a parameter, a column, a dataset, a metric, a feature).
    pub item: String,
    /// Its value in the first version, if present.
    pub a: Option<String>,
    /// Its value in the second.
    pub b: Option<String>,
    /// `added`, `removed`, `changed`, `same`, or for numbers the signed delta.
    pub change: String,
}

/// The differences between two versions of a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VersionDiff {
    /// The first version.
    pub a: VersionInfo,
    /// The second.
    pub b: VersionInfo,
    /// Row by row, section by section.
    pub rows: Vec<DiffRow>,
}

fn text_row(section: &str, item: &str, a: Option<String>, b: Option<String>) -> DiffRow {
    let change = match (&a, &b) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        (Some(x), Some(y)) if x != y => "changed",
        _ => "same",
    };
    DiffRow {
        section: section.to_owned(),
        item: item.to_owned(),
        a,
        b,
        change: change.to_owned(),
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.6}")
    }
}

fn number_row(section: &str, item: &str, a: Option<f64>, b: Option<f64>) -> DiffRow {
    let mut row = text_row(section, item, a.map(number), b.map(number));
    if let (Some(a), Some(b)) = (a, b) {
        row.change = if a == b {
            "same".to_owned()
        } else {
            let delta = b - a;
            format!("{}{}", if delta > 0.0 { "+" } else { "" }, number(delta))
        };
    }
    row
}

fn union<'a, K: Ord + 'a>(
    a: impl IntoIterator<Item = &'a K>,
    b: impl IntoIterator<Item = &'a K>,
) -> BTreeSet<&'a K> {
    a.into_iter().chain(b).collect()
}

/// A version described, its model loaded, and its artifact format in words.
type Loaded = (VersionInfo, Box<dyn velo_models::Model>, String);

/// Compares versions `a` and `b` of model `name`: architecture (kind, hyperparameters and
/// feature pipeline from the run's `model.*` parameters, tree/node/layer counts from the
/// artifacts, the artifact format), signature (columns added, removed, retyped), training
/// data (datasets by digest and rows), metrics with deltas, and global feature importances.
///
/// # Errors
/// An unknown model or version, or an artifact that cannot be loaded.
pub fn diff(
    tracking: &dyn Tracking,
    registry: &dyn ModelRegistry,
    name: &str,
    (a, b): (&str, &str),
) -> Result<VersionDiff, JobError> {
    let load = |version: &str| -> Result<Loaded, JobError> {
        let uri = velo_io::registries::ModelUri::Version {
            name: name.to_owned(),
            version: version_number(version)?,
        };
        let loaded = mlmodel::load_model_bytes(registry, &uri)?;
        let artifact = velo_models::artifact::Artifact::from_bytes(&loaded.bytes)?;
        let model = velo_models::load_model(&artifact)?;
        let format = format!(
            "{} {} (written by velo {})",
            velo_models::artifact::FORMAT,
            artifact.format_version,
            artifact.velo_version
        );
        Ok((describe(tracking, registry, &loaded.version), model, format))
    };
    let (info_a, model_a, format_a) = load(a)?;
    let (info_b, model_b, format_b) = load(b)?;
    let mut rows = vec![
        text_row(
            "architecture",
            "kind",
            Some(model_a.kind().to_owned()),
            Some(model_b.kind().to_owned()),
        ),
        text_row(
            "architecture",
            "artifact format",
            Some(format_a),
            Some(format_b),
        ),
    ];
    for key in union(info_a.params.keys(), info_b.params.keys()) {
        if key == "model.KIND" {
            continue;
        }
        rows.push(text_row(
            "architecture",
            key.trim_start_matches("model."),
            info_a.params.get(key).cloned(),
            info_b.params.get(key).cloned(),
        ));
    }
    let (structure_a, structure_b) = (model_a.structure(), model_b.structure());
    for key in union(structure_a.keys(), structure_b.keys()) {
        rows.push(number_row(
            "architecture",
            &format!("fitted {key}"),
            structure_a.get(key).map(|&v| v as f64),
            structure_b.get(key).map(|&v| v as f64),
        ));
    }
    for (direction, columns_a, columns_b) in [
        ("input", &info_a.inputs, &info_b.inputs),
        ("output", &info_a.outputs, &info_b.outputs),
    ] {
        let by_name = |columns: &[(String, String)]| -> BTreeMap<String, String> {
            columns.iter().cloned().collect()
        };
        let (map_a, map_b) = (by_name(columns_a), by_name(columns_b));
        for column in union(map_a.keys(), map_b.keys()) {
            let mut row = text_row(
                "signature",
                &format!("{direction} {column}"),
                map_a.get(column).cloned(),
                map_b.get(column).cloned(),
            );
            if row.change == "changed" {
                row.change = "retyped".to_owned();
            }
            rows.push(row);
        }
    }
    let datasets = |info: &VersionInfo| -> BTreeMap<String, String> {
        info.datasets
            .iter()
            .map(|lineage| {
                let context = lineage.context.as_deref().unwrap_or("input");
                (
                    format!("{context} {}", lineage.name),
                    format!(
                        "{} ({} rows)",
                        lineage.digest,
                        lineage
                            .rows
                            .map_or_else(|| "?".to_owned(), |rows| rows.to_string())
                    ),
                )
            })
            .collect()
    };
    let (data_a, data_b) = (datasets(&info_a), datasets(&info_b));
    for item in union(data_a.keys(), data_b.keys()) {
        rows.push(text_row(
            "data",
            item,
            data_a.get(item).cloned(),
            data_b.get(item).cloned(),
        ));
    }
    for metric in union(info_a.metrics.keys(), info_b.metrics.keys()) {
        if metric.starts_with("system/") {
            continue;
        }
        rows.push(number_row(
            "metrics",
            metric,
            info_a.metrics.get(metric).copied(),
            info_b.metrics.get(metric).copied(),
        ));
    }
    let importances = |model: &dyn velo_models::Model| -> BTreeMap<String, f64> {
        model
            .explain_model()
            .map(|found| found.features.into_iter().zip(found.importances).collect())
            .unwrap_or_default()
    };
    let (importance_a, importance_b) =
        (importances(model_a.as_ref()), importances(model_b.as_ref()));
    for feature in union(importance_a.keys(), importance_b.keys()) {
        rows.push(number_row(
            "importance",
            feature,
            importance_a.get(feature).copied(),
            importance_b.get(feature).copied(),
        ));
    }
    Ok(VersionDiff {
        a: info_a,
        b: info_b,
        rows,
    })
}

impl VersionDiff {
    /// The rows that differ (all of them with `all`), as a Markdown table.
    pub fn markdown(&self, all: bool) -> String {
        let mut out = format!(
            "| section | item | version {} | version {} | change |\n|---|---|---|---|---|\n",
            self.a.version, self.b.version
        );
        for row in self.rows.iter().filter(|row| all || row.change != "same") {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                row.section,
                row.item.replace('|', "\\|"),
                row.a.as_deref().unwrap_or("–").replace('|', "\\|"),
                row.b.as_deref().unwrap_or("–").replace('|', "\\|"),
                row.change
            ));
        }
        out
    }

    /// The rows that differ (all of them with `all`), as an aligned text table.
    pub fn table(&self, all: bool) -> String {
        let header = [
            "section".to_owned(),
            "item".to_owned(),
            format!("version {}", self.a.version),
            format!("version {}", self.b.version),
            "change".to_owned(),
        ];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .filter(|row| all || row.change != "same")
            .map(|row| {
                [
                    row.section.clone(),
                    row.item.clone(),
                    row.a.clone().unwrap_or_else(|| "–".to_owned()),
                    row.b.clone().unwrap_or_else(|| "–".to_owned()),
                    row.change.clone(),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|cell| cell.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&cells) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// The registered model at `uri` and its feature pipeline as one ONNX graph (see
/// [`velo_models::onnx`]).
///
/// # Errors
/// An unknown model, alias or version, an artifact that cannot be loaded, or a model ONNX
/// cannot express (naming why).
pub fn export_onnx(
    registry: &dyn ModelRegistry,
    uri: &velo_io::registries::ModelUri,
    options: &velo_models::onnx::Options,
) -> Result<(ModelVersion, Vec<u8>), JobError> {
    let (version, model) = crate::common::load_model_uri(registry, uri)?;
    let bytes = model.to_onnx(options)?;
    Ok((version, bytes))
}
