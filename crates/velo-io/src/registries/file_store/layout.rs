//! The store's records as MLflow's file store lays them out (`meta.yaml` files), and the
//! checks that keep names, keys and paths inside the store.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::registries::{RegistryError, Result, RunStatus};

// The store and its shared helpers (io, invalid, now_ms, …).
use super::*;

pub(super) const RESERVED_IN_EXPERIMENT: &[&str] = &["tags", "datasets", "traces", "models"];

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ExperimentMeta {
    pub(super) artifact_location: String,
    pub(super) creation_time: i64,
    pub(super) experiment_id: String,
    pub(super) last_update_time: i64,
    pub(super) lifecycle_stage: String,
    pub(super) name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RunMeta {
    pub(super) artifact_uri: String,
    pub(super) end_time: Option<i64>,
    #[serde(default)]
    pub(super) entry_point_name: String,
    pub(super) experiment_id: String,
    pub(super) lifecycle_stage: String,
    pub(super) run_id: String,
    #[serde(default)]
    pub(super) run_name: String,
    #[serde(default)]
    pub(super) source_name: String,
    #[serde(default = "local_source")]
    pub(super) source_type: u8,
    #[serde(default)]
    pub(super) source_version: String,
    pub(super) start_time: i64,
    pub(super) status: u8,
    #[serde(default)]
    pub(super) tags: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub(super) user_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct InputMeta {
    pub(super) destination_id: String,
    pub(super) destination_type: String,
    pub(super) source_id: String,
    pub(super) source_type: String,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ModelMeta {
    pub(super) creation_timestamp: i64,
    pub(super) description: Option<String>,
    pub(super) last_updated_timestamp: i64,
    pub(super) name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct VersionMeta {
    pub(super) creation_timestamp: i64,
    pub(super) current_stage: String,
    pub(super) description: Option<String>,
    pub(super) last_updated_timestamp: i64,
    pub(super) name: String,
    pub(super) run_id: String,
    pub(super) run_link: Option<String>,
    pub(super) source: String,
    pub(super) status: String,
    pub(super) status_message: Option<String>,
    pub(super) storage_location: String,
    pub(super) user_id: Option<String>,
    pub(super) version: u64,
}

/// MLflow's integer run statuses in `meta.yaml`.
pub(super) fn status_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Running => 1,
        RunStatus::Scheduled => 2,
        RunStatus::Finished => 3,
        RunStatus::Failed => 4,
        RunStatus::Killed => 5,
    }
}

pub(super) fn status_from_code(code: u8) -> RunStatus {
    match code {
        2 => RunStatus::Scheduled,
        3 => RunStatus::Finished,
        4 => RunStatus::Failed,
        5 => RunStatus::Killed,
        _ => RunStatus::Running,
    }
}

pub(super) fn local_source() -> u8 {
    4
}

pub(super) fn to_yaml<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_yaml::to_string(value)
        .map(String::into_bytes)
        .map_err(|error| invalid(format!("cannot encode store record: {error}")))
}

pub(super) fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    serde_yaml::from_str(&text).map_err(|error| RegistryError::Corrupt {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// Checks a metric, param or tag key as MLflow does; `/` makes subdirectories.
pub(super) fn check_key(kind: &str, key: &str) -> Result<()> {
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
pub(super) fn check_model_name(name: &str) -> Result<()> {
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
pub(super) fn check_run_id(run_id: &str) -> Result<()> {
    if run_id.len() == 32 && run_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid(format!("run id {run_id:?} is not 32 hex digits")))
    }
}

pub(super) fn check_version(version: &str) -> Result<u64> {
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
pub(super) fn confined(base: &Path, segments: &[&str]) -> Result<PathBuf> {
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

pub(super) fn artifact_segments(path: &str) -> Result<Vec<&str>> {
    velo_mlflow::check_relative_path(path).map_err(|error| invalid(error.to_string()))
}
