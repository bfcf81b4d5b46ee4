//! MLflow's records as they travel on the wire.
//!
//! MLflow omits empty fields (a run without metrics has no `metrics` key), so every field has a
//! serde default. Identifiers are strings; int64 timestamps are milliseconds since the epoch.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key/value tag (experiments, runs, datasets, registered models and versions).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tag {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

impl Tag {
    /// A tag from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run parameter (one value per key and run).
pub type Param = Tag;

/// An experiment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Experiment {
    /// The id (a string, `"0"` for Default).
    #[serde(default)]
    pub experiment_id: String,
    /// The unique name.
    #[serde(default)]
    pub name: String,
    /// Where its runs' artifacts go.
    #[serde(default)]
    pub artifact_location: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
    /// Creation time, ms.
    #[serde(default)]
    pub creation_time: i64,
    /// Last update time, ms.
    #[serde(default)]
    pub last_update_time: i64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Open.
    #[default]
    Running,
    /// Created, not started.
    Scheduled,
    /// Ended well.
    Finished,
    /// Ended with an error.
    Failed,
    /// Ended by the user (Ctrl-C).
    Killed,
}

impl RunStatus {
    /// The name MLflow uses (`FINISHED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Scheduled => "SCHEDULED",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Killed)
    }
}

/// A metric value at a time and step. NaN and infinities travel as MLflow's strings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metric {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The value.
    #[serde(default, serialize_with = "ser_f64", deserialize_with = "de_f64")]
    pub value: f64,
    /// When, ms since the epoch.
    #[serde(default)]
    pub timestamp: i64,
    /// The step.
    #[serde(default)]
    pub step: i64,
}

impl Metric {
    /// A metric value.
    pub fn new(key: impl Into<String>, value: f64, timestamp: i64, step: i64) -> Self {
        Self {
            key: key.into(),
            value,
            timestamp,
            step,
        }
    }
}

fn ser_f64<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if value.is_infinite() {
        serializer.serialize_str(if *value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        })
    } else {
        serializer.serialize_f64(*value)
    }
}

fn de_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(f64),
        String(String),
    }
    match NumberOrString::deserialize(deserializer)? {
        NumberOrString::Number(value) => Ok(value),
        NumberOrString::String(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
    }
}

fn de_i64_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(i64),
        String(String),
    }
    match NumberOrString::deserialize(deserializer)? {
        NumberOrString::Number(value) => Ok(value),
        NumberOrString::String(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// What identifies and dates a run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunInfo {
    /// The id.
    #[serde(default)]
    pub run_id: String,
    /// The display name.
    #[serde(default)]
    pub run_name: String,
    /// The experiment.
    #[serde(default)]
    pub experiment_id: String,
    /// Who ran it.
    #[serde(default)]
    pub user_id: String,
    /// The state.
    #[serde(default)]
    pub status: RunStatus,
    /// Start, ms.
    #[serde(default)]
    pub start_time: i64,
    /// End, ms (absent while running).
    #[serde(default)]
    pub end_time: Option<i64>,
    /// Where its artifacts live (`mlflow-artifacts:/…` on a proxying server).
    #[serde(default)]
    pub artifact_uri: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// A run's latest metrics, params and tags.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunData {
    /// The latest value of each metric.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Parameters.
    #[serde(default)]
    pub params: Vec<Param>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl RunData {
    /// A tag's value.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|tag| tag.key == key)
            .map(|tag| tag.value.as_str())
    }

    /// A parameter's value.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|param| param.key == key)
            .map(|param| param.value.as_str())
    }

    /// A metric's latest value.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|metric| metric.key == key)
            .map(|metric| metric.value)
    }
}

/// A dataset as linked to runs (lineage).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dataset {
    /// The name.
    #[serde(default)]
    pub name: String,
    /// A stable content digest (MLflow keeps at most 36 characters).
    #[serde(default)]
    pub digest: String,
    /// `local`, `http`, …
    #[serde(default)]
    pub source_type: String,
    /// A JSON string such as `{"uri": "…"}`.
    #[serde(default)]
    pub source: String,
    /// A JSON string `{"mlflow_colspec": […]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// A JSON string such as `{"num_rows": N, "num_elements": M}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A dataset used by a run, with the context tags (`mlflow.data.context`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DatasetInput {
    /// Tags of the link, such as `mlflow.data.context = training`.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The dataset.
    #[serde(default)]
    pub dataset: Dataset,
}

impl DatasetInput {
    /// The `mlflow.data.context` tag.
    pub fn context(&self) -> Option<&str> {
        self.tags
            .iter()
            .find(|tag| tag.key == CONTEXT_TAG)
            .map(|tag| tag.value.as_str())
    }
}

/// The tag naming a dataset's role in a run.
pub const CONTEXT_TAG: &str = "mlflow.data.context";

/// The datasets a run used.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunInputs {
    /// Dataset inputs.
    #[serde(default)]
    pub dataset_inputs: Vec<DatasetInput>,
}

/// A run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Run {
    /// Identity and times.
    #[serde(default)]
    pub info: RunInfo,
    /// Metrics, params, tags.
    #[serde(default)]
    pub data: RunData,
    /// Datasets.
    #[serde(default)]
    pub inputs: RunInputs,
}

/// A file or directory among a run's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileInfo {
    /// The path, relative to the artifact root.
    #[serde(default)]
    pub path: String,
    /// Whether it is a directory.
    #[serde(default)]
    pub is_dir: bool,
    /// Its size in bytes (files only).
    #[serde(
        default,
        deserialize_with = "de_opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub file_size: Option<i64>,
}

fn de_opt_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "de_i64_lenient")] i64);
    Ok(Option::<Wrap>::deserialize(deserializer)?.map(|Wrap(value)| value))
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegisteredModel {
    /// The unique name.
    #[serde(default)]
    pub name: String,
    /// Creation time, ms.
    #[serde(default)]
    pub creation_timestamp: i64,
    /// Last update, ms.
    #[serde(default)]
    pub last_updated_timestamp: i64,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Aliases and the versions they point at.
    #[serde(default)]
    pub aliases: Vec<Alias>,
}

/// An alias of a registered model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Alias {
    /// The alias, such as `Champion`.
    #[serde(default)]
    pub alias: String,
    /// The version it points at.
    #[serde(default)]
    pub version: String,
}

/// A version of a registered model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelVersion {
    /// The registered model.
    #[serde(default)]
    pub name: String,
    /// The version number, as a string.
    #[serde(default)]
    pub version: String,
    /// Creation time, ms.
    #[serde(default)]
    pub creation_timestamp: i64,
    /// Last update, ms.
    #[serde(default)]
    pub last_updated_timestamp: i64,
    /// Where the model files are.
    #[serde(default)]
    pub source: String,
    /// The run that produced it.
    #[serde(default)]
    pub run_id: String,
    /// `READY`, `PENDING_REGISTRATION` or `FAILED_REGISTRATION`.
    #[serde(default)]
    pub status: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Aliases pointing here (MLflow's search leaves them out).
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ModelVersion {
    /// The version as a number.
    pub fn number(&self) -> Option<u64> {
        self.version.parse().ok()
    }
}

/// What `runs/search` returns: a page of runs.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[non_exhaustive]
pub struct RunsPage {
    /// The runs.
    #[serde(default)]
    pub runs: Vec<Run>,
    /// The token of the next page, if any.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// Which runs a search considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ViewType {
    /// Active runs only.
    #[default]
    ActiveOnly,
    /// Deleted runs only.
    DeletedOnly,
    /// Both.
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_metrics_travel_as_mlflow_strings() {
        for (value, text) in [
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"Infinity\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
            (1.5, "1.5"),
        ] {
            let json = serde_json::to_string(&Metric::new("m", value, 1, 0)).unwrap();
            assert!(json.contains(&format!("\"value\":{text}")), "{json}");
            let back: Metric = serde_json::from_str(&json).unwrap();
            assert!(back.value == value || (value.is_nan() && back.value.is_nan()));
        }
    }

    #[test]
    fn empty_answers_read_as_defaults() {
        let run: Run = serde_json::from_str(r#"{"info":{"run_id":"r"}}"#).unwrap();
        assert_eq!(run.info.run_id, "r");
        assert!(run.data.metrics.is_empty() && run.inputs.dataset_inputs.is_empty());
        let file: FileInfo =
            serde_json::from_str(r#"{"path":"a","is_dir":false,"file_size":"12"}"#).unwrap();
        assert_eq!(file.file_size, Some(12));
    }
}
